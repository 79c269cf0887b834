/*
 * main.c — the attribution binary: yaowei.attribution.v1.AttributionService on the
 * shared runtime (common/app.h does flags, logging, the SQLite store, serving,
 * shutdown). The descriptor set reflection serves comes from
 * //proto:attribution_descriptors. Tier scoring is reached at --tier-scoring-addr.
 */
#include <stddef.h>

#include "common/app.h"
#include "services/attribution/attr_service.h"
#include "services/attribution/attr_store.h"

static const yw_app_def_t attr_app = {
    .program = "attribution",
    .summary = "yaowei attribution: joins video exposures to orders, credits creators, "
               "reports by creator and tier (yaowei.attribution.v1.AttributionService)",
    .service = &attr_service,
    .db_file = "attribution.db",
    .migrations = attr_migrations,
    .n_migrations = 1,
    .options = attr_options,
    .n_options = 1,
    .init = attr_service_init,
    .fini = attr_service_fini,
    .default_listen = "127.0.0.1:50053",
};

int main(int argc, char **argv)
{
    return yw_app_main(argc, argv, &attr_app);
}
