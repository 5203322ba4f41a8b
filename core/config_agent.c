/* config_agent: the agents of agate's configuration, echo and proxy. Owns
 * their settings tables (echo_settings[], proxy_settings[], keyed relative to
 * agents.<name>), the parsers of a proxy agent's two lists (endpoint URLs and
 * forward_headers names), the agent-name rule, the agents: part of the YAML
 * file and the agents' part of cfg_validate. Scalar values go through the
 * shared cfg_setting_parse/cfg_setting_check (config_value.c); the YAML
 * walking helpers are config.c's (core/config_int.h).
 *
 * Invariants: every agent, whatever its type, holds every agent default; the
 * type decides which keys are allowed, and a key of the other type's is an
 * error. cfg_agent_validate accepts exactly what cfg_load_agents can build.
 * Cold path. */
#include "core/config_int.h"
#include "core/url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define AGENT_INTERVAL_MAX 3600000u

/* An agent's settings, keyed relative to agents.<name>; no environment
 * overrides. The type decides which table applies, and a key of the other
 * type's is an error rather than a silent no-op. A proxy agent also has two
 * lists, endpoints and forward_headers (load_endpoints, load_forward). Upper
 * bounds not forced by the design only catch typos (an extra zero or three). */
#define A(field) offsetof(cfg_agent_t, field)
static const struct cfg_setting echo_settings[] = {
    { NULL,       "token_interval_ms", NULL, "0",          CFG_K_UINT,       0, AGENT_INTERVAL_MAX, A(token_interval_ms) },
};
static const struct cfg_setting proxy_settings[] = {
    { NULL,       "balance",          NULL, "round_robin", CFG_K_BALANCE,    0, 0,          A(balance) },
    { "timeouts", "connect",          NULL, "2s",          CFG_K_DURATION,   1, UINT32_MAX, A(connect_timeout_ms) },
    { "timeouts", "first_event",      NULL, "30s",         CFG_K_DURATION,   1, UINT32_MAX, A(first_event_timeout_ms) },
    { "timeouts", "idle",             NULL, "120s",        CFG_K_DURATION,   1, UINT32_MAX, A(idle_timeout_ms) },
    { "timeouts", "run",              NULL, "30m",         CFG_K_DURATION,   1, UINT32_MAX, A(run_timeout_ms) },
    { "retry",    "attempts",         NULL, "2",           CFG_K_UINT,       0, 10,         A(retry_attempts) },
    { "retry",    "backoff",          NULL, "50ms",        CFG_K_DURATION,   1, UINT32_MAX, A(retry_backoff_ms) },
    { "retry",    "max_backoff",      NULL, "1s",          CFG_K_DURATION,   1, UINT32_MAX, A(retry_backoff_max_ms) },
    { "breaker",  "failures",         NULL, "5",           CFG_K_UINT,       1, 10000,      A(breaker_failures) },
    { "breaker",  "error_rate",       NULL, "0.5",         CFG_K_RATIO,      1, 0,          A(breaker_error_rate) },
    { "breaker",  "min_requests",     NULL, "20",          CFG_K_UINT,       1, 100000,     A(breaker_min_requests) },
    { "breaker",  "open",             NULL, "10s",         CFG_K_DURATION,   1, UINT32_MAX, A(breaker_open_ms) },
    { "breaker",  "half_open_trials", NULL, "3",           CFG_K_UINT,       1, 1000,       A(breaker_half_open) },
    { NULL,       "validation",       NULL, "strict",      CFG_K_VALIDATION, 0, 0,          A(validation) },
    { NULL,       "max_event",        NULL, "4MiB",        CFG_K_SIZE,       1024, 1u << 30, A(max_event_bytes) },
    { "pool",     "max_idle",         NULL, "256",         CFG_K_UINT,       0, 4096,       A(pool_max_idle) },
    { "pool",     "idle_timeout",     NULL, "60s",         CFG_K_DURATION,   1, UINT32_MAX, A(pool_idle_timeout_ms) },
};
#undef A
#define N_ECHO  (sizeof echo_settings / sizeof echo_settings[0])
#define N_PROXY (sizeof proxy_settings / sizeof proxy_settings[0])

static const char *const proxy_sections[] = { "timeouts", "retry", "breaker", "pool" };

/* ---- a proxy agent's lists: endpoint URLs and header names ---- */

/* A proxy agent's endpoint: core/url.h's http:// URL, host and port and
 * path kept. NULL on success, else the problem; *ep is written only on
 * success. */
static const char *endpoint_parse(const char *text, cfg_endpoint_t *ep)
{
    url_t u;
    const char *bad = url_parse(text, &u);
    if (bad)
        return bad;
    _Static_assert(sizeof ep->host == sizeof u.host && sizeof ep->path == sizeof u.path, "url_t holds an endpoint");
    memset(ep, 0, sizeof *ep);
    memcpy(ep->host, u.host, sizeof ep->host);
    ep->port = u.port;
    memcpy(ep->path, u.path, sizeof ep->path);
    return NULL;
}

#define HOP_BY_HOP "it is hop-by-hop, meaningful for one connection only, so a proxy never forwards it"

/* Headers a proxy must not pass on: the hop-by-hop ones (RFC 9110 7.6.1,
 * plus the legacy keep-alive and proxy-*) and the two agate writes itself
 * for the upstream request. Names lower-case. */
static const struct { const char *name; const char *why; } unforwardable[] = {
    { "connection", HOP_BY_HOP }, { "keep-alive", HOP_BY_HOP }, { "te", HOP_BY_HOP },
    { "trailer", HOP_BY_HOP }, { "transfer-encoding", HOP_BY_HOP }, { "upgrade", HOP_BY_HOP },
    { "proxy-*", HOP_BY_HOP },
    { "host", "agate sets it to the endpoint's host" },
    { "content-length", "agate sets it for the body it sends" },
};

/* Checks a header name (an RFC 9110 token, at most CFG_HEADER_MAX - 1
 * characters, not in unforwardable[]) and writes it lower-case into out.
 * 0, or -EINVAL with the problem in why. */
static int header_parse(const char *text, char out[CFG_HEADER_MAX], char *why, size_t n)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    size_t len = strlen(text);

    if (len >= CFG_HEADER_MAX) {
        snprintf(why, n, "header name too long (at most %d characters)", CFG_HEADER_MAX - 1);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (!isalnum((unsigned char)ch) && !strchr(tchar, ch)) {
            snprintf(why, n, "not a header name (letters, digits and %s only)", tchar);
            return -EINVAL;
        }
        out[i] = (char)tolower((unsigned char)ch);
    }
    out[len] = '\0';
    for (size_t i = 0; i < sizeof unforwardable / sizeof unforwardable[0]; i++) {
        const char *u = unforwardable[i].name;
        size_t ul = strlen(u);
        bool hit = u[ul - 1] == '*' ? strncmp(out, u, ul - 1) == 0 : strcmp(out, u) == 0;
        if (hit) {
            snprintf(why, n, "%s cannot be forwarded: %s", out, unforwardable[i].why);
            return -EINVAL;
        }
    }
    return 0;
}

static bool agent_name_ok(const char *s, size_t len)
{
    if (len == 0 || len >= CFG_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

#define AGENT_NAME_RULE "agent names are 1 to 63 of A-Z a-z 0-9 _ . -"

/* Every agent default, of both types: a proxy agent given only its type and
 * endpoints is complete, and an echo agent holds values cfg_validate accepts
 * should its type ever change in code. Leaves name, kind and the lists alone. */
void cfg_agent_defaults(cfg_agent_t *a)
{
    cfg_table_defaults(echo_settings, N_ECHO, a);
    cfg_table_defaults(proxy_settings, N_PROXY, a);
    cfg_cache_defaults(a);
    cfg_resume_defaults(a);
}

/* ---- the agents: part of the YAML file ---- */

/* The key node of key in map, and its value; NULL when absent or when map is
 * not a mapping (an empty section). cfg_map_check has vetted map's keys. */
static const yaml_node_t *pair_find(const struct cfg_loader *ld, const yaml_node_t *map, const char *key,
                                    const yaml_node_t **value)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        if (strcmp(cfg_key_text(ld, p), key) == 0) {
            if (value)
                *value = cfg_node_at(ld, p->value);
            return cfg_node_at(ld, p->key);
        }
    }
    return NULL;
}

/* Text of item it, the i-th of the list named name: name[i] (from 0) in messages. */
static int item_text(const struct cfg_loader *ld, const yaml_node_t *it, const char *name, size_t i,
                     char *item, size_t itemlen, const char **text)
{
    snprintf(item, itemlen, "%s[%zu]", name, i);
    if (cfg_node_text(ld, it, it, item, text))
        return -EINVAL;
    if (cfg_node_is_null(it) || !**text)    /* "- ~" is no header named "~" */
        return cfg_load_fail(ld, it, item, "no value given");
    return 0;
}

/* endpoints: a block or flow list of 1 to CFG_MAX_ENDPOINTS URLs */
static int load_endpoints(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                          const char *name, cfg_agent_t *a)
{
    char item[CFG_KEY_MAX + 16];
    const yaml_node_item_t *start, *top;

    if (v->type != YAML_SEQUENCE_NODE)
        return cfg_load_fail(ld, k, name, "expected a list of http:// URLs (e.g. [http://127.0.0.1:8000/agent]), "
                             "not %s", cfg_node_kind(v));
    start = v->data.sequence.items.start;
    top = v->data.sequence.items.top;
    if (start == top)
        return cfg_load_fail(ld, k, name, "at least one endpoint is required");
    a->n_endpoints = 0;
    for (const yaml_node_item_t *it = start; it < top; it++) {
        const yaml_node_t *in = cfg_node_at(ld, *it);
        size_t i = (size_t)(it - start);
        cfg_endpoint_t *ep;
        const char *text = NULL, *bad;

        if (i == CFG_MAX_ENDPOINTS)
            return cfg_load_fail(ld, in, name, "too many endpoints (at most %d)", CFG_MAX_ENDPOINTS);
        if (item_text(ld, in, name, i, item, sizeof item, &text))
            return -EINVAL;
        ep = &a->endpoints[i];
        bad = endpoint_parse(text, ep);
        if (bad)
            return cfg_load_fail(ld, in, item, "%s", bad);
        for (size_t j = 0; j < i; j++) {
            const cfg_endpoint_t *e = &a->endpoints[j];
            if (!strcasecmp(e->host, ep->host) && e->port == ep->port && !strcmp(e->path, ep->path))
                return cfg_load_fail(ld, in, item, "repeats endpoints[%zu]", j);
        }
        a->n_endpoints++;
    }
    return 0;
}

/* forward_headers: a list of up to CFG_MAX_FORWARD header names, stored
 * lower-case; empty or all commented out forwards none. */
static int load_forward(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                        const char *name, cfg_agent_t *a)
{
    char item[CFG_KEY_MAX + 16], why[CFG_WHY_MAX];
    const yaml_node_item_t *start, *top;

    if (cfg_node_is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return cfg_load_fail(ld, k, name, "expected a list of header names (e.g. [authorization, x-tenant-id]), "
                             "not %s", cfg_node_kind(v));
    start = v->data.sequence.items.start;
    top = v->data.sequence.items.top;
    a->n_forward = 0;
    for (const yaml_node_item_t *it = start; it < top; it++) {
        const yaml_node_t *in = cfg_node_at(ld, *it);
        size_t i = (size_t)(it - start);
        const char *text = NULL;

        if (i == CFG_MAX_FORWARD)
            return cfg_load_fail(ld, in, name, "too many headers (at most %d)", CFG_MAX_FORWARD);
        if (item_text(ld, in, name, i, item, sizeof item, &text))
            return -EINVAL;
        if (header_parse(text, a->forward_headers[i], why, sizeof why))
            return cfg_load_fail(ld, in, item, "%s", why);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(a->forward_headers[j], a->forward_headers[i]) == 0)
                return cfg_load_fail(ld, in, item, "repeats forward_headers[%zu]", j);
        }
        a->n_forward++;
    }
    return 0;
}

#define AGENT_TYPES "known: echo, proxy"

/* One key of an agent whose type is known: that type's keys are allowed, the
 * other type's are named as such, anything else is unknown. */
static int load_agent_key(const struct cfg_loader *ld, const yaml_node_t *kn, const yaml_node_t *vn,
                          const char *key, const char *name, cfg_agent_t *a)
{
    const struct cfg_setting *es = cfg_find_setting(echo_settings, N_ECHO, NULL, key);
    const struct cfg_setting *ps = cfg_find_setting(proxy_settings, N_PROXY, NULL, key);
    bool section = cfg_in_list(proxy_sections, sizeof proxy_sections / sizeof proxy_sections[0], key);
    bool endpoints = strcmp(key, "endpoints") == 0, forward = strcmp(key, "forward_headers") == 0;
    bool proxy = a->kind == CFG_AGENT_PROXY;

    if (strcmp(key, "resume") == 0)
        return cfg_load_resume(ld, kn, vn, name, a);
    if (strcmp(key, "cache") == 0)
        return proxy ? cfg_load_cache(ld, kn, vn, name, a) : cfg_load_fail(ld, kn, name, "only for type: proxy");
    if (!es && !ps && !section && !endpoints && !forward) {
        char list[CFG_WHY_MAX] = "";
        size_t used = 0;

        cfg_list_add(list, sizeof list, &used, "type");
        if (!proxy) {
            cfg_list_rows(list, sizeof list, &used, echo_settings, N_ECHO, NULL);
        } else {
            cfg_list_add(list, sizeof list, &used, "endpoints");
            cfg_list_rows(list, sizeof list, &used, proxy_settings, N_PROXY, NULL);
            for (size_t i = 0; i < sizeof proxy_sections / sizeof proxy_sections[0]; i++)
                cfg_list_add(list, sizeof list, &used, proxy_sections[i]);
            cfg_list_add(list, sizeof list, &used, "forward_headers");
            cfg_list_add(list, sizeof list, &used, "cache");
        }
        cfg_list_add(list, sizeof list, &used, "resume");
        return cfg_unknown_key(ld, kn, name, list);
    }
    if (!proxy && !es)
        return cfg_load_fail(ld, kn, name, "only for type: proxy");
    if (proxy && es)
        return cfg_load_fail(ld, kn, name, "only for type: echo");
    if (es)
        return cfg_load_setting(ld, es, kn, vn, a, name);
    if (ps)
        return cfg_load_setting(ld, ps, kn, vn, a, name);
    if (section)
        return cfg_load_section(ld, kn, vn, proxy_settings, N_PROXY, key, name, a);
    if (endpoints)
        return load_endpoints(ld, kn, vn, name, a);
    return load_forward(ld, kn, vn, name, a);
}

/* What no single key shows: a proxy agent has endpoints, and its backoff cap is
 * not below the base. Errors go to the key the user would change. */
static int proxy_check(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                       const char *base, const cfg_agent_t *a)
{
    char name[CFG_KEY_MAX];
    const yaml_node_t *rv = NULL, *rk, *at;

    if (a->n_endpoints == 0) {
        cfg_join(name, sizeof name, base, "endpoints");
        return cfg_load_fail(ld, k, name, "missing; a proxy agent needs at least one "
                             "(e.g. endpoints: [http://127.0.0.1:8000/agent])");
    }
    if (a->retry_backoff_max_ms >= a->retry_backoff_ms)
        return 0;
    rk = pair_find(ld, v, "retry", &rv);    /* the defaults agree, so retry set one */
    at = pair_find(ld, rv, "max_backoff", NULL);
    if (at) {
        cfg_join(name, sizeof name, base, "retry.max_backoff");
        return cfg_load_fail(ld, at, name, "must be at least retry.backoff (%" PRIu32 "ms)", a->retry_backoff_ms);
    }
    at = pair_find(ld, rv, "backoff", NULL);
    cfg_join(name, sizeof name, base, "retry.backoff");
    return cfg_load_fail(ld, at ? at : rk ? rk : k, name, "must be at most retry.max_backoff (%" PRIu32 "ms)",
                         a->retry_backoff_max_ms);
}

static int load_agent(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                      const char *agent, cfg_agent_t *a)
{
    char base[sizeof "agents." + CFG_NAME_MAX], name[CFG_KEY_MAX];  /* agent is a checked name */
    const yaml_node_t *tk, *tv = NULL;
    const char *text = NULL;

    cfg_join(base, sizeof base, "agents", agent);
    if (cfg_node_is_null(v))
        return cfg_load_fail(ld, k, base, "expected a mapping with at least a type (e.g. type: echo)");
    if (cfg_map_check(ld, k, v, base, "agent settings"))
        return -EINVAL;
    snprintf(a->name, sizeof a->name, "%s", agent);
    cfg_agent_defaults(a);

    /* The type decides which keys are allowed, and it may come after them. */
    cfg_join(name, sizeof name, base, "type");
    tk = pair_find(ld, v, "type", &tv);
    if (!tk)
        return cfg_load_fail(ld, k, name, "missing; every agent needs a type (" AGENT_TYPES ")");
    if (cfg_node_text(ld, tk, tv, name, &text))
        return -EINVAL;
    if (strcmp(text, "echo") == 0)
        a->kind = CFG_AGENT_ECHO;
    else if (strcmp(text, "proxy") == 0)
        a->kind = CFG_AGENT_PROXY;
    else
        return cfg_load_fail(ld, tk, name, "unknown agent type \"%.64s\" (" AGENT_TYPES ")", text);

    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const char *key = cfg_key_text(ld, p);

        if (strcmp(key, "type") == 0)
            continue;
        cfg_join(name, sizeof name, base, key);
        if (load_agent_key(ld, cfg_node_at(ld, p->key), cfg_node_at(ld, p->value), key, name, a))
            return -EINVAL;
    }
    return a->kind == CFG_AGENT_PROXY ? proxy_check(ld, k, v, base, a) : 0;
}

/* The file's agents replace the list, rather than adding to the defaults, so
 * that a deployment can drop the echo agent. */
int cfg_load_agents(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *map)
{
    cfg_t *c = ld->c;

    if (cfg_map_check(ld, k, map, "agents", "agent names to agents"))
        return -EINVAL;
    if (map->data.mapping.pairs.start == map->data.mapping.pairs.top)
        return cfg_load_fail(ld, k, "agents", "at least one agent is required");
    memset(c->agents, 0, sizeof c->agents);
    c->n_agents = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *agent = cfg_key_text(ld, p);
        char name[CFG_KEY_MAX];

        if (!agent_name_ok(agent, strlen(agent))) {
            cfg_join(name, sizeof name, "agents", agent);
            return cfg_load_fail(ld, kn, name, AGENT_NAME_RULE);
        }
        if (c->n_agents == CFG_MAX_AGENTS)
            return cfg_load_fail(ld, kn, "agents", "too many agents (at most %d)", CFG_MAX_AGENTS);
        if (load_agent(ld, kn, vn, agent, &c->agents[c->n_agents]))
            return -EINVAL;
        c->agents[c->n_agents].slot = (uint8_t)c->n_agents;   /* file order; core/cfggen.c keeps it by name */
        c->n_agents++;
    }
    return 0;
}

/* ---- cfg_validate, per agent ---- */

/* A proxy agent's lists and cross-field rule, as load_agent enforces them. An
 * endpoint is checked by printing it back as a URL and parsing that. */
static int proxy_validate(const cfg_agent_t *a, const char *base, char *key, size_t keylen,
                          char *why, size_t whylen)
{
    char url[sizeof "http://[]:65535" + CFG_HOST_MAX + CFG_UPATH_MAX], lower[CFG_HEADER_MAX];
    cfg_endpoint_t ep;
    const char *bad;

    if (a->n_endpoints == 0 || a->n_endpoints > CFG_MAX_ENDPOINTS) {
        cfg_join(key, keylen, base, "endpoints");
        snprintf(why, whylen, "a proxy agent needs 1 to %d endpoints", CFG_MAX_ENDPOINTS);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < a->n_endpoints; i++) {
        const cfg_endpoint_t *e = &a->endpoints[i];
        bool v6 = memchr(e->host, ':', CFG_HOST_MAX) != NULL;

        snprintf(key, keylen, "%s.endpoints[%" PRIu32 "]", base, i);
        if (!memchr(e->host, '\0', CFG_HOST_MAX) || !memchr(e->path, '\0', CFG_UPATH_MAX)) {
            snprintf(why, whylen, "host or path too long");
            return -EINVAL;
        }
        if (e->path[0] != '/') {
            snprintf(why, whylen, "path must start with /");
            return -EINVAL;
        }
        snprintf(url, sizeof url, "http://%s%s%s:%u%s", v6 ? "[" : "", e->host, v6 ? "]" : "",
                 (unsigned)e->port, e->path);
        bad = endpoint_parse(url, &ep);
        if (bad) {
            snprintf(why, whylen, "%s", bad);
            return -EINVAL;
        }
    }
    if (a->retry_backoff_max_ms < a->retry_backoff_ms) {
        cfg_join(key, keylen, base, "retry.max_backoff");
        snprintf(why, whylen, "must be at least retry.backoff (%" PRIu32 "ms)", a->retry_backoff_ms);
        return -EINVAL;
    }
    if (a->n_forward > CFG_MAX_FORWARD) {
        cfg_join(key, keylen, base, "forward_headers");
        snprintf(why, whylen, "too many headers (at most %d)", CFG_MAX_FORWARD);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < a->n_forward; i++) {
        const char *h = a->forward_headers[i];

        snprintf(key, keylen, "%s.forward_headers[%" PRIu32 "]", base, i);
        if (!memchr(h, '\0', CFG_HEADER_MAX) || !h[0]) {
            snprintf(why, whylen, "expected 1 to %d characters", CFG_HEADER_MAX - 1);
            return -EINVAL;
        }
        if (header_parse(h, lower, why, whylen))
            return -EINVAL;
        if (strcmp(lower, h) != 0) {
            snprintf(why, whylen, "must be lower-case");
            return -EINVAL;
        }
    }
    return 0;
}

/* One agent as the file would have had to give it; key and why on failure. */
int cfg_agent_validate(const cfg_agent_t *a, const char *base, char *key, size_t keylen,
                       char *why, size_t whylen)
{
    snprintf(key, keylen, "%s", base);
    if (!agent_name_ok(a->name, strnlen(a->name, CFG_NAME_MAX))) {
        snprintf(why, whylen, AGENT_NAME_RULE);
        return -EINVAL;
    }
    if (cfg_resume_validate(a, base, key, keylen, why, whylen))
        return -EINVAL;
    if (a->kind == CFG_AGENT_ECHO)
        return cfg_table_check(echo_settings, N_ECHO, a, base, key, keylen, why, whylen);
    if (a->kind != CFG_AGENT_PROXY) {
        snprintf(why, whylen, "unknown agent type (" AGENT_TYPES ")");
        return -EINVAL;
    }
    if (cfg_table_check(proxy_settings, N_PROXY, a, base, key, keylen, why, whylen))
        return -EINVAL;
    if (proxy_validate(a, base, key, keylen, why, whylen))
        return -EINVAL;
    return cfg_cache_validate(a, base, key, keylen, why, whylen);
}

/* ---- the agents section: core's own, registered by the engine ---- */

/* One agent, echo (kind echo, interval 0): the file's agents: replaces it. */
static void agents_defaults(void *conf)
{
    cfg_t *c = conf;

    snprintf(c->agents[0].name, CFG_NAME_MAX, "echo");
    c->agents[0].kind = CFG_AGENT_ECHO;
    cfg_agent_defaults(&c->agents[0]);
    c->n_agents = 1;
}

static int agents_load(const struct cfg_loader *ld, const char *key, const yaml_node_t *k, const yaml_node_t *v,
                       void *conf)
{
    return cfg_load_agents(ld, k, v);
}

static int agents_validate(const cfg_t *c, const void *conf, char *key, size_t keylen, char *why, size_t whylen)
{
    char name[CFG_KEY_MAX];
    uint32_t live = 0;

    for (uint32_t i = 0; i < c->n_agents && i < CFG_MAX_AGENTS; i++)
        live += !c->agents[i].removed;
    snprintf(key, keylen, "agents");
    if (live == 0) {
        snprintf(why, whylen, "at least one agent is required");
        return -EINVAL;
    }
    if (c->n_agents > CFG_MAX_AGENTS) {
        snprintf(why, whylen, "too many agents (at most %d)", CFG_MAX_AGENTS);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < c->n_agents; i++) {
        const cfg_agent_t *a = &c->agents[i];

        snprintf(name, sizeof name, "agents.%.*s", (int)strnlen(a->name, CFG_NAME_MAX), a->name);
        if (cfg_agent_validate(a, name, key, keylen, why, whylen))
            return -EINVAL;
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(c->agents[j].name, a->name) == 0) {
                snprintf(key, keylen, "%s", name);
                snprintf(why, whylen, "duplicate agent name");
                return -EINVAL;
            }
        }
    }
    return 0;
}

static const char *const agents_keys[] = { "agents", NULL };

/* Its values are cfg_t's own fields (size 0): core/cfggen.c keeps agents in
 * their slots across reloads by name. */
cfg_section_t cfg_agents_section = {
    .name = "agents", .keys = agents_keys, .rank = 50,
    .defaults = agents_defaults, .load = agents_load, .validate = agents_validate,
};
