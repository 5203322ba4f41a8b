/* Unit tests for the response cache's pieces: the canonical form and key of a
 * RunAgentInput (proto/canon.c, written from a jtape; the expected texts are
 * what the jansson walk it replaced wrote, so the key keeps its meaning), the id finder and run records with their
 * replay-time rewriting (proto/evids.c, proto/runrec.c), and the shared store
 * (core/cache.c): hit/miss, references outliving removal, S3-FIFO eviction
 * under the byte cap, TTL expiry and purge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "core/cache.h"
#include "proto/canon.h"
#include "proto/evids.h"
#include "proto/jtape.h"
#include "proto/runrec.h"

static const char *const default_omit[] = {"threadId", "runId", "parentRunId"};

/* Canonical text of a JSON document read as request_key reads it, as a
 * NUL-terminated string in *b; NULL when the tape refuses the document. */
static const char *canon_of_rc(buf_t *b, const char *json, const char *const *omit, size_t n_omit, int *rc)
{
    jtape_t *t = jtape_thread();
    assert_non_null(t);
    buf_reset(b);
    *rc = jtape_parse(t, json, strlen(json), 256, JTAPE_REJECT_DUPLICATES);
    if (*rc)
        return NULL;
    canon_omit_t o = {omit, n_omit};
    *rc = canon_write_tape(b, t, 0, &o);
    assert_int_equal(buf_putc(b, '\0'), 0);
    return b->data;
}

static const char *canon_of(buf_t *b, const char *json, const char *const *omit, size_t n_omit)
{
    int rc;
    const char *s = canon_of_rc(b, json, omit, n_omit, &rc);
    assert_int_equal(rc, 0);
    return s;
}

static void test_canon_form(void **state)
{
    (void)state;
    buf_t b = {0};
    /* keys sorted bytewise at every level, no whitespace, run-naming fields gone */
    assert_string_equal(canon_of(&b, "{ \"runId\": \"r1\", \"threadId\" : \"t\", \"b\": [ 1, 2.5, true, null ],\n"
                                     "  \"a\": {\"z\": \"x\", \"Z\": \"y\", \"parentRunId\": \"kept: not top level\"} }",
                                 default_omit, 3),
                        "{\"a\":{\"Z\":\"y\",\"parentRunId\":\"kept: not top level\",\"z\":\"x\"},\"b\":[1,2.5,true,null]}");
    /* escapes normalised: \u0041 is A, "\/" is "/" */
    assert_string_equal(canon_of(&b, "{\"s\":\"\\u0041\\/\\n\"}", NULL, 0), "{\"s\":\"A/\\n\"}");
    /* nested and array paths */
    static const char *const paths[] = {"forwardedProps.session", "messages[].id"};
    assert_string_equal(canon_of(&b, "{\"forwardedProps\":{\"session\":1,\"x\":2},\"messages\":[{\"id\":\"a\",\"c\":1},"
                                     "{\"id\":\"b\",\"c\":1},3]}", paths, 2),
                        "{\"forwardedProps\":{\"x\":2},\"messages\":[{\"c\":1},{\"c\":1},3]}");
    /* a prefix of a key is not the key */
    static const char *const p2[] = {"run"};
    assert_string_equal(canon_of(&b, "{\"runId\":1,\"run\":2}", p2, 1), "{\"runId\":1}");
    buf_free(&b);
}

/* Numbers as jansson held them: integers within int64 as written (-0 is 0),
 * reals through strtod (whole ones as integers below 2^53, else %.17g), and
 * every integer a real once one is past int64, even in an omitted field. */
static void test_canon_numbers(void **state)
{
    (void)state;
    buf_t b = {0};
    int rc;
    assert_string_equal(canon_of(&b, "[0,-0,1,-1,1.0,-1.0,-0.0,0.0,2e3,2E3,2e+3,1.5,0.1,-1.5e-3,1e22,1e21,1e-400,"
                                     "-1e-400,5e-324,1e308,1.7976931348623157e308]", NULL, 0),
                        "[0,0,1,-1,1,-1,0,0,2000,2000,2000,1.5,0.10000000000000001,-0.0015,1e+22,1e+21,0,0,"
                        "4.9406564584124654e-324,1e+308,1.7976931348623157e+308]");
    assert_string_equal(canon_of(&b, "[9007199254740991,9007199254740992,9007199254740993,-9007199254740993,"
                                     "9223372036854775807,-9223372036854775808,123456789012345678]", NULL, 0),
                        "[9007199254740991,9007199254740992,9007199254740993,-9007199254740993,"
                        "9223372036854775807,-9223372036854775808,123456789012345678]");
    assert_string_equal(canon_of(&b, "[9007199254740992.5,4503599627370496.5,1e16,123456789012345680000]", NULL, 0),
                        "[9007199254740992,4503599627370496,10000000000000000,1.2345678901234568e+20]");
    assert_string_equal(canon_of(&b, "[9223372036854775808]", NULL, 0), "[9.2233720368547758e+18]");
    assert_string_equal(canon_of(&b, "[-9223372036854775809]", NULL, 0), "[-9.2233720368547758e+18]");
    assert_string_equal(canon_of(&b, "[9007199254740993,9223372036854775808]", NULL, 0),
                        "[9007199254740992,9.2233720368547758e+18]");
    assert_string_equal(canon_of(&b, "{\"threadId\":99999999999999999999,\"n\":9007199254740993,\"m\":-0,"
                                     "\"k\":12345678901234567}", default_omit, 3),
                        "{\"k\":12345678901234568,\"m\":0,\"n\":9007199254740992}");
    assert_string_equal(canon_of(&b, "-0", NULL, 0), "0");   /* a number at the very end of its input */
    assert_string_equal(canon_of(&b, "1e2", NULL, 0), "100");
    /* over 127 characters: copied to the heap for strtod */
    char lng[160] = "[0.";
    memset(lng + 3, '0', 138);
    memcpy(lng + 141, "1e100]", 7);
    assert_string_equal(canon_of(&b, lng, NULL, 0), "[9.9999999999999993e-40]");
    /* a real past double range is refused, as jansson refused it */
    assert_null(canon_of_rc(&b, "[1e400]", NULL, 0, &rc));
    assert_int_equal(rc, -EINVAL);
    buf_free(&b);
}

/* Keys sort on their decoded bytes, and omit paths match decoded keys. */
static void test_canon_keys(void **state)
{
    (void)state;
    buf_t b = {0};
    /* raw, "\u0062" ('\\' is 0x5c) sorts before "a"; decoded it is "b" */
    assert_string_equal(canon_of(&b, "{\"\\u0062\":1,\"a\":2,\"c\":3}", NULL, 0), "{\"a\":2,\"b\":1,\"c\":3}");
    assert_string_equal(canon_of(&b, "{\"\\u0074hreadId\":\"x\",\"q\":1,\"a\\\"b\":\"\\u00e9\\ud83d\\ude00\\u0000\\u001f\\/\"}",
                                 default_omit, 3),
                        "{\"a\\\"b\":\"\xc3\xa9\xf0\x9f\x98\x80\\u0000\\u001f/\",\"q\":1}");
    /* bytewise, shorter first on a common prefix, UTF-8 after ASCII */
    assert_string_equal(canon_of(&b, "{\"\xc3\xa9\":1,\"z\":2,\"Z\":3,\"\":4,\"aa\":5,\"a\":6}", NULL, 0),
                        "{\"\":4,\"Z\":3,\"a\":6,\"aa\":5,\"z\":2,\"\xc3\xa9\":1}");
    /* more keys than the insertion sort takes */
    assert_string_equal(canon_of(&b, "{\"q\":0,\"p\":0,\"o\":0,\"n\":0,\"m\":0,\"l\":0,\"k\":0,\"j\":0,\"i\":0,"
                                     "\"h\":0,\"g\":0,\"f\":0,\"e\":0,\"d\":0,\"c\":0,\"b\":0,\"\\u0061\":0}", NULL, 0),
                        "{\"a\":0,\"b\":0,\"c\":0,\"d\":0,\"e\":0,\"f\":0,\"g\":0,\"h\":0,\"i\":0,\"j\":0,"
                        "\"k\":0,\"l\":0,\"m\":0,\"n\":0,\"o\":0,\"p\":0,\"q\":0}");
    /* U+0000 in keys (JSON.parse reads them): sorted on their bytes, NUL
     * included, written back as \u0000; an omit path names no such key */
    assert_string_equal(canon_of(&b, "{\"\\u0000\":1,\"\":2,\"a\\u0000\":3,\"a\":4,\"runId\":\"x\"}",
                                 default_omit, 3),
                        "{\"\":2,\"\\u0000\":1,\"a\":4,\"a\\u0000\":3}");
    assert_string_equal(canon_of(&b, "{\"threadId\\u0000x\":1,\"threadId\":2,\"runId\\u0000\":3}", default_omit, 3),
                        "{\"runId\\u0000\":3,\"threadId\\u0000x\":1}");
    const char *const sess[] = {"forwardedProps.session"};
    assert_string_equal(canon_of(&b, "{\"forwardedProps\":{\"session\\u0000\":1,\"session\":2}}", sess, 1),
                        "{\"forwardedProps\":{\"session\\u0000\":1}}");
    /* a tape read without duplicate rejection: the last value, once */
    jtape_t *t = jtape_thread();
    const char *dup = "{\"b\":[1],\"a\":1,\"\\u0061\":2,\"a\":{\"x\":3}}";
    assert_int_equal(jtape_parse(t, dup, strlen(dup), 8, 0), 0);
    buf_reset(&b);
    assert_int_equal(canon_write_tape(&b, t, 0, NULL), 0);
    assert_int_equal(buf_putc(&b, '\0'), 0);
    assert_string_equal(b.data, "{\"a\":{\"x\":3},\"b\":[1]}");
    buf_free(&b);
}

/* Omit paths: through arrays and objects, "k[]" alone keeps k, and from a
 * node other than the root the paths are relative to it. */
static void test_canon_omit(void **state)
{
    (void)state;
    buf_t b = {0};
    static const char *const p[] = {"a[].b[].c", "d[]", "e.f", "g[].h"};
    assert_string_equal(canon_of(&b, "{\"a\":[{\"b\":[{\"c\":1,\"k\":2},[{\"c\":3}],4],\"c\":5},6],\"d\":[7],"
                                     "\"e\":{\"f\":8,\"g\":9},\"g\":{\"h\":10}}", p, 4),
                        "{\"a\":[{\"b\":[{\"k\":2},[{\"c\":3}],4],\"c\":5},6],\"d\":[7],\"e\":{\"g\":9},"
                        "\"g\":{\"h\":10}}");
    jtape_t *t = jtape_thread();
    const char *doc = "{\"threadId\":\"t\",\"x\":{\"threadId\":1,\"runId\":2,\"y\":3}}";
    assert_int_equal(jtape_parse(t, doc, strlen(doc), 8, JTAPE_REJECT_DUPLICATES), 0);
    uint32_t x = jtape_get(t, 0, "x", 1);
    canon_omit_t o = {default_omit, 3};
    buf_reset(&b);
    assert_int_equal(canon_write_tape(&b, t, x, &o), 0);
    assert_int_equal(buf_putc(&b, '\0'), 0);
    assert_string_equal(b.data, "{\"y\":3}");
    buf_free(&b);
}

/* CANON_MAX_DEPTH: the root is depth 0, and every value deeper than the limit
 * (a scalar too) is -ELOOP. */
static void test_canon_depth(void **state)
{
    (void)state;
    char doc[2 * CANON_MAX_DEPTH + 16];
    buf_t b = {0};
    int rc;
    size_t n = 0;
    for (int i = 0; i <= CANON_MAX_DEPTH; i++)   /* arrays at depths 0..128 */
        doc[n++] = '[';
    for (int i = 0; i <= CANON_MAX_DEPTH; i++)
        doc[n++] = ']';
    doc[n] = '\0';
    assert_non_null(canon_of_rc(&b, doc, NULL, 0, &rc));
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(b.data), n);
    memmove(doc + CANON_MAX_DEPTH + 2, doc + CANON_MAX_DEPTH + 1, n - CANON_MAX_DEPTH);
    doc[CANON_MAX_DEPTH + 1] = '1';              /* a scalar at depth 129 */
    canon_of_rc(&b, doc, NULL, 0, &rc);
    assert_int_equal(rc, -ELOOP);
    n = 0;
    for (int i = 0; i <= CANON_MAX_DEPTH + 1; i++)   /* an array at depth 129 */
        doc[n++] = '[';
    for (int i = 0; i <= CANON_MAX_DEPTH + 1; i++)
        doc[n++] = ']';
    doc[n] = '\0';
    canon_of_rc(&b, doc, NULL, 0, &rc);
    assert_int_equal(rc, -ELOOP);
    buf_free(&b);
}

static void key_of(const char *json, const char *agent, uint8_t key[CANON_KEY_LEN])
{
    buf_t b = {0};
    canon_of(&b, json, default_omit, 3);
    assert_int_equal(canon_key(agent, NULL, 0, b.data, b.len - 1, key, NULL), 0);
    buf_free(&b);
}

/* canon_key's definition, computed here without its memo: SHA-256 of the tag,
 * agent "\0", the number of parts, each part's length (UINT64_MAX: absent) and
 * bytes, the canonical text; integers 8 bytes little-endian. */
static void key_ref(const char *agent, const canon_part_t *parts, size_t n_parts, const char *c, size_t len,
                    uint8_t out[32])
{
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    assert_non_null(x);
    assert_int_equal(EVP_DigestInit_ex(x, EVP_sha256(), NULL), 1);
    uint8_t le[8];
#define U64(v) do { for (int b_ = 0; b_ < 8; b_++) le[b_] = (uint8_t)((uint64_t)(v) >> (8 * b_)); \
                    EVP_DigestUpdate(x, le, 8); } while (0)
    EVP_DigestUpdate(x, "agate-cache-v1", 15);
    EVP_DigestUpdate(x, agent, strlen(agent) + 1);
    U64(n_parts);
    for (size_t i = 0; i < n_parts; i++) {
        U64(parts[i].p ? parts[i].n : UINT64_MAX);
        if (parts[i].p)
            EVP_DigestUpdate(x, parts[i].p, parts[i].n);
    }
#undef U64
    EVP_DigestUpdate(x, c, len);
    unsigned n = 0;
    assert_int_equal(EVP_DigestFinal_ex(x, out, &n), 1);
    assert_int_equal(n, 32);
    EVP_MD_CTX_free(x);
}

/* Input i of the memo test: one of three agents, one of four forwarded-header
 * shapes, and a canonical text whose length varies; every 97th is over 16 KiB
 * (never remembered). */
#define MEMO_INPUTS 600
static size_t memo_input(unsigned i, char *c, size_t cap, const char **agent, canon_part_t *part)
{
    static const char *const agents[] = {"up", "echo", "a-much-longer-agent-name"};
    static const canon_part_t shapes[] = {{NULL, 0}, {"", 0}, {"Bearer alice", 12}, {"Bearer bob", 10}};
    *agent = agents[i % 3];
    *part = shapes[(i / 3) % 4];
    size_t len = i % 97 == 0 ? 20000 : 24 + (i * 37) % 700;
    assert_true(len < cap);
    int w = snprintf(c, cap, "{\"q\":%u,\"p\":\"", i);
    memset(c + w, 'a' + (char)(i % 26), len - (size_t)w);
    c[len - 1] = '}';
    return len;
}

/* Every key, cold or remembered, is the definition's: inputs far beyond the
 * memo's slots, visited forwards, backwards, each several times in a row, and
 * texts that differ only in their last byte. A memo that answered from the
 * wrong slot, a stale entry or a prefix would fail here. */
static void test_canon_key_memo(void **state)
{
    (void)state;
    static char c[21000];
    uint8_t got[32], want[32];
    for (int pass = 0; pass < 3; pass++) {
        for (unsigned k = 0; k < MEMO_INPUTS; k++) {
            unsigned i = pass == 1 ? MEMO_INPUTS - 1 - k : k;
            const char *agent;
            canon_part_t part;
            size_t len = memo_input(i, c, sizeof c, &agent, &part);
            size_t np = i % 5 == 0 ? 0 : 1;
            key_ref(agent, &part, np, c, len, want);
            for (int rep = 0; rep < (pass == 2 ? 3 : 1); rep++) {
                enum canon_memo memo = CANON_MEMO_COUNT;
                assert_int_equal(canon_key(agent, &part, np, c, len, got, &memo), 0);
                if (memcmp(got, want, 32))
                    fail_msg("input %u, pass %d, repeat %d: key differs from SHA-256 of its preimage", i, pass, rep);
                /* what the memo says it did: new inputs are never hits, a repeat
                 * straight after is, and a text over 16 KiB is never kept */
                if (len > 16384)
                    assert_int_equal(memo, CANON_MEMO_TOO_LARGE);
                else if (pass == 0)
                    assert_int_equal(memo, CANON_MEMO_MISS);
                else if (rep > 0)
                    assert_int_equal(memo, CANON_MEMO_HIT);
            }
            c[len - 2] ^= 1;   /* the same length, one byte apart */
            key_ref(agent, &part, np, c, len, want);
            assert_int_equal(canon_key(agent, &part, np, c, len, got, NULL), 0);
            if (memcmp(got, want, 32))
                fail_msg("input %u with its next-to-last byte changed: a remembered key was answered", i);
        }
    }
    /* One preimage, one byte of it taken through 255 values: in the agent's
     * name, in a forwarded header, in the text. More values than slots, so
     * some share a slot and must still each get their own key. */
    char agent[] = "agent", hdr[] = "Bearer token";
    char text[] = "{\"messages\":[{\"content\":\"hello\",\"role\":\"user\"}]}";
    char *at[] = {agent + 2, hdr + 9, text + 25};
    for (int round = 0; round < 2; round++)
        for (unsigned k = 0; k < 3; k++) {
            char was = *at[k];
            for (int v = 1; v < 256; v++) {
                *at[k] = (char)v;
                canon_part_t part = {hdr, sizeof hdr - 1};
                key_ref(agent, &part, 1, text, sizeof text - 1, want);
                assert_int_equal(canon_key(agent, &part, 1, text, sizeof text - 1, got, NULL), 0);
                if (memcmp(got, want, 32))
                    fail_msg("byte %u set to %d: another preimage's key was answered", k, v);
            }
            *at[k] = was;
        }
}

static void test_canon_key(void **state)
{
    (void)state;
    uint8_t k1[32], k2[32], k3[32], k4[32];
    key_of("{\"threadId\":\"a\",\"runId\":\"1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "up", k1);
    key_of("{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}], \"runId\":\"2\",\"threadId\":\"b\"}", "up", k2);
    key_of("{\"messages\":[{\"content\":\"hi!\",\"role\":\"user\"}]}", "up", k3);
    key_of("{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}]}", "other", k4);
    assert_memory_equal(k1, k2, 32);            /* same question, other run */
    assert_memory_not_equal(k1, k3, 32);        /* another question */
    assert_memory_not_equal(k1, k4, 32);        /* another agent */
    /* forwarded header values are part of the key; absent differs from empty */
    canon_part_t alice = {"Bearer alice", 12}, bob = {"Bearer bob", 10}, none = {NULL, 0}, empty = {"", 0};
    uint8_t a[32], b2[32], n[32], e[32];
    assert_int_equal(canon_key("up", &alice, 1, "{}", 2, a, NULL), 0);
    assert_int_equal(canon_key("up", &bob, 1, "{}", 2, b2, NULL), 0);
    assert_int_equal(canon_key("up", &none, 1, "{}", 2, n, NULL), 0);
    assert_int_equal(canon_key("up", &empty, 1, "{}", 2, e, NULL), 0);
    assert_memory_not_equal(a, b2, 32);
    assert_memory_not_equal(n, e, 32);
    /* The bench's echo body (bench/echo-body.json): the key the jansson walk
     * gave it, so entries keep their meaning across the change to the tape. */
    static const uint8_t echo_key[32] = {
        0x9a, 0x05, 0x60, 0x2c, 0xeb, 0x20, 0x44, 0x3f, 0x4c, 0x4f, 0x9d, 0x1a, 0x42, 0xda, 0xfc, 0x3d,
        0x86, 0x67, 0xb5, 0xb3, 0xd4, 0xf5, 0x16, 0x31, 0x91, 0xc6, 0xcc, 0x9f, 0xed, 0x98, 0x3a, 0x93,
    };
    key_of("{\"threadId\":\"bench-thread\",\"runId\":\"bench-run\",\"messages\":[{\"id\":\"1\",\"role\":\"user\","
           "\"content\":\"The quick brown fox jumps over the lazy dog while a small gateway streams every word back to "
           "the waiting client as one server sent event so that we can measure how fast the whole path runs end to "
           "end\"}]}\n", "echo", k1);
    assert_memory_equal(k1, echo_key, 32);
}

static void test_evids(void **state)
{
    (void)state;
    evids_span_t sp[16];
    const char *ev = "{\"type\":\"TOOL_CALL_START\", \"toolCallId\" : \"tc-1\",\"toolCallName\":\"x\","
                     "\"parentMessageId\":\"m\\\"1\",\"extra\":{\"messageId\":\"nested: not an id\"}}";
    int n = evids_scan(ev, strlen(ev), AGUI_TOOL_CALL_START, sp, 16);
    assert_int_equal(n, 2);
    assert_int_equal(sp[0].kind, EVIDS_ID);
    assert_memory_equal(ev + sp[0].off, "tc-1", sp[0].len);
    assert_memory_equal(ev + sp[1].off, "m\\\"1", sp[1].len);   /* as written, escapes included */

    const char *snap = "{\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":[{\"id\":\"m1\",\"role\":\"assistant\","
                       "\"toolCalls\":[{\"id\":\"tc1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                       "{\"id\":\"m2\",\"role\":\"tool\",\"toolCallId\":\"tc1\",\"content\":\"ok\"}]}";
    n = evids_scan(snap, strlen(snap), AGUI_MESSAGES_SNAPSHOT, sp, 16);
    assert_int_equal(n, 4);   /* m1, tc1, m2, tc1 */
    /* the same text in another type is not a snapshot */
    assert_int_equal(evids_scan(snap, strlen(snap), AGUI_CUSTOM, sp, 16), 0);

    const char *run = "{\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\",\"input\":{\"threadId\":\"t\",\"runId\":\"r\"}}";
    assert_int_equal(evids_scan(run, strlen(run), AGUI_RUN_STARTED, sp, 16), 4);
    assert_int_equal(sp[0].kind, EVIDS_THREAD);
    assert_int_equal(sp[1].kind, EVIDS_RUN);
    assert_int_equal(sp[2].kind, EVIDS_THREAD);

    /* more spans than room: the count says how many to ask for */
    assert_int_equal(evids_scan(snap, strlen(snap), AGUI_MESSAGES_SNAPSHOT, sp, 1), 4);
    /* not one JSON object */
    static const char *const bad[] = {"", "[]", "{", "{\"a\":}", "{\"a\":1}x", "{\"a\":\"\x01\"}", "{\"a\" 1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(evids_scan(bad[i], strlen(bad[i]), AGUI_CUSTOM, sp, 16), -EINVAL);
}

/* Records a run, replays it twice under new ids, checks every rewrite. */
/* A run with every kind of id and one event holding a line feed. */
static const char *const events[] = {
    "{\"type\":\"RUN_STARTED\",\"threadId\":\"T0\",\"runId\":\"R0\"}",
    "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m1\",\"role\":\"assistant\"}",
    "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m1\",\"delta\":\"m1 stays in text\"}",
    "{\"type\":\"TOOL_CALL_START\",\"toolCallId\":\"tc\",\"toolCallName\":\"f\",\"parentMessageId\":\"m1\"}",
    "{\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m2\",\"toolCallId\":\"tc\",\"content\":\"x\"}",
    "{\"type\":\"STATE_SNAPSHOT\",\n\"snapshot\":{\"messageId\":\"m1\"}}",   /* a LF: RUNREC_F_LF */
    "{\"type\":\"RUN_FINISHED\",\"threadId\":\"T0\",\"runId\":\"R0\"}",
};
static const agui_type_t types[] = {AGUI_RUN_STARTED, AGUI_TEXT_MESSAGE_START, AGUI_TEXT_MESSAGE_CONTENT,
                                    AGUI_TOOL_CALL_START, AGUI_TOOL_CALL_RESULT, AGUI_STATE_SNAPSHOT,
                                    AGUI_RUN_FINISHED};

static void test_runrec_rewrite(void **state)
{
    (void)state;
    const size_t n = sizeof events / sizeof events[0];
    runrec_ids_t ids = {0};
    buf_t log = {0}, out = {0}, fresh = {0}, quoted = {0};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(runrec_build(&log, &ids, types[i], events[i], strlen(events[i]), (uint32_t)i * 10), 0);
    assert_int_equal(runrec_build(&log, &ids, AGUI_CUSTOM, "nope", 4, 0), -EINVAL);
    rand_state_t rng;
    assert_int_equal(rand_seed(&rng), 0);
    char seen_m1[2][40];
    for (int pass = 0; pass < 2; pass++) {
        buf_reset(&fresh);
        runrec_subst_t s;
        assert_int_equal(runrec_subst_init(&s, &quoted, pass ? "t\"\n2" : "t1", pass ? 4 : 2, pass ? "r2" : "r1", 2,
                                           &fresh, &rng), 0);
        size_t at = 0;
        json_t *ev[7];
        for (size_t i = 0; i < n; i++) {
            runrec_t rec = {0};
            size_t size = runrec_parse(log.data + at, log.len - at, &rec);
            assert_true(size > 0);
            at += size;
            assert_int_equal(rec.type, types[i]);
            assert_int_equal(rec.gap_ms, i * 10);
            assert_int_equal(rec.flags, i == 5 ? RUNREC_F_LF : 0);
            const char *json = rec.json;
            size_t len = rec.json_len;
            if (rec.n_patch) {
                assert_int_equal(runrec_render(&out, &rec, &s), 0);
                json = out.data;
                len = out.len;
            }
            /* a LF in a new id is escaped: the flag still holds after rendering */
            assert_int_equal(memchr(json, '\n', len) != NULL, (rec.flags & RUNREC_F_LF) != 0);
            json_error_t je;
            ev[i] = json_loadb(json, len, 0, &je);
            assert_non_null(ev[i]);
        }
        assert_int_equal(at, log.len);
        assert_int_equal(runrec_parse(log.data, 5, &(runrec_t){0}), 0);   /* a cut record */
        const char *tid = pass ? "t\"\n2" : "t1", *rid = pass ? "r2" : "r1";
        assert_string_equal(json_string_value(json_object_get(ev[0], "threadId")), tid);
        assert_string_equal(json_string_value(json_object_get(ev[0], "runId")), rid);
        assert_string_equal(json_string_value(json_object_get(ev[6], "runId")), rid);
        const char *m1 = json_string_value(json_object_get(ev[1], "messageId"));
        assert_int_equal(strlen(m1), 36);
        assert_string_not_equal(m1, "m1");
        assert_string_equal(json_string_value(json_object_get(ev[2], "messageId")), m1);
        assert_string_equal(json_string_value(json_object_get(ev[2], "delta")), "m1 stays in text");
        assert_string_equal(json_string_value(json_object_get(ev[3], "parentMessageId")), m1);
        const char *tc = json_string_value(json_object_get(ev[3], "toolCallId"));
        assert_string_equal(json_string_value(json_object_get(ev[4], "toolCallId")), tc);
        const char *m2 = json_string_value(json_object_get(ev[4], "messageId"));
        assert_string_not_equal(m2, m1);
        assert_string_equal(json_string_value(json_object_get(json_object_get(ev[5], "snapshot"), "messageId")), "m1");
        snprintf(seen_m1[pass], sizeof seen_m1[pass], "%s", m1);
        for (size_t i = 0; i < n; i++)
            json_decref(ev[i]);
    }
    assert_string_not_equal(seen_m1[0], seen_m1[1]);   /* each replay its own ids */
    runrec_ids_free(&ids);
    buf_free(&log);
    buf_free(&out);
    buf_free(&fresh);
    buf_free(&quoted);
}

/* --- the store ------------------------------------------------------------------ */

static int store_setup(void **state)
{
    (void)state;
    cache_thread_online();
    return 0;
}

static int store_teardown(void **state)
{
    (void)state;
    cache_shutdown();
    cache_thread_offline();
    return 0;
}

static void mkkey(uint8_t k[CACHE_KEY_LEN], unsigned i)
{
    memset(k, 0, CACHE_KEY_LEN);
    k[0] = (uint8_t)i;   /* the low bytes are the hash */
    k[1] = (uint8_t)(i >> 8);
    k[31] = 0x5a;
}

static int put(unsigned i, size_t len, uint64_t ttl, uint64_t now)
{
    uint8_t k[CACHE_KEY_LEN];
    char *data;
    mkkey(k, i);
    cache_entry_t *e = cache_entry_new(len, &data);
    if (!e)
        return -E2BIG;
    memset(data, (int)i, len);
    return cache_insert(e, k, i % 2 ? "odd" : "even", ttl, now);
}

static bool has(unsigned i, uint64_t now)
{
    uint8_t k[CACHE_KEY_LEN];
    mkkey(k, i);
    cache_entry_t *e = cache_get(k, now);
    if (e)
        cache_put(e);
    return e != NULL;
}

/* runrec_render_sse, which the SSE sink's records path uses: it appends one
 * frame after what the buffer holds, the frame's data is runrec_render's, and
 * a record whose spans do not fit its event leaves the buffer's length as it
 * was. */
static void test_runrec_render_sse(void **state)
{
    (void)state;
    const char *ev = "{\"type\":\"RUN_FINISHED\",\"threadId\":\"T0\",\"runId\":\"R0\"}";
    runrec_ids_t ids = {0};
    buf_t log = {0}, out = {0}, fresh = {0}, quoted = {0}, one = {0};
    assert_int_equal(runrec_build(&log, &ids, AGUI_RUN_FINISHED, ev, strlen(ev), 0), 0);
    runrec_t rec = {0};
    assert_int_equal(runrec_parse(log.data, log.len, &rec), log.len);
    rand_state_t rng = {{1, 2, 3, 4}};
    runrec_subst_t s;
    /* a thread id longer than a fresh id: the reservation must take the longest */
    char longid[300];
    memset(longid, 'x', sizeof longid);
    assert_int_equal(runrec_subst_init(&s, &quoted, longid, sizeof longid, "r\"9", 3, &fresh, &rng), 0);
    assert_int_equal(buf_append_lit(&out, "head"), 0);
    assert_int_equal(runrec_render_sse(&out, &rec, &s), 0);
    assert_int_equal(runrec_render(&one, &rec, &s), 0);
    assert_int_equal(out.len, 4 + 6 + one.len + 2);
    assert_memory_equal(out.data, "headdata: ", 10);
    assert_memory_equal(out.data + 10, one.data, one.len);
    assert_memory_equal(out.data + 10 + one.len, "\n\n", 2);
    json_error_t je;
    json_t *j = json_loadb(one.data, one.len, 0, &je);
    assert_non_null(j);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "threadId"))), sizeof longid);
    assert_string_equal(json_string_value(json_object_get(j, "runId")), "r\"9");
    json_decref(j);
    /* the last patch past the event's end (a corrupt record), found after the
     * first was written: nothing appended */
    assert_int_equal(rec.n_patch, 2);
    char *last = (char *)rec.patches + RUNREC_PATCH;
    uint32_t off = rec.json_len;
    memcpy(last, &off, 4);
    size_t before = out.len;
    assert_int_equal(runrec_render_sse(&out, &rec, &s), -EINVAL);
    assert_int_equal(out.len, before);
    runrec_ids_free(&ids);
    buf_free(&log);
    buf_free(&out);
    buf_free(&one);
    buf_free(&fresh);
    buf_free(&quoted);
}

/* A stored run's SSE plan renders, in one pass, exactly the frames that
 * rendering record by record gives (a line feed splitting its data line),
 * whatever chunks the log came in; a plan that does not fit its records
 * appends nothing. */
static void test_runrec_plan(void **state)
{
    (void)state;
    const size_t n = sizeof events / sizeof events[0];
    runrec_ids_t ids = {0};
    buf_t log = {0}, plan = {0}, out = {0}, ref = {0}, one = {0}, fresh = {0}, quoted = {0};
    size_t cut = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(runrec_build(&log, &ids, types[i], events[i], strlen(events[i]), 0), 0);
        if (i == 2)
            cut = log.len;   /* the log in two chunks, split after the third record */
    }
    const char *parts[2] = {log.data, log.data + cut};
    size_t lens[2] = {cut, log.len - cut};
    assert_int_equal(runrec_plan_build(&plan, parts, lens, 2), 0);
    runrec_plan_t pl = {0};
    assert_int_equal(runrec_plan_parse(plan.data, plan.len, &pl), plan.len);
    assert_int_equal(runrec_plan_parse(plan.data, plan.len - 1, &pl), 0);
    assert_int_equal(runrec_plan_parse(plan.data, plan.len, &pl), plan.len);
    assert_int_equal(pl.n_events, n);
    assert_int_equal(pl.n_types, n);   /* each event its own type */
    for (uint32_t i = 0; i < pl.n_types; i++) {
        uint32_t type, count;
        runrec_plan_type(&pl, i, &type, &count);
        assert_int_equal(count, 1);
    }
    assert_int_equal(pl.n_fresh, 3);   /* m1, tc, m2 */

    rand_state_t rng = {{5, 6, 7, 8}};
    runrec_subst_t s;
    assert_int_equal(runrec_subst_init(&s, &quoted, "t\"\n2", 4, "r2", 2, &fresh, &rng), 0);
    assert_int_equal(buf_append_lit(&out, "head"), 0);
    assert_int_equal(runrec_plan_render_sse(&out, &pl, log.data, log.len, &s), 0);
    assert_true(out.len - 4 <= runrec_plan_room(&pl, &s));
    /* the reference, record by record, under the same (already minted) ids */
    for (size_t at = 0, size; at < log.len; at += size) {
        runrec_t rec;
        assert_true((size = runrec_parse(log.data + at, log.len - at, &rec)) > 0);
        assert_int_equal(runrec_render(&one, &rec, &s), 0);
        assert_int_equal(buf_append_lit(&ref, "data: "), 0);
        for (size_t i = 0; i < one.len; i++)
            assert_int_equal(one.data[i] == '\n' ? buf_append_lit(&ref, "\ndata: ") : buf_putc(&ref, one.data[i]), 0);
        assert_int_equal(buf_append_lit(&ref, "\n\n"), 0);
    }
    assert_int_equal(out.len, 4 + ref.len);
    assert_memory_equal(out.data, "head", 4);
    assert_memory_equal(out.data + 4, ref.data, ref.len);
    assert_non_null(memmem(ref.data, ref.len, "\"STATE_SNAPSHOT\",\ndata: \"snapshot\"", 34));

    /* records shorter than the plan says, or a plan cut before its last event's end */
    size_t before = out.len;
    assert_int_equal(runrec_plan_render_sse(&out, &pl, log.data, log.len - 1, &s), -EINVAL);
    assert_int_equal(out.len, before);
    runrec_plan_t short_pl = pl;
    short_pl.n_ops--;
    assert_int_equal(runrec_plan_render_sse(&out, &short_pl, log.data, log.len, &s), -EINVAL);
    assert_int_equal(out.len, before);
    /* a log cut inside a record has no plan */
    buf_reset(&plan);
    lens[1]--;
    assert_int_equal(runrec_plan_build(&plan, parts, lens, 2), -EINVAL);

    runrec_ids_free(&ids);
    buf_free(&log);
    buf_free(&plan);
    buf_free(&out);
    buf_free(&ref);
    buf_free(&one);
    buf_free(&fresh);
    buf_free(&quoted);
}

static void test_store_hit_miss_ref(void **state)
{
    (void)state;
    assert_int_equal(cache_init(1 << 20), 0);
    assert_int_equal(put(1, 1000, 60000, 0), 0);
    uint8_t k[CACHE_KEY_LEN];
    mkkey(k, 1);
    cache_entry_t *e = cache_get(k, 10);
    assert_non_null(e);
    cache_view_t v = cache_view(e);
    assert_int_equal(v.len, 1000);
    assert_int_equal((unsigned char)v.data[999], 1);
    assert_false(has(2, 10));
    /* replaced and purged while referenced: the reader's view stays valid */
    assert_int_equal(put(1, 500, 60000, 20), 0);
    assert_int_equal(cache_purge(NULL), 1);
    assert_false(has(1, 30));
    assert_int_equal((unsigned char)v.data[999], 1);   /* ASan: not freed */
    cache_put(e);
    cache_stats_t st;
    cache_get_stats(&st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.purged, 1);
    cache_shutdown();
}

/* cache_insert_ref: the caller's reference is taken before the entry is
 * published, so it survives being evicted or purged at once. */
static void test_store_insert_ref(void **state)
{
    (void)state;
    assert_int_equal(cache_init(64 * 1024), 0);
    uint8_t k[CACHE_KEY_LEN];
    mkkey(k, 7);
    char *data;
    cache_entry_t *e = cache_entry_new(1000, &data), *ref = (cache_entry_t *)1;
    assert_non_null(e);
    memset(data, 7, 1000);
    assert_int_equal(cache_insert_ref(e, k, "a", 60000, 0, &ref), 0);
    assert_ptr_equal(ref, e);
    assert_int_equal(cache_purge(NULL), 1);   /* gone from the table at once */
    assert_false(has(7, 1));
    cache_view_t v = cache_view(ref);
    assert_int_equal(v.len, 1000);
    assert_int_equal((unsigned char)v.data[999], 7);   /* ASan: not freed */
    cache_put(ref);
    cache_stats_t st;
    cache_get_stats(&st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    cache_shutdown();
}

static void test_store_eviction(void **state)
{
    (void)state;
    const uint64_t cap = 256 * 1024;
    assert_int_equal(cache_init(cap), 0);
    assert_int_equal(put(999, cap / 2, 60000, 0), -E2BIG);   /* over a quarter: refused */
    /* entry 0 is hit often; every other entry only once */
    for (unsigned i = 0; i < 200; i++) {
        assert_int_equal(put(i, 10000, 60000, i), 0);
        cache_stats_t st;
        cache_get_stats(&st);
        assert_true(st.bytes <= cap);
        assert_true(has(0, i));   /* S3-FIFO keeps the hot entry through a scan of one-hit wonders */
    }
    cache_stats_t st;
    cache_get_stats(&st);
    assert_true(st.evictions >= 170);
    assert_true(st.entries >= 20);
    assert_true(has(199, 300));     /* the newest is there */
    assert_false(has(1, 300));      /* an old one-hit wonder is gone */
    /* purge by agent */
    size_t odd = cache_purge("odd");
    assert_true(odd > 0);
    cache_get_stats(&st);
    assert_true(has(0, 300));
    assert_false(has(199, 300));
    cache_shutdown();
}

static void test_store_ttl(void **state)
{
    (void)state;
    assert_int_equal(cache_init(1 << 20), 0);
    assert_int_equal(put(1, 100, 1000, 0), 0);
    assert_int_equal(put(2, 100, 5000, 0), 0);
    assert_true(has(1, 999));
    assert_false(has(1, 1000));     /* expired at lookup: removed and counted */
    cache_stats_t st;
    cache_get_stats(&st);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.entries, 1);
    cache_expire(6000);             /* the sweep finds the other */
    cache_get_stats(&st);
    assert_int_equal(st.expirations, 2);
    assert_int_equal(st.entries, 0);
    cache_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canon_form),
        cmocka_unit_test(test_canon_numbers),
        cmocka_unit_test(test_canon_keys),
        cmocka_unit_test(test_canon_omit),
        cmocka_unit_test(test_canon_depth),
        cmocka_unit_test(test_canon_key),
        cmocka_unit_test(test_canon_key_memo),
        cmocka_unit_test(test_evids),
        cmocka_unit_test(test_runrec_rewrite),
        cmocka_unit_test(test_runrec_render_sse),
        cmocka_unit_test(test_runrec_plan),
        cmocka_unit_test_setup_teardown(test_store_hit_miss_ref, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_insert_ref, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_eviction, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_ttl, store_setup, store_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
