/* breaker: a proxy agent's endpoints as one shard sees them: a circuit breaker
 * per endpoint, and the balancer that picks among them.
 *
 * The table lives in shard_t.breakers. net/proxy.c sets it up with the rest of
 * the shard's proxy state (breaker_shard_init when the first proxy agent
 * appears) and frees it with the shard; only that shard's thread touches it,
 * so each shard decides alone, on its share of the traffic, without locks.
 *
 * One attempt on an endpoint is a hold, from breaker_pick to breaker_end:
 *   breaker_pick    picks an endpoint and admits the attempt (an open breaker
 *                   admits nothing, a half-open one breaker.half_open_trials
 *                   trial attempts);
 *   breaker_record  what the attempt showed of the endpoint: it works (its
 *                   first event) or it fails (refused, reset, timeout, 5xx);
 *   breaker_end     the attempt lets go of the endpoint, exactly once, however
 *                   it ended. A trial that recorded nothing (the client left,
 *                   a 429, no connection, ...) gives its half-open slot back.
 *
 *   closed ──failures in a row, or error rate──► open
 *   open ──breaker.open elapsed (seen by a pick)──► half_open
 *   half_open ──a trial fails──► open
 *   half_open ──half_open_trials trials succeed──► closed
 *
 * Each transition is one log line (msg "breaker") and moves the shard's
 * agate_upstream_breaker_open gauge (core/metrics.c). */
#ifndef AGATE_BREAKER_H
#define AGATE_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/shard.h"

typedef struct breaker_hold {
    int16_t  ep;          /* the endpoint held, -1 when none */
    uint16_t agent;       /* its agent's slot */
    bool     trial;       /* admitted while half-open */
    bool     recorded;    /* breaker_record was called */
    uint32_t epoch;       /* the agent's endpoint epoch when admitted (breaker_adopt) */
    uint32_t period;      /* the endpoint's half-open period, for a trial */
} breaker_hold_t;

#define BREAKER_HOLD_NONE ((breaker_hold_t){.ep = -1})

void breaker_register(void);           /* main thread, at start-up: the per-shard table's slot */
int  breaker_shard_init(shard_t *sh);   /* 0 or -ENOMEM; freed with the shard */
bool breaker_shard_ready(const shard_t *sh);
void breaker_shard_free(shard_t *sh);   /* the shard module's free; tests call it */

/* Shard thread, adopting a new generation (sh->cfg): every agent that is new
 * or whose endpoints changed starts with closed, untried breakers. Attempts
 * held from before keep counting as outstanding, but their outcomes no longer
 * count (the agent's epoch moved on). */
void breaker_adopt(shard_t *sh, const cfg_t *old);

/* Picks one of ag's endpoints, one not in tried (a bit per endpoint) if one
 * is available, and holds it in *h. -1 when every breaker is open, with
 * retry_after_s: when the first may admit a trial. */
int  breaker_pick(shard_t *sh, const cfg_agent_t *ag, uint64_t tried, breaker_hold_t *h, uint32_t *retry_after_s);

/* What the held attempt showed; nothing when h holds nothing. */
void breaker_record(shard_t *sh, breaker_hold_t *h, bool failed);

/* The attempt is over; *h then holds nothing (a second call does nothing).
 * An unrecorded trial's slot goes back to its half-open period. */
void breaker_end(shard_t *sh, breaker_hold_t *h);

#endif
