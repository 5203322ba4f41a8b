/* metrics: histogram bucket selection, the inline first bucket and the
 * out-of-line rest agreeing on every bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/metrics.h"

/* The bucket one observation of us lands in, and that the sum grew by us. */
static int bucket_of(uint64_t us)
{
    metrics_hist_t h;
    memset(&h, 0, sizeof h);
    metrics_observe_us(&h, us);
    assert_int_equal(h.sum_us, us);
    int found = -1;
    for (int i = 0; i <= METRICS_TIME_BUCKETS; i++) {
        if (h.bucket[i]) {
            assert_int_equal(found, -1);   /* exactly one bucket */
            assert_int_equal(h.bucket[i], 1);
            found = i;
        }
    }
    assert_int_not_equal(found, -1);
    return found;
}

static void test_bounds(void **state)
{
    (void)state;
    /* le is inclusive: a bound's own value is in its bucket, one more is not */
    static const uint64_t bounds[METRICS_TIME_BUCKETS] = {
        500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
        1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 300000000, 1800000000,
    };
    assert_int_equal(bounds[0], METRICS_TIME_FIRST_US);
    assert_int_equal(bucket_of(0), 0);
    for (int i = 0; i < METRICS_TIME_BUCKETS; i++) {
        assert_int_equal(bucket_of(bounds[i]), i);
        assert_int_equal(bucket_of(bounds[i] + 1), i + 1);
    }
    assert_int_equal(bucket_of(UINT64_MAX / 2), METRICS_TIME_BUCKETS);   /* +Inf */
}

static void test_accumulates(void **state)
{
    (void)state;
    metrics_hist_t h;
    memset(&h, 0, sizeof h);
    for (int i = 0; i < 44; i++)
        metrics_observe_us(&h, 0);
    metrics_observe_us(&h, 700);
    metrics_observe_us(&h, 499);
    assert_int_equal(h.bucket[0], 45);
    assert_int_equal(h.bucket[1], 1);
    assert_int_equal(h.sum_us, 1199);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_accumulates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
