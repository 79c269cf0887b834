/* attr_partition.c — a partition's log into a directory, and back. See attr_partition.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw() */
#endif
#include "services/attribution/attr_partition.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/codec.h"
#include "common/errmsg.h"
#include "common/store.h"
#include "services/attribution/attr_exposure_store.h"
#include "services/attribution/attr_store.h"
#include "services/attribution/attr_xlog.h"

/* Bytes of the exposure log per "xlog" record: well under NATS's default max_payload. */
#define ATTR__XLOG_PIECE (512u << 10)

/* ---- shipping ---- */

int attr_partition_ship_xlog(void *arg, uint64_t seg, int64_t created_ns, uint64_t off,
                             const void *bytes, size_t len)
{
    attr_partition_ship_t *ps = arg;
    for (size_t done = 0; done < len;) {
        size_t n = len - done < ATTR__XLOG_PIECE ? len - done : ATTR__XLOG_PIECE;
        if (ps->cap < ATTR_PARTITION_XLOG_HDR + n) {
            unsigned char *b = realloc(ps->buf, ATTR_PARTITION_XLOG_HDR + ATTR__XLOG_PIECE);
            if (b == NULL) {
                ps->failed = 1;
                return -ENOMEM;
            }
            ps->buf = b;
            ps->cap = ATTR_PARTITION_XLOG_HDR + ATTR__XLOG_PIECE;
        }
        unsigned char *buf = ps->buf;
        yw_put_le64(buf, seg);
        yw_put_le64(buf + 8, (uint64_t)created_ns);
        yw_put_le64(buf + 16, off + done);
        memcpy(buf + ATTR_PARTITION_XLOG_HDR, (const unsigned char *)bytes + done, n);
        char err[256];
        uint64_t seq = 0;
        int rc = attr_cluster_append(ps->cluster, ps->partition, "xlog", buf,
                                     ATTR_PARTITION_XLOG_HDR + n, &seq, err, sizeof err);
        if (rc != 0) {
            ps->failed = 1;
            return rc;
        }
        ps->appends++;
        ps->bytes += ATTR_PARTITION_XLOG_HDR + n;
        done += n;
    }
    return 0;
}

void attr_partition_ship_free(attr_partition_ship_t *ps)
{
    free(ps->buf);
    ps->buf = NULL;
    ps->cap = 0;
}

int attr_partition_ship_db(void *arg, const void *changeset, size_t len, char *err, size_t errlen)
{
    attr_partition_ship_t *ps = arg;
    uint64_t seq = 0;
    int rc =
        attr_cluster_append(ps->cluster, ps->partition, "db", changeset, len, &seq, err, errlen);
    if (rc != 0) {
        ps->failed = 1;
        return rc;
    }
    ps->appends++;
    ps->bytes += len;
    return 0;
}

/* ---- materializing ---- */

typedef struct {
    attr_xlog_placer_t placer;
    sqlite3 *db;
    uint64_t records, bytes;
    char *err;
    size_t errlen;
} attr__mat_t;

static int attr__apply(void *arg, uint64_t seq, const char *kind, const void *data, size_t len)
{
    attr__mat_t *m = arg;
    m->records++;
    m->bytes += len;
    if (strcmp(kind, "xlog") == 0) {
        if (len < ATTR_PARTITION_XLOG_HDR) {
            yw_errmsg_printf(m->err, m->errlen, "record %llu: a short xlog record",
                             (unsigned long long)seq);
            return -EPROTO;
        }
        const unsigned char *b = data;
        int rc = attr_xlog_place(&m->placer, yw_get_le64(b), (int64_t)yw_get_le64(b + 8),
                                 yw_get_le64(b + 16), b + ATTR_PARTITION_XLOG_HDR,
                                 len - ATTR_PARTITION_XLOG_HDR);
        if (rc != 0) {
            yw_errmsg_printf(m->err, m->errlen, "record %llu: placing exposure log bytes: %s",
                             (unsigned long long)seq, strerror(-rc));
        }
        return rc;
    }
    if (strcmp(kind, "db") == 0) {
        return yw_store_apply_changeset(m->db, data, len, m->err, m->errlen);
    }
    return 0; /* "lease", and kinds a later version may add for the view's speed only */
}

/* One try of attr_partition_materialize(): `dir` does not exist. */
static int attr__materialize(attr_cluster_t *c, int p, const char *dir, attr_partition_built_t *b,
                             char *err, size_t errlen)
{
    char path[4200];
    if (mkdir(dir, 0750) != 0) {
        int rc = -errno;
        yw_errmsg_printf(err, errlen, "%s: cannot create: %s", dir, strerror(-rc));
        return rc;
    }
    int rc = attr_partition_load_snapshot(c, p, dir, &b->covers, &b->snap_bytes, &b->snap_time_ns,
                                          err, errlen);
    if (rc != 0) {
        return rc;
    }
    snprintf(path, sizeof path, "%s/exposures", dir);
    if (mkdir(path, 0750) != 0 && errno != EEXIST) {
        rc = -errno;
        yw_errmsg_printf(err, errlen, "%s: cannot create: %s", path, strerror(-rc));
        return rc;
    }
    attr__mat_t m = {.err = err, .errlen = errlen};
    attr_xlog_placer_init(&m.placer, path);
    snprintf(path, sizeof path, "%s/attribution.db", dir);
    yw_store_config_t cfg = {
        .path = path, .migrations = attr_migrations, .n_migrations = ATTR_N_MIGRATIONS};
    rc = yw_store_open_file(&cfg, &m.db, err, errlen);
    if (rc != 0) {
        return rc;
    }
    /* One transaction for the whole replay: the copy is thrown away if it fails. */
    (void)sqlite3_exec(m.db, "BEGIN", NULL, NULL, NULL);
    rc = attr_cluster_read(c, p, b->covers, attr__apply, &m, &b->last, err, errlen);
    if (rc == 0 && sqlite3_exec(m.db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        yw_errmsg_printf(err, errlen, "%s: commit: %s", path, sqlite3_errmsg(m.db));
        rc = -EIO;
    }
    int prc = attr_xlog_placer_finish(&m.placer);
    if (rc == 0 && prc != 0) {
        yw_errmsg_printf(err, errlen, "exposure log copy: %s", strerror(-prc));
        rc = prc;
    }
    sqlite3_close(m.db);
    b->records = m.records;
    b->bytes = m.bytes;
    return rc;
}

int attr_partition_materialize(attr_cluster_t *c, int p, const char *dir,
                               attr_partition_built_t *built, char *err, size_t errlen)
{
    /* A snapshot replaced while it was read, or the log purged under a newer one
     * (-ESTALE): again from the newest. Snapshots are minutes apart; a few tries do. */
    int rc = -ESTALE;
    for (int attempt = 0; attempt < 5 && rc == -ESTALE; attempt++) {
        memset(built, 0, sizeof *built);
        rc = attempt == 0 ? 0 : attr_partition_remove_dir(dir);
        if (rc == 0) {
            rc = attr__materialize(c, p, dir, built, err, errlen);
        }
    }
    return rc;
}

/*
 * Reads dir/attribution.db (read-only): its pruned segments into *seqs, *n (the caller
 * frees them), and its settings into *settings unless NULL. Returns 0, or a negative
 * errno with `err`.
 */
static int attr__read_db(const char *dir, uint64_t **seqs, size_t *n, attr_settings_t *settings,
                         char *err, size_t errlen)
{
    *seqs = NULL;
    *n = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/attribution.db", dir);
    sqlite3 *db = NULL;
    const char *what = "pruned segments";
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK ? 0 : -EIO;
    if (rc == 0) {
        rc = attr_store_read_pruned(db, seqs, n);
    }
    if (rc == 0 && settings != NULL) {
        what = "settings";
        rc = attr_store_read_settings(db, settings) < 0 ? -EIO : 0;
    }
    if (rc != 0) {
        yw_errmsg_printf(err, errlen, "%s: %s: %s", path, what,
                         rc == -ENOMEM ? "out of memory"
                         : db != NULL  ? sqlite3_errmsg(db)
                                       : "cannot open");
        free(*seqs);
        *seqs = NULL;
        *n = 0;
    }
    sqlite3_close(db);
    return rc;
}

int attr_partition_pruned(const char *dir, uint64_t **seqs, size_t *n, char *err, size_t errlen)
{
    return attr__read_db(dir, seqs, n, NULL, err, errlen);
}

int attr_partition_index(const char *dir, uint32_t run_exposures, uint64_t *indexed, char *err,
                         size_t errlen)
{
    *indexed = 0;
    /* The engine's settings with the pruned segments: its join horizon decides which
     * exposures the files index for joins. */
    uint64_t *pruned = NULL;
    size_t n_pruned = 0;
    attr_settings_t settings;
    int rc = attr__read_db(dir, &pruned, &n_pruned, &settings, err, errlen);
    if (rc != 0) {
        return rc;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    char xdir[4200];
    snprintf(xdir, sizeof xdir, "%s/exposures", dir);
    attr_exposure_store_stats_t st;
    rc = attr_exposure_store_index(xdir, run_exposures, &settings, pruned, n_pruned, now, &st, err,
                                   errlen);
    free(pruned);
    *indexed = st.tail_events;
    return rc;
}

static int attr__rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int attr_partition_remove_dir(const char *dir)
{
    if (nftw(dir, attr__rm, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) {
        return -errno;
    }
    return 0;
}
