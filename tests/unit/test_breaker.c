/* Unit tests for net/breaker.c on a bare shard (no ring, no log): the breaker
 * opens, goes half-open after breaker.open and closes after its trials; every
 * admitted trial ends exactly once, and one that ends with nothing recorded
 * gives its slot back, to its own half-open period only; a new configuration
 * generation resets re-pointed agents and ignores what their old attempts say;
 * the balancer's round robin, tried endpoints and least outstanding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "net/breaker.h"
#include "net/gwmetrics.h"
#include "net/upstream_metrics.h"

static shard_t sh;   /* static: both are large */
static cfg_t cfg, old_cfg;
static upm_t gm;

/* One proxy agent in slot 0 with n endpoints; its breaker opens after
 * `failures` failures in a row, stays open 1 s and admits `trials` trials. */
static cfg_agent_t *setup(unsigned n, uint32_t failures, uint32_t trials, cfg_balance_t balance)
{
    memset(&sh, 0, sizeof sh);
    memset(&cfg, 0, sizeof cfg);
    cfg.n_agents = 1;
    cfg_agent_t *ag = &cfg.agents[0];
    snprintf(ag->name, sizeof ag->name, "up");
    ag->kind = CFG_AGENT_PROXY;
    ag->n_endpoints = n;
    for (unsigned e = 0; e < n; e++) {
        snprintf(ag->endpoints[e].host, sizeof ag->endpoints[e].host, "127.0.0.1");
        ag->endpoints[e].port = (uint16_t)(9000 + e);
        snprintf(ag->endpoints[e].path, sizeof ag->endpoints[e].path, "/agent");
    }
    ag->balance = balance;
    ag->breaker_failures = failures;
    ag->breaker_error_rate = 1;
    ag->breaker_min_requests = 100000;
    ag->breaker_open_ms = 1000;
    ag->breaker_half_open = trials;
    sh.cfg = &cfg;
    gwmetrics_register();
    upm_register();
    breaker_register();
    memset(&gm, 0, sizeof gm);
    sh.mod[g_upm_mod] = &gm;
    sh.now_ms = 5000;
    assert_int_equal(breaker_shard_init(&sh), 0);
    return ag;
}

static int64_t gauge(unsigned e) { return gm.breaker_open[0][e]; }

/* A pick that must succeed, on endpoint want (-1: any). */
static breaker_hold_t take(int want)
{
    breaker_hold_t h = BREAKER_HOLD_NONE;
    uint32_t retry = 0;
    int ep = breaker_pick(&sh, &cfg.agents[0], 0, &h, &retry);
    assert_true(ep >= 0);
    if (want >= 0)
        assert_int_equal(ep, want);
    assert_int_equal(h.ep, ep);
    return h;
}

static bool refused(void)
{
    breaker_hold_t h = BREAKER_HOLD_NONE;
    uint32_t retry = 0;
    int ep = breaker_pick(&sh, &cfg.agents[0], 0, &h, &retry);
    if (ep >= 0) {
        breaker_end(&sh, &h);
        return false;
    }
    assert_int_equal(h.ep, -1);
    assert_true(retry >= 1);
    return true;
}

/* One attempt with an outcome: 0 ok, 1 failed. */
static void attempt(int failed)
{
    breaker_hold_t h = take(-1);
    breaker_record(&sh, &h, failed);
    breaker_end(&sh, &h);
    assert_int_equal(h.ep, -1);
}

/* Opens endpoint 0 of a one-endpoint agent and lets breaker.open pass. */
static void open_then_wait(uint32_t failures)
{
    for (uint32_t i = 0; i < failures; i++)
        attempt(1);
    assert_int_equal(gauge(0), 1);
    assert_true(refused());
    sh.now_ms += 1000;
}

static void test_open_half_open_closed(void **state)
{
    setup(1, 2, 1, CFG_BALANCE_ROUND_ROBIN);
    attempt(1);
    assert_false(refused());   /* one failure is not enough */
    attempt(1);
    assert_int_equal(gauge(0), 1);
    breaker_hold_t h = BREAKER_HOLD_NONE;
    uint32_t retry = 0;
    assert_int_equal(breaker_pick(&sh, &cfg.agents[0], 0, &h, &retry), -1);
    assert_int_equal(retry, 1);
    sh.now_ms += 999;
    assert_true(refused());
    sh.now_ms += 1;
    breaker_hold_t trial = take(0);   /* half-open: the one trial */
    assert_true(trial.trial);
    assert_int_equal(gauge(0), 0);
    assert_true(refused());
    breaker_record(&sh, &trial, false);   /* its first event: closed */
    assert_false(refused());
    breaker_end(&sh, &trial);
    for (int i = 0; i < 10; i++)
        assert_false(refused());
    breaker_shard_free(&sh);
}

static void test_failed_trial_reopens(void **state)
{
    setup(1, 1, 1, CFG_BALANCE_ROUND_ROBIN);
    open_then_wait(1);
    attempt(1);   /* the trial fails */
    assert_int_equal(gauge(0), 1);
    assert_true(refused());
    breaker_shard_free(&sh);
}

/* The leak this module's breaker_end closes: a trial that ends with nothing
 * recorded (429, 4xx, no connection, the client left) used to keep its slot,
 * so the endpoint stayed half-open and refused every run for good. */
static void test_abandoned_trial_gives_its_slot_back(void **state)
{
    setup(1, 1, 1, CFG_BALANCE_ROUND_ROBIN);
    open_then_wait(1);
    for (int i = 0; i < 5; i++) {
        breaker_hold_t h = take(0);
        assert_true(h.trial);
        assert_true(refused());   /* its slot is taken while it runs */
        breaker_end(&sh, &h);     /* ... and given back when it ends without a word */
        breaker_end(&sh, &h);     /* a second end does nothing */
    }
    attempt(0);   /* a trial that works closes it */
    for (int i = 0; i < 5; i++)
        assert_false(refused());
    assert_int_equal(gauge(0), 0);
    breaker_shard_free(&sh);
}

static void test_recorded_trial_keeps_its_slot(void **state)
{
    setup(1, 1, 2, CFG_BALANCE_ROUND_ROBIN);
    open_then_wait(1);
    breaker_hold_t a = take(0);
    breaker_record(&sh, &a, false);
    breaker_end(&sh, &a);   /* counted: trial 1 of 2 used */
    breaker_hold_t b = take(0);
    assert_true(b.trial);
    assert_true(refused());   /* both slots used, one result missing */
    breaker_record(&sh, &b, false);
    breaker_end(&sh, &b);
    for (int i = 0; i < 5; i++)
        assert_false(refused());
    breaker_shard_free(&sh);
}

/* A trial admitted in one half-open period and ending in a later one must not
 * hand its slot to the later period (whose count started from zero). */
static void test_stale_trial_gives_nothing_back(void **state)
{
    setup(1, 1, 2, CFG_BALANCE_ROUND_ROBIN);
    open_then_wait(1);
    breaker_hold_t stale = take(0);   /* period 1, still running */
    attempt(1);                       /* the other trial fails: open again */
    assert_true(refused());
    sh.now_ms += 1000;
    breaker_hold_t c = take(0);       /* period 2 */
    breaker_end(&sh, &c);             /* abandoned: period 2 has both slots again */
    breaker_end(&sh, &stale);         /* from period 1: nothing to give back */
    breaker_hold_t d = take(0), e = take(0);
    assert_true(d.trial && e.trial);
    assert_true(refused());           /* two slots, not three */
    breaker_record(&sh, &d, false);
    breaker_record(&sh, &e, false);
    breaker_end(&sh, &d);
    breaker_end(&sh, &e);
    assert_false(refused());          /* closed */
    breaker_shard_free(&sh);
}

/* The endpoints change under a held attempt: the breaker starts closed, the
 * old attempt's outcome is not counted, and an old trial gives nothing back. */
static void test_adopt_resets_and_ignores_old_attempts(void **state)
{
    setup(1, 1, 1, CFG_BALANCE_ROUND_ROBIN);
    open_then_wait(1);
    breaker_hold_t trial = take(0);
    breaker_hold_t closed_era = BREAKER_HOLD_NONE;
    old_cfg = cfg;
    cfg.agents[0].endpoints[0].port = 9100;   /* re-pointed */
    breaker_adopt(&sh, &old_cfg);
    assert_int_equal(gauge(0), 0);
    closed_era = take(0);                     /* the new endpoint, closed */
    assert_false(closed_era.trial);
    breaker_record(&sh, &trial, true);        /* the old endpoint failing says nothing */
    breaker_end(&sh, &trial);
    assert_false(refused());
    assert_int_equal(gauge(0), 0);
    breaker_record(&sh, &closed_era, true);   /* a new one counts: failures 1 */
    breaker_end(&sh, &closed_era);
    assert_int_equal(gauge(0), 1);
    assert_true(refused());

    /* An unchanged agent keeps its state across a generation. */
    old_cfg = cfg;
    breaker_adopt(&sh, &old_cfg);
    assert_int_equal(gauge(0), 1);
    assert_true(refused());
    breaker_shard_free(&sh);
}

static void test_round_robin_and_tried(void **state)
{
    setup(3, 1000, 1, CFG_BALANCE_ROUND_ROBIN);
    for (int i = 0; i < 6; i++) {
        breaker_hold_t h = take(i % 3);
        breaker_end(&sh, &h);
    }
    /* A retry skips what it tried while something else is available. */
    breaker_hold_t h = BREAKER_HOLD_NONE;
    uint32_t retry;
    assert_int_equal(breaker_pick(&sh, &cfg.agents[0], 1u << 0 | 1u << 1, &h, &retry), 2);
    breaker_end(&sh, &h);
    assert_int_equal(breaker_pick(&sh, &cfg.agents[0], 7, &h, &retry), 0);   /* all tried: any */
    breaker_end(&sh, &h);
    breaker_shard_free(&sh);
}

static void test_least_outstanding(void **state)
{
    setup(2, 1000, 1, CFG_BALANCE_LEAST_OUTSTANDING);
    breaker_hold_t a = take(0), b = take(1), c = take(0);
    breaker_end(&sh, &a);
    breaker_end(&sh, &c);   /* 0 holds nothing now, 1 one attempt */
    breaker_hold_t d = take(0);   /* fewer held */
    breaker_hold_t e = take(1);   /* a tie: round robin's order */
    breaker_end(&sh, &b);
    breaker_end(&sh, &d);
    breaker_end(&sh, &e);
    breaker_shard_free(&sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_half_open_closed),
        cmocka_unit_test(test_failed_trial_reopens),
        cmocka_unit_test(test_abandoned_trial_gives_its_slot_back),
        cmocka_unit_test(test_recorded_trial_keeps_its_slot),
        cmocka_unit_test(test_stale_trial_gives_nothing_back),
        cmocka_unit_test(test_adopt_resets_and_ignores_old_attempts),
        cmocka_unit_test(test_round_robin_and_tried),
        cmocka_unit_test(test_least_outstanding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
