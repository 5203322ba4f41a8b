/* rlglobal: rate limits and concurrency caps shared by a fleet of agate
 * processes through Redis (core/redis.h), for rules marked `global: true`.
 *
 * Decisions stay local: each shard keeps a lease per global key (rule identity
 * + limit + client key, the limiter key of core/ratelimit.h). A rate lease is
 * tokens taken from the key's GCRA bucket in Redis by one atomic script; a
 * request with a token in its shard's lease takes it without Redis, and a
 * lease under half full is renewed in the background before it runs out. A
 * request for a key with no token waits for the reply before its stream starts
 * (rlg_gate: the run's kind is wrapped, so the client has seen nothing yet and
 * a refusal is still an HTTP 429). Unused tokens go back to the bucket when a
 * lease expires. Concurrency slots are leased the same way from a per-key set
 * of holders with an expiry, renewed while held, so a pod that dies gives its
 * slots back within rate_limit.global_slot_ttl.
 *
 * When Redis cannot answer (not up, refused, timed out) a rule falls back to
 * its on_redis_down mode: local (the rule's own per-process limiter at its
 * share, the rate divided by rate_limit.fleet_size), allow or deny (503
 * rate_limit_unavailable). Transitions are logged once each and counted.
 *
 * Everything here runs on the shard's thread; nothing blocks it. */
#ifndef AGATE_RLGLOBAL_H
#define AGATE_RLGLOBAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/ratelimit.h"

struct shard;
struct run;

/* What to do while Redis cannot answer for a global rule. */
typedef enum rlg_down_mode { RLG_DOWN_LOCAL = 0, RLG_DOWN_ALLOW, RLG_DOWN_DENY } rlg_down_mode_t;

/* A global rate limit as Redis's script sees it (filled in at policy build). */
typedef struct rlg_rate {
    uint64_t t_us;                 /* emission interval: period / count, µs */
    uint64_t tau_us;               /* burst * t_us */
    uint32_t lease_max;            /* rlg_lease_max */
    uint8_t  down;                 /* rlg_down_mode_t */
    rl_rate_t share;               /* on_redis_down local: this process's share, on the local table */
} rlg_rate_t;

/* A global concurrency cap. */
typedef struct rlg_conc {
    uint32_t max;
    uint32_t spare;                /* slots a shard may keep unused for its next runs */
    uint32_t ttl_ms;               /* a holder's slots expire this long after its last renewal */
    uint8_t  down;                 /* rlg_down_mode_t */
    uint32_t share_max, share_lease;   /* on_redis_down local: this process's share, on the local table */
} rlg_conc_t;

typedef enum rlg_verdict {
    RLG_TAKEN,                     /* decided here: *hold records it */
    RLG_WAIT,                      /* no token or slot at hand: *hold is a wait mark for rlg_gate */
    RLG_REFUSED,                   /* Redis said no recently: *retry_s */
    RLG_DOWN,                      /* Redis cannot answer now: the rule's on_redis_down decides */
} rlg_verdict_t;

/* Marks in rl_hold_t.cell for holds of this module (never a table index). */
#define RLG_CELL_RATE  (UINT32_MAX - 1)   /* a token taken: refunded if the run is refused after all */
#define RLG_CELL_CONC  (UINT32_MAX - 2)   /* a global slot: released when the run ends */
#define RLG_CELL_WRATE (UINT32_MAX - 3)   /* waiting for a token */
#define RLG_CELL_WCONC (UINT32_MAX - 4)   /* waiting for a slot */

static inline bool rlg_is_hold(const rl_hold_t *h) { return h->cell >= RLG_CELL_WCONC && h->cell != UINT32_MAX; }

/* ---- pure: lease sizing (tests/unit/test_rlglobal.c) ---- */

/* The most tokens one shard leases at once for `count` per `period_ns` with
 * `burst`, when `shards` shards of `pods` pods take from the bucket: a tenth
 * of a second's rate, and no more than the burst split between every shard of
 * the fleet; at least 1, at most RLG_LEASE_CAP. */
#define RLG_LEASE_CAP 1000
uint32_t rlg_lease_max(uint32_t count, uint64_t period_ns, uint32_t burst, unsigned shards, unsigned pods);
/* The next lease's size: doubled (up to max) when the last one lasted less
 * than RLG_FAST_US, halved (down to 1) when it lasted more than RLG_SLOW_US
 * or expired unused, else kept. A key seen once a second leases 1 token;
 * a busy one reaches max within a few renewals. */
#define RLG_FAST_US  100000u
#define RLG_SLOW_US 1000000u
uint32_t rlg_lease_next(uint32_t cur, uint32_t max, uint64_t lasted_us);

/* ---- shards ---- */

/* Main thread, at start-up: the per-shard lease tables, the scripts and the
 * metrics block. `local` is the per-process limiter table on_redis_down
 * local falls back to. */
void rlg_register(rl_table_t *local);

/* Whether the shard can ask Redis now (configured and up). */
bool rlg_up(struct shard *sh);

/* One request against a global rate limit `key`: a token from the shard's
 * lease (*n: the tokens left in it, for RateLimit-Remaining), or a wait (a
 * lease is being asked for), or a refusal Redis gave less than its retry
 * time ago (*n: seconds to wait), or down. */
rlg_verdict_t rlg_rate_take(struct shard *sh, uint64_t key, const rlg_rate_t *rate, rl_hold_t *hold, uint32_t *n);
/* One slot of a global concurrency cap `key`. */
rlg_verdict_t rlg_conc_take(struct shard *sh, uint64_t key, const rlg_conc_t *conc, rl_hold_t *hold,
                            uint32_t *retry_s);
/* Undoes a hold of this module (a token goes back to its lease, a slot to the
 * shard's spares or to Redis; a wait mark is dropped); on the shard that took it. */
void rlg_release(rl_hold_t *hold);

/* The admission is final (final), or decided without waiting: the tokens a
 * run took from leases are spent, so they leave its holds (which from then on
 * hold only slots). With a wait mark and !final, nothing changes. */
void rlg_holds_settle(rl_holds_t *hs, bool final);

/* After coalesce_prepare, before run_start: when r->holds has wait marks,
 * wraps r->ops in a waiting kind whose start queues the run on its keys'
 * leases; the answers restore the wrapped kind and start it, or fail the run
 * (429 rate_limit_exceeded with Retry-After; 503 rate_limit_unavailable for a
 * deny rule while Redis is down). */
void rlg_gate(struct run *r);

/* Counted by access_admit: a global decision and how it was made. */
typedef enum rlg_result {
    RLG_R_LEASED,      /* from a shard's lease, no round trip */
    RLG_R_WAITED,      /* allowed after waiting for Redis */
    RLG_R_REFUSED,     /* refused (Redis's answer, or a remembered one) */
    RLG_R_FALLBACK,    /* decided by on_redis_down */
    RLG_R_COUNT
} rlg_result_t;
void rlg_count(struct shard *sh, rlg_result_t r);
/* A fallback decision in mode m (and a logged transition when Redis was up). */
void rlg_fallback(struct shard *sh, rlg_down_mode_t m);

#endif
