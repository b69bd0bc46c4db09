// Markdown statistics: word count and headings, on a line-by-line subset of CommonMark.
//
// The rules follow the Rust `markdown` plugin (pulldown-cmark), like the JavaScript and Python
// examples: ATX headings (`# Title`, optional closing `#`s, `{#id}` attributes), paragraphs,
// lists, task lists, block quotes, thematic breaks, fenced code blocks (not counted), code
// spans, emphasis, strikethrough, links and images (their text counts), backslash escapes.
// Not covered: setext headings, indented code blocks, raw HTML and entities. Text is UTF-8
// bytes: every byte >= 0x80 counts as a letter, and only ASCII and Latin-1 letters are
// lowercased in ids.
#include "mdstats.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_n(const char *text, size_t len) {
    char *copy = sp_xmalloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    return copy;
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_word_char(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static bool is_ascii_punct(unsigned char c) {
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
           (c >= '{' && c <= '~');
}

// A line as a byte range.
typedef struct {
    const char *p;
    size_t n;
} span;

static span trim(span s) {
    while (s.n && is_space(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n && is_space(s.p[s.n - 1])) {
        s.n--;
    }
    return s;
}

// `^ {0,3}` : how many leading spaces (at most 3) to skip, or -1 when there are 4 or more.
static int skip_indent(span s) {
    size_t i = 0;
    while (i < s.n && s.p[i] == ' ') {
        i++;
    }
    return i <= 3 ? (int)i : -1;
}

// `- - -`, `***`, `___`: three or more of one marker with only spaces around.
static bool is_thematic_break(span s) {
    int indent = skip_indent(s);
    if (indent < 0 || (size_t)indent >= s.n) {
        return false;
    }
    char marker = s.p[indent];
    if (marker != '-' && marker != '*' && marker != '_') {
        return false;
    }
    int count = 0;
    for (size_t i = indent; i < s.n; i++) {
        if (s.p[i] == marker) {
            count++;
        } else if (s.p[i] != ' ') {
            return false;
        }
    }
    return count >= 3;
}

// Drop block-quote markers, list markers and task-list boxes in front of a line.
static span strip_block_markers(span s) {
    for (;;) {
        int indent = skip_indent(s);
        if (indent >= 0 && (size_t)indent < s.n && s.p[indent] == '>') {
            size_t skip = indent + 1;
            if (skip < s.n && s.p[skip] == ' ') {
                skip++;
            }
            s.p += skip;
            s.n -= skip;
            continue;
        }
        size_t i = 0;
        while (i < s.n && (s.p[i] == ' ' || s.p[i] == '\t')) {
            i++;
        }
        size_t marker_end = 0;
        if (i < s.n && (s.p[i] == '-' || s.p[i] == '+' || s.p[i] == '*')) {
            marker_end = i + 1;
        } else {
            size_t d = i;
            while (d < s.n && d - i < 9 && s.p[d] >= '0' && s.p[d] <= '9') {
                d++;
            }
            if (d > i && d < s.n && (s.p[d] == '.' || s.p[d] == ')')) {
                marker_end = d + 1;
            }
        }
        if (marker_end && (marker_end == s.n || s.p[marker_end] == ' ' || s.p[marker_end] == '\t') &&
            !is_thematic_break(s)) {
            while (marker_end < s.n && (s.p[marker_end] == ' ' || s.p[marker_end] == '\t')) {
                marker_end++;
            }
            s.p += marker_end;
            s.n -= marker_end;
            if (s.n >= 3 && s.p[0] == '[' && (s.p[1] == ' ' || s.p[1] == 'x' || s.p[1] == 'X') &&
                s.p[2] == ']' && (s.n == 3 || s.p[3] == ' ' || s.p[3] == '\t')) {
                size_t box = 3;
                while (box < s.n && (s.p[box] == ' ' || s.p[box] == '\t')) {
                    box++;
                }
                s.p += box;
                s.n -= box;
            }
            continue;
        }
        return s;
    }
}

// The text of inline markup: code spans, emphasis, links and escapes reduced to their words.
static void inline_text(span s, sp_buf *out) {
    size_t i = 0;
    while (i < s.n) {
        char c = s.p[i];
        if (c == '\\' && i + 1 < s.n && is_ascii_punct((unsigned char)s.p[i + 1])) {
            sp_buf_push_char(out, s.p[i + 1]);
            i += 2;
        } else if (c == '`') {
            size_t run = 1;
            while (i + run < s.n && s.p[i + run] == '`') {
                run++;
            }
            // The first later run of `run` backticks closes the span.
            size_t close = 0;
            bool found = false;
            for (size_t j = i + run; j + run <= s.n; j++) {
                size_t k = 0;
                while (k < run && s.p[j + k] == '`') {
                    k++;
                }
                if (k == run) {
                    close = j;
                    found = true;
                    break;
                }
            }
            if (!found) {
                sp_buf_push(out, s.p + i, run);
                i += run;
            } else {
                sp_buf_push(out, s.p + i + run, close - (i + run));
                i = close + run;
            }
        } else if (c == '*' || c == '_' || c == '~') {
            size_t run = 1;
            while (i + run < s.n && s.p[i + run] == c) {
                run++;
            }
            char before = i > 0 ? s.p[i - 1] : ' ';
            char after = i + run < s.n ? s.p[i + run] : ' ';
            // A delimiter touches text on one side; `_` inside a word and `~` alone are literal.
            bool delimiter = !(is_space(before) && is_space(after)) &&
                             !(c == '_' && is_word_char((unsigned char)before) &&
                               is_word_char((unsigned char)after)) &&
                             !(c == '~' && run == 1);
            if (!delimiter) {
                sp_buf_push(out, s.p + i, run);
            }
            i += run;
        } else if (c == '!' && i + 1 < s.n && s.p[i + 1] == '[') {
            i += 1; // an image: its alt text counts like a link's text
        } else if (c == '[' || c == ']') {
            if (c == ']' && i + 1 < s.n && s.p[i + 1] == '(') {
                const char *close = memchr(s.p + i + 2, ')', s.n - (i + 2));
                i = close ? (size_t)(close - s.p) + 1 : i + 1;
            } else {
                i += 1;
            }
        } else {
            sp_buf_push_char(out, c);
            i += 1;
        }
    }
}

static size_t count_words(const char *text, size_t len) {
    size_t words = 0;
    bool in_word = false;
    for (size_t i = 0; i < len; i++) {
        if (is_space(text[i])) {
            in_word = false;
        } else if (!in_word) {
            in_word = true;
            words++;
        }
    }
    return words;
}

char *md_slug(const char *text) {
    sp_buf out = {0};
    sp_buf_push(&out, "", 0);
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (c[0] == 0xC3 && c[1] >= 0x80 && c[1] <= 0x9E && c[1] != 0x97) {
            // Latin-1 capitals U+00C0-U+00DE (but not U+00D7, the multiplication sign).
            sp_buf_push_char(&out, (char)0xC3);
            sp_buf_push_char(&out, (char)(c[1] + 0x20));
            c++;
        } else if (is_word_char(*c)) {
            sp_buf_push_char(&out, (char)((*c >= 'A' && *c <= 'Z') ? *c + ('a' - 'A') : *c));
        } else if (out.len && out.data[out.len - 1] != '-') {
            sp_buf_push_char(&out, '-');
        }
    }
    while (out.len && out.data[out.len - 1] == '-') {
        out.data[--out.len] = '\0';
    }
    if (!out.len) {
        sp_buf_push_str(&out, "section");
    }
    return out.data;
}

// Parse an ATX heading (`^ {0,3}#{1,6}([ \t]+content)?[ \t]*$`). Returns its level or 0.
static int parse_heading(span line, sp_buf *text, char **explicit_id) {
    int indent = skip_indent(line);
    if (indent < 0) {
        return 0;
    }
    size_t i = indent;
    int level = 0;
    while (i < line.n && line.p[i] == '#' && level < 7) {
        level++;
        i++;
    }
    if (level < 1 || level > 6 || (i < line.n && line.p[i] != ' ' && line.p[i] != '\t')) {
        return 0;
    }
    span content = trim((span){line.p + i, line.n - i});
    // The optional closing sequence: `#`s at the end, alone or after a space.
    size_t end = content.n;
    while (end && content.p[end - 1] == '#') {
        end--;
    }
    if (end < content.n && (end == 0 || content.p[end - 1] == ' ' || content.p[end - 1] == '\t')) {
        content.n = end;
        content = trim(content);
    }
    // `{#id .class}` at the end.
    *explicit_id = NULL;
    if (content.n && content.p[content.n - 1] == '}') {
        size_t open = content.n - 1;
        while (open > 0 && content.p[open - 1] != '{' && content.p[open - 1] != '}') {
            open--;
        }
        if (open > 0 && content.p[open - 1] == '{') {
            span attrs = {content.p + open, content.n - 1 - open};
            size_t k = 0;
            while (k < attrs.n) {
                while (k < attrs.n && is_space(attrs.p[k])) {
                    k++;
                }
                size_t start = k;
                while (k < attrs.n && !is_space(attrs.p[k])) {
                    k++;
                }
                if (k - start > 1 && attrs.p[start] == '#') {
                    free(*explicit_id);
                    *explicit_id = dup_n(attrs.p + start + 1, k - start - 1);
                }
            }
            content.n = open - 1;
            while (content.n && (content.p[content.n - 1] == ' ' || content.p[content.n - 1] == '\t')) {
                content.n--;
            }
        }
    }
    sp_buf raw = {0};
    sp_buf_push(&raw, "", 0);
    inline_text(content, &raw);
    span clean = trim((span){raw.data, raw.len});
    sp_buf_push(text, clean.p, clean.n);
    sp_buf_free(&raw);
    return level;
}

static bool id_taken(const md_heading *headings, size_t count, const char *id) {
    for (size_t i = 0; i < count; i++) {
        if (headings[i].id && strcmp(headings[i].id, id) == 0) {
            return true;
        }
    }
    return false;
}

// Explicit ids are kept; others are slugs of the text, suffixed `-1`, `-2`... when taken.
static void assign_ids(md_heading *headings, size_t count, bool *explicit) {
    for (size_t i = 0; i < count; i++) {
        if (explicit[i]) {
            continue;
        }
        char *base = md_slug(headings[i].text);
        sp_buf candidate = {0};
        sp_buf_push_str(&candidate, base);
        for (unsigned n = 1; id_taken(headings, count, candidate.data); n++) {
            char suffix[16];
            snprintf(suffix, sizeof suffix, "-%u", n);
            candidate.len = 0;
            sp_buf_push_str(&candidate, base);
            sp_buf_push_str(&candidate, suffix);
        }
        headings[i].id = candidate.data;
        free(base);
    }
}

void md_analyze(const char *source, size_t len, md_stats *out) {
    size_t cap = 8;
    md_heading *headings = sp_xmalloc(cap * sizeof *headings);
    bool *explicit = sp_xmalloc(cap * sizeof *explicit);
    size_t count = 0;
    size_t words = 0;
    char fence_char = 0;
    size_t fence_len = 0;

    size_t pos = 0;
    while (pos <= len) {
        const char *nl = memchr(source + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - source) : len;
        span line = {source + pos, end - pos};
        pos = end + 1;
        if (line.n && line.p[line.n - 1] == '\r') {
            line.n--;
        }
        line = strip_block_markers(line);

        // Fences: ``` or ~~~ (three or more), up to three spaces in.
        int indent = skip_indent(line);
        size_t run = 0;
        char fc = 0;
        if (indent >= 0 && (size_t)indent < line.n && (line.p[indent] == '`' || line.p[indent] == '~')) {
            fc = line.p[indent];
            while (indent + run < line.n && line.p[indent + run] == fc) {
                run++;
            }
        }
        span info = {line.p + (indent < 0 ? 0 : indent) + run, 0};
        info.n = run >= 3 ? line.n - (size_t)indent - run : 0;
        if (fence_char) {
            if (run >= 3 && fc == fence_char && run >= fence_len && trim(info).n == 0) {
                fence_char = 0;
            }
            continue;
        }
        if (run >= 3 && !(fc == '`' && memchr(info.p, '`', info.n))) {
            fence_char = fc;
            fence_len = run;
            continue;
        }

        if (is_thematic_break(line)) {
            continue;
        }
        sp_buf text = {0};
        sp_buf_push(&text, "", 0);
        char *id = NULL;
        int level = parse_heading(line, &text, &id);
        if (level) {
            words += count_words(text.data, text.len);
            if (count == cap) {
                cap *= 2;
                md_heading *grown = realloc(headings, cap * sizeof *headings);
                bool *grown_explicit = realloc(explicit, cap * sizeof *explicit);
                if (!grown || !grown_explicit) {
                    abort();
                }
                headings = grown;
                explicit = grown_explicit;
            }
            headings[count] = (md_heading){level, text.data, id};
            explicit[count] = id != NULL;
            count++;
            continue;
        }
        inline_text(line, &text);
        words += count_words(text.data, text.len);
        sp_buf_free(&text);
    }
    assign_ids(headings, count, explicit);
    free(explicit);
    out->words = words;
    out->headings = headings;
    out->heading_count = count;
}

void md_stats_free(md_stats *stats) {
    for (size_t i = 0; i < stats->heading_count; i++) {
        free(stats->headings[i].text);
        free(stats->headings[i].id);
    }
    free(stats->headings);
    stats->headings = NULL;
    stats->heading_count = 0;
}

void md_stats_to_json(const md_stats *stats, sp_buf *out) {
    char number[32];
    snprintf(number, sizeof number, "%zu", stats->words);
    sp_buf_push_str(out, "{\"words\":");
    sp_buf_push_str(out, number);
    sp_buf_push_str(out, ",\"headings\":[");
    for (size_t i = 0; i < stats->heading_count; i++) {
        const md_heading *h = &stats->headings[i];
        snprintf(number, sizeof number, "%d", h->level);
        sp_buf_push_str(out, i ? ",{\"level\":" : "{\"level\":");
        sp_buf_push_str(out, number);
        sp_buf_push_str(out, ",\"text\":");
        sp_json_string(out, h->text, strlen(h->text));
        sp_buf_push_str(out, ",\"id\":");
        sp_json_string(out, h->id, strlen(h->id));
        sp_buf_push_char(out, '}');
    }
    sp_buf_push_str(out, "]}");
}

unsigned long long md_fnv1a64(const char *bytes, size_t len) {
    unsigned long long hash = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        hash ^= (unsigned char)bytes[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}
