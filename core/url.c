/* url: http:// URLs of the configuration (see url.h). Cold path: parsed
 * once at start-up or reload, so plain code and precise messages. */
#include "core/url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#define URL_RULE "expected http://host[:port][/path] (e.g. http://127.0.0.1:8000/agent)"

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* NULL if host (not bracketed) is a name or an IPv4 address. A name is
 * checked only for its characters; whoever connects resolves it. */
static const char *check_host(const char *host, size_t hlen)
{
    bool numeric = true;
    if (!isalnum((unsigned char)host[0]))
        return "host must be a name, an IPv4 address or an [IPv6] address";
    for (size_t i = 0; i < hlen; i++) {
        char ch = host[i];
        if (!isalnum((unsigned char)ch) && ch != '-' && ch != '.' && ch != '_')
            return "host must be a name, an IPv4 address or an [IPv6] address";
        numeric &= (ch >= '0' && ch <= '9') || ch == '.';
    }
    /* "10.1" or "1.2.3.256" would reach getaddrinfo as a legacy inet_aton
     * form or a failing lookup; neither is what was meant. */
    if (numeric) {
        struct in_addr a4;
        if (inet_pton(AF_INET, host, &a4) != 1)
            return "not an IPv4 address (four numbers 0 to 255)";
    }
    return NULL;
}

/* The host part, h up to hend (no '/' or '?' in it); *rest is what follows
 * the host, at the port's ':' or the end of the authority. */
static const char *parse_host(const char *h, const char *hend, url_t *out, const char **rest)
{
    size_t hlen;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(hend - h));
        struct in6_addr a6;
        if (!rb)
            return "missing ] after the IPv6 address";
        hlen = (size_t)(rb - h - 1);
        if (hlen >= INET6_ADDRSTRLEN)
            return "not a numeric IPv6 address inside [ ]";
        memcpy(out->host, h + 1, hlen);
        out->host[hlen] = 0;
        if (inet_pton(AF_INET6, out->host, &a6) != 1)
            return "not a numeric IPv6 address inside [ ]";
        *rest = rb + 1;
        return NULL;
    }
    const char *colon = memchr(h, ':', (size_t)(hend - h));
    if (colon && memchr(colon + 1, ':', (size_t)(hend - colon - 1)))
        return "put an IPv6 address in brackets, e.g. http://[::1]:8000/agent";
    const char *p = h + strcspn(h, ":/?");
    hlen = (size_t)(p - h);
    if (hlen == 0)
        return "missing host";
    if (hlen >= URL_HOST_MAX)
        return "host too long (at most 127 characters)";
    memcpy(out->host, h, hlen);
    out->host[hlen] = 0;
    *rest = p;
    return check_host(out->host, hlen);
}

static const char *parse_port(const char **p, url_t *out)
{
    if (**p != ':') {
        if (**p && **p != '/' && **p != '?')
            return URL_RULE;   /* "[::1]x" */
        out->port = 80;
        return NULL;
    }
    uint64_t port = 0;
    const char *d = ++*p;
    while (*d >= '0' && *d <= '9' && port <= 65535)
        port = port * 10 + (uint64_t)(*d++ - '0');
    if (d == *p || port < 1 || port > 65535 || (*d && *d != '/' && *d != '?'))
        return "port must be a number from 1 to 65535";
    *p = d;
    out->port = (uint16_t)port;
    out->has_port = true;
    return NULL;
}

static const char *parse_path(const char *p, url_t *out)
{
    size_t plen = strlen(p);
    if (plen + (*p != '/') >= URL_PATH_MAX)
        return "path too long (at most 255 characters)";
    for (size_t i = 0; i < plen; i++) {
        if (p[i] <= 0x20 || p[i] > 0x7e)
            return "path must be printable ASCII without spaces (percent-encode the rest, e.g. %20)";
        if (p[i] == '%' && !(is_hex(p[i + 1]) && is_hex(p[i + 2])))
            return "bad %-escape in the path (expected % and two hex digits)";
    }
    out->has_path = *p == '/';
    out->path[0] = '/';
    memcpy(out->path + (*p != '/'), p, plen + 1);
    return NULL;
}

const char *url_parse(const char *text, url_t *out)
{
    static const char http[] = "http://", https[] = "https://";
    url_t u;
    const char *bad, *p;
    if (strncasecmp(text, https, sizeof https - 1) == 0)
        return "https is not supported yet (use http://)";
    if (strncasecmp(text, http, sizeof http - 1) != 0)
        return URL_RULE;
    if (strchr(text, '#'))
        return "a #fragment is not allowed in an endpoint";
    const char *h = text + sizeof http - 1, *hend = h + strcspn(h, "/?");
    if (memchr(h, '@', (size_t)(hend - h)))
        return "user@ (userinfo) is not allowed in an endpoint";
    memset(&u, 0, sizeof u);
    if ((bad = parse_host(h, hend, &u, &p)) || (bad = parse_port(&p, &u)) || (bad = parse_path(p, &u)))
        return bad;
    if ((size_t)(hend - h) >= sizeof u.authority)
        return "host and port too long";   /* a port written with many leading zeros */
    memcpy(u.authority, h, (size_t)(hend - h));
    *out = u;
    return NULL;
}
