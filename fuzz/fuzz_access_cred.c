/* fuzz_access_cred: libFuzzer driver for net/access_cred.c, which reads a
 * credential out of a request's headers, its Sec-WebSocket-Protocol entries
 * and its access_token query parameter (base64url and percent-decoding).
 *
 * Input: byte 0 bit 0 says whether the request is a WebSocket upgrade; the rest
 * is split at '\n': the first piece is the request target, each later piece a
 * header whose first byte picks the name (authorization, x-api-key,
 * sec-websocket-protocol, or another) and whose other bytes are the value.
 * Must never crash or read out of bounds; a credential found is non-empty (but
 * for the API key header's), at most JWT_MAX_TOKEN bytes when decoded, and
 * points into the request or the decode buffer; a refusal is invalid_request. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net/access_int.h"
#include "net/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)
#define FZ_HDRS 16

static const char *const names[] = {"authorization", "x-api-key", "sec-websocket-protocol", "x-other"};

static http_slice_t put(http_req_t *r, const char *s, size_t n)
{
    http_slice_t sl = {(uint32_t)r->raw.len, (uint32_t)n};
    FZ_CHECK(buf_append(&r->raw, s, n) == 0);
    return sl;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool upgrade = data[0] & 1;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    http_hdr_t hdrs[FZ_HDRS];
    http_req_t r;
    memset(&r, 0, sizeof r);
    r.hdrs = hdrs;
    r.cap_hdrs = FZ_HDRS;
    const char *nl = memchr(p, '\n', (size_t)(end - p)), *pe = nl ? nl : end;
    r.url = put(&r, p, (size_t)(pe - p));
    r.path = r.url;
    const char *q = memchr(p, '?', (size_t)(pe - p));
    if (q)
        r.path.len = (uint32_t)(q - p);
    for (p = nl ? nl + 1 : end; p < end && r.n_hdrs < FZ_HDRS; p = nl ? nl + 1 : end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        pe = nl ? nl : end;
        const char *name = names[(uint8_t)*p % 4];
        http_hdr_t *h = &hdrs[r.n_hdrs++];
        h->name = put(&r, name, strlen(name));
        h->value = put(&r, p + 1 < pe ? p + 1 : pe, pe > p + 1 ? (size_t)(pe - p - 1) : 0);
    }

    access_cred_t cr;
    access_decision_t d;
    memset(&d, 0, sizeof d);
    access_verdict_t v = access_cred_find("x-api-key", &r, upgrade, &cr, &d);
    if (v == ACCESS_ALLOW) {
        if (cr.kind != ACCESS_CRED_NONE) {
            FZ_CHECK(cr.len > 0 || cr.kind == ACCESS_CRED_KEY);
            bool in_raw = cr.tok >= r.raw.data && cr.tok + cr.len <= r.raw.data + r.raw.len;
            bool in_buf = cr.decoded && cr.tok == cr.buf && cr.len <= sizeof cr.buf;
            FZ_CHECK(in_raw || in_buf);
        }
    } else {
        FZ_CHECK(v == ACCESS_UNAUTHORIZED || v == ACCESS_BAD_REQUEST);
        FZ_CHECK(d.verdict == v && !strcmp(d.error, "invalid_request") && d.message && d.message[0]);
        FZ_CHECK(!cr.decoded);   /* a decoded token is wiped before any refusal */
    }
    access_cred_wipe(&cr);
    buf_free(&r.raw);
    return 0;
}
