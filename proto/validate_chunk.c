/* validate_chunk: stage 2 of the event validator (see validate.c), chunk
 * expansion as @ag-ui/client's transformChunks does it: TEXT_MESSAGE_CHUNK,
 * TOOL_CALL_CHUNK and REASONING_MESSAGE_CHUNK open, continue and close streams
 * ("lanes", one per owner), and every event they stand for goes through the
 * sequence rules (validate_seq.c). vd_sequence is the entry point of stages 2
 * and 3 together. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/schema.h"
#include "proto/validate_int.h"

static const agui_type_t lane_start[] = {
    AGUI_TEXT_MESSAGE_START, AGUI_TOOL_CALL_START, AGUI_REASONING_MESSAGE_START
};
static const agui_type_t lane_content[] = {
    AGUI_TEXT_MESSAGE_CONTENT, AGUI_TOOL_CALL_ARGS, AGUI_REASONING_MESSAGE_CONTENT
};
static const agui_type_t lane_end[] = {
    AGUI_TEXT_MESSAGE_END, AGUI_TOOL_CALL_END, AGUI_REASONING_MESSAGE_END
};
static const char *const lane_what[] = { "message", "tool call", "reasoning message" };

static int vx_lane_at(const validate_t *v, uint32_t owner)
{
    for (uint32_t i = 0; i < v->n_open[VO_LANE]; i++)
        if (v->lanes[i].owner == owner)
            return (int)i;
    return -1;
}

/* Ends the stream lane li was assembling: its END goes through the rules, with
 * the opener's subagentRunId. */
static int vx_close(validate_t *v, uint32_t li, agui_type_t trigger, vd_msg_t *m)
{
    vd_lane_t l = v->lanes[li];
    memmove(&v->lanes[li], &v->lanes[li + 1], (v->n_open[VO_LANE] - li - 1) * sizeof l);
    v->n_open[VO_LANE]--;
    vd_ev_t end = { .type = lane_end[l.kind], .from = trigger, .id = { l.id, l.id_len, true },
                    .tag = vd_owner_tag(v, l.owner), .parent = VD_UNSET };
    return vq_event(v, &end, m);
}

/* resolveLane: the lane a chunk belongs to. An id already open continues where it
 * is, whoever sends it; a new id opens in the lane its tag names; an id-less chunk
 * continues its tag's lane, else the parent's, else the only open one of its kind. */
static int vx_resolve(validate_t *v, int kind, const vd_ev_t *e, uint32_t *lane, vd_msg_t *m)
{
    *lane = 0;
    if (e->id.set) {
        for (uint32_t i = 0; i < v->n_open[VO_LANE]; i++) {
            const vd_lane_t *l = &v->lanes[i];
            if (l->kind != kind || l->id_len != e->id.n || memcmp(l->id, e->id.p, e->id.n))
                continue;
            if (e->tag.set && vd_owner_find(v, e->tag) != l->owner) {
                m_type(m, e);
                m_fmt(m, " for %s ", lane_what[kind]);
                m_id(m, e->id.p, e->id.n);
                m_str(m, ": subagentRunId ");
                m_id(m, e->tag.p, e->tag.n);
                m_str(m, " does not match the open stream's owner (");
                m_owner(m, v, l->owner);
                return m_fail(m, ")");
            }
            *lane = l->owner;
            return 0;
        }
        return vd_intern(v, e->tag, lane, m);
    }
    if (e->tag.set) {
        *lane = vd_owner_find(v, e->tag);
        return 0;
    }
    int p = vx_lane_at(v, 0);
    if (p >= 0 && v->lanes[p].kind == kind)
        return 0;
    uint32_t found = 0;
    for (uint32_t i = 0; i < v->n_open[VO_LANE]; i++)
        if (v->lanes[i].kind == kind && found++ == 0)
            *lane = v->lanes[i].owner;
    if (found > 1) {
        m_type(m, e);
        m_fmt(m, " without %s or subagentRunId is ambiguous: %u subagents have an open %s",
              kind == LANE_TOOL ? "toolCallId" : "messageId", found, lane_what[kind]);
        return -EPROTO;
    }
    return 0;
}

/* A continuation may repeat what its opener said, only with the same value. */
static int vx_agree(const vd_lane_t *l, const vd_ev_t *e, const char *field, vd_s_t in,
                    bool had, const char *was, size_t was_len, vd_msg_t *m)
{
    if (!in.set || (had && vd_s_eq(in, was, was_len)))
        return 0;
    m_type(m, e);
    m_fmt(m, " for %s ", lane_what[l->kind]);
    m_id(m, l->id, l->id_len);
    m_fmt(m, ": %s ", field);
    m_id(m, in.p, in.n);
    m_str(m, " does not match the open stream's ");
    if (had)
        m_id(m, was, was_len);
    else
        m_str(m, "(absent)");
    return -EPROTO;
}

static int vx_chunk(validate_t *v, const vd_ev_t *e, int kind, vd_msg_t *m)
{
    vd_s_t name = kind == LANE_RSN ? VD_UNSET : e->name;
    vd_s_t role = kind == LANE_TEXT ? e->role : VD_UNSET;
    uint8_t role_ix = 2;   /* absent means assistant */
    for (uint8_t r = 0; role.set && schema_text_roles[r]; r++)
        if (vd_s_eq(role, schema_text_roles[r], strlen(schema_text_roles[r])))
            role_ix = r;
    uint32_t lane;
    int rc = vx_resolve(v, kind, e, &lane, m);
    if (rc)
        return rc;

    int li = vx_lane_at(v, lane);
    vd_lane_t *l = li >= 0 ? &v->lanes[li] : NULL;
    bool emitted = false;
    if (l && l->kind == kind && (!e->id.set || vd_s_eq(e->id, l->id, l->id_len))) {
        const char *r = schema_text_roles[l->role];
        if (kind == LANE_TEXT &&
            ((rc = vx_agree(l, e, "role", role, true, r, strlen(r), m)) ||
             (rc = vx_agree(l, e, "name", name, l->has_name, l->name, l->name_len, m))))
            return rc;
        if (kind == LANE_TOOL &&
            ((rc = vx_agree(l, e, "toolCallName", name, true, l->name, l->name_len, m)) ||
             (rc = vx_agree(l, e, "parentMessageId", e->parent, l->has_parent, l->parent,
                            l->parent_len, m))))
            return rc;
    } else {
        if (!e->id.set) {
            m_type(m, e);
            return m_fail(m, kind == LANE_TOOL ? ": the first chunk must have a toolCallId" :
                                                 ": the first chunk must have a messageId");
        }
        if (kind == LANE_TOOL && !name.set) {
            m_type(m, e);
            return m_fail(m, ": the first chunk must have a toolCallName");
        }
        if (l && (rc = vx_close(v, (uint32_t)li, e->from, m)))   /* this lane's last stream */
            return rc;
        if (v->n_open[VO_LANE] >= VALIDATE_MAX_OPEN) {
            m_fmt(m, "too many open %s (limit %d)", vo_names[VO_LANE], VALIDATE_MAX_OPEN);
            return -EPROTO;
        }
        if (v->n_open[VO_LANE] == v->cap_lanes) {
            uint32_t cap = v->cap_lanes ? v->cap_lanes * 2 : 4;
            vd_lane_t *nl = realloc(v->lanes, cap * sizeof *nl);
            if (!nl)
                return vd_oom(m);
            v->lanes = nl;
            v->cap_lanes = cap;
        }
        size_t bytes = e->id.n + name.n + e->parent.n;
        if (bytes > VALIDATE_MAX_ID_BYTES - v->id_bytes) {
            m_fmt(m, "ids in one run exceed %u bytes", VALIDATE_MAX_ID_BYTES);
            return -EPROTO;
        }
        vd_lane_t nl = { .owner = lane, .kind = (uint8_t)kind, .role = role_ix,
                         .has_name = name.set, .has_parent = kind == LANE_TOOL && e->parent.set,
                         .id = vd_store(v, e->id.p, e->id.n), .id_len = (uint32_t)e->id.n,
                         .name = vd_store(v, name.p, name.n), .name_len = (uint32_t)name.n };
        if (nl.has_parent) {
            nl.parent = vd_store(v, e->parent.p, e->parent.n);
            nl.parent_len = (uint32_t)e->parent.n;
        }
        if (!nl.id || !nl.name || (nl.has_parent && !nl.parent))
            return vd_oom(m);
        v->id_bytes += bytes;
        l = &v->lanes[v->n_open[VO_LANE]++];
        *l = nl;
        vd_ev_t start = { .type = lane_start[kind], .from = e->from, .id = e->id, .tag = e->tag,
                          .parent = kind == LANE_TOOL ? e->parent : VD_UNSET };
        if ((rc = vq_event(v, &start, m)))
            return rc;
        emitted = true;
    }
    /* CONTENT when the chunk has a delta or a rawEvent, or carries only metadata. */
    if (e->has_delta || e->has_raw || (!emitted && e->has_meta)) {
        vd_ev_t content = { .type = lane_content[kind], .from = e->from,
                            .id = { l->id, l->id_len, true }, .tag = vd_owner_tag(v, l->owner),
                            .parent = VD_UNSET };
        return vq_event(v, &content, m);
    }
    return 0;
}

/* transformChunks, then verifyEvents on each event it yields. */
int vd_sequence(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int rc = 0, li;
    switch (e->type) {
    case AGUI_TEXT_MESSAGE_CHUNK:
        return vx_chunk(v, e, LANE_TEXT, m);
    case AGUI_TOOL_CALL_CHUNK:
        return vx_chunk(v, e, LANE_TOOL, m);
    case AGUI_REASONING_MESSAGE_CHUNK:
        return vx_chunk(v, e, LANE_RSN, m);
    case AGUI_RUN_STARTED:
    case AGUI_RUN_FINISHED:
    case AGUI_RUN_ERROR:
    case AGUI_MESSAGES_SNAPSHOT:   /* run-wide: every lane ends */
        while (!rc && v->n_open[VO_LANE])
            rc = vx_close(v, 0, e->type, m);
        break;
    case AGUI_RAW:
    case AGUI_ACTIVITY_SNAPSHOT:
    case AGUI_ACTIVITY_DELTA:
    case AGUI_REASONING_ENCRYPTED_VALUE:
    case AGUI_SUBAGENT_STARTED:
        break;
    default:   /* an explicit event (or a subagent's end) ends its own lane's stream */
        if (v->n_open[VO_LANE] && (li = vx_lane_at(v, vd_owner_find(v, e->tag))) >= 0)
            rc = vx_close(v, (uint32_t)li, e->type, m);
        break;
    }
    return rc ? rc : vq_event(v, e, m);
}
