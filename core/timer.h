/* timer: a per-shard binary min-heap of deadlines in monotonic milliseconds.
 *
 * Timers are intrusive (embedded in a connection or run), so arming one never
 * allocates once the heap array has grown to the shard's high-water mark. Each
 * timer remembers its heap slot, so cancel and re-arm are O(log n). Only the
 * owning shard's thread touches its heap. */
#ifndef AGATE_TIMER_H
#define AGATE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

struct timer;
typedef void (*timer_cb)(struct timer *t);

typedef struct timer {
    uint64_t at;          /* deadline, ms */
    uint32_t slot;        /* index in heap + 1; 0 when not armed */
    timer_cb cb;
} agate_timer_t;

typedef struct timer_heap {
    agate_timer_t **v;
    uint32_t        n, cap;
} timer_heap_t;

static inline bool timer_armed(const agate_timer_t *t) { return t->slot != 0; }

int  timer_arm(timer_heap_t *h, agate_timer_t *t, uint64_t at);   /* (re)arms; 0 or -ENOMEM */
void timer_cancel(timer_heap_t *h, agate_timer_t *t);
/* Runs the callbacks of every timer due at `now`; a callback may arm or cancel timers. */
void timer_run(timer_heap_t *h, uint64_t now);
/* Deadline of the earliest timer, UINT64_MAX when none. */
static inline uint64_t timer_next(const timer_heap_t *h) { return h->n ? h->v[0]->at : UINT64_MAX; }
void timer_heap_free(timer_heap_t *h);

#endif
