// Small JSON helpers for Spool plugins in plain C (C11, libc only): a growable buffer, reading
// one string field of a JSON object payload, and writing JSON string literals. The host has
// already checked that a payload is valid JSON, so the reader only needs to find the field and
// decode its string (escapes, including \uXXXX surrogate pairs, become UTF-8).
#include "json.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *sp_xmalloc(size_t size) {
    void *p = malloc(size ? size : 1);
    if (!p) {
        abort();
    }
    return p;
}

void sp_buf_push(sp_buf *buf, const char *bytes, size_t len) {
    if (buf->len + len + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 64;
        while (cap < buf->len + len + 1) {
            cap *= 2;
        }
        char *data = realloc(buf->data, cap);
        if (!data) {
            abort();
        }
        buf->data = data;
        buf->cap = cap;
    }
    memcpy(buf->data + buf->len, bytes, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
}

void sp_buf_push_str(sp_buf *buf, const char *text) { sp_buf_push(buf, text, strlen(text)); }

void sp_buf_push_char(sp_buf *buf, char c) { sp_buf_push(buf, &c, 1); }

void sp_buf_free(sp_buf *buf) {
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

void sp_json_string(sp_buf *out, const char *text, size_t len) {
    sp_buf_push_char(out, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            sp_buf_push_char(out, '\\');
            sp_buf_push_char(out, (char)c);
        } else if (c == '\n') {
            sp_buf_push_str(out, "\\n");
        } else if (c == '\t') {
            sp_buf_push_str(out, "\\t");
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sp_buf_push_str(out, esc);
        } else {
            sp_buf_push_char(out, (char)c);
        }
    }
    sp_buf_push_char(out, '"');
}

typedef struct {
    const char *p;
    const char *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

static int hex4(const char *p) {
    int value = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        value <<= 4;
        if (h >= '0' && h <= '9') {
            value |= h - '0';
        } else if (h >= 'a' && h <= 'f') {
            value |= h - 'a' + 10;
        } else if (h >= 'A' && h <= 'F') {
            value |= h - 'A' + 10;
        } else {
            return -1;
        }
    }
    return value;
}

static void push_utf8(sp_buf *out, unsigned long cp) {
    char bytes[4];
    size_t n;
    if (cp < 0x80) {
        bytes[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        bytes[0] = (char)(0xC0 | (cp >> 6));
        bytes[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        bytes[0] = (char)(0xE0 | (cp >> 12));
        bytes[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        bytes[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        bytes[0] = (char)(0xF0 | (cp >> 18));
        bytes[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        bytes[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        bytes[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    sp_buf_push(out, bytes, n);
}

// At a `"`: decode the string into `out` (when not NULL) and move past it.
static bool read_string(cursor *c, sp_buf *out) {
    if (c->p >= c->end || *c->p != '"') {
        return false;
    }
    c->p++;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p != '\\') {
            const char *start = c->p;
            while (c->p < c->end && *c->p != '"' && *c->p != '\\') {
                c->p++;
            }
            if (out) {
                sp_buf_push(out, start, (size_t)(c->p - start));
            }
            continue;
        }
        if (c->p + 1 >= c->end) {
            return false;
        }
        char e = c->p[1];
        c->p += 2;
        unsigned long cp;
        switch (e) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'u': {
            if (c->end - c->p < 4 || hex4(c->p) < 0) {
                return false;
            }
            cp = (unsigned long)hex4(c->p);
            c->p += 4;
            // A high surrogate followed by `\uDC00`-`\uDFFF` is one code point.
            if (cp >= 0xD800 && cp <= 0xDBFF && c->end - c->p >= 6 && c->p[0] == '\\' &&
                c->p[1] == 'u' && hex4(c->p + 2) >= 0xDC00 && hex4(c->p + 2) <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)hex4(c->p + 2) - 0xDC00);
                c->p += 6;
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                cp = 0xFFFD; // a lone surrogate cannot be UTF-8
            }
            break;
        }
        default: cp = (unsigned char)e; break; // \" \\ \/
        }
        if (out) {
            push_utf8(out, cp);
        }
    }
    if (c->p >= c->end) {
        return false;
    }
    c->p++;
    return true;
}

// Move past any JSON value.
static bool skip_value(cursor *c) {
    skip_ws(c);
    if (c->p >= c->end) {
        return false;
    }
    if (*c->p == '"') {
        return read_string(c, NULL);
    }
    if (*c->p == '{' || *c->p == '[') {
        int depth = 0;
        while (c->p < c->end) {
            if (*c->p == '"') {
                if (!read_string(c, NULL)) {
                    return false;
                }
                continue;
            }
            if (*c->p == '{' || *c->p == '[') {
                depth++;
            } else if (*c->p == '}' || *c->p == ']') {
                depth--;
            }
            c->p++;
            if (depth == 0) {
                return true;
            }
        }
        return false;
    }
    while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']' && *c->p != ' ' &&
           *c->p != '\n' && *c->p != '\t' && *c->p != '\r') {
        c->p++;
    }
    return true;
}

sp_json_field sp_json_get_string(const char *json, size_t len, const char *key, sp_buf *out) {
    cursor c = {json, json + len};
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{') {
        return JSON_FIELD_NOT_AN_OBJECT;
    }
    c.p++;
    sp_json_field result = JSON_FIELD_MISSING;
    for (;;) {
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}') {
            return result;
        }
        sp_buf name = {0};
        sp_buf_push(&name, "", 0);
        if (!read_string(&c, &name)) {
            sp_buf_free(&name);
            return JSON_FIELD_NOT_AN_OBJECT;
        }
        bool wanted = strcmp(name.data, key) == 0 && name.len == strlen(key);
        sp_buf_free(&name);
        skip_ws(&c);
        if (c.p >= c.end || *c.p != ':') {
            return JSON_FIELD_NOT_AN_OBJECT;
        }
        c.p++;
        skip_ws(&c);
        if (wanted) {
            // The last duplicate wins, as in most JSON parsers.
            if (c.p < c.end && *c.p == '"') {
                out->len = 0;
                sp_buf_push(out, "", 0);
                if (!read_string(&c, out)) {
                    return JSON_FIELD_NOT_AN_OBJECT;
                }
                result = JSON_FIELD_FOUND;
            } else {
                if (!skip_value(&c)) {
                    return JSON_FIELD_NOT_AN_OBJECT;
                }
                result = JSON_FIELD_NOT_A_STRING;
            }
        } else if (!skip_value(&c)) {
            return JSON_FIELD_NOT_AN_OBJECT;
        }
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;
        }
    }
}
