/* router: maps a parsed request to its handler, per listener (main or admin). */
#ifndef AGATE_ROUTER_H
#define AGATE_ROUTER_H

struct conn;
#include <stddef.h>

void router_dispatch(struct conn *c);
/* A bounded name for a route (for spans): the template, never a raw client path. */
const char *router_template(int route, const char *path, size_t len);

#endif
