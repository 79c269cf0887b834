/*
 * attr_xidx_int.h — private to the index files' two files (attr_xidx.c: writing,
 * opening, lookups, listing; attr_xidx_merge.c: sequential reads of a file's sections
 * and the k-way merge): the open file's structure, the buffered writer, the fences and
 * the pieces of the format both write. See attr_xidx.h for the format. Nothing else
 * includes it.
 */
#ifndef ATTR_XIDX_INT_H
#define ATTR_XIDX_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "services/attribution/attr_xidx.h"

/** Buffered I/O of writes and merges. */
#define ATTR_XIDX__BUF (256u << 10)

/** An open index file (immutable but for its reference count). */
struct st_attr_xidx_t {
    _Atomic int refs;
    int fd;
    attr_xmeta_t meta;
    uint64_t off[2]; /* file offsets of the join and dedup sections */
    uint64_t rollup_off, seg_off;
    uint64_t *fences[2];
    uint64_t n_fences[2];
    char path[];
};

/** A buffered writer with a running CRC (of everything put). */
typedef struct st_attr__xw_t {
    int fd;
    uint64_t pos; /* file offset of buf[0] */
    unsigned char *buf;
    size_t len;
    uint32_t crc;
    int rc;
    uint64_t synced; /* bytes handed to the disk so far (sync_file_range) */
} attr__xw_t;

/** Fences being gathered: the hash of every ATTR_XIDX_BLOCK-th entry. */
typedef struct st_attr__fences_t {
    uint64_t *f;
    size_t n, cap;
} attr__fences_t;

/** Whether entry a sorts before b (hash, then segment, then offset). */
int attr_xidx__xent_less(const attr_xent_t *a, const attr_xent_t *b);

/** Appends `n` bytes to the writer (errors are kept in w->rc). */
void attr_xidx__xw_put(attr__xw_t *w, const void *p, size_t n);

/** Adds a fence. 0 or -ENOMEM. */
int attr_xidx__fence_add(attr__fences_t *fc, uint64_t h);

/** The bytes of a rollup row with a creator of `creator_len` bytes (padded to 8). */
size_t attr_xidx__rollup_size(uint32_t creator_len);

/** Writes one rollup row. */
void attr_xidx__put_rollup(attr__xw_t *w, const attr_xrollup_t *r);

/** Writes one seg row. */
void attr_xidx__put_seg(attr__xw_t *w, const attr_xseg_t *s);

/**
 * Creates the temporary file of a new index (its name into `tmp`) and a writer past its
 * header. 0 or a negative errno.
 */
int attr_xidx__xcreate(const char *dir, const attr_xmeta_t *m, char *tmp, size_t tmplen,
                       attr__xw_t *w);

/**
 * Ends a new index: writes its fences (join, dedup) and header, syncs, renames it into
 * place (its name into `path`). Closes and frees the writer. 0 or a negative errno.
 */
int attr_xidx__xfinish(const char *dir, attr_xmeta_t *m, attr__xw_t *w,
                       const attr__fences_t fences[2], const char *tmp, char *path, size_t pathlen);

#endif
