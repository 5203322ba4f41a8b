/* listener: socket set-up. TCP_NODELAY is set on the listener because Linux
 * copies it to every accepted socket: SSE frames are small and must not wait
 * for Nagle, and this saves a setsockopt per connection. */
#include "net/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"

int listener_open(const char *addr, char *err, size_t errlen)
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
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one))
        goto fail_fd;
    if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 4096))
        goto fail_fd;
    return fd;
fail_fd:;
    int e = errno;
    close(fd);
    errno = e;
fail:
    snprintf(err, errlen, "%s: %s", addr, strerror(errno));
    return -errno;
}
