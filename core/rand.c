/* rand: xoshiro256** (Blackman & Vigna). Chosen over reading /dev/urandom per id
 * because an id is minted per request and per message: a syscall each would
 * cost more than the rest of an echo run's event generation. */
#include "core/rand.h"

#include <errno.h>
#include <sys/random.h>

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

static void put_hex64(uint64_t v, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

void rand_hex128(rand_state_t *r, char out[32])
{
    put_hex64(rand_next(r), out);
    put_hex64(rand_next(r), out + 16);
}

void rand_uuid(rand_state_t *r, char out[36])
{
    char h[32];
    uint64_t a = rand_next(r), b = rand_next(r);
    a = (a & ~0xf000ull) | 0x4000ull;                             /* version 4 */
    b = (b & 0x3fffffffffffffffull) | 0x8000000000000000ull;      /* variant 10 */
    put_hex64(a, h);
    put_hex64(b, h + 16);
    int o = 0;
    for (int i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            out[o++] = '-';
        out[o++] = h[i];
    }
}
