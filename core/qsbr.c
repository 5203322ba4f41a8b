/* qsbr: quiescent-state-based reclamation (see qsbr.h).
 *
 * Ordering: qsbr_retire's fetch_add is a release after the unpublishing
 * store; a shard that loads the new epoch (acquire) before its quiescent store
 * therefore sees the new pointer from then on, and one that stored an older
 * epoch may still hold the old one. */
#include "core/qsbr.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define QSBR_OFFLINE UINT64_MAX

typedef struct { _Alignas(64) _Atomic uint64_t seen; } qsbr_slot_t;

static _Atomic uint64_t g_epoch = 1;
static qsbr_slot_t     *g_slots;
static unsigned         g_n;

int qsbr_init(unsigned n)
{
    free(g_slots);
    g_slots = aligned_alloc(64, (n ? n : 1) * sizeof *g_slots);
    if (!g_slots)
        return -ENOMEM;
    memset(g_slots, 0, (n ? n : 1) * sizeof *g_slots);
    g_n = n;
    return 0;
}

void qsbr_shutdown(void)
{
    free(g_slots);
    g_slots = NULL;
    g_n = 0;
}

void qsbr_quiescent(unsigned id)
{
    if (id < g_n)
        atomic_store_explicit(&g_slots[id].seen, atomic_load_explicit(&g_epoch, memory_order_acquire),
                              memory_order_release);
}

void qsbr_offline(unsigned id)
{
    if (id < g_n)
        atomic_store_explicit(&g_slots[id].seen, QSBR_OFFLINE, memory_order_release);
}

uint64_t qsbr_retire(void) { return atomic_fetch_add_explicit(&g_epoch, 1, memory_order_acq_rel) + 1; }

bool qsbr_safe(uint64_t epoch)
{
    for (unsigned i = 0; i < g_n; i++)
        if (atomic_load_explicit(&g_slots[i].seen, memory_order_acquire) < epoch)
            return false;
    return true;
}
