/* tier2: the shared cache entry's wire form (proto/tier2.h).
 *
 * A run's records (built by runrec_build from real events, split over two
 * parts as a flight's chunks are) encode to an entry that decodes back to
 * the same records and metadata; and every way an entry read from Redis can
 * be wrong is refused with its reason: cut anywhere, garbage, another format
 * version, another key or agent, one flipped bit anywhere, and records that
 * carry a valid checksum but would not replay (a forged entry): a run that
 * does not end with RUN_FINISHED, a fresh id out of order, a patch outside
 * its event or not on a string, an unflagged line feed, an event that is not
 * a JSON object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proto/runrec.h"
#include "proto/tier2.h"

#define E1 "{\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\"}"
#define E2 "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m1\",\"role\":\"assistant\"}"
#define E3 "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m1\",\"delta\":\"hello\"}"
#define E4 "{\"type\":\"TEXT_MESSAGE_END\",\"messageId\":\"m1\"}"
#define E5 "{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\"}"

static buf_t recs;
static runrec_ids_t ids;
static uint8_t key[TIER2_KEY_LEN];
static tier2_meta_t meta;

static void add(agui_type_t t, const char *json)
{
    assert_int_equal(runrec_build(&recs, &ids, t, json, strlen(json), 5), 0);
}

static int setup(void **state)
{
    (void)state;
    buf_reset(&recs);
    runrec_ids_reset(&ids);
    add(AGUI_RUN_STARTED, E1);
    add(AGUI_TEXT_MESSAGE_START, E2);
    add(AGUI_TEXT_MESSAGE_CONTENT, E3);
    add(AGUI_TEXT_MESSAGE_END, E4);
    add(AGUI_RUN_FINISHED, E5);
    for (unsigned i = 0; i < TIER2_KEY_LEN; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    meta = (tier2_meta_t){.agent = tier2_agent_hash("lg"), .stored_ms = 1765000000000ull, .ttl_ms = 60000};
    memcpy(meta.key, key, sizeof key);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    buf_free(&recs);
    runrec_ids_free(&ids);
    return 0;
}

/* The entry of recs, split in two parts at `cut`. */
static void encode(buf_t *out, size_t cut)
{
    const char *parts[2] = {recs.data, recs.data + cut};
    size_t lens[2] = {cut, recs.len - cut};
    buf_reset(out);
    assert_int_equal(tier2_encode(out, &meta, parts, lens, 2), 0);
}

static int decode(const buf_t *e)
{
    tier2_meta_t m;
    const char *r;
    size_t n;
    return tier2_decode(e->data, e->len, key, meta.agent, &m, &r, &n);
}

/* An entry whose records are `bad`, with a valid checksum: what a forger or a
 * buggy writer would put there. */
static int decode_forged(const char *bad, size_t len)
{
    buf_t e = {0};
    const char *parts[1] = {bad};
    size_t lens[1] = {len};
    assert_int_equal(tier2_encode(&e, &meta, parts, lens, 1), 0);
    int why = decode(&e);
    buf_free(&e);
    return why;
}

static void test_round_trip(void **state)
{
    (void)state;
    buf_t e = {0};
    encode(&e, 30);
    assert_int_equal(e.len, TIER2_HDR + recs.len);
    tier2_meta_t m;
    const char *r;
    size_t n;
    assert_int_equal(tier2_decode(e.data, e.len, key, meta.agent, &m, &r, &n), TIER2_OK);
    assert_int_equal(n, recs.len);
    assert_memory_equal(r, recs.data, recs.len);
    assert_memory_equal(m.key, key, sizeof key);
    assert_int_equal(m.agent, meta.agent);
    assert_int_equal(m.stored_ms, meta.stored_ms);
    assert_int_equal(m.ttl_ms, meta.ttl_ms);
    /* the split does not matter */
    buf_t e2 = {0};
    encode(&e2, 0);
    assert_int_equal(e2.len, e.len);
    assert_memory_equal(e2.data, e.data, e.len);
    buf_free(&e2);
    buf_free(&e);
}

static void test_refused(void **state)
{
    (void)state;
    buf_t e = {0};
    encode(&e, 17);
    tier2_meta_t m;
    const char *r;
    size_t n;
    /* cut anywhere: never OK */
    for (size_t len = 0; len < e.len; len++) {
        int why = tier2_decode(e.data, len, key, meta.agent, &m, &r, &n);
        assert_true(why == TIER2_SHORT);
    }
    /* another agent, another key */
    assert_int_equal(tier2_decode(e.data, e.len, key, tier2_agent_hash("other"), &m, &r, &n), TIER2_FOREIGN);
    uint8_t k2[TIER2_KEY_LEN];
    memcpy(k2, key, sizeof k2);
    k2[31] ^= 1;
    assert_int_equal(tier2_decode(e.data, e.len, k2, meta.agent, &m, &r, &n), TIER2_FOREIGN);
    /* garbage, and another version */
    assert_int_equal(tier2_decode("garbage!garbage!", 16, key, meta.agent, &m, &r, &n), TIER2_MAGIC);
    e.data[4] ^= 2;
    assert_int_equal(decode(&e), TIER2_VERSION_);
    e.data[4] ^= 2;
    /* one flipped bit anywhere: refused (the length and the key are checked
     * before the sum, the magic and version before those) */
    for (size_t i = 0; i < e.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            e.data[i] ^= (char)(1 << bit);
            assert_int_not_equal(decode(&e), TIER2_OK);
            e.data[i] ^= (char)(1 << bit);
        }
    }
    /* a trailing byte */
    buf_putc(&e, 'x');
    assert_int_not_equal(decode(&e), TIER2_OK);
    e.len--;
    assert_int_equal(decode(&e), TIER2_OK);
    buf_free(&e);
}

static void test_forged_records(void **state)
{
    (void)state;
    assert_int_equal(decode_forged(recs.data, recs.len), TIER2_OK);
    /* without its last record (RUN_FINISHED) */
    runrec_t rec = {0};
    size_t off = 0, size, last = 0;
    while (off < recs.len && (size = runrec_parse(recs.data + off, recs.len - off, &rec)))
        last = off, off += size;
    assert_int_equal(decode_forged(recs.data, last), TIER2_RECORDS);
    /* an empty run */
    assert_int_equal(decode_forged("", 0), TIER2_RECORDS);

    buf_t b = {0};
    runrec_ids_t ids2 = {0};
    /* a fresh id used before the ones below it (k = 5 first) */
    buf_append(&b, recs.data, recs.len);
    size_t first = runrec_parse(b.data, b.len, &rec);
    assert_true(first > 0);
    assert_true(runrec_parse(b.data + first, b.len - first, &rec) > 0);   /* TEXT_MESSAGE_START, one fresh id */
    assert_int_equal(rec.n_patch, 1);
    uint32_t id;
    memcpy(&id, rec.patches + 8, 4);
    assert_int_equal(id, 2);
    id = 7;
    memcpy((char *)rec.patches + 8, &id, 4);
    assert_int_equal(decode_forged(b.data, b.len), TIER2_RECORDS);
    /* a patch whose span is not a string's content */
    id = 2;
    memcpy((char *)rec.patches + 8, &id, 4);
    assert_int_equal(decode_forged(b.data, b.len), TIER2_OK);
    uint32_t poff;
    memcpy(&poff, rec.patches, 4);
    poff -= 1;
    memcpy((char *)rec.patches, &poff, 4);
    assert_int_equal(decode_forged(b.data, b.len), TIER2_RECORDS);

    /* an unflagged line feed; a record that is not a JSON object */
    buf_reset(&b);
    const char *lf = "{\"type\":\"RUN_STARTED\",\n\"threadId\":\"t\",\"runId\":\"r\"}";
    assert_int_equal(runrec_build(&b, &ids2, AGUI_RUN_STARTED, lf, strlen(lf), 0), 0);
    assert_int_equal(runrec_build(&b, &ids2, AGUI_RUN_FINISHED, E5, strlen(E5), 0), 0);
    assert_int_equal(decode_forged(b.data, b.len), TIER2_OK);
    b.data[11] = 0;   /* the first record's flags */
    assert_int_equal(decode_forged(b.data, b.len), TIER2_RECORDS);
    buf_reset(&b);
    runrec_ids_reset(&ids2);
    assert_int_equal(runrec_build(&b, &ids2, AGUI_RUN_FINISHED, E5, strlen(E5), 0), 0);
    b.data[b.len - 1] = ']';   /* no longer an object */
    assert_int_equal(decode_forged(b.data, b.len), TIER2_RECORDS);
    buf_free(&b);
    runrec_ids_free(&ids2);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(tier2_why_name(TIER2_CHECKSUM), "checksum");
    assert_string_equal(tier2_why_name(TIER2_SHORT), "truncated");
    assert_string_equal(tier2_why_name(99), "unknown");
    assert_int_not_equal(tier2_agent_hash("a"), tier2_agent_hash("b"));
    assert_int_not_equal(tier2_sum("ab", 2, 0), tier2_sum("ba", 2, 0));
    assert_int_not_equal(tier2_sum("", 0, 0), tier2_sum("\0", 1, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
