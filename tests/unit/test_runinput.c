/* Unit tests for proto/runinput.c: RunAgentInput bodies as @ag-ui/core 1.0.0's
 * zod schema accepts and rejects them, agate's tokenIntervalMs, user text. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/jtape.h"
#include "proto/runinput.h"

#define CURL_BODY \
    "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"hello world\"}]}"

/* What @ag-ui/client's HttpAgent posts, with one message of every role and every
 * content part kind. Single quotes become double quotes in q(). */
static const char full_body[] =
    "{'threadId':'thread-1','runId':'run-1','parentRunId':'run-0','protocolVersion':'1.0',"
    "'state':{},"
    "'messages':["
      "{'id':'m0','role':'developer','content':'be brief','name':'dev','metadata':{'ag-ui':{}}},"
      "{'id':'m1','role':'system','content':'you are a bot','encryptedValue':'xx'},"
      "{'id':'m2','role':'user','content':'what is the weather?','name':'ann'},"
      "{'id':'m3','role':'assistant','content':'let me check',"
        "'toolCalls':[{'id':'call-1','type':'function',"
          "'function':{'name':'get_weather','arguments':'{\\\"city\\\":\\\"Oslo\\\"}'}}]},"
      "{'id':'m4','role':'tool','toolCallId':'call-1','content':'sunny'},"
      "{'id':'m5','role':'tool','toolCallId':'call-1','error':'timeout',"
        "'content':[{'type':'text','text':'partial'}]},"
      "{'id':'m6','role':'assistant','toolCalls':[]},"
      "{'id':'m7','role':'activity','activityType':'plan','content':{'steps':[1,2]}},"
      "{'id':'m8','role':'reasoning','content':'thinking','encryptedValue':'e'},"
      "{'id':'m9','role':'user','subagentRunId':'s1','content':["
        "{'type':'text','text':'look at '},"
        "{'type':'image','source':{'type':'data','value':'iVBORw0=','mimeType':'image/png'}},"
        "{'type':'audio','id':'a1','source':{'type':'url','value':'https://x/a.mp3'}},"
        "{'type':'video','source':{'type':'file','value':'file-1','provider':'openai'},'metadata':{}},"
        "{'type':'document','source':{'type':'url','value':'https://x/d.pdf','mimeType':'application/pdf'}},"
        "{'type':'text','text':'this','metadata':1}]}"
    "],"
    "'tools':[{'name':'get_weather','description':'weather for a city',"
      "'parameters':{'type':'object','properties':{'city':{'type':'string'}},'required':['city']}},"
      "{'name':'noop','description':''}],"
    "'context':[{'description':'user locale','value':'nb-NO'}],"
    "'forwardedProps':{},"
    "'resume':[{'interruptId':'i1','status':'resolved','payload':{'ok':true}},"
      "{'interruptId':'i2','status':'cancelled','metadata':{}}],"
    "'extraTopLevelKey':[null]}";

/* Test bodies are written with single quotes for readability. */
static char *q(const char *s)
{
    char *o = strdup(s);
    assert_non_null(o);
    for (char *p = o; *p; p++)
        if (*p == '\'')
            *p = '"';
    return o;
}

static void parse_ok(const char *body_sq, runinput_t *in)
{
    char *body = q(body_sq);
    runinput_err_t err;
    int rc = runinput_parse(body, strlen(body), in, &err);
    free(body);
    if (rc)
        fail_msg("rejected (%s: %s): %s", err.field, err.message, body_sq);
}

static void accepts(const char *body_sq)
{
    runinput_t in;
    parse_ok(body_sq, &in);
    runinput_free(&in);
}

static void rejects(const char *body_sq, const char *field, const char *message)
{
    char *body = q(body_sq);
    runinput_t in;
    runinput_err_t err;
    int rc = runinput_parse(body, strlen(body), &in, &err);
    free(body);
    if (rc != -EINVAL) {
        runinput_free(&in);
        fail_msg("accepted (rc %d): %s", rc, body_sq);
    }
    assert_null(in.root);
    runinput_free(&in);                    /* harmless after a failed parse */
    assert_string_equal(err.field, field);
    assert_string_equal(err.message, message);
}

/* A valid body with one message spliced in. */
static void with_message(char *out, size_t cap, const char *msg_sq)
{
    snprintf(out, cap, "{'threadId':'t','runId':'r','messages':[{'id':'0','role':'user','content':'x'},%s]}",
             msg_sq);
}

static void msg_rejects(const char *msg_sq, const char *field, const char *message)
{
    char body[1024];
    with_message(body, sizeof body, msg_sq);
    rejects(body, field, message);
}

static void msg_accepts(const char *msg_sq)
{
    char body[1024];
    with_message(body, sizeof body, msg_sq);
    accepts(body);
}

static void test_curl_example(void **state)
{
    runinput_t in;
    runinput_err_t err;
    assert_int_equal(runinput_parse(CURL_BODY, strlen(CURL_BODY), &in, &err), 0);
    assert_int_equal(in.thread_id_len, 1);
    assert_memory_equal(in.thread_id, "t", 1);
    assert_int_equal(in.run_id_len, 1);
    assert_memory_equal(in.run_id, "r", 1);
    assert_int_equal(in.token_interval_ms, -1);
    assert_int_equal(in.last_user_msg, 0);

    buf_t b = {0};
    assert_int_equal(runinput_user_text(&in, &b), 1);
    assert_int_equal(b.len, strlen("hello world"));
    assert_memory_equal(b.data, "hello world", b.len);
    buf_free(&b);
    runinput_free(&in);
    assert_null(in.root);
    runinput_free(&in);                    /* idempotent */
}

static void test_full_body(void **state)
{
    runinput_t in;
    parse_ok(full_body, &in);
    assert_int_equal(in.thread_id_len, strlen("thread-1"));
    assert_memory_equal(in.thread_id, "thread-1", in.thread_id_len);
    assert_memory_equal(in.run_id, "run-1", in.run_id_len);
    assert_int_equal(in.last_user_msg, 9);
    assert_int_equal(in.token_interval_ms, -1);

    buf_t b = {0};
    assert_int_equal(buf_append_lit(&b, ">"), 0);   /* appends, keeps what is there */
    assert_int_equal(runinput_user_text(&in, &b), 1);
    assert_int_equal(b.len, strlen(">look at this"));
    assert_memory_equal(b.data, ">look at this", b.len);
    buf_free(&b);
    runinput_free(&in);
}

static void test_optional_and_null(void **state)
{
    /* state: null is absent; any other value is state */
    accepts("{'threadId':'t','runId':'r','messages':[],'state':null}");
    accepts("{'threadId':'t','runId':'r','messages':[],'state':[1,'x']}");
    accepts("{'threadId':'t','runId':'r','messages':[],'state':'s'}");
    accepts("{'threadId':'t','runId':'r','messages':[],'state':0}");
    /* forwardedProps: anything but null */
    accepts("{'threadId':'t','runId':'r','messages':[],'forwardedProps':[]}");
    accepts("{'threadId':'t','runId':'r','messages':[],'forwardedProps':'x'}");
    rejects("{'threadId':'t','runId':'r','messages':[],'forwardedProps':null}",
            "forwardedProps", "must not be null");
    /* tools/context default to [] only when absent */
    accepts("{'threadId':'t','runId':'r','messages':[],'tools':[],'context':[]}");
    rejects("{'threadId':'t','runId':'r','messages':[],'tools':null}", "tools", "expected an array");
    rejects("{'threadId':'t','runId':'r','messages':[],'context':null}", "context", "expected an array");
    /* optional strings reject null, as z.string().optional() does */
    rejects("{'threadId':'t','runId':'r','messages':[],'parentRunId':null}",
            "parentRunId", "expected a string");
    rejects("{'threadId':'t','runId':'r','messages':[],'protocolVersion':1}",
            "protocolVersion", "expected a string");
    /* tool parameters and part metadata: any value but null */
    rejects("{'threadId':'t','runId':'r','messages':[],'tools':[{'name':'n','description':'d','parameters':null}]}",
            "tools[0].parameters", "must not be null");
    accepts("{'threadId':'t','runId':'r','messages':[],'tools':[{'name':'n','description':'d','parameters':true}]}");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'text','text':'a','metadata':null}]}",
                "messages[1].content[0].metadata", "must not be null");
    /* MetadataSchema: an object, never null or an array */
    msg_rejects("{'id':'1','role':'system','content':'a','metadata':null}",
                "messages[1].metadata", "expected an object");
    msg_rejects("{'id':'1','role':'system','content':'a','metadata':[]}",
                "messages[1].metadata", "expected an object");
    /* empty strings are strings */
    accepts("{'threadId':'','runId':'','messages':[]}");
}

static void test_required_missing(void **state)
{
    rejects("{'runId':'r','messages':[]}", "threadId", "required");
    rejects("{'threadId':'t','messages':[]}", "runId", "required");
    rejects("{'threadId':'t','runId':'r'}", "messages", "required");
    rejects("{}", "threadId", "required");

    msg_rejects("{'role':'user','content':'x'}", "messages[1].id", "required");
    msg_rejects("{'id':'1','content':'x'}", "messages[1].role", "required");
    msg_rejects("{'id':'1','role':'user'}", "messages[1].content", "required");
    msg_rejects("{'id':'1','role':'system'}", "messages[1].content", "required");
    msg_rejects("{'id':'1','role':'developer'}", "messages[1].content", "required");
    msg_rejects("{'id':'1','role':'reasoning'}", "messages[1].content", "required");
    msg_rejects("{'id':'1','role':'tool','content':'x'}", "messages[1].toolCallId", "required");
    msg_rejects("{'id':'1','role':'tool','toolCallId':'c'}", "messages[1].content", "required");
    msg_rejects("{'id':'1','role':'activity','content':{}}", "messages[1].activityType", "required");
    msg_rejects("{'id':'1','role':'activity','activityType':'a'}", "messages[1].content", "required");
    msg_accepts("{'id':'1','role':'assistant'}");          /* content is optional */

    msg_rejects("{'id':'1','role':'assistant','toolCalls':[{'type':'function','function':{'name':'f','arguments':''}}]}",
                "messages[1].toolCalls[0].id", "required");
    msg_rejects("{'id':'1','role':'assistant','toolCalls':[{'id':'c','function':{'name':'f','arguments':''}}]}",
                "messages[1].toolCalls[0].type", "required");
    msg_rejects("{'id':'1','role':'assistant','toolCalls':[{'id':'c','type':'function'}]}",
                "messages[1].toolCalls[0].function", "required");
    msg_rejects("{'id':'1','role':'assistant','toolCalls':[{'id':'c','type':'function','function':{'arguments':''}}]}",
                "messages[1].toolCalls[0].function.name", "required");
    msg_rejects("{'id':'1','role':'assistant','toolCalls':[{'id':'c','type':'function','function':{'name':'f'}}]}",
                "messages[1].toolCalls[0].function.arguments", "required");

    msg_rejects("{'id':'1','role':'user','content':[{'text':'a'}]}", "messages[1].content[0].type", "required");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'text'}]}", "messages[1].content[0].text", "required");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'image'}]}", "messages[1].content[0].source", "required");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'image','source':{'value':'v'}}]}",
                "messages[1].content[0].source.type", "required");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'image','source':{'type':'data','value':'v'}}]}",
                "messages[1].content[0].source.mimeType", "required");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'image','source':{'type':'url'}}]}",
                "messages[1].content[0].source.value", "required");
    msg_accepts("{'id':'1','role':'user','content':[{'type':'image','source':{'type':'url','value':'v'}}]}");
    msg_accepts("{'id':'1','role':'user','content':[]}");

    rejects("{'threadId':'t','runId':'r','messages':[],'tools':[{'description':'d'}]}", "tools[0].name", "required");
    rejects("{'threadId':'t','runId':'r','messages':[],'tools':[{'name':'n'}]}", "tools[0].description", "required");
    rejects("{'threadId':'t','runId':'r','messages':[],'context':[{'value':'v'}]}", "context[0].description", "required");
    rejects("{'threadId':'t','runId':'r','messages':[],'context':[{'description':'d'}]}", "context[0].value", "required");
    rejects("{'threadId':'t','runId':'r','messages':[],'resume':[{'status':'resolved'}]}", "resume[0].interruptId", "required");
    rejects("{'threadId':'t','runId':'r','messages':[],'resume':[{'interruptId':'i'}]}", "resume[0].status", "required");
}

static void test_wrong_types(void **state)
{
    rejects("{'threadId':1,'runId':'r','messages':[]}", "threadId", "expected a string");
    rejects("{'threadId':null,'runId':'r','messages':[]}", "threadId", "expected a string");
    rejects("{'threadId':'t','runId':['r'],'messages':[]}", "runId", "expected a string");
    rejects("{'threadId':'t','runId':'r','messages':{}}", "messages", "expected an array");
    rejects("{'threadId':'t','runId':'r','messages':[],'tools':{}}", "tools", "expected an array");
    rejects("{'threadId':'t','runId':'r','messages':[],'resume':'x'}", "resume", "expected an array");
    rejects("{'threadId':'t','runId':'r','messages':['hi']}", "messages[0]", "expected an object");
    rejects("{'threadId':'t','runId':'r','messages':[null]}", "messages[0]", "expected an object");
    rejects("{'threadId':'t','runId':'r','messages':[],'tools':[1]}", "tools[0]", "expected an object");
    rejects("{'threadId':'t','runId':'r','messages':[],'tools':[{'name':'n','description':5}]}",
            "tools[0].description", "expected a string");
    rejects("{'threadId':'t','runId':'r','messages':[],'context':[{'description':'d','value':{}}]}",
            "context[0].value", "expected a string");
    rejects("{'threadId':'t','runId':'r','messages':[],'resume':[{'interruptId':'i','status':'done'}]}",
            "resume[0].status", "expected one of resolved, cancelled");
    rejects("{'threadId':'t','runId':'r','messages':[],'resume':[{'interruptId':'i','status':'resolved','payload':null}]}",
            "resume[0].payload", "must not be null");

    msg_rejects("{'id':1,'role':'user','content':'x'}", "messages[1].id", "expected a string");
    msg_rejects("{'id':'1','role':'user','content':5}", "messages[1].content", "expected a string or an array");
    msg_rejects("{'id':'1','role':'user','content':{'type':'text','text':'x'}}",
                "messages[1].content", "expected a string or an array");
    msg_rejects("{'id':'1','role':'user','content':null}", "messages[1].content", "expected a string or an array");
    msg_rejects("{'id':'1','role':'user','name':false,'content':'x'}", "messages[1].name", "expected a string");
    msg_rejects("{'id':'1','role':'system','content':['x']}", "messages[1].content", "expected a string");
    msg_rejects("{'id':'1','role':'assistant','content':null}", "messages[1].content", "expected a string");
    msg_rejects("{'id':'1','role':'assistant','content':[{'type':'text','text':'x'}]}",
                "messages[1].content", "expected a string");
    msg_rejects("{'id':'1','role':'assistant','toolCalls':{}}", "messages[1].toolCalls", "expected an array");
    msg_rejects("{'id':'1','role':'assistant','toolCalls':[{'id':'c','type':'fn','function':{'name':'f','arguments':''}}]}",
                "messages[1].toolCalls[0].type", "expected one of function");
    msg_rejects("{'id':'1','role':'assistant','toolCalls':[{'id':'c','type':'function','function':{'name':'f','arguments':{}}}]}",
                "messages[1].toolCalls[0].function.arguments", "expected a string");
    msg_rejects("{'id':'1','role':'assistant','toolCalls':[{'id':'c','type':'function','function':'f'}]}",
                "messages[1].toolCalls[0].function", "expected an object");
    msg_rejects("{'id':'1','role':'tool','content':'x','toolCallId':7}", "messages[1].toolCallId", "expected a string");
    msg_rejects("{'id':'1','role':'tool','content':'x','toolCallId':'c','error':{}}", "messages[1].error", "expected a string");
    msg_rejects("{'id':'1','role':'activity','activityType':'a','content':[]}", "messages[1].content", "expected an object");
    msg_rejects("{'id':'1','role':'activity','activityType':'a','content':'x'}", "messages[1].content", "expected an object");
    msg_rejects("{'id':'1','role':'reasoning','content':'x','encryptedValue':1}",
                "messages[1].encryptedValue", "expected a string");

    /* the first error in schema order wins */
    rejects("{'threadId':1,'runId':2,'messages':3}", "threadId", "expected a string");
    msg_rejects("{'role':'user','content':5}", "messages[1].id", "required");
    /* extra keys everywhere are fine (loose objects) */
    msg_accepts("{'id':'1','role':'user','content':[{'type':'text','text':'a','x':1}],'y':[]}");
}

static void test_bad_role(void **state)
{
    const char *m = "expected one of developer, system, assistant, user, tool, activity, reasoning";
    msg_rejects("{'id':'1','role':'bot','content':'x'}", "messages[1].role", m);
    msg_rejects("{'id':'1','role':'User','content':'x'}", "messages[1].role", m);
    msg_rejects("{'id':'1','role':5,'content':'x'}", "messages[1].role", m);
    msg_rejects("{'id':'1','role':null,'content':'x'}", "messages[1].role", m);
    /* the role is checked before the other fields, as zod's discriminated union does */
    msg_rejects("{'role':'bot'}", "messages[1].role", m);
    /* compared by length, not as C strings */
    msg_rejects("{'id':'1','role':'user\\u0000','content':'x'}", "messages[1].role", m);
    rejects("{'threadId':'t','runId':'r','messages':[],'resume':[{'interruptId':'i','status':'resolved\\u0000x'}]}",
            "resume[0].status", "expected one of resolved, cancelled");
}

static void test_bad_content_part(void **state)
{
    const char *m = "expected one of text, image, audio, video, document";
    msg_rejects("{'id':'1','role':'user','content':[{'type':'file','text':'a'}]}", "messages[1].content[0].type", m);
    msg_rejects("{'id':'1','role':'user','content':[{'type':'text','text':'a'},'b']}",
                "messages[1].content[1]", "expected an object");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'text','text':'a'},{'type':'text','text':1}]}",
                "messages[1].content[1].text", "expected a string");
    msg_rejects("{'id':'1','role':'tool','toolCallId':'c','content':[{'type':'text','text':null}]}",
                "messages[1].content[0].text", "expected a string");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'image','source':{'type':'base64','value':'v'}}]}",
                "messages[1].content[0].source.type", "expected one of data, url, file");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'audio','source':'https://x'}]}",
                "messages[1].content[0].source", "expected an object");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'video','source':{'type':'file','value':'v','provider':1}}]}",
                "messages[1].content[0].source.provider", "expected a string");
    msg_rejects("{'id':'1','role':'user','content':[{'type':'document','id':2,'source':{'type':'url','value':'v'}}]}",
                "messages[1].content[0].id", "expected a string");
}

static void token_interval(const char *fp, int64_t want)
{
    char body[512];
    snprintf(body, sizeof body, "{'threadId':'t','runId':'r','messages':[],'forwardedProps':%s}", fp);
    runinput_t in;
    parse_ok(body, &in);
    assert_int_equal(in.token_interval_ms, want);
    runinput_free(&in);
}

static void token_interval_bad(const char *v)
{
    char body[512];
    snprintf(body, sizeof body,
             "{'threadId':'t','runId':'r','messages':[],'forwardedProps':{'agate':{'tokenIntervalMs':%s}}}", v);
    rejects(body, "forwardedProps.agate.tokenIntervalMs", "expected an integer >= 0");
}

static void test_token_interval(void **state)
{
    token_interval("{'agate':{'tokenIntervalMs':25}}", 25);
    token_interval("{'agate':{'tokenIntervalMs':0}}", 0);
    token_interval("{'agate':{'tokenIntervalMs':1e3}}", 1000);      /* a real, but integral */
    token_interval("{'agate':{'tokenIntervalMs':5.0}}", 5);
    token_interval("{'agate':{'tokenIntervalMs':9007199254740991}}", INT64_C(9007199254740991));
    token_interval("{'agate':{}}", -1);
    token_interval("{'agate':{'other':1}}", -1);
    token_interval("{'agate':'not an object'}", -1);
    token_interval("{'agate':null}", -1);
    token_interval("{'x':{'tokenIntervalMs':5}}", -1);
    token_interval("{}", -1);
    token_interval("[{'agate':{'tokenIntervalMs':5}}]", -1);

    token_interval_bad("-1");
    token_interval_bad("-0.5");
    token_interval_bad("1.5");
    token_interval_bad("'25'");
    token_interval_bad("null");
    token_interval_bad("true");
    token_interval_bad("{}");
    token_interval_bad("9007199254740992");
    token_interval_bad("1e300");

    /* schema errors come first */
    rejects("{'threadId':'t','runId':'r','forwardedProps':{'agate':{'tokenIntervalMs':-1}}}",
            "messages", "required");
}

static void test_invalid_json(void **state)
{
    rejects("{'threadId':'t',", "", "invalid JSON at line 1 column 16: string or '}' expected near end of file");
    rejects("{'threadId' 't'}", "", "invalid JSON at line 1 column 15: ':' expected near '\"t\"'");
    rejects("", "", "invalid JSON at line 1 column 0: unexpected token near end of file");
    rejects("{'threadId':'t','runId':'r','messages':[]} x", "",
            "invalid JSON at line 1 column 44: end of file expected near 'x'");
    rejects("{'threadId':'t','threadId':'u','runId':'r','messages':[]}", "",
            "invalid JSON at line 1 column 26: duplicate object key near '\"threadId\"'");
    rejects("{'threadId':'t',\n'runId':tru,'messages':[]}", "",
            "invalid JSON at line 2 column 11: invalid token near 'tru'");

    /* jansson quotes input bytes; the message stays ASCII */
    runinput_t in;
    runinput_err_t err;
    const char bin[] = "{\"a\":\xc3\xa9\x01}";
    assert_int_equal(runinput_parse(bin, sizeof bin - 1, &in, &err), -EINVAL);
    assert_string_equal(err.field, "");
    for (const char *p = err.message; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);

    /* not NUL-terminated: only len bytes are read */
    char body[] = CURL_BODY "garbage";
    assert_int_equal(runinput_parse(body, strlen(CURL_BODY), &in, &err), 0);
    runinput_free(&in);

    /* \u0000 inside strings is valid JSON; lengths carry it */
    const char nul[] = "{\"threadId\":\"a\\u0000b\",\"runId\":\"r\",\"messages\":[]}";
    assert_int_equal(runinput_parse(nul, sizeof nul - 1, &in, &err), 0);
    assert_int_equal(in.thread_id_len, 3);
    assert_memory_equal(in.thread_id, "a\0b", 3);
    runinput_free(&in);

    /* and in keys too (JSON.parse and zod read them; jansson refused them):
     * in free-form values and as unknown members */
    accepts("{'threadId':'t','runId':'r','messages':[],'state':{'\\u0000':1,'a\\u0000b':{'\\u0000':[]}},"
            "'forwardedProps':{'\\u0000':null},'\\u0000':true}");
    accepts("{'threadId':'t','runId':'r','messages':[{'id':'1','role':'user','content':'x','\\u0000':1}]}");
    /* still a duplicate, named as jansson names one (it cannot hold the key) */
    rejects("{'threadId':'t','runId':'r','messages':[],'state':{'\\u0000':1,'\\u0000':2}}", "",
            "invalid JSON at line 1 column 70: duplicate object key near '\"\\u0000\"'");
    rejects("{'threadId':'t','runId':'r','messages':[],'state':{'\\u0000':1},x}", "",
            "invalid JSON at line 1 column 64: string or '}' expected near 'x'");

    /* integers past int64 are valid JSON (JavaScript reads them as doubles) */
    accepts("{'threadId':'t','runId':'r','messages':[],'state':{'n':123456789012345678901234567890}}");
}

static void test_not_object(void **state)
{
    rejects("[]", "", "expected an object");
    rejects("'body'", "", "expected an object");
    rejects("42", "", "expected an object");
    rejects("null", "", "expected an object");
    rejects("[" CURL_BODY "]", "", "expected an object");
}

static void test_depth(void **state)
{
    char body[512];
    /* 64 levels in all (body object + 63 in state) is fine, 65 is not */
    for (int depth = 63; depth <= 64; depth++) {
        int n = snprintf(body, sizeof body, "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[],\"state\":");
        for (int i = 0; i < depth; i++)
            body[n++] = '[';
        for (int i = 0; i < depth; i++)
            body[n++] = ']';
        body[n++] = '}';
        runinput_t in;
        runinput_err_t err;
        int rc = runinput_parse(body, (size_t)n, &in, &err);
        if (depth == 63) {
            assert_int_equal(rc, 0);
            runinput_free(&in);
        } else {
            assert_int_equal(rc, -EINVAL);
            assert_string_equal(err.field, "");
            assert_string_equal(err.message, "nesting deeper than 64");
        }
    }
    /* brackets inside strings do not count */
    char *deep_str = malloc(4096);
    assert_non_null(deep_str);
    int n = snprintf(deep_str, 4096, "{\"threadId\":\"t\\\"");
    for (int i = 0; i < 1000; i++)
        deep_str[n++] = '[';
    n += snprintf(deep_str + n, 4096 - (size_t)n, "\",\"runId\":\"r\",\"messages\":[]}");
    runinput_t in;
    runinput_err_t err;
    assert_int_equal(runinput_parse(deep_str, (size_t)n, &in, &err), 0);
    assert_int_equal(in.thread_id_len, 1002);
    runinput_free(&in);
    free(deep_str);
}

static void user_text(const char *messages_sq, int want_rc, const char *want_text, int want_idx)
{
    char body[1024];
    snprintf(body, sizeof body, "{'threadId':'t','runId':'r','messages':%s}", messages_sq);
    runinput_t in;
    parse_ok(body, &in);
    assert_int_equal(in.last_user_msg, want_idx);
    buf_t b = {0};
    assert_int_equal(runinput_user_text(&in, &b), want_rc);
    assert_int_equal(b.len, strlen(want_text));
    if (b.len)
        assert_memory_equal(b.data, want_text, b.len);
    buf_free(&b);
    runinput_free(&in);
}

static void test_user_text(void **state)
{
    user_text("[{'id':'1','role':'user','content':'first'},{'id':'2','role':'assistant','content':'a'},"
              "{'id':'3','role':'user','content':'second'},{'id':'4','role':'assistant'}]",
              1, "second", 2);
    user_text("[{'id':'1','role':'user','content':[{'type':'text','text':'a'},"
              "{'type':'image','source':{'type':'url','value':'u'}},{'type':'text','text':''},"
              "{'type':'text','text':'b c'}]}]",
              1, "ab c", 0);
    /* a last user message without text: 0, even when an earlier one had text */
    user_text("[{'id':'1','role':'user','content':'old'},"
              "{'id':'2','role':'user','content':[{'type':'image','source':{'type':'url','value':'u'}}]}]",
              0, "", 1);
    user_text("[{'id':'1','role':'user','content':''}]", 0, "", 0);
    user_text("[{'id':'1','role':'user','content':[]}]", 0, "", 0);
    user_text("[{'id':'1','role':'user','content':[{'type':'text','text':''}]}]", 0, "", 0);
}

static void test_no_user_message(void **state)
{
    user_text("[]", 0, "", -1);
    user_text("[{'id':'1','role':'system','content':'s'},{'id':'2','role':'assistant','content':'a'},"
              "{'id':'3','role':'tool','toolCallId':'c','content':'user'}]", 0, "", -1);
}

static void test_drop_content(void **state)
{
    /* A long message (over the size worth a new block) and a short one: the ids
     * survive, the content is gone, and the text can no longer be read. */
    static const size_t lens[] = { 3000, 10 };
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        char *text = malloc(lens[k] + 1), body[4200];
        memset(text, 'w', lens[k]);
        text[lens[k]] = '\0';
        snprintf(body, sizeof body, "{'threadId':'thread-9','runId':'run-\\u0039','messages':"
                 "[{'id':'1','role':'user','content':'%s'}]}", text);
        runinput_t in;
        parse_ok(body, &in);
        assert_non_null(in.user_content);
        runinput_drop_content(&in);
        assert_null(in.user_content);
        assert_int_equal(in.user_content_len, 0);
        assert_int_equal(in.thread_id_len, 8);
        assert_memory_equal(in.thread_id, "thread-9", 8);
        assert_int_equal(in.run_id_len, 5);
        assert_memory_equal(in.run_id, "run-9", 5);   /* decoded, kept */
        buf_t b = {0};
        assert_int_equal(runinput_user_text(&in, &b), 0);
        assert_int_equal(b.len, 0);
        runinput_drop_content(&in);   /* twice: nothing left to drop */
        assert_memory_equal(in.run_id, "run-9", 5);
        runinput_free(&in);
        free(text);
    }
}

/* The cache key reuses runinput's parse while the thread's tape holds it:
 * tape_gen says so exactly until anything else is parsed on that tape. */
static void test_tape_gen(void **state)
{
    (void)state;
    const char body[] = "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[],\"tools\":[],\"context\":[],\"state\":{},\"forwardedProps\":{}}";
    runinput_t in;
    runinput_err_t err;
    assert_int_equal(runinput_parse(body, sizeof body - 1, &in, &err), 0);
    jtape_t *t = jtape_thread();
    assert_true(in.tape_gen != 0);
    assert_true(t->gen == in.tape_gen);
    assert_ptr_equal(t->src, body);
    assert_int_equal(t->src_len, sizeof body - 1);
    runinput_free(&in);
    assert_int_equal(jtape_parse(t, body, sizeof body - 1, 8, 0), 0);   /* the same bytes, parsed again */
    assert_true(t->gen != in.tape_gen);
    uint64_t g = t->gen;
    assert_int_equal(jtape_parse(t, "{", 1, 8, 0), -EINVAL);            /* a failed parse counts too */
    assert_true(t->gen == g + 1);
    runinput_t bad;
    assert_int_not_equal(runinput_parse("[]", 2, &bad, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curl_example),
        cmocka_unit_test(test_full_body),
        cmocka_unit_test(test_optional_and_null),
        cmocka_unit_test(test_required_missing),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_bad_role),
        cmocka_unit_test(test_bad_content_part),
        cmocka_unit_test(test_token_interval),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_user_text),
        cmocka_unit_test(test_no_user_message),
        cmocka_unit_test(test_drop_content),
        cmocka_unit_test(test_tape_gen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
