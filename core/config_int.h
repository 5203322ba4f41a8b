/* config_int: what the files of the config module share, and nothing outside
 * them may use: the value parsers (config_value.c), the loader's key lists
 * (config.c), the registry's walks (config_sect.c), core's own sections and
 * the pieces of the agents section (config_agent.c, config_cache.c). Private:
 * included only by core/config*.c; core/config.h is the module's interface and
 * core/config_sect.h what a section's own code uses. */
#ifndef AGATE_CONFIG_INT_H
#define AGATE_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <yaml.h>

#include "core/config.h"
#include "core/config_sect.h"

/* ---- values (config_value.c) ---- */

/* Leading decimal digits of *p, saturating at UINT64_MAX; advances *p. */
bool cfg_take_digits(const char **p, uint64_t *v);
/* cfg_parse_addr, but NULL on success, else what is wrong (for messages). */
const char *cfg_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* text as setting s into base (a cfg_t or cfg_agent_t); 0, or -EINVAL with why. */
int cfg_setting_parse(const struct cfg_setting *s, const char *text, void *base, char *why, size_t n);
/* 0 if the value of s stored in base is one cfg_setting_parse could store. */
int cfg_setting_check(const struct cfg_setting *s, const void *base, char *why, size_t n);

/* ---- the YAML loader's lists (config.c) ---- */

bool cfg_in_list(const char *const *list, size_t n, const char *key);
void cfg_list_add(char *list, size_t size, size_t *used, const char *word);
void cfg_list_rows(char *list, size_t size, size_t *used, const struct cfg_setting *rows, size_t n,
                   const char *section);

/* ---- the registry of sections (config_sect.c) ---- */

/* Core's own sections, registered by the engine ahead of any module's:
 * config.c's (listen, limits, stream, log, metrics, trace, ...) and the agents'. */
extern cfg_section_t cfg_core_section;
extern cfg_section_t cfg_agents_section;

/* Zeroed c: every section's row defaults, then its defaults hook; c->n_sect. */
void cfg_sections_defaults(cfg_t *c);
/* The section owning top-level key, or NULL. */
const cfg_section_t *cfg_section_of(const char *key);
/* The file's value v of top-level key (pair k, v), for the section owning it. */
int cfg_section_load(const struct cfg_loader *ld, const cfg_section_t *s, const char *key,
                     const yaml_node_t *k, const yaml_node_t *v);
/* Every top-level key, comma-separated, for an "unknown key" message. */
void cfg_sections_keys(char *list, size_t size);
int cfg_sections_env(cfg_t *c, char *err, size_t errlen);
int cfg_sections_validate(const cfg_t *c, char *key, size_t keylen, char *why, size_t whylen);
/* The variables' lines of --help; bytes written. */
size_t cfg_sections_help(char *out, size_t cap);

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

/* ---- an agent's resumable runs (config_resume.c) ---- */

void cfg_resume_defaults(cfg_agent_t *a);
/* agents.<name>.resume: a mapping of resume settings. */
int cfg_load_resume(const struct cfg_loader *ld, const yaml_node_t *k, const yaml_node_t *v, const char *name,
                    cfg_agent_t *a);
int cfg_resume_validate(const cfg_agent_t *a, const char *base, char *key, size_t keylen, char *why, size_t whylen);

#endif
