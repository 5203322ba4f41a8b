/* uring: ring set-up, provided-buffer rings (liburing 2.3 has no
 * io_uring_setup_buf_ring helper, so the ring memory is mapped by
 * core/engine.c and registered here) and the start-up probe. */
#include "core/uring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

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

int uring_bufs_register(struct io_uring *ring, eng_bufs_t *b)
{
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)b->br, .ring_entries = b->count, .bgid = b->bgid};
    return io_uring_register_buf_ring(ring, &reg, 0);
}

void uring_bufs_unregister(struct io_uring *ring, eng_bufs_t *b) { io_uring_unregister_buf_ring(ring, b->bgid); }

/* A multishot receive into the provided-buffer ring br (group 1), as every
 * connection's: Linux 6.0+; an older kernel answers -EINVAL. */
static int probe_multishot_recv(struct io_uring *ring, void *br, const char **step)
{
    static char mem[2][16];
    int sv[2];
    *step = "multishot receive";
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return -errno;
    io_uring_buf_ring_init(br);
    for (int i = 0; i < 2; i++)
        io_uring_buf_ring_add(br, mem[i], sizeof mem[i], (unsigned short)i, io_uring_buf_ring_mask(2), i);
    io_uring_buf_ring_advance(br, 2);
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 1;
    int rc = (int)write(sv[1], "x", 1) == 1 ? io_uring_submit_and_wait(ring, 1) : -errno;
    struct io_uring_cqe *cqe;
    if (rc >= 0 && !(rc = io_uring_peek_cqe(ring, &cqe))) {
        rc = cqe->res < 0 ? cqe->res : 0;
        io_uring_cqe_seen(ring, cqe);
    }
    close(sv[0]);   /* ends the receive; the ring's exit reaps it */
    close(sv[1]);
    return rc;
}

int uring_probe(const char **step)
{
    struct io_uring ring;
    *step = "io_uring_setup";
    int rc = uring_setup(&ring, 8);
    if (rc)
        return rc;
    /* A provided-buffer ring, as every shard registers (Linux 5.19+). */
    *step = "io_uring_register";
    size_t bytes = 2 * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED) {
        rc = -errno;
        goto out;
    }
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = 2, .bgid = 1};
    rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (!rc) {
        /* One enter, as every loop turn makes. */
        *step = "io_uring_enter";
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_nop(sqe);
        rc = io_uring_submit_and_wait(&ring, 1);
        rc = rc < 0 ? rc : probe_multishot_recv(&ring, br, step);
        io_uring_unregister_buf_ring(&ring, 1);
    }
    munmap(br, bytes);
out:
    io_uring_queue_exit(&ring);
    return rc;
}
