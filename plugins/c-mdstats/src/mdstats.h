// Markdown statistics in plain C (C11, libc only): the word count and the headings (outline)
// of a Markdown document, with the same rules as the JavaScript and Python examples (see
// mdstats.c). Pure functions with no host calls, so they build and run natively too.
#ifndef SPOOL_MDSTATS_H
#define SPOOL_MDSTATS_H

#include <stddef.h>

#include "json.h"

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
void md_stats_to_json(const md_stats *stats, sp_buf *out);

// Lowercase letters and digits, with runs of anything else turned into one `-`
// ("section" when nothing is left). Returns a malloc'd string.
char *md_slug(const char *text);

// FNV-1a (64 bit) of `len` bytes: the cache key.
unsigned long long md_fnv1a64(const char *bytes, size_t len);

#endif
