/*
 * addr: the socket addresses a configuration names, parsed without touching the network, so
 * that `memvisor check` and the config loader can refuse a bad one before anything binds:
 *   [NAME=]HOST:PORT   IPv4 address or host name; port 0 = any free port
 *   [NAME=][V6]:PORT   IPv6 address in brackets
 *   [NAME=]unix:PATH   unix stream socket (an absolute path)
 * Pure; listen.c binds what it parses.
 */
#ifndef MV_ADDR_H
#define MV_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#define MV_ADDR_NAME 64 /* systemd's FDNAME limit is 255; ours is shorter */
#define MV_ADDR_MAX  16 /* addresses one list may hold */

/* One parsed address. */
typedef struct mv_addr {
    char name[MV_ADDR_NAME]; /* "listen" unless the word names it */
    bool is_unix;
    char host[256]; /* tcp: without brackets */
    char port[8];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} mv_addr_t;

/* Parses one word. 0, or -1 with `why`. */
int mv_addr_parse(const char *word, mv_addr_t *a, char *why, size_t cap);
/* Calls fn for each space-separated word of spec; stops at the first failure (-1). */
int mv_addr_each(const char *spec, int (*fn)(const char *word, void *arg), void *arg);
/* One numeric IPV4:PORT or [IPV6]:PORT (no name, no unix socket) into *sa (may be NULL: a
 * check only). 0, or -1 with `why`. */
int mv_addr_numeric(const char *word, struct sockaddr_storage *sa, char *why, size_t cap);
/* Checks a space-separated list of at most `max` addresses. 0, or -1 with `why`. */
int mv_addr_check(const char *spec, int max, char *why, size_t cap);

#endif
