/* Unit tests of common/utf8.c: the UTF-8 check, repair, quoting and the message walk. */
#include <errno.h>

#include "common/utf8.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "tests/unit/test.h"
#include "yaowei/attribution/v1/attribution.pb-c.h"

#define VALID(lit) yw_utf8_valid(lit, sizeof lit - 1)

YW_TEST(valid_and_invalid_sequences)
{
    YW_CHECK(yw_utf8_valid("", 0));
    YW_CHECK(VALID("plain ascii, longer than eight bytes"));
    YW_CHECK(VALID("\xe8\x85\xb0\xe5\xb0\xbe")); /* 腰尾 */
    YW_CHECK(VALID("\xf0\x9f\x98\x80"));         /* U+1F600 */
    YW_CHECK(VALID("\xf4\x8f\xbf\xbf"));         /* U+10FFFF */
    YW_CHECK(VALID("\xed\x9f\xbf"));             /* U+D7FF */
    YW_CHECK(VALID("\xee\x80\x80"));             /* U+E000 */
    YW_CHECK(VALID("\xc2\x80"));                 /* U+0080 */
    YW_CHECK(!VALID("\xc3"));                    /* truncated */
    YW_CHECK(!VALID("\xc0\xaf"));                /* overlong */
    YW_CHECK(!VALID("\xe0\x80\xaf"));            /* overlong */
    YW_CHECK(!VALID("\xf0\x80\x80\xaf"));        /* overlong */
    YW_CHECK(!VALID("\xed\xa0\x80"));            /* surrogate */
    YW_CHECK(!VALID("\xed\xbf\xbf"));            /* surrogate */
    YW_CHECK(!VALID("\xf4\x90\x80\x80"));        /* > U+10FFFF */
    YW_CHECK(!VALID("\xff\xfe"));
    YW_CHECK(!VALID("ab\x80"));                   /* stray continuation */
    YW_CHECK(!VALID("0123456789abcdef\xe8\x85")); /* truncated after the fast path */
    YW_CHECK(!VALID("\xe8\x85z"));                /* bad continuation */
    YW_CHECK_INT(yw_utf8_seq("\xe8\x85\xb0", 3), ==, 3);
    YW_CHECK_INT(yw_utf8_seq("\xe8\x85\xb0", 2), ==, 0); /* the length counts */
    YW_CHECK_INT(yw_utf8_seq("a", 1), ==, 1);
}

YW_TEST(repair_replaces_each_bad_byte)
{
    char out[64];
    YW_CHECK_INT(yw_utf8_repair(out, sizeof out, "ok", 2), ==, 2);
    YW_CHECK_STR(out, "ok");
    yw_utf8_repair(out, sizeof out,
                   "a\xff\xfe"
                   "b",
                   4);
    YW_CHECK_STR(out, "a\xef\xbf\xbd\xef\xbf\xbd"
                      "b");
    yw_utf8_repair(out, sizeof out, "\xed\xa0\x80", 3);
    YW_CHECK_STR(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    YW_CHECK(VALID("\xef\xbf\xbd"));
    /* Cut at a character boundary, never inside one. */
    char small[5];
    YW_CHECK_INT(yw_utf8_repair(small, sizeof small, "a\xe8\x85\xb0\xe5\xb0\xbe", 7), ==, 4);
    YW_CHECK_STR(small, "a\xe8\x85\xb0");
    YW_CHECK_INT(yw_utf8_repair(small, sizeof small, "ab\xff", 3), ==, 2);
    YW_CHECK_STR(small, "ab");
}

YW_TEST(quote_escapes_and_truncates)
{
    char q[300];
    YW_CHECK_STR(yw_quote("abc", 64, q, sizeof q), "\"abc\"");
    YW_CHECK_STR(yw_quote(NULL, 64, q, sizeof q), "\"\"");
    YW_CHECK_STR(yw_quote("a\"b\\c\n\x01\xc3\xbc\xff", 64, q, sizeof q),
                 "\"a\\\"b\\\\c\\x0a\\x01\\xc3\\xbc\\xff\"");
    char longs[200];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    yw_quote(longs, 64, q, sizeof q);
    YW_CHECK_INT(strlen(q), ==, 1 + 64 + 3 + 1);
    YW_CHECK(strcmp(q + strlen(q) - 4, "...\"") == 0);
    yw_quote(longs, 3, q, sizeof q);
    YW_CHECK_STR(q, "\"xxx...\"");
    /* A small buffer is never overrun. */
    char small[12];
    yw_quote(longs, 64, small, sizeof small);
    YW_CHECK(strlen(small) < sizeof small);
    /* The documented bound holds for the worst input. */
    char worst[17], big[YW_QUOTE_CAP(16)];
    memset(worst, 0xff, 16);
    worst[16] = '\0';
    yw_quote(worst, 16, big, sizeof big);
    YW_CHECK_INT(strlen(big), ==, 2 + 4 * 16);
}

/* Two exposures in a batch; the strings to break are set by each test. */
typedef struct {
    Yaowei__Attribution__V1__RecordExposuresRequest req;
    Yaowei__Attribution__V1__ExposureEvent ev[2];
    Yaowei__Attribution__V1__ExposureEvent *evp[2];
    char *products[2][3];
} batch_t;

static void batch(batch_t *b)
{
    yaowei__attribution__v1__record_exposures_request__init(&b->req);
    for (int i = 0; i < 2; i++) {
        yaowei__attribution__v1__exposure_event__init(&b->ev[i]);
        b->ev[i].event_id = "e";
        b->ev[i].viewer_id = "v";
        b->ev[i].creator_id = "\xe8\x85\xb0"; /* valid */
        b->products[i][0] = "p0";
        b->products[i][1] = "p1";
        b->products[i][2] = "p2";
        b->ev[i].product_ids = b->products[i];
        b->ev[i].n_product_ids = 3;
        b->evp[i] = &b->ev[i];
    }
    b->req.events = b->evp;
    b->req.n_events = 2;
}

YW_TEST(check_names_the_path_of_the_bad_string)
{
    batch_t b;
    char err[160];
    batch(&b);
    YW_CHECK_INT(yw_utf8_check_message(&b.req.base, NULL, err, sizeof err), ==, 0);
    b.ev[1].viewer_id = "\xff\xfe";
    YW_CHECK_INT(yw_utf8_check_message(&b.req.base, NULL, err, sizeof err), ==, -EILSEQ);
    YW_CHECK_STR(err, "events[1].viewer_id: must be valid UTF-8");
    b.ev[1].viewer_id = "v";
    b.products[0][2] = "\xed\xa0\x80";
    YW_CHECK_INT(yw_utf8_check_message(&b.req.base, NULL, err, sizeof err), ==, -EILSEQ);
    YW_CHECK_STR(err, "events[0].product_ids[2]: must be valid UTF-8");
    /* An event alone, as a handler checks each event of a batch. */
    YW_CHECK_INT(yw_utf8_check_message(&b.ev[0].base, NULL, err, sizeof err), ==, -EILSEQ);
    YW_CHECK_STR(err, "product_ids[2]: must be valid UTF-8");
    /* The batch's events left to the handler. */
    YW_CHECK_INT(yw_utf8_check_message(&b.req.base, "events", err, sizeof err), ==, 0);
    /* A short buffer is cut, never overrun; no buffer at all is fine. */
    char small[10];
    YW_CHECK_INT(yw_utf8_check_message(&b.req.base, NULL, small, sizeof small), ==, -EILSEQ);
    YW_CHECK_STR(small, "events[0]");
    YW_CHECK_INT(yw_utf8_check_message(&b.req.base, NULL, NULL, 0), ==, -EILSEQ);
}

YW_TEST(check_looks_at_the_set_member_of_a_oneof_only)
{
    Grpc__Reflection__V1__ServerReflectionRequest r;
    grpc__reflection__v1__server_reflection_request__init(&r);
    char err[160];
    r.host = "h";
    /* An integer member set: the string members share its storage and are not read. */
    Grpc__Reflection__V1__ExtensionRequest ext;
    grpc__reflection__v1__extension_request__init(&ext);
    ext.containing_type = "\xc3";
    r.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    r.file_containing_extension = &ext;
    YW_CHECK_INT(yw_utf8_check_message(&r.base, NULL, err, sizeof err), ==, -EILSEQ);
    YW_CHECK_STR(err, "file_containing_extension.containing_type: must be valid UTF-8");
    r.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    r.file_by_filename = "a\x80.proto";
    YW_CHECK_INT(yw_utf8_check_message(&r.base, NULL, err, sizeof err), ==, -EILSEQ);
    YW_CHECK_STR(err, "file_by_filename: must be valid UTF-8");
    r.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    r.list_services = "";
    YW_CHECK_INT(yw_utf8_check_message(&r.base, NULL, err, sizeof err), ==, 0);
}

YW_TEST(repaired_copy_replaces_bad_strings_only)
{
    batch_t b;
    batch(&b);
    b.ev[0].event_id = "e\xff";
    b.products[1][1] = "\xed\xa0\x80";
    ProtobufCMessage *copy = yw_utf8_repaired_copy(&b.req.base);
    YW_CHECK(copy != NULL);
    YW_CHECK_INT(yw_utf8_check_message(copy, NULL, NULL, 0), ==, 0);
    const Yaowei__Attribution__V1__RecordExposuresRequest *r =
        (const Yaowei__Attribution__V1__RecordExposuresRequest *)copy;
    YW_CHECK_INT(r->n_events, ==, 2);
    YW_CHECK_STR(r->events[0]->event_id, "e\xef\xbf\xbd");
    YW_CHECK_STR(r->events[1]->product_ids[1], "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    YW_CHECK_STR(r->events[1]->product_ids[2], "p2");
    YW_CHECK_STR(r->events[0]->creator_id, "\xe8\x85\xb0");
    protobuf_c_message_free_unpacked(copy, NULL);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(valid_and_invalid_sequences),
        YW_TEST_ENTRY(repair_replaces_each_bad_byte),
        YW_TEST_ENTRY(quote_escapes_and_truncates),
        YW_TEST_ENTRY(check_names_the_path_of_the_bad_string),
        YW_TEST_ENTRY(check_looks_at_the_set_member_of_a_oneof_only),
        YW_TEST_ENTRY(repaired_copy_replaces_bad_strings_only),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
