/* fdlimit: the process's descriptor budget (RLIMIT_NOFILE).
 *
 * At start, on the main thread before any shard opens: max_connections per
 * shard, times the shards, times the descriptors a connection may hold (its
 * socket, and its upstream's when a proxy agent is configured), plus the
 * listeners, rings and a margin, must fit the soft limit; the soft limit is
 * raised to the hard one when it does not, and if it still does not fit
 * max_connections is lowered to what does, and the log says so.
 *
 * While running: the top descriptor numbers of the limit are kept for the
 * admin listener, so health checks and scrapes are answered when clients
 * hold every other descriptor. */
#ifndef AGATE_FDLIMIT_H
#define AGATE_FDLIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/log.h"

#define FDLIMIT_ADMIN_RESERVE 32u   /* descriptors kept for the admin listener (fewer under a tiny limit) */
#define FDLIMIT_BASE          16u   /* stdio, trace export, DNS lookups, files read at a reload */
#define FDLIMIT_PER_SHARD     4u    /* its ring, its wake eventfd, its two listeners */

/* The first descriptor number of the admin listener's reserve; INT32_MAX until
 * fdlimit_fit. Set once before the shards start, read-only after. */
extern int g_fdlimit_reserve_from;

/* True when a descriptor just made (accept, socket) is one of the admin
 * listener's: a new descriptor always takes the lowest free number (POSIX), so
 * at most the reserve was free; anything but an admin connection gives it back. */
static inline bool fdlimit_reserved(int fd) { return fd >= g_fdlimit_reserve_from; }

typedef struct fdlimit_plan {
    uint64_t was, soft, hard;        /* RLIMIT_NOFILE: soft limit found, soft and hard limits now */
    uint64_t needed;                 /* descriptors max_connections as configured would need */
    uint32_t per_conn;               /* descriptors counted per connection: 1, or 2 with a proxy agent */
    uint32_t reserve;                /* kept for the admin listener */
    uint32_t configured;             /* max_connections asked for */
    uint32_t max_connections;        /* what fits: configured, or lower */
} fdlimit_plan_t;

/* Pure arithmetic, for the plan and its tests. */
uint32_t fdlimit_reserve_of(uint64_t limit);
uint64_t fdlimit_needed(uint64_t limit, unsigned shards, uint32_t max_conn, uint32_t per_conn);
/* The largest max_connections that fits `limit` (at least 1). */
uint32_t fdlimit_fitting(uint64_t limit, unsigned shards, uint32_t per_conn);

/* Main thread, at start: raises the soft limit if needed, lowers
 * c->max_connections when it does not fit (keeping the configured value in
 * c->max_connections_set), sets the admin reserve. 0, or -errno when the limit
 * cannot be read (then nothing is changed). */
int fdlimit_fit(cfg_t *c, unsigned shards, fdlimit_plan_t *plan);

/* Logs what fdlimit_fit changed, if anything: an info line when the soft
 * limit was raised, a warn line when max_connections was lowered. */
void fdlimit_log(const fdlimit_plan_t *plan, unsigned shards, log_ring_t *log);

#endif
