/* run: the life of a run, whatever its kind. Runs come from a per-shard free
 * list (a shard module's state: the list's head); each kind supplies start,
 * resume and stop through the run_kind_ops_t registered for it, and modules
 * that keep state on runs (echo, proxy, coalescing, access) hook the release
 * and the pool's teardown through run_ext_register. Registration happens on
 * the main thread before any run starts; the tables are read-only after. */
#include "proto/run.h"

#include <stdlib.h>

#include "core/cfggen.h"

static const run_kind_ops_t *g_kinds[CFG_AGENT_PROXY + 1];
static const run_ext_ops_t  *g_exts[RUN_EXT_MAX];
static unsigned              g_nexts;
static unsigned              g_pool_mod;   /* shard_t.mod index: the head of the free list */

static inline run_t **pool_of(shard_t *sh) { return (run_t **)&sh->mod[g_pool_mod]; }

void run_kind_register(cfg_agent_kind_t kind, const run_kind_ops_t *ops) { g_kinds[kind] = ops; }

unsigned run_ext_register(const run_ext_ops_t *ops)
{
    for (unsigned i = 0; i < g_nexts; i++)
        if (g_exts[i] == ops)
            return i;
    if (g_nexts == RUN_EXT_MAX)
        abort();   /* more modules keep state on runs than RUN_EXT_MAX: raise it */
    g_exts[g_nexts] = ops;
    return g_nexts++;
}

uint32_t run_token_interval(const cfg_t *cfg, const cfg_agent_t *agent, const runinput_t *in)
{
    uint64_t ms = in->token_interval_ms >= 0 ? (uint64_t)in->token_interval_ms : agent->token_interval_ms;
    return ms > cfg->max_token_interval_ms ? cfg->max_token_interval_ms : (uint32_t)ms;
}

run_t *run_new(shard_t *sh, const cfg_agent_t *agent, runinput_t *in, rl_holds_t *holds,
               const run_sink_ops_t *sink, void *sink_ctx)
{
    run_t **pool = pool_of(sh), *r = *pool;
    if (r) {
        *pool = r->next_free;
    } else if (!(r = calloc(1, sizeof *r))) {
        runinput_free(in);
        return NULL;
    }
    r->sh = sh;
    r->cfg = sh->cfg;   /* agent is one of sh->cfg's: the run keeps that generation alive */
    cfggen_hold(sh, r->cfg);
    r->agent = agent;
    r->ops = g_kinds[agent->kind];
    r->in = *in;
    r->sink = sink;
    r->sink_ctx = sink_ctx;
    r->holds = *holds;
    holds->n = 0;
    r->interval_ms = run_token_interval(sh->cfg, agent, in);
    r->blocked = false;
    r->tick_due = true;
    r->started = false;
    r->errored = false;
    r->replay = false;
    r->head_extra = NULL;
    r->ev_id = NULL;
    r->ev_id_len = 0;
    r->ev_seq = 0;
    r->body = NULL;
    r->body_len = 0;
    r->body_buf = NULL;
    return r;
}

void run_start(run_t *r) { r->ops->start(r); }

/* Bodies up to this size keep their buffer for the connection's next request. */
#define RUN_KEEP_BODY 2048

void run_drop_body(run_t *r)
{
    if (r->body_buf && r->body_buf->cap > RUN_KEEP_BODY)
        buf_free(r->body_buf);
    r->body_buf = NULL;
    r->body = NULL;
    r->body_len = 0;
    runinput_drop_content(&r->in);
}

void run_resume(run_t *r)
{
    r->blocked = false;
    r->ops->resume(r);
}

/* Every end of a run comes here: finished, error, abort, upstream failure. */
void run_release(run_t *r)
{
    shard_t *sh = r->sh;
    r->ops->stop(r);
    for (unsigned i = 0; i < g_nexts; i++)
        if (g_exts[i]->release)
            g_exts[i]->release(r);
    timer_cancel(&sh->timers, &r->tick);
    runinput_free(&r->in);
    cfggen_release(sh, r->cfg);   /* last use of r->cfg and r->agent */
    run_t **pool = pool_of(sh);
    r->next_free = *pool;
    *pool = r;
}

void run_abort(run_t *r) { run_release(r); }

run_t *run_pool_head(const shard_t *sh) { return (run_t *)sh->mod[g_pool_mod]; }

void run_pool_free(shard_t *sh)
{
    run_t **pool = pool_of(sh);
    while (*pool) {
        run_t *r = *pool;
        *pool = r->next_free;
        for (unsigned i = 0; i < g_nexts; i++)
            if (g_exts[i]->destroy)
                g_exts[i]->destroy(r);
        free(r);
    }
}

/* Registered first, so its `free` runs last: after every module whose
 * teardown may still release a run. */
static const shard_mod_ops_t run_mod = {.name = "run", .free = run_pool_free};

void run_register(void) { g_pool_mod = shard_mod_register(&run_mod); }
