/*
 * main.c — the attribution binary: yaowei.attribution.v1.AttributionService on the
 * shared runtime (common/app.h does flags, logging, the SQLite store, serving,
 * shutdown; the app is attr_app of attr_service.c). The descriptor set reflection serves
 * comes from //proto:attribution_descriptors. Tier scoring is reached at
 * --tier-scoring-addr.
 */
#include <malloc.h>
#include <stddef.h>

#include "common/app.h"
#include "services/attribution/attr_service.h"

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
