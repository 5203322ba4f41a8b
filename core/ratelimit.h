/* ratelimit: a lock-free table of limiter cells shared by every shard.
 *
 * A cell is one 16-byte word, changed only by a 16-byte compare-and-swap
 * (cmpxchg16b): the key (a 64-bit hash of rule identity, limit and client key;
 * 0 = empty) and the state. For a rate limit the state is the GCRA
 * "theoretical arrival time" in nanoseconds since the table was made; for a
 * concurrency limit it is the number of runs holding a slot. A decision is one
 * CAS that expects the key AND the state it read, so it can only land on the
 * cell of its own key: no generation counter, no ABA. No mutex anywhere. A key
 * has at most one cell at any time (claims of a new key are ordered by a CAS on
 * an insertion epoch). The table has a fixed number of cells (bounded memory);
 * a cell whose state is idle (TAT in the past, or no slot held) is
 * indistinguishable from an absent one, so another key may take it over: that
 * is the eviction. See docs/ARCHITECTURE.md, "Access control and rate
 * limiting", for why this is correct under concurrent shards. */
#ifndef AGATE_RATELIMIT_H
#define AGATE_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RL_PROBE 16                 /* cells examined per lookup */

/* key in the low half, state in the high half (x86-64 is little-endian). */
typedef union rl_cell {
    unsigned __int128 w;
    struct {
        uint64_t key;
        uint64_t state;
    };
} __attribute__((aligned(16))) rl_cell_t;

typedef struct rl_table {
    rl_cell_t       *cells;
    uint64_t         id;            /* unique per rl_table_init: leases name their table by it */
    uint64_t         mask;          /* capacity - 1 (a power of two) */
    _Atomic uint64_t *epochs;       /* insertion epochs, by key hash (claims of one key meet here) */
    uint64_t         emask;
    _Atomic uint64_t claims;        /* cells taken for a key */
    _Atomic uint64_t evictions;     /* of those, cells that held another key */
    _Atomic uint64_t full;          /* lookups that found no cell: allowed, counted */
} rl_table_t;

/* A rate: `count` requests per `period_ns`, with up to `burst` at once. */
typedef struct rl_rate {
    uint64_t interval_ns;           /* period / count: the emission interval T */
    uint64_t burst_ns;              /* burst * T: how far ahead of now the TAT may run */
    uint32_t lease;                 /* tokens a thread may take from the cell at once (0, 1: none) */
} rl_rate_t;

#define RL_LEASE_MAX 64
#define RL_LEASES    64             /* lease entries a thread keeps; a key may use either of two */

/* What one decision says about its limit, for the RateLimit-* headers. */
typedef struct rl_result {
    bool     allowed;
    uint32_t remaining;             /* requests still allowed right now */
    uint64_t reset_ns;              /* until the limit is back to full */
    uint64_t retry_ns;              /* refused: until one request would pass */
} rl_result_t;

/* RateLimit-* header values for one response: the limit that is closest to
 * refusing (fewest remaining). */
typedef struct rl_quota {
    bool     set;
    uint32_t limit, remaining;
    uint32_t reset_s;               /* seconds until the quota is full again */
    uint32_t retry_s;               /* refused: Retry-After */
} rl_quota_t;

/* A held concurrency slot or a rate charge, undone by rl_release/rl_refund. */
typedef struct rl_hold {
    uint32_t cell;                  /* index; UINT32_MAX = nothing held */
    uint32_t leased;                /* the charge came from this thread's lease of the key */
    uint64_t key;                   /* the cell's key when charged (refunds check it) */
    uint64_t amount;                /* rate: T charged; concurrency: 1 */
} rl_hold_t;

/* capacity is rounded up to a power of two (at least 2 * RL_PROBE). 0 or -ENOMEM. */
int  rl_table_init(rl_table_t *t, uint64_t capacity);
void rl_table_free(rl_table_t *t);

/* Nanoseconds on the table's clock (CLOCK_MONOTONIC). */
uint64_t rl_now_ns(void);

/* The key of (rule identity, limit index, client key bytes); never below 4. The
 * low bit is 1 for a concurrency limit so an idle test knows how to read the
 * state; bit 1 is always 0 (the table marks a cell being claimed with it). */
uint64_t rl_key(uint64_t rule_id, unsigned limit, const void *client, size_t len, bool concurrency);
/* The same in two steps, for a rule with several limits: hash the client once. */
uint64_t rl_key_base(uint64_t rule_id, const void *client, size_t len);
uint64_t rl_key_of(uint64_t base, unsigned limit, bool concurrency);
uint64_t rl_hash(const void *p, size_t n, uint64_t seed);

/* The lease for a rate when `threads` threads take from it: tokens a thread
 * may hold unused stay lost to the others (or, taken early, are spent late),
 * so a lease is at most 1/200 of a second's rate and 1/8 of the burst across
 * all threads: the error stays under 0.5% of the rate. A rate too small for
 * a lease of 2 gets none and every decision is one CAS on the cell. */
uint32_t rl_lease_for(const rl_rate_t *rate, unsigned threads);

/* GCRA: one request against `rate` for `key` at `now`. On allow, *hold records
 * the charge so that a later refusal by another rule can give it back. With
 * rate->lease > 1 a thread takes up to that many tokens in one CAS and spends
 * them from its own lease table until they run out or a second has passed. */
rl_result_t rl_rate_take(rl_table_t *t, uint64_t key, const rl_rate_t *rate, uint64_t now, rl_hold_t *hold);
/* Gives back a charge made by rl_rate_take (the request was refused elsewhere). */
void rl_refund(rl_table_t *t, rl_hold_t *hold);

/* Concurrency: takes one of `max` slots for `key`. */
rl_result_t rl_conc_take(rl_table_t *t, uint64_t key, uint32_t max, rl_hold_t *hold);
/* The same with a lease: a thread takes up to `lease` slots in one CAS and keeps
 * at most `lease` of them spare for its next runs. The cell counts every slot a
 * thread holds, used or spare, so the cap is never passed; spares make it refuse
 * at most threads * lease early, which rl_conc_lease_for keeps within 1% of max. */
rl_result_t rl_conc_take_leased(rl_table_t *t, uint64_t key, uint32_t max, uint32_t lease, rl_hold_t *hold);
uint32_t rl_conc_lease_for(uint32_t max, unsigned threads);
/* Releases a slot taken by rl_conc_take(_leased); idempotent (clears the hold).
 * A leased slot is best released on the thread that took it (it goes back to
 * that thread's spares); elsewhere it goes back to the cell. */
void rl_release(rl_table_t *t, rl_hold_t *hold);

/* Cells holding a key at the moment (a scan: for metrics, not the hot path). */
uint64_t rl_table_used(rl_table_t *t, uint64_t now);

static inline void rl_hold_clear(rl_hold_t *h) { h->cell = UINT32_MAX; h->leased = 0; h->amount = 0; }

/* The concurrency slots one run holds, one per limit that applied. */
#define RL_MAX_HOLDS 8
typedef struct rl_holds {
    rl_hold_t h[RL_MAX_HOLDS];
    uint8_t   n;
} rl_holds_t;

/* Releases every slot in hs and empties it. */
static inline void rl_holds_release(rl_table_t *t, rl_holds_t *hs)
{
    for (uint8_t i = 0; i < hs->n; i++)
        rl_release(t, &hs->h[i]);
    hs->n = 0;
}

#endif
