/* Unit tests for core/qsbr.c: an object retired now is safe only once every
 * online shard has passed a quiescent state after the retirement; an offline
 * shard holds nothing; and, with real threads, a reader never sees memory the
 * reclaimer freed (ASan would report the use). */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/qsbr.h"

static void test_epochs(void **state)
{
    (void)state;
    assert_int_equal(qsbr_init(3), 0);
    uint64_t e = qsbr_retire();
    assert_false(qsbr_safe(e));   /* nobody has turned */
    qsbr_quiescent(0);
    qsbr_quiescent(1);
    assert_false(qsbr_safe(e));   /* shard 2 may still hold it */
    qsbr_offline(2);              /* stopped: holds nothing */
    assert_true(qsbr_safe(e));
    uint64_t e2 = qsbr_retire();
    assert_true(e2 > e);
    assert_false(qsbr_safe(e2));  /* turns before the retirement do not count */
    qsbr_quiescent(0);
    assert_false(qsbr_safe(e2));
    qsbr_quiescent(1);
    assert_true(qsbr_safe(e2));
    assert_true(qsbr_safe(e));
    qsbr_quiescent(7);            /* out of range: ignored */
    qsbr_shutdown();
}

/* Readers load a published block, check it is whole, and pass a quiescent
 * state between loads; the main thread replaces the block and frees the old
 * one only when qsbr says so. */
#define READERS 2
#define SWAPS   2000

typedef struct { uint64_t a, b; } block_t;
static _Atomic(block_t *) g_pub;
static _Atomic bool g_stop;
static _Atomic uint64_t g_reads;

static void *reader(void *p)
{
    unsigned id = (unsigned)(uintptr_t)p;
    while (!atomic_load(&g_stop)) {
        block_t *b = atomic_load_explicit(&g_pub, memory_order_acquire);
        if (b->a != b->b)
            abort();   /* torn or freed and reused */
        atomic_fetch_add(&g_reads, 1);
        qsbr_quiescent(id);
    }
    qsbr_offline(id);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    assert_int_equal(qsbr_init(READERS), 0);
    block_t *first = malloc(sizeof *first);
    *first = (block_t){1, 1};
    atomic_store(&g_pub, first);
    pthread_t t[READERS];
    for (uintptr_t i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader, (void *)i), 0);
    struct { block_t *b; uint64_t e; } retired[SWAPS];
    unsigned n_retired = 0, freed = 0;
    for (uint64_t k = 2; k < SWAPS + 2; k++) {
        block_t *nb = malloc(sizeof *nb);
        *nb = (block_t){k, k};
        block_t *old = atomic_exchange_explicit(&g_pub, nb, memory_order_acq_rel);
        retired[n_retired].b = old;
        retired[n_retired++].e = qsbr_retire();
        for (unsigned i = freed; i < n_retired && qsbr_safe(retired[i].e); i++, freed++) {
            memset(retired[i].b, 0xa5, sizeof *retired[i].b);   /* a reader would see a != b */
            free(retired[i].b);
        }
        sched_yield();
    }
    /* With the readers still running, everything retired becomes safe. */
    for (int spin = 0; spin < 5000000 && freed < n_retired; spin++) {
        if (qsbr_safe(retired[freed].e)) {
            memset(retired[freed].b, 0xa5, sizeof *retired[freed].b);
            free(retired[freed++].b);
        } else {
            sched_yield();
        }
    }
    assert_int_equal(freed, n_retired);
    atomic_store(&g_stop, true);
    for (int i = 0; i < READERS; i++)
        pthread_join(t[i], NULL);
    assert_true(qsbr_safe(qsbr_retire()));   /* both readers are offline now */
    free(atomic_load(&g_pub));
    assert_true(atomic_load(&g_reads) > 0);
    qsbr_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epochs),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
