/* otlp: span export to an OpenTelemetry collector, OTLP/HTTP with JSON bodies.
 *
 * Owns the span rings (one per producer), the exporter thread, its connection
 * to the collector (an httpc_t, core/httpc.c) and its buffers, all from otlp_init to otlp_stop. Counters live
 * outside that lifetime so otlp_get_stats still answers after otlp_stop.
 *
 * Invariants:
 *  - A ring is single-producer, single-consumer: head is written only by its
 *    producer, tail only by the exporter; each publishes with release and reads
 *    the other's index with acquire. A slot between tail and head is never
 *    written, so the exporter encodes straight from the slot and only then
 *    moves tail on. A full ring drops the new span: a shard never waits.
 *  - Every span taken from a ring is counted exactly once: exported (2xx),
 *    or dropped (non-2xx, network error, encoding failure). A failed batch is
 *    never retried, so a dead collector costs one bounded attempt per tick.
 *  - Every socket operation is bounded (2 s connect/send/receive and 5 s per
 *    request), so otlp_stop returns within a few seconds whatever the
 *    collector does.
 *  - otlp_put/otlp_init/otlp_stop ordering is the caller's: producers (and
 *    otlp_get_stats callers) stop before otlp_stop frees the rings. */
#include "core/otlp.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/httpc.h"
#include "core/trace.h"
#include "core/url.h"
#include "core/version.h"
#include "core/json.h"

#define OTLP_IO_TIMEOUT_MS   2000    /* connect, and each send/receive */
#define OTLP_REQ_TIMEOUT_MS  5000    /* one whole request: a trickling peer cannot hold us */
#define OTLP_URL_MAX         255

struct otlp_ring {
    _Alignas(64) _Atomic uint64_t head;     /* producer */
    _Alignas(64) _Atomic uint64_t tail;     /* exporter */
    _Alignas(64) _Atomic uint64_t dropped;  /* producer: ring full */
    otlp_span_t *slots;
    uint64_t     mask;
};

static struct {
    struct otlp_ring *rings;
    unsigned          n_rings;
    unsigned          next_ring;      /* first ring of the next batch, for fairness */
    otlp_endpoint_t   ep;
    char             *service;
    uint32_t          interval_ms, max_batch;
    httpc_t           http;           /* the kept-alive connection to the collector */
    buf_t             body;           /* reused for every batch */
    pthread_t         thr;
    bool              running;
    pthread_mutex_t   mu;             /* with cv: the exporter's sleep, cut short by stop */
    pthread_cond_t    cv;
    _Atomic bool      stop;
} g = { .http.fd = -1 };

static _Atomic bool     g_enabled;
static _Atomic uint64_t g_exported, g_dropped, g_failed;

/* ---- endpoint ---- */

/* core/url.h's URL, with a path (OTLP receivers route on it: no guessing)
 * and a host that cfg_parse_addr takes without resolving. */
int otlp_parse_endpoint(const char *url, otlp_endpoint_t *ep)
{
    url_t u;
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (!url || strlen(url) > OTLP_URL_MAX || url_parse(url, &u) || !u.has_path)
        return -EINVAL;
    if (strlen(u.authority) >= sizeof ep->host || strlen(u.path) >= sizeof ep->path ||
        cfg_parse_addr(u.authority, &ss, &sslen))
        return -EINVAL;
    if (ep) {
        memset(ep, 0, sizeof *ep);
        ep->addr = ss;
        ep->addr_len = sslen;
        memcpy(ep->host, u.authority, strlen(u.authority) + 1);
        memcpy(ep->path, u.path, strlen(u.path) + 1);
    }
    return 0;
}

/* ---- set-up and the producer side ---- */

static void free_all(void)
{
    if (g.rings) {
        for (unsigned i = 0; i < g.n_rings; i++) {
            /* fold the ring's drops into the totals that outlive it */
            atomic_fetch_add_explicit(&g_dropped, atomic_load_explicit(&g.rings[i].dropped, memory_order_relaxed),
                                      memory_order_relaxed);
            free(g.rings[i].slots);
        }
    }
    free(g.rings);
    g.rings = NULL;
    g.n_rings = 0;
    free(g.service);
    g.service = NULL;
    buf_free(&g.body);
    httpc_free(&g.http);
}

int otlp_init(const char *endpoint, const char *service_name, unsigned n_rings, size_t ring_spans,
              uint32_t interval_ms, uint32_t max_batch)
{
    uint64_t cap = 1;

    if (atomic_load(&g_enabled) || g.rings)
        return -EALREADY;
    if (!service_name || !*service_name || !n_rings || !ring_spans || !interval_ms || !max_batch ||
        ring_spans > (1u << 24))
        return -EINVAL;
    if (otlp_parse_endpoint(endpoint, &g.ep))
        return -EINVAL;
    while (cap < ring_spans)
        cap <<= 1;

    g.service = strdup(service_name);
    g.rings = calloc(n_rings, sizeof *g.rings);
    if (!g.service || !g.rings)
        goto fail;
    g.n_rings = n_rings;
    for (unsigned i = 0; i < n_rings; i++) {
        g.rings[i].slots = calloc(cap, sizeof(otlp_span_t));
        if (!g.rings[i].slots)
            goto fail;
        g.rings[i].mask = cap - 1;
    }
    g.next_ring = 0;
    g.interval_ms = interval_ms;
    g.max_batch = max_batch;
    httpc_init(&g.http, &g.ep.addr, g.ep.addr_len, g.ep.host, OTLP_IO_TIMEOUT_MS);
    atomic_store(&g.stop, false);
    atomic_store(&g_exported, 0);
    atomic_store(&g_dropped, 0);
    atomic_store(&g_failed, 0);
    /* release: a producer that sees enabled also sees the rings */
    atomic_store_explicit(&g_enabled, true, memory_order_release);
    return 0;

fail:
    free_all();
    return -ENOMEM;
}

bool otlp_enabled(void)
{
    return atomic_load_explicit(&g_enabled, memory_order_acquire);
}

bool otlp_put(unsigned ring, const otlp_span_t *s)
{
    struct otlp_ring *r;
    uint64_t head, tail;

    if (!atomic_load_explicit(&g_enabled, memory_order_acquire) || ring >= g.n_rings)
        return false;
    r = &g.rings[ring];
    head = atomic_load_explicit(&r->head, memory_order_relaxed);
    tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (head - tail > r->mask) {
        /* only this producer writes dropped: no locked add on the request path */
        atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        return false;
    }
    r->slots[head & r->mask] = *s;
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    return true;
}

void otlp_get_stats(otlp_stats_t *out)
{
    uint64_t dropped = atomic_load_explicit(&g_dropped, memory_order_relaxed);

    if (atomic_load_explicit(&g_enabled, memory_order_acquire)) {
        for (unsigned i = 0; i < g.n_rings; i++)
            dropped += atomic_load_explicit(&g.rings[i].dropped, memory_order_relaxed);
    }
    out->exported = atomic_load_explicit(&g_exported, memory_order_relaxed);
    out->dropped = dropped;
    out->failed_batches = atomic_load_explicit(&g_failed, memory_order_relaxed);
}

/* ---- OTLP/JSON encoding ---- */

/* RFC 3629 well-formed? Collectors reject a whole batch over one bad string,
 * and request ids come from clients. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4;
        else
            return false;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;    /* no surrogates */
        else if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;    /* nothing above U+10FFFF */
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        }
        i += len;
    }
    return true;
}

_Static_assert(OTLP_URL_PATH_MAX >= OTLP_SERVER_ADDR_MAX && OTLP_URL_PATH_MAX >= 64,
               "put_field's copy holds the largest field of otlp_span_t");

/* A fixed-size record field (NUL-terminated or full) as a JSON string; bytes
 * of ill-formed UTF-8 become '?'. */
static int put_field(buf_t *b, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    char tmp[OTLP_URL_PATH_MAX];    /* the largest field in otlp_span_t */

    if (utf8_ok((const unsigned char *)s, n))
        return json_put_str(b, s, n);
    if (n > sizeof tmp)
        n = sizeof tmp;
    for (size_t i = 0; i < n; i++)
        tmp[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    return json_put_str(b, tmp, n);
}

static int put_hex(buf_t *b, const uint8_t *id, size_t n)
{
    char hex[32];

    buf_fmt_hex(hex, id, n);
    if (buf_putc(b, '"') || buf_append(b, hex, 2 * n))
        return -ENOMEM;
    return buf_putc(b, '"');
}

/* "<decimal>": OTLP/JSON writes 64-bit integers as strings (JavaScript numbers
 * stop being exact at 2^53). */
static int put_u64_str(buf_t *b, uint64_t v)
{
    if (buf_putc(b, '"') || buf_append_u64(b, v))
        return -ENOMEM;
    return buf_putc(b, '"');
}

static int attr_str(buf_t *b, bool *first, const char *key, const char *s, size_t cap)
{
    int rc = 0;

    if (!strnlen(s, cap))
        return 0;
    rc |= buf_append(b, *first ? "{\"key\":" : ",{\"key\":", *first ? 7 : 8);
    rc |= json_put_str(b, key, strlen(key));
    rc |= buf_append_lit(b, ",\"value\":{\"stringValue\":");
    rc |= put_field(b, s, cap);
    rc |= buf_append_lit(b, "}}");
    *first = false;
    return rc ? -ENOMEM : 0;
}

static int attr_int(buf_t *b, bool *first, const char *key, uint64_t v)
{
    int rc = 0;

    rc |= buf_append(b, *first ? "{\"key\":" : ",{\"key\":", *first ? 7 : 8);
    rc |= json_put_str(b, key, strlen(key));
    rc |= buf_append_lit(b, ",\"value\":{\"intValue\":");
    rc |= put_u64_str(b, v);
    rc |= buf_append_lit(b, "}}");
    *first = false;
    return rc ? -ENOMEM : 0;
}

static int encode_span(buf_t *b, const otlp_span_t *s, bool first)
{
    bool a = true, client = s->kind == OTLP_KIND_CLIENT;
    int rc = 0;
    /* OTel HTTP semantics: a server span is ERROR for 5xx only (4xx is the
     * caller's fault), a client span for 4xx too (the call did not do what was
     * asked). The producer may also flag a run error or a failed attempt. */
    unsigned code = s->error || s->http_status >= (client ? 400 : 500) ? 2 : 0;

    rc |= buf_append(b, first ? "{\"traceId\":" : ",{\"traceId\":", first ? 11 : 12);
    rc |= put_hex(b, s->trace_id, 16);
    rc |= buf_append_lit(b, ",\"spanId\":");
    rc |= put_hex(b, s->span_id, 8);
    if (s->has_parent) {
        rc |= buf_append_lit(b, ",\"parentSpanId\":");
        rc |= put_hex(b, s->parent_id, 8);
    }
    rc |= buf_append_lit(b, ",\"name\":");
    if (strnlen(s->name, sizeof s->name))
        rc |= put_field(b, s->name, sizeof s->name);
    else if (strnlen(s->method, sizeof s->method))
        rc |= put_field(b, s->method, sizeof s->method);
    else
        rc |= buf_append_lit(b, "\"agate\"");
    rc |= buf_append_lit(b, ",\"kind\":");
    rc |= buf_append_u64(b, s->kind ? s->kind : OTLP_KIND_SERVER);
    rc |= buf_append_lit(b, ",\"startTimeUnixNano\":");
    rc |= put_u64_str(b, s->start_unix_ns);
    rc |= buf_append_lit(b, ",\"endTimeUnixNano\":");
    rc |= put_u64_str(b, s->end_unix_ns);
    rc |= buf_append_lit(b, ",\"attributes\":[");
    rc |= attr_str(b, &a, "http.request.method", s->method, sizeof s->method);
    rc |= attr_str(b, &a, "http.route", s->route, sizeof s->route);
    rc |= attr_str(b, &a, "server.address", s->server_address, sizeof s->server_address);
    if (s->server_port)
        rc |= attr_int(b, &a, "server.port", s->server_port);
    rc |= attr_str(b, &a, "url.path", s->url_path, sizeof s->url_path);
    if (s->http_status)
        rc |= attr_int(b, &a, "http.response.status_code", s->http_status);
    rc |= attr_str(b, &a, "error.type", s->error_type, sizeof s->error_type);
    rc |= attr_str(b, &a, "agate.agent", s->agent, sizeof s->agent);
    if (!client)    /* an attempt's events are the run's: its server span counts them */
        rc |= attr_int(b, &a, "agate.events", s->events);
    if (s->attempt)
        rc |= attr_int(b, &a, "agate.attempt", s->attempt);
    rc |= attr_str(b, &a, "agate.request_id", s->request_id, sizeof s->request_id);
    rc |= buf_append_lit(b, "],\"status\":{\"code\":");
    rc |= buf_append_u64(b, code);
    rc |= buf_append_lit(b, "}}");
    return rc ? -ENOMEM : 0;
}

/* Encodes up to max_batch queued spans into g.body and frees their slots.
 * Returns how many were taken (on -ENOMEM they are counted dropped, and the
 * body is left empty). */
static size_t take_batch(void)
{
    buf_t *b = &g.body;
    size_t n = 0;
    int rc = 0;

    buf_reset(b);
    rc |= buf_append_lit(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
                            "\"value\":{\"stringValue\":");
    rc |= json_put_str(b, g.service, strlen(g.service));
    rc |= buf_append_lit(b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"agate\",\"version\":\"" AGATE_VERSION
                            "\"},\"spans\":[");
    for (unsigned k = 0; k < g.n_rings && n < g.max_batch; k++) {
        struct otlp_ring *r = &g.rings[(g.next_ring + k) % g.n_rings];
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);

        for (; tail != head && n < g.max_batch; tail++, n++)
            rc |= encode_span(b, &r->slots[tail & r->mask], n == 0);
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
    /* rotate the start so one busy shard cannot starve the others' spans */
    g.next_ring = (g.next_ring + 1) % g.n_rings;
    rc |= buf_append_lit(b, "]}]}]}");
    if (rc && n) {
        atomic_fetch_add_explicit(&g_dropped, n, memory_order_relaxed);
        buf_reset(b);
        return 0;
    }
    return n;
}

/* Empties every ring into the dropped count (after a failed final attempt). */
static void drop_queued(void)
{
    for (unsigned i = 0; i < g.n_rings; i++) {
        struct otlp_ring *r = &g.rings[i];
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);

        atomic_fetch_add_explicit(&g_dropped, head - tail, memory_order_relaxed);
        atomic_store_explicit(&r->tail, head, memory_order_release);
    }
}

/* POSTs g.body. 0 for a 2xx, else -errno (-EPROTO for another status). */
static int post_batch(void)
{
    int rc = httpc_post(&g.http, g.ep.path, "application/json", g.body.data, g.body.len, OTLP_REQ_TIMEOUT_MS);
    if (rc < 0)
        return rc;
    return rc >= 200 && rc < 300 ? 0 : -EPROTO;
}

/* ---- the exporter thread ---- */

static bool stopping(void)
{
    return atomic_load_explicit(&g.stop, memory_order_acquire);
}

/* Sends what is queued, batch by batch. Normally it stops at the first failure
 * (the rest waits for the next tick) or when asked to stop; the final pass
 * (last) goes on until the rings are empty, and after a failure drops the rest
 * rather than make otlp_stop wait on a collector that is not answering. */
static void export_queued(bool last)
{
    for (;;) {
        size_t n = take_batch();

        if (!n)
            return;
        if (post_batch() == 0) {
            atomic_fetch_add_explicit(&g_exported, n, memory_order_relaxed);
        } else {
            atomic_fetch_add_explicit(&g_failed, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&g_dropped, n, memory_order_relaxed);
            if (last)
                drop_queued();
            return;
        }
        if (n < g.max_batch || (!last && stopping()))
            return;
    }
}

static void *exporter_main(void *arg)
{
    struct timespec at;

    pthread_mutex_lock(&g.mu);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_sec += g.interval_ms / 1000;
        at.tv_nsec += (long)(g.interval_ms % 1000) * 1000000L;
        if (at.tv_nsec >= 1000000000L) {
            at.tv_sec++;
            at.tv_nsec -= 1000000000L;
        }
        while (!stopping() && pthread_cond_timedwait(&g.cv, &g.mu, &at) != ETIMEDOUT)
            ;
        if (stopping())
            break;
        pthread_mutex_unlock(&g.mu);
        export_queued(false);
        pthread_mutex_lock(&g.mu);
    }
    pthread_mutex_unlock(&g.mu);
    export_queued(true);
    httpc_close(&g.http);
    return NULL;
}

int otlp_start(void)
{
    pthread_condattr_t ca;
    sigset_t all, old;
    int rc;

    if (!otlp_enabled())
        return -EINVAL;
    if (g.running)
        return -EALREADY;
    /* CLOCK_MONOTONIC: a wall-clock step must not stretch or skip a tick */
    rc = pthread_condattr_init(&ca);
    if (rc)
        return -rc;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (!rc)
        rc = pthread_cond_init(&g.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc)
        return -rc;
    rc = pthread_mutex_init(&g.mu, NULL);
    if (rc)
        goto fail_mutex;
    /* signals belong to the main thread: the exporter is created with all blocked */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&g.thr, NULL, exporter_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        goto fail_thread;
    pthread_setname_np(g.thr, "agate-otlp");
    g.running = true;
    return 0;

fail_thread:
    pthread_mutex_destroy(&g.mu);
fail_mutex:
    pthread_cond_destroy(&g.cv);
    return -rc;
}

void otlp_stop(void)
{
    if (!g.rings)
        return;
    if (g.running) {
        pthread_mutex_lock(&g.mu);
        atomic_store_explicit(&g.stop, true, memory_order_release);
        pthread_cond_signal(&g.cv);
        pthread_mutex_unlock(&g.mu);
        pthread_join(g.thr, NULL);
        pthread_cond_destroy(&g.cv);
        pthread_mutex_destroy(&g.mu);
        g.running = false;
    } else {
        drop_queued();    /* never started: nobody will send these */
    }
    atomic_store_explicit(&g_enabled, false, memory_order_release);
    free_all();
}
