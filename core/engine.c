/* engine: setting up either backend of core/engine.h, the receive-buffer
 * pools both share, and the choice of backend at start-up.
 *
 * The choice is made once, by the main thread before any shard starts, and
 * only read afterwards: every shard of a process runs the same backend. */
#include "core/engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/uring.h"

#define ENG_URING_ENTRIES 4096

int eng_init(eng_t *e, eng_backend_t backend, timer_heap_t *timers, const uint64_t *now_ms)
{
    memset(e, 0, sizeof *e);
    e->ring.ring_fd = -1;
    if (backend == ENG_EPOLL) {
        e->ep = eng_epoll_new(timers, now_ms);
        return e->ep ? 0 : errno ? -errno : -ENOMEM;
    }
    int rc = uring_setup(&e->ring, ENG_URING_ENTRIES);
    if (rc)
        e->ring.ring_fd = -1;
    return rc;
}

void eng_exit(eng_t *e)
{
    if (e->ep)
        eng_epoll_free(e->ep);
    else if (e->ring.ring_fd >= 0)
        io_uring_queue_exit(&e->ring);
    e->ep = NULL;
    e->ring.ring_fd = -1;
}

int eng_bufs_init(eng_t *e, eng_bufs_t *b, uint16_t bgid, uint32_t count, uint32_t size)
{
    memset(b, 0, sizeof *b);
    if (e->ep && count > ENG_EPOLL_BUFS)
        count = ENG_EPOLL_BUFS;   /* one is out at a time under epoll (core/engine_epoll.c) */
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
    int rc = e->ep ? 0 : uring_bufs_register(&e->ring, b);
    if (rc) {
        munmap(r, ring_bytes);
        free(b->mem);
        memset(b, 0, sizeof *b);
        return rc;
    }
    for (uint32_t i = 0; i < count; i++)
        io_uring_buf_ring_add(b->br, eng_bufs_addr(b, (uint16_t)i), size, (unsigned short)i, (int)b->mask, (int)i);
    io_uring_buf_ring_advance(b->br, (int)count);
    return 0;
}

void eng_bufs_free(eng_t *e, eng_bufs_t *b)
{
    if (!b->br)
        return;
    if (!e->ep)
        uring_bufs_unregister(&e->ring, b);
    munmap(b->br, b->count * sizeof(struct io_uring_buf));
    free(b->mem);
    memset(b, 0, sizeof *b);
}

/* ---- the choice ---- */

static eng_choice_t g_choice = {ENG_IO_URING, "not chosen: io_uring"};

const char *eng_backend_name(eng_backend_t b) { return b == ENG_EPOLL ? "epoll" : "io_uring"; }

const eng_choice_t *eng_selected(void) { return &g_choice; }

/* kernel.io_uring_disabled (Linux 6.6+): 1 refuses unprivileged processes
 * outside io_uring_group, 2 everyone; -1 when there is no such sysctl. */
static int sysctl_disabled(void)
{
    FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
    int v = -1;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

void eng_select(eng_want_t want, eng_choice_t *out)
{
    eng_choice_t c = {ENG_IO_URING, ""};
    if (want == ENG_WANT_EPOLL) {
        c.backend = ENG_EPOLL;
        snprintf(c.why, sizeof c.why, "engine.backend: epoll");
    } else if (want == ENG_WANT_IO_URING) {
        snprintf(c.why, sizeof c.why, "engine.backend: io_uring");
    } else {
        const char *step;
        int rc = uring_probe(&step);
        int dis = sysctl_disabled();
        /* Refusals, not failures: seccomp profiles answer EPERM (containerd 2,
         * Docker 25+) or ENOSYS (podman); the sysctl EPERM; some LSMs EACCES.
         * A kernel without provided-buffer rings (5.19) or multishot
         * receive (6.0) answers EINVAL to them. Anything else (ENOMEM:
         * RLIMIT_MEMLOCK) is reported by the shards as a failure rather than
         * hidden behind a fallback. */
        bool too_old = rc == -EINVAL && (!strcmp(step, "io_uring_register") || !strcmp(step, "multishot receive"));
        bool refused = rc == -EPERM || rc == -EACCES || rc == -ENOSYS || too_old;
        if (!rc) {
            snprintf(c.why, sizeof c.why, "auto: io_uring works");
        } else if (refused) {
            c.backend = ENG_EPOLL;
            if (rc == -EPERM && dis > 0)
                snprintf(c.why, sizeof c.why, "auto: %s: %s (kernel.io_uring_disabled=%d)", step, strerror(-rc), dis);
            else if (too_old)
                snprintf(c.why, sizeof c.why, "auto: %s: %s (the kernel is too old for agate's io_uring: Linux 6.0+)",
                         step, strerror(-rc));
            else
                snprintf(c.why, sizeof c.why, "auto: %s: %s", step, strerror(-rc));
        } else {
            snprintf(c.why, sizeof c.why, "auto: %s: %s (not a refusal: io_uring kept)", step, strerror(-rc));
        }
    }
    g_choice = c;
    if (out)
        *out = c;
}
