/* validate_seq: stage 3 of the event validator (see validate.c), the sequence
 * rules of @ag-ui/client's verifyEvents, applied to one event at a time against
 * what the stream remembers (validate_ids.c). Events made by chunk expansion
 * (validate_chunk.c) come through here too, named after the chunk that made them. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/schema.h"
#include "proto/validate_int.h"

static void m_tag(vd_msg_t *m, vd_s_t tag)
{
    if (!tag.set) {
        m_str(m, "the parent agent");
        return;
    }
    m_str(m, "subagent ");
    m_id(m, tag.p, tag.n);
}

/* "<T> for <what> '<id>' <why>" */
static int vq_fail_id(vd_msg_t *m, const vd_ev_t *e, const char *what, vd_s_t id, const char *why)
{
    m_type(m, e);
    m_str(m, " for ");
    m_str(m, what);
    m_str(m, " ");
    m_id(m, id.p, id.n);
    m_str(m, " ");
    return m_fail(m, why);
}

/* subagentTagError: a tagged continuation must agree with its entity's recorded
 * owner (the parent agent counts as an owner); an untagged one always agrees. */
static int vq_tag(const validate_t *v, const vd_ev_t *e, int32_t ent, const char *what,
                  vd_s_t id, vd_msg_t *m)
{
    if (!e->tag.set || ent < 0 || vd_owner_find(v, e->tag) == v->ents[ent].owner)
        return 0;
    m_type(m, e);
    m_str(m, ": subagentRunId ");
    m_id(m, e->tag.p, e->tag.n);
    m_str(m, " does not match the owner of ");
    m_str(m, what);
    m_str(m, " ");
    m_id(m, id.p, id.n);
    m_str(m, " (");
    m_owner(m, v, v->ents[ent].owner);
    return m_fail(m, ")");
}

/* A list of what is still open, for RUN_FINISHED. */
static int vq_still_open(const validate_t *v, vd_msg_t *m, int counter, int kind, uint8_t flag)
{
    m_str(m, "RUN_FINISHED while ");
    m_str(m, vo_names[counter]);
    m_str(m, " are still active: ");
    bool first = true;
    for (uint32_t i = 0; i < v->n_ents; i++) {
        const vd_ent_t *e = &v->ents[i];
        if (e->kind != kind || !(e->flags & flag))
            continue;
        if (m->len > VALIDATE_MSG_MAX - 12) {
            m_str(m, ", ...");
            break;
        }
        if (!first)
            m_str(m, ", ");
        m_id(m, e->key, e->len);
        if (kind == VK_STEP && e->owner) {
            m_str(m, " (");
            m_owner(m, v, e->owner);
            m_str(m, ")");
        }
        first = false;
    }
    return -EPROTO;
}

/* seedOwnersFromMessages: replayed history (MESSAGES_SNAPSHOT, authoritative;
 * RUN_STARTED.input, only for ids not yet recorded) records the owner of each
 * message, in the bucket its role streams through, and of each assistant tool call. */
static int vq_seed(validate_t *v, jtape_t *t, uint32_t msgs, bool authoritative, vd_msg_t *m)
{
    if (!msgs)
        return 0;
    for (uint32_t msg = msgs + 1; msg < jtape_end(t, msgs); msg = jtape_end(t, msg)) {
        uint32_t role = jtape_get(t, msg, "role", 4);
        int kind = jtape_str_eq(t, role, "reasoning", 9) ? VK_RSN :
                   jtape_str_eq(t, role, "activity", 8) ? VK_ACT : VK_MSG;
        vd_s_t id = vd_tget(t, msg, "id", 2), tag = vd_tget(t, msg, "subagentRunId", 13);
        int rc;
        if ((authoritative || vd_find_s(v, kind, id) < 0) &&
            (rc = vd_set_owner(v, kind, id, tag, NULL, m)))
            return rc;
        if (!jtape_str_eq(t, role, "assistant", 9))
            continue;   /* other roles have no toolCalls; enforcement strips the key */
        uint32_t calls = jtape_get(t, msg, "toolCalls", 9);
        if (!calls)
            continue;
        for (uint32_t tc = calls + 1; tc < jtape_end(t, calls); tc = jtape_end(t, tc)) {
            vd_s_t tcid = vd_tget(t, tc, "id", 2);
            if ((authoritative || vd_find_s(v, VK_TOOL, tcid) < 0) &&
                (rc = vd_set_owner(v, VK_TOOL, tcid, tag, NULL, m)))
                return rc;
        }
    }
    return 0;
}

static int vq_text(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_MSG, e->id);
    int rc;
    if (e->type == AGUI_TEXT_MESSAGE_START) {
        if (i >= 0 && (v->ents[i].flags & VF_OPEN))
            return vq_fail_id(m, e, "message", e->id, "which is already in progress");
        if ((rc = vq_tag(v, e, i, "message", e->id, m)))   /* first writer keeps it */
            return rc;
        if (i < 0 && (rc = vd_set_owner(v, VK_MSG, e->id, e->tag, &i, m)))
            return rc;
        return vd_open(v, i, VF_OPEN, VO_TEXT, m);
    }
    if (i < 0 || !(v->ents[i].flags & VF_OPEN))
        return vq_fail_id(m, e, "message", e->id,
                          i < 0 ? "which was not started" : "which is not in progress");
    if ((rc = vq_tag(v, e, i, "message", e->id, m)))
        return rc;
    if (e->type == AGUI_TEXT_MESSAGE_END)
        vd_close(v, i, VF_OPEN, VO_TEXT);
    return 0;
}

static int vq_tool_start(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_TOOL, e->id), p = -1;
    int rc;
    if (i >= 0 && (v->ents[i].flags & VF_OPEN))
        return vq_fail_id(m, e, "tool call", e->id, "which is already in progress");
    /* A tool call lives in the message parentMessageId names and inherits its owner. */
    if (e->parent.set && (p = vd_find_s(v, VK_MSG, e->parent)) >= 0 && e->tag.set &&
        vd_owner_find(v, e->tag) != v->ents[p].owner) {
        m_type(m, e);
        m_str(m, ": subagentRunId ");
        m_id(m, e->tag.p, e->tag.n);
        m_str(m, " does not match the owner of parent message ");
        m_id(m, e->parent.p, e->parent.n);
        m_str(m, " (");
        m_owner(m, v, v->ents[p].owner);
        return m_fail(m, ")");
    }
    if (i >= 0) {
        if ((rc = vq_tag(v, e, i, "tool call", e->id, m)))
            return rc;
        if (!e->tag.set && p >= 0 && v->ents[p].owner != v->ents[i].owner) {
            m_type(m, e);
            m_str(m, ": tool call ");
            m_id(m, e->id.p, e->id.n);
            m_str(m, " is owned by ");
            m_owner(m, v, v->ents[i].owner);
            m_str(m, " but its parent message ");
            m_id(m, e->parent.p, e->parent.n);
            m_str(m, " by ");
            m_owner(m, v, v->ents[p].owner);
            return -EPROTO;
        }
    } else if (e->tag.set || p < 0) {
        if ((rc = vd_set_owner(v, VK_TOOL, e->id, e->tag, &i, m)))
            return rc;
    } else {
        uint32_t owner = v->ents[p].owner;
        if ((rc = vd_add(v, VK_TOOL, e->id.p, e->id.n, owner, &i, m)))
            return rc;
    }
    return vd_open(v, i, VF_OPEN, VO_TOOL, m);
}

static int vq_tool(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_TOOL, e->id);
    if (i < 0 || !(v->ents[i].flags & VF_OPEN))
        return vq_fail_id(m, e, "tool call", e->id,
                          i < 0 ? "which was not started" : "which is not in progress");
    int rc = vq_tag(v, e, i, "tool call", e->id, m);
    if (!rc && e->type == AGUI_TOOL_CALL_END)
        vd_close(v, i, VF_OPEN, VO_TOOL);
    return rc;
}

/* Steps are keyed by (owner, name): a subagent may run a step its parent runs too. */
static int vq_step(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    uint32_t owner = vd_owner_find(v, e->tag);
    int32_t i = vd_find(v, VK_STEP, e->id.p, e->id.n, owner);
    int rc;
    if (e->type == AGUI_STEP_STARTED) {
        if (i >= 0 && (v->ents[i].flags & VF_OPEN)) {
            m_type(m, e);
            m_str(m, " for step ");
            m_id(m, e->id.p, e->id.n);
            m_str(m, " which is already active");
            if (e->tag.set) {
                m_str(m, " in subagent ");
                m_id(m, e->tag.p, e->tag.n);
            }
            return -EPROTO;
        }
        if ((rc = vd_intern(v, e->tag, &owner, m)))
            return rc;
        uint32_t *order = owner ? &v->ents[owner - 1].order : &v->parent_step_order;
        if (!*order)
            *order = ++v->step_seq;
        if (i < 0 && (rc = vd_add(v, VK_STEP, e->id.p, e->id.n, owner, &i, m)))
            return rc;
        return vd_open(v, i, VF_OPEN, VO_STEP, m);
    }
    if (i >= 0 && (v->ents[i].flags & VF_OPEN)) {
        vd_close(v, i, VF_OPEN, VO_STEP);
        return 0;
    }
    /* Open under someone else? The owner that first had a step is named, as
     * verify's walk of its owner map in insertion order does. */
    int32_t other = -1;
    uint32_t best = UINT32_MAX;
    for (uint32_t k = 0; k < v->n_ents; k++) {
        const vd_ent_t *s = &v->ents[k];
        if (s->kind != VK_STEP || !(s->flags & VF_OPEN) || s->owner == owner ||
            s->len != e->id.n || memcmp(s->key, e->id.p, e->id.n))
            continue;
        uint32_t ord = s->owner ? v->ents[s->owner - 1].order : v->parent_step_order;
        if (ord < best) {
            best = ord;
            other = (int32_t)k;
        }
    }
    if (other < 0)
        return vq_fail_id(m, e, "step", e->id, "which was not started");
    m_type(m, e);
    m_str(m, " for step ");
    m_id(m, e->id.p, e->id.n);
    m_str(m, " by ");
    m_tag(m, e->tag);
    m_str(m, ": it is open under ");
    m_owner(m, v, v->ents[other].owner);
    return -EPROTO;
}

/* Reasoning has two bracketed entities that may share an id: the span
 * (REASONING_START .. _END) and the message (REASONING_MESSAGE_START .. _END),
 * with one owner record for both. */
static int vq_reasoning(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    bool span = e->type == AGUI_REASONING_START || e->type == AGUI_REASONING_END;
    uint8_t flag = span ? VF_SPAN : VF_RMSG;
    int counter = span ? VO_SPAN : VO_RMSG;
    const char *what = span ? "reasoning span" : "reasoning message";
    int32_t i = vd_find_s(v, VK_RSN, e->id);
    int rc;
    if (e->type == AGUI_REASONING_START || e->type == AGUI_REASONING_MESSAGE_START) {
        if (i >= 0 && (v->ents[i].flags & flag))
            return vq_fail_id(m, e, what, e->id, "which is already in progress");
        if ((rc = vq_tag(v, e, i, "reasoning message", e->id, m)))
            return rc;
        if (i < 0 && (rc = vd_set_owner(v, VK_RSN, e->id, e->tag, &i, m)))
            return rc;
        return vd_open(v, i, flag, counter, m);
    }
    if (i < 0 || !(v->ents[i].flags & flag))
        return vq_fail_id(m, e, what, e->id,
                          i < 0 ? "which was not started" : "which is not in progress");
    if ((rc = vq_tag(v, e, i, "reasoning message", e->id, m)))
        return rc;
    if (e->type != AGUI_REASONING_MESSAGE_CONTENT)
        vd_close(v, i, flag, counter);
    return 0;
}

static int vq_subagent(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_TAG, e->id);
    uint8_t fl = i >= 0 ? v->ents[i].flags : 0;
    int rc;
    if (e->type != AGUI_SUBAGENT_STARTED) {
        if (!(fl & VF_ACTIVE))
            return vq_fail_id(m, e, "subagent", e->id, "which is not active");
        v->ents[i].flags |= VF_CLOSED;
        vd_close(v, i, VF_ACTIVE, VO_SUB);
        return 0;
    }
    if (fl & VF_ACTIVE)
        return vq_fail_id(m, e, "subagent", e->id, "which is already active");
    if (fl & VF_CLOSED)   /* ids are per invocation */
        return vq_fail_id(m, e, "subagent", e->id, "which already finished in this run");
    if (e->parent.set) {
        int32_t p = vd_find_s(v, VK_TAG, e->parent);
        if (p < 0 || !(v->ents[p].flags & (VF_ACTIVE | VF_CLOSED))) {
            m_type(m, e);
            m_str(m, ": parentSubagentRunId ");
            m_id(m, e->parent.p, e->parent.n);
            return m_fail(m, " was not started in this run");
        }
    }
    uint32_t owner;
    if ((rc = vd_intern(v, e->id, &owner, m)))
        return rc;
    return vd_open(v, (int32_t)owner - 1, VF_ACTIVE, VO_SUB, m);
}

/* verifyEvents, one event. Each rule is named where verify.ts states it. */
int vq_event(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    agui_type_t t = e->type;

    /* Nothing but a new run after RUN_ERROR; nothing but RUN_ERROR or a new run
     * after RUN_FINISHED; RUN_STARTED (or RUN_ERROR) first; no RUN_STARTED while
     * a run is active. */
    if (v->run_error && t != AGUI_RUN_STARTED) {
        m_type(m, e);
        return m_fail(m, " after RUN_ERROR: only RUN_STARTED may follow");
    }
    if (v->run_finished && t != AGUI_RUN_ERROR && t != AGUI_RUN_STARTED) {
        m_type(m, e);
        return m_fail(m, " after RUN_FINISHED: only RUN_STARTED or RUN_ERROR may follow");
    }
    if (!v->first_seen) {
        v->first_seen = true;
        if (t != AGUI_RUN_STARTED && t != AGUI_RUN_ERROR) {
            m_str(m, "first event must be RUN_STARTED, got ");
            m_type(m, e);
            return -EPROTO;
        }
    } else if (t == AGUI_RUN_STARTED) {
        if (v->run_started && !v->run_finished && !v->run_error)
            return m_fail(m, "RUN_STARTED while a run is still active: send RUN_FINISHED first");
        if (v->run_finished || v->run_error)
            vd_reset_run(v);
    }

    switch (t) {
    case AGUI_TEXT_MESSAGE_START:
    case AGUI_TEXT_MESSAGE_CONTENT:
    case AGUI_TEXT_MESSAGE_END:
        return vq_text(v, e, m);
    case AGUI_TOOL_CALL_START:
        return vq_tool_start(v, e, m);
    case AGUI_TOOL_CALL_ARGS:
    case AGUI_TOOL_CALL_END:
        return vq_tool(v, e, m);
    case AGUI_STEP_STARTED:
    case AGUI_STEP_FINISHED:
        return vq_step(v, e, m);
    case AGUI_ACTIVITY_SNAPSHOT: {
        /* Only a replacing snapshot (replace absent or true) re-owns a known activity. */
        if (vd_find_s(v, VK_ACT, e->id) >= 0 && e->replace_false)
            return 0;
        return vd_set_owner(v, VK_ACT, e->id, e->tag, NULL, m);
    }
    case AGUI_ACTIVITY_DELTA:
        return vq_tag(v, e, vd_find_s(v, VK_ACT, e->id), "activity", e->id, m);
    case AGUI_TOOL_CALL_RESULT:   /* mints a tool message; the newest mint owns it */
        return vd_set_owner(v, VK_MSG, e->id, e->tag, NULL, m);
    case AGUI_REASONING_START:
    case AGUI_REASONING_MESSAGE_START:
    case AGUI_REASONING_MESSAGE_CONTENT:
    case AGUI_REASONING_MESSAGE_END:
    case AGUI_REASONING_END:
        return vq_reasoning(v, e, m);
    case AGUI_REASONING_ENCRYPTED_VALUE: {
        int32_t i;
        const char *what;
        if (e->subtype_tool) {
            i = vd_find_s(v, VK_TOOL, e->id);
            what = "tool call";
        } else {
            i = vd_find_s(v, VK_MSG, e->id);
            if (i < 0)
                i = vd_find_s(v, VK_RSN, e->id);
            what = "message";
        }
        return vq_tag(v, e, i, what, e->id, m);
    }
    case AGUI_SUBAGENT_STARTED:
    case AGUI_SUBAGENT_FINISHED:
    case AGUI_SUBAGENT_ERROR:
        return vq_subagent(v, e, m);
    case AGUI_MESSAGES_SNAPSHOT:
        return vq_seed(v, e->t, e->messages, true, m);
    case AGUI_RUN_STARTED:
        v->run_started = true;
        return vq_seed(v, e->t, e->messages, false, m);
    case AGUI_RUN_FINISHED: {
        /* Everything opened in the run must be closed, checked in verify's order. */
        static const struct { int counter, kind; uint8_t flag; } open[] = {
            { VO_STEP, VK_STEP, VF_OPEN }, { VO_TEXT, VK_MSG, VF_OPEN },
            { VO_RMSG, VK_RSN, VF_RMSG }, { VO_SPAN, VK_RSN, VF_SPAN },
            { VO_TOOL, VK_TOOL, VF_OPEN }, { VO_SUB, VK_TAG, VF_ACTIVE },
        };
        for (size_t k = 0; k < sizeof open / sizeof open[0]; k++)
            if (v->n_open[open[k].counter])
                return vq_still_open(v, m, open[k].counter, open[k].kind, open[k].flag);
        v->run_finished = true;
        return 0;
    }
    case AGUI_RUN_ERROR:
        v->run_error = true;
        return 0;
    default:   /* STATE_*, RAW, CUSTOM; chunks never get here */
        return 0;
    }
}
