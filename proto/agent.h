/* agent: a run of an agent, and the sink its events go to.
 *
 * A run produces AG-UI events; a sink (the SSE writer today, WebSocket and
 * protobuf later) encodes and queues them. The sink owns the run: it calls
 * agent_run_abort() when its client goes away, and the run calls sink->end()
 * when it has emitted its last event, after which the sink releases it. Runs
 * come from a per-shard free list, so starting one does not allocate once the
 * shard is warm. */
#ifndef AGATE_AGENT_H
#define AGATE_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/shard.h"
#include "core/timer.h"
#include "proto/agui.h"
#include "proto/runinput.h"

struct run;

typedef struct run_sink_ops {
    int  (*event)(struct run *r, const agui_event_t *ev);   /* 0, or -errno: the run must stop */
    bool (*writable)(struct run *r);                         /* under the buffer bound */
    void (*end)(struct run *r);                              /* last event emitted */
} run_sink_ops_t;

typedef struct run {
    shard_t            *sh;
    const cfg_agent_t  *agent;
    runinput_t          in;           /* owned */
    const run_sink_ops_t *sink;
    void               *sink_ctx;     /* the sink's connection */
    agate_timer_t       tick;
    uint32_t            interval_ms;
    bool                blocked;      /* waiting for the sink to drain */
    bool                tick_due;

    /* echo agent state */
    uint8_t             phase;
    buf_t               text;         /* the text being echoed, owned, kept across reuse */
    size_t              pos;
    char                message_id[36];

    struct run         *next_free;
} run_t;

/* Takes ownership of `in` (also on failure). Returns NULL on ENOMEM. */
run_t *agent_run_new(shard_t *sh, const cfg_agent_t *agent, runinput_t *in,
                     const run_sink_ops_t *sink, void *sink_ctx);
void agent_run_start(run_t *r);
void agent_run_resume(run_t *r);     /* the sink drained below its bound */
void agent_run_abort(run_t *r);      /* the client is gone: stop and release */
void agent_run_release(run_t *r);    /* after sink->end */
void agent_pool_free(shard_t *sh);

/* The effective pacing for a request: the agent's, overridden by the request,
 * capped by configuration. */
uint32_t agent_token_interval(const cfg_t *cfg, const cfg_agent_t *agent, const runinput_t *in);

#endif
