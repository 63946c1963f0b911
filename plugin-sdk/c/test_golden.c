/*
 * Native tests of collector.h.
 *
 *   test_golden FILE.bin...               decode each batch, print one JSON line per
 *                                         sample (to be checked by golden/compare.py)
 *   test_golden --malformed FILE.bin...   every strict prefix must fail to decode,
 *                                         trailing bytes must fail, and corrupted
 *                                         bytes must never crash (run under ASan/UBSan)
 *   test_golden --selftest                unit tests: float formatting, numbers,
 *                                         values the golden JSON cannot hold (NaN,
 *                                         Infinity, bytes), nesting limits, the JSON
 *                                         reader, the allocator (freestanding build)
 *
 * Built twice by the Makefile: with the SDK in libc mode and in freestanding mode
 * (COLLECTOR_FREESTANDING with a static test heap), both with ASan + UBSan.
 */
#define COLLECTOR_IMPLEMENTATION
#include "collector.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                           \
    do {                                                           \
        if (!(cond)) {                                             \
            failures++;                                            \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                          \
            fputc('\n', stderr);                                   \
        }                                                          \
    } while (0)

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (unsigned char *)malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Decodes the whole batch and writes every sample as JSON (exercising every
 * iterator). Returns 0 or the decode error. If out is not NULL, the lines go there. */
static int decode_all(const unsigned char *data, size_t len, FILE *out, size_t *nsamples,
                      size_t *err_off) {
    collector_batch b;
    collector_batch_iter it;
    collector_sample s;
    collector_buf jb;
    int rc;
    size_t n = 0;
    if (err_off) *err_off = 0;
    rc = collector_batch_open(&b, data, len);
    if (rc < 0) return rc;
    collector_batch_iter_init(&it, &b);
    collector_buf_init_dynamic(&jb);
    while ((rc = collector_batch_next(&it, &s)) > 0) {
        collector_buf_reset(&jb);
        rc = collector_json_write_sample(&jb, &s);
        if (rc < 0) break;
        if (!collector_buf_ok(&jb)) {
            rc = COLLECTOR_E_SPACE;
            break;
        }
        /* the fixed-buffer variant must agree with the dynamic one */
        {
            char small[64];
            size_t need = collector_sample_to_json(&s, small, sizeof small);
            if (need != jb.len) {
                fprintf(stderr, "collector_sample_to_json length %zu != %zu\n", need, jb.len);
                failures++;
            } else if (memcmp(small, jb.data, need < sizeof small ? need : sizeof small) != 0) {
                fprintf(stderr, "collector_sample_to_json prefix differs\n");
                failures++;
            }
        }
        if (out) {
            fwrite(jb.data, 1, jb.len, out);
            fputc('\n', out);
        }
        n++;
    }
    collector_buf_free(&jb);
    if (nsamples) *nsamples = n;
    if (rc < 0 && err_off) *err_off = it.error ? it.error_offset : 0;
    return rc;
}

static int cmd_decode(int argc, char **argv) {
    int i, status = 0;
    for (i = 0; i < argc; i++) {
        size_t len, n, off;
        unsigned char *data = read_file(argv[i], &len);
        int rc;
        if (!data) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            return 2;
        }
        rc = decode_all(data, len, stdout, &n, &off);
        if (rc < 0) {
            fprintf(stderr, "%s: decode error at byte %zu: %s\n", argv[i], off, collector_strerror(rc));
            status = 1;
        }
        free(data);
    }
    return status || failures ? 1 : 0;
}

static int cmd_malformed(int argc, char **argv) {
    int i;
    for (i = 0; i < argc; i++) {
        size_t len, cut, off, n;
        unsigned char *data = read_file(argv[i], &len);
        int rc;
        size_t corrupted_ok = 0, corrupted_err = 0;
        static const unsigned char junk[] = {0x00, 0x01, 0x02, 0x05, 0x07, 0x08, 0x09, 0x7f, 0x80, 0xff};
        if (!data) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            return 2;
        }
        rc = decode_all(data, len, NULL, &n, &off);
        CHECK(rc == 0, "%s: the whole batch must decode (%s)", argv[i], collector_strerror(rc));
        /* Every strict prefix, in a buffer of exactly that size (ASan sees overreads). */
        for (cut = 0; cut < len; cut++) {
            unsigned char *p = (unsigned char *)malloc(cut ? cut : 1);
            memcpy(p, data, cut);
            rc = decode_all(cut ? p : NULL, cut, NULL, &n, &off);
            CHECK(rc < 0, "%s: prefix of %zu bytes decoded without error", argv[i], cut);
            CHECK(off <= cut, "%s: error offset %zu past %zu", argv[i], off, cut);
            free(p);
        }
        /* One extra byte: trailing bytes. */
        {
            unsigned char *p = (unsigned char *)malloc(len + 1);
            memcpy(p, data, len);
            p[len] = 0;
            rc = decode_all(p, len + 1, NULL, &n, &off);
            CHECK(rc == COLLECTOR_E_TRAILING, "%s: trailing byte not reported (%d)", argv[i], rc);
            CHECK(off == len, "%s: trailing byte offset %zu", argv[i], off);
            free(p);
        }
        /* Every byte replaced with a few values: any result, but no crash. */
        {
            unsigned char *p = (unsigned char *)malloc(len);
            size_t at, j;
            for (at = 0; at < len; at++) {
                for (j = 0; j < sizeof junk; j++) {
                    if (junk[j] == data[at]) continue;
                    memcpy(p, data, len);
                    p[at] = junk[j];
                    rc = decode_all(p, len, NULL, &n, &off);
                    if (rc < 0) corrupted_err++;
                    else corrupted_ok++;
                }
            }
            free(p);
        }
        printf("%s: %zu truncations all rejected, trailing byte rejected, %zu corruptions "
               "(%zu rejected, %zu still well-formed), no crash\n",
               argv[i], len, corrupted_err + corrupted_ok, corrupted_err, corrupted_ok);
        free(data);
    }
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------------ selftest */

static double from_bits(uint64_t b) {
    double d;
    memcpy(&d, &b, 8);
    return d;
}

static uint64_t to_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, 8);
    return b;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void expect_fmt(double v, const char *want) {
    char got[40];
    size_t n = collector_format_f64(v, got);
    got[n] = 0;
    CHECK(strcmp(got, want) == 0, "format(%.17g) = %s, want %s", v, got, want);
}

/* Significant digits of our output, e.g. "1.25e-5" -> "125", "0.001" -> "1". */
static void sig_digits(const char *s, char *out) {
    size_t o = 0;
    int started = 0;
    for (; *s && *s != 'e'; s++) {
        if (*s < '0' || *s > '9') continue;
        if (*s == '0' && !started) continue;
        started = 1;
        out[o++] = *s;
    }
    while (o > 1 && out[o - 1] == '0') o--;
    if (!o) out[o++] = '0';
    out[o] = 0;
}

static void check_shortest(double v) {
    char mine[40], ref[40], dm[40], dr[40];
    int p;
    size_t n = collector_format_f64(v, mine);
    mine[n] = 0;
    if (isnan(v) || isinf(v)) return;
    /* reads back as the same double, and is never an integer literal */
    CHECK(to_bits(strtod(mine, NULL)) == to_bits(v), "%s does not read back as %.17g", mine, v);
    CHECK(strchr(mine, '.') || strchr(mine, 'e'), "%s has neither '.' nor 'e'", mine);
    /* as short as the shortest %.{p}e that round-trips, and the same digits */
    for (p = 0; p < 17; p++) {
        snprintf(ref, sizeof ref, "%.*e", p, v);
        if (to_bits(strtod(ref, NULL)) == to_bits(v)) break;
    }
    snprintf(ref, sizeof ref, "%.*e", p, v);
    sig_digits(mine, dm);
    sig_digits(ref, dr);
    /* Shorter than the nearest-p-digits search is fine (and round-trips, checked
     * above): the shortest string in the rounding interval need not be the nearest
     * one of that length. */
    if (strlen(dm) < strlen(dr)) return;
    if (strcmp(dm, dr) != 0) {
        /* Allowed only at an exact tie, which glibc rounds half to even and Rust
         * (and this SDK) half up: same length, and the exact expansion continues
         * with 5000... after those digits. */
        char exact[1200], de[1200];
        size_t nd = strlen(dr);
        snprintf(exact, sizeof exact, "%.760e", v);
        sig_digits(exact, de);
        CHECK(strlen(dm) == nd && strlen(de) == nd + 1 && de[nd] == '5',
              "%.17g: digits %s (%s), shortest round-trip %s (%s)", v, dm, mine, dr, ref);
    }
}

static void test_float_format(void) {
    int i;
    expect_fmt(512.0, "512.0");
    expect_fmt(-0.0, "-0.0");
    expect_fmt(0.0, "0.0");
    expect_fmt(209.767, "209.767");
    expect_fmt(1084.745, "1084.745");
    expect_fmt(1000.898535, "1000.898535");
    expect_fmt(1e-5, "1e-5");
    expect_fmt(1e16, "1e16");
    expect_fmt(1e15, "1000000000000000.0");
    expect_fmt(9999999999999998.0, "9999999999999998.0");
    expect_fmt(1e-4, "0.0001");
    expect_fmt(0.00012, "0.00012");
    expect_fmt(9.9e-5, "9.9e-5");
    expect_fmt(0.1, "0.1");
    expect_fmt(0.30000000000000004, "0.30000000000000004");
    expect_fmt(1.5, "1.5");
    expect_fmt(100.0, "100.0");
    expect_fmt(-1e-7, "-1e-7");
    expect_fmt(1.5e300, "1.5e300");
    expect_fmt(1e21, "1e21");
    expect_fmt(1e22, "1e22");
    expect_fmt(1e23, "1e23");
    expect_fmt(123456789012345680.0, "1.2345678901234568e17");
    expect_fmt(9007199254740993.0, "9007199254740992.0");
    expect_fmt(1.7976931348623157e308, "1.7976931348623157e308");
    expect_fmt(-1.7976931348623157e308, "-1.7976931348623157e308");
    expect_fmt(2.2250738585072014e-308, "2.2250738585072014e-308");
    expect_fmt(2.225073858507201e-308, "2.225073858507201e-308");
    expect_fmt(5e-324, "5e-324");
    expect_fmt(1e-323, "1e-323");
    expect_fmt(from_bits(0x7ff8000000000000ull), "NaN");
    expect_fmt(from_bits(0xfff8000000000001ull), "NaN");
    expect_fmt(from_bits(0x7ff0000000000000ull), "Infinity");
    expect_fmt(from_bits(0xfff0000000000000ull), "-Infinity");
    expect_fmt(4294967296.0, "4294967296.0");
    expect_fmt(0.5, "0.5");
    expect_fmt(2.0, "2.0");
    expect_fmt(1.0, "1.0");
    expect_fmt(123.456, "123.456");
    expect_fmt(5e-5, "5e-5");
    /* every power of two, every power of ten and its neighbours */
    for (i = -1074; i <= 1023; i++) check_shortest(ldexp(1.0, i));
    for (i = -323; i <= 308; i++) {
        char t[32];
        double v;
        snprintf(t, sizeof t, "1e%d", i);
        v = strtod(t, NULL);
        check_shortest(v);
        check_shortest(from_bits(to_bits(v) + 1));
        check_shortest(from_bits(to_bits(v) - 1));
    }
    /* random bit patterns, random "short decimal" values, integers */
    for (i = 0; i < 300000; i++) check_shortest(from_bits(rng()));
    for (i = 0; i < 100000; i++) {
        char t[40];
        snprintf(t, sizeof t, "%llu.%llue%d", (unsigned long long)(rng() % 100000),
                 (unsigned long long)(rng() % 1000), (int)(rng() % 40) - 20);
        check_shortest(strtod(t, NULL));
    }
    for (i = 0; i < 100000; i++) check_shortest((double)(int64_t)(rng() >> (rng() % 64)));
    for (i = 0; i < 20000; i++) check_shortest(from_bits(rng() & 0x000fffffffffffffull)); /* subnormals */
}

static void test_ints(void) {
    char t[32];
    size_t n;
    n = collector_format_i64(INT64_MIN, t);
    t[n] = 0;
    CHECK(strcmp(t, "-9223372036854775808") == 0, "%s", t);
    n = collector_format_i64(INT64_MAX, t);
    t[n] = 0;
    CHECK(strcmp(t, "9223372036854775807") == 0, "%s", t);
    n = collector_format_u64(UINT64_MAX, t);
    t[n] = 0;
    CHECK(strcmp(t, "18446744073709551615") == 0, "%s", t);
    n = collector_format_i64(0, t);
    t[n] = 0;
    CHECK(strcmp(t, "0") == 0, "%s", t);
}

static collector_number num_i(int64_t v) {
    collector_number n;
    n.type = COLLECTOR_NUM_INT;
    n.as.i = v;
    return n;
}
static collector_number num_u(uint64_t v) {
    collector_number n;
    n.type = COLLECTOR_NUM_UINT;
    n.as.u = v;
    return n;
}
static collector_number num_f(double v) {
    collector_number n;
    n.type = COLLECTOR_NUM_FLOAT;
    n.as.f = v;
    return n;
}

static void expect_cmp(collector_number a, collector_number b, int want) {
    int got = collector_number_cmp(&a, &b), back = collector_number_cmp(&b, &a);
    CHECK(got == want, "cmp = %d, want %d", got, want);
    CHECK(back == (want == COLLECTOR_UNORDERED ? want : -want), "reverse cmp = %d", back);
}

static void test_number_cmp(void) {
    expect_cmp(num_i(1), num_i(2), -1);
    expect_cmp(num_i(-1), num_u(0), -1);
    expect_cmp(num_i(INT64_MAX), num_u((uint64_t)INT64_MAX + 1), -1);
    expect_cmp(num_u(UINT64_MAX), num_u(UINT64_MAX), 0);
    expect_cmp(num_f(1.5), num_i(1), 1);
    expect_cmp(num_f(1.0), num_i(1), 0);
    expect_cmp(num_f(0.5), num_i(1), -1);
    expect_cmp(num_f(-0.5), num_i(0), -1);
    expect_cmp(num_f(-0.0), num_i(0), 0);
    expect_cmp(num_f(-1.5), num_i(-1), -1);
    expect_cmp(num_f(-0.5), num_i(-1), 1);
    /* 2^53 + 1 is not a double: exact comparison, no rounding through double */
    expect_cmp(num_f(9007199254740992.0), num_i(9007199254740993LL), -1);
    expect_cmp(num_f(18446744073709551616.0), num_u(UINT64_MAX), 1);
    expect_cmp(num_f(9223372036854775808.0), num_i(INT64_MAX), 1);
    expect_cmp(num_f(-9223372036854775808.0), num_i(INT64_MIN), 0);
    expect_cmp(num_f(-1e300), num_i(INT64_MIN), -1);
    expect_cmp(num_f(INFINITY), num_u(UINT64_MAX), 1);
    expect_cmp(num_f(-INFINITY), num_i(INT64_MIN), -1);
    expect_cmp(num_f(NAN), num_i(0), COLLECTOR_UNORDERED);
    expect_cmp(num_f(NAN), num_f(NAN), COLLECTOR_UNORDERED);
    expect_cmp(num_f(2.5), num_f(2.5), 0);
}

/* ---- a tiny encoder for hand-made batches */
typedef struct {
    unsigned char b[1 << 16];
    size_t n;
} enc;
static void e_bytes(enc *e, const void *p, size_t n) {
    memcpy(e->b + e->n, p, n);
    e->n += n;
}
static void e_u8(enc *e, unsigned v) { e->b[e->n++] = (unsigned char)v; }
static void e_u32(enc *e, uint32_t v) {
    int i;
    for (i = 0; i < 4; i++) e_u8(e, (v >> (8 * i)) & 0xff);
}
static void e_u64(enc *e, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++) e_u8(e, (unsigned)(v >> (8 * i)) & 0xff);
}
static void e_str(enc *e, const char *s, size_t n) {
    e_u64(e, n);
    e_bytes(e, s, n);
}
static void e_cstr(enc *e, const char *s) { e_str(e, s, strlen(s)); }
static void e_f64(enc *e, double d) { e_u64(e, to_bits(d)); }

/* The required head of a sample, up to and including timestamp. */
static void e_head(enc *e, int vol_tag, uint64_t vol_bits) {
    e_cstr(e, "openstack");
    e_cstr(e, "cpu");
    e_cstr(e, "cumulative");
    e_cstr(e, "ns");
    if (vol_tag < 0) e_u8(e, 0);
    else {
        e_u8(e, 1);
        e_u32(e, (uint32_t)vol_tag);
        e_u64(e, vol_bits);
    }
    e_u8(e, 0); /* user_id absent */
    e_u8(e, 1), e_u8(e, 0); /* user_name null */
    e_u8(e, 1), e_u8(e, 1), e_cstr(e, "p"); /* project_id */
    e_u8(e, 0);
    e_cstr(e, "r1");
    e_cstr(e, "2025-06-01T12:00:00");
}

static int decode_one_json(const enc *e, char *out, size_t cap, size_t *outlen) {
    collector_batch b;
    collector_batch_iter it;
    collector_sample s;
    collector_buf jb;
    int rc = collector_batch_open(&b, e->b, e->n);
    if (rc < 0) return rc;
    collector_batch_iter_init(&it, &b);
    rc = collector_batch_next(&it, &s);
    if (rc <= 0) return rc < 0 ? rc : -100;
    collector_buf_init(&jb, out, cap);
    rc = collector_json_write_sample(&jb, &s);
    if (rc < 0) return rc;
    *outlen = jb.len;
    rc = collector_batch_next(&it, &s);
    return rc;
}

static void test_special_values(void) {
    enc *e = (enc *)calloc(1, sizeof *e);
    char out[4096];
    size_t n = 0;
    int rc;
    const char *want;
    e_u64(e, 1);
    e_head(e, 2, to_bits(NAN));
    /* metadata: {"b": bytes(ff fe 'o' 'k' e2 82), "ninf": -inf, "s": "\x7f\r\0",
     *            "inf": inf, "ok": bytes("é") } */
    e_u8(e, 1);
    e_u32(e, 8);
    e_u64(e, 5);
    e_cstr(e, "b");
    e_u32(e, 6);
    e_str(e, "\xff\xfeok\xe2\x82", 6);
    e_cstr(e, "ninf");
    e_u32(e, 4);
    e_f64(e, -INFINITY);
    e_cstr(e, "s");
    e_u32(e, 5);
    e_str(e, "\x7f\r\0\"\\/", 6);
    e_cstr(e, "inf");
    e_u32(e, 4);
    e_f64(e, INFINITY);
    e_cstr(e, "ok");
    e_u32(e, 6);
    e_str(e, "\xc3\xa9\xed\xa0\x80", 5); /* é, then an encoded surrogate (invalid) */
    e_cstr(e, "m-1");
    e_u8(e, 1), e_u8(e, 1), e_u32(e, 2), e_f64(e, -INFINITY); /* monotonic_time */
    e_u8(e, 1), e_cstr(e, "sig");
    e_u64(e, 1);
    e_cstr(e, "publisher_id");
    e_u32(e, 3);
    e_u64(e, UINT64_MAX);
    rc = decode_one_json(e, out, sizeof out, &n);
    CHECK(rc == 0, "special values: %s", collector_strerror(rc));
    want = "{\"source\":\"openstack\",\"counter_name\":\"cpu\",\"counter_type\":\"cumulative\","
           "\"counter_unit\":\"ns\",\"counter_volume\":NaN,\"user_name\":null,\"project_id\":\"p\","
           "\"resource_id\":\"r1\",\"timestamp\":\"2025-06-01T12:00:00\",\"resource_metadata\":"
           "{\"b\":\"\xEF\xBF\xBD\xEF\xBF\xBDok\xEF\xBF\xBD\",\"ninf\":-Infinity,"
           "\"s\":\"\\u007f\\r\\u0000\\\"\\\\/\",\"inf\":Infinity,"
           "\"ok\":\"\xc3\xa9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"},"
           "\"message_id\":\"m-1\",\"monotonic_time\":-Infinity,\"message_signature\":\"sig\","
           "\"publisher_id\":18446744073709551615}";
    CHECK(rc == 0 && n == strlen(want) && memcmp(out, want, n) == 0, "special values JSON:\n got %.*s\nwant %s",
          (int)n, out, want);

    /* Invalid UTF-8 in a Str (not Bytes) is an error. */
    e->n = 0;
    e_u64(e, 1);
    e_head(e, -1, 0);
    e_u8(e, 1);
    e_u32(e, 5);
    e_str(e, "\xff", 1);
    e_cstr(e, "m"), e_u8(e, 0), e_u8(e, 0), e_u64(e, 0);
    rc = decode_one_json(e, out, sizeof out, &n);
    CHECK(rc == COLLECTOR_E_UTF8, "invalid UTF-8 Str: %d", rc);

    /* Bad flag, bad tags. */
    e->n = 0;
    e_u64(e, 1);
    e_head(e, -1, 0);
    e_u8(e, 2);
    rc = decode_one_json(e, out, sizeof out, &n);
    CHECK(rc == COLLECTOR_E_FLAG, "flag 2: %d", rc);
    e->n = 0;
    e_u64(e, 1);
    e_head(e, 3, 0);
    rc = decode_one_json(e, out, sizeof out, &n);
    CHECK(rc == COLLECTOR_E_TAG, "number tag 3: %d", rc);
    e->n = 0;
    e_u64(e, 1);
    e_head(e, -1, 0);
    e_u8(e, 1);
    e_u32(e, 9);
    rc = decode_one_json(e, out, sizeof out, &n);
    CHECK(rc == COLLECTOR_E_TAG, "value tag 9: %d", rc);
    /* A huge length / count must not be trusted. */
    e->n = 0;
    e_u64(e, 1);
    e_u64(e, UINT64_MAX);
    rc = decode_one_json(e, out, sizeof out, &n);
    CHECK(rc == COLLECTOR_E_TRUNCATED, "huge length: %d", rc);
    e->n = 0;
    e_u64(e, 1);
    e_head(e, -1, 0);
    e_u8(e, 1);
    e_u32(e, 7);
    e_u64(e, UINT64_MAX);
    rc = decode_one_json(e, out, sizeof out, &n);
    CHECK(rc == COLLECTOR_E_TRUNCATED, "huge count: %d", rc);
    /* A batch announcing more samples than it has. */
    e->n = 0;
    e_u64(e, UINT64_MAX);
    rc = decode_one_json(e, out, sizeof out, &n);
    CHECK(rc == COLLECTOR_E_TRUNCATED, "count beyond data: %d", rc);
    free(e);
}

/* `levels` nested lists (maps of one key "k" at odd levels when `maps`), the
 * innermost holding `inner` nulls. */
static void e_nest(enc *e, int levels, int inner, int maps) {
    int i;
    for (i = 0; i < levels; i++) {
        int map = maps && i % 2 == 1;
        e_u32(e, map ? 8 : 7);
        e_u64(e, i == levels - 1 ? (uint64_t)inner : 1);
        if (map && i < levels - 1) e_cstr(e, "k");
    }
    for (i = 0; i < inner; i++) {
        if (maps && (levels - 1) % 2 == 1) e_cstr(e, "k");
        e_u32(e, 0);
    }
}

/* A sample whose resource_metadata (extra == 0) or extra key "x" (extra == 1) is
 * e_nest(levels, inner, maps), decoded and written as JSON into out. */
static int nested_in(int extra, int levels, int inner, int maps, enc *e, char *out, size_t cap,
                     size_t *n) {
    e->n = 0;
    e_u64(e, 1);
    e_head(e, 0, 1);
    e_u8(e, extra ? 0 : 1);
    if (!extra) e_nest(e, levels, inner, maps);
    e_cstr(e, "m"), e_u8(e, 0), e_u8(e, 0);
    e_u64(e, extra ? 1 : 0);
    if (extra) {
        e_cstr(e, "x");
        e_nest(e, levels, inner, maps);
    }
    return decode_one_json(e, out, cap, n);
}

static int nested(int extra, int levels, int inner, enc *e) {
    char out[16384];
    size_t n;
    return nested_in(extra, levels, inner, 0, e, out, sizeof out, &n);
}

/* Decodes like nested() and checks that the JSON holds `"key":` and the value in full
 * (`levels` nested lists, the innermost with `inner` nulls). */
static int nested_json_ok(int extra, int levels, int inner, enc *e) {
    static char out[16384], want[512];
    size_t n = 0, k;
    int i, rc = nested_in(extra, levels, inner, 0, e, out, sizeof out - 1, &n);
    if (rc != 0 || n >= sizeof out) return 0;
    out[n] = 0;
    k = (size_t)snprintf(want, sizeof want, "\"%s\":", extra ? "x" : "resource_metadata");
    for (i = 0; i < levels; i++) want[k++] = '[';
    for (i = 0; i < inner; i++) {
        if (i) want[k++] = ',';
        memcpy(want + k, "null", 4);
        k += 4;
    }
    for (i = 0; i < levels; i++) want[k++] = ']';
    want[k] = 0;
    return strstr(out, want) != NULL;
}

static void test_depth(void) {
    enc *e = (enc *)calloc(1, sizeof *e);
    char out[16384];
    size_t n;
    int where;
    /* COLLECTOR_MAX_NESTING = 64 levels with the sample dict (docs/ABI.md 9.7): a
     * resource_metadata or extra value holds COLLECTOR_MAX_DEPTH = 63 levels of
     * List/Map (depths 0..62), empty ones included; one at depth 63 (level 64) is not. */
    CHECK(COLLECTOR_MAX_NESTING == 64 && COLLECTOR_MAX_DEPTH == 63, "limits %d, %d", COLLECTOR_MAX_NESTING,
          COLLECTOR_MAX_DEPTH);
    for (where = 0; where < 2; where++) {
        const char *f = where ? "extra key" : "resource_metadata";
        CHECK(nested_json_ok(where, 63, 0, e), "%s: 63 nested lists (depths 0..62, the innermost empty)", f);
        CHECK(nested_json_ok(where, 63, 1, e), "%s: 63 nested lists + a null at depth 63", f);
        CHECK(nested_in(where, 63, 2, 1, e, out, sizeof out, &n) == 0, "%s: 63 levels alternating list/map", f);
        CHECK(nested(where, 64, 0, e) == COLLECTOR_E_DEPTH, "%s: 64 nested lists, the innermost empty (a list at depth 63)", f);
        CHECK(nested(where, 64, 1, e) == COLLECTOR_E_DEPTH, "%s: 64 nested lists + a null", f);
        CHECK(nested_in(where, 64, 0, 1, e, out, sizeof out, &n) == COLLECTOR_E_DEPTH,
              "%s: 64 levels alternating list/map, the innermost an empty map", f);
        CHECK(nested(where, 5000, 0, e) == COLLECTOR_E_DEPTH, "%s: 5000 levels", f);
    }
    free(e);
}

static void test_iterators(const char *golden_dir) {
    char path[4096];
    size_t len;
    unsigned char *data;
    collector_batch b;
    collector_batch_iter it;
    collector_sample s;
    collector_value v, item;
    collector_iter li;
    int rc, count = 0;
    snprintf(path, sizeof path, "%s/004-edge-values.bin", golden_dir);
    data = read_file(path, &len);
    CHECK(data != NULL, "cannot read %s", path);
    if (!data) return;
    collector_batch_open(&b, data, len);
    CHECK(b.count == 2, "count %llu", (unsigned long long)b.count);
    collector_batch_iter_init(&it, &b);
    rc = collector_batch_next(&it, &s);
    CHECK(rc == 1, "first sample");
    CHECK(collector_str_eq_cstr(s.counter_name, "edge.values"), "counter_name");
    CHECK(s.counter_volume.state == COLLECTOR_PRESENT && s.counter_volume.value.type == COLLECTOR_NUM_UINT &&
              s.counter_volume.value.as.u == UINT64_MAX, "volume");
    CHECK(s.user_id.state == COLLECTOR_NULL && s.user_name.state == COLLECTOR_PRESENT &&
              s.project_id.state == COLLECTOR_PRESENT && s.project_id.value.len == 0, "presence");
    CHECK(s.monotonic_time.state == COLLECTOR_NULL, "monotonic_time null");
    CHECK(s.message_signature.state == COLLECTOR_PRESENT && s.message_signature.value.len == 0, "signature");
    rc = collector_map_get(&s.resource_metadata.value, "nested", 6, &v);
    CHECK(rc == 1 && v.type == COLLECTOR_VALUE_MAP && v.depth == 1, "nested");
    rc = collector_map_get(&v, "a", 1, &v);
    CHECK(rc == 1 && v.depth == 2, "nested.a");
    rc = collector_map_get(&v, "b", 1, &v);
    rc = collector_map_get(&v, "c", 1, &v);
    CHECK(rc == 1 && v.type == COLLECTOR_VALUE_STR && collector_str_eq_cstr(v.as.str, "deep"), "nested.a.b.c");
    rc = collector_map_get(&s.resource_metadata.value, "missing", 7, &v);
    CHECK(rc == 0, "missing key");
    rc = collector_map_get(&s.resource_metadata.value, "list", 4, &v);
    CHECK(rc == 1 && v.type == COLLECTOR_VALUE_LIST && v.as.seq.count == 5, "list");
    CHECK(collector_iter_init(&li, &v) == 0, "list iter");
    while ((rc = collector_list_next(&li, &item)) > 0) count++;
    CHECK(rc == 0 && count == 5, "list items %d", count);
    CHECK(collector_map_next(&li, NULL, &item) == COLLECTOR_E_TYPE, "map_next on a list");
    rc = collector_map_get(&s.extra, "extra_list", 10, &v);
    CHECK(rc == 1 && v.type == COLLECTOR_VALUE_LIST, "extra_list");
    /* an extra value is a sample field, at depth 0 like resource_metadata's */
    CHECK(v.depth == 0 && s.resource_metadata.value.depth == 0, "extra_list depth %u", (unsigned)v.depth);
    CHECK(collector_map_get(&v, "x", 1, &item) == COLLECTOR_E_TYPE, "map_get on a list");
    {
        collector_number n;
        rc = collector_map_get(&s.resource_metadata.value, "int_like_float", 14, &v);
        CHECK(rc == 1 && collector_value_number(&v, &n) && n.type == COLLECTOR_NUM_FLOAT && n.as.f == 512.0,
              "int_like_float");
    }
    /* raw spans: header + the samples' raw bytes rebuild the batch */
    {
        size_t total = 8 + s.raw_len;
        const uint8_t *first_raw = s.raw;
        rc = collector_batch_next(&it, &s);
        CHECK(rc == 1, "second sample");
        total += s.raw_len;
        CHECK(total == len && first_raw == data + 8 && s.raw == first_raw + (total - 8 - s.raw_len),
              "raw spans cover the batch");
        CHECK(s.resource_metadata.state == COLLECTOR_PRESENT && s.resource_metadata.value.as.seq.count == 0,
              "empty metadata");
        CHECK(s.extra.as.seq.count == 0 && s.extra.raw_len == 8, "no extra keys");
    }
    CHECK(collector_batch_next(&it, &s) == 0, "end");
    CHECK(collector_batch_next(&it, &s) == 0, "end again");
    free(data);
}

static void test_json_reader(void) {
    const char *cfg = " {\"path\": \"/data/a\\u00e9\\ud83d\\ude80.jsonl\", \"limits\": {\"cpu\": 1000000000, "
                      "\"memory.usage\": 512, \"f\": 1.5e3, \"neg\": -9223372036854775808, "
                      "\"big\": 18446744073709551615, \"huge\": 1e400, \"x\\\"y\": -0.0}, \"a\": [1, [], {}, "
                      "true, false, null, \"\"]} ";
    collector_json root, v, lim, key, val;
    collector_json_iter it;
    collector_number n;
    char buf[64];
    size_t len;
    int rc, count = 0;
    rc = collector_json_parse(cfg, strlen(cfg), &root);
    CHECK(rc == 0 && root.type == COLLECTOR_JSON_OBJECT, "parse: %s", collector_strerror(rc));
    rc = collector_json_get(&root, "path", &v);
    CHECK(rc == 1 && v.type == COLLECTOR_JSON_STRING, "path");
    rc = collector_json_strcpy(&v, buf, sizeof buf, &len);
    CHECK(rc == 0 && len == strlen("/data/a\xc3\xa9\xf0\x9f\x9a\x80.jsonl") &&
              memcmp(buf, "/data/a\xc3\xa9\xf0\x9f\x9a\x80.jsonl", len) == 0, "path text");
    CHECK(collector_json_strcpy(&v, buf, 3, &len) == COLLECTOR_E_SPACE && len == 19, "strcpy too small");
    CHECK(collector_json_streq(&v, "/data/a\xc3\xa9\xf0\x9f\x9a\x80.jsonl", 19), "streq");
    CHECK(!collector_json_streq(&v, "/data/a", 7), "streq prefix");
    rc = collector_json_get(&root, "limits", &lim);
    CHECK(rc == 1 && lim.type == COLLECTOR_JSON_OBJECT, "limits");
    collector_json_iter_init(&it, &lim);
    while ((rc = collector_json_next_member(&it, &key, &val)) > 0) {
        count++;
        CHECK(collector_json_to_number(&val, &n) == 0, "number");
        if (collector_json_streq(&key, "cpu", 3)) CHECK(n.type == COLLECTOR_NUM_INT && n.as.i == 1000000000, "cpu");
        if (collector_json_streq(&key, "memory.usage", 12)) CHECK(n.type == COLLECTOR_NUM_INT && n.as.i == 512, "mem");
        if (collector_json_streq(&key, "f", 1)) CHECK(n.type == COLLECTOR_NUM_FLOAT && n.as.f == 1500.0, "f");
        if (collector_json_streq(&key, "neg", 3)) CHECK(n.type == COLLECTOR_NUM_INT && n.as.i == INT64_MIN, "neg");
        if (collector_json_streq(&key, "big", 3)) CHECK(n.type == COLLECTOR_NUM_UINT && n.as.u == UINT64_MAX, "big");
        if (collector_json_streq(&key, "huge", 4)) CHECK(n.type == COLLECTOR_NUM_FLOAT && isinf(n.as.f), "huge");
        if (collector_json_streq(&key, "x\"y", 3)) CHECK(n.type == COLLECTOR_NUM_FLOAT && signbit(n.as.f), "-0.0");
    }
    CHECK(rc == 0 && count == 7, "members %d", count);
    rc = collector_json_get(&root, "a", &v);
    CHECK(rc == 1 && v.type == COLLECTOR_JSON_ARRAY, "array");
    collector_json_iter_init(&it, &v);
    count = 0;
    while ((rc = collector_json_next_item(&it, &val)) > 0) count++;
    CHECK(rc == 0 && count == 7, "items %d", count);
    CHECK(collector_json_get(&v, "x", &val) == COLLECTOR_E_TYPE, "get on array");
    {
        static const char *bad[] = {"", "{", "{\"a\"}", "{\"a\":}", "[1,]", "{\"a\":1,}", "01", "1.", ".5",
                                    "1e", "-", "\"\\x\"", "\"\x01\"", "tru", "nul", "[1 2]", "{} {}",
                                    "\"\xff\"", "{\"a\" 1}", "[\"\\u12\"]", "NaN", "+1"};
        size_t i;
        for (i = 0; i < sizeof bad / sizeof *bad; i++)
            CHECK(collector_json_parse(bad[i], strlen(bad[i]), &root) < 0, "accepted bad JSON %s", bad[i]);
    }
    {
        char deep[200];
        int i;
        for (i = 0; i < 64; i++) deep[i] = '[';
        for (i = 0; i < 64; i++) deep[64 + i] = ']';
        CHECK(collector_json_parse(deep, 128, &root) == 0, "64 levels");
        for (i = 0; i < 65; i++) deep[i] = '[';
        for (i = 0; i < 65; i++) deep[65 + i] = ']';
        CHECK(collector_json_parse(deep, 130, &root) == COLLECTOR_E_DEPTH, "65 levels");
    }
}

static void test_parse_f64(void) {
    int i;
    static const char *cases[] = {"0", "-0", "1", "0.1", "1e-5", "2.2250738585072011e-308", "4.9e-324",
                                  "2.4703282292062327e-324", "2.4703282292062328e-324", "1.7976931348623157e308",
                                  "1.7976931348623158e308", "1.7976931348623159e308", "9007199254740993",
                                  "123456789012345678901234567890", "0.30000000000000004", "1e23", "8.5e-323",
                                  "1e-400", "1e400", "3.14159", "0.000001", "1234.5678e10", "9999999999999999e290"};
    for (i = 0; i < (int)(sizeof cases / sizeof *cases); i++) {
        double mine, ref = strtod(cases[i], NULL);
        int rc = collector_parse_f64(cases[i], strlen(cases[i]), &mine);
        CHECK(rc == 0 && to_bits(mine) == to_bits(ref), "parse %s = %.17g, strtod %.17g", cases[i], mine, ref);
    }
    /* round trips of random doubles through the shortest text and %.17g */
    for (i = 0; i < 50000; i++) {
        double v = from_bits(rng()), back;
        char t[40];
        size_t n;
        if (isnan(v) || isinf(v)) continue;
        n = collector_format_f64(v, t);
        CHECK(collector_parse_f64(t, n, &back) == 0 && to_bits(back) == to_bits(v), "parse(%.*s)", (int)n, t);
        snprintf(t, sizeof t, "%.17g", v);
        CHECK(collector_parse_f64(t, strlen(t), &back) == 0 && to_bits(back) == to_bits(v), "parse(%s)", t);
        snprintf(t, sizeof t, "%.12g", v);
        CHECK(collector_parse_f64(t, strlen(t), &back) == 0 && to_bits(back) == to_bits(strtod(t, NULL)),
              "parse(%s)", t);
    }
}

static void test_heap(void) {
    /* Random alloc/free, then the same pattern again: the heap must not grow
     * (the freestanding allocator reuses and merges freed blocks). */
    void *ptrs[256];
    size_t sizes[256];
    int round, i;
    memset(ptrs, 0, sizeof ptrs);
    for (round = 0; round < 4; round++) {
        uint64_t seed = 12345;
        for (i = 0; i < 20000; i++) {
            int k;
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            k = (int)((seed >> 33) % 256);
            if (ptrs[k]) {
                size_t j;
                for (j = 0; j < sizes[k]; j++)
                    CHECK(((unsigned char *)ptrs[k])[j] == (unsigned char)k, "heap corruption");
                if ((seed >> 20) & 1) {
                    size_t ns = sizes[k] * 2 + 1;
                    void *q = collector_realloc(ptrs[k], ns);
                    CHECK(q != NULL, "realloc");
                    ptrs[k] = q;
                    memset(q, k, ns);
                    sizes[k] = ns;
                } else {
                    collector_free(ptrs[k]);
                    ptrs[k] = NULL;
                }
            } else {
                sizes[k] = (size_t)((seed >> 40) % 3000);
                ptrs[k] = collector_malloc(sizes[k]);
                CHECK(ptrs[k] != NULL, "malloc");
                CHECK(((uintptr_t)ptrs[k] & 7) == 0, "alignment");
                memset(ptrs[k], k, sizes[k]);
            }
        }
        for (i = 0; i < 256; i++) {
            collector_free(ptrs[i]);
            ptrs[i] = NULL;
        }
#if defined(COLLECTOR_FREESTANDING)
        {
            static uintptr_t first_limit;
            /* everything freed: one free block spanning the heap */
            CHECK(collector__free_list != NULL && collector__free_list->next == NULL &&
                      (uintptr_t)collector__free_list + collector__free_list->size == collector__brk,
                  "heap not merged back into one block");
            /* round 0 builds the heap; later rounds must fit in it */
            if (round == 1) first_limit = collector__limit;
            else if (round > 1) CHECK(collector__limit == first_limit, "heap grew on round %d: %zu -> %zu", round,
                       (size_t)first_limit, (size_t)collector__limit);
        }
#endif
    }
    {
        void *p = collector_calloc(10, 10);
        CHECK(p && ((unsigned char *)p)[99] == 0, "calloc");
        collector_free(p);
        CHECK(collector_malloc((size_t)-1) == NULL, "huge malloc fails");
    }
}

static int cmd_selftest(const char *golden_dir) {
    test_ints();
    test_number_cmp();
    test_float_format();
    test_special_values();
    test_depth();
    test_iterators(golden_dir);
    test_json_reader();
    test_parse_f64();
    test_heap();
#if defined(COLLECTOR_FREESTANDING)
    printf("selftest (freestanding mode): %s\n", failures ? "FAILED" : "ok");
#else
    printf("selftest (libc mode): %s\n", failures ? "FAILED" : "ok");
#endif
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--selftest") == 0)
        return cmd_selftest(argc >= 3 ? argv[2] : "../golden");
    if (argc >= 2 && strcmp(argv[1], "--malformed") == 0) return cmd_malformed(argc - 2, argv + 2);
    if (argc >= 2 && argv[1][0] != '-') return cmd_decode(argc - 1, argv + 1);
    fprintf(stderr, "usage: %s FILE.bin... | --malformed FILE.bin... | --selftest [GOLDEN_DIR]\n", argv[0]);
    return 2;
}
