/* rand: xoshiro256** (Blackman & Vigna). Chosen over reading /dev/urandom per id
 * because an id is minted per request and per message: a syscall each would
 * cost more than the rest of an echo run's event generation. */
#include "core/rand.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>

#include "core/buf.h"

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

int rand_seed(rand_state_t *r)
{
    size_t got = 0;
    while (got < sizeof r->s) {
        ssize_t n = getrandom((char *)r->s + got, sizeof r->s - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
        r->s[0] = 1;   /* the all-zero state is a fixed point */
    return 0;
}

uint64_t rand_next(rand_state_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void rand_hex128(rand_state_t *r, char out[32])
{
    uint64_t v[2] = { rand_next(r), rand_next(r) };
    buf_fmt_hex(out, v, sizeof v);
}

/* The 16 bytes in memory order, with the version and variant bits set where
 * RFC 9562 puts them: the high nibble of byte 6 and the top two bits of byte 8. */
void rand_uuid(rand_state_t *r, char out[36])
{
    uint64_t v[2] = { rand_next(r), rand_next(r) };
    uint8_t b[16];
    memcpy(b, v, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);   /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);   /* variant 10 */
    buf_fmt_hex(out, b, 4);
    out[8] = '-';
    buf_fmt_hex(out + 9, b + 4, 2);
    out[13] = '-';
    buf_fmt_hex(out + 14, b + 6, 2);
    out[18] = '-';
    buf_fmt_hex(out + 19, b + 8, 2);
    out[23] = '-';
    buf_fmt_hex(out + 24, b + 10, 6);
}

/* Secrets are read ahead: one getrandom per resumable run (its token) was 3 %
 * of a resumable echo run's CPU (perf, bench/cases/resume.sh); a 512-byte
 * block serves 32 tokens. Per thread: every shard is one, and none shares it. */
#define RAND_SECRET_BLOCK 512

static _Thread_local struct {
    uint8_t b[RAND_SECRET_BLOCK];
    size_t  used;
    bool    filled;
} rs_pool;

int rand_secret(void *out, size_t n)
{
    uint8_t *o = out;
    while (n) {
        if (!rs_pool.filled || rs_pool.used == sizeof rs_pool.b) {
            ssize_t got = getrandom(rs_pool.b, sizeof rs_pool.b, GRND_NONBLOCK);
            if (got != (ssize_t)sizeof rs_pool.b)
                return got < 0 ? -errno : -EAGAIN;
            rs_pool.used = 0;
            rs_pool.filled = true;
        }
        size_t k = sizeof rs_pool.b - rs_pool.used;
        if (k > n)
            k = n;
        memcpy(o, rs_pool.b + rs_pool.used, k);
        explicit_bzero(rs_pool.b + rs_pool.used, k);
        rs_pool.used += k;
        o += k;
        n -= k;
    }
    return 0;
}
