/*
 * ctl: `memvisor status|recycle|reload|workers|stop|metrics`, the control socket's client.
 *
 * One request line, one reply line, a deadline of MV_CONTROL_CTL_MS over both; no libuv
 * loop, just poll(2). The reply is printed as JSON (--json) or for people by small
 * formatters that show "-" for anything the reply lacks, so an older or newer supervisor's
 * reply still prints.
 */
#include "control.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "exitcode.h"
#include "progress.h"
#include "util.h"

#define MAX_REPLY (64 * 1024 * 1024) /* a reply this long is not one */

typedef struct ctl_cli {
    const char *cmd;
    const char *target; /* recycle: SLOT or all; workers: N */
    const char *socket;
    const char *config;
    const char **overrides;
    int noverrides;
    bool json;
} ctl_cli_t;

/* Parses argv into cli; returns -1 on success, an exit code otherwise. The options are
 * cli.c's table row of the command. */
static int parse_cli(int argc, char **argv, ctl_cli_t *c)
{
    const mv_cli_cmd_t *cmd = argc >= 2 ? mv_cli_find(argv[1]) : NULL;
    const mv_cli_opt_t *o;

    if (!cmd || cmd->id < MV_CMD_STATUS || cmd->id > MV_CMD_METRICS)
        return mv_cli_usage_error(NULL, "unknown command: ", argc >= 2 ? argv[1] : "");
    c->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];

        if ((o = mv_cli_option(cmd, a)) && o->arg && i + 1 >= argc)
            return mv_cli_usage_error(cmd, "missing value after ", a);
        if (o && o->id == MV_CLI_HELP) {
            mv_cli_help_command(cmd, stdout);
            return MV_EXIT_OK;
        }
        switch (o ? o->id : MV_CLI_NOPTIONS) {
        case MV_CLI_SOCKET: c->socket = argv[++i]; break;
        case MV_CLI_CONFIG: c->config = argv[++i]; break;
        case MV_CLI_OVERRIDE: c->overrides[c->noverrides++] = argv[++i]; break;
        case MV_CLI_JSON: c->json = true; break;
        default:
            if (a[0] == '-' && a[1] != '\0')
                return mv_cli_usage_error(cmd, "unknown option: ", a);
            if ((cmd->id != MV_CMD_RECYCLE && cmd->id != MV_CMD_WORKERS) || c->target)
                return mv_cli_usage_error(cmd, "unexpected argument: ", a);
            c->target = a;
        }
    }
    if (cmd->id == MV_CMD_RECYCLE && !c->target)
        return mv_cli_usage_error(cmd, "recycle needs a worker slot or all", "");
    if (cmd->id == MV_CMD_WORKERS && !c->target)
        return mv_cli_usage_error(cmd, "workers needs a number of workers", "");
    return -1;
}

/* The request line's object. NULL after printing a usage error into *code. */
static json_t *build_request(const ctl_cli_t *c, int *code)
{
    json_t *req = json_pack("{s:s}", "cmd", c->cmd);
    char *end;
    long slot;

    if (!req) {
        *code = MV_EXIT_CANT_RUN;
        return NULL;
    }
    if (!c->target)
        return req;
    if (strcmp(c->cmd, "workers") == 0) {
        /* Any whole number goes as it is: memvisor says what its bounds are. */
        errno = 0;
        slot = strtol(c->target, &end, 10);
        if (errno || end == c->target || *end || slot < INT_MIN || slot > INT_MAX) {
            json_decref(req);
            *code = mv_cli_usage_error(mv_cli_find("workers"),
                                       "workers: N is a number of workers (1, 2, ...), not ",
                                       c->target);
            return NULL;
        }
        json_object_set_new(req, "n", json_integer(slot));
        return req;
    }
    if (strcmp(c->target, "all") == 0) {
        json_object_set_new(req, "slot", json_string("all"));
        return req;
    }
    errno = 0;
    slot = strtol(c->target, &end, 10);
    if (errno || end == c->target || *end || slot < 1 || slot > INT_MAX) {
        json_decref(req);
        *code = mv_cli_usage_error(mv_cli_find("recycle"),
                                   "recycle: SLOT is a worker number (1, 2, ...) or all, not ",
                                   c->target);
        return NULL;
    }
    json_object_set_new(req, "slot", json_integer(slot));
    return req;
}

/* The socket path: --socket, else the configuration's. -1, or an exit code after saying why. */
static int socket_path(const ctl_cli_t *c, char *out, size_t cap)
{
    mv_config_t cfg;
    int r;

    if (c->socket) {
        if (strlen(c->socket) >= cap) {
            fprintf(stderr, "memvisor: control socket path %s is too long\n", c->socket);
            return MV_EXIT_USAGE;
        }
        strcpy(out, c->socket);
        return -1;
    }
    r = mv_config_build_or_say(&cfg, c->config, c->overrides, c->noverrides, stderr);
    if (r < 0) {
        /* said */
    } else if ((r = mv_control_path(&cfg, out, cap)) == -ENOENT) {
        fprintf(stderr, "memvisor: [control] socket is none: this configuration has no control "
                        "socket (give one with --socket PATH)\n");
    } else if (r < 0) {
        fprintf(stderr, "memvisor: the control socket path (from [control] socket or "
                        "[supervisor] state_dir) is too long for a Unix socket\n");
    }
    mv_config_free(&cfg);
    return r == -ENOMEM ? MV_EXIT_CANT_RUN : r < 0 ? MV_EXIT_USAGE : -1;
}

/* Waits until fd is ready for `ev` or the deadline passes. 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = ev};
    uint64_t now;
    int r;

    for (;;) {
        now = mv_now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        r = poll(&p, 1, (int)MV_MIN(deadline - now, (uint64_t)INT_MAX));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static int connect_to(const char *path, uint64_t deadline, char *why, size_t n)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len = sizeof(int);
    struct stat st;
    int fd, r, err = 0;

    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(why, n, "control socket path %s is too long for a Unix socket", path);
        return -ENAMETOOLONG;
    }
    if (!*path) { /* an all-zero sun_path names an abstract socket, not no path */
        snprintf(why, n, "the control socket path is empty");
        return -EINVAL;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        snprintf(why, n, "socket() failed: %s", strerror(-r));
        return r;
    }
    /* A full backlog (a burst of other clients) is EAGAIN on a Unix socket, not a wait:
     * try again until the deadline. */
    while ((r = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : -errno) == -EAGAIN &&
           mv_now_ms() + 10 < deadline)
        poll(NULL, 0, 10);
    if (r == -EINPROGRESS && (r = wait_fd(fd, POLLOUT, deadline)) == 0)
        r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ? -errno : -err;
    if (r == 0)
        return fd;
    close(fd);
    if (r == -ENOENT)
        snprintf(why, n,
                 "no control socket at %s: is memvisor running with this "
                 "configuration?",
                 path);
    else if (r == -ECONNREFUSED && lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
        snprintf(why, n, "%s is not a socket: give the path of memvisor's control socket", path);
    else if (r == -ECONNREFUSED)
        snprintf(why, n, "nobody listens on %s: memvisor is not running (a stale socket)", path);
    else if (r == -EAGAIN)
        snprintf(why, n, "memvisor does not accept connections on %s (backlog full)", path);
    else
        snprintf(why, n, "cannot connect to %s: %s", path, strerror(-r));
    return r;
}

/* Sends the request line and reads one reply line. 0 with *reply set, or -errno with why. */
static int exchange(const char *path, const json_t *req, json_t **reply, char *why, size_t n)
{
    uint64_t deadline = mv_now_ms() + MV_CONTROL_CTL_MS;
    char *line = json_dumps(req, JSON_COMPACT);
    mv_buf_t in = {0};
    size_t len = line ? strlen(line) : 0, off = 0;
    json_error_t je;
    char *nl = NULL;
    int fd, r = 0;

    *reply = NULL;
    if (!line) {
        snprintf(why, n, "out of memory");
        return -ENOMEM;
    }
    line[len++] = '\n'; /* over the NUL: sent by length */
    fd = connect_to(path, deadline, why, n);
    if (fd < 0) {
        free(line);
        return fd;
    }
    while (r == 0 && off < len) {
        ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL);

        if (w >= 0)
            off += (size_t)w;
        else if (errno == EAGAIN)
            r = wait_fd(fd, POLLOUT, deadline);
        else if (errno == EPIPE || errno == ECONNRESET)
            break; /* refused at once (another uid, too many connections): the reason is in */
        else if (errno != EINTR)
            r = -errno;
    }
    while (r == 0 && !nl) {
        ssize_t got;

        if (mv_buf_unread(&in) > MAX_REPLY) {
            r = -EMSGSIZE;
        } else if ((r = mv_buf_reserve(&in, 65536)) == 0) {
            got = recv(fd, in.data + in.len, in.cap - in.len, 0);
            if (got > 0) {
                nl = memchr(in.data + in.len, '\n', (size_t)got);
                in.len += (size_t)got;
            } else if (got == 0) {
                r = -ECONNRESET;
            } else if (errno == EAGAIN) {
                r = wait_fd(fd, POLLIN, deadline);
            } else if (errno != EINTR) {
                r = -errno;
            }
        }
    }
    close(fd);
    free(line);
    if (r == 0) {
        *reply = json_loadb((const char *)in.data, (size_t)(nl - (char *)in.data), 0, &je);
        if (!*reply)
            snprintf(why, n, "bad reply from %s: %s", path, je.text);
        else if (!json_is_object(*reply) || !json_is_boolean(json_object_get(*reply, "ok")))
            snprintf(why, n, "bad reply from %s: not an object with a boolean \"ok\"", path);
        else
            goto out;
        json_decref(*reply);
        *reply = NULL;
        r = -EPROTO;
    } else if (r == -ETIMEDOUT) {
        snprintf(why, n, "no reply from %s within %d s", path, MV_CONTROL_CTL_MS / 1000);
    } else if (r == -ECONNRESET) {
        snprintf(why, n, "%s closed the connection without a reply", path);
    } else if (r == -EMSGSIZE) {
        snprintf(why, n, "bad reply from %s: longer than %d bytes", path, MAX_REPLY);
    } else {
        snprintf(why, n, "talking to %s: %s", path, strerror(-r));
    }
out:
    mv_buf_free(&in);
    return r;
}

/* ---- printing for people --------------------------------------------------------------- */

/* A duration in seconds the short way: 0.4s, 12s, 3m12s, 2h05m, 3d04h; "-" when unknown. */
static void fmt_secs(const json_t *v, double scale, char out[24])
{
    double s = json_is_number(v) ? json_number_value(v) * scale : -1;
    long long t = (long long)s;

    if (!json_is_number(v) || !(s >= 0) || s > 1e15)
        snprintf(out, 24, "-");
    else if (s < 10)
        snprintf(out, 24, "%.1fs", s);
    else if (t < 60)
        snprintf(out, 24, "%llds", t);
    else if (t < 3600)
        snprintf(out, 24, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(out, 24, "%lldh%02lldm", t / 3600, t % 3600 / 60);
    else
        snprintf(out, 24, "%lldd%02lldh", t / 86400, t % 86400 / 3600);
}

static void fmt_size(const json_t *v, char out[24])
{
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        mv_fmt_bytes(json_integer_value(v), out);
    else
        snprintf(out, 24, "-");
}

/* An integer, a string or a boolean as text; "-" for anything else. */
static void fmt_val(const json_t *v, char *out, size_t n)
{
    if (json_is_integer(v))
        snprintf(out, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, n, "%g", json_real_value(v));
    else if (json_is_string(v))
        snprintf(out, n, "%s", json_string_value(v));
    else if (json_is_boolean(v))
        snprintf(out, n, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(out, n, "-");
}

/* A limit: "off" when 0. */
static void fmt_limit(const json_t *v, int kind, char out[24])
{
    if (json_is_integer(v) && json_integer_value(v) == 0)
        snprintf(out, 24, "off");
    else if (kind == 's')
        fmt_size(v, out);
    else if (kind == 't')
        fmt_secs(v, 0.001, out);
    else
        fmt_val(v, out, 24);
}

static void print_header(json_t *reply, FILE *out)
{
    json_t *run = json_object_get(reply, "run"), *lim = json_object_get(reply, "limits");
    char id[128], pid[24], mode[24], up[24], cg[24], rl[24], cfg[512], soft[24], hard[24],
        tasks[24], life[24];

    fmt_val(json_object_get(run, "id"), id, sizeof id);
    fmt_val(json_object_get(run, "pid"), pid, sizeof pid);
    fmt_val(json_object_get(run, "mode"), mode, sizeof mode);
    fmt_secs(json_object_get(run, "uptime_s"), 1, up);
    fmt_val(json_object_get(run, "cgroup"), cg, sizeof cg);
    fmt_val(json_object_get(run, "reloads"), rl, sizeof rl);
    fmt_val(json_object_get(run, "config"), cfg, sizeof cfg);
    fmt_limit(json_object_get(lim, "memory_soft"), 's', soft);
    fmt_limit(json_object_get(lim, "memory_hard"), 's', hard);
    fmt_limit(json_object_get(lim, "max_tasks"), 'n', tasks);
    fmt_limit(json_object_get(lim, "max_lifetime_ms"), 't', life);
    fprintf(out, "run %s  pid %s  %s  up %s  cgroup %s  config %s  reloads %s\n", id, pid, mode, up,
            cg, cfg, rl);
    fprintf(out, "limits: memory_soft %s  memory_hard %s  max_tasks %s  max_lifetime %s\n", soft,
            hard, tasks, life);
}

/* A worker's STATE cell: its state, or draining(REASON) while it is being recycled. */
static void fmt_state(json_t *w, char *out, size_t n)
{
    const char *st = json_string_value(json_object_get(w, "state"));
    const char *why = json_string_value(json_object_get(w, "reason"));

    if (!st)
        st = "-";
    if (!json_is_true(json_object_get(w, "recycling"))) {
        snprintf(out, n, "%s", st);
        return;
    }
    /* Still alive and finishing its task: that is draining, whatever the pool calls it. */
    if (strcmp(st, "ready") == 0 || strcmp(st, "busy") == 0 || strcmp(st, "-") == 0)
        st = "draining";
    snprintf(out, n, "%s(%s)", st, why ? why : "?");
}

/* One row of the workers table; a spare (slot 0) has no slot yet: "-" (its state says spare). */
static void print_row(json_t *w, FILE *out)
{
    char slot[24], gen[24], pid[24], state[64], age[24], tasks[24], mem[24], peak[24], task[24],
        task_s[24], current[56] = "-";

    fmt_val(json_object_get(w, "slot"), slot, sizeof slot);
    if (json_is_integer(json_object_get(w, "slot")) &&
        json_integer_value(json_object_get(w, "slot")) == 0)
        snprintf(slot, sizeof slot, "-");
    fmt_val(json_object_get(w, "gen"), gen, sizeof gen);
    fmt_val(json_object_get(w, "pid"), pid, sizeof pid);
    fmt_state(w, state, sizeof state);
    fmt_secs(json_object_get(w, "age_s"), 1, age);
    fmt_val(json_object_get(w, "tasks"), tasks, sizeof tasks);
    fmt_size(json_object_get(w, "mem"), mem);
    fmt_size(json_object_get(w, "peak"), peak);
    if (json_is_integer(json_object_get(w, "task"))) {
        fmt_val(json_object_get(w, "task"), task, sizeof task);
        fmt_secs(json_object_get(w, "task_s"), 1, task_s);
        snprintf(current, sizeof current, "%s for %s", task, task_s);
    }
    fprintf(out, "%4s %4s %8s  %-24s %8s %8s %10s %10s  %s\n", slot, gen, pid, state, age, tasks,
            mem, peak, current);
}

/* The warm template, as one more row: FORKS in the TASKS column. */
static void print_template(json_t *t, FILE *out)
{
    char gen[24], pid[24], state[64], age[24], forks[24], mem[24], peak[24];

    if (!json_is_object(t))
        return;
    fmt_val(json_object_get(t, "gen"), gen, sizeof gen);
    fmt_val(json_object_get(t, "pid"), pid, sizeof pid);
    fmt_val(json_object_get(t, "state"), state, sizeof state);
    if (json_is_true(json_object_get(t, "fallback")))
        snprintf(state, sizeof state, "given up: exec");
    fmt_secs(json_object_get(t, "age_s"), 1, age);
    fmt_val(json_object_get(t, "forks"), forks, sizeof forks);
    fmt_size(json_object_get(t, "mem"), mem);
    fmt_size(json_object_get(t, "peak"), peak);
    fprintf(out, "%4s %4s %8s  %-24s %8s %8s %10s %10s\n", "tmpl", gen, pid, state, age, forks, mem,
            peak);
}

static void print_workers(json_t *reply, FILE *out)
{
    json_t *ws = json_object_get(reply, "workers"), *w;
    size_t i;

    fprintf(out, "%4s %4s %8s  %-24s %8s %8s %10s %10s  %s\n", "SLOT", "GEN", "PID", "STATE", "AGE",
            "TASKS", "MEM", "PEAK", "TASK");
    json_array_foreach(ws, i, w)
    {
        print_row(w, out);
    }
    if (json_array_size(ws) == 0)
        fprintf(out, "(no workers)\n");
    json_array_foreach(json_object_get(reply, "spares"), i, w)
    {
        print_row(w, out);
    }
    json_array_foreach(json_object_get(reply, "successors"), i, w)
    {
        print_row(w, out);
    }
    print_template(json_object_get(reply, "template"), out);
}

static void print_totals(json_t *reply, FILE *out)
{
    json_t *t = json_object_get(reply, "totals"), *rec = json_object_get(t, "recycles"), *v;
    char w[24], tasks[24], sus[24], q[24], fl[24], why[512] = "";
    long long sum = 0;
    const char *k;
    size_t used = 0;

    fmt_val(json_object_get(t, "workers"), w, sizeof w);
    fmt_val(json_object_get(t, "tasks"), tasks, sizeof tasks);
    fmt_val(json_object_get(t, "suspects"), sus, sizeof sus);
    fmt_val(json_object_get(t, "queue"), q, sizeof q);
    fmt_val(json_object_get(t, "in_flight"), fl, sizeof fl);
    json_object_foreach(rec, k, v)
    {
        sum += json_integer_value(v);
        if (used < sizeof why)
            used += (size_t)snprintf(why + used, sizeof why - used, "%s%s %lld", used ? ", " : "",
                                     k, (long long)json_integer_value(v));
    }
    fprintf(out, "totals: %s workers, %s tasks, ", w, tasks);
    if (json_is_object(rec))
        fprintf(out, "%lld recycles%s%s%s, ", sum, used ? " (" : "", why, used ? ")" : "");
    else
        fprintf(out, "- recycles, ");
    fprintf(out, "%s suspects, queue %s, in flight %s\n", sus, q, fl);
}

/* A shared task stream: what waits in it, what some memvisor runs, what this one holds. */
static void print_source(json_t *reply, FILE *out)
{
    json_t *src = json_object_get(reply, "source");
    char waiting[24], pending[24], held[24], age[24];

    if (!json_is_object(src))
        return;
    fmt_val(json_object_get(src, "waiting"), waiting, sizeof waiting);
    fmt_val(json_object_get(src, "pending"), pending, sizeof pending);
    fmt_val(json_object_get(src, "held"), held, sizeof held);
    fmt_secs(json_object_get(src, "as_of_s"), 1, age);
    fprintf(out,
            "stream: %s group %s%s: %s waiting, %s pending (running somewhere), %s held here; "
            "as of %s ago\n",
            json_string_value(json_object_get(src, "url")),
            json_string_value(json_object_get(src, "group")),
            json_is_true(json_object_get(src, "connected")) ? "" : " (DISCONNECTED)", waiting,
            pending, held, age);
}

/* "dispatch: paused (host_memory; ...)" while new tasks are held back; nothing otherwise. */
static void print_dispatch(json_t *reply, FILE *out)
{
    json_t *d = json_object_get(reply, "dispatch"), *v;
    char avail[24], thr[24], why[128] = "";
    size_t i, used = 0;

    if (!json_is_true(json_object_get(d, "paused")))
        return;
    json_array_foreach(json_object_get(d, "reasons"), i, v)
    {
        if (used < sizeof why)
            used += (size_t)snprintf(why + used, sizeof why - used, "%s%s", used ? ", " : "",
                                     json_string_value(v) ? json_string_value(v) : "?");
    }
    fmt_size(json_object_get(d, "host_available"), avail);
    fmt_size(json_object_get(d, "host_threshold"), thr);
    fprintf(out, "dispatch: paused (%s); host memory available %s, threshold %s\n", why, avail,
            thr);
}

/* An integer of a reply, or `unknown` when it is absent or null. */
static int64_t int_or(json_t *o, const char *key, int64_t unknown)
{
    json_t *v = json_object_get(o, key);

    return json_is_integer(v) ? (int64_t)json_integer_value(v) : unknown;
}

/* A number of a reply, or -1 when it is absent or null. */
static double num_or(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    return json_is_number(v) ? json_number_value(v) : -1;
}

/* The batch's progress, as the live line on memvisor's terminal shows it (progress.h). */
static void print_progress(json_t *reply, FILE *out)
{
    json_t *pg = json_object_get(reply, "progress"), *top = json_object_get(pg, "top");
    char line[512];
    mv_progress_t p = {
        .done = (uint64_t)int_or(pg, "done", 0),
        .ok = (uint64_t)int_or(pg, "ok", 0),
        .failed = (uint64_t)int_or(pg, "failed", 0),
        .quarantined = (uint64_t)int_or(pg, "quarantined", 0),
        .total = int_or(pg, "total", -1),
        .queue = int_or(pg, "queue", -1),
        .in_flight = (uint64_t)int_or(pg, "in_flight", 0),
        .rate = num_or(pg, "rate"),
        .eta_s = num_or(pg, "eta_s"),
        .busy = (int)int_or(pg, "busy", 0),
        .workers = (int)int_or(pg, "workers", 0),
        .recycles = (uint64_t)int_or(pg, "recycles", 0),
        .top_slot = (int)int_or(top, "slot", 0),
        .top_mem = int_or(top, "mem", -1),
        .top_soft = int_or(top, "memory_soft", 0),
        .top_hard = int_or(top, "memory_hard", 0),
    };

    if (!json_is_object(pg))
        return;
    mv_progress_format(&p, line, sizeof line);
    fprintf(out, "progress: %s\n", line);
}

/* The strings of an array, space-separated, after `label`; nothing when absent. */
static void print_list(json_t *reply, const char *key, const char *label, FILE *out)
{
    json_t *a = json_object_get(reply, key), *v;
    size_t i;

    if (!json_is_array(a))
        return;
    fputs(label, out);
    json_array_foreach(a, i, v)
    {
        char s[256];

        fmt_val(v, s, sizeof s);
        fprintf(out, " %s", s);
    }
    if (json_array_size(a) == 0)
        fputs(" (none)", out);
    fputc('\n', out);
}

void mv_ctl_print(const char *cmd, json_t *reply, FILE *out)
{
    const char *s;
    char *dump;

    if (strcmp(cmd, "status") == 0) {
        print_header(reply, out);
        print_workers(reply, out);
        print_totals(reply, out);
        print_source(reply, out);
        print_dispatch(reply, out);
        print_progress(reply, out);
    } else if (strcmp(cmd, "metrics") == 0) {
        s = json_string_value(json_object_get(reply, "text"));
        fputs(s ? s : "-\n", out);
        if (s && *s && s[strlen(s) - 1] != '\n')
            fputc('\n', out);
    } else if (strcmp(cmd, "recycle") == 0) {
        print_list(reply, "workers", "recycling workers", out);
        if (!json_is_array(json_object_get(reply, "workers")))
            fputs("recycling workers -\n", out);
    } else if (strcmp(cmd, "reload") == 0) {
        s = json_string_value(json_object_get(reply, "message"));
        fprintf(out, "%s\n", s ? s : "reloaded");
        print_list(reply, "changed", "changed:", out);
        print_list(reply, "restart_needed", "restart needed:", out);
    } else if (strcmp(cmd, "stop") == 0) {
        fputs("stopping\n", out);
    } else if (strcmp(cmd, "workers") == 0) {
        s = json_string_value(json_object_get(reply, "message"));
        fprintf(out, "%s\n", s ? s : "scaled");
    } else if ((dump = json_dumps(reply, JSON_COMPACT))) {
        fprintf(out, "%s\n", dump);
        free(dump);
    }
}

/* ---- main ------------------------------------------------------------------------------ */

/* After "no control socket at PATH": where the memvisor meant may be instead. */
static void where_else(const ctl_cli_t *c, const char *path)
{
    static const char service[] = "/run/memvisor/control.sock"; /* the installed unit's */
    struct stat st;

    if (!c->config && !c->socket)
        fprintf(stderr, "  (a memvisor started with -c FILE is found with the same -c FILE)\n");
    if (strcmp(path, service) != 0 && stat(service, &st) == 0 && S_ISSOCK(st.st_mode))
        fprintf(stderr, "  (the installed service's socket is %s: --socket %s)\n", service,
                service);
}

int mv_ctl_main(int argc, char **argv)
{
    ctl_cli_t c = {0};
    json_t *req = NULL, *reply = NULL;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)], why[1024], *dump;
    int code;

    c.overrides = calloc((size_t)argc, sizeof *c.overrides);
    if (!c.overrides)
        return MV_EXIT_CANT_RUN;
    if ((code = parse_cli(argc, argv, &c)) >= 0 || !(req = build_request(&c, &code)) ||
        (code = socket_path(&c, path, sizeof path)) >= 0)
        goto out;
    if ((code = exchange(path, req, &reply, why, sizeof why)) < 0) {
        fprintf(stderr, "memvisor %s: %s\n", c.cmd, why);
        if (code == -ENOENT)
            where_else(&c, path);
        code = MV_EXIT_CANT_RUN;
        goto out;
    }
    if (c.json && (dump = json_dumps(reply, JSON_INDENT(2)))) {
        printf("%s\n", dump);
        free(dump);
    }
    if (json_is_false(json_object_get(reply, "ok"))) {
        const char *e = json_string_value(json_object_get(reply, "error"));

        fprintf(stderr, "memvisor: %s\n", e ? e : "(the reply names no error)");
        code = 1;
        goto out;
    }
    if (!c.json)
        mv_ctl_print(c.cmd, reply, stdout);
    code = fflush(stdout) == 0 ? MV_EXIT_OK : MV_EXIT_CANT_RUN;
out:
    json_decref(req);
    json_decref(reply);
    free(c.overrides);
    return code;
}
