/* httpc: see httpc.h. Blocking sockets with SO_SNDTIMEO/SO_RCVTIMEO bound each
 * step; a deadline bounds the whole exchange, so a peer that trickles one byte
 * per timeout still cannot hold the caller past it. */
#include "core/httpc.h"

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/version.h"

#define HTTPC_BODY_MAX (1u << 20)   /* response body read to keep the connection; past it we close */

void httpc_init(httpc_t *h, const struct sockaddr_storage *addr, socklen_t addr_len,
                const char *host, uint32_t io_timeout_ms)
{
    memset(h, 0, sizeof *h);
    h->addr = *addr;
    h->addr_len = addr_len;
    h->host = host;
    h->io_timeout_ms = io_timeout_ms;
    h->fd = -1;
}

void httpc_close(httpc_t *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

void httpc_free(httpc_t *h)
{
    httpc_close(h);
    buf_free(&h->head);
}

static int connect_peer(httpc_t *h)
{
    struct timeval tv = { h->io_timeout_ms / 1000, (h->io_timeout_ms % 1000) * 1000 };
    socklen_t elen = sizeof(int);
    int fd, err = 0, one = 1, rc;

    fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* non-blocking connect + poll: connect(2) alone may wait minutes for SYN retries */
    if (connect(fd, (const struct sockaddr *)&h->addr, h->addr_len) < 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto fail;
        }
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        do
            rc = poll(&pfd, 1, (int)h->io_timeout_ms);
        while (rc < 0 && errno == EINTR);
        if (rc <= 0) {
            rc = rc ? -errno : -ETIMEDOUT;
            goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
            rc = err ? -err : -errno;
            goto fail;
        }
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
        rc = -errno;
        goto fail;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);    /* best effort */
    h->fd = fd;
    return 0;

fail:
    close(fd);
    return rc;
}

/* A kept connection the peer has closed (or written to unasked) shows as
 * readable; catch that before sending rather than lose a request to it. */
static bool conn_usable(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLRDHUP };

    return poll(&pfd, 1, 0) == 0;
}

static int send_all(int fd, struct iovec *iov, int cnt, uint64_t deadline)
{
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };

    while (mh.msg_iovlen > 0) {
        if (clock_mono_ms() > deadline)
            return -ETIMEDOUT;
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        while (mh.msg_iovlen > 0 && (size_t)w >= mh.msg_iov->iov_len) {
            w -= (ssize_t)mh.msg_iov->iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
        if (mh.msg_iovlen > 0) {
            mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + w;
            mh.msg_iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* One recv; bytes read, 0 at EOF, or -errno (-ETIMEDOUT on timeout). */
static ssize_t recv_some(int fd, char *buf, size_t cap, uint64_t deadline)
{
    for (;;) {
        if (clock_mono_ms() > deadline)
            return -ETIMEDOUT;
        ssize_t r = recv(fd, buf, cap, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
    }
}

/* --- the response, through llhttp ------------------------------------------------ */

typedef struct resp {
    int      status;     /* final status once its head is parsed, else 0 */
    bool     done;       /* the final response is complete */
    bool     keep;
    uint64_t body;
} resp_t;

static int on_headers_complete(llhttp_t *p)
{
    int st = llhttp_get_status_code(p);
    if (st >= 200)
        ((resp_t *)p->data)->status = st;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    resp_t *r = p->data;
    r->body += len;
    return r->body > HTTPC_BODY_MAX ? -1 : 0;    /* the status is all we need: stop reading */
}

static int on_message_complete(llhttp_t *p)
{
    resp_t *r = p->data;
    if (llhttp_get_status_code(p) < 200)
        return 0;                                /* an interim response: the final one follows */
    r->done = true;
    r->keep = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

static const llhttp_settings_t resp_settings = {
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Reads the final response; *got is set once any byte arrived. Returns the
 * status, or -errno. Leaves the connection open only when it can be reused. */
static int read_response(httpc_t *h, uint64_t deadline, bool *got)
{
    char buf[8192];
    llhttp_t p;
    resp_t r = {0};

    llhttp_init(&p, HTTP_RESPONSE, &resp_settings);
    p.data = &r;
    for (;;) {
        ssize_t n = recv_some(h->fd, buf, sizeof buf, deadline);
        llhttp_errno_t e;
        if (n < 0 && !r.status)
            return (int)n;
        if (n < 0)
            break;                      /* the head already said how it went */
        if (n == 0) {
            if (!*got)
                return -ECONNRESET;
            e = llhttp_finish(&p);      /* a body delimited by the close ends here */
            if (e != HPE_OK && e != HPE_PAUSED && !r.status)
                return -EPROTO;
            break;
        }
        *got = true;
        e = llhttp_execute(&p, buf, (size_t)n);
        if (e == HPE_PAUSED) {
            if (llhttp_get_error_pos(&p) != buf + n)
                r.keep = false;         /* bytes past the response: the connection is confused */
            break;
        }
        if (e != HPE_OK) {
            if (!r.status)
                return -EPROTO;
            break;                      /* e.g. a body past HTTPC_BODY_MAX */
        }
    }
    if (!r.done || !r.keep)
        httpc_close(h);
    return r.status ? r.status : -EPROTO;
}

/* One request on the kept connection (a fresh one when there is none). A GET
 * (ctype NULL) carries no body and no Content-* headers. */
static int request_once(httpc_t *h, const char *method, const char *path, const char *ctype, const void *body,
                        size_t len, uint64_t deadline, bool *got_any)
{
    int rc;

    *got_any = false;
    if (h->fd < 0 && (rc = connect_peer(h)))
        return rc;
    buf_t *b = &h->head;
    buf_reset(b);
    rc = buf_append(b, method, strlen(method));
    rc |= buf_append_lit(b, " ");
    rc |= buf_append(b, path, strlen(path));
    rc |= buf_append_lit(b, " HTTP/1.1\r\nHost: ");
    rc |= buf_append(b, h->host, strlen(h->host));
    rc |= buf_append_lit(b, "\r\nUser-Agent: agate/" AGATE_VERSION);
    if (ctype) {
        rc |= buf_append_lit(b, "\r\nContent-Type: ");
        rc |= buf_append(b, ctype, strlen(ctype));
        rc |= buf_append_lit(b, "\r\nContent-Length: ");
        rc |= buf_append_u64(b, len);
    }
    rc |= buf_append_lit(b, "\r\nConnection: keep-alive\r\n\r\n");
    if (rc)
        return -ENOMEM;
    struct iovec iov[2] = { { b->data, b->len }, { (void *)body, len } };
    rc = send_all(h->fd, iov, ctype ? 2 : 1, deadline);
    if (rc == 0)
        rc = read_response(h, deadline, got_any);
    if (rc < 0)
        httpc_close(h);
    return rc;
}

static int request(httpc_t *h, const char *method, const char *path, const char *ctype, const void *body,
                   size_t len, uint32_t timeout_ms)
{
    uint64_t deadline = clock_mono_ms() + timeout_ms;
    bool got_any;

    if (h->fd >= 0 && !conn_usable(h->fd))
        httpc_close(h);
    bool reused = h->fd >= 0;
    int rc = request_once(h, method, path, ctype, body, len, deadline, &got_any);
    /* A kept connection the peer closed in the same instant we sent fails with
     * no answer at all; one fresh attempt is then safe and worth it. */
    if (rc < 0 && reused && !got_any && rc != -ETIMEDOUT)
        rc = request_once(h, method, path, ctype, body, len, deadline, &got_any);
    return rc;
}

int httpc_post(httpc_t *h, const char *path, const char *content_type,
               const void *body, size_t len, uint32_t timeout_ms)
{
    return request(h, "POST", path, content_type, body, len, timeout_ms);
}

int httpc_get(httpc_t *h, const char *path, uint32_t timeout_ms)
{
    return request(h, "GET", path, NULL, NULL, 0, timeout_ms);
}
