/* ratelimit: GCRA and concurrency cells in one fixed-size, lock-free,
 * open-addressed table shared by every shard.
 *
 * Invariants (the argument is in docs/ARCHITECTURE.md, "Rate limiting"):
 *  - A cell's key changes only while its state word holds the BUSY value, and
 *    every change of key bumps the 8-bit generation in the state word. So a
 *    state word read with generation g belongs to the key the cell had under g,
 *    and a CAS that expects that word fails if the cell changed hands since.
 *  - A decision is one CAS of the state word (GCRA: TAT -> max(TAT, now) + T);
 *    a failed CAS retries with the value it saw. No lock, no allocation.
 *  - Idle cells (TAT <= now, or no concurrency slot held) carry no information:
 *    forgetting one gives the same answers as keeping it. Only idle cells are
 *    taken over, so eviction never loses limiter state.
 *  - A concurrency cell with slots held is never idle, so it keeps its key and
 *    generation until the last slot is released: a release is a plain atomic
 *    decrement of the cell it was taken from. */
#include "core/ratelimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GEN_SHIFT 56
#define VAL_MASK  ((UINT64_C(1) << GEN_SHIFT) - 1)
#define BUSY      VAL_MASK                     /* the cell is changing hands */

static inline uint64_t st_gen(uint64_t s) { return s >> GEN_SHIFT; }
static inline uint64_t st_val(uint64_t s) { return s & VAL_MASK; }
static inline uint64_t st_make(uint64_t gen, uint64_t val) { return (gen << GEN_SHIFT) | (val & VAL_MASK); }

static uint64_t g_base_ns;   /* set once by the first rl_table_init, before any shard runs */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Starts at 1 s so that a fresh TAT of 0 is always in the past; 2^56 ns is
 * over two years of uptime. */
uint64_t rl_now_ns(void) { return mono_ns() - g_base_ns + 1000000000u; }

int rl_table_init(rl_table_t *t, uint64_t capacity)
{
    uint64_t cap = 2 * RL_PROBE;
    while (cap < capacity && cap < (UINT64_C(1) << 31))
        cap <<= 1;
    memset(t, 0, sizeof *t);
    t->cells = calloc(cap, sizeof *t->cells);
    if (!t->cells)
        return -ENOMEM;
    t->mask = cap - 1;
    if (!g_base_ns)
        g_base_ns = mono_ns();
    return 0;
}

void rl_table_free(rl_table_t *t)
{
    free(t->cells);
    t->cells = NULL;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

uint64_t rl_hash(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = mix64(seed ^ (n * UINT64_C(0x9e3779b97f4a7c15)));
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ mix64(w)) * UINT64_C(0x9e3779b97f4a7c15);
        h = (h << 31) | (h >> 33);
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return mix64(h ^ w ^ ((uint64_t)n << 59));
}

uint64_t rl_key(uint64_t rule_id, unsigned limit, const void *client, size_t len, bool concurrency)
{
    uint64_t k = rl_hash(client, len, rule_id * UINT64_C(0x9e3779b97f4a7c15) + limit + 1);
    k = (k & ~UINT64_C(1)) | (concurrency ? 1u : 0u);
    return k > 1 ? k : 2;
}

static inline bool is_idle(uint64_t key, uint64_t s, uint64_t now)
{
    uint64_t v = st_val(s);
    if (v == BUSY)
        return false;
    if (!key)
        return true;
    return (key & 1) ? v == 0 : v <= now;
}

/* The state word of cell j, waiting out a claim in progress (a few hundred ns
 * at most, unless the claiming thread is preempted: then give up on the cell). */
static uint64_t load_state(rl_cell_t *c)
{
    uint64_t s = atomic_load(&c->state);
    for (int spin = 0; st_val(s) == BUSY && spin < 4096; spin++) {
        __builtin_ia32_pause();
        s = atomic_load(&c->state);
    }
    return s;
}

/* Finds (or claims) the cell for key. Returns its index and, in *state, the
 * state word read for it; -1 when the probe window has no cell for it. */
static long find(rl_table_t *t, uint64_t key, uint64_t now, uint64_t *state)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        uint64_t base = mix64(key) & t->mask;
        long cand = -1;
        uint64_t cand_state = 0, cand_key = 0;
        for (uint64_t i = 0; i < RL_PROBE; i++) {
            uint64_t j = (base + i) & t->mask;
            rl_cell_t *c = &t->cells[j];
            uint64_t s = load_state(c);
            uint64_t k = atomic_load(&c->key);
            if (k == key && st_val(s) != BUSY) {
                *state = s;
                return (long)j;
            }
            if (cand < 0 && is_idle(k, s, now)) {
                cand = (long)j;
                cand_state = s;
                cand_key = k;
            }
        }
        if (cand < 0) {
            atomic_fetch_add_explicit(&t->full, 1, memory_order_relaxed);
            return -1;
        }
        /* Take the idle cell: BUSY under a new generation, the key, then a
         * fresh (idle) value. Readers that saw the old word fail their CAS. */
        rl_cell_t *c = &t->cells[cand];
        uint64_t gen = (st_gen(cand_state) + 1) & 0xff;
        if (!atomic_compare_exchange_strong(&c->state, &cand_state, st_make(gen, BUSY)))
            continue;
        atomic_store(&c->key, key);
        uint64_t fresh = st_make(gen, 0);
        atomic_store(&c->state, fresh);
        atomic_fetch_add_explicit(&t->claims, 1, memory_order_relaxed);
        if (cand_key)
            atomic_fetch_add_explicit(&t->evictions, 1, memory_order_relaxed);
        /* Two shards may claim two cells for one new key at once (each saw a
         * different first idle cell). The lowest cell in the window wins: every
         * lookup takes the first match, and our claimed cell, still fresh, is
         * idle, so leaving it costs nothing. */
        for (uint64_t i = 0; i < RL_PROBE; i++) {
            uint64_t j = (base + i) & t->mask;
            if ((long)j == cand)
                break;
            rl_cell_t *o = &t->cells[j];
            uint64_t s = load_state(o);
            if (atomic_load(&o->key) == key && st_val(s) != BUSY) {
                *state = s;
                return (long)j;
            }
        }
        *state = fresh;
        return cand;
    }
    atomic_fetch_add_explicit(&t->full, 1, memory_order_relaxed);
    return -1;
}

rl_result_t rl_rate_take(rl_table_t *t, uint64_t key, const rl_rate_t *rate, uint64_t now, rl_hold_t *hold)
{
    rl_result_t r = {.allowed = true};
    uint64_t s;
    rl_hold_clear(hold);
    long idx = find(t, key, now, &s);
    if (idx < 0) {
        r.remaining = (uint32_t)(rate->burst_ns / rate->interval_ns);
        return r;   /* no cell: allowed (counted in t->full) */
    }
    rl_cell_t *c = &t->cells[idx];
    uint64_t gen = st_gen(s);
    for (;;) {
        uint64_t tat = st_val(s);
        uint64_t nt = (tat > now ? tat : now) + rate->interval_ns;
        if (nt - now > rate->burst_ns) {
            r.allowed = false;
            r.remaining = 0;
            r.retry_ns = nt - now - rate->burst_ns;
            r.reset_ns = tat > now ? tat - now : 0;
            return r;
        }
        if (atomic_compare_exchange_weak(&c->state, &s, st_make(gen, nt))) {
            r.remaining = (uint32_t)((rate->burst_ns - (nt - now)) / rate->interval_ns);
            r.reset_ns = nt - now;
            hold->cell = (uint32_t)idx;
            hold->gen = (uint8_t)gen;
            hold->amount = rate->interval_ns;
            return r;
        }
        /* s now holds what the cell has; a new generation or BUSY means it
         * changed hands: look the key up again. */
        if (st_val(s) == BUSY || st_gen(s) != gen) {
            idx = find(t, key, now, &s);
            if (idx < 0)
                return r;
            c = &t->cells[idx];
            gen = st_gen(s);
        }
    }
}

void rl_refund(rl_table_t *t, rl_hold_t *hold)
{
    if (hold->cell == UINT32_MAX)
        return;
    rl_cell_t *c = &t->cells[hold->cell];
    uint64_t s = atomic_load(&c->state);
    while (st_gen(s) == hold->gen && st_val(s) != BUSY) {
        uint64_t v = st_val(s);
        uint64_t nv = v > hold->amount ? v - hold->amount : 0;
        if (atomic_compare_exchange_weak(&c->state, &s, st_make(st_gen(s), nv)))
            break;
    }
    rl_hold_clear(hold);
}

rl_result_t rl_conc_take(rl_table_t *t, uint64_t key, uint32_t max, rl_hold_t *hold)
{
    rl_result_t r = {.allowed = true};
    uint64_t s;
    rl_hold_clear(hold);
    long idx = find(t, key, 0, &s);
    if (idx < 0) {
        r.remaining = max;
        return r;
    }
    rl_cell_t *c = &t->cells[idx];
    uint64_t gen = st_gen(s);
    for (;;) {
        uint64_t v = st_val(s);
        if (v >= max) {
            r.allowed = false;
            r.retry_ns = 1000000000u;   /* a slot frees when a run ends: no better guess */
            return r;
        }
        if (atomic_compare_exchange_weak(&c->state, &s, st_make(gen, v + 1))) {
            r.remaining = max - (uint32_t)v - 1;
            hold->cell = (uint32_t)idx;
            hold->gen = (uint8_t)gen;
            hold->amount = 1;
            return r;
        }
        if (st_val(s) == BUSY || st_gen(s) != gen) {
            idx = find(t, key, 0, &s);
            if (idx < 0)
                return r;
            c = &t->cells[idx];
            gen = st_gen(s);
        }
    }
}

void rl_release(rl_table_t *t, rl_hold_t *hold)
{
    if (hold->cell == UINT32_MAX)
        return;
    /* count > 0 pins the cell (never idle, never taken over), so the generation
     * cannot change under us and a plain decrement is exact. */
    atomic_fetch_sub(&t->cells[hold->cell].state, 1);
    rl_hold_clear(hold);
}

uint64_t rl_table_used(rl_table_t *t, uint64_t now)
{
    uint64_t n = 0;
    for (uint64_t j = 0; j <= t->mask; j++) {
        uint64_t k = atomic_load_explicit(&t->cells[j].key, memory_order_relaxed);
        uint64_t s = atomic_load_explicit(&t->cells[j].state, memory_order_relaxed);
        n += k && !is_idle(k, s, now);
    }
    return n;
}
