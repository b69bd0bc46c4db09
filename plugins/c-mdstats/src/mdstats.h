// Markdown statistics in plain C (C11, libc only): the word count and the headings (outline)
// of a Markdown document, with the same rules as the JavaScript and Python examples (see
// mdstats.c). Pure functions with no host calls, so they build and run natively too.
#ifndef SPOOL_MDSTATS_H
#define SPOOL_MDSTATS_H

#include <stddef.h>

// Growable byte buffer; `data` is always NUL-terminated. Allocation failure aborts (in a
// plugin that is a trap: the host fails the attempt and its retry policy applies).
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} md_buf;

void md_buf_push(md_buf *buf, const char *bytes, size_t len);
void md_buf_push_str(md_buf *buf, const char *text);
void md_buf_push_char(md_buf *buf, char c);
void md_buf_free(md_buf *buf);
void *md_xmalloc(size_t size);

typedef struct {
    int level;  // 1 to 6
    char *text; // the heading's text without markup (UTF-8, NUL-terminated)
    char *id;   // its anchor: the `{#id}` given in the source, or a unique slug of the text
} md_heading;

typedef struct {
    size_t words;
    md_heading *headings;
    size_t heading_count;
} md_stats;

// Analyse `len` bytes of UTF-8 Markdown.
void md_analyze(const char *source, size_t len, md_stats *out);
void md_stats_free(md_stats *stats);

// Append `{"words":N,"headings":[{"level":L,"text":"...","id":"..."},...]}` to `out`.
void md_stats_to_json(const md_stats *stats, md_buf *out);

// Append `text` (`len` bytes) to `out` as a JSON string literal, quotes included.
void md_json_string(md_buf *out, const char *text, size_t len);

// Lowercase letters and digits, with runs of anything else turned into one `-`
// ("section" when nothing is left). Returns a malloc'd string.
char *md_slug(const char *text);

// FNV-1a (64 bit) of `len` bytes: the cache key.
unsigned long long md_fnv1a64(const char *bytes, size_t len);

#endif
