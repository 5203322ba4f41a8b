/* wsload: a WebSocket load generator for agate's AG-UI runs (bench/run.sh, ws case).
 *
 *   wsload -p PORT [-a AGENT] [-c CONNS] [-k RUNS_PER_CONN] [-d SECONDS] [-1] [-w WORDS]
 *
 * Opens CONNS connections to /v1/agents/AGENT/ws and keeps RUNS_PER_CONN runs in
 * flight on each: a RunAgentInput with a WORDS-word user message goes out, and
 * the run counts as done at its RUN_FINISHED (matched by runId); the next run
 * starts at once. With -1 every run gets a fresh connection (upgrade, one run,
 * close), the "one run per connection" case. Prints runs/s, events/s and run
 * latency (send to RUN_FINISHED) p50/p90/p99 as one line of key=value pairs.
 *
 * One thread, epoll, non-blocking sockets. Client frames are masked with an
 * all-zero key (valid per RFC 6455; the server unmasks all the same), so the
 * client spends no time on masking. Any failure (non-101, a close frame, a
 * RUN_ERROR, EOF) is counted and printed; the run is not retried. */
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

#define MAX_K 64

typedef struct lconn {
    int      fd;
    bool     upgraded;
    char    *in;           /* received, not yet parsed */
    size_t   in_len, in_cap;
    uint64_t started[MAX_K];   /* ns; 0 = slot idle */
    uint32_t seq;
    int      runs_done;    /* on this connection (for -1) */
    uint32_t gen;          /* bumped by open_conn: the buffer was reset */
} lconn_t;

static int g_port = 8080, g_conns = 4, g_k = 16, g_secs = 5, g_words = 40;
static bool g_one = false;
static const char *g_agent = "echo";
static char g_text[4096];
static uint64_t *g_lat;
static size_t g_nlat, g_caplat;
static uint64_t g_events, g_errors, g_runs;
static int g_ep;

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                struct timespec ts = {0, 100000};
                nanosleep(&ts, NULL);
                continue;
            }
            return;   /* the read side will see the error */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* One masked text frame (zero key) carrying a RunAgentInput for slot s. */
static void start_run(lconn_t *c, int idx, int s)
{
    char body[8192], frame[8200];
    int n = snprintf(body, sizeof body,
                     "{\"threadId\":\"t%d\",\"runId\":\"c%d.%d.%u\",\"state\":{},\"messages\":[{\"id\":\"m\","
                     "\"role\":\"user\",\"content\":\"%s\"}],\"tools\":[],\"context\":[],\"forwardedProps\":{}}",
                     idx, idx, s, c->seq++, g_text);
    size_t h = 0;
    frame[h++] = (char)0x81;
    if (n < 126) {
        frame[h++] = (char)(0x80 | n);
    } else {
        frame[h++] = (char)(0x80 | 126);
        frame[h++] = (char)(n >> 8);
        frame[h++] = (char)n;
    }
    memset(frame + h, 0, 4);
    h += 4;
    memcpy(frame + h, body, (size_t)n);
    c->started[s] = now_ns();
    send_all(c->fd, frame, h + (size_t)n);
}

static void open_conn(lconn_t *c, int idx)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a))
        die("connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /v1/agents/%s/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: ag-ui\r\n\r\n",
                     g_agent);
    send_all(c->fd, req, (size_t)n);
    c->upgraded = false;
    c->in_len = 0;
    c->gen++;
    c->runs_done = 0;
    memset(c->started, 0, sizeof c->started);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev))
        die("epoll_ctl");
}

static void close_conn(lconn_t *c)
{
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static void record(uint64_t ns)
{
    if (g_nlat == g_caplat) {
        g_caplat = g_caplat ? g_caplat * 2 : 65536;
        g_lat = realloc(g_lat, g_caplat * sizeof *g_lat);
        if (!g_lat)
            die("realloc");
    }
    g_lat[g_nlat++] = ns;
}

/* A server text frame: count it; on RUN_FINISHED/RUN_ERROR finish its slot. */
static void on_text(lconn_t *c, int idx, const char *p, size_t n, bool measuring)
{
    g_events++;
    bool fin = memmem(p, n, "\"type\":\"RUN_FINISHED\"", 21) != NULL;
    bool err = !fin && memmem(p, n, "\"type\":\"RUN_ERROR\"", 18) != NULL;
    if (!fin && !err)
        return;
    const char *r = memmem(p, n, "\"runId\":\"c", 10);
    if (!r)
        return;
    int ci = 0, s = 0;
    if (sscanf(r + 10, "%d.%d.", &ci, &s) != 2 || s < 0 || s >= g_k)
        return;
    if (err)
        g_errors++;
    if (measuring) {
        g_runs++;
        record(now_ns() - c->started[s]);
    }
    c->started[s] = 0;
    c->runs_done++;
    if (g_one) {
        static const char bye[] = {(char)0x88, (char)0x82, 0, 0, 0, 0, 0x03, (char)0xe8};   /* close 1000 */
        send_all(c->fd, bye, sizeof bye);
        close_conn(c);
        open_conn(c, idx);   /* the next run on a new connection, after its 101 */
        return;
    }
    start_run(c, idx, s);
}

/* Parses what c has received. Returns false when the connection went away. */
static bool on_input(lconn_t *c, int idx, bool measuring)
{
    size_t pos = 0;
    if (!c->upgraded) {
        char *e = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!e)
            return true;
        if (c->in_len < 12 || memcmp(c->in + 9, "101", 3)) {
            fprintf(stderr, "wsload: upgrade refused: %.*s\n", (int)(c->in_len > 80 ? 80 : c->in_len), c->in);
            exit(1);
        }
        c->upgraded = true;
        pos = (size_t)(e + 4 - c->in);
        for (int s = 0; s < (g_one ? 1 : g_k); s++)
            start_run(c, idx, s);
    }
    while (c->fd >= 0 && c->in_len - pos >= 2) {
        uint8_t b0 = (uint8_t)c->in[pos], b1 = (uint8_t)c->in[pos + 1];
        size_t len = b1 & 0x7f, at = pos + 2;
        if (len == 126) {
            if (c->in_len - at < 2)
                break;
            len = (size_t)(uint8_t)c->in[at] << 8 | (uint8_t)c->in[at + 1];
            at += 2;
        } else if (len == 127) {
            if (c->in_len - at < 8)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | (uint8_t)c->in[at + i];
            at += 8;
        }
        if (c->in_len - at < len)
            break;
        int op = b0 & 0x0f;
        if (op == 8) {
            fprintf(stderr, "wsload: server closed with %u\n",
                    len >= 2 ? (unsigned)(uint8_t)c->in[at] << 8 | (uint8_t)c->in[at + 1] : 0);
            g_errors++;
            return false;
        }
        uint32_t gen = c->gen;
        if (op == 1)
            on_text(c, idx, c->in + at, len, measuring);
        pos = at + len;
        if (c->gen != gen)
            return true;   /* -1 mode reopened the connection; its buffer was reset */
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "p:a:c:k:d:1w:")) != -1) {
        switch (opt) {
        case 'p': g_port = atoi(optarg); break;
        case 'a': g_agent = optarg; break;
        case 'c': g_conns = atoi(optarg); break;
        case 'k': g_k = atoi(optarg); break;
        case 'd': g_secs = atoi(optarg); break;
        case '1': g_one = true; break;
        case 'w': g_words = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: wsload -p PORT [-a AGENT] [-c CONNS] [-k RUNS] [-d SECONDS] [-1] [-w WORDS]\n");
            return 2;
        }
    }
    if (g_one)
        g_k = 1;
    if (g_k < 1 || g_k > MAX_K || g_conns < 1 || g_words < 1 || g_words > 500) {
        fprintf(stderr, "wsload: -k 1..%d, -c >= 1, -w 1..500\n", MAX_K);
        return 2;
    }
    size_t tl = 0;
    for (int i = 0; i < g_words; i++)
        tl += (size_t)snprintf(g_text + tl, sizeof g_text - tl, "%sword%d", i ? " " : "", i);
    g_ep = epoll_create1(0);
    lconn_t *cs = calloc((size_t)g_conns, sizeof *cs);
    if (g_ep < 0 || !cs)
        die("setup");
    for (int i = 0; i < g_conns; i++) {
        cs[i].in_cap = 1 << 20;
        cs[i].in = malloc(cs[i].in_cap);
        if (!cs[i].in)
            die("malloc");
        open_conn(&cs[i], i);
    }
    /* One second of warm-up, then the measured window. */
    uint64_t t0 = now_ns(), warm = t0 + 1000000000ull, end = warm + (uint64_t)g_secs * 1000000000ull;
    uint64_t ev0 = 0;
    bool measuring = false;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= warm) {
            measuring = true;
            ev0 = g_events;
        }
        if (t >= end)
            break;
        int n = epoll_wait(g_ep, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            int idx = (int)evs[i].data.u32;
            lconn_t *c = &cs[idx];
            if (c->fd < 0)
                continue;
            if (c->in_cap - c->in_len < 65536) {
                c->in_cap *= 2;
                c->in = realloc(c->in, c->in_cap);
                if (!c->in)
                    die("realloc");
            }
            ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                fprintf(stderr, "wsload: connection %d: %s\n", idx, r ? strerror(errno) : "EOF");
                g_errors++;
                close_conn(c);
                open_conn(c, idx);
                continue;
            }
            c->in_len += (size_t)r;
            if (!on_input(c, idx, measuring)) {
                close_conn(c);
                open_conn(c, idx);
            }
        }
    }
    double secs = (double)g_secs;
    qsort(g_lat, g_nlat, sizeof *g_lat, cmp_u64);
#define PCT(p) (g_nlat ? (double)g_lat[(size_t)((double)(g_nlat - 1) * (p))] / 1e6 : 0.0)
    printf("runs=%llu runs_per_s=%.0f events_per_s=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f errors=%llu "
           "conns=%d runs_per_conn=%d mode=%s\n",
           (unsigned long long)g_runs, (double)g_runs / secs, (double)(g_events - ev0) / secs, PCT(0.50), PCT(0.90),
           PCT(0.99), (unsigned long long)g_errors, g_conns, g_k, g_one ? "one-run-per-connection" : "multiplexed");
    for (int i = 0; i < g_conns; i++) {
        if (cs[i].fd >= 0)
            close(cs[i].fd);
        free(cs[i].in);
    }
    free(cs);
    free(g_lat);
    return g_errors ? 1 : 0;
}
