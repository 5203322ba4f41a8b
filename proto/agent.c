/* agent: the life of a run, whatever its kind. Runs come from a per-shard free
 * list; each kind (echo here, proxy in net/proxy.c) supplies start, resume and
 * stop through agent_kind_ops_t. */
#include "proto/agent.h"

#include <stdlib.h>

#include "core/cfggen.h"
#include "net/coalesce.h"

static const agent_kind_ops_t *kind_ops(const run_t *r)
{
    if (r->replay)
        return &coalesce_replay_ops;
    return r->agent->kind == CFG_AGENT_PROXY ? &proxy_agent_ops : &echo_agent_ops;
}

uint32_t agent_token_interval(const cfg_t *cfg, const cfg_agent_t *agent, const runinput_t *in)
{
    uint64_t ms = in->token_interval_ms >= 0 ? (uint64_t)in->token_interval_ms : agent->token_interval_ms;
    return ms > cfg->max_token_interval_ms ? cfg->max_token_interval_ms : (uint32_t)ms;
}

run_t *agent_run_new(shard_t *sh, const cfg_agent_t *agent, runinput_t *in,
                     const run_sink_ops_t *sink, void *sink_ctx)
{
    run_t *r = sh->run_pool;
    if (r) {
        sh->run_pool = r->next_free;
    } else if (!(r = calloc(1, sizeof *r))) {
        runinput_free(in);
        return NULL;
    }
    r->sh = sh;
    r->cfg = sh->cfg;   /* agent is one of sh->cfg's: the run keeps that generation alive */
    cfggen_hold(sh, r->cfg);
    r->agent = agent;
    r->in = *in;
    r->sink = sink;
    r->sink_ctx = sink_ctx;
    access_take_pending(&r->acc);   /* the slots access_http_run/admit took for this run */
    r->interval_ms = agent_token_interval(sh->cfg, agent, in);
    r->blocked = false;
    r->tick_due = true;
    r->started = false;
    r->errored = false;
    r->replay = false;
    r->head_extra = NULL;
    r->body = NULL;
    r->body_len = 0;
    r->body_buf = NULL;
    r->phase = 0;
    r->pos = 0;
    buf_reset(&r->text);
    return r;
}

void agent_run_start(run_t *r) { kind_ops(r)->start(r); }

/* Bodies up to this size keep their buffer for the connection's next request. */
#define AGENT_KEEP_BODY 2048

void agent_run_drop_body(run_t *r)
{
    if (r->body_buf && r->body_buf->cap > AGENT_KEEP_BODY)
        buf_free(r->body_buf);
    r->body_buf = NULL;
    r->body = NULL;
    r->body_len = 0;
    runinput_drop_content(&r->in);
}

void agent_run_resume(run_t *r)
{
    r->blocked = false;
    kind_ops(r)->resume(r);
}

void agent_run_release(run_t *r)
{
    shard_t *sh = r->sh;
    kind_ops(r)->stop(r);
    access_release(&r->acc);   /* every end of a run comes here: finished, error, abort, upstream failure */
    if (r->co)
        coalesce_run_stop(r);
    timer_cancel(&sh->timers, &r->tick);
    runinput_free(&r->in);
    cfggen_release(sh, r->cfg);   /* last use of r->cfg and r->agent */
    if (r->text.cap > 64 * 1024)
        buf_free(&r->text);   /* keep pooled runs small */
    r->next_free = sh->run_pool;
    sh->run_pool = r;
}

void agent_run_abort(run_t *r) { agent_run_release(r); }

void agent_pool_free(shard_t *sh)
{
    while (sh->run_pool) {
        run_t *r = sh->run_pool;
        sh->run_pool = r->next_free;
        if (r->px)
            proxy_agent_ops.destroy(r);
        if (r->co)
            coalesce_run_destroy(r);
        buf_free(&r->text);
        free(r);
    }
}
