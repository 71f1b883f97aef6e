"""Distributed training: rank-aware statistics, whole-job values, per-rank phases, stragglers.

Under torchrun / DDP / FSDP2 the tracer adds :class:`RankStatsProbe` by itself (see
:mod:`dsnotebook.trace.compose`): every rank computes statistics of the tensors it holds and
rank 0 gathers them into whole-job statistics (its Run's ``grads`` and ``updates`` tables)
plus per-rank tables (``rank_grads``, ``rank_phases``).  :mod:`~dsnotebook.distributed.ranks`
reads those as DataFrames with a ``rank`` column: per-phase skew and a straggler score per rank.
"""
from dsnotebook.distributed.hang import describe_hang
from dsnotebook.distributed.probe import RankStatsProbe
from dsnotebook.distributed.ranks import (STRAGGLER_SCORE, phase_skew, rank_grads, rank_phase_table, rank_phases,
                                          straggler, straggler_scores)
from dsnotebook.distributed.world import World, world

__all__ = ["RankStatsProbe", "World", "world", "rank_phases", "rank_phase_table", "phase_skew", "straggler_scores",
           "straggler", "rank_grads", "STRAGGLER_SCORE", "describe_hang"]
