/* router: maps a parsed request to its handler, per listener (main or admin). */
#ifndef AGATE_ROUTER_H
#define AGATE_ROUTER_H

struct conn;
void router_dispatch(struct conn *c);

#endif
