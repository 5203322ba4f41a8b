/* Unit tests for core/httpc.c against a scripted loopback server run by the
 * test: interim responses, chunked and close-delimited bodies, a body past the
 * read cap, a response that is not HTTP, keep-alive reuse, a kept connection
 * the server dropped, and a server that never answers (bounded by the deadline). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/httpc.h"

/* One scripted answer: what the server writes after reading a request, and
 * whether it then closes the connection. NULL text: read and never answer. */
typedef struct answer {
    const char *text;
    size_t      len;           /* 0: strlen(text) */
    bool        close_after;
} answer_t;

typedef struct server {
    int            lfd;
    uint16_t       port;
    pthread_t      thr;
    _Atomic bool   stop;
    _Atomic int    accepts;
    _Atomic int    requests;
    const answer_t *script;
    size_t         n_script;
} server_t;

static bool readable(server_t *s, int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (!atomic_load(&s->stop)) {
        if (poll(&p, 1, 50) == 1)
            return true;
    }
    return false;
}

/* Reads one request (head + Content-Length body); false at EOF or stop. */
static bool read_request(server_t *s, int fd)
{
    char buf[1 << 16];
    size_t have = 0;
    for (;;) {
        char *end = memmem(buf, have, "\r\n\r\n", 4);
        if (end) {
            char *cl = strcasestr(buf, "\r\nContent-Length:");
            size_t need = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 17, NULL, 10) : 0);
            if (have >= need)
                return true;
        }
        if (have == sizeof buf || !readable(s, fd))
            return false;
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            return false;
        have += (size_t)n;
    }
}

static void *server_main(void *arg)
{
    server_t *s = arg;
    size_t next = 0;
    while (!atomic_load(&s->stop)) {
        if (!readable(s, s->lfd))
            break;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&s->accepts, 1);
        while (next < s->n_script && read_request(s, fd)) {
            const answer_t *a = &s->script[next++];
            atomic_fetch_add(&s->requests, 1);
            if (!a->text) {
                readable(s, fd);       /* hang until the client goes or the test stops */
                break;
            }
            size_t len = a->len ? a->len : strlen(a->text), off = 0;
            while (off < len) {
                ssize_t w = write(fd, a->text + off, len - off);
                if (w <= 0)
                    break;
                off += (size_t)w;
            }
            if (a->close_after)
                break;
        }
        close(fd);
    }
    return NULL;
}

static server_t *server_start(const answer_t *script, size_t n)
{
    server_t *s = calloc(1, sizeof *s);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sin;
    assert_non_null(s);
    s->script = script;
    s->n_script = n;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sin, &sl), 0);
    s->port = ntohs(sin.sin_port);
    assert_int_equal(pthread_create(&s->thr, NULL, server_main, s), 0);
    return s;
}

static void server_stop(server_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thr, NULL);
    close(s->lfd);
    free(s);
}

static void client_for(httpc_t *h, const server_t *s, uint32_t io_ms)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    memset(&ss, 0, sizeof ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(s->port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    httpc_init(h, &ss, sizeof *sin, "127.0.0.1", io_ms);
}

static int post(httpc_t *h, uint32_t timeout_ms)
{
    static const char body[] = "{\"x\":1}";
    return httpc_post(h, "/v1/traces", "application/json", body, sizeof body - 1, timeout_ms);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_interim_then_final_keeps_connection(void **state)
{
    static const answer_t script[] = {
        { "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 0, false },
        { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0, false },
    };
    server_t *s = server_start(script, N(script));
    httpc_t h;
    client_for(&h, s, 2000);
    assert_int_equal(post(&h, 5000), 204);
    assert_int_equal(post(&h, 5000), 200);
    assert_int_equal(atomic_load(&s->accepts), 1);    /* one connection for both */
    httpc_free(&h);
    server_stop(s);
}

static void test_chunked_body_is_read_and_connection_kept(void **state)
{
    static const answer_t script[] = {
        { "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0, false },
        { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, false },
    };
    server_t *s = server_start(script, N(script));
    httpc_t h;
    client_for(&h, s, 2000);
    assert_int_equal(post(&h, 5000), 400);
    assert_int_equal(post(&h, 5000), 200);
    assert_int_equal(atomic_load(&s->accepts), 1);
    httpc_free(&h);
    server_stop(s);
}

static void test_close_delimited_body(void **state)
{
    static const answer_t script[] = {
        { "HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\nbody until the close", 0, true },
        { "HTTP/1.0 200 OK\r\n\r\n", 0, true },
    };
    server_t *s = server_start(script, N(script));
    httpc_t h;
    client_for(&h, s, 2000);
    assert_int_equal(post(&h, 5000), 202);
    assert_int_equal(h.fd, -1);                       /* not reusable: closed */
    assert_int_equal(post(&h, 5000), 200);
    assert_int_equal(atomic_load(&s->accepts), 2);
    httpc_free(&h);
    server_stop(s);
}

static void test_body_past_cap_closes(void **state)
{
    static char big[(2u << 20) + 64];
    int n = snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n", 2u << 20);
    memset(big + n, 'x', 2u << 20);
    answer_t script[] = { { big, (size_t)n + (2u << 20), false } };
    server_t *s = server_start(script, N(script));
    httpc_t h;
    client_for(&h, s, 2000);
    assert_int_equal(post(&h, 5000), 200);            /* the status is the answer */
    assert_int_equal(h.fd, -1);                       /* the rest was not worth reading */
    httpc_free(&h);
    server_stop(s);
}

static void test_not_http(void **state)
{
    static const answer_t script[] = { { "SSH-2.0-OpenSSH_9.2\r\n\r\n", 0, false } };
    server_t *s = server_start(script, N(script));
    httpc_t h;
    client_for(&h, s, 2000);
    assert_int_equal(post(&h, 5000), -EPROTO);
    assert_int_equal(h.fd, -1);
    httpc_free(&h);
    server_stop(s);
}

static void test_dropped_kept_connection_is_replaced(void **state)
{
    static const answer_t script[] = {
        { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, true },   /* keep-alive said, then closed */
        { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, false },
    };
    server_t *s = server_start(script, N(script));
    httpc_t h;
    client_for(&h, s, 2000);
    assert_int_equal(post(&h, 5000), 200);
    usleep(50 * 1000);                                /* the close reaches us */
    assert_int_equal(post(&h, 5000), 200);
    assert_int_equal(atomic_load(&s->accepts), 2);
    httpc_free(&h);
    server_stop(s);
}

static void test_silent_server_is_bounded(void **state)
{
    static const answer_t script[] = { { NULL, 0, false } };
    server_t *s = server_start(script, N(script));
    httpc_t h;
    client_for(&h, s, 200);
    uint64_t t0 = clock_mono_ms();
    assert_int_equal(post(&h, 600), -ETIMEDOUT);
    uint64_t took = clock_mono_ms() - t0;
    assert_true(took >= 150 && took < 2000);
    assert_int_equal(h.fd, -1);
    httpc_free(&h);
    server_stop(s);
}

static void test_refused(void **state)
{
    server_t *s = server_start(NULL, 0);
    httpc_t h;
    client_for(&h, s, 500);
    server_stop(s);                                   /* nothing listens on the port now */
    assert_int_equal(post(&h, 1000), -ECONNREFUSED);
    httpc_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interim_then_final_keeps_connection),
        cmocka_unit_test(test_chunked_body_is_read_and_connection_kept),
        cmocka_unit_test(test_close_delimited_body),
        cmocka_unit_test(test_body_past_cap_closes),
        cmocka_unit_test(test_not_http),
        cmocka_unit_test(test_dropped_kept_connection_is_replaced),
        cmocka_unit_test(test_silent_server_is_bounded),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
