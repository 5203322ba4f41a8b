/* pbjson_bench: what the protobuf encoding costs per event next to SSE's JSON.
 * Not built by default; from the repository root (after `make` has generated
 * build/gen):
 *
 *   cc -O2 -std=gnu11 -D_GNU_SOURCE -I. -Ibuild/gen bench/pbjson_bench.c \
 *      proto/pbjson.c proto/pbjson_enc.c proto/pbjson_dec.c proto/jtape.c proto/agui.c \
 *      core/json.c core/buf.c build/gen/agui.pb-c.c \
 *      build/gen/google/protobuf/struct.pb-c.c -lprotobuf-c -lpthread -lm \
 *      -o build/pbjson_bench && build/pbjson_bench
 *
 * Rows, each over the echo agent's event mix (RUN_STARTED, TEXT_MESSAGE_START,
 * 40 TEXT_MESSAGE_CONTENT with short deltas, TEXT_MESSAGE_END, RUN_FINISHED):
 *   sse      agui_write_json, what the SSE sink writes for an agate event
 *   proto    pbjson_frame_event, what the protobuf sink writes for it
 *   json2pb  pbjson_frame_json on the same events as JSON text (an SSE
 *            upstream's event for a protobuf client: a jtape read + pack)
 *   pb2json  pbjson_to_json on the frames (a protobuf upstream's event, before
 *            validation and the sink)
 * Prints ns per event, best of several rounds, and the mallocs per event seen
 * through a counting hook (glibc's __libc_malloc underneath).
 *
 * Measured on the shared 2-core development machine (ns vary by 2x run to run
 * there; the ratios hold): sse 28, proto 200, json2pb 404 (4000 with 18
 * mallocs/event when it used jansson), pb2json 340-990; 0 mallocs/event. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "proto/agui.h"
#include "proto/pbjson.h"

static size_t n_malloc;
extern void *__libc_malloc(size_t);
void *malloc(size_t n)
{
    n_malloc++;
    return __libc_malloc(n);
}

#define N_EVENTS 44

static agui_event_t evs[N_EVENTS];
static buf_t jsons[N_EVENTS], frames[N_EVENTS];

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void setup(void)
{
    static const char *words[] = {"The ", "quick ", "brown ", "fox ", "jumps ", "over ", "the ", "lazy ", "dog. "};
    agui_str_t t = {"thread-5f3a9c", 13}, r = {"run-81be02d4", 12}, m = {"0b6f3c2e-8f7a-4d1e-9c55-2a7b1e6d9f04", 36};
    evs[0] = (agui_event_t){.type = AGUI_RUN_STARTED, .thread_id = t, .run_id = r};
    evs[1] = (agui_event_t){.type = AGUI_TEXT_MESSAGE_START, .message_id = m, .role = {"assistant", 9}};
    for (int i = 0; i < 40; i++)
        evs[2 + i] = (agui_event_t){.type = AGUI_TEXT_MESSAGE_CONTENT, .message_id = m,
                                    .delta = {words[i % 9], strlen(words[i % 9])}};
    evs[42] = (agui_event_t){.type = AGUI_TEXT_MESSAGE_END, .message_id = m};
    evs[43] = (agui_event_t){.type = AGUI_RUN_FINISHED, .thread_id = t, .run_id = r};
    for (int i = 0; i < N_EVENTS; i++) {
        agui_write_json(&jsons[i], &evs[i]);
        pbjson_frame_event(&frames[i], &evs[i]);
    }
}

static double row(int which, int rounds, int reps, size_t *mallocs)
{
    buf_t out = {0};
    char msg[PBJSON_MSG_MAX];
    agui_type_t type;
    double best = 1e30;
    buf_reserve(&out, 1 << 20);
    for (int k = 0; k < rounds; k++) {
        size_t m0 = n_malloc;
        double t0 = now_ns();
        for (int rep = 0; rep < reps; rep++) {
            buf_reset(&out);
            for (int i = 0; i < N_EVENTS; i++) {
                switch (which) {
                case 0: agui_write_json(&out, &evs[i]); break;
                case 1: pbjson_frame_event(&out, &evs[i]); break;
                case 2: pbjson_frame_json(&out, jsons[i].data, jsons[i].len, msg); break;
                case 3: pbjson_to_json(&out, (const uint8_t *)frames[i].data + 4, frames[i].len - 4, &type, msg); break;
                }
            }
        }
        double ns = (now_ns() - t0) / ((double)reps * N_EVENTS);
        if (ns < best)
            best = ns;
        *mallocs = (n_malloc - m0) / ((size_t)reps * N_EVENTS);
    }
    buf_free(&out);
    return best;
}

int main(void)
{
    setup();
    static const char *names[] = {"sse", "proto", "json2pb", "pb2json"};
    printf("%-8s %10s %14s\n", "row", "ns/event", "mallocs/event");
    for (int w = 0; w < 4; w++) {
        size_t m = 0;
        row(w, 1, 200, &m);   /* warm: the arena's first chunk */
        double ns = row(w, 7, 2000, &m);
        printf("%-8s %10.1f %14zu\n", names[w], ns, m);
    }
    return 0;
}
