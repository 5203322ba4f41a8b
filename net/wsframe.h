/* wsframe: the RFC 6455 frame layer, pure (no I/O, no connection state).
 *
 * A wsf_parser_t takes the bytes a client sent, in pieces of any size, checks
 * every rule the RFC gives a server (client frames masked, no RSV bits without
 * an extension, known opcodes, control frames short and unfragmented, no data
 * frame inside a fragmented message, no continuation outside one, 64-bit
 * lengths with the top bit clear, UTF-8 text checked across fragment borders,
 * close payloads with a valid code and UTF-8 reason) and hands back whole
 * messages and control frames through callbacks. Payload bytes are unmasked
 * while they are copied into the message buffer, which keeps its capacity
 * across messages: one copy per byte, no allocation once warm.
 *
 * An error is the close code the server must send: 1002 (protocol), 1007
 * (invalid UTF-8), 1009 (message too big); after one the parser is dead.
 *
 * wsf_header() writes a server frame header (never masked). */
#ifndef AGATE_WSFRAME_H
#define AGATE_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum wsf_opcode {
    WSF_CONT = 0x0, WSF_TEXT = 0x1, WSF_BINARY = 0x2,
    WSF_CLOSE = 0x8, WSF_PING = 0x9, WSF_PONG = 0xA,
};

enum wsf_close_code {
    WSF_CLOSE_NORMAL = 1000, WSF_CLOSE_GOING_AWAY = 1001, WSF_CLOSE_PROTOCOL = 1002,
    WSF_CLOSE_UNSUPPORTED = 1003, WSF_CLOSE_NO_STATUS = 1005, WSF_CLOSE_INVALID_DATA = 1007,
    WSF_CLOSE_POLICY = 1008, WSF_CLOSE_TOO_BIG = 1009, WSF_CLOSE_INTERNAL = 1011,
};

#define WSF_MAX_CONTROL 125
#define WSF_MAX_HEADER  10   /* a server frame: 2 + 8 bytes of length, no mask */

typedef struct wsf_callbacks {
    /* A complete data message (opcode WSF_TEXT, already UTF-8 checked, or
     * WSF_BINARY). data is valid until the callback returns. */
    int (*message)(void *ctx, int opcode, const char *data, size_t len);
    /* A ping, pong or close frame. For close, payload is the raw payload (code
     * and reason already checked). */
    int (*control)(void *ctx, int opcode, const char *payload, size_t len);
} wsf_callbacks_t;

typedef struct wsf_parser {
    uint8_t  hdr[14];        /* header bytes gathered so far */
    uint8_t  hdr_len;
    uint8_t  opcode;         /* current frame's opcode */
    bool     fin;
    bool     in_payload;     /* header done, payload bytes remain */
    uint8_t  mask[4];
    uint64_t remaining;      /* payload bytes of the current frame still to come */
    uint64_t frame_off;      /* payload bytes of the current frame seen (mask index) */
    uint8_t  msg_opcode;     /* WSF_TEXT/WSF_BINARY while a message is open, else 0 */
    uint32_t utf8;           /* incremental UTF-8 state of the open text message */
    uint8_t  ctl[WSF_MAX_CONTROL];
    uint8_t  ctl_len;
    bool     dead;           /* an error was returned: nothing more is parsed */
    size_t   max_message;    /* bytes; a longer message is 1009 */
    buf_t    msg;            /* the open message's payload, owned */
} wsf_parser_t;

void wsf_init(wsf_parser_t *p, size_t max_message);
void wsf_free(wsf_parser_t *p);

/* Feeds received bytes. Returns 0, a close code (> 0) for a protocol error,
 * or a callback's non-zero return (parsing stops there; a negative errno from
 * buffer growth is -ENOMEM). Every byte before the stop was consumed. */
int wsf_feed(wsf_parser_t *p, const char *data, size_t len, const wsf_callbacks_t *cb, void *ctx);

/* A callback's return that stops the feed after its frame and leaves the
 * parser alive, at a frame boundary: wsf_feed_some returns it, and the bytes
 * after *used are to be fed again later (a server whose output is full stops
 * reading its peer between frames). */
#define WSF_PAUSE 2

/* wsf_feed that also says how many bytes it consumed: after 0, len; after
 * WSF_PAUSE, the bytes up to the end of the frame whose callback paused. */
int wsf_feed_some(wsf_parser_t *p, const char *data, size_t len, const wsf_callbacks_t *cb, void *ctx,
                  size_t *used);

/* Whether a received close code may appear on the wire (RFC 6455 7.4). */
bool wsf_close_code_valid(unsigned code);

/* Incremental UTF-8 check: state 0 = at a character boundary. Returns the new
 * state, or WSF_UTF8_BAD. */
#define WSF_UTF8_BAD 0xffffffffu
uint32_t wsf_utf8_step(uint32_t state, const uint8_t *s, size_t n);
bool wsf_utf8_valid(const char *s, size_t n);

/* Writes a server frame header (FIN set, unmasked) into out; returns its length. */
size_t wsf_header(uint8_t out[WSF_MAX_HEADER], int opcode, uint64_t len);

#endif
