/* demo: the small demo page agate serves at GET / (config `demo`, default on).
 * It runs an agent over SSE (fetch + stream reader) and over WebSocket and shows
 * the streamed text; the browser integration test drives it. */
#ifndef AGATE_DEMO_H
#define AGATE_DEMO_H

#include "net/conn.h"

void demo_page(conn_t *c);

#endif
