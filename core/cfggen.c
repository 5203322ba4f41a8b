/* cfggen: configuration generations (see cfggen.h for the protocol).
 *
 * Ownership: every generation belongs to this module. The main thread creates,
 * publishes and frees them; shards only read a generation and count their runs
 * on it. Cold path except cfggen_shard_turn (two relaxed loads and, at most,
 * two stores per loop turn) and cfggen_hold/release (one uncontended add on the
 * shard's own cache line per run). */
#include "core/cfggen.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qsbr.h"
#include "core/shard.h"

typedef struct { _Alignas(64) _Atomic uint32_t runs; } gen_count_t;

typedef struct gen {
    cfg_t        cfg;          /* first member: a generation's cfg_t * is its gen_t * */
    uint64_t     retired_at;   /* qsbr epoch taken when it was replaced: adopted by all once safe */
    uint64_t     cand_epoch;   /* qsbr epoch taken when it was seen unused; 0 = not yet */
    struct gen  *next;         /* retired list */
    gen_count_t *runs;         /* per shard */
} gen_t;

static _Atomic(gen_t *) g_current;
static unsigned         g_ngen_shards;   /* shards counted per generation (= g_nshards once set) */
static gen_t           *g_retired;      /* main thread only */

static gen_t *gen_new(const cfg_t *c)
{
    gen_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->runs = aligned_alloc(64, (g_ngen_shards ? g_ngen_shards : 1) * sizeof *g->runs);
    if (!g->runs) {
        free(g);
        return NULL;
    }
    memset(g->runs, 0, (g_ngen_shards ? g_ngen_shards : 1) * sizeof *g->runs);
    memcpy(&g->cfg, c, sizeof *c);
    return g;
}

static void gen_free(gen_t *g)
{
    if (!g)
        return;
    free(g->runs);
    free(g);
}

const cfg_t *cfggen_init(const cfg_t *start, unsigned nshards)
{
    g_ngen_shards = nshards;
    gen_t *g = gen_new(start);
    if (!g)
        return NULL;
    for (uint32_t i = 0; i < g->cfg.n_agents; i++)
        g->cfg.agents[i].slot = (uint8_t)i;
    g->cfg.generation = 1;
    atomic_store_explicit(&g_current, g, memory_order_release);
    return &g->cfg;
}

const cfg_t *cfggen_current(void) { return &atomic_load_explicit(&g_current, memory_order_acquire)->cfg; }

bool cfggen_endpoints_changed(const cfg_agent_t *a, const cfg_agent_t *b)
{
    if (a->kind != b->kind || a->n_endpoints != b->n_endpoints)
        return true;
    for (uint32_t e = 0; e < a->n_endpoints; e++) {
        const cfg_endpoint_t *x = &a->endpoints[e], *y = &b->endpoints[e];
        if (x->port != y->port || strcmp(x->host, y->host) || strcmp(x->path, y->path))
            return true;
    }
    return false;
}

/* Settings read only at start: a reload keeps the running value and says so.
 * Core's own fields are listed here by their keys in the file; every
 * registered section lists its own (cfg_section_t.restart), appended after
 * these. */
static void keep_start_only(const cfg_t *running, cfg_t *out, char *restart, size_t len)
{
    size_t used = 0;
    restart[0] = 0;
#define KEEP(field, key)                                                                   \
    do {                                                                                   \
        if (memcmp(&out->field, &running->field, sizeof out->field)) {                     \
            memcpy(&out->field, &running->field, sizeof out->field);                       \
            int w = snprintf(restart + used, len - used, "%s%s", used ? "," : "", key);    \
            if (w > 0 && (size_t)w < len - used)                                           \
                used += (size_t)w;                                                         \
        }                                                                                  \
    } while (0)
    KEEP(listen, "listen");
    KEEP(admin_listen, "admin_listen");
    KEEP(shards, "shards");
    KEEP(backend, "engine.backend");
    /* Compared as configured: lowered at start to fit the descriptor limit
     * (net/fdlimit.c) is not a change, and the lowered value stays. */
    if (running->max_connections_set && out->max_connections == running->max_connections_set)
        out->max_connections = running->max_connections;
    out->max_connections_set = running->max_connections_set;
    KEEP(max_connections, "limits.max_connections");
    KEEP(metrics_enabled, "metrics.enabled");
    KEEP(log_writeback_bytes, "log.writeback");
    KEEP(log_buffer_bytes, "log.buffer");
    KEEP(otlp_endpoint, "trace.otlp_endpoint");
    KEEP(service_name, "trace.service_name");
    KEEP(otlp_interval_ms, "trace.export_interval");
    KEEP(otlp_max_batch, "trace.max_batch");
#undef KEEP
    cfg_keep_start_only(running, out, restart, len);   /* the registered sections' own */
}

int cfggen_prepare(const cfg_t *running, const cfg_t *loaded, cfg_t *out, char *restart, size_t restart_len,
                   char *err, size_t errlen)
{
    memcpy(out, loaded, sizeof *out);
    memset(out->agents, 0, sizeof out->agents);
    bool taken[CFG_MAX_AGENTS] = {false};
    /* Every running slot stays: the loaded agent of that name, or the old one removed. */
    for (uint32_t s = 0; s < running->n_agents; s++) {
        const cfg_agent_t *old = &running->agents[s];
        const cfg_agent_t *now = NULL;
        for (uint32_t i = 0; i < loaded->n_agents && !now; i++)
            if (!strcmp(loaded->agents[i].name, old->name)) {
                now = &loaded->agents[i];
                taken[i] = true;
            }
        out->agents[s] = now ? *now : *old;
        out->agents[s].slot = (uint8_t)s;
        out->agents[s].removed = !now;
    }
    uint32_t n = running->n_agents;
    for (uint32_t i = 0; i < loaded->n_agents; i++) {
        if (taken[i])
            continue;
        if (n == CFG_MAX_AGENTS) {
            snprintf(err, errlen,
                     "agents: agent '%s' would be the %dth distinct agent name since start; restart agate to add it",
                     loaded->agents[i].name, CFG_MAX_AGENTS + 1);
            return -ENOSPC;
        }
        out->agents[n] = loaded->agents[i];
        out->agents[n].slot = (uint8_t)n;
        out->agents[n].removed = false;
        n++;
    }
    out->n_agents = n;
    keep_start_only(running, out, restart, restart_len);
    return 0;
}

int cfggen_publish(const cfg_t *next)
{
    gen_t *old = atomic_load_explicit(&g_current, memory_order_relaxed);
    gen_t *g = gen_new(next);
    if (!g)
        return -ENOMEM;
    g->cfg.generation = old->cfg.generation + 1;
    atomic_store_explicit(&g_current, g, memory_order_release);
    old->retired_at = qsbr_retire();   /* safe: every shard has adopted g since */
    old->next = g_retired;
    g_retired = old;
    for (unsigned i = 0; g_shards && i < g_ngen_shards; i++)
        shard_wake(&g_shards[i]);
    return 0;
}

static bool shard_live(unsigned i) { return !g_shards || !atomic_load(&g_shards[i].done); }

void cfggen_reclaim(void)
{
    bool pending = false;
    for (gen_t **pp = &g_retired; *pp;) {
        gen_t *g = *pp;
        if (g->cand_epoch && qsbr_safe(g->cand_epoch)) {
            *pp = g->next;
            gen_free(g);
            continue;
        }
        bool unused = true;
        for (unsigned i = 0; i < g_ngen_shards; i++)
            unused &= atomic_load_explicit(&g->runs[i].runs, memory_order_acquire) == 0;
        if (!g->cand_epoch && unused && qsbr_safe(g->retired_at))
            g->cand_epoch = qsbr_retire();   /* one more turn each: a run released mid-turn may still be read */
        pending = true;
        pp = &g->next;
    }
    /* Idle shards sleep in io_uring; one turn each lets the next reclaim finish. */
    for (unsigned i = 0; pending && g_shards && i < g_ngen_shards; i++)
        if (shard_live(i))
            shard_wake(&g_shards[i]);
}

unsigned cfggen_retained(void)
{
    unsigned n = 0;
    for (const gen_t *g = g_retired; g; g = g->next)
        n++;
    return n;
}

void cfggen_shutdown(void)
{
    while (g_retired) {
        gen_t *g = g_retired;
        g_retired = g->next;
        gen_free(g);
    }
    gen_free(atomic_exchange(&g_current, NULL));
}

void cfggen_shard_turn(shard_t *sh)
{
    gen_t *cur = atomic_load_explicit(&g_current, memory_order_acquire);
    if (cur && &cur->cfg != sh->cfg) {
        const cfg_t *old = sh->cfg;
        sh->cfg = &cur->cfg;
        shard_adopt(sh, old);   /* every module's adopt hook (net/proxy.c resets breakers) */
    }
}

/* Only this shard writes its counter: a load and a store, no locked add. A
 * cfg_t that is no generation (unit tests' fake shards) counts nothing. */
void cfggen_hold(const shard_t *sh, const cfg_t *c)
{
    if (!c->generation)
        return;
    _Atomic uint32_t *n = &((gen_t *)c)->runs[sh->id].runs;
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + 1, memory_order_relaxed);
}

void cfggen_release(const shard_t *sh, const cfg_t *c)
{
    if (!c->generation)
        return;
    _Atomic uint32_t *n = &((gen_t *)c)->runs[sh->id].runs;
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) - 1, memory_order_release);
}

/* Registered before every other module, so its turn_begin is the first thing a
 * shard does after its quiescent state. */
static const shard_mod_ops_t cfggen_mod = {.name = "cfggen", .turn_begin = cfggen_shard_turn};

void cfggen_register(void) { shard_mod_register(&cfggen_mod); }
