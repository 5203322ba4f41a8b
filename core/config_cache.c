/* config_cache: a proxy agent's `cache:` settings (agents.<name>.cache): the
 * scalar rows (ttl, max_entry, max_lag, pace, coalesce, shared,
 * shared_max_bytes, shared_wait) and the ignore_fields
 * list of request paths left out of the cache key. The process-wide cap,
 * cache.max_bytes, is a row of config.c's server table. Cold path.
 *
 * Invariant: a cached agent validates its upstream strictly, because only a
 * run that passed validation may be stored (cfg_cache_validate says so). */
#include "core/config_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define A(field) offsetof(cfg_agent_t, field)
static const struct cfg_setting cache_settings[] = {
    { "cache", "ttl",       NULL, "0s",    CFG_K_DURATION, 0,    UINT32_MAX, A(cache_ttl_ms) },
    { "cache", "max_entry", NULL, "1MiB",  CFG_K_SIZE,     1024, UINT32_MAX, A(cache_max_entry) },
    { "cache", "max_lag",   NULL, "8MiB",  CFG_K_SIZE,     1024, UINT32_MAX, A(cache_max_lag) },
    { "cache", "pace",      NULL, "false", CFG_K_BOOL,     0,    0,          A(cache_pace) },
    { "cache", "coalesce",  NULL, "true",  CFG_K_BOOL,     0,    0,          A(cache_coalesce) },
    { "cache", "shared",    NULL, "false", CFG_K_BOOL,     0,    0,          A(cache_shared) },
    { "cache", "shared_max_bytes", NULL, "512KiB", CFG_K_SIZE, 1024, UINT32_MAX, A(cache_shared_max) },
    { "cache", "shared_wait", NULL, "0s",  CFG_K_DURATION, 0,    600000,     A(cache_shared_wait_ms) },
};
#undef A
#define N_CACHE (sizeof cache_settings / sizeof cache_settings[0])

/* Fields that name a run rather than ask something. parentRunId too: a
 * follow-up run asks the same thing whatever run it follows. */
static const char *const default_ignore[] = { "threadId", "runId", "parentRunId" };

#define PATH_RULE "expected a field path like threadId, forwardedProps.session or messages[].id"

/* A path: segments of [A-Za-z0-9_$-], separated by '.', each optionally
 * followed by "[]". NULL when fine, else the problem. */
static const char *path_check(const char *p)
{
    size_t len = strlen(p);
    if (len == 0 || len >= CFG_CACHE_PATH_MAX)
        return "expected 1 to 63 characters";
    bool seg_start = true;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
            ch == '$' || ch == '-') {
            seg_start = false;
            continue;
        }
        if (ch == '[' && !seg_start && p[i + 1] == ']' && (p[i + 2] == '.' || p[i + 2] == '\0')) {
            i++;
            continue;
        }
        if (ch == '.' && !seg_start && i + 1 < len) {
            seg_start = true;
            continue;
        }
        return PATH_RULE;
    }
    return NULL;
}

void cfg_cache_defaults(cfg_agent_t *a)
{
    cfg_table_defaults(cache_settings, N_CACHE, a);
    a->n_cache_ignore = 0;
    for (size_t i = 0; i < sizeof default_ignore / sizeof default_ignore[0]; i++)
        snprintf(a->cache_ignore[a->n_cache_ignore++], CFG_CACHE_PATH_MAX, "%s", default_ignore[i]);
}

static int load_ignore(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                       const char *name, cfg_agent_t *a)
{
    char item[2 * CFG_KEY_MAX + 16];   /* name is agents.<a>.cache.ignore_fields, cut at 2 * CFG_KEY_MAX */
    a->n_cache_ignore = 0;
    if (cfg_node_is_null(v))
        return 0;   /* an empty list: every field counts */
    if (v->type != YAML_SEQUENCE_NODE)
        return cfg_load_fail(ld, k, name, "expected a list of field paths (e.g. [threadId, runId]), not %s",
                             cfg_node_kind(v));
    const yaml_node_item_t *start = v->data.sequence.items.start, *top = v->data.sequence.items.top;
    for (const yaml_node_item_t *it = start; it < top; it++) {
        const yaml_node_t *in = cfg_node_at(ld, *it);
        size_t i = (size_t)(it - start);
        const char *text = NULL, *bad;
        snprintf(item, sizeof item, "%s[%zu]", name, i);
        if (i == CFG_MAX_CACHE_IGNORE)
            return cfg_load_fail(ld, in, name, "too many paths (at most %d)", CFG_MAX_CACHE_IGNORE);
        if (cfg_node_text(ld, in, in, item, &text))
            return -EINVAL;
        if ((bad = path_check(text)))
            return cfg_load_fail(ld, in, item, "%s", bad);
        snprintf(a->cache_ignore[i], CFG_CACHE_PATH_MAX, "%s", text);
        a->n_cache_ignore++;
    }
    return 0;
}

int cfg_load_cache(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, const char *name,
                   cfg_agent_t *a)
{
    char key[2 * CFG_KEY_MAX], list[CFG_WHY_MAX] = "";
    size_t used = 0;
    if (cfg_node_is_null(v))
        return 0;
    if (cfg_map_check(ld, k, v, name, "cache settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *ck = cfg_key_text(ld, p);
        const struct cfg_setting *s = cfg_find_setting(cache_settings, N_CACHE, "cache", ck);
        cfg_join(key, sizeof key, name, ck);
        if (!strcmp(ck, "ignore_fields")) {
            if (load_ignore(ld, kn, vn, key, a))
                return -EINVAL;
            continue;
        }
        if (!s) {
            cfg_list_rows(list, sizeof list, &used, cache_settings, N_CACHE, "cache");
            cfg_list_add(list, sizeof list, &used, "ignore_fields");
            return cfg_unknown_key(ld, kn, key, list);
        }
        if (cfg_load_setting(ld, s, kn, vn, a, key))
            return -EINVAL;
    }
    return 0;
}

int cfg_cache_validate(const cfg_agent_t *a, const char *base, char *key, size_t keylen, char *why, size_t whylen)
{
    char name[CFG_KEY_MAX];
    if (cfg_table_check(cache_settings, N_CACHE, a, base, key, keylen, why, whylen))
        return -EINVAL;
    if (a->n_cache_ignore > CFG_MAX_CACHE_IGNORE) {
        cfg_join(key, keylen, base, "cache.ignore_fields");
        snprintf(why, whylen, "too many paths (at most %d)", CFG_MAX_CACHE_IGNORE);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < a->n_cache_ignore; i++) {
        const char *bad = memchr(a->cache_ignore[i], '\0', CFG_CACHE_PATH_MAX) ? path_check(a->cache_ignore[i])
                                                                                 : "too long";
        if (bad) {
            snprintf(name, sizeof name, "cache.ignore_fields[%u]", i);
            cfg_join(key, keylen, base, name);
            snprintf(why, whylen, "%s", bad);
            return -EINVAL;
        }
    }
    if (a->cache_ttl_ms && a->kind != CFG_AGENT_PROXY) {
        cfg_join(key, keylen, base, "cache.ttl");
        snprintf(why, whylen, "only proxy agents can be cached");
        return -EINVAL;
    }
    if (a->cache_ttl_ms && a->validation != CFG_VALIDATION_STRICT) {
        cfg_join(key, keylen, base, "cache.ttl");
        snprintf(why, whylen, "caching needs validation: strict (only validated runs are stored)");
        return -EINVAL;
    }
    return 0;
}
