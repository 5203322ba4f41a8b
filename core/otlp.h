/* otlp: exports finished spans to an OpenTelemetry collector as OTLP/HTTP JSON,
 * off the request path.
 *
 * Each shard owns one single-producer ring of fixed-size span records; a
 * dedicated exporter thread drains the rings, batches spans and POSTs them to
 * the configured endpoint. A full ring drops the span and counts it: a slow or
 * absent collector never slows a shard. Off unless an endpoint is configured. */
#ifndef AGATE_OTLP_H
#define AGATE_OTLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum otlp_kind { OTLP_KIND_SERVER = 2, OTLP_KIND_CLIENT = 3 };

#define OTLP_SERVER_ADDR_MAX 128   /* an upstream's host as configured (CFG_HOST_MAX) */
#define OTLP_URL_PATH_MAX    256   /* an upstream's path as configured (CFG_UPATH_MAX) */

/* One span, a fixed-size ring record: every string is a bounded field,
 * NUL-terminated or full, and "" leaves its attribute out. A server span
 * (a request) fills route and events; a client span (one upstream attempt of a
 * proxied run) fills the server_*, url_path, error_type and attempt fields. */
typedef struct otlp_span {
    uint8_t  trace_id[16];
    uint8_t  span_id[8];
    uint8_t  parent_id[8];
    bool     has_parent;
    bool     error;                 /* span status ERROR (5xx, run error, failed attempt) */
    uint8_t  kind;                  /* enum otlp_kind */
    uint16_t http_status;           /* 0: none (an attempt that got no answer) */
    uint16_t server_port;           /* client: server.port */
    uint16_t attempt;               /* client: agate.attempt, 1-based; 0 = none */
    uint32_t events;                /* server: AG-UI events sent */
    uint64_t start_unix_ns, end_unix_ns;
    char     name[64];              /* e.g. "POST /v1/agents/{name}/run" */
    char     method[8];
    char     route[48];             /* bounded route template, never the raw path */
    char     agent[64];             /* "" when not a run */
    char     request_id[48];
    char     error_type[24];        /* client: error.type ("timeout", "connect", "503", ...) */
    char     server_address[OTLP_SERVER_ADDR_MAX];   /* client: server.address */
    char     url_path[OTLP_URL_PATH_MAX];            /* client: url.path, no query */
} otlp_span_t;

#define OTLP_HOST_MAX 64           /* "[v6 address]:port" fits */
#define OTLP_PATH_MAX 256

typedef struct otlp_endpoint {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char      host[OTLP_HOST_MAX];  /* Host header: "host:port" as written in the URL */
    char      path[OTLP_PATH_MAX];  /* request target, starts with '/' */
} otlp_endpoint_t;

typedef struct otlp_stats {
    uint64_t exported, dropped, failed_batches;
} otlp_stats_t;

/* endpoint: "http://host:port/path" (numeric host or localhost). n_rings: one per
 * producer. 0 or -errno (-EINVAL for a bad endpoint). */
int  otlp_init(const char *endpoint, const char *service_name, unsigned n_rings, size_t ring_spans,
               uint32_t interval_ms, uint32_t max_batch);
bool otlp_enabled(void);
bool otlp_put(unsigned ring, const otlp_span_t *s);   /* producer thread of that ring; false when dropped */
int  otlp_start(void);
void otlp_stop(void);                                  /* exports what is queued (bounded wait), joins, frees */
void otlp_get_stats(otlp_stats_t *out);

/* Parses "http://host:port/path": host is a numeric IPv4 address, a bracketed
 * numeric IPv6 address or localhost (never resolved, as cfg_parse_addr); the
 * port is required; the path starts with '/' and is printable ASCII without
 * spaces or '#'. The scheme is plain http only (https is refused). At most 255
 * characters. ep may be NULL to only check. 0 or -EINVAL. */
int  otlp_parse_endpoint(const char *url, otlp_endpoint_t *ep);

#endif
