/*
 * handoff_exec: hands memvisor a template it did not start, as memvisor.Pool does
 * (supervisor/handoff.h): forks TEMPLATE (its channel on fd 3, its output on a pipe, the
 * parent-death signal armed), then execs MEMVISOR with $MEMVISOR_TEMPLATE_HANDOFF naming the
 * template's pidfd, our end of its channel and its output's read end. exec keeps children: the
 * template is memvisor's child.
 *
 *   handoff_exec [-x CODE] [-e VALUE] TEMPLATE [ARG]... -- MEMVISOR [ARG]...
 *
 * -x CODE: the template exits with CODE at once (a template that dies at adoption).
 * -e VALUE: no template; $MEMVISOR_TEMPLATE_HANDOFF=VALUE as given (a bad handoff).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void template(char **argv, int ctl, int out, pid_t parent, int code)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent || null < 0)
        _exit(125);
    if (code >= 0)
        _exit(code);
    setsid();
    if (dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0 || dup2(ctl, 3) < 0)
        _exit(125);
    setenv("MEMVISOR_FD", "3", 1);
    setenv("MEMVISOR_SLOT", "0", 1);
    execvp(argv[0], argv);
    _exit(127);
}

int main(int argc, char **argv)
{
    int opt, code = -1, ctl[2], out[2], sep, pidfd;
    const char *value = NULL;
    char text[64];
    pid_t pid;

    while ((opt = getopt(argc, argv, "+x:e:")) != -1) {
        if (opt == 'x')
            code = atoi(optarg);
        else if (opt == 'e')
            value = optarg;
        else
            return 2;
    }
    for (sep = optind; sep < argc && strcmp(argv[sep], "--") != 0; sep++)
        ;
    if (sep + 1 >= argc) {
        fprintf(stderr, "usage: handoff_exec [-x CODE] [-e VALUE] TEMPLATE... -- MEMVISOR...\n");
        return 2;
    }
    argv[sep] = NULL;
    if (value) {
        setenv("MEMVISOR_TEMPLATE_HANDOFF", value, 1);
    } else {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0 ||
            pipe2(out, O_CLOEXEC) < 0)
            return 125;
        pid = fork();
        if (pid < 0)
            return 125;
        if (pid == 0)
            template(argv + optind, ctl[1], out[1], getppid(), code);
        pidfd = pidfd_open(pid, 0);
        if (pidfd < 0)
            return 125;
        close(ctl[1]);
        close(out[1]);
        /* Inherited across the exec (no close-on-exec on what dup makes). */
        snprintf(text, sizeof text, "%d,%d,%d", dup(pidfd), dup(ctl[0]), dup(out[0]));
        setenv("MEMVISOR_TEMPLATE_HANDOFF", text, 1);
    }
    execvp(argv[sep + 1], argv + sep + 1);
    perror("handoff_exec: exec");
    return 127;
}
