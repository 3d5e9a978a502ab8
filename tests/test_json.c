/* test_json.c - the strict JSON check (core/json.h): RFC 8259's grammar case by case (JSONTestSuite's
 * y_/n_ kinds), UTF-8 against an independent decoder over every 1-, 2- and 3-byte sequence and
 * a sample of 4-byte ones, "\u0000" and surrogate escapes, the nesting limit, the cost estimate
 * against what cJSON really allocates (glibc's mallinfo2, normal builds), the budget refusal,
 * and the UTF-8 guarantee of pd_json_print. */
#include "json.h"
#include "test.h"

#include <malloc.h>
#include <string.h>

static int ok(const char *s) {
    char err[160];
    return pd_json_check(s, strlen(s), NULL, err, sizeof err) == PD_OK;
}

/* The reference: decode by the bit patterns, then judge the code point (Unicode 15, 3.9). */
static int ref_utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], need, cp, min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { need = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { need = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { need = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (i + need >= n) return 0; /* truncated */
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

static void test_grammar(void) {
    const char *good[] = {
        "0", "-0", "1", "-1", "1.5", "1e5", "1E+5", "1e-5", "0.0e0", "123456789012345678901234567890", "true", "false",
        "null", "\"\"", "\"a\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\"", "\"\\ud83d\\ude00\"", "\"caf\xc3\xa9\"",
        "\"\xf0\x9f\x98\x80\"", "\"\xef\xbf\xbe\"", "[]", "{}", "[1,2,3]", "{\"a\":1,\"b\":[true,null]}", " \t\r\n[ 1 , 2 ] \n",
        "{\"\":0}", "{\"a\":1,\"a\":2}", "[[[[[]]]]]", "\"\\u00e9\\u20ac\"", "\"\x7f\"",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) CHECKF(ok(good[i]), "refused: %s", good[i]);
    const char *bad[] = {
        "", " ", "01", "-01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "0x10", "NaN", "Infinity", "-Infinity", "1_0",
        "tru", "nul", "True", "\"", "\"a", "'a'", "\"\x01\"", "\"a\nb\"", "\"\t\"", "\"\\q\"", "\"\\u12\"", "\"\\u12g4\"",
        "\"\\u0000\"", "\"a\\u0000b\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ude00\\ud83d\"", "\"\\ud800\\u0041\"", "\"\xff\"",
        "\"\xc0\xaf\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xe2\x82\"", "\"\xf4\x90\x80\x80\"", "\"\xf8\x88\x80\x80\x80\"",
        "[", "]", "[1,]", "[,1]", "[1 2]", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}", "{1:1}", "{\"a\" 1}", "[1]]",
        "[1] [2]", "1 2", "[1]x", "\xef\xbb\xbf[1]", "[\"a\"\x00]", "/* c */ 1", "[1,\n]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECKF(!ok(bad[i]), "accepted: %s", bad[i]);
    /* A NUL byte inside the text (not an escape) is a raw control character. */
    char err[160];
    CHECK(pd_json_check("[\"a\0b\"]", 7, NULL, err, sizeof err) == PD_ERR_INVALID);
    CHECK(pd_json_check("[1]\0", 4, NULL, err, sizeof err) == PD_ERR_INVALID);
    /* The message names the byte. */
    CHECK(pd_json_check("[1, 01]", 7, NULL, err, sizeof err) == PD_ERR_INVALID && strstr(err, "byte 5") && strstr(err, "leading zeros"));
}

static void test_depth(void) {
    static char buf[2 * (PD_JSON_MAX_DEPTH + 1) + 1];
    char err[160];
    for (int d = PD_JSON_MAX_DEPTH; d <= PD_JSON_MAX_DEPTH + 1; d++) {
        int n = 0;
        for (int i = 0; i < d; i++) buf[n++] = '[';
        for (int i = 0; i < d; i++) buf[n++] = ']';
        pd_json_stats st;
        pd_status s = pd_json_check(buf, (size_t)n, &st, err, sizeof err);
        if (d == PD_JSON_MAX_DEPTH) CHECK(s == PD_OK && st.depth == d);
        else CHECK(s == PD_ERR_INVALID && strstr(err, "deeper"));
    }
    /* Objects and arrays interleaved: the container kind is remembered per level. */
    CHECK(ok("{\"a\":[{\"b\":[{\"c\":[]}]}]}"));
    CHECK(!ok("{\"a\":[{\"b\":[{\"c\":[]]}]}"));
    CHECK(!ok("[{\"a\":1]}"));
}

static void test_utf8(void) {
    unsigned char b[4];
    int mismatches = 0;
    for (unsigned x = 0; x < 0x100; x++) {
        b[0] = (unsigned char)x;
        mismatches += pd_utf8_valid((char *)b, 1) != ref_utf8_valid(b, 1);
        for (unsigned y = 0; y < 0x100; y++) {
            b[1] = (unsigned char)y;
            mismatches += pd_utf8_valid((char *)b, 2) != ref_utf8_valid(b, 2);
            if (x < 0xC0) continue; /* lead bytes only: the rest is covered by shorter prefixes */
            for (unsigned z = 0; z < 0x100; z++) {
                b[2] = (unsigned char)z;
                mismatches += pd_utf8_valid((char *)b, 3) != ref_utf8_valid(b, 3);
            }
        }
    }
    uint64_t s = 42;
    for (int i = 0; i < 2000000; i++) {
        uint64_t r = pd_splitmix64(&s);
        b[0] = (unsigned char)(0xF0 + (r & 7)), b[1] = (unsigned char)(r >> 8), b[2] = (unsigned char)(r >> 16), b[3] = (unsigned char)(r >> 24);
        if (r & (1ull << 40)) b[1] = (unsigned char)(0x80 | (b[1] & 0x3F));
        if (r & (1ull << 41)) b[2] = (unsigned char)(0x80 | (b[2] & 0x3F)), b[3] = (unsigned char)(0x80 | (b[3] & 0x3F));
        mismatches += pd_utf8_valid((char *)b, 4) != ref_utf8_valid(b, 4);
    }
    CHECKF(mismatches == 0, "%d sequences judged differently from the reference decoder", mismatches);
    CHECK(pd_utf8_check("ab\xff", 3) == 2);
    CHECK(pd_utf8_check("\xc3\xa9\xc3", 3) == 2);
    /* pd_err's messages are UTF-8 even where a precision cuts an echoed character (fuzz
     * train_request: "task: '%.40s' is not ..." on a value of three-byte characters) */
    char e[64];
    pd_err(e, sizeof e, PD_ERR_INVALID, "task: '%.4s' x", "\xe5\xa1\xbe\xe5\xa1\xbe");
    CHECKF(!strcmp(e, "task: '\xe5\xa1\xbe?' x"), "%s", e);
    pd_err(e, 10, PD_ERR_INVALID, "ab%s", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"); /* errlen cuts the last one */
    CHECKF(!strcmp(e, "ab\xc3\xa9\xc3\xa9\xc3\xa9?"), "%s", e);
    pd_err(e, sizeof e, PD_ERR_INVALID, "%s", "latin-1 caf\xe9");
    CHECK(!strcmp(e, "latin-1 caf?"));
}

/* The estimate is an upper bound of what cJSON allocates (and close to it), measured with
 * mallinfo2 on glibc's allocator; ASan's allocator does not report there. */
static void test_cost(void) {
    static const char *items[] = {"1", "\"a\",\"bb\",\"a good film, a long sentence of some length\",{},[]",
                                  "{\"text\":\"a good film\",\"label\":\"pos\"}", "{\"a\":{\"b\":[1.5,null,true]}}"};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) {
        /* 5000 copies in an array: glibc's per-thread caches (a few chunks per size) vanish in it */
        size_t k = strlen(items[i]), n = 0;
        char *text = malloc(5000 * (k + 1) + 2);
        text[n++] = '[';
        for (int c = 0; c < 5000; c++) {
            memcpy(text + n, items[i], k);
            n += k;
            text[n++] = ',';
        }
        text[n - 1] = ']';
        char err[160];
        pd_json_stats st;
        CHECK(pd_json_check(text, n, &st, err, sizeof err) == PD_OK);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
        TEST_SKIP("the cost estimate is measured on glibc's allocator only");
        (void)st;
#else
        struct mallinfo2 m0 = mallinfo2();
        cJSON *v = cJSON_ParseWithLengthOpts(text, n, NULL, 0);
        struct mallinfo2 m1 = mallinfo2();
        CHECK(v != NULL);
        size_t used = m1.uordblks - m0.uordblks;
        CHECKF(used <= st.cost && used * 10 >= st.cost * 9, "item %zu: cJSON took %zu bytes, estimated %zu", i, used, st.cost);
        cJSON_Delete(v);
#endif
        free(text);
    }
    /* The budget: 8 bytes per byte + 4 MiB. A megabyte of "1," is refused before parsing. */
    size_t n = (size_t)3 << 20;
    char *big = malloc(n);
    big[0] = '[';
    for (size_t i = 1; i + 1 < n; i += 2) big[i] = '1', big[i + 1] = ',';
    big[n - 1] = ']';
    if (big[n - 2] == ',') big[n - 2] = '1';
    char err[200];
    cJSON *v = NULL;
    CHECK(pd_json_parse(big, n, &v, err, sizeof err) == PD_ERR_TOO_LARGE && v == NULL && strstr(err, "MiB"));
    /* The same size as one string is fine. */
    memset(big + 1, 'a', n - 2);
    big[0] = '"', big[n - 1] = '"';
    CHECK(pd_json_parse(big, n, &v, err, sizeof err) == PD_OK && cJSON_IsString(v) && strlen(v->valuestring) == n - 2);
    cJSON_Delete(v);
    free(big);
}

static void test_print(void) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ok", "caf\xc3\xa9");
    cJSON_AddStringToObject(o, "bad", "n\xffg\xed\xa0\x80");
    char *t = pd_json_print(o);
    CHECK(t && pd_utf8_valid(t, strlen(t)));
    CHECK(t && strstr(t, "caf\xc3\xa9") && strstr(t, "n\xef\xbf\xbdg\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
    char err[160];
    CHECK(t && pd_json_check(t, strlen(t), NULL, err, sizeof err) == PD_OK);
    free(t);
    cJSON_Delete(o);
}

int main(void) {
    test_grammar();
    test_depth();
    test_utf8();
    test_cost();
    test_print();
    return TEST_SUMMARY("test_json");
}
