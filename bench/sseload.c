/* sseload: holds many slow AG-UI SSE streams open at once (bench/run.sh, streams case).
 *
 *   sseload -p PORT [-a AGENT] [-c CONNS] [-w WORDS] [-i INTERVAL_MS] [-r RAMP_PER_S] [-d HOLD_S] [-k]
 *
 * Opens CONNS connections, RAMP_PER_S a second, and on each POSTs one run to
 * /v1/agents/AGENT/run: a WORDS-word user message with
 * forwardedProps.agate.tokenIntervalMs = INTERVAL_MS, so the echo agent (or an
 * agate proxy in front of it, or nginx or HAProxy in front of it: the body
 * passes through unchanged) streams one TEXT_MESSAGE_CONTENT every INTERVAL_MS.
 * Once every stream has its response head and first event it prints
 *
 *   READY conns=N ramp_ms=T
 *
 * holds them HOLD_S seconds, then prints one line of key=value pairs and exits
 * (the kernel closes the sockets: the server sees every client leave mid-run):
 *
 *   SUMMARY conns=N ok=N events=E hold_events=H ev_per_s=R finished=F errors=X lag_max_ms=L
 *
 * ok: streams that answered 200 text/event-stream and sent events; hold_events and
 * ev_per_s: events received during the hold; finished: runs that ended with
 * RUN_FINISHED (0 when WORDS x INTERVAL_MS outlasts the test); errors: refused
 * connections, non-200 heads, RUN_ERROR, EOF before the end; lag_max_ms: the
 * longest gap between two events of one stream during the hold, which shows a
 * server that starves some streams to feed others.
 *
 * With -k the runs are left to finish and each connection is then kept open,
 * idle (keep-alive): READY comes once every run has ended, and idle=N in the
 * summary counts the connections still open at the end (a server that closed
 * an idle one counts as an error). That measures what an idle keep-alive
 * connection costs a server.
 *
 * One thread, epoll, non-blocking sockets. Responses may be chunked or
 * close-delimited; the chunk framing is removed before the SSE lines are read. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/loadgen.h"

enum { ST_CONNECTING, ST_HEAD, ST_BODY, ST_IDLE, ST_DONE };
enum { CH_SIZE, CH_DATA, CH_DATA_END };   /* chunked decoder */

typedef struct sconn {
    int      fd;
    uint8_t  state, ch_state;
    bool     chunked, ok, finished;
    bool     settled;           /* counted in g_settled: ready (streaming, or idle with -k) or failed */
    size_t   ch_left;           /* bytes left in the current chunk */
    char     head[1024];        /* the response head, until its blank line */
    size_t   head_len;
    char     line[256];         /* the start of the SSE line being read */
    size_t   line_len;
    uint64_t events, last_ev_ns;
    uint64_t max_gap_ns;        /* during the hold */
} sconn_t;

static int g_port = 8080, g_conns = 100, g_words = 300, g_interval = 100, g_ramp = 2000, g_hold = 10;
static const char *g_agent = "echo";
static char *g_req;
static size_t g_req_len;
static sconn_t *g_c;
static int g_ep, g_opened, g_ready, g_settled, g_idle;
static bool g_keep;
static uint64_t g_events, g_errors, g_finished;
static bool g_holding;

static void build_request(void)
{
    size_t cap = (size_t)g_words * 8 + 1024;
    char *body = malloc(cap), *req = malloc(cap + 512);
    if (!body || !req)
        die("malloc");
    int n = snprintf(body, cap, "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"m\",\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < g_words; i++)
        n += snprintf(body + n, cap - (size_t)n, "%sw%d", i ? " " : "", i % 1000);
    n += snprintf(body + n, cap - (size_t)n,
                  "\"}],\"tools\":[],\"context\":[],\"state\":{},\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":%d}}}",
                  g_interval);
    g_req_len = (size_t)snprintf(req, cap + 512,
                                 "POST /v1/agents/%s/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                 "Accept: text/event-stream\r\nContent-Length: %d\r\n\r\n%s",
                                 g_agent, n, body);
    g_req = req;
    free(body);
}

static void settle(sconn_t *c)
{
    if (!c->settled) {
        c->settled = true;
        g_settled++;
    }
}

static void fail(sconn_t *c)
{
    g_errors++;
    if (c->state == ST_IDLE)
        g_idle--;
    settle(c);
    if (c->state != ST_DONE && c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->state = ST_DONE;
}

static void open_conn(sconn_t *c)
{
    *c = (sconn_t){ .fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0) };
    if (c->fd < 0)
        die("socket");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) {
        fail(c);
        return;
    }
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.ptr = c };
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev))
        die("epoll_ctl");
}

/* One whole SSE line (or its first sizeof line bytes): counts events and run ends. */
static void on_line(sconn_t *c)
{
    if (c->line_len < 5 || memcmp(c->line, "data:", 5))
        return;
    uint64_t t = now_ns();
    if (c->events && g_holding && t - c->last_ev_ns > c->max_gap_ns)
        c->max_gap_ns = t - c->last_ev_ns;
    if (!c->events) {
        g_ready++;
        if (!g_keep)
            settle(c);
    }
    c->events++;
    c->last_ev_ns = t;
    g_events++;
    if (memmem(c->line, c->line_len, "\"RUN_FINISHED\"", 14)) {
        c->finished = true;
        g_finished++;
    }
    else if (memmem(c->line, c->line_len, "\"RUN_ERROR\"", 11))
        g_errors++;
}

static void sse_bytes(sconn_t *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            on_line(c);
            c->line_len = 0;
        } else if (c->line_len < sizeof c->line) {
            c->line[c->line_len++] = p[i];
        }
    }
}

/* Removes the chunk framing; false at the last chunk. */
static bool body_bytes(sconn_t *c, const char *p, size_t n)
{
    if (!c->chunked) {
        sse_bytes(c, p, n);
        return true;
    }
    while (n) {
        if (c->ch_state == CH_SIZE) {   /* hex digits, then anything up to LF */
            char ch = *p++;
            n--;
            if (ch == '\n') {
                if (!c->ch_left)
                    return false;
                c->ch_state = CH_DATA;
            } else if (ch >= '0' && ch <= '9') {
                c->ch_left = c->ch_left * 16 + (size_t)(ch - '0');
            } else if ((ch | 32) >= 'a' && (ch | 32) <= 'f') {
                c->ch_left = c->ch_left * 16 + (size_t)((ch | 32) - 'a' + 10);
            }
        } else if (c->ch_state == CH_DATA) {
            size_t k = n < c->ch_left ? n : c->ch_left;
            sse_bytes(c, p, k);
            p += k;
            n -= k;
            if (!(c->ch_left -= k))
                c->ch_state = CH_DATA_END;
        } else {   /* the CRLF after a chunk's data */
            if (*p++ == '\n')
                c->ch_state = CH_SIZE;
            n--;
        }
    }
    return true;
}

static void on_head(sconn_t *c, size_t end)
{
    c->head[end] = '\0';
    if (strncmp(c->head, "HTTP/1.1 200", 12) || !strcasestr(c->head, "\ncontent-type: text/event-stream")) {
        fprintf(stderr, "sseload: unexpected response head: %.200s\n", c->head);
        fail(c);
        return;
    }
    c->chunked = strcasestr(c->head, "\ntransfer-encoding: chunked") != NULL;
    c->ok = true;
    c->state = ST_BODY;
}

static void on_readable(sconn_t *c)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {   /* EOF: the end of a close-delimited stream, else a failure */
            if (n == 0 && !c->chunked && c->finished && c->state != ST_IDLE) {
                close(c->fd);
                c->fd = -1;
                c->state = ST_DONE;
            } else {
                fail(c);
            }
            return;
        }
        const char *p = buf;
        size_t len = (size_t)n;
        if (c->state == ST_IDLE)
            continue;   /* nothing is expected on an idle connection; EOF is what matters */
        if (c->state == ST_HEAD) {
            size_t k = len < sizeof c->head - 1 - c->head_len ? len : sizeof c->head - 1 - c->head_len;
            memcpy(c->head + c->head_len, p, k);
            c->head_len += k;
            c->head[c->head_len] = '\0';
            char *e = strstr(c->head, "\r\n\r\n");
            if (!e) {
                if (c->head_len == sizeof c->head - 1)
                    fail(c);
                continue;
            }
            size_t used = (size_t)(e + 4 - c->head) - (c->head_len - k);
            on_head(c, (size_t)(e + 2 - c->head));
            if (c->state != ST_BODY)
                return;
            p += used;
            len -= used;
        }
        if (!body_bytes(c, p, len)) {   /* the stream ended */
            if (g_keep) {   /* the connection stays, idle */
                c->state = ST_IDLE;
                g_idle++;
                settle(c);
                continue;
            }
            close(c->fd);
            c->fd = -1;
            c->state = ST_DONE;
            return;
        }
    }
}

static void on_event(sconn_t *c, uint32_t ev)
{
    if (c->state == ST_DONE)
        return;
    if (c->state == ST_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        /* The request is a few hundred bytes: it fits a fresh socket's buffer. */
        if (err || write(c->fd, g_req, g_req_len) != (ssize_t)g_req_len) {
            fail(c);
            return;
        }
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
        epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e);
        c->state = ST_HEAD;
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(c);
}

int main(int argc, char **argv)
{
    int o;
    while ((o = getopt(argc, argv, "p:a:c:w:i:r:d:k")) != -1) {
        switch (o) {
        case 'p': g_port = atoi(optarg); break;
        case 'a': g_agent = optarg; break;
        case 'c': g_conns = atoi(optarg); break;
        case 'w': g_words = atoi(optarg); break;
        case 'i': g_interval = atoi(optarg); break;
        case 'r': g_ramp = atoi(optarg); break;
        case 'd': g_hold = atoi(optarg); break;
        case 'k': g_keep = true; break;
        default:
            fprintf(stderr, "usage: sseload -p PORT [-a AGENT] [-c CONNS] [-w WORDS] [-i INTERVAL_MS] [-r RAMP_PER_S] [-d HOLD_S] [-k]\n");
            return 2;
        }
    }
    if (g_conns < 1 || g_words < 1 || g_ramp < 1 || g_hold < 1)
        die("bad arguments");
    build_request();
    g_c = calloc((size_t)g_conns, sizeof *g_c);
    g_ep = epoll_create1(0);
    if (!g_c || g_ep < 0)
        die("setup");
    struct epoll_event evs[512];
    uint64_t t0 = now_ns(), ready_at = 0, hold_events0 = 0;
    for (;;) {
        uint64_t t = now_ns();
        /* Open what the ramp allows by now. */
        int due = (int)((t - t0) / 1000000u * (uint64_t)g_ramp / 1000u) + 1;
        while (g_opened < g_conns && g_opened < due)
            open_conn(&g_c[g_opened++]);
        if (!ready_at && g_settled >= g_conns) {
            ready_at = t;
            g_holding = true;
            hold_events0 = g_events;
            printf("READY conns=%d idle=%d ramp_ms=%llu\n", g_ready, g_idle, (unsigned long long)((t - t0) / 1000000u));
            fflush(stdout);
        }
        if (ready_at && t - ready_at >= (uint64_t)g_hold * 1000000000u)
            break;
        if (!ready_at && t - t0 > 120ull * 1000000000u) {
            fprintf(stderr, "sseload: only %d of %d streams started within 120 s\n", g_ready, g_conns);
            break;
        }
        int n = epoll_wait(g_ep, evs, 512, 10);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
    uint64_t t = now_ns(), max_gap = 0;
    int ok = 0;
    for (int i = 0; i < g_opened; i++) {
        ok += g_c[i].ok && g_c[i].events > 0;
        if (g_c[i].max_gap_ns > max_gap)
            max_gap = g_c[i].max_gap_ns;
    }
    double secs = ready_at ? (double)(t - ready_at) / 1e9 : 0;
    printf("SUMMARY conns=%d ok=%d idle=%d events=%llu hold_events=%llu ev_per_s=%.0f finished=%llu errors=%llu lag_max_ms=%.0f\n",
           g_opened, ok, g_idle, (unsigned long long)g_events, (unsigned long long)(g_events - hold_events0),
           secs > 0 ? (double)(g_events - hold_events0) / secs : 0.0, (unsigned long long)g_finished,
           (unsigned long long)g_errors, (double)max_gap / 1e6);
    return 0;
}
