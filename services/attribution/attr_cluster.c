/* attr_cluster.c — membership and partition leases on NATS JetStream. See attr_cluster.h. */
#include "services/attribution/attr_cluster.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/log.h"
#include "services/attribution/attr_cluster_int.h"

/* ---- pure: partitions and the assignment ---- */

int attr_cluster_partition(const char *viewer_id, size_t len, int partitions)
{
    return (int)(yw_hash_bytes(viewer_id, len) % (uint64_t)partitions);
}

static uint64_t attr__rank(int partition, const char *node)
{
    return yw_hash_u64(yw_hash_bytes(node, strlen(node)) ^ yw_hash_u64((uint64_t)partition + 1));
}

void attr_cluster_assign(const char *const *nodes, int n_nodes, int partitions, int *owner)
{
    if (n_nodes <= 0) {
        for (int p = 0; p < partitions; p++) {
            owner[p] = -1;
        }
        return;
    }
    int cap = (partitions + n_nodes - 1) / n_nodes;
    int load[n_nodes];
    memset(load, 0, sizeof load);
    for (int p = 0; p < partitions; p++) {
        int best = -1;
        uint64_t best_rank = 0;
        for (int i = 0; i < n_nodes; i++) {
            uint64_t r = attr__rank(p, nodes[i]);
            if (load[i] < cap && (best < 0 || r > best_rank)) {
                best = i;
                best_rank = r;
            }
        }
        owner[p] = best;
        load[best]++;
    }
}

/* ---- configuration ---- */

int attr_cluster_config_check(const attr_cluster_config_t *cfg, char *err, size_t errlen)
{
    size_t n = cfg->node_id != NULL ? strlen(cfg->node_id) : 0;
    if (n == 0 || n > ATTR_CLUSTER_NODE_ID_MAX) {
        snprintf(err, errlen, "--node-id: must be 1 to %d characters (it is %zu)",
                 ATTR_CLUSTER_NODE_ID_MAX, n);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = cfg->node_id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '=')) {
            snprintf(err, errlen,
                     "--node-id \"%s\": only letters, digits, '-', '_' and '=' (a NATS key)",
                     cfg->node_id);
            return -EINVAL;
        }
    }
    if (cfg->partitions < 1 || cfg->partitions > ATTR_CLUSTER_MAX_PARTITIONS) {
        snprintf(err, errlen, "--partitions: must be 1 to %d (it is %d)",
                 ATTR_CLUSTER_MAX_PARTITIONS, cfg->partitions);
        return -EINVAL;
    }
    if (cfg->replicas < 1 || cfg->replicas > 5) {
        snprintf(err, errlen, "--replicas: must be 1 to 5, as JetStream allows (it is %d)",
                 cfg->replicas);
        return -EINVAL;
    }
    if (cfg->lease_ttl_ms < 1000 || cfg->lease_ttl_ms > 600000) {
        snprintf(err, errlen, "--lease-ttl-ms: must be 1000 to 600000 (it is %lld)",
                 (long long)cfg->lease_ttl_ms);
        return -EINVAL;
    }
    if (cfg->urls == NULL || cfg->urls[0] == '\0') {
        snprintf(err, errlen, "--cluster: at least one NATS URL");
        return -EINVAL;
    }
    if (cfg->advertise == NULL || cfg->advertise[0] == '\0') {
        snprintf(err, errlen, "--advertise-addr: the address the other nodes call this one at");
        return -EINVAL;
    }
    return 0;
}

/* ---- the thread: publishing to the loop ---- */

static void attr__routes_copy(attr__routes_t *to, const attr__routes_t *from, int partitions)
{
    memcpy(to->nodes, from->nodes, sizeof to->nodes[0] * (size_t)from->n_nodes);
    to->n_nodes = from->n_nodes;
    to->self = from->self;
    memcpy(to->route, from->route, sizeof to->route[0] * (size_t)partitions);
}

/* Thread: the status (with a problem when `fmt` is not NULL) to the loop. */
static void attr__publish(attr_cluster_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void attr__publish(attr_cluster_t *c, const char *fmt, ...)
{
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->t_st.error, sizeof c->t_st.error, fmt, ap);
        va_end(ap);
    }
    uv_mutex_lock(&c->mu);
    c->t_st.connected = c->nats_connected;
    c->pub = c->t_st;
    for (int p = 0; p < c->partitions; p++) {
        c->pub_owned[p] = (uint8_t)(c->t_owned[p] | c->t_ahead[p] << 1);
    }
    attr__routes_copy(&c->pub_routes, &c->t_routes, c->partitions);
    uv_mutex_unlock(&c->mu);
    uv_async_send(&c->async);
}

static void attr__on_disconnected(natsConnection *nc, void *arg)
{
    (void)nc;
    attr_cluster_t *c = arg;
    uv_mutex_lock(&c->mu);
    c->nats_connected = 0;
    c->pub.connected = 0;
    uv_mutex_unlock(&c->mu);
    uv_async_send(&c->async);
}

static void attr__on_reconnected(natsConnection *nc, void *arg)
{
    (void)nc;
    attr_cluster_t *c = arg;
    uv_mutex_lock(&c->mu);
    c->nats_connected = 1;
    c->pub.connected = 1;
    uv_mutex_unlock(&c->mu);
    uv_async_send(&c->async);
}

/* libnats's last callback of a connection: after it none comes, so the cluster may go. */
static void attr__on_closed_nats(natsConnection *nc, void *arg)
{
    (void)nc;
    attr_cluster_t *c = arg;
    uv_mutex_lock(&c->mu);
    c->nats_closed = 1;
    uv_cond_signal(&c->cond);
    uv_mutex_unlock(&c->mu);
}

/* Closes the connection and waits (2 s at most) for its closed callback. */
static void attr__close_nats(attr_cluster_t *c)
{
    if (c->nc == NULL) {
        return;
    }
    natsSubscription_Destroy(c->alive_sub);
    c->alive_sub = NULL;
    natsConnection_Close(c->nc);
    uv_mutex_lock(&c->mu);
    for (int i = 0; i < 20 && !c->nats_closed; i++) {
        (void)uv_cond_timedwait(&c->cond, &c->mu, 100 * ATTR__NS_PER_MS);
    }
    int closed = c->nats_closed;
    uv_mutex_unlock(&c->mu);
    if (!closed) {
        yw_log(YW_LOG_WARN, "cluster: NATS connection not closed after 2 s");
    }
    natsConnection_Destroy(c->nc);
    c->nc = NULL;
}

/* Waits `ms` or until stopped; returns non-zero when stopping. */
static int attr__sleep(attr_cluster_t *c, uint64_t ms)
{
    uv_mutex_lock(&c->mu);
    if (!c->stop) {
        (void)uv_cond_timedwait(&c->cond, &c->mu, ms * ATTR__NS_PER_MS);
    }
    int stop = c->stop;
    uv_mutex_unlock(&c->mu);
    return stop;
}

/* ---- the thread: connecting and the cluster's objects ---- */

static natsStatus attr__connect(attr_cluster_t *c)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    /* The URLs, split at commas (libnats takes an array). */
    char *list = strdup(c->urls);
    const char *servers[32];
    int n = 0;
    if (list == NULL) {
        s = NATS_NO_MEMORY;
    }
    for (char *save = NULL, *u = list != NULL ? strtok_r(list, ",", &save) : NULL;
         u != NULL && n < (int)(sizeof servers / sizeof servers[0]);
         u = strtok_r(NULL, ",", &save)) {
        servers[n++] = u;
    }
    if (s == NATS_OK) {
        s = natsOptions_SetServers(opts, servers, n);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetName(opts, c->node_id);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetTimeout(opts, ATTR__REQUEST_MS);
    }
    /* Once connected, libnats reconnects by itself, forever, to any server of the list. */
    if (s == NATS_OK) {
        s = natsOptions_SetMaxReconnect(opts, -1);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectWait(opts, ATTR__BACKOFF_MIN_MS);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetDisconnectedCB(opts, attr__on_disconnected, c);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectedCB(opts, attr__on_reconnected, c);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetClosedCB(opts, attr__on_closed_nats, c);
    }
    if (s == NATS_OK && c->tls_ca != NULL) {
        s = natsOptions_LoadCATrustedCertificates(opts, c->tls_ca);
        if (s == NATS_OK) {
            s = natsOptions_SetSecure(opts, true);
        }
    }
    if (s == NATS_OK && c->creds != NULL) {
        s = natsOptions_SetUserCredentialsFromFiles(opts, c->creds, NULL);
    }
    if (s == NATS_OK) {
        s = natsConnection_Connect(&c->nc, opts);
    }
    natsOptions_Destroy(opts);
    free(list);
    if (s == NATS_OK) {
        uv_mutex_lock(&c->mu);
        c->nats_connected = 1;
        uv_mutex_unlock(&c->mu);
    }
    return s;
}

/* Binds bucket `name`, creating it when missing. */
static natsStatus attr__bucket(attr_cluster_t *c, const char *name, int64_t ttl_ms, kvStore **out)
{
    natsStatus s = js_KeyValue(out, c->js, name);
    if (s != NATS_NOT_FOUND) {
        return s;
    }
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = name;
    cfg.History = 1;
    cfg.TTL = ttl_ms * (int64_t)ATTR__NS_PER_MS; /* nanoseconds: it becomes the stream's MaxAge */
    cfg.Replicas = c->replicas;
    cfg.StorageType = js_FileStorage;
    s = js_CreateKeyValue(out, c->js, &cfg);
    if (s != NATS_OK) {
        /* Another node created it first, with its own settings: use those. */
        yw_log(YW_LOG_DEBUG, "cluster: creating %s: %s", name, attr__err_text(s));
        natsStatus again = js_KeyValue(out, c->js, name);
        if (again != NATS_NOT_FOUND) {
            return again;
        }
    }
    return s;
}

/* Creates stream `name` over `subject` (or finds it, made by another node). */
static natsStatus attr__stream(attr_cluster_t *c, const char *name, const char **subjects,
                               int n_subjects)
{
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = n_subjects;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = c->replicas;
    cfg.AllowDirect = true; /* reads by subject (attr_cluster_read()) from any replica */
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, c->js, name, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        s = js_AddStream(&si, c->js, &cfg, NULL, &jerr);
        if (s != NATS_OK && jerr == JSStreamNameExistErr) {
            s = js_GetStreamInfo(&si, c->js, name, NULL, &jerr);
        }
    }
    jsStreamInfo_Destroy(si);
    return s;
}

/*
 * The partition count: written by the first node, the same for every node after it.
 * Returns 0, -EAGAIN (NATS failed: try again) or -EINVAL (a different count: fatal).
 */
static int attr__check_partitions(attr_cluster_t *c)
{
    char mine[16];
    snprintf(mine, sizeof mine, "%d", c->partitions);
    uint64_t rev = 0;
    natsStatus s = kvStore_CreateString(&rev, c->meta, "partitions", mine);
    if (s == NATS_OK) {
        yw_log(YW_LOG_INFO, "cluster: created with %d partitions", c->partitions);
        return 0;
    }
    kvEntry *e = NULL;
    s = kvStore_Get(&e, c->meta, "partitions");
    if (s != NATS_OK) {
        attr__publish(c, "cannot read the cluster's partition count: %s", attr__err_text(s));
        return -EAGAIN;
    }
    const char *theirs = kvEntry_ValueString(e);
    int same = theirs != NULL && strcmp(theirs, mine) == 0;
    if (!same) {
        c->t_st.fatal = 1;
        attr__publish(c,
                      "--partitions %d, but the cluster's streams were created with %s "
                      "partitions: start every node with --partitions %s",
                      c->partitions, theirs != NULL ? theirs : "?", theirs != NULL ? theirs : "?");
    }
    kvEntry_Destroy(e);
    return same ? 0 : -EINVAL;
}

/*
 * The partitions' logs, a stream per ATTR__PARTS_PER_STREAM partitions in a row (once the
 * partition count is the cluster's). A cluster whose logs are still in the one stream of the
 * versions before (ATTR__OLD_STREAM) is refused: its events would not be read. Returns 0, -EAGAIN
 * or -EINVAL (fatal).
 */
static int attr__log_streams(attr_cluster_t *c)
{
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, c->js, ATTR__OLD_STREAM, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK) {
        c->t_st.fatal = 1;
        attr__publish(c,
                      "the cluster's NATS has the stream %s: partitions' logs of an earlier "
                      "version, which kept them in one stream (this one keeps a stream per %d "
                      "partitions, yw-attr-log-<first>-<last>); delete it once its events are "
                      "no longer needed, or use a NATS of its own",
                      ATTR__OLD_STREAM, ATTR__PARTS_PER_STREAM);
        return -EINVAL;
    }
    if (s != NATS_NOT_FOUND) {
        attr__publish(c, "JetStream stream %s: %s", ATTR__OLD_STREAM, attr__err_text(s));
        return -EAGAIN;
    }
    for (int p = 0; p < c->partitions;) {
        int end = attr__log_stream_end(c, p);
        char stream[48], subjects[ATTR__PARTS_PER_STREAM][48];
        const char *names[ATTR__PARTS_PER_STREAM];
        int n = 0;
        for (int q = p; q < end; q++, n++) {
            attr__log_names(c, q, stream, subjects[n]);
            names[n] = subjects[n];
        }
        if ((s = attr__stream(c, stream, names, n)) != NATS_OK) {
            attr__publish(c, "JetStream %s: %s (is JetStream on, with %d servers for --replicas?)",
                          stream, attr__err_text(s), c->replicas);
            return -EAGAIN;
        }
        p = end;
    }
    return 0;
}

/*
 * The key every node signs page tokens with, so that a token is good on any node:
 * random, written once by the first node (meta bucket "page-key"). Returns 0 or -EAGAIN.
 */
static int attr__page_key(attr_cluster_t *c)
{
    uint8_t mine[sizeof c->page_key];
    if (uv_random(NULL, NULL, mine, sizeof mine, 0, NULL) != 0) {
        return -EAGAIN;
    }
    uint64_t rev = 0;
    if (kvStore_Create(&rev, c->meta, "page-key", mine, (int)sizeof mine) == NATS_OK) {
        memcpy(c->page_key, mine, sizeof mine);
        return 0;
    }
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, c->meta, "page-key");
    if (s != NATS_OK) {
        attr__publish(c, "cannot read the cluster's page-token key: %s", attr__err_text(s));
        return -EAGAIN;
    }
    int ok = kvEntry_ValueLen(e) == (int)sizeof c->page_key;
    if (ok) {
        memcpy(c->page_key, kvEntry_Value(e), sizeof c->page_key);
    }
    kvEntry_Destroy(e);
    if (!ok) {
        attr__publish(c, "the cluster's page-token key is not %zu bytes", sizeof c->page_key);
        return -EAGAIN;
    }
    return 0;
}

/* libnats's delivery thread: another node's probe (ATTR__ALIVE_FMT), answered empty. */
static void attr__on_probe(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
    (void)sub;
    (void)arg;
    const char *reply = natsMsg_GetReply(msg);
    if (reply != NULL) {
        (void)natsConnection_Publish(nc, reply, NULL, 0);
    }
    natsMsg_Destroy(msg);
}

/* Connects and makes sure of the cluster's objects. Returns 0, -EAGAIN or -EINVAL. */
static int attr__join(attr_cluster_t *c)
{
    natsStatus s = NATS_OK;
    if (c->nc == NULL && (s = attr__connect(c)) != NATS_OK) {
        attr__publish(c, "cannot connect to NATS at %s: %s", c->urls, attr__err_text(s));
        natsConnection_Destroy(c->nc);
        c->nc = NULL;
        return -EAGAIN;
    }
    if (c->alive_sub == NULL) {
        /* Before this node's key is put: a node listed answers (libnats subscribes again
         * after a reconnection). */
        char subject[128];
        snprintf(subject, sizeof subject, ATTR__ALIVE_FMT, c->node_id);
        if ((s = natsConnection_Subscribe(&c->alive_sub, c->nc, subject, attr__on_probe, c)) !=
            NATS_OK) {
            attr__publish(c, "cannot subscribe to %s: %s", subject, attr__err_text(s));
            return -EAGAIN;
        }
    }
    if (c->js == NULL) {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = ATTR__REQUEST_MS;
        if ((s = natsConnection_JetStream(&c->js, c->nc, &jo)) != NATS_OK) {
            attr__publish(c, "JetStream: %s", attr__err_text(s));
            return -EAGAIN;
        }
    }
    static const char *snaps[] = {"yw.attr.snap.*", "yw.attr.snaph.*"};
    const char *what = ATTR__SNAP_STREAM;
    s = attr__stream(c, ATTR__SNAP_STREAM, snaps, 2);
    if (s == NATS_OK && c->meta == NULL) {
        what = ATTR__BUCKET_META;
        s = attr__bucket(c, ATTR__BUCKET_META, 0, &c->meta);
    }
    if (s == NATS_OK && c->nodes == NULL) {
        what = ATTR__BUCKET_NODES;
        s = attr__bucket(c, ATTR__BUCKET_NODES, c->ttl_ms, &c->nodes);
    }
    if (s == NATS_OK && c->leases == NULL) {
        what = ATTR__BUCKET_LEASES;
        s = attr__bucket(c, ATTR__BUCKET_LEASES, c->ttl_ms, &c->leases);
    }
    if (s != NATS_OK) {
        attr__publish(c, "JetStream %s: %s (is JetStream on, with %d servers for --replicas?)",
                      what, attr__err_text(s), c->replicas);
        return -EAGAIN;
    }
    int rc = attr__check_partitions(c);
    if (rc == 0) {
        rc = attr__log_streams(c);
    }
    return rc == 0 ? attr__page_key(c) : rc;
}

/* ---- the thread: leases ---- */

/*
 * Appends the lease marker to partition `p`'s subject, expecting its last sequence: from
 * then on an append of the previous owner, which expects an older one, is refused.
 * Returns 0 or -EAGAIN.
 */
static int attr__fence(attr_cluster_t *c, int p, uint64_t *marker)
{
    char subject[48], seq[24];
    snprintf(subject, sizeof subject, ATTR__SUBJECT_FMT, p);
    for (int attempt = 0; attempt < 3; attempt++) {
        int64_t last = attr__last_seq(c, c->js, p);
        if (last < 0) {
            return -EAGAIN;
        }
        snprintf(seq, sizeof seq, "%lld", (long long)last);
        const char *const hdrs[] = {"Nats-Expected-Last-Subject-Sequence",
                                    seq,
                                    "Yw-Kind",
                                    "lease",
                                    "Yw-Node",
                                    c->node_id,
                                    "Yw-Prev",
                                    seq,
                                    NULL};
        jsErrCode jerr = 0;
        natsStatus s = attr__js_publish(c->js, subject, NULL, 0, hdrs, marker, &jerr);
        if (s == NATS_OK) {
            __atomic_store_n(&c->fence_prev[p], (uint64_t)last, __ATOMIC_RELEASE);
            __atomic_store_n(&c->fence_marker[p], *marker, __ATOMIC_RELEASE);
            return 0;
        }
        if (jerr != JSStreamWrongLastSequenceErr) {
            return -EAGAIN;
        }
    }
    return -EAGAIN;
}

/*
 * Deletes partition `p`'s lease key only if it is still this node's: a delete marker
 * expecting the revision this node last wrote (kvStore_Delete() expects nothing, and a
 * node that slept past its lease deleted the lease its successor had taken since, whose
 * next renewal then failed: the partition changed hands twice). Returns 0, -ESTALE when
 * the key has moved on (nothing deleted), or -EIO when NATS did not answer.
 */
static int attr__lease_release(attr_cluster_t *c, int p)
{
    char subject[96], rev[24];
    snprintf(subject, sizeof subject, "$KV." ATTR__BUCKET_LEASES ".p.%d", p);
    snprintf(rev, sizeof rev, "%llu", (unsigned long long)c->t_rev[p]);
    const char *const hdrs[] = {"KV-Operation", "DEL", "Nats-Expected-Last-Subject-Sequence", rev,
                                NULL};
    jsErrCode jerr = 0;
    natsStatus s = attr__js_publish(c->js, subject, NULL, 0, hdrs, NULL, &jerr);
    return s == NATS_OK ? 0 : jerr == JSStreamWrongLastSequenceErr ? -ESTALE : -EIO;
}

static void attr__lose(attr_cluster_t *c, int p, const char *why)
{
    if (c->t_owned[p]) {
        attr__log_own(c, p, 0);
        c->t_owned[p] = 0;
        c->t_st.owned--;
        c->t_st.leases_lost++;
        yw_log(YW_LOG_WARN, "cluster: lost the lease of partition %d (%s)", p, why);
    }
}

/* Takes partition `p`'s lease: free, or still held by this node's earlier run. */
static void attr__acquire(attr_cluster_t *c, int p, const char *key)
{
    uint64_t rev = 0;
    natsStatus s = kvStore_CreateString(&rev, c->leases, key, c->node_id);
    if (s != NATS_OK) {
        kvEntry *e = NULL;
        if (kvStore_Get(&e, c->leases, key) != NATS_OK) {
            return;
        }
        const char *holder = kvEntry_ValueString(e);
        if (holder != NULL && strcmp(holder, c->node_id) == 0) {
            s = kvStore_UpdateString(&rev, c->leases, key, c->node_id, kvEntry_Revision(e));
        }
        kvEntry_Destroy(e);
        if (s != NATS_OK) {
            return; /* someone else's, until they let it go or it expires */
        }
    }
    c->t_rev[p] = rev;
    uint64_t marker = 0;
    if (attr__fence(c, p, &marker) != 0) {
        yw_log(YW_LOG_WARN, "cluster: took partition %d but cannot fence it; letting it go", p);
        (void)attr__lease_release(c, p);
        return;
    }
    attr__log_own(c, p, marker);
    c->t_owned[p] = 1;
    c->t_st.owned++;
    yw_log(YW_LOG_DEBUG, "cluster: partition %d is ours", p);
}

/* The node ids of the live nodes, filled by attr__live_nodes(). */
typedef char attr__node_id_t[ATTR_CLUSTER_NODE_ID_MAX + 1];

/*
 * Live nodes, sorted: the keys of the nodes bucket that hold a value. They are listed
 * from the subjects of the bucket's stream, then each read, not with kvStore_Keys(): its
 * key watcher can wait for the end of the initial values forever when entries expire
 * meanwhile (nats-server 2.9, issue #3481), and a node stuck there renewed nothing for
 * minutes while its leases ran out (seen in the cluster benchmark). Returns the count,
 * or -1.
 */
static int attr__live_nodes(attr_cluster_t *c, attr__node_id_t *ids, const char **names, int max)
{
    static const char prefix[] = "$KV." ATTR__BUCKET_NODES ".n.";
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = "$KV." ATTR__BUCKET_NODES ".n.*";
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, c->js, "KV_" ATTR__BUCKET_NODES, &o, &jerr);
    if (s != NATS_OK) {
        return -1;
    }
    int n = 0;
    jsStreamStateSubjects *subs = si->State.Subjects;
    for (int i = 0; subs != NULL && i < subs->Count && n < max && s == NATS_OK; i++) {
        const char *subject = subs->List[i].Subject;
        if (strncmp(subject, prefix, sizeof prefix - 1) != 0 ||
            strlen(subject + sizeof prefix - 1) > ATTR_CLUSTER_NODE_ID_MAX) {
            continue;
        }
        const char *id = subject + sizeof prefix - 1;
        char key[96];
        snprintf(key, sizeof key, "n.%s", id);
        kvEntry *e = NULL;
        s = kvStore_Get(&e, c->nodes, key);
        if (s == NATS_NOT_FOUND) {
            s = NATS_OK; /* deleted (a node that stopped): only its marker is left */
            continue;
        }
        kvEntry_Destroy(e);
        if (s == NATS_OK) {
            snprintf(ids[n], sizeof ids[n], "%s", id);
            names[n] = ids[n];
            n++;
        }
    }
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        return -1;
    }
    for (int i = 1; i < n; i++) { /* insertion sort: a handful of names */
        const char *x = names[i];
        int j = i - 1;
        for (; j >= 0 && strcmp(names[j], x) > 0; j--) {
            names[j + 1] = names[j];
        }
        names[j + 1] = x;
    }
    return n;
}

/* The routing table from the assignment: the nodes' addresses read from their keys. */
static void attr__routes_fill(attr_cluster_t *c, const char *const *names, int n, int me)
{
    attr__routes_t *r = &c->t_routes;
    r->n_nodes = n < ATTR__MAX_NODES ? n : ATTR__MAX_NODES;
    r->self = me < ATTR__MAX_NODES ? me : -1;
    for (int i = 0; i < r->n_nodes; i++) {
        snprintf(r->nodes[i].id, sizeof r->nodes[i].id, "%s", names[i]);
        r->nodes[i].addr[0] = '\0';
        if (i == me) {
            snprintf(r->nodes[i].addr, sizeof r->nodes[i].addr, "%s", c->advertise);
            continue;
        }
        char key[96];
        snprintf(key, sizeof key, "n.%s", names[i]);
        kvEntry *e = NULL;
        if (kvStore_Get(&e, c->nodes, key) == NATS_OK) {
            const char *addr = kvEntry_ValueString(e);
            snprintf(r->nodes[i].addr, sizeof r->nodes[i].addr, "%s", addr ? addr : "");
            kvEntry_Destroy(e);
        }
    }
    for (int p = 0; p < c->partitions; p++) {
        int o = c->assign[p];
        r->route[p] = (int16_t)(o >= 0 && o < r->n_nodes && r->nodes[o].addr[0] ? o : -1);
    }
}

/* NATS answers (connected) and the node is not stopping: worth another request. Once
 * not, a tick asks nothing more (each request would wait out its timeout, one after the
 * other: a stop would take a timeout per lease). */
static int attr__worth_asking(attr_cluster_t *c)
{
    uv_mutex_lock(&c->mu);
    int stop = c->stop;
    uv_mutex_unlock(&c->mu);
    return !stop && natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* Whether node `id` answers a probe: 1, or 0 when its process is gone (NATS answers "no
 * responders" at once) or its probes timed out ATTR__PROBE_MISSES times in a row. Blocks
 * up to ATTR__PROBE_MS. Anything else (NATS itself failing) counts as an answer: only a
 * node known gone has its partitions built ahead. */
static int attr__probe(attr_cluster_t *c, const char *id)
{
    int slot = -1, free_slot = -1;
    for (int i = 0; i < ATTR__MAX_NODES && slot < 0; i++) {
        if (strcmp(c->t_probe[i].id, id) == 0) {
            slot = i;
        } else if (free_slot < 0 && c->t_probe[i].id[0] == '\0') {
            free_slot = i;
        }
    }
    if (slot < 0) {
        slot = free_slot >= 0 ? free_slot : (int)(uv_hrtime() % ATTR__MAX_NODES);
        snprintf(c->t_probe[slot].id, sizeof c->t_probe[slot].id, "%s", id);
        c->t_probe[slot].misses = 0;
    }
    char subject[128];
    snprintf(subject, sizeof subject, ATTR__ALIVE_FMT, id);
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_Request(&reply, c->nc, subject, NULL, 0, ATTR__PROBE_MS);
    natsMsg_Destroy(reply);
    if (s == NATS_NO_RESPONDERS) {
        return 0;
    }
    if (s == NATS_TIMEOUT) {
        return ++c->t_probe[slot].misses < ATTR__PROBE_MISSES;
    }
    c->t_probe[slot].misses = 0;
    return 1;
}

/* The partitions to build ahead (t_ahead): those the assignment among the nodes that
 * answer (this one, names[me], and names[i] for which attr__probe() says so) gives this
 * node, and the current one does not. None when every node answers, or when `me` < 0. */
static void attr__ahead(attr_cluster_t *c, const char *const *names, int n, int me)
{
    memset(c->t_ahead, 0, (size_t)c->partitions);
    c->t_st.not_answering = 0;
    if (me < 0) {
        return; /* NATS went: nothing to build from */
    }
    const char *live[ATTR__MAX_NODES];
    int n_live = 0, me_live = -1;
    for (int i = 0; i < n && n_live < ATTR__MAX_NODES; i++) {
        if (i != me && !attr__probe(c, names[i])) {
            c->t_st.not_answering++;
            continue;
        }
        if (i == me) {
            me_live = n_live;
        }
        live[n_live++] = names[i];
    }
    if (c->t_st.not_answering == 0 || me_live < 0) {
        return;
    }
    attr_cluster_assign(live, n_live, c->partitions, c->assign_ahead);
    for (int p = 0; p < c->partitions; p++) {
        c->t_ahead[p] = (uint8_t)(c->assign_ahead[p] == me_live && c->assign[p] != me);
    }
}

/* One tick: this node renewed, the assignment recomputed, leases renewed, let go, taken. */
static void attr__tick(attr_cluster_t *c)
{
    uint64_t started = uv_hrtime();
    /* What a lease renewed (or taken) in this tick is good for, on this node's clock. */
    uint64_t good_until = started + (uint64_t)c->ttl_ms * ATTR__NS_PER_MS * 4 / 5;
    char key[96];
    snprintf(key, sizeof key, "n.%s", c->node_id);
    uint64_t rev = 0;
    natsStatus s = kvStore_PutString(&rev, c->nodes, key, c->advertise);
    if (s != NATS_OK) {
        attr__publish(c, "cannot renew this node in NATS: %s", attr__err_text(s));
        return;
    }
    attr__node_id_t ids[256]; /* 16.6 KiB of the cluster thread's stack */
    const char *names[256];
    int n = attr__live_nodes(c, ids, names, (int)(sizeof names / sizeof names[0]) - 1);
    if (n < 0) {
        attr__publish(c, "cannot list the cluster's nodes");
        return;
    }
    /* This node is live: it has just put its key. A read of the bucket can miss that put
     * (a replica behind its leader answers it), and a node missing from its own list gave
     * every partition it held away as though the assignment moved them ("handed to"),
     * never counting the leases that a sleep past their TTL had lost. */
    int me = -1;
    for (int i = 0; i < n && me < 0; i++) {
        if (strcmp(names[i], c->node_id) == 0) {
            me = i;
        }
    }
    if (me < 0) {
        me = 0;
        while (me < n && strcmp(names[me], c->node_id) < 0) {
            me++;
        }
        memmove(&names[me + 1], &names[me], (size_t)(n - me) * sizeof names[0]);
        names[me] = c->node_id;
        n++;
    }
    attr_cluster_assign(names, n, c->partitions, c->assign);
    attr__routes_fill(c, names, n, me);
    c->t_st.nodes = n;
    c->t_st.assigned = 0;
    int renewed = 1, down = 0;
    /* First what is ours: renewed, or let go when the assignment gives it to another. */
    for (int p = 0; p < c->partitions; p++) {
        int mine = c->assign[p] == me;
        c->t_st.assigned += mine;
        if (!c->t_owned[p]) {
            continue;
        }
        snprintf(key, sizeof key, "p.%d", p);
        if (!mine) {
            attr__log_own(c, p, 0);
            c->t_owned[p] = 0;
            c->t_st.owned--;
            attr__publish(c, NULL); /* the loop stops using it before it goes */
            (void)attr__lease_release(c, p);
            yw_log(YW_LOG_INFO, "cluster: partition %d handed to %s", p, names[c->assign[p]]);
            continue;
        }
        if (down || !attr__worth_asking(c)) {
            /* NATS went (or a renewal timed out): the rest cannot be renewed either. */
            down = 1;
            renewed = 0;
            attr__lose(c, p, "NATS does not answer");
            continue;
        }
        s = kvStore_UpdateString(&rev, c->leases, key, c->node_id, c->t_rev[p]);
        if (s == NATS_OK) {
            c->t_rev[p] = rev;
        } else {
            renewed = 0;
            down = s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS;
            attr__lose(c, p, attr__err_text(s));
        }
    }
    if (renewed) {
        __atomic_store_n(&c->pub_valid_until_ns, good_until, __ATOMIC_RELEASE);
    }
    /* Then what the assignment gives us and we do not hold yet. */
    for (int p = 0; p < c->partitions && !down && attr__worth_asking(c); p++) {
        if (c->assign[p] == me && !c->t_owned[p]) {
            snprintf(key, sizeof key, "p.%d", p);
            attr__acquire(c, p, key);
            if (c->t_owned[p] &&
                __atomic_load_n(&c->pub_valid_until_ns, __ATOMIC_ACQUIRE) < started) {
                __atomic_store_n(&c->pub_valid_until_ns, good_until, __ATOMIC_RELEASE);
            }
        }
    }
    /* Last: a probe may wait (a paused node), and renewals must not. */
    attr__ahead(c, names, n, down ? -1 : me);
    c->t_st.error[0] = '\0';
    attr__publish(c, NULL);
}

/* Stopping: leases and the node key deleted, so the others take over at once. */
static void attr__leave(attr_cluster_t *c)
{
    char key[96];
    /* Only while NATS answers: without it each delete would wait out its timeout (the
     * leases then expire after their TTL), and stopping must stay quick. */
    int up = c->nc != NULL && natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
    for (int p = 0; p < c->partitions && c->leases != NULL; p++) {
        if (c->t_owned[p]) {
            attr__log_own(c, p, 0);
            if (up && attr__lease_release(c, p) == -EIO) {
                up = 0; /* NATS does not answer: the rest would not either */
            }
            c->t_owned[p] = 0;
        }
    }
    if (up && c->nodes != NULL) {
        snprintf(key, sizeof key, "n.%s", c->node_id);
        (void)kvStore_Delete(c->nodes, key);
    }
}

static void attr__thread(void *arg)
{
    attr_cluster_t *c = arg;
    uint64_t backoff = ATTR__BACKOFF_MIN_MS;
    int joined = 0;
    uint64_t tick_ms = (uint64_t)c->ttl_ms / 4;
    if (tick_ms > ATTR__TICK_MAX_MS) {
        tick_ms = ATTR__TICK_MAX_MS;
    }
    for (;;) {
        if (!joined) {
            int rc = attr__join(c);
            if (rc == -EINVAL) {
                break; /* fatal: published */
            }
            if (rc == 0) {
                joined = 1;
                c->t_st.ready = 1;
                backoff = ATTR__BACKOFF_MIN_MS;
                yw_log(YW_LOG_INFO, "cluster: joined as %s (%d partitions, %d replicas)",
                       c->node_id, c->partitions, c->replicas);
            } else {
                yw_log(YW_LOG_WARN, "cluster: %s; trying again in %llu ms", c->t_st.error,
                       (unsigned long long)backoff);
                if (attr__sleep(c, backoff)) {
                    break;
                }
                backoff = backoff * 2 > ATTR__BACKOFF_MAX_MS ? ATTR__BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
        }
        attr__tick(c);
        if (attr__sleep(c, tick_ms)) {
            break;
        }
    }
    if (joined) {
        attr__leave(c);
    }
    kvStore_Destroy(c->leases);
    kvStore_Destroy(c->nodes);
    kvStore_Destroy(c->meta);
    jsCtx_Destroy(c->js);
    attr__close_nats(c);
    c->leases = c->nodes = c->meta = NULL;
    c->js = NULL;
}

/* ---- the loop side ---- */

static void attr__on_async(uv_async_t *a)
{
    attr_cluster_t *c = a->data;
    uv_mutex_lock(&c->mu);
    int changed = memcmp(&c->st, &c->pub, sizeof c->st) != 0 ||
                  memcmp(c->owned, c->pub_owned, (size_t)c->partitions) != 0;
    c->st = c->pub;
    memcpy(c->owned, c->pub_owned, (size_t)c->partitions);
    attr__routes_copy(&c->routes, &c->pub_routes, c->partitions);
    uv_mutex_unlock(&c->mu);
    if (changed && c->cb != NULL) {
        c->cb(c->arg, &c->st);
    }
}

static void attr__free(attr_cluster_t *c)
{
    for (int i = 0; c->log_mu != NULL && i < c->partitions; i++) {
        uv_mutex_destroy(&c->log_mu[i]);
    }
    free(c->log_mu);
    free(c->log_last);
    free(c->fence_prev);
    free(c->fence_marker);
    uv_mutex_destroy(&c->mu);
    uv_cond_destroy(&c->cond);
    free(c->urls);
    free(c->advertise);
    free(c->tls_ca);
    free(c->creds);
    free(c->t_routes.route);
    free(c->pub_routes.route);
    free(c->routes.route);
    free(c->pub_owned);
    free(c->owned);
    free(c->t_owned);
    free(c->t_rev);
    free(c->assign);
    free(c->t_ahead);
    free(c->assign_ahead);
    free(c);
}

static void attr__on_closed(uv_handle_t *h)
{
    attr__free(h->data);
}

static char *attr__dup_or_null(const char *s)
{
    return (s != NULL && s[0] != '\0') ? strdup(s) : NULL;
}

int attr_cluster_start(uv_loop_t *loop, const attr_cluster_config_t *cfg, attr_cluster_cb cb,
                       void *arg, attr_cluster_t **out, char *err, size_t errlen)
{
    int rc = attr_cluster_config_check(cfg, err, errlen);
    if (rc != 0) {
        return rc;
    }
    attr_cluster_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    size_t np = (size_t)cfg->partitions;
    c->loop = loop;
    c->cb = cb;
    c->arg = arg;
    c->partitions = cfg->partitions;
    c->replicas = cfg->replicas;
    c->ttl_ms = cfg->lease_ttl_ms;
    snprintf(c->node_id, sizeof c->node_id, "%s", cfg->node_id);
    c->urls = strdup(cfg->urls);
    c->advertise = strdup(cfg->advertise);
    c->tls_ca = attr__dup_or_null(cfg->tls_ca);
    c->creds = attr__dup_or_null(cfg->creds);
    c->pub_owned = calloc(np, 1);
    c->owned = calloc(np, 1);
    c->t_owned = calloc(np, 1);
    c->t_rev = calloc(np, sizeof *c->t_rev);
    c->assign = calloc(np, sizeof *c->assign);
    c->t_ahead = calloc(np, 1);
    c->assign_ahead = calloc(np, sizeof *c->assign_ahead);
    c->log_last = calloc(np, sizeof *c->log_last);
    c->fence_prev = calloc(np, sizeof *c->fence_prev);
    c->fence_marker = calloc(np, sizeof *c->fence_marker);
    c->t_routes.route = calloc(np, sizeof *c->t_routes.route);
    c->pub_routes.route = calloc(np, sizeof *c->pub_routes.route);
    c->routes.route = calloc(np, sizeof *c->routes.route);
    c->log_mu = calloc(np, sizeof *c->log_mu);
    if (uv_mutex_init(&c->mu) != 0 || uv_cond_init(&c->cond) != 0) {
        free(c);
        snprintf(err, errlen, "cannot make a mutex");
        return -ENOMEM;
    }
    for (size_t i = 0; c->log_mu != NULL && i < np; i++) {
        if (uv_mutex_init(&c->log_mu[i]) != 0) {
            abort(); /* glibc's mutex init does not fail */
        }
    }
    if (c->urls == NULL || c->advertise == NULL || c->pub_owned == NULL || c->owned == NULL ||
        c->t_owned == NULL || c->t_rev == NULL || c->assign == NULL || c->log_last == NULL ||
        c->t_ahead == NULL || c->assign_ahead == NULL || c->fence_prev == NULL ||
        c->fence_marker == NULL || c->log_mu == NULL || c->t_routes.route == NULL ||
        c->pub_routes.route == NULL || c->routes.route == NULL) {
        attr__free(c);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if ((rc = uv_async_init(loop, &c->async, attr__on_async)) != 0) {
        attr__free(c);
        snprintf(err, errlen, "cluster: %s", uv_strerror(rc));
        return rc;
    }
    c->async.data = c;
    if ((rc = uv_thread_create(&c->thread, attr__thread, c)) != 0) {
        uv_close((uv_handle_t *)&c->async, attr__on_closed);
        snprintf(err, errlen, "cluster: cannot start its thread: %s", uv_strerror(rc));
        return rc;
    }
    c->thread_started = 1;
    *out = c;
    return 0;
}

void attr_cluster_stop(attr_cluster_t *c)
{
    if (c == NULL) {
        return;
    }
    uv_mutex_lock(&c->mu);
    c->stop = 1;
    uv_cond_signal(&c->cond);
    uv_mutex_unlock(&c->mu);
    if (c->thread_started) {
        uv_thread_join(&c->thread);
    }
    c->cb = NULL;
    uv_close((uv_handle_t *)&c->async, attr__on_closed);
}

int attr_cluster_owns(const attr_cluster_t *c, int p)
{
    /* The thread's own renewal time, not the loop's copy of it: a loop busy for a while
     * (engines opening one after another in a failover) has not run the async that
     * copies the status, and would take leases the thread kept renewing for lost. A
     * paused process renews nothing: after SIGCONT this time is past at once. */
    return p >= 0 && p < c->partitions && (c->owned[p] & 1) &&
           uv_hrtime() < __atomic_load_n(&c->pub_valid_until_ns, __ATOMIC_ACQUIRE);
}

int attr_cluster_ahead(const attr_cluster_t *c, int p)
{
    return p >= 0 && p < c->partitions && (c->owned[p] & 2);
}

int attr_cluster_follows(const attr_cluster_t *c, int p, uint64_t last)
{
    if (p < 0 || p >= c->partitions) {
        return 0;
    }
    uint64_t marker = __atomic_load_n(&c->fence_marker[p], __ATOMIC_ACQUIRE);
    uint64_t prev = __atomic_load_n(&c->fence_prev[p], __ATOMIC_ACQUIRE);
    /* Past the marker only this node appends (the fence refuses everyone else): a build
     * after a write of its own that failed reads such records too. */
    return marker != 0 && (last >= marker || last == prev);
}

const char *attr_cluster_route(const attr_cluster_t *c, int p, int *self)
{
    *self = 0;
    if (p < 0 || p >= c->partitions || c->routes.route[p] < 0) {
        return NULL;
    }
    int o = c->routes.route[p];
    *self = o == c->routes.self;
    return c->routes.nodes[o].addr;
}

int attr_cluster_partitions(const attr_cluster_t *c)
{
    return c->partitions;
}

const attr_cluster_status_t *attr_cluster_status(const attr_cluster_t *c)
{
    return &c->st;
}

void attr_cluster_page_key(const attr_cluster_t *c, uint8_t out[32])
{
    memcpy(out, c->page_key, sizeof c->page_key);
}
