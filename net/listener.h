/* listener: TCP listening sockets, one per shard per address (SO_REUSEPORT), so
 * the kernel spreads new connections over the shards with no shared accept queue.
 * The first socket of an address is bound alone, so an address another process
 * listens on (another agate included) is refused instead of shared. */
#ifndef AGATE_LISTENER_H
#define AGATE_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

/* Opens a listening socket on "host:port"; returns the fd or -errno, with err
 * filled. `first`: the process's first socket on this address (shard 0's),
 * which fails with -EADDRINUSE when anything else listens there; the others
 * join it. */
int listener_open(const char *addr, bool first, char *err, size_t errlen);

#endif
