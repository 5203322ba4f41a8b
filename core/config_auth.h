/* config_auth: the access-control part of the configuration: `auth:`, `cors:`,
 * `security_headers:` and `rate_limit:`. Plain fixed-size data inside cfg_t's
 * sections area (cfg_t is copied by value while loading); net/access_policy.c compiles it into the
 * run-time policy (keys parsed, rule identities hashed). */
#ifndef AGATE_CONFIG_AUTH_H
#define AGATE_CONFIG_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define CFG_MAX_API_KEYS   64
#define CFG_MAX_SCOPES     8
#define CFG_SCOPE_MAX      64
#define CFG_MAX_JWT_KEYS   8
#define CFG_SECRET_MAX     256
#define CFG_MAX_CIDRS      16
#define CFG_MAX_AUTH_AGENTS 64
#define CFG_MAX_RULES      32
#define CFG_MAX_RULE_AGENTS 8
#define CFG_MAX_ORIGINS    16
#define CFG_ORIGIN_MAX     128
#define CFG_HLIST_MAX      256
#define CFG_CLAIM_MAX      64
#define CFG_ISS_MAX        256

typedef struct cfg_scopes {
    char     s[CFG_MAX_SCOPES][CFG_SCOPE_MAX];
    uint32_t n;
} cfg_scopes_t;

typedef struct cfg_api_key {
    char         name[64];
    uint8_t      sha256[32];        /* of the key; the key itself is never stored */
    cfg_scopes_t scopes;
} cfg_api_key_t;

/* One verification key. secret => HS256; public_key_file => RS256 or ES256
 * (P-256), decided by the key's type, never by the token. */
typedef struct cfg_jwt_key {
    char     kid[64];               /* "" matches tokens without kid */
    char     secret[CFG_SECRET_MAX];
    uint32_t secret_len;
    char     pem_file[512];
} cfg_jwt_key_t;

typedef struct cfg_cidr {
    uint8_t addr[16];               /* IPv4 as ::ffff:a.b.c.d */
    uint8_t bits;                   /* prefix length over the 128-bit form */
} cfg_cidr_t;

typedef struct cfg_agent_auth {
    char         agent[64];
    int8_t       anonymous;         /* -1: as auth.anonymous */
    cfg_scopes_t scopes;            /* any one of these; empty: agents:run or agents:run:<name> */
} cfg_agent_auth_t;

typedef enum cfg_rl_key {
    CFG_RLK_IDENTITY,               /* JWT subject, else API key name, else client address */
    CFG_RLK_CLIENT_IP,
    CFG_RLK_API_KEY,                /* requests without an API key skip the rule */
    CFG_RLK_CLAIM,                  /* a JWT claim (claim:sub, claim:tenant); no claim: skipped */
    CFG_RLK_GLOBAL,                 /* one bucket for everybody (per agent when per_agent) */
} cfg_rl_key_t;

typedef struct cfg_rl_rule {
    char         name[64];
    cfg_rl_key_t key;
    char         claim[CFG_CLAIM_MAX];
    char         agents[CFG_MAX_RULE_AGENTS][64];   /* empty: every agent */
    uint32_t     n_agents;
    bool         per_agent;         /* separate buckets per agent (default true) */
    uint32_t     rate[4];           /* per second, minute, hour, day; 0 = none */
    uint32_t     burst;             /* 0 = the rate itself */
    uint32_t     concurrent;        /* 0 = no cap */
} cfg_rl_rule_t;

typedef struct cfg_access {
    /* auth */
    bool             anonymous;                 /* requests without credentials allowed (default true) */
    char             api_key_header[64];        /* besides Authorization: Bearer; default x-api-key */
    cfg_api_key_t    api_keys[CFG_MAX_API_KEYS];
    uint32_t         n_api_keys;
    cfg_jwt_key_t    jwt_keys[CFG_MAX_JWT_KEYS];
    uint32_t         n_jwt_keys;
    char             jwks_file[512];
    char             issuer[CFG_ISS_MAX];
    char             audience[CFG_ISS_MAX];
    uint32_t         leeway_ms;                 /* exp/nbf slack, default 60 s */
    char             scope_claim[CFG_CLAIM_MAX];/* default "scope" (space-separated, or an array) */
    cfg_cidr_t       trusted[CFG_MAX_CIDRS];    /* X-Forwarded-For honoured from these peers */
    uint32_t         n_trusted;
    cfg_agent_auth_t agents[CFG_MAX_AUTH_AGENTS];
    uint32_t         n_agents;
    bool             metrics_need_admin;        /* /metrics on the main listener needs `admin` (default true) */

    /* cors */
    char     origins[CFG_MAX_ORIGINS][CFG_ORIGIN_MAX];   /* "*" allowed; none: CORS off */
    uint32_t n_origins;
    char     cors_methods[CFG_HLIST_MAX];
    char     cors_headers[CFG_HLIST_MAX];
    char     cors_expose[CFG_HLIST_MAX];
    bool     cors_credentials;
    uint32_t cors_max_age_ms;

    bool     security_headers;                  /* default true */

    /* rate_limit */
    uint32_t      rl_table_size;                /* cells, default 65536 */
    cfg_rl_rule_t rules[CFG_MAX_RULES];
    uint32_t      n_rules;
} cfg_access_t;

/* The section (core/config.h) and its struct in a cfg_t. */
extern cfg_section_t cfg_access_section;

static inline const cfg_access_t *cfg_access(const cfg_t *c) { return cfg_sect(c, &cfg_access_section); }
static inline cfg_access_t *cfg_access_mut(cfg_t *c) { return cfg_sect_mut(c, &cfg_access_section); }

#endif
