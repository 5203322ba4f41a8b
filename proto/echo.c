/* echo: the built-in agent. It answers a run with the last user message's text,
 * one TEXT_MESSAGE_CONTENT per word, so a deployment serves real AG-UI streams
 * with no agent service behind it.
 *
 * The run is a small state machine stepped by step(): it emits as many
 * events as the sink will take, then waits for the pacing timer (token
 * interval) or for the sink to drain (backpressure), and never blocks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/run.h"

enum echo_phase { PH_START, PH_MSG_START, PH_WORDS, PH_MSG_END, PH_FINISH, PH_DONE };

/* The echo's state on a run (run_t.ext), allocated on a pooled run's first
 * echo and kept across reuse with its text buffer's capacity. */
typedef struct echo_run {
    uint8_t phase;
    buf_t   text;          /* the text being echoed, owned */
    size_t  pos;
    char    message_id[36];
} echo_run_t;

static unsigned g_echo_ext;

static inline echo_run_t *ECHO(const run_t *r) { return (echo_run_t *)r->ext[g_echo_ext]; }

/* One word: the first call takes leading whitespace too; each delta is a run of
 * non-space bytes plus the whitespace after it, so deltas concatenate to the
 * exact text. Whitespace is ASCII; UTF-8 continuation bytes are never split. */
static size_t next_word(const char *s, size_t len, size_t pos)
{
    size_t j = pos;
#define WS(ch) ((ch) == ' ' || (ch) == '\t' || (ch) == '\n' || (ch) == '\r' || (ch) == '\f' || (ch) == '\v')
    if (pos == 0)
        while (j < len && WS(s[j]))
            j++;
    while (j < len && !WS(s[j]))
        j++;
    while (j < len && WS(s[j]))
        j++;
#undef WS
    return j;
}

static agui_str_t str(const char *p, size_t n) { return (agui_str_t){p, n}; }

/* Emits the event for the current phase; returns false when the run stopped. */
static bool emit(run_t *r, agui_type_t type, agui_str_t delta)
{
    agui_event_t ev = {.type = type};
    ev.thread_id = str(r->in.thread_id, r->in.thread_id_len);
    ev.run_id = str(r->in.run_id, r->in.run_id_len);
    ev.message_id = str(ECHO(r)->message_id, sizeof ECHO(r)->message_id);
    ev.role = str("assistant", 9);
    ev.delta = delta;
    return r->sink->event(r, &ev) == 0;
}

static void step(run_t *r)
{
    echo_run_t *e = ECHO(r);
    while (e->phase != PH_DONE) {
        if (!r->sink->writable(r)) {
            r->blocked = true;
            return;
        }
        switch (e->phase) {
        case PH_START: {
            int has = runinput_user_text(&r->in, &e->text);
            if (has >= 0)
                run_drop_body(r);   /* e->text is all it needs from here */
            if (has < 0 || !emit(r, AGUI_RUN_STARTED, str(NULL, 0)))
                return;
            e->phase = has ? PH_MSG_START : PH_FINISH;
            break;
        }
        case PH_MSG_START:
            rand_uuid(&r->sh->rng, e->message_id);
            if (!emit(r, AGUI_TEXT_MESSAGE_START, str(NULL, 0)))
                return;
            e->phase = PH_WORDS;
            break;
        case PH_WORDS: {
            if (e->pos >= e->text.len) {
                e->phase = PH_MSG_END;
                break;
            }
            if (r->interval_ms && !r->tick_due) {
                if (timer_arm(&r->sh->timers, &r->tick, r->sh->now_ms + r->interval_ms))
                    r->interval_ms = 0;   /* no memory for a timer: finish unpaced rather than stall */
                return;
            }
            size_t end = next_word(e->text.data, e->text.len, e->pos);
            if (!emit(r, AGUI_TEXT_MESSAGE_CONTENT, str(e->text.data + e->pos, end - e->pos)))
                return;
            e->pos = end;
            r->tick_due = false;
            break;
        }
        case PH_MSG_END:
            if (!emit(r, AGUI_TEXT_MESSAGE_END, str(NULL, 0)))
                return;
            e->phase = PH_FINISH;
            break;
        case PH_FINISH:
            if (!emit(r, AGUI_RUN_FINISHED, str(NULL, 0)))
                return;
            e->phase = PH_DONE;
            break;
        }
    }
    r->sink->end(r);   /* the sink releases the run */
}

static void tick_fired(agate_timer_t *t)
{
    run_t *r = (run_t *)((char *)t - offsetof(run_t, tick));
    r->tick_due = true;
    step(r);
}

static void echo_start(run_t *r)
{
    echo_run_t *e = ECHO(r);
    if (!e && !(e = r->ext[g_echo_ext] = calloc(1, sizeof *e))) {
        r->sink->fail(r, 503, "out_of_memory", "out of memory", 0);
        return;
    }
    e->phase = PH_START;
    e->pos = 0;
    buf_reset(&e->text);
    r->tick.cb = tick_fired;
    r->sink->start(r);
    r->started = true;
    step(r);
}

static void echo_resume(run_t *r)
{
    if (!timer_armed(&r->tick))
        step(r);
}

static void echo_stop(run_t *r) {}

/* Keeps pooled runs small. */
static void echo_release(run_t *r)
{
    echo_run_t *e = ECHO(r);
    if (e && e->text.cap > 64 * 1024)
        buf_free(&e->text);
}

static void echo_destroy(run_t *r)
{
    echo_run_t *e = ECHO(r);
    if (!e)
        return;
    buf_free(&e->text);
    free(e);
    r->ext[g_echo_ext] = NULL;
}

static const run_kind_ops_t echo_ops = {echo_start, echo_resume, echo_stop};
static const run_ext_ops_t echo_ext = {.release = echo_release, .destroy = echo_destroy};

void echo_register(void)
{
    g_echo_ext = run_ext_register(&echo_ext);
    run_kind_register(CFG_AGENT_ECHO, &echo_ops);
}
