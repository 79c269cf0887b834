/* attr_credit.c — the attribution rules, pure. See attr_credit.h for the rules. */
#define _GNU_SOURCE /* qsort_r */
#include "services/attribution/attr_credit.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void attr_rules_default(attr_rules_t *r)
{
    r->click_window_ns = 7 * ATTR_NS_PER_DAY;
    r->view_window_ns = 1 * ATTR_NS_PER_DAY;
    r->half_life_ns = 7 * ATTR_NS_PER_DAY;
    r->engaged_view_ms = 10000;
}

int attr_touch_class(const attr_rules_t *r, int kind, int64_t watch_ms)
{
    switch (kind) {
    case ATTR_KIND_CLICK:
        return ATTR_CLASS_CLICK;
    case ATTR_KIND_VIEW:
        /* A view shorter than engaged_view_ms is only an impression. */
        return watch_ms >= r->engaged_view_ms ? ATTR_CLASS_ENGAGED_VIEW : ATTR_CLASS_IMPRESSION;
    case ATTR_KIND_IMPRESSION:
        return ATTR_CLASS_IMPRESSION;
    default:
        return ATTR_CLASS_NONE;
    }
}

int attr_candidate_class(const attr_rules_t *r, int64_t conv_ns, const attr_touch_t *t)
{
    if (t->occur_ns > conv_ns) {
        return ATTR_CLASS_NONE;
    }
    int cls = attr_touch_class(r, t->kind, t->watch_ms);
    /* Clicks have the click window; views (engaged or not) and impressions the view
     * window. Both ends inclusive: T - t == window is still inside. */
    int64_t window = t->kind == ATTR_KIND_CLICK ? r->click_window_ns : r->view_window_ns;
    if (conv_ns - t->occur_ns > window) {
        return ATTR_CLASS_NONE;
    }
    return cls;
}

int attr_touch_cmp(const attr_touch_t *a, const attr_touch_t *b)
{
    if (a->occur_ns != b->occur_ns) {
        return a->occur_ns < b->occur_ns ? -1 : 1;
    }
    return strcmp(a->event_id, b->event_id);
}

static int attr__cmp_idx(const void *pa, const void *pb, void *ctx)
{
    const attr_touch_t *cands = ctx;
    return attr_touch_cmp(&cands[*(const size_t *)pa], &cands[*(const size_t *)pb]);
}

size_t attr_select(const attr_rules_t *r, int64_t conv_ns, const attr_touch_t *cands, size_t n,
                   size_t *out, int *class_out)
{
    int best = ATTR_CLASS_NONE;
    for (size_t i = 0; i < n; i++) {
        int cls = attr_candidate_class(r, conv_ns, &cands[i]);
        if (cls > best) {
            best = cls;
        }
    }
    size_t k = 0;
    if (best != ATTR_CLASS_NONE) {
        for (size_t i = 0; i < n; i++) {
            if (attr_candidate_class(r, conv_ns, &cands[i]) == best) {
                out[k++] = i;
            }
        }
        qsort_r(out, k, sizeof *out, attr__cmp_idx, (void *)cands);
    }
    if (class_out != NULL) {
        *class_out = best;
    }
    return k;
}

int attr_shares(const attr_rules_t *r, int model, int64_t conv_ns, const int64_t *occur_ns,
                size_t n, int64_t *num, int64_t *den)
{
    (void)conv_ns; /* normalised time-decay weights depend on the touches' spacing only */
    if (n == 0 || n > ATTR_MAX_TOUCHES) {
        return -EINVAL;
    }
    switch (model) {
    case ATTR_MODEL_LAST_TOUCH:
    case ATTR_MODEL_FIRST_TOUCH:
        for (size_t i = 0; i < n; i++) {
            num[i] = 0;
        }
        num[model == ATTR_MODEL_LAST_TOUCH ? n - 1 : 0] = 1;
        *den = 1;
        return 0;
    case ATTR_MODEL_LINEAR:
        for (size_t i = 0; i < n; i++) {
            num[i] = 1;
        }
        *den = (int64_t)n;
        return 0;
    case ATTR_MODEL_POSITION_BASED:
        if (n <= 2) {
            for (size_t i = 0; i < n; i++) {
                num[i] = 1;
            }
            *den = (int64_t)n;
            return 0;
        }
        /* 40 % : 20 % / (n-2) each : 40 %, over the common denominator 5(n-2). */
        for (size_t i = 1; i + 1 < n; i++) {
            num[i] = 1;
        }
        num[0] = 2 * (int64_t)(n - 2);
        num[n - 1] = 2 * (int64_t)(n - 2);
        *den = 5 * (int64_t)(n - 2);
        return 0;
    case ATTR_MODEL_TIME_DECAY: {
        if (r->half_life_ns <= 0) {
            return -EINVAL;
        }
        /*
         * w_i = 2^(-(T - t_i)/h). Normalised, T cancels out: w_i / w_max =
         * 2^(-(t_max - t_i)/h). Quantised so that the latest touch weighs exactly 2^40;
         * the integer weights are the numerators and their sum the denominator.
         */
        int64_t tmax = occur_ns[0];
        for (size_t i = 1; i < n; i++) {
            if (occur_ns[i] > tmax) {
                tmax = occur_ns[i];
            }
        }
        int64_t sum = 0;
        for (size_t i = 0; i < n; i++) {
            double age = (double)(tmax - occur_ns[i]) / (double)r->half_life_ns;
            double w = ldexp(exp2(-age), 40);
            num[i] = (int64_t)llround(w);
            sum += num[i];
        }
        *den = sum; /* >= 2^40: the latest touch weighs exactly that */
        return 0;
    }
    default:
        return -EINVAL;
    }
}

/** Order of the left-over units: larger remainder first; on a tie, the later touch. */
static int attr__cmp_rem(const void *pa, const void *pb, void *ctx)
{
    const int64_t *rem = ctx;
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    if (rem[a] != rem[b]) {
        return rem[a] > rem[b] ? -1 : 1;
    }
    return a > b ? -1 : a < b;
}

int attr_split(int64_t total, const int64_t *num, int64_t den, size_t n, int64_t *out,
               void *scratch)
{
    if (total < 0 || den <= 0 || n == 0 || n > ATTR_MAX_TOUCHES) {
        return -EINVAL;
    }
    int64_t *rem = scratch;
    uint32_t *order = (uint32_t *)(rem + n);
    int64_t given = 0;
    for (size_t i = 0; i < n; i++) {
        if (num[i] < 0) {
            return -EINVAL;
        }
        /* total < 2^63 and num <= den < 2^63: the product fits in 128 bits. */
        __int128 p = (__int128)total * num[i];
        out[i] = (int64_t)(p / den);
        rem[i] = (int64_t)(p % den);
        given += out[i];
        order[i] = (uint32_t)i;
    }
    int64_t left = total - given;
    if (left < 0 || (uint64_t)left > n) {
        return -EINVAL; /* the numerators did not sum to den */
    }
    if (left == 0) {
        return 0;
    }
    /* One unit each to the largest remainders (compared exactly, as integers over the
     * same denominator); on equal remainders the later touch. */
    qsort_r(order, n, sizeof *order, attr__cmp_rem, rem);
    for (int64_t k = 0; k < left; k++) {
        out[order[k]]++;
    }
    return 0;
}

const char *attr_model_name(int model)
{
    switch (model) {
    case ATTR_MODEL_UNSPECIFIED:
        return "ATTRIBUTION_MODEL_UNSPECIFIED";
    case ATTR_MODEL_LAST_TOUCH:
        return "ATTRIBUTION_MODEL_LAST_TOUCH";
    case ATTR_MODEL_FIRST_TOUCH:
        return "ATTRIBUTION_MODEL_FIRST_TOUCH";
    case ATTR_MODEL_LINEAR:
        return "ATTRIBUTION_MODEL_LINEAR";
    case ATTR_MODEL_TIME_DECAY:
        return "ATTRIBUTION_MODEL_TIME_DECAY";
    case ATTR_MODEL_POSITION_BASED:
        return "ATTRIBUTION_MODEL_POSITION_BASED";
    default:
        return "?";
    }
}

int32_t attr_day_of(int64_t ns)
{
    int64_t d = ns / ATTR_NS_PER_DAY;
    if (ns % ATTR_NS_PER_DAY < 0) {
        d--;
    }
    return (int32_t)d;
}
