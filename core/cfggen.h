/* cfggen: configuration generations, so SIGHUP can change agents under running
 * streams.
 *
 * The shards read the configuration without locks through shard_t.cfg. A
 * reload builds a new generation (a heap cfg_t), publishes it with one atomic
 * pointer store, and each shard adopts it at the top of its next loop turn. A
 * run keeps the generation it started with (run_t.cfg; run_t.agent points into
 * it) until it ends, so a stream started before a reload finishes on the
 * settings and endpoints it began with.
 *
 * Agents keep their slot (their index in cfg_t.agents) by name for the life of
 * the process: per-agent state indexed by slot (metrics, breakers, balancers,
 * upstream pools, limiter rules) carries over for every agent that stays. A
 * removed agent keeps its slot, marked removed (no new runs); a new name takes
 * the next unused slot, and a reload that would need more than CFG_MAX_AGENTS
 * distinct names since start is refused.
 *
 * Reclamation (main thread, core/qsbr.h): a replaced generation is freed once
 * (1) every running shard has adopted a newer one (passed a quiescent state
 * after the swap), (2) no run on any shard holds it (one counter per shard, on
 * its own cache line, written only by that shard) and (3) every shard has
 * passed a quiescent state after (1) and (2) were seen, so nothing a shard
 * read from it during the turn that ended its last run is still in use. */
#ifndef AGATE_CFGGEN_H
#define AGATE_CFGGEN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

struct shard;

/* Main thread, before the shards start: the first generation, a copy of start
 * with slots numbered in file order. NULL without memory. */
const cfg_t *cfggen_init(const cfg_t *start, unsigned nshards);

/* The generation shards adopt next (main thread; shards use shard_t.cfg). */
const cfg_t *cfggen_current(void);

/* Builds into out the generation for loaded over running: loaded's settings
 * and agents, each agent in the slot its name has had since start (new names in
 * free slots, names loaded no longer has kept as removed). Settings that only
 * apply at start keep running's values and their keys are listed in restart
 * (comma-separated, "" when none). 0, or -ENOSPC with err filled. Pure: no
 * state is changed, so it is also what unit tests call. */
int cfggen_prepare(const cfg_t *running, const cfg_t *loaded, cfg_t *out, char *restart, size_t restart_len,
                   char *err, size_t errlen);

/* Main thread: publishes next (a cfggen_prepare result, copied) as the new
 * generation and wakes the shards. 0 or -ENOMEM. */
int cfggen_publish(const cfg_t *next);

/* Main thread, about once a second: frees generations no shard can reach. */
void cfggen_reclaim(void);

/* Main thread: replaced generations not freed yet (runs still hold them). */
unsigned cfggen_retained(void);

/* Main thread, after every shard has stopped. */
void cfggen_shutdown(void);

/* Main thread, at start-up, before any other shard module: cfggen_shard_turn
 * as the first turn_begin hook (core/shard.h). */
void cfggen_register(void);

/* Shard thread, top of each loop turn, right after its quiescent state
 * (core/qsbr.h), before anything else: adopts a newly published generation,
 * running every module's adopt hook. So a shard seen past a generation's
 * retirement epoch has adopted a newer one. */
void cfggen_shard_turn(struct shard *sh);

/* Shard thread: a run starting on, or ending with, generation c. */
void cfggen_hold(const struct shard *sh, const cfg_t *c);
void cfggen_release(const struct shard *sh, const cfg_t *c);

/* Whether agent a's upstream endpoints (their list, hosts, ports, paths)
 * differ between two generations; slots agree by construction. */
bool cfggen_endpoints_changed(const cfg_agent_t *a, const cfg_agent_t *b);

#endif
