/* Unit tests for core/config's registry of sections (core/config_sect.c): a
 * section of the test's own (rows in its own struct, every hook) goes through
 * defaults, the file, the environment, cfg_validate, --help and a reload's
 * start-only keys like core's; registering twice changes nothing; and the
 * sections modules register (ws, upstream, cache, access) read and report as
 * the keys did when they were cfg_t's fields. */
#include "tests/unit/config_fx.h"

#include "core/cache.h"
#include "core/cfggen.h"
#include "core/config_sect.h"
#include "net/access_conf.h"
#include "net/rlglobal.h"
#include "net/upstream.h"
#include "net/ws.h"

/* ---- a section of the test's own ---- */

typedef struct widget_conf {
    uint32_t size;              /* widget.size */
    uint32_t spin_ms;           /* widget.spin, start-only */
    bool     loud;              /* widget.loud */
    char     tags[4][16];       /* widget.tags: a list, the load hook's */
    uint32_t n_tags;
    uint32_t env_calls;         /* the env hook ran */
} widget_conf_t;

#define W(field) offsetof(widget_conf_t, field)
static const struct cfg_setting widget_rows[] = {
    { "widget", "size", "AGATE_TEST_WIDGET_SIZE", "2KiB",  CFG_K_SIZE,     1, 1u << 20,   W(size) },
    { "widget", "spin", NULL,                     "250ms", CFG_K_DURATION, 0, UINT32_MAX, W(spin_ms) },
    { "widget", "loud", NULL,                     "false", CFG_K_BOOL,     0, 0,          W(loud) },
};
#undef W
#define N_WIDGET_ROWS (sizeof widget_rows / sizeof widget_rows[0])

static void widget_defaults(void *conf)
{
    widget_conf_t *w = conf;
    snprintf(w->tags[0], sizeof w->tags[0], "plain");
    w->n_tags = 1;
}

/* widget: a mapping of rows, and tags: a list the rows cannot express */
static int widget_load(const struct cfg_loader *ld, const char *key, const yaml_node_t *k, const yaml_node_t *v,
                       void *conf)
{
    widget_conf_t *w = conf;
    char name[CFG_KEY_MAX];

    if (cfg_map_check(ld, k, v, key, "settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *sub = cfg_key_text(ld, p);
        cfg_join(name, sizeof name, key, sub);
        if (!strcmp(sub, "tags")) {
            if (vn->type != YAML_SEQUENCE_NODE)
                return cfg_load_fail(ld, kn, name, "expected a list, not %s", cfg_node_kind(vn));
            w->n_tags = 0;
            for (yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
                const char *t;
                if (w->n_tags == 4)
                    return cfg_load_fail(ld, kn, name, "at most 4 tags");
                if (cfg_node_text(ld, kn, cfg_node_at(ld, *it), name, &t))
                    return -EINVAL;
                snprintf(w->tags[w->n_tags++], sizeof w->tags[0], "%s", t);
            }
            continue;
        }
        const struct cfg_setting *s = cfg_find_setting(widget_rows, N_WIDGET_ROWS, "widget", sub);
        if (!s)
            return cfg_unknown_key(ld, kn, name, "size, spin, loud, tags");
        if (cfg_load_setting(ld, s, kn, vn, w, name))
            return -EINVAL;
    }
    return 0;
}

static int widget_env(void *conf, char *err, size_t errlen)
{
    widget_conf_t *w = conf;
    const char *v = getenv("AGATE_TEST_WIDGET_LOUD");
    w->env_calls++;
    if (v && !strcmp(v, "bad")) {
        snprintf(err, errlen, "AGATE_TEST_WIDGET_LOUD: bad");
        return -EINVAL;
    }
    if (v && *v)
        w->loud = true;
    return 0;
}

static int widget_validate(const cfg_t *c, const void *conf, char *key, size_t keylen, char *why, size_t whylen)
{
    const widget_conf_t *w = conf;
    if (w->loud && w->size > 4096) {
        snprintf(key, keylen, "widget.loud");
        snprintf(why, whylen, "a loud widget is at most 4KiB");
        return -EINVAL;
    }
    return 0;
}

static size_t widget_help(char *out, size_t cap)
{
    int n = snprintf(out, cap, "  %-26s %-26s default %s\n", "AGATE_TEST_WIDGET_LOUD", "widget.loud", "false");
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static const char *const widget_keys[] = { "widget", NULL };
static const char *const widget_restart[] = { "widget.spin", NULL };

static cfg_section_t widget_section = {
    .name = "widget", .keys = widget_keys, .rows = widget_rows, .n_rows = N_WIDGET_ROWS,
    .size = sizeof(widget_conf_t), .rank = 45, .restart = widget_restart,
    .defaults = widget_defaults, .load = widget_load, .env = widget_env, .validate = widget_validate,
    .help = widget_help,
};

static const widget_conf_t *widget(const cfg_t *c) { return cfg_sect(c, &widget_section); }
static widget_conf_t *widget_mut(cfg_t *c) { return cfg_sect_mut(c, &widget_section); }

static int widget_setup(void **state)
{
    unsetenv("AGATE_TEST_WIDGET_SIZE");
    unsetenv("AGATE_TEST_WIDGET_LOUD");
    return setup(state);
}

/* ---- the engine ---- */

static void test_section_defaults_and_place(void **state)
{
    struct fx *f = *state;
    const widget_conf_t *w = widget(&f->c);

    assert_int_equal(w->size, 2048);
    assert_int_equal(w->spin_ms, 250);
    assert_false(w->loud);
    assert_int_equal(w->n_tags, 1);
    assert_string_equal(w->tags[0], "plain");
    assert_int_equal(widget_section.off % CFG_SECT_ALIGN, 0);
    assert_true(widget_section.off + sizeof(widget_conf_t) <= CFG_SECT_BYTES);

    /* registering again is harmless: same place, same defaults, one key owner */
    size_t off = widget_section.off;
    unsigned id = widget_section.id;
    cfg_section_register(&widget_section);
    modules_register();
    assert_int_equal(widget_section.off, off);
    assert_int_equal(widget_section.id, id);
    cfg_t *again = malloc(sizeof *again);
    assert_non_null(again);
    cfg_defaults(again);
    assert_int_equal(again->n_sect, f->c.n_sect);
    assert_int_equal(widget(again)->size, 2048);
    free(again);
}

static void test_section_file(void **state)
{
    struct fx *f = *state;

    assert_int_equal(load(f, "widget:\n  size: 3KiB\n  tags: [a, b]\n"), 0);
    assert_int_equal(widget(&f->c)->size, 3072);
    assert_int_equal(widget(&f->c)->n_tags, 2);
    assert_string_equal(widget(&f->c)->tags[1], "b");
    assert_int_equal(widget(&f->c)->spin_ms, 250);

    /* the hook's messages and the rows' read like core's */
    assert_int_equal(load(f, "shards: 1\nwidget:\n  size: huge\n"), -EINVAL);
    assert_err_at(f, 3, "widget.size: " SIZE_SYNTAX);
    assert_int_equal(load(f, "widget:\n  colour: red\n"), -EINVAL);
    assert_err_at(f, 2, "widget.colour: unknown key (expected one of: size, spin, loud, tags)");
    assert_int_equal(widget(&f->c)->size, 3072);   /* all or nothing */

    /* listed among the top-level keys at its rank (45: after ws, before agents) */
    assert_int_equal(load(f, "widgets: {}\n"), -EINVAL);
    assert_err_at(f, 1, "widgets: unknown key (expected one of: listen, admin_listen, shards, engine, demo, limits, "
                        "stream, log, metrics, trace, upstream, cache, redis, ws, resume, widget, agents, auth, cors, "
                        "security_headers, rate_limit)");
}

static void test_section_env_validate_help(void **state)
{
    struct fx *f = *state;
    cfg_t *c = &f->c;
    uint32_t calls = widget(c)->env_calls;

    setenv("AGATE_TEST_WIDGET_SIZE", "8KiB", 1);
    assert_int_equal(cfg_apply_env(c, f->err, sizeof f->err), 0);
    assert_int_equal(widget(c)->size, 8192);
    assert_int_equal(widget(c)->env_calls, calls + 1);
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);

    setenv("AGATE_TEST_WIDGET_SIZE", "2GiB", 1);
    assert_int_equal(cfg_apply_env(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_TEST_WIDGET_SIZE: too large: at most 1048576 bytes");
    unsetenv("AGATE_TEST_WIDGET_SIZE");
    setenv("AGATE_TEST_WIDGET_LOUD", "bad", 1);
    assert_int_equal(cfg_apply_env(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "AGATE_TEST_WIDGET_LOUD: bad");
    assert_int_equal(widget(c)->size, 8192);   /* all or nothing */

    /* the validate hook runs after the rows' checks */
    widget_mut(c)->loud = true;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "widget.loud: a loud widget is at most 4KiB");
    widget_mut(c)->size = 0;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    assert_string_equal(f->err, "widget.size: must be at least 1 byte");

    const char *help = cfg_env_help();
    const char *size = strstr(help, "AGATE_TEST_WIDGET_SIZE     widget.size                default 2KiB\n");
    const char *loud = strstr(help, "AGATE_TEST_WIDGET_LOUD     widget.loud                default false\n");
    assert_non_null(size);
    assert_non_null(loud);
    assert_true(size < loud);                                       /* rows, then the hook's lines */
    assert_true(strstr(help, "AGATE_WS_MAX_RUNS") < size);          /* rank 40 before 45 */
    assert_true(size < strstr(help, "AGATE_AUTH_ANONYMOUS"));       /* before access, rank 60 */
}

static void test_section_start_only(void **state)
{
    struct fx *f = *state;
    char restart[256] = "", err[256];
    cfg_t *loaded = malloc(sizeof *loaded), *out = malloc(sizeof *out);

    assert_non_null(loaded);
    assert_non_null(out);
    memcpy(loaded, &f->c, sizeof *loaded);
    widget_mut(loaded)->spin_ms = 999;
    widget_mut(loaded)->size = 4096;
    assert_int_equal(cfggen_prepare(&f->c, loaded, out, restart, sizeof restart, err, sizeof err), 0);
    assert_string_equal(restart, "widget.spin");
    assert_int_equal(widget(out)->spin_ms, 250);    /* kept */
    assert_int_equal(widget(out)->size, 4096);      /* applies */
    free(loaded);
    free(out);
}

/* ---- the modules' sections: the same keys, variables and defaults as before ---- */

static void test_module_sections(void **state)
{
    struct fx *f = *state;
    cfg_t *c = &f->c;

    assert_int_equal(ws_conf(c)->max_message_bytes, 1u << 20);
    assert_int_equal(ws_conf(c)->ping_interval_ms, 30000);
    assert_int_equal(ws_conf(c)->pong_timeout_ms, 10000);
    assert_int_equal(ws_conf(c)->stall_timeout_ms, 30000);
    assert_int_equal(ws_conf(c)->max_runs, 16);
    assert_int_equal(ups_conf(c)->dns_refresh_ms, 30000);
    assert_int_equal(cache_conf(c)->max_bytes, 64u << 20);
    assert_true(access_conf(c)->anonymous);
    assert_true(access_conf(c)->security_headers);
    assert_int_equal(access_conf(c)->rl_table_size, 65536);
    assert_string_equal(access_conf(c)->cors_methods, "GET, POST, OPTIONS");

    assert_int_equal(load(f, "ws:\n  max_message: 64KiB\n  ping_interval: 0s\n  max_runs: 3\n"
                             "upstream: {dns_refresh: 200ms}\nsecurity_headers: off\n"
                             "auth: {anonymous: false}\n"), 0);
    assert_int_equal(ws_conf(c)->max_message_bytes, 65536);
    assert_int_equal(ws_conf(c)->ping_interval_ms, 0);
    assert_int_equal(ws_conf(c)->max_runs, 3);
    assert_int_equal(ups_conf(c)->dns_refresh_ms, 200);
    assert_false(access_conf(c)->security_headers);
    assert_false(access_conf(c)->anonymous);

    /* docs/CONFIG.md: kid "" is a key for tokens without kid (it used to stop start-up
     * with "no value given"), and the per-agent override lives under auth.agents */
    assert_int_equal(load(f, "auth:\n  jwt:\n    keys:\n      - {kid: \"\", secret: 0123456789abcdef}\n"
                             "  agents:\n    research: {anonymous: false, scopes: [team]}\n"), 0);
    assert_int_equal(access_conf(c)->n_jwt_keys, 1);
    assert_string_equal(access_conf(c)->jwt_keys[0].kid, "");
    assert_int_equal(access_conf(c)->jwt_keys[0].secret_len, 16);
    assert_int_equal(access_conf(c)->n_agents, 1);
    assert_string_equal(access_conf(c)->agents[0].agent, "research");
    assert_int_equal(access_conf(c)->agents[0].anonymous, 0);
    assert_int_equal(load(f, "agents:\n  research:\n    type: echo\n    anonymous: false\n"), -EINVAL);
    assert_err_starts(f, 4, "agents.research.anonymous: unknown key");

    assert_int_equal(load(f, "ws:\n  max_runs: 0\n"), -EINVAL);
    assert_err_at(f, 2, "ws.max_runs: expected a whole number from 1 to 1024");
    assert_int_equal(load(f, "ws:\n  ping: 1s\n"), -EINVAL);
    assert_err_at(f, 2, "ws.ping: unknown key (expected one of: max_message, ping_interval, pong_timeout, "
                        "stall_timeout, max_runs)");
    assert_int_equal(load(f, "upstream:\n  dns_refresh: 25h\n"), -EINVAL);
    assert_err_at(f, 2, "upstream.dns_refresh: too long: at most 86400000ms");

    setenv("AGATE_WS_MAX_RUNS", "5", 1);
    setenv("AGATE_CACHE_MAX_BYTES", "1MiB", 1);
    assert_int_equal(cfg_apply_env(c, f->err, sizeof f->err), 0);
    unsetenv("AGATE_WS_MAX_RUNS");
    unsetenv("AGATE_CACHE_MAX_BYTES");
    assert_int_equal(ws_conf(c)->max_runs, 5);
    assert_int_equal(cache_conf(c)->max_bytes, 1u << 20);

    char want[CFG_ERR_MAX + 64];
    ws_conf_mut(c)->pong_timeout_ms = 0;
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    snprintf(want, sizeof want, "%s: ws.pong_timeout: must be more than 0 (e.g. 10s)", f->path);
    assert_string_equal(f->err, want);
}

/* Global rate-limit rules (net/rlglobal.c): their keys, and that one needs Redis. */
static void test_global_rules(void **state)
{
    struct fx *f = *state;
    cfg_t *c = &f->c;
    char want[CFG_ERR_MAX + 160];

    assert_int_equal(access_conf(c)->rl_fleet_size, 1);
    assert_int_equal(access_conf(c)->rl_slot_ttl_ms, 10000);
    /* without redis.address a global rule is refused, not silently per pod */
    assert_int_equal(load(f, "rate_limit:\n  rules:\n    - {name: a, per_minute: 2, global: true}\n"), 0);
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), -EINVAL);
    snprintf(want, sizeof want, "%s: rate_limit.rules[0].global: a global rule is shared through Redis: "
             "set redis.address (or make the rule local)", f->path);
    assert_string_equal(f->err, want);

    int rc = load(f, "redis: {address: 127.0.0.1:6379}\n"
                             "rate_limit:\n  fleet_size: 3\n  global_slot_ttl: 4s\n  rules:\n"
                             "    - {name: a, key: api_key, per_minute: 20, global: true, on_redis_down: deny}\n"
                             "    - {name: b, per_second: 5, global: true}\n"
                             "    - {name: c, per_second: 5, on_redis_down: allow}\n");
    if (rc)
        print_message("%s\n", f->err);
    assert_int_equal(rc, 0);
    const access_conf_t *a = access_conf(c);
    assert_int_equal(a->rl_fleet_size, 3);
    assert_int_equal(a->rl_slot_ttl_ms, 4000);
    assert_true(a->rules[0].global);
    assert_int_equal(a->rules[0].on_redis_down, RLG_DOWN_DENY);
    assert_true(a->rules[1].global);
    assert_int_equal(a->rules[1].on_redis_down, RLG_DOWN_LOCAL);
    assert_false(a->rules[2].global);
    assert_int_equal(a->rules[2].on_redis_down, RLG_DOWN_ALLOW);
    assert_int_equal(cfg_validate(c, f->err, sizeof f->err), 0);

    assert_int_equal(load(f, "rate_limit:\n  rules:\n    - {name: a, per_minute: 2, on_redis_down: sideways}\n"),
                     -EINVAL);
    assert_err_at(f, 3, "rate_limit.rules[0].on_redis_down: expected local, allow or deny");
    assert_int_equal(load(f, "rate_limit:\n  fleet_size: 0\n"), -EINVAL);
    assert_err_at(f, 2, "rate_limit.fleet_size: expected a whole number from 1 to 100000");

}

int main(void)
{
    modules_register();
    cfg_section_register(&widget_section);
#define T(fn) cmocka_unit_test_setup_teardown(fn, widget_setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_section_defaults_and_place),
        T(test_section_file),
        T(test_section_env_validate_help),
        T(test_section_start_only),
        T(test_module_sections),
        T(test_global_rules),
    };
#undef T
    return cmocka_run_group_tests_name("config_sect", tests, NULL, NULL);
}
