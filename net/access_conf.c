/* access_conf: the access module's section of the configuration
 * (access_conf_section): the top-level keys auth:, cors:, security_headers: and
 * rate_limit:, their rows (defaults, AGATE_* variables, ranges), their own
 * loader for the lists and mappings rows cannot express, and the cross-checks.
 * The values land in the section's struct in cfg_t (access_conf(c)) as plain
 * data; access_policy.c compiles them (reads key files, hashes rule
 * identities) when the shards start or on SIGHUP.
 *
 * Secrets (JWT HMAC secrets) are kept only in cfg_t and the compiled policy;
 * no message here ever quotes a secret's value, only its key. API keys are
 * configured as SHA-256 digests. Cold path. */
#include "net/access_conf.h"

#include "core/config_sect.h"
#include "core/redis.h"
#include "net/rlglobal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define X(field) offsetof(access_conf_t, field)
static const struct cfg_setting access_rows[] = {
    { "auth",       "anonymous",          "AGATE_AUTH_ANONYMOUS",        "true",      CFG_K_BOOL,     0, 0,          X(anonymous) },
    { "auth",       "api_key_header",     NULL,                          "x-api-key", CFG_K_TEXT,     1, 63,         X(api_key_header) },
    { "auth",       "metrics_need_admin", NULL,                          "true",      CFG_K_BOOL,     0, 0,          X(metrics_need_admin) },
    { "auth.jwt",   "jwks_file",          "AGATE_JWKS_FILE",             "",          CFG_K_TEXT,     0, 511,        X(jwks_file) },
    { "auth.jwt",   "issuer",             NULL,                          "",          CFG_K_TEXT,     0, ACCESS_ISS_MAX - 1, X(issuer) },
    { "auth.jwt",   "audience",           NULL,                          "",          CFG_K_TEXT,     0, ACCESS_ISS_MAX - 1, X(audience) },
    { "auth.jwt",   "leeway",             NULL,                          "60s",       CFG_K_DURATION, 0, 86400000,   X(leeway_ms) },
    { "auth.jwt",   "scope_claim",        NULL,                          "scope",     CFG_K_TEXT,     1, ACCESS_CLAIM_MAX - 1, X(scope_claim) },
    { "cors",       "allow_credentials",  NULL,                          "false",     CFG_K_BOOL,     0, 0,          X(cors_credentials) },
    { "cors",       "max_age",            NULL,                          "10m",       CFG_K_DURATION, 0, 86400000,   X(cors_max_age_ms) },
    { NULL,         "security_headers",   "AGATE_SECURITY_HEADERS",      "true",      CFG_K_BOOL,     0, 0,          X(security_headers) },
    { "rate_limit", "table_size",         "AGATE_RATE_LIMIT_TABLE_SIZE", "65536",     CFG_K_UINT,     64, 1u << 28,  X(rl_table_size) },
    { "rate_limit", "fleet_size",         "AGATE_RATE_LIMIT_FLEET_SIZE", "1",         CFG_K_UINT,     1, 100000,     X(rl_fleet_size) },
    { "rate_limit", "global_slot_ttl",    NULL,                          "10s",       CFG_K_DURATION, 1000, 3600000, X(rl_slot_ttl_ms) },
};
#undef X
#define N_ROWS (sizeof access_rows / sizeof access_rows[0])

#define R(field) offsetof(access_rl_rule_t, field)
static const struct cfg_setting rule_rows[] = {
    { NULL, "per_second", NULL, "0", CFG_K_UINT, 0, 100000000, R(rate[0]) },
    { NULL, "per_minute", NULL, "0", CFG_K_UINT, 0, 100000000, R(rate[1]) },
    { NULL, "per_hour",   NULL, "0", CFG_K_UINT, 0, 100000000, R(rate[2]) },
    { NULL, "per_day",    NULL, "0", CFG_K_UINT, 0, 100000000, R(rate[3]) },
    { NULL, "burst",      NULL, "0", CFG_K_UINT, 0, 100000000, R(burst) },
    { NULL, "concurrent", NULL, "0", CFG_K_UINT, 0, 1000000,   R(concurrent) },
    { NULL, "per_agent",  NULL, "true", CFG_K_BOOL, 0, 0,      R(per_agent) },
    { NULL, "global",     NULL, "false", CFG_K_BOOL, 0, 0,     R(global) },
};
#undef R
#define N_RULE_ROWS (sizeof rule_rows / sizeof rule_rows[0])

static void access_defaults(void *conf)
{
    access_conf_t *a = conf;

    snprintf(a->cors_methods, sizeof a->cors_methods, "GET, POST, OPTIONS");
    snprintf(a->cors_headers, sizeof a->cors_headers,
             "Authorization, Content-Type, Accept, X-API-Key, X-Request-ID, traceparent, tracestate");
    snprintf(a->cors_expose, sizeof a->cors_expose,
             "X-Request-ID, traceparent, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, "
             "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset");
}

/* ---- small parsers ---- */

static int seq_items(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, const char *name,
                     yaml_node_item_t **start, yaml_node_item_t **top)
{
    *start = *top = NULL;   /* gcc -flto cannot see that cfg_load_fail never returns 0 */
    if (v->type != YAML_SEQUENCE_NODE)
        return cfg_load_fail(ld, k, name, "expected a list, not %s", cfg_node_kind(v));
    *start = v->data.sequence.items.start;
    *top = v->data.sequence.items.top;
    return 0;
}

static int text_into(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, const char *name,
                     char *dst, size_t cap)
{
    const char *t;
    if (cfg_node_text(ld, k, v, name, &t))
        return -EINVAL;
    if (!*t)
        return cfg_load_fail(ld, k, name, "no value given");
    if (strlen(t) >= cap)
        return cfg_load_fail(ld, k, name, "too long: at most %zu characters", cap - 1);
    for (const char *p = t; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            return cfg_load_fail(ld, k, name, "expected printable ASCII characters");
    memcpy(dst, t, strlen(t) + 1);
    return 0;
}

static int load_scopes(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, const char *name,
                       access_scopes_t *out)
{
    yaml_node_item_t *it, *top;
    char item[CFG_KEY_MAX + 16];
    out->n = 0;
    if (cfg_node_is_null(v))
        return 0;
    if (seq_items(ld, k, v, name, &it, &top))
        return -EINVAL;
    for (; it < top; it++) {
        const yaml_node_t *n = cfg_node_at(ld, *it);
        snprintf(item, sizeof item, "%s[%u]", name, out->n);
        if (out->n == ACCESS_MAX_SCOPES)
            return cfg_load_fail(ld, n, name, "too many scopes (at most %d)", ACCESS_MAX_SCOPES);
        if (text_into(ld, n, n, item, out->s[out->n], ACCESS_SCOPE_MAX))
            return -EINVAL;
        if (strchr(out->s[out->n], ' '))
            return cfg_load_fail(ld, n, item, "a scope has no spaces");
        out->n++;
    }
    return 0;
}

/* A list of header names or methods, joined as "A, B, C". */
static int load_hlist(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, const char *name,
                      char *dst, size_t cap)
{
    yaml_node_item_t *it, *top;
    size_t used = 0;
    char one[ACCESS_HLIST_MAX];
    if (seq_items(ld, k, v, name, &it, &top))
        return -EINVAL;
    dst[0] = 0;
    for (; it < top; it++) {
        const yaml_node_t *n = cfg_node_at(ld, *it);
        if (text_into(ld, n, n, name, one, sizeof one))
            return -EINVAL;
        for (const char *p = one; *p; p++)
            if (!(*p == '-' || *p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= 'A' && *p <= 'Z')))
                return cfg_load_fail(ld, n, name, "'%s' is not a header or method name", one);
        int w = snprintf(dst + used, cap - used, "%s%s", used ? ", " : "", one);
        if (w < 0 || (size_t)w >= cap - used)
            return cfg_load_fail(ld, n, name, "list too long (at most %zu characters)", cap - 1);
        used += (size_t)w;
    }
    return 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* "10.0.0.0/8", "::1/128", "127.0.0.1" (a host). */
static int parse_cidr(const char *s, access_cidr_t *out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl == 0 || hl >= sizeof host)
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = 0;
    long bits = -1;
    if (slash) {
        char *end;
        bits = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || bits < 0)
            return -EINVAL;
    }
    struct in_addr a4;
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, host, &a4) == 1) {
        if (bits > 32)
            return -EINVAL;
        out->addr[10] = out->addr[11] = 0xff;
        memcpy(out->addr + 12, &a4, 4);
        out->bits = (uint8_t)(96 + (bits < 0 ? 32 : bits));
        return 0;
    }
    if (inet_pton(AF_INET6, host, out->addr) == 1) {
        if (bits > 128)
            return -EINVAL;
        out->bits = (uint8_t)(bits < 0 ? 128 : bits);
        return 0;
    }
    return -EINVAL;
}

/* ---- auth: ---- */

static int load_api_key(const struct cfg_loader *ld, const yaml_node_t *n, const char *name, access_api_key_t *key)
{
    char sub[CFG_KEY_MAX + 32];
    bool have_digest = false;
    if (cfg_map_check(ld, n, n, name, "API key settings (name, sha256, scopes)"))
        return -EINVAL;
    memset(key, 0, sizeof *key);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *k = cfg_key_text(ld, p), *t;
        cfg_join(sub, sizeof sub, name, k);
        if (!strcmp(k, "name")) {
            if (text_into(ld, kn, vn, sub, key->name, sizeof key->name))
                return -EINVAL;
        } else if (!strcmp(k, "sha256")) {
            if (cfg_node_text(ld, kn, vn, sub, &t))
                return -EINVAL;
            if (strlen(t) != 64)
                return cfg_load_fail(ld, kn, sub, "expected the key's SHA-256 digest as 64 hex digits "
                                     "(e.g. printf %%s \"$KEY\" | sha256sum)");
            for (int i = 0; i < 32; i++) {
                int hi = hexval(t[2 * i]), lo = hexval(t[2 * i + 1]);
                if (hi < 0 || lo < 0)
                    return cfg_load_fail(ld, kn, sub, "expected 64 hex digits");
                key->sha256[i] = (uint8_t)(hi << 4 | lo);
            }
            have_digest = true;
        } else if (!strcmp(k, "scopes")) {
            if (load_scopes(ld, kn, vn, sub, &key->scopes))
                return -EINVAL;
        } else {
            return cfg_unknown_key(ld, kn, sub, "name, sha256, scopes");
        }
    }
    if (!key->name[0] || !have_digest)
        return cfg_load_fail(ld, n, name, "an API key needs a name and a sha256 digest");
    return 0;
}

static int load_jwt_key(const struct cfg_loader *ld, const yaml_node_t *n, const char *name, access_jwt_key_t *key)
{
    char sub[CFG_KEY_MAX + 32];
    const char *t;
    if (cfg_map_check(ld, n, n, name, "JWT key settings (kid, secret, secret_env, public_key_file)"))
        return -EINVAL;
    memset(key, 0, sizeof *key);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *k = cfg_key_text(ld, p);
        cfg_join(sub, sizeof sub, name, k);
        if (!strcmp(k, "kid")) {
            /* kid: "" is written out by people who mean "no kid": same as leaving it out */
            if (cfg_node_text(ld, kn, vn, sub, &t))
                return -EINVAL;
            if (*t && text_into(ld, kn, vn, sub, key->kid, sizeof key->kid))
                return -EINVAL;
        } else if (!strcmp(k, "secret") || !strcmp(k, "secret_env")) {
            if (cfg_node_text(ld, kn, vn, sub, &t))
                return -EINVAL;
            if (!strcmp(k, "secret_env")) {
                const char *env = getenv(t);
                if (!env || !*env)
                    return cfg_load_fail(ld, kn, sub, "environment variable %.64s is not set", t);
                t = env;
            }
            size_t len = strlen(t);
            if (len < 16 || len >= sizeof key->secret)   /* never quote the secret itself */
                return cfg_load_fail(ld, kn, sub, "an HS256 secret must be 16 to %zu bytes", sizeof key->secret - 1);
            memcpy(key->secret, t, len + 1);
            key->secret_len = (uint32_t)len;
        } else if (!strcmp(k, "public_key_file")) {
            if (text_into(ld, kn, vn, sub, key->pem_file, sizeof key->pem_file))
                return -EINVAL;
        } else {
            return cfg_unknown_key(ld, kn, sub, "kid, secret, secret_env, public_key_file");
        }
    }
    if (!key->secret_len == !key->pem_file[0])
        return cfg_load_fail(ld, n, name, "a JWT key needs exactly one of secret, secret_env or public_key_file");
    return 0;
}

static int load_jwt(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, access_conf_t *a)
{
    char name[CFG_KEY_MAX];
    if (cfg_node_is_null(v))
        return 0;
    if (cfg_map_check(ld, k, v, "auth.jwt", "JWT settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *key = cfg_key_text(ld, p);
        cfg_join(name, sizeof name, "auth.jwt", key);
        if (!strcmp(key, "keys")) {
            yaml_node_item_t *it, *top;
            if (seq_items(ld, kn, vn, name, &it, &top))
                return -EINVAL;
            a->n_jwt_keys = 0;
            for (; it < top; it++) {
                char item[CFG_KEY_MAX];
                snprintf(item, sizeof item, "auth.jwt.keys[%u]", a->n_jwt_keys);
                if (a->n_jwt_keys == ACCESS_MAX_JWT_KEYS)
                    return cfg_load_fail(ld, kn, name, "too many keys (at most %d)", ACCESS_MAX_JWT_KEYS);
                if (load_jwt_key(ld, cfg_node_at(ld, *it), item, &a->jwt_keys[a->n_jwt_keys++]))
                    return -EINVAL;
            }
            continue;
        }
        const struct cfg_setting *s = cfg_find_setting(access_rows, N_ROWS, "auth.jwt", key);
        if (!s)
            return cfg_unknown_key(ld, kn, name, "keys, jwks_file, issuer, audience, leeway, scope_claim");
        if (cfg_load_setting(ld, s, kn, vn, a, name))
            return -EINVAL;
    }
    return 0;
}

static int load_auth_agents(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, access_conf_t *a)
{
    if (cfg_map_check(ld, k, v, "auth.agents", "agent names to their access settings"))
        return -EINVAL;
    a->n_agents = 0;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        char name[CFG_KEY_MAX], sub[CFG_KEY_MAX + 32];
        cfg_join(name, sizeof name, "auth.agents", cfg_key_text(ld, p));
        if (a->n_agents == ACCESS_MAX_AUTH_AGENTS)
            return cfg_load_fail(ld, kn, name, "too many agents");
        access_agent_auth_t *ag = &a->agents[a->n_agents++];
        memset(ag, 0, sizeof *ag);
        ag->anonymous = -1;
        if (text_into(ld, kn, kn, name, ag->agent, sizeof ag->agent))
            return -EINVAL;
        if (cfg_map_check(ld, kn, vn, name, "settings (anonymous, scopes)"))
            return -EINVAL;
        for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++) {
            const yaml_node_t *kq = cfg_node_at(ld, q->key), *vq = cfg_node_at(ld, q->value);
            const char *key = cfg_key_text(ld, q), *t;
            cfg_join(sub, sizeof sub, name, key);
            if (!strcmp(key, "anonymous")) {
                if (cfg_node_text(ld, kq, vq, sub, &t))
                    return -EINVAL;
                if (!strcasecmp(t, "true") || !strcasecmp(t, "yes") || !strcasecmp(t, "on"))
                    ag->anonymous = 1;
                else if (!strcasecmp(t, "false") || !strcasecmp(t, "no") || !strcasecmp(t, "off"))
                    ag->anonymous = 0;
                else
                    return cfg_load_fail(ld, kq, sub, "expected true or false");
            } else if (!strcmp(key, "scopes")) {
                if (load_scopes(ld, kq, vq, sub, &ag->scopes))
                    return -EINVAL;
            } else {
                return cfg_unknown_key(ld, kq, sub, "anonymous, scopes");
            }
        }
    }
    return 0;
}

static int load_auth(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, access_conf_t *a)
{
    char name[CFG_KEY_MAX];
    if (cfg_node_is_null(v))
        return 0;
    if (cfg_map_check(ld, k, v, "auth", "settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *key = cfg_key_text(ld, p);
        yaml_node_item_t *it, *top;
        cfg_join(name, sizeof name, "auth", key);
        if (!strcmp(key, "api_keys")) {
            if (seq_items(ld, kn, vn, name, &it, &top))
                return -EINVAL;
            a->n_api_keys = 0;
            for (; it < top; it++) {
                char item[CFG_KEY_MAX];
                snprintf(item, sizeof item, "auth.api_keys[%u]", a->n_api_keys);
                if (a->n_api_keys == ACCESS_MAX_API_KEYS)
                    return cfg_load_fail(ld, kn, name, "too many API keys (at most %d)", ACCESS_MAX_API_KEYS);
                if (load_api_key(ld, cfg_node_at(ld, *it), item, &a->api_keys[a->n_api_keys++]))
                    return -EINVAL;
            }
        } else if (!strcmp(key, "jwt")) {
            if (load_jwt(ld, kn, vn, a))
                return -EINVAL;
        } else if (!strcmp(key, "trusted_proxies")) {
            if (seq_items(ld, kn, vn, name, &it, &top))
                return -EINVAL;
            a->n_trusted = 0;
            for (; it < top; it++) {
                const yaml_node_t *n = cfg_node_at(ld, *it);
                const char *t;
                if (a->n_trusted == ACCESS_MAX_CIDRS)
                    return cfg_load_fail(ld, n, name, "too many entries (at most %d)", ACCESS_MAX_CIDRS);
                if (cfg_node_text(ld, n, n, name, &t))
                    return -EINVAL;
                if (parse_cidr(t, &a->trusted[a->n_trusted++]))
                    return cfg_load_fail(ld, n, name, "'%.64s': expected an address or CIDR (10.0.0.0/8, ::1/128)", t);
            }
        } else if (!strcmp(key, "agents")) {
            if (load_auth_agents(ld, kn, vn, a))
                return -EINVAL;
        } else {
            const struct cfg_setting *s = cfg_find_setting(access_rows, N_ROWS, "auth", key);
            if (!s)
                return cfg_unknown_key(ld, kn, name, "anonymous, api_key_header, metrics_need_admin, api_keys, "
                                       "jwt, trusted_proxies, agents");
            if (cfg_load_setting(ld, s, kn, vn, a, name))
                return -EINVAL;
        }
    }
    return 0;
}

/* ---- cors: ---- */

static int load_cors(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, access_conf_t *a)
{
    char name[CFG_KEY_MAX];
    if (cfg_node_is_null(v))
        return 0;
    if (cfg_map_check(ld, k, v, "cors", "settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *key = cfg_key_text(ld, p);
        cfg_join(name, sizeof name, "cors", key);
        if (!strcmp(key, "allowed_origins")) {
            yaml_node_item_t *it, *top;
            if (seq_items(ld, kn, vn, name, &it, &top))
                return -EINVAL;
            a->n_origins = 0;
            for (; it < top; it++) {
                const yaml_node_t *n = cfg_node_at(ld, *it);
                if (a->n_origins == ACCESS_MAX_ORIGINS)
                    return cfg_load_fail(ld, n, name, "too many origins (at most %d)", ACCESS_MAX_ORIGINS);
                char *o = a->origins[a->n_origins++];
                if (text_into(ld, n, n, name, o, ACCESS_ORIGIN_MAX))
                    return -EINVAL;
                size_t ol = strlen(o);
                if (strcmp(o, "*") && (strchr(o, ' ') || (strncmp(o, "http://", 7) && strncmp(o, "https://", 8)) ||
                                       o[ol - 1] == '/'))
                    return cfg_load_fail(ld, n, name, "'%s': expected \"*\" or scheme://host[:port] without a path", o);
            }
        } else if (!strcmp(key, "allowed_methods")) {
            if (load_hlist(ld, kn, vn, name, a->cors_methods, sizeof a->cors_methods))
                return -EINVAL;
        } else if (!strcmp(key, "allowed_headers")) {
            if (load_hlist(ld, kn, vn, name, a->cors_headers, sizeof a->cors_headers))
                return -EINVAL;
        } else if (!strcmp(key, "expose_headers")) {
            if (load_hlist(ld, kn, vn, name, a->cors_expose, sizeof a->cors_expose))
                return -EINVAL;
        } else {
            const struct cfg_setting *s = cfg_find_setting(access_rows, N_ROWS, "cors", key);
            if (!s)
                return cfg_unknown_key(ld, kn, name, "allowed_origins, allowed_methods, allowed_headers, "
                                       "expose_headers, allow_credentials, max_age");
            if (cfg_load_setting(ld, s, kn, vn, a, name))
                return -EINVAL;
        }
    }
    return 0;
}

/* ---- rate_limit: ---- */

static int load_rule(const struct cfg_loader *ld, const yaml_node_t *n, const char *name, access_rl_rule_t *r)
{
    char sub[CFG_KEY_MAX + 32];
    if (cfg_map_check(ld, n, n, name, "rule settings"))
        return -EINVAL;
    memset(r, 0, sizeof *r);
    cfg_table_defaults(rule_rows, N_RULE_ROWS, r);
    r->key = ACCESS_RLK_IDENTITY;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *k = cfg_key_text(ld, p), *t;
        cfg_join(sub, sizeof sub, name, k);
        if (!strcmp(k, "name")) {
            if (text_into(ld, kn, vn, sub, r->name, sizeof r->name))
                return -EINVAL;
        } else if (!strcmp(k, "key")) {
            if (cfg_node_text(ld, kn, vn, sub, &t))
                return -EINVAL;
            if (!strcmp(t, "identity"))
                r->key = ACCESS_RLK_IDENTITY;
            else if (!strcmp(t, "client_ip"))
                r->key = ACCESS_RLK_CLIENT_IP;
            else if (!strcmp(t, "api_key"))
                r->key = ACCESS_RLK_API_KEY;
            else if (!strcmp(t, "global"))
                r->key = ACCESS_RLK_GLOBAL;
            else if (!strncmp(t, "claim:", 6) && t[6] && strlen(t + 6) < sizeof r->claim) {
                r->key = ACCESS_RLK_CLAIM;
                memcpy(r->claim, t + 6, strlen(t + 6) + 1);
            } else
                return cfg_load_fail(ld, kn, sub, "expected identity, client_ip, api_key, global or claim:<name>");
        } else if (!strcmp(k, "on_redis_down")) {
            if (cfg_node_text(ld, kn, vn, sub, &t))
                return -EINVAL;
            if (!strcmp(t, "local"))
                r->on_redis_down = RLG_DOWN_LOCAL;
            else if (!strcmp(t, "allow"))
                r->on_redis_down = RLG_DOWN_ALLOW;
            else if (!strcmp(t, "deny"))
                r->on_redis_down = RLG_DOWN_DENY;
            else
                return cfg_load_fail(ld, kn, sub, "expected local, allow or deny");
        } else if (!strcmp(k, "agents")) {
            yaml_node_item_t *it, *top;
            if (seq_items(ld, kn, vn, sub, &it, &top))
                return -EINVAL;
            r->n_agents = 0;
            for (; it < top; it++) {
                const yaml_node_t *in = cfg_node_at(ld, *it);
                if (r->n_agents == ACCESS_MAX_RULE_AGENTS)
                    return cfg_load_fail(ld, in, sub, "too many agents (at most %d)", ACCESS_MAX_RULE_AGENTS);
                if (text_into(ld, in, in, sub, r->agents[r->n_agents++], 64))
                    return -EINVAL;
            }
        } else {
            const struct cfg_setting *s = cfg_find_setting(rule_rows, N_RULE_ROWS, NULL, k);
            if (!s)
                return cfg_unknown_key(ld, kn, sub, "name, key, agents, per_agent, per_second, per_minute, "
                                       "per_hour, per_day, burst, concurrent, global, on_redis_down");
            if (cfg_load_setting(ld, s, kn, vn, r, sub))
                return -EINVAL;
        }
    }
    if (!r->name[0])
        return cfg_load_fail(ld, n, name, "a rule needs a name");
    if (!r->rate[0] && !r->rate[1] && !r->rate[2] && !r->rate[3] && !r->concurrent)
        return cfg_load_fail(ld, n, name, "a rule needs at least one of per_second, per_minute, per_hour, "
                             "per_day or concurrent");
    return 0;
}

static int load_rate_limit(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, access_conf_t *a)
{
    char name[CFG_KEY_MAX];
    if (cfg_node_is_null(v))
        return 0;
    if (cfg_map_check(ld, k, v, "rate_limit", "settings"))
        return -EINVAL;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn = cfg_node_at(ld, p->key), *vn = cfg_node_at(ld, p->value);
        const char *key = cfg_key_text(ld, p);
        cfg_join(name, sizeof name, "rate_limit", key);
        if (!strcmp(key, "rules")) {
            yaml_node_item_t *it, *top;
            if (cfg_node_is_null(vn)) {
                a->n_rules = 0;
                continue;
            }
            if (seq_items(ld, kn, vn, name, &it, &top))
                return -EINVAL;
            a->n_rules = 0;
            for (; it < top; it++) {
                char item[CFG_KEY_MAX];
                snprintf(item, sizeof item, "rate_limit.rules[%u]", a->n_rules);
                if (a->n_rules == ACCESS_MAX_RULES)
                    return cfg_load_fail(ld, kn, name, "too many rules (at most %d)", ACCESS_MAX_RULES);
                if (load_rule(ld, cfg_node_at(ld, *it), item, &a->rules[a->n_rules++]))
                    return -EINVAL;
            }
            continue;
        }
        const struct cfg_setting *s = cfg_find_setting(access_rows, N_ROWS, "rate_limit", key);
        if (!s)
            return cfg_unknown_key(ld, kn, name, "table_size, fleet_size, global_slot_ttl, rules");
        if (cfg_load_setting(ld, s, kn, vn, a, name))
            return -EINVAL;
    }
    return 0;
}

/* The file's auth:, cors:, security_headers: or rate_limit: value. */
static int access_load(const struct cfg_loader *ld, const char *key, const yaml_node_t *k, const yaml_node_t *v,
                       void *conf)
{
    access_conf_t *a = conf;
    if (!strcmp(key, "auth"))
        return load_auth(ld, k, v, a);
    if (!strcmp(key, "cors"))
        return load_cors(ld, k, v, a);
    if (!strcmp(key, "rate_limit"))
        return load_rate_limit(ld, k, v, a);
    return cfg_load_setting(ld, cfg_find_setting(access_rows, N_ROWS, NULL, key), k, v, a, key);
}

/* After the rows' checks: names that must be configured agents, and no two
 * API keys or rules alike. */
static int access_validate(const cfg_t *c, const void *conf, char *key, size_t keylen, char *why, size_t whylen)
{
    const access_conf_t *a = conf;
    for (uint32_t i = 0; i < a->n_agents; i++) {
        if (!cfg_find_agent(c, a->agents[i].agent, strlen(a->agents[i].agent))) {
            snprintf(key, keylen, "auth.agents.%s", a->agents[i].agent);
            snprintf(why, whylen, "no agent by that name is configured");
            return -EINVAL;
        }
    }
    for (uint32_t i = 0; i < a->n_api_keys; i++)
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(a->api_keys[i].name, a->api_keys[j].name) ||
                !memcmp(a->api_keys[i].sha256, a->api_keys[j].sha256, 32)) {
                snprintf(key, keylen, "auth.api_keys[%u]", i);
                snprintf(why, whylen, "duplicate API key name or digest (same as auth.api_keys[%u])", j);
                return -EINVAL;
            }
    for (uint32_t i = 0; i < a->n_rules; i++) {
        const access_rl_rule_t *r = &a->rules[i];
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(r->name, a->rules[j].name)) {
                snprintf(key, keylen, "rate_limit.rules[%u].name", i);
                snprintf(why, whylen, "duplicate rule name '%s'", r->name);
                return -EINVAL;
            }
        if (r->global && !redis_configured(c)) {
            /* a fleet-wide limit enforced per pod would admit pods times the rate, silently */
            snprintf(key, keylen, "rate_limit.rules[%u].global", i);
            snprintf(why, whylen, "a global rule is shared through Redis: set redis.address (or make the rule local)");
            return -EINVAL;
        }
        for (uint32_t j = 0; j < r->n_agents; j++)
            if (!cfg_find_agent(c, r->agents[j], strlen(r->agents[j]))) {
                snprintf(key, keylen, "rate_limit.rules[%u].agents", i);
                snprintf(why, whylen, "no agent named '%s' is configured", r->agents[j]);
                return -EINVAL;
            }
    }
    return 0;
}

static const char *const access_keys[] = { "auth", "cors", "security_headers", "rate_limit", NULL };
/* The limiter table is sized once, at the first publish (access_publish). */
static const char *const access_restart[] = { "rate_limit.table_size", NULL };

/* rank 60: listed last, after the agents, as before sections existed */
cfg_section_t access_conf_section = {
    .name = "access", .keys = access_keys, .rows = access_rows, .n_rows = N_ROWS, .size = sizeof(access_conf_t),
    .rank = 60, .restart = access_restart, .defaults = access_defaults, .load = access_load, .validate = access_validate,
};
