/* uring: the io_uring backend's set-up (core/engine.h makes its operations
 * inline): the ring, the provided-buffer rings, and the probe that tells
 * whether this host lets a process use io_uring at all. */
#ifndef AGATE_URING_H
#define AGATE_URING_H

#include <liburing.h>

#include "core/engine.h"

/* Sets up a ring the way a thread-per-core server wants it: single issuer with
 * deferred task work (completions run only when this thread asks), falling back
 * on older kernels. 0 or -errno. */
int uring_setup(struct io_uring *ring, unsigned entries);

/* Registers b's buffer ring (memory made by eng_bufs_init) as group b->bgid. */
int  uring_bufs_register(struct io_uring *ring, eng_bufs_t *b);
void uring_bufs_unregister(struct io_uring *ring, eng_bufs_t *b);

/* Sets up what a shard needs (a ring, a provided-buffer ring, one enter, a
 * multishot receive into that ring) and tears it down: 0, or -errno with
 * *step what failed ("io_uring_setup", "io_uring_register", "io_uring_enter",
 * "multishot receive"). */
int uring_probe(const char **step);

#endif
