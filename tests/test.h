/* test.h - the smallest test harness: CHECK prints file:line on failure,
 * TEST_SUMMARY prints "N passed, N failed" and returns the exit code.
 * A test that needs ../shared and cannot find it calls TEST_SKIP. */
#ifndef PD_TEST_H
#define PD_TEST_H
#include <stdio.h>
#include <math.h>

static int t_pass, t_fail, t_skip;

#define CHECK(c)                                                                    \
    do {                                                                            \
        if (c) t_pass++;                                                            \
        else { t_fail++; fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); } \
    } while (0)

#define CHECKF(c, ...)                                                              \
    do {                                                                            \
        if (c) t_pass++;                                                            \
        else { t_fail++; fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #c); \
               fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); }                 \
    } while (0)

#define CHECK_NEAR(a, b, tol) CHECKF(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g (tol %g)", (double)(a), (double)(b), (double)(tol))

#define TEST_SKIP(...) do { t_skip++; printf("skip: "); printf(__VA_ARGS__); printf("\n"); } while (0)

#define TEST_SUMMARY(name) \
    (printf("%s: %d passed, %d failed, %d skipped\n", name, t_pass, t_fail, t_skip), t_fail ? 1 : 0)

#endif
