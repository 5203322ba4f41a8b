/* log: JSON lines on stdout without blocking a shard.
 *
 * Each producer (one per shard, one for the main thread) owns a single-producer,
 * single-consumer byte ring. A writer thread drains every ring to stdout. A line
 * that does not fit in its ring is dropped whole and counted; it is never queued
 * without bound and the producer never waits. */
#ifndef AGATE_LOG_H
#define AGATE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef struct log_ring log_ring_t;

/* Creates n rings of ring_bytes each (rounded up to a power of two) drained to fd.
 * If fd is a regular file and writeback > 0, a pacing thread (started by
 * log_start) sends the file to disk and drops it from the page cache every
 * writeback bytes. 0 or -errno. */
int  log_init(unsigned n, size_t ring_bytes, int fd, size_t writeback);
log_ring_t *log_ring(unsigned i);
/* Queues one whole line (must end in '\n'). false when dropped. */
bool log_put(log_ring_t *r, const char *line, size_t len);
uint64_t log_dropped(void);                      /* lines dropped, all rings */
int  log_start(void);                            /* the writer thread, and the pacer when pacing */
void log_stop(void);                             /* drains every ring, joins, frees */

/* Writes the start of a JSON log line, {"time":"...","level":"<level>","msg": ,
 * at w and returns its end: at most LOG_HEAD_MAX bytes for a level name of at most
 * 8 plain letters. The caller writes the message as a JSON string next. */
#define LOG_HEAD_MAX 64
char *log_head(char *w, const char *level);
/* Starts a JSON log line {"time":"...","level":"<level>","msg":"<msg>" into b;
 * the caller appends ,"key":value pairs and then log_end(). */
void log_begin(buf_t *b, const char *level, const char *msg);
void log_end(buf_t *b);                          /* appends "}\n" */

#endif
