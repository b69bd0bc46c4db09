// Small JSON helpers for Spool plugins in plain C (see json.c).
#ifndef SPOOL_JSON_H
#define SPOOL_JSON_H

#include <stddef.h>

// Growable byte buffer; `data` is always NUL-terminated once something was pushed. Allocation
// failure aborts (in a plugin that is a trap: the host fails the attempt and its retry policy
// applies).
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} sp_buf;

void sp_buf_push(sp_buf *buf, const char *bytes, size_t len);
void sp_buf_push_str(sp_buf *buf, const char *text);
void sp_buf_push_char(sp_buf *buf, char c);
void sp_buf_free(sp_buf *buf);
void *sp_xmalloc(size_t size);

// Append `text` (`len` bytes of UTF-8) to `out` as a JSON string literal, quotes included.
void sp_json_string(sp_buf *out, const char *text, size_t len);

typedef enum {
    JSON_FIELD_FOUND,         // the field is a string, decoded (UTF-8) into `out`
    JSON_FIELD_MISSING,       // the object has no such field
    JSON_FIELD_NOT_A_STRING,  // the field holds another kind of value
    JSON_FIELD_NOT_AN_OBJECT, // the text is not a JSON object
} sp_json_field;

// Find the string field `key` of the JSON object in `json` (`len` bytes) and decode it into
// `out` (replacing what it held) when it is a string.
sp_json_field sp_json_get_string(const char *json, size_t len, const char *key, sp_buf *out);

#endif
