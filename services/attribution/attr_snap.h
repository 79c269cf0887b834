/*
 * attr_snap.h — the start-up snapshot: what attribution's start-up would otherwise
 * recompute from every stored exposure and order (the rollups per creator and day, the
 * credits of every order under the five models, the conversion filter), written at a
 * clean stop and read back at the next start instead of recomputing.
 *
 * A snapshot is derived data, never the truth: it is used only when it provably
 * describes the data it is loaded beside, and deleted as soon as it is loaded (the
 * state moves on from there; a later crash recomputes from zero). It is used when
 *
 *   - the file is whole (magic, version, lengths, CRC-32C of the header and the body);
 *   - its marks equal what the data says at start-up: the settings in force, the
 *     conversions (count, highest seq, sum of amounts), the refunds (count, sum), the
 *     stored candidate touches (count), the pruned segments and the exposure log's end
 *     (the last segment and its size);
 *   - its own figures add up: under every model the credits of all creators plus the
 *     unattributed conversions are exactly one credit per stored conversion, and their
 *     money is exactly the conversions' amounts less the refunds
 *     (attr_snap_check_totals()).
 *
 * Anything else — no file, a torn or foreign one, other marks, figures that do not add
 * up — and the service recomputes from zero, as it always could. Format: little-endian,
 * "YWSNAP02", see attr_snap.c.
 */
#ifndef ATTR_SNAP_H
#define ATTR_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "services/attribution/attr_state.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The file's name under --data-dir. */
#define ATTR_SNAP_FILE "attribution.snapshot"

/** What the data said when the snapshot was written; compared at start-up. */
typedef struct st_attr_snap_marks_t {
    attr_settings_t settings;
    uint64_t conversions, max_seq;
    attr_sum_t amount_sum;
    uint64_t refunds;
    attr_sum_t refund_sum;
    uint64_t touches;
    uint64_t pruned_n, pruned_hash; /* the pruned segments: how many, a hash of the list */
    uint64_t log_last_seg, log_last_size;
} attr_snap_marks_t;

/** A snapshot read and checked (attr_snap_read()), not yet loaded. */
typedef struct st_attr_snap_t attr_snap_t;

/** Hash of the pruned segments' list (attr_snap_marks_t.pruned_hash). */
uint64_t attr_snap_pruned_hash(const uint64_t *pruned, size_t n);

/**
 * The exposure log's end in `exp_dir`: the highest seg-<n>.log and its size (0, 0: no
 * segment). 0 or a negative errno.
 */
int attr_snap_log_end(const char *exp_dir, uint64_t *seg, uint64_t *size);

/**
 * Writes the state's rollups, credits and conversion filter with `marks` to `path`:
 * aside, synced, renamed, the directory synced. Blocking (shutdown). 0 or a negative
 * errno with a message in `err`.
 */
int attr_snap_write(const char *path, const attr_state_t *st, const attr_snap_marks_t *marks,
                    char *err, size_t errlen);

/**
 * Reads `path` and checks that it is whole. 0 with `*out` (free with attr_snap_free()),
 * -ENOENT when there is none, another negative errno with a message in `err`.
 */
int attr_snap_read(const char *path, attr_snap_t **out, char *err, size_t errlen);

/**
 * Whether the snapshot's marks equal `now`. 1: yes; 0: no, with the first difference in
 * `why`.
 */
int attr_snap_matches(const attr_snap_t *s, const attr_snap_marks_t *now, char *why, size_t len);

/**
 * Loads the snapshot into `st`, which must hold no creator and no rollup yet (its
 * settings may be set). 0, or a negative errno (`st` then holds part of it: free it).
 */
int attr_snap_load(const attr_snap_t *s, attr_state_t *st, char *err, size_t errlen);

/**
 * Whether the credits in `st` add up against `marks`: under every model, the credits of
 * every creator and day plus the unattributed conversions are marks->conversions
 * credits, and their money marks->amount_sum - marks->refund_sum. 1: yes; 0: no (why).
 */
int attr_snap_check_totals(const attr_state_t *st, const attr_snap_marks_t *marks, char *why,
                           size_t len);

void attr_snap_free(attr_snap_t *s);

#ifdef __cplusplus
}
#endif
#endif
