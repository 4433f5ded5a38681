/*
 * c_intern_render: a C `api` worker of the leak suite with one leaking kind among clean ones.
 *
 *   intern   copies the task's 24 KiB "document" into an intern table that is never pruned
 *            (the leak)
 *   render   a 1 MiB scratch buffer, touched and freed. glibc raises its mmap threshold when
 *            the first one is freed, so later ones come from the main heap: when intern's
 *            blocks have filled the space a render freed, the next render grows the heap --
 *            the kernel sees the growth in render, not in intern
 *   tally    counts the words of a small buffer
 */
#include "c_worker.h"

#define DOC (24 * 1024)

static char **table;
static size_t ntable, cap;

static int intern(long n, long arg, char *out, size_t outcap)
{
    char *doc = malloc(DOC);

    if (!doc)
        return -1;
    if (leak_grow(&table, &cap, ntable) < 0) {
        free(doc);
        return -1;
    }
    memset(doc, 'a' + (int)(arg % 26), DOC);
    table[ntable++] = doc;
    snprintf(out, outcap, "interned %zu", ntable);
    return 0;
}

static int tally(long n, long arg, char *out, size_t outcap)
{
    char text[256];
    size_t words = 0;

    snprintf(text, sizeof text, "item %ld is %ld words long and then some", n, arg % 97);
    for (size_t i = 0; text[i]; i++)
        words += text[i] != ' ' && (i == 0 || text[i - 1] == ' ');
    snprintf(out, outcap, "words=%zu", words);
    return 0;
}

int main(void)
{
    static const leak_kind_t kinds[] = {
        {"intern", intern},
        {"render", leak_render},
        {"tally", tally},
    };

    return leak_worker_main("c_intern_render", kinds, sizeof kinds / sizeof kinds[0]);
}
