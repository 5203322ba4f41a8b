/* log: SPSC rings drained by one writer thread.
 *
 * Ownership: ring memory belongs to this module (log_init .. log_stop). Producer
 * side (head) is written only by the ring's owner thread, consumer side (tail)
 * only by the writer thread; each publishes with release and reads the other's
 * index with acquire, so no lock is needed. The writer polls (every 10 ms, 1 ms
 * while a ring is filling fast): a futex wake per line would put a syscall on
 * the request path, and 10 ms of log latency is invisible to anyone reading logs.
 *
 * When stdout is a regular file a second thread paces the file's way to disk
 * (see file_pace): the writer publishes how far it has written (`written`), and
 * the two marks below belong to the pacer. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/json.h"

struct log_ring {
    _Alignas(64) _Atomic uint64_t head;   /* producer */
    _Alignas(64) _Atomic uint64_t tail;   /* consumer */
    _Alignas(64) _Atomic uint64_t dropped;
    char  *buf;
    size_t mask;
};

static struct {
    log_ring_t *rings;
    unsigned    n;
    int         fd;
    size_t      writeback;   /* window in bytes; 0: stdout is not a file, or pacing is off */
    _Atomic int64_t written; /* the file's offset after the writer's last pass */
    _Atomic uint64_t truncations;   /* times the writer found the file shorter than it wrote */
    off_t       last;        /* the writer's: `written` as it last published it */
    off_t       started;     /* [dropped, started) is being written to disk */
    off_t       dropped;     /* below this the file's pages were given back */
    pthread_t   thr, pacer;
    bool        running, pacing;
    _Atomic bool stop;
} g_log;

int log_init(unsigned n, size_t ring_bytes, int fd, size_t writeback)
{
    size_t cap = 4096;
    while (cap < ring_bytes)
        cap <<= 1;
    g_log.rings = calloc(n, sizeof *g_log.rings);
    if (!g_log.rings)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        g_log.rings[i].buf = malloc(cap);
        if (!g_log.rings[i].buf) {
            while (i--)
                free(g_log.rings[i].buf);
            free(g_log.rings);
            g_log.rings = NULL;
            return -ENOMEM;
        }
        g_log.rings[i].mask = cap - 1;
    }
    g_log.n = n;
    g_log.fd = fd;
    g_log.writeback = 0;
    atomic_store_explicit(&g_log.truncations, 0, memory_order_relaxed);
    struct stat st;
    off_t at;
    if (writeback && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (at = lseek(fd, 0, SEEK_CUR)) >= 0) {
        g_log.writeback = writeback;
        g_log.started = g_log.dropped = at & ~(off_t)4095;
        g_log.last = at;
        atomic_store_explicit(&g_log.written, at, memory_order_relaxed);
    }
    return 0;
}

log_ring_t *log_ring(unsigned i) { return i < g_log.n ? &g_log.rings[i] : NULL; }

bool log_put(log_ring_t *r, const char *line, size_t len)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t cap = r->mask + 1;
    if (len > cap - (head - tail)) {
        atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        return false;
    }
    size_t off = head & r->mask, first = cap - off < len ? cap - off : len;
    memcpy(r->buf + off, line, first);
    memcpy(r->buf, line + first, len - first);
    atomic_store_explicit(&r->head, head + len, memory_order_release);
    return true;
}

uint64_t log_dropped(void)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < g_log.n; i++)
        n += atomic_load_explicit(&g_log.rings[i].dropped, memory_order_relaxed);
    return n;
}

static void write_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t w = writev(fd, iov, cnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;   /* stdout gone: nothing sensible to do with the lines */
        }
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++, cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

/* Moves what is in the ring to the fd; returns bytes moved. */
static size_t drain(log_ring_t *r)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t len = head - tail;
    if (!len)
        return 0;
    size_t cap = r->mask + 1, off = tail & r->mask;
    size_t first = cap - off < len ? cap - off : len;
    struct iovec iov[2] = {{r->buf + off, first}, {r->buf, len - first}};
    write_all(g_log.fd, iov, len - first ? 2 : 1);
    atomic_store_explicit(&r->tail, head, memory_order_release);
    return len;
}

/* How long the writer sleeps when the rings are empty or nearly so. 10 ms
 * wakes it 100 times a second instead of 500 (each wake-up on a loaded 2-CPU
 * machine preempts a shard or the client mid-turn); at that period a 2 MiB ring
 * overflows only past ~200 MB/s of lines per shard, and once any ring is found
 * a quarter full the writer polls every millisecond until it is not. */
#define LOG_IDLE_SLEEP_NS (10 * 1000 * 1000)
#define LOG_BUSY_SLEEP_NS (1000 * 1000)

/* A log written to a file is written once and read rarely, yet left to the
 * kernel it fills the page cache with new pages at the log's rate (45 MB/s at
 * 150k req/s), evicts pages worth keeping, and reaches the disk in one burst
 * when the dirty limit is hit. So every `writeback` bytes the pacer starts
 * writing the new stretch and gives back the stretch started last time, once
 * it is on disk. The cache holds about two windows of the log, and the same
 * pages are reused. Measured on this project's 2-vCPU VM, appending 800 MB at
 * 45 MB/s: 1.5-2.0 s of kernel CPU left to the kernel, 0.3 s paced (4 MiB
 * windows; 1 and 32 MiB the same), because every new page on a VM that reports
 * freed pages to its host is a fault there.
 *
 * Its own thread, because these calls wait for the disk: WAIT_BEFORE when the
 * disk is slower than the log, and starting writeback when the device's queue
 * is full. Done by the writer, that wait filled the rings and dropped 4-18 %
 * of the lines in two bench runs. Now the pacer falls behind instead, and the
 * writer's lines go into the page cache as they would without it. */
static void file_pace(off_t at, bool truncated)
{
    at &= ~(off_t)4095;   /* whole pages: a partial last page is dirtied again */
    if (truncated)        /* copytruncate rotation: the file starts again at 0 */
        g_log.started = g_log.dropped = 0;
    if (at < g_log.started) {
        g_log.started = g_log.dropped = at;
        return;
    }
    if ((size_t)(at - g_log.started) < g_log.writeback)
        return;
    if ((size_t)(at - g_log.started) > 4 * g_log.writeback)   /* one pass's wait stays short */
        at = g_log.started + (off_t)(4 * g_log.writeback);
    if (g_log.started > g_log.dropped) {
        (void)sync_file_range(g_log.fd, g_log.dropped, g_log.started - g_log.dropped, SYNC_FILE_RANGE_WAIT_BEFORE);
        (void)posix_fadvise(g_log.fd, g_log.dropped, g_log.started - g_log.dropped, POSIX_FADV_DONTNEED);
    }
    (void)sync_file_range(g_log.fd, g_log.started, at - g_log.started, SYNC_FILE_RANGE_WRITE);
    g_log.dropped = g_log.started;
    g_log.started = at;
}

/* The writer's side: how far the file now reaches, for the pacer. Ending
 * short of where the last pass ended plus what this one wrote means the file
 * was truncated in between; the pacer could miss that in the offset alone once
 * the file has grown past its old length again. */
static void publish_offset(size_t moved)
{
    off_t at = lseek(g_log.fd, 0, SEEK_CUR);
    if (at < 0)
        return;
    if (at < g_log.last + (off_t)moved)
        atomic_fetch_add_explicit(&g_log.truncations, 1, memory_order_release);
    g_log.last = at;
    atomic_store_explicit(&g_log.written, at, memory_order_relaxed);
}

#define LOG_PACE_SLEEP_NS (10 * 1000 * 1000)

static void *pacer_main(void *arg)
{
    (void)arg;
    (void)sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){0});
    uint64_t seen = 0;
    while (!atomic_load_explicit(&g_log.stop, memory_order_acquire)) {
        uint64_t t = atomic_load_explicit(&g_log.truncations, memory_order_acquire);
        file_pace((off_t)atomic_load_explicit(&g_log.written, memory_order_relaxed), t != seen);
        seen = t;
        nanosleep(&(struct timespec){0, LOG_PACE_SLEEP_NS}, NULL);
    }
    return NULL;
}

static void *writer_main(void *arg)
{
    /* SCHED_BATCH: a wake-up of this thread does not preempt a running shard;
     * it takes its turn at the next scheduling point. Lines wait a few ms more,
     * shards do not. (Best effort: without it the writer is only noisier.) */
    (void)sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){0});
    for (;;) {
        bool stopping = atomic_load_explicit(&g_log.stop, memory_order_acquire);
        size_t moved = 0;
        bool busy = false;
        for (unsigned i = 0; i < g_log.n; i++) {
            size_t m = drain(&g_log.rings[i]);
            busy |= m > (g_log.rings[i].mask + 1) / 4;
            moved += m;
        }
        if (moved && g_log.writeback)
            publish_offset(moved);
        if (stopping && !moved)
            return NULL;
        nanosleep(&(struct timespec){0, busy ? LOG_BUSY_SLEEP_NS : LOG_IDLE_SLEEP_NS}, NULL);
    }
}

int log_start(void)
{
    atomic_store_explicit(&g_log.stop, false, memory_order_relaxed);
    int rc = pthread_create(&g_log.thr, NULL, writer_main, NULL);
    if (rc)
        return -rc;
    pthread_setname_np(g_log.thr, "agate-log");
    g_log.running = true;
    /* Best effort: without the pacer the file is left to the kernel. */
    if (g_log.writeback && pthread_create(&g_log.pacer, NULL, pacer_main, NULL) == 0) {
        pthread_setname_np(g_log.pacer, "agate-logsync");
        g_log.pacing = true;
    }
    return 0;
}

void log_stop(void)
{
    if (g_log.running) {
        atomic_store_explicit(&g_log.stop, true, memory_order_release);
        pthread_join(g_log.thr, NULL);
        g_log.running = false;
        if (g_log.pacing)
            pthread_join(g_log.pacer, NULL);   /* at most one pass: it may wait for the disk once */
        g_log.pacing = false;
    } else {
        for (unsigned i = 0; i < g_log.n; i++)
            drain(&g_log.rings[i]);
    }
    for (unsigned i = 0; i < g_log.n; i++)
        free(g_log.rings[i].buf);
    free(g_log.rings);
    g_log.rings = NULL;
    g_log.n = 0;
}

char *log_head(char *w, const char *level)
{
    size_t n = strlen(level);
    memcpy(w, "{\"time\":\"", 9);
    w += 9;
    w += clock_iso8601(w, 25);
    memcpy(w, "\",\"level\":\"", 11);
    w += 11;
    memcpy(w, level, n);
    w += n;
    memcpy(w, "\",\"msg\":", 8);
    return w + 8;
}

void log_begin(buf_t *b, const char *level, const char *msg)
{
    if (buf_reserve(b, LOG_HEAD_MAX))
        return;
    b->len = (size_t)(log_head(b->data + b->len, level) - b->data);
    json_put_str(b, msg, strlen(msg));
}

void log_end(buf_t *b) { buf_append_lit(b, "}\n"); }
