/* Unit tests for core/trace.c: traceparent parsing against W3C Trace Context
 * level 1 (valid, malformed, future versions), trace_begin adopting or starting
 * a trace, child spans, formatting round trips, and tracestate validity. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/trace.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"

static const uint8_t tid_bytes[16] = {
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
};
static const uint8_t pid_bytes[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };

static int parse_s(const char *s, uint8_t tid[16], uint8_t pid[8], uint8_t *flags)
{
    return trace_parse(s, strlen(s), tid, pid, flags);
}

static bool zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i])
            return false;
    }
    return true;
}

static void test_parse_valid(void **state)
{
    uint8_t tid[16], pid[8], flags = 0xaa;

    assert_int_equal(parse_s("00-" TID "-" PID "-01", tid, pid, &flags), 0);
    assert_memory_equal(tid, tid_bytes, 16);
    assert_memory_equal(pid, pid_bytes, 8);
    assert_int_equal(flags, 0x01);

    assert_int_equal(parse_s("00-" TID "-" PID "-00", tid, pid, &flags), 0);
    assert_int_equal(flags, 0x00);
    /* version 00 keeps every flag bit (level 2's "random" is bit 1) */
    assert_int_equal(parse_s("00-" TID "-" PID "-03", tid, pid, &flags), 0);
    assert_int_equal(flags, 0x03);
    assert_int_equal(parse_s("00-" TID "-" PID "-ff", tid, pid, &flags), 0);
    assert_int_equal(flags, 0xff);

    /* a slice: only n bytes are looked at */
    const char *longer = "00-" TID "-" PID "-01garbage";
    assert_int_equal(trace_parse(longer, TRACEPARENT_LEN, tid, pid, &flags), 0);
}

static void test_parse_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "00",
        "00-" TID "-" PID "-0",                        /* 54 chars */
        "00-" TID "-" PID "-011",                      /* 56 chars, version 00 */
        "00-" TID "-" PID "-01-",                      /* version 00 has nothing after flags */
        "00-" TID "-" PID "-01 ",
        " 00-" TID "-" PID "-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01",   /* uppercase trace-id */
        "00-" TID "-00F067AA0BA902B7-01",              /* uppercase parent-id */
        "00-" TID "-" PID "-0A",                       /* uppercase flags */
        "0A-" TID "-" PID "-01",                       /* uppercase version */
        "00-4bf92f3577b34da6a3ce929d0e0e473g-" PID "-01",   /* non-hex */
        "00-" TID "-00f067aa0ba902bz-01",
        "00-" TID "-" PID "-0x",
        "0x-" TID "-" PID "-01",
        "00_" TID "-" PID "-01",                       /* missing dashes */
        "00-" TID "_" PID "-01",
        "00-" TID "-" PID "_01",
        "00" TID "-" PID "-01-",
        "00-00000000000000000000000000000000-" PID "-01",   /* all-zero trace-id */
        "00-" TID "-0000000000000000-01",              /* all-zero parent-id */
        "ff-" TID "-" PID "-01",                       /* forbidden version */
        "ff-" TID "-" PID "-01-future",
        "01-" TID "-" PID "-01x",                      /* higher version: 56th char must be '-' */
        "cc-" TID "-" PID "-01what-the-future-holds",
        "cc-" TID "-" PID "-0",
    };
    uint8_t tid[16], pid[8], flags = 0x5a;

    memset(tid, 0xee, sizeof tid);
    memset(pid, 0xee, sizeof pid);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse_s(bad[i], tid, pid, &flags) != -EINVAL) {
            print_error("traceparent \"%s\" was accepted\n", bad[i]);
            fail();
        }
    }
    /* a failed parse writes nothing */
    for (size_t i = 0; i < sizeof tid; i++)
        assert_int_equal(tid[i], 0xee);
    assert_int_equal(flags, 0x5a);
    assert_int_equal(trace_parse(NULL, 0, tid, pid, &flags), -EINVAL);
}

static void test_parse_future_versions(void **state)
{
    uint8_t tid[16], pid[8], flags = 0;

    assert_int_equal(parse_s("01-" TID "-" PID "-01", tid, pid, &flags), 0);
    assert_memory_equal(tid, tid_bytes, 16);
    assert_memory_equal(pid, pid_bytes, 8);
    assert_int_equal(flags, 0x01);
    assert_int_equal(parse_s("cc-" TID "-" PID "-01-what-the-future-holds", tid, pid, &flags), 0);
    assert_memory_equal(tid, tid_bytes, 16);
    assert_int_equal(flags, 0x01);
    assert_int_equal(parse_s("fe-" TID "-" PID "-00-", tid, pid, &flags), 0);
    assert_int_equal(flags, 0x00);
    /* in a version we do not know only the sampled bit is defined */
    assert_int_equal(parse_s("02-" TID "-" PID "-ff", tid, pid, &flags), 0);
    assert_int_equal(flags, 0x01);
    assert_int_equal(parse_s("02-" TID "-" PID "-02", tid, pid, &flags), 0);
    assert_int_equal(flags, 0x00);
}

static void test_begin_adopts(void **state)
{
    rand_state_t rng;
    trace_ctx_t t, u;
    const char *tp = "00-" TID "-" PID "-00";

    assert_int_equal(rand_seed(&rng), 0);
    trace_begin(&t, &rng, tp, strlen(tp));
    assert_true(t.has_parent);
    assert_memory_equal(t.trace_id, tid_bytes, 16);
    assert_memory_equal(t.parent_id, pid_bytes, 8);
    assert_int_equal(t.flags, 0x00);    /* the caller's sampling decision stands */
    assert_false(zero(t.span_id, 8));
    assert_memory_not_equal(t.span_id, pid_bytes, 8);

    /* fresh span id each time, same trace */
    trace_begin(&u, &rng, tp, strlen(tp));
    assert_memory_equal(u.trace_id, tid_bytes, 16);
    assert_memory_not_equal(u.span_id, t.span_id, 8);
}

static void test_begin_generates(void **state)
{
    static const char *const inputs[] = {
        NULL, "", "garbage", "00-00000000000000000000000000000000-" PID "-01", "ff-" TID "-" PID "-01",
    };
    rand_state_t rng;
    trace_ctx_t t, prev;

    assert_int_equal(rand_seed(&rng), 0);
    memset(&prev, 0, sizeof prev);
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        const char *v = inputs[i];

        memset(&t, 0xee, sizeof t);
        trace_begin(&t, &rng, v, v ? strlen(v) : 0);
        assert_false(t.has_parent);
        assert_true(zero(t.parent_id, 8));
        assert_int_equal(t.flags, 0x01);
        assert_false(zero(t.trace_id, 16));
        assert_false(zero(t.span_id, 8));
        assert_memory_not_equal(t.trace_id, tid_bytes, 16);
        assert_memory_not_equal(t.trace_id, prev.trace_id, 16);
        assert_memory_not_equal(t.span_id, prev.span_id, 8);
        prev = t;
    }
}

static void test_format_round_trip(void **state)
{
    rand_state_t rng;
    trace_ctx_t t;
    char out[TRACEPARENT_LEN + 1];
    uint8_t tid[16], pid[8], flags;
    const char *tp = "00-" TID "-" PID "-03";

    assert_int_equal(rand_seed(&rng), 0);
    for (int i = 0; i < 100; i++) {
        trace_begin(&t, &rng, i % 2 ? tp : NULL, i % 2 ? strlen(tp) : 0);
        memset(out, '#', sizeof out);
        trace_format(&t, out);
        assert_int_equal(out[TRACEPARENT_LEN], '#');    /* no terminator written */
        assert_memory_equal(out, "00-", 3);
        assert_int_equal(trace_parse(out, TRACEPARENT_LEN, tid, pid, &flags), 0);
        assert_memory_equal(tid, t.trace_id, 16);
        assert_memory_equal(pid, t.span_id, 8);    /* our span is the next hop's parent */
        assert_int_equal(flags, t.flags);
    }

    /* exact text: the adopted trace, our span, the caller's flags */
    memcpy(t.trace_id, tid_bytes, 16);
    memcpy(t.span_id, pid_bytes, 8);
    t.flags = 0x01;
    out[TRACEPARENT_LEN] = '\0';
    trace_format(&t, out);
    assert_string_equal(out, "00-" TID "-" PID "-01");

    /* a future version comes in, version 00 goes out */
    trace_begin(&t, &rng, "cc-" TID "-" PID "-01-what-the-future-holds",
                strlen("cc-" TID "-" PID "-01-what-the-future-holds"));
    trace_format(&t, out);
    assert_memory_equal(out, "00-" TID "-", 36);
    assert_memory_equal(out + 52, "-01", 3);
}

static void test_child(void **state)
{
    rand_state_t rng;
    trace_ctx_t t;
    uint8_t child[8], child2[8], tid[16], pid[8], flags;
    char out[TRACEPARENT_LEN], out2[TRACEPARENT_LEN];
    const char *tp = "00-" TID "-" PID "-00";

    assert_int_equal(rand_seed(&rng), 0);
    trace_begin(&t, &rng, tp, strlen(tp));
    trace_child(&t, &rng, child, out);
    assert_false(zero(child, 8));
    assert_memory_not_equal(child, t.span_id, 8);
    assert_int_equal(trace_parse(out, sizeof out, tid, pid, &flags), 0);
    assert_memory_equal(tid, tid_bytes, 16);
    assert_memory_equal(pid, child, 8);
    assert_int_equal(flags, 0x00);

    trace_child(&t, &rng, child2, out2);
    assert_memory_not_equal(child2, child, 8);
    assert_memory_not_equal(out2, out, sizeof out);
    assert_memory_equal(out2, out, 36);    /* same version and trace id */
}

static bool state_ok(const char *s)
{
    return trace_state_valid(s, strlen(s));
}

static void test_tracestate(void **state)
{
    char big[TRACESTATE_MAX + 2];
    size_t used = 0;

    assert_true(state_ok("rojo=00f067aa0ba902b7"));
    assert_true(state_ok("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    assert_true(state_ok("rojo=1 , congo=2\t,\tfoo@bar=x y"));
    assert_true(state_ok("a=1,,b=2,"));            /* empty members are allowed */
    assert_true(state_ok("tenant@system=v"));
    assert_true(state_ok("0k_-*/=v"));

    assert_false(trace_state_valid(NULL, 0));
    assert_false(state_ok(""));
    assert_false(state_ok(" , "));
    assert_false(state_ok("novalue"));
    assert_false(state_ok("k="));
    assert_false(state_ok("=v"));
    assert_false(state_ok("Upper=v"));
    assert_false(state_ok("k=a=b"));
    assert_false(state_ok("k=v\x01"));
    assert_false(state_ok("k=v\xc3\xa9"));
    assert_false(state_ok("a@b@c=v"));
    assert_false(state_ok("k@=v"));
    assert_false(state_ok("k=v\n"));

    /* 32 members fit, 33 do not */
    char list[512];
    used = 0;
    for (int i = 0; i < 32; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%sk%d=v", i ? "," : "", i);
    assert_true(trace_state_valid(list, used));
    used += (size_t)snprintf(list + used, sizeof list - used, ",k32=v");
    assert_false(trace_state_valid(list, used));

    /* 512 bytes fit, 513 do not */
    memset(big, 'x', sizeof big);
    memcpy(big, "k=", 2);
    assert_false(trace_state_valid(big, TRACESTATE_MAX));    /* value longer than 256 */
    memcpy(big + 250, ",b=", 3);
    memcpy(big + 500, ",c=", 3);
    assert_true(trace_state_valid(big, TRACESTATE_MAX));
    assert_false(trace_state_valid(big, TRACESTATE_MAX + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_future_versions),
        cmocka_unit_test(test_begin_adopts),
        cmocka_unit_test(test_begin_generates),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_child),
        cmocka_unit_test(test_tracestate),
    };
    return cmocka_run_group_tests_name("trace", tests, NULL, NULL);
}
