/*
 * main.c — the tier_scoring binary: yaowei.tier.v1.TierScoringService on the shared
 * runtime (common/app.h does flags, logging, the store, serving, shutdown). The
 * descriptor set reflection serves comes from //proto:tier_scoring_descriptors.
 */
#include <stddef.h>

#include "common/app.h"
#include "services/tier_scoring/tier_service.h"
#include "services/tier_scoring/tier_store.h"

/*
 * common/app.c refers to the descriptor set only weakly, and a weak reference does not
 * pull an object out of a static archive: without this strong one the binary links
 * without the descriptors and refuses to start. (alwayslink on yw_descriptor_set's
 * cc_library would make this unnecessary.)
 */
extern const size_t yw_descriptor_set_len;
__attribute__((used)) static const size_t *const tier_descriptor_set_ref = &yw_descriptor_set_len;

static const yw_app_def_t tier_app = {
    .program = "tier_scoring",
    .summary = "yaowei tier scoring: head / mid / tail / amateur tiers and long-tail-fair "
               "scores of creators (yaowei.tier.v1.TierScoringService)",
    .service = &tier_service,
    .db_file = "tier_scoring.db",
    .migrations = tier_migrations,
    .n_migrations = TIER_N_MIGRATIONS,
    .options = tier_options,
    .n_options = TIER_N_OPTIONS,
    .init = tier_service_init,
    .fini = tier_service_fini,
    .default_listen = "127.0.0.1:50052",
};

int main(int argc, char **argv)
{
    return yw_app_main(argc, argv, &tier_app);
}
