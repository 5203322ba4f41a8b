/* httpc: a small blocking HTTP/1.1 client for a background thread (the OTLP
 * exporter) or a short-lived process (agate --probe): one kept-alive
 * connection to one address, POST or GET, every step bounded in time. Responses are parsed by llhttp; their bodies are read and
 * dropped (the status is the answer).
 *
 * Never use it on a shard: it blocks. One httpc_t per thread; it owns its fd. */
#ifndef AGATE_HTTPC_H
#define AGATE_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"

typedef struct httpc {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const char *host;          /* Host header, borrowed */
    uint32_t    io_timeout_ms; /* connect, and each send/receive */
    int         fd;            /* kept-alive connection, or -1 */
    buf_t       head;          /* request head, reused */
} httpc_t;

void httpc_init(httpc_t *h, const struct sockaddr_storage *addr, socklen_t addr_len,
                const char *host, uint32_t io_timeout_ms);
void httpc_close(httpc_t *h);          /* the connection only; h stays usable */
void httpc_free(httpc_t *h);

/* POSTs body to path. Returns the final HTTP status, or -errno (-ETIMEDOUT when
 * the whole exchange took longer than timeout_ms, -EPROTO for a response that
 * is not HTTP). A kept connection the peer closed just as we sent is retried
 * once on a fresh one, which is safe because nothing was answered. */
int httpc_post(httpc_t *h, const char *path, const char *content_type,
               const void *body, size_t len, uint32_t timeout_ms);

/* GETs path (agate --probe, core/probe.c); the same answers as httpc_post. */
int httpc_get(httpc_t *h, const char *path, uint32_t timeout_ms);

#endif
