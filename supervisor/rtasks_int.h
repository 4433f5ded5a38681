/*
 * rtasks_int: what the two halves of the Redis task source share (rtasks.c: the stream, the
 * connection, reading and claiming; rheld.c: each entry held, from taken to let go). Private
 * to those two files.
 *
 * Each stream entry this memvisor holds has a `held` record, from the moment it is read until
 * Redis has answered the script that lets it go (finish, readd, bad). A held record keeps the
 * formatted script call, so that a call whose reply was lost with the connection is sent
 * again after the reconnect: the scripts are idempotent (rscript.h), so a second run does
 * nothing twice.
 */
#ifndef MV_RTASKS_INT_H
#define MV_RTASKS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "rconn.h"
#include "rscript.h"
#include "rtasks.h"
#include "rurl.h"

struct redisReply;

#define KEY_MAX    (MV_RURL_STREAM_MAX + 16)
#define ROUTED_MAX (MV_RURL_STREAM_MAX + 32) /* STREAM:need:LIMIT */

typedef enum { H_TAKEN, H_WAIT_FILE, H_SEND, H_SENT } hstate_t;
typedef enum { OP_NONE, OP_FINISH, OP_READD, OP_BAD, OP_ROUTE } hop_t;

typedef struct mv_rtasks mv_rtasks_t;

typedef struct held {
    struct held *next, *prev;
    mv_rtasks_t *rt;
    char eid[48];                /* the stream entry */
    char stream[ROUTED_MAX + 1]; /* its stream: the task stream, or a routed one */
    uint64_t task_id;            /* for the log */
    mv_task_t *task; /* H_TAKEN: queued here or in a worker; OP_ROUTE: kept (owned) until
                      * Redis says where it went */
    uint16_t nhist0; /* attempts on record when taken: more at a requeue = it lost one */
    hstate_t state;
    hop_t op;
    bool gone;       /* another memvisor owns the entry now */
    bool quarantine; /* finish: of a quarantined task */
    char *cmd;       /* the script call that lets the entry go */
    size_t cmdlen;
    uint64_t seq; /* H_WAIT_FILE: the result's number in this run's results file */
    char *msg;    /* what task->bad points at (quarantined on arrival) */
} held_t;

typedef struct setup_slot {
    mv_rtasks_t *rt;
    int i; /* script, or MV_RS_COUNT = XGROUP CREATE, MV_RS_COUNT + 1 = AUTH */
} setup_slot_t;

struct mv_rtasks {
    mv_tasks_t *t;
    uv_loop_t *loop;
    mv_log_t *log;
    mv_rconn_t conn;
    mv_rurl_t url;
    char name[512];
    char results_stream[MV_RURL_STREAM_MAX + 1]; /* "" = none */
    char done_key[KEY_MAX], quar_key[KEY_MAX], need_key[KEY_MAX], hosts_key[KEY_MAX];
    char esc_key[KEY_MAX]; /* STREAM:escalated (rheld.c, mv__rt_escalated) */
    int64_t ceiling;       /* the highest hard limit this memvisor gives a task */
    char ceiling_s[24];    /* ...in decimal */
    int64_t routed;        /* routed streams (stat), and entries in them */
    int64_t routed_len;
    bool routed_fresh; /* the routed streams were read since the last read of the stream */
    char group[128], consumer[160], host[64];
    int64_t claim_idle, retry_ms;
    bool follow;
    int capacity, max_attempts;
    char sha[MV_RS_COUNT][48];
    setup_slot_t slots[MV_RS_COUNT + 2];
    int setup_left;
    bool setup_failed;
    bool ready; /* connected, scripts loaded, group made */
    unsigned ups;
    uint64_t down_since; /* 0 = up */
    bool down_said;      /* this outage was logged */
    held_t *held;
    uint64_t nheld;
    int64_t reading, claiming; /* tasks asked for by the read or claim in flight */
    int64_t routing;           /* ...by the routed read in flight */
    int refreshing;
    bool stating;
    char cursor[64];
    uint64_t last_eid[2]; /* the last new entry read (ms, seq) */
    uv_timer_t tick, poll, bound;
    int handles; /* of those three, open */
    int64_t poll_ms;
    bool poll_wait;
    int64_t length, pending;
    uint64_t stat_ms;
    mv_results_t *results;
    bool wait_file;
    bool closing, conn_closing, gave_up;
    uint64_t taken, claimed, readded, released, finished, duplicates, routed_out, routed_in;
};

/* rheld.c */
held_t *mv__rt_held_new(mv_rtasks_t *rt, const char *stream, const char *eid);
void mv__rt_held_free(mv_rtasks_t *rt, held_t *h);
/* stream NULL = the task stream */
held_t *mv__rt_held_find(mv_rtasks_t *rt, const char *stream, const char *eid);
/* An entry read, claimed or found pending here becomes a task in the queue. */
void mv__rt_take(mv_rtasks_t *rt, const mv_rgot_t *g);
/* Sends the held entry's script (or keeps it for the reconnect). */
void mv__rt_send(mv_rtasks_t *rt, held_t *h);
void mv__rt_readd(mv_rtasks_t *rt, held_t *h, mv_task_t *t);
bool mv__rt_requeue(mv_tasks_t *t, mv_task_t *task);
bool mv__rt_route(mv_tasks_t *t, mv_task_t *task);
void mv__rt_escalated(mv_tasks_t *t, mv_task_t *task);
void mv__rt_end(mv_tasks_t *t, mv_task_t *task, const mv_result_t *res);
void mv__rt_written(void *arg, uint64_t lines, bool closed);

/* rtasks.c */
void mv__rt_fatal(mv_rtasks_t *rt, const char *what, const char *err);
void mv__rt_error(mv_rtasks_t *rt, const char *what, const struct redisReply *r);
bool mv__rt_is_error(const struct redisReply *r);
void mv__rt_stat(mv_rtasks_t *rt);
void mv__rt_maybe_close(mv_rtasks_t *rt);

#endif
