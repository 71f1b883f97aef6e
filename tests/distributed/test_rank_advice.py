"""The distributed advisor rules on constructed runs: a straggler, work that moves between ranks,
communication-bound DDP and FSDP2 steps; silent on an even job."""
from __future__ import annotations

from dsnotebook.advisor import advise
from fakes import H100, HEALTHY_PHASES, perf_run


def _phase_rows(step: int, rank: int, **sec: float) -> list[dict]:
    base = {"data": 0.002, "fwd": 0.02, "bwd": 0.04, "opt": 0.004, "comm": 0.005, "tracer": 0.0005, "other": 0.001,
            "fwd_compute": 0.02, "bwd_compute": 0.04}
    base.update(sec)
    base["step"] = sum(base[k] for k in ("data", "fwd", "bwd", "opt", "tracer", "other"))
    return [{"step": step, "rank": rank, "phase": k, "seconds": v} for k, v in base.items()]


def _job(rows_of_step, steps: int = 6, phases=None, **meta):
    run = perf_run(phases=phases, meta={"ranks": {"world_size": 4, "backend": "nccl", "mode": "ddp", **meta}})
    for s in range(steps):
        run.add_records("rank_phases", [r for rank in range(4) for r in rows_of_step(s, rank)])
    return run


def _by_rule(run):
    return {s.rule: s for s in advise(run, H100)}


def test_a_slow_loader_on_one_rank_is_the_straggler_with_data_loading_advice():
    run = _job(lambda s, r: _phase_rows(s, r, data=0.030) if r == 3 else _phase_rows(s, r, bwd=0.068))
    rules = _by_rule(run)
    s = rules["straggler_rank"]
    assert s.evidence["rank"] == 3 and s.evidence["excess_phase"] == "data" and s.category == "distributed"
    assert s.title.startswith("Rank 3 is the straggler") and "num_workers" in s.snippet and not s.can_verify
    assert "uneven_work" not in rules  # the same rank every step is a straggler, not uneven work


def test_a_slow_gpu_is_named_by_its_compute():
    run = _job(lambda s, r: _phase_rows(s, r, bwd=0.07, bwd_compute=0.07) if r == 1 else _phase_rows(s, r, bwd=0.07))
    s = _by_rule(run)["straggler_rank"]
    assert s.evidence["rank"] == 1 and s.evidence["excess_phase"] == "bwd" and "nvidia-smi" in s.snippet


def test_compute_that_moves_between_ranks_is_uneven_work():
    def rows(s, r):
        heavy = r == s % 4  # a different rank gets the costly batch each step
        return _phase_rows(s, r, fwd_compute=0.035 if heavy else 0.02, fwd=0.035)
    rules = _by_rule(_job(rows, steps=9))
    s = rules["uneven_work"]
    assert s.evidence["compute_spread_share"] > 0.1 and s.evidence["slowest_rank_share"] <= 0.6
    assert "straggler_rank" not in rules


def test_an_even_job_gets_no_rank_advice():
    rules = _by_rule(_job(lambda s, r: _phase_rows(s, r, data=0.002 + 0.0001 * r)))
    assert not {"straggler_rank", "uneven_work", "ddp_communication"} & set(rules)


def test_communication_bound_fsdp2_gets_fsdp_advice_with_every_ranks_share():
    run = perf_run(phases=dict(HEALTHY_PHASES, comm=0.08),
                   meta={"ranks": {"world_size": 2, "backend": "nccl", "mode": "fsdp2"}})
    run.add_records("rank_phases", [r for s in range(3) for rank in range(2)
                                    for r in _phase_rows(s, rank, comm=0.05)])
    s = _by_rule(run)["ddp_communication"]
    assert "FSDP2" in s.title and "reduce_dtype=torch.bfloat16" in s.snippet and "powerSGD" not in s.snippet
    assert set(s.evidence["comm_share_by_rank"]) == {0, 1} and not s.can_verify
    assert "every rank must change together" in s.verify_hint


def test_waiting_for_a_straggler_is_not_communication():
    # rank 0's all-reduce "takes" 40 ms: it waits there for rank 1, whose own all-reduce takes 1 ms
    run = _job(lambda s, r: _phase_rows(s, r, data=0.040, comm=0.001) if r == 1 else
               _phase_rows(s, r, comm=0.041, other=0.041), phases=dict(HEALTHY_PHASES, comm=0.08))
    rules = _by_rule(run)
    assert "ddp_communication" not in rules and rules["straggler_rank"].evidence["rank"] == 1


def test_communication_bound_ddp_offers_bf16_compression_and_powersgd():
    run = perf_run(phases=dict(HEALTHY_PHASES, comm=0.08), meta={"distributed": {"world_size": 8, "backend": "nccl"}})
    s = _by_rule(run)["ddp_communication"]
    assert "bf16_compress_hook" in s.snippet and "powerSGD" in s.snippet and s.evidence["world_size"] == 8
