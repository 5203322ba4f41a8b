/* access: who is calling and may they run this agent now: identity (JWT >
 * API key > client address), authorization by scope and the rate and
 * concurrency limits (see access.h for the lifecycle of a policy and of a
 * run's slots). The policy itself is built in access_policy.c; the HTTP
 * answers are in access_http.c.
 *
 * Hot path, per run request: one atomic load of the policy pointer; with no
 * auth, rules or CORS configured, nothing else. With rules: the peer address
 * (looked up once per connection) when a rule keys on it, one hash and one CAS per limit. API key
 * digests are compared with CRYPTO_memcmp against every configured key (no early
 * exit), JWTs verified by core/jwt.c. A refused run consumes nothing: what the
 * rules before the refusing one charged is refunded. Nothing here logs a
 * credential: messages name what was wrong, never the value. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/crypto.h>

#include "core/digest.h"
#include "core/jwt.h"
#include "core/shard.h"
#include "net/access_int.h"
#include "net/conn.h"
#include "net/http1.h"

/* ---- identity ---- */

static bool in_cidr(const uint8_t a[16], const access_cidr_t *c)
{
    unsigned bits = c->bits, i = 0;
    for (; bits >= 8; bits -= 8, i++)
        if (a[i] != c->addr[i])
            return false;
    return !bits || ((a[i] ^ c->addr[i]) & (uint8_t)(0xff00 >> bits)) == 0;
}

static bool trusted(const access_policy_t *p, const uint8_t a[16])
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
static void client_address(const access_policy_t *p, conn_t *c, const http_req_t *r, access_ident_t *id)
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

static access_verdict_t identify_jwt(const access_policy_t *p, conn_t *c, const char *tok, size_t n,
                                     access_ident_t *id, access_decision_t *d)
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
        access_refuse_401(d, "invalid_token", jwt_err_text(e));
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
static int key_recall(const access_policy_t *p, const conn_t *c, const char *key, size_t n)
{
    const conn_key_memo_t *m = &c->key_memo;
    if (!m->len || m->len != n || m->policy != p->serial || CRYPTO_memcmp(m->key, key, n))
        return -1;
    return (int)m->idx;
}

static void key_remember(const access_policy_t *p, conn_t *c, const char *key, size_t n, int idx)
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
void access_ident_of_key(const access_policy_t *p, uint32_t k, access_ident_t *id)
{
    const access_api_key_t *key = &p->cfg.api_keys[k];
    id->kind = ACCESS_API_KEY;
    id->name_len = (uint8_t)strnlen(key->name, ACCESS_VAL_MAX - 1);
    memcpy(id->name, key->name, id->name_len);
    id->name[id->name_len] = 0;
    for (uint32_t i = 0; i < key->scopes.n; i++)
        put_scope_list(id, key->scopes.s[i], strlen(key->scopes.s[i]));
    id->key = k;
    id->key_policy = p->serial;
}

static access_verdict_t identify_key(const access_policy_t *p, conn_t *c, const char *key, size_t n,
                                     access_ident_t *id, access_decision_t *d)
{
    int found = c ? key_recall(p, c, key, n) : -1;
    if (found < 0) {
        uint8_t dig[DIGEST_SHA256_LEN];
        if (digest_sha256(key, n, dig)) {
            access_refuse_401(d, "invalid_token", "the API key could not be checked");
            return d->verdict;
        }
        for (uint32_t i = 0; i < p->cfg.n_api_keys; i++)   /* every key, no early exit: constant time in the match */
            if (CRYPTO_memcmp(dig, p->cfg.api_keys[i].sha256, sizeof dig) == 0)
                found = (int)i;
        OPENSSL_cleanse(dig, sizeof dig);
        if (found < 0) {
            access_refuse_401(d, "invalid_token", "invalid API key");
            return d->verdict;
        }
        if (c)
            key_remember(p, c, key, n, found);
    }
    access_ident_of_key(p, (uint32_t)found, id);
    return ACCESS_ALLOW;
}

access_verdict_t access_policy_identify(const access_policy_t *p, conn_t *c, const http_req_t *r, bool upgrade,
                                        access_ident_t *id, access_decision_t *d)
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
    access_cred_t cr;
    if (access_cred_find(p->cfg.api_key_header, r, upgrade, &cr, d))
        return d->verdict;
    access_verdict_t v = ACCESS_ALLOW;
    if (cr.kind == ACCESS_CRED_KEY) {
        v = identify_key(p, c, cr.tok, cr.len, id, d);
    } else if (cr.kind == ACCESS_CRED_BEARER) {
        /* Two dots: a JWT (when JWT keys are configured); anything else is an API key. */
        const char *t = cr.tok, *dot = memchr(t, '.', cr.len);
        bool jwt_shape = dot && memchr(dot + 1, '.', cr.len - (size_t)(dot + 1 - t));
        v = jwt_shape && p->keys.n ? identify_jwt(p, c, t, cr.len, id, d) : identify_key(p, c, t, cr.len, id, d);
    }
    access_cred_wipe(&cr);
    return v;
}

/* ---- authorization and limits ---- */

bool access_has_scope(const access_ident_t *id, const char *s, size_t n)
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

access_verdict_t access_authorize(const access_policy_t *p, const access_ident_t *id, const cfg_agent_t *agent,
                                  unsigned ai, access_decision_t *d)
{
    if (!p->auth_on || p->anon[ai])
        return ACCESS_ALLOW;
    if (id->key_policy == p->serial && (p->key_runs[id->key] >> ai & 1))   /* 0 for a slot not known */
        return ACCESS_ALLOW;   /* the answer below, worked out at build (key_tables) */
    if (id->kind == ACCESS_ANON) {
        access_refuse_401(d, "unauthorized", "credentials required: Authorization: Bearer <token or API key>");
        return d->verdict;
    }
    if (access_has_scope(id, "admin", 5))
        return ACCESS_ALLOW;
    const access_scopes_t *need = p->need[ai];
    if (need) {
        for (uint32_t i = 0; i < need->n; i++)
            if (access_has_scope_str(id, need->s[i]))
                return ACCESS_ALLOW;
        snprintf(d->scope, sizeof d->scope, "%s", need->s[0]);
    } else {
        if (access_has_scope(id, "agents:run", 10))
            return ACCESS_ALLOW;
        char s[96];
        int n = snprintf(s, sizeof s, "agents:run:%s", agent->name);
        if (access_has_scope(id, s, (size_t)n))
            return ACCESS_ALLOW;
        snprintf(d->scope, sizeof d->scope, "%s", s);
    }
    d->verdict = ACCESS_FORBIDDEN;
    d->error = "insufficient_scope";
    d->message = "the credentials lack a scope this agent requires";
    return d->verdict;
}

/* The bytes a rule keys on; false when the rule does not apply to this caller. */
bool access_rule_key(const access_rule_t *r, const access_ident_t *id, char *out, size_t *len)
{
    switch (r->def->key) {
    case ACCESS_RLK_GLOBAL:
        *len = 0;
        return true;
    case ACCESS_RLK_CLIENT_IP:
        memcpy(out, id->client, id->client_len);
        *len = id->client_len;
        return true;
    case ACCESS_RLK_API_KEY:
        if (id->kind != ACCESS_API_KEY)
            return false;
        memcpy(out, id->name, id->name_len);
        *len = id->name_len;
        return true;
    case ACCESS_RLK_CLAIM:
        if (r->claim < 0 || !id->claim_set[r->claim])
            return false;
        memcpy(out, id->claims[r->claim], id->claim_len[r->claim]);
        *len = id->claim_len[r->claim];
        return true;
    case ACCESS_RLK_IDENTITY:
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

static uint32_t ceil_s(uint64_t ns) { return (uint32_t)((ns + 999999999u) / 1000000000u); }

void access_release(rl_holds_t *holds)
{
    for (uint8_t i = 0; i < holds->n; i++) {
        if (rlg_is_hold(&holds->h[i]))
            rlg_release(&holds->h[i]);
        else
            rl_release(&g_access_table, &holds->h[i]);
    }
    holds->n = 0;
}

/* A global rule's limit k for this request: decided from the shard's lease,
 * a wait mark for rlg_gate, a refusal, or (Redis cannot answer) its
 * on_redis_down: 0 decided here (allowed, or *local tells the caller to
 * check the rule's local share), else the verdict to refuse with. */
static access_verdict_t global_rate(shard_t *sh, const access_rule_t *r, unsigned k, uint64_t key, rl_holds_t *holds,
                                    rl_quota_t *q, bool *local)
{
    uint32_t retry = 1, left = 0;
    *local = false;
    rlg_verdict_t v = holds->n < ACCESS_MAX_HOLDS ? rlg_rate_take(sh, key, &r->g[k], &holds->h[holds->n], &left)
                                                  : RLG_DOWN;
    switch (v) {
    case RLG_TAKEN:
        holds->n++;
        rlg_count(sh, RLG_R_LEASED);
        /* as for a local lease: Remaining counts the tokens this shard holds */
        if (!q->set || left < q->remaining)
            *q = (rl_quota_t){.set = true, .limit = r->count[k], .remaining = left,
                              .reset_s = (uint32_t)((r->g[k].tau_us + 999999) / 1000000)};
        return ACCESS_ALLOW;
    case RLG_WAIT:
        holds->n++;
        return ACCESS_ALLOW;
    case RLG_REFUSED:
        rlg_count(sh, RLG_R_REFUSED);
        retry = left ? left : 1;
        *q = (rl_quota_t){.set = true, .limit = r->count[k], .remaining = 0, .reset_s = retry, .retry_s = retry};
        return ACCESS_RATE_LIMITED;
    case RLG_DOWN:
    default:
        rlg_fallback(sh, r->g[k].down);
        if (r->g[k].down == RLG_DOWN_DENY)
            return ACCESS_UNAVAILABLE;
        *local = r->g[k].down == RLG_DOWN_LOCAL;
        return ACCESS_ALLOW;
    }
}

static access_verdict_t global_conc(shard_t *sh, const access_rule_t *r, uint64_t key, rl_holds_t *holds,
                                    rl_quota_t *q, bool *local)
{
    uint32_t retry = 1;
    *local = false;
    rlg_verdict_t v = rlg_conc_take(sh, key, &r->gc, &holds->h[holds->n], &retry);
    switch (v) {
    case RLG_TAKEN:
        holds->n++;
        rlg_count(sh, RLG_R_LEASED);
        return ACCESS_ALLOW;
    case RLG_WAIT:
        holds->n++;
        return ACCESS_ALLOW;
    case RLG_REFUSED:
        rlg_count(sh, RLG_R_REFUSED);
        *q = (rl_quota_t){.set = true, .limit = r->def->concurrent, .remaining = 0, .reset_s = 1, .retry_s = 1};
        return ACCESS_RATE_LIMITED;
    case RLG_DOWN:
    default:
        rlg_fallback(sh, r->gc.down);
        if (r->gc.down == RLG_DOWN_DENY)
            return ACCESS_UNAVAILABLE;
        *local = r->gc.down == RLG_DOWN_LOCAL;
        return ACCESS_ALLOW;
    }
}

access_verdict_t access_admit(shard_t *sh, const access_ident_t *id, const cfg_t *cfg, const cfg_agent_t *agent,
                              rl_holds_t *holds, access_decision_t *d)
{
    access_policy_t *p = access_policy();
    holds->n = 0;
    memset(d, 0, sizeof *d);
    if (!p)
        return ACCESS_ALLOW;
    unsigned ai = agent->slot;
    if (access_authorize(p, id, agent, ai, d))
        return d->verdict;
    if (!p->n_rules)
        return ACCESS_ALLOW;

    rl_hold_t charged[ACCESS_MAX_RULES * 4];
    unsigned n_charged = 0;
    uint64_t now = rl_now_ns();
    char kb[1 + ACCESS_VAL_MAX + 48];
    rl_quota_t q = {0};
    bool known = p->known >> ai & 1;
    const uint64_t *kbase = known && id->key_policy == p->serial && p->key_base
                                ? p->key_base + (size_t)id->key * p->n_rules * p->slots : NULL;
    for (uint32_t i = 0; i < p->n_rules; i++) {
        const access_rule_t *r = &p->rules[i];
        size_t kl;
        uint64_t base;
        if (!(r->agents & (UINT64_C(1) << ai)))
            continue;
        if (r->fixed && known) {
            base = r->fixed_base[ai];
        } else if (r->by_key && kbase) {
            base = kbase[i * p->slots + ai];
        } else {
            if (!access_rule_key(r, id, kb, &kl))
                continue;
            base = rl_key_base(access_rule_seed(p, r, agent), kb, kl);
        }
        for (unsigned k = 0; k < 4; k++) {
            if (!r->count[k])
                continue;
            const rl_rate_t *rate = &r->rate[k];
            if (r->global) {
                bool local;
                access_verdict_t gv = global_rate(sh, r, k, rl_key_of(base, k, false), holds, &q, &local);
                if (gv == ACCESS_UNAVAILABLE)
                    goto unavailable;
                if (gv)
                    goto refuse;
                if (!local)
                    continue;
                rate = &r->g[k].share;
            }
            rl_result_t res = rl_rate_take(&g_access_table, rl_key_of(base, k, false), rate, now,
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
            uint32_t max = r->def->concurrent, lease = r->conc_lease;
            if (r->global) {
                bool local;
                access_verdict_t gv = global_conc(sh, r, rl_key_of(base, 4, true), holds, &q, &local);
                if (gv == ACCESS_UNAVAILABLE)
                    goto unavailable;
                if (gv)
                    goto refuse;
                if (!local || holds->n >= ACCESS_MAX_HOLDS)
                    continue;
                max = r->gc.share_max;
                lease = r->gc.share_lease;
            }
            rl_result_t res = rl_conc_take_leased(&g_access_table, rl_key_of(base, 4, true), max, lease,
                                                  &holds->h[holds->n]);
            if (!res.allowed) {
                q = (rl_quota_t){.set = true, .limit = r->def->concurrent, .remaining = 0, .reset_s = 1, .retry_s = 1};
                goto refuse;
            }
            if (holds->h[holds->n].cell != UINT32_MAX)
                holds->n++;
        }
    }
    d->quota = q;
    if (p->any_global)
        rlg_holds_settle(holds, false);   /* tokens taken from leases are spent, unless a run waits for Redis */
    return ACCESS_ALLOW;
unavailable:
    for (unsigned k = 0; k < n_charged; k++)
        rl_refund(&g_access_table, &charged[k]);
    access_release(holds);
    d->quota = (rl_quota_t){.retry_s = 1};
    d->verdict = ACCESS_UNAVAILABLE;
    d->error = "rate_limit_unavailable";
    d->message = "a global limit cannot be checked while its shared store is unreachable";
    return d->verdict;
refuse:
    /* A refused request consumes nothing: give back what the rules before the
     * refusing one charged, and the slots they lent. */
    for (unsigned k = 0; k < n_charged; k++)
        rl_refund(&g_access_table, &charged[k]);
    access_release(holds);
    if (!q.retry_s)
        q.retry_s = 1;
    d->quota = q;
    d->verdict = ACCESS_RATE_LIMITED;
    d->error = "rate_limit_exceeded";
    d->message = "rate limit exceeded, retry later";
    return d->verdict;
}
