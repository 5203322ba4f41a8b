/* url: the one parser of the http:// URLs in agate's configuration (a proxy
 * agent's endpoints, the OTLP collector). Callers add their own rules on top
 * (a collector's path is required, its host numeric). */
#ifndef AGATE_URL_H
#define AGATE_URL_H

#include <stdbool.h>
#include <stdint.h>

#define URL_HOST_MAX 128   /* a name, an IPv4 address, or an IPv6 address without its brackets */
#define URL_PATH_MAX 256

typedef struct url {
    char     host[URL_HOST_MAX];
    uint16_t port;                 /* 80 when the URL names none */
    bool     has_port, has_path;
    char     authority[URL_HOST_MAX + 8];   /* host[:port] exactly as written, for a Host header */
    char     path[URL_PATH_MAX];   /* starts with '/' ("/" when absent), query kept */
} url_t;

/* Parses "http://host[:port][/path][?query]". The host is a name, an IPv4
 * address or a bracketed IPv6 address; no userinfo, no #fragment; the path is
 * printable ASCII with well-formed %XX escapes (it goes into a request line
 * verbatim). NULL on success, else what is wrong, for a message; *out is
 * written only on success. https is refused with its own message. */
const char *url_parse(const char *text, url_t *out);

#endif
