/*
 * test_tier_request.c — unit tests of services/tier_scoring/tier_request.c: ids, tiers,
 * categories and page sizes (page tokens: tests/unit/common/test_page_token.c).
 */
#include "services/tier_scoring/tier_request.h"

#include "tests/unit/test.h"

YW_TEST(ids)
{
    char err[256];
    YW_CHECK_INT(tier_validate_id("creator_id", "c-1_a.B", err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(tier_validate_id("creator_id", "", err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(err, "creator_id: required");
    YW_CHECK_INT(tier_validate_id("creator_id", "a b", err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(err, "creator_id: must be 1-128 characters of [A-Za-z0-9_.-]");
    char long_id[130];
    memset(long_id, 'x', 129);
    long_id[129] = '\0';
    YW_CHECK_INT(tier_validate_id("creator_id", long_id, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    long_id[128] = '\0';
    YW_CHECK_INT(tier_validate_id("creator_id", long_id, err, sizeof err), ==, GRPC_STATUS_OK);

    char *ids[] = {"a", "b", "c\n"};
    YW_CHECK_INT(tier_validate_ids("creator_ids", ids, 2, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(tier_validate_ids("creator_ids", ids, 3, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK(strncmp(err, "creator_ids[2]: ", 16) == 0);
    YW_CHECK_INT(tier_validate_ids("creator_ids", ids, 0, err, sizeof err), ==, GRPC_STATUS_OK);
    YW_CHECK_INT(tier_validate_ids("creator_ids", ids, 1001, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(err, "creator_ids: at most 1000 ids, got 1001");
}

YW_TEST(tiers_categories_page_sizes)
{
    char err[256];
    YW_CHECK_INT(tier_validate_tier("tier", 0, err, sizeof err), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(
        err,
        "tier: must be TIER_HEAD, TIER_MID, TIER_TAIL or TIER_AMATEUR, got TIER_UNSPECIFIED (0)");
    YW_CHECK_INT(tier_validate_tier("tier", 5, err, sizeof err), ==, GRPC_STATUS_INVALID_ARGUMENT);
    for (int t = 1; t <= 4; t++) {
        YW_CHECK_INT(tier_validate_tier("tier", t, err, sizeof err), ==, GRPC_STATUS_OK);
    }
    YW_CHECK_INT(tier_validate_category("category", "", err, sizeof err), ==, GRPC_STATUS_OK);
    char cat[70];
    memset(cat, 'c', 65);
    cat[65] = '\0';
    YW_CHECK_INT(tier_validate_category("category", cat, err, sizeof err), ==,
                 GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(err, "category: at most 64 bytes, got 65");
    YW_CHECK_INT(tier_validate_page_size(-1, err, sizeof err), ==, GRPC_STATUS_INVALID_ARGUMENT);
    YW_CHECK_STR(err, "page_size: must not be negative, got -1");
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(ids),
        YW_TEST_ENTRY(tiers_categories_page_sizes),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
