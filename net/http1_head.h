/* http1_head: the rules for a request head that llhttp leaves to its user
 * (RFC 9110, RFC 9112): the protocol version, the form of the request target,
 * Host, Transfer-Encoding and Content-Encoding. Each check either passes or
 * names the problem in the request's err_* fields for http1 to answer. */
#ifndef AGATE_HTTP1_HEAD_H
#define AGATE_HTTP1_HEAD_H

#include "net/http1.h"

/* Called when the request line's version is parsed: anything but HTTP/1.x is
 * 505 (HTTP/1.2 and up are read as 1.1, RFC 9112 section 2.3). 0 or -1. */
int http_head_version(http_req_t *r, unsigned major);

/* Called with the whole head parsed: sets r->path and r->host from the target
 * (origin-form, or absolute-form routed by its path) and checks Host, the
 * framing and the body's coding. 0, or -1 with r->err_* set. */
int http_head_check(http_req_t *r, const llhttp_t *p);

#endif
