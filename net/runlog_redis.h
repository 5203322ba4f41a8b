/* runlog_redis: a resumable run's log in Redis, so that a client can reattach
 * on another pod (issue 27, the cross-pod part; net/resume.c is the pod's own).
 *
 * When redis.address is set, every run log (net/runlog.h) of a resumable
 * agent is also written to a Redis Stream by the shard running it: the
 * events appended in one loop turn leave as one EVALSHA at the turn's end
 * (never one command per event), each entry under the id `<seq>-0` with its
 * type and JSON; the run's end is an entry `<last seq>-1`. Beside the stream:
 *   <prefix>run:<id>         the Stream (MAXLEN ~ resume.redis_max_len, PEXPIRE
 *                            the agent's log_ttl, renewed while the run lives)
 *   <prefix>run:<id>:meta    who may reattach: sha256 of the resume token, the
 *                            identity digest, the agent (same expiry)
 *   <prefix>run:<id>:owner   the pod running it, PX 3 x resume.redis_heartbeat,
 *                            renewed while the run lives, deleted at its end
 *   <prefix>run:<id>:remote  set by each remote follower's read (PX 3 x
 *                            heartbeat): the owner's writes see it, and a run
 *                            followed from another pod is not detached
 *   <prefix>run:<id>:cancel  another pod's DELETE or WebSocket CANCEL (the
 *                            run's nonce, PX 3 x heartbeat): the owner's next
 *                            write reads it and cancels the run
 *   <prefix>run:<id>:gone    a tombstone, renewed by every write, outliving
 *                            the meta by max(log_ttl, 1 min): an expired run
 *                            is 410 on every pod, not 404
 * A pod that has not the run answers GET /v1/runs/{id}/events, WebSocket
 * RESUME and CANCEL, and DELETE /v1/runs/{id} from Redis (net/runlog_remote.c): it replays the stream after Last-Event-ID, polls it
 * (XRANGE, never a blocking read on the shared connection) until the end
 * entry, and, once the owner key has expired with no end written, ends the
 * stream itself with RUN_ERROR gateway_restarted (atomically, in a script, so
 * two followers write one end).
 *
 * Redis is never needed to serve: while it is down the writer drops what it
 * would send (counted; a follower that meets the gap ends with RUN_ERROR
 * resume_log_incomplete), and what waits to be written on a shard is bounded
 * (resume.redis_max_queued). */
#ifndef AGATE_RUNLOG_REDIS_H
#define AGATE_RUNLOG_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shard;
struct conn;
struct run;
struct runlog;

/* The resume: section's Redis keys (a part of resume_conf_t, net/resume.h). */
typedef struct rsx_conf {
    uint32_t heartbeat_ms;   /* resume.redis_heartbeat */
    uint32_t poll_ms;        /* resume.redis_poll */
    uint32_t max_len;        /* resume.redis_max_len */
    uint32_t max_queued;     /* resume.redis_max_queued */
} rsx_conf_t;

/* Rows of the resume: section's table (net/resume.c), offsets in resume_conf_t.rsx. */
#define RSX_CONF_ROWS                                                                                          \
    { "resume", "redis_heartbeat", "AGATE_RESUME_REDIS_HEARTBEAT", "1s", CFG_K_DURATION, 50, 60000,            \
      offsetof(resume_conf_t, rsx.heartbeat_ms) },                                                             \
    { "resume", "redis_poll", "AGATE_RESUME_REDIS_POLL", "100ms", CFG_K_DURATION, 5, 10000,                    \
      offsetof(resume_conf_t, rsx.poll_ms) },                                                                  \
    { "resume", "redis_max_len", "AGATE_RESUME_REDIS_MAX_LEN", "100000", CFG_K_UINT, 100, 100000000,           \
      offsetof(resume_conf_t, rsx.max_len) },                                                                  \
    { "resume", "redis_max_queued", "AGATE_RESUME_REDIS_MAX_QUEUED", "8MiB", CFG_K_SIZE, 65536, 1u << 30,      \
      offsetof(resume_conf_t, rsx.max_queued) },

/* Main thread, at start-up, after redis_register: the scripts, the shard
 * module, the metrics. */
void rsx_register(void);

/* The owner's shard, a new run log (net/resume.c): hangs the Redis writer on
 * its append hook when Redis is configured. token: the run's resume token
 * (32 hex); who: the identity digest or NULL. Returns the writer (for
 * rsx_close), or NULL when there is none (Redis off, no memory). seen(arg):
 * called on the owner's shard, until rsx_close, when a client on another pod
 * follows the run (it counts as a client for the detach timeout). */
void *rsx_open(struct shard *sh, struct runlog *l, const char *id, size_t idn, const char *token,
               const uint8_t *who, const char *agent, uint32_t ttl_ms, void (*seen)(void *arg), void *arg);
/* The run ended (its log is closed; every record passed the hook): writes
 * the end entry with the last batch, then lets go of w. failed: before its
 * first event, with the HTTP status, code and message a reader gets. */
void rsx_close(struct shard *sh, void *w, bool failed, int status, const char *code, const char *msg);

/* GET /v1/runs/{id}/events for a run this process does not have. False when
 * Redis is not configured (the caller answers 404); true when the request is
 * taken (answered now, or later from the shard loop). tok/tokn: the token the
 * client sent; who: its identity digest when authenticated, else NULL; after:
 * Last-Event-ID's seq (0: the whole run). */
bool rsx_events(struct conn *c, const char *id, size_t idn, const char *tok, size_t tokn, const uint8_t *who,
                uint64_t after);
/* WebSocket RESUME of a run this process does not have: r is the new client
 * run (its sink set, nothing started) and follows the run from Redis after
 * seq `after`, once the meta lets it (else it fails with the refusal's code).
 * False when Redis is not configured (the caller refuses: run_not_found). */
bool rsx_follow(struct run *r, const char *id, size_t idn, const char *tok, size_t tokn, const uint8_t *who,
                uint64_t after);
/* DELETE /v1/runs/{id} for a run this process does not have: asks its owner,
 * through Redis, to cancel it (202 once recorded; 403, 404, 409, 410, 503 as
 * a reattach). False when Redis is not configured (the caller answers 404). */
bool rsx_cancel(struct conn *c, const char *id, size_t idn, const char *tok, size_t tokn, const uint8_t *who);
/* WebSocket CANCEL of a run followed from Redis (rsx_follow): asks its owner
 * to cancel the run itself. Nothing for any other run. */
void rsx_cancel_followed(struct run *r);
/* Whether this shard can reach another pod's runs (Redis configured). */
bool rsx_enabled(const struct shard *sh);

#endif
