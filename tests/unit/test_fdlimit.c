/* fdlimit: the start-up budget against RLIMIT_NOFILE (raised to the hard
 * limit, max_connections lowered only when even that does not fit) and the
 * admin listener's reserve at the top of the limit. Sets this process's own
 * limit, which is why it is a test binary of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <cmocka.h>

#include "core/config.h"
#include "net/fdlimit.h"
#include "net/modules.h"

static cfg_t cfg;

static void set_nofile(rlim_t soft, rlim_t hard)
{
    struct rlimit rl = {soft, hard};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static struct rlimit g_start;

static int setup(void **state)
{
    (void)state;
    cfg_defaults(&cfg);
    g_fdlimit_reserve_from = INT32_MAX;
    return 0;
}

static void test_arithmetic(void **state)
{
    (void)state;
    /* 16 + 4 per shard + the reserve (32, or an eighth of a small limit), then per connection */
    assert_int_equal(fdlimit_reserve_of(256), 32);
    assert_int_equal(fdlimit_reserve_of(64), 8);
    assert_int_equal(fdlimit_reserve_of(1 << 20), 32);
    assert_int_equal(fdlimit_needed(256, 2, 100, 1), 16 + 8 + 32 + 200);
    assert_int_equal(fdlimit_needed(4096, 4, 100, 2), 16 + 16 + 32 + 800);
    assert_int_equal(fdlimit_fitting(256, 2, 1), 100);
    assert_int_equal(fdlimit_fitting(256, 2, 2), 50);
    assert_true(fdlimit_needed(256, 2, fdlimit_fitting(256, 2, 1), 1) <= 256);
    assert_true(fdlimit_needed(256, 2, fdlimit_fitting(256, 2, 1) + 1, 1) > 256);
    assert_int_equal(fdlimit_fitting(40, 8, 1), 1);   /* nothing fits: still one */
}

/* The soft limit is too low and the hard one is high enough: raised, nothing lowered. */
static void test_raises_soft_to_hard(void **state)
{
    (void)state;
    if (g_start.rlim_max < 4096)
        skip();   /* the environment's hard limit leaves nothing to raise to */
    set_nofile(256, g_start.rlim_max);
    cfg.max_connections = 1000;
    fdlimit_plan_t p;
    assert_int_equal(fdlimit_fit(&cfg, 2, &p), 0);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    assert_int_equal(rl.rlim_cur, g_start.rlim_max);
    assert_int_equal(p.was, 256);
    assert_int_equal(p.soft, g_start.rlim_max);
    assert_int_equal(cfg.max_connections, 1000);
    assert_int_equal(cfg.max_connections_set, 0);
    assert_int_equal(g_fdlimit_reserve_from, (int)(rl.rlim_cur - 32));
}

/* Hard limit too low: max_connections comes down to what fits, the configured value kept. */
static void test_lowers_when_hard_is_too_low(void **state)
{
    (void)state;
    set_nofile(256, 256);
    fdlimit_plan_t p;
    assert_int_equal(fdlimit_fit(&cfg, 2, &p), 0);
    assert_int_equal(p.soft, 256);
    assert_int_equal(p.configured, 10000);
    assert_int_equal(cfg.max_connections, 100);
    assert_int_equal(p.max_connections, 100);
    assert_int_equal(cfg.max_connections_set, 10000);
    assert_int_equal(p.per_conn, 1);
    assert_int_equal(g_fdlimit_reserve_from, 256 - 32);
    assert_true(fdlimit_reserved(224));
    assert_false(fdlimit_reserved(223));
}

/* A proxy agent counts an upstream connection per client connection. */
static void test_proxy_counts_two(void **state)
{
    (void)state;
    set_nofile(256, 256);
    cfg.agents[cfg.n_agents].kind = CFG_AGENT_PROXY;
    cfg.n_agents++;
    fdlimit_plan_t p;
    assert_int_equal(fdlimit_fit(&cfg, 2, &p), 0);
    assert_int_equal(p.per_conn, 2);
    assert_int_equal(cfg.max_connections, 50);
}

int main(void)
{
    modules_register();
    getrlimit(RLIMIT_NOFILE, &g_start);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_arithmetic, setup),
        cmocka_unit_test_setup(test_raises_soft_to_hard, setup),
        cmocka_unit_test_setup(test_lowers_when_hard_is_too_low, setup),   /* lowers the hard limit: last but one */
        cmocka_unit_test_setup(test_proxy_counts_two, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
