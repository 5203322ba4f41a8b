/* listener: TCP listening sockets, one per shard per address (SO_REUSEPORT), so
 * the kernel spreads new connections over the shards with no shared accept queue. */
#ifndef AGATE_LISTENER_H
#define AGATE_LISTENER_H

#include <stddef.h>

/* Opens a listening socket on "host:port"; returns the fd or -errno, with err filled. */
int listener_open(const char *addr, char *err, size_t errlen);

#endif
