/* access_conf: the access-control part of the configuration, `auth:`,
 * `cors:`, `security_headers:` and `rate_limit:`, as the access module's
 * section (core/config.h, cfg_section_t; registered by access_register).
 * Plain fixed-size data inside cfg_t's sections area (cfg_t is copied by
 * value while loading and between generations); net/access_policy.c compiles
 * it into the run-time policy (keys parsed, rule identities hashed). */
#ifndef AGATE_ACCESS_CONF_H
#define AGATE_ACCESS_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define ACCESS_MAX_API_KEYS   64
#define ACCESS_MAX_SCOPES     8
#define ACCESS_SCOPE_MAX      64
#define ACCESS_MAX_JWT_KEYS   8
#define ACCESS_SECRET_MAX     256
#define ACCESS_MAX_CIDRS      16
#define ACCESS_MAX_AUTH_AGENTS 64
#define ACCESS_MAX_RULES      32
#define ACCESS_MAX_RULE_AGENTS 8
#define ACCESS_MAX_ORIGINS    16
#define ACCESS_ORIGIN_MAX     128
#define ACCESS_HLIST_MAX      256
#define ACCESS_CLAIM_MAX      64
#define ACCESS_ISS_MAX        256

typedef struct access_scopes {
    char     s[ACCESS_MAX_SCOPES][ACCESS_SCOPE_MAX];
    uint32_t n;
} access_scopes_t;

typedef struct access_api_key {
    char         name[64];
    uint8_t      sha256[32];        /* of the key; the key itself is never stored */
    access_scopes_t scopes;
} access_api_key_t;

/* One verification key. secret => HS256; public_key_file => RS256 or ES256
 * (P-256), decided by the key's type, never by the token. */
typedef struct access_jwt_key {
    char     kid[64];               /* "" matches tokens without kid */
    char     secret[ACCESS_SECRET_MAX];
    uint32_t secret_len;
    char     pem_file[512];
} access_jwt_key_t;

typedef struct access_cidr {
    uint8_t addr[16];               /* IPv4 as ::ffff:a.b.c.d */
    uint8_t bits;                   /* prefix length over the 128-bit form */
} access_cidr_t;

typedef struct access_agent_auth {
    char         agent[64];
    int8_t       anonymous;         /* -1: as auth.anonymous */
    access_scopes_t scopes;            /* any one of these; empty: agents:run or agents:run:<name> */
} access_agent_auth_t;

typedef enum access_rl_key {
    ACCESS_RLK_IDENTITY,               /* JWT subject, else API key name, else client address */
    ACCESS_RLK_CLIENT_IP,
    ACCESS_RLK_API_KEY,                /* requests without an API key skip the rule */
    ACCESS_RLK_CLAIM,                  /* a JWT claim (claim:sub, claim:tenant); no claim: skipped */
    ACCESS_RLK_GLOBAL,                 /* one bucket for everybody (per agent when per_agent) */
} access_rl_key_t;

typedef struct access_rl_rule {
    char         name[64];
    access_rl_key_t key;
    char         claim[ACCESS_CLAIM_MAX];
    char         agents[ACCESS_MAX_RULE_AGENTS][64];   /* empty: every agent */
    uint32_t     n_agents;
    bool         per_agent;         /* separate buckets per agent (default true) */
    uint32_t     rate[4];           /* per second, minute, hour, day; 0 = none */
    uint32_t     burst;             /* 0 = the rate itself */
    uint32_t     concurrent;        /* 0 = no cap */
    bool         global;            /* shared by the fleet through Redis (net/rlglobal.c) */
    uint8_t      on_redis_down;     /* rlg_down_mode_t: local (default), allow, deny */
} access_rl_rule_t;

typedef struct access_conf {
    /* auth */
    bool             anonymous;                 /* requests without credentials allowed (default true) */
    char             api_key_header[64];        /* besides Authorization: Bearer; default x-api-key */
    access_api_key_t    api_keys[ACCESS_MAX_API_KEYS];
    uint32_t         n_api_keys;
    access_jwt_key_t    jwt_keys[ACCESS_MAX_JWT_KEYS];
    uint32_t         n_jwt_keys;
    char             jwks_file[512];
    char             issuer[ACCESS_ISS_MAX];
    char             audience[ACCESS_ISS_MAX];
    uint32_t         leeway_ms;                 /* exp/nbf slack, default 60 s */
    char             scope_claim[ACCESS_CLAIM_MAX];/* default "scope" (space-separated, or an array) */
    access_cidr_t       trusted[ACCESS_MAX_CIDRS];    /* X-Forwarded-For honoured from these peers */
    uint32_t         n_trusted;
    access_agent_auth_t agents[ACCESS_MAX_AUTH_AGENTS];
    uint32_t         n_agents;
    bool             metrics_need_admin;        /* /metrics on the main listener needs `admin` (default true) */

    /* cors */
    char     origins[ACCESS_MAX_ORIGINS][ACCESS_ORIGIN_MAX];   /* "*" allowed; none: CORS off */
    uint32_t n_origins;
    char     cors_methods[ACCESS_HLIST_MAX];
    char     cors_headers[ACCESS_HLIST_MAX];
    char     cors_expose[ACCESS_HLIST_MAX];
    bool     cors_credentials;
    uint32_t cors_max_age_ms;

    bool     security_headers;                  /* default true */

    /* rate_limit */
    uint32_t      rl_table_size;                /* cells, default 65536 */
    uint32_t      rl_fleet_size;                /* pods expected to share global rules (on_redis_down local's share) */
    uint32_t      rl_slot_ttl_ms;               /* a global concurrency slot's lease, default 10 s */
    access_rl_rule_t rules[ACCESS_MAX_RULES];
    uint32_t      n_rules;
} access_conf_t;

/* The section (access_conf.c) and its struct in a cfg_t; the _mut one for
 * code and tests that build a configuration. */
extern cfg_section_t access_conf_section;

static inline const access_conf_t *access_conf(const cfg_t *c) { return cfg_sect(c, &access_conf_section); }
static inline access_conf_t *access_conf_mut(cfg_t *c) { return cfg_sect_mut(c, &access_conf_section); }

_Static_assert(sizeof(access_conf_t) <= CFG_SECT_BYTES, "access_conf_t does not fit in cfg_t.sect");

#endif
