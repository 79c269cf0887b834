/*
 * main.c — the attribution binary: yaowei.attribution.v1.AttributionService on the
 * shared runtime (common/app.h does flags, logging, the SQLite store, serving,
 * shutdown). The descriptor set reflection serves comes from
 * //proto:attribution_descriptors. Tier scoring is reached at --tier-scoring-addr.
 */
#include <malloc.h>
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
    .n_migrations = ATTR_N_MIGRATIONS,
    .options = attr_options,
    .n_options = ATTR_N_OPTIONS,
    .init = attr_service_init,
    .fini = attr_service_fini,
    .fini_async = attr_service_fini_async,
    .default_listen = "127.0.0.1:50053",
};

int main(int argc, char **argv)
{
    /*
     * The exposure store allocates and frees buffers of megabytes every few hundred
     * milliseconds (runs of the index in memory, index files being built or merged).
     * glibc raises its mmap threshold to the size of a freed mmapped block, after which
     * such buffers come from the heap and stay resident once freed (about 25 MB at 10
     * million exposures). A fixed threshold keeps them mmapped: freeing returns them.
     * A tuning hint: when it fails, the defaults stay.
     */
    (void)mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    return yw_app_main(argc, argv, &attr_app);
}
