/* run: a run of an agent, and the sink its events go to.
 *
 * A run produces AG-UI events; a sink (SSE, the protobuf encoding, WebSocket:
 * net/sse.c, net/ws_run.c) encodes and queues them. The sink owns the run: it calls
 * run_abort() when its client goes away, and the run calls sink->end()
 * when it has emitted its last event, after which the sink releases it. Runs
 * come from a per-shard free list, so starting one does not allocate once the
 * shard is warm. */
#ifndef AGATE_RUN_H
#define AGATE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/shard.h"
#include "core/timer.h"
#include "core/ratelimit.h"
#include "proto/agui.h"
#include "proto/runinput.h"

struct run;
struct runrec_subst;
struct runrec_plan;

/* What a run writes to. Before start() the client has seen nothing, so fail()
 * can still answer with an HTTP error; after it, problems become RUN_ERROR
 * events. end() and fail() release the run. */
typedef struct run_sink_ops {
    void (*start)(struct run *r);                            /* the stream's head (200) */
    int  (*event)(struct run *r, const agui_event_t *ev);   /* 0, or -errno: the run must stop */
    /* An event that arrived as JSON text (from an upstream), passed through as is.
     * has_lf false: the caller knows the JSON holds no line feed (an SSE sink
     * then need not search it for one). */
    int  (*raw)(struct run *r, agui_type_t type, const char *json, size_t len, bool has_lf);
    /* Optional (NULL: use raw for each): n events already framed the way this
     * sink writes them, back to back in p[0..len) (an SSE upstream's
     * "data: <json>\n\n" frames for an SSE client), types[i] the i-th one's.
     * Written as they are. 0, or -errno: the run was released. */
    int  (*frames)(struct run *r, const char *p, size_t len, const uint8_t *types, uint32_t n);
    /* Optional (NULL: use raw): a stretch of a stored or shared run's records
     * (proto/runrec.h), rendered under s's ids straight into the sink's output
     * in one pass, for as long as the buffer bound allows. *used is the bytes
     * of whole records taken; 0 when the first must go through raw (its JSON
     * holds a line feed). 0; 1 when out of memory and the run was released;
     * -EINVAL for a record that does not render (the records before it were
     * sent, the run is still the caller's). */
    int  (*records)(struct run *r, const char *recs, size_t len, const struct runrec_subst *s, size_t *used);
    /* Optional: a whole stored run, rendered from its plan (proto/runrec.h) in
     * one pass when all of it fits under the buffer bound. 0: all sent;
     * -EAGAIN: it does not fit, nothing was written (use `records`); 1: out of
     * memory, the run was released; -EINVAL: a plan that does not fit its
     * records, nothing sent, the run still the caller's. */
    int  (*stored)(struct run *r, const struct runrec_plan *pl, const char *recs, size_t recs_len,
                   const struct runrec_subst *s);
    /* Optional: event(), and where ev's JSON text landed in the sink's output
     * (valid until its next write), for a resumable run's log to copy
     * (net/resume.c) rather than render the event twice. */
    int  (*event_json)(struct run *r, const agui_event_t *ev, const char **json, size_t *len);
    bool (*writable)(struct run *r);                         /* under the buffer bound */
    void (*end)(struct run *r);                              /* last event emitted */
    void (*fail)(struct run *r, int status, const char *code, const char *msg, uint32_t retry_after_s);
} run_sink_ops_t;

#define RUN_EXT_MAX 8

typedef struct run {
    shard_t            *sh;
    const cfg_t        *cfg;          /* the configuration generation it started on, held until release */
    const cfg_agent_t  *agent;        /* in cfg->agents */
    const struct run_kind_ops *ops;   /* its agent kind's, or a replay's (net/coalesce_replay.c) */
    runinput_t          in;           /* owned */
    const run_sink_ops_t *sink;
    void               *sink_ctx;     /* the sink's per-run context (SSE: the connection) */
    struct conn        *conn;         /* the client's connection (opaque here): headers, trace, peer */
    const char         *body;         /* the RunAgentInput as the client sent it (proxies forward */
    size_t              body_len;     /* it); in body_buf, owned by the sink; NULL once dropped */
    buf_t              *body_buf;     /* the sink's buffer holding it, for run_drop_body */
    agate_timer_t       tick;
    uint32_t            interval_ms;
    bool                blocked;      /* waiting for the sink to drain */
    bool                tick_due;
    bool                started;      /* sink->start() done */
    bool                errored;      /* ended with RUN_ERROR */
    bool                replay;       /* served from the cache or a shared run, not by its agent */
    /* A protobuf upstream's frame for the event being passed to sink->raw (NULL
     * otherwise), so a protobuf sink relays it instead of re-encoding the JSON. */
    const uint8_t      *raw_pb;
    size_t              raw_pb_len;
    const char         *head_extra;   /* more head lines for start() ("Name: value\r\n"...), or NULL */
    /* A resumable run's client (net/resume.c): the event passed to the sink
     * now is event ev_seq of run ev_id (SSE writes "id: <ev_id>:<ev_seq>");
     * ev_seq 0: no id. */
    const char         *ev_id;
    uint16_t            ev_id_len;
    uint64_t            ev_seq;
    rl_holds_t          holds;        /* concurrency slots, released by a run hook (net/access_policy.c) */

    /* Per-run state of the modules that registered with run_ext_register (echo,
     * proxy, coalescing): each allocates its own on first use and keeps it
     * across reuse; the module's accessor gives it its type. */
    void               *ext[RUN_EXT_MAX];

    struct run         *next_free;
} run_t;

/* What each kind of agent does with a run. */
typedef struct run_kind_ops {
    void (*start)(run_t *r);
    void (*resume)(run_t *r);
    void (*stop)(run_t *r);          /* before release: drop what the kind holds */
} run_kind_ops_t;

/* A module's hooks on every run, whatever its kind. */
typedef struct run_ext_ops {
    void (*release)(run_t *r);       /* optional: the run ends, however it ends */
    void (*destroy)(run_t *r);       /* optional: the pooled run is freed */
} run_ext_ops_t;

/* Main thread, before any run starts (start-up; a test's set-up): the kind
 * ops for agents of kind, and a module's run hooks. run_ext_register returns
 * the module's index into run_t.ext; registering the same ops again returns
 * the same index. */
void     run_kind_register(cfg_agent_kind_t kind, const run_kind_ops_t *ops);
unsigned run_ext_register(const run_ext_ops_t *ops);

/* On success the run owns `in` and the slots in *holds (holds->n becomes 0);
 * NULL on ENOMEM, and then `in` is freed and *holds is still the caller's. */
run_t *run_new(shard_t *sh, const cfg_agent_t *agent, runinput_t *in, rl_holds_t *holds,
               const run_sink_ops_t *sink, void *sink_ctx);
void run_start(run_t *r);
/* The run will not read its request body again (the echo agent has its text, a
 * proxied run its first event: no retry can resend it). A stream may last
 * minutes and a RunAgentInput carries the whole conversation, so a large body
 * is given back now instead of at the stream's end (a small one stays for the
 * connection's next request), and so is the input's copy of the last user
 * message (runinput_drop_content). */
void run_drop_body(run_t *r);
void run_resume(run_t *r);     /* the sink drained below its bound */
void run_abort(run_t *r);      /* the client is gone: stop and release */
void run_release(run_t *r);    /* after sink->end */

/* Main thread, at start-up, before the modules whose runs it pools: the
 * per-shard pool of free runs (a shard module, freed when the shard stops). */
void run_register(void);
void run_pool_free(shard_t *sh);   /* tests that drive runs without a shard loop */
run_t *run_pool_head(const shard_t *sh);   /* the next run new would reuse (tests) */

/* The built-in echo agent (proto/echo.c): registers its kind and run state. */
void echo_register(void);

/* The effective pacing for a request: the agent's, overridden by the request,
 * capped by configuration. */
uint32_t run_token_interval(const cfg_t *cfg, const cfg_agent_t *agent, const runinput_t *in);

#endif
