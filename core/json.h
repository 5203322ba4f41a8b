/* json: the JSON *writer* agate uses on the streaming path.
 *
 * Reading JSON is jansson's job (proto/runinput.c). Writing is done here by hand
 * because every event is appended straight into a connection's output buffer:
 * no intermediate tree, no allocation per event. */
#ifndef AGATE_JSON_H
#define AGATE_JSON_H

#include "core/buf.h"

/* Appends s (n bytes of UTF-8) as a quoted JSON string: escapes '"', '\\', and
 * every byte below 0x20 (\b \f \n \r \t by name, the rest as \u00XX); bytes
 * >= 0x80 pass through unchanged (input is already valid UTF-8). 0 or -ENOMEM. */
int json_put_str(buf_t *b, const char *s, size_t n);

/* Length json_put_str would append, for sizing. */
size_t json_str_len(const char *s, size_t n);

#endif
