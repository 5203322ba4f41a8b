/* coalesce_tier2: the response cache's second tier, shared by every agate
 * process on one Redis (core/redis.h), for agents with cache.shared.
 *
 * Lookup: a run that missed the local tier and found no local flight to join
 * waits, before its head is written, in this file's run kind (swapped in by
 * coalesce_prepare, the agent's own kind kept in co->wrapped): its start()
 * issues GET <prefix>cache:<hex key>, its stop() cancels the GET and stops the
 * wrapped kind. A valid entry (proto/tier2.h) goes into the local tier for the
 * rest of its ttl and the run replays it as a HIT (X-Cache-Tier: shared);
 * anything else (not found, refused, an error, a timeout, Redis down: the
 * command refused at once) decides locally as before, so the run leads a
 * flight to its agent or follows one that started meanwhile. Nothing here
 * makes a run fail: Redis is never needed to serve.
 *
 * Store: when a leader's run finished cleanly, its log is copied into an
 * entry and SET with PX <cache.ttl>, after the client has every event; the
 * copy is this file's until the reply (whatever core/redis.c does with argv).
 * Runs over cache.shared_max_bytes are not shared.
 *
 * Across pods (cache.shared_wait > 0): a run that found no entry takes a lock,
 * SET <prefix>cachelock:<hex> NX PX <shared_wait>. Taken: it leads. Held: another
 * pod is running the same request, so it GETs the entry every POLL_MS until
 * it comes (a HIT) or shared_wait runs out (then it leads too). With
 * shared_wait 0 (the default) there is no lock: identical requests missing on
 * two pods at once both go to the agent and the later SET wins (the same
 * answer). Within a pod they coalesce as always. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cache.h"
#include "core/redis.h"
#include "net/coalesce_int.h"
#include "net/coalesce_metrics.h"
#include "net/conn.h"
#include "proto/tier2.h"

#define KEY_CAP 320   /* prefix + "cache:" + 64 hex digits */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* <prefix><what><hex of the key> into out; its length, 0 when it does not fit. */
static size_t redis_key(const run_t *r, const char *what, const uint8_t key[CANON_KEY_LEN], char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    int n = snprintf(out, cap, "%s%s", redis_key_prefix(r->cfg), what);
    if (n < 0 || (size_t)n + 2 * CANON_KEY_LEN + 1 > cap)
        return 0;
    for (unsigned i = 0; i < CANON_KEY_LEN; i++) {
        out[n + 2 * i] = hex[key[i] >> 4];
        out[n + 2 * i + 1] = hex[key[i] & 15];
    }
    out[n + 2 * CANON_KEY_LEN] = '\0';
    return (size_t)n + 2 * CANON_KEY_LEN;
}

static inline void count_lookup(const shard_t *sh, enum coalm_t2_lookup what)
{
    if (coalm_t2(sh))
        metrics_add(&coalm_t2(sh)->lookups[what], 1);
}

static inline void count_store(const shard_t *sh, enum coalm_t2_store what)
{
    if (coalm_t2(sh))
        metrics_add(&coalm_t2(sh)->stores[what], 1);
}

bool coal_tier2_on(const run_t *r) { return r->agent->cache_shared && redis_configured(r->cfg); }

/* --- lookup -------------------------------------------------------------------------- */

enum { T2_GET, T2_LOCK, T2_POLL };   /* coal_run_t.t2_phase */
#define POLL_MS 20u                  /* between GETs while another pod's run is waited for */

static void on_get(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err);
static void on_lock(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err);

static inline void count_wait(const shard_t *sh, enum coalm_t2_wait what)
{
    if (coalm_t2(sh))
        metrics_add(&coalm_t2(sh)->waits[what], 1);
}

/* The run's log line says what was decided (an SSE run's is read from its request). */
static void note_result(run_t *r)
{
    conn_t *c = r->conn;
    if (c && c->run == r)
        c->http.req.cache = coalesce_result(r);
}

/* The wait is over: the run goes on under its own kind (a leader) or a
 * replay's (a hit, a follower). May release the run. */
static void proceed(run_t *r, coal_run_t *co, cache_entry_t *e, uint64_t age_ms)
{
    r->ops = co->wrapped;
    if (e)
        coal_serve_hit(r, co, e, true, age_ms);
    else
        coal_decide_local(r, co);
    note_result(r);
    r->ops->start(r);
}

/* GET the entry (T2_GET, T2_POLL) or take the lock (T2_LOCK): SET
 * <prefix>cachelock:<hex> 1 NX PX <shared_wait>. False when refused at once. */
static bool issue(run_t *r, coal_run_t *co, uint8_t phase)
{
    char k[KEY_CAP], px[24];
    size_t kl = redis_key(r, phase == T2_LOCK ? "cachelock:" : "cache:", co->key, k, sizeof k);
    co->t2_phase = phase;
    co->t2_cmd = 0;
    if (!kl)
        return false;
    if (phase != T2_LOCK) {
        const char *argv[2] = {"GET", k};
        size_t lens[2] = {3, kl};
        co->t2_cmd = redis_cmd(r->sh, on_get, r, 0, 2, argv, lens);
    } else {
        size_t pl = buf_fmt_u64(px, r->agent->cache_shared_wait_ms);
        const char *argv[6] = {"SET", k, "1", "NX", "PX", px};
        size_t lens[6] = {3, kl, 1, 2, 2, pl};
        co->t2_cmd = redis_cmd(r->sh, on_lock, r, 0, 6, argv, lens);
    }
    return co->t2_cmd != 0;
}

static void wait_start(run_t *r)
{
    coal_run_t *co = coal_run_of(r);
    if (!issue(r, co, T2_GET)) {   /* down (or over its pending bound): go on now */
        count_lookup(r->sh, T2L_DOWN);
        proceed(r, co, NULL, 0);
    }
}

static void wait_resume(run_t *r) { (void)r; }   /* nothing was written yet */

/* Released while waiting (the client left, the server stops); run_release
 * cancels the poll timer (r->tick). */
static void wait_stop(run_t *r)
{
    coal_run_t *co = coal_run_of(r);
    if (co->t2_cmd)
        redis_cancel(r->sh, co->t2_cmd);
    co->t2_cmd = 0;
    if (co->wrapped && co->wrapped->stop)
        co->wrapped->stop(r);
}

static const run_kind_ops_t wait_ops = {wait_start, wait_resume, wait_stop};

void coal_tier2_wait(run_t *r, coal_run_t *co, const uint8_t key[CANON_KEY_LEN])
{
    memcpy(co->key, key, CANON_KEY_LEN);
    co->wrapped = r->ops;
    r->ops = &wait_ops;
}

static void poll_fired(agate_timer_t *t)
{
    run_t *r = (run_t *)((char *)t - offsetof(run_t, tick));
    coal_run_t *co = coal_run_of(r);
    if (!issue(r, co, T2_POLL)) {
        count_wait(r->sh, T2W_ERROR);
        proceed(r, co, NULL, 0);
    }
}

/* Another pod's run is awaited: GET again in POLL_MS, or lead at the deadline. */
static void poll_later(run_t *r, coal_run_t *co)
{
    shard_t *sh = r->sh;
    if (sh->now_ms >= co->t2_until) {
        count_wait(sh, T2W_TIMEOUT);
        proceed(r, co, NULL, 0);
        return;
    }
    uint64_t at = sh->now_ms + POLL_MS < co->t2_until ? sh->now_ms + POLL_MS : co->t2_until;
    r->tick.cb = poll_fired;
    if (timer_arm(&sh->timers, &r->tick, at)) {
        count_wait(sh, T2W_ERROR);
        proceed(r, co, NULL, 0);
    }
}

static void on_lock(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    (void)tag;
    run_t *r = ctx;
    coal_run_t *co = coal_run_of(r);
    co->t2_cmd = 0;
    if (!err && rep->type == REDIS_REPLY_NIL) {   /* held: another pod runs it */
        co->t2_until = sh->now_ms + r->agent->cache_shared_wait_ms;
        poll_later(r, co);
        return;
    }
    count_wait(sh, !err && rep->type == REDIS_REPLY_STATUS ? T2W_LEADER : T2W_ERROR);
    proceed(r, co, NULL, 0);
}

/* An entry read from Redis, checked, into the local tier until the end of its
 * ttl (the shorter of its writer's and this agent's, from when it was first
 * stored); a ref on it for the run, or NULL (counted). */
static cache_entry_t *adopt(run_t *r, coal_run_t *co, const char *p, size_t n, uint64_t *age_ms)
{
    shard_t *sh = r->sh;
    tier2_meta_t m;
    const char *recs = NULL;
    size_t len = 0;
    if (coalm_t2(sh))
        metrics_add(&coalm_t2(sh)->bytes_read, n);
    int why = tier2_decode(p, n, co->key, tier2_agent_hash(r->agent->name), &m, &recs, &len);
    uint64_t now = wall_ms(), age = 0, ttl = 0;
    if (why == TIER2_OK) {
        age = now > m.stored_ms ? now - m.stored_ms : 0;
        ttl = m.ttl_ms < r->agent->cache_ttl_ms ? m.ttl_ms : r->agent->cache_ttl_ms;
        if (age >= ttl)
            why = TIER2_EXPIRED;   /* on this pod's clock; Redis's PX had not removed it yet */
    }
    if (why != TIER2_OK) {
        count_lookup(sh, T2L_REJECTED);
        if (coalm_t2(sh))
            metrics_add(&coalm_t2(sh)->rejected[why], 1);
        return NULL;
    }
    /* The local blob: the SSE plan, then the records (coal_reader_blob). */
    buf_t plan = {0};
    const char *parts[1] = {recs};
    size_t lens[1] = {len};
    cache_entry_t *e = NULL;
    char *data;
    if (runrec_plan_build(&plan, parts, lens, 1) || plan.len > UINT32_MAX ||
        !(e = cache_entry_new(4 + plan.len + len, &data))) {
        buf_free(&plan);
        count_lookup(sh, T2L_ERROR);   /* out of memory, or too big for the local tier */
        return NULL;
    }
    uint32_t pl = (uint32_t)plan.len;
    memcpy(data, &pl, 4);
    memcpy(data + 4, plan.data, plan.len);
    memcpy(data + 4 + plan.len, recs, len);
    buf_free(&plan);
    /* dated back by its age, so its local hits say how old it is and it
     * expires when its first copy does */
    int rc = sh->now_ms >= age ? cache_insert_ref(e, co->key, r->agent->name, ttl, sh->now_ms - age, &e)
                               : cache_insert_ref(e, co->key, r->agent->name, ttl - age, sh->now_ms, &e);
    if (rc) {
        count_lookup(sh, T2L_ERROR);
        return NULL;
    }
    count_lookup(sh, T2L_HIT);
    *age_ms = age;
    return e;
}

static void on_get(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    (void)tag;
    run_t *r = ctx;
    coal_run_t *co = coal_run_of(r);
    bool polling = co->t2_phase == T2_POLL;
    cache_entry_t *e = NULL;
    uint64_t age = 0;
    co->t2_cmd = 0;
    if (!err && rep->type == REDIS_REPLY_NIL) {
        if (polling) {
            poll_later(r, co);
            return;
        }
        count_lookup(sh, T2L_MISS);
        if (r->agent->cache_shared_wait_ms && issue(r, co, T2_LOCK))
            return;   /* on_lock goes on */
    } else if (err) {
        count_lookup(sh, err == -ETIMEDOUT ? T2L_TIMEOUT : T2L_ERROR);
    } else if (rep->type != REDIS_REPLY_STRING) {
        count_lookup(sh, T2L_ERROR);   /* -WRONGTYPE and such: Redis refused the GET */
    } else {
        e = adopt(r, co, rep->str, rep->len, &age);
    }
    if (polling)
        count_wait(sh, e ? T2W_HIT : T2W_ERROR);
    proceed(r, co, e, age);
}

/* --- store --------------------------------------------------------------------------- */

static void on_set(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    (void)tag;
    buf_t *b = ctx;   /* the entry, held until now */
    if (err)
        count_store(sh, err == -ETIMEDOUT ? T2S_TIMEOUT : T2S_ERROR);
    else
        count_store(sh, rep->type == REDIS_REPLY_ERROR ? T2S_ERROR : T2S_STORED);
    buf_free(b);
    free(b);
}

/* The flight's chunks as parts for tier2_encode; n of them, 0 on ENOMEM. */
static size_t flight_parts(coal_flight_t *f, const char ***parts, size_t **lens)
{
    size_t n = 0, k = 0;
    for (coal_chunk_t *c = f->head; c; c = atomic_load_explicit(&c->next, memory_order_relaxed))
        n++;
    *parts = malloc(n * sizeof **parts);
    *lens = malloc(n * sizeof **lens);
    if (!*parts || !*lens) {
        free(*parts);
        free(*lens);
        return 0;
    }
    for (coal_chunk_t *c = f->head; c; c = atomic_load_explicit(&c->next, memory_order_relaxed), k++) {
        (*parts)[k] = c->data;
        (*lens)[k] = atomic_load_explicit(&c->pub, memory_order_relaxed);
    }
    return n;
}

void coal_tier2_store(run_t *r, coal_flight_t *f)
{
    shard_t *sh = r->sh;
    if (!coal_tier2_on(r))
        return;
    if (atomic_load_explicit(&f->total, memory_order_relaxed) > r->agent->cache_shared_max) {
        count_store(sh, T2S_TOO_LARGE);
        return;
    }
    if (!redis_up(sh)) {   /* before the copy: it would be refused */
        count_store(sh, T2S_DOWN);
        return;
    }
    const char **parts;
    size_t *lens, n = flight_parts(f, &parts, &lens);
    buf_t *b = n ? calloc(1, sizeof *b) : NULL;
    tier2_meta_t m = {.agent = tier2_agent_hash(r->agent->name), .stored_ms = wall_ms(),
                      .ttl_ms = r->agent->cache_ttl_ms};
    memcpy(m.key, f->key, CANON_KEY_LEN);
    int rc = b ? tier2_encode(b, &m, parts, lens, n) : -ENOMEM;
    if (n) {
        free(parts);
        free(lens);
    }
    char k[KEY_CAP], ttl[24];
    size_t kl = rc ? 0 : redis_key(r, "cache:", f->key, k, sizeof k);
    size_t tl = buf_fmt_u64(ttl, r->agent->cache_ttl_ms);
    const char *argv[5] = {"SET", k, b ? b->data : NULL, "PX", ttl};
    size_t alen[5] = {3, kl, b ? b->len : 0, 2, tl};
    if (!kl || !redis_cmd(sh, on_set, b, 0, 5, argv, alen)) {
        count_store(sh, kl ? T2S_DOWN : T2S_ERROR);
        if (b)
            buf_free(b);
        free(b);
        return;
    }
    if (coalm_t2(sh))
        metrics_add(&coalm_t2(sh)->bytes_written, b->len);
}
