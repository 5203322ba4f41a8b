/* coalesce: how a cacheable run is served: from the cache (HIT), by joining an
 * identical run already streaming from upstream (COALESCED), or by its agent
 * while recording what it streams for the others and for the cache (MISS).
 *
 * A recording run (the leader) appends each validated upstream event, as a
 * proto/runrec.h record, to its flight: an append-only log of immutable
 * chunks whose per-chunk published length is stored with release and read
 * with acquire, shared through a process-wide RCU hash table so followers on
 * any shard can attach. A follower replays the log from the start at its own
 * pace, then follows it live, each with its own run ids; a follower whose
 * client lags more than cache.max_lag bytes behind is detached with a
 * RUN_ERROR instead of slowing anyone. Cross-shard wake-ups reuse the shard's
 * eventfd: the leader sets a per-shard pending flag and writes the eventfd
 * only when the flag was clear, so a busy stream costs at most one write per
 * follower shard per loop turn of that shard, and an idle shard sleeps. When
 * the run finishes cleanly the log is copied once into a cache entry; when it
 * fails every follower gets the RUN_ERROR and nothing is stored. */
#ifndef AGATE_COALESCE_H
#define AGATE_COALESCE_H

#include <stdbool.h>

#include "core/shard.h"
#include "net/http1.h"
#include "proto/run.h"

/* Process start/end, around the shards (after cache_init, before cache_shutdown). */
int  coalesce_init(void);
void coalesce_shutdown(void);

/* Before run_start, for a run of an agent with a cache: decides HIT,
 * COALESCED or MISS from the request (its Cache-Control and the headers that
 * are part of the key) and sets the run up for it, including the X-Cache and
 * Age head lines. req is the run's HTTP request; for a WebSocket run it is
 * the upgrade request, shared by every run on the connection. Whatever the
 * sink, a replay reaches it through sink->raw (one WebSocket text frame per
 * event). Nothing for an agent without a cache. 0 or -ENOMEM. */
int coalesce_prepare(run_t *r, const http_req_t *req);

/* "HIT", "MISS" or "COALESCED" once coalesce_prepare decided (for logs), NULL
 * for a run of an agent without a cache; valid until the run is released. */
const char *coalesce_result(const run_t *r);

/* net/proxy.c, on a recording run: each validated event before it goes to
 * the client; the clean end (RUN_FINISHED, stream closed); a failure, with
 * the HTTP status, code and message the run's own client got. */
void coalesce_record(run_t *r, agui_type_t type, const char *json, size_t len);
void coalesce_leader_done(run_t *r, bool finished);   /* finished: ended with RUN_FINISHED */
void coalesce_leader_failed(run_t *r, int status, const char *code, const char *msg);

/* Whether the run takes part in coalescing (a leader, a follower, a HIT). */
bool coalesce_active(const run_t *r);

/* Main thread, at start-up: the per-shard follower lists (a shard module,
 * polled at the end of each turn) and the per-run state (run hooks). */
void coalesce_register(void);

#endif
