/* wsframe: RFC 6455 frames from a client, checked and reassembled; headers of
 * server frames.
 *
 * The parser is a two-phase loop: gather the header (2 to 14 bytes, kept in
 * hdr[] so a header split across reads costs nothing special), then stream the
 * payload, unmasking while copying into the control buffer or the message
 * buffer. A text message's UTF-8 is checked on the bytes just unmasked, so an
 * invalid sequence fails at the fragment that carries it (fail fast, as the RFC
 * asks) and a character split across fragments is still accepted. Limits are
 * checked from the header, before any payload is kept, so an oversized message
 * costs no memory beyond max_message.
 *
 * A callback may pause the parse at the end of its frame (WSF_PAUSE): the
 * parser is then between frames, and the caller feeds it the rest later.
 *
 * Invariants: msg_opcode != 0 exactly while a fragmented message is open;
 * hdr_len counts header bytes only while !in_payload; dead is sticky. */
#include "net/wsframe.h"

#include <errno.h>
#include <string.h>

void wsf_init(wsf_parser_t *p, size_t max_message)
{
    buf_t keep = p->msg;
    memset(p, 0, sizeof *p);
    p->msg = keep;
    p->msg.len = 0;
    p->max_message = max_message;
}

void wsf_free(wsf_parser_t *p)
{
    buf_free(&p->msg);
}

bool wsf_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/* State: (continuation bytes still needed << 16) | (lowest allowed next byte << 8)
 * | highest. The narrowed ranges after E0, ED, F0 and F4 reject overlong forms,
 * surrogates and code points past U+10FFFF. */
static inline uint32_t u8st(unsigned need, unsigned lo, unsigned hi) { return need << 16 | lo << 8 | hi; }

uint32_t wsf_utf8_step(uint32_t st, const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (!st) {
            /* ASCII runs, 8 bytes per step: JSON text is mostly ASCII. */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i == n)
                break;
            uint8_t c = s[i++];
            if (c < 0x80)
                continue;
            if (c < 0xC2)
                return WSF_UTF8_BAD;   /* continuation byte, or an overlong 2-byte lead */
            else if (c < 0xE0)
                st = u8st(1, 0x80, 0xBF);
            else if (c == 0xE0)
                st = u8st(2, 0xA0, 0xBF);
            else if (c == 0xED)
                st = u8st(2, 0x80, 0x9F);
            else if (c < 0xF0)
                st = u8st(2, 0x80, 0xBF);
            else if (c == 0xF0)
                st = u8st(3, 0x90, 0xBF);
            else if (c < 0xF4)
                st = u8st(3, 0x80, 0xBF);
            else if (c == 0xF4)
                st = u8st(3, 0x80, 0x8F);
            else
                return WSF_UTF8_BAD;
        } else {
            uint8_t c = s[i++];
            unsigned need = st >> 16;
            if (c < ((st >> 8) & 0xff) || c > (st & 0xff))
                return WSF_UTF8_BAD;
            st = need > 1 ? u8st(need - 1, 0x80, 0xBF) : 0;
        }
    }
    return st;
}

bool wsf_utf8_valid(const char *s, size_t n)
{
    return wsf_utf8_step(0, (const uint8_t *)s, n) == 0;
}

size_t wsf_header(uint8_t out[WSF_MAX_HEADER], int opcode, uint64_t len)
{
    out[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

static int fail(wsf_parser_t *p, int rc)
{
    p->dead = true;
    return rc;
}

static inline bool is_control(unsigned op) { return op & 8; }

/* After the first two header bytes: everything they alone decide. Returns 0 and
 * the header's full length in *need, or a close code. */
static int check_start(wsf_parser_t *p, unsigned *need)
{
    uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
    unsigned op = b0 & 0x0f, len7 = b1 & 0x7f;
    if (b0 & 0x70)
        return WSF_CLOSE_PROTOCOL;   /* RSV1-3: no extension was negotiated */
    if (!(b1 & 0x80))
        return WSF_CLOSE_PROTOCOL;   /* client frames must be masked (5.1) */
    switch (op) {
    case WSF_CONT:
        if (!p->msg_opcode)
            return WSF_CLOSE_PROTOCOL;
        break;
    case WSF_TEXT:
    case WSF_BINARY:
        if (p->msg_opcode)
            return WSF_CLOSE_PROTOCOL;   /* a new message inside a fragmented one */
        break;
    case WSF_CLOSE:
    case WSF_PING:
    case WSF_PONG:
        if (!(b0 & 0x80) || len7 > WSF_MAX_CONTROL)
            return WSF_CLOSE_PROTOCOL;   /* control frames: unfragmented, <= 125 bytes */
        break;
    default:
        return WSF_CLOSE_PROTOCOL;       /* reserved opcode */
    }
    p->opcode = (uint8_t)op;
    p->fin = b0 & 0x80;
    *need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    return 0;
}

/* The whole header is in hdr[]: length, mask, limits, message start. */
static int begin_payload(wsf_parser_t *p)
{
    unsigned len7 = p->hdr[1] & 0x7f, at = 2;
    uint64_t len = len7;
    if (len7 == 126) {
        len = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
        at = 4;
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p->hdr[2 + i];
        if (len >> 63)
            return WSF_CLOSE_PROTOCOL;
        at = 10;
    }
    memcpy(p->mask, p->hdr + at, 4);
    p->remaining = len;
    p->frame_off = 0;
    p->in_payload = true;
    if (is_control(p->opcode)) {
        p->ctl_len = 0;
        return 0;
    }
    if (p->opcode != WSF_CONT) {
        p->msg_opcode = p->opcode;
        p->msg.len = 0;
        p->utf8 = 0;
    }
    if (len > p->max_message || p->msg.len + len > p->max_message)
        return WSF_CLOSE_TOO_BIG;
    if (buf_reserve(&p->msg, (size_t)len))
        return -ENOMEM;
    return 0;
}

/* dst[i] = src[i] ^ mask[(off + i) % 4], eight bytes per step. */
static void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4], uint64_t off)
{
    uint8_t rot[8];
    for (int i = 0; i < 8; i++)
        rot[i] = mask[(off + (uint64_t)i) & 3];
    uint64_t m;
    memcpy(&m, rot, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= m;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ rot[i & 7];
}

static int frame_done(wsf_parser_t *p, const wsf_callbacks_t *cb, void *ctx)
{
    p->in_payload = false;
    p->hdr_len = 0;
    if (is_control(p->opcode)) {
        if (p->opcode == WSF_CLOSE && p->ctl_len) {
            if (p->ctl_len == 1)
                return WSF_CLOSE_PROTOCOL;
            unsigned code = (unsigned)p->ctl[0] << 8 | p->ctl[1];
            if (!wsf_close_code_valid(code))
                return WSF_CLOSE_PROTOCOL;
            if (!wsf_utf8_valid((const char *)p->ctl + 2, p->ctl_len - 2u))
                return WSF_CLOSE_INVALID_DATA;
        }
        return cb->control(ctx, p->opcode, (const char *)p->ctl, p->ctl_len);
    }
    if (!p->fin)
        return 0;
    if (p->msg_opcode == WSF_TEXT && p->utf8)
        return WSF_CLOSE_INVALID_DATA;   /* the message ends inside a character */
    int op = p->msg_opcode;
    p->msg_opcode = 0;
    int rc = cb->message(ctx, op, p->msg.data ? p->msg.data : "", p->msg.len);
    p->msg.len = 0;
    return rc;
}

/* A frame's end: its callback's WSF_PAUSE stops the feed with the parser
 * intact (frame_done left it at a boundary); anything else non-zero kills it. */
static inline int frame_end(wsf_parser_t *p, const wsf_callbacks_t *cb, void *ctx)
{
    int rc = frame_done(p, cb, ctx);
    return rc && rc != WSF_PAUSE ? fail(p, rc) : rc;
}

int wsf_feed_some(wsf_parser_t *p, const char *data, size_t len, const wsf_callbacks_t *cb, void *ctx,
                  size_t *used)
{
    const uint8_t *s = (const uint8_t *)data;
    size_t i = 0;
    int rc;
    *used = 0;
    if (p->dead)
        return WSF_CLOSE_PROTOCOL;
    while (i < len) {
        if (!p->in_payload) {
            unsigned need = 14;
            p->hdr[p->hdr_len++] = s[i++];
            if (p->hdr_len < 2)
                continue;
            if ((rc = check_start(p, &need)))
                return fail(p, rc);
            while (p->hdr_len < need && i < len)
                p->hdr[p->hdr_len++] = s[i++];
            if (p->hdr_len < need)
                continue;   /* more header next time: check_start runs again, cheaply */
            if ((rc = begin_payload(p)))
                return fail(p, rc);
            if (!p->remaining && (rc = frame_end(p, cb, ctx)))
                goto stop;
            continue;
        }
        size_t take = len - i;
        if (take > p->remaining)
            take = (size_t)p->remaining;
        uint8_t *dst;
        if (is_control(p->opcode)) {
            dst = p->ctl + p->ctl_len;
            p->ctl_len = (uint8_t)(p->ctl_len + take);
        } else {
            dst = (uint8_t *)p->msg.data + p->msg.len;
            p->msg.len += take;
        }
        unmask(dst, s + i, take, p->mask, p->frame_off);
        if (!is_control(p->opcode) && p->msg_opcode == WSF_TEXT && (p->utf8 = wsf_utf8_step(p->utf8, dst, take)) == WSF_UTF8_BAD)
            return fail(p, WSF_CLOSE_INVALID_DATA);
        i += take;
        p->remaining -= take;
        p->frame_off += take;
        if (!p->remaining && (rc = frame_end(p, cb, ctx)))
            goto stop;
    }
    *used = len;
    return 0;
stop:
    *used = i;
    return rc;
}

int wsf_feed(wsf_parser_t *p, const char *data, size_t len, const wsf_callbacks_t *cb, void *ctx)
{
    size_t used;
    return wsf_feed_some(p, data, len, cb, ctx, &used);
}
