/*
 * main.c — the tier_scoring binary: yaowei.tier.v1.TierScoringService on the shared
 * runtime (common/app.h does flags, logging, the store, serving, shutdown; the app is
 * tier_app of tier_service.c). The descriptor set reflection serves comes from
 * //proto:tier_scoring_descriptors.
 */
#include "common/app.h"
#include "services/tier_scoring/tier_service.h"

int main(int argc, char **argv)
{
    return yw_app_main(argc, argv, &tier_app);
}
