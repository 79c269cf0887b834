/*
 * creator_day.c — Gregorian day arithmetic after Howard Hinnant's days_from_civil /
 * civil_from_days (http://howardhinnant.github.io/date_algorithms.html), which are
 * exact for every proleptic Gregorian date.
 */
#include "services/creator_profile/creator_day.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int digits(const char *s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int creator_day_parse(const char *s, int64_t *day)
{
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y, m, d;
    if (s == NULL || digits(s, 4, &y) != 0 || s[4] != '-' || digits(s + 5, 2, &m) != 0 ||
        s[7] != '-' || digits(s + 8, 2, &d) != 0 || s[10] != '\0') {
        return -EINVAL;
    }
    if (m < 1 || m > 12 || d < 1) {
        return -EINVAL;
    }
    unsigned dim = mdays[m - 1] + (m == 2 && is_leap(y));
    if (d > dim) {
        return -EINVAL;
    }
    int64_t z = days_from_civil(y, m, d);
    if (z < CREATOR_DAY_MIN || z > CREATOR_DAY_MAX) {
        return -EINVAL;
    }
    *day = z;
    return 0;
}

void creator_day_format(int64_t day, char out[CREATOR_DAY_BUFSZ])
{
    int64_t y;
    unsigned m, d;
    civil_from_days(day, &y, &m, &d);
    if (y < 0 || y > 9999) {
        /* Outside what the window arithmetic can produce from valid input. */
        memcpy(out, "0000-00-00", CREATOR_DAY_BUFSZ);
        return;
    }
    unsigned yy = (unsigned)y;
    out[0] = (char)('0' + yy / 1000);
    out[1] = (char)('0' + yy / 100 % 10);
    out[2] = (char)('0' + yy / 10 % 10);
    out[3] = (char)('0' + yy % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + d / 10);
    out[9] = (char)('0' + d % 10);
    out[10] = '\0';
}

int64_t creator_day_today(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        /* CLOCK_REALTIME cannot fail on Linux; fall back to time(). */
        return (int64_t)time(NULL) / 86400;
    }
    return (int64_t)ts.tv_sec / 86400;
}
