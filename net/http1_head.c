/* http1_head: what a request head must be before agate acts on it, beyond what
 * llhttp checks.
 *
 * llhttp parses the request line and the fields, rejects a Content-Length next
 * to a Transfer-Encoding (the smuggling defence stays there: 400 before any of
 * this runs) and a request whose last coding is not chunked. It accepts, and
 * leaves to us: versions other than 1.x on the request line, a second Host,
 * codings before chunked (`gzip, chunked` would reach us still gzipped), a
 * Content-Encoding we cannot decode, and every form of request target. Each is
 * refused here with the status RFC 9110/9112 gives it, before the body is read;
 * the parser then stops, so the connection closes after the answer. Runs once
 * per request: one pass over the header table, comparing a name only when its
 * length matches; the coding lists are read only when they are there. */
#include "net/http1_head.h"

#include <string.h>
#include <strings.h>

/* The answer to a head refused here; the parse stops (-1) and http1 writes it. */
static int refuse(http_req_t *r, int status, const char *code, const char *msg)
{
    r->err_status = status;
    r->err_code = code;
    r->err_msg = msg;
    return -1;
}

static inline bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }

/* The elements of a comma-separated list field across all its lines (RFC 9110
 * section 5.3: several lines of one name make one list), OWS trimmed, empty
 * elements skipped. */
typedef struct list_it {
    const http_req_t *r;
    const char *name;
    size_t      name_len;
    uint32_t    next_hdr;
    const char *p, *end;
} list_it_t;

static void list_begin(list_it_t *it, const http_req_t *r, const char *name)
{
    *it = (list_it_t){.r = r, .name = name, .name_len = strlen(name)};
}

static bool list_next(list_it_t *it, const char **el, size_t *len)
{
    const http_req_t *r = it->r;
    for (;;) {
        while (it->p < it->end) {
            const char *s = it->p, *e = memchr(s, ',', (size_t)(it->end - s));
            if (!e)
                e = it->end;
            it->p = e + 1;
            while (s < e && is_ows(*s))
                s++;
            while (e > s && is_ows(e[-1]))
                e--;
            if (e > s) {
                *el = s;
                *len = (size_t)(e - s);
                return true;
            }
        }
        const http_hdr_t *h = NULL;
        while (!h && it->next_hdr < r->n_hdrs) {
            h = &r->hdrs[it->next_hdr++];
            if (h->name.len != it->name_len || strncasecmp(http_str(r, h->name), it->name, it->name_len))
                h = NULL;
        }
        if (!h)
            return false;
        it->p = http_str(r, h->value);
        it->end = it->p + h->value.len;
    }
}

/* An element's coding name (a token: up to OWS or ';') against a lower-case name. */
static bool coding_is(const char *el, size_t len, const char *name, bool *has_params)
{
    size_t n = 0;
    while (n < len && !is_ows(el[n]) && el[n] != ';')
        n++;
    *has_params = n < len;
    return n == strlen(name) && !strncasecmp(el, name, n);
}

static inline http_slice_t slice_at(const http_req_t *r, const char *from, const char *to)
{
    return (http_slice_t){(uint32_t)(from - r->raw.data), (uint32_t)(to - from)};
}

int http_head_version(http_req_t *r, unsigned major)
{
    if (major != 1)
        return refuse(r, 505, "http_version_not_supported",
                      "only HTTP/1.0 and HTTP/1.1 are supported on this port");
    return 0;
}

/* absolute-form (RFC 9112 section 3.2.2): routed by its path, "/" when it has
 * none; its authority stands in for Host. */
static int target_absolute(http_req_t *r, const char *u, size_t n)
{
    const char *sep = memmem(u, n, "://", 3), *end = u + n;
    size_t sl = sep ? (size_t)(sep - u) : 0;
    if (!(sl == 4 && !strncasecmp(u, "http", 4)) && !(sl == 5 && !strncasecmp(u, "https", 5)))
        return refuse(r, 400, "bad_request", "the request target must be a path or an http(s) URI");
    const char *a = sep + 3, *ae = a;
    while (ae < end && *ae != '/' && *ae != '?' && *ae != '#')
        ae++;
    if (ae == a)
        return refuse(r, 400, "bad_request", "the request target's URI has no host");
    if (memchr(a, '@', (size_t)(ae - a)))   /* RFC 9110 section 4.2.4: userinfo is an error */
        return refuse(r, 400, "bad_request", "the request target's URI must not carry user information");
    r->host = slice_at(r, a, ae);
    if (ae < end && *ae == '/') {
        const char *q = memchr(ae, '?', (size_t)(end - ae));
        r->path = slice_at(r, ae, q ? q : end);
        return 0;
    }
    uint32_t off = (uint32_t)r->raw.len;   /* no path: "/" kept after the head bytes */
    if (buf_append(&r->raw, "/", 1))
        return refuse(r, 503, "out_of_memory", "out of memory");
    r->path = (http_slice_t){off, 1};
    return 0;
}

/* The request target (RFC 9112 section 3.2) to r->path. authority-form is
 * CONNECT's only, and agate tunnels nothing; asterisk-form is OPTIONS's only. */
static int target_check(http_req_t *r, const llhttp_t *p)
{
    const char *u = http_str(r, r->url);
    size_t n = r->url.len;
    if (p->method == HTTP_CONNECT)
        return refuse(r, 501, "not_implemented", "CONNECT is not supported: agate is not a proxy");
    if (n == 1 && *u == '*' && p->method != HTTP_OPTIONS)
        return refuse(r, 400, "bad_request", "the request target * is only for OPTIONS");
    if (n && *u != '/' && *u != '*')
        return target_absolute(r, u, n);
    const char *q = memchr(u, '?', n);
    r->path = r->url;
    if (q)
        r->path.len = (uint32_t)(q - u);
    return 0;
}

/* The fields checked here, found in one pass over the header table: most
 * requests carry neither coding field, and their lists are then never read. */
typedef struct head_fields {
    uint32_t     host, te, ce;        /* how many lines of each */
    http_slice_t host_value;
} head_fields_t;

static inline bool name_is(const http_req_t *r, const http_hdr_t *h, const char *lower)
{
    return !strncasecmp(http_str(r, h->name), lower, h->name.len);
}

static void fields_scan(const http_req_t *r, head_fields_t *hf)
{
    *hf = (head_fields_t){0};
    for (uint32_t i = 0; i < r->n_hdrs; i++) {
        const http_hdr_t *h = &r->hdrs[i];
        switch (h->name.len) {
        case 4:
            if (name_is(r, h, "host")) {
                hf->host++;
                hf->host_value = h->value;
            }
            break;
        case 16: hf->ce += name_is(r, h, "content-encoding"); break;
        case 17: hf->te += name_is(r, h, "transfer-encoding"); break;
        default: break;
        }
    }
}

/* Exactly one Host on HTTP/1.1 (RFC 9112 section 3.2: 400 for none or several). */
static int host_check(http_req_t *r, const llhttp_t *p, const head_fields_t *hf)
{
    if (hf->host > 1)
        return refuse(r, 400, "bad_request", "more than one Host header");
    if (!hf->host && p->http_major == 1 && p->http_minor >= 1)
        return refuse(r, 400, "bad_request", "missing Host header");
    if (!r->host.len)
        r->host = hf->host_value;
    return 0;
}

/* Transfer-Encoding: the one coding agate reads is chunked, applied once
 * (RFC 9112 section 6.1: 501 for a coding the server does not understand).
 * Case-insensitive and OWS-trimmed as the RFC says; an empty value is refused,
 * not ignored, so no front proxy can frame the body differently from us. */
static int te_check(http_req_t *r, const llhttp_t *p, const head_fields_t *hf)
{
    if (!hf->te)   /* counted by name: llhttp sets no flag for an empty one */
        return 0;
    if (p->http_major == 1 && p->http_minor == 0)   /* RFC 9112 section 6.1: faulty framing on 1.0 */
        return refuse(r, 400, "bad_request", "Transfer-Encoding is not allowed on HTTP/1.0");
    list_it_t it;
    const char *el;
    size_t len;
    uint32_t chunked = 0;
    bool params;
    list_begin(&it, r, "transfer-encoding");
    while (list_next(&it, &el, &len)) {
        if (!coding_is(el, len, "chunked", &params))
            return refuse(r, 501, "not_implemented", "only Transfer-Encoding: chunked is supported");
        if (params)
            return refuse(r, 400, "bad_request", "Transfer-Encoding: chunked takes no parameters");
        chunked++;
    }
    if (chunked != 1)
        return refuse(r, 400, "bad_request", "Transfer-Encoding must be chunked, once");
    return 0;
}

/* Content-Encoding on a body: agate decodes none, so anything but identity is
 * 415 with Accept-Encoding saying what is taken (RFC 9110 section 12.5.3). A
 * request without a body has nothing to decode and passes. */
static int ce_check(http_req_t *r, const llhttp_t *p, const head_fields_t *hf)
{
    if (!hf->ce || (!(p->flags & F_CHUNKED) && !((p->flags & F_CONTENT_LENGTH) && p->content_length)))
        return 0;
    list_it_t it;
    const char *el;
    size_t len;
    bool params;
    list_begin(&it, r, "content-encoding");
    while (list_next(&it, &el, &len)) {
        if (!coding_is(el, len, "identity", &params) || params) {
            r->err_extra = "Accept-Encoding: identity\r\n";
            return refuse(r, 415, "unsupported_media_type",
                          "the request body's Content-Encoding is not supported: send it unencoded");
        }
    }
    return 0;
}

int http_head_check(http_req_t *r, const llhttp_t *p)
{
    head_fields_t hf;
    fields_scan(r, &hf);
    if (target_check(r, p) || host_check(r, p, &hf) || te_check(r, p, &hf) || ce_check(r, p, &hf))
        return -1;
    return 0;
}
