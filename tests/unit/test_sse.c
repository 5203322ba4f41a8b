/* sse + echo: the event sequence, exact deltas, pacing on the shard's timers,
 * heartbeats, backpressure bound, and release on client disconnect. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "proto/pbjson.h"
#include "tests/support/fakeconn.h"
#include "tests/unit/wire.h"

static fakeconn_t f;

static int setup(void **state)
{
    fake_init(&f);
    return 0;
}

static int teardown(void **state)
{
    fake_close(&f);
    return 0;
}

/* POSTs body to the echo agent. */
static void post_run(const char *body)
{
    char req[8192];
    int n = snprintf(req, sizeof req, "POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    fake_send(&f, req, (size_t)n);
}

static json_t *run_events(int *pings)
{
    size_t pos = 0;
    wire_resp_t r;
    assert_true(wire_next(f.wire.data, f.wire.len, &pos, &r));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Content-Type: text/event-stream\r\n"));
    assert_non_null(strstr(r.head, "Cache-Control: no-cache\r\n"));
    assert_non_null(strstr(r.head, "X-Accel-Buffering: no\r\n"));
    json_t *ev = wire_events(r.body, pings);
    free(r.body);
    return ev;
}

/* The deltas of a finished run, concatenated. */
static char *echoed(json_t *ev)
{
    size_t cap = 1, len = 0;
    char *out = calloc(1, 1);
    for (size_t i = 0; i < json_array_size(ev); i++) {
        if (strcmp(ev_type(ev, i), "TEXT_MESSAGE_CONTENT"))
            continue;
        const char *d = json_string_value(json_object_get(json_array_get(ev, i), "delta"));
        size_t dl = strlen(d);
        assert_true(dl > 0);
        out = realloc(out, cap += dl);
        memcpy(out + len, d, dl + 1);
        len += dl;
    }
    return out;
}

static void check_echo(const char *text_json, const char *expect, size_t words)
{
    fake_init(&f);
    fake_open(&f);
    char body[4096];
    snprintf(body, sizeof body,
             "{\"threadId\":\"th\",\"runId\":\"ru\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":%s}]}",
             text_json);
    post_run(body);
    json_t *ev = run_events(NULL);
    assert_int_equal(json_array_size(ev), words + 4);
    assert_string_equal(ev_type(ev, 0), "RUN_STARTED");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "threadId")), "th");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "runId")), "ru");
    assert_string_equal(ev_type(ev, 1), "TEXT_MESSAGE_START");
    json_t *start = json_array_get(ev, 1);
    const char *mid = json_string_value(json_object_get(start, "messageId"));
    assert_int_equal(strlen(mid), 36);
    assert_string_equal(json_string_value(json_object_get(start, "role")), "assistant");
    for (size_t i = 2; i < 2 + words; i++) {
        assert_string_equal(ev_type(ev, i), "TEXT_MESSAGE_CONTENT");
        assert_string_equal(json_string_value(json_object_get(json_array_get(ev, i), "messageId")), mid);
    }
    assert_string_equal(ev_type(ev, words + 2), "TEXT_MESSAGE_END");
    assert_string_equal(ev_type(ev, words + 3), "RUN_FINISHED");
    char *got = echoed(ev);
    assert_string_equal(got, expect);
    free(got);
    json_decref(ev);
    fake_close(&f);
}

static void test_echo_exact_deltas(void **state)
{
    check_echo("\"hello world\"", "hello world", 2);
    check_echo("\"  lead  and\\ttrail \\n\"", "  lead  and\ttrail \n", 3);
    check_echo("\"h\\u00e9llo w\\u00f6rld \\u4f60\\u597d\"", "h\xc3\xa9llo w\xc3\xb6rld \xe4\xbd\xa0\xe5\xa5\xbd", 3);
    check_echo("\"say \\\"hi\\\" \\\\ ok\"", "say \"hi\" \\ ok", 4);
    check_echo("\"   \"", "   ", 1);
    check_echo("[{\"type\":\"text\",\"text\":\"one \"},{\"type\":\"image\",\"source\":{\"type\":\"url\",\"value\":\"u\"}},"
               "{\"type\":\"text\",\"text\":\"two\"}]",
               "one two", 2);
    fake_init(&f);
}

static void test_no_user_text(void **state)
{
    fake_open(&f);
    post_run("{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"system\",\"content\":\"x\"}]}");
    json_t *ev = run_events(NULL);
    assert_int_equal(json_array_size(ev), 2);
    assert_string_equal(ev_type(ev, 0), "RUN_STARTED");
    assert_string_equal(ev_type(ev, 1), "RUN_FINISHED");
    json_decref(ev);
}

static void test_unique_message_ids(void **state)
{
    fake_open(&f);
    for (int i = 0; i < 20; i++)
        post_run("{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"x\"}]}");
    size_t pos = 0;
    char seen[20][37];
    for (int i = 0; i < 20; i++) {
        wire_resp_t r;
        assert_true(wire_next(f.wire.data, f.wire.len, &pos, &r));
        json_t *ev = wire_events(r.body, NULL);
        snprintf(seen[i], sizeof seen[i], "%s", json_string_value(json_object_get(json_array_get(ev, 1), "messageId")));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]);
        json_decref(ev);
        free(r.body);
    }
}

static void test_pacing_and_cap(void **state)
{
    f.cfg.max_token_interval_ms = 300;
    fake_open(&f);
    post_run("{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b c\"}],"
             "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":5000}}}");
    /* First word at once, then one per capped interval (300 ms, not 5000). */
    assert_non_null(strstr(f.wire.data, "\"delta\":\"a \""));
    assert_null(strstr(f.wire.data, "\"delta\":\"b \""));
    fake_advance(&f, 299);
    assert_null(strstr(f.wire.data, "\"delta\":\"b \""));
    fake_advance(&f, 1);
    assert_non_null(strstr(f.wire.data, "\"delta\":\"b \""));
    assert_null(strstr(f.wire.data, "RUN_FINISHED"));
    fake_advance(&f, 300);
    assert_non_null(strstr(f.wire.data, "RUN_FINISHED"));
    assert_non_null(strstr(f.wire.data, "\r\n0\r\n\r\n"));   /* chunked end */
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);       /* keep-alive */
}

static void test_agent_interval_and_override(void **state)
{
    f.cfg.agents[0].token_interval_ms = 100;
    fake_open(&f);
    post_run("{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b\"}]}");
    assert_null(strstr(f.wire.data, "\"delta\":\"b\""));
    fake_advance(&f, 100);
    assert_non_null(strstr(f.wire.data, "\"delta\":\"b\""));
    /* tokenIntervalMs 0 overrides the agent's pacing. */
    post_run("{\"threadId\":\"t\",\"runId\":\"r2\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"c d\"}],"
             "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":0}}}");
    assert_non_null(strstr(f.wire.data, "\"runId\":\"r2\"}\n\n"));
    assert_non_null(strstr(f.wire.data, "\"delta\":\"d\""));
}

static void test_heartbeat(void **state)
{
    f.cfg.heartbeat_ms = 300;
    f.cfg.max_token_interval_ms = 1000;
    fake_open(&f);
    post_run("{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b\"}],"
             "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":1000}}}");
    for (int i = 0; i < 10; i++)
        fake_advance(&f, 100);
    int pings = 0;
    json_t *ev = run_events(&pings);
    assert_int_equal(json_array_size(ev), 6);
    assert_true(pings >= 2);   /* 1000 ms quiet at 300 ms heartbeat: pings at 300, 600, 900 */
    json_decref(ev);
}

/* A protobuf run of an echo agent quiet for 1000 ms: its keep-alive frames
 * counted (its encoding has no comment frame); every other frame is an event. */
static int protobuf_beats(uint32_t heartbeat_ms, uint32_t pb_heartbeat_ms)
{
    f.cfg.heartbeat_ms = heartbeat_ms;
    f.cfg.pb_heartbeat_ms = pb_heartbeat_ms;
    f.cfg.max_token_interval_ms = 1000;
    fake_open(&f);
    const char *body = "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b\"}],"
                       "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":1000}}}";
    char req[1024];
    int n = snprintf(req, sizeof req, "POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nAccept: " PBJSON_MEDIA_TYPE
                     "\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
    fake_send(&f, req, (size_t)n);
    for (int i = 0; i < 10; i++)
        fake_advance(&f, 100);
    size_t pos = 0;
    wire_resp_t r;
    assert_true(wire_next(f.wire.data, f.wire.len, &pos, &r));
    assert_non_null(strstr(r.head, "Content-Type: " PBJSON_MEDIA_TYPE "\r\n"));
    int events = 0, beats = 0;
    for (size_t i = 0; i + 4 <= r.body_len;) {
        const uint8_t *p = (const uint8_t *)r.body + i;
        size_t len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
        assert_true(i + 4 + len <= r.body_len);
        if (pbjson_is_heartbeat(p + 4, len)) {
            beats++;
        } else {
            agui_type_t t;
            buf_t j = {0};
            char msg[PBJSON_MSG_MAX];
            assert_int_equal(pbjson_to_json(&j, p + 4, len, &t, msg), 0);
            buf_free(&j);
            events++;
        }
        i += 4 + len;
    }
    free(r.body);
    assert_int_equal(events, 6);
    return beats;
}

/* stream.protobuf_heartbeat, not stream.heartbeat, paces a protobuf stream. */
static void test_heartbeat_protobuf(void **state)
{
    assert_true(protobuf_beats(0, 300) >= 2);   /* 1000 ms quiet at 300 ms: at 300, 600, 900 */
}

static void test_heartbeat_protobuf_off(void **state)
{
    assert_int_equal(protobuf_beats(300, 0), 0);
}

static void test_backpressure_bound(void **state)
{
    f.cfg.stream_buffer_bytes = 1024;
    fake_open(&f);
    static char body[40000];
    int n = snprintf(body, sizeof body, "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 2000; i++)
        n += snprintf(body + n, sizeof body - (size_t)n, "w%d ", i);
    snprintf(body + n, sizeof body - (size_t)n, "\"}]}");
    char req[45000];
    int rl = snprintf(req, sizeof req, "POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
                      strlen(body), body);
    conn_input(fake_conn(&f), req, (size_t)rl);
    /* Nothing sent yet: the run must have stopped near the bound, not queued 2000 events. */
    size_t queued = conn_out_pending(fake_conn(&f));
    assert_true(queued < 1024 + 512);
    assert_non_null(fake_conn(&f)->run);
    assert_true(fake_conn(&f)->run->blocked);
    fake_flush(&f);   /* the client reads: the run resumes until done */
    json_t *ev = run_events(NULL);
    assert_int_equal(json_array_size(ev), 2004);
    json_decref(ev);
}

static void test_disconnect_releases_run(void **state)
{
    fake_open(&f);
    post_run("{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b c d\"}],"
             "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":500}}}");
    run_t *r = fake_conn(&f)->run;
    assert_non_null(r);
    assert_true(timer_armed(&r->tick));
    conn_abort(fake_conn(&f));            /* what an EOF from the client does */
    assert_null(fake_conn(&f)->run);
    assert_ptr_equal(run_pool_head(&f.sh), r);   /* back in the pool at once */
    assert_false(timer_armed(&r->tick));
    conn_reap(fake_conn(&f));
    assert_int_equal(fake_conn(&f)->state, CONN_FREE);
    assert_int_equal(f.sh.timers.n, 0);
    assert_int_equal(f.conns.n_main, 0);
}

static void test_http10_close_delimited(void **state)
{
    fake_open(&f);
    const char *body = "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"x y\"}]}";
    char req[512];
    int n = snprintf(req, sizeof req, "POST /v1/agents/echo/run HTTP/1.0\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
    fake_send(&f, req, (size_t)n);
    const char *eoh = strstr(f.wire.data, "\r\n\r\n");
    assert_non_null(eoh);
    assert_memory_equal(eoh + 4, "data: {\"type\":\"RUN_STARTED\"", 27);   /* no chunk framing */
    assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_exact_deltas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_user_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unique_message_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pacing_and_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_interval_and_override, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_protobuf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_protobuf_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_releases_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10_close_delimited, setup, teardown),
    };
    return cmocka_run_group_tests_name("sse", tests, NULL, NULL);
}
