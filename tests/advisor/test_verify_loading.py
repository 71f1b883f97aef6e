"""A/B of data loading measures each arm's steady state, alone (loaders whose physical limit is known).

``time.sleep`` never returns early, so a loader's throughput has a hard floor: a dataset
whose items sleep 2 ms, in batches of 32, cannot deliver a batch faster than 64 ms per
worker, so two workers cannot beat 32 ms per step.  A verification that reports a faster
variant measured something else: a queue the variant filled while the baseline was timed,
or a block too short to see the workers' rounds.  Regression for verify() reporting x51
for 2 workers at 2-step blocks (x2.6 at 8, x3.3 at 20) where the steady state is about x2.1.
"""
from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dsnotebook.advisor.variants import Prefetcher, Variant, faster_loading
from dsnotebook.advisor.verify import verify_variant
from helpers import classification_step

ITEM_S, BATCH = 0.002, 32


@pytest.fixture(autouse=True)
def one_compute_thread():
    """The loader's worker processes need cores: compute threads competing with them for the
    cores of a small, busy machine make the step itself erratic (not what is measured here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
FLOOR_2_WORKERS = ITEM_S * BATCH / 2  # seconds per step: two workers, each loading whole batches


class SleepyItems(Dataset):
    """2 ms per item (decoding, storage latency): a batch of 32 takes at least 64 ms to load."""

    def __len__(self) -> int:
        return 640

    def __getitem__(self, i: int):
        time.sleep(ITEM_S)
        return torch.full((16,), float(i % 7)), i % 4


def tiny_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    return model, opt, classification_step(model, opt)


@pytest.mark.parametrize("block", [2, 8, 20])
def test_two_workers_cannot_beat_their_physical_limit_at_any_block_length(block):
    model, opt, step = tiny_step()
    loader = DataLoader(SleepyItems(), batch_size=BATCH, shuffle=True)  # num_workers=0: the baseline
    pairs = 3 if block == 2 else 2
    res = verify_variant(Variant("2 workers", make_data=faster_loading(2, False)), step, model=model,
                         optimizer=opt, data=loader, steps=block * pairs, pairs=pairs)
    # Each timed block is no faster than its loader can deliver: no prefetched queue was drained.
    assert min(res.pair_speedups) > 0 and res.variant_s >= 0.9 * FLOOR_2_WORKERS, str(res)
    assert res.baseline_s >= 0.95 * 2 * FLOOR_2_WORKERS, str(res)
    assert 1.4 <= res.speedup <= res.baseline_s / (0.9 * FLOOR_2_WORKERS), str(res)
    assert res.verdict == "verified" and res.loss_drift == 0.0, str(res)


def test_a_prefetch_thread_cannot_beat_its_producer():
    """One thread loading 20 ms items can hide the compute, never the loading: >= 20 ms per step."""
    class SlowIterable:
        def __iter__(self):
            for i in range(100):
                time.sleep(0.02)
                yield torch.full((4, 16), float(i)), torch.zeros(4, dtype=torch.long)

    model, opt, step = tiny_step()
    res = verify_variant(Variant("prefetch", make_data=faster_loading(2, False)), step, model=model,
                         optimizer=opt, data=SlowIterable(), steps=6, pairs=3)
    assert res.variant_s >= 0.9 * 0.02 and min(res.pair_speedups) > 0, str(res)


def test_no_loading_goes_on_outside_the_arms_own_blocks():
    """After a verification, the variant's prefetch thread and worker processes are gone."""
    model, opt, step = tiny_step()
    before = {t.ident for t in threading.enumerate()}
    loader = DataLoader(SleepyItems(), batch_size=4, shuffle=True, num_workers=1, persistent_workers=True)
    verify_variant(Variant("2 workers", make_data=faster_loading(2, False)), step, model=model, optimizer=opt,
                   data=loader, steps=2, pairs=1)
    verify_variant(Variant("prefetch", make_data=lambda d: Prefetcher(d, depth=2)), step, model=model,
                   optimizer=opt, data=[(torch.zeros(4, 16), torch.zeros(4, dtype=torch.long))] * 3, steps=2,
                   pairs=1)
    assert not [t for t in threading.enumerate() if t.name == "dsnotebook-prefetch"]
    assert {t.ident for t in threading.enumerate()} <= before | {None}
    import multiprocessing

    assert not multiprocessing.active_children()
    assert loader.persistent_workers and list(loader)  # the user's loader still works


def test_prefetcher_hands_on_errors_and_stops_when_closed():
    def broken():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(Prefetcher(broken()))
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = iter(Prefetcher(endless(), depth=2))
    assert next(it) == 0
    it.close()
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n  # nothing is loaded after close()
