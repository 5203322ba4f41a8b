/* rand: a per-shard xoshiro256** generator for ids (request ids, message ids).
 * Not for secrets. Seeded from getrandom(2), so ids from different shards and
 * processes do not collide in practice (128 random bits per id). */
#ifndef AGATE_RAND_H
#define AGATE_RAND_H

#include <stddef.h>
#include <stdint.h>

typedef struct rand_state {
    uint64_t s[4];
} rand_state_t;

int      rand_seed(rand_state_t *r);                   /* 0 or -errno */
uint64_t rand_next(rand_state_t *r);

/* 32 lowercase hex digits (128 bits), no terminator written past out[31]. */
void rand_hex128(rand_state_t *r, char out[32]);

/* RFC 9562 version-4 UUID text, 36 bytes, no terminator. */
void rand_uuid(rand_state_t *r, char out[36]);

/* n bytes for a secret (a resume token, a nonce) from getrandom(2), which
 * this calling thread reads ahead in blocks; bytes handed out are wiped from
 * the block. 0 or -errno (no entropy yet: GRND_NONBLOCK). */
int rand_secret(void *out, size_t n);

#endif
