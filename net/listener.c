/* listener: socket set-up. TCP_NODELAY is set on the listener because Linux
 * copies it to every accepted socket: SSE frames are small and must not wait
 * for Nagle, and this saves a setsockopt per connection.
 *
 * Port in use: SO_REUSEPORT would let a second agate (same user) bind beside a
 * running one and take half its connections. So the first socket of an address
 * binds without SO_REUSEPORT, which fails with EADDRINUSE when any socket
 * listens there, reuseport or not; SO_REUSEPORT is set on it after the bind
 * and before listen(). Linux reads the flag at listen(), where the socket makes
 * the reuseport group, and when a later socket binds (the conflict check looks
 * at each bound socket's flag as it is then), so the other shards' sockets join
 * it. Every agate binds its first socket alone, so two started at the same
 * moment cannot both get the address: no check-then-bind window, no probe
 * socket, no lock file. SO_REUSEADDR, set before the bind, still lets a
 * restart bind over connections of the previous process left in TIME_WAIT. */
#include "net/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"

int listener_open(const char *addr, bool first, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (cfg_parse_addr(addr, &ss, &len)) {
        snprintf(err, errlen, "%s: not a valid listen address", addr);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one))
        goto fail_fd;
    if (!first && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one))
        goto fail_fd;
    if (bind(fd, (struct sockaddr *)&ss, len))
        goto fail_bind;
    if (first && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one))
        goto fail_fd;
    if (listen(fd, 4096))
        goto fail_fd;
    return fd;
fail_bind:
    if (errno == EADDRINUSE) {
        close(fd);
        snprintf(err, errlen, first ? "%s: address already in use: another process listens there (another agate?)"
                                    : "%s: address already in use: this process's other shards' sockets would not take "
                                      "this one beside them (SO_REUSEPORT)",
                 addr);
        return -EADDRINUSE;
    }
fail_fd:;
    int e = errno;
    close(fd);
    errno = e;
fail:
    snprintf(err, errlen, "%s: %s", addr, strerror(errno));
    return -errno;
}
