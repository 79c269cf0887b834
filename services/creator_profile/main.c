/*
 * main.c — the creator_profile binary: yaowei.creator.v1.CreatorProfileService on the
 * shared runtime (common/app.h does flags, logging, the store, serving, shutdown; the app
 * is creator_app of creator_service.c). The descriptor set reflection serves comes from
 * //proto:creator_profile_descriptors.
 */
#include "common/app.h"
#include "services/creator_profile/creator_service.h"

int main(int argc, char **argv)
{
    return yw_app_main(argc, argv, &creator_app);
}
