"""Whole-job statistics from every rank's local ones: exact, because they add.

Per tensor, the ranks that hold a distinct part of it (``FLAG_CONTRIBUTES``: every shard once;
for a replicated tensor, one rank) are combined: sums, sums of squares, non-finite and zero
counts, histogram counts and update sums add; abs-max is the maximum.  So under FSDP2 the
combined norm of a sharded gradient is the unsharded gradient's norm, and its histogram is
the unsharded histogram, count for count.  Only the float64 sums can differ from a single pass
over the whole tensor, by the rounding of adding a few partial sums.
"""
from __future__ import annotations

import numpy as np

from dsnotebook.distributed.packing import FLAG_CONTRIBUTES, FLAG_UPDATE
from dsnotebook.stats.reference import COL_ABSMAX, GRAD_COLS, HIST_OFFSET, UPDATE_COLS

__all__ = ["combine"]


def combine(per_rank: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, grads [k, GRAD_COLS], update_ids, updates [m, UPDATE_COLS])`` of the whole job.

    ``per_rank``: each rank's :data:`~dsnotebook.distributed.packing.RECORD` rows of one step;
    ``n``: the number of tensors.  A tensor appears when some contributing rank recorded it.
    """
    grads = np.zeros((n, GRAD_COLS), np.float64)
    seen = np.zeros(n, bool)
    upd = np.zeros((n, UPDATE_COLS), np.float64)
    useen = np.zeros(n, bool)
    for rows in per_rank:
        rows = rows[(rows["flags"] & FLAG_CONTRIBUTES) != 0]
        if not len(rows):
            continue
        ids = rows["id"].astype(np.intp)
        g = rows["grad"]
        absmax = grads[ids, COL_ABSMAX].copy()
        np.add.at(grads[:, :HIST_OFFSET], ids, g)
        grads[ids, COL_ABSMAX] = np.maximum(absmax, g[:, COL_ABSMAX])
        np.add.at(grads[:, HIST_OFFSET:], ids, rows["hist"].astype(np.float64))
        seen[ids] = True
        with_upd = (rows["flags"] & FLAG_UPDATE) != 0
        if with_upd.any():
            np.add.at(upd, ids[with_upd], rows["upd"][with_upd])
            useen[ids[with_upd]] = True
    ids = np.flatnonzero(seen).astype(np.int32)
    uids = np.flatnonzero(useen).astype(np.int32)
    return ids, grads[ids], uids, upd[uids]
