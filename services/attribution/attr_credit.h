/*
 * attr_credit.h — the attribution rules (README "Attribution"), as pure functions: which exposures
 * are eligible touches of a conversion, in which order, what share of the credit each
 * model gives each of them, and how the order's money is split to the minor unit.
 *
 * No clock, no I/O, no allocation (callers lend scratch), no global state: every input is passed
 * in, so that the unit tests can check every rule against hand-computed numbers.
 *
 * The rules, for a conversion C of product P by viewer V at time T:
 *  1. Candidates: exposures of V tagging P with occur_time <= T and T - occur_time
 *     within the window of their kind (clicks: click_window; views and impressions:
 *     view_window), both ends inclusive. A VIEW with watch_ms < engaged_view_ms counts
 *     as an IMPRESSION (it keeps its kind as sent in every report).
 *  2. Priority: clicks if any; else engaged views if any; else impressions.
 *  3. Touch order: (occur_time, event_id), event ids compared bytewise.
 *  4. Every model gives each touch an integer numerator over one common denominator, so
 *     that shares are exact: LAST_TOUCH and FIRST_TOUCH 1/1 to one touch; LINEAR 1/n;
 *     POSITION_BASED 1/1 (n = 1), 1/2 + 1/2 (n = 2), else 2(n-2) / 5(n-2) to the first
 *     and the last (40 %) and 1 / 5(n-2) to each other (20 % split evenly);
 *     TIME_DECAY weights 2^(-(T - t)/half_life) computed in doubles, then quantised to
 *     integers with the largest weight at 2^40 (the quantised weights are the
 *     numerators, their sum the denominator: normalised by construction).
 *  5. Money: touch i gets floor(net * num_i / den) minor units; the units left over go
 *     one each to the touches with the largest remainder (net * num_i mod den), ties to
 *     the later touch. The amounts sum exactly to `net`. The same split of
 *     ATTR_CREDIT_ONE gives the conversion credit in fixed point (rollups stay exact
 *     under subtract-then-add updates).
 */
#ifndef ATTR_CREDIT_H
#define ATTR_CREDIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Exposure kinds, with the numbers of the proto enum ExposureKind. */
enum {
    ATTR_KIND_UNSPECIFIED = 0,
    ATTR_KIND_IMPRESSION = 1,
    ATTR_KIND_VIEW = 2,
    ATTR_KIND_CLICK = 3,
};

/** Attribution models, with the numbers of the proto enum AttributionModel. */
enum {
    ATTR_MODEL_UNSPECIFIED = 0,
    ATTR_MODEL_LAST_TOUCH = 1,
    ATTR_MODEL_FIRST_TOUCH = 2,
    ATTR_MODEL_LINEAR = 3,
    ATTR_MODEL_TIME_DECAY = 4,
    ATTR_MODEL_POSITION_BASED = 5,
};
/** Models are 1..ATTR_N_MODELS; arrays indexed by model use [model - 1]. */
#define ATTR_N_MODELS 5

/** Priority classes of a touch (rule 2): higher wins. 0: not a touch at all. */
enum {
    ATTR_CLASS_NONE = 0,
    ATTR_CLASS_IMPRESSION = 1,
    ATTR_CLASS_ENGAGED_VIEW = 2,
    ATTR_CLASS_CLICK = 3,
};

/** One conversion credited in full, in fixed point (rollups of credits use it). */
#define ATTR_CREDIT_ONE INT64_C(1000000000)

/** The quantisation of time-decay weights: the largest weight becomes 2^40. */
#define ATTR_DECAY_SCALE (INT64_C(1) << 40)

/**
 * Most touches one conversion can have credited: the time-decay denominator (at most
 * n x 2^40) must fit in int64. Real conversions have a few.
 */
#define ATTR_MAX_TOUCHES (1u << 20)

/** Bytes of scratch attr_split() needs for `n` touches. */
#define ATTR_SPLIT_SCRATCH(n) ((size_t)(n) * (sizeof(int64_t) + sizeof(uint32_t)))

#define ATTR_NS_PER_MS INT64_C(1000000)
#define ATTR_NS_PER_S INT64_C(1000000000)
#define ATTR_NS_PER_DAY (INT64_C(86400) * ATTR_NS_PER_S)

/** The settings the rules read. Times in nanoseconds. */
typedef struct st_attr_rules_t {
    int64_t click_window_ns;
    int64_t view_window_ns;
    int64_t half_life_ns;
    int64_t engaged_view_ms;
} attr_rules_t;

/** The defaults of the issue: 7 days, 1 day, 7 days, 10,000 ms. */
void attr_rules_default(attr_rules_t *r);

/** An exposure as the rules see it. `event_id` is only compared, never kept. */
typedef struct st_attr_touch_t {
    const char *event_id;
    int64_t occur_ns;
    int kind; /* ATTR_KIND_*, as sent */
    int64_t watch_ms;
} attr_touch_t;

/** The priority class of an exposure of `kind` watched `watch_ms` (rule 1's downgrade). */
int attr_touch_class(const attr_rules_t *r, int kind, int64_t watch_ms);

/**
 * Whether `t` is a candidate touch of a conversion at `conv_ns` (rule 1): its class,
 * or ATTR_CLASS_NONE when it is outside its window or later than the conversion.
 */
int attr_candidate_class(const attr_rules_t *r, int64_t conv_ns, const attr_touch_t *t);

/** Compares two touches in touch order (rule 3): <0, 0 or >0. */
int attr_touch_cmp(const attr_touch_t *a, const attr_touch_t *b);

/**
 * Rules 1-3: writes into `out` the indices (into `cands`) of the eligible touches of a
 * conversion at `conv_ns`, in touch order, and returns how many (0: unattributed).
 * `out` has room for `n` entries. `*class_out` (may be NULL) gets the class that won.
 * Duplicated event ids in `cands` must have been removed by the caller.
 */
size_t attr_select(const attr_rules_t *r, int64_t conv_ns, const attr_touch_t *cands, size_t n,
                   size_t *out, int *class_out);

/**
 * Rule 4: the shares of `model` for `n` touches in touch order, as numerators `num`
 * over `*den`. `occur_ns` (touch times) and `conv_ns` are read by TIME_DECAY only.
 * Returns 0, or -EINVAL for an unknown model, n == 0 or n > ATTR_MAX_TOUCHES.
 */
int attr_shares(const attr_rules_t *r, int model, int64_t conv_ns, const int64_t *occur_ns,
                size_t n, int64_t *num, int64_t *den);

/**
 * Rule 5: splits `total` (>= 0) over `n` shares `num`/`den` (each num >= 0, their sum
 * == den > 0): floor, then the left-over units to the largest remainders, ties to the
 * later index. `out` gets the amounts; they sum to `total`. `scratch` has
 * ATTR_SPLIT_SCRATCH(n) bytes (aligned for int64), the caller's. Returns 0 or -EINVAL.
 */
int attr_split(int64_t total, const int64_t *num, int64_t den, size_t n, int64_t *out,
               void *scratch);

/** A model's name as in the proto ("ATTRIBUTION_MODEL_LAST_TOUCH"), "?" if unknown. */
const char *attr_model_name(int model);

/** The UTC day (days since 1970-01-01, floor) of an instant in ns. */
int32_t attr_day_of(int64_t ns);

#ifdef __cplusplus
}
#endif
#endif
