/* Unit tests for core/rand.c: the shape of minted ids (request ids, RFC 9562
 * version-4 UUIDs for message ids), that every hex digit position takes all 16
 * values (the bytes really are spread over the text), and that two generators
 * seeded apart do not repeat each other. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/rand.h"

#define ROUNDS 4096

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;   /* uppercase or anything else is wrong */
}

static void test_hex128(void **state)
{
    (void)state;
    rand_state_t r;
    assert_int_equal(rand_seed(&r), 0);
    unsigned seen[32] = {0};   /* per position: a bit per digit value */
    char out[33];
    for (int i = 0; i < ROUNDS; i++) {
        memset(out, 'Z', sizeof out);
        rand_hex128(&r, out);
        assert_int_equal(out[32], 'Z');   /* nothing written past out[31] */
        for (int k = 0; k < 32; k++) {
            int v = hexval(out[k]);
            assert_true(v >= 0);
            seen[k] |= 1u << v;
        }
    }
    for (int k = 0; k < 32; k++)
        assert_int_equal(seen[k], 0xffff);
}

static void test_uuid(void **state)
{
    (void)state;
    rand_state_t r;
    assert_int_equal(rand_seed(&r), 0);
    unsigned seen[36] = {0};
    char out[37], prev[36] = {0};
    for (int i = 0; i < ROUNDS; i++) {
        memset(out, 'Z', sizeof out);
        rand_uuid(&r, out);
        assert_int_equal(out[36], 'Z');
        for (int k = 0; k < 36; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23) {
                assert_int_equal(out[k], '-');
                continue;
            }
            int v = hexval(out[k]);
            assert_true(v >= 0);
            seen[k] |= 1u << v;
        }
        assert_int_equal(out[14], '4');                       /* version 4 */
        assert_true(strchr("89ab", out[19]) != NULL);         /* variant 10 */
        assert_memory_not_equal(out, prev, 36);
        memcpy(prev, out, 36);
    }
    for (int k = 0; k < 36; k++) {
        if (k == 8 || k == 13 || k == 18 || k == 23 || k == 14)
            continue;
        assert_int_equal(seen[k], k == 19 ? 0xf00u : 0xffffu);   /* 8, 9, a, b only */
    }
}

static void test_seeds_differ(void **state)
{
    (void)state;
    rand_state_t a, b;
    assert_int_equal(rand_seed(&a), 0);
    assert_int_equal(rand_seed(&b), 0);
    char x[32], y[32];
    rand_hex128(&a, x);
    rand_hex128(&b, y);
    assert_memory_not_equal(x, y, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex128),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_seeds_differ),
    };
    return cmocka_run_group_tests_name("rand", tests, NULL, NULL);
}
