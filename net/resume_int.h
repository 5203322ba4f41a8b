/* resume_int: what the parts of resumable runs share; nothing else includes
 * it. net/resume.c: producers, followers, the shard module; net/resume_log.c:
 * the table of logs and their lifetimes (sweeps, expiry, the process-wide
 * bound); net/resume_http.c: the reattach and cancel endpoints;
 * net/runlog_redis.c: a cancel another pod asked for. */
#ifndef AGATE_RESUME_INT_H
#define AGATE_RESUME_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/list.h"
#include "core/shard.h"
#include "core/timer.h"
#include "net/runlog.h"
#include "proto/run.h"

#define RS_ID_MAX     128
#define RS_MASK_WORDS 16            /* shards that can follow a log: 1024 */

enum { RS_LIVE, RS_EXPIRED };

/* One resumable run's log. Owned by the shard that runs its producer
 * (`owner`), which alone appends, ends, cancels, expires and frees it; other
 * shards reach it through the table and then only as followers, or to set
 * `cancel`. It is on exactly one of its owner's lists (running, ended, tombs). */
typedef struct rs_log {
    struct rs_log   *hnext;         /* table chain, under the table's lock */
    _Atomic bool     in_table;      /* written under the table's lock */
    _Atomic uint8_t  phase;         /* RS_LIVE, RS_EXPIRED (chunks freed: 410) */
    _Atomic uint32_t followers;     /* changed under the table's lock when it goes up */
    _Atomic bool     started;       /* the producer's stream head: followers may start theirs */
    _Atomic bool     cancel;        /* DELETE: the owner cancels at its next turn end */
    _Atomic uint64_t mask[RS_MASK_WORDS];   /* shards with a follower (the owner's first excepted) */
    runlog_t         log;
    char             run_id[RS_ID_MAX];
    uint16_t         run_id_len;
    uint64_t         hash;
    char             token[33];
    uint8_t          who[16];
    bool             who_set;
    char             agent[CFG_NAME_MAX];
    char             head[256];     /* head lines for every follower's start, written before `started` */
    int              status;        /* a failure before the head, written before the log's state */
    uint32_t         retry_after_s; /* with it: a limit's Retry-After */
    char             code[40], msg[200];
    unsigned         owner;
    void            *rsx;           /* the owner's: its Redis Stream writer (net/runlog_redis.h), or NULL */
    /* the owner's */
    struct run      *producer;      /* NULL once it ended */
    struct run      *local;         /* the first follower on the owner's shard: pumped directly, waited for */
    uint64_t         end_ms, detached_ms;
    uint32_t         ttl_ms, detach_ms;
    bool             dirty;
    list_t           link;          /* the owner's running, ended or tombs list */
    list_t           dirty_link;
} rs_log_t;

typedef struct rs_shard {
    _Atomic bool  pending;          /* a followed log moved on */
    _Atomic bool  sweep_now;        /* a log of ours was asked to cancel */
    list_t        followers;        /* rs_run_t.link */
    list_t       *poll_next;
    list_t        running;          /* logs whose producer runs (rs_log_t.link) */
    list_t        ended;            /* ended, chunks kept, in the order they ended */
    list_t        tombs;            /* expired: chunks freed, a reattach is 410 */
    uint64_t      full_sweep_ms;    /* the next sweep of the whole ended and tombs lists */
    list_t        dirty;            /* rs_log_t.dirty_link */
    agate_timer_t sweep;
    buf_t         tmp;              /* an agate-built event's JSON */
    shard_t      *sh;
} rs_shard_t;

extern unsigned g_rs_mod;
static inline rs_shard_t *rs_shard(const shard_t *sh) { return (rs_shard_t *)sh->mod[g_rs_mod]; }

/* --- resume_log.c: the table and the lifetimes --------------------------------------- */

/* A new log for agent ag's run with run id (idn < RS_ID_MAX), owned by sh,
 * counted against resume.max_bytes; NULL without memory. Not in the table. */
rs_log_t *rs_log_new(shard_t *sh, const cfg_agent_t *ag, const char *id, size_t idn);
/* Puts lg in the table with one follower (its first client), replacing the
 * same caller's log under that id: 0, or -EEXIST when another caller's log
 * has it (lg is then freed). */
int       rs_log_publish(rs_log_t *lg);
/* The owner: lg's producer ended (end_ms set): it moves to the ended list. */
void      rs_log_ended(rs_log_t *lg, shard_t *sh);
/* The owner: lg goes on the running (producer set) or ended list, swept. */
void      rs_log_own(rs_log_t *lg, shard_t *sh);
void      rs_sweep(shard_t *sh);
void      rs_sweep_arm(shard_t *sh);
/* The shard's end: every log it owns waits for resume_shutdown. */
void      rs_logs_orphan(rs_shard_t *rs);

/* agate_resume_log_bytes, agate_resume_logs, agate_resume_logs_trimmed_total. */
struct metrics_render;
void      rs_log_metrics(struct metrics_render *r, const shard_t *shards, unsigned n, const cfg_t *cfg);

/* What a request decides on, copied under the table's lock. */
typedef struct rs_view {
    char     token[33];
    uint8_t  who[16];
    bool     who_set;
    bool     expired;       /* the log was dropped (log_ttl, or the process's bound): 410 */
    bool     running;       /* the producer has not ended */
    uint64_t last_seq;
    uint64_t first_seq;     /* the oldest record kept */
    char     agent[CFG_NAME_MAX];
} rs_view_t;

/* The log of run id, held (counted as a follower, so it stays) and described
 * in *v; NULL when no such run is known. */
rs_log_t *rs_hold(const char *id, size_t n, rs_view_t *v);
void      rs_unhold(rs_log_t *lg);

/* --- resume.c: what the sweep does to a running log ---------------------------------- */

/* The owner: ends lg's run now; its readers get a RUN_ERROR (code, msg) end. */
void rs_cancel_producer(rs_log_t *lg, shard_t *sh, const char *code, const char *msg);
/* The owner: lets a producer waiting for its local follower go on. */
void rs_kick_producer(rs_log_t *lg, shard_t *sh);

/* --- resume.c, for resume_http.c ----------------------------------------------------- */

/* Turns a held log's hold into r's (a new client run, its sink set): r
 * follows it after seq `after` and is pumped now. */
void rs_follow(run_t *r, rs_log_t *lg, uint64_t after);
/* Asks the log's owner to cancel its run at its next turn. */
void rs_cancel(rs_log_t *lg);

#endif
