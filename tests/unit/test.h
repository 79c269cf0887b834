/*
 * test.h — the unit-test harness: each test is a small named function registered in a
 * list; each runs in its own forked process so that one failure (or crash) does not
 * hide the others. Assertions are never compiled out. The run ends with the line
 * "N passed, M failed" and exits non-zero when anything failed.
 *
 *   YW_TEST(parses_empty) { YW_CHECK(parse("") == 0); }
 *   int main(int argc, char **argv) {
 *       static const yw_test_t tests[] = { YW_TEST_ENTRY(parses_empty) };
 *       return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
 *   }
 */
#ifndef YW_TEST_H
#define YW_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} yw_test_t;

#define YW_TEST(name) static void yw_test_##name(void)
#define YW_TEST_ENTRY(name) {#name, yw_test_##name}

#define YW_CHECK(expr)                                                                     \
    do {                                                                                   \
        if (!(expr)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr);       \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define YW_CHECK_INT(a, op, b)                                                             \
    do {                                                                                   \
        long long yw_a_ = (long long)(a), yw_b_ = (long long)(b);                          \
        if (!(yw_a_ op yw_b_)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s %s %s (%lld vs %lld)\n", __FILE__,    \
                    __LINE__, #a, #op, #b, yw_a_, yw_b_);                                  \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/** `v` in decimal into `buf` (at least 41 bytes), for YW_CHECK_I128. Returns `buf`. */
static inline const char *yw_test_i128(__int128 v, char *buf)
{
    char tmp[41];
    size_t n = 0;
    unsigned __int128 u = v < 0 ? -(unsigned __int128)v : (unsigned __int128)v;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u != 0);
    size_t o = 0;
    if (v < 0) {
        buf[o++] = '-';
    }
    while (n > 0) {
        buf[o++] = tmp[--n];
    }
    buf[o] = '\0';
    return buf;
}

/** YW_CHECK_INT for 128-bit integers (sums past int64). */
#define YW_CHECK_I128(a, op, b)                                                            \
    do {                                                                                   \
        __int128 yw_a_ = (__int128)(a), yw_b_ = (__int128)(b);                             \
        if (!(yw_a_ op yw_b_)) {                                                           \
            char yw_x_[48], yw_y_[48];                                                     \
            fprintf(stderr, "%s:%d: check failed: %s %s %s (%s vs %s)\n", __FILE__,         \
                    __LINE__, #a, #op, #b, yw_test_i128(yw_a_, yw_x_),                     \
                    yw_test_i128(yw_b_, yw_y_));                                           \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define YW_CHECK_STR(a, b)                                                                 \
    do {                                                                                   \
        const char *yw_a_ = (a), *yw_b_ = (b);                                             \
        if (yw_a_ == NULL || yw_b_ == NULL || strcmp(yw_a_, yw_b_) != 0) {                 \
            fprintf(stderr, "%s:%d: check failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, \
                    __LINE__, #a, #b, yw_a_ ? yw_a_ : "(null)", yw_b_ ? yw_b_ : "(null)"); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static inline int yw_test_main(const yw_test_t *tests, size_t n, int argc, char **argv)
{
    size_t passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strstr(tests[i].name, argv[1]) == NULL) {
            continue;
        }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            tests[i].fn();
            fflush(stdout);
            exit(0); /* not _exit: LeakSanitizer checks at exit */
        }
        int st = 0;
        if (waitpid(pid, &st, 0) < 0) {
            perror("waitpid");
            return 2;
        }
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("ok   %s\n", tests[i].name);
            passed++;
        } else {
            printf("FAIL %s (%s %d)\n", tests[i].name, WIFSIGNALED(st) ? "signal" : "exit",
                   WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            failed++;
        }
    }
    printf("%zu passed, %zu failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}

#endif
