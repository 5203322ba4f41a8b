/* Unit tests for proto/pbjson.c: agate's own events as frames, JSON -> protobuf
 * -> JSON for the shapes where AG-UI's JSON and its protobuf schema differ
 * (the expected JSON is what @ag-ui/proto 1.0.0's decode returns, with the
 * defaults of implicit fields), and every refusal on both sides. The
 * integration test tests/integration/protobuf.test.mjs checks the same against
 * @ag-ui/proto itself for every event type. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "agui.pb-c.h"
#include "core/buf.h"
#include "proto/pbjson.h"

/* JSON in -> frame -> JSON out; asserts the output equals `want` as JSON values. */
static void roundtrip(const char *in, const char *want)
{
    buf_t f = {0}, j = {0};
    char msg[PBJSON_MSG_MAX];
    int rc = pbjson_frame_json(&f, in, strlen(in), msg);
    if (rc)
        fail_msg("frame_json(%s): %d %s", in, rc, msg);
    assert_true(f.len >= 4);
    uint32_t n = (uint32_t)(unsigned char)f.data[0] << 24 | (uint32_t)(unsigned char)f.data[1] << 16 |
                 (uint32_t)(unsigned char)f.data[2] << 8 | (unsigned char)f.data[3];
    assert_int_equal(n, f.len - 4);
    agui_type_t t;
    rc = pbjson_to_json(&j, (const uint8_t *)f.data + 4, n, &t, msg);
    if (rc)
        fail_msg("to_json(%s): %d %s", in, rc, msg);
    json_t *got = json_loadb(j.data, j.len, 0, NULL), *exp = json_loads(want, 0, NULL);
    assert_non_null(exp);
    if (!got || !json_equal(got, exp))
        fail_msg("%s\n  got  %.*s\n  want %s", in, (int)j.len, j.data, want);
    assert_int_equal(pbjson_sniff_type((const uint8_t *)f.data + 4, n), t);
    json_decref(got);
    json_decref(exp);
    buf_free(&f);
    buf_free(&j);
}

static void test_agate_events(void **state)
{
    buf_t b = {0}, j = {0};
    agui_type_t t;
    char msg[PBJSON_MSG_MAX];
    agui_event_t evs[] = {
        {.type = AGUI_RUN_STARTED, .thread_id = {"t", 1}, .run_id = {"r", 1}},
        {.type = AGUI_TEXT_MESSAGE_START, .message_id = {"m1", 2}, .role = {"assistant", 9}},
        {.type = AGUI_TEXT_MESSAGE_CONTENT, .message_id = {"m1", 2}, .delta = {"hi there", 2}},
        {.type = AGUI_TEXT_MESSAGE_END, .message_id = {"m1", 2}},
        {.type = AGUI_RUN_ERROR, .message = {"bad", 3}, .code = {"upstream_failed", 15}},
        {.type = AGUI_RUN_FINISHED, .thread_id = {"t", 1}, .run_id = {"r", 1}},
    };
    const char *want[] = {
        "{\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\"}",
        "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m1\",\"role\":\"assistant\"}",
        "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m1\",\"delta\":\"hi\"}",
        "{\"type\":\"TEXT_MESSAGE_END\",\"messageId\":\"m1\"}",
        "{\"type\":\"RUN_ERROR\",\"code\":\"upstream_failed\",\"message\":\"bad\"}",
        "{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\"}",
    };
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++) {
        buf_reset(&b);
        buf_reset(&j);
        assert_int_equal(pbjson_frame_event(&b, &evs[i]), 0);
        /* the wire is protobuf-c's own: it unpacks to the arm the type names */
        AgUi__Event *e = ag_ui__event__unpack(NULL, b.len - 4, (const uint8_t *)b.data + 4);
        assert_non_null(e);
        assert_int_not_equal(e->event_case, AG_UI__EVENT__EVENT__NOT_SET);
        ag_ui__event__free_unpacked(e, NULL);
        assert_int_equal(pbjson_to_json(&j, (const uint8_t *)b.data + 4, b.len - 4, &t, msg), 0);
        assert_int_equal(t, evs[i].type);
        json_t *got = json_loadb(j.data, j.len, 0, NULL), *exp = json_loads(want[i], 0, NULL);
        if (!json_equal(got, exp))
            fail_msg("got %.*s want %s", (int)j.len, j.data, want[i]);
        json_decref(got);
        json_decref(exp);
    }
    /* A RUN_ERROR without a code has none on the wire either. */
    agui_event_t nocode = {.type = AGUI_RUN_ERROR, .message = {"m", 1}};
    buf_reset(&b);
    assert_int_equal(pbjson_frame_event(&b, &nocode), 0);
    buf_reset(&j);
    assert_int_equal(pbjson_to_json(&j, (const uint8_t *)b.data + 4, b.len - 4, &t, msg), 0);
    assert_null(memmem(j.data, j.len, "code", 4));
    /* Pass-through types are never built by agate. */
    agui_event_t raw = {.type = AGUI_RAW};
    size_t len = b.len;
    assert_int_equal(pbjson_frame_event(&b, &raw), -EINVAL);
    assert_int_equal(b.len, len);
    buf_free(&b);
    buf_free(&j);
}

static void test_envelope_fields(void **state)
{
    roundtrip("{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m\",\"delta\":\"x\",\"timestamp\":1700000000123,"
              "\"rawEvent\":{\"a\":[1,\"b\",null]},\"metadata\":{\"k\":\"v\"},\"unknownKey\":5}",
              "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m\",\"delta\":\"x\",\"timestamp\":1700000000123,"
              "\"rawEvent\":{\"a\":[1,\"b\",null]},\"metadata\":{\"k\":\"v\"}}");
    /* metadata that is no object is dropped; optional nulls are dropped; implicit fields get defaults */
    roundtrip("{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m\",\"metadata\":[1],\"rawEvent\":null,\"subagentRunId\":null}",
              "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m\",\"delta\":\"\"}");
    /* optional strings keep presence, even when empty */
    roundtrip("{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m\",\"role\":\"\"}",
              "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m\",\"role\":\"\"}");
    roundtrip("{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m\"}", "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m\"}");
}

/* Members named twice: the last counts (JSON.parse, the validator), whatever
 * the type of an earlier one. */
static void test_duplicate_members(void **state)
{
    (void)state;
    roundtrip("{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m\",\"role\":0,\"role\":\"assistant\"}",
              "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m\",\"role\":\"assistant\"}");
    roundtrip("{\"type\":\"CUSTOM\",\"name\":{\"x\":1},\"value\":[1],\"name\":\"n\",\"value\":2}",
              "{\"type\":\"CUSTOM\",\"name\":\"n\",\"value\":2}");
    roundtrip("{\"type\":\"TEXT_MESSAGE_CONTENT\",\"delta\":1,\"messageId\":[],\"messageId\":\"m\",\"delta\":\"x\"}",
              "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m\",\"delta\":\"x\"}");
    roundtrip("{\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":[{\"id\":7,\"role\":\"user\",\"id\":\"u\",\"content\":\"hi\"}]}",
              "{\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":[{\"id\":\"u\",\"role\":\"user\",\"content\":\"hi\"}]}");
}

static void test_values(void **state)
{
    roundtrip("{\"type\":\"STATE_SNAPSHOT\",\"snapshot\":{\"i\":12345678901234,\"f\":2.5,\"n\":-0.000123,\"big\":1e300,"
              "\"t\":true,\"z\":null,\"s\":\"\\u00e9\\ud83d\\ude00\",\"l\":[[],{}]}}",
              "{\"type\":\"STATE_SNAPSHOT\",\"snapshot\":{\"i\":12345678901234,\"f\":2.5,\"n\":-0.000123,\"big\":1e300,"
              "\"t\":true,\"z\":null,\"s\":\"\\u00e9\\ud83d\\ude00\",\"l\":[[],{}]}}");
    roundtrip("{\"type\":\"CUSTOM\",\"name\":\"n\",\"value\":null}", "{\"type\":\"CUSTOM\",\"name\":\"n\",\"value\":null}");
    roundtrip("{\"type\":\"STATE_SNAPSHOT\",\"snapshot\":0.1}", "{\"type\":\"STATE_SNAPSHOT\",\"snapshot\":0.1}");
    roundtrip("{\"type\":\"RAW\",\"event\":\"s\",\"source\":\"x\"}", "{\"type\":\"RAW\",\"event\":\"s\",\"source\":\"x\"}");
}

static void test_patch_ops(void **state)
{
    roundtrip("{\"type\":\"STATE_DELTA\",\"delta\":[{\"op\":\"add\",\"path\":\"/a\",\"value\":1},{\"op\":\"remove\",\"path\":\"/b\"},"
              "{\"op\":\"move\",\"from\":\"/c\",\"path\":\"/d\"},{\"op\":\"test\",\"path\":\"\",\"value\":null}]}",
              "{\"type\":\"STATE_DELTA\",\"delta\":[{\"op\":\"add\",\"path\":\"/a\",\"value\":1},{\"op\":\"remove\",\"path\":\"/b\"},"
              "{\"op\":\"move\",\"from\":\"/c\",\"path\":\"/d\"},{\"op\":\"test\",\"path\":\"\",\"value\":null}]}");
    roundtrip("{\"type\":\"STATE_DELTA\"}", "{\"type\":\"STATE_DELTA\",\"delta\":[]}");
}

static void test_outcomes(void **state)
{
    roundtrip("{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\",\"outcome\":{\"type\":\"success\",\"pendingToolCallIds\":[\"c\"]},"
              "\"result\":{\"ok\":1},\"usage\":[{\"provider\":\"p\",\"inputTokens\":3}]}",
              "{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\",\"outcome\":{\"type\":\"success\",\"pendingToolCallIds\":[\"c\"]},"
              "\"result\":{\"ok\":1},\"usage\":[{\"provider\":\"p\",\"inputTokens\":3}]}");
    roundtrip("{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\",\"outcome\":{\"type\":\"interrupt\",\"interrupts\":[{\"id\":\"i\",\"reason\":\"x\",\"metadata\":[1]}]}}",
              "{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\",\"outcome\":{\"type\":\"interrupt\",\"interrupts\":[{\"id\":\"i\",\"reason\":\"x\",\"metadata\":[1]}]}}");
    /* no outcome: top-level lists are dropped, as @ag-ui/proto's encode does */
    roundtrip("{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\",\"pendingToolCallIds\":[\"c\"]}",
              "{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\"}");
    roundtrip("{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\",\"outcome\":{\"type\":\"cancelled\"}}",
              "{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\",\"outcome\":{\"type\":\"cancelled\"}}");
    roundtrip("{\"type\":\"SUBAGENT_FINISHED\",\"subagentRunId\":\"s\",\"outcome\":{\"type\":\"suspended\",\"interruptIds\":[\"i\"]}}",
              "{\"type\":\"SUBAGENT_FINISHED\",\"subagentRunId\":\"s\",\"outcome\":{\"type\":\"suspended\",\"interruptIds\":[\"i\"]}}");
    roundtrip("{\"type\":\"RUN_ERROR\",\"message\":\"m\",\"usage\":[]}", "{\"type\":\"RUN_ERROR\",\"message\":\"m\"}");
}

static void test_content(void **state)
{
    roundtrip("{\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m\",\"toolCallId\":\"c\",\"content\":\"x\"}",
              "{\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m\",\"toolCallId\":\"c\",\"content\":\"x\"}");
    roundtrip("{\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m\",\"toolCallId\":\"c\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
              "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"value\":\"u\"}},{\"type\":\"hologram\"}]}",
              "{\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m\",\"toolCallId\":\"c\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
              "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"value\":\"u\"}}]}");
    roundtrip("{\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":["
              "{\"id\":\"u\",\"role\":\"user\"},"
              "{\"id\":\"a\",\"role\":\"activity\",\"activityType\":\"plan\"},"
              "{\"id\":\"b\",\"role\":\"assistant\",\"content\":\"x\",\"toolCalls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
              "{\"id\":\"d\",\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{\"type\":\"file\",\"value\":\"f\",\"provider\":\"p\"}},"
              "{\"type\":\"audio\",\"source\":{\"type\":\"data\",\"value\":\"AA==\",\"mimeType\":\"audio/wav\"}}]},"
              "{\"id\":\"e\",\"role\":\"tool\",\"toolCallId\":\"c\",\"content\":\"r\"}]}",
              "{\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":["
              "{\"id\":\"u\",\"role\":\"user\",\"content\":[]},"
              "{\"id\":\"a\",\"role\":\"activity\",\"activityType\":\"plan\",\"content\":{}},"
              "{\"id\":\"b\",\"role\":\"assistant\",\"content\":\"x\",\"toolCalls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
              "{\"id\":\"d\",\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{\"type\":\"file\",\"value\":\"f\",\"provider\":\"p\"}},"
              "{\"type\":\"audio\",\"source\":{\"type\":\"data\",\"value\":\"AA==\",\"mimeType\":\"audio/wav\"}}]},"
              "{\"id\":\"e\",\"role\":\"tool\",\"toolCallId\":\"c\",\"content\":\"r\"}]}");
    /* the retired binary part rides as a marked document part */
    roundtrip("{\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m\",\"toolCallId\":\"c\",\"content\":[{\"type\":\"binary\",\"mimeType\":\"a/b\",\"data\":\"AA==\",\"filename\":\"f\"}]}",
              "{\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m\",\"toolCallId\":\"c\",\"content\":[{\"type\":\"document\","
              "\"source\":{\"type\":\"data\",\"value\":\"AA==\",\"mimeType\":\"a/b\"},\"metadata\":{\"legacyBinary\":true,\"filename\":\"f\"}}]}");
}

static void test_run_started_input(void **state)
{
    roundtrip("{\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\",\"input\":{\"threadId\":\"t\",\"runId\":\"r\",\"state\":{},"
              "\"messages\":[{\"id\":\"u\",\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"name\":\"f\",\"parameters\":{}}],"
              "\"forwardedProps\":{\"a\":1}}}",
              "{\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\",\"input\":{\"threadId\":\"t\",\"runId\":\"r\",\"state\":{},"
              "\"messages\":[{\"id\":\"u\",\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"name\":\"f\",\"description\":\"\",\"parameters\":{}}],"
              "\"context\":[],\"forwardedProps\":{\"a\":1},\"resume\":[]}}");
}

static void test_json_refusals(void **state)
{
    buf_t b = {0};
    char msg[PBJSON_MSG_MAX];
    const char *bad[] = {
        "not json", "[1]", "{\"type\":\"NOPE\"}", "{\"delta\":\"x\"}",
        "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":5}",
        "{\"type\":\"STATE_DELTA\",\"delta\":[{\"op\":\"add\\u0000\",\"path\":\"/\",\"value\":1}]}",
        "{\"type\":\"STATE_DELTA\",\"delta\":[{\"op\":\"frobnicate\",\"path\":\"/\"}]}",
        "{\"type\":\"STATE_DELTA\",\"delta\":{}}",
    };
    buf_append_lit(&b, "keep");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(pbjson_frame_json(&b, bad[i], strlen(bad[i]), msg), -EINVAL);
        assert_int_equal(b.len, 4);   /* untouched on error */
        assert_true(msg[0] != 0);
    }
    /* nesting past PBJSON_MAX_DEPTH */
    buf_t deep = {0};
    buf_append_lit(&deep, "{\"type\":\"STATE_SNAPSHOT\",\"snapshot\":");
    for (int i = 0; i < PBJSON_MAX_DEPTH + 2; i++)
        buf_putc(&deep, '[');
    for (int i = 0; i < PBJSON_MAX_DEPTH + 2; i++)
        buf_putc(&deep, ']');
    buf_putc(&deep, '}');
    assert_int_equal(pbjson_frame_json(&b, deep.data, deep.len, msg), -EINVAL);
    assert_non_null(strstr(msg, "nested"));
    buf_free(&deep);
    buf_free(&b);
}

/* JSON in -> frame -> JSON out, compared as text (jansson cannot hold a NUL key). */
static void roundtrip_text(const char *in, const char *want)
{
    buf_t f = {0}, j = {0};
    char msg[PBJSON_MSG_MAX];
    agui_type_t t;
    if (pbjson_frame_json(&f, in, strlen(in), msg))
        fail_msg("frame_json(%s): %s", in, msg);
    assert_null(memchr(f.data, 0xFF, f.len));   /* no placeholder left on the wire */
    if (pbjson_to_json(&j, (const uint8_t *)f.data + 4, f.len - 4, &t, msg))
        fail_msg("to_json(%s): %s", in, msg);
    if (j.len != strlen(want) || memcmp(j.data, want, j.len))
        fail_msg("%s\n  got  %.*s\n  want %s", in, (int)j.len, j.data, want);
    buf_free(&f);
    buf_free(&j);
}

/* U+0000 in strings and keys: protobuf-c ends strings at NUL, @ag-ui/proto
 * does not; both directions carry it whole, and a real 0xFF stays U+FFFD. */
static void test_nul_strings(void **state)
{
    const char *custom = "{\"type\":\"CUSTOM\",\"name\":\"k\\u0000\",\"value\":{\"\\u0000\":1,"
                         "\"a\\u0000b\":[\"\\u0000\",{\"\\u0000\\u0000\":\"x\\u0000y\\u00e9\"}]}}";
    roundtrip_text(custom, "{\"type\":\"CUSTOM\",\"name\":\"k\\u0000\",\"value\":{\"\\u0000\":1,"
                           "\"a\\u0000b\":[\"\\u0000\",{\"\\u0000\\u0000\":\"x\\u0000y\xC3\xA9\"}]}}");
    roundtrip_text("{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"a\\u0000b\",\"delta\":\"\\u0000\"}",
                   "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"a\\u0000b\",\"delta\":\"\\u0000\"}");
    roundtrip_text("{\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":[{\"id\":\"\\u0000\",\"role\":\"user\",\"content\":\"hi\\u0000\"}]}",
                   "{\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":[{\"id\":\"\\u0000\",\"role\":\"user\",\"content\":\"hi\\u0000\"}]}");
    /* a role holding a NUL is not the role before it (@ag-ui/proto compares whole strings) */
    buf_t f = {0}, j = {0};
    char msg[PBJSON_MSG_MAX];
    agui_type_t t;
    const char *tms = "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m\",\"role\":\"user\\u0000\"}";
    assert_int_equal(pbjson_frame_json(&f, tms, strlen(tms), msg), 0);
    assert_non_null(memmem(f.data, f.len, "user\0", 5));
    assert_int_equal(pbjson_to_json(&j, (const uint8_t *)f.data + 4, f.len - 4, &t, msg), 0);
    assert_non_null(memmem(j.data, j.len, "\"role\":\"user\\u0000\"", 18));

    /* agate's own events: ids from a RunAgentInput may hold U+0000 */
    agui_event_t rs = {.type = AGUI_RUN_STARTED, .thread_id = {"t\0x", 3}, .run_id = {"\0", 1}};
    buf_reset(&f);
    buf_reset(&j);
    assert_int_equal(pbjson_frame_event(&f, &rs), 0);
    assert_non_null(memmem(f.data, f.len, "t\0x", 3));
    assert_int_equal(pbjson_to_json(&j, (const uint8_t *)f.data + 4, f.len - 4, &t, msg), 0);
    const char *want = "{\"type\":\"RUN_STARTED\",\"threadId\":\"t\\u0000x\",\"runId\":\"\\u0000\"}";
    assert_int_equal(j.len, strlen(want));
    assert_memory_equal(j.data, want, j.len);

    /* the wire: a name "a" NUL "b" 0xFF 0xE2 0x82 NUL, packed by protobuf-c as
     * "a\x01b\xFF\xE2\x82\x01" and the 0x01s made NULs */
    AgUi__BaseEvent be = AG_UI__BASE_EVENT__INIT;
    be.type = AG_UI__EVENT_TYPE__CUSTOM;
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
    AgUi__CustomEvent ce = AG_UI__CUSTOM_EVENT__INIT;
    ce.base_event = &be;
    ce.name = (char *)"a\x01" "b\xFF\xE2\x82\x01";
    ce.value = &v;
    AgUi__Event ev = AG_UI__EVENT__INIT;
    ev.event_case = AG_UI__EVENT__EVENT_CUSTOM;
    ev.custom = &ce;
    buf_t pb = {0};
    buf_reserve(&pb, ag_ui__event__get_packed_size(&ev));
    pb.len = ag_ui__event__pack(&ev, (uint8_t *)pb.data);
    for (size_t i = 0; i < pb.len; i++)
        if (pb.data[i] == 1 && i > 0 && (pb.data[i - 1] == 'a' || pb.data[i - 1] == '\x82'))
            pb.data[i] = 0;
    char before[64];
    memcpy(before, pb.data, pb.len);
    buf_reset(&j);
    assert_int_equal(pbjson_to_json(&j, (const uint8_t *)pb.data, pb.len, &t, msg), 0);
    assert_memory_equal(pb.data, before, pb.len);   /* the caller's bytes are not touched */
    want = "{\"type\":\"CUSTOM\",\"name\":\"a\\u0000b\xEF\xBF\xBD\xEF\xBF\xBD\\u0000\",\"value\":null}";
    if (j.len != strlen(want) || memcmp(j.data, want, j.len))
        fail_msg("got %.*s", (int)j.len, j.data);
    buf_free(&pb);
    buf_free(&f);
    buf_free(&j);
}

static int to_json(const uint8_t *p, size_t n, buf_t *out, char *msg)
{
    agui_type_t t;
    buf_reset(out);
    return pbjson_to_json(out, p, n, &t, msg);
}

static void test_wire_refusals(void **state)
{
    buf_t j = {0};
    char msg[PBJSON_MSG_MAX];
    /* arm 1 (TEXT_MESSAGE_START) whose base event declares RUN_STARTED (11) */
    static const uint8_t mismatch[] = {0x0a, 0x04, 0x0a, 0x02, 0x08, 0x0b};
    assert_int_equal(to_json(mismatch, sizeof mismatch, &j, msg), -EPROTO);
    assert_non_null(strstr(msg, "declares"));
    /* an arm without its base event */
    static const uint8_t nobase[] = {0x0a, 0x03, 0x12, 0x01, 'm'};
    assert_int_equal(to_json(nobase, sizeof nobase, &j, msg), -EPROTO);
    /* two arms */
    static const uint8_t two[] = {0x0a, 0x02, 0x0a, 0x00, 0x12, 0x02, 0x0a, 0x00};
    assert_int_equal(to_json(two, sizeof two, &j, msg), -EPROTO);
    /* empty envelope, truncated bytes, a group */
    assert_int_equal(to_json((const uint8_t *)"", 0, &j, msg), -EPROTO);
    static const uint8_t trunc[] = {0x0a, 0x09, 0x0a};
    assert_int_equal(to_json(trunc, sizeof trunc, &j, msg), -EPROTO);
    static const uint8_t group[] = {0x0b, 0x0c};
    assert_int_equal(to_json(group, sizeof group, &j, msg), -EPROTO);
    /* only a field from a later protocol */
    static const uint8_t future[] = {0xa2, 0x06, 0x02, 0x08, 0x01};
    assert_int_equal(to_json(future, sizeof future, &j, msg), -ENOENT);
    assert_int_equal(pbjson_sniff_type(future, sizeof future), AGUI_TYPE_COUNT);
    /* MESSAGES_SNAPSHOT (arm 9) { base {type 8}, messages { role "user", activity_content {} } }:
     * a user message carrying activity content */
    static const uint8_t cbuf[] = {0x4a, 0x0e, 0x0a, 0x02, 0x08, 0x08, 0x12, 0x08,
                                   0x12, 0x04, 'u', 's', 'e', 'r', 0x6a, 0x00};
    const size_t k = sizeof cbuf;
    assert_int_equal(to_json(cbuf, k, &j, msg), -EPROTO);
    assert_non_null(strstr(msg, "content form"));
    assert_int_equal(j.len, 0);
    buf_free(&j);
}

/* Builds STATE_SNAPSHOT whose snapshot is `depth` nested lists, with protobuf-c. */
static void deep_snapshot(buf_t *out, int depth)
{
    Google__Protobuf__Value *vals = calloc((size_t)depth + 1, sizeof *vals);
    Google__Protobuf__ListValue *lists = calloc((size_t)depth, sizeof *lists);
    for (int i = 0; i <= depth; i++)
        google__protobuf__value__init(&vals[i]);
    for (int i = 0; i < depth; i++) {
        google__protobuf__list_value__init(&lists[i]);
        lists[i].n_values = 1;
        vals[i].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        vals[i].list_value = &lists[i];
    }
    Google__Protobuf__Value **ptrs = calloc((size_t)depth, sizeof *ptrs);
    for (int i = 0; i < depth; i++) {
        ptrs[i] = &vals[i + 1];
        lists[i].values = &ptrs[i];
    }
    vals[depth].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    vals[depth].number_value = 1;
    AgUi__BaseEvent be = AG_UI__BASE_EVENT__INIT;
    be.type = AG_UI__EVENT_TYPE__STATE_SNAPSHOT;
    AgUi__StateSnapshotEvent ss = AG_UI__STATE_SNAPSHOT_EVENT__INIT;
    ss.base_event = &be;
    ss.snapshot = &vals[0];
    AgUi__Event ev = AG_UI__EVENT__INIT;
    ev.event_case = AG_UI__EVENT__EVENT_STATE_SNAPSHOT;
    ev.state_snapshot = &ss;
    size_t n = ag_ui__event__get_packed_size(&ev);
    buf_reset(out);
    buf_reserve(out, n);
    out->len = ag_ui__event__pack(&ev, (uint8_t *)out->data);
    free(ptrs);
    free(lists);
    free(vals);
}

/* A google.protobuf.Value nested as pattern says, outermost first: 'o' an
 * object {"k": ...}, 'a' an array [...], the end the number 1. Allocations
 * go on a list freed by free_all. */
typedef struct alloc_list { void *p[4096]; size_t n; } alloc_list_t;
static void *keep(alloc_list_t *l, void *p)
{
    assert_non_null(p);
    assert_true(l->n < sizeof l->p / sizeof l->p[0]);
    return l->p[l->n++] = p;
}
static void free_all(alloc_list_t *l)
{
    while (l->n)
        free(l->p[--l->n]);
}
static Google__Protobuf__Value *nest(alloc_list_t *l, const char *pat)
{
    Google__Protobuf__Value *v = keep(l, calloc(1, sizeof *v));
    google__protobuf__value__init(v);
    if (!*pat) {
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        v->number_value = 1;
    } else if (*pat == 'o') {
        Google__Protobuf__Struct *st = keep(l, calloc(1, sizeof *st));
        Google__Protobuf__Struct__FieldsEntry *e = keep(l, calloc(1, sizeof *e));
        Google__Protobuf__Struct__FieldsEntry **es = keep(l, calloc(1, sizeof *es));
        google__protobuf__struct__init(st);
        google__protobuf__struct__fields_entry__init(e);
        e->key = (char *)"k";
        e->value = nest(l, pat + 1);
        es[0] = e;
        st->n_fields = 1;
        st->fields = es;
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        v->struct_value = st;
    } else {
        Google__Protobuf__ListValue *lv = keep(l, calloc(1, sizeof *lv));
        Google__Protobuf__Value **vs = keep(l, calloc(1, sizeof *vs));
        google__protobuf__list_value__init(lv);
        vs[0] = nest(l, pat + 1);
        lv->n_values = 1;
        lv->values = vs;
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        v->list_value = lv;
    }
    return v;
}

/* The same value as JSON text. */
static void nest_json(buf_t *b, const char *pat)
{
    for (const char *c = pat; *c; c++)
        buf_append(b, *c == 'o' ? "{\"k\":" : "[", *c == 'o' ? 5 : 1);
    buf_putc(b, '1');
    for (size_t i = strlen(pat); i-- > 0;)
        buf_putc(b, pat[i] == 'o' ? '}' : ']');
}

/* The JSON depth bound is the same from a protobuf upstream as from an SSE one
 * (validation's 64, the event object included), whatever protobuf message
 * levels the value takes: an object is three (Value, Struct, entry), an array
 * two. The bound used to count message levels, so about 21 nested objects or
 * 32 arrays were refused. */
static void test_depth_is_json_depth(void **state)
{
    char pat[80];
    const char shapes[][3] = {"o", "a", "oa", "ao"};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (int where = 0; where < 2; where++)   /* STATE_SNAPSHOT.snapshot, CUSTOM's rawEvent */
            for (int k = 1; k <= PBJSON_MAX_DEPTH; k++) {
                size_t pl = strlen(shapes[sh]);
                for (int i = 0; i < k; i++)
                    pat[i] = shapes[sh][i % pl];
                pat[k] = 0;
                int depth = 1 + k;   /* the event object, then the value's containers */
                alloc_list_t l = {0};
                AgUi__BaseEvent be = AG_UI__BASE_EVENT__INIT;
                AgUi__StateSnapshotEvent ss = AG_UI__STATE_SNAPSHOT_EVENT__INIT;
                AgUi__CustomEvent ce = AG_UI__CUSTOM_EVENT__INIT;
                Google__Protobuf__Value one = GOOGLE__PROTOBUF__VALUE__INIT;
                AgUi__Event ev = AG_UI__EVENT__INIT;
                buf_t want = {0};
                if (where == 0) {
                    be.type = AG_UI__EVENT_TYPE__STATE_SNAPSHOT;
                    ss.base_event = &be;
                    ss.snapshot = nest(&l, pat);
                    ev.event_case = AG_UI__EVENT__EVENT_STATE_SNAPSHOT;
                    ev.state_snapshot = &ss;
                    buf_append_lit(&want, "{\"type\":\"STATE_SNAPSHOT\",\"snapshot\":");
                    nest_json(&want, pat);
                } else {
                    be.type = AG_UI__EVENT_TYPE__CUSTOM;
                    be.raw_event = nest(&l, pat);
                    one.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
                    one.number_value = 1;
                    ce.base_event = &be;
                    ce.name = (char *)"n";
                    ce.value = &one;
                    ev.event_case = AG_UI__EVENT__EVENT_CUSTOM;
                    ev.custom = &ce;
                    buf_append_lit(&want, "{\"type\":\"CUSTOM\",\"name\":\"n\",\"value\":1,\"rawEvent\":");
                    nest_json(&want, pat);
                }
                buf_putc(&want, '}');
                buf_t pb = {0}, j = {0}, f = {0};
                buf_reserve(&pb, ag_ui__event__get_packed_size(&ev));
                pb.len = ag_ui__event__pack(&ev, (uint8_t *)pb.data);
                free_all(&l);
                char msg[PBJSON_MSG_MAX];
                agui_type_t t;
                int rc = pbjson_to_json(&j, (const uint8_t *)pb.data, pb.len, &t, msg);
                int rce = pbjson_frame_json(&f, want.data, want.len, msg);
                if (depth <= PBJSON_MAX_DEPTH) {
                    if (rc || j.len != want.len || memcmp(j.data, want.data, j.len))
                        fail_msg("%s, depth %d: rc %d %s: %.*s", where ? "rawEvent" : "snapshot", depth, rc, msg,
                                 (int)j.len, j.data);
                    /* and back: the SSE upstream's event for a protobuf client */
                    if (rce)
                        fail_msg("frame_json, depth %d: %s", depth, msg);
                    assert_int_equal(f.len - 4, pb.len);
                    assert_memory_equal(f.data + 4, pb.data, pb.len);
                } else {
                    assert_int_equal(rc, -EPROTO);
                    assert_int_equal(rce, -EINVAL);
                    assert_non_null(strstr(msg, "nested deeper than 64"));
                }
                buf_free(&pb);
                buf_free(&j);
                buf_free(&f);
                buf_free(&want);
            }
}

static void test_depth_and_text(void **state)
{
    buf_t pb = {0}, j = {0};
    char msg[PBJSON_MSG_MAX];
    deep_snapshot(&pb, 20);
    assert_int_equal(to_json((uint8_t *)pb.data, pb.len, &j, msg), 0);
    deep_snapshot(&pb, 5000);   /* would overflow a recursive decoder's stack without the bound */
    assert_int_equal(to_json((uint8_t *)pb.data, pb.len, &j, msg), -EPROTO);
    assert_non_null(strstr(msg, "nested"));

    /* invalid UTF-8 becomes U+FFFD per maximal subpart; NaN has no JSON form */
    AgUi__BaseEvent be = AG_UI__BASE_EVENT__INIT;
    be.type = AG_UI__EVENT_TYPE__CUSTOM;
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    v.number_value = __builtin_nan("");
    AgUi__CustomEvent ce = AG_UI__CUSTOM_EVENT__INIT;
    ce.base_event = &be;
    ce.name = (char *)"a\xC3" "b\xE2\x82" "c\xF0\x9F\x98\x80";
    ce.value = &v;
    AgUi__Event ev = AG_UI__EVENT__INIT;
    ev.event_case = AG_UI__EVENT__EVENT_CUSTOM;
    ev.custom = &ce;
    buf_reset(&pb);
    buf_reserve(&pb, ag_ui__event__get_packed_size(&ev));
    pb.len = ag_ui__event__pack(&ev, (uint8_t *)pb.data);
    assert_int_equal(to_json((uint8_t *)pb.data, pb.len, &j, msg), 0);
    const char *want = "{\"type\":\"CUSTOM\",\"name\":\"a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xF0\x9F\x98\x80\",\"value\":null}";
    assert_int_equal(j.len, strlen(want));
    assert_memory_equal(j.data, want, j.len);
    buf_free(&pb);
    buf_free(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agate_events),
        cmocka_unit_test(test_envelope_fields),
        cmocka_unit_test(test_duplicate_members),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_patch_ops),
        cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_content),
        cmocka_unit_test(test_run_started_input),
        cmocka_unit_test(test_json_refusals),
        cmocka_unit_test(test_nul_strings),
        cmocka_unit_test(test_wire_refusals),
        cmocka_unit_test(test_depth_is_json_depth),
        cmocka_unit_test(test_depth_and_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
