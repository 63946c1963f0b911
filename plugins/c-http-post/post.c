/*
 * c-http-post: posts each batch, as a JSON list of the samples Ceilometer sent
 * (the text the file dispatcher writes), to the endpoint the operator declared
 * as `target`, at `path` (config, default "/"). The C SDK's outbound HTTP in a
 * small plugin: the imports work outside Rust (docs/plugins-c.md).
 *
 * Answers ok on 2xx/3xx, retry on 429, 5xx and a backend that cannot be
 * reached, reject on other 4xx, as the bundled dispatchers do.
 */
#define COLLECTOR_IMPLEMENTATION
#include "collector.h"

static char target_path[512] = "/";

int collector_plugin_init(const char *config_json, size_t len) {
    collector_json root, val;
    size_t n;
    if (len == 0) config_json = "{}", len = 2;
    if (collector_json_parse(config_json, len, &root) < 0 || root.type != COLLECTOR_JSON_OBJECT)
        return collector_reject("config: not a JSON object");
    if (collector_json_get(&root, "path", &val) > 0) {
        if (val.type != COLLECTOR_JSON_STRING ||
            collector_json_strcpy(&val, target_path, sizeof target_path - 1, &n) < 0)
            return collector_reject("config: \"path\" must be a string of at most 511 bytes");
        target_path[n] = 0;
    }
    return COLLECTOR_STATUS_OK;
}

int collector_plugin_dispatch(const collector_batch *batch) {
    static const collector_http_header headers[] = {{"Content-Type", "application/json"}};
    collector_buf body;
    collector_batch_iter it;
    collector_sample s;
    int rc, first = 1;
    int32_t status;
    collector_buf_init_dynamic(&body);
    collector_buf_putc(&body, '[');
    collector_batch_iter_init(&it, batch);
    while ((rc = collector_batch_next(&it, &s)) > 0) {
        if (!first) collector_buf_puts(&body, ", ");
        first = 0;
        collector_json_write_sample(&body, &s);
    }
    collector_buf_putc(&body, ']');
    if (rc < 0) {
        collector_buf_free(&body);
        return collector_reject(collector_strerror(rc));
    }
    status = collector_http_fetch("target", "POST", target_path, headers, 1, body.data, body.len,
                                  10000, NULL);
    collector_buf_free(&body);
    return collector_http_outcome(status);
}

COLLECTOR_PLUGIN_EXPORTS();
