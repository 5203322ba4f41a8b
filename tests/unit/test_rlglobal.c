/* Unit tests for net/rlglobal.c's pure part: how many tokens a shard leases
 * from Redis at once (a tenth of a second's rate, the burst split across the
 * fleet's shards, 1..RLG_LEASE_CAP) and how a key's lease grows and shrinks
 * with its traffic, including the goal: a busy key at steady state
 * costs at most 10 round trips per 1,000 requests, a slow one leases 1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "net/rlglobal.h"

#define SEC UINT64_C(1000000000)
#define MIN (60 * SEC)

static void test_lease_max(void **state)
{
    (void)state;
    /* a tenth of a second's rate */
    assert_int_equal(rlg_lease_max(1000, SEC, 1000000, 1, 1), 100);
    assert_int_equal(rlg_lease_max(6000, MIN, 1000000, 1, 1), 10);
    /* the burst split between every shard of every pod */
    assert_int_equal(rlg_lease_max(1000, SEC, 400, 2, 2), 100);
    assert_int_equal(rlg_lease_max(1000, SEC, 200, 2, 2), 50);
    assert_int_equal(rlg_lease_max(1000, SEC, 0, 4, 5), 50);    /* burst 0: the rate itself */
    /* slow keys lease one token; huge rates are capped */
    assert_int_equal(rlg_lease_max(20, MIN, 0, 2, 2), 1);
    assert_int_equal(rlg_lease_max(1, SEC, 1, 64, 100), 1);
    assert_int_equal(rlg_lease_max(100000000, SEC, 100000000, 1, 1), RLG_LEASE_CAP);
    assert_int_equal(rlg_lease_max(0, SEC, 0, 1, 1), 1);
    assert_int_equal(rlg_lease_max(1000, SEC, 1000, 0, 0), 100);   /* 0 shards or pods read as 1 */
}

static void test_lease_next(void **state)
{
    (void)state;
    /* used up fast: doubles up to max */
    assert_int_equal(rlg_lease_next(1, 100, 1000), 2);
    assert_int_equal(rlg_lease_next(64, 100, 1000), 100);
    assert_int_equal(rlg_lease_next(100, 100, 1000), 100);
    assert_int_equal(rlg_lease_next(0, 100, 1000), 2);
    /* lasted long, or expired unused: halves down to 1 */
    assert_int_equal(rlg_lease_next(100, 100, RLG_SLOW_US + 1), 50);
    assert_int_equal(rlg_lease_next(1, 100, UINT64_MAX), 1);
    /* in between: kept (but never above a lowered max) */
    assert_int_equal(rlg_lease_next(8, 100, 500000), 8);
    assert_int_equal(rlg_lease_next(8, 4, 500000), 4);
    assert_int_equal(rlg_lease_next(5, 1, 1000), 1);
}

/* A key's requests at `per_s` a second on one shard, with the shard's renewal
 * rule (rlg_rate_take: renew when under half the lease, the answer in `rtt_us`):
 * round trips per 1,000 requests over the last 10,000 of 20,000. */
static unsigned round_trips_per_1000(uint32_t per_s, uint32_t max, uint64_t rtt_us)
{
    uint64_t gap = 1000000 / per_s, now = 0, granted = 0, reply_at = 0;
    uint32_t tokens = 0, size = 1, inflight = 0;
    unsigned trips = 0;
    for (int i = 0; i < 20000; i++, now += gap) {
        if (inflight && now >= reply_at) {
            tokens += inflight;
            granted = reply_at;
            inflight = 0;
        }
        if (!tokens) {   /* waits for a lease */
            size = rlg_lease_next(size, max, granted ? now - granted : UINT64_MAX);
            trips += i >= 10000;
            tokens += size;
            granted = now + rtt_us;
            now += rtt_us;
        }
        tokens--;
        if (size >= 2 && tokens < size / 2 && !inflight) {
            size = rlg_lease_next(size, max, now - granted);
            trips += i >= 10000;
            inflight = size;
            reply_at = now + rtt_us;
        }
    }
    return trips / 10;
}

static void test_round_trips(void **state)
{
    (void)state;
    /* busy: 10,000 a second under a limit of 100,000 a second: the lease reaches the cap */
    uint32_t max = rlg_lease_max(100000, SEC, 100000, 2, 2);
    unsigned rt = round_trips_per_1000(10000, max, 300);
    print_message("busy key: %u round trips per 1000 requests (lease %u)\n", rt, max);
    assert_true(rt <= 10);
    /* 1,000 a second under a limit of 1,000: leases of 100 */
    assert_true(round_trips_per_1000(1000, rlg_lease_max(1000, SEC, 1000, 1, 1), 300) <= 10);
    /* a slow key (one a second): every request asks, with a lease of one */
    assert_int_equal(round_trips_per_1000(1, rlg_lease_max(20, MIN, 0, 2, 2), 300), 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_max),
        cmocka_unit_test(test_lease_next),
        cmocka_unit_test(test_round_trips),
    };
    return cmocka_run_group_tests_name("rlglobal", tests, NULL, NULL);
}
