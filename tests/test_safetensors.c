/* test_safetensors.c - round trips, every rejection the reader promises, half-precision
 * conversions against hand-computed values and an independent rint()-based reference, a
 * byte-flipping fuzz loop and name lookup over 3000 tensors. */
#include "safetensors.h"
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* Builds a file: 8-byte length field nfield, hdrlen header bytes, datalen data bytes
 * (a 0,1,2,... pattern). *len gets the size; the caller frees. */
static uint8_t *mk_raw(uint64_t nfield, const void *hdr, size_t hdrlen, size_t datalen, size_t *len) {
    *len = 8 + hdrlen + datalen;
    uint8_t *b = malloc(*len ? *len : 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(nfield >> (8 * i));
    memcpy(b + 8, hdr, hdrlen);
    for (size_t i = 0; i < datalen; i++) b[8 + hdrlen + i] = (uint8_t)i;
    return b;
}

static uint8_t *mk(const char *hdr, size_t datalen, size_t *len) {
    return mk_raw(strlen(hdr), hdr, strlen(hdr), datalen, len);
}

/* open_buffer on bytes; returns the status and leaves the message in err. */
static pd_status try_buf(const uint8_t *b, size_t len, char *err, size_t errlen) {
    pd_st_file *f = NULL;
    pd_status st = pd_st_open_buffer(b, len, &f, err, errlen);
    CHECK((st == PD_OK) == (f != NULL));
    pd_st_close(f);
    return st;
}

static void write_file(const char *path, const void *b, size_t len) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp) return;
    if (len) CHECK(fwrite(b, 1, len, fp) == len);
    fclose(fp);
}

/* ==== rejections ==== */

typedef struct {
    const char *what;
    const char *hdr;
    size_t datalen;
    pd_status want;
    const char *keyword; /* must appear in the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"truncated data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, PD_ERR_FORMAT,
     "truncated"},
    {"trailing bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, PD_ERR_FORMAT,
     "trailing"},
    {"not JSON", "{\"a\":", 0, PD_ERR_FORMAT, "not valid JSON"},
    {"JSON then garbage", "{} x", 0, PD_ERR_FORMAT, "not valid JSON"},
    {"two objects", "{}{}", 0, PD_ERR_FORMAT, "not valid JSON"},
    {"array header", "[1,2]", 0, PD_ERR_FORMAT, "start with '{'"},
    {"string header", "\"x\"", 0, PD_ERR_FORMAT, "start with '{'"},
    {"leading space", " {}", 0, PD_ERR_FORMAT, "start with '{'"},
    {"entry not object", "{\"a\":[1]}", 0, PD_ERR_FORMAT, "not an object"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PD_ERR_FORMAT, "missing field 'dtype'"},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, PD_ERR_FORMAT,
     "missing field 'shape'"},
    {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, PD_ERR_FORMAT,
     "missing field 'data_offsets'"},
    {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     PD_ERR_FORMAT, "duplicate field"},
    {"dtype not string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, PD_ERR_FORMAT,
     "dtype is not a string"},
    {"shape not array", "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, PD_ERR_FORMAT,
     "shape is not an array"},
    {"offsets wrong arity", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
     PD_ERR_FORMAT, "data_offsets is not an array"},
    {"offset is a string", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 4,
     PD_ERR_FORMAT, "not a number"},
    {"gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12, PD_ERR_FORMAT, "gap"},
    {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, PD_ERR_FORMAT, "overlaps"},
    {"not from 0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, PD_ERR_FORMAT,
     "start at 0"},
    {"begin > end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, PD_ERR_FORMAT,
     "begin > end"},
    {"size mismatch", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12,
     PD_ERR_FORMAT, "needs 16 bytes"},
    {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, PD_ERR_FORMAT,
     "negative"},
    {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, PD_ERR_FORMAT,
     "not an integer"},
    {"huge dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, PD_ERR_FORMAT,
     "too large"},
    {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 0, PD_ERR_FORMAT,
     "negative"},
    {"numel overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
     PD_ERR_FORMAT, "overflows"},
    {"bytes overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,8]}}", 8,
     PD_ERR_FORMAT, "overflows"},
    {"unknown dtype F8", "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     PD_ERR_UNSUPPORTED, "unknown dtype F8_E4M3 for tensor 'a'"},
    {"unknown dtype Q4", "{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, PD_ERR_UNSUPPORTED,
     "unknown dtype Q4"},
    {"too many dims", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
     PD_ERR_UNSUPPORTED, "at most 8"},
    {"duplicate names", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, PD_ERR_FORMAT, "duplicate tensor name 'a'"},
    {"metadata value not string", "{\"__metadata__\":{\"k\":1}}", 0, PD_ERR_FORMAT, "not a string"},
    {"metadata not object", "{\"__metadata__\":\"x\"}", 0, PD_ERR_FORMAT, "__metadata__ is not an object"},
    {"duplicate metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, PD_ERR_FORMAT, "duplicate __metadata__"},
    {"escaped NUL in name", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     PD_ERR_FORMAT, "NUL"},
    {"raw control byte", "{\"a\x01\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, PD_ERR_FORMAT,
     "control byte"},
    {"no tensors, stray data", "{}", 4, PD_ERR_FORMAT, "trailing"},
};

/* Raw (possibly non-UTF-8) headers. */
typedef struct {
    const char *what;
    const char *hdr; /* sizeof - 1 bytes */
    size_t hdrlen;
} utf8_case;

#define U8C(w, s) {w, s, sizeof(s) - 1}
static const utf8_case utf8_cases[] = {
    U8C("overlong NUL C0 80", "{\"a\xc0\x80\":{}}"),
    U8C("lone FF", "{\"a\xff\":{}}"),
    U8C("lone continuation", "{\"a\x80\":{}}"),
    U8C("overlong E0 80 80", "{\"a\xe0\x80\x80\":{}}"),
    U8C("surrogate ED A0 80", "{\"a\xed\xa0\x80\":{}}"),
    U8C("above U+10FFFF", "{\"a\xf4\x90\x80\x80\":{}}"),
    U8C("F5 lead", "{\"a\xf5\x80\x80\x80\":{}}"),
    U8C("truncated sequence at end", "{\"a\":{}}\xe2\x82"),
    U8C("truncated sequence mid", "{\"a\xe2\x82\":{}}"),
};

static void test_rejections(void) {
    char err[512];
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case *c = &bad_cases[i];
        size_t len;
        uint8_t *b = mk(c->hdr, c->datalen, &len);
        err[0] = 0;
        pd_status st = try_buf(b, len, err, sizeof(err));
        if (getenv("ST_VERBOSE")) printf("%-28s %s\n", c->what, err);
        CHECKF(st == c->want, "%s: status %d, want %d (%s)", c->what, st, c->want, err);
        CHECKF(strstr(err, c->keyword) != NULL, "%s: message '%s' lacks '%s'", c->what, err, c->keyword);
        CHECKF(strstr(err, "<buffer>") != NULL, "%s: message '%s' does not name the file", c->what, err);
        free(b);
    }
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        const utf8_case *c = &utf8_cases[i];
        size_t len;
        uint8_t *b = mk_raw(c->hdrlen, c->hdr, c->hdrlen, 0, &len);
        err[0] = 0;
        pd_status st = try_buf(b, len, err, sizeof(err));
        if (getenv("ST_VERBOSE")) printf("%-28s %s\n", c->what, err);
        CHECKF(st == PD_ERR_FORMAT, "%s: status %d (%s)", c->what, st, err);
        CHECKF(strstr(err, "UTF-8") != NULL, "%s: message '%s'", c->what, err);
        free(b);
    }
    /* Valid multi-byte UTF-8 (2, 3 and 4 byte forms, U+10FFFF) in names is fine. */
    {
        const char *h = "{\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\":"
                        "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
        size_t len;
        uint8_t *b = mk(h, 1, &len);
        pd_st_file *f = NULL;
        CHECK(pd_st_open_buffer(b, len, &f, err, sizeof(err)) == PD_OK);
        CHECK(f && pd_st_find(f, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf") != NULL);
        pd_st_close(f);
        free(b);
    }

    /* Length-field problems. */
    struct {
        const char *what;
        uint64_t n;
        const char *keyword;
    } lens[] = {
        {"header length larger than file", 1000, "larger than the file"},
        {"header length 2^63", (uint64_t)1 << 63, "too large"},
        {"header length 2^64-1", UINT64_MAX, "too large"},
        {"header length over the 100 MB cap", 100000001, "too large"},
        {"header length 0", 0, "start with '{'"},
    };
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t len;
        uint8_t *b = mk_raw(lens[i].n, "{}", 2, 0, &len);
        err[0] = 0;
        pd_status st = try_buf(b, len, err, sizeof(err));
        CHECKF(st == PD_ERR_FORMAT, "%s: status %d (%s)", lens[i].what, st, err);
        CHECKF(strstr(err, lens[i].keyword) != NULL, "%s: message '%s'", lens[i].what, err);
        free(b);
    }
    /* Header length exactly at the cap but the file is small: too short, not too large. */
    {
        size_t len;
        uint8_t *b = mk_raw(100000000, "{}", 2, 0, &len);
        CHECK(try_buf(b, len, err, sizeof(err)) == PD_ERR_FORMAT && strstr(err, "larger than the file"));
        free(b);
    }
    /* Short buffers. */
    for (size_t n = 0; n < 8; n++) {
        uint8_t b[8] = {2, 0, 0, 0, 0, 0, 0, 0};
        CHECK(try_buf(b, n, err, sizeof(err)) == PD_ERR_FORMAT && strstr(err, "too small"));
    }
    /* The message names the file and tensor the way the brief's example reads. */
    {
        size_t len;
        uint8_t *b = mk("{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12, &len);
        try_buf(b, len, err, sizeof(err));
        CHECKF(strcmp(err, "<buffer>: tensor 'a.weight': data_offsets [0, 12] but shape [2,2] x F32 needs 16 bytes") ==
                   0,
               "%s", err);
        free(b);
    }
    /* A tiny errlen truncates, never overflows; errlen 0 / err NULL are allowed. */
    {
        size_t len;
        uint8_t *b = mk("[]", 0, &len);
        char small[6];
        CHECK(try_buf(b, len, small, sizeof(small)) == PD_ERR_FORMAT && strlen(small) == 5);
        CHECK(try_buf(b, len, NULL, 0) == PD_ERR_FORMAT);
        free(b);
    }
}

/* Files on disk: the same checks through pd_st_open, plus empty/short/missing files. */
static void test_open_files(const char *dir) {
    char path[128], err[512];
    pd_st_file *f = NULL;
    snprintf(path, sizeof(path), "%s/bad.safetensors", dir);

    write_file(path, "", 0);
    CHECK(pd_st_open(path, &f, err, sizeof(err)) == PD_ERR_FORMAT && f == NULL);
    CHECKF(strstr(err, "bad.safetensors") && strstr(err, "too small"), "%s", err);

    write_file(path, "\x02\0\0\0\0\0\0", 7);
    CHECK(pd_st_open(path, &f, err, sizeof(err)) == PD_ERR_FORMAT && strstr(err, "too small"));

    size_t len;
    uint8_t *b = mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, &len);
    write_file(path, b, len);
    CHECK(pd_st_open(path, &f, err, sizeof(err)) == PD_ERR_FORMAT);
    CHECKF(strstr(err, "bad.safetensors") && strstr(err, "truncated"), "%s", err);
    free(b);

    b = mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, &len);
    write_file(path, b, len);
    CHECK(pd_st_open(path, &f, err, sizeof(err)) == PD_ERR_FORMAT && strstr(err, "trailing"));
    free(b);

    b = mk("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &len);
    write_file(path, b, len);
    CHECK(pd_st_open(path, &f, err, sizeof(err)) == PD_OK && f && pd_st_count(f) == 1);
    pd_st_close(f);
    free(b);
    unlink(path);

    snprintf(path, sizeof(path), "%s/missing.safetensors", dir);
    CHECK(pd_st_open(path, &f, err, sizeof(err)) == PD_ERR_NOT_FOUND && f == NULL);
    CHECK(pd_st_open(dir, &f, err, sizeof(err)) == PD_ERR_IO && f == NULL); /* a directory */
    pd_st_close(NULL);
}

/* ==== valid files ==== */

static void test_roundtrip(const char *dir) {
    char path[128], err[512];
    snprintf(path, sizeof(path), "%s/rt.safetensors", dir);
    float a[6] = {0, 1, 2, 3, 4, 5}, c[3] = {-1.5f, 1e-30f, 3e38f}, s = 7.25f;
    float big[1000];
    for (int i = 0; i < 1000; i++) big[i] = sinf((float)i);
    pd_st_wtensor w[] = {
        {"zeta.weight", 2, {2, 3}, a},
        {"alpha.bias", 1, {3}, c},
        {"scalar", 0, {0}, &s},
        {"empty", 2, {0, 5}, NULL},
        {"mid.\"quoted\\name\"", 3, {10, 10, 10}, big},
    };
    int n = (int)(sizeof(w) / sizeof(w[0]));
    const char *meta[] = {"format", "pt", "note", "line1\nline2 \"q\" \xc3\xa9"};
    CHECK(pd_st_write(path, w, n, meta, 2, err, sizeof(err)) == PD_OK);

    pd_st_file *f = NULL;
    pd_status st = pd_st_open(path, &f, err, sizeof(err));
    CHECKF(st == PD_OK, "%s", err);
    if (st != PD_OK) return;
    CHECK(pd_st_count(f) == n);
    CHECK(strcmp(pd_st_metadata(f, "format"), "pt") == 0);
    CHECK(strcmp(pd_st_metadata(f, "note"), meta[3]) == 0);
    CHECK(pd_st_metadata(f, "absent") == NULL);
    /* Written sorted by name, so data offsets follow name order. */
    for (int i = 1; i < n; i++) {
        CHECK(strcmp(pd_st_at(f, i - 1)->name, pd_st_at(f, i)->name) < 0);
        CHECK((const char *)pd_st_at(f, i - 1)->data + pd_st_at(f, i - 1)->nbytes ==
              (const char *)pd_st_at(f, i)->data);
    }
    for (int i = 0; i < n; i++) {
        const pd_st_tensor *t = pd_st_find(f, w[i].name);
        CHECKF(t != NULL, "%s", w[i].name);
        if (!t) continue;
        CHECK(t->dtype == PD_DT_F32 && t->ndim == w[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < w[i].ndim; d++) {
            CHECK(t->shape[d] == w[i].shape[d]);
            numel *= w[i].shape[d];
        }
        CHECK(pd_st_numel(t) == numel && t->nbytes == (size_t)numel * 4);
        float *y = NULL;
        CHECK(pd_st_to_f32(t, &y, err, sizeof(err)) == PD_OK && y != NULL);
        if (y && numel) CHECK(memcmp(y, w[i].data, (size_t)numel * 4) == 0);
        free(y);
    }
    CHECK(pd_st_find(f, "nope") == NULL && pd_st_find(f, "") == NULL);
    pd_st_close(f);

    /* The file and the buffer writer agree byte for byte, and 8+N is a multiple of 8. */
    char *buf = NULL, *disk = NULL;
    size_t blen = 0, dlen = 0;
    CHECK(pd_st_write_buffer(w, n, meta, 2, &buf, &blen, err, sizeof(err)) == PD_OK);
    CHECK(pd_read_file(path, 1 << 20, &disk, &dlen, err, sizeof(err)) == PD_OK);
    CHECK(buf && disk && blen == dlen && memcmp(buf, disk, blen) == 0);
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = (hn << 8) | (uint8_t)buf[i];
    CHECK((8 + hn) % 8 == 0 && buf[8] == '{');
    CHECK(strncmp(buf + 8, "{\"__metadata__\":{\"format\":\"pt\",", 31) == 0);
    free(disk);
    free(buf);
    unlink(path);

    /* Exactly the reference's serialize() output for one tensor (tensor.rs test_serialization). */
    float v[6] = {0, 1, 2, 3, 4, 5};
    pd_st_wtensor one = {"attn.0", 3, {1, 2, 3}, v};
    CHECK(pd_st_write_buffer(&one, 1, NULL, 0, &buf, &blen, err, sizeof(err)) == PD_OK);
    const char *want = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    CHECK(blen == 8 + 64 + 24 && (uint8_t)buf[0] == 64 && memcmp(buf + 8, want, strlen(want)) == 0);
    free(buf);
    /* Empty: "{}" plus six spaces, as the reference writes it. */
    CHECK(pd_st_write_buffer(NULL, 0, NULL, 0, &buf, &blen, err, sizeof(err)) == PD_OK);
    CHECK(blen == 16 && buf[0] == 8 && memcmp(buf + 8, "{}      ", 8) == 0);
    pd_st_file *e = NULL;
    CHECK(pd_st_open_buffer(buf, blen, &e, err, sizeof(err)) == PD_OK && pd_st_count(e) == 0);
    pd_st_close(e);
    free(buf);

    /* Writer rejects bad input. */
    pd_st_wtensor dup[2] = {{"x", 1, {1}, v}, {"x", 1, {1}, v}};
    CHECK(pd_st_write_buffer(dup, 2, NULL, 0, &buf, &blen, err, sizeof(err)) == PD_ERR_INVALID &&
          strstr(err, "duplicate") && buf == NULL);
    pd_st_wtensor neg = {"x", 1, {-1}, v};
    CHECK(pd_st_write_buffer(&neg, 1, NULL, 0, &buf, &blen, err, sizeof(err)) == PD_ERR_INVALID);
    pd_st_wtensor md = {"__metadata__", 1, {1}, v};
    CHECK(pd_st_write_buffer(&md, 1, NULL, 0, &buf, &blen, err, sizeof(err)) == PD_ERR_INVALID);
    pd_st_wtensor badutf = {"x\xff", 1, {1}, v};
    CHECK(pd_st_write_buffer(&badutf, 1, NULL, 0, &buf, &blen, err, sizeof(err)) == PD_ERR_INVALID);
    const char *dmeta[] = {"k", "1", "k", "2"};
    CHECK(pd_st_write_buffer(NULL, 0, dmeta, 2, &buf, &blen, err, sizeof(err)) == PD_ERR_INVALID);
    snprintf(path, sizeof(path), "%s/no/such/dir.safetensors", dir);
    CHECK(pd_st_write(path, &one, 1, NULL, 0, err, sizeof(err)) == PD_ERR_IO);
}

/* Hand-built files with other dtypes, out-of-order header, zero-size tensors and data at an
 * odd (unaligned) address. */
static void test_dtypes(void) {
    char err[512];
    /* Header of 99 bytes -> data starts at offset 107: nothing is aligned. */
    char hdr[512];
    snprintf(hdr, sizeof(hdr),
             "{\"d\":{\"data_offsets\":[14,30],\"shape\":[2],\"dtype\":\"F64\"},"
             "\"z\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[14,14]},"
             "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
             "\"__metadata__\":{},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]},"
             "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[10,14]},"
             "\"u\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[30,31]}}  ");
    size_t len;
    uint8_t *b = mk(hdr, 31, &len);
    uint8_t *data = b + 8 + strlen(hdr);
    uint16_t h[3] = {0x3c00, 0xc100, 0x3555};
    uint16_t bf[2] = {0x3f80, 0xc020};
    int32_t iv = -7;
    double dv[2] = {0.1, -1e300};
    memcpy(data, h, 6);
    memcpy(data + 6, bf, 4);
    memcpy(data + 10, &iv, 4);
    memcpy(data + 14, dv, 16);
    data[30] = 1;
    pd_st_file *f = NULL;
    pd_status st = pd_st_open_buffer(b, len, &f, err, sizeof(err));
    free(b); /* open_buffer copied it */
    CHECKF(st == PD_OK, "%s", err);
    if (st != PD_OK) return;
    CHECK(pd_st_count(f) == 6);
    const char *order[] = {"h", "b", "i", "z", "d", "u"}; /* by (begin, end) */
    for (int i = 0; i < 6; i++) CHECKF(strcmp(pd_st_at(f, i)->name, order[i]) == 0, "%d %s", i, pd_st_at(f, i)->name);
    float *y = NULL;
    CHECK(pd_st_to_f32(pd_st_find(f, "h"), &y, err, sizeof(err)) == PD_OK);
    CHECK(y[0] == 1.0f && y[1] == -2.5f && y[2] == 0.333251953125f);
    free(y);
    CHECK(pd_st_to_f32(pd_st_find(f, "b"), &y, err, sizeof(err)) == PD_OK);
    CHECK(y[0] == 1.0f && y[1] == -2.5f);
    free(y);
    CHECK(pd_st_to_f32(pd_st_find(f, "d"), &y, err, sizeof(err)) == PD_OK);
    CHECK(y[0] == 0.1f && isinf(y[1]) && y[1] < 0);
    free(y);
    const pd_st_tensor *z = pd_st_find(f, "z");
    CHECK(z && z->nbytes == 0 && pd_st_numel(z) == 0 && z->ndim == 2);
    CHECK(pd_st_to_f32(z, &y, err, sizeof(err)) == PD_OK && y != NULL);
    free(y);
    const pd_st_tensor *u = pd_st_find(f, "u");
    CHECK(u && u->ndim == 0 && pd_st_numel(u) == 1 && u->dtype == PD_DT_BOOL && *(const uint8_t *)u->data == 1);
    CHECK(pd_st_to_f32(pd_st_find(f, "i"), &y, err, sizeof(err)) == PD_ERR_UNSUPPORTED && y == NULL);
    CHECK(strstr(err, "I32") != NULL);
    CHECK(pd_st_to_f32(u, &y, err, sizeof(err)) == PD_ERR_UNSUPPORTED);
    pd_st_close(f);

    CHECK(strcmp(pd_dtype_name(PD_DT_BF16), "BF16") == 0 && pd_dtype_size(PD_DT_BF16) == 2);
    CHECK(pd_dtype_size(PD_DT_F64) == 8 && pd_dtype_size(PD_DT_BOOL) == 1 && pd_dtype_size(PD_DT_I16) == 2);
}

/* ==== half precision ==== */

/* Independent reference: round x to the nearest half with rint() (ties to even in the
 * default rounding mode) on a grid whose spacing depends on the binade. */
static float ref_round_f16(float x) {
    double a = fabs((double)x);
    if (a == 0) return x;
    int e = ilogb(a);
    if (e < -14) e = -14; /* subnormal grid spacing 2^-24 */
    double q = ldexp(rint(ldexp(a, 10 - e)), e - 10);
    if (q > 65504.0) q = INFINITY;
    return (float)copysign(q, (double)x);
}

static float ref_round_bf16(float x) {
    double a = fabs((double)x);
    if (a == 0) return x;
    int e = ilogb(a);
    if (e < -126) e = -126;
    double q = ldexp(rint(ldexp(a, 7 - e)), e - 7);
    if (q > 3.3895313892515355e38) q = INFINITY; /* bf16 max finite 0x7f7f */
    return (float)copysign(q, (double)x);
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_half(void) {
    CHECK(pd_f16_to_f32(0x3c00) == 1.0f);
    CHECK(pd_f16_to_f32(0xc100) == -2.5f);
    CHECK(pd_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(pd_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(pd_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    CHECK(pd_f16_to_f32(0x0400) == ldexpf(1.0f, -14));
    CHECK(pd_f16_to_f32(0x3555) == 0.333251953125f);
    CHECK_NEAR(pd_f16_to_f32(0x3555), 0.33325195, 1e-8);
    CHECK(isinf(pd_f16_to_f32(0x7c00)) && pd_f16_to_f32(0x7c00) > 0);
    CHECK(isinf(pd_f16_to_f32(0xfc00)) && pd_f16_to_f32(0xfc00) < 0);
    CHECK(isnan(pd_f16_to_f32(0x7e00)) && isnan(pd_f16_to_f32(0x7c01)) && isnan(pd_f16_to_f32(0xfe00)));
    CHECK(bits_of(pd_f16_to_f32(0x8000)) == 0x80000000u);

    CHECK(pd_f32_to_f16(1.0f) == 0x3c00);
    CHECK(pd_f32_to_f16(-2.5f) == 0xc100);
    CHECK(pd_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(pd_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(pd_f32_to_f16(65520.0f) == 0x7c00); /* tie, odd mantissa: to even = inf */
    CHECK(pd_f32_to_f16(1e10f) == 0x7c00 && pd_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(pd_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001);
    CHECK(pd_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000);      /* tie to even: 0 */
    CHECK(pd_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001);
    CHECK(pd_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002);      /* 1.5 ulp: tie to even 2 */
    CHECK(pd_f32_to_f16(ldexpf(1.0f, -14)) == 0x0400);
    CHECK(pd_f32_to_f16(ldexpf(1023.5f, -24)) == 0x0400);   /* rounds up into the normals */
    CHECK(pd_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00);        /* tie to even */
    CHECK(pd_f32_to_f16(1.0f + ldexpf(3.0f, -11)) == 0x3c02);        /* tie to even */
    CHECK(pd_f32_to_f16(1.0f / 3.0f) == 0x3555);
    CHECK(pd_f32_to_f16(-0.0f) == 0x8000 && pd_f32_to_f16(1e-30f) == 0);
    CHECK(pd_f32_to_f16(INFINITY) == 0x7c00 && pd_f32_to_f16(-INFINITY) == 0xfc00);
    uint16_t hn = pd_f32_to_f16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    hn = pd_f32_to_f16(float_of(0x7f800001u)); /* signalling NaN, payload only in low bits */
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    CHECK((pd_f32_to_f16(float_of(0xffc00000u)) & 0x8000) != 0);

    CHECK(pd_bf16_to_f32(0x3f80) == 1.0f && pd_bf16_to_f32(0xc020) == -2.5f);
    CHECK(pd_f32_to_bf16(1.0f) == 0x3f80 && pd_f32_to_bf16(-2.5f) == 0xc020);
    CHECK(pd_f32_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3f80);  /* tie to even */
    CHECK(pd_f32_to_bf16(1.0f + ldexpf(3.0f, -8)) == 0x3f82);  /* tie to even */
    CHECK(pd_f32_to_bf16(float_of(0x7f7fffffu)) == 0x7f80);    /* FLT_MAX rounds to inf */
    CHECK(pd_f32_to_bf16(INFINITY) == 0x7f80);
    uint16_t bn = pd_f32_to_bf16(float_of(0x7f800001u));
    CHECK((bn & 0x7f80) == 0x7f80 && (bn & 0x7f) != 0);
    CHECK(isnan(pd_bf16_to_f32(pd_f32_to_bf16(NAN))));

    /* Every non-NaN half and bf16 survives f16 -> f32 -> f16. */
    int bad16 = 0, badbf = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        float x = pd_f16_to_f32((uint16_t)i);
        if (!isnan(x) && pd_f32_to_f16(x) != i) bad16++;
        if (isnan(x) && !((i & 0x7c00) == 0x7c00 && (i & 0x3ff))) bad16++;
        float yb = pd_bf16_to_f32((uint16_t)i);
        if (!isnan(yb) && pd_f32_to_bf16(yb) != i) badbf++;
        if (isnan(yb) && !isnan(pd_bf16_to_f32(pd_f32_to_bf16(yb)))) badbf++;
    }
    CHECKF(bad16 == 0, "%d halves do not round trip", bad16);
    CHECKF(badbf == 0, "%d bf16 values do not round trip", badbf);

    /* Random floats over every binade against the rint() reference, ties included. */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int mis16 = 0, misbf = 0;
    for (int i = 0; i < 400000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint32_t u = (uint32_t)(s >> 32);
        if (i % 4 == 0) u &= ~0xfffu;   /* many exact ties and near-ties for f16 */
        if (i % 4 == 1) u &= ~0x7fffu;  /* and for bf16 */
        float x = float_of(u);
        if (isnan(x)) continue;
        if (bits_of(pd_f16_to_f32(pd_f32_to_f16(x))) != bits_of(ref_round_f16(x))) {
            if (mis16++ < 5) fprintf(stderr, "f16 mismatch for %a (0x%08x)\n", (double)x, u);
        }
        if (bits_of(pd_bf16_to_f32(pd_f32_to_bf16(x))) != bits_of(ref_round_bf16(x))) {
            if (misbf++ < 5) fprintf(stderr, "bf16 mismatch for %a (0x%08x)\n", (double)x, u);
        }
    }
    CHECK(mis16 == 0);
    CHECK(misbf == 0);
}

/* ==== fuzz and scale ==== */

static void test_fuzz(void) {
    char err[512];
    float a[12], c[5];
    for (int i = 0; i < 12; i++) a[i] = (float)i * 0.5f;
    for (int i = 0; i < 5; i++) c[i] = -(float)i;
    pd_st_wtensor w[] = {{"enc.0.weight", 2, {3, 4}, a}, {"enc.0.bias", 1, {5}, c}, {"s", 0, {0}, a}};
    const char *meta[] = {"format", "pt"};
    char *good = NULL;
    size_t glen = 0;
    CHECK(pd_st_write_buffer(w, 3, meta, 1, &good, &glen, err, sizeof(err)) == PD_OK);
    if (!good) return;
    uint8_t *buf = malloc(glen + 16);
    uint64_t s = 12345;
#define RND() (s = s * 6364136223846793005ull + 1442695040888963407ull, (uint32_t)(s >> 33))
    static const char interesting[] = "{}[],:\"\\-0129e.u \x80\xff\xc0";
    int ok = 0;
    for (int it = 0; it < 5000; it++) {
        memcpy(buf, good, glen);
        size_t len = glen;
        int kind = (int)(RND() % 4);
        int flips = 1 + (int)(RND() % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = RND() % len;
            if (kind == 0) buf[at] ^= (uint8_t)(1u << (RND() % 8));
            else if (kind == 1) buf[at] = interesting[RND() % (sizeof(interesting) - 1)];
            else if (kind == 2) buf[at] = (uint8_t)RND();
        }
        if (kind == 3 || RND() % 8 == 0) len = RND() % (glen + 1); /* truncate */
        if (RND() % 16 == 0) len += RND() % 16;                     /* or extend */
        pd_st_file *f = NULL;
        pd_status st = pd_st_open_buffer(buf, len, &f, err, sizeof(err));
        if (st == PD_OK) {
            ok++;
            for (int i = 0; i < pd_st_count(f); i++) {
                const pd_st_tensor *t = pd_st_at(f, i);
                CHECK(pd_st_find(f, t->name) == t);
                float *y = NULL;
                if (pd_st_to_f32(t, &y, err, sizeof(err)) == PD_OK) free(y);
                volatile uint8_t sum = 0; /* touch every byte: ASan catches any overrun */
                for (size_t j = 0; j < t->nbytes; j++) sum += ((const uint8_t *)t->data)[j];
                (void)sum;
            }
        } else {
            CHECK(f == NULL && err[0] != 0);
        }
        pd_st_close(f);
    }
#undef RND
    printf("fuzz: %d of 5000 mutants still valid\n", ok);
    free(buf);
    free(good);
}

static void test_many(const char *dir) {
    enum { N = 3000 };
    char err[512], path[128];
    snprintf(path, sizeof(path), "%s/many.safetensors", dir);
    pd_st_wtensor *w = calloc(N, sizeof(*w));
    char(*names)[32] = calloc(N, sizeof(*names));
    float *vals = calloc(N * 5, sizeof(float));
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "layer.%d.w%d", (i * 7919) % N, i % 3);
        w[i].name = names[i];
        w[i].ndim = 1;
        w[i].shape[0] = 1 + i % 5;
        w[i].data = vals + 5 * i;
        for (int k = 0; k < 5; k++) vals[5 * i + k] = (float)i + 0.125f * (float)k;
    }
    CHECK(pd_st_write(path, w, N, NULL, 0, err, sizeof(err)) == PD_OK);
    pd_st_file *f = NULL;
    CHECKF(pd_st_open(path, &f, err, sizeof(err)) == PD_OK, "%s", err);
    if (f) {
        CHECK(pd_st_count(f) == N);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            const pd_st_tensor *t = pd_st_find(f, names[i]);
            if (!t || t->shape[0] != 1 + i % 5 || memcmp(t->data, vals + 5 * i, t->nbytes) != 0) bad++;
        }
        CHECK(bad == 0);
        CHECK(pd_st_find(f, "layer.3000.w0") == NULL && pd_st_find(f, "layer.0.w") == NULL);
        CHECK(pd_st_metadata(f, "format") == NULL);
        pd_st_close(f);
    }
    unlink(path);
    free(w);
    free(names);
    free(vals);
}

int main(void) {
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/test_st_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_rejections();
    test_open_files(dir);
    test_roundtrip(dir);
    test_dtypes();
    test_half();
    test_fuzz();
    test_many(dir);
    CHECK(rmdir(dir) == 0); /* every test removed its files */
    return TEST_SUMMARY("test_safetensors");
}
