/* tier2: the wire form of a shared (second-tier) cache entry, as one pod
 * writes it to Redis and another reads it back (net/coalesce_tier2.c).
 *
 * Layout (TIER2_HDR bytes of header, host byte order, then the records):
 *   0  "AGC2"                 magic
 *   4  u32 version            TIER2_VERSION; a pod of the other byte order reads a mismatch
 *   8  u8[32] key             the canonical request key (proto/canon.h) it answers
 *  40  u64 agent              tier2_agent_hash of the agent's name
 *  48  u64 stored_ms          wall-clock ms (CLOCK_REALTIME) when the run was stored
 *  56  u64 ttl_ms             the storing agent's cache.ttl
 *  64  u64 recs_len           bytes of records that follow
 *  72  u64 sum                tier2_sum of bytes 0..72, then of the records
 *  80  records (proto/runrec.h), as a flight logged them
 *
 * A reader trusts nothing: tier2_decode checks the header against the key and
 * agent it looked up, the length, the checksum, and then every record as a
 * replay will use it (whole records, patches inside their event and on a JSON
 * string, fresh ids in order of first use, line feeds flagged, each event a
 * JSON object, the last one RUN_FINISHED). Anything else is a miss, never a
 * broken stream. The checksum catches corruption, not forgery: anyone who can
 * write agate's keys in Redis can serve its clients (see docs/ARCHITECTURE.md). */
#ifndef AGATE_TIER2_H
#define AGATE_TIER2_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define TIER2_HDR      80u
#define TIER2_VERSION  1u
#define TIER2_KEY_LEN  32u

typedef struct tier2_meta {
    uint8_t  key[TIER2_KEY_LEN];
    uint64_t agent;        /* tier2_agent_hash */
    uint64_t stored_ms;    /* wall clock */
    uint64_t ttl_ms;
} tier2_meta_t;

/* Why an entry was refused (the label of agate_cache_tier2_rejected_total). */
enum tier2_why {
    TIER2_OK,
    TIER2_SHORT,       /* shorter than its header says (truncated) */
    TIER2_MAGIC,       /* not an entry at all */
    TIER2_VERSION_,    /* another format version (or byte order) */
    TIER2_FOREIGN,     /* another key or agent */
    TIER2_CHECKSUM,    /* bytes changed */
    TIER2_RECORDS,     /* records that do not replay */
    TIER2_EXPIRED,     /* its ttl passed (judged by the caller, on its clock) */
    TIER2_WHY_COUNT
};

const char *tier2_why_name(int why);

/* 64-bit FNV-1a of the agent's name (never 0). */
uint64_t tier2_agent_hash(const char *name);
/* A 64-bit checksum of p[0..n), chained from seed. */
uint64_t tier2_sum(const void *p, size_t n, uint64_t seed);

/* Appends the entry of the records that are the concatenation of the n parts
 * (a flight's chunks) to out. 0 or -ENOMEM. */
int tier2_encode(buf_t *out, const tier2_meta_t *m, const char *const *parts, const size_t *lens, size_t n);

/* Checks p[0..n) as the entry for key and agent: TIER2_OK with *m and the
 * records (*recs, *recs_len, inside p), else why not. */
int tier2_decode(const char *p, size_t n, const uint8_t key[TIER2_KEY_LEN], uint64_t agent, tier2_meta_t *m,
                 const char **recs, size_t *recs_len);

/* The records check alone (part of tier2_decode): every record whole and
 * replayable, the last one RUN_FINISHED. */
int tier2_check_records(const char *recs, size_t len);

#endif
