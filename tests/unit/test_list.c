/* Unit tests for core/list.h: order of push_front/push_back, unlink at the
 * ends and in the middle (twice is harmless), and unlinking while walking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/list.h"

typedef struct item {
    int    v;
    list_t node;
} item_t;

static int values(const list_t *head, int *out, int max)
{
    int n = 0;
    for (const list_t *p = head->next; p != head && n < max; p = p->next)
        out[n++] = list_item(p, item_t, node)->v;
    return n;
}

static void test_order_and_unlink(void **state)
{
    (void)state;
    list_t head;
    item_t it[4] = {{1, {0}}, {2, {0}}, {3, {0}}, {4, {0}}};
    int got[8];
    list_init(&head);
    assert_true(list_empty(&head));
    assert_null(list_first(&head));
    list_push_back(&head, &it[1].node);
    list_push_back(&head, &it[2].node);
    list_push_front(&head, &it[0].node);
    list_push_back(&head, &it[3].node);
    assert_int_equal(values(&head, got, 8), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(got[i], i + 1);
    assert_ptr_equal(list_item(list_first(&head), item_t, node), &it[0]);
    list_unlink(&it[0].node);   /* front */
    list_unlink(&it[3].node);   /* back */
    list_unlink(&it[3].node);   /* again: harmless */
    assert_int_equal(values(&head, got, 8), 2);
    assert_int_equal(got[0], 2);
    assert_int_equal(got[1], 3);
    list_unlink(&it[1].node);
    list_unlink(&it[2].node);
    assert_true(list_empty(&head));
}

static void test_unlink_while_walking(void **state)
{
    (void)state;
    list_t head;
    item_t it[6];
    list_init(&head);
    for (int i = 0; i < 6; i++) {
        it[i].v = i;
        list_push_back(&head, &it[i].node);
    }
    int seen = 0;
    list_each_safe(&head, n, tmp) {
        item_t *x = list_item(n, item_t, node);
        seen++;
        if (x->v % 2 == 0)
            list_unlink(n);
    }
    assert_int_equal(seen, 6);
    int got[8];
    assert_int_equal(values(&head, got, 8), 3);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 3);
    assert_int_equal(got[2], 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_unlink),
        cmocka_unit_test(test_unlink_while_walking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
