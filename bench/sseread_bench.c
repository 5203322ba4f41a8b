/* sseread_bench: how fast proto/sseread.c parses a typical upstream AG-UI stream.
 *
 * Not built by default. From the repository root:
 *
 *   cc -std=gnu11 -D_GNU_SOURCE -I. -O2 -flto=auto -o build/sseread_bench \
 *      bench/sseread_bench.c proto/sseread.c core/buf.c && build/sseread_bench
 *
 * The stream is what an agent answers to bench/echo-body.json, built the way an
 * upstream SDK writes it ("data: {json}\n\n", UUID message ids, timestamps):
 * RUN_STARTED, TEXT_MESSAGE_START, 40 TEXT_MESSAGE_CONTENT (one per word),
 * TEXT_MESSAGE_END, RUN_FINISHED: 44 events, about 6 KB. It is parsed many times
 * with a fresh stream each time (sseread_reset), delivered as one read, as
 * 1448-byte reads (a TCP segment's payload), and as 256-byte reads, where most
 * events straddle two reads and take the buffered path. Each figure is the best
 * of several rounds; ns/event and MB/s of stream bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "proto/sseread.h"

static const char *const words[] = {
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while",
    "a", "small", "gateway", "streams", "every", "word", "back", "to", "the", "waiting",
    "client", "as", "one", "server", "sent", "event", "so", "that", "we", "can",
    "measure", "how", "fast", "the", "whole", "path", "runs", "end", "to", "end",
};

#define THREAD "bench-thread-5b1c2f0e-8f4d-4a57-9a3e-7d2b1c0e9f11"
#define RUN    "bench-run-0c9e4b2a-3d6f-4e18-b7a5-2f8c1d9e6a40"
#define MSG    "msg-6f1d3c2b-9a8e-4b7f-a5c4-1e2d3f4a5b6c"

static void add_event(buf_t *b, uint64_t ts, const char *json_fmt, const char *arg)
{
    char ev[512];
    int n = snprintf(ev, sizeof ev, json_fmt, arg);
    buf_append_lit(b, "data: ");
    buf_append(b, ev, (size_t)n);
    n = snprintf(ev, sizeof ev, ",\"timestamp\":%llu}\n\n", (unsigned long long)ts);
    buf_append(b, ev, (size_t)n);
}

static void build_stream(buf_t *b)
{
    uint64_t ts = 1735689600000ull;
    add_event(b, ts++, "{\"type\":\"RUN_STARTED\",\"threadId\":\"" THREAD "\",\"runId\":\"%s\"", RUN);
    add_event(b, ts++, "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"%s\",\"role\":\"assistant\"", MSG);
    char delta[64];
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        snprintf(delta, sizeof delta, "%s%s", i ? " " : "", words[i]);
        char fmt[256];
        snprintf(fmt, sizeof fmt, "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"" MSG "\",\"delta\":\"%s\"",
                 delta);
        add_event(b, ts++, "%s", fmt);
    }
    add_event(b, ts++, "{\"type\":\"TEXT_MESSAGE_END\",\"messageId\":\"%s\"", MSG);
    add_event(b, ts++, "{\"type\":\"RUN_FINISHED\",\"threadId\":\"" THREAD "\",\"runId\":\"%s\"", RUN);
}

typedef struct sink {
    uint64_t events, bytes;
} sink_t;

static int on_event(void *ctx, const sseread_event_t *ev)
{
    sink_t *s = ctx;
    s->events++;
    s->bytes += ev->data_len + (unsigned char)ev->data[0];   /* touch the data */
    return 0;
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void run(const char *label, const buf_t *stream, size_t read_size, unsigned reps)
{
    sseread_t p;
    sseread_init(&p, 1 << 20);
    sink_t sink = {0};
    double best = 1e300;
    for (int round = 0; round < 7; round++) {
        double t0 = now_ns();
        for (unsigned r = 0; r < reps; r++) {
            sseread_reset(&p);
            for (size_t at = 0; at < stream->len; at += read_size) {
                size_t n = stream->len - at < read_size ? stream->len - at : read_size;
                if (sseread_feed(&p, stream->data + at, n, on_event, NULL, &sink)) {
                    fprintf(stderr, "parse error\n");
                    exit(1);
                }
            }
        }
        double dt = now_ns() - t0;
        if (dt < best)
            best = dt;
    }
    if (sink.events != 7ull * reps * 44) {
        fprintf(stderr, "%s: %llu events, want %llu\n", label, (unsigned long long)sink.events,
                7ull * reps * 44);
        exit(1);
    }
    double ns_event = best / ((double)reps * 44);
    double mbs = (double)stream->len * reps / (best / 1e9) / 1e6;
    printf("%-22s %7.1f ns/event  %8.0f MB/s\n", label, ns_event, mbs);
    sseread_free(&p);
}

int main(int argc, char **argv)
{
    buf_t stream = {0};
    build_stream(&stream);
    unsigned reps = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 20000;
    printf("stream: 44 events, %zu bytes; %u streams per round, best of 7\n", stream.len, reps);
    run("one read", &stream, stream.len, reps);
    run("1448-byte reads", &stream, 1448, reps);
    run("256-byte reads", &stream, 256, reps);
    buf_free(&stream);
    return 0;
}
