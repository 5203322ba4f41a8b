/* access_int: what the files of the access module share, and nothing
 * outside them may use. access_policy.c compiles the policy from
 * access_conf(cfg) and publishes it; access.c identifies a caller and admits its
 * runs against the published policy, with the credential access_cred.c finds
 * in the request; access_http.c answers for them on HTTP (refusals, CORS
 * preflight, the WebSocket upgrade's check, response-head lines). net/access.h stays the
 * module's interface; this header is included only by net/access*.c.
 *
 * A policy is immutable once published: readers on any shard take it with
 * access_policy() and keep it no longer than their loop turn (core/qsbr.h),
 * so nothing here needs a lock. Everything in it that is indexed by agent
 * slot is valid only for the slots in `known`. */
#ifndef AGATE_ACCESS_INT_H
#define AGATE_ACCESS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "core/config.h"
#include "net/access_conf.h"
#include "core/jwt.h"
#include "core/ratelimit.h"
#include "net/access.h"
#include "net/rlglobal.h"

typedef struct access_rule {
    const access_rl_rule_t *def;          /* into policy.cfg */
    uint64_t  id;                      /* hash of the definition: limiter cells survive a reload that keeps it */
    rl_rate_t rate[4];
    uint32_t  count[4];
    uint32_t  conc_lease;              /* rl_conc_lease_for(concurrent, shards) */
    bool      global;                  /* shared through Redis: g and gc, not rate and conc_lease */
    rlg_rate_t g[4];
    rlg_conc_t gc;
    uint64_t  agents;                  /* bit per agent index (CFG_MAX_AGENTS <= 64) */
    int       claim;                   /* index into policy.claims for ACCESS_RLK_CLAIM */
    bool      fixed;                   /* global: a request's key base is fixed_base[agent slot] */
    bool      by_key;                  /* keyed by API key or identity: policy.key_base for an API key */
    uint64_t  fixed_base[CFG_MAX_AGENTS];
} access_rule_t;

typedef struct access_policy {
    access_conf_t   cfg;
    jwt_keyset_t   keys;
    bool           auth_on, cors_on, any_origin, need_client, active;
    int8_t         anon[CFG_MAX_AGENTS];
    const access_scopes_t *need[CFG_MAX_AGENTS];   /* configured scopes, NULL = default */
    access_rule_t  rules[ACCESS_MAX_RULES];
    uint32_t       n_rules;
    bool           any_global;     /* a rule is global: holds may carry tokens and wait marks (net/rlglobal.h) */
    char           claims[ACCESS_MAX_CLAIMS][ACCESS_CLAIM_MAX];
    uint32_t       n_claims;
    struct stat    jwks_st;
    uint64_t       serial;         /* never reused: names this policy in conn_t.key_memo and idents */
    /* Per API key, worked out once at build: the agent slots it may run
     * (authorize's answer) and each by_key rule's limiter key base per agent
     * slot, at key_base[(key * n_rules + rule) * slots + slot]. */
    uint64_t       key_runs[ACCESS_MAX_API_KEYS];
    uint64_t      *key_base;
    unsigned       slots;          /* agent slots in use: the highest + 1 */
    uint64_t       agent_hash[CFG_MAX_AGENTS];   /* by slot: mixed into a per-agent rule's keys */
    /* Slots of the agents this policy was built with. A shard can still run
     * a configuration one reload older or newer than the policy (slots keep
     * their agent for the life of the process, but may be new or gone), so
     * the tables by slot are read only for these. */
    uint64_t       known;
    uint64_t       retired_at;
    struct access_policy *next;
} access_policy_t;

/* The published policy (NULL before the first access_publish) and the shared
 * limiter table; both defined in access_policy.c. */
extern _Atomic(access_policy_t *) g_access_policy;
extern rl_table_t                 g_access_table;

/* Per request: the policy to read until the end of this loop turn. */
static inline access_policy_t *access_policy(void)
{
    return atomic_load_explicit(&g_access_policy, memory_order_acquire);
}

/* ---- access_policy.c ---- */

/* The seed of rule r's limiter keys for agent (the key tables and
 * access_admit must agree on it). */
uint64_t access_rule_seed(const access_policy_t *p, const access_rule_t *r, const cfg_agent_t *agent);

/* ---- access_cred.c: where the credential is ---- */

typedef enum access_cred_kind {
    ACCESS_CRED_NONE = 0,
    ACCESS_CRED_BEARER,       /* a bearer token: a JWT when JWT-shaped and JWT keys exist, else an API key */
    ACCESS_CRED_KEY,          /* the API key header: always an API key */
} access_cred_kind_t;

/* A request's one credential: tok points into the request, or into buf when
 * it had to be decoded (a base64url protocol entry, a percent-encoded
 * access_token). Lives on the caller's stack for one identify. */
typedef struct access_cred {
    access_cred_kind_t kind;
    const char        *tok;
    size_t             len;
    bool               decoded;          /* buf holds len secret bytes: access_cred_wipe */
    char               buf[JWT_MAX_TOKEN];
} access_cred_t;

/* Finds the credential of r: the headers, and on a WebSocket upgrade
 * (`upgrade`) also a Sec-WebSocket-Protocol entry or the access_token query
 * parameter. key_header: auth.api_key_header ("" for none). ACCESS_ALLOW with
 * cr->kind NONE when there is none; a malformed one is ACCESS_UNAUTHORIZED,
 * two of them (or an access_token outside an upgrade) ACCESS_BAD_REQUEST,
 * error invalid_request, in d. */
access_verdict_t access_cred_find(const char *key_header, const struct http_req *r, bool upgrade,
                                  access_cred_t *cr, access_decision_t *d);
/* Clears a decoded token's bytes. */
void access_cred_wipe(access_cred_t *cr);

/* ---- access.c: used by the policy's key tables and by access_http.c ---- */

/* Identity of the request under p, from its peer and its credential
 * (access_cred_find; `upgrade` takes a WebSocket upgrade's ways too).
 * ACCESS_UNAUTHORIZED or ACCESS_BAD_REQUEST when a credential was given and
 * is bad; none at all is ACCESS_ALLOW with an anonymous identity. */
access_verdict_t access_policy_identify(const access_policy_t *p, struct conn *c, const struct http_req *r,
                                        bool upgrade, access_ident_t *id, access_decision_t *d);
void access_ident_of_key(const access_policy_t *p, uint32_t k, access_ident_t *id);
access_verdict_t access_authorize(const access_policy_t *p, const access_ident_t *id, const cfg_agent_t *agent,
                                  unsigned ai, access_decision_t *d);
bool access_rule_key(const access_rule_t *r, const access_ident_t *id, char *out, size_t *len);
bool access_has_scope(const access_ident_t *id, const char *s, size_t n);

static inline bool access_has_scope_str(const access_ident_t *id, const char *s)
{
    return access_has_scope(id, s, strlen(s));
}

static inline void access_refuse_401(access_decision_t *d, const char *error, const char *message)
{
    d->verdict = ACCESS_UNAUTHORIZED;
    d->error = error;
    d->message = message;
}

#endif
