/* demo: serves net/demo.html, embedded in the binary.
 *
 * The page is a real file so it can be edited as HTML; the assembler's .incbin
 * copies it into .rodata at build time (the Makefile makes demo.o depend on
 * it), so there is no generated source and nothing to read at run time. The
 * path is relative to the directory make runs in, the repository root.
 *
 * The page carries its own Content-Security-Policy: nothing but its one inline
 * <script> and <style> (allowed by their SHA-256 hashes, computed once from the
 * embedded bytes so they can never drift from the page) and connections back to
 * its own origin (fetch and WebSocket). */
#include "net/demo.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "net/http1.h"

__asm__(".pushsection .rodata\n"
        ".global agate_demo_html\n"
        ".type agate_demo_html, @object\n"
        "agate_demo_html:\n"
        ".incbin \"net/demo.html\"\n"
        ".global agate_demo_html_end\n"
        "agate_demo_html_end:\n"
        ".byte 0\n"
        ".popsection\n");

extern const char agate_demo_html[], agate_demo_html_end[];

static char demo_headers[512];
static pthread_once_t demo_once = PTHREAD_ONCE_INIT;

/* 'sha256-<base64>' of the text between <tag> and </tag>, or "" when absent. */
static void tag_hash(const char *tag, char *out, size_t outlen)
{
    char open[16], close[16];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    size_t len = (size_t)(agate_demo_html_end - agate_demo_html);
    const char *s = memmem(agate_demo_html, len, open, strlen(open));
    const char *e = s ? memmem(s, len - (size_t)(s - agate_demo_html), close, strlen(close)) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE], b64[64];
    unsigned int mdlen = 0;
    out[0] = 0;
    if (!s || !e)
        return;
    s += strlen(open);
    if (EVP_Digest(s, (size_t)(e - s), md, &mdlen, EVP_sha256(), NULL) && mdlen == 32 &&
        EVP_EncodeBlock(b64, md, 32) == 44)
        snprintf(out, outlen, "'sha256-%s'", (const char *)b64);
}

static void demo_init(void)
{
    char script[64], style[64];
    tag_hash("script", script, sizeof script);
    tag_hash("style", style, sizeof style);
    snprintf(demo_headers, sizeof demo_headers,
             "Cache-Control: no-cache\r\n"
             "Content-Security-Policy: default-src 'none'; script-src %s; style-src %s; "
             "connect-src 'self'; frame-ancestors 'none'\r\n",
             script[0] ? script : "'none'", style[0] ? style : "'none'");
}

void demo_page(conn_t *c)
{
    pthread_once(&demo_once, demo_init);   /* shards may serve it first at the same time */
    http_respond(c, 200, "text/html; charset=utf-8", agate_demo_html,
                 (size_t)(agate_demo_html_end - agate_demo_html), demo_headers);
}
