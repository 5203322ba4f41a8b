/* qsbr: quiescent-state-based reclamation of what the main thread replaces
 * under running shards (the access policy, configuration generations).
 *
 * A shard keeps a published pointer only within a loop turn (a run that keeps
 * a generation longer counts itself on it, core/cfggen.c), so the top of each
 * turn is a quiescent state: qsbr_quiescent stores the epoch the shard has
 * seen, one release store on the shard's own cache line. The main thread,
 * once it has unpublished an object, takes an epoch with qsbr_retire and frees
 * the object when qsbr_safe says every online shard has passed a quiescent
 * state since. Readers take no lock and touch no shared counter.
 *
 * Why not liburcu's QSBR flavour (agate links urcu-memb for the cache): its
 * readers must go offline around every blocking wait, two more atomic stores
 * per loop turn, and synchronize_rcu blocks the main thread while an idle
 * shard sleeps; here the main thread polls once a second and wakes idle
 * shards instead. */
#ifndef AGATE_QSBR_H
#define AGATE_QSBR_H

#include <stdbool.h>
#include <stdint.h>

/* Main thread, before the shards start: n shards, all online, none past any
 * epoch yet. 0 or -ENOMEM. */
int  qsbr_init(unsigned n);
void qsbr_shutdown(void);

/* Shard id, at the top of each loop turn: it holds nothing published before. */
void qsbr_quiescent(unsigned id);
/* Shard id has stopped (or never started): it holds nothing, ever again. */
void qsbr_offline(unsigned id);

/* Main thread, right after unpublishing an object: the epoch it waits for. */
uint64_t qsbr_retire(void);
/* Main thread: whether every online shard has passed a quiescent state since
 * epoch was taken. */
bool qsbr_safe(uint64_t epoch);

#endif
