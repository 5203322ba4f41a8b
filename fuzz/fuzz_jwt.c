/* fuzz_jwt: libFuzzer driver for core/jwt.c.
 *
 * Input: byte 0 picks what the rest is:
 *   even  a compact token, parsed and verified against a fixed HS256 secret and
 *         a JWKS of one oct key (so every path through the claim checks is
 *         reachable with a token the fuzzer signs by luck only for malformed
 *         inputs; parse and claim handling are what is exercised)
 *   odd   a JWK Set, loaded into a key set
 * Must never crash, leak or read out of bounds; a parsed token always has a
 * JSON object of claims and a signing input inside the token. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    jwt_keyset_t ks = {0};
    char err[256];
    if (data[0] & 1) {
        jwt_keyset_add_jwks(&ks, text, len, err, sizeof err);
        jwt_keyset_free(&ks);
        return 0;
    }
    jwt_keyset_add_secret(&ks, "k1", "fuzz-secret-0123456789", 22);
    jwt_token_t t;
    jwt_err_t e = jwt_parse(text, len, &t);
    if (e == JWT_OK) {
        FZ_CHECK(json_is_object(t.claims));
        FZ_CHECK(t.signing_len < len);
        FZ_CHECK(t.alg == JWT_HS256 || t.alg == JWT_RS256 || t.alg == JWT_ES256);
        jwt_checks_t c = {.now = 1700000000, .leeway_s = 60, .issuer = "iss", .audience = "aud"};
        jwt_verify(&t, text, &ks, &c);
    } else {
        FZ_CHECK(t.claims == NULL);
    }
    jwt_token_free(&t);
    jwt_keyset_free(&ks);
    return 0;
}
