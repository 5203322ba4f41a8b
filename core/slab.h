/* slab: a fixed array of objects named by slot and generation, with a stack of
 * free slots. Connections (net/conns.c) and upstream connections
 * (net/upstream.c) live in one each.
 *
 * Every object begins with a slab_item_t. Taking a slot marks it live; putting
 * it back bumps its generation, so an io_uring completion that names the slot
 * from before (core/engine.h packs slot and generation into user_data) no
 * longer matches: slab_lookup is the one place that check is made. A slot is
 * put back only when no SQE naming it is in flight; the owner counts those. */
#ifndef AGATE_SLAB_H
#define AGATE_SLAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

typedef struct slab_item {
    uint32_t slot, gen;
    bool     live;
} slab_item_t;

typedef struct slab {
    char     *base;       /* cap objects of size bytes, owned */
    size_t    size;
    uint32_t *free;       /* stack of free slot indexes, owned */
    uint32_t  cap, n_free;
} slab_t;

/* cap zeroed objects of size bytes (each beginning with a slab_item_t), all
 * free; the lowest slot is taken first. 0 or -ENOMEM. */
int  slab_init(slab_t *s, uint32_t cap, size_t size);
void slab_free(slab_t *s);

static inline void *slab_at(const slab_t *s, uint32_t i) { return s->base + (size_t)i * s->size; }

/* A free object, marked live; NULL when every slot is taken. */
static inline void *slab_take(slab_t *s)
{
    if (!s->n_free)
        return NULL;
    slab_item_t *it = slab_at(s, s->free[--s->n_free]);
    it->live = true;
    return it;
}

static inline void slab_put(slab_t *s, void *obj)
{
    slab_item_t *it = obj;
    it->live = false;
    it->gen++;
    s->free[s->n_free++] = it->slot;
}

/* The live object a completion's user_data names, or NULL when the slot was
 * freed (and perhaps reused) since the SQE was made. */
static inline void *slab_lookup(const slab_t *s, uint64_t ud)
{
    uint32_t slot = eng_ud_slot(ud);
    if (!s || slot >= s->cap)
        return NULL;
    slab_item_t *it = slab_at(s, slot);
    return it->live && (it->gen & 0xffffffu) == eng_ud_gen(ud) ? it : NULL;
}

/* The user_data naming obj for an operation of kind op. */
static inline uint64_t slab_ud(const void *obj, uint8_t op)
{
    const slab_item_t *it = obj;
    return eng_ud(op, it->gen, it->slot);
}

#endif
