/*
 * harness: run the real memvisor binary from Check tests.
 */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

void run_init(mvrun_t *r, const char *tasks)
{
    memset(r, 0, sizeof *r);
    r->log_fd = -1;
    strcpy(r->dir, "/tmp/mv-e2e-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(r->dir));
    snprintf(r->tasks, sizeof r->tasks, "%s/tasks.txt", r->dir);
    snprintf(r->results, sizeof r->results, "%s/results.jsonl", r->dir);
    snprintf(r->summary_path, sizeof r->summary_path, "%s/summary.txt", r->dir);
    if (tasks)
        write_text(r->tasks, tasks);
}

const char *mv_test_path(const char *rel)
{
    static struct {
        char rel[64];
        char path[4096];
    } cache[16];
    static int n;
    const char *build = getenv("MV_BUILD");

    for (int i = 0; i < n; i++)
        if (strcmp(cache[i].rel, rel) == 0)
            return cache[i].path;
    ck_assert_int_lt(n, 16);
    ck_assert_uint_lt(strlen(rel), sizeof cache[n].rel);
    snprintf(cache[n].rel, sizeof cache[n].rel, "%s", rel);
    snprintf(cache[n].path, sizeof cache[n].path, "%s/%s", build && *build ? build : MV_BUILD_DIR,
             rel);
    return cache[n++].path;
}

bool run_as(mvrun_t *r, uid_t uid, gid_t gid)
{
    pid_t pid;
    int st;

    ck_assert_int_eq(chmod(r->dir, 0777), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0 ||
              access(r->dir, W_OK | X_OK) < 0);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "skipped a test as uid %u: it cannot reach %s\n", (unsigned)uid, r->dir);
        return false;
    }
    r->uid = uid;
    r->gid = gid;
    return true;
}

/* `path` if it is not in the build tree, else a copy in the run's directory (0755). */
static const char *reachable(mvrun_t *r, const char *path)
{
    const char *build = mv_test_path("");
    const char *base = strrchr(path, '/');
    char *copy;
    int in, out;
    ssize_t n;
    char buf[65536];

    if (strncmp(path, build, strlen(build)) != 0 || access(path, F_OK) < 0)
        return path;
    ck_assert_int_lt(r->ncopies, 8);
    ck_assert_int_ge(asprintf(&copy, "%s/bin%s", r->dir, base), 0);
    r->copies[r->ncopies++] = copy;
    snprintf(buf, sizeof buf, "%s/bin", r->dir);
    mkdir(buf, 0755);
    in = open(path, O_RDONLY | O_CLOEXEC);
    out = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    ck_assert_msg(in >= 0 && out >= 0, "cannot copy %s to %s: %s", path, copy, strerror(errno));
    while ((n = read(in, buf, sizeof buf)) > 0)
        ck_assert_int_eq(write(out, buf, (size_t)n), n);
    ck_assert_int_eq(n, 0);
    close(in);
    ck_assert_int_eq(close(out), 0);
    return copy;
}

const char *run_reachable(mvrun_t *r, const char *path)
{
    ck_assert_int_eq(chmod(r->dir, 0755), 0);
    return reachable(r, path);
}

const char *run_file(mvrun_t *r, const char *name, const char *text)
{
    static char path[160];

    snprintf(path, sizeof path, "%s/%s", r->dir, name);
    write_text(path, text);
    return path;
}

/* Moves the calling process (the forked child) into cgroup directory `dir`. */
static int join_cgroup(const char *dir)
{
    char path[512];
    int fd, ok;

    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ok = write(fd, "0", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

void run_start(mvrun_t *r, const char *const *args, const char *stdin_text)
{
    const char *argv[96];
    int n = 0, errp[2], inp[2] = {-1, -1};

    for (int i = 0; r->wrap && r->wrap[i]; i++)
        argv[n++] = r->wrap[i];
    argv[n++] = r->uid ? reachable(r, MEMVISOR) : MEMVISOR;
    argv[n++] = args[0]; /* the subcommand */
    if (strcmp(args[0], "run") == 0) {
        /* Each run keeps its run directory (events, snapshots) in its own temp dir. */
        snprintf(r->state_opt, sizeof r->state_opt, "supervisor.state_dir=%s/state", r->dir);
        argv[n++] = "-o";
        argv[n++] = r->state_opt;
        if (!r->service) {
            argv[n++] = "--tasks";
            argv[n++] = stdin_text ? "-" : r->tasks;
            argv[n++] = "--results";
            argv[n++] = r->results;
        }
    }
    for (int i = 1; args[i]; i++) {
        ck_assert_int_lt(n, 94);
        argv[n++] = r->uid ? reachable(r, args[i]) : args[i];
    }
    argv[n] = NULL;
    ck_assert_int_eq(pipe2(errp, O_CLOEXEC), 0);
    if (r->log_pipe_size)
        ck_assert_int_ge(fcntl(errp[0], F_SETPIPE_SZ, r->log_pipe_size), r->log_pipe_size);
    if (stdin_text)
        ck_assert_int_eq(pipe2(inp, O_CLOEXEC), 0);
    if (r->uid) /* the unprivileged user reads its tasks from the run's dir */
        chmod(r->tasks, 0644);
    r->pid = fork();
    ck_assert_int_ge(r->pid, 0);
    if (r->pid == 0) {
        int out = open(r->summary_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (r->cgroup && join_cgroup(r->cgroup) < 0)
            _exit(125);
        if (r->uid && (setgroups(0, NULL) < 0 || setgid(r->gid) < 0 || setuid(r->uid) < 0))
            _exit(126);
        /* After setuid: a change of credentials clears the parent-death signal. SIGTERM, so
         * that a failed test's memvisor still removes its cgroups before the next test. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (r->own_group)
            setpgid(0, 0); /* like a shell's job: a terminal's Ctrl-C goes to the group */
        dup2(errp[1], STDERR_FILENO);
        dup2(out, STDOUT_FILENO);
        if (stdin_text)
            dup2(inp[0], STDIN_FILENO);
        execvp(argv[0], (char **)argv);
        _exit(127);
    }
    close(errp[1]);
    r->log_fd = errp[0];
    if (stdin_text) {
        close(inp[0]);
        /* Small texts fit the pipe; a writer process would be needed for more. */
        ck_assert_uint_le(strlen(stdin_text), 60000);
        ck_assert_int_eq(write(inp[1], stdin_text, strlen(stdin_text)),
                         (ssize_t)strlen(stdin_text));
        close(inp[1]);
    }
}

/* Reads more of the log; false at EOF. */
static bool read_more(mvrun_t *r)
{
    ssize_t n;

    if (r->log_fd < 0)
        return false;
    if (r->log_cap - r->log_len < 4097) {
        r->log_cap = r->log_cap ? r->log_cap * 2 : 65536;
        r->log = realloc(r->log, r->log_cap);
        ck_assert_ptr_nonnull(r->log);
    }
    do
        n = read(r->log_fd, r->log + r->log_len, r->log_cap - r->log_len - 1);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        close(r->log_fd);
        r->log_fd = -1;
        return false;
    }
    r->log_len += (size_t)n;
    r->log[r->log_len] = '\0';
    return true;
}

void run_drain(mvrun_t *r)
{
    struct pollfd pfd = {.fd = r->log_fd, .events = POLLIN};

    while (r->log_fd >= 0 && poll(&pfd, 1, 0) > 0 && read_more(r))
        pfd.fd = r->log_fd;
}

char *run_wait_for(mvrun_t *r, const char *needle)
{
    for (;;) {
        /* Look at whole lines after the previous match only. */
        char *p = r->log ? r->log + r->log_off : NULL;
        char *nl;

        while (p && (nl = strchr(p, '\n'))) {
            *nl = '\0';
            if (strstr(p, needle)) {
                char *line = strdup(p);
                *nl = '\n';
                r->log_off = (size_t)(nl + 1 - r->log);
                return line;
            }
            *nl = '\n';
            p = nl + 1;
        }
        if (!read_more(r)) {
            run_print_log(r);
            ck_abort_msg("log ended before \"%s\" appeared", needle);
        }
    }
}

static void parse_results(mvrun_t *r)
{
    FILE *f = fopen(r->results, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    if (!f)
        return;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t e;
        json_t *j = json_loadb(line, (size_t)n, 0, &e);
        ck_assert_msg(j != NULL, "result line %zu is not JSON (%s): %s", r->nres + 1, e.text, line);
        ck_assert_msg(line[n - 1] == '\n', "result line %zu has no newline", r->nres + 1);
        r->res = realloc(r->res, (r->nres + 1) * sizeof *r->res);
        r->res[r->nres++] = j;
    }
    free(line);
    fclose(f);
}

int run_finish(mvrun_t *r)
{
    int st;

    while (read_more(r))
        ;
    while (waitpid(r->pid, &st, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    parse_results(r);
    return r->code;
}

int run_batch(mvrun_t *r, const char *tasks, const char *const *args)
{
    run_init(r, tasks);
    run_start(r, args, NULL);
    return run_finish(r);
}

int run_ctl(const char *cmd, const char *sock)
{
    mvrun_t c;
    const char *args[] = {cmd, "--socket", sock, NULL};
    int code;

    run_init(&c, NULL);
    run_start(&c, args, NULL);
    code = run_finish(&c);
    if (code != 0)
        fprintf(stderr, "memvisor %s: exit %d: %s%s\n", cmd, code, c.log ? c.log : "",
                run_summary(&c));
    run_free(&c);
    return code;
}

const char *const *run_argv(mvargs_t *a, const char *const *opts, const char *const *cmd)
{
    size_t n = 0, max = sizeof a->v / sizeof a->v[0] - 1;

    a->v[n++] = "run";
    for (; *opts; opts++) {
        ck_assert_uint_lt(n + 2, max);
        a->v[n++] = "-o";
        a->v[n++] = *opts;
    }
    a->v[n++] = "--";
    for (; *cmd; cmd++) {
        ck_assert_uint_lt(n, max);
        a->v[n++] = *cmd;
    }
    a->v[n] = NULL;
    return a->v;
}

char *run_ask(const mvrun_t *r, const char *cmd, bool json)
{
    char sock[PATH_MAX], *out = NULL;
    const char *argv[] = {MEMVISOR, cmd, "--socket", sock, NULL, NULL};
    int code;

    snprintf(sock, sizeof sock, "%s/state/control.sock", r->dir);
    if (json)
        argv[2] = "--json", argv[3] = "--socket", argv[4] = sock;
    code = run_capture(argv, &out);
    ck_assert_msg(code == 0, "memvisor %s: exit %d: %s", cmd, code, out);
    return out;
}

void run_workers(const mvrun_t *r, int n)
{
    char sock[PATH_MAX], count[16], *out = NULL;
    int code;

    snprintf(sock, sizeof sock, "%s/state/control.sock", r->dir);
    snprintf(count, sizeof count, "%d", n);
    code = run_capture((const char *[]){MEMVISOR, "workers", count, "--socket", sock, NULL}, &out);
    ck_assert_msg(code == 0, "memvisor workers %d: exit %d: %s", n, code, out);
    free(out);
}

json_t *run_status(const mvrun_t *r)
{
    char *out = run_ask(r, "status", true);
    json_t *j = json_loads(out, 0, NULL);

    ck_assert_msg(j != NULL, "%s", out);
    free(out);
    return j;
}

int run_count(const mvrun_t *r, const char *needle)
{
    int n = 0;

    for (const char *p = r->log; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

void run_print_log(const mvrun_t *r)
{
    fprintf(stderr, "---- memvisor's log, %zu bytes ----\n%s---- end of memvisor's log ----\n",
            r->log_len, r->log ? r->log : "");
}

char *run_summary(mvrun_t *r)
{
    static char buf[8192];
    FILE *f = fopen(r->summary_path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;

    if (f)
        fclose(f);
    buf[n] = '\0';
    return buf;
}

json_t *run_result(const mvrun_t *r, size_t id)
{
    for (size_t i = 0; i < r->nres; i++)
        if ((size_t)jint(r->res[i], "task") == id)
            return r->res[i];
    return NULL;
}

/* Marks every result's task in seen[1..n]; fails on unknown or duplicate ids. */
static unsigned char *mark_seen(const mvrun_t *r, size_t n)
{
    unsigned char *seen = calloc(n + 1, 1);

    for (size_t i = 0; i < r->nres; i++) {
        long long id = jint(r->res[i], "task");
        ck_assert_log(r, id >= 1 && (size_t)id <= n, "result for unknown task %lld", id);
        ck_assert_log(r, !seen[id], "task %lld has two result lines", id);
        seen[id] = 1;
    }
    return seen;
}

void run_assert_at_most_once(const mvrun_t *r, size_t n)
{
    free(mark_seen(r, n));
}

void run_assert_once(const mvrun_t *r, size_t n, const size_t *skip)
{
    unsigned char *seen = mark_seen(r, n);

    for (size_t id = 1; id <= n; id++) {
        bool skipped = false;
        for (const size_t *s = skip; s && *s; s++)
            skipped |= *s == id;
        ck_assert_log(r, seen[id] || skipped, "task %zu has no result line", id);
    }
    free(seen);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

void run_free(mvrun_t *r)
{
    run_again(r);
    for (int i = 0; i < r->ncopies; i++)
        free(r->copies[i]);
    if (r->dir[0])
        nftw(r->dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    memset(r, 0, sizeof *r);
}

char *repeat_line(const char *line, int n)
{
    size_t len = strlen(line);
    char *s = malloc((len + 1) * (size_t)n + 1), *p = s;

    for (int i = 0; i < n; i++) {
        memcpy(p, line, len);
        p += len;
        *p++ = '\n';
    }
    *p = '\0';
    return s;
}

long long jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_integer(v) ? json_integer_value(v) : -1;
}

const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

bool pid_alive(pid_t pid)
{
    return kill(pid, 0) == 0 || errno != ESRCH;
}

long long run_max_per_pid(const mvrun_t *r, int *distinct)
{
    long long *pids = calloc(r->nres + 1, sizeof *pids), *counts = calloc(r->nres + 1, 8);
    long long best = 0;
    size_t n = 0;

    for (size_t i = 0; i < r->nres; i++) {
        long long pid = jint(r->res[i], "pid");
        size_t k;
        for (k = 0; k < n && pids[k] != pid; k++)
            ;
        if (k == n) {
            pids[n] = pid;
            counts[n++] = 0;
        }
        if (++counts[k] > best)
            best = counts[k];
    }
    *distinct = (int)n;
    free(pids);
    free(counts);
    return best;
}

char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t len = 0, cap = 4096, n;
    char *s = NULL, *more;

    if (!f)
        return NULL;
    /* Read to EOF: kernfs and /proc files have no size to seek to. */
    do {
        more = realloc(s, cap + 1);
        if (!more) {
            free(s);
            fclose(f);
            return NULL;
        }
        s = more;
        n = fread(s + len, 1, cap - len, f);
        len += n;
        if (len == cap)
            cap *= 2;
    } while (n > 0);
    s[len] = '\0';
    fclose(f);
    return s;
}

/* Runs argv in the source tree; its stdout and stderr land in *out (free it). Returns the
 * exit code, or 128 + signal. */
int run_capture(const char *const *argv, char **out)
{
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    int p[2], st;
    ssize_t n;
    pid_t pid;

    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test killed by its timeout takes python along */
        dup2(p[1], STDOUT_FILENO);
        dup2(p[1], STDERR_FILENO);
        /* Only stdio: Check's own files (its messages go through a temporary file) are not
         * the program's (a memvisor.Pool that found a file of its caller's on fd 3, where a
         * worker's channel goes, started its template instead of forking it). */
        close_range(3, ~0U, 0);
        if (chdir(SOURCE_DIR) < 0)
            _exit(126);
        execvp(argv[0], (char **)argv);
        fprintf(stderr, "execvp(\"%s\") failed: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    for (;;) {
        if (cap - len < 4097) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        n = read(p[0], buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(p[0]);
    while (waitpid(pid, &st, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void run_again(mvrun_t *r)
{
    for (size_t i = 0; i < r->nres; i++)
        json_decref(r->res[i]);
    free(r->res);
    free(r->log);
    if (r->log_fd >= 0)
        close(r->log_fd);
    r->res = NULL;
    r->nres = 0;
    r->log = NULL;
    r->log_len = r->log_off = r->log_cap = 0;
    r->log_fd = -1;
    r->pid = 0;
    r->code = 0;
}

void run_wait_nth(mvrun_t *r, const char *needle, int n)
{
    for (int i = 0; i < n; i++)
        free(run_wait_for(r, needle));
}

size_t file_lines(const char *path)
{
    char *s = read_text(path);
    size_t n = 0;

    for (const char *p = s; p && (p = strchr(p, '\n')); p++)
        n++;
    free(s);
    return n;
}

/* ---- a terminal with a status line -------------------------------------------------------- */

static void push(char ***v, size_t *n, const char *p, size_t len)
{
    char **nv = realloc(*v, (*n + 1) * sizeof **v);

    ck_assert_ptr_nonnull(nv);
    *v = nv;
    nv[*n] = strndup(p, len);
    ck_assert_ptr_nonnull(nv[*n]);
    ++*n;
}

bool screen_parse(const char *buf, size_t n, screen_t *s, size_t *bad)
{
    static const char erase[] = "\033[K";
    const char *p = buf, *end = buf + n;

    memset(s, 0, sizeof *s);
    while (p < end) {
        const char *e;

        if (*p == '\r' && p + 1 < end && p[1] != '\n') {
            /* A draw or an erasure: "\r" TEXT ESC[K, TEXT printable. */
            e = p + 1;
            while (e < end && *e != '\033' && *e != '\r' && *e != '\n')
                e++;
            if ((size_t)(end - e) < 3 || memcmp(e, erase, 3) != 0) {
                *bad = (size_t)(p - buf);
                return false;
            }
            if (e == p + 1) {
                s->erasures++;
                s->erased_last = true;
            } else {
                push(&s->draws, &s->ndraws, p + 1, (size_t)(e - p - 1));
                s->erased_last = false;
                s->line_since_draw = false;
            }
            p = e + 3;
            continue;
        }
        /* A line: no "\r" but the pty's before its "\n", no escape. */
        e = memchr(p, '\n', (size_t)(end - p));
        if (!e) {
            *bad = (size_t)(p - buf);
            return false;
        }
        for (const char *q = p; q < e; q++)
            if (*q == '\033' || (*q == '\r' && q + 1 != e)) {
                *bad = (size_t)(q - buf);
                return false;
            }
        s->shown = realloc(s->shown, (s->nlines + 1) * sizeof *s->shown);
        ck_assert_ptr_nonnull(s->shown);
        s->shown[s->nlines] = s->ndraws > 0 && !s->erased_last && !s->line_since_draw;
        push(&s->lines, &s->nlines, p, (size_t)(e - p - (e > p && e[-1] == '\r')));
        s->line_since_draw = true;
        p = e + 1;
    }
    return true;
}

void screen_free(screen_t *s)
{
    for (size_t i = 0; i < s->nlines; i++)
        free(s->lines[i]);
    for (size_t i = 0; i < s->ndraws; i++)
        free(s->draws[i]);
    free(s->lines);
    free(s->shown);
    free(s->draws);
    memset(s, 0, sizeof *s);
}

void run_moved_out_drill(mvrun_t *r, const char *cgroup, const char *procs)
{
    mvargs_t av;
    const char *const *args = run_argv(
        &av, RUN_OPTS("supervisor.workers=1", "limits.memory_soft=0", "limits.memory_hard=24M"),
        RUN_CMD(MVTEST));
    char text[32], *line;
    pid_t pid;
    FILE *f;

    run_init(r, "alloc 1\nhold 1\nalloc 4\nalloc 4\nalloc 4\nalloc 4\nalloc 4\nalloc 4\nok\n");
    r->cgroup = cgroup;
    run_start(r, args, NULL);
    line = run_wait_for(r, "held pid=");
    pid = (pid_t)atoi(strstr(line, "held pid=") + 9);
    free(line);
    ck_assert_int_gt(pid, 1);
    snprintf(text, sizeof text, "%d", (int)pid);
    ck_assert_msg((f = fopen(procs, "w")) != NULL, "%s: %s", procs, strerror(errno));
    ck_assert_int_gt(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    line = run_wait_for(r, "event=cgroup_lost");
    ck_assert_ptr_nonnull(strstr(line, "moved out of its cgroup"));
    free(line);
    kill(pid, SIGUSR1);
    ck_assert_int_eq(run_finish(r), 0);
    run_assert_once(r, 9, NULL);
    ck_assert(json_is_null(json_object_get(run_result(r, 2), "mem_before")));
    for (size_t id = 3; id <= 8; id++)
        ck_assert_msg(jint(run_result(r, id), "retained") >= 4 * 1048576LL - 512 * 1024,
                      "task %zu: retained %lld", id, jint(run_result(r, id), "retained"));
    ck_assert_int_eq(run_count(r, "event=cgroup_lost"), 1);
    ck_assert_int_ge(run_count(r, "reason=hard_limit"), 1);
    ck_assert(!pid_alive(pid));
}

void run_inside_own_drill(mvrun_t *r, const char *cgroup)
{
    mvargs_t av;
    const char *const *args = run_argv(
        &av,
        RUN_OPTS("supervisor.workers=1", "limits.sample_interval=100ms", "limits.memory_soft=0"),
        RUN_CMD(MVTEST));

    run_init(r, "enter_sub\ngrow 6 300\nok\n");
    r->cgroup = cgroup;
    run_start(r, args, NULL);
    ck_assert_int_eq(run_finish(r), 0);
    run_assert_once(r, 3, NULL);
    ck_assert_ptr_nonnull(strstr(jstr(run_result(r, 1), "result"), "entered="));
    ck_assert_int_eq(run_count(r, "event=cgroup_lost"), 0);
    ck_assert_str_eq(jstr(run_result(r, 2), "peak_source"), "kernel");
    ck_assert_int_ge(jint(run_result(r, 2), "retained"), 5 * 1048576LL);
}
