// One string field of a JSON payload (see payload.c).
#ifndef SPOOL_PAYLOAD_H
#define SPOOL_PAYLOAD_H

#include "mdstats.h"

typedef enum {
    PAYLOAD_FOUND,         // the field is a string, decoded (UTF-8) into `out`
    PAYLOAD_MISSING,       // the object has no such field
    PAYLOAD_NOT_A_STRING,  // the field holds another kind of value
    PAYLOAD_NOT_AN_OBJECT, // the payload is not a JSON object
} payload_field;

payload_field md_payload_string(const char *json, size_t len, const char *key, md_buf *out);

#endif
