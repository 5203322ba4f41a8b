/* Unit tests for core/cfggen.c: agents keep their slot by name across reloads
 * (kept, removed, added, re-added, the 64-name bound), start-only settings are
 * kept and listed, endpoint changes are detected, and a replaced generation is
 * freed only after every shard adopted its successor, no run holds it and each
 * shard took one more loop turn (ASan would flag a use after an early free). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/cache.h"
#include "core/cfggen.h"
#include "core/qsbr.h"
#include "core/shard.h"
#include "net/access_conf.h"
#include "net/modules.h"
#include "net/upstream.h"
#include "net/ws.h"

static void add_agent(cfg_t *c, const char *name, cfg_agent_kind_t kind)
{
    cfg_agent_t *a = &c->agents[c->n_agents];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->kind = kind;
    a->slot = (uint8_t)c->n_agents;
    if (kind == CFG_AGENT_PROXY) {
        snprintf(a->endpoints[0].host, sizeof a->endpoints[0].host, "127.0.0.1");
        a->endpoints[0].port = 9000;
        snprintf(a->endpoints[0].path, sizeof a->endpoints[0].path, "/agent");
        a->n_endpoints = 1;
    }
    c->n_agents++;
}

static void names(cfg_t *c, const char *const *list, size_t n)
{
    cfg_defaults(c);
    c->n_agents = 0;
    for (size_t i = 0; i < n; i++)
        add_agent(c, list[i], CFG_AGENT_ECHO);
}

static cfg_t running, loaded, out;

static void test_slots_follow_names(void **state)
{
    (void)state;
    char restart[256], err[256];
    names(&running, (const char *[]){"echo", "a", "b"}, 3);
    names(&loaded, (const char *[]){"c", "b", "echo"}, 3);   /* a removed, c new, order changed */
    loaded.agents[1].token_interval_ms = 7;                   /* b changed */
    assert_int_equal(cfggen_prepare(&running, &loaded, &out, restart, sizeof restart, err, sizeof err), 0);
    assert_int_equal(out.n_agents, 4);
    assert_string_equal(out.agents[0].name, "echo");
    assert_false(out.agents[0].removed);
    assert_string_equal(out.agents[1].name, "a");
    assert_true(out.agents[1].removed);
    assert_string_equal(out.agents[2].name, "b");
    assert_int_equal(out.agents[2].token_interval_ms, 7);
    assert_string_equal(out.agents[3].name, "c");
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(out.agents[i].slot, i);
    assert_null(cfg_find_agent(&out, "a", 1));                 /* removed: no new runs */
    assert_ptr_equal(cfg_find_agent(&out, "c", 1), &out.agents[3]);
    assert_string_equal(restart, "");

    /* a comes back: it gets its old slot, c keeps its own */
    memcpy(&running, &out, sizeof out);
    names(&loaded, (const char *[]){"a", "c"}, 2);
    assert_int_equal(cfggen_prepare(&running, &loaded, &out, restart, sizeof restart, err, sizeof err), 0);
    assert_int_equal(out.n_agents, 4);
    assert_false(out.agents[1].removed);
    assert_true(out.agents[0].removed);
    assert_true(out.agents[2].removed);
    assert_false(out.agents[3].removed);
    char why[CFG_ERR_MAX];
    assert_int_equal(cfg_validate(&out, why, sizeof why), 0);

    /* every slot removed but none live: cfg_validate refuses */
    for (unsigned i = 0; i < 4; i++)
        out.agents[i].removed = true;
    assert_int_not_equal(cfg_validate(&out, why, sizeof why), 0);
    assert_non_null(strstr(why, "at least one agent"));
}

static void test_name_bound(void **state)
{
    (void)state;
    char restart[256], err[256], nm[16];
    cfg_defaults(&running);
    running.n_agents = 0;
    for (unsigned i = 0; i < CFG_MAX_AGENTS; i++) {
        snprintf(nm, sizeof nm, "a%u", i);
        add_agent(&running, nm, CFG_AGENT_ECHO);
    }
    names(&loaded, (const char *[]){"a0", "fresh"}, 2);
    assert_int_equal(cfggen_prepare(&running, &loaded, &out, restart, sizeof restart, err, sizeof err), -ENOSPC);
    assert_non_null(strstr(err, "fresh"));
    assert_non_null(strstr(err, "restart"));
    names(&loaded, (const char *[]){"a63", "a1"}, 2);   /* known names only: fine */
    assert_int_equal(cfggen_prepare(&running, &loaded, &out, restart, sizeof restart, err, sizeof err), 0);
    assert_int_equal(out.n_agents, CFG_MAX_AGENTS);
}

static void test_start_only_kept(void **state)
{
    (void)state;
    char restart[256], err[256];
    names(&running, (const char *[]){"echo"}, 1);
    names(&loaded, (const char *[]){"echo"}, 1);
    snprintf(loaded.listen, sizeof loaded.listen, "0.0.0.0:1234");
    loaded.max_connections = running.max_connections + 1;
    loaded.heartbeat_ms = running.heartbeat_ms + 1;   /* read per request: applies */
    assert_int_equal(cfggen_prepare(&running, &loaded, &out, restart, sizeof restart, err, sizeof err), 0);
    assert_string_equal(restart, "listen,limits.max_connections");
    assert_string_equal(out.listen, running.listen);
    assert_int_equal(out.max_connections, running.max_connections);
    assert_int_equal(out.heartbeat_ms, running.heartbeat_ms + 1);

    /* a registered section's start-only keys (cfg_section_t.restart) come after
     * core's, in rank order; its other keys apply */
    names(&loaded, (const char *[]){"echo"}, 1);
    loaded.shards = running.shards + 1;
    cache_conf_mut(&loaded)->max_bytes = cache_conf(&running)->max_bytes + 1;
    ups_conf_mut(&loaded)->dns_refresh_ms = ups_conf(&running)->dns_refresh_ms + 1;
    ws_conf_mut(&loaded)->max_runs = ws_conf(&running)->max_runs + 1;
    access_conf_mut(&loaded)->rl_table_size = access_conf(&running)->rl_table_size * 2;
    loaded.otlp_interval_ms = running.otlp_interval_ms + 1;
    loaded.otlp_max_batch = running.otlp_max_batch + 1;
    assert_int_equal(cfggen_prepare(&running, &loaded, &out, restart, sizeof restart, err, sizeof err), 0);
    /* named as in the file, so the reload line points at real keys */
    assert_string_equal(restart, "shards,trace.export_interval,trace.max_batch,upstream.dns_refresh,"
                                 "cache.max_bytes,rate_limit.table_size");
    assert_int_equal(access_conf(&out)->rl_table_size, access_conf(&running)->rl_table_size);
    assert_int_equal(out.otlp_max_batch, running.otlp_max_batch);
    assert_int_equal(out.shards, running.shards);
    assert_int_equal(cache_conf(&out)->max_bytes, cache_conf(&running)->max_bytes);
    assert_int_equal(ups_conf(&out)->dns_refresh_ms, ups_conf(&running)->dns_refresh_ms);
    assert_int_equal(ws_conf(&out)->max_runs, ws_conf(&running)->max_runs + 1);
}

/* max_connections lowered at start to fit the descriptor limit (net/fdlimit.c):
 * a reload of the same file keeps the lowered value and names nothing; a
 * changed value is a start-only change like any other. */
static void test_lowered_max_connections(void **state)
{
    (void)state;
    char restart[256], err[256];
    names(&running, (const char *[]){"echo"}, 1);
    loaded = running;   /* the same file as the running one */
    running.max_connections = 100;
    running.max_connections_set = loaded.max_connections = 10000;
    assert_int_equal(cfggen_prepare(&running, &loaded, &out, restart, sizeof restart, err, sizeof err), 0);
    assert_string_equal(restart, "");
    assert_int_equal(out.max_connections, 100);
    assert_int_equal(out.max_connections_set, 10000);

    loaded.max_connections = 20000;
    assert_int_equal(cfggen_prepare(&running, &loaded, &out, restart, sizeof restart, err, sizeof err), 0);
    assert_string_equal(restart, "limits.max_connections");
    assert_int_equal(out.max_connections, 100);
    assert_int_equal(out.max_connections_set, 10000);
    running.max_connections_set = 0;
    running.max_connections = loaded.max_connections;
}

static void test_endpoints_changed(void **state)
{
    (void)state;
    cfg_t *c = &running;
    cfg_defaults(c);
    c->n_agents = 0;
    add_agent(c, "p", CFG_AGENT_PROXY);
    cfg_agent_t a = c->agents[0], b = a;
    assert_false(cfggen_endpoints_changed(&a, &b));
    b.retry_attempts = 9;   /* not an endpoint */
    assert_false(cfggen_endpoints_changed(&a, &b));
    b = a;
    b.endpoints[0].port = 9001;
    assert_true(cfggen_endpoints_changed(&a, &b));
    b = a;
    snprintf(b.endpoints[0].path, sizeof b.endpoints[0].path, "/other");
    assert_true(cfggen_endpoints_changed(&a, &b));
    b = a;
    b.n_endpoints = 2;
    assert_true(cfggen_endpoints_changed(&a, &b));
    b = a;
    b.kind = CFG_AGENT_ECHO;
    assert_true(cfggen_endpoints_changed(&a, &b));
}

/* What a shard's loop does at the top of each turn (core/shard.c). */
static void turn(shard_t *sh)
{
    qsbr_quiescent(sh->id);
    cfggen_shard_turn(sh);
}

/* Two fake shards (no ring: a turn's top only needs id and cfg). */
static void test_reclaim(void **state)
{
    (void)state;
    static shard_t sh[2];
    names(&running, (const char *[]){"echo"}, 1);
    assert_int_equal(qsbr_init(2), 0);
    const cfg_t *g1 = cfggen_init(&running, 2);
    assert_non_null(g1);
    assert_int_equal(g1->generation, 1);
    for (int i = 0; i < 2; i++) {
        memset(&sh[i], 0, sizeof sh[i]);
        sh[i].id = (unsigned)i;
        sh[i].cfg = g1;
    }
    cfggen_hold(&sh[0], g1);   /* a run on shard 0 started on generation 1 */
    const cfg_t *kept = g1;
    const cfg_agent_t *agent = &g1->agents[0];

    names(&loaded, (const char *[]){"echo"}, 1);
    loaded.heartbeat_ms = 1;
    assert_int_equal(cfggen_publish(&loaded), 0);
    const cfg_t *g2 = cfggen_current();
    assert_int_equal(g2->generation, 2);
    assert_int_equal(cfggen_retained(), 1);

    for (int round = 0; round < 4; round++) {   /* shard 1 adopts, shard 0 does not yet */
        turn(&sh[1]);
        cfggen_reclaim();
    }
    assert_ptr_equal(sh[1].cfg, g2);
    assert_int_equal(cfggen_retained(), 1);
    for (int round = 0; round < 4; round++) {   /* both adopted, the run still holds g1 */
        turn(&sh[0]);
        turn(&sh[1]);
        cfggen_reclaim();
    }
    assert_int_equal(cfggen_retained(), 1);
    assert_string_equal(agent->name, "echo");   /* still readable: ASan would catch a free */
    cfggen_release(&sh[0], kept);                /* the run ends */
    cfggen_reclaim();                            /* seen unused: a candidate, not freed */
    assert_int_equal(cfggen_retained(), 1);
    cfggen_reclaim();                            /* no shard turned since */
    assert_int_equal(cfggen_retained(), 1);
    turn(&sh[0]);
    cfggen_reclaim();                            /* shard 1 has not turned yet */
    assert_int_equal(cfggen_retained(), 1);
    turn(&sh[1]);
    cfggen_reclaim();
    assert_int_equal(cfggen_retained(), 0);
    cfggen_shutdown();
    qsbr_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots_follow_names),
        cmocka_unit_test(test_name_bound),
        cmocka_unit_test(test_start_only_kept),
        cmocka_unit_test(test_lowered_max_connections),
        cmocka_unit_test(test_endpoints_changed),
        cmocka_unit_test(test_reclaim),
    };
    modules_register();   /* the sections cfg_defaults lays out, as core/main.c does */
    return cmocka_run_group_tests_name("cfggen", tests, NULL, NULL);
}
