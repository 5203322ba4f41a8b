/* slab: set-up and tear-down of a slot table (see slab.h). */
#include "core/slab.h"

#include <errno.h>
#include <stdlib.h>

int slab_init(slab_t *s, uint32_t cap, size_t size)
{
    s->base = calloc(cap ? cap : 1, size);
    s->free = malloc((cap ? cap : 1) * sizeof *s->free);
    if (!s->base || !s->free) {
        slab_free(s);
        return -ENOMEM;
    }
    s->size = size;
    s->cap = cap;
    s->n_free = cap;
    for (uint32_t i = 0; i < cap; i++) {
        ((slab_item_t *)slab_at(s, i))->slot = i;
        s->free[i] = cap - 1 - i;
    }
    return 0;
}

void slab_free(slab_t *s)
{
    free(s->base);
    free(s->free);
    s->base = NULL;
    s->free = NULL;
    s->cap = s->n_free = 0;
}
