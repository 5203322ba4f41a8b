/* rlglobal: global rate limits and concurrency caps through Redis leases
 * (see rlglobal.h for the design and docs/ARCHITECTURE.md, "Global limits",
 * for the accuracy bound).
 *
 * Per shard, a chained hash of entries, one per global key this shard has
 * seen recently. An entry is the shard's lease of that key: tokens at hand
 * (rate) or slots held in Redis (concurrency), the one command it has in
 * flight (never more: a slot count sent is then always the shard's current
 * one), and the runs waiting for its answer. Invariants:
 *  - an entry with a command in flight or a waiter is never freed (the
 *    command's ctx is the entry; a shard that stops cancels first);
 *  - a token is spent only before its lease expires (RLG_LEASE_TTL_US after
 *    the grant); then what is left goes back to the bucket;
 *  - a run's holds of this module (rlg_is_hold) are undone by rlg_release on
 *    the shard that took them; tokens (RLG_CELL_RATE) live in a run's holds
 *    only until its admission is final, so a run that ran is never refunded.
 * Cold paths (a new key, a reply, the 100 ms sweep) may allocate; taking a
 * token from a lease is a hash lookup and a decrement. */
#include "net/rlglobal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/list.h"
#include "core/log.h"
#include "core/redis.h"
#include "core/shard.h"
#include "net/gwmetrics.h"
#include "net/rlglobal_lua.h"
#include "proto/run.h"

#define RLG_BUCKETS       1024u
#define RLG_MAX_ENTRIES   65536u            /* per shard; beyond, new keys are decided as if Redis were down */
#define RLG_LEASE_TTL_US  1000000u          /* tokens unspent this long after their grant go back */
#define RLG_IDLE_US       5000000u          /* an empty, quiet entry is dropped after this */
#define RLG_SWEEP_MS      100u

enum { K_RATE, K_CONC };

typedef struct rlg_entry {
    uint64_t          key;
    uint8_t           kind;
    struct rlg_entry *next;                 /* hash chain */
    list_t            waiters;              /* rlg_wait_t.link */
    uint64_t          handle;               /* the command in flight, 0 when none */
    uint32_t          asked;                /* what that command asked for */
    uint32_t          tokens;               /* rate: at hand; conc: slots held in Redis */
    uint32_t          used;                 /* conc: slots runs hold */
    uint32_t          sent, synced;         /* conc: the count the command in flight carried; Redis's after the last reply */
    uint32_t          size;                 /* rate: the next lease's size */
    uint64_t          granted_us, expires_us, refused_until_us, last_use_us, renew_at_us;
    union {
        rlg_rate_t rate;
        rlg_conc_t conc;
    };
} rlg_entry_t;

/* A run waiting for one entry's answer: a node in the run's gate. */
typedef struct rlg_wait {
    list_t           link;
    struct rlg_gate *g;
    rlg_entry_t     *e;
    uint8_t          hold;                  /* index in r->holds */
} rlg_wait_t;

typedef struct rlg_gate {
    run_t                *r;
    const run_kind_ops_t *saved;            /* the wrapped kind */
    rlg_wait_t            w[RL_MAX_HOLDS];
    uint8_t               n, left;
    bool                  refused, unavailable;
    uint32_t              retry_s;
} rlg_gate_t;

typedef struct rlg_shard {
    shard_t      *sh;
    rlg_entry_t  *buckets[RLG_BUCKETS];
    uint32_t      n_entries;
    agate_timer_t sweep;
    char          holder[64];               /* this shard's name in the slot sets */
} rlg_shard_t;

typedef struct rlg_metrics {
    uint64_t decisions[RLG_R_COUNT];
    uint64_t fallbacks[3];
    uint64_t leases_granted, tokens_granted, tokens_returned;
    uint64_t slots_granted, slots_returned;
    uint64_t round_trips, errors;
    uint64_t transitions[2];                /* [0] to down, [1] back up */
} rlg_metrics_t;

static unsigned     g_rlg_mod, g_rlg_metrics, g_rlg_ext;
static unsigned     g_script_take, g_script_give, g_script_conc;
static rl_table_t  *g_local;
static _Atomic int  g_down;                 /* process-wide: 1 while the last answer was "cannot" */

static inline rlg_shard_t *rs_of(const shard_t *sh) { return (rlg_shard_t *)sh->mod[g_rlg_mod]; }
static inline rlg_metrics_t *rm_of(const shard_t *sh) { return (rlg_metrics_t *)sh->mod[g_rlg_metrics]; }
#define COUNT(sh, field, n)                                                                \
    do {                                                                                   \
        rlg_metrics_t *m_ = rm_of(sh);                                                     \
        if (m_)                                                                            \
            metrics_add(&m_->field, (n));                                                  \
    } while (0)

/* ---- pure: lease sizing ---- */

uint32_t rlg_lease_max(uint32_t count, uint64_t period_ns, uint32_t burst, unsigned shards, unsigned pods)
{
    if (!count || !period_ns)
        return 1;
    uint64_t tenth = (uint64_t)count * 100000000u / period_ns;   /* a tenth of a second's worth */
    uint64_t split = (uint64_t)(shards ? shards : 1) * (pods ? pods : 1);
    uint64_t share = (burst ? burst : count) / split;
    uint64_t l = tenth < share ? tenth : share;
    return l < 1 ? 1 : l > RLG_LEASE_CAP ? RLG_LEASE_CAP : (uint32_t)l;
}

uint32_t rlg_lease_next(uint32_t cur, uint32_t max, uint64_t lasted_us)
{
    if (!cur)
        cur = 1;
    if (lasted_us < RLG_FAST_US)
        cur = cur > max / 2 ? max : cur * 2;
    else if (lasted_us > RLG_SLOW_US)
        cur = cur / 2;
    if (cur > max)
        cur = max;
    return cur ? cur : 1;
}

/* ---- up and down ---- */

static void log_transition(shard_t *sh, bool down)
{
    cfg_log_level_t level = down ? CFG_LOG_WARN : CFG_LOG_INFO;
    COUNT(sh, transitions[down ? 0 : 1], 1);
    if (!sh->log || level < sh->cfg->log_level)
        return;
    buf_t *b = &sh->scratch;
    size_t mark = b->len;
    log_begin(b, down ? "warn" : "info",
              down ? "redis unreachable: global limits fall back to their on_redis_down mode"
                   : "redis reachable again: global limits are shared");
    buf_append_lit(b, ",\"shard\":");
    buf_append_u64(b, sh->id);
    log_end(b);
    log_put(sh->log, b->data + mark, b->len - mark);
    b->len = mark;
}

static void mark_up(shard_t *sh)
{
    if (atomic_load_explicit(&g_down, memory_order_relaxed) && atomic_exchange(&g_down, 0))
        log_transition(sh, false);
}

void rlg_fallback(shard_t *sh, rlg_down_mode_t m)
{
    if (!sh)
        return;
    COUNT(sh, fallbacks[m], 1);
    COUNT(sh, decisions[RLG_R_FALLBACK], 1);
    if (!atomic_load_explicit(&g_down, memory_order_relaxed) && !atomic_exchange(&g_down, 1))
        log_transition(sh, true);
}

void rlg_count(shard_t *sh, rlg_result_t r)
{
    if (sh)
        COUNT(sh, decisions[r], 1);
}

bool rlg_up(shard_t *sh) { return redis_up(sh); }

/* ---- entries ---- */

static inline uint32_t bucket_of(uint64_t key) { return (uint32_t)(key >> 20) & (RLG_BUCKETS - 1); }

static rlg_entry_t *entry_find(rlg_shard_t *s, uint64_t key)
{
    for (rlg_entry_t *e = s->buckets[bucket_of(key)]; e; e = e->next)
        if (e->key == key)
            return e;
    return NULL;
}

static rlg_entry_t *entry_get(rlg_shard_t *s, uint64_t key, uint8_t kind)
{
    rlg_entry_t *e = entry_find(s, key);
    if (e || s->n_entries >= RLG_MAX_ENTRIES || !(e = calloc(1, sizeof *e)))
        return e;
    e->key = key;
    e->kind = kind;
    e->size = 1;
    list_init(&e->waiters);
    uint32_t b = bucket_of(key);
    e->next = s->buckets[b];
    s->buckets[b] = e;
    s->n_entries++;
    return e;
}

static void entry_free(rlg_shard_t *s, rlg_entry_t *e)
{
    rlg_entry_t **pp = &s->buckets[bucket_of(e->key)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    s->n_entries--;
    free(e);
}

/* "<prefix>rl:<hex>" (a rate bucket), "<prefix>rc:<hex>" and "<prefix>rh:<hex>" (a slot set). */
static size_t redis_key(const shard_t *sh, char *out, size_t cap, const char *kind, uint64_t key)
{
    int n = snprintf(out, cap, "%s%s:%016llx", redis_key_prefix(sh->cfg), kind, (unsigned long long)key);
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

static size_t put_u64(char *out, uint64_t v) { return (size_t)sprintf(out, "%llu", (unsigned long long)v); }

static void on_take(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err);
static void on_conc(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err);

/* Asks for the next rate lease of `want` tokens; false when Redis refused at once. */
static bool ask_tokens(shard_t *sh, rlg_entry_t *e, uint32_t want)
{
    char k[160], a1[24], a2[24], a3[24];
    const char *argv[4] = {k, a1, a2, a3};
    size_t len[4] = {redis_key(sh, k, sizeof k, "rl", e->key), put_u64(a1, e->rate.t_us),
                     put_u64(a2, e->rate.tau_us), put_u64(a3, want)};
    e->handle = redis_evalsha(sh, g_script_take, on_take, e, 0, 1, 4, argv, len);
    if (!e->handle)
        return false;
    e->asked = want;
    COUNT(sh, round_trips, 1);
    return true;
}

/* Sends the shard's slot count for the key, asking for `want` more. */
static bool ask_slots(shard_t *sh, rlg_entry_t *e, uint32_t want)
{
    rlg_shard_t *s = rs_of(sh);
    char kz[160], kh[160], a2[24], a3[24], a4[24], a5[24];
    const char *argv[7] = {kz, kh, s->holder, a2, a3, a4, a5};
    size_t len[7] = {redis_key(sh, kz, sizeof kz, "rc", e->key), redis_key(sh, kh, sizeof kh, "rh", e->key),
                     strlen(s->holder), put_u64(a2, e->tokens), put_u64(a3, want), put_u64(a4, e->conc.max),
                     put_u64(a5, e->conc.ttl_ms)};
    e->handle = redis_evalsha(sh, g_script_conc, on_conc, e, 0, 2, 7, argv, len);
    if (!e->handle)
        return false;
    e->asked = want;
    e->sent = e->tokens;
    e->renew_at_us = sh->now_us + (uint64_t)e->conc.ttl_ms * 1000 / 3;
    COUNT(sh, round_trips, 1);
    return true;
}

static void on_given(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    if (err || !rep || rep->type == REDIS_REPLY_ERROR)
        COUNT(sh, errors, 1);
    else
        COUNT(sh, tokens_returned, tag);
}

/* Unspent tokens go back to the bucket (fire and forget: if Redis cannot take
 * them, they stay charged there until the bucket refills). */
static void give_back(shard_t *sh, rlg_entry_t *e)
{
    if (!e->tokens)
        return;
    char k[160], a1[24], a2[24];
    const char *argv[3] = {k, a1, a2};
    size_t len[3] = {redis_key(sh, k, sizeof k, "rl", e->key), put_u64(a1, e->rate.t_us), put_u64(a2, e->tokens)};
    if (redis_evalsha(sh, g_script_give, on_given, NULL, e->tokens, 1, 3, argv, len))
        COUNT(sh, round_trips, 1);
    e->tokens = 0;
}

static void wait_done(rlg_wait_t *w, int how, uint32_t retry_s);

static rlg_wait_t *waiter_pop(rlg_entry_t *e)
{
    if (list_empty(&e->waiters))
        return NULL;
    rlg_wait_t *w = list_item(list_first(&e->waiters), rlg_wait_t, link);
    list_unlink(&w->link);
    list_init(&w->link);
    return w;
}

static uint32_t waiters_count(rlg_entry_t *e)
{
    uint32_t n = 0;
    list_each_safe(&e->waiters, it, tmp) n++;
    return n;
}

/* Every waiter of e gets `how` (-1: Redis could not answer; 0: refused). */
static void waiters_end(rlg_entry_t *e, int how, uint32_t retry_s)
{
    rlg_wait_t *w;
    while ((w = waiter_pop(e)))
        wait_done(w, how, retry_s);
}

static uint32_t secs_up(uint64_t us) { return us ? (uint32_t)((us + 999999) / 1000000) : 1; }

static bool reply_ints(const redisReply *rep, int err, size_t n, long long *out)
{
    if (err || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (rep->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
        out[i] = rep->element[i]->integer;
    }
    return true;
}

/* ---- rate ---- */

rlg_verdict_t rlg_rate_take(shard_t *sh, uint64_t key, const rlg_rate_t *rate, rl_hold_t *hold, uint32_t *n)
{
    rlg_shard_t *s = sh ? rs_of(sh) : NULL;
    rlg_entry_t *e = s ? entry_get(s, key, K_RATE) : NULL;
    if (!e)
        return RLG_DOWN;
    uint64_t now = sh->now_us;
    e->rate = *rate;   /* a reload that keeps the rule keeps its key; the numbers are the same */
    e->last_use_us = now;
    hold->key = key;
    hold->leased = sh->id;
    hold->amount = 1;
    if (e->tokens && now < e->expires_us) {
        e->tokens--;
        hold->cell = RLG_CELL_RATE;
        /* under half the lease: renew now, before it runs out */
        if (e->size >= 2 && e->tokens < e->size / 2 && !e->handle) {
            e->size = rlg_lease_next(e->size, e->rate.lease_max, now - e->granted_us);
            ask_tokens(sh, e, e->size);
        }
        *n = e->tokens;
        return RLG_TAKEN;
    }
    if (now < e->refused_until_us) {
        *n = secs_up(e->refused_until_us - now);
        return RLG_REFUSED;
    }
    if (!e->handle) {
        give_back(sh, e);   /* expired tokens, if any */
        e->size = rlg_lease_next(e->size, e->rate.lease_max, e->granted_us ? now - e->granted_us : UINT64_MAX);
        if (!ask_tokens(sh, e, e->size))
            return RLG_DOWN;
    }
    hold->cell = RLG_CELL_WRATE;
    return RLG_WAIT;
}

static void on_take(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    rlg_entry_t *e = ctx;
    long long v[3];
    rlg_wait_t *w;
    uint32_t asked = e->asked;
    e->handle = 0;
    if (!reply_ints(rep, err, 3, v) || v[0] < 0 || v[1] < 0) {
        COUNT(sh, errors, 1);
        waiters_end(e, -1, 0);
        return;
    }
    mark_up(sh);
    uint64_t now = sh->now_us;
    if (v[0] > 0) {
        COUNT(sh, leases_granted, 1);
        COUNT(sh, tokens_granted, (uint64_t)v[0]);
        e->tokens += (uint32_t)v[0];
        e->granted_us = now;
        e->expires_us = now + RLG_LEASE_TTL_US;
    } else {
        e->refused_until_us = now + (v[1] ? (uint64_t)v[1] : e->rate.t_us);   /* even with nobody waiting */
    }
    while (e->tokens && (w = waiter_pop(e))) {
        e->tokens--;
        wait_done(w, 1, 0);   /* may start a run, and a pipelined request may then ask again */
    }
    if (list_empty(&e->waiters) || e->handle)
        return;   /* nobody left, or they wait for the command just issued */
    if ((uint64_t)v[0] < asked) {
        /* the bucket is empty: refuse without asking again until it has a token */
        uint64_t retry = v[1] ? (uint64_t)v[1] : e->rate.t_us;
        e->refused_until_us = now + retry;
        waiters_end(e, 0, secs_up(retry));
        return;
    }
    /* more runs joined than the lease held: ask again for them */
    uint32_t n = waiters_count(e);
    if (!ask_tokens(sh, e, n > e->size ? n : e->size))
        waiters_end(e, -1, 0);
}

/* ---- concurrency ---- */

rlg_verdict_t rlg_conc_take(shard_t *sh, uint64_t key, const rlg_conc_t *conc, rl_hold_t *hold, uint32_t *retry_s)
{
    rlg_shard_t *s = sh ? rs_of(sh) : NULL;
    rlg_entry_t *e = s ? entry_get(s, key, K_CONC) : NULL;
    if (!e)
        return RLG_DOWN;
    uint64_t now = sh->now_us;
    e->conc = *conc;
    e->last_use_us = now;
    hold->key = key;
    hold->leased = sh->id;
    hold->amount = 1;
    if (e->tokens > e->used) {
        e->used++;
        hold->cell = RLG_CELL_CONC;
        return RLG_TAKEN;
    }
    if (now < e->refused_until_us) {
        *retry_s = 1;
        return RLG_REFUSED;
    }
    if (!e->handle && !ask_slots(sh, e, 1 + e->conc.spare))
        return RLG_DOWN;
    hold->cell = RLG_CELL_WCONC;
    return RLG_WAIT;
}

static void on_conc(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    rlg_entry_t *e = ctx;
    long long v[2];
    rlg_wait_t *w;
    uint32_t asked = e->asked;
    e->handle = 0;
    if (!reply_ints(rep, err, 2, v) || v[0] < 0) {
        COUNT(sh, errors, 1);
        waiters_end(e, -1, 0);
        return;
    }
    mark_up(sh);
    e->synced = e->sent + (uint32_t)v[0];
    if (v[0] > 0) {
        COUNT(sh, slots_granted, (uint64_t)v[0]);
        e->tokens += (uint32_t)v[0];
    }
    while (e->tokens > e->used && (w = waiter_pop(e))) {
        e->used++;
        wait_done(w, 1, 0);
    }
    if (e->handle)
        return;
    if (list_empty(&e->waiters)) {
        if (e->tokens != e->synced)
            ask_slots(sh, e, 0);   /* slots given back while the command was in flight */
        return;
    }
    if ((uint64_t)v[0] < asked) {
        /* every slot is held: refuse, and refuse without asking for 100 ms */
        e->refused_until_us = sh->now_us + 100000;
        waiters_end(e, 0, 1);
        return;
    }
    /* runs that joined while a renewal or a release was in flight: ask for them */
    if (!ask_slots(sh, e, waiters_count(e) + e->conc.spare))
        waiters_end(e, -1, 0);
}

/* A slot given back: kept as a spare, or returned to Redis. */
static void conc_put(shard_t *sh, rlg_entry_t *e)
{
    if (e->used)
        e->used--;
    if (e->tokens - e->used > e->conc.spare) {
        COUNT(sh, slots_returned, e->tokens - e->used - e->conc.spare);
        e->tokens = e->used + e->conc.spare;
        if (!e->handle)
            ask_slots(sh, e, 0);   /* if refused, the sweep's renewal sends the count later */
    }
}

void rlg_release(rl_hold_t *hold)
{
    if (!rlg_is_hold(hold) || hold->leased >= g_nshards) {
        rl_hold_clear(hold);
        return;
    }
    shard_t *sh = &g_shards[hold->leased];
    rlg_shard_t *s = rs_of(sh);
    rlg_entry_t *e = s ? entry_find(s, hold->key) : NULL;
    if (e && hold->cell == RLG_CELL_RATE && e->kind == K_RATE)
        e->tokens++;   /* the run was refused after all: the token is still unspent */
    else if (e && hold->cell == RLG_CELL_CONC && e->kind == K_CONC)
        conc_put(sh, e);
    rl_hold_clear(hold);
}

/* ---- the sweep: expired leases, slot renewals, idle entries ---- */

static void sweep(agate_timer_t *t)
{
    rlg_shard_t *s = (rlg_shard_t *)((char *)t - offsetof(rlg_shard_t, sweep));
    shard_t *sh = s->sh;
    uint64_t now = sh->now_us;
    for (uint32_t b = 0; b < RLG_BUCKETS; b++) {
        rlg_entry_t *e = s->buckets[b], *next;
        for (; e; e = next) {
            next = e->next;
            if (e->kind == K_RATE && e->tokens && now >= e->expires_us) {
                give_back(sh, e);
                e->size = rlg_lease_next(e->size, e->rate.lease_max, UINT64_MAX);
            }
            if (e->kind == K_CONC && !e->handle && (e->tokens || e->used) && now >= e->renew_at_us) {
                if (!ask_slots(sh, e, 0))
                    e->renew_at_us = now + 1000000;   /* Redis is down: try again in a second */
            }
            if (!e->handle && list_empty(&e->waiters) && !e->tokens && !e->used &&
                now - e->last_use_us > RLG_IDLE_US)
                entry_free(s, e);
        }
    }
    timer_arm(&sh->timers, &s->sweep, sh->now_ms + RLG_SWEEP_MS);
}

/* ---- the gate: a run waiting for Redis before its stream starts ---- */

static void gate_start(run_t *r);
static void gate_resume(run_t *r) {}
static void gate_stop(run_t *r);
static const run_kind_ops_t gate_ops = {gate_start, gate_resume, gate_stop};

static inline rlg_gate_t *gate_of(run_t *r) { return (rlg_gate_t *)r->ext[g_rlg_ext]; }

void rlg_holds_settle(rl_holds_t *hs, bool final)
{
    uint8_t n = 0;
    for (uint8_t i = 0; !final && i < hs->n; i++)
        if (hs->h[i].cell == RLG_CELL_WRATE || hs->h[i].cell == RLG_CELL_WCONC)
            return;   /* the gate settles them when its answers are in */
    for (uint8_t i = 0; i < hs->n; i++)
        if (hs->h[i].cell != RLG_CELL_RATE && hs->h[i].cell != RLG_CELL_WRATE && hs->h[i].cell != RLG_CELL_WCONC &&
            hs->h[i].cell != UINT32_MAX)
            hs->h[n++] = hs->h[i];
    hs->n = n;
}

static void gate_finish(rlg_gate_t *g)
{
    run_t *r = g->r;
    r->ops = g->saved;
    g->r = NULL;
    if (g->refused || g->unavailable) {
        for (uint8_t i = 0; i < r->holds.n; i++)
            if (r->holds.h[i].cell == RLG_CELL_RATE)
                rlg_release(&r->holds.h[i]);   /* a refused run consumes no token */
        rlg_holds_settle(&r->holds, true);               /* the slots it took are released with the run */
        if (g->unavailable)
            r->sink->fail(r, 503, "rate_limit_unavailable",
                          "a global limit cannot be checked while its shared store is unreachable", 1);
        else
            r->sink->fail(r, 429, "rate_limit_exceeded", "rate limit exceeded, retry later",
                          g->retry_s ? g->retry_s : 1);
        return;
    }
    rlg_holds_settle(&r->holds, true);
    r->ops->start(r);
}

/* One of the run's waits is answered: how 1 allowed, 0 refused (retry_s), -1
 * Redis could not answer (the rule's on_redis_down decides). */
static void wait_done(rlg_wait_t *w, int how, uint32_t retry_s)
{
    rlg_gate_t *g = w->g;
    run_t *r = g->r;
    shard_t *sh = r->sh;
    rl_hold_t *h = &r->holds.h[w->hold];
    rlg_entry_t *e = w->e;
    w->e = NULL;
    if (how > 0) {
        h->cell = h->cell == RLG_CELL_WRATE ? RLG_CELL_RATE : RLG_CELL_CONC;
        rlg_count(sh, RLG_R_WAITED);
    } else if (how == 0) {
        rl_hold_clear(h);
        rlg_count(sh, RLG_R_REFUSED);
        g->refused = true;
        if (retry_s > g->retry_s)
            g->retry_s = retry_s;
    } else {
        bool rate = h->cell == RLG_CELL_WRATE;
        /* no entry (cannot happen within a turn; defensive): nothing to fall back on but allow */
        rlg_down_mode_t m = !e ? RLG_DOWN_ALLOW : rate ? (rlg_down_mode_t)e->rate.down : (rlg_down_mode_t)e->conc.down;
        uint64_t key = h->key;
        rl_hold_clear(h);
        rlg_fallback(sh, m);
        if (m == RLG_DOWN_DENY) {
            g->unavailable = true;
        } else if (m == RLG_DOWN_LOCAL) {
            rl_result_t res = rate ? rl_rate_take(g_local, key, &e->rate.share, rl_now_ns(), h)
                                   : rl_conc_take_leased(g_local, key, e->conc.share_max, e->conc.share_lease, h);
            if (rate)
                rl_hold_clear(h);   /* a local charge is not refunded if another limit refuses */
            if (!res.allowed) {
                g->refused = true;
                uint32_t rs = (uint32_t)((res.retry_ns + 999999999u) / 1000000000u);
                if (rs > g->retry_s)
                    g->retry_s = rs;
            }
        }
    }
    if (--g->left == 0)
        gate_finish(g);
}

void rlg_gate(run_t *r)
{
    bool any = false;
    for (uint8_t i = 0; i < r->holds.n && !any; i++)
        any = r->holds.h[i].cell == RLG_CELL_WRATE || r->holds.h[i].cell == RLG_CELL_WCONC;
    if (!any)
        return;
    rlg_gate_t *g = gate_of(r);
    if (!g && !(g = r->ext[g_rlg_ext] = calloc(1, sizeof *g))) {
        /* no memory for the gate: decide these limits as if Redis were down */
        for (uint8_t i = 0; i < r->holds.n; i++)
            if (r->holds.h[i].cell == RLG_CELL_WRATE || r->holds.h[i].cell == RLG_CELL_WCONC)
                rl_hold_clear(&r->holds.h[i]);
        rlg_holds_settle(&r->holds, true);
        return;
    }
    memset(g, 0, sizeof *g);
    g->r = r;
    g->saved = r->ops;
    r->ops = &gate_ops;
}

static void gate_start(run_t *r)
{
    rlg_gate_t *g = gate_of(r);
    rlg_shard_t *s = rs_of(r->sh);
    g->left = 1;   /* held while the waits are queued, so none finishes the gate early */
    for (uint8_t i = 0; i < r->holds.n; i++) {
        rl_hold_t *h = &r->holds.h[i];
        if (h->cell != RLG_CELL_WRATE && h->cell != RLG_CELL_WCONC)
            continue;
        rlg_wait_t *w = &g->w[g->n++];
        w->g = g;
        w->hold = i;
        w->e = entry_find(s, h->key);
        list_init(&w->link);
        g->left++;
        if (w->e && w->e->handle)
            list_push_back(&w->e->waiters, &w->link);
        else
            wait_done(w, -1, 0);   /* its command already failed, or there is none: fall back */
    }
    if (--g->left == 0)
        gate_finish(g);
}

static void gate_stop(run_t *r)
{
    rlg_gate_t *g = gate_of(r);
    for (uint8_t i = 0; i < g->n; i++)
        if (g->w[i].e) {
            list_unlink(&g->w[i].link);
            g->w[i].e = NULL;
        }
    r->ops = g->saved;
    g->r = NULL;
    r->ops->stop(r);
}

static void gate_destroy(run_t *r)
{
    free(r->ext[g_rlg_ext]);
    r->ext[g_rlg_ext] = NULL;
}

static const run_ext_ops_t rlg_ext = {.destroy = gate_destroy};

/* ---- the shard module ---- */

static int rlg_init(shard_t *sh)
{
    rlg_shard_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->sh = sh;
    char host[40] = "";
    gethostname(host, sizeof host - 1);
    snprintf(s->holder, sizeof s->holder, "%s:%d:%08x:%u", host, (int)getpid(), (unsigned)rand_next(&sh->rng),
             sh->id);
    s->sweep.cb = sweep;
    sh->mod[g_rlg_mod] = s;
    return 0;
}

static void rlg_start(shard_t *sh)
{
    rlg_shard_t *s = rs_of(sh);
    if (s && redis_configured(sh->cfg))
        timer_arm(&sh->timers, &s->sweep, sh->now_ms + RLG_SWEEP_MS);
}

static void rlg_free(shard_t *sh)
{
    rlg_shard_t *s = rs_of(sh);
    if (!s)
        return;
    for (uint32_t b = 0; b < RLG_BUCKETS; b++)
        while (s->buckets[b]) {
            rlg_entry_t *e = s->buckets[b];
            if (e->handle)
                redis_cancel(sh, e->handle);
            entry_free(s, e);
        }
    timer_cancel(&sh->timers, &s->sweep);
    free(s);
    sh->mod[g_rlg_mod] = NULL;
}

static const shard_mod_ops_t rlg_mod = {.name = "rlglobal", .init = rlg_init, .start = rlg_start, .free = rlg_free};

/* ---- metrics ---- */

#define SUM(expr) GWM_SUM(sh, n, rlg_metrics_t, g_rlg_metrics, expr)

static void render(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    static const char *const results[RLG_R_COUNT] = {"leased", "waited", "refused", "fallback"};
    static const char *const modes[3] = {"local", "allow", "deny"};
    char lb[64];
    if (!redis_configured(cfg))
        return;
    metrics_family(r, "agate_ratelimit_global_decisions", "counter",
                   "Decisions of global limits, by how they were made (leased: a token at hand, no round trip).");
    for (int i = 0; i < RLG_R_COUNT; i++) {
        snprintf(lb, sizeof lb, "result=\"%s\"", results[i]);
        metrics_sample_u(r, "agate_ratelimit_global_decisions", "_total", lb, SUM(m_->decisions[i]));
    }
    metrics_family(r, "agate_ratelimit_global_fallbacks", "counter",
                   "Global limit decisions made by on_redis_down while Redis could not answer, by mode.");
    for (int i = 0; i < 3; i++) {
        snprintf(lb, sizeof lb, "mode=\"%s\"", modes[i]);
        metrics_sample_u(r, "agate_ratelimit_global_fallbacks", "_total", lb, SUM(m_->fallbacks[i]));
    }
    metrics_family(r, "agate_ratelimit_global_leases", "counter", "Rate leases granted by Redis.");
    metrics_sample_u(r, "agate_ratelimit_global_leases", "_total", "", SUM(m_->leases_granted));
    metrics_family(r, "agate_ratelimit_global_tokens", "counter", "Tokens leased from Redis and given back unused.");
    metrics_sample_u(r, "agate_ratelimit_global_tokens", "_total", "state=\"granted\"", SUM(m_->tokens_granted));
    metrics_sample_u(r, "agate_ratelimit_global_tokens", "_total", "state=\"returned\"", SUM(m_->tokens_returned));
    metrics_family(r, "agate_ratelimit_global_slots", "counter", "Concurrency slots leased from Redis and given back.");
    metrics_sample_u(r, "agate_ratelimit_global_slots", "_total", "state=\"granted\"", SUM(m_->slots_granted));
    metrics_sample_u(r, "agate_ratelimit_global_slots", "_total", "state=\"returned\"", SUM(m_->slots_returned));
    metrics_family(r, "agate_ratelimit_global_round_trips", "counter", "Commands the global limiter sent to Redis.");
    metrics_sample_u(r, "agate_ratelimit_global_round_trips", "_total", "", SUM(m_->round_trips));
    metrics_family(r, "agate_ratelimit_global_errors", "counter",
                   "Global limiter commands that failed (timeout, connection lost, error reply).");
    metrics_sample_u(r, "agate_ratelimit_global_errors", "_total", "", SUM(m_->errors));
    metrics_family(r, "agate_ratelimit_global_transitions", "counter",
                   "Changes of the global limiter's state (down: Redis could not answer; up: it answers again).");
    metrics_sample_u(r, "agate_ratelimit_global_transitions", "_total", "to=\"down\"", SUM(m_->transitions[0]));
    metrics_sample_u(r, "agate_ratelimit_global_transitions", "_total", "to=\"up\"", SUM(m_->transitions[1]));
}

void rlg_register(rl_table_t *local)
{
    static bool scripts;   /* main thread; a test's set-up may register modules twice */
    g_local = local;
    if (!scripts) {
        g_script_take = redis_script_register(RLG_LUA_TAKE);
        g_script_give = redis_script_register(RLG_LUA_GIVE);
        g_script_conc = redis_script_register(RLG_LUA_CONC);
        scripts = true;
    }
    g_rlg_mod = shard_mod_register(&rlg_mod);
    g_rlg_metrics = gwm_block_register("ratelimit_global", sizeof(rlg_metrics_t), render);
    g_rlg_ext = run_ext_register(&rlg_ext);
}
