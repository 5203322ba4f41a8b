/* timer: binary min-heap. A hashed wheel would make arm O(1), but the heap keeps
 * exact millisecond deadlines and at 50k armed timers a re-arm is ~16 compares,
 * well below the cost of the send it paces. */
#include "core/timer.h"

#include <errno.h>
#include <stdlib.h>

static inline void place(timer_heap_t *h, uint32_t i, agate_timer_t *t)
{
    h->v[i] = t;
    t->slot = i + 1;
}

static void sift_up(timer_heap_t *h, uint32_t i)
{
    agate_timer_t *t = h->v[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (h->v[p]->at <= t->at)
            break;
        place(h, i, h->v[p]);
        i = p;
    }
    place(h, i, t);
}

static void sift_down(timer_heap_t *h, uint32_t i)
{
    agate_timer_t *t = h->v[i];
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        uint64_t best = t->at;
        if (l < h->n && h->v[l]->at < best)
            m = l, best = h->v[l]->at;
        if (l + 1 < h->n && h->v[l + 1]->at < best)
            m = l + 1;
        if (m == i)
            break;
        place(h, i, h->v[m]);
        i = m;
    }
    place(h, i, t);
}

void timer_cancel(timer_heap_t *h, agate_timer_t *t)
{
    if (!t->slot)
        return;
    uint32_t i = t->slot - 1;
    t->slot = 0;
    agate_timer_t *last = h->v[--h->n];
    if (i == h->n)
        return;
    place(h, i, last);
    sift_down(h, i);
    sift_up(h, last->slot - 1);
}

int timer_arm(timer_heap_t *h, agate_timer_t *t, uint64_t at)
{
    if (t->slot) {
        uint32_t i = t->slot - 1;
        uint64_t old = t->at;
        t->at = at;
        if (at < old)
            sift_up(h, i);
        else
            sift_down(h, i);
        return 0;
    }
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 256;
        agate_timer_t **v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    t->at = at;
    place(h, h->n++, t);
    sift_up(h, h->n - 1);
    return 0;
}

void timer_run(timer_heap_t *h, uint64_t now)
{
    while (h->n && h->v[0]->at <= now) {
        agate_timer_t *t = h->v[0];
        timer_cancel(h, t);
        t->cb(t);
    }
}

void timer_heap_free(timer_heap_t *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
