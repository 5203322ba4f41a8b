/* uring: ring setup and the provided buffer ring (liburing 2.3 has no
 * io_uring_setup_buf_ring helper, so the ring memory is mapped here). */
#include "core/uring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int uring_setup(struct io_uring *ring, unsigned entries)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = entries * 4;
        rc = io_uring_queue_init_params(entries, ring, &p);
        if (rc == 0)
            break;
        if (rc != -EINVAL)
            return rc;
    }
    if (rc)
        return rc;
    /* Saves an fd lookup per io_uring_enter; harmless where unsupported. */
    (void)io_uring_register_ring_fd(ring);
    return 0;
}

int uring_bufs_init(struct io_uring *ring, uring_bufs_t *b, uint16_t bgid, uint32_t count, uint32_t size)
{
    memset(b, 0, sizeof *b);
    size_t ring_bytes = count * sizeof(struct io_uring_buf);
    void *r = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (r == MAP_FAILED)
        return -errno;
    b->mem = malloc((size_t)count * size);
    if (!b->mem) {
        munmap(r, ring_bytes);
        return -ENOMEM;
    }
    b->br = r;
    b->count = count;
    b->size = size;
    b->mask = (uint32_t)io_uring_buf_ring_mask(count);
    b->bgid = bgid;
    io_uring_buf_ring_init(b->br);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)r, .ring_entries = count, .bgid = bgid};
    int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc) {
        munmap(r, ring_bytes);
        free(b->mem);
        memset(b, 0, sizeof *b);
        return rc;
    }
    for (uint32_t i = 0; i < count; i++)
        io_uring_buf_ring_add(b->br, uring_bufs_addr(b, (uint16_t)i), size, (unsigned short)i, (int)b->mask, (int)i);
    io_uring_buf_ring_advance(b->br, (int)count);
    return 0;
}

void uring_bufs_free(struct io_uring *ring, uring_bufs_t *b)
{
    if (!b->br)
        return;
    io_uring_unregister_buf_ring(ring, b->bgid);
    munmap(b->br, b->count * sizeof(struct io_uring_buf));
    free(b->mem);
    memset(b, 0, sizeof *b);
}
