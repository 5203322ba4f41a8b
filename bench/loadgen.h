/* loadgen: what the bench's load generators (wsload.c, sseload.c) share. */
#ifndef AGATE_BENCH_LOADGEN_H
#define AGATE_BENCH_LOADGEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *m)
{
    perror(m);
    exit(1);
}

#endif
