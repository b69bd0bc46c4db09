// `c-mdstats`: the Spool plugin (world `spool:plugin/handler@0.1.0`) in plain C.
//
// Payload: {"markdown": "..."}. Result: {"words": n, "headings": [{"level", "text", "id"}],
// "cached": bool}: the same `words` and `headings` as the Rust `markdown` plugin gives for
// the subset of Markdown described in mdstats.c (it renders no HTML).
//
// The analysis is cached in the plugin's cache, keyed by a hash of the source, for
// `cache_ttl_secs` (manifest config, default one day); a repeat says "cached": true. A cache
// failure is logged and the job still succeeds.
//
// Bindings: gen/handler.{h,c} from wit-bindgen 0.63.0 (gen/regenerate.sh). The export owns
// its arguments (freed with handler_job_free) and the strings it returns must be malloc'd:
// the bindings free them after the host has copied them.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "mdstats.h"
#include "json.h"

// Bump when the result for the same source changes, so old cache entries are not served.
#define CACHE_KEY_VERSION "v1"
#define DEFAULT_CACHE_TTL_SECS (24ULL * 60 * 60)

static void log_line(spool_plugin_log_level_t level, const char *format, ...) {
    char line[512];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    handler_string_t message;
    handler_string_set(&message, line);
    spool_plugin_log_log(level, &message);
}

static void report(uint8_t percent, const char *message) {
    handler_string_t text;
    handler_string_set(&text, message);
    spool_plugin_progress_report(percent, &text);
}

static bool fail(handler_job_error_t *err, const char *message) {
    err->tag = SPOOL_PLUGIN_TYPES_JOB_ERROR_FAIL;
    handler_string_dup(&err->val.fail, message);
    return false;
}

// The manifest's `cache_ttl_secs` in milliseconds; false when it is not a number.
static bool cache_ttl_ms(uint64_t *ttl_ms, char *bad, size_t bad_size) {
    handler_string_t name, value;
    handler_string_set(&name, "cache_ttl_secs");
    if (!spool_plugin_config_get(&name, &value)) {
        *ttl_ms = DEFAULT_CACHE_TTL_SECS * 1000;
        return true;
    }
    uint64_t secs = 0;
    bool ok = value.len > 0 && value.len < 16;
    for (size_t i = 0; ok && i < value.len; i++) {
        ok = value.ptr[i] >= '0' && value.ptr[i] <= '9';
        secs = secs * 10 + (uint64_t)(value.ptr[i] - '0');
    }
    if (!ok) {
        snprintf(bad, bad_size, "%.*s", (int)(value.len < 64 ? value.len : 64), (const char *)value.ptr);
    }
    handler_string_free(&value);
    *ttl_ms = secs * 1000;
    return ok;
}

static bool run(const handler_job_t *job, handler_string_t *ret, handler_job_error_t *err) {
    sp_buf markdown = {0};
    switch (sp_json_get_string((const char *)job->payload.ptr, job->payload.len, "markdown", &markdown)) {
    case JSON_FIELD_FOUND:
        break;
    default:
        sp_buf_free(&markdown);
        return fail(err, "the payload needs a `markdown` string, such as {\"markdown\": \"# Title\"}");
    }

    char key_text[64];
    snprintf(key_text, sizeof key_text, "mdstats:" CACHE_KEY_VERSION ":%016llx",
             md_fnv1a64(markdown.data, markdown.len));
    handler_string_t key;
    handler_string_set(&key, key_text);

    report(10, "checking the cache");
    handler_option_string_t hit;
    handler_string_t cache_err;
    if (spool_plugin_cache_get(&key, &hit, &cache_err)) {
        // A stored value is `{"words":..,"headings":[..]}`: close it with `"cached":true`.
        if (hit.is_some && hit.val.len >= 2 && hit.val.ptr[0] == '{' && hit.val.ptr[hit.val.len - 1] == '}') {
            log_line(SPOOL_PLUGIN_LOG_LEVEL_INFO, "cache hit for %zu bytes of markdown", markdown.len);
            report(100, "served from the cache");
            sp_buf out = {0};
            sp_buf_push(&out, (const char *)hit.val.ptr, hit.val.len - 1);
            sp_buf_push_str(&out, ",\"cached\":true}");
            handler_option_string_free(&hit);
            sp_buf_free(&markdown);
            ret->ptr = (uint8_t *)out.data;
            ret->len = out.len;
            return true;
        }
        handler_option_string_free(&hit);
    } else {
        log_line(SPOOL_PLUGIN_LOG_LEVEL_WARN, "%.*s; analysing without the cache", (int)cache_err.len,
                 (const char *)cache_err.ptr);
        handler_string_free(&cache_err);
    }

    report(30, "analysing");
    md_stats stats;
    md_analyze(markdown.data, markdown.len, &stats);
    log_line(SPOOL_PLUGIN_LOG_LEVEL_INFO, "analysed %zu bytes of markdown: %zu words, %zu headings",
             markdown.len, stats.words, stats.heading_count);
    sp_buf json = {0};
    md_stats_to_json(&stats, &json);
    md_stats_free(&stats);
    sp_buf_free(&markdown);

    report(90, "storing in the cache");
    uint64_t ttl_ms;
    char bad[80];
    if (!cache_ttl_ms(&ttl_ms, bad, sizeof bad)) {
        sp_buf_free(&json);
        char message[160];
        snprintf(message, sizeof message,
                 "config `cache_ttl_secs` must be a whole number of seconds (got \"%s\")", bad);
        return fail(err, message);
    }
    handler_string_t value = {(uint8_t *)json.data, json.len};
    if (!spool_plugin_cache_set(&key, &value, &ttl_ms, &cache_err)) {
        log_line(SPOOL_PLUGIN_LOG_LEVEL_WARN, "%.*s; the next identical job analyses again",
                 (int)cache_err.len, (const char *)cache_err.ptr);
        handler_string_free(&cache_err);
    }
    report(100, "done");

    // Replace the closing `}` with `,"cached":false}`.
    json.len--;
    sp_buf_push_str(&json, ",\"cached\":false}");
    ret->ptr = (uint8_t *)json.data;
    ret->len = json.len;
    return true;
}

bool exports_handler_handle(handler_job_t *job, handler_string_t *ret, handler_job_error_t *err) {
    bool ok = run(job, ret, err);
    handler_job_free(job);
    return ok;
}
