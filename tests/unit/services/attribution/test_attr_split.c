/*
 * test_attr_split.c — unit tests of services/attribution/attr_split.c: a stream's events
 * come out as packed requests per partition, in stream order, within the part bounds,
 * one part out per partition at a time, the open parts together within open_max.
 */
#include "services/attribution/attr_split.h"

#include <errno.h>

#include "tests/unit/test.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

/* Exposure `i`: event id "e<i>", the viewer "v<i>", a note of `pad` bytes (its size). */
static void add(attr_split_t *sp, int p, int64_t i, size_t pad)
{
    char id[32], viewer[32];
    static char note[1 << 16];
    snprintf(id, sizeof id, "e%lld", (long long)i);
    snprintf(viewer, sizeof viewer, "v%lld", (long long)i);
    memset(note, 'n', pad);
    note[pad] = '\0';
    Yaowei__Attribution__V1__ExposureEvent ev;
    yaowei__attribution__v1__exposure_event__init(&ev);
    ev.event_id = id;
    ev.viewer_id = viewer;
    ev.note_id = note;
    YW_CHECK_INT(attr_split_add(sp, p, i, &ev.base), ==, 0);
}

/* The part is a RecordExposuresRequest of exposures want[0..n), each at its position. */
static void check_part(const attr_split_part_t *pt, int p, const int64_t *want, size_t n)
{
    YW_CHECK_INT(pt->p, ==, p);
    YW_CHECK_INT(pt->n, ==, n);
    Yaowei__Attribution__V1__RecordExposuresRequest *req =
        yaowei__attribution__v1__record_exposures_request__unpack(NULL, pt->len, pt->buf);
    YW_CHECK(req != NULL);
    YW_CHECK_INT(req->n_events, ==, n);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "e%lld", (long long)want[i]);
        YW_CHECK_STR(req->events[i]->event_id, id);
        YW_CHECK_INT(pt->pos[i], ==, want[i]);
    }
    yaowei__attribution__v1__record_exposures_request__free_unpacked(req, NULL);
}

YW_TEST(events_come_out_per_partition_in_stream_order)
{
    attr_split_t sp;
    YW_CHECK_INT(attr_split_init(&sp, 3, 1, 4, 1 << 20, 1 << 20), ==, 0);
    /* Positions 0..9 over partitions 0, 1, 2, 0, 1, 2, ...: partition 0's fourth (9)
     * seals its part; 1 and 2 hold 3 each. */
    for (int64_t i = 0; i < 10; i++) {
        add(&sp, (int)(i % 3), i, 8);
    }
    attr_split_part_t *a = attr_split_take(&sp);
    int64_t p0[] = {0, 3, 6, 9}, p1[] = {1, 4, 7, 10}, p2[] = {2, 5, 8};
    check_part(a, 0, p0, 4);
    YW_CHECK(attr_split_take(&sp) == NULL);
    add(&sp, 1, 10, 8); /* partition 1's fourth */
    attr_split_part_t *b = attr_split_take(&sp);
    check_part(b, 1, p1, 4);
    YW_CHECK(attr_split_take(&sp) == NULL);
    attr_split_seal_all(&sp); /* the end of the stream */
    attr_split_part_t *c = attr_split_take(&sp);
    YW_CHECK(attr_split_take(&sp) == NULL);
    check_part(c, 2, p2, 3);
    YW_CHECK_INT(sp.out, ==, 3);
    attr_split_done(&sp, a);
    attr_split_done(&sp, b);
    attr_split_done(&sp, c);
    YW_CHECK_INT(sp.parts, ==, 0);
    YW_CHECK_INT(sp.sealed_bytes, ==, 0);
    YW_CHECK_INT(sp.open_bytes, ==, 0);
    attr_split_fini(&sp);
}

YW_TEST(a_partition_has_one_part_out_at_a_time)
{
    attr_split_t sp;
    YW_CHECK_INT(attr_split_init(&sp, 2, 1, 2, 1 << 20, 1 << 20), ==, 0);
    for (int64_t i = 0; i < 7; i++) {
        add(&sp, 0, i, 8); /* parts {0,1} {2,3} {4,5} sealed, {6} open */
    }
    add(&sp, 1, 7, 8);
    add(&sp, 1, 8, 8); /* partition 1's {7,8} */
    attr_split_part_t *a = attr_split_take(&sp), *b = attr_split_take(&sp);
    YW_CHECK(attr_split_take(&sp) == NULL); /* partition 0's next waits for {0,1} */
    int64_t w01[] = {0, 1}, w78[] = {7, 8}, w23[] = {2, 3}, w45[] = {4, 5}, w6[] = {6};
    check_part(a, 0, w01, 2);
    check_part(b, 1, w78, 2);
    attr_split_done(&sp, a);
    attr_split_part_t *c = attr_split_take(&sp);
    check_part(c, 0, w23, 2);
    YW_CHECK(attr_split_take(&sp) == NULL);
    attr_split_done(&sp, c);
    attr_split_part_t *d = attr_split_take(&sp);
    check_part(d, 0, w45, 2);
    attr_split_seal_all(&sp);
    YW_CHECK(attr_split_take(&sp) == NULL); /* {6} is sealed, behind {4,5} */
    attr_split_done(&sp, d);
    attr_split_part_t *e = attr_split_take(&sp);
    check_part(e, 0, w6, 1);
    attr_split_done(&sp, e);
    attr_split_done(&sp, b);
    YW_CHECK_INT(sp.parts, ==, 0);
    attr_split_fini(&sp);
}

YW_TEST(the_byte_bound_starts_a_new_part_and_a_big_event_goes_alone)
{
    attr_split_t sp;
    YW_CHECK_INT(attr_split_init(&sp, 1, 1, 1000, 1000, 1 << 20), ==, 0);
    add(&sp, 0, 0, 400);
    add(&sp, 0, 1, 400);
    YW_CHECK(attr_split_take(&sp) == NULL);
    add(&sp, 0, 2, 400); /* would take the part past 1000 bytes: a new one */
    attr_split_part_t *a = attr_split_take(&sp);
    int64_t w01[] = {0, 1}, w2[] = {2}, w3[] = {3};
    check_part(a, 0, w01, 2);
    YW_CHECK(a->len <= 1000);
    attr_split_done(&sp, a);
    add(&sp, 0, 3, 5000); /* larger than a part: after {2}, alone, sealed at once */
    attr_split_part_t *b = attr_split_take(&sp);
    check_part(b, 0, w2, 1);
    attr_split_done(&sp, b);
    attr_split_part_t *c = attr_split_take(&sp);
    check_part(c, 0, w3, 1);
    YW_CHECK(c->len > 5000);
    free(c->buf); /* a part out may shed its bytes early */
    c->buf = NULL;
    attr_split_done(&sp, c);
    YW_CHECK_INT(sp.parts, ==, 0);
    YW_CHECK_INT(sp.sealed_bytes, ==, 0);
    attr_split_fini(&sp);
}

YW_TEST(open_parts_together_stay_within_open_max)
{
    attr_split_t sp;
    enum { P = 64 };
    YW_CHECK_INT(attr_split_init(&sp, P, 1, 1000, 1 << 20, 4096), ==, 0);
    /* A thin spread: partition i % P, event sizes varying; no part fills by itself. */
    for (int64_t i = 0; i < 2000; i++) {
        add(&sp, (int)(i * 7 % P), i, (size_t)(20 + i % 50));
        YW_CHECK(sp.open_bytes <= 4096);
        if (i % 3 == 0) {
            attr_split_part_t *pt = attr_split_take(&sp);
            if (pt != NULL) {
                attr_split_done(&sp, pt);
            }
        }
    }
    /* Every position comes out once, each part's ascending. */
    attr_split_seal_all(&sp);
    YW_CHECK_INT(sp.open_bytes, ==, 0);
    attr_split_part_t *pt;
    size_t seen = 0;
    while ((pt = attr_split_take(&sp)) != NULL) {
        for (size_t k = 1; k < pt->n; k++) {
            YW_CHECK(pt->pos[k - 1] < pt->pos[k]);
        }
        seen += pt->n;
        attr_split_done(&sp, pt);
    }
    YW_CHECK(seen > 0);
    YW_CHECK_INT(sp.parts, ==, 0);
    attr_split_fini(&sp);
}

YW_TEST(drop_frees_what_is_not_out_and_fini_the_rest)
{
    attr_split_t sp;
    YW_CHECK_INT(attr_split_init(&sp, 4, 1, 2, 1 << 20, 1 << 20), ==, 0);
    for (int64_t i = 0; i < 9; i++) {
        add(&sp, (int)(i % 4), i, 16);
    }
    attr_split_part_t *a = attr_split_take(&sp);
    YW_CHECK(a != NULL);
    attr_split_drop(&sp); /* a failed stream: what waits goes, what is out stays */
    YW_CHECK(attr_split_take(&sp) == NULL);
    YW_CHECK_INT(sp.parts, ==, 1);
    YW_CHECK_INT(sp.open_bytes, ==, 0);
    YW_CHECK_INT(sp.sealed_bytes, ==, a->len);
    attr_split_done(&sp, a);
    YW_CHECK_INT(sp.parts, ==, 0);
    YW_CHECK_INT(sp.sealed_bytes, ==, 0);
    add(&sp, 3, 9, 16); /* still usable; fini frees the open part */
    attr_split_fini(&sp);
}

YW_TEST(bad_bounds_are_refused)
{
    attr_split_t sp;
    YW_CHECK_INT(attr_split_init(&sp, 0, 1, 1, 1, 1), ==, -EINVAL);
    YW_CHECK_INT(attr_split_init(&sp, 1, 0, 1, 1, 1), ==, -EINVAL);
    YW_CHECK_INT(attr_split_init(&sp, 1, 1, 0, 1, 1), ==, -EINVAL);
    YW_CHECK_INT(attr_split_init(&sp, 1, 1, 1, 1, 0), ==, -EINVAL);
    attr_split_fini(&sp); /* harmless after a refusal */
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(events_come_out_per_partition_in_stream_order),
        YW_TEST_ENTRY(a_partition_has_one_part_out_at_a_time),
        YW_TEST_ENTRY(the_byte_bound_starts_a_new_part_and_a_big_event_goes_alone),
        YW_TEST_ENTRY(open_parts_together_stay_within_open_max),
        YW_TEST_ENTRY(drop_frees_what_is_not_out_and_fini_the_rest),
        YW_TEST_ENTRY(bad_bounds_are_refused),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
