/* access: who is calling, may they run this agent, and is it within their
 * limits. Identity (JWT > API key > client address), authorization by scope,
 * CORS, security headers, and rate/concurrency limits on the shared lock-free
 * table (core/ratelimit.c).
 *
 * The policy is compiled from access_conf(cfg) on the main thread (start-up,
 * SIGHUP, JWKS file change) and published with one atomic pointer store.
 * Shards load the pointer per request and never keep it across loop turns; an
 * old policy is freed once every shard has started a turn after the swap
 * (core/qsbr.h), so readers take no lock and no reference count. Limiter state lives in the table, keyed by a hash of each
 * rule's definition: a reload that keeps a rule keeps its state.
 *
 * Transports: identity once per request (HTTP) or per connection (the
 * WebSocket upgrade, which is also refused 401/403 when that identity may not
 * run the URL's agent), then access_admit per run. A run's concurrency slots
 * ride in run_t.holds and are released by run_release (a run hook
 * registered by access_register), however the run ends. */
#ifndef AGATE_ACCESS_H
#define AGATE_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/ratelimit.h"

struct conn;
struct shard;
struct http_req;

#define ACCESS_MAX_HOLDS  RL_MAX_HOLDS
#define ACCESS_MAX_CLAIMS 4
#define ACCESS_VAL_MAX    128

typedef enum access_kind { ACCESS_ANON, ACCESS_API_KEY, ACCESS_JWT } access_kind_t;

/* Who is calling. Self-contained (no pointers into the request), so a WebSocket
 * connection can keep the one made at its upgrade. Holds no secret. */
typedef struct access_ident {
    access_kind_t kind;
    char     name[ACCESS_VAL_MAX];          /* API key name, or the JWT's sub */
    uint8_t  name_len;
    char     client[48];                    /* client address as text (X-Forwarded-For aware) */
    uint8_t  client_len;
    char     scopes[512];                   /* space-separated */
    uint16_t scopes_len;
    char     claims[ACCESS_MAX_CLAIMS][ACCESS_VAL_MAX];   /* the claims rate-limit rules name */
    uint8_t  claim_len[ACCESS_MAX_CLAIMS];
    bool     claim_set[ACCESS_MAX_CLAIMS];
    uint32_t key;                           /* API key: its index in the policy named by key_policy */
    uint64_t key_policy;                    /* that policy's serial; 0: none (scopes are read instead) */
} access_ident_t;


typedef enum access_verdict {
    ACCESS_ALLOW = 0,
    ACCESS_UNAUTHORIZED,                    /* 401: missing or bad credentials */
    ACCESS_FORBIDDEN,                       /* 403: authenticated, scope missing */
    ACCESS_RATE_LIMITED,                    /* 429 */
    ACCESS_BAD_REQUEST,                     /* 400: credentials sent more than one way */
    ACCESS_UNAVAILABLE,                     /* 503: a global limit with on_redis_down deny, Redis down */
} access_verdict_t;

/* The outcome of identifying a caller or access_admit, enough for any transport to
 * answer: HTTP writes a 401/403/429, WebSocket a RUN_ERROR (code rate_limited). */
typedef struct access_decision {
    access_verdict_t verdict;
    const char *error;                      /* "invalid_token", "insufficient_scope", ... */
    const char *message;
    char        scope[96];                  /* the scope that would have been enough (403) */
    rl_quota_t  quota;                      /* RateLimit-* numbers; quota.set when any rule applied */
} access_decision_t;

/* ---- main thread ---- */

/* Compiles and publishes the policy for cfg (keys read from files now). The
 * limiter table is made on the first call. 0, or -errno with err filled; on
 * error the published policy is unchanged. */
int  access_publish(const cfg_t *cfg, char *err, size_t errlen);
/* Frees policies no shard can still see (core/qsbr.h); call now and then (1 s tick). */
void access_reclaim(void);
/* True when the configured JWKS file changed since the policy was built. */
bool access_jwks_changed(uint64_t *sig);   /* sig: the file's stat, hashed (a failure is retried when it changes) */
/* Frees everything at exit (after the shards stopped). */
void access_shutdown(void);

/* ---- shards ---- */

/* Main thread, at start-up: the release of a run's slots (a run hook) and
 * the limiter table's metrics. */
void access_register(void);

/* Authorization and limits for one run of agent, on shard sh. On
 * ACCESS_ALLOW, *holds has the concurrency slots taken (release with
 * access_release), and for a global limit that must ask Redis first, a wait
 * mark: the run that gets these holds must pass rlg_gate (net/rlglobal.h)
 * before run_start, which holds its stream until the answer. */
access_verdict_t access_admit(struct shard *sh, const access_ident_t *id, const cfg_t *cfg, const cfg_agent_t *agent,
                              rl_holds_t *holds, access_decision_t *d);
void access_release(rl_holds_t *holds);

/* HTTP: identify + admit for POST /v1/agents/{name}/run. Answers 400/401/403/429
 * itself and returns false; on true *holds has the slots taken (run_new moves
 * them into the run; whatever is left the caller gives back with
 * access_release) and the quota is noted on the connection for the response
 * head. */
bool access_http_run(struct conn *c, const cfg_agent_t *agent, rl_holds_t *holds);
/* HTTP: a WebSocket upgrade to agent. Identifies the caller from the headers,
 * a bearer.agate. Sec-WebSocket-Protocol entry or ?access_token= (net/access_cred.c)
 * into *id, which the connection keeps for its runs, and checks that this identity
 * may run agent (scopes; rate limits stay per run). Answers 400/401/403 itself
 * and returns false. */
bool access_http_upgrade(struct conn *c, const cfg_agent_t *agent, access_ident_t *id);
/* HTTP: who is calling, for a resumable run's reattach or cancel: *named
 * false when anonymous (or auth is off), else who = the identity's digest
 * (access_ident_digest). Answers 400/401 itself (bad credentials) and returns
 * false. */
bool access_http_who(struct conn *c, uint8_t who[16], bool *named);
/* 16 bytes naming an authenticated identity (its kind and API key name or JWT
 * sub, hashed): a resumable run keeps it to know its caller again. */
int access_ident_digest(const access_ident_t *id, uint8_t out[16]);   /* 0, or -errno (libcrypto) */
/* HTTP: /metrics on the main listener when auth is on: needs scope admin. */
bool access_http_admin(struct conn *c);
/* HTTP OPTIONS: a CORS preflight is answered here (204, or 403 for an origin
 * not allowed); returns false when the request is not a preflight. */
bool access_http_preflight(struct conn *c, const char *allow);
/* Writes 400/401/403/429 for d (JSON body, WWW-Authenticate, Retry-After, RateLimit-*). */
void access_http_refuse(struct conn *c, const access_decision_t *d);
/* Response-head lines every response gets: security headers, CORS, quota. */
void access_head_headers(struct conn *c, buf_t *b, const char *ctype);


#endif
