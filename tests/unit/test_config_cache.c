/* Unit tests for core/config's cache settings: agents.<name>.cache (a proxy
 * agent's ttl, limits, pacing, coalescing, ignored fields) and cache.max_bytes
 * (core/cache.c's section). */
#include "tests/unit/config_fx.h"

#include "core/cache.h"

/* agents.<name>.cache and cache.max_bytes: defaults, values, errors naming line and key */
static void test_cache_config(void **state)
{
    struct fx *f = *state;
    const cfg_agent_t *a = &f->c.agents[0];

    assert_int_equal(load_proxy(f, ""), 0);
    assert_int_equal(a->cache_ttl_ms, 0);
    assert_int_equal(a->cache_max_entry, 1u << 20);
    assert_int_equal(a->cache_max_lag, 8u << 20);
    assert_false(a->cache_pace);
    assert_true(a->cache_coalesce);
    assert_false(a->cache_shared);
    assert_int_equal(a->cache_shared_max, 512u << 10);
    assert_int_equal(a->cache_shared_wait_ms, 0);
    assert_int_equal(a->n_cache_ignore, 3);
    assert_string_equal(a->cache_ignore[2], "parentRunId");
    assert_int_equal(cache_conf(&f->c)->max_bytes, 64u << 20);

    assert_int_equal(load_proxy(f, "    cache: {ttl: 5m, max_entry: 64KiB, max_lag: 2MiB, pace: true, coalesce: false,\n"
                                   "            ignore_fields: [threadId, \"messages[].id\", forwardedProps.session]}\n"), 0);
    assert_int_equal(a->cache_ttl_ms, 300000);
    assert_int_equal(a->cache_max_entry, 65536);
    assert_int_equal(a->cache_max_lag, 2u << 20);
    assert_true(a->cache_pace);
    assert_false(a->cache_coalesce);
    assert_int_equal(a->n_cache_ignore, 3);
    assert_string_equal(a->cache_ignore[1], "messages[].id");
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), 0);
    assert_int_equal(load_proxy(f, "    cache: {ttl: 1s, shared: true, shared_max_bytes: 64KiB, shared_wait: 2s}\n"), 0);
    assert_true(a->cache_shared);
    assert_int_equal(a->cache_shared_max, 65536);
    assert_int_equal(a->cache_shared_wait_ms, 2000);
    assert_int_equal(load_proxy(f, "    cache: {ttl: 1s, shared_wait: 11m}\n"), -EINVAL);
    assert_int_equal(load_proxy(f, "    cache: {ttl: 1s, shared_max_bytes: 10}\n"), -EINVAL);
    assert_int_equal(load_proxy(f, "    cache: {ttl: 1s, ignore_fields: []}\n"), 0);
    assert_int_equal(a->n_cache_ignore, 0);

    assert_int_equal(load_proxy(f, "    cache: {ttl: 1s, bogus: 1}\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.cache.bogus: unknown key (expected one of: ttl, max_entry, max_lag, pace, coalesce, "
                        "shared, shared_max_bytes, shared_wait, ignore_fields)");
    assert_int_equal(load_proxy(f, "    cache: {ttl: soon}\n"), -EINVAL);
    assert_err_at(f, 5, "agents.lg.cache.ttl: expected a duration with a unit (e.g. 10s, 250ms)");
    assert_int_equal(load_proxy(f, "    cache:\n      ignore_fields: [a..b]\n"), -EINVAL);
    assert_err_at(f, 6, "agents.lg.cache.ignore_fields[0]: expected a field path like threadId, "
                        "forwardedProps.session or messages[].id");
    assert_int_equal(load(f, "agents:\n  e:\n    type: echo\n    cache: {ttl: 1s}\n"), -EINVAL);
    assert_err_at(f, 4, "agents.e.cache: only for type: proxy");
    /* only validated runs are stored */
    assert_int_equal(load_proxy(f, "    validation: pass\n    cache: {ttl: 1s}\n"), 0);
    assert_int_equal(cfg_validate(&f->c, f->err, sizeof f->err), -EINVAL);
    assert_non_null(strstr(f->err, "agents.lg.cache.ttl: caching needs validation: strict"));
    assert_int_equal(load(f, "cache: {max_bytes: 1GiB}\n"), 0);
    assert_int_equal(cache_conf(&f->c)->max_bytes, 1u << 30);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_cache_config),
    };
#undef T
    return cmocka_run_group_tests_name("config_cache", tests, NULL, NULL);
}
