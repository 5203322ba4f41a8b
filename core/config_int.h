/* config_int: what the files of the config module share, and nothing outside
 * them may use: the settings-table row, the value parsers (config_value.c),
 * the YAML loader's helpers and table walks (config.c), and the pieces of the
 * agent, access and cache sections (config_agent.c, config_auth.c,
 * config_cache.c). Private: not installed, not included
 * outside core/config*.c; core/config.h stays the module's interface. */
#ifndef AGATE_CONFIG_INT_H
#define AGATE_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <yaml.h>

#include "core/config.h"

#define CFG_KEY_MAX    256         /* dotted key in messages; longer ones are cut */
#define CFG_WHY_MAX    192

/* ---- one row of a settings table ---- */

enum cfg_kind {
    CFG_K_ADDR,        /* char[CFG_ADDR_MAX], checked by cfg_parse_addr */
    CFG_K_ADDR_OFF,    /* same, or "off" */
    CFG_K_UINT,        /* uint32_t, plain decimal */
    CFG_K_SIZE,        /* uint32_t bytes, decimal with optional unit */
    CFG_K_DURATION,    /* uint32_t ms, decimal with a required unit */
    CFG_K_BOOL,        /* bool */
    CFG_K_LEVEL,       /* cfg_log_level_t, one of level_names */
    CFG_K_BALANCE,     /* cfg_balance_t, one of balance_names */
    CFG_K_VALIDATION,  /* cfg_validation_t, one of validation_names */
    CFG_K_RATIO,       /* double 0..1, plain decimal; min 1 leaves 0 out */
    CFG_K_TEXT,        /* char[max + 1], min..max printable ASCII characters */
    CFG_K_URL,         /* char[CFG_URL_MAX], checked by otlp_parse_endpoint; "off" stores "" */
};

struct cfg_setting {
    const char   *section;   /* NULL = top level (of the file, or of an agent) */
    const char   *key;
    const char   *env;       /* NULL = file only */
    const char   *deflt;     /* parsed by cfg_defaults, shown by cfg_env_help */
    enum cfg_kind kind;
    uint32_t      min, max;  /* CFG_K_UINT, CFG_K_SIZE, CFG_K_DURATION; length for CFG_K_TEXT; CFG_K_RATIO min */
    size_t        off;       /* into cfg_t, or cfg_agent_t for the agent tables */
};

/* ---- values (config_value.c) ---- */

/* Leading decimal digits of *p, saturating at UINT64_MAX; advances *p. */
bool cfg_take_digits(const char **p, uint64_t *v);
/* cfg_parse_addr, but NULL on success, else what is wrong (for messages). */
const char *cfg_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* text as setting s into base (a cfg_t or cfg_agent_t); 0, or -EINVAL with why. */
int cfg_setting_parse(const struct cfg_setting *s, const char *text, void *base, char *why, size_t n);
/* 0 if the value of s stored in base is one cfg_setting_parse could store. */
int cfg_setting_check(const struct cfg_setting *s, const void *base, char *why, size_t n);

/* ---- tables and dotted keys (config.c) ---- */

void cfg_table_defaults(const struct cfg_setting *rows, size_t n, void *base);
int cfg_table_check(const struct cfg_setting *rows, size_t n, const void *base, const char *prefix,
                    char *key, size_t keylen, char *why, size_t whylen);
bool cfg_join(char *out, size_t n, const char *prefix, const char *key);

/* ---- the YAML loader's helpers (config.c) ---- */

struct cfg_loader {
    const char      *path;
    yaml_document_t *doc;
    cfg_t           *c;        /* the working copy, not the caller's */
    char            *err;
    size_t           errlen;
};

static inline const yaml_node_t *cfg_node_at(const struct cfg_loader *ld, int i)
{
    return yaml_document_get_node(ld->doc, i);
}

/* The key of pair p, once cfg_map_check has vetted the mapping. */
static inline const char *cfg_key_text(const struct cfg_loader *ld, const yaml_node_pair_t *p)
{
    return (const char *)cfg_node_at(ld, p->key)->data.scalar.value;
}

__attribute__((format(printf, 4, 5)))
int cfg_load_fail(const struct cfg_loader *ld, const yaml_node_t *at, const char *key, const char *fmt, ...);
bool cfg_node_is_null(const yaml_node_t *n);
const char *cfg_node_kind(const yaml_node_t *n);
int cfg_node_text(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                  const char *key, const char **out);
int cfg_map_check(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *map,
                  const char *name, const char *what);
const struct cfg_setting *cfg_find_setting(const struct cfg_setting *rows, size_t n, const char *section,
                                           const char *key);
bool cfg_in_list(const char *const *list, size_t n, const char *key);
void cfg_list_add(char *list, size_t size, size_t *used, const char *word);
void cfg_list_rows(char *list, size_t size, size_t *used, const struct cfg_setting *rows, size_t n,
                   const char *section);
int cfg_unknown_key(const struct cfg_loader *ld, const yaml_node_t *k, const char *name, const char *list);
int cfg_load_setting(const struct cfg_loader *ld, const struct cfg_setting *s, const yaml_node_t *k,
                     const yaml_node_t *v, void *base, const char *name);
int cfg_load_section(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *map,
                     const struct cfg_setting *rows, size_t n, const char *section,
                     const char *secname, void *base);

/* ---- agents (config_agent.c) ---- */

/* Every agent default, of both types; leaves name, kind and the lists alone. */
void cfg_agent_defaults(cfg_agent_t *a);
/* The file's agents: mapping, replacing the whole list in ld->c. */
int cfg_load_agents(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *map);
/* One agent as the file would have had to give it; key and why on failure. */
int cfg_agent_validate(const cfg_agent_t *a, const char *base, char *key, size_t keylen,
                       char *why, size_t whylen);

/* ---- an agent's response cache (config_cache.c) ---- */

void cfg_cache_defaults(cfg_agent_t *a);
/* agents.<name>.cache: a mapping of cache settings and the ignore_fields list. */
int cfg_load_cache(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, const char *name,
                   cfg_agent_t *a);
int cfg_cache_validate(const cfg_agent_t *a, const char *base, char *key, size_t keylen, char *why, size_t whylen);

/* ---- access control (config_auth.c) ---- */

void cfg_access_defaults(cfg_access_t *a);
/* True when key is one of the top-level keys config_auth.c owns. */
bool cfg_access_owns(const char *key);
/* The file's auth:, cors:, security_headers: or rate_limit: value. */
int cfg_load_access(const struct cfg_loader *ld, const char *key, const yaml_node_t *k, const yaml_node_t *v);
int cfg_access_env(cfg_t *c, char *err, size_t errlen);
/* Appends the access sections' environment overrides to agate --help; bytes written. */
size_t cfg_access_env_help(char *out, size_t cap);
int cfg_access_validate(const cfg_t *c, char *key, size_t keylen, char *why, size_t whylen);

#endif
