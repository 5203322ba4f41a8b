/* access: identity, authorization, CORS, security headers and rate limits
 * (see access.h for the lifecycle of a policy and of a run's slots).
 *
 * Hot path, per run request: one atomic load of the policy pointer; with no
 * auth, rules or CORS configured, nothing else. With rules: the peer address
 * (looked up once per connection) when a rule keys on it, one hash and one CAS per limit. API key
 * digests are compared with CRYPTO_memcmp against every configured key (no early
 * exit), JWTs verified by core/jwt.c. Nothing here logs a credential: messages
 * name what was wrong, never the value. */
#include "net/access.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include "core/digest.h"

#include "core/jwt.h"
#include "core/qsbr.h"
#include "core/shard.h"
#include "net/conn.h"
#include "net/http1.h"
#include "core/json.h"
#include "net/gwmetrics.h"
#include "proto/run.h"

static const uint64_t period_ns[4] = {
    UINT64_C(1000000000), UINT64_C(60000000000), UINT64_C(3600000000000), UINT64_C(86400000000000),
};

typedef struct rule_rt {
    const cfg_rl_rule_t *def;          /* into policy.cfg */
    uint64_t  id;                      /* hash of the definition: limiter cells survive a reload that keeps it */
    rl_rate_t rate[4];
    uint32_t  count[4];
    uint32_t  conc_lease;              /* rl_conc_lease_for(concurrent, shards) */
    uint64_t  agents;                  /* bit per agent index (CFG_MAX_AGENTS <= 64) */
    int       claim;                   /* index into policy.claims for CFG_RLK_CLAIM */
    bool      fixed;                   /* global: a request's key base is fixed_base[agent slot] */
    bool      by_key;                  /* keyed by API key or identity: policy.key_base for an API key */
    uint64_t  fixed_base[CFG_MAX_AGENTS];
} rule_rt_t;

typedef struct policy {
    cfg_access_t   cfg;
    jwt_keyset_t   keys;
    bool           auth_on, cors_on, any_origin, need_client, active;
    int8_t         anon[CFG_MAX_AGENTS];
    const cfg_scopes_t *need[CFG_MAX_AGENTS];   /* configured scopes, NULL = default */
    rule_rt_t      rules[CFG_MAX_RULES];
    uint32_t       n_rules;
    char           claims[ACCESS_MAX_CLAIMS][CFG_CLAIM_MAX];
    uint32_t       n_claims;
    struct stat    jwks_st;
    uint64_t       serial;         /* never reused: names this policy in conn_t.key_memo and idents */
    /* Per API key, worked out once at build: the agent slots it may run
     * (authorize's answer) and each by_key rule's limiter key base per agent
     * slot, at key_base[(key * n_rules + rule) * slots + slot]. */
    uint64_t       key_runs[CFG_MAX_API_KEYS];
    uint64_t      *key_base;
    unsigned       slots;          /* agent slots in use: the highest + 1 */
    uint64_t       agent_hash[CFG_MAX_AGENTS];   /* by slot: mixed into a per-agent rule's keys */
    /* Slots of the agents this policy was built with. A shard can still run
     * a configuration one reload older or newer than the policy (slots keep
     * their agent for the life of the process, but may be new or gone), so
     * the tables by slot are read only for these. */
    uint64_t       known;
    uint64_t       retired_at;
    struct policy *next;
} policy_t;

static _Atomic(policy_t *) g_policy;
static policy_t           *g_retired;             /* main thread only; freed by core/qsbr.h */
static rl_table_t          g_table;
static bool                g_table_ok;

static inline policy_t *policy(void) { return atomic_load_explicit(&g_policy, memory_order_acquire); }

/* ---- policy: build, publish, reclaim (main thread) ---- */

static void policy_free(policy_t *p)
{
    if (!p)
        return;
    jwt_keyset_free(&p->keys);
    OPENSSL_cleanse(&p->cfg, sizeof p->cfg);   /* HMAC secrets */
    free(p->key_base);
    free(p);
}

static int load_jwks(policy_t *p, char *err, size_t errlen)
{
    const char *path = p->cfg.jwks_file;
    char *text = NULL;
    FILE *f = fopen(path, "re");
    if (!f || fstat(fileno(f), &p->jwks_st)) {
        snprintf(err, errlen, "auth.jwt.jwks_file: %s: %s", path, strerror(errno));
        if (f)
            fclose(f);
        return -EINVAL;
    }
    size_t n = (size_t)p->jwks_st.st_size;
    int rc = 0;
    if (n > (1u << 20) || !(text = malloc(n + 1)) || fread(text, 1, n, f) != n) {
        snprintf(err, errlen, "auth.jwt.jwks_file: %s: cannot read (at most 1 MiB)", path);
        rc = -EINVAL;
    }
    fclose(f);
    if (!rc) {
        char why[256];
        rc = jwt_keyset_add_jwks(&p->keys, text, n, why, sizeof why);
        if (rc)
            snprintf(err, errlen, "auth.jwt.jwks_file: %s: %s", path, why);
    }
    free(text);
    return rc;
}

/* The seed of rule r's limiter keys for agent: its definition's hash, and for
 * a per-agent rule the agent's name mixed in. */
static uint64_t rule_seed(const policy_t *p, const rule_rt_t *r, const cfg_agent_t *agent)
{
    if (!r->def->per_agent)
        return r->id;
    if (p->known >> agent->slot & 1)
        return r->id ^ p->agent_hash[agent->slot];
    return r->id ^ (rl_hash(agent->name, strlen(agent->name), 1) | 1);
}

static int compile_rules(policy_t *p, const cfg_t *cfg, char *err, size_t errlen)
{
    /* The shards that take from one rate cell: those running. A reload cannot
     * change their number (`shards` takes effect at start), so a reloaded file's
     * value must not size the leases; at start-up none run yet. */
    unsigned threads = g_nshards ? g_nshards : shard_count(cfg);
    for (uint32_t i = 0; i < p->cfg.n_rules; i++) {
        const cfg_rl_rule_t *d = &p->cfg.rules[i];
        rule_rt_t *r = &p->rules[i];
        r->def = d;
        r->id = rl_hash(d, sizeof *d, 0x61676174u);   /* the whole definition: any change is a new rule */
        for (int k = 0; k < 4; k++) {
            r->count[k] = d->rate[k];
            if (!d->rate[k])
                continue;
            uint64_t t = period_ns[k] / d->rate[k];
            r->rate[k].interval_ns = t ? t : 1;
            r->rate[k].burst_ns = r->rate[k].interval_ns * (d->burst ? d->burst : d->rate[k]);
            r->rate[k].lease = rl_lease_for(&r->rate[k], threads);
        }
        r->conc_lease = rl_conc_lease_for(d->concurrent, threads);
        if (!d->n_agents)
            r->agents = ~UINT64_C(0);
        for (uint32_t a = 0; a < d->n_agents; a++) {
            const cfg_agent_t *ag = cfg_find_agent(cfg, d->agents[a], strlen(d->agents[a]));
            if (!ag) {
                snprintf(err, errlen, "rate_limit.rules[%u].agents: no agent named '%s'", i, d->agents[a]);
                return -EINVAL;
            }
            r->agents |= UINT64_C(1) << ag->slot;
        }
        r->claim = -1;
        if (d->key == CFG_RLK_CLAIM) {
            uint32_t c = 0;
            while (c < p->n_claims && strcmp(p->claims[c], d->claim))
                c++;
            if (c == ACCESS_MAX_CLAIMS) {
                snprintf(err, errlen, "rate_limit.rules[%u].key: at most %d different claims", i, ACCESS_MAX_CLAIMS);
                return -EINVAL;
            }
            if (c == p->n_claims)
                memcpy(p->claims[p->n_claims++], d->claim, sizeof d->claim);   /* both CFG_CLAIM_MAX */
            r->claim = (int)c;
        }
        if (d->key == CFG_RLK_IDENTITY || d->key == CFG_RLK_CLIENT_IP)
            p->need_client = true;
        r->fixed = d->key == CFG_RLK_GLOBAL;
        for (uint32_t a = 0; r->fixed && a < cfg->n_agents; a++)
            r->fixed_base[cfg->agents[a].slot] = rl_key_base(rule_seed(p, r, &cfg->agents[a]), "", 0);
        r->by_key = d->key == CFG_RLK_API_KEY || d->key == CFG_RLK_IDENTITY;
    }
    p->n_rules = p->cfg.n_rules;
    return 0;
}

static int key_tables(policy_t *p, const cfg_t *cfg);

static policy_t *policy_build(const cfg_t *cfg, char *err, size_t errlen)
{
    policy_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    static uint64_t serials;   /* main thread only */
    p->serial = ++serials;
    memcpy(&p->cfg, &cfg->access, sizeof p->cfg);
    const cfg_access_t *a = &p->cfg;
    char why[256];
    for (uint32_t i = 0; i < a->n_jwt_keys; i++) {
        const cfg_jwt_key_t *k = &a->jwt_keys[i];
        int rc = k->secret_len ? jwt_keyset_add_secret(&p->keys, k->kid, k->secret, k->secret_len)
                               : jwt_keyset_add_pem_file(&p->keys, k->kid, k->pem_file, why, sizeof why);
        if (rc) {
            snprintf(err, errlen, "auth.jwt.keys[%u]: %s", i, k->secret_len ? "out of memory" : why);
            goto fail;
        }
    }
    if (a->jwks_file[0] && load_jwks(p, err, errlen))
        goto fail;
    p->auth_on = a->n_api_keys || a->n_jwt_keys || a->jwks_file[0] || !a->anonymous;
    for (uint32_t i = 0; i < cfg->n_agents; i++)
        p->anon[i] = a->anonymous;
    for (uint32_t i = 0; i < a->n_agents; i++) {
        const cfg_agent_t *ag = cfg_find_agent(cfg, a->agents[i].agent, strlen(a->agents[i].agent));
        if (!ag) {
            snprintf(err, errlen, "auth.agents.%s: no agent by that name", a->agents[i].agent);
            goto fail;
        }
        unsigned ix = ag->slot;
        if (a->agents[i].anonymous >= 0)
            p->anon[ix] = a->agents[i].anonymous;
        if (a->agents[i].scopes.n)
            p->need[ix] = &a->agents[i].scopes;
    }
    for (uint32_t i = 0; i < cfg->n_agents; i++) {
        p->agent_hash[cfg->agents[i].slot] = rl_hash(cfg->agents[i].name, strlen(cfg->agents[i].name), 1) | 1;
        p->known |= UINT64_C(1) << cfg->agents[i].slot;
    }
    if (compile_rules(p, cfg, err, errlen))
        goto fail;
    if (key_tables(p, cfg)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    p->cors_on = a->n_origins > 0;
    for (uint32_t i = 0; i < a->n_origins; i++)
        p->any_origin |= !strcmp(a->origins[i], "*");
    p->active = p->auth_on || p->n_rules || p->cors_on || a->security_headers;
    return p;
fail:
    policy_free(p);
    return NULL;
}

int access_publish(const cfg_t *cfg, char *err, size_t errlen)
{
    if (!g_table_ok) {
        if (rl_table_init(&g_table, cfg->access.rl_table_size)) {
            snprintf(err, errlen, "rate_limit.table_size: out of memory");
            return -ENOMEM;
        }
        g_table_ok = true;
    }
    policy_t *p = policy_build(cfg, err, errlen);
    if (!p)
        return -EINVAL;
    policy_t *old = atomic_exchange_explicit(&g_policy, p, memory_order_acq_rel);
    if (old) {
        old->retired_at = qsbr_retire();
        old->next = g_retired;
        g_retired = old;
    }
    return 0;
}

void access_reclaim(void)
{
    policy_t **pp = &g_retired;
    while (*pp) {
        policy_t *p = *pp;
        if (qsbr_safe(p->retired_at)) {
            *pp = p->next;
            policy_free(p);
        } else {
            pp = &p->next;
        }
    }
}

bool access_jwks_changed(uint64_t *sig)
{
    policy_t *p = policy();
    struct stat st;
    if (!p || !p->cfg.jwks_file[0] || stat(p->cfg.jwks_file, &st))
        return false;
    *sig = rl_hash(&st.st_mtim, sizeof st.st_mtim, (uint64_t)st.st_size) ^
           rl_hash(&st.st_ctim, sizeof st.st_ctim, (uint64_t)st.st_ino);
    return st.st_mtim.tv_sec != p->jwks_st.st_mtim.tv_sec || st.st_mtim.tv_nsec != p->jwks_st.st_mtim.tv_nsec ||
           st.st_size != p->jwks_st.st_size || st.st_ino != p->jwks_st.st_ino;
}

void access_shutdown(void)
{
    policy_free(atomic_exchange(&g_policy, NULL));
    while (g_retired) {
        policy_t *p = g_retired;
        g_retired = p->next;
        policy_free(p);
    }
    if (g_table_ok)
        rl_table_free(&g_table);
    g_table_ok = false;
}

static void access_table_stats(uint64_t *capacity, uint64_t *used, uint64_t *evictions, uint64_t *full)
{
    *capacity = *used = *evictions = *full = 0;
    if (!g_table_ok)
        return;
    *capacity = g_table.mask + 1;
    *used = rl_table_used(&g_table, rl_now_ns());
    *evictions = atomic_load_explicit(&g_table.evictions, memory_order_relaxed);
    *full = atomic_load_explicit(&g_table.full, memory_order_relaxed);
}

/* ---- identity ---- */

static bool in_cidr(const uint8_t a[16], const cfg_cidr_t *c)
{
    unsigned bits = c->bits, i = 0;
    for (; bits >= 8; bits -= 8, i++)
        if (a[i] != c->addr[i])
            return false;
    return !bits || ((a[i] ^ c->addr[i]) & (uint8_t)(0xff00 >> bits)) == 0;
}

static bool trusted(const policy_t *p, const uint8_t a[16])
{
    for (uint32_t i = 0; i < p->cfg.n_trusted; i++)
        if (in_cidr(a, &p->cfg.trusted[i]))
            return true;
    return false;
}

/* Text (IPv4 without the ::ffff: prefix) -> 16-byte form; false if not an address. */
static bool addr16(const char *s, size_t n, uint8_t out[16])
{
    char tmp[64];
    if (!n || n >= sizeof tmp)
        return false;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    memset(out, 0, 16);
    if (inet_pton(AF_INET, tmp, out + 12) == 1) {
        out[10] = out[11] = 0xff;
        return true;
    }
    return inet_pton(AF_INET6, tmp, out) == 1;
}

static void addr_text(const uint8_t a[16], access_ident_t *id)
{
    static const uint8_t v4pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const char *ok = !memcmp(a, v4pre, 12) ? inet_ntop(AF_INET, a + 12, id->client, sizeof id->client)
                                           : inet_ntop(AF_INET6, a, id->client, sizeof id->client);
    id->client_len = ok ? (uint8_t)strlen(id->client) : 0;
}

/* The peer, or with trusted proxies the right-most X-Forwarded-For entry that
 * is not itself a trusted proxy. */
static void client_address(const policy_t *p, conn_t *c, const http_req_t *r, access_ident_t *id)
{
    uint8_t a[16] = {0};
    id->client_len = 0;
    if (!conn_peer(c))
        return;
    if (!p->cfg.n_trusted && !memchr(c->peer, ':', c->peer_len) && c->peer_len < sizeof id->client) {
        memcpy(id->client, c->peer, c->peer_len);   /* IPv4, nothing to consult: the text as it is */
        id->client[c->peer_len] = 0;
        id->client_len = c->peer_len;
        return;
    }
    if (!addr16(c->peer, c->peer_len, a))
        return;
    const char *v;
    size_t n;
    if (p->cfg.n_trusted && trusted(p, a) && http_header(r, "x-forwarded-for", &v, &n)) {
        size_t end = n;
        while (end > 0) {
            size_t start = end;
            while (start > 0 && v[start - 1] != ',')
                start--;
            size_t s = start, e = end;
            while (s < e && (v[s] == ' ' || v[s] == '\t'))
                s++;
            while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
                e--;
            uint8_t x[16];
            if (!addr16(v + s, e - s, x))
                break;   /* garbage: keep the last address we could trust */
            memcpy(a, x, 16);
            if (!trusted(p, x))
                break;
            end = start ? start - 1 : 0;
        }
    }
    addr_text(a, id);
}

static void put_scope_list(access_ident_t *id, const char *s, size_t n)
{
    if (id->scopes_len + n + 1 >= sizeof id->scopes)
        return;   /* more scopes than fit: the rest are not granted */
    if (id->scopes_len)
        id->scopes[id->scopes_len++] = ' ';
    memcpy(id->scopes + id->scopes_len, s, n);
    id->scopes_len = (uint16_t)(id->scopes_len + n);
    id->scopes[id->scopes_len] = 0;
}

static void claim_text(json_t *v, char *out, uint8_t *len, bool *set)
{
    char tmp[32];
    const char *s = NULL;
    size_t n = 0;
    if (json_is_string(v)) {
        s = json_string_value(v);
        n = json_string_length(v);
    } else if (json_is_integer(v)) {
        n = (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        s = tmp;
    }
    *set = s && n;
    if (!*set)
        return;
    if (n >= ACCESS_VAL_MAX)
        n = ACCESS_VAL_MAX - 1;
    memcpy(out, s, n);
    out[n] = 0;
    *len = (uint8_t)n;
}

static void refuse_401(access_decision_t *d, const char *error, const char *message)
{
    d->verdict = ACCESS_UNAUTHORIZED;
    d->error = error;
    d->message = message;
}

static access_verdict_t identify_jwt(const policy_t *p, conn_t *c, const char *tok, size_t n, access_ident_t *id,
                                     access_decision_t *d)
{
    jwt_token_t t;
    jwt_err_t e = jwt_parse(tok, n, &t);
    if (e == JWT_OK) {
        jwt_checks_t chk = {
            .now = c->sh ? (int64_t)c->sh->wall_sec : 0,
            .leeway_s = p->cfg.leeway_ms / 1000,
            .issuer = p->cfg.issuer,
            .audience = p->cfg.audience,
        };
        if (!chk.now)
            chk.now = (int64_t)time(NULL);
        e = jwt_verify(&t, tok, &p->keys, &chk);
    }
    if (e != JWT_OK) {
        jwt_token_free(&t);
        refuse_401(d, "invalid_token", jwt_err_text(e));
        return d->verdict;
    }
    id->kind = ACCESS_JWT;
    bool set;
    claim_text(json_object_get(t.claims, "sub"), id->name, &id->name_len, &set);
    if (!set)
        id->name_len = 0;
    json_t *sc = json_object_get(t.claims, p->cfg.scope_claim);
    if (json_is_string(sc)) {
        const char *s = json_string_value(sc), *end = s + json_string_length(sc);
        while (s < end) {
            while (s < end && *s == ' ')
                s++;
            const char *w = s;
            while (s < end && *s != ' ')
                s++;
            if (s > w)
                put_scope_list(id, w, (size_t)(s - w));
        }
    } else if (json_is_array(sc)) {
        size_t i;
        json_t *v;
        json_array_foreach(sc, i, v)
            if (json_is_string(v) && json_string_length(v) && !memchr(json_string_value(v), ' ', json_string_length(v)))
                put_scope_list(id, json_string_value(v), json_string_length(v));
    }
    for (uint32_t i = 0; i < p->n_claims; i++)
        claim_text(json_object_get(t.claims, p->claims[i]), id->claims[i], &id->claim_len[i], &id->claim_set[i]);
    jwt_token_free(&t);
    return ACCESS_ALLOW;
}

/* The key this connection presented last, if these are its bytes under this
 * policy: a keep-alive client sends the same key on every request, and a
 * constant-time compare of ~40 bytes replaces SHA-256 through EVP (86 ns here)
 * and the compare against every configured digest. -1 when not remembered. */
static int key_recall(const policy_t *p, const conn_t *c, const char *key, size_t n)
{
    const conn_key_memo_t *m = &c->key_memo;
    if (!m->len || m->len != n || m->policy != p->serial || CRYPTO_memcmp(m->key, key, n))
        return -1;
    return (int)m->idx;
}

static void key_remember(const policy_t *p, conn_t *c, const char *key, size_t n, int idx)
{
    conn_key_memo_t *m = &c->key_memo;
    if (n > sizeof m->key) {
        m->len = 0;
        return;
    }
    memcpy(m->key, key, n);
    m->len = (uint8_t)n;
    m->policy = p->serial;
    m->idx = (uint32_t)idx;
}

/* id becomes API key k of p: its name and scopes, and the index that lets
 * authorize and access_admit use p's tables while p is the policy. */
static void ident_of_key(const policy_t *p, uint32_t k, access_ident_t *id)
{
    const cfg_api_key_t *key = &p->cfg.api_keys[k];
    id->kind = ACCESS_API_KEY;
    id->name_len = (uint8_t)strnlen(key->name, ACCESS_VAL_MAX - 1);
    memcpy(id->name, key->name, id->name_len);
    id->name[id->name_len] = 0;
    for (uint32_t i = 0; i < key->scopes.n; i++)
        put_scope_list(id, key->scopes.s[i], strlen(key->scopes.s[i]));
    id->key = k;
    id->key_policy = p->serial;
}

static access_verdict_t identify_key(const policy_t *p, conn_t *c, const char *key, size_t n, access_ident_t *id,
                                     access_decision_t *d)
{
    int found = c ? key_recall(p, c, key, n) : -1;
    if (found < 0) {
        uint8_t dig[DIGEST_SHA256_LEN];
        if (digest_sha256(key, n, dig)) {
            refuse_401(d, "invalid_token", "the API key could not be checked");
            return d->verdict;
        }
        for (uint32_t i = 0; i < p->cfg.n_api_keys; i++)   /* every key, no early exit: constant time in the match */
            if (CRYPTO_memcmp(dig, p->cfg.api_keys[i].sha256, sizeof dig) == 0)
                found = (int)i;
        OPENSSL_cleanse(dig, sizeof dig);
        if (found < 0) {
            refuse_401(d, "invalid_token", "invalid API key");
            return d->verdict;
        }
        if (c)
            key_remember(p, c, key, n, found);
    }
    ident_of_key(p, (uint32_t)found, id);
    return ACCESS_ALLOW;
}

static access_verdict_t identify(const policy_t *p, conn_t *c, const http_req_t *r, access_ident_t *id,
                                 access_decision_t *d)
{
    memset(d, 0, sizeof *d);
    id->kind = ACCESS_ANON;
    id->name_len = 0;
    id->scopes_len = 0;
    id->scopes[0] = 0;
    memset(id->claim_set, 0, sizeof id->claim_set);
    id->client_len = 0;
    id->key_policy = 0;
    if (p->need_client)
        client_address(p, c, r, id);
    if (!p->auth_on)
        return ACCESS_ALLOW;
    const char *v;
    size_t n;
    if (http_header(r, "authorization", &v, &n)) {
        if (n < 7 || strncasecmp(v, "Bearer ", 7)) {
            refuse_401(d, "invalid_request", "Authorization must be Bearer <token>");
            return d->verdict;
        }
        v += 7;
        n -= 7;
        while (n && *v == ' ')
            v++, n--;
        while (n && v[n - 1] == ' ')
            n--;
        if (!n) {
            refuse_401(d, "invalid_request", "empty bearer token");
            return d->verdict;
        }
        /* Two dots: a JWT (when JWT keys are configured); anything else is an API key. */
        const char *dot = memchr(v, '.', n);
        bool jwt_shape = dot && memchr(dot + 1, '.', n - (size_t)(dot + 1 - v));
        if (jwt_shape && p->keys.n)
            return identify_jwt(p, c, v, n, id, d);
        return identify_key(p, c, v, n, id, d);
    }
    if (p->cfg.api_key_header[0] && http_header(r, p->cfg.api_key_header, &v, &n))
        return identify_key(p, c, v, n, id, d);
    return ACCESS_ALLOW;
}

access_verdict_t access_identify(conn_t *c, const http_req_t *r, access_ident_t *id, access_decision_t *d)
{
    policy_t *p = policy();
    memset(d, 0, sizeof *d);
    if (!p) {
        memset(id, 0, sizeof *id);
        return ACCESS_ALLOW;
    }
    return identify(p, c, r, id, d);
}

/* ---- authorization and limits ---- */

static bool has_scope(const access_ident_t *id, const char *s, size_t n)
{
    const char *p = id->scopes, *end = id->scopes + id->scopes_len;
    while (p < end) {
        const char *w = p;
        while (p < end && *p != ' ')
            p++;
        if ((size_t)(p - w) == n && !memcmp(w, s, n))
            return true;
        p++;
    }
    return false;
}

static bool has_scope_str(const access_ident_t *id, const char *s) { return has_scope(id, s, strlen(s)); }

static access_verdict_t authorize(const policy_t *p, const access_ident_t *id, const cfg_agent_t *agent,
                                  unsigned ai, access_decision_t *d)
{
    if (!p->auth_on || p->anon[ai])
        return ACCESS_ALLOW;
    if (id->key_policy == p->serial && (p->key_runs[id->key] >> ai & 1))   /* 0 for a slot not known */
        return ACCESS_ALLOW;   /* the answer below, worked out at build (key_tables) */
    if (id->kind == ACCESS_ANON) {
        refuse_401(d, "unauthorized", "credentials required: Authorization: Bearer <token or API key>");
        return d->verdict;
    }
    if (has_scope(id, "admin", 5))
        return ACCESS_ALLOW;
    const cfg_scopes_t *need = p->need[ai];
    if (need) {
        for (uint32_t i = 0; i < need->n; i++)
            if (has_scope_str(id, need->s[i]))
                return ACCESS_ALLOW;
        snprintf(d->scope, sizeof d->scope, "%s", need->s[0]);
    } else {
        if (has_scope(id, "agents:run", 10))
            return ACCESS_ALLOW;
        char s[96];
        int n = snprintf(s, sizeof s, "agents:run:%s", agent->name);
        if (has_scope(id, s, (size_t)n))
            return ACCESS_ALLOW;
        snprintf(d->scope, sizeof d->scope, "%s", s);
    }
    d->verdict = ACCESS_FORBIDDEN;
    d->error = "insufficient_scope";
    d->message = "the credentials lack a scope this agent requires";
    return d->verdict;
}

/* The bytes a rule keys on; false when the rule does not apply to this caller. */
static bool rule_key(const rule_rt_t *r, const access_ident_t *id, char *out, size_t *len)
{
    switch (r->def->key) {
    case CFG_RLK_GLOBAL:
        *len = 0;
        return true;
    case CFG_RLK_CLIENT_IP:
        memcpy(out, id->client, id->client_len);
        *len = id->client_len;
        return true;
    case CFG_RLK_API_KEY:
        if (id->kind != ACCESS_API_KEY)
            return false;
        memcpy(out, id->name, id->name_len);
        *len = id->name_len;
        return true;
    case CFG_RLK_CLAIM:
        if (r->claim < 0 || !id->claim_set[r->claim])
            return false;
        memcpy(out, id->claims[r->claim], id->claim_len[r->claim]);
        *len = id->claim_len[r->claim];
        return true;
    case CFG_RLK_IDENTITY:
    default:
        if (id->kind != ACCESS_ANON && id->name_len) {
            out[0] = id->kind == ACCESS_JWT ? 'j' : 'k';
            memcpy(out + 1, id->name, id->name_len);
            *len = 1u + id->name_len;
        } else {
            out[0] = 'a';
            memcpy(out + 1, id->client, id->client_len);
            *len = 1u + id->client_len;
        }
        return true;
    }
}

/* For each API key: the agents it may run, by the rules authorize applies to
 * its scopes, and each by_key rule's limiter key base: per request, a bit test
 * and a load instead of scope string compares and a hash of the key's name. */
static int key_tables(policy_t *p, const cfg_t *cfg)
{
    access_ident_t id;
    for (uint32_t i = 0; i < cfg->n_agents; i++)
        if (cfg->agents[i].slot >= p->slots)
            p->slots = cfg->agents[i].slot + 1;
    size_t n = (size_t)p->cfg.n_api_keys * p->n_rules * p->slots;
    if (n && !(p->key_base = calloc(n, sizeof *p->key_base)))
        return -ENOMEM;
    for (uint32_t k = 0; k < p->cfg.n_api_keys; k++) {
        memset(&id, 0, sizeof id);
        ident_of_key(p, k, &id);
        id.key_policy = 0;   /* authorize must read the scopes here, not this table */
        for (uint32_t i = 0; i < cfg->n_agents; i++) {
            const cfg_agent_t *ag = &cfg->agents[i];
            access_decision_t d;
            memset(&d, 0, sizeof d);
            if (authorize(p, &id, ag, ag->slot, &d) == ACCESS_ALLOW)
                p->key_runs[k] |= UINT64_C(1) << ag->slot;
        }
        char kb[1 + ACCESS_VAL_MAX + 48];
        size_t kl;
        for (uint32_t i = 0; i < p->n_rules; i++) {
            const rule_rt_t *r = &p->rules[i];
            if (!r->by_key || !rule_key(r, &id, kb, &kl))
                continue;
            for (uint32_t a = 0; a < cfg->n_agents; a++) {
                const cfg_agent_t *ag = &cfg->agents[a];
                p->key_base[((size_t)k * p->n_rules + i) * p->slots + ag->slot] = rl_key_base(rule_seed(p, r, ag), kb, kl);
            }
        }
    }
    return 0;
}

static uint32_t ceil_s(uint64_t ns) { return (uint32_t)((ns + 999999999u) / 1000000000u); }

void access_release(rl_holds_t *holds) { rl_holds_release(&g_table, holds); }

access_verdict_t access_admit(const access_ident_t *id, const cfg_t *cfg, const cfg_agent_t *agent,
                              rl_holds_t *holds, access_decision_t *d)
{
    policy_t *p = policy();
    holds->n = 0;
    memset(d, 0, sizeof *d);
    if (!p)
        return ACCESS_ALLOW;
    unsigned ai = agent->slot;
    if (authorize(p, id, agent, ai, d))
        return d->verdict;
    if (!p->n_rules)
        return ACCESS_ALLOW;

    rl_hold_t charged[CFG_MAX_RULES * 4];
    unsigned n_charged = 0;
    uint64_t now = rl_now_ns();
    char kb[1 + ACCESS_VAL_MAX + 48];
    rl_quota_t q = {0};
    bool known = p->known >> ai & 1;
    const uint64_t *kbase = known && id->key_policy == p->serial && p->key_base
                                ? p->key_base + (size_t)id->key * p->n_rules * p->slots : NULL;
    for (uint32_t i = 0; i < p->n_rules; i++) {
        const rule_rt_t *r = &p->rules[i];
        size_t kl;
        uint64_t base;
        if (!(r->agents & (UINT64_C(1) << ai)))
            continue;
        if (r->fixed && known) {
            base = r->fixed_base[ai];
        } else if (r->by_key && kbase) {
            base = kbase[i * p->slots + ai];
        } else {
            if (!rule_key(r, id, kb, &kl))
                continue;
            base = rl_key_base(rule_seed(p, r, agent), kb, kl);
        }
        for (unsigned k = 0; k < 4; k++) {
            if (!r->count[k])
                continue;
            rl_result_t res = rl_rate_take(&g_table, rl_key_of(base, k, false), &r->rate[k], now,
                                           &charged[n_charged]);
            if (!res.allowed) {
                q = (rl_quota_t){.set = true, .limit = r->count[k], .remaining = 0,
                                 .reset_s = ceil_s(res.reset_ns), .retry_s = ceil_s(res.retry_ns)};
                goto refuse;
            }
            if (charged[n_charged].cell != UINT32_MAX)
                n_charged++;
            if (!q.set || res.remaining < q.remaining)
                q = (rl_quota_t){.set = true, .limit = r->count[k], .remaining = res.remaining,
                                 .reset_s = ceil_s(res.reset_ns)};
        }
        if (r->def->concurrent && holds->n < ACCESS_MAX_HOLDS) {
            rl_result_t res = rl_conc_take_leased(&g_table, rl_key_of(base, 4, true), r->def->concurrent,
                                                  r->conc_lease, &holds->h[holds->n]);
            if (!res.allowed) {
                q = (rl_quota_t){.set = true, .limit = r->def->concurrent, .remaining = 0, .reset_s = 1, .retry_s = 1};
                goto refuse;
            }
            if (holds->h[holds->n].cell != UINT32_MAX)
                holds->n++;
        }
    }
    d->quota = q;
    return ACCESS_ALLOW;
refuse:
    /* A refused request consumes nothing: give back what the rules before the
     * refusing one charged, and the slots they lent. */
    for (unsigned k = 0; k < n_charged; k++)
        rl_refund(&g_table, &charged[k]);
    access_release(holds);
    if (!q.retry_s)
        q.retry_s = 1;
    d->quota = q;
    d->verdict = ACCESS_RATE_LIMITED;
    d->error = "rate_limit_exceeded";
    d->message = "rate limit exceeded, retry later";
    return d->verdict;
}

/* ---- HTTP ---- */

static void count_reject(conn_t *c, access_verdict_t v)
{
    if (!c->sh || !gwm(c->sh))
        return;
    enum metrics_reject why = v == ACCESS_RATE_LIMITED ? MRJ_RATE_LIMITED
                            : v == ACCESS_FORBIDDEN ? MRJ_FORBIDDEN : MRJ_UNAUTHORIZED;
    metrics_add(&gwm(c->sh)->rejected[why], 1);
}

void access_http_refuse(conn_t *c, const access_decision_t *d)
{
    char extra[384];
    buf_t *b = &c->sh->scratch;
    int status = d->verdict == ACCESS_RATE_LIMITED ? 429 : d->verdict == ACCESS_FORBIDDEN ? 403 : 401;
    extra[0] = 0;
    if (status == 401 && !strcmp(d->error, "unauthorized"))
        snprintf(extra, sizeof extra, "WWW-Authenticate: Bearer realm=\"agate\"\r\n");
    else if (status == 401)
        snprintf(extra, sizeof extra, "WWW-Authenticate: Bearer realm=\"agate\", error=\"%s\", "
                 "error_description=\"%s\"\r\n", d->error, d->message);
    else if (status == 403)
        snprintf(extra, sizeof extra, "WWW-Authenticate: Bearer realm=\"agate\", error=\"insufficient_scope\", "
                 "scope=\"%s\"\r\n", d->scope);
    else
        snprintf(extra, sizeof extra, "Retry-After: %u\r\n", d->quota.retry_s);
    c->quota = d->quota;
    count_reject(c, d->verdict);
    buf_reset(b);
    buf_append_lit(b, "{\"error\":");
    json_put_str(b, d->error, strlen(d->error));
    buf_append_lit(b, ",\"message\":");
    json_put_str(b, d->message, strlen(d->message));
    if (status == 403) {
        buf_append_lit(b, ",\"scope\":");
        json_put_str(b, d->scope, strlen(d->scope));
    }
    if (status == 429) {
        buf_append_lit(b, ",\"retry_after\":");
        buf_append_u64(b, d->quota.retry_s);
        buf_append_lit(b, ",\"limit\":");
        buf_append_u64(b, d->quota.limit);
        buf_append_lit(b, ",\"remaining\":");
        buf_append_u64(b, d->quota.remaining);
        buf_append_lit(b, ",\"reset\":");
        buf_append_u64(b, d->quota.reset_s);
    }
    buf_append_lit(b, "}\n");
    http_respond(c, status, "application/json", b->data, b->len, extra);
}

bool access_http_run(conn_t *c, const cfg_agent_t *agent, rl_holds_t *holds)
{
    policy_t *p = policy();
    c->quota.set = false;
    holds->n = 0;
    if (!p || (!p->auth_on && !p->n_rules))
        return true;
    access_ident_t id;
    access_decision_t d;
    if (identify(p, c, &c->http.req, &id, &d) || access_admit(&id, c->sh->cfg, agent, holds, &d)) {
        access_http_refuse(c, &d);
        return false;
    }
    c->quota = d.quota;
    return true;
}

bool access_http_admin(conn_t *c)
{
    policy_t *p = policy();
    if (!p || !p->auth_on || !p->cfg.metrics_need_admin)
        return true;
    access_ident_t id;
    access_decision_t d;
    if (!identify(p, c, &c->http.req, &id, &d)) {
        if (id.kind == ACCESS_ANON) {
            refuse_401(&d, "unauthorized", "credentials required: Authorization: Bearer <token or API key>");
        } else if (!has_scope_str(&id, "admin")) {
            d.verdict = ACCESS_FORBIDDEN;
            d.error = "insufficient_scope";
            d.message = "the credentials lack a scope this route requires";
            snprintf(d.scope, sizeof d.scope, "admin");
        } else {
            return true;
        }
    }
    access_http_refuse(c, &d);
    return false;
}

/* The request's Origin if CORS is on and it is allowed; NULL otherwise. */
static const char *allowed_origin(const policy_t *p, const http_req_t *r, size_t *len)
{
    const char *v;
    if (!p->cors_on || !http_header(r, "origin", &v, len) || !*len)
        return NULL;
    if (p->any_origin)
        return v;
    for (uint32_t i = 0; i < p->cfg.n_origins; i++)
        if (strlen(p->cfg.origins[i]) == *len && !strncasecmp(p->cfg.origins[i], v, *len))
            return v;
    return NULL;
}

bool access_http_preflight(conn_t *c, const char *allow)
{
    policy_t *p = policy();
    const http_req_t *r = &c->http.req;
    const char *v;
    size_t n;
    if (!p || !p->cors_on || !http_header(r, "origin", &v, &n) ||
        !http_header(r, "access-control-request-method", &v, &n))
        return false;
    if (!allowed_origin(p, r, &n)) {
        http_error(c, 403, "origin_not_allowed", "this origin may not call the API (CORS)", NULL);
        return true;
    }
    char extra[1024];
    snprintf(extra, sizeof extra,
             "%sAccess-Control-Allow-Methods: %s\r\nAccess-Control-Allow-Headers: %s\r\n"
             "Access-Control-Max-Age: %u\r\n",
             allow, p->cfg.cors_methods, p->cfg.cors_headers, p->cfg.cors_max_age_ms / 1000);
    http_respond(c, 204, NULL, NULL, 0, extra);
    return true;
}

static const char SECURITY_HEADERS[] =
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "X-Frame-Options: DENY\r\n";
/* For the API; an HTML page (the demo, net/demo.c) sends its own, which lets
 * exactly its inline script and style run. */
static const char API_CSP[] = "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n";

#define QUOTA_LIT(w, lit) (memcpy(w, lit, sizeof lit - 1), w += sizeof lit - 1)

/* The RateLimit-* and X-RateLimit-* headers of an allowed or refused request,
 * written straight into the head: each number formatted once, after its
 * RateLimit- name, and its X- copy a fixed 20-byte move of which the digits
 * are kept. Six appends with their conversions were ~1000 instructions per
 * response (callgrind), a stack buffer and variable copies 449. */
#define QUOTA_MAX (128 + 6 * 20 + 20)   /* names and line ends, digits, the last copy's overrun */
static void put_quota(buf_t *b, const rl_quota_t *q)
{
    if (buf_reserve(b, QUOTA_MAX))
        return;
    char *w = b->data + b->len, *lim, *rem, *rst;
    size_t ll, rl, sl;
    QUOTA_LIT(w, "RateLimit-Limit: ");
    lim = w;
    w += ll = buf_fmt_u64(w, q->limit);
    QUOTA_LIT(w, "\r\nRateLimit-Remaining: ");
    rem = w;
    w += rl = buf_fmt_u64(w, q->remaining);
    QUOTA_LIT(w, "\r\nRateLimit-Reset: ");
    rst = w;
    w += sl = buf_fmt_u64(w, q->reset_s);
    QUOTA_LIT(w, "\r\nX-RateLimit-Limit: ");
    memcpy(w, lim, 20);
    w += ll;
    QUOTA_LIT(w, "\r\nX-RateLimit-Remaining: ");
    memcpy(w, rem, 20);
    w += rl;
    QUOTA_LIT(w, "\r\nX-RateLimit-Reset: ");
    memcpy(w, rst, 20);
    w += sl;
    QUOTA_LIT(w, "\r\n");
    b->len = (size_t)(w - b->data);
}

void access_head_headers(conn_t *c, buf_t *b, const char *ctype)
{
    policy_t *p = policy();
    if (c->quota.set) {
        put_quota(b, &c->quota);
        c->quota.set = false;   /* one response */
    }
    if (!p || !p->active)
        return;
    if (p->cfg.security_headers) {
        buf_append(b, SECURITY_HEADERS, sizeof SECURITY_HEADERS - 1);
        if (!ctype || strncmp(ctype, "text/html", 9))
            buf_append(b, API_CSP, sizeof API_CSP - 1);
        /* Streams (SSE, protobuf) and the demo page say their own Cache-Control. */
        if (ctype && strncmp(ctype, "text/event-stream", 17) && strncmp(ctype, "text/html", 9) &&
            strncmp(ctype, "application/vnd.ag-ui.event+proto", 33))
            buf_append_lit(b, "Cache-Control: no-store\r\n");
    }
    if (p->cors_on) {
        size_t n;
        const char *o = allowed_origin(p, &c->http.req, &n);
        buf_append_lit(b, "Vary: Origin\r\n");
        if (o) {
            buf_append_lit(b, "Access-Control-Allow-Origin: ");
            if (p->any_origin && !p->cfg.cors_credentials)
                buf_append_lit(b, "*");
            else
                buf_append(b, o, n);
            buf_append_lit(b, "\r\n");
            if (p->cfg.cors_credentials)
                buf_append_lit(b, "Access-Control-Allow-Credentials: true\r\n");
            if (p->cfg.cors_expose[0]) {
                buf_append_lit(b, "Access-Control-Expose-Headers: ");
                buf_append(b, p->cfg.cors_expose, strlen(p->cfg.cors_expose));
                buf_append_lit(b, "\r\n");
            }
        }
    }
}

/* The shared rate-limit table: its size, cells in use (a scan),
 * cells taken over from idle keys, and lookups that found no cell (allowed). */
static void render_ratelimit(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    uint64_t cap, used, evictions, full;
    access_table_stats(&cap, &used, &evictions, &full);
    metrics_family(r, "agate_ratelimit_cells", "gauge", "Rate-limit table cells, by state (capacity, used).");
    metrics_sample_u(r, "agate_ratelimit_cells", "", "state=\"capacity\"", cap);
    metrics_sample_u(r, "agate_ratelimit_cells", "", "state=\"used\"", used);
    metrics_family(r, "agate_ratelimit_evictions", "counter", "Rate-limit cells taken over from an idle key.");
    metrics_sample_u(r, "agate_ratelimit_evictions", "_total", "", evictions);
    metrics_family(r, "agate_ratelimit_table_full", "counter", "Rate-limit lookups that found no free cell (allowed, not counted against a limit).");
    metrics_sample_u(r, "agate_ratelimit_table_full", "_total", "", full);
}

static void access_run_release(run_t *r) { access_release(&r->holds); }

static const run_ext_ops_t access_ext = {.release = access_run_release};

void access_register(void)
{
    run_ext_register(&access_ext);
    metrics_register(render_ratelimit);
}
