/* resume_int: what resume.c (the logs, producers, followers) gives
 * resume_http.c (the reattach and cancel endpoints) and runlog_redis.c (a cancel
 * another pod asked for); nothing else includes it. */
#ifndef AGATE_RESUME_INT_H
#define AGATE_RESUME_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "proto/run.h"

typedef struct rs_log rs_log_t;

/* What a request decides on, copied under the table's lock. */
typedef struct rs_view {
    char     token[33];
    uint8_t  who[16];
    bool     who_set;
    bool     expired;       /* the log was dropped after log_ttl: 410 */
    bool     running;       /* the producer has not ended */
    uint64_t last_seq;
    uint64_t first_seq;     /* the oldest record kept */
    char     agent[CFG_NAME_MAX];
} rs_view_t;

/* The log of run id, held (counted as a follower, so it stays) and described
 * in *v; NULL when no such run is known. */
rs_log_t *rs_hold(const char *id, size_t n, rs_view_t *v);
void      rs_unhold(rs_log_t *lg);
/* Turns a held log's hold into r's (a new client run, its sink set): r
 * follows it after seq `after` and is pumped now. */
void      rs_follow(run_t *r, rs_log_t *lg, uint64_t after);
/* Asks the log's owner to cancel its run at its next turn. */
void      rs_cancel(rs_log_t *lg);

#endif
