/*
 * attr_front_settings.c — UpdateAttributionSettings on a cluster node: every partition
 * gets the same settings under the same version.
 *
 * The way of one update:
 *   1. partition 0's settings: their version v;
 *   2. the caller's update to partition 0 as the caller wrote it (its rules, its errors),
 *      expecting version v and setting v + 1 at time T (metadata yw-settings-expect,
 *      yw-settings-version, yw-settings-time): ABORTED if another update came first;
 *   3. the settings partition 0 answered, whole (every field in the mask), to every other
 *      partition with version v + 1 at T: a partition already at v + 1 answers unchanged,
 *      so that sending again is harmless;
 *   4. partition 0's answer to the caller once every partition has answered. A partition
 *      that could not be reached fails the call UNAVAILABLE naming it; the caller's retry
 *      makes a new version that every partition takes (reports refuse to add up sums of
 *      different versions meanwhile).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/attribution/attr_front_int.h"

#define ATTR__SETTINGS "/yaowei.attribution.v1.AttributionService/"

/* Every field of AttributionSettings an update may set (the mask of step 3). */
static const char *const attr__all_paths[] = {
    "click_window",  "view_window", "time_decay_half_life", "engaged_view_ms", "late_window",
    "default_model", "currency",
};

typedef struct st_attr__upd_t {
    attr_front_t *f;
    yw_call_t *call;
    const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *req; /* the caller's */
    Yaowei__Attribution__V1__GetAttributionSettingsRequest get_req;
    attr__fwd_t first; /* steps 1 and 2, one after the other */
    char expect[24], version[24], when[24];
    /* step 3 */
    Yaowei__Attribution__V1__AttributionSettings *settings; /* partition 0's answer */
    Yaowei__Attribution__V1__UpdateAttributionSettingsRequest all_req;
    Google__Protobuf__FieldMask all_mask;
    attr__fwd_t *fws;
    int pending;
    grpc_status_code fail_code;
    char fail_detail[256];
    char failed[256];
} attr__upd_t;

static void attr__upd_free(attr__upd_t *u)
{
    if (u->settings != NULL) {
        protobuf_c_message_free_unpacked(&u->settings->base, NULL);
    }
    free(u->fws);
    free(u);
}

static void attr__upd_finish(attr__upd_t *u)
{
    if (u->failed[0] != '\0') {
        yw_call_finish(u->call, u->fail_code,
                       "settings v%s: partitions %s did not take them: %s (send the update "
                       "again)",
                       u->version, u->failed, u->fail_detail);
    } else {
        (void)yw_call_reply(u->call, &u->settings->base);
    }
    attr__upd_free(u);
}

static void attr__on_other(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                           ProtobufCMessage *resp)
{
    attr__upd_t *u = fw->arg;
    if (code != GRPC_STATUS_OK) {
        size_t used = strlen(u->failed);
        if (used + 16 < sizeof u->failed) {
            snprintf(u->failed + used, sizeof u->failed - used, "%s%d", used ? ", " : "", fw->p);
        }
        if (u->fail_detail[0] == '\0') {
            u->fail_code = code == GRPC_STATUS_UNAVAILABLE ? code : GRPC_STATUS_INTERNAL;
            snprintf(u->fail_detail, sizeof u->fail_detail, "%s", detail);
        }
    } else {
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    if (--u->pending == 0) {
        attr__upd_finish(u);
    }
}

/* Step 3: partition 0's settings, whole, to every other partition. */
static void attr__upd_others(attr__upd_t *u)
{
    int np = attr_cluster_partitions(u->f->cluster);
    u->fws = calloc((size_t)np, sizeof *u->fws);
    if (u->fws == NULL) {
        yw_call_fail(u->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        attr__upd_free(u);
        return;
    }
    google__protobuf__field_mask__init(&u->all_mask);
    u->all_mask.paths = (char **)attr__all_paths;
    u->all_mask.n_paths = sizeof attr__all_paths / sizeof attr__all_paths[0];
    yaowei__attribution__v1__update_attribution_settings_request__init(&u->all_req);
    u->all_req.settings = u->settings;
    u->all_req.update_mask = &u->all_mask;
    u->pending = np; /* partitions 1..np-1, and one while they start */
    for (int p = 1; p < np; p++) {
        u->fws[p] = (attr__fwd_t){
            .f = u->f,
            .call = u->call,
            .p = p,
            .method = ATTR__SETTINGS "UpdateAttributionSettings",
            .req = &u->all_req.base,
            .resp_desc = &yaowei__attribution__v1__attribution_settings__descriptor,
            .cb = attr__on_other,
            .arg = u,
            .md = {{"yw-settings-version", u->version}, {"yw-settings-time", u->when}},
            .n_md = 2,
        };
        attr__fwd_start(&u->fws[p]);
    }
    if (--u->pending == 0) {
        attr__upd_finish(u);
    }
}

/* Step 2 done: partition 0 took the update (or said why not: the caller's answer). */
static void attr__on_first_updated(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                                   ProtobufCMessage *resp)
{
    attr__upd_t *u = fw->arg;
    if (code != GRPC_STATUS_OK) {
        yw_call_fail(u->call, code, detail); /* its rules' answer, as standalone's */
        attr__upd_free(u);
        return;
    }
    u->settings = (Yaowei__Attribution__V1__AttributionSettings *)resp;
    attr__upd_others(u);
}

/* Step 1 done: partition 0's version; step 2. */
static void attr__on_first_read(attr__fwd_t *fw, grpc_status_code code, const char *detail,
                                ProtobufCMessage *resp)
{
    attr__upd_t *u = fw->arg;
    if (code != GRPC_STATUS_OK) {
        yw_call_finish(u->call, code == GRPC_STATUS_UNAVAILABLE ? code : GRPC_STATUS_INTERNAL,
                       "partition 0's settings: %s", detail);
        attr__upd_free(u);
        return;
    }
    int64_t v = ((const Yaowei__Attribution__V1__AttributionSettings *)resp)->version;
    protobuf_c_message_free_unpacked(resp, NULL);
    snprintf(u->expect, sizeof u->expect, "%lld", (long long)v);
    snprintf(u->version, sizeof u->version, "%lld", (long long)v + 1);
    u->first = (attr__fwd_t){
        .f = u->f,
        .call = u->call,
        .p = 0,
        .method = ATTR__SETTINGS "UpdateAttributionSettings",
        .req = &u->req->base,
        .resp_desc = &yaowei__attribution__v1__attribution_settings__descriptor,
        .cb = attr__on_first_updated,
        .arg = u,
        .md = {{"yw-settings-expect", u->expect},
               {"yw-settings-version", u->version},
               {"yw-settings-time", u->when}},
        .n_md = 3,
    };
    attr__fwd_start(&u->first);
}

void attr_front_update_settings(
    attr_front_t *f, yw_call_t *call,
    const Yaowei__Attribution__V1__UpdateAttributionSettingsRequest *req)
{
    attr__upd_t *u = calloc(1, sizeof *u);
    if (u == NULL) {
        yw_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    u->f = f;
    u->call = call;
    u->req = req;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(u->when, sizeof u->when, "%lld", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    yaowei__attribution__v1__get_attribution_settings_request__init(&u->get_req);
    u->first = (attr__fwd_t){
        .f = f,
        .call = call,
        .p = 0,
        .method = ATTR__SETTINGS "GetAttributionSettings",
        .req = &u->get_req.base,
        .resp_desc = &yaowei__attribution__v1__attribution_settings__descriptor,
        .cb = attr__on_first_read,
        .arg = u,
    };
    attr__fwd_start(&u->first);
}
