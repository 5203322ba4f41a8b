/* validate_bench: what proto/validate.c costs per event and proto/runinput.c per
 * request body, next to the libraries they could have been built on. Not built
 * by default; from the repository root:
 *
 *   cc -O2 -std=gnu11 -D_GNU_SOURCE -I. bench/validate_bench.c proto/validate.c \
 *      proto/validate_ids.c proto/validate_chunk.c proto/validate_seq.c proto/schema.c \
 *      proto/jtape.c proto/runinput.c \
 *      proto/agui.c core/json.c core/buf.c -ljansson -lpthread -lm \
 *      -o build/validate_bench && build/validate_bench
 *
 * Add -DHAVE_YAJL ... -lyajl (libyajl-dev) for the yajl reference row, and
 * -ljemalloc (last) to measure with the allocator release builds use. An
 * argument picks one row ("validate", "runinput", "jansson", "yajl") for perf.
 *
 * The event workload is one realistic streamed answer: RUN_STARTED,
 * TEXT_MESSAGE_START, 40 TEXT_MESSAGE_CONTENT with short deltas,
 * TEXT_MESSAGE_END, RUN_FINISHED — 44 events, each validated as a proxied
 * agent's event would be, one validator per run. The body workload is
 * bench/echo-body.json, the request of the echo and proxy bench cases. Prints
 * the best of several rounds. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/runinput.h"
#include "proto/validate.h"

#ifdef HAVE_YAJL
#include <yajl/yajl_parse.h>
#endif

#define EVENTS 44
#ifndef RUNS        /* -DRUNS=500 -DROUNDS=1 for callgrind (make validate-instr) */
#define RUNS   20000
#endif
#ifndef ROUNDS
#define ROUNDS 7
#endif

static char  *ev[EVENTS];
static size_t len[EVENTS];
static const char *only;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int want(const char *row) { return !only || !strcmp(only, row); }

static void make_events(void)
{
    static const char *const words[] = {
        "The", " weather", " in", " Oslo", " is", " mostly", " sunny", " today,", " with",
        " a", " light", " breeze", " from", " the", " west", " and", " temperatures", " around",
        " 18", "\u00b0C.",
    };
    char buf[256];
    int n = 0;
    ev[n++] = strdup("{\"type\":\"RUN_STARTED\",\"threadId\":\"thread-8f3a2c\",\"runId\":\"run-5b1e9d\"}");
    ev[n++] = strdup("{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"msg-01HZX3K9Q2\",\"role\":\"assistant\"}");
    for (int i = 0; i < 40; i++) {
        snprintf(buf, sizeof buf,
                 "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"msg-01HZX3K9Q2\",\"delta\":\"%s\"}",
                 words[i % 20]);
        ev[n++] = strdup(buf);
    }
    ev[n++] = strdup("{\"type\":\"TEXT_MESSAGE_END\",\"messageId\":\"msg-01HZX3K9Q2\"}");
    ev[n++] = strdup("{\"type\":\"RUN_FINISHED\",\"threadId\":\"thread-8f3a2c\",\"runId\":\"run-5b1e9d\"}");
    for (int i = 0; i < EVENTS; i++)
        len[i] = strlen(ev[i]);
}

__attribute__((noinline)) static double bench_validate(void)
{
    char msg[VALIDATE_MSG_MAX];
    agui_type_t type;
    double best = 1e300;
    for (int round = 0; round < ROUNDS + 1; round++) {   /* round 0 warms up */
        double t0 = now_ns();
        for (int r = 0; r < RUNS; r++) {
            validate_t *v = validate_new();
            for (int i = 0; i < EVENTS; i++)
                if (validate_event(v, ev[i], len[i], &type, msg)) {
                    fprintf(stderr, "event %d rejected: %s\n", i, msg);
                    exit(1);
                }
            if (!validate_run_closed(v))
                exit(1);
            validate_free(v);
        }
        double per = (now_ns() - t0) / ((double)RUNS * EVENTS);
        if (round && per < best)
            best = per;
    }
    return best;
}

static double bench_jansson(void)
{
    double best = 1e300;
    for (int round = 0; round < ROUNDS + 1; round++) {
        double t0 = now_ns();
        for (int r = 0; r < RUNS; r++)
            for (int i = 0; i < EVENTS; i++) {
                json_t *j = json_loadb(ev[i], len[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (!j)
                    exit(1);
                json_decref(j);
            }
        double per = (now_ns() - t0) / ((double)RUNS * EVENTS);
        if (round && per < best)
            best = per;
    }
    return best;
}

#ifdef HAVE_YAJL
/* yajl's SAX parse with callbacks that only count: the floor of a validator
 * built on it, before any key matching or schema work. */
static int y_count;
static int y_null(void *c) { (void)c; y_count++; return 1; }
static int y_bool(void *c, int b) { (void)c; (void)b; y_count++; return 1; }
static int y_num(void *c, const char *s, size_t n) { (void)c; (void)s; (void)n; y_count++; return 1; }
static int y_str(void *c, const unsigned char *s, size_t n) { (void)c; (void)s; (void)n; y_count++; return 1; }
static int y_open(void *c) { (void)c; y_count++; return 1; }
static const yajl_callbacks y_cb = {
    y_null, y_bool, NULL, NULL, y_num, y_str, y_open, y_str, y_open, y_open, y_open,
};

static double bench_yajl(void)
{
    double best = 1e300;
    for (int round = 0; round < ROUNDS + 1; round++) {
        double t0 = now_ns();
        for (int r = 0; r < RUNS; r++)
            for (int i = 0; i < EVENTS; i++) {
                yajl_handle h = yajl_alloc(&y_cb, NULL, NULL);   /* 2.1 has no reset */
                if (yajl_parse(h, (const unsigned char *)ev[i], len[i]) != yajl_status_ok ||
                    yajl_complete_parse(h) != yajl_status_ok)
                    exit(1);
                yajl_free(h);
            }
        double per = (now_ns() - t0) / ((double)RUNS * EVENTS);
        if (round && per < best)
            best = per;
    }
    return best;
}
#endif

static double bench_runinput(const char *body, size_t n, int jansson)
{
    double best = 1e300;
    buf_t text = {0};
    for (int round = 0; round < ROUNDS + 1; round++) {
        double t0 = now_ns();
        for (int r = 0; r < RUNS; r++) {
            if (jansson) {   /* what runinput cost before: parse + the same walk's floor */
                json_t *j = json_loadb(body, n, JSON_DECODE_ANY | JSON_ALLOW_NUL |
                                       JSON_REJECT_DUPLICATES, NULL);
                if (!j)
                    exit(1);
                json_decref(j);
                continue;
            }
            runinput_t in;
            runinput_err_t err;
            if (runinput_parse(body, n, &in, &err)) {
                fprintf(stderr, "body rejected: %s: %s\n", err.field, err.message);
                exit(1);
            }
            text.len = 0;
            if (runinput_user_text(&in, &text) != 1)
                exit(1);
            runinput_free(&in);
        }
        double per = (now_ns() - t0) / RUNS;
        if (round && per < best)
            best = per;
    }
    buf_free(&text);
    return best;
}

int main(int argc, char **argv)
{
    only = argc > 1 ? argv[1] : NULL;
    make_events();
    size_t bytes = 0;
    for (int i = 0; i < EVENTS; i++)
        bytes += len[i];
    if (want("validate")) {
        double v = bench_validate();
        printf("validate_event: %.0f ns/event, %.1f M events/s, %.0f MB/s of event JSON "
               "(%d runs x %d events, best of %d)\n", v, 1e3 / v,
               (double)bytes / EVENTS / v * 1e3, RUNS, EVENTS, ROUNDS);
    }
    if (want("jansson"))
        printf("  reference: jansson json_loadb + json_decref alone: %.0f ns/event\n",
               bench_jansson());
#ifdef HAVE_YAJL
    if (want("yajl"))
        printf("  reference: yajl 2.1 alloc + parse (no-op callbacks) + free: %.0f ns/event\n",
               bench_yajl());
#endif
    if (want("runinput")) {
        FILE *f = fopen("bench/echo-body.json", "rb");
        char body[4096];
        size_t n = f ? fread(body, 1, sizeof body, f) : 0;
        if (f)
            fclose(f);
        if (!n) {
            fprintf(stderr, "run from the repository root (bench/echo-body.json)\n");
            return 1;
        }
        printf("runinput_parse + user_text + free, %zu-byte body: %.0f ns/body\n", n,
               bench_runinput(body, n, 0));
        printf("  reference: jansson json_loadb + json_decref of the same body: %.0f ns/body\n",
               bench_runinput(body, n, 1));
    }
    for (int i = 0; i < EVENTS; i++)
        free(ev[i]);
    return 0;
}
