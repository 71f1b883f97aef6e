"""The tracer's options -> its probes, in the order the step clock calls them.

Order matters (see :mod:`dsnotebook.core.probe`): gradient statistics first (the
non-finite probe listens for them), the timing probe last so its clocks bracket only the
user's work.  Under torch.distributed (initialised, more than one rank) the rank statistics
probe takes the place of the gradient and update probes: it computes the same statistics of
each rank's local tensors and gathers them to rank 0 as whole-job statistics.
"""
from __future__ import annotations

import os
from typing import Sequence

from dsnotebook.calls.probe import CallsProbe
from dsnotebook.core.probe import Probe
from dsnotebook.dataflow.episodes import MODES as NONFINITE_MODES
from dsnotebook.dataflow.probes import ActivationProbe, GraphProbe, NonFiniteProbe
from dsnotebook.distributed import RankStatsProbe, world
from dsnotebook.kernels.choice import BACKENDS
from dsnotebook.params.gradients import GradStatsProbe
from dsnotebook.params.schedule import AUTO, Schedule
from dsnotebook.params.updates import UpdateStatsProbe
from dsnotebook.perf.timing import TimingProbe
from dsnotebook.run.writer_probe import RunDirProbe


DEFAULT_BUDGET = 0.02  # every="auto": recording costs at most 2% of the step time


def _positive(name: str, value: object, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be {'None or ' if optional else ''}a positive integer, got {value!r}")


def validate_options(*, every: object, backend: object, activations_every: object, nonfinite: object,
                     profile_every: object, budget: object = None, update_every: object = 1) -> None:
    """Clear errors for bad options before anything is hooked."""
    if every != AUTO:
        _positive("every", every)
    _positive("update_every", update_every)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not 0 < budget < 1):
        raise ValueError(f"budget must be a fraction of the step time between 0 and 1 (0.02 = 2%), got {budget!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    _positive("activations_every", activations_every, optional=True)
    if nonfinite not in NONFINITE_MODES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_MODES}, got {nonfinite!r}")
    _positive("profile_every", profile_every, optional=True)


def default_probes(*, every: int | str, track_updates: bool, capture_graph: bool, activations_every: int | None,
                   nonfinite: str, profile_every: int | None, extra: Sequence[Probe] = (),
                   log_dir: str | os.PathLike[str] | None = None, budget: float | None = None,
                   update_every: int = 1) -> list[Probe]:
    ranks = [p for p in extra if isinstance(p, RankStatsProbe)]
    job = world()
    if ranks or (job is not None and job.size > 1):
        rank_probe = ranks[0] if ranks else RankStatsProbe()
        rank_probe.configure(every=every if isinstance(every, int) else 1, track_updates=track_updates,
                            align_every=activations_every, update_every=update_every)
        probes: list[Probe] = [rank_probe]
        extra = [p for p in extra if p is not rank_probe]
    else:
        schedule = Schedule(every, budget if budget is not None else DEFAULT_BUDGET)
        probes = [GradStatsProbe(schedule)]
        if track_updates:
            # update_every=k: update statistics on every k-th recorded step (their memory traffic, 16 B per
            # fp32 parameter, is ~1-2% of a host-bound bf16 GPT-2 step on an H200 by itself)
            probes.append(UpdateStatsProbe(schedule, stride=update_every))
    if capture_graph:
        probes.append(GraphProbe())
    if activations_every is not None:
        probes.append(ActivationProbe(activations_every))
    if nonfinite != "off":
        probes.append(NonFiniteProbe(nonfinite))
    if not any(isinstance(p, CallsProbe) for p in extra):  # @dsnotebook.trace calls made while attached
        probes.append(CallsProbe())  # (idle without them); one given in probes= replaces it
    for p in extra:
        if not isinstance(p, Probe):
            raise TypeError(f"probes must be dsnotebook.core.probe.Probe instances, got {type(p).__qualname__}")
        probes.append(p)
    if profile_every is not None:
        probes.append(TimingProbe(profile_every))
    if log_dir is not None and (job is None or job.rank == 0):  # rank 0 holds the whole job's statistics
        probes.append(RunDirProbe(log_dir))  # last: its flush writes after every other probe's
    return probes
