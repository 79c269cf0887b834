/*
 * main.c — the creator_profile binary: yaowei.creator.v1.CreatorProfileService on the
 * shared runtime (common/app.h does flags, logging, the store, serving, shutdown). The
 * descriptor set reflection serves comes from //proto:creator_profile_descriptors.
 */
#include <stddef.h>

#include "common/app.h"
#include "services/creator_profile/creator_service.h"
#include "services/creator_profile/creator_store.h"

static const yw_app_def_t creator_app = {
    .program = "creator_profile",
    .summary = "yaowei creator profile: creators and the daily stats of their notes "
               "(yaowei.creator.v1.CreatorProfileService)",
    .service = &creator_service,
    .db_file = "creator_profile.db",
    .migrations = creator_migrations,
    .n_migrations = CREATOR_N_MIGRATIONS,
    .options = NULL,
    .n_options = 0,
    .init = creator_service_init,
    .fini = creator_service_fini,
    .default_listen = "127.0.0.1:50051",
};

int main(int argc, char **argv)
{
    return yw_app_main(argc, argv, &creator_app);
}
