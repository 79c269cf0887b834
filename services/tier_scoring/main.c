/*
 * main.c — the tier_scoring binary: yaowei.tier.v1.TierScoringService on the shared
 * runtime (common/app.h does flags, logging, the store, serving, shutdown). The
 * descriptor set reflection serves comes from //proto:tier_scoring_descriptors.
 */
#include <stddef.h>

#include "common/app.h"
#include "services/tier_scoring/tier_service.h"
#include "services/tier_scoring/tier_store.h"

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
