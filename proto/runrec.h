/* runrec: one AG-UI event of a stored or shared run, as a record that can be
 * replayed under new ids by splicing.
 *
 * Layout (host byte order, unaligned; records follow each other):
 *   u32 json_len, u32 gap_ms, u16 n_patch, u8 type, u8 flags (RUNREC_F_*),
 *   n_patch x { u32 off, u32 len, u32 id },   the id strings in the JSON
 *   json_len bytes of event JSON, as the upstream sent it
 * A patch's id is 0 for the threadId, 1 for the runId, and 2 + k for the k-th
 * distinct message / tool-call id of the run (k counts first appearances, so
 * a replayer can mint fresh ids lazily and in order). gap_ms is the time since
 * the previous event (since the request, for the first), for paced replay. */
#ifndef AGATE_RUNREC_H
#define AGATE_RUNREC_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/rand.h"
#include "proto/agui.h"
#include "proto/evids.h"

#define RUNREC_HDR   12u
#define RUNREC_PATCH 12u
#define RUNREC_ID_LEN 36u          /* a fresh id: an RFC 9562 v4 UUID */
#define RUNREC_F_LF   1u           /* the JSON holds a line feed (an SSE replay splits its data there) */

/* The recorder's side: old id text -> k. Grows; kept by one writer. */
typedef struct runrec_ids {
    buf_t     text;               /* the old ids, back to back */
    struct runrec_id { uint64_t h; uint32_t off, len; } *ents;
    uint32_t *slots;              /* open addressing, ents index + 1, 0 = empty */
    uint32_t  n, cap;             /* cap: slots (power of two) */
    evids_span_t *spans;          /* scan scratch */
    size_t    spans_cap;
} runrec_ids_t;

void runrec_ids_reset(runrec_ids_t *ids);
void runrec_ids_free(runrec_ids_t *ids);

/* Appends the record of one event to out. 0, -ENOMEM, or -EINVAL when the
 * JSON is not an object evids can scan (nothing appended). */
int runrec_build(buf_t *out, runrec_ids_t *ids, agui_type_t type, const char *json, size_t len, uint32_t gap_ms);

typedef struct runrec {
    const char *json;
    uint32_t    json_len, gap_ms;
    uint16_t    n_patch;
    uint8_t     type, flags;
    const char *patches;
} runrec_t;

/* Reads the record at p (avail bytes). Its size, or 0 when avail holds no
 * whole record (a corrupt or cut log). */
size_t runrec_parse(const char *p, size_t avail, runrec_t *rec);

/* What a replay puts in place of the recorded ids. Set up once per replay
 * with runrec_subst_init: the run's own ids are JSON-quoted there, not per
 * event. */
typedef struct runrec_subst {
    const char   *thread_q, *run_q;   /* the new ids as JSON strings, quotes included */
    size_t        thread_q_len, run_q_len;
    size_t        max_q;              /* the longest replacement (a fresh id is 38 quoted) */
    buf_t        *ids;                /* fresh ids by k, RUNREC_ID_LEN bytes each; minted on demand */
    rand_state_t *rng;
} runrec_subst_t;

/* Points s at a replay's ids: thread and run are quoted into q (reset first),
 * which must then stay unchanged while s is in use. 0 or -ENOMEM. */
int runrec_subst_init(runrec_subst_t *s, buf_t *q, const char *thread, size_t thread_len, const char *run,
                      size_t run_len, buf_t *ids, rand_state_t *rng);

/* The event's JSON with every patch replaced, into out (reset first). 0,
 * -ENOMEM, or -EINVAL for a record whose id spans do not fit its event. The
 * ids put in are JSON-escaped, so rendering adds no line feed. A record
 * without patches comes out as it is stored. */
int runrec_render(buf_t *out, const runrec_t *rec, const runrec_subst_t *s);

/* The event as one SSE frame ("data: <json>\n\n") appended to out, in one
 * reservation; for a record without RUNREC_F_LF (SSE data cannot hold a line
 * break). Errors as runrec_render; on failure out's length is as it was. */
int runrec_render_sse(buf_t *out, const runrec_t *rec, const runrec_subst_t *s);

/* A stored run's SSE plan: every event's frame as copies out of the records
 * and the ids and line ends put between them, found once when the run is
 * stored, so a replay that fits its buffer renders the whole run in one pass
 * (runrec_plan_render_sse) instead of record by record. */
typedef struct runrec_plan {
    uint32_t    n_events, n_ops, copy_bytes, n_ids, n_lfs, n_types, n_fresh;
    const char *types, *ops;
} runrec_plan_t;

/* Appends the plan of the records that are the concatenation of the n_parts
 * parts (a flight's chunks). 0, -ENOMEM, or -EINVAL for a cut record or a
 * patch that does not fit its event. */
int runrec_plan_build(buf_t *out, const char *const *parts, const size_t *part_lens, size_t n_parts);
/* Reads the plan at p; its size, or 0 when avail does not hold it. */
size_t runrec_plan_parse(const char *p, size_t avail, runrec_plan_t *pl);
/* The i-th event type of the run (i < n_types) and how many events have it. */
void runrec_plan_type(const runrec_plan_t *pl, uint32_t i, uint32_t *type, uint32_t *count);
/* The most bytes runrec_plan_render_sse can append under s. */
size_t runrec_plan_room(const runrec_plan_t *pl, const runrec_subst_t *s);
/* Appends every event as SSE frames under s's ids. 0, -ENOMEM, or -EINVAL for
 * a plan that does not fit recs; on failure out's length is as it was. */
int runrec_plan_render_sse(buf_t *out, const runrec_plan_t *pl, const char *recs, size_t recs_len,
                           const runrec_subst_t *s);

#endif
