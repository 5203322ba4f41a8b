/* pbjson: AG-UI events in the protobuf encoding (proto/agui.proto), and the
 * conversion between that encoding and the JSON form agate's other transports
 * carry.
 *
 * A frame is what @ag-ui/client's binary reader takes: a 4-byte big-endian
 * length, then one packed ag_ui.Event. Converting either way keeps what the
 * protobuf schema can carry and maps it the way @ag-ui/proto 1.0.0's encode and
 * decode do (docs/ARCHITECTURE.md lists what the schema cannot carry). */
#ifndef AGATE_PBJSON_H
#define AGATE_PBJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "proto/agui.h"

#define PBJSON_MEDIA_TYPE "application/vnd.ag-ui.event+proto"
/* @ag-ui/client refuses a frame over 10 MiB; agate never writes or reads a bigger one. */
#define PBJSON_MAX_FRAME  (10u << 20)
/* Nesting bound for one event, both ways, in JSON levels (the event object is
 * one; what jtape counts), the same bound validation puts on an SSE upstream's
 * event (VALIDATE_MAX_DEPTH), whatever number of protobuf message levels the
 * encoding takes for it (up to three a level: Value, Struct, its entry). */
#define PBJSON_MAX_DEPTH  64
#define PBJSON_MSG_MAX    160

/* A keep-alive frame for a quiet stream (the encoding has no comment frame):
 * an envelope holding only field 19999, an empty message. Field numbers
 * 19000-19999 are protobuf's own (protoc refuses them in a schema), so no AG-UI
 * version can ever give it a meaning. @ag-ui/client 1.0.0 drops it as an event
 * of a later protocol, logging a console warning each time (Node:
 * SUPPRESS_TRANSFORMATION_WARNINGS=1 silences it); an empty frame would end
 * its stream ("Invalid event"). agate's own reader skips it. */
#define PBJSON_HEARTBEAT     "\0\0\0\4\xFA\xE1\x09\0"
#define PBJSON_HEARTBEAT_LEN 8
/* Whether a frame's body (no length prefix) is that keep-alive. */
static inline bool pbjson_is_heartbeat(const uint8_t *pb, size_t len)
{
    return len == PBJSON_HEARTBEAT_LEN - 4 && !__builtin_memcmp(pb, PBJSON_HEARTBEAT + 4, len);
}

/* Appends one frame (length prefix + packed Event) for an event agate built.
 * 0, or -ENOMEM; on error b is as it was. */
int pbjson_frame_event(buf_t *b, const agui_event_t *ev);

/* Appends one frame for an event given as JSON text (an upstream's event).
 * 0; -EINVAL when the text is not a JSON object of a known event type or holds
 * a value the schema cannot carry (msg says which); -ENOMEM. On error b is as
 * it was. */
int pbjson_frame_json(buf_t *b, const char *json, size_t len, char msg[PBJSON_MSG_MAX]);

/* Appends the JSON text of one packed Event (no length prefix) and sets *type.
 * 0; -EPROTO when the bytes are not a well-formed event (msg says why);
 * -ENOENT when they hold only event kinds newer than this schema (the client
 * drops those); -ENOMEM. On error b is as it was. */
int pbjson_to_json(buf_t *b, const uint8_t *pb, size_t len, agui_type_t *type, char msg[PBJSON_MSG_MAX]);

/* The event type of a packed Event without decoding it (for pass-through
 * metrics); AGUI_TYPE_COUNT when the bytes name none. */
agui_type_t pbjson_sniff_type(const uint8_t *pb, size_t len);

#endif
