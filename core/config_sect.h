/* config_sect: what a module that owns a configuration section writes it with
 * (core/config.h has the section itself, cfg_section_t): the row of a settings
 * table, and the YAML helpers a section's own loader (cfg_section_t.load) walks
 * its mappings and lists with, so that its messages read like every other:
 *   "<file>:<line>: <dotted key>: <problem>".
 * Cold path: nothing here runs after the shards start. */
#ifndef AGATE_CONFIG_SECT_H
#define AGATE_CONFIG_SECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "core/config.h"

#define CFG_KEY_MAX    256         /* dotted key in messages; longer ones are cut */
#define CFG_WHY_MAX    320

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
    CFG_K_BACKEND,     /* cfg_backend_t, one of backend_names */
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
    size_t        off;       /* into the section's struct (cfg_t for core's own), or cfg_agent_t */
};

/* Each row's default into base (a bad default is a bug: it asserts). */
void cfg_table_defaults(const struct cfg_setting *rows, size_t n, void *base);
/* The rows' values in base as the file could have given them; on failure the
 * dotted key (prefix, section, key) and the problem. */
int cfg_table_check(const struct cfg_setting *rows, size_t n, const void *base, const char *prefix,
                    char *key, size_t keylen, char *why, size_t whylen);
/* The row of rows for key at the level section (NULL: a top-level key). */
const struct cfg_setting *cfg_find_setting(const struct cfg_setting *rows, size_t n, const char *section,
                                           const char *key);
/* "prefix.key" into out (key alone without a prefix); false when it was cut. */
bool cfg_join(char *out, size_t n, const char *prefix, const char *key);

/* ---- the YAML loader's helpers ---- */

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

/* Reports "<path>:<line>: <key>: <why>" at node at; returns -EINVAL. */
__attribute__((format(printf, 4, 5)))
int cfg_load_fail(const struct cfg_loader *ld, const yaml_node_t *at, const char *key, const char *fmt, ...);
/* An empty value, "~" or "null": what `limits:` with everything commented out gives. */
bool cfg_node_is_null(const yaml_node_t *n);
/* "a mapping", "a list", "an empty value" or "a single value", for messages. */
const char *cfg_node_kind(const yaml_node_t *n);
/* The text of scalar v (the value of key k, named key), or an error. */
int cfg_node_text(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v,
                  const char *key, const char **out);
/* map (the value of key k, named name) is a mapping of plain, distinct keys;
 * callers then walk its pairs freely. what: "settings", "JWT settings", ... */
int cfg_map_check(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *map,
                  const char *name, const char *what);
/* "<name>: unknown key (expected one of: <list>)" */
int cfg_unknown_key(const struct cfg_loader *ld, const yaml_node_t *k, const char *name, const char *list);
/* The scalar v as row s, into base; name is the dotted key for messages. */
int cfg_load_setting(const struct cfg_loader *ld, const struct cfg_setting *s, const yaml_node_t *k,
                     const yaml_node_t *v, void *base, const char *name);
/* A mapping of rows' section (e.g. "limits" of core's rows, "timeouts" of a
 * proxy agent's), named secname in messages, into base. */
int cfg_load_section(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *map,
                     const struct cfg_setting *rows, size_t n, const char *section,
                     const char *secname, void *base);

#endif
