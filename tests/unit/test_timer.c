/* timer heap: random arm/re-arm/cancel against a simple model; callbacks fire
 * exactly once, in deadline order, and only when due. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/timer.h"

#define N 500
static agate_timer_t timers[N];
static uint64_t model[N];     /* deadline, 0 = not armed */
static int fired[N];
static uint64_t last_fire;

static void cb(agate_timer_t *t)
{
    int i = (int)(t - timers);
    fired[i]++;
    assert_true(model[i] != 0);
    assert_true(t->at >= last_fire);   /* deadline order */
    last_fire = t->at;
    model[i] = 0;
}

static void test_random_against_model(void **state)
{
    timer_heap_t h = {0};
    srand(42);
    for (int i = 0; i < N; i++)
        timers[i].cb = cb;
    uint64_t now = 0;
    for (int round = 0; round < 200; round++) {
        for (int k = 0; k < 50; k++) {
            int i = rand() % N;
            if (rand() % 4 == 0) {
                timer_cancel(&h, &timers[i]);
                model[i] = 0;
            } else {
                uint64_t at = now + 1 + (uint64_t)(rand() % 1000);
                assert_int_equal(timer_arm(&h, &timers[i], at), 0);
                model[i] = at;
            }
        }
        now += (uint64_t)(rand() % 300);
        last_fire = 0;
        timer_run(&h, now);
        uint64_t earliest = UINT64_MAX;
        uint32_t armed = 0;
        for (int i = 0; i < N; i++) {
            if (model[i]) {
                assert_true(model[i] > now);   /* everything due has fired */
                assert_true(timer_armed(&timers[i]));
                armed++;
                if (model[i] < earliest)
                    earliest = model[i];
            } else {
                assert_false(timer_armed(&timers[i]));
            }
        }
        assert_int_equal(h.n, armed);
        assert_int_equal(timer_next(&h), earliest);
    }
    timer_heap_free(&h);
}

static void rearm_cb(agate_timer_t *t) { fired[0]++; }

static void test_cancel_unarmed_and_rearm(void **state)
{
    timer_heap_t h = {0};
    agate_timer_t t = {.cb = rearm_cb};
    fired[0] = 0;
    timer_cancel(&h, &t);                      /* not armed: a no-op */
    assert_int_equal(timer_arm(&h, &t, 100), 0);
    assert_int_equal(timer_arm(&h, &t, 50), 0); /* re-arm moves, does not duplicate */
    assert_int_equal(h.n, 1);
    timer_run(&h, 49);
    assert_int_equal(fired[0], 0);
    timer_run(&h, 50);
    assert_int_equal(fired[0], 1);
    assert_int_equal(h.n, 0);
    timer_heap_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_cancel_unarmed_and_rearm),
    };
    return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
