/*
 * c-threshold: a dispatcher written in C with plugin-sdk/c/collector.h.
 *
 * Config (the dispatcher's [dispatchers.config] table, as JSON):
 *
 *     {"path": "/data/alerts.jsonl", "limits": {"cpu": 1000000000, "memory.usage": 512}}
 *
 * For every sample whose counter_name has a limit and whose counter_volume is
 * above it (strictly; exact comparison of integers and floats; a null volume
 * never alerts), it emits one line:
 *
 *     {"message_id":"...","counter_name":"...","counter_volume":VOLUME,"limit":LIMIT}
 *
 * VOLUME and LIMIT are written as JSON numbers following the SDK's rules: integers
 * without a decimal point, floats always with a '.' or an exponent (512.0, 1e-5).
 *
 * One source, two builds:
 *   c-threshold.wasm (wasi-libc, reactor): appends the lines to `path` (required),
 *       a file inside a directory granted to the dispatcher. All lines of a batch
 *       are written with one write() before the batch is acknowledged; a failed
 *       write answers RETRY (so a batch may be written twice after a partial write).
 *   c-threshold-freestanding.wasm (no libc): logs each line through collector.log
 *       at WARN, prefixed "ALERT " (`path` is accepted and ignored).
 */
#define COLLECTOR_IMPLEMENTATION
#include "collector.h"

#if defined(COLLECTOR_LIBC)
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#define THRESHOLD_TO_FILE 1
#endif

typedef struct limit_entry {
    char *name;
    size_t len;
    collector_number limit;
} limit_entry;

static limit_entry *limits;  /* in config order */
static size_t nlimits;
static uint32_t *table;      /* open addressing: index + 1, 0 = empty */
static size_t table_mask;
static collector_buf out;    /* the lines of the current batch (reused) */
#if defined(THRESHOLD_TO_FILE)
static char *path;
static int fd = -1;
#endif

static uint32_t hash(const char *p, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    while (n--) h = (h ^ (uint8_t)*p++) * 16777619u;
    return h;
}

static const limit_entry *find_limit(collector_str name) {
    size_t i;
    if (!table) return NULL;
    for (i = hash(name.ptr, name.len) & table_mask; table[i]; i = (i + 1) & table_mask) {
        const limit_entry *e = &limits[table[i] - 1];
        if (collector_str_eq(name, e->name, e->len)) return e;
    }
    return NULL;
}

static void reset_state(void) {
    size_t i;
    for (i = 0; i < nlimits; i++) collector_free(limits[i].name);
    collector_free(limits);
    collector_free(table);
    limits = NULL;
    table = NULL;
    nlimits = 0;
    table_mask = 0;
#if defined(THRESHOLD_TO_FILE)
    if (fd >= 0) close(fd);
    fd = -1;
    collector_free(path);
    path = NULL;
#endif
}

/* Error message "config: WHAT" + an optional quoted name. */
static int config_error(const char *what, const collector_json *name) {
    collector_buf b;
    char msg[512];
    collector_buf_init(&b, msg, sizeof msg);
    collector_buf_puts(&b, "c-threshold config: ");
    collector_buf_puts(&b, what);
    if (name) {
        collector_buf_putc(&b, ' ');
        collector_buf_append(&b, name->ptr, name->len); /* raw JSON string, quotes included */
    }
    collector_error(msg, b.len < b.cap ? b.len : b.cap);
    reset_state();
    return COLLECTOR_STATUS_REJECT;
}

static int read_limits(const collector_json *obj) {
    collector_json_iter it;
    collector_json key, val;
    size_t count = 0, cap = 8, i;
    int rc;
    if (obj->type != COLLECTOR_JSON_OBJECT) return config_error("\"limits\" must be an object", NULL);
    collector_json_iter_init(&it, obj);
    while ((rc = collector_json_next_member(&it, &key, &val)) > 0) count++;
    if (rc < 0) return config_error("malformed \"limits\"", NULL);
    limits = (limit_entry *)collector_calloc(count ? count : 1, sizeof *limits);
    while (cap < 2 * count) cap *= 2;
    table = (uint32_t *)collector_calloc(cap, sizeof *table);
    if (!limits || !table) return config_error("out of memory", NULL);
    table_mask = cap - 1;
    collector_json_iter_init(&it, obj);
    while (collector_json_next_member(&it, &key, &val) > 0) {
        limit_entry e;
        size_t len;
        const limit_entry *dup;
        collector_str name;
        if (collector_json_to_number(&val, &e.limit) < 0)
            return config_error("a limit is not a number:", &key);
        collector_json_strcpy(&key, NULL, 0, &len);
        e.name = (char *)collector_malloc(len ? len : 1);
        if (!e.name) return config_error("out of memory", NULL);
        collector_json_strcpy(&key, e.name, len, &e.len);
        name.ptr = e.name;
        name.len = e.len;
        dup = find_limit(name);
        if (dup) { /* a repeated key: the last one wins */
            collector_free(e.name);
            limits[dup - limits].limit = e.limit;
            continue;
        }
        limits[nlimits] = e;
        for (i = hash(e.name, e.len) & table_mask; table[i]; i = (i + 1) & table_mask) {
        }
        table[i] = (uint32_t)(nlimits + 1);
        nlimits++;
    }
    return COLLECTOR_STATUS_OK;
}

int collector_plugin_init(const char *config_json, size_t len) {
    collector_json root, key, val;
    collector_json_iter it;
    int rc, have_path = 0;
    reset_state();
    if (len == 0) config_json = "{}", len = 2; /* `collector check --config ''` sends nothing */
    rc = collector_json_parse(config_json, len, &root);
    if (rc < 0 || root.type != COLLECTOR_JSON_OBJECT) return config_error("not a JSON object", NULL);
    collector_json_iter_init(&it, &root);
    while ((rc = collector_json_next_member(&it, &key, &val)) > 0) {
        if (collector_json_streq(&key, "limits", 6)) {
            if (read_limits(&val) != COLLECTOR_STATUS_OK) return COLLECTOR_STATUS_REJECT;
        } else if (collector_json_streq(&key, "path", 4)) {
            if (val.type != COLLECTOR_JSON_STRING) return config_error("\"path\" must be a string", NULL);
            have_path = 1;
#if defined(THRESHOLD_TO_FILE)
            {
                size_t n;
                collector_json_strcpy(&val, NULL, 0, &n);
                collector_free(path);
                path = (char *)collector_malloc(n + 1);
                if (!path) return config_error("out of memory", NULL);
                collector_json_strcpy(&val, path, n, &n);
                path[n] = 0;
                if (strlen(path) != n) return config_error("\"path\" contains a NUL character", NULL);
            }
#endif
        } else {
            return config_error("unknown key (expected \"path\" and \"limits\"):", &key);
        }
    }
#if defined(THRESHOLD_TO_FILE)
    if (!have_path) return config_error("\"path\" is required (a file in a granted directory)", NULL);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
        collector_errorf("c-threshold: cannot open %s: %s (is its directory granted in the "
                         "dispatcher's `dirs`?)", path, strerror(errno));
        reset_state();
        return COLLECTOR_STATUS_REJECT;
    }
    collector_logf(COLLECTOR_LOG_INFO, "c-threshold: %zu limit(s), alerts appended to %s", nlimits, path);
#else
    if (have_path)
        collector_log_cstr(COLLECTOR_LOG_INFO, "c-threshold (freestanding): \"path\" ignored, alerts go to the log");
    {
        char msg[96];
        collector_buf b;
        collector_buf_init(&b, msg, sizeof msg);
        collector_buf_puts(&b, "c-threshold (freestanding): ");
        collector_json_write_u64(&b, nlimits);
        collector_buf_puts(&b, " limit(s), alerts logged at WARN");
        collector_log(COLLECTOR_LOG_INFO, msg, b.len);
    }
#endif
    if (!out.dynamic) collector_buf_init_dynamic(&out);
    return COLLECTOR_STATUS_OK;
}

/* {"message_id":"…","counter_name":"…","counter_volume":…,"limit":…} */
static void write_alert(collector_buf *b, const collector_sample *s, const limit_entry *e) {
    collector_buf_append(b, "{\"message_id\":", 14);
    collector_json_write_str(b, s->message_id.ptr, s->message_id.len);
    collector_buf_append(b, ",\"counter_name\":", 16);
    collector_json_write_str(b, s->counter_name.ptr, s->counter_name.len);
    collector_buf_append(b, ",\"counter_volume\":", 18);
    collector_json_write_number(b, &s->counter_volume.value);
    collector_buf_append(b, ",\"limit\":", 9);
    collector_json_write_number(b, &e->limit);
    collector_buf_putc(b, '}');
}

#if defined(THRESHOLD_TO_FILE)
static int write_all(const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}
#endif

int collector_plugin_dispatch(const collector_batch *batch) {
    collector_batch_iter it;
    collector_sample s;
    int rc;
    collector_buf_reset(&out);
    collector_batch_iter_init(&it, batch);
    while ((rc = collector_batch_next(&it, &s)) > 0) {
        const limit_entry *e;
        if (s.counter_volume.state != COLLECTOR_PRESENT) continue;
        e = find_limit(s.counter_name);
        if (!e || collector_number_cmp(&s.counter_volume.value, &e->limit) != 1) continue;
#if defined(THRESHOLD_TO_FILE)
        write_alert(&out, &s, e);
        collector_buf_putc(&out, '\n');
#else
        collector_buf_reset(&out);
        collector_buf_append(&out, "ALERT ", 6);
        write_alert(&out, &s, e);
        if (!collector_buf_ok(&out)) return collector_retry("c-threshold: out of memory for an alert line");
        collector_log(COLLECTOR_LOG_WARN, out.data, out.len);
#endif
    }
    if (rc < 0) {
        char msg[160];
        collector_buf b;
        collector_buf_init(&b, msg, sizeof msg);
        collector_buf_puts(&b, "c-threshold: malformed batch at byte ");
        collector_json_write_u64(&b, it.error_offset);
        collector_buf_puts(&b, ": ");
        collector_buf_puts(&b, collector_strerror(rc));
        collector_error(msg, b.len);
        return COLLECTOR_STATUS_REJECT;
    }
#if defined(THRESHOLD_TO_FILE)
    if (!collector_buf_ok(&out)) return collector_retry("c-threshold: out of memory for the alert lines");
    if (out.len && write_all(out.data, out.len) < 0) {
        collector_errorf("c-threshold: cannot write %s: %s", path, strerror(errno));
        return COLLECTOR_STATUS_RETRY;
    }
#endif
    return COLLECTOR_STATUS_OK;
}

COLLECTOR_PLUGIN_EXPORTS();
