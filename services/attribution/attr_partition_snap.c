/*
 * attr_partition_snap.c — a partition's snapshot: its view as of a record of its log,
 * packed into the cluster's snapshot stream, and loaded back. See attr_partition.h.
 *
 * The packed form (one byte string, cut into chunks of ATTR__SNAP_CHUNK bytes):
 *   "YWSNAP01"
 *   per file: le32 name length (> 0) | name | le64 size | the file's bytes
 *   le32 0
 * Names are "attribution.db" and "exposures/<segment file>": the database and the
 * exposure log's segments not yet pruned (index files are rebuilt by the engine). The
 * head carries the total and the CRC-32C of the whole string.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "common/codec.h"
#include "common/errmsg.h"
#include "common/fileio.h"
#include "services/attribution/attr_crc32c.h"
#include "services/attribution/attr_partition.h"
#include "services/attribution/attr_xlog.h"

#define ATTR__SNAP_MAGIC "YWSNAP01"
/* Bytes per chunk: well under NATS's default max_payload (1 MiB). */
#define ATTR__SNAP_CHUNK (512u << 10)
/* A name in the packed form: at most this long. */
#define ATTR__SNAP_NAME_MAX 200

/* ---- packing (publishing) ---- */

typedef struct {
    attr_cluster_t *c;
    int p;
    attr_cluster_snap_t *head;
    unsigned char *buf;
    size_t n;
    char *err;
    size_t errlen;
} attr__packer_t;

static int attr__pack_flush(attr__packer_t *pk)
{
    if (pk->n == 0) {
        return 0;
    }
    uint64_t seq = 0;
    int rc = attr_cluster_snap_chunk(pk->c, pk->p, pk->head, pk->head->chunks, pk->buf, pk->n, &seq,
                                     pk->err, pk->errlen);
    if (rc != 0) {
        return rc;
    }
    if (pk->head->chunks == 0) {
        pk->head->first = seq;
    }
    pk->head->chunks++;
    pk->n = 0;
    return 0;
}

static int attr__pack(attr__packer_t *pk, const void *data, size_t len)
{
    const unsigned char *b = data;
    pk->head->crc = attr_crc32c(pk->head->crc, data, len);
    pk->head->bytes += len;
    while (len > 0) {
        size_t k = ATTR__SNAP_CHUNK - pk->n < len ? ATTR__SNAP_CHUNK - pk->n : len;
        memcpy(pk->buf + pk->n, b, k);
        pk->n += k;
        b += k;
        len -= k;
        if (pk->n == ATTR__SNAP_CHUNK) {
            int rc = attr__pack_flush(pk);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* Packs file `path` under `name`. */
static int attr__pack_file(attr__packer_t *pk, const char *path, const char *name)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int rc = -errno;
        yw_errmsg_printf(pk->err, pk->errlen, "%s: %s", path, strerror(-rc));
        if (fd >= 0) {
            close(fd);
        }
        return rc;
    }
    unsigned char hdr[4 + ATTR__SNAP_NAME_MAX + 8];
    size_t nl = strlen(name);
    yw_put_le32(hdr, (uint32_t)nl);
    memcpy(hdr + 4, name, nl);
    yw_put_le64(hdr + 4 + nl, (uint64_t)sb.st_size);
    int rc = attr__pack(pk, hdr, 4 + nl + 8);
    static __thread unsigned char io[1u << 16];
    for (uint64_t off = 0; rc == 0 && off < (uint64_t)sb.st_size;) {
        size_t want = (uint64_t)sb.st_size - off < sizeof io ? (size_t)((uint64_t)sb.st_size - off)
                                                             : sizeof io;
        rc = yw_pread_exact(fd, io, want, off);
        if (rc == 0) {
            rc = attr__pack(pk, io, want);
            off += want;
        } else {
            yw_errmsg_printf(pk->err, pk->errlen, "%s: read: %s", path, strerror(-rc));
        }
    }
    close(fd);
    return rc;
}

/* Packs the regular files of `dir` (sub: the name prefix, "" or "exposures/"). */
static int attr__pack_dir(attr__packer_t *pk, const char *dir, const char *sub)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        int rc = -errno;
        yw_errmsg_printf(pk->err, pk->errlen, "%s: %s", dir, strerror(-rc));
        return rc;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char path[4400], name[ATTR__SNAP_NAME_MAX + 1];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (e->d_name[0] == '.' || lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            continue;
        }
        if ((size_t)snprintf(name, sizeof name, "%s%s", sub, e->d_name) >= sizeof name) {
            continue; /* nothing of the view has such a name */
        }
        rc = attr__pack_file(pk, path, name);
    }
    closedir(d);
    return rc;
}

/* Removes the exposure log segments the database says were pruned (their counts are in
 * the database; the engine would drop the files at open anyway). */
static int attr__drop_pruned(const char *dir, char *err, size_t errlen)
{
    uint64_t *seqs = NULL;
    size_t n = 0;
    int rc = attr_partition_pruned(dir, &seqs, &n, err, errlen);
    char xdir[4200], path[4200];
    snprintf(xdir, sizeof xdir, "%s/exposures", dir);
    for (size_t i = 0; i < n; i++) {
        attr_xlog_path(xdir, seqs[i], path, sizeof path);
        (void)unlink(path);
    }
    free(seqs);
    return rc;
}

int attr_partition_snapshot(attr_cluster_t *c, int p, const char *dir, attr_partition_snap_t *out,
                            char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    attr_cluster_snap_t prev;
    int rc = attr_cluster_snap_head(c, p, &prev, err, errlen);
    if (rc == -ENOENT) {
        rc = 0;
    }
    if (rc != 0) {
        return rc;
    }
    attr_partition_built_t built;
    rc = attr_partition_remove_dir(dir);
    if (rc == 0) {
        rc = attr_partition_materialize(c, p, dir, &built, err, errlen);
    }
    if (rc == 0 && built.last <= prev.covers) {
        out->skipped = 1; /* nothing since the latest snapshot */
    } else if (rc == 0) {
        rc = attr__drop_pruned(dir, err, errlen);
    }
    if (rc == 0 && !out->skipped) {
        attr_cluster_snap_t head = {.covers = built.last, .nonce = uv_hrtime()};
        attr__packer_t pk = {.c = c,
                             .p = p,
                             .head = &head,
                             .buf = malloc(ATTR__SNAP_CHUNK),
                             .err = err,
                             .errlen = errlen};
        char xdir[4200];
        snprintf(xdir, sizeof xdir, "%s/exposures", dir);
        rc = pk.buf == NULL ? -ENOMEM : attr__pack(&pk, ATTR__SNAP_MAGIC, 8);
        if (rc == 0) {
            rc = attr__pack_dir(&pk, dir, "");
        }
        if (rc == 0) {
            rc = attr__pack_dir(&pk, xdir, "exposures/");
        }
        if (rc == 0) {
            unsigned char end[4] = {0, 0, 0, 0};
            rc = attr__pack(&pk, end, sizeof end);
        }
        if (rc == 0) {
            rc = attr__pack_flush(&pk);
        }
        free(pk.buf);
        if (rc == 0) {
            rc = attr_cluster_snap_commit(c, p, &head, prev.head_seq, err, errlen);
            out->purge_failed = rc == 1;
            rc = rc == 1 ? 0 : rc;
        }
        out->covers = head.covers;
        out->bytes = head.bytes;
        out->chunks = head.chunks;
        out->log_records = built.records;
    }
    int rrc = attr_partition_remove_dir(dir);
    return rc != 0 ? rc : rrc;
}

/* ---- unpacking (loading) ---- */

typedef struct {
    const char *dir;
    enum { U_MAGIC, U_NAMELEN, U_NAME, U_SIZE, U_DATA, U_END } state;
    unsigned char hdr[ATTR__SNAP_NAME_MAX + 8];
    size_t have, want;
    uint64_t left, off;
    char name[ATTR__SNAP_NAME_MAX + 1];
    int fd;
    uint32_t crc;
    uint64_t bytes;
    char *err;
    size_t errlen;
} attr__unpacker_t;

/* A name the packed form may carry: "attribution.db"-like or "exposures/<file>", plain. */
static int attr__name_ok(const char *name)
{
    const char *base = strncmp(name, "exposures/", 10) == 0 ? name + 10 : name;
    if (base[0] == '\0' || base[0] == '.') {
        return 0;
    }
    for (const char *q = base; *q; q++) {
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              *q == '.' || *q == '-' || *q == '_')) {
            return 0;
        }
    }
    return 1;
}

static int attr__unpack_bad(attr__unpacker_t *u, const char *what)
{
    yw_errmsg_printf(u->err, u->errlen, "snapshot: %s at byte %llu", what,
                     (unsigned long long)u->bytes);
    return -EPROTO;
}

/* Takes the next header field once `want` bytes of it are in. */
static int attr__unpack_field(attr__unpacker_t *u)
{
    switch (u->state) {
    case U_MAGIC:
        if (memcmp(u->hdr, ATTR__SNAP_MAGIC, 8) != 0) {
            return attr__unpack_bad(u, "not a snapshot (its magic)");
        }
        u->state = U_NAMELEN;
        u->want = 4;
        break;
    case U_NAMELEN: {
        uint32_t nl = yw_get_le32(u->hdr);
        if (nl == 0) {
            u->state = U_END;
            u->want = 0;
        } else if (nl > ATTR__SNAP_NAME_MAX) {
            return attr__unpack_bad(u, "a name too long");
        } else {
            u->state = U_NAME;
            u->want = nl;
        }
        break;
    }
    case U_NAME: {
        memcpy(u->name, u->hdr, u->want);
        u->name[u->want] = '\0';
        if (!attr__name_ok(u->name)) {
            return attr__unpack_bad(u, "a file name not of a partition's view");
        }
        u->state = U_SIZE;
        u->want = 8;
        break;
    }
    case U_SIZE: {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", u->dir, u->name);
        u->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (u->fd < 0) {
            int rc = -errno;
            yw_errmsg_printf(u->err, u->errlen, "%s: %s", path, strerror(-rc));
            return rc;
        }
        u->left = yw_get_le64(u->hdr);
        u->off = 0;
        u->state = U_DATA;
        break;
    }
    default:
        break;
    }
    u->have = 0;
    return 0;
}

/* The file being written is complete: synced, closed; the next name follows. */
static int attr__unpack_file_done(attr__unpacker_t *u)
{
    int rc = fdatasync(u->fd) == 0 ? 0 : -errno;
    close(u->fd);
    u->fd = -1;
    if (rc != 0) {
        yw_errmsg_printf(u->err, u->errlen, "%s/%s: sync: %s", u->dir, u->name, strerror(-rc));
        return rc;
    }
    u->state = U_NAMELEN;
    u->want = 4;
    u->have = 0;
    return 0;
}

static int attr__unpack(void *arg, const void *data, size_t len)
{
    attr__unpacker_t *u = arg;
    const unsigned char *b = data;
    u->crc = attr_crc32c(u->crc, data, len);
    while (len > 0) {
        int rc = 0;
        if (u->state == U_END) {
            return attr__unpack_bad(u, "bytes after the end");
        }
        if (u->state == U_DATA) {
            size_t k = u->left < len ? (size_t)u->left : len;
            if ((rc = yw_pwrite_all(u->fd, b, k, u->off)) != 0) {
                yw_errmsg_printf(u->err, u->errlen, "%s/%s: write: %s", u->dir, u->name,
                                 strerror(-rc));
                return rc;
            }
            u->off += k;
            u->left -= k;
            b += k;
            len -= k;
            u->bytes += k;
            if (u->left == 0 && (rc = attr__unpack_file_done(u)) != 0) {
                return rc;
            }
            continue;
        }
        size_t k = u->want - u->have < len ? u->want - u->have : len;
        memcpy(u->hdr + u->have, b, k);
        u->have += k;
        b += k;
        len -= k;
        u->bytes += k;
        if (u->have == u->want && (rc = attr__unpack_field(u)) != 0) {
            return rc;
        }
        if (u->state == U_DATA && u->left == 0 && (rc = attr__unpack_file_done(u)) != 0) {
            return rc;
        }
    }
    return 0;
}

int attr_partition_load_snapshot(attr_cluster_t *c, int p, const char *dir, uint64_t *covers,
                                 uint64_t *bytes, int64_t *time_ns, char *err, size_t errlen)
{
    *covers = 0;
    *bytes = 0;
    *time_ns = 0;
    attr_cluster_snap_t head;
    int rc = attr_cluster_snap_head(c, p, &head, err, errlen);
    if (rc == -ENOENT) {
        return 0; /* none yet: the log from its start */
    }
    if (rc != 0) {
        return rc;
    }
    char xdir[4200];
    snprintf(xdir, sizeof xdir, "%s/exposures", dir);
    if (mkdir(xdir, 0750) != 0 && errno != EEXIST) {
        rc = -errno;
        yw_errmsg_printf(err, errlen, "%s: cannot create: %s", xdir, strerror(-rc));
        return rc;
    }
    attr__unpacker_t u = {
        .dir = dir, .state = U_MAGIC, .want = 8, .fd = -1, .err = err, .errlen = errlen};
    rc = attr_cluster_snap_read(c, p, &head, attr__unpack, &u, err, errlen);
    if (u.fd >= 0) {
        close(u.fd);
    }
    if (rc == 0 && (u.state != U_END || u.bytes != head.bytes || u.crc != head.crc)) {
        yw_errmsg_printf(err, errlen,
                         "partition %d: the snapshot covering %llu does not check (%llu of %llu "
                         "bytes, CRC %08x, its head says %08x)",
                         p, (unsigned long long)head.covers, (unsigned long long)u.bytes,
                         (unsigned long long)head.bytes, u.crc, head.crc);
        rc = -EPROTO;
    }
    if (rc == 0) {
        rc = yw_fsync_dir(xdir);
    }
    if (rc == 0) {
        rc = yw_fsync_dir(dir);
    }
    if (rc == 0) {
        *covers = head.covers;
        *bytes = head.bytes;
        *time_ns = head.time_ns;
    }
    return rc;
}
