/*
 * listen: the sockets of a service, bound once by memvisor and handed to every worker by the
 * systemd convention (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES; fds from 3), so that a recycle
 * never closes a listening socket and any socket-activation-aware server works unchanged.
 *
 * `[service] listen` holds space-separated addresses, each optionally named:
 *   [NAME=]HOST:PORT   IPv4 address or host name; port 0 = any free port (logged)
 *   [NAME=][V6]:PORT   IPv6 address in brackets
 *   [NAME=]unix:PATH   unix stream socket (a stale socket file is replaced)
 * When memvisor is itself started by socket activation, it passes on the sockets it received
 * (with their names) and binds none of its own.
 */
#ifndef MV_LISTEN_H
#define MV_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

#include "addr.h"

#define MV_LISTEN_MAX  MV_ADDR_MAX
#define MV_LISTEN_NAME MV_ADDR_NAME

typedef struct mv_listener {
    int fd;
    char name[MV_LISTEN_NAME]; /* LISTEN_FDNAMES entry */
    char addr[128];            /* as bound: 127.0.0.1:43817, [::1]:80, unix:/run/x.sock */
    char *unix_path;           /* a unix socket file we made, removed at close */
} mv_listener_t;

typedef struct mv_listen {
    mv_listener_t l[MV_LISTEN_MAX];
    int n;
    bool inherited; /* received by socket activation */
} mv_listen_t;

/* Takes the sockets of socket activation (LISTEN_PID = our pid), else binds `spec`; logs each
 * address (`event=listen`). 0, or -1 with `why` filled (nothing left open). */
int mv_listen_open(mv_listen_t *ls, const char *spec, int backlog, mv_log_t *log, char *why,
                   size_t cap);

/* "name1:name2:..." for LISTEN_FDNAMES. */
void mv_listen_names(const mv_listen_t *ls, char *out, size_t cap);

/* Whether "NAME=value" is a socket-activation variable, never passed on as it is. */
bool mv_listen_env_private(const char *entry);

void mv_listen_close(mv_listen_t *ls);

#endif
