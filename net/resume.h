/* resume: runs that survive their client's connection (issue 27, one process).
 *
 * For an agent with `resume.enabled`, a run is split in two: the producer (the
 * agent's run: echo, proxy, a cache replay) writes every event to the run's
 * log (net/runlog.h) under a sequence number, and each client is a follower
 * run that reads the log into its own sink (the run's own client gets each
 * event as it is logged, while it keeps up) (SSE: each event with
 * `id: <runId>:<seq>`). A client that goes away only detaches: the producer
 * goes on for `resume.detach_timeout`, then is cancelled unless someone
 * reattached (GET /v1/runs/{runId}/events, from any shard). DELETE
 * /v1/runs/{runId} cancels now. A finished run's log is kept for
 * `resume.log_ttl`. Who may reattach: the holder of the run's resume token
 * (X-Agate-Resume-Token, given on the run's head), or, when the run was
 * started by an authenticated identity, that identity. */
#ifndef AGATE_RESUME_H
#define AGATE_RESUME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "net/runlog_redis.h"

struct run;
struct conn;

/* The resume: section (process-wide): resume.max_bytes, the bound on all run
 * logs' bytes together. */
typedef struct resume_conf {
    uint32_t max_bytes;
    rsx_conf_t rsx;     /* the Redis Stream copy of the logs (net/runlog_redis.h) */
} resume_conf_t;

extern cfg_section_t resume_conf_section;
static inline const resume_conf_t *resume_conf(const cfg_t *c) { return cfg_sect(c, &resume_conf_section); }

/* Main thread, at start-up: the section, the run state, the shard module. */
void resume_register(void);
/* Process end, after the shards stopped: what no shard freed. */
void resume_shutdown(void);

/* A new client run r (its sink set, nothing started) of a resumable agent:
 * makes it the first follower of a new producer run, which it returns (the
 * caller prepares and starts that one instead). who: the caller's identity
 * digest, or NULL when anonymous. r itself when its run id cannot be logged
 * (longer than 127 bytes: the run is a plain one); NULL when r was failed
 * (409: the run id is another identity's live run; 503) and released. */
struct run *resume_wrap(struct run *r, const uint8_t *who);

/* Reattaching, whatever the transport: the run, who asks, and from where. */
struct rs_log;
typedef struct resume_req {
    const char    *id;         size_t id_len;      /* decoded */
    const char    *token;      size_t token_len;   /* NULL/0: none given */
    const uint8_t *who;                            /* the caller's digest, NULL: anonymous */
    const char    *last_id;    size_t last_len;    /* "<runId>:<seq>", 0: the whole run */
    const char    *agent;                          /* the run must be this agent's (NULL: any) */
    char          *agent_out;                      /* CFG_NAME_MAX: the run's agent */
} resume_req_t;
typedef struct resume_refusal {
    int status;                /* 400, 403, 404, 410 */
    const char *code, *msg;
} resume_refusal_t;

/* The run q names, held for the caller, and the seq to follow it after; or
 * -errno with *no saying why not. */
int  resume_open(const resume_req_t *q, struct rs_log **lg, uint64_t *after, resume_refusal_t *no);
/* A held run's new client r (its sink set, nothing started): r follows it
 * after seq `after` (the hold becomes r's) and is pumped now. */
void resume_follow(struct run *r, struct rs_log *lg, uint64_t after);
void resume_close(struct rs_log *lg);   /* a hold not followed */
/* A follower's run: cancels the run it follows (WebSocket CANCEL). */
void resume_cancel_followed(struct run *r);
/* A follower's run's resume token (32 hex digits), NULL for any other run. */
const char *resume_token_of(const struct run *r);

/* HTTP: GET /v1/runs/{id}/events and DELETE /v1/runs/{id} (id undecoded). */
void resume_http_events(struct conn *c, const char *id, size_t len);
void resume_http_cancel(struct conn *c, const char *id, size_t len);

/* The log's bytes now, every log of the process (metrics, tests). */
size_t resume_bytes(void);

#endif
