/*
 * A test plugin for collector.h, built for wasm in both modes by `make wasm-test`:
 *
 *   - decodes every sample and writes it as JSON with the SDK's writer;
 *   - with config {"echo": true}, logs "BATCH <n>" at the start of each batch and
 *     "SAMPLE <json>" for each sample, at WARN (so that `collector check` shows
 *     them): the Makefile compares them with the golden vectors, which checks the
 *     decoder and the writer on real wasm32 (32-bit size_t, no libc);
 *   - exports collector_snapshot / collector_restore (batches and samples seen).
 */
#define COLLECTOR_IMPLEMENTATION
#include "collector.h"

static struct {
    uint64_t batches;
    uint64_t samples;
} state, snap;
static int echo;
static collector_buf line;

int collector_plugin_init(const char *config_json, size_t len) {
    collector_json root, v;
    if (len == 0) config_json = "{}", len = 2;
    if (collector_json_parse(config_json, len, &root) < 0 || root.type != COLLECTOR_JSON_OBJECT)
        return collector_reject("test plugin: config is not a JSON object");
    echo = collector_json_get(&root, "echo", &v) == 1 && v.type == COLLECTOR_JSON_TRUE;
    collector_buf_init_dynamic(&line);
    collector_log_cstr(COLLECTOR_LOG_INFO, "test plugin ready");
    return COLLECTOR_STATUS_OK;
}

int collector_plugin_dispatch(const collector_batch *batch) {
    collector_batch_iter it;
    collector_sample s;
    int rc;
    state.batches++;
    if (echo) {
        collector_buf_reset(&line);
        collector_buf_puts(&line, "BATCH ");
        collector_json_write_u64(&line, state.batches);
        collector_log(COLLECTOR_LOG_WARN, line.data, line.len);
    }
    collector_batch_iter_init(&it, batch);
    while ((rc = collector_batch_next(&it, &s)) > 0) {
        state.samples++;
        collector_buf_reset(&line);
        if (echo) collector_buf_puts(&line, "SAMPLE ");
        rc = collector_json_write_sample(&line, &s);
        if (rc < 0) return collector_reject(collector_strerror(rc));
        if (!collector_buf_ok(&line)) return collector_retry("test plugin: out of memory");
        if (echo) collector_log(COLLECTOR_LOG_WARN, line.data, line.len);
    }
    if (rc < 0) return collector_reject(collector_strerror(rc));
    return COLLECTOR_STATUS_OK;
}

int collector_plugin_snapshot(const void **data, size_t *len) {
    snap = state; /* stays valid until the next call */
    *data = &snap;
    *len = sizeof snap;
    return 1;
}

int collector_plugin_restore(const void *data, size_t len) {
    if (len != sizeof state) return collector_reject("test plugin: snapshot of the wrong size");
    __builtin_memcpy(&state, data, sizeof state);
    return COLLECTOR_STATUS_OK;
}

COLLECTOR_PLUGIN_EXPORTS();
COLLECTOR_PLUGIN_SNAPSHOT_EXPORTS();
