/* Unit tests for proto/validate.c: every event type's schema as @ag-ui/core
 * 1.0.0 states it, the sequence rules of @ag-ui/client 1.0.0's verifyEvents
 * (each one passing and failing), chunk expansion as transformChunks does it,
 * limits, messages, and the parse arena (other threads, spills, trees made
 * outside validate_event). Expected verdicts were checked against the client
 * itself (enforceEvents -> transformChunks -> verifyEvents) while writing them. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/validate.h"

/* Events are written with single quotes; q() makes them JSON. */
static char *q(const char *s)
{
    char *o = strdup(s);
    assert_non_null(o);
    for (char *p = o; *p; p++)
        if (*p == '\'')
            *p = '"';
    return o;
}

static void check_msg(const char *msg)
{
    size_t n = strnlen(msg, VALIDATE_MSG_MAX);
    assert_true(n < VALIDATE_MSG_MAX);
    for (size_t i = 0; i < n; i++)
        assert_true(msg[i] >= 0x20 && msg[i] < 0x7f);
}

/* Feeds one single-quoted event; returns validate_event's result. */
static int feed(validate_t *v, const char *ev, agui_type_t *type, char *msg)
{
    char *j = q(ev);
    agui_type_t t;
    int rc = validate_event(v, j, strlen(j), type ? type : &t, msg);
    free(j);
    check_msg(msg);
    if (rc)
        assert_true(msg[0] != '\0');
    return rc;
}

#define RS "{'type':'RUN_STARTED','threadId':'t','runId':'r'}"
#define RF "{'type':'RUN_FINISHED','threadId':'t','runId':'r'}"
#define RE "{'type':'RUN_ERROR','message':'boom'}"
#define TMS(id) "{'type':'TEXT_MESSAGE_START','messageId':'" id "'}"
#define TMC(id) "{'type':'TEXT_MESSAGE_CONTENT','messageId':'" id "','delta':'x'}"
#define TME(id) "{'type':'TEXT_MESSAGE_END','messageId':'" id "'}"
#define TCS(id) "{'type':'TOOL_CALL_START','toolCallId':'" id "','toolCallName':'f'}"
#define TCA(id) "{'type':'TOOL_CALL_ARGS','toolCallId':'" id "','delta':'{}'}"
#define TCE(id) "{'type':'TOOL_CALL_END','toolCallId':'" id "'}"
#define SS(n) "{'type':'STEP_STARTED','stepName':'" n "'}"
#define SF(n) "{'type':'STEP_FINISHED','stepName':'" n "'}"

/* A stream and its verdict: every event before `fail` passes, event `fail`
 * (-1: none) is a violation whose message contains `want`. */
typedef struct scenario {
    const char *name;
    const char *events[12];
    int         fail;
    const char *want;
} scenario_t;

static void run_scenarios(const scenario_t *sc, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        validate_t *v = validate_new();
        assert_non_null(v);
        char msg[VALIDATE_MSG_MAX];
        for (int i = 0; sc[k].events[i]; i++) {
            int rc = feed(v, sc[k].events[i], NULL, msg);
            if (i != sc[k].fail && rc != 0)
                fail_msg("%s: event %d: unexpected violation: %s", sc[k].name, i, msg);
            if (i == sc[k].fail) {
                if (rc != -EPROTO)
                    fail_msg("%s: event %d passed, expected \"%s\"", sc[k].name, i, sc[k].want);
                if (!strstr(msg, sc[k].want))
                    fail_msg("%s: event %d: got \"%s\", expected \"%s\"", sc[k].name, i, msg,
                             sc[k].want);
                break;
            }
        }
        validate_free(v);
    }
}
#define RUN(tab) run_scenarios(tab, sizeof(tab) / sizeof(tab[0]))

/* ---- a realistic run ----------------------------------------------------------- */

static void test_full_run(void **state)
{
    (void)state;
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX];
    agui_type_t t;
    assert_false(validate_run_closed(v));
    assert_int_equal(feed(v, RS, &t, msg), 0);
    assert_int_equal(t, AGUI_RUN_STARTED);
    assert_false(validate_run_closed(v));
    assert_int_equal(feed(v, "{'type':'TEXT_MESSAGE_START','messageId':'m1','role':'assistant'}", &t, msg), 0);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(feed(v, "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'Hello, '}", &t, msg), 0);
        assert_int_equal(t, AGUI_TEXT_MESSAGE_CONTENT);
    }
    assert_int_equal(feed(v, TME("m1"), &t, msg), 0);
    assert_int_equal(feed(v, RF, &t, msg), 0);
    assert_int_equal(t, AGUI_RUN_FINISHED);
    assert_true(validate_run_closed(v));
    validate_free(v);
}

/* Everything a rich run carries, all valid: input echo, state, tools, steps,
 * reasoning, activity, subagents, snapshots, chunks, usage and outcome. */
static void test_rich_run(void **state)
{
    (void)state;
    static const char *const evs[] = {
        "{'type':'RUN_STARTED','threadId':'t','runId':'r','parentRunId':'r0','timestamp':1700000000000,"
        "'input':{'threadId':'t','runId':'r','state':null,'messages':[{'id':'u1','role':'user',"
        "'content':[{'type':'text','text':'hi'},{'type':'image','source':{'type':'url','value':'u'}}]}],"
        "'tools':[{'name':'f','description':'d','parameters':{}}],'context':[],'forwardedProps':{}}}",
        "{'type':'STATE_SNAPSHOT','snapshot':{'a':1}}",
        "{'type':'STATE_DELTA','delta':[{'op':'add','path':'/a','value':2},{'op':'remove','path':''},"
        "{'op':'move','from':'/a~0b','path':'/c~1d'},{'op':'test','path':'/c','value':null}]}",
        "{'type':'STEP_STARTED','stepName':'plan','metadata':{'k':null}}",
        "{'type':'REASONING_START','messageId':'r1'}",
        "{'type':'REASONING_MESSAGE_START','messageId':'r1','role':'reasoning'}",
        "{'type':'REASONING_MESSAGE_CONTENT','messageId':'r1','delta':'think'}",
        "{'type':'REASONING_MESSAGE_END','messageId':'r1'}",
        "{'type':'REASONING_ENCRYPTED_VALUE','subtype':'message','entityId':'r1','encryptedValue':'e'}",
        "{'type':'REASONING_END','messageId':'r1'}",
        "{'type':'TEXT_MESSAGE_START','messageId':'m1','role':'assistant','name':'bot'}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':''}",
        "{'type':'TEXT_MESSAGE_END','messageId':'m1'}",
        "{'type':'TOOL_CALL_START','toolCallId':'c1','toolCallName':'f','parentMessageId':'m1'}",
        "{'type':'TOOL_CALL_ARGS','toolCallId':'c1','delta':'{}'}",
        "{'type':'TOOL_CALL_END','toolCallId':'c1'}",
        "{'type':'TOOL_CALL_RESULT','messageId':'tm1','toolCallId':'c1','content':'sunny','role':'tool'}",
        "{'type':'ACTIVITY_SNAPSHOT','messageId':'a1','activityType':'plan','content':{},'replace':true}",
        "{'type':'ACTIVITY_DELTA','messageId':'a1','activityType':'plan','patch':[]}",
        "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'researcher','description':'d'}",
        "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m2','delta':'a','subagentRunId':'s1'}",
        "{'type':'TEXT_MESSAGE_CHUNK','delta':'b','subagentRunId':'s1'}",
        "{'type':'SUBAGENT_FINISHED','subagentRunId':'s1','outcome':{'type':'suspended','interruptIds':['i']}}",
        "{'type':'TOOL_CALL_CHUNK','toolCallId':'c2','toolCallName':'g','delta':'{'}",
        "{'type':'TOOL_CALL_CHUNK','delta':'}'}",
        "{'type':'REASONING_MESSAGE_CHUNK','messageId':'r2','delta':'x'}",
        "{'type':'RAW','event':{'any':[1,2]},'source':'openai'}",
        "{'type':'CUSTOM','name':'c','value':null}",
        "{'type':'MESSAGES_SNAPSHOT','messages':[{'id':'m1','role':'assistant','content':'x',"
        "'toolCalls':[{'id':'c1','type':'function','function':{'name':'f','arguments':'{}'}}]},"
        "{'id':'a1','role':'activity','activityType':'plan','content':{}},"
        "{'id':'r1','role':'reasoning','content':'think'},{'id':'tm1','role':'tool','toolCallId':'c1','content':'x'},"
        "{'id':'d1','role':'developer','content':'x'},{'id':'sy','role':'system','content':'x'}]}",
        "{'type':'STEP_FINISHED','stepName':'plan'}",
        "{'type':'RUN_FINISHED','threadId':'t','runId':'r','result':{'ok':true},"
        "'outcome':{'type':'success','pendingToolCallIds':['c2']},"
        "'usage':[{'provider':'openai','model':'m','inputTokens':10,'outputTokens':5.0,'totalTokens':15}]}",
        "{'type':'RUN_STARTED','threadId':'t','runId':'r2'}",
        "{'type':'RUN_FINISHED','threadId':'t','runId':'r2','outcome':{'type':'interrupt',"
        "'interrupts':[{'id':'i1','reason':'approval','responseSchema':{}}]}}",
        "{'type':'RUN_STARTED','threadId':'t','runId':'r3'}",
        "{'type':'RUN_FINISHED','threadId':'t','runId':'r3','outcome':{'type':'cancelled'}}",
        "{'type':'RUN_ERROR','message':'late','code':'E1','usage':[]}",
    };
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX];
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (feed(v, evs[i], NULL, msg))
            fail_msg("event %zu: %s", i, msg);
    assert_true(validate_run_closed(v));
    validate_free(v);
}

/* ---- stage 1: every type's required fields ---------------------------------------- */

typedef struct field_case {
    agui_type_t  type;
    const char  *setup[4];   /* events that make `valid` legal in sequence */
    const char  *valid;
    const char  *missing;    /* `valid` without one required field */
    const char  *want;
} field_case_t;

static const field_case_t field_cases[] = {
    { AGUI_RUN_STARTED, { NULL }, RS, "{'type':'RUN_STARTED','threadId':'t'}", "RUN_STARTED: runId: required" },
    { AGUI_RUN_FINISHED, { RS }, RF, "{'type':'RUN_FINISHED','runId':'r'}", "RUN_FINISHED: threadId: required" },
    { AGUI_RUN_ERROR, { RS }, RE, "{'type':'RUN_ERROR','code':'x'}", "RUN_ERROR: message: required" },
    { AGUI_TEXT_MESSAGE_START, { RS }, TMS("m"), "{'type':'TEXT_MESSAGE_START','role':'user'}",
      "TEXT_MESSAGE_START: messageId: required" },
    { AGUI_TEXT_MESSAGE_CONTENT, { RS, TMS("m") }, TMC("m"),
      "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m'}", "TEXT_MESSAGE_CONTENT: delta: required" },
    { AGUI_TEXT_MESSAGE_END, { RS, TMS("m") }, TME("m"), "{'type':'TEXT_MESSAGE_END'}",
      "TEXT_MESSAGE_END: messageId: required" },
    { AGUI_TEXT_MESSAGE_CHUNK, { RS }, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m','delta':'d'}",
      "{'type':'TEXT_MESSAGE_CHUNK','messageId':7}", "TEXT_MESSAGE_CHUNK: messageId: expected a string" },
    { AGUI_TOOL_CALL_START, { RS }, TCS("c"), "{'type':'TOOL_CALL_START','toolCallId':'c'}",
      "TOOL_CALL_START: toolCallName: required" },
    { AGUI_TOOL_CALL_ARGS, { RS, TCS("c") }, TCA("c"), "{'type':'TOOL_CALL_ARGS','toolCallId':'c'}",
      "TOOL_CALL_ARGS: delta: required" },
    { AGUI_TOOL_CALL_END, { RS, TCS("c") }, TCE("c"), "{'type':'TOOL_CALL_END'}",
      "TOOL_CALL_END: toolCallId: required" },
    { AGUI_TOOL_CALL_CHUNK, { RS }, "{'type':'TOOL_CALL_CHUNK','toolCallId':'c','toolCallName':'f'}",
      "{'type':'TOOL_CALL_CHUNK','delta':null}", "TOOL_CALL_CHUNK: delta: expected a string" },
    { AGUI_TOOL_CALL_RESULT, { RS }, "{'type':'TOOL_CALL_RESULT','messageId':'tm','toolCallId':'c','content':'x'}",
      "{'type':'TOOL_CALL_RESULT','messageId':'tm','toolCallId':'c'}", "TOOL_CALL_RESULT: content: required" },
    { AGUI_STATE_SNAPSHOT, { RS }, "{'type':'STATE_SNAPSHOT','snapshot':null}", "{'type':'STATE_SNAPSHOT'}",
      "STATE_SNAPSHOT: snapshot: required" },
    { AGUI_STATE_DELTA, { RS }, "{'type':'STATE_DELTA','delta':[]}", "{'type':'STATE_DELTA'}",
      "STATE_DELTA: delta: required" },
    { AGUI_MESSAGES_SNAPSHOT, { RS }, "{'type':'MESSAGES_SNAPSHOT','messages':[]}",
      "{'type':'MESSAGES_SNAPSHOT'}", "MESSAGES_SNAPSHOT: messages: required" },
    { AGUI_ACTIVITY_SNAPSHOT, { RS }, "{'type':'ACTIVITY_SNAPSHOT','messageId':'a','activityType':'p','content':{}}",
      "{'type':'ACTIVITY_SNAPSHOT','messageId':'a','activityType':'p'}", "ACTIVITY_SNAPSHOT: content: required" },
    { AGUI_ACTIVITY_DELTA, { RS }, "{'type':'ACTIVITY_DELTA','messageId':'a','activityType':'p','patch':[]}",
      "{'type':'ACTIVITY_DELTA','messageId':'a','patch':[]}", "ACTIVITY_DELTA: activityType: required" },
    { AGUI_RAW, { RS }, "{'type':'RAW','event':null}", "{'type':'RAW','source':'s'}", "RAW: event: required" },
    { AGUI_CUSTOM, { RS }, "{'type':'CUSTOM','name':'n','value':0}", "{'type':'CUSTOM','name':'n'}",
      "CUSTOM: value: required" },
    { AGUI_STEP_STARTED, { RS }, SS("s"), "{'type':'STEP_STARTED'}", "STEP_STARTED: stepName: required" },
    { AGUI_STEP_FINISHED, { RS, SS("s") }, SF("s"), "{'type':'STEP_FINISHED'}", "STEP_FINISHED: stepName: required" },
    { AGUI_REASONING_START, { RS }, "{'type':'REASONING_START','messageId':'r'}", "{'type':'REASONING_START'}",
      "REASONING_START: messageId: required" },
    { AGUI_REASONING_MESSAGE_START, { RS }, "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'reasoning'}",
      "{'type':'REASONING_MESSAGE_START','messageId':'r'}", "REASONING_MESSAGE_START: role: required" },
    { AGUI_REASONING_MESSAGE_CONTENT, { RS, "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'reasoning'}" },
      "{'type':'REASONING_MESSAGE_CONTENT','messageId':'r','delta':'d'}",
      "{'type':'REASONING_MESSAGE_CONTENT','delta':'d'}", "REASONING_MESSAGE_CONTENT: messageId: required" },
    { AGUI_REASONING_MESSAGE_END, { RS, "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'reasoning'}" },
      "{'type':'REASONING_MESSAGE_END','messageId':'r'}", "{'type':'REASONING_MESSAGE_END'}",
      "REASONING_MESSAGE_END: messageId: required" },
    { AGUI_REASONING_MESSAGE_CHUNK, { RS }, "{'type':'REASONING_MESSAGE_CHUNK','messageId':'r'}",
      "{'type':'REASONING_MESSAGE_CHUNK','messageId':'r','delta':{}}",
      "REASONING_MESSAGE_CHUNK: delta: expected a string" },
    { AGUI_REASONING_END, { RS, "{'type':'REASONING_START','messageId':'r'}" },
      "{'type':'REASONING_END','messageId':'r'}", "{'type':'REASONING_END'}", "REASONING_END: messageId: required" },
    { AGUI_REASONING_ENCRYPTED_VALUE, { RS },
      "{'type':'REASONING_ENCRYPTED_VALUE','subtype':'tool-call','entityId':'c','encryptedValue':'e'}",
      "{'type':'REASONING_ENCRYPTED_VALUE','subtype':'tool-call','entityId':'c'}",
      "REASONING_ENCRYPTED_VALUE: encryptedValue: required" },
    { AGUI_SUBAGENT_STARTED, { RS }, "{'type':'SUBAGENT_STARTED','subagentRunId':'s','name':'n'}",
      "{'type':'SUBAGENT_STARTED','subagentRunId':'s'}", "SUBAGENT_STARTED: name: required" },
    { AGUI_SUBAGENT_FINISHED, { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s','name':'n'}" },
      "{'type':'SUBAGENT_FINISHED','subagentRunId':'s'}", "{'type':'SUBAGENT_FINISHED'}",
      "SUBAGENT_FINISHED: subagentRunId: required" },
    { AGUI_SUBAGENT_ERROR, { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s','name':'n'}" },
      "{'type':'SUBAGENT_ERROR','subagentRunId':'s','message':'m'}",
      "{'type':'SUBAGENT_ERROR','subagentRunId':'s'}", "SUBAGENT_ERROR: message: required" },
};

static void test_required_fields(void **state)
{
    (void)state;
    bool seen[AGUI_TYPE_COUNT] = { false };
    assert_int_equal(sizeof field_cases / sizeof field_cases[0], AGUI_TYPE_COUNT);
    for (size_t k = 0; k < sizeof field_cases / sizeof field_cases[0]; k++) {
        const field_case_t *c = &field_cases[k];
        const char *name = agui_type_name(c->type);
        seen[c->type] = true;
        validate_t *v = validate_new();
        char msg[VALIDATE_MSG_MAX];
        agui_type_t t;
        for (int i = 0; c->setup[i]; i++)
            if (feed(v, c->setup[i], NULL, msg))
                fail_msg("%s: setup %d: %s", name, i, msg);
        /* The broken one first: a schema violation changes nothing... */
        if (feed(v, c->missing, &t, msg) != -EPROTO)
            fail_msg("%s: missing field accepted", name);
        if (strcmp(msg, c->want))
            fail_msg("%s: got \"%s\", expected \"%s\"", name, msg, c->want);
        assert_int_equal(t, c->type);
        /* ...so the valid one still passes after it. */
        if (feed(v, c->valid, &t, msg))
            fail_msg("%s: valid event rejected: %s", name, msg);
        assert_int_equal(t, c->type);
        validate_free(v);
    }
    for (int i = 0; i < AGUI_TYPE_COUNT; i++)
        assert_true(seen[i]);
}

/* ---- stage 1: wrong types, nulls, enums, nested shapes ---------------------------- */

typedef struct bad_case {
    const char *ev;
    const char *want;   /* the whole message */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    /* Stage 1 decides on key bit sets and walks the table only when one fails:
     * the failure reported is still zod's first, in table order, and the last
     * of duplicate keys is the one checked. */
    { "{'type':'TEXT_MESSAGE_CONTENT','delta':5,'timestamp':'x'}",
      "TEXT_MESSAGE_CONTENT: timestamp: expected a safe integer" },
    { "{'type':'TEXT_MESSAGE_CONTENT','delta':5,'subagentRunId':7}",
      "TEXT_MESSAGE_CONTENT: subagentRunId: expected a string" },
    { "{'type':'TEXT_MESSAGE_CONTENT','delta':5}", "TEXT_MESSAGE_CONTENT: messageId: required" },
    { "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m','delta':'d','delta':5}",
      "TEXT_MESSAGE_CONTENT: delta: expected a string" },
    { "{'type':'TEXT_MESSAGE_START','role':'bot','messageId':'m','timestamp':1}",
      "TEXT_MESSAGE_START: role: expected one of developer, system, assistant, user" },
    { "{'type':'TEXT_MESSAGE_END','\\u006dessageId':'m','metadata':{},'rawEvent':5,'timestamp':-1.5}",
      "TEXT_MESSAGE_END: timestamp: expected a safe integer" },
    { "{'type':'TEXT_MESSAGE_END','timestamp':1,'rawEvent':{},'metadata':7}",
      "TEXT_MESSAGE_END: metadata: expected an object" },
    { "{'type':7,'type':'TEXT_MESSAGE_END'}", "TEXT_MESSAGE_END: messageId: required" },
    { "{'type':'TOOL_CALL_ARGS','toolCallId':'c','delta':5}", "TOOL_CALL_ARGS: delta: expected a string" },
    { "{'type':'TEXT_MESSAGE_START','messageId':null}", "TEXT_MESSAGE_START: messageId: expected a string" },
    { "{'type':'TEXT_MESSAGE_START','messageId':'m','role':'tool'}",
      "TEXT_MESSAGE_START: role: expected one of developer, system, assistant, user" },
    { "{'type':'TEXT_MESSAGE_START','messageId':'m','role':'user\\u0000'}",
      "TEXT_MESSAGE_START: role: expected one of developer, system, assistant, user" },
    { "{'type':'TEXT_MESSAGE_CHUNK','role':null}",
      "TEXT_MESSAGE_CHUNK: role: expected one of developer, system, assistant, user" },
    { "{'type':'TEXT_MESSAGE_END','messageId':'m','rawEvent':null}", "TEXT_MESSAGE_END: rawEvent: must not be null" },
    { "{'type':'TEXT_MESSAGE_END','messageId':'m','metadata':null}", "TEXT_MESSAGE_END: metadata: expected an object" },
    { "{'type':'TEXT_MESSAGE_END','messageId':'m','metadata':[]}", "TEXT_MESSAGE_END: metadata: expected an object" },
    { "{'type':'TEXT_MESSAGE_END','messageId':'m','subagentRunId':null}",
      "TEXT_MESSAGE_END: subagentRunId: expected a string" },
    { "{'type':'TEXT_MESSAGE_END','messageId':'m','timestamp':1.5}", "TEXT_MESSAGE_END: timestamp: expected a safe integer" },
    { "{'type':'TEXT_MESSAGE_END','messageId':'m','timestamp':'1'}", "TEXT_MESSAGE_END: timestamp: expected a safe integer" },
    { "{'type':'TEXT_MESSAGE_END','messageId':'m','timestamp':9007199254740992}",
      "TEXT_MESSAGE_END: timestamp: expected a safe integer" },
    { "{'type':'TEXT_MESSAGE_END','messageId':'m','timestamp':123456789012345678901234567890}",
      "TEXT_MESSAGE_END: timestamp: expected a safe integer" },
    { "{'type':'TOOL_CALL_START','toolCallId':'c','toolCallName':'f','parentMessageId':null}",
      "TOOL_CALL_START: parentMessageId: expected a string" },
    { "{'type':'TOOL_CALL_RESULT','messageId':'m','toolCallId':'c','content':'x','role':'assistant'}",
      "TOOL_CALL_RESULT: role: expected tool" },
    { "{'type':'TOOL_CALL_RESULT','messageId':'m','toolCallId':'c','content':[{'type':'text'}]}",
      "TOOL_CALL_RESULT: content[0].text: required" },
    { "{'type':'TOOL_CALL_RESULT','messageId':'m','toolCallId':'c','content':[{'type':'image','source':{'type':'data','value':'v'}}]}",
      "TOOL_CALL_RESULT: content[0].source.mimeType: required" },
    { "{'type':'TOOL_CALL_RESULT','messageId':'m','toolCallId':'c','content':[{'type':'gif'}]}",
      "TOOL_CALL_RESULT: content[0].type: expected one of text, image, audio, video, document" },
    { "{'type':'TOOL_CALL_RESULT','messageId':'m','toolCallId':'c','content':7}",
      "TOOL_CALL_RESULT: content: expected a string or an array" },
    { "{'type':'STATE_DELTA','delta':{}}", "STATE_DELTA: delta: expected an array" },
    { "{'type':'STATE_DELTA','delta':[{'op':'add','path':'/a'}]}", "STATE_DELTA: delta[0].value: required" },
    { "{'type':'STATE_DELTA','delta':[{'op':'copy','path':'/a'}]}", "STATE_DELTA: delta[0].from: required" },
    { "{'type':'STATE_DELTA','delta':[{'op':'remove','path':'a'}]}", "STATE_DELTA: delta[0].path: expected a JSON pointer" },
    { "{'type':'STATE_DELTA','delta':[{'op':'remove','path':'/a~2'}]}", "STATE_DELTA: delta[0].path: expected a JSON pointer" },
    { "{'type':'STATE_DELTA','delta':[{'op':'jump','path':''}]}",
      "STATE_DELTA: delta[0].op: expected one of add, remove, replace, move, copy, test" },
    { "{'type':'STATE_DELTA','delta':[1]}", "STATE_DELTA: delta[0]: expected an object" },
    { "{'type':'MESSAGES_SNAPSHOT','messages':[{'id':'m','role':'robot'}]}",
      "MESSAGES_SNAPSHOT: messages[0].role: expected one of developer, system, assistant, user, tool, activity, reasoning" },
    { "{'type':'MESSAGES_SNAPSHOT','messages':[{'id':'m','role':'user'}]}", "MESSAGES_SNAPSHOT: messages[0].content: required" },
    { "{'type':'MESSAGES_SNAPSHOT','messages':[{'id':'m','role':'assistant','subagentRunId':null}]}",
      "MESSAGES_SNAPSHOT: messages[0].subagentRunId: expected a string" },
    { "{'type':'MESSAGES_SNAPSHOT','messages':[{'id':'m','role':'assistant','toolCalls':[{'id':'c','type':'fn','function':{}}]}]}",
      "MESSAGES_SNAPSHOT: messages[0].toolCalls[0].type: expected function" },
    { "{'type':'MESSAGES_SNAPSHOT','messages':[{'id':'m','role':'activity','activityType':'a','content':[]}]}",
      "MESSAGES_SNAPSHOT: messages[0].content: expected an object" },
    { "{'type':'ACTIVITY_SNAPSHOT','messageId':'a','activityType':'p','content':{},'replace':'no'}",
      "ACTIVITY_SNAPSHOT: replace: expected a boolean" },
    { "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'assistant'}", "REASONING_MESSAGE_START: role: expected reasoning" },
    { "{'type':'REASONING_ENCRYPTED_VALUE','subtype':'span','entityId':'c','encryptedValue':'e'}",
      "REASONING_ENCRYPTED_VALUE: subtype: expected one of tool-call, message" },
    { "{'type':'RUN_STARTED','threadId':'t','runId':'r','input':{'threadId':'t','runId':'r'}}",
      "RUN_STARTED: input.messages: required" },
    { "{'type':'RUN_STARTED','threadId':'t','runId':'r','input':{'threadId':'t','runId':'r','messages':[],'forwardedProps':null}}",
      "RUN_STARTED: input.forwardedProps: must not be null" },
    { "{'type':'RUN_STARTED','threadId':'t','runId':'r','input':{'threadId':'t','runId':'r','messages':[],'resume':[{'interruptId':'i','status':'done'}]}}",
      "RUN_STARTED: input.resume[0].status: expected one of resolved, cancelled" },
    { "{'type':'RUN_FINISHED','threadId':'t','runId':'r','result':null}", "RUN_FINISHED: result: must not be null" },
    { "{'type':'RUN_FINISHED','threadId':'t','runId':'r','outcome':null}", "RUN_FINISHED: outcome: expected an object" },
    { "{'type':'RUN_FINISHED','threadId':'t','runId':'r','outcome':{'type':'interrupt','interrupts':[]}}",
      "RUN_FINISHED: outcome.interrupts: expected at least one item" },
    { "{'type':'RUN_FINISHED','threadId':'t','runId':'r','outcome':{'type':'interrupt','interrupts':[{'id':'i','reason':'r','subagentRunId':null}]}}",
      "RUN_FINISHED: outcome.interrupts[0].subagentRunId: expected a string" },
    { "{'type':'RUN_FINISHED','threadId':'t','runId':'r','outcome':{'type':'success','pendingToolCallIds':[1]}}",
      "RUN_FINISHED: outcome.pendingToolCallIds[0]: expected a string" },
    { "{'type':'RUN_FINISHED','threadId':'t','runId':'r','outcome':{'type':'done'}}",
      "RUN_FINISHED: outcome.type: expected one of success, interrupt, cancelled" },
    { "{'type':'RUN_FINISHED','threadId':'t','runId':'r','usage':[{'inputTokens':-1}]}",
      "RUN_FINISHED: usage[0].inputTokens: expected a safe integer >= 0" },
    { "{'type':'SUBAGENT_STARTED','subagentRunId':'s','name':'n','description':null}",
      "SUBAGENT_STARTED: description: expected a string" },
    { "{'type':'SUBAGENT_FINISHED','subagentRunId':'s','outcome':{'type':'interrupt'}}",
      "SUBAGENT_FINISHED: outcome.type: expected one of success, suspended" },
    { "{'type':'SUBAGENT_FINISHED','subagentRunId':'s','outcome':{'type':'suspended','interruptIds':null}}",
      "SUBAGENT_FINISHED: outcome.interruptIds: expected an array" },
    { "{'type':'SUBAGENT_FINISHED','subagentRunId':'s','outcome':{'type':'suspended','interruptIds':[2]}}",
      "SUBAGENT_FINISHED: outcome.interruptIds[0]: expected a string" },
    { "{'type':'SUBAGENT_ERROR','subagentRunId':'s','message':'m','code':null}", "SUBAGENT_ERROR: code: expected a string" },
};

static void test_bad_fields(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof bad_cases / sizeof bad_cases[0]; k++) {
        validate_t *v = validate_new();
        char msg[VALIDATE_MSG_MAX];
        agui_type_t t;
        if (feed(v, bad_cases[k].ev, &t, msg) != -EPROTO)
            fail_msg("case %zu accepted: %s", k, bad_cases[k].ev);
        if (strcmp(msg, bad_cases[k].want))
            fail_msg("case %zu: got \"%s\", expected \"%s\"", k, msg, bad_cases[k].want);
        assert_int_not_equal(t, AGUI_TYPE_COUNT);
        validate_free(v);
    }
}

/* Loose objects, numbers as JSON.parse reads them, nulls where they are allowed. */
static void test_accepted_shapes(void **state)
{
    (void)state;
    static const char *const ok[] = {
        RS,
        "{'type':'CUSTOM','name':'n','value':1,'extra':{'deep':[null]},'timestamp':1e3}",
        "{'type':'CUSTOM','name':'n','value':123456789012345678901234567890}",
        "{'type':'CUSTOM','name':'n','value':1,'timestamp':-9007199254740991}",
        "{'type':'CUSTOM','name':'n','value':1,'timestamp':2.0}",
        "{'type':'CUSTOM','name':'n','value':1,'rawEvent':false,'metadata':{}}",
        "{'type':'RAW','event':'x','name':'n','name':'dup'}",
        "{'type':'STATE_SNAPSHOT','snapshot':[1,'two',null]}",
        "{'type':'TEXT_MESSAGE_CHUNK'   ,  'messageId':'m\\u0000x','delta':'\\ud83d\\ude00'}   ",
        "{'type':'TOOL_CALL_RESULT','messageId':'tm','toolCallId':'c','content':[]}",
        /* U+0000 in keys, which JSON.parse reads (jansson does not) */
        "{'type':'CUSTOM','name':'k','value':{'\\u0000':1}}",
        "{'type':'STATE_SNAPSHOT','snapshot':{'a\\u0000':{'\\u0000\\u0000':[{'\\u0000':null}]}},'t\\u0000':1}",
        RF,
    };
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (feed(v, ok[i], NULL, msg))
            fail_msg("event %zu: %s", i, msg);
    validate_free(v);
}

static void test_not_an_event(void **state)
{
    (void)state;
    static const struct { const char *text; const char *want; } cases[] = {
        { "", "not JSON" },
        { "{'type':'RUN_STARTED',", "not JSON" },
        { "{'type':'RUN_STARTED'} x", "not JSON" },
        { "{'type':'RUN\xff'}", "not JSON" },
        { "{'type':'\\ud800'}", "not JSON" },
        { "[1,2]", "not a JSON object" },
        { "'RUN_STARTED'", "not a JSON object" },
        { "null", "not a JSON object" },
        { "{}", "type: required" },
        { "{'type':7}", "type: expected a string" },
        { "{'type':'THINKING_START'}", "unknown event type 'THINKING_START'" },
        { "{'type':'run_started'}", "unknown event type 'run_started'" },
        /* the type found by hash: near misses and the last of duplicates */
        { "{'type':'TEXT_MESSAGE_EN'}", "unknown event type 'TEXT_MESSAGE_EN'" },
        { "{'type':'TEXT_MESSAGE_END '}", "unknown event type 'TEXT_MESSAGE_END '" },
        { "{'type':'TEXT_MESSAGE_ENDS'}", "unknown event type 'TEXT_MESSAGE_ENDS'" },
        { "{'type':''}", "unknown event type ''" },
        { "{'type':'TEXT_MESSAGE_END','type':7,'messageId':'m'}", "type: expected a string" },
        { "{'Type':'RUN_STARTED'}", "type: required" },
        /* a \u0000 key is no error: the one after it is named */
        { "{'type':'CUSTOM','name':'k','value':{'\\u0000':1,}}",
          "not JSON (at byte 49): string or '}' expected near '}'" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        validate_t *v = validate_new();
        char msg[VALIDATE_MSG_MAX];
        agui_type_t t;
        if (feed(v, cases[k].text, &t, msg) != -EPROTO)
            fail_msg("case %zu accepted", k);
        if (!strstr(msg, cases[k].want))
            fail_msg("case %zu: got \"%s\", expected \"%s\"", k, msg, cases[k].want);
        assert_int_equal(t, AGUI_TYPE_COUNT);
        /* nothing changed: the stream can still start */
        assert_int_equal(feed(v, RS, NULL, msg), 0);
        validate_free(v);
    }
}

static void test_nesting(void **state)
{
    (void)state;
    char deep[512], ok[512], msg[VALIDATE_MSG_MAX];
    agui_type_t t;
    /* RAW.event nested: the event object itself is level 1 */
    int n = snprintf(ok, sizeof ok, "{\"type\":\"RAW\",\"event\":");
    for (int i = 0; i < VALIDATE_MAX_DEPTH - 1; i++)
        ok[n++] = '[';
    for (int i = 0; i < VALIDATE_MAX_DEPTH - 1; i++)
        ok[n++] = ']';
    ok[n++] = '}';
    ok[n] = '\0';
    memcpy(deep, ok, (size_t)n + 1);
    memmove(strchr(deep, '[') + 1, strchr(deep, '['), strlen(strchr(deep, '[')) + 1);
    memmove(strrchr(deep, ']') + 1, strrchr(deep, ']'), 2);
    validate_t *v = validate_new();
    assert_int_equal(feed(v, RS, NULL, msg), 0);
    assert_int_equal(validate_event(v, ok, strlen(ok), &t, msg), 0);
    assert_int_equal(validate_event(v, deep, strlen(deep), &t, msg), -EPROTO);
    assert_string_equal(msg, "not JSON: nesting deeper than 64");
    /* brackets inside strings do not count */
    char s[300];
    n = snprintf(s, sizeof s, "{\"type\":\"RAW\",\"event\":\"");
    for (int i = 0; i < 200; i++)
        s[n++] = '[';
    n += snprintf(s + n, sizeof s - (size_t)n, "\\\"\"}");
    assert_int_equal(validate_event(v, s, (size_t)n, &t, msg), 0);
    validate_free(v);
}

/* ---- stage 3: the sequence rules, each passing and failing --------------------------- */

static const scenario_t run_rules[] = {
    { "first event RUN_STARTED", { RS, RF, NULL }, -1, "" },
    { "first event RUN_ERROR", { RE, RS, RF, NULL }, -1, "" },
    { "first event other", { TMS("m"), NULL }, 0, "first event must be RUN_STARTED, got TEXT_MESSAGE_START" },
    { "first event chunk", { "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m','delta':'x'}", NULL }, 0,
      "first event must be RUN_STARTED, got TEXT_MESSAGE_CHUNK (as TEXT_MESSAGE_START)" },
    { "after RUN_FINISHED: RUN_ERROR ok", { RS, RF, RE, NULL }, -1, "" },
    { "after RUN_FINISHED: new run ok", { RS, RF, RS, TMS("m"), TME("m"), RF, NULL }, -1, "" },
    { "after RUN_FINISHED: other", { RS, RF, TMS("m"), NULL }, 2,
      "TEXT_MESSAGE_START after RUN_FINISHED: only RUN_STARTED or RUN_ERROR may follow" },
    { "after RUN_FINISHED: RUN_FINISHED", { RS, RF, RF, NULL }, 2, "RUN_FINISHED after RUN_FINISHED" },
    { "after RUN_ERROR: new run ok", { RS, RE, RS, RF, NULL }, -1, "" },
    { "after RUN_ERROR: other", { RS, RE, "{'type':'CUSTOM','name':'n','value':1}", NULL }, 2,
      "CUSTOM after RUN_ERROR: only RUN_STARTED may follow" },
    { "after RUN_ERROR: RUN_ERROR", { RS, RE, RE, NULL }, 2, "RUN_ERROR after RUN_ERROR" },
    { "RUN_STARTED while active", { RS, RS, NULL }, 1, "RUN_STARTED while a run is still active" },
    { "RUN_ERROR with open entities", { RS, TMS("m"), TCS("c"), SS("s"), RE, NULL }, -1, "" },
};

static const scenario_t text_rules[] = {
    { "text ok", { RS, TMS("m"), TMC("m"), TMS("n"), TMC("n"), TME("m"), TME("n"), RF, NULL }, -1, "" },
    { "text restart after end", { RS, TMS("m"), TME("m"), TMS("m"), TME("m"), RF, NULL }, -1, "" },
    { "text double start", { RS, TMS("m"), TMS("m"), NULL }, 2,
      "TEXT_MESSAGE_START for message 'm' which is already in progress" },
    { "text content unstarted", { RS, TMC("m"), NULL }, 1,
      "TEXT_MESSAGE_CONTENT for message 'm' which was not started" },
    { "text content after end", { RS, TMS("m"), TME("m"), TMC("m"), NULL }, 3,
      "TEXT_MESSAGE_CONTENT for message 'm' which is not in progress" },
    { "text end unstarted", { RS, TMS("m"), TME("n"), NULL }, 2,
      "TEXT_MESSAGE_END for message 'n' which was not started" },
    { "text end twice", { RS, TMS("m"), TME("m"), TME("m"), NULL }, 3,
      "TEXT_MESSAGE_END for message 'm' which is not in progress" },
    { "RUN_FINISHED with open message", { RS, TMS("m1"), TMS("m2"), RF, NULL }, 3,
      "RUN_FINISHED while text messages are still active: 'm1', 'm2'" },
    { "new run forgets messages", { RS, TMS("m"), RE, RS, TMC("m"), NULL }, 4,
      "TEXT_MESSAGE_CONTENT for message 'm' which was not started" },
};

static const scenario_t tool_rules[] = {
    { "tool ok", { RS, TCS("c"), TCA("c"), TCA("c"), TCE("c"), TCS("c"), TCE("c"), RF, NULL }, -1, "" },
    { "tool double start", { RS, TCS("c"), TCS("c"), NULL }, 2,
      "TOOL_CALL_START for tool call 'c' which is already in progress" },
    { "tool args unstarted", { RS, TCA("c"), NULL }, 1, "TOOL_CALL_ARGS for tool call 'c' which was not started" },
    { "tool end twice", { RS, TCS("c"), TCE("c"), TCE("c"), NULL }, 3,
      "TOOL_CALL_END for tool call 'c' which is not in progress" },
    { "RUN_FINISHED with open tool call", { RS, TCS("c"), RF, NULL }, 2,
      "RUN_FINISHED while tool calls are still active: 'c'" },
    { "tool and message ids apart", { RS, TMS("x"), TCS("x"), TME("x"), TCE("x"), RF, NULL }, -1, "" },
};

static const scenario_t step_rules[] = {
    { "steps ok", { RS, SS("a"), SS("b"), SF("a"), SF("b"), SS("a"), SF("a"), RF, NULL }, -1, "" },
    { "step twice", { RS, SS("a"), SS("a"), NULL }, 2, "STEP_STARTED for step 'a' which is already active" },
    { "step not started", { RS, SF("a"), NULL }, 1, "STEP_FINISHED for step 'a' which was not started" },
    { "RUN_FINISHED with open steps", { RS, SS("a"), "{'type':'STEP_STARTED','stepName':'b','subagentRunId':'s1'}", RF, NULL },
      3, "RUN_FINISHED while steps are still active: 'a', 'b' (subagent 's1')" },
    { "same step name, parent and subagent", { RS, SS("tools"),
      "{'type':'STEP_STARTED','stepName':'tools','subagentRunId':'s1'}",
      "{'type':'STEP_FINISHED','stepName':'tools','subagentRunId':'s1'}", SF("tools"), RF, NULL }, -1, "" },
    { "subagent step twice", { RS, "{'type':'STEP_STARTED','stepName':'a','subagentRunId':'s1'}",
      "{'type':'STEP_STARTED','stepName':'a','subagentRunId':'s1'}", NULL }, 2,
      "STEP_STARTED for step 'a' which is already active in subagent 's1'" },
    { "step closed by the wrong owner", { RS, SS("a"), "{'type':'STEP_FINISHED','stepName':'a','subagentRunId':'s1'}", NULL },
      2, "STEP_FINISHED for step 'a' by subagent 's1': it is open under the parent agent" },
    { "subagent step closed untagged", { RS, "{'type':'STEP_STARTED','stepName':'a','subagentRunId':''}", SF("a"), NULL },
      2, "STEP_FINISHED for step 'a' by the parent agent: it is open under subagent ''" },
};

static const scenario_t reasoning_rules[] = {
    { "reasoning ok", { RS, "{'type':'REASONING_START','messageId':'r'}",
      "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'reasoning'}",
      "{'type':'REASONING_MESSAGE_CONTENT','messageId':'r','delta':'d'}",
      "{'type':'REASONING_MESSAGE_END','messageId':'r'}", "{'type':'REASONING_END','messageId':'r'}", RF, NULL }, -1, "" },
    { "span twice", { RS, "{'type':'REASONING_START','messageId':'r'}", "{'type':'REASONING_START','messageId':'r'}", NULL },
      2, "REASONING_START for reasoning span 'r' which is already in progress" },
    { "reasoning message twice", { RS, "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'reasoning'}",
      "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'reasoning'}", NULL },
      2, "REASONING_MESSAGE_START for reasoning message 'r' which is already in progress" },
    { "reasoning content without message", { RS, "{'type':'REASONING_START','messageId':'r'}",
      "{'type':'REASONING_MESSAGE_CONTENT','messageId':'r','delta':'d'}", NULL },
      2, "REASONING_MESSAGE_CONTENT for reasoning message 'r' which is not in progress" },
    { "span end unstarted", { RS, "{'type':'REASONING_END','messageId':'r'}", NULL },
      1, "REASONING_END for reasoning span 'r' which was not started" },
    { "RUN_FINISHED with open reasoning message", { RS,
      "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'reasoning'}", RF, NULL },
      2, "RUN_FINISHED while reasoning messages are still active: 'r'" },
    { "RUN_FINISHED with open span", { RS, "{'type':'REASONING_START','messageId':'r'}", RF, NULL },
      2, "RUN_FINISHED while reasoning spans are still active: 'r'" },
};

static const scenario_t subagent_rules[] = {
    { "subagents ok", { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'a'}",
      "{'type':'SUBAGENT_STARTED','subagentRunId':'s2','name':'b','parentSubagentRunId':'s1'}",
      "{'type':'SUBAGENT_ERROR','subagentRunId':'s2','message':'x'}",
      "{'type':'SUBAGENT_FINISHED','subagentRunId':'s1'}",
      "{'type':'SUBAGENT_STARTED','subagentRunId':'s3','name':'c','parentSubagentRunId':'s2'}",
      "{'type':'SUBAGENT_FINISHED','subagentRunId':'s3'}", RF, NULL }, -1, "" },
    { "subagent twice", { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'a'}",
      "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'a'}", NULL }, 2,
      "SUBAGENT_STARTED for subagent 's1' which is already active" },
    { "subagent id reused", { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'a'}",
      "{'type':'SUBAGENT_FINISHED','subagentRunId':'s1'}",
      "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'a'}", NULL }, 3,
      "SUBAGENT_STARTED for subagent 's1' which already finished in this run" },
    { "subagent id reused in a new run", { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'a'}",
      "{'type':'SUBAGENT_FINISHED','subagentRunId':'s1'}", RF, RS,
      "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'a'}", NULL }, -1, "" },
    { "unknown parent", { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s2','name':'b','parentSubagentRunId':'s1'}", NULL },
      1, "SUBAGENT_STARTED: parentSubagentRunId 's1' was not started in this run" },
    { "finish unstarted", { RS, "{'type':'SUBAGENT_FINISHED','subagentRunId':'s1'}", NULL }, 1,
      "SUBAGENT_FINISHED for subagent 's1' which is not active" },
    { "error after finish", { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'a'}",
      "{'type':'SUBAGENT_FINISHED','subagentRunId':'s1'}", "{'type':'SUBAGENT_ERROR','subagentRunId':'s1','message':'m'}", NULL },
      3, "SUBAGENT_ERROR for subagent 's1' which is not active" },
    { "RUN_FINISHED with active subagent", { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'a'}", RF, NULL },
      2, "RUN_FINISHED while subagents are still active: 's1'" },
};

/* Attribution: a tagged continuation must agree with its opener's owner. */
static const scenario_t owner_rules[] = {
    { "tagged stream ok", { RS, "{'type':'TEXT_MESSAGE_START','messageId':'m','subagentRunId':'s1'}",
      "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m','delta':'x','subagentRunId':'s1'}",
      "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m','delta':'x'}", TME("m"), RF, NULL }, -1, "" },
    { "content tag differs", { RS, "{'type':'TEXT_MESSAGE_START','messageId':'m','subagentRunId':'s1'}",
      "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m','delta':'x','subagentRunId':'s2'}", NULL }, 2,
      "TEXT_MESSAGE_CONTENT: subagentRunId 's2' does not match the owner of message 'm' (subagent 's1')" },
    { "parent-owned message, tagged end", { RS, TMS("m"),
      "{'type':'TEXT_MESSAGE_END','messageId':'m','subagentRunId':'s1'}", NULL }, 2,
      "TEXT_MESSAGE_END: subagentRunId 's1' does not match the owner of message 'm' (the parent agent)" },
    { "reopen by another owner", { RS, TMS("m"), TME("m"),
      "{'type':'TEXT_MESSAGE_START','messageId':'m','subagentRunId':'s1'}", NULL }, 3,
      "does not match the owner of message 'm' (the parent agent)" },
    { "empty tag is a subagent", { RS, TMS("m"), "{'type':'TEXT_MESSAGE_END','messageId':'m','subagentRunId':''}", NULL },
      2, "subagentRunId '' does not match the owner of message 'm'" },
    { "tool args tag differs", { RS, "{'type':'TOOL_CALL_START','toolCallId':'c','toolCallName':'f','subagentRunId':'s1'}",
      "{'type':'TOOL_CALL_ARGS','toolCallId':'c','delta':'','subagentRunId':'s2'}", NULL }, 2,
      "TOOL_CALL_ARGS: subagentRunId 's2' does not match the owner of tool call 'c' (subagent 's1')" },
    { "tool inherits its parent message", { RS, "{'type':'TEXT_MESSAGE_START','messageId':'m','subagentRunId':'s1'}",
      "{'type':'TOOL_CALL_START','toolCallId':'c','toolCallName':'f','parentMessageId':'m'}",
      "{'type':'TOOL_CALL_ARGS','toolCallId':'c','delta':'','subagentRunId':'s2'}", NULL }, 3,
      "does not match the owner of tool call 'c' (subagent 's1')" },
    { "tool tag against parent message", { RS, TMS("m"),
      "{'type':'TOOL_CALL_START','toolCallId':'c','toolCallName':'f','parentMessageId':'m','subagentRunId':'s1'}", NULL }, 2,
      "TOOL_CALL_START: subagentRunId 's1' does not match the owner of parent message 'm' (the parent agent)" },
    { "tool reopened under another parent", { RS, TCS("c"), TCE("c"),
      "{'type':'TEXT_MESSAGE_START','messageId':'m','subagentRunId':'s1'}",
      "{'type':'TOOL_CALL_START','toolCallId':'c','toolCallName':'f','parentMessageId':'m'}", NULL }, 4,
      "TOOL_CALL_START: tool call 'c' is owned by the parent agent but its parent message 'm' by subagent 's1'" },
    { "reasoning owner shared by span and message", { RS,
      "{'type':'REASONING_START','messageId':'r','subagentRunId':'s1'}",
      "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'reasoning','subagentRunId':'s2'}", NULL }, 2,
      "REASONING_MESSAGE_START: subagentRunId 's2' does not match the owner of reasoning message 'r' (subagent 's1')" },
    { "encrypted value for a tool call", { RS, TCS("c"), TCE("c"),
      "{'type':'REASONING_ENCRYPTED_VALUE','subtype':'tool-call','entityId':'c','encryptedValue':'e','subagentRunId':'s1'}", NULL },
      3, "REASONING_ENCRYPTED_VALUE: subagentRunId 's1' does not match the owner of tool call 'c' (the parent agent)" },
    { "encrypted value for a reasoning message", { RS,
      "{'type':'REASONING_MESSAGE_START','messageId':'r','role':'reasoning','subagentRunId':'s1'}",
      "{'type':'REASONING_ENCRYPTED_VALUE','subtype':'message','entityId':'r','encryptedValue':'e','subagentRunId':'s2'}", NULL },
      2, "does not match the owner of message 'r' (subagent 's1')" },
    { "encrypted value for an unknown id", { RS,
      "{'type':'REASONING_ENCRYPTED_VALUE','subtype':'message','entityId':'zz','encryptedValue':'e','subagentRunId':'s2'}", RF, NULL },
      -1, "" },
    { "activity delta owner", { RS, "{'type':'ACTIVITY_SNAPSHOT','messageId':'a','activityType':'p','content':{},'subagentRunId':'s1'}",
      "{'type':'ACTIVITY_DELTA','messageId':'a','activityType':'p','patch':[],'subagentRunId':'s2'}", NULL }, 2,
      "ACTIVITY_DELTA: subagentRunId 's2' does not match the owner of activity 'a' (subagent 's1')" },
    { "activity replace:false keeps the owner", { RS,
      "{'type':'ACTIVITY_SNAPSHOT','messageId':'a','activityType':'p','content':{},'subagentRunId':'s1'}",
      "{'type':'ACTIVITY_SNAPSHOT','messageId':'a','activityType':'p','content':{},'subagentRunId':'s2','replace':false}",
      "{'type':'ACTIVITY_DELTA','messageId':'a','activityType':'p','patch':[],'subagentRunId':'s2'}", NULL }, 3,
      "owner of activity 'a' (subagent 's1')" },
    { "activity replace re-owns", { RS,
      "{'type':'ACTIVITY_SNAPSHOT','messageId':'a','activityType':'p','content':{},'subagentRunId':'s1'}",
      "{'type':'ACTIVITY_SNAPSHOT','messageId':'a','activityType':'p','content':{},'subagentRunId':'s2'}",
      "{'type':'ACTIVITY_DELTA','messageId':'a','activityType':'p','patch':[],'subagentRunId':'s2'}", RF, NULL }, -1, "" },
    { "tool result mints a message", { RS,
      "{'type':'TOOL_CALL_RESULT','messageId':'tm','toolCallId':'c','content':'x','subagentRunId':'s1'}",
      "{'type':'TEXT_MESSAGE_START','messageId':'tm','subagentRunId':'s2'}", NULL }, 2,
      "owner of message 'tm' (subagent 's1')" },
    { "snapshot owners are authoritative", { RS, TMS("m"), TME("m"),
      "{'type':'MESSAGES_SNAPSHOT','messages':[{'id':'m','role':'assistant','subagentRunId':'s1',"
      "'toolCalls':[{'id':'c','type':'function','function':{'name':'f','arguments':''}}]}]}",
      "{'type':'TEXT_MESSAGE_START','messageId':'m','subagentRunId':'s1'}", TME("m"),
      "{'type':'TOOL_CALL_START','toolCallId':'c','toolCallName':'f','subagentRunId':'s2'}", NULL }, 6,
      "owner of tool call 'c' (subagent 's1')" },
    { "snapshot reasoning bucket", { RS,
      "{'type':'MESSAGES_SNAPSHOT','messages':[{'id':'r','role':'reasoning','content':'x','subagentRunId':'s1'}]}",
      "{'type':'TEXT_MESSAGE_START','messageId':'r','subagentRunId':'s2'}", TME("r"),
      "{'type':'REASONING_START','messageId':'r','subagentRunId':'s2'}", NULL }, 4,
      "owner of reasoning message 'r' (subagent 's1')" },
    { "input echo seeds owners", { "{'type':'RUN_STARTED','threadId':'t','runId':'r','input':{'threadId':'t','runId':'r',"
      "'messages':[{'id':'u','role':'user','content':'hi','subagentRunId':'s1'}]}}",
      "{'type':'TEXT_MESSAGE_START','messageId':'u','subagentRunId':'s2'}", NULL }, 1,
      "owner of message 'u' (subagent 's1')" },
    { "run-scoped events ignore subagentRunId", { "{'type':'RUN_STARTED','threadId':'t','runId':'r','subagentRunId':null}",
      "{'type':'MESSAGES_SNAPSHOT','messages':[],'subagentRunId':5}",
      "{'type':'RUN_FINISHED','threadId':'t','runId':'r','subagentRunId':null}", NULL }, -1, "" },
};

/* Chunks expand into START / CONTENT / END per lane, as transformChunks does. */
static const scenario_t chunk_rules[] = {
    { "text chunks ok", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m','delta':'a','role':'user'}",
      "{'type':'TEXT_MESSAGE_CHUNK','delta':'b'}", "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m','delta':'c','role':'user'}",
      "{'type':'TEXT_MESSAGE_CHUNK','messageId':'n','delta':'d'}", RF, NULL }, -1, "" },
    { "chunk message closed by an explicit event", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m','delta':'a'}",
      TME("m"), NULL }, 2, "TEXT_MESSAGE_END for message 'm' which is not in progress" },
    { "chunk reopens an explicit message", { RS, TMS("m"), "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m','delta':'a'}", NULL },
      2, "TEXT_MESSAGE_CHUNK (as TEXT_MESSAGE_START) for message 'm' which is already in progress" },
    { "first chunk without id", { RS, "{'type':'TEXT_MESSAGE_CHUNK','delta':'a'}", NULL }, 1,
      "TEXT_MESSAGE_CHUNK: the first chunk must have a messageId" },
    { "first tool chunk without name", { RS, "{'type':'TOOL_CALL_CHUNK','toolCallId':'c','delta':'a'}", NULL }, 1,
      "TOOL_CALL_CHUNK: the first chunk must have a toolCallName" },
    { "tool chunks ok", { RS, "{'type':'TOOL_CALL_CHUNK','toolCallId':'c','toolCallName':'f','parentMessageId':'m'}",
      "{'type':'TOOL_CALL_CHUNK','delta':'{','toolCallName':'f'}", "{'type':'TOOL_CALL_CHUNK','toolCallId':'c','delta':'}'}",
      "{'type':'TOOL_CALL_RESULT','messageId':'tm','toolCallId':'c','content':'x'}", RF, NULL }, -1, "" },
    { "tool chunk name differs", { RS, "{'type':'TOOL_CALL_CHUNK','toolCallId':'c','toolCallName':'f'}",
      "{'type':'TOOL_CALL_CHUNK','toolCallName':'g'}", NULL }, 2,
      "TOOL_CALL_CHUNK for tool call 'c': toolCallName 'g' does not match the open stream's 'f'" },
    { "text chunk role differs", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m','delta':'a'}",
      "{'type':'TEXT_MESSAGE_CHUNK','delta':'b','role':'user'}", NULL }, 2,
      "role 'user' does not match the open stream's 'assistant'" },
    { "text chunk name added", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m','delta':'a'}",
      "{'type':'TEXT_MESSAGE_CHUNK','delta':'b','name':'x'}", NULL }, 2,
      "name 'x' does not match the open stream's (absent)" },
    { "lanes per subagent", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'a','delta':'1','subagentRunId':'s1'}",
      "{'type':'TEXT_MESSAGE_CHUNK','messageId':'b','delta':'1','subagentRunId':'s2'}",
      "{'type':'TEXT_MESSAGE_CHUNK','delta':'2','subagentRunId':'s1'}",
      "{'type':'TEXT_MESSAGE_CHUNK','messageId':'b','delta':'2'}", RF, NULL }, -1, "" },
    { "ambiguous continuation", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'a','delta':'1','subagentRunId':'s1'}",
      "{'type':'TEXT_MESSAGE_CHUNK','messageId':'b','delta':'1','subagentRunId':'s2'}",
      "{'type':'TEXT_MESSAGE_CHUNK','delta':'2'}", NULL }, 3,
      "TEXT_MESSAGE_CHUNK without messageId or subagentRunId is ambiguous: 2 subagents have an open message" },
    { "continuation tag against holder", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'a','delta':'1','subagentRunId':'s1'}",
      "{'type':'TEXT_MESSAGE_CHUNK','messageId':'a','delta':'2','subagentRunId':'s2'}", NULL }, 2,
      "TEXT_MESSAGE_CHUNK for message 'a': subagentRunId 's2' does not match the open stream's owner (subagent 's1')" },
    { "subagent end closes its lane", { RS, "{'type':'SUBAGENT_STARTED','subagentRunId':'s1','name':'n'}",
      "{'type':'TEXT_MESSAGE_CHUNK','messageId':'a','delta':'1','subagentRunId':'s1'}",
      "{'type':'SUBAGENT_FINISHED','subagentRunId':'s1'}", TMS("a"), TME("a"), RF, NULL }, -1, "" },
    { "explicit end closes the parent lane first", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'a','delta':'1'}",
      TMS("a"), TMC("a"), TME("a"), RF, NULL }, -1, "" },
    { "a lane's close fails", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'a','delta':'1','subagentRunId':'s1'}",
      "{'type':'TEXT_MESSAGE_END','messageId':'a'}", "{'type':'STEP_STARTED','stepName':'x','subagentRunId':'s1'}", NULL }, 3,
      "STEP_STARTED (as TEXT_MESSAGE_END) for message 'a' which is not in progress" },
    { "metadata-only chunk continues", { RS, "{'type':'REASONING_MESSAGE_CHUNK','messageId':'r','delta':'a'}",
      "{'type':'REASONING_MESSAGE_CHUNK','metadata':{'finish':'stop'}}", RF, NULL }, -1, "" },
    { "chunk after RUN_FINISHED", { RS, RF, "{'type':'TOOL_CALL_CHUNK','toolCallId':'c','toolCallName':'f'}", NULL }, 2,
      "TOOL_CALL_CHUNK (as TOOL_CALL_START) after RUN_FINISHED" },
    { "empty continuation does nothing", { RS, "{'type':'TEXT_MESSAGE_CHUNK','messageId':'m'}",
      "{'type':'TEXT_MESSAGE_CHUNK'}", RF, NULL }, -1, "" },
};

static void test_run_rules(void **state) { (void)state; RUN(run_rules); }
static void test_text_rules(void **state) { (void)state; RUN(text_rules); }
static void test_tool_rules(void **state) { (void)state; RUN(tool_rules); }
static void test_step_rules(void **state) { (void)state; RUN(step_rules); }
static void test_reasoning_rules(void **state) { (void)state; RUN(reasoning_rules); }
static void test_subagent_rules(void **state) { (void)state; RUN(subagent_rules); }
static void test_owner_rules(void **state) { (void)state; RUN(owner_rules); }
static void test_chunk_rules(void **state) { (void)state; RUN(chunk_rules); }

/* Two runs on one stream, and what validate_run_closed says along the way. */
static void test_two_runs_and_closed(void **state)
{
    (void)state;
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX];
    static const struct { const char *ev; bool closed; } steps[] = {
        { RS, false }, { TMS("m"), false }, { TME("m"), false }, { RF, true },
        { RE, true }, { RS, false }, { TMS("m"), false }, { RE, true },
        { RS, false }, { SS("s"), false }, { SF("s"), false }, { RF, true },
    };
    assert_false(validate_run_closed(v));
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (feed(v, steps[i].ev, NULL, msg))
            fail_msg("event %zu: %s", i, msg);
        assert_int_equal(validate_run_closed(v), steps[i].closed);
    }
    validate_free(v);
}

/* A sequence violation is final; a schema violation is not. */
static void test_failure_is_final(void **state)
{
    (void)state;
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX];
    agui_type_t t;
    assert_int_equal(feed(v, RS, NULL, msg), 0);
    assert_int_equal(feed(v, "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m'}", NULL, msg), -EPROTO);
    assert_int_equal(feed(v, TMS("m"), NULL, msg), 0);
    assert_int_equal(feed(v, TMS("m"), NULL, msg), -EPROTO);
    assert_false(validate_run_closed(v));
    assert_int_equal(feed(v, TME("m"), &t, msg), -EPROTO);
    assert_int_equal(t, AGUI_TEXT_MESSAGE_END);
    assert_string_equal(msg, "stream already failed: TEXT_MESSAGE_START for message 'm' which is already in progress");
    assert_int_equal(feed(v, RE, NULL, msg), -EPROTO);
    assert_false(validate_run_closed(v));
    validate_free(v);
}

/* Ids in messages: quoted, non-ASCII as '?', long ones cut. */
static void test_message_hygiene(void **state)
{
    (void)state;
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX];
    assert_int_equal(feed(v, RS, NULL, msg), 0);
    assert_int_equal(feed(v, "{'type':'TEXT_MESSAGE_END','messageId':'\xc3\xa9\\n\\u0000x'}", NULL, msg), -EPROTO);
    assert_string_equal(msg, "TEXT_MESSAGE_END for message '????x' which was not started");
    validate_free(v);

    v = validate_new();
    char ev[2200];
    snprintf(ev, sizeof ev, "{\"type\":\"TOOL_CALL_END\",\"toolCallId\":\"%01000d\",\"subagentRunId\":\"%01000d\"}", 1, 2);
    agui_type_t t;
    assert_int_equal(feed(v, RS, NULL, msg), 0);
    assert_int_equal(validate_event(v, ev, strlen(ev), &t, msg), -EPROTO);
    check_msg(msg);
    assert_non_null(strstr(msg, "'00000000000000000000000000000000...'"));
    validate_free(v);
}

static void test_limits(void **state)
{
    (void)state;
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX], ev[128];
    agui_type_t t;
    assert_int_equal(feed(v, RS, NULL, msg), 0);
    for (int i = 0; i < VALIDATE_MAX_OPEN; i++) {
        int n = snprintf(ev, sizeof ev, "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m%d\"}", i);
        assert_int_equal(validate_event(v, ev, (size_t)n, &t, msg), 0);
    }
    int n = snprintf(ev, sizeof ev, "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"x\"}");
    assert_int_equal(validate_event(v, ev, (size_t)n, &t, msg), -EPROTO);
    assert_string_equal(msg, "too many open text messages (limit 1024)");
    validate_free(v);

    /* ids remembered per run: closed messages count too, until the next run */
    v = validate_new();
    assert_int_equal(feed(v, RS, NULL, msg), 0);
    int i;
    for (i = 0; i < VALIDATE_MAX_IDS + 1; i++) {
        n = snprintf(ev, sizeof ev, "{\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m%d\",\"toolCallId\":\"c\",\"content\":\"\"}", i);
        if (validate_event(v, ev, (size_t)n, &t, msg))
            break;
    }
    assert_int_equal(i, VALIDATE_MAX_IDS);
    assert_string_equal(msg, "too many ids in one run (limit 16384)");
    validate_free(v);
}

/* The same run again and again on one stream: each run's ids are forgotten. */
static void test_runs_reset(void **state)
{
    (void)state;
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX], ev[128];
    agui_type_t t;
    for (int run = 0; run < 3; run++) {
        assert_int_equal(feed(v, RS, NULL, msg), 0);
        for (int i = 0; i < VALIDATE_MAX_IDS - 10; i++) {
            int n = snprintf(ev, sizeof ev, "{\"type\":\"TOOL_CALL_RESULT\",\"messageId\":\"m%d\",\"toolCallId\":\"c\",\"content\":\"\"}", i);
            assert_int_equal(validate_event(v, ev, (size_t)n, &t, msg), 0);
        }
        assert_int_equal(feed(v, RF, NULL, msg), 0);
    }
    validate_free(v);
}

/* ---- the parse arena ------------------------------------------------------------ */

/* A snapshot far larger than the arena: the tree spills to malloc and must be
 * freed (LSan would report it otherwise). */
static void test_spill(void **state)
{
    (void)state;
    size_t cap = 600000, n = 0;
    char *ev = malloc(cap);
    assert_non_null(ev);
    n += (size_t)snprintf(ev + n, cap - n, "{\"type\":\"MESSAGES_SNAPSHOT\",\"messages\":[");
    for (int i = 0; i < 5000; i++)
        n += (size_t)snprintf(ev + n, cap - n, "%s{\"id\":\"m%d\",\"role\":\"user\",\"content\":\"hello %d\"}",
                              i ? "," : "", i, i);
    n += (size_t)snprintf(ev + n, cap - n, "]}");
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX];
    agui_type_t t;
    assert_int_equal(feed(v, RS, NULL, msg), 0);
    for (int k = 0; k < 3; k++)
        assert_int_equal(validate_event(v, ev, n, &t, msg), 0);
    /* a failing spilled event too */
    memcpy(ev + n - 4, "1}]}", 4);
    assert_int_equal(validate_event(v, ev, n, &t, msg), -EPROTO);
    assert_int_equal(feed(v, RF, NULL, msg), 0);
    validate_free(v);
    free(ev);
}

/* jansson trees made outside validate_event, before and after the hooks, are
 * malloc'd and freed normally; one can be used while validating. */
static void test_outside_trees(void **state)
{
    (void)state;
    json_t *before = json_pack("{s:[i,i,s]}", "a", 1, 2, "x");   /* hooks may be in already */
    validate_init();
    json_t *after = json_loads("{\"k\":[1,2,{\"z\":\"y\"}]}", 0, NULL);
    assert_non_null(before);
    assert_non_null(after);
    validate_t *v = validate_new();
    char msg[VALIDATE_MSG_MAX];
    assert_int_equal(feed(v, RS, NULL, msg), 0);
    json_object_set_new(after, "n", json_integer(3));
    assert_int_equal(feed(v, TMS("m"), NULL, msg), 0);
    json_decref(before);
    assert_int_equal(json_integer_value(json_object_get(after, "n")), 3);
    json_decref(after);
    validate_free(v);
}

static void *thread_body(void *arg)
{
    int id = *(int *)arg;
    char msg[VALIDATE_MSG_MAX], ev[160];
    agui_type_t t;
    for (int round = 0; round < 20; round++) {
        validate_t *v = validate_new();
        if (!v)
            return (void *)1;
        int n = snprintf(ev, sizeof ev, "{\"type\":\"RUN_STARTED\",\"threadId\":\"t%d\",\"runId\":\"r\"}", id);
        int bad = validate_event(v, ev, (size_t)n, &t, msg);
        n = snprintf(ev, sizeof ev, "{\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m%d\"}", id);
        bad |= validate_event(v, ev, (size_t)n, &t, msg);
        for (int i = 0; i < 50; i++) {
            n = snprintf(ev, sizeof ev, "{\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m%d\",\"delta\":\"%d\"}", id, i);
            bad |= validate_event(v, ev, (size_t)n, &t, msg);
            /* jansson on this thread outside validate_event: plain malloc */
            json_t *j = json_loads("[1,{\"a\":\"b\"}]", 0, NULL);
            bad |= !j;
            json_decref(j);
        }
        n = snprintf(ev, sizeof ev, "{\"type\":\"TEXT_MESSAGE_END\",\"messageId\":\"m%d\"}", id);
        bad |= validate_event(v, ev, (size_t)n, &t, msg);
        n = snprintf(ev, sizeof ev, "{\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\"}");
        bad |= validate_event(v, ev, (size_t)n, &t, msg);
        bad |= !validate_run_closed(v);
        validate_free(v);
        if (bad)
            return (void *)1;
    }
    return NULL;
}

/* Validators on several threads at once, each with its own arena, freed when
 * the thread exits (LSan checks that). */
static void test_threads(void **state)
{
    (void)state;
    pthread_t th[4];
    int ids[4];
    for (int i = 0; i < 4; i++) {
        ids[i] = i;
        assert_int_equal(pthread_create(&th[i], NULL, thread_body, &ids[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret;
        assert_int_equal(pthread_join(th[i], &ret), 0);
        assert_null(ret);
    }
}

/* validate_event's shortcut for the usual shape of TEXT_MESSAGE_CONTENT and
 * TOOL_CALL_ARGS gives the tape path's verdict, type and message on each event
 * of a stream that goes in and out of that shape, valid and not. */
static void test_fast_shape_same_verdicts(void **state)
{
    (void)state;
    static const char *const evs[] = {
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'before start'}",   /* fails: not started */
        NULL,                                                                         /* a new pair of validators */
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TEXT_MESSAGE_START','messageId':'m1','role':'assistant'}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'plain '}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'esc \\'q\\' \\\\ \\n \\u00e9 \\ud83d\\ude00'}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'utf-8 \xc3\xa9 \xf0\x9f\x98\x80'}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':''}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m\\u0031','delta':'escaped id'}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'trailing space'} ",
        "{'type':'TEXT_MESSAGE_CONTENT', 'messageId':'m1','delta':'a space'}",
        "{'type':'TEXT_MESSAGE_CONTENT','delta':'other order','messageId':'m1'}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'more','timestamp':1}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':5}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'bad \xff utf-8'}",
        "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'unterminated}",
        NULL,
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TOOL_CALL_START','toolCallId':'tc','toolCallName':'f'}",
        "{'type':'TOOL_CALL_ARGS','toolCallId':'tc','delta':'{\\'a\\':1}'}",
        "{'type':'TOOL_CALL_ARGS','toolCallId':'tc2','delta':'unknown call'}",   /* fails */
        "{'type':'TOOL_CALL_ARGS','toolCallId':'tc','delta':'after a failure'}",
        NULL,
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TOOL_CALL_START','toolCallId':'tc','toolCallName':'f'}",
        "{'type':'TOOL_CALL_END','toolCallId':'tc'}",
        "{'type':'TOOL_CALL_ARGS','toolCallId':'tc','delta':'after end'}",        /* fails */
        NULL,   /* the opening and closing shapes */
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TEXT_MESSAGE_START','messageId':'m1'}",                          /* role is optional */
        "{'type':'TEXT_MESSAGE_END','messageId':'m1'}",
        "{'type':'TEXT_MESSAGE_END','messageId':'m1'}",                            /* fails: not open */
        NULL,
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TEXT_MESSAGE_START','messageId':'m2','role':'user'}",
        "{'type':'TEXT_MESSAGE_END','messageId':'m2'}",
        "{'type':'TEXT_MESSAGE_START','messageId':'m3','role':'robot'}",           /* fails: no such role */
        NULL,
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TEXT_MESSAGE_START','messageId':'m4','role':'\\u0061ssistant'}",  /* an escaped role */
        "{'type':'TEXT_MESSAGE_END','messageId':'m4'}",
        "{'type':'TEXT_MESSAGE_START','messageId':'m5','role':'assistant','name':'n'}",
        "{'type':'TEXT_MESSAGE_END','messageId':'m5' }",
        "{'type':'TEXT_MESSAGE_START','messageId':'m6','role':'as\\'sistant'}",    /* fails: a quote in the role */
        NULL,
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TEXT_MESSAGE_START','messageId':'m7','role':''}",                /* fails: empty role */
        NULL,
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TOOL_CALL_END','toolCallId':'tc9'}",                              /* fails: no such call */
    };
    static const int want[] = {
        0, -EPROTO, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -EPROTO, -EPROTO, -EPROTO, 0,
        0, 0, 0, -EPROTO, -EPROTO, 0,
        0, 0, 0, -EPROTO,
        0, 0, 0, 0, -EPROTO,
        0, 0, 0, 0, -EPROTO,
        0, 0, 0, 0, 0, 0, -EPROTO,
        0, 0, -EPROTO,
        0, 0, -EPROTO,
    };
    _Static_assert(sizeof want / sizeof want[0] == sizeof evs / sizeof evs[0], "one verdict per line");
    validate_t *fast = NULL, *tape = NULL;
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++) {
        if (!evs[i] || !fast) {
            validate_free(fast);
            validate_free(tape);
            fast = validate_new();
            tape = validate_new();
            assert_non_null(fast);
            assert_non_null(tape);
            if (!evs[i])
                continue;
        }
        char *e = q(evs[i]);
        char m1[VALIDATE_MSG_MAX], m2[VALIDATE_MSG_MAX];
        agui_type_t t1, t2;
        int r1 = validate_event(fast, e, strlen(e), &t1, m1);
        int r2 = validate_event_tape(tape, e, strlen(e), &t2, m2);
        if (r1 != want[i] || r1 != r2 || t1 != t2 || strcmp(m1, m2)) {
            print_error("event %zu %s: %d '%s' (type %d) vs tape %d '%s' (type %d), want %d\n", i, e, r1, m1,
                        (int)t1, r2, m2, (int)t2, want[i]);
            fail();
        }
        check_msg(m1);
        free(e);
    }
    validate_free(fast);
    validate_free(tape);
}

/* validate_reset: a validator cut mid-run (a text message, a chunk lane and a
 * step open, a failure recorded) behaves as a new one, with its tables kept. */
static void test_reset(void **state)
{
    (void)state;
    static const char *const cut[] = {
        "{'type':'RUN_STARTED','threadId':'t','runId':'r'}",
        "{'type':'TEXT_MESSAGE_START','messageId':'m1','role':'assistant'}",
        "{'type':'STEP_STARTED','stepName':'s'}",
        "{'type':'TEXT_MESSAGE_CHUNK','messageId':'c1','delta':'open lane'}",
    };
    validate_t *v = validate_new();
    assert_non_null(v);
    char msg[VALIDATE_MSG_MAX];
    agui_type_t type;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
            char *e = q(cut[i]);
            assert_int_equal(validate_event(v, e, strlen(e), &type, msg), 0);
            free(e);
        }
        if (round == 1) {   /* and a failure, which is final until the reset */
            char *e = q("{'type':'TEXT_MESSAGE_END','messageId':'nope'}");
            assert_int_equal(validate_event(v, e, strlen(e), &type, msg), -EPROTO);
            free(e);
            assert_false(validate_run_closed(v));
        }
        validate_reset(v);
        assert_false(validate_run_closed(v));
        /* the first-event rule holds again */
        char *e = q("{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'x'}");
        assert_int_equal(validate_event(v, e, strlen(e), &type, msg), -EPROTO);
        assert_string_equal(msg, "first event must be RUN_STARTED, got TEXT_MESSAGE_CONTENT");
        free(e);
        validate_reset(v);
        /* a whole run passes; m1 from before the reset is unknown */
        static const char *const run[] = {
            "{'type':'RUN_STARTED','threadId':'t','runId':'r2'}",
            "{'type':'TEXT_MESSAGE_START','messageId':'m2','role':'assistant'}",
            "{'type':'TEXT_MESSAGE_CONTENT','messageId':'m2','delta':'hi'}",
            "{'type':'TEXT_MESSAGE_END','messageId':'m2'}",
            "{'type':'RUN_FINISHED','threadId':'t','runId':'r2'}",
        };
        for (size_t i = 0; i < sizeof run / sizeof run[0]; i++) {
            e = q(run[i]);
            assert_int_equal(validate_event(v, e, strlen(e), &type, msg), 0);
            free(e);
        }
        assert_true(validate_run_closed(v));
        validate_reset(v);
        e = q("{'type':'RUN_STARTED','threadId':'t','runId':'r3'}");
        assert_int_equal(validate_event(v, e, strlen(e), &type, msg), 0);
        free(e);
        e = q("{'type':'TEXT_MESSAGE_CONTENT','messageId':'m1','delta':'stale id'}");
        assert_int_equal(validate_event(v, e, strlen(e), &type, msg), -EPROTO);
        free(e);
        validate_reset(v);
    }
    validate_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_run),
        cmocka_unit_test(test_rich_run),
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_accepted_shapes),
        cmocka_unit_test(test_not_an_event),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_run_rules),
        cmocka_unit_test(test_text_rules),
        cmocka_unit_test(test_tool_rules),
        cmocka_unit_test(test_step_rules),
        cmocka_unit_test(test_reasoning_rules),
        cmocka_unit_test(test_subagent_rules),
        cmocka_unit_test(test_owner_rules),
        cmocka_unit_test(test_chunk_rules),
        cmocka_unit_test(test_two_runs_and_closed),
        cmocka_unit_test(test_failure_is_final),
        cmocka_unit_test(test_message_hygiene),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_runs_reset),
        cmocka_unit_test(test_spill),
        cmocka_unit_test(test_outside_trees),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_fast_shape_same_verdicts),
        cmocka_unit_test(test_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
