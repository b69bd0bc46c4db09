// `{{name}}`: a Spool job handler in C (C11, wasi-libc).
//
// Payload: {"name": "ada"}. Result: {"greeting": "hello, ada", "times_greeted": 1}.
// It shows the host imports: log, progress, cache (a counter per name) and config (`greeting`
// from {{name}}.toml), and the two kinds of error: a bad payload fails the job for good; a
// cache outage asks for a retry.
//
// Bindings: gen/handler.{h,c} (wit-bindgen 0.63.0, for the released WIT; they never change).
// Ownership: this function owns `job` (free it with handler_job_free); the strings it
// returns in `ret` or `err` must be malloc'd, and the bindings free them once the host has
// copied them. Strings the imports return are malloc'd too: free them when done.
// src/json.{h,c}: a growable buffer and small JSON helpers.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "json.h"

static bool fail(handler_job_error_t *err, const char *message) {
    err->tag = SPOOL_PLUGIN_TYPES_JOB_ERROR_FAIL;
    handler_string_dup(&err->val.fail, message);
    return false;
}

static bool retry(handler_job_error_t *err, const char *message, uint64_t after_ms) {
    err->tag = SPOOL_PLUGIN_TYPES_JOB_ERROR_RETRY;
    handler_string_dup(&err->val.retry.message, message);
    err->val.retry.after_ms.is_some = true;
    err->val.retry.after_ms.val = after_ms;
    return false;
}

static bool greet(const handler_job_t *job, handler_string_t *ret, handler_job_error_t *err) {
    sp_buf name = {0};
    if (sp_json_get_string((const char *)job->payload.ptr, job->payload.len, "name", &name) !=
        JSON_FIELD_FOUND) {
        return fail(err, "the payload needs a `name` string, such as {\"name\": \"ada\"}");
    }

    char line[256];
    snprintf(line, sizeof line, "greeting %s (attempt %u)", name.data, (unsigned)job->attempt);
    handler_string_t text;
    handler_string_set(&text, line);
    spool_plugin_log_log(SPOOL_PLUGIN_LOG_LEVEL_INFO, &text);
    handler_string_set(&text, "counting");
    spool_plugin_progress_report(50, &text);

    sp_buf key = {0};
    sp_buf_push_str(&key, "greeted:");
    sp_buf_push(&key, name.data, name.len);
    handler_string_t cache_key = {(uint8_t *)key.data, key.len};
    int64_t times_greeted;
    handler_string_t cache_err;
    bool counted = spool_plugin_cache_increment(&cache_key, 1, NULL, &times_greeted, &cache_err);
    sp_buf_free(&key);
    if (!counted) {
        snprintf(line, sizeof line, "the cache is unavailable: %.*s", (int)cache_err.len,
                 (const char *)cache_err.ptr);
        handler_string_free(&cache_err);
        sp_buf_free(&name);
        return retry(err, line, 5000);
    }

    handler_string_t config_name, greeting;
    handler_string_set(&config_name, "greeting");
    bool configured = spool_plugin_config_get(&config_name, &greeting);

    sp_buf out = {0};
    sp_buf_push_str(&out, "{\"greeting\":");
    sp_buf phrase = {0};
    if (configured) {
        sp_buf_push(&phrase, (const char *)greeting.ptr, greeting.len);
        handler_string_free(&greeting);
    } else {
        sp_buf_push_str(&phrase, "hello");
    }
    sp_buf_push_str(&phrase, ", ");
    sp_buf_push(&phrase, name.data, name.len);
    sp_json_string(&out, phrase.data, phrase.len);
    snprintf(line, sizeof line, ",\"times_greeted\":%lld}", (long long)times_greeted);
    sp_buf_push_str(&out, line);
    sp_buf_free(&phrase);
    sp_buf_free(&name);

    handler_string_set(&text, "done");
    spool_plugin_progress_report(100, &text);
    ret->ptr = (uint8_t *)out.data; // malloc'd: the bindings free it after the call
    ret->len = out.len;
    return true;
}

bool exports_handler_handle(handler_job_t *job, handler_string_t *ret, handler_job_error_t *err) {
    bool ok = greet(job, ret, err);
    handler_job_free(job);
    return ok;
}
