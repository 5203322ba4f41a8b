/* Unit tests for net/runlog.c, a resumable run's bounded event log: gap-free
 * sequence numbers from 1, readers from any point, the end states, dropping
 * whole chunks from the front past max_bytes and past the process-wide
 * bound (a reader that needs a dropped record learns it, one that does not
 * finds its place again), the append hook, an event larger than the bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "net/runlog.h"

static int append_n(runlog_t *l, int from, int n, size_t pad)
{
    char json[512];
    for (int i = 0; i < n; i++) {
        int len = snprintf(json, sizeof json, "{\"n\":%d,\"pad\":\"%*s\"}", from + i, (int)pad, "");
        int64_t seq = runlog_append(l, (uint8_t)((from + i - 1) % 7), json, (size_t)len, (from + i - 1) % 5 == 0);
        if (seq != from + i)
            return -1;
    }
    return 0;
}

/* Reads all it can now; returns the status that stopped it, *n the records
 * read, checking each is the next seq and carries its own number. */
static int read_all(runlog_t *l, runlog_reader_t *rd, int *n)
{
    runlog_rec_t rec;
    size_t size;
    int st;
    *n = 0;
    runlog_lock(l);
    while ((st = runlog_peek(l, rd, &rec, &size)) == RUNLOG_RD_REC) {
        char want[32];
        int wl = snprintf(want, sizeof want, "{\"n\":%llu,", (unsigned long long)rec.seq);
        assert_int_equal(rec.seq, rd->next);
        assert_memory_equal(rec.json, want, (size_t)wl);
        assert_int_equal(rec.type, (rec.seq - 1) % 7);
        assert_int_equal(rec.has_lf, (rec.seq - 1) % 5 == 0);
        runlog_advance(rd, size);
        (*n)++;
    }
    runlog_unlock(l);
    return st;
}

static void test_seq_and_readers(void **state)
{
    (void)state;
    runlog_t l;
    runlog_reader_t a, b, c;
    int n;
    assert_int_equal(runlog_init(&l, 1 << 20, NULL, 0), 0);
    runlog_reader_init(&a, 0);
    assert_int_equal(read_all(&l, &a, &n), RUNLOG_RD_NONE);   /* nothing yet */
    assert_int_equal(n, 0);
    assert_int_equal(append_n(&l, 1, 50, 10), 0);
    assert_int_equal(read_all(&l, &a, &n), RUNLOG_RD_NONE);
    assert_int_equal(n, 50);
    runlog_reader_init(&b, 37);   /* a reattach after seq 37 */
    assert_int_equal(read_all(&l, &b, &n), RUNLOG_RD_NONE);
    assert_int_equal(n, 13);
    assert_int_equal(append_n(&l, 51, 3000, 40), 0);   /* several chunks */
    assert_int_equal(read_all(&l, &a, &n), RUNLOG_RD_NONE);
    assert_int_equal(n, 3000);
    runlog_close(&l, false);
    assert_int_equal(read_all(&l, &a, &n), RUNLOG_RD_END);
    assert_int_equal(read_all(&l, &b, &n), RUNLOG_RD_END);
    assert_int_equal(n, 3000);
    runlog_reader_init(&c, 3050);   /* after the last: nothing, then the end */
    assert_int_equal(read_all(&l, &c, &n), RUNLOG_RD_END);
    assert_int_equal(n, 0);
    assert_int_equal(runlog_first_seq(&l), 1);
    runlog_free(&l);
}

static void test_failed_before_any_record(void **state)
{
    (void)state;
    runlog_t l;
    runlog_reader_t a;
    int n;
    assert_int_equal(runlog_init(&l, 1 << 16, NULL, 0), 0);
    runlog_reader_init(&a, 0);
    runlog_close(&l, true);
    assert_int_equal(read_all(&l, &a, &n), RUNLOG_RD_FAILED);
    runlog_free(&l);
}

static void test_bound_drops_front(void **state)
{
    (void)state;
    runlog_t l;
    runlog_reader_t early, late, live;
    int n;
    const size_t max = 8192;
    assert_int_equal(runlog_init(&l, max, NULL, 0), 0);
    runlog_reader_init(&early, 0);
    runlog_reader_init(&live, 0);
    assert_int_equal(append_n(&l, 1, 1, 40), 0);
    assert_int_equal(read_all(&l, &early, &n), RUNLOG_RD_NONE);   /* holds a place in the first chunk */
    for (int i = 0; i < 500; i++) {
        assert_int_equal(append_n(&l, 2 + i, 1, 40), 0);
        assert_true(atomic_load(&l.bytes) <= max);   /* never past the bound */
        if (i % 10 == 0) {
            assert_int_equal(read_all(&l, &live, &n), RUNLOG_RD_NONE);   /* a reader keeping up loses nothing */
        }
    }
    assert_int_equal(read_all(&l, &live, &n), RUNLOG_RD_NONE);
    assert_int_equal(live.next, 502);
    runlog_lock(&l);
    uint64_t first = runlog_first_seq(&l);
    runlog_unlock(&l);
    assert_true(first > 100);   /* most was dropped, */
    assert_true(501 - first > 30);   /* but more than a chunk is kept */
    assert_int_equal(read_all(&l, &early, &n), RUNLOG_RD_GONE);   /* its chunk was dropped */
    runlog_reader_init(&late, first - 1);   /* just what is kept */
    assert_int_equal(read_all(&l, &late, &n), RUNLOG_RD_NONE);
    assert_int_equal(n, (int)(501 - first + 1));
    runlog_reader_init(&late, first - 2);   /* one before it */
    assert_int_equal(read_all(&l, &late, &n), RUNLOG_RD_GONE);
    runlog_free(&l);
}

static void test_process_bound_and_counts(void **state)
{
    (void)state;
    _Atomic size_t all = 0;
    runlog_t a, b;
    assert_int_equal(runlog_init(&a, 1 << 20, &all, 16384), 0);
    assert_int_equal(runlog_init(&b, 1 << 20, &all, 16384), 0);
    for (int i = 0; i < 400; i++) {
        assert_int_equal(append_n(&a, 1 + i, 1, 60), 0);
        assert_int_equal(append_n(&b, 1 + i, 1, 60), 0);
    }
    /* each log keeps at least its newest chunk (64 KiB here), so the total is
     * bounded by all_max plus a chunk a log */
    assert_true(atomic_load(&all) <= 16384 + 2 * (64 * 1024 + sizeof(runlog_chunk_t)));
    assert_int_equal(atomic_load(&all), atomic_load(&a.bytes) + atomic_load(&b.bytes));
    runlog_free(&a);
    runlog_free(&b);
    assert_int_equal(atomic_load(&all), 0);
}

static int g_hook_calls;
static uint64_t g_hook_last;
static void hook(runlog_t *l, const runlog_rec_t *rec, void *ctx)
{
    (void)l;
    assert_ptr_equal(ctx, &g_hook_calls);
    assert_int_equal(rec->seq, g_hook_last + 1);
    g_hook_last = rec->seq;
    g_hook_calls++;
}

static void test_hook_and_huge_event(void **state)
{
    (void)state;
    runlog_t l;
    runlog_reader_t rd;
    static char big[20000];
    runlog_rec_t rec;
    size_t size;
    assert_int_equal(runlog_init(&l, 4096, NULL, 0), 0);
    l.on_append = hook;
    l.hook_ctx = &g_hook_calls;
    assert_int_equal(append_n(&l, 1, 20, 10), 0);
    assert_int_equal(g_hook_calls, 20);
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"n\":21,", 8);
    assert_int_equal(runlog_append(&l, 0, big, sizeof big, false), 21);   /* larger than the bound: kept alone */
    assert_int_equal(g_hook_calls, 21);
    runlog_reader_init(&rd, 20);
    runlog_lock(&l);
    assert_int_equal(runlog_peek(&l, &rd, &rec, &size), RUNLOG_RD_REC);
    assert_int_equal(rec.seq, 21);
    assert_int_equal(rec.len, sizeof big);
    assert_int_equal(runlog_first_seq(&l), 21);
    runlog_unlock(&l);
    runlog_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_and_readers),
        cmocka_unit_test(test_failed_before_any_record),
        cmocka_unit_test(test_bound_drops_front),
        cmocka_unit_test(test_process_bound_and_counts),
        cmocka_unit_test(test_hook_and_huge_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
