/* clock: monotonic milliseconds for timers, wall-clock text for logs and Date.
 * Each shard caches "now" once per loop turn (shard_t.now_ms); these are the
 * raw readers. */
#ifndef AGATE_CLOCK_H
#define AGATE_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* "2026-11-23T08:05:00.123Z" into out (>= 25 bytes); returns the length. */
size_t clock_iso8601(char *out, size_t cap);

/* IMF-fixdate for the HTTP Date header, "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes). */
size_t clock_http_date(time_t t, char *out, size_t cap);

#endif
