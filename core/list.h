/* list: an intrusive, circular, doubly linked list with a sentinel head (the
 * shape of nginx's ngx_queue_t and Linux's list_head). An element embeds a
 * list_t and is found from it with list_item; the empty list is a head that
 * points at itself, so push and unlink never branch on the ends. */
#ifndef AGATE_LIST_H
#define AGATE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct list {
    struct list *prev, *next;
} list_t;

#define list_item(node, type, member) ((type *)(void *)((char *)(node) - offsetof(type, member)))

static inline void list_init(list_t *head) { head->prev = head->next = head; }
static inline bool list_empty(const list_t *head) { return head->next == head; }
/* The first element's node, or NULL when empty. */
static inline list_t *list_first(const list_t *head) { return list_empty(head) ? NULL : head->next; }

static inline void list_insert_after(list_t *at, list_t *n)
{
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
}
static inline void list_push_front(list_t *head, list_t *n) { list_insert_after(head, n); }
static inline void list_push_back(list_t *head, list_t *n) { list_insert_after(head->prev, n); }

/* Takes n out of whatever list holds it; n points at itself after, so a
 * second unlink is harmless. */
static inline void list_unlink(list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* Moves every node of src to dst (its contents dropped), leaving src empty:
 * a batch to work through while new nodes join src. */
static inline void list_move_all(list_t *dst, list_t *src)
{
    list_init(dst);
    if (list_empty(src))
        return;
    dst->next = src->next;
    dst->prev = src->prev;
    dst->next->prev = dst;
    dst->prev->next = dst;
    list_init(src);
}

/* Each node of head; safe against unlinking the node being visited. */
#define list_each_safe(head, n, tmp) for (list_t *n = (head)->next, *tmp = n->next; n != (head); n = tmp, tmp = n->next)

#endif
