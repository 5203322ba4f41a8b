/* Unit tests for core/slab.h: slots are handed out lowest first and reused;
 * a completion's user_data finds its object only while the slot holds the
 * same generation, so a late completion for a freed and reused slot is seen
 * as stale (the one place agate makes that check). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/slab.h"

typedef struct obj {
    slab_item_t item;
    int         payload;
} obj_t;

static void test_take_put_lookup(void **state)
{
    (void)state;
    slab_t s;
    assert_int_equal(slab_init(&s, 3, sizeof(obj_t)), 0);
    obj_t *a = slab_take(&s), *b = slab_take(&s), *c = slab_take(&s);
    assert_non_null(a);
    assert_int_equal(a->item.slot, 0);
    assert_int_equal(b->item.slot, 1);
    assert_int_equal(c->item.slot, 2);
    assert_null(slab_take(&s));   /* full */

    uint64_t ud = slab_ud(b, 9);
    assert_int_equal(eng_ud_op(ud), 9);
    assert_ptr_equal(slab_lookup(&s, ud), b);

    slab_put(&s, b);
    assert_null(slab_lookup(&s, ud));   /* freed */
    obj_t *b2 = slab_take(&s);
    assert_ptr_equal(b2, b);            /* the slot comes back... */
    assert_null(slab_lookup(&s, ud));   /* ...under a new generation: the old completion is stale */
    assert_ptr_equal(slab_lookup(&s, slab_ud(b2, 9)), b2);

    assert_null(slab_lookup(&s, eng_ud(9, 0, 3)));   /* past the end */
    assert_null(slab_lookup(NULL, ud));
    slab_free(&s);
}

/* The generation is 24 bits in user_data: one that wrapped still compares
 * equal in those bits, and only those. */
static void test_generation_bits(void **state)
{
    (void)state;
    slab_t s;
    assert_int_equal(slab_init(&s, 1, sizeof(obj_t)), 0);
    obj_t *o = slab_take(&s);
    o->item.gen = 0x1abcdefu;
    uint64_t ud = slab_ud(o, 4);
    assert_int_equal(eng_ud_gen(ud), 0xabcdefu);
    assert_ptr_equal(slab_lookup(&s, ud), o);
    o->item.gen++;
    assert_null(slab_lookup(&s, ud));
    slab_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_put_lookup),
        cmocka_unit_test(test_generation_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
