/*
 * collector.h: C SDK for `collector` dispatcher plugins, ABI v1 (docs/ABI.md).
 * Single header, stb-style:
 *
 *     #include "collector.h"            everywhere you need the declarations
 *     #define COLLECTOR_IMPLEMENTATION  in exactly one .c file, before including it
 *
 * Two modes, chosen automatically (or force one with -DCOLLECTOR_FREESTANDING /
 * -DCOLLECTOR_LIBC):
 *
 *   freestanding  clang --target=wasm32 -nostdlib: no libc at all. The header brings
 *                 its own allocator (first-fit free list over __heap_base, growing
 *                 memory with memory.grow), memcpy/memmove/memset/memcmp, and number
 *                 formatting and parsing. Chosen for __wasm__ without __wasi__.
 *   libc          wasi-libc (clang --target=wasm32-wasi, a reactor) or a native
 *                 build (tests): malloc/free, stdio for collector_logf, strtod.
 *
 * What is in it:
 *   - the raw imports collector.log / collector.set_error and safe wrappers
 *     (collector_log, collector_error, collector_retry, collector_reject, and
 *     collector_logf / collector_errorf in libc mode);
 *   - collector_malloc/calloc/realloc/free (malloc & co. in libc mode);
 *   - a zero-copy, allocation-free, bounds-checked batch reader: collector_batch,
 *     collector_sample (string fields are {ptr,len} views into the batch), values
 *     with list/map iterators;
 *   - exact comparison of numbers (int64/uint64/double mixed);
 *   - a JSON writer with the rules of plugin-sdk/src/json.rs (shortest round-trip
 *     floats, NaN/Infinity, Ceilometer key order) into a caller's buffer;
 *   - a small validating JSON reader for plugin configs;
 *   - COLLECTOR_PLUGIN_EXPORTS() / COLLECTOR_PLUGIN_SNAPSHOT_EXPORTS(): the ABI
 *     exports around your callbacks collector_plugin_init/_dispatch(/_snapshot/_restore).
 *
 * A plugin, in full:
 *
 *     #define COLLECTOR_IMPLEMENTATION
 *     #include "collector.h"
 *
 *     int collector_plugin_init(const char *config_json, size_t len) {
 *         return COLLECTOR_STATUS_OK;
 *     }
 *     int collector_plugin_dispatch(const collector_batch *batch) {
 *         collector_batch_iter it;
 *         collector_sample s;
 *         int rc;
 *         collector_batch_iter_init(&it, batch);
 *         while ((rc = collector_batch_next(&it, &s)) > 0) {
 *             ... s.counter_name.ptr, s.counter_name.len, s.counter_volume ...
 *         }
 *         if (rc < 0) return collector_reject(collector_strerror(rc));
 *         return COLLECTOR_STATUS_OK;
 *     }
 *     COLLECTOR_PLUGIN_EXPORTS()
 *
 * Build: see docs/plugins-c.md. Check: `collector check plugin.wasm`.
 *
 * Options (define before including the implementation):
 *   COLLECTOR_NO_UTF8_CHECK   do not validate the UTF-8 of strings as they are read
 *                             (the host guarantees it; saves a few ns per string)
 *   COLLECTOR_NO_MEMFUNCS     freestanding: do not define memcpy/memmove/memset/memcmp
 *   COLLECTOR_TEST_HEAP_SIZE  freestanding mode on a non-wasm target (tests only):
 *                             size of the static array that stands in for memory
 *
 * Limits (documented where they apply): a sample nests at most COLLECTOR_MAX_NESTING
 * (64) levels of dicts and lists, itself counting as one, so a resource_metadata or
 * extra value holds at most COLLECTOR_MAX_DEPTH (63) levels of List/Map, as the Rust
 * SDK (docs/ABI.md 9.7); config JSON nesting <= 64;
 * in freestanding mode, config floats with more than 19 significant digits are
 * rounded from their first 19 digits.
 */
#ifndef COLLECTOR_H
#define COLLECTOR_H

#if !defined(COLLECTOR_FREESTANDING) && !defined(COLLECTOR_LIBC)
#  if defined(__wasm__) && !defined(__wasi__)
#    define COLLECTOR_FREESTANDING 1
#  else
#    define COLLECTOR_LIBC 1
#  endif
#endif
#if defined(COLLECTOR_FREESTANDING) && defined(COLLECTOR_LIBC)
#  error "define only one of COLLECTOR_FREESTANDING and COLLECTOR_LIBC"
#endif

/* Freestanding headers only (compiler-provided). */
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ constants */

#define COLLECTOR_ABI_VERSION 1

/* Status codes returned by init/dispatch (ABI section 7). */
#define COLLECTOR_STATUS_OK 0
#define COLLECTOR_STATUS_RETRY 1
#define COLLECTOR_STATUS_REJECT 2

/* Log levels of collector.log (ABI section 6.1). */
#define COLLECTOR_LOG_ERROR 1
#define COLLECTOR_LOG_WARN 2
#define COLLECTOR_LOG_INFO 3
#define COLLECTOR_LOG_DEBUG 4
#define COLLECTOR_LOG_TRACE 5

/* Deepest nesting of one sample, in levels of dicts and lists, the sample dict itself
 * counting as level 1: the ABI's one nesting limit (docs/ABI.md section 9.7, Rust's
 * collector_sdk::abi::MAX_NESTING). */
#define COLLECTOR_MAX_NESTING 64
/* Levels of List/Map a sample field's value (resource_metadata, or an extra key's
 * value) may hold: the sample dict itself taken off (Rust's codec::MAX_DEPTH, 63).
 * A field's own value, if a list or map, is level 1; empty lists and maps count.
 * In collector_value.depth terms: a LIST or MAP at depth >= COLLECTOR_MAX_DEPTH is
 * refused (COLLECTOR_E_DEPTH); scalars may sit at depth COLLECTOR_MAX_DEPTH. */
#define COLLECTOR_MAX_DEPTH (COLLECTOR_MAX_NESTING - 1)

/* Error codes (negative) of the batch reader and the JSON reader. */
#define COLLECTOR_E_TRUNCATED (-1) /* unexpected end of batch / text */
#define COLLECTOR_E_FLAG (-2)      /* Option/Field flag or Bool byte not 0 or 1 */
#define COLLECTOR_E_TAG (-3)       /* unknown Value or Number tag */
#define COLLECTOR_E_UTF8 (-4)      /* string is not UTF-8 */
#define COLLECTOR_E_DEPTH (-5)     /* nested too deeply */
#define COLLECTOR_E_TRAILING (-6)  /* bytes left after the last sample / JSON value */
#define COLLECTOR_E_TYPE (-7)      /* wrong kind of value for this call */
#define COLLECTOR_E_SYNTAX (-8)    /* JSON syntax error */
#define COLLECTOR_E_SPACE (-9)     /* output buffer too small */
#define COLLECTOR_E_ARG (-10)      /* bad argument (NULL, ...) */

/* Result of collector_number_cmp when a NaN is involved. */
#define COLLECTOR_UNORDERED 2

/* ------------------------------------------------------------------ basic types */

/* A byte string: NOT NUL-terminated, may contain NUL bytes. Points into the batch
 * (or config), so it is valid only while that buffer is (until the callback returns). */
typedef struct collector_str {
    const char *ptr;
    size_t len;
} collector_str;

typedef enum collector_num_type {
    COLLECTOR_NUM_INT = 0,   /* as.i: int64 */
    COLLECTOR_NUM_UINT = 1,  /* as.u: uint64, only above INT64_MAX */
    COLLECTOR_NUM_FLOAT = 2  /* as.f: double (may be NaN, infinite, -0.0) */
} collector_num_type;

/* A tagged number: counter_volume, monotonic_time, config numbers. */
typedef struct collector_number {
    collector_num_type type;
    union {
        int64_t i;
        uint64_t u;
        double f;
    } as;
} collector_number;

/* Presence of a key of the sample dict (ABI section 9.4). */
typedef enum collector_presence {
    COLLECTOR_ABSENT = 0,  /* key not in the dict */
    COLLECTOR_NULL = 1,    /* "key": null */
    COLLECTOR_PRESENT = 2  /* "key": value */
} collector_presence;

typedef struct collector_opt_str {
    collector_presence state;
    collector_str value; /* valid when state == COLLECTOR_PRESENT */
} collector_opt_str;

typedef struct collector_opt_number {
    collector_presence state;
    collector_number value; /* valid when state == COLLECTOR_PRESENT */
} collector_opt_number;

typedef enum collector_value_type {
    COLLECTOR_VALUE_NULL = 0,
    COLLECTOR_VALUE_BOOL = 1,
    COLLECTOR_VALUE_INT = 2,
    COLLECTOR_VALUE_UINT = 3,
    COLLECTOR_VALUE_FLOAT = 4,
    COLLECTOR_VALUE_STR = 5,
    COLLECTOR_VALUE_BYTES = 6,
    COLLECTOR_VALUE_LIST = 7,
    COLLECTOR_VALUE_MAP = 8
} collector_value_type;

/* A metadata / extra value, borrowed from the batch. Lists and maps are raw spans,
 * already bounds-checked; walk them with collector_iter_init + collector_list_next /
 * collector_map_next, or look keys up with collector_map_get. */
typedef struct collector_value {
    collector_value_type type;
    uint32_t depth; /* 0 for a sample field's value (resource_metadata or an extra
                     * key's); items of a depth-d list/map are d + 1. A sample's
                     * `extra` (the sample dict's own entries) is UINT32_MAX, so that
                     * its values are at 0 like resource_metadata's. */
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double f;
        collector_str str; /* STR (UTF-8) and BYTES (raw bytes, maybe not UTF-8) */
        struct {
            const uint8_t *ptr; /* the encoded items / (key, value) entries */
            size_t len;         /* their size in bytes */
            uint64_t count;     /* number of items / entries */
        } seq;                  /* LIST and MAP */
    } as;
    const uint8_t *raw; /* the whole encoding in the batch (tag included; for a */
    size_t raw_len;     /* sample's extra keys: the u64 count and the entries) */
} collector_value;

typedef struct collector_opt_value {
    collector_presence state; /* ABSENT or PRESENT ("null" is PRESENT, type NULL) */
    collector_value value;
} collector_opt_value;

/* One sample, decoded in place (ABI section 9.3). Nothing is allocated. */
typedef struct collector_sample {
    collector_str source;
    collector_str counter_name;
    collector_str counter_type;
    collector_str counter_unit;
    collector_opt_number counter_volume; /* COLLECTOR_NULL or COLLECTOR_PRESENT */
    collector_opt_str user_id;           /* ABSENT, NULL or PRESENT */
    collector_opt_str user_name;
    collector_opt_str project_id;
    collector_opt_str project_name;
    collector_str resource_id;
    collector_str timestamp;
    collector_opt_value resource_metadata; /* ABSENT or PRESENT */
    collector_str message_id;
    collector_opt_number monotonic_time;  /* ABSENT, NULL or PRESENT */
    collector_opt_str message_signature;  /* ABSENT or PRESENT */
    collector_value extra;                /* MAP of the other top-level keys, in order
                                           * (depth UINT32_MAX: its values are at 0) */
    const uint8_t *raw;                   /* the sample's bytes in the batch */
    size_t raw_len;
} collector_sample;

/* A batch as handed to collector_plugin_dispatch. */
typedef struct collector_batch {
    const uint8_t *data; /* the whole batch, header included */
    size_t len;
    uint64_t count; /* samples announced by the header */
} collector_batch;

typedef struct collector_batch_iter {
    const uint8_t *base, *pos, *end;
    uint64_t left;
    int error;           /* 0, or the error code once one happened */
    size_t error_offset; /* byte offset in the batch where decoding stopped */
} collector_batch_iter;

/* Iterator over a list's items or a map's entries. */
typedef struct collector_iter {
    const uint8_t *pos, *end;
    uint64_t left;
    uint32_t depth; /* depth of the items */
    int is_map;
    int error;
} collector_iter;

/* An output buffer for the JSON writer. len counts every byte written, also those
 * that did not fit: the output is complete iff len <= cap (collector_buf_ok).
 * A dynamic buffer (collector_buf_init_dynamic) grows with collector_realloc. */
typedef struct collector_buf {
    char *data;
    size_t cap;
    size_t len;
    int dynamic;
} collector_buf;

/* A JSON value in a config text: its kind and its raw text (quotes included for
 * strings). */
typedef enum collector_json_type {
    COLLECTOR_JSON_NULL = 0,
    COLLECTOR_JSON_FALSE,
    COLLECTOR_JSON_TRUE,
    COLLECTOR_JSON_NUMBER,
    COLLECTOR_JSON_STRING,
    COLLECTOR_JSON_ARRAY,
    COLLECTOR_JSON_OBJECT
} collector_json_type;

typedef struct collector_json {
    collector_json_type type;
    const char *ptr;
    size_t len;
} collector_json;

typedef struct collector_json_iter {
    const char *pos, *end;
    int first;
    int error;
} collector_json_iter;

/* ------------------------------------------------------------------ imports */

#if defined(__wasm__)
/* Raw imports (ABI section 6). Only those you call end up imported. */
__attribute__((import_module("collector"), import_name("log")))
void collector_raw_log(int32_t level, const char *ptr, size_t len);
__attribute__((import_module("collector"), import_name("set_error")))
void collector_raw_set_error(const char *ptr, size_t len);
#endif

/* One line in the daemon's log (level COLLECTOR_LOG_*). At most 1 MiB is kept.
 * NULL is allowed with len 0. Outside wasm (native tests) it goes to stderr. */
void collector_log(int level, const char *msg, size_t len);
void collector_log_cstr(int level, const char *msg);
/* The message that explains the non-OK status of the current call. */
void collector_error(const char *msg, size_t len);
void collector_error_cstr(const char *msg);
/* Result helpers: set the error message (NUL-terminated) and return the status. */
int collector_retry(const char *msg);
int collector_reject(const char *msg);
#if defined(COLLECTOR_LIBC)
/* printf-style; messages longer than 4 KiB are formatted into the heap. */
void collector_logf(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void collector_errorf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
#endif
#if !defined(__wasm__)
/* Native builds only: the last message given to collector_error (for tests). */
const char *collector_last_error(void);
#endif

/* ------------------------------------------------------------------ heap */

/* 8-byte aligned. Freestanding: first-fit free list with coalescing, starting at
 * __heap_base and growing linear memory (never shrinking it); libc: malloc & co. */
void *collector_malloc(size_t n);
void *collector_calloc(size_t count, size_t size);
void *collector_realloc(void *p, size_t n);
void collector_free(void *p);

/* ------------------------------------------------------------------ batch reader */

/* Reads the 8-byte header. Returns 0, or COLLECTOR_E_TRUNCATED if len < 8. */
int collector_batch_open(collector_batch *b, const void *data, size_t len);
void collector_batch_iter_init(collector_batch_iter *it, const collector_batch *b);
/* 1: *out holds the next sample. 0: no more samples and the batch ended exactly
 * at the last byte. < 0: error code (sticky; it->error_offset tells where). Every
 * sample field is checked: lengths, flags, tags, nesting; strings read here and by
 * the value iterators are checked to be UTF-8 (unless COLLECTOR_NO_UTF8_CHECK). */
int collector_batch_next(collector_batch_iter *it, collector_sample *out);
/* Walks the whole batch: 0 when it is well-formed, else the first error. */
int collector_batch_validate(const collector_batch *b, size_t *error_offset);

/* Values: v must be a LIST or MAP (else COLLECTOR_E_TYPE). */
int collector_iter_init(collector_iter *it, const collector_value *v);
/* 1: item read; 0: end; < 0: error. */
int collector_list_next(collector_iter *it, collector_value *item);
int collector_map_next(collector_iter *it, collector_str *key, collector_value *value);
/* 1 found (first entry with that key), 0 not found, < 0 error (not a map, malformed). */
int collector_map_get(const collector_value *map, const char *key, size_t key_len,
                      collector_value *out);

const char *collector_strerror(int code);

/* Strings and numbers. */
bool collector_str_eq(collector_str s, const char *p, size_t len);
bool collector_str_eq_cstr(collector_str s, const char *cstr);
/* Exact comparison across int64/uint64/double: -1 (a < b), 0, 1, or
 * COLLECTOR_UNORDERED when either is NaN. -0.0 == 0. */
int collector_number_cmp(const collector_number *a, const collector_number *b);
double collector_number_to_f64(const collector_number *n);
/* 1 and *out set if v is INT, UINT or FLOAT; 0 otherwise. */
int collector_value_number(const collector_value *v, collector_number *out);

/* ------------------------------------------------------------------ JSON writer */

void collector_buf_init(collector_buf *b, char *mem, size_t cap);
void collector_buf_init_dynamic(collector_buf *b); /* grows on demand */
void collector_buf_free(collector_buf *b);         /* dynamic buffers only */
void collector_buf_reset(collector_buf *b);        /* len = 0, keeps the memory */
bool collector_buf_ok(const collector_buf *b);     /* all bytes stored? */
void collector_buf_append(collector_buf *b, const void *p, size_t n);
void collector_buf_putc(collector_buf *b, char c);
void collector_buf_puts(collector_buf *b, const char *cstr);

/* Shortest text that reads back as the same double, always with a '.' or an
 * exponent, in the form of Rust's `{:?}` (plugin-sdk/src/json.rs): 512.0, -0.0,
 * 209.767, 0.0001, 1e-5, 1e16, 1.7976931348623157e308; NaN, Infinity, -Infinity.
 * Exact (bignum Steele-White/Burger-Dybvig), no libc. out needs 32 bytes;
 * returns the length (no NUL written). */
size_t collector_format_f64(double f, char *out);
size_t collector_format_i64(int64_t v, char *out); /* 21 bytes */
size_t collector_format_u64(uint64_t v, char *out);

void collector_json_write_str(collector_buf *b, const char *s, size_t len);
void collector_json_write_bytes(collector_buf *b, const uint8_t *s, size_t len); /* lossy */
void collector_json_write_i64(collector_buf *b, int64_t v);
void collector_json_write_u64(collector_buf *b, uint64_t v);
void collector_json_write_f64(collector_buf *b, double v);
void collector_json_write_number(collector_buf *b, const collector_number *n);
/* < 0 only for a malformed value (never for one read from a valid batch). */
int collector_json_write_value(collector_buf *b, const collector_value *v);
/* One sample as Ceilometer's dict, keys in its order, no newline. */
int collector_json_write_sample(collector_buf *b, const collector_sample *s);
/* Into a caller's buffer: returns the full length (the text is complete iff
 * result <= cap; no NUL is written), or (size_t)-1 for a malformed sample. */
size_t collector_sample_to_json(const collector_sample *s, char *out, size_t cap);

/* ------------------------------------------------------------------ JSON reader */

/* Validates a whole JSON text (RFC 8259; nesting <= 64) and returns its root. */
int collector_json_parse(const char *text, size_t len, collector_json *root);
void collector_json_iter_init(collector_json_iter *it, const collector_json *v);
/* 1: next member / item; 0: end; < 0: error. Keys are STRING values. */
int collector_json_next_member(collector_json_iter *it, collector_json *key,
                               collector_json *value);
int collector_json_next_item(collector_json_iter *it, collector_json *value);
/* Member of an object by (unescaped) key: 1 found, 0 not, < 0 error. */
int collector_json_get(const collector_json *obj, const char *key, collector_json *out);
/* Unescapes a STRING into out (cap bytes, not NUL-terminated); *len = full length.
 * COLLECTOR_E_SPACE when it does not fit (call with cap 0 to size it). */
int collector_json_strcpy(const collector_json *s, char *out, size_t cap, size_t *len);
/* Unescaped STRING equals p[0..len)? */
bool collector_json_streq(const collector_json *s, const char *p, size_t len);
/* NUMBER: an integer literal gives INT (or UINT above INT64_MAX, FLOAT beyond
 * UINT64_MAX); anything with '.', 'e' or 'E' gives FLOAT. */
int collector_json_to_number(const collector_json *v, collector_number *out);
/* Decimal text to double (JSON number syntax), correctly rounded (freestanding:
 * from the first 19 significant digits). */
int collector_parse_f64(const char *p, size_t len, double *out);

/* ------------------------------------------------------------------ plugin exports */

/* Your callbacks. config_json is not NUL-terminated and is freed when init
 * returns: copy what you keep. Return COLLECTOR_STATUS_*; call collector_error
 * (or use collector_retry / collector_reject) for a non-zero status. */
int collector_plugin_init(const char *config_json, size_t len);
int collector_plugin_dispatch(const collector_batch *batch);
/* Optional (COLLECTOR_PLUGIN_SNAPSHOT_EXPORTS): the state to hand to the next
 * instance. Set *data and *len (memory that stays valid until the next call into the
 * plugin, e.g. a static buffer) and return 1, or return 0 for no state. */
int collector_plugin_snapshot(const void **data, size_t *len);
/* Called once after init on a new instance with the last snapshot (the buffer is
 * freed when it returns). Non-zero: the host logs it and goes on without state. */
int collector_plugin_restore(const void *data, size_t len);

/* The glue behind the macros (not for direct use). */
int32_t collector__export_alloc(int32_t len);
int32_t collector__export_init(int32_t ptr, int32_t len, int (*cb)(const char *, size_t));
int32_t collector__export_dispatch(int32_t ptr, int32_t len, int (*cb)(const collector_batch *));
int64_t collector__export_snapshot(int (*cb)(const void **, size_t *));
int32_t collector__export_restore(int32_t ptr, int32_t len, int (*cb)(const void *, size_t));

#if defined(__wasm__)
#define COLLECTOR__EXPORT(name) __attribute__((export_name(name), visibility("default")))
/* Defines collector_abi_version_1, collector_alloc, collector_init and
 * collector_dispatch around your callbacks. Use once, at file scope. */
#define COLLECTOR_PLUGIN_EXPORTS()                                            \
    COLLECTOR__EXPORT("collector_abi_version_1")                              \
    void collector_abi_version_1(void) {}                                     \
    COLLECTOR__EXPORT("collector_alloc")                                      \
    int32_t collector_alloc(int32_t len) {                                    \
        return collector__export_alloc(len);                                  \
    }                                                                         \
    COLLECTOR__EXPORT("collector_init")                                       \
    int32_t collector_init(int32_t p, int32_t n) {                            \
        return collector__export_init(p, n, collector_plugin_init);           \
    }                                                                         \
    COLLECTOR__EXPORT("collector_dispatch")                                   \
    int32_t collector_dispatch(int32_t p, int32_t n) {                        \
        return collector__export_dispatch(p, n, collector_plugin_dispatch);   \
    }                                                                         \
    typedef int collector__exports_defined_
/* Optional collector_snapshot / collector_restore around your callbacks. */
#define COLLECTOR_PLUGIN_SNAPSHOT_EXPORTS()                                   \
    COLLECTOR__EXPORT("collector_snapshot")                                   \
    int64_t collector_snapshot(void) {                                        \
        return collector__export_snapshot(collector_plugin_snapshot);         \
    }                                                                         \
    COLLECTOR__EXPORT("collector_restore")                                    \
    int32_t collector_restore(int32_t p, int32_t n) {                         \
        return collector__export_restore(p, n, collector_plugin_restore);     \
    }                                                                         \
    typedef int collector__snapshot_exports_defined_
#else
/* Native builds (tests): no exports; call the callbacks directly. */
#define COLLECTOR_PLUGIN_EXPORTS() typedef int collector__exports_defined_
#define COLLECTOR_PLUGIN_SNAPSHOT_EXPORTS() typedef int collector__snapshot_exports_defined_
#endif


/* ------------------------------------------------------------ outbound HTTP */
/* Requests to the endpoints the operator declared for the dispatcher
 * ([[dispatchers.endpoints]]; docs/ABI.md section 17). Give the endpoint's
 * name and a target (a path and query under its URL, "" for the URL itself);
 * the host adds TLS, credentials and its headers. Several requests may run at
 * once; a wait never outlives the current call's deadline.
 *
 *     int32_t h = collector_http_send("influx", "POST", "/write?db=x", NULL, 0, body, n);
 *     if (h < 0) return ...;               // refused: collector_http_error(-1, ...)
 *     if (collector_http_wait(&h, 1, 5000) < 0) ...   // still running
 *     int32_t status = collector_http_status(h);       // 204, or COLLECTOR_HTTP_FAIL_*
 *     collector_http_close(h);
 *
 * or, blocking: collector_http_fetch(...) returns the status and the body. */
#define COLLECTOR_HTTP_ERR_UNKNOWN_ENDPOINT (-1)
#define COLLECTOR_HTTP_ERR_BAD_TARGET (-2)
#define COLLECTOR_HTTP_ERR_BUSY (-3)
#define COLLECTOR_HTTP_ERR_TOO_LARGE (-4)
#define COLLECTOR_HTTP_ERR_MALFORMED (-5)
#define COLLECTOR_HTTP_ERR_HEADER (-6)
#define COLLECTOR_HTTP_ERR_NO_HANDLE (-7)
#define COLLECTOR_HTTP_ERR_UNAVAILABLE (-8)
#define COLLECTOR_HTTP_PENDING 0
#define COLLECTOR_HTTP_FAIL_CONNECT (-10)
#define COLLECTOR_HTTP_FAIL_TIMEOUT (-11)
#define COLLECTOR_HTTP_FAIL_RESPONSE_TOO_LARGE (-12)
#define COLLECTOR_HTTP_FAIL_IO (-14)
#define COLLECTOR_HTTP_WAIT_NONE (-1)
#define COLLECTOR_HTTP_LAST_REFUSAL (-1)

typedef struct collector_http_header {
    const char *name;  /* NUL-terminated */
    const char *value; /* NUL-terminated */
} collector_http_header;

#if defined(__wasm__)
__attribute__((import_module("collector"), import_name("http_send")))
int32_t collector_raw_http_send(const void *req, size_t len);
__attribute__((import_module("collector"), import_name("http_wait")))
int32_t collector_raw_http_wait(const int32_t *handles, size_t count, int32_t timeout_ms);
__attribute__((import_module("collector"), import_name("http_status")))
int32_t collector_raw_http_status(int32_t h);
__attribute__((import_module("collector"), import_name("http_body_len")))
int32_t collector_raw_http_body_len(int32_t h);
__attribute__((import_module("collector"), import_name("http_read")))
int32_t collector_raw_http_read(int32_t h, void *dst, size_t len, int32_t offset);
__attribute__((import_module("collector"), import_name("http_error")))
int32_t collector_raw_http_error(int32_t h, char *dst, size_t len);
__attribute__((import_module("collector"), import_name("http_close")))
void collector_raw_http_close(int32_t h);
#endif

/* Starts a request; a handle >= 0, or a refusal COLLECTOR_HTTP_ERR_*. */
int32_t collector_http_send(const char *endpoint, const char *method, const char *target,
                            const collector_http_header *headers, size_t nheaders,
                            const void *body, size_t body_len);
/* Index in `handles` of one that has finished, or COLLECTOR_HTTP_WAIT_NONE. */
int32_t collector_http_wait(const int32_t *handles, size_t count, int32_t timeout_ms);
/* The HTTP status, COLLECTOR_HTTP_PENDING, or COLLECTOR_HTTP_FAIL_*. */
int32_t collector_http_status(int32_t handle);
/* Appends the response body to `out`; its length, or a negative code. */
int32_t collector_http_body(int32_t handle, collector_buf *out);
/* Why a request failed (handle COLLECTOR_HTTP_LAST_REFUSAL: the last refused
 * send), NUL-terminated in dst[cap]; its length. */
size_t collector_http_error(int32_t handle, char *dst, size_t cap);
void collector_http_close(int32_t handle);
/* Send, wait at most timeout_ms, read: the HTTP status (> 0), or a negative
 * code (refused, failed, or COLLECTOR_HTTP_FAIL_TIMEOUT when the wait ended
 * first). With `response` not NULL, the body is appended to it. */
int32_t collector_http_fetch(const char *endpoint, const char *method, const char *target,
                             const collector_http_header *headers, size_t nheaders,
                             const void *body, size_t body_len, int32_t timeout_ms,
                             collector_buf *response);
/* The answer every bundled dispatcher gives for a status (ABI 17.4):
 * COLLECTOR_STATUS_OK for 2xx/3xx, RETRY for failures, 429 and 5xx, REJECT for
 * other 4xx and refusals (with a message set). */
int collector_http_outcome(int32_t status);

#ifdef __cplusplus
}
#endif
#endif /* COLLECTOR_H */

/* ====================================================================== */
/*                             IMPLEMENTATION                             */
/* ====================================================================== */
#if defined(COLLECTOR_IMPLEMENTATION) && !defined(COLLECTOR_IMPLEMENTATION_DONE)
#define COLLECTOR_IMPLEMENTATION_DONE 1

#if defined(COLLECTOR_LIBC)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define COLLECTOR__MEMCPY memcpy
#define COLLECTOR__MEMMOVE memmove
#define COLLECTOR__MEMSET memset
#define COLLECTOR__MEMCMP memcmp
#else
#define COLLECTOR__MEMCPY __builtin_memcpy
#define COLLECTOR__MEMMOVE __builtin_memmove
#define COLLECTOR__MEMSET __builtin_memset
#define COLLECTOR__MEMCMP __builtin_memcmp
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ mem functions */

#if defined(COLLECTOR_FREESTANDING) && defined(__wasm__) && !defined(COLLECTOR_NO_MEMFUNCS)
/* The compiler may emit calls to these; there is no libc to provide them. */
void *memcpy(void *restrict d, const void *restrict s, size_t n) {
    unsigned char *dp = (unsigned char *)d;
    const unsigned char *sp = (const unsigned char *)s;
    while (n >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, sp, 8);
        __builtin_memcpy(dp, &w, 8);
        dp += 8, sp += 8, n -= 8;
    }
    while (n--) *dp++ = *sp++;
    return d;
}
void *memmove(void *d, const void *s, size_t n) {
    unsigned char *dp = (unsigned char *)d;
    const unsigned char *sp = (const unsigned char *)s;
    if (dp == sp || n == 0) return d;
    if (dp < sp || dp >= sp + n) return memcpy(d, s, n);
    while (n--) dp[n] = sp[n];
    return d;
}
void *memset(void *d, int c, size_t n) {
    unsigned char *dp = (unsigned char *)d;
    while (n--) *dp++ = (unsigned char)c;
    return d;
}
int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x < *y ? -1 : 1;
    return 0;
}
#endif

static size_t collector__strlen(const char *s) {
    size_t n = 0;
    if (!s) return 0;
    while (s[n]) n++;
    return n;
}

/* ------------------------------------------------------------------ logging */

#define COLLECTOR__MSG_MAX ((size_t)1 << 20)

#if !defined(__wasm__)
static char collector__last_error[1024];
const char *collector_last_error(void) { return collector__last_error; }
#endif

void collector_log(int level, const char *msg, size_t len) {
    if (!msg) len = 0;
    if (len > COLLECTOR__MSG_MAX) len = COLLECTOR__MSG_MAX; /* the host keeps 1 MiB */
#if defined(__wasm__)
    collector_raw_log(level, len ? msg : "", len);
#elif defined(COLLECTOR_LIBC)
    fprintf(stderr, "[plugin log level %d] %.*s\n", level, (int)len, len ? msg : "");
#else
    (void)level;
#endif
}

void collector_log_cstr(int level, const char *msg) {
    collector_log(level, msg, collector__strlen(msg));
}

void collector_error(const char *msg, size_t len) {
    if (!msg) len = 0;
    if (len > COLLECTOR__MSG_MAX) len = COLLECTOR__MSG_MAX;
#if defined(__wasm__)
    collector_raw_set_error(len ? msg : "", len);
#else
    {
        size_t n = len < sizeof collector__last_error - 1 ? len : sizeof collector__last_error - 1;
        if (n) COLLECTOR__MEMCPY(collector__last_error, msg, n);
        collector__last_error[n] = 0;
    }
#if defined(COLLECTOR_LIBC)
    fprintf(stderr, "[plugin error] %.*s\n", (int)len, len ? msg : "");
#endif
#endif
}

void collector_error_cstr(const char *msg) { collector_error(msg, collector__strlen(msg)); }

int collector_retry(const char *msg) {
    collector_error_cstr(msg);
    return COLLECTOR_STATUS_RETRY;
}

int collector_reject(const char *msg) {
    collector_error_cstr(msg);
    return COLLECTOR_STATUS_REJECT;
}

#if defined(COLLECTOR_LIBC)
static void collector__vformat(int level, int is_error, const char *fmt, va_list ap) {
    char small[4096];
    va_list ap2;
    int n;
    va_copy(ap2, ap);
    n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n < sizeof small) {
        if (is_error) collector_error(small, (size_t)n);
        else collector_log(level, small, (size_t)n);
    } else {
        char *big = (char *)malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, ap2);
            if (is_error) collector_error(big, (size_t)n);
            else collector_log(level, big, (size_t)n);
            free(big);
        } else if (is_error) {
            collector_error(small, sizeof small - 1);
        } else {
            collector_log(level, small, sizeof small - 1);
        }
    }
    va_end(ap2);
}

void collector_logf(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    collector__vformat(level, 0, fmt, ap);
    va_end(ap);
}

void collector_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    collector__vformat(0, 1, fmt, ap);
    va_end(ap);
}
#endif

/* ------------------------------------------------------------------ heap */

#if defined(COLLECTOR_LIBC)
void *collector_malloc(size_t n) { return n > (size_t)-1 / 2 ? NULL : malloc(n ? n : 1); }
void *collector_calloc(size_t c, size_t s) {
    if (s && c > (size_t)-1 / 2 / s) return NULL;
    return calloc(c ? c : 1, s ? s : 1);
}
void *collector_realloc(void *p, size_t n) { return n > (size_t)-1 / 2 ? NULL : realloc(p, n ? n : 1); }
void collector_free(void *p) { free(p); }
#else
/* Free-list allocator. Every block starts with a header of two words:
 *   size  block size in bytes, header included, a multiple of COLLECTOR__ALIGN
 *   next  free block: the next free block by address (or NULL);
 *         used block: COLLECTOR__USED (checked by free: a double free traps)
 * Free blocks are kept sorted by address and merged with their neighbours, so
 * a plugin that frees what it allocates does not make memory grow. */
typedef struct collector__block {
    size_t size;
    struct collector__block *next;
} collector__block;

#define COLLECTOR__ALIGN (sizeof(collector__block) < 8 ? 8 : sizeof(collector__block))
#define COLLECTOR__HDR COLLECTOR__ALIGN
#define COLLECTOR__USED ((collector__block *)(uintptr_t)0xC011EC70u)
#define COLLECTOR__MIN_SPLIT (COLLECTOR__HDR + 2 * COLLECTOR__ALIGN)

static collector__block *collector__free_list;
static uintptr_t collector__brk;     /* end of the heap in use */
static uintptr_t collector__limit;   /* end of memory we may use */

#if defined(__wasm__)
extern unsigned char __heap_base;
static int collector__heap_setup(void) {
    collector__brk = ((uintptr_t)&__heap_base + COLLECTOR__ALIGN - 1) & ~(uintptr_t)(COLLECTOR__ALIGN - 1);
    collector__limit = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
    return 0;
}
/* Makes [.., end) usable: grows linear memory by whole pages. */
static int collector__heap_grow(uintptr_t end) {
    uintptr_t pages;
    if (end <= collector__limit) return 0;
    pages = (end - collector__limit + 65535u) / 65536u;
    if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return -1;
    collector__limit = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
    return end <= collector__limit ? 0 : -1;
}
#else
#ifndef COLLECTOR_TEST_HEAP_SIZE
#define COLLECTOR_TEST_HEAP_SIZE (16u << 20)
#endif
static union {
    double d;
    uint64_t u;
    unsigned char b[COLLECTOR_TEST_HEAP_SIZE];
} collector__test_heap;
static uintptr_t collector__test_end; /* grows like memory, 64 KiB at a time */
static int collector__heap_setup(void) {
    collector__brk = (uintptr_t)collector__test_heap.b;
    collector__test_end = collector__brk;
    collector__limit = collector__brk;
    return 0;
}
static int collector__heap_grow(uintptr_t end) {
    uintptr_t max = (uintptr_t)collector__test_heap.b + COLLECTOR_TEST_HEAP_SIZE;
    if (end <= collector__limit) return 0;
    if (end > max) return -1;
    collector__test_end = collector__limit + ((end - collector__limit + 65535u) / 65536u) * 65536u;
    if (collector__test_end > max) collector__test_end = max;
    collector__limit = collector__test_end;
    return 0;
}
#endif

void *collector_malloc(size_t n) {
    collector__block *b, **link, *last = NULL;
    size_t need;
    if (!collector__brk) collector__heap_setup();
    if (n > (size_t)-1 / 2) return NULL;
    need = (n + COLLECTOR__HDR + COLLECTOR__ALIGN - 1) & ~(size_t)(COLLECTOR__ALIGN - 1);
    if (need < COLLECTOR__HDR + COLLECTOR__ALIGN) need = COLLECTOR__HDR + COLLECTOR__ALIGN;
    for (link = &collector__free_list; (b = *link) != NULL; link = &b->next) {
        if (b->size >= need) {
            if (b->size - need >= COLLECTOR__MIN_SPLIT) {
                /* Take the front: free space stays at the top, where it can grow. */
                collector__block *rest = (collector__block *)((char *)b + need);
                rest->size = b->size - need;
                rest->next = b->next;
                *link = rest;
                b->size = need;
                b->next = COLLECTOR__USED;
                return (char *)b + COLLECTOR__HDR;
            }
            *link = b->next;
            b->next = COLLECTOR__USED;
            return (char *)b + COLLECTOR__HDR;
        }
        last = b;
    }
    /* Nothing fits: extend the last free block if it ends at the top, else grow. */
    if (last && (uintptr_t)last + last->size == collector__brk) {
        uintptr_t end = (uintptr_t)last + need;
        if (end < (uintptr_t)last || collector__heap_grow(end) != 0) return NULL;
        collector__brk = end;
        for (link = &collector__free_list; *link != last; link = &(*link)->next) {
        }
        *link = last->next;
        last->size = need;
        last->next = COLLECTOR__USED;
        return (char *)last + COLLECTOR__HDR;
    } else {
        uintptr_t start = collector__brk, end = start + need;
        if (end < start || collector__heap_grow(end) != 0) return NULL;
        collector__brk = end;
        b = (collector__block *)start;
        b->size = need;
        b->next = COLLECTOR__USED;
        return (char *)b + COLLECTOR__HDR;
    }
}

void collector_free(void *p) {
    collector__block *b, *prev = NULL, *cur;
    if (!p) return;
    b = (collector__block *)((char *)p - COLLECTOR__HDR);
    if (b->next != COLLECTOR__USED) __builtin_trap(); /* double free or a bad pointer */
    for (cur = collector__free_list; cur && cur < b; cur = cur->next) prev = cur;
    b->next = cur;
    if (cur && (char *)b + b->size == (char *)cur) { /* merge with the next block */
        b->size += cur->size;
        b->next = cur->next;
    }
    if (prev && (char *)prev + prev->size == (char *)b) { /* merge into the previous */
        prev->size += b->size;
        prev->next = b->next;
    } else if (prev) {
        prev->next = b;
    } else {
        collector__free_list = b;
    }
}

void *collector_calloc(size_t c, size_t s) {
    void *p;
    if (s && c > (size_t)-1 / s) return NULL;
    p = collector_malloc(c * s);
    if (p) COLLECTOR__MEMSET(p, 0, c * s);
    return p;
}

void *collector_realloc(void *p, size_t n) {
    collector__block *b;
    size_t have;
    void *q;
    if (!p) return collector_malloc(n);
    b = (collector__block *)((char *)p - COLLECTOR__HDR);
    if (b->next != COLLECTOR__USED) __builtin_trap();
    have = b->size - COLLECTOR__HDR;
    if (n <= have) return p;
    /* At the top of the heap: grow in place. */
    if ((uintptr_t)b + b->size == collector__brk) {
        size_t need = (n + COLLECTOR__HDR + COLLECTOR__ALIGN - 1) & ~(size_t)(COLLECTOR__ALIGN - 1);
        uintptr_t end = (uintptr_t)b + need;
        if (end > (uintptr_t)b && collector__heap_grow(end) == 0) {
            collector__brk = end;
            b->size = need;
            return p;
        }
    }
    q = collector_malloc(n);
    if (!q) return NULL;
    COLLECTOR__MEMCPY(q, p, have);
    collector_free(p);
    return q;
}
#endif

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at p (1..4), or -(length of the maximal
 * invalid subpart) (-1..-3), as Rust's from_utf8_lossy splits invalid input. */
static int collector__utf8_char(const uint8_t *p, size_t n) {
    uint8_t c = p[0], lo = 0x80, hi = 0xBF;
    int need, i;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return -1;
    for (i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        if (p[i] < lo || p[i] > hi) return -i;
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

static bool collector__utf8_valid(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (n - i >= 8) {
            uint64_t w;
            COLLECTOR__MEMCPY(&w, p + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        {
            int k = collector__utf8_char(p + i, n - i);
            if (k < 0) return false;
            i += (size_t)k;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ batch reader */

typedef struct collector__cur {
    const uint8_t *p, *end;
} collector__cur;

#define COLLECTOR__TRY(x)           \
    do {                            \
        int collector__rc = (x);    \
        if (collector__rc < 0) return collector__rc; \
    } while (0)

static uint64_t collector__le64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    COLLECTOR__MEMCPY(&v, p, 8);
    return v;
#else
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
#endif
}

static uint32_t collector__le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int collector__u8(collector__cur *c, uint8_t *v) {
    if (c->p == c->end) return COLLECTOR_E_TRUNCATED;
    *v = *c->p++;
    return 0;
}

static int collector__u32(collector__cur *c, uint32_t *v) {
    if ((size_t)(c->end - c->p) < 4) return COLLECTOR_E_TRUNCATED;
    *v = collector__le32(c->p);
    c->p += 4;
    return 0;
}

static int collector__u64(collector__cur *c, uint64_t *v) {
    if ((size_t)(c->end - c->p) < 8) return COLLECTOR_E_TRUNCATED;
    *v = collector__le64(c->p);
    c->p += 8;
    return 0;
}

/* u64 length, then that many bytes, all within the buffer. */
static int collector__bytes(collector__cur *c, const uint8_t **ptr, size_t *len) {
    uint64_t n;
    COLLECTOR__TRY(collector__u64(c, &n));
    if (n > (uint64_t)(size_t)(c->end - c->p)) return COLLECTOR_E_TRUNCATED;
    *ptr = c->p;
    *len = (size_t)n;
    c->p += n;
    return 0;
}

static int collector__str(collector__cur *c, collector_str *s) {
    const uint8_t *p;
    size_t n;
    COLLECTOR__TRY(collector__bytes(c, &p, &n));
#if !defined(COLLECTOR_NO_UTF8_CHECK)
    if (!collector__utf8_valid(p, n)) {
        c->p = p - 8;
        return COLLECTOR_E_UTF8;
    }
#endif
    s->ptr = (const char *)p;
    s->len = n;
    return 0;
}

static int collector__flag(collector__cur *c, bool *v) {
    uint8_t b;
    COLLECTOR__TRY(collector__u8(c, &b));
    if (b > 1) {
        c->p--;
        return COLLECTOR_E_FLAG;
    }
    *v = b == 1;
    return 0;
}

static int collector__number(collector__cur *c, collector_number *n) {
    uint32_t t;
    uint64_t bits;
    COLLECTOR__TRY(collector__u32(c, &t));
    COLLECTOR__TRY(collector__u64(c, &bits));
    switch (t) {
    case 0: n->type = COLLECTOR_NUM_INT; n->as.i = (int64_t)bits; break;
    case 1: n->type = COLLECTOR_NUM_UINT; n->as.u = bits; break;
    case 2: n->type = COLLECTOR_NUM_FLOAT; COLLECTOR__MEMCPY(&n->as.f, &bits, 8); break;
    default: c->p -= 12; return COLLECTOR_E_TAG;
    }
    return 0;
}

/* Steps over count items (or map entries) whose depth is `depth`, checking their
 * structure and bounds (not the UTF-8 of nested strings: checked when read) and that
 * no list or map sits at depth COLLECTOR_MAX_DEPTH or deeper.
 * Iterative: an explicit stack, no recursion. Entry `top` holds the items at depth
 * depth + top; a list/map is pushed only when its depth is < COLLECTOR_MAX_DEPTH,
 * so top <= COLLECTOR_MAX_DEPTH. */
static int collector__skip_seq(collector__cur *c, uint64_t count, int is_map, uint32_t depth) {
    uint64_t left[COLLECTOR_MAX_DEPTH + 1];
    uint8_t map[COLLECTOR_MAX_DEPTH + 1];
    int top = 0;
    left[0] = count;
    map[0] = (uint8_t)is_map;
    while (top >= 0) {
        uint32_t tag, d = depth + (uint32_t)top;
        if (left[top] == 0) {
            top--;
            continue;
        }
        left[top]--;
        if (map[top]) {
            const uint8_t *kp;
            size_t kn;
            COLLECTOR__TRY(collector__bytes(c, &kp, &kn));
        }
        COLLECTOR__TRY(collector__u32(c, &tag));
        switch (tag) {
        case COLLECTOR_VALUE_NULL: break;
        case COLLECTOR_VALUE_BOOL: {
            uint8_t b;
            COLLECTOR__TRY(collector__u8(c, &b));
            if (b > 1) return COLLECTOR_E_FLAG;
            break;
        }
        case COLLECTOR_VALUE_INT:
        case COLLECTOR_VALUE_UINT:
        case COLLECTOR_VALUE_FLOAT:
            if ((size_t)(c->end - c->p) < 8) return COLLECTOR_E_TRUNCATED;
            c->p += 8;
            break;
        case COLLECTOR_VALUE_STR:
        case COLLECTOR_VALUE_BYTES: {
            const uint8_t *sp;
            size_t sn;
            COLLECTOR__TRY(collector__bytes(c, &sp, &sn));
            break;
        }
        case COLLECTOR_VALUE_LIST:
        case COLLECTOR_VALUE_MAP: {
            uint64_t n;
            /* level d + 1 below the field: refused even when empty */
            if (d >= COLLECTOR_MAX_DEPTH) return COLLECTOR_E_DEPTH;
            COLLECTOR__TRY(collector__u64(c, &n));
            /* every item takes at least 4 bytes (a map entry at least 12) */
            if (n > (uint64_t)(c->end - c->p) / (tag == COLLECTOR_VALUE_MAP ? 12 : 4))
                return COLLECTOR_E_TRUNCATED;
            top++;
            left[top] = n;
            map[top] = tag == COLLECTOR_VALUE_MAP;
            break;
        }
        default:
            c->p -= 4;
            return COLLECTOR_E_TAG;
        }
    }
    return 0;
}

static int collector__seq(collector__cur *c, int is_map, uint32_t depth, collector_value *v) {
    uint64_t n;
    const uint8_t *start;
    COLLECTOR__TRY(collector__u64(c, &n));
    if (n > (uint64_t)(c->end - c->p) / (is_map ? 12 : 4)) return COLLECTOR_E_TRUNCATED;
    start = c->p;
    COLLECTOR__TRY(collector__skip_seq(c, n, is_map, depth + 1));
    v->type = is_map ? COLLECTOR_VALUE_MAP : COLLECTOR_VALUE_LIST;
    v->as.seq.ptr = start;
    v->as.seq.len = (size_t)(c->p - start);
    v->as.seq.count = n;
    return 0;
}

/* One Value at `depth`; nested lists and maps are checked and kept as spans. */
static int collector__value(collector__cur *c, uint32_t depth, collector_value *v) {
    const uint8_t *start = c->p;
    uint32_t tag;
    COLLECTOR__TRY(collector__u32(c, &tag));
    v->depth = depth;
    switch (tag) {
    case COLLECTOR_VALUE_NULL: v->type = COLLECTOR_VALUE_NULL; break;
    case COLLECTOR_VALUE_BOOL: {
        bool b;
        COLLECTOR__TRY(collector__flag(c, &b));
        v->type = COLLECTOR_VALUE_BOOL;
        v->as.b = b;
        break;
    }
    case COLLECTOR_VALUE_INT:
    case COLLECTOR_VALUE_UINT:
    case COLLECTOR_VALUE_FLOAT: {
        uint64_t bits;
        COLLECTOR__TRY(collector__u64(c, &bits));
        v->type = (collector_value_type)tag;
        if (tag == COLLECTOR_VALUE_INT) v->as.i = (int64_t)bits;
        else if (tag == COLLECTOR_VALUE_UINT) v->as.u = bits;
        else COLLECTOR__MEMCPY(&v->as.f, &bits, 8);
        break;
    }
    case COLLECTOR_VALUE_STR:
        COLLECTOR__TRY(collector__str(c, &v->as.str));
        v->type = COLLECTOR_VALUE_STR;
        break;
    case COLLECTOR_VALUE_BYTES: {
        const uint8_t *p;
        size_t n;
        COLLECTOR__TRY(collector__bytes(c, &p, &n));
        v->type = COLLECTOR_VALUE_BYTES;
        v->as.str.ptr = (const char *)p;
        v->as.str.len = n;
        break;
    }
    case COLLECTOR_VALUE_LIST:
    case COLLECTOR_VALUE_MAP:
        if (depth >= COLLECTOR_MAX_DEPTH) return COLLECTOR_E_DEPTH;
        COLLECTOR__TRY(collector__seq(c, tag == COLLECTOR_VALUE_MAP, depth, v));
        break;
    default:
        c->p -= 4;
        return COLLECTOR_E_TAG;
    }
    v->raw = start;
    v->raw_len = (size_t)(c->p - start);
    return 0;
}

static int collector__opt_str(collector__cur *c, collector_opt_str *f, bool field) {
    bool some;
    COLLECTOR__TRY(collector__flag(c, &some));
    if (!some) {
        f->state = COLLECTOR_ABSENT;
        return 0;
    }
    if (field) {
        COLLECTOR__TRY(collector__flag(c, &some));
        if (!some) {
            f->state = COLLECTOR_NULL;
            return 0;
        }
    }
    COLLECTOR__TRY(collector__str(c, &f->value));
    f->state = COLLECTOR_PRESENT;
    return 0;
}

static int collector__sample(collector__cur *c, collector_sample *s) {
    bool some;
    const uint8_t *start = c->p;
    COLLECTOR__TRY(collector__str(c, &s->source));
    COLLECTOR__TRY(collector__str(c, &s->counter_name));
    COLLECTOR__TRY(collector__str(c, &s->counter_type));
    COLLECTOR__TRY(collector__str(c, &s->counter_unit));
    COLLECTOR__TRY(collector__flag(c, &some));
    s->counter_volume.state = some ? COLLECTOR_PRESENT : COLLECTOR_NULL;
    if (some) COLLECTOR__TRY(collector__number(c, &s->counter_volume.value));
    COLLECTOR__TRY(collector__opt_str(c, &s->user_id, true));
    COLLECTOR__TRY(collector__opt_str(c, &s->user_name, true));
    COLLECTOR__TRY(collector__opt_str(c, &s->project_id, true));
    COLLECTOR__TRY(collector__opt_str(c, &s->project_name, true));
    COLLECTOR__TRY(collector__str(c, &s->resource_id));
    COLLECTOR__TRY(collector__str(c, &s->timestamp));
    COLLECTOR__TRY(collector__flag(c, &some));
    s->resource_metadata.state = some ? COLLECTOR_PRESENT : COLLECTOR_ABSENT;
    if (some) COLLECTOR__TRY(collector__value(c, 0, &s->resource_metadata.value));
    COLLECTOR__TRY(collector__str(c, &s->message_id));
    COLLECTOR__TRY(collector__flag(c, &some));
    if (!some) {
        s->monotonic_time.state = COLLECTOR_ABSENT;
    } else {
        COLLECTOR__TRY(collector__flag(c, &some));
        s->monotonic_time.state = some ? COLLECTOR_PRESENT : COLLECTOR_NULL;
        if (some) COLLECTOR__TRY(collector__number(c, &s->monotonic_time.value));
    }
    COLLECTOR__TRY(collector__opt_str(c, &s->message_signature, false));
    {
        /* The extra keys are the sample dict's own entries: their values are sample
         * fields at depth 0, like resource_metadata's, so the map itself is one above. */
        const uint8_t *es = c->p;
        uint64_t n;
        COLLECTOR__TRY(collector__u64(c, &n));
        if (n > (uint64_t)(c->end - c->p) / 12) return COLLECTOR_E_TRUNCATED;
        COLLECTOR__TRY(collector__skip_seq(c, n, 1, 0));
        s->extra.type = COLLECTOR_VALUE_MAP;
        s->extra.depth = UINT32_MAX; /* + 1 (its entries) wraps to 0 */
        s->extra.as.seq.ptr = es + 8;
        s->extra.as.seq.len = (size_t)(c->p - es - 8);
        s->extra.as.seq.count = n;
        s->extra.raw = es;
        s->extra.raw_len = (size_t)(c->p - es);
    }
    s->raw = start;
    s->raw_len = (size_t)(c->p - start);
    return 0;
}

int collector_batch_open(collector_batch *b, const void *data, size_t len) {
    if (!b || (!data && len)) return COLLECTOR_E_ARG;
    b->data = (const uint8_t *)data;
    b->len = len;
    b->count = 0;
    if (len < 8) return COLLECTOR_E_TRUNCATED;
    b->count = collector__le64(b->data);
    return 0;
}

void collector_batch_iter_init(collector_batch_iter *it, const collector_batch *b) {
    it->base = b->data;
    it->pos = b->len >= 8 ? b->data + 8 : b->data;
    it->end = b->data + b->len;
    it->left = b->count;
    it->error = b->len >= 8 ? 0 : COLLECTOR_E_TRUNCATED;
    it->error_offset = 0;
}

int collector_batch_next(collector_batch_iter *it, collector_sample *out) {
    collector__cur c;
    int rc;
    if (it->error) return it->error;
    if (it->left == 0) {
        if (it->pos != it->end) {
            it->error = COLLECTOR_E_TRAILING;
            it->error_offset = (size_t)(it->pos - it->base);
            return it->error;
        }
        return 0;
    }
    c.p = it->pos;
    c.end = it->end;
    rc = collector__sample(&c, out);
    if (rc < 0) {
        it->error = rc;
        it->error_offset = (size_t)(c.p - it->base);
        return rc;
    }
    it->pos = c.p;
    it->left--;
    return 1;
}

int collector_batch_validate(const collector_batch *b, size_t *error_offset) {
    collector_batch_iter it;
    collector_sample s;
    int rc;
    collector_batch_iter_init(&it, b);
    while ((rc = collector_batch_next(&it, &s)) > 0) {
    }
    if (error_offset) *error_offset = it.error_offset;
    return rc;
}

int collector_iter_init(collector_iter *it, const collector_value *v) {
    it->error = 0;
    it->left = 0;
    it->pos = it->end = NULL;
    it->depth = 0;
    it->is_map = 0;
    if (!v || (v->type != COLLECTOR_VALUE_LIST && v->type != COLLECTOR_VALUE_MAP)) {
        it->error = COLLECTOR_E_TYPE;
        return COLLECTOR_E_TYPE;
    }
    it->pos = v->as.seq.ptr;
    it->end = v->as.seq.ptr + v->as.seq.len;
    it->left = v->as.seq.count;
    it->depth = (uint32_t)(v->depth + 1u); /* extra: UINT32_MAX + 1 wraps to 0 */
    it->is_map = v->type == COLLECTOR_VALUE_MAP;
    return 0;
}

static int collector__iter_next(collector_iter *it, collector_str *key, collector_value *v) {
    collector__cur c;
    int rc;
    collector_str k;
    if (it->error) return it->error;
    if (it->left == 0) return 0;
    c.p = it->pos;
    c.end = it->end;
    if (it->is_map) {
        rc = collector__str(&c, &k);
        if (rc < 0) return it->error = rc;
        if (key) *key = k;
    }
    rc = collector__value(&c, it->depth, v);
    if (rc < 0) return it->error = rc;
    it->pos = c.p;
    it->left--;
    return 1;
}

int collector_list_next(collector_iter *it, collector_value *item) {
    if (it->is_map && !it->error) it->error = COLLECTOR_E_TYPE;
    return collector__iter_next(it, NULL, item);
}

int collector_map_next(collector_iter *it, collector_str *key, collector_value *value) {
    if (!it->is_map && !it->error) it->error = COLLECTOR_E_TYPE;
    return collector__iter_next(it, key, value);
}

int collector_map_get(const collector_value *map, const char *key, size_t key_len,
                      collector_value *out) {
    collector_iter it;
    collector_str k;
    int rc;
    if (!map || map->type != COLLECTOR_VALUE_MAP) return COLLECTOR_E_TYPE;
    collector_iter_init(&it, map);
    while ((rc = collector_map_next(&it, &k, out)) > 0)
        if (collector_str_eq(k, key, key_len)) return 1;
    return rc;
}

const char *collector_strerror(int code) {
    switch (code) {
    case 0: return "ok";
    case COLLECTOR_E_TRUNCATED: return "unexpected end of input";
    case COLLECTOR_E_FLAG: return "flag or bool byte is not 0 or 1";
    case COLLECTOR_E_TAG: return "unknown value or number tag";
    case COLLECTOR_E_UTF8: return "string is not UTF-8";
    case COLLECTOR_E_DEPTH: return "values nested too deeply";
    case COLLECTOR_E_TRAILING: return "trailing bytes after the end";
    case COLLECTOR_E_TYPE: return "wrong kind of value";
    case COLLECTOR_E_SYNTAX: return "JSON syntax error";
    case COLLECTOR_E_SPACE: return "output buffer too small";
    case COLLECTOR_E_ARG: return "bad argument";
    default: return "unknown error";
    }
}

/* ------------------------------------------------------------------ numbers */

bool collector_str_eq(collector_str s, const char *p, size_t len) {
    return s.len == len && (len == 0 || COLLECTOR__MEMCMP(s.ptr, p, len) == 0);
}

bool collector_str_eq_cstr(collector_str s, const char *cstr) {
    return collector_str_eq(s, cstr, collector__strlen(cstr));
}

static uint64_t collector__f64_bits(double f) {
    uint64_t b;
    COLLECTOR__MEMCPY(&b, &f, 8);
    return b;
}

static double collector__f64_from_bits(uint64_t b) {
    double f;
    COLLECTOR__MEMCPY(&f, &b, 8);
    return f;
}

static bool collector__isnan(double f) { return f != f; }

/* A number as sign + integer magnitude + "has a fractional part". */
typedef struct {
    int neg;
    uint64_t mag;
    int frac;
} collector__exact;

static int collector__cmp_exact(collector__exact a, collector__exact b) {
    int r;
    if (a.mag == 0 && !a.frac) a.neg = 0;
    if (b.mag == 0 && !b.frac) b.neg = 0;
    if (a.neg != b.neg) return a.neg ? -1 : 1;
    if (a.mag != b.mag) r = a.mag < b.mag ? -1 : 1;
    else if (a.frac != b.frac) r = a.frac ? 1 : -1; /* only one of them is a float */
    else r = 0;
    return a.neg ? -r : r;
}

static collector__exact collector__exact_int(const collector_number *n) {
    collector__exact e;
    e.frac = 0;
    if (n->type == COLLECTOR_NUM_UINT) {
        e.neg = 0;
        e.mag = n->as.u;
    } else {
        e.neg = n->as.i < 0;
        e.mag = e.neg ? (uint64_t)0 - (uint64_t)n->as.i : (uint64_t)n->as.i;
    }
    return e;
}

int collector_number_cmp(const collector_number *a, const collector_number *b) {
    int af = a->type == COLLECTOR_NUM_FLOAT, bf = b->type == COLLECTOR_NUM_FLOAT;
    if (af && bf) {
        double x = a->as.f, y = b->as.f;
        if (collector__isnan(x) || collector__isnan(y)) return COLLECTOR_UNORDERED;
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (!af && !bf) return collector__cmp_exact(collector__exact_int(a), collector__exact_int(b));
    {
        const collector_number *fl = af ? a : b, *in = af ? b : a;
        double f = fl->as.f, m;
        collector__exact ef, ei = collector__exact_int(in);
        int r;
        if (collector__isnan(f)) return COLLECTOR_UNORDERED;
        if (f >= 18446744073709551616.0) r = 1;           /* above every uint64 */
        else if (f < -9223372036854775808.0) r = -1;      /* below every int64 */
        else {
            ef.neg = f < 0;
            m = ef.neg ? -f : f;
            ef.mag = (uint64_t)m; /* truncates; exact for |f| < 2^64 */
            ef.frac = m != (double)ef.mag;
            r = collector__cmp_exact(ef, ei);
        }
        return af ? r : -r;
    }
}

double collector_number_to_f64(const collector_number *n) {
    switch (n->type) {
    case COLLECTOR_NUM_INT: return (double)n->as.i;
    case COLLECTOR_NUM_UINT: return (double)n->as.u;
    default: return n->as.f;
    }
}

int collector_value_number(const collector_value *v, collector_number *out) {
    switch (v->type) {
    case COLLECTOR_VALUE_INT: out->type = COLLECTOR_NUM_INT; out->as.i = v->as.i; return 1;
    case COLLECTOR_VALUE_UINT: out->type = COLLECTOR_NUM_UINT; out->as.u = v->as.u; return 1;
    case COLLECTOR_VALUE_FLOAT: out->type = COLLECTOR_NUM_FLOAT; out->as.f = v->as.f; return 1;
    default: return 0;
    }
}

/* ------------------------------------------------------------------ bignums */

/* Unsigned big integers for exact float <-> decimal conversion. 48 x 32 bits is
 * well above the ~1200 bits the extreme doubles need. */
#define COLLECTOR__BN_WORDS 48
typedef struct {
    uint32_t w[COLLECTOR__BN_WORDS];
    int n;    /* words in use; w[n-1] != 0 unless n == 0 */
    int ovf;  /* set if a result did not fit (never for the ranges used here) */
} collector__bn;

static void collector__bn_set(collector__bn *a, uint64_t v) {
    a->ovf = 0;
    a->n = 0;
    while (v) {
        a->w[a->n++] = (uint32_t)v;
        v >>= 32;
    }
}

static void collector__bn_mul_small(collector__bn *a, uint32_t m) {
    uint64_t carry = 0;
    int i;
    for (i = 0; i < a->n; i++) {
        uint64_t t = (uint64_t)a->w[i] * m + carry;
        a->w[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry) {
        if (a->n < COLLECTOR__BN_WORDS) a->w[a->n++] = (uint32_t)carry;
        else a->ovf = 1;
    }
}

static void collector__bn_mul_pow10(collector__bn *a, int e) {
    static const uint32_t p10[10] = {1, 10, 100, 1000, 10000, 100000, 1000000,
                                     10000000, 100000000, 1000000000};
    while (e >= 9) {
        collector__bn_mul_small(a, p10[9]);
        e -= 9;
    }
    if (e > 0) collector__bn_mul_small(a, p10[e]);
}

static void collector__bn_shl(collector__bn *a, int bits) {
    int words = bits / 32, b = bits % 32, i;
    if (a->n == 0 || bits == 0) return;
    if (a->n + words + 1 > COLLECTOR__BN_WORDS) {
        a->ovf = 1;
        return;
    }
    if (b) {
        a->w[a->n] = 0;
        for (i = a->n; i > 0; i--) a->w[i] = (a->w[i] << b) | (a->w[i - 1] >> (32 - b));
        a->w[0] <<= b;
        a->n++;
        if (a->w[a->n - 1] == 0) a->n--;
    }
    if (words) {
        for (i = a->n - 1; i >= 0; i--) a->w[i + words] = a->w[i];
        for (i = 0; i < words; i++) a->w[i] = 0;
        a->n += words;
    }
}

static int collector__bn_cmp(const collector__bn *a, const collector__bn *b) {
    int i;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (i = a->n - 1; i >= 0; i--)
        if (a->w[i] != b->w[i]) return a->w[i] < b->w[i] ? -1 : 1;
    return 0;
}

/* r = a + b */
static void collector__bn_add(collector__bn *r, const collector__bn *a, const collector__bn *b) {
    int n = a->n > b->n ? a->n : b->n, i;
    uint64_t carry = 0;
    for (i = 0; i < n; i++) {
        uint64_t t = carry + (i < a->n ? a->w[i] : 0) + (i < b->n ? b->w[i] : 0);
        r->w[i] = (uint32_t)t;
        carry = t >> 32;
    }
    r->n = n;
    r->ovf = a->ovf | b->ovf;
    if (carry) {
        if (n < COLLECTOR__BN_WORDS) r->w[r->n++] = (uint32_t)carry;
        else r->ovf = 1;
    }
}

/* a -= b, requires a >= b */
static void collector__bn_sub(collector__bn *a, const collector__bn *b) {
    int64_t borrow = 0;
    int i;
    for (i = 0; i < a->n; i++) {
        int64_t t = (int64_t)a->w[i] - (i < b->n ? b->w[i] : 0) - borrow;
        borrow = t < 0;
        a->w[i] = (uint32_t)(t + (borrow ? ((int64_t)1 << 32) : 0));
    }
    while (a->n > 0 && a->w[a->n - 1] == 0) a->n--;
}

/* ------------------------------------------------------------------ float -> text */

/* Shortest digits of a positive finite double (free-format Steele & White /
 * Burger & Dybvig with exact bignums). digits[] gets '0'..'9', returns their
 * count; *k is such that the value is 0.d1d2... * 10^k. */
static int collector__shortest(uint64_t bits, char *digits, int *k) {
    int be = (int)((bits >> 52) & 0x7ff), e, i, n = 0, kk, inclusive, unequal, low, high;
    uint64_t f = bits & ((1ull << 52) - 1);
    collector__bn r, s, mp, mm, t;
    if (be == 0) {
        e = -1074;
    } else {
        f |= 1ull << 52;
        e = be - 1075;
    }
    inclusive = (f & 1) == 0;
    unequal = f == (1ull << 52) && be > 1;
    if (e >= 0) {
        collector__bn_set(&r, f);
        collector__bn_shl(&r, e + (unequal ? 2 : 1));
        collector__bn_set(&s, unequal ? 4 : 2);
        collector__bn_set(&mp, 1);
        collector__bn_shl(&mp, e + (unequal ? 1 : 0));
        collector__bn_set(&mm, 1);
        collector__bn_shl(&mm, e);
    } else {
        collector__bn_set(&r, f);
        collector__bn_shl(&r, unequal ? 2 : 1);
        collector__bn_set(&s, 1);
        collector__bn_shl(&s, (unequal ? 2 : 1) - e);
        collector__bn_set(&mp, unequal ? 2 : 1);
        collector__bn_set(&mm, 1);
    }
    /* k estimate, never too high: floor(E * log10(2)) - 1 with E = floor(log2 v). */
    {
        int bitlen = 64 - __builtin_clzll(f);
        int E = e + bitlen - 1;
        kk = (int)(((int64_t)E * 78913) >> 18) - 1;
    }
    if (kk >= 0) collector__bn_mul_pow10(&s, kk);
    else {
        collector__bn_mul_pow10(&r, -kk);
        collector__bn_mul_pow10(&mp, -kk);
        collector__bn_mul_pow10(&mm, -kk);
    }
    /* Fix k up: the smallest k with v + m+ below (or at) 10^k. */
    for (;;) {
        int c;
        collector__bn_add(&t, &r, &mp);
        c = collector__bn_cmp(&t, &s);
        if (inclusive ? c >= 0 : c > 0) {
            collector__bn_mul_small(&s, 10);
            kk++;
        } else break;
    }
    *k = kk;
    /* Fast path: when s * 10 fits in 64 bits (values of moderate magnitude with
     * few significant bits, e.g. 209.767 or 1000.898535), the same loop in u64. */
    if (s.n <= 2 && mp.n <= 2 && mm.n <= 2 && r.n <= 2) {
        uint64_t S = s.w[0] | (s.n > 1 ? (uint64_t)s.w[1] << 32 : 0);
        if (S < (1ull << 59)) {
            uint64_t R = r.n ? r.w[0] | (r.n > 1 ? (uint64_t)r.w[1] << 32 : 0) : 0;
            uint64_t P = mp.w[0] | (mp.n > 1 ? (uint64_t)mp.w[1] << 32 : 0);
            uint64_t Q = mm.w[0] | (mm.n > 1 ? (uint64_t)mm.w[1] << 32 : 0);
            for (;;) {
                int d;
                R *= 10, P *= 10, Q *= 10; /* R, P, Q < S: no overflow */
                d = (int)(R / S);
                R %= S;
                low = inclusive ? R <= Q : R < Q;
                high = inclusive ? R + P >= S : R + P > S;
                if (!low && !high && n < 17) {
                    digits[n++] = (char)('0' + d);
                    continue;
                }
                if (low && high) {
                    if (2 * R >= S) d++;
                } else if (high) {
                    d++;
                }
                digits[n++] = (char)('0' + d);
                break;
            }
            goto carry;
        }
    }
    for (;;) {
        int d = 0, c;
        collector__bn_mul_small(&r, 10);
        collector__bn_mul_small(&mp, 10);
        collector__bn_mul_small(&mm, 10);
        while (collector__bn_cmp(&r, &s) >= 0) {
            collector__bn_sub(&r, &s);
            d++;
        }
        c = collector__bn_cmp(&r, &mm);
        low = inclusive ? c <= 0 : c < 0;
        collector__bn_add(&t, &r, &mp);
        c = collector__bn_cmp(&t, &s);
        high = inclusive ? c >= 0 : c > 0;
        if (!low && !high && n < 17) {
            digits[n++] = (char)('0' + d);
            continue;
        }
        if (low && high) {
            t = r;
            collector__bn_shl(&t, 1);
            c = collector__bn_cmp(&t, &s);
            if (c >= 0) d++; /* round half up, as Rust's Dragon does */
        } else if (high) {
            d++;
        }
        digits[n++] = (char)('0' + d);
        break;
    }
carry:
    /* Carry from a rounded-up 9 (10), then drop trailing zeros. */
    for (i = n - 1; i > 0 && digits[i] > '9'; i--) {
        digits[i] = '0';
        digits[i - 1]++;
    }
    if (digits[0] > '9') {
        digits[0] = '1';
        n = 1;
        (*k)++;
    }
    while (n > 1 && digits[n - 1] == '0') n--;
    return n;
}

size_t collector_format_f64(double f, char *out) {
    uint64_t bits = collector__f64_bits(f);
    char d[24];
    size_t o = 0;
    int n, k, exp10, i;
    if (collector__isnan(f)) {
        COLLECTOR__MEMCPY(out, "NaN", 3);
        return 3;
    }
    if (bits >> 63) out[o++] = '-';
    bits &= ~(1ull << 63);
    if (bits == 0x7ffull << 52) {
        COLLECTOR__MEMCPY(out + o, "Infinity", 8);
        return o + 8;
    }
    if (bits == 0) {
        COLLECTOR__MEMCPY(out + o, "0.0", 3);
        return o + 3;
    }
    if (bits < 0x4340000000000000ull) { /* |f| < 2^53: integral values print as such */
        double a = collector__f64_from_bits(bits);
        uint64_t u = (uint64_t)a;
        if ((double)u == a) {
            o += collector_format_u64(u, out + o);
            out[o++] = '.';
            out[o++] = '0';
            return o;
        }
    }
    n = collector__shortest(bits, d, &k);
    exp10 = k - 1;
    if (exp10 < -4 || exp10 >= 16) {
        /* d.ddde-N, as Rust's {:?}: no '+', no leading zeros, "1e16" for one digit */
        char eb[8];
        int en = 0, ev = exp10 < 0 ? -exp10 : exp10;
        out[o++] = d[0];
        if (n > 1) {
            out[o++] = '.';
            for (i = 1; i < n; i++) out[o++] = d[i];
        }
        out[o++] = 'e';
        if (exp10 < 0) out[o++] = '-';
        do {
            eb[en++] = (char)('0' + ev % 10);
            ev /= 10;
        } while (ev);
        while (en) out[o++] = eb[--en];
    } else if (k <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (i = 0; i < -k; i++) out[o++] = '0';
        for (i = 0; i < n; i++) out[o++] = d[i];
    } else if (k < n) {
        for (i = 0; i < k; i++) out[o++] = d[i];
        out[o++] = '.';
        for (; i < n; i++) out[o++] = d[i];
    } else {
        for (i = 0; i < n; i++) out[o++] = d[i];
        for (; i < k; i++) out[o++] = '0';
        out[o++] = '.';
        out[o++] = '0';
    }
    return o;
}

size_t collector_format_u64(uint64_t v, char *out) {
    char t[20];
    size_t n = 0, i;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++) out[i] = t[n - 1 - i];
    return n;
}

size_t collector_format_i64(int64_t v, char *out) {
    if (v < 0) {
        out[0] = '-';
        return 1 + collector_format_u64((uint64_t)0 - (uint64_t)v, out + 1);
    }
    return collector_format_u64((uint64_t)v, out);
}

/* ------------------------------------------------------------------ JSON writer */

void collector_buf_init(collector_buf *b, char *mem, size_t cap) {
    b->data = mem;
    b->cap = mem ? cap : 0;
    b->len = 0;
    b->dynamic = 0;
}

void collector_buf_init_dynamic(collector_buf *b) {
    b->data = NULL;
    b->cap = 0;
    b->len = 0;
    b->dynamic = 1;
}

void collector_buf_free(collector_buf *b) {
    if (b->dynamic) collector_free(b->data);
    b->data = NULL;
    b->cap = b->len = 0;
}

void collector_buf_reset(collector_buf *b) { b->len = 0; }

bool collector_buf_ok(const collector_buf *b) { return b->len <= b->cap; }

void collector_buf_append(collector_buf *b, const void *p, size_t n) {
    size_t room;
    if (n <= 16 && b->cap - b->len >= n && b->len <= b->cap) { /* small pieces: no call */
        char *d = b->data + b->len;
        const char *q = (const char *)p;
        size_t i;
        for (i = 0; i < n; i++) d[i] = q[i];
        b->len += n;
        return;
    }
    if (b->dynamic && b->len + n > b->cap && b->len <= b->cap) {
        size_t want = b->cap ? b->cap * 2 : 256;
        char *q;
        while (want < b->len + n) want *= 2;
        q = (char *)collector_realloc(b->data, want);
        if (q) {
            b->data = q;
            b->cap = want;
        }
    }
    room = b->len < b->cap ? b->cap - b->len : 0;
    if (room) COLLECTOR__MEMCPY(b->data + b->len, p, n < room ? n : room);
    b->len += n;
}

void collector_buf_putc(collector_buf *b, char c) {
    if (b->len < b->cap) b->data[b->len++] = c;
    else collector_buf_append(b, &c, 1);
}

void collector_buf_puts(collector_buf *b, const char *s) {
    collector_buf_append(b, s, collector__strlen(s));
}

static const char collector__hex[] = "0123456789abcdef";

/* Does any byte of w need escaping (< 0x20, '"', '\\', 0x7f)? Exact as a boolean. */
static int collector__needs_escape(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t lt = (w - ones * 0x20) & ~w;
    uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\'), del = w ^ (ones * 0x7f);
    q = (q - ones) & ~q;
    bs = (bs - ones) & ~bs;
    del = (del - ones) & ~del;
    return ((lt | q | bs | del) & highs) != 0;
}

static void collector__json_escaped(collector_buf *b, const uint8_t *s, size_t n) {
    size_t i, start = 0;
    for (i = 0; i < n; i++) {
        uint8_t c;
        char esc[6];
        size_t en = 2;
        while (n - i >= 8) { /* skip 8 plain bytes at a time */
            uint64_t w;
            COLLECTOR__MEMCPY(&w, s + i, 8);
            if (collector__needs_escape(w)) break;
            i += 8;
        }
        if (i >= n) break;
        c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) continue;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = collector__hex[c >> 4];
            esc[5] = collector__hex[c & 15];
            en = 6;
        }
        collector_buf_append(b, s + start, i - start);
        collector_buf_append(b, esc, en);
        start = i + 1;
    }
    collector_buf_append(b, s + start, n - start);
}

void collector_json_write_str(collector_buf *b, const char *s, size_t len) {
    collector_buf_putc(b, '"');
    collector__json_escaped(b, (const uint8_t *)s, len);
    collector_buf_putc(b, '"');
}

void collector_json_write_bytes(collector_buf *b, const uint8_t *s, size_t len) {
    size_t i = 0, start = 0;
    collector_buf_putc(b, '"');
    while (i < len) {
        int k;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        k = collector__utf8_char(s + i, len - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        collector__json_escaped(b, s + start, i - start);
        collector_buf_append(b, "\xEF\xBF\xBD", 3); /* U+FFFD */
        i += (size_t)-k;
        start = i;
    }
    collector__json_escaped(b, s + start, len - start);
    collector_buf_putc(b, '"');
}

void collector_json_write_i64(collector_buf *b, int64_t v) {
    char t[24];
    collector_buf_append(b, t, collector_format_i64(v, t));
}

void collector_json_write_u64(collector_buf *b, uint64_t v) {
    char t[24];
    collector_buf_append(b, t, collector_format_u64(v, t));
}

void collector_json_write_f64(collector_buf *b, double v) {
    char t[32];
    collector_buf_append(b, t, collector_format_f64(v, t));
}

void collector_json_write_number(collector_buf *b, const collector_number *n) {
    switch (n->type) {
    case COLLECTOR_NUM_INT: collector_json_write_i64(b, n->as.i); break;
    case COLLECTOR_NUM_UINT: collector_json_write_u64(b, n->as.u); break;
    default: collector_json_write_f64(b, n->as.f); break;
    }
}

int collector_json_write_value(collector_buf *b, const collector_value *v) {
    collector_iter it;
    collector_value item;
    collector_str key;
    int rc, first = 1;
    switch (v->type) {
    case COLLECTOR_VALUE_NULL: collector_buf_append(b, "null", 4); return 0;
    case COLLECTOR_VALUE_BOOL:
        if (v->as.b) collector_buf_append(b, "true", 4);
        else collector_buf_append(b, "false", 5);
        return 0;
    case COLLECTOR_VALUE_INT: collector_json_write_i64(b, v->as.i); return 0;
    case COLLECTOR_VALUE_UINT: collector_json_write_u64(b, v->as.u); return 0;
    case COLLECTOR_VALUE_FLOAT: collector_json_write_f64(b, v->as.f); return 0;
    case COLLECTOR_VALUE_STR: collector_json_write_str(b, v->as.str.ptr, v->as.str.len); return 0;
    case COLLECTOR_VALUE_BYTES:
        collector_json_write_bytes(b, (const uint8_t *)v->as.str.ptr, v->as.str.len);
        return 0;
    case COLLECTOR_VALUE_LIST:
        COLLECTOR__TRY(collector_iter_init(&it, v));
        collector_buf_putc(b, '[');
        while ((rc = collector_list_next(&it, &item)) > 0) {
            if (!first) collector_buf_putc(b, ',');
            first = 0;
            COLLECTOR__TRY(collector_json_write_value(b, &item));
        }
        if (rc < 0) return rc;
        collector_buf_putc(b, ']');
        return 0;
    case COLLECTOR_VALUE_MAP:
        COLLECTOR__TRY(collector_iter_init(&it, v));
        collector_buf_putc(b, '{');
        while ((rc = collector_map_next(&it, &key, &item)) > 0) {
            if (!first) collector_buf_putc(b, ',');
            first = 0;
            collector_json_write_str(b, key.ptr, key.len);
            collector_buf_putc(b, ':');
            COLLECTOR__TRY(collector_json_write_value(b, &item));
        }
        if (rc < 0) return rc;
        collector_buf_putc(b, '}');
        return 0;
    default: return COLLECTOR_E_TAG;
    }
}

/* "key": (with the comma before it unless first) */
static void collector__key(collector_buf *b, const char *k, int *first) {
    if (!*first) collector_buf_putc(b, ',');
    *first = 0;
    collector_buf_putc(b, '"');
    collector_buf_puts(b, k);
    collector_buf_append(b, "\":", 2);
}

static void collector__key_str(collector_buf *b, const char *k, collector_str v, int *first) {
    collector__key(b, k, first);
    collector_json_write_str(b, v.ptr, v.len);
}

static void collector__key_opt_str(collector_buf *b, const char *k, const collector_opt_str *v,
                                   int *first) {
    if (v->state == COLLECTOR_ABSENT) return;
    collector__key(b, k, first);
    if (v->state == COLLECTOR_NULL) collector_buf_append(b, "null", 4);
    else collector_json_write_str(b, v->value.ptr, v->value.len);
}

static void collector__key_opt_num(collector_buf *b, const char *k, const collector_opt_number *v,
                                   int *first) {
    if (v->state == COLLECTOR_ABSENT) return;
    collector__key(b, k, first);
    if (v->state == COLLECTOR_NULL) collector_buf_append(b, "null", 4);
    else collector_json_write_number(b, &v->value);
}

int collector_json_write_sample(collector_buf *b, const collector_sample *s) {
    int first = 1, rc;
    collector_iter it;
    collector_str key;
    collector_value v;
    collector_opt_number vol = s->counter_volume;
    if (vol.state == COLLECTOR_ABSENT) vol.state = COLLECTOR_NULL; /* the key is required */
    collector_buf_putc(b, '{');
    collector__key_str(b, "source", s->source, &first);
    collector__key_str(b, "counter_name", s->counter_name, &first);
    collector__key_str(b, "counter_type", s->counter_type, &first);
    collector__key_str(b, "counter_unit", s->counter_unit, &first);
    collector__key_opt_num(b, "counter_volume", &vol, &first);
    collector__key_opt_str(b, "user_id", &s->user_id, &first);
    collector__key_opt_str(b, "user_name", &s->user_name, &first);
    collector__key_opt_str(b, "project_id", &s->project_id, &first);
    collector__key_opt_str(b, "project_name", &s->project_name, &first);
    collector__key_str(b, "resource_id", s->resource_id, &first);
    collector__key_str(b, "timestamp", s->timestamp, &first);
    if (s->resource_metadata.state != COLLECTOR_ABSENT) {
        collector__key(b, "resource_metadata", &first);
        COLLECTOR__TRY(collector_json_write_value(b, &s->resource_metadata.value));
    }
    collector__key_str(b, "message_id", s->message_id, &first);
    collector__key_opt_num(b, "monotonic_time", &s->monotonic_time, &first);
    if (s->message_signature.state == COLLECTOR_PRESENT)
        collector__key_str(b, "message_signature", s->message_signature.value, &first);
    COLLECTOR__TRY(collector_iter_init(&it, &s->extra));
    while ((rc = collector_map_next(&it, &key, &v)) > 0) {
        if (!first) collector_buf_putc(b, ',');
        first = 0;
        collector_json_write_str(b, key.ptr, key.len);
        collector_buf_putc(b, ':');
        COLLECTOR__TRY(collector_json_write_value(b, &v));
    }
    if (rc < 0) return rc;
    collector_buf_putc(b, '}');
    return 0;
}

size_t collector_sample_to_json(const collector_sample *s, char *out, size_t cap) {
    collector_buf b;
    collector_buf_init(&b, out, cap);
    if (collector_json_write_sample(&b, s) < 0) return (size_t)-1;
    return b.len;
}

/* ------------------------------------------------------------------ text -> float */

#if defined(COLLECTOR_LIBC)
int collector_parse_f64(const char *p, size_t len, double *out) {
    char small[128], *buf = small, *end;
    if (len >= sizeof small) {
        buf = (char *)malloc(len + 1);
        if (!buf) return COLLECTOR_E_SPACE;
    }
    COLLECTOR__MEMCPY(buf, p, len);
    buf[len] = 0;
    *out = strtod(buf, &end);
    len = (size_t)(end - buf) == len ? 0 : 1;
    if (buf != small) free(buf);
    return len ? COLLECTOR_E_SYNTAX : 0;
}
#else
/* Exact rounding by comparison with bignums (Clinger's AlgorithmR): start from an
 * estimate within a few ulps, then step to the neighbour until the decimal value
 * lies within half an ulp (ties to even). The decimal is M * 10^E10 with M the
 * first 19 significant digits. */
static double collector__pow10_double(int e) {
    static const double p[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    double r = 1.0;
    while (e > 22) {
        r *= 1e22;
        e -= 22;
    }
    return r * p[e];
}

/* Compares M * 10^E10 with K * 2^E2. */
static int collector__cmp_dec_bin(uint64_t M, int E10, uint64_t K, int E2) {
    collector__bn a, b;
    collector__bn_set(&a, M);
    collector__bn_set(&b, K);
    if (E10 >= 0) collector__bn_mul_pow10(&a, E10);
    else collector__bn_mul_pow10(&b, -E10);
    if (E2 >= 0) collector__bn_shl(&b, E2);
    else collector__bn_shl(&a, -E2);
    return collector__bn_cmp(&a, &b);
}

static double collector__dec_to_f64(uint64_t M, int E10, int ndig) {
    double x;
    int iter;
    if (M == 0) return 0.0;
    if (E10 + ndig > 309) return collector__f64_from_bits(0x7ffull << 52);
    if (E10 + ndig <= -324) return 0.0; /* below 1e-324: rounds to 0 */
    if (M < (1ull << 53) && E10 >= -22 && E10 <= 22) { /* exact operands, one rounding */
        return E10 >= 0 ? (double)M * collector__pow10_double(E10)
                        : (double)M / collector__pow10_double(-E10);
    }
    /* Estimate. */
    x = (double)M;
    if (E10 >= 0) x *= collector__pow10_double(E10);
    else if (E10 >= -300) x /= collector__pow10_double(-E10);
    else x = x / collector__pow10_double(300) / collector__pow10_double(-E10 - 300);
    if (x > 1.7976931348623157e308) x = 1.7976931348623157e308;
    for (iter = 0; iter < 200; iter++) {
        uint64_t bits = collector__f64_bits(x), f;
        int be = (int)(bits >> 52), e, c;
        if (be == 0) {
            f = bits & ((1ull << 52) - 1);
            e = -1074;
        } else {
            f = (bits & ((1ull << 52) - 1)) | (1ull << 52);
            e = be - 1075;
        }
        /* above the upper midpoint (2f+1) * 2^(e-1)? */
        c = collector__cmp_dec_bin(M, E10, 2 * f + 1, e - 1);
        if (c > 0 || (c == 0 && (f & 1))) {
            if (bits == 0x7fefffffffffffffull) {
                return c > 0 || (f & 1) ? collector__f64_from_bits(0x7ffull << 52) : x;
            }
            x = collector__f64_from_bits(bits + 1);
            if (c == 0) return x; /* tie to even: the neighbour is even */
            continue;
        }
        if (bits == 0) return x;
        /* below the lower midpoint? (the gap below 2^k is half as wide) */
        if (f == (1ull << 52) && be > 1) c = collector__cmp_dec_bin(M, E10, 4 * f - 1, e - 2);
        else c = collector__cmp_dec_bin(M, E10, 2 * f - 1, e - 1);
        if (c < 0 || (c == 0 && (f & 1))) {
            x = collector__f64_from_bits(bits - 1);
            if (c == 0) return x;
            continue;
        }
        return x;
    }
    return x;
}

int collector_parse_f64(const char *p, size_t len, double *out) {
    const char *end = p + len;
    int neg = 0, ndig = 0, E10 = 0, any = 0, seen_nonzero = 0;
    uint64_t M = 0;
    long ex = 0;
    if (p < end && (*p == '-' || *p == '+')) neg = *p++ == '-';
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        any = 1;
        if (*p != '0') seen_nonzero = 1;
        if (!seen_nonzero) continue;
        if (ndig < 19) M = M * 10 + (uint64_t)(*p - '0'), ndig++;
        else E10++;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            any = 1;
            if (*p != '0') seen_nonzero = 1;
            if (!seen_nonzero) {
                E10--;
                continue;
            }
            if (ndig < 19) {
                M = M * 10 + (uint64_t)(*p - '0');
                ndig++;
                E10--;
            }
        }
    }
    if (!any) return COLLECTOR_E_SYNTAX;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0, edig = 0;
        p++;
        if (p < end && (*p == '-' || *p == '+')) eneg = *p++ == '-';
        for (; p < end && *p >= '0' && *p <= '9'; p++, edig++)
            if (ex < 100000) ex = ex * 10 + (*p - '0');
        if (!edig) return COLLECTOR_E_SYNTAX;
        if (eneg) ex = -ex;
    }
    if (p != end) return COLLECTOR_E_SYNTAX;
    ex += E10;
    if (ex > 100000) ex = 100000;
    if (ex < -100000) ex = -100000;
    {
        double x = collector__dec_to_f64(M, (int)ex, ndig);
        *out = neg ? -x : x;
    }
    return 0;
}
#endif

/* ------------------------------------------------------------------ JSON reader */

typedef struct {
    const char *p, *end;
} collector__jcur;

static void collector__jws(collector__jcur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int collector__jhex4(const char *p, uint32_t *v) {
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        char h = p[i];
        *v <<= 4;
        if (h >= '0' && h <= '9') *v |= (uint32_t)(h - '0');
        else if (h >= 'a' && h <= 'f') *v |= (uint32_t)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') *v |= (uint32_t)(h - 'A' + 10);
        else return -1;
    }
    return 0;
}

static int collector__jstring(collector__jcur *c) {
    if (c->p >= c->end || *c->p != '"') return COLLECTOR_E_SYNTAX;
    c->p++;
    while (c->p < c->end) {
        uint8_t ch = (uint8_t)*c->p;
        if (ch == '"') {
            c->p++;
            return 0;
        }
        if (ch < 0x20) return COLLECTOR_E_SYNTAX;
        if (ch == '\\') {
            if (c->end - c->p < 2) return COLLECTOR_E_TRUNCATED;
            switch (c->p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                c->p += 2;
                break;
            case 'u': {
                uint32_t v;
                if (c->end - c->p < 6) return COLLECTOR_E_TRUNCATED;
                if (collector__jhex4(c->p + 2, &v)) return COLLECTOR_E_SYNTAX;
                c->p += 6;
                break;
            }
            default: return COLLECTOR_E_SYNTAX;
            }
        } else if (ch < 0x80) {
            c->p++;
        } else {
            int k = collector__utf8_char((const uint8_t *)c->p, (size_t)(c->end - c->p));
            if (k < 0) return COLLECTOR_E_UTF8;
            c->p += k;
        }
    }
    return COLLECTOR_E_TRUNCATED;
}

static int collector__jnumber(collector__jcur *c) {
    const char *p = c->p, *e = c->end;
    if (p < e && *p == '-') p++;
    if (p >= e) return COLLECTOR_E_TRUNCATED;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9')
        while (p < e && *p >= '0' && *p <= '9') p++;
    else return COLLECTOR_E_SYNTAX;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') return COLLECTOR_E_SYNTAX;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return COLLECTOR_E_SYNTAX;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    c->p = p;
    return 0;
}

static int collector__jlit(collector__jcur *c, const char *lit, size_t n) {
    if ((size_t)(c->end - c->p) < n) return COLLECTOR_E_TRUNCATED;
    if (COLLECTOR__MEMCMP(c->p, lit, n) != 0) return COLLECTOR_E_SYNTAX;
    c->p += n;
    return 0;
}

/* One value (no surrounding whitespace), fully validated. */
static int collector__jvalue(collector__jcur *c, int depth, collector_json *out) {
    const char *start = c->p;
    if (c->p >= c->end) return COLLECTOR_E_TRUNCATED;
    switch (*c->p) {
    case '{':
    case '[': {
        int obj = *c->p == '{', first = 1;
        char close = obj ? '}' : ']';
        collector_json tmp;
        if (depth >= 64) return COLLECTOR_E_DEPTH;
        c->p++;
        for (;;) {
            collector__jws(c);
            if (c->p >= c->end) return COLLECTOR_E_TRUNCATED;
            if (*c->p == close && first) {
                c->p++;
                break;
            }
            if (!first) {
                if (*c->p == close) {
                    c->p++;
                    break;
                }
                if (*c->p != ',') return COLLECTOR_E_SYNTAX;
                c->p++;
                collector__jws(c);
            }
            first = 0;
            if (obj) {
                COLLECTOR__TRY(collector__jstring(c));
                collector__jws(c);
                if (c->p >= c->end) return COLLECTOR_E_TRUNCATED;
                if (*c->p != ':') return COLLECTOR_E_SYNTAX;
                c->p++;
                collector__jws(c);
            }
            COLLECTOR__TRY(collector__jvalue(c, depth + 1, &tmp));
        }
        out->type = obj ? COLLECTOR_JSON_OBJECT : COLLECTOR_JSON_ARRAY;
        break;
    }
    case '"':
        COLLECTOR__TRY(collector__jstring(c));
        out->type = COLLECTOR_JSON_STRING;
        break;
    case 't': COLLECTOR__TRY(collector__jlit(c, "true", 4)); out->type = COLLECTOR_JSON_TRUE; break;
    case 'f': COLLECTOR__TRY(collector__jlit(c, "false", 5)); out->type = COLLECTOR_JSON_FALSE; break;
    case 'n': COLLECTOR__TRY(collector__jlit(c, "null", 4)); out->type = COLLECTOR_JSON_NULL; break;
    default:
        COLLECTOR__TRY(collector__jnumber(c));
        out->type = COLLECTOR_JSON_NUMBER;
    }
    out->ptr = start;
    out->len = (size_t)(c->p - start);
    return 0;
}

int collector_json_parse(const char *text, size_t len, collector_json *root) {
    collector__jcur c;
    if (!text && len) return COLLECTOR_E_ARG;
    c.p = text;
    c.end = text + len;
    collector__jws(&c);
    COLLECTOR__TRY(collector__jvalue(&c, 0, root));
    collector__jws(&c);
    return c.p == c.end ? 0 : COLLECTOR_E_TRAILING;
}

void collector_json_iter_init(collector_json_iter *it, const collector_json *v) {
    it->error = 0;
    it->first = 1;
    if (v->type != COLLECTOR_JSON_OBJECT && v->type != COLLECTOR_JSON_ARRAY) {
        it->pos = it->end = NULL;
        it->error = COLLECTOR_E_TYPE;
        return;
    }
    it->pos = v->ptr + 1;         /* after { or [ */
    it->end = v->ptr + v->len - 1; /* the closing } or ] */
}

static int collector__jnext(collector_json_iter *it, collector_json *key, collector_json *value) {
    collector__jcur c;
    int rc;
    if (it->error) return it->error;
    c.p = it->pos;
    c.end = it->end;
    collector__jws(&c);
    if (c.p >= c.end) return 0;
    if (!it->first) {
        if (*c.p != ',') return it->error = COLLECTOR_E_SYNTAX;
        c.p++;
        collector__jws(&c);
    }
    if (key) {
        rc = collector__jvalue(&c, 63, key);
        if (rc < 0) return it->error = rc;
        if (key->type != COLLECTOR_JSON_STRING) return it->error = COLLECTOR_E_SYNTAX;
        collector__jws(&c);
        if (c.p >= c.end || *c.p != ':') return it->error = COLLECTOR_E_SYNTAX;
        c.p++;
        collector__jws(&c);
    }
    rc = collector__jvalue(&c, 1, value);
    if (rc < 0) return it->error = rc;
    it->first = 0;
    it->pos = c.p;
    return 1;
}

int collector_json_next_member(collector_json_iter *it, collector_json *key, collector_json *value) {
    collector_json dummy;
    if (!it->error && it->end && it->end[0] != '}') it->error = COLLECTOR_E_TYPE;
    return collector__jnext(it, key ? key : &dummy, value);
}

int collector_json_next_item(collector_json_iter *it, collector_json *value) {
    if (!it->error && it->end && it->end[0] != ']') it->error = COLLECTOR_E_TYPE;
    return collector__jnext(it, NULL, value);
}

/* Next unescaped piece of a JSON string body: 1 to 4 UTF-8 bytes into out.
 * Returns their count, 0 at the closing quote, < 0 on error. */
static int collector__jchar(const char **pp, const char *end, char *out) {
    const char *p = *pp;
    uint32_t cp;
    if (p >= end) return COLLECTOR_E_TRUNCATED;
    if (*p == '"') return 0;
    if (*p != '\\') {
        out[0] = *p;
        *pp = p + 1;
        return 1;
    }
    if (end - p < 2) return COLLECTOR_E_TRUNCATED;
    switch (p[1]) {
    case 'b': out[0] = '\b'; *pp = p + 2; return 1;
    case 'f': out[0] = '\f'; *pp = p + 2; return 1;
    case 'n': out[0] = '\n'; *pp = p + 2; return 1;
    case 'r': out[0] = '\r'; *pp = p + 2; return 1;
    case 't': out[0] = '\t'; *pp = p + 2; return 1;
    case 'u': break;
    default: out[0] = p[1]; *pp = p + 2; return 1;
    }
    if (end - p < 6 || collector__jhex4(p + 2, &cp)) return COLLECTOR_E_SYNTAX;
    p += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t lo;
        if (end - p >= 6 && p[0] == '\\' && p[1] == 'u' && !collector__jhex4(p + 2, &lo) &&
            lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        } else {
            cp = 0xFFFD; /* lone surrogate */
        }
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD;
    }
    *pp = p;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int collector_json_strcpy(const collector_json *s, char *out, size_t cap, size_t *len) {
    const char *p, *end;
    size_t n = 0;
    int k;
    char t[4];
    if (s->type != COLLECTOR_JSON_STRING) return COLLECTOR_E_TYPE;
    p = s->ptr + 1;
    end = s->ptr + s->len;
    while ((k = collector__jchar(&p, end, t)) > 0) {
        if (n + (size_t)k <= cap) COLLECTOR__MEMCPY(out + n, t, (size_t)k);
        n += (size_t)k;
    }
    if (k < 0) return k;
    if (len) *len = n;
    return n <= cap ? 0 : COLLECTOR_E_SPACE;
}

bool collector_json_streq(const collector_json *s, const char *q, size_t len) {
    const char *p, *end;
    size_t n = 0;
    int k;
    char t[4];
    if (s->type != COLLECTOR_JSON_STRING) return false;
    p = s->ptr + 1;
    end = s->ptr + s->len;
    while ((k = collector__jchar(&p, end, t)) > 0) {
        if (n + (size_t)k > len || COLLECTOR__MEMCMP(q + n, t, (size_t)k) != 0) return false;
        n += (size_t)k;
    }
    return k == 0 && n == len;
}

int collector_json_get(const collector_json *obj, const char *key, collector_json *out) {
    collector_json_iter it;
    collector_json k;
    size_t kl = collector__strlen(key);
    int rc;
    if (obj->type != COLLECTOR_JSON_OBJECT) return COLLECTOR_E_TYPE;
    collector_json_iter_init(&it, obj);
    while ((rc = collector_json_next_member(&it, &k, out)) > 0)
        if (collector_json_streq(&k, key, kl)) return 1;
    return rc;
}

int collector_json_to_number(const collector_json *v, collector_number *out) {
    size_t i;
    const char *p;
    int neg, isint = 1;
    uint64_t mag = 0;
    if (v->type != COLLECTOR_JSON_NUMBER) return COLLECTOR_E_TYPE;
    for (i = 0; i < v->len; i++)
        if (v->ptr[i] == '.' || v->ptr[i] == 'e' || v->ptr[i] == 'E') isint = 0;
    if (isint) {
        p = v->ptr;
        neg = *p == '-';
        for (i = (size_t)neg; i < v->len; i++) {
            unsigned d = (unsigned)(p[i] - '0');
            if (mag > (UINT64_MAX - d) / 10) {
                isint = 0;
                break;
            }
            mag = mag * 10 + d;
        }
        if (isint && neg && mag <= (uint64_t)1 << 63) {
            out->type = COLLECTOR_NUM_INT;
            out->as.i = mag == (uint64_t)1 << 63 ? INT64_MIN : -(int64_t)mag;
            return 0;
        }
        if (isint && !neg) {
            if (mag <= (uint64_t)INT64_MAX) {
                out->type = COLLECTOR_NUM_INT;
                out->as.i = (int64_t)mag;
            } else {
                out->type = COLLECTOR_NUM_UINT;
                out->as.u = mag;
            }
            return 0;
        }
    }
    out->type = COLLECTOR_NUM_FLOAT;
    return collector_parse_f64(v->ptr, v->len, &out->as.f);
}

/* ------------------------------------------------------------------ export glue */

static uint64_t collector__zero_len_buf; /* what collector_alloc(0) returns */
static int collector__ready;             /* a successful init happened */

int32_t collector__export_alloc(int32_t len) {
    void *p;
    if (len < 0) return 0;
    if (len == 0) return (int32_t)(uintptr_t)&collector__zero_len_buf;
    p = collector_malloc((size_t)len);
    return (int32_t)(uintptr_t)p;
}

static void *collector__buf_ptr(int32_t ptr) { return (void *)(uintptr_t)(uint32_t)ptr; }

static void collector__release(void *p, int32_t len) {
    if (len > 0 && p != (void *)&collector__zero_len_buf) collector_free(p);
}

int32_t collector__export_init(int32_t ptr, int32_t len, int (*cb)(const char *, size_t)) {
    void *p = collector__buf_ptr(ptr);
    int status;
    if (len < 0) len = 0;
    status = cb((const char *)p, (size_t)len);
    collector__release(p, len);
    collector__ready = status == COLLECTOR_STATUS_OK;
    return status;
}

int32_t collector__export_dispatch(int32_t ptr, int32_t len, int (*cb)(const collector_batch *)) {
    void *p = collector__buf_ptr(ptr);
    collector_batch b;
    int status;
    if (len < 0) len = 0;
    if (!collector__ready) {
        status = collector_reject("collector_dispatch called before a successful collector_init");
    } else if (collector_batch_open(&b, p, (size_t)len) < 0) {
        status = collector_reject("batch is shorter than its 8-byte header");
    } else {
        status = cb(&b);
    }
    collector__release(p, len);
    return status;
}

int64_t collector__export_snapshot(int (*cb)(const void **, size_t *)) {
    const void *data = NULL;
    size_t len = 0;
    if (!cb(&data, &len) || !data || len == 0) return 0;
    if ((uint64_t)len > 0xffffffffu) return 0;
    return (int64_t)(((uint64_t)(uint32_t)(uintptr_t)data << 32) | (uint64_t)(uint32_t)len);
}

int32_t collector__export_restore(int32_t ptr, int32_t len, int (*cb)(const void *, size_t)) {
    void *p = collector__buf_ptr(ptr);
    int status;
    if (len < 0) len = 0;
    status = cb(p, (size_t)len);
    collector__release(p, len);
    return status;
}

#ifdef __cplusplus
}
#endif

/* ------------------------------------------------------------ outbound HTTP */

static void collector__http_field(collector_buf *b, const void *p, size_t n) {
    uint8_t len[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    collector_buf_append(b, len, 4);
    if (n) collector_buf_append(b, p, n);
}

static size_t collector__cstrlen(const char *s) {
    size_t n = 0;
    if (s) while (s[n]) n++;
    return n;
}

int32_t collector_http_send(const char *endpoint, const char *method, const char *target,
                            const collector_http_header *headers, size_t nheaders,
                            const void *body, size_t body_len) {
    collector_buf req;
    int32_t h;
    size_t i;
    collector_buf_init_dynamic(&req);
    collector__http_field(&req, endpoint, collector__cstrlen(endpoint));
    collector__http_field(&req, method, collector__cstrlen(method));
    collector__http_field(&req, target, collector__cstrlen(target));
    {
        uint8_t n[4] = {(uint8_t)nheaders, (uint8_t)(nheaders >> 8), (uint8_t)(nheaders >> 16),
                        (uint8_t)(nheaders >> 24)};
        collector_buf_append(&req, n, 4);
    }
    for (i = 0; i < nheaders; i++) {
        collector__http_field(&req, headers[i].name, collector__cstrlen(headers[i].name));
        collector__http_field(&req, headers[i].value, collector__cstrlen(headers[i].value));
    }
    collector__http_field(&req, body, body ? body_len : 0);
    if (!collector_buf_ok(&req)) {
        collector_buf_free(&req);
        return COLLECTOR_HTTP_ERR_TOO_LARGE;
    }
#if defined(__wasm__)
    h = collector_raw_http_send(req.data, req.len);
#else
    h = COLLECTOR_HTTP_ERR_UNAVAILABLE;
#endif
    collector_buf_free(&req);
    return h;
}

int32_t collector_http_wait(const int32_t *handles, size_t count, int32_t timeout_ms) {
#if defined(__wasm__)
    return collector_raw_http_wait(handles, count, timeout_ms);
#else
    (void)handles; (void)count; (void)timeout_ms;
    return COLLECTOR_HTTP_WAIT_NONE;
#endif
}

int32_t collector_http_status(int32_t handle) {
#if defined(__wasm__)
    return collector_raw_http_status(handle);
#else
    (void)handle;
    return COLLECTOR_HTTP_ERR_NO_HANDLE;
#endif
}

int32_t collector_http_body(int32_t handle, collector_buf *out) {
#if defined(__wasm__)
    int32_t len = collector_raw_http_body_len(handle), at = 0;
    char chunk[1024];
    if (len < 0) return len;
    while (at < len) {
        int32_t n = collector_raw_http_read(handle, chunk, sizeof chunk, at);
        if (n <= 0) break;
        collector_buf_append(out, chunk, (size_t)n);
        at += n;
    }
    return at;
#else
    (void)handle; (void)out;
    return COLLECTOR_HTTP_ERR_NO_HANDLE;
#endif
}

size_t collector_http_error(int32_t handle, char *dst, size_t cap) {
    size_t n = 0;
    if (!dst || cap == 0) return 0;
#if defined(__wasm__)
    {
        int32_t got = collector_raw_http_error(handle, dst, cap - 1);
        n = got > 0 ? (size_t)got : 0;
    }
#else
    {
        const char *msg = "no outbound HTTP outside a collector host";
        (void)handle;
        while (msg[n] && n + 1 < cap) { dst[n] = msg[n]; n++; }
    }
#endif
    dst[n] = 0;
    return n;
}

void collector_http_close(int32_t handle) {
#if defined(__wasm__)
    collector_raw_http_close(handle);
#else
    (void)handle;
#endif
}

int32_t collector_http_fetch(const char *endpoint, const char *method, const char *target,
                             const collector_http_header *headers, size_t nheaders,
                             const void *body, size_t body_len, int32_t timeout_ms,
                             collector_buf *response) {
    int32_t h = collector_http_send(endpoint, method, target, headers, nheaders, body, body_len);
    int32_t status;
    if (h < 0) return h;
    if (collector_http_wait(&h, 1, timeout_ms) == COLLECTOR_HTTP_WAIT_NONE) {
        collector_http_close(h);
        return COLLECTOR_HTTP_FAIL_TIMEOUT;
    }
    status = collector_http_status(h);
    if (status > 0 && response) collector_http_body(h, response);
    collector_http_close(h);
    return status;
}

int collector_http_outcome(int32_t status) {
    if (status >= 200 && status < 400) return COLLECTOR_STATUS_OK;
    if (status == 429 || status >= 500) return collector_retry("the backend answered 429 or 5xx");
    if (status >= 400) return collector_reject("the backend answered 4xx");
    if (status == COLLECTOR_HTTP_ERR_BUSY || status <= COLLECTOR_HTTP_FAIL_CONNECT)
        return collector_retry("the backend could not be reached in time");
    return collector_reject("the host refused the request (see the daemon's log)");
}

#endif /* COLLECTOR_IMPLEMENTATION */
