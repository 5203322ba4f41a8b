/* uring: how agate names io_uring operations, and the provided-buffer ring.
 *
 * Every SQE carries a packed user_data: operation kind (8 bits), generation
 * (24 bits) and slot index (32 bits). A completion for a connection slot that was
 * closed and reused carries an old generation and is recognised as stale. */
#ifndef AGATE_URING_H
#define AGATE_URING_H

#include <liburing.h>
#include <stdint.h>

/* Operation kinds core itself uses; the others are handed out by
 * shard_op_register (core/shard.h) to the modules that submit them. */
enum uring_op {
    UD_NONE = 0,
    UD_WAKE,           /* eventfd read: the main thread asks for drain, stop or a turn */
    UD_IGNORE,         /* completions nobody waits for (cancels) */
    UD_FIRST_FREE,     /* the first kind shard_op_register hands out */
    UD_OP_MAX = 64,
};

static inline uint64_t uring_ud(uint8_t op, uint32_t gen, uint32_t slot)
{
    return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffffu) << 32 | slot;
}
static inline uint8_t uring_ud_op(uint64_t ud) { return (uint8_t)(ud >> 56); }
static inline uint32_t uring_ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffffu; }
static inline uint32_t uring_ud_slot(uint64_t ud) { return (uint32_t)ud; }

/* A ring of provided receive buffers, registered as buffer group `bgid`. The
 * kernel picks a buffer per multishot recv completion; the owner hands it back
 * with uring_bufs_recycle() as soon as the bytes are consumed. */
typedef struct uring_bufs {
    struct io_uring_buf_ring *br;
    char    *mem;
    uint32_t count, size, mask;
    uint16_t bgid;
} uring_bufs_t;

int  uring_bufs_init(struct io_uring *ring, uring_bufs_t *b, uint16_t bgid, uint32_t count, uint32_t size);
void uring_bufs_free(struct io_uring *ring, uring_bufs_t *b);
static inline char *uring_bufs_addr(const uring_bufs_t *b, uint16_t bid) { return b->mem + (size_t)bid * b->size; }
static inline void uring_bufs_recycle(uring_bufs_t *b, uint16_t bid)
{
    io_uring_buf_ring_add(b->br, uring_bufs_addr(b, bid), b->size, bid, (int)b->mask, 0);
    io_uring_buf_ring_advance(b->br, 1);
}

/* Sets up a ring the way a thread-per-core server wants it: single issuer with
 * deferred task work (completions run only when this thread asks), falling back
 * on older kernels. 0 or -errno. */
int uring_setup(struct io_uring *ring, unsigned entries);

#endif
