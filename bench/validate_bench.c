/* validate_bench: what proto/validate.c costs per event, with its per-thread
 * parse arena and with plain malloc (VALIDATE_ARENA=0, the compile-time switch
 * in validate.c). Not built by default; from the repository root:
 *
 *   for a in 1 0; do
 *     cc -O2 -std=gnu11 -D_GNU_SOURCE -I. -DVALIDATE_ARENA=$a bench/validate_bench.c \
 *        proto/validate.c proto/agui.c proto/json.c core/buf.c -ljansson -lpthread \
 *        -o build/validate_bench_$a && build/validate_bench_$a
 *   done
 *
 * Add -ljemalloc (last) to measure against the allocator release builds use.
 *
 * The workload is one realistic streamed answer: RUN_STARTED, TEXT_MESSAGE_START,
 * 40 TEXT_MESSAGE_CONTENT with short deltas, TEXT_MESSAGE_END, RUN_FINISHED —
 * 44 events, each validated as a proxied agent's event would be, one validator
 * per run. Prints the best of several rounds in ns per event, and for reference
 * what jansson's json_loadb + json_decref alone cost on the same events (with
 * malloc: outside validate_event the hooks always use it). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/validate.h"

#ifndef VALIDATE_ARENA
#define VALIDATE_ARENA 1
#endif

#define EVENTS 44
#define RUNS   20000
#define ROUNDS 7

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(void)
{
    static const char *const words[] = {
        "The", " weather", " in", " Oslo", " is", " mostly", " sunny", " today,", " with",
        " a", " light", " breeze", " from", " the", " west", " and", " temperatures", " around",
        " 18", "\u00b0C.",
    };
    char *ev[EVENTS];
    size_t len[EVENTS];
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
    size_t bytes = 0;
    for (int i = 0; i < EVENTS; i++) {
        len[i] = strlen(ev[i]);
        bytes += len[i];
    }

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
                    return 1;
                }
            if (!validate_run_closed(v))
                return 1;
            validate_free(v);
        }
        double per = (now_ns() - t0) / ((double)RUNS * EVENTS);
        if (round && per < best)
            best = per;
    }
    printf("validate (%s): %.0f ns/event, %.1f M events/s, %.0f MB/s of event JSON (%d runs x %d events, best of %d)\n",
           VALIDATE_ARENA ? "arena" : "malloc", best, 1e3 / best,
           (double)bytes / EVENTS / best * 1e3, RUNS, EVENTS, ROUNDS);

    double parse = 1e300;
    for (int round = 0; round < ROUNDS + 1; round++) {
        double t0 = now_ns();
        for (int r = 0; r < RUNS; r++)
            for (int i = 0; i < EVENTS; i++) {
                json_t *j = json_loadb(ev[i], len[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (!j)
                    return 1;
                json_decref(j);
            }
        double per = (now_ns() - t0) / ((double)RUNS * EVENTS);
        if (round && per < parse)
            parse = per;
    }
    printf("  reference: json_loadb + json_decref alone (malloc): %.0f ns/event\n", parse);
    for (int i = 0; i < EVENTS; i++)
        free(ev[i]);
    return 0;
}
