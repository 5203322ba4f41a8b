/* demo: serves net/demo.html, embedded in the binary.
 *
 * The page is a real file so it can be edited as HTML; the assembler's .incbin
 * copies it into .rodata at build time (the Makefile makes demo.o depend on
 * it), so there is no generated source and nothing to read at run time. The
 * path is relative to the directory make runs in, the repository root. */
#include "net/demo.h"

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

void demo_page(conn_t *c)
{
    http_respond(c, 200, "text/html; charset=utf-8", agate_demo_html,
                 (size_t)(agate_demo_html_end - agate_demo_html), "Cache-Control: no-cache\r\n");
}
