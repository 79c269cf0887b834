/*
 * creator_day.h — UTC calendar days as "YYYY-MM-DD" strings and as day numbers (days
 * since 1970-01-01), the form note stats are stored and windowed in. Pure functions.
 */
#ifndef CREATOR_DAY_H
#define CREATOR_DAY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Length of "YYYY-MM-DD" plus the terminating NUL. */
#define CREATOR_DAY_BUFSZ 11

/** The first and last day accepted anywhere: 1970-01-01 and 9999-12-31. */
#define CREATOR_DAY_MIN 0
#define CREATOR_DAY_MAX 2932896

/**
 * Parses exactly "YYYY-MM-DD" (a real Gregorian date between CREATOR_DAY_MIN and
 * CREATOR_DAY_MAX) into a day number. Returns 0, or -EINVAL when `s` is not one.
 */
int creator_day_parse(const char *s, int64_t *day);

/** Writes `day` as "YYYY-MM-DD" into `out` (CREATOR_DAY_BUFSZ bytes). Any day >= year 0. */
void creator_day_format(int64_t day, char out[CREATOR_DAY_BUFSZ]);

/** Today's day number in UTC, from the real-time clock. */
int64_t creator_day_today(void);

#ifdef __cplusplus
}
#endif
#endif
