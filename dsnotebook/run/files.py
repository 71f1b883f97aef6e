"""Format version 2 of a saved run, still read by ``Run.open`` (``Run.save`` now writes version 3,
see :mod:`dsnotebook.run.rundir_format`).

Two files: ``run.json`` (metadata, tensors, events, graph, record tables, as strict JSON:
numpy scalars become numbers, non-finite numbers read back as None) and ``stats.npz`` (the
per-step numbers as flat arrays).  Each is written to a temporary name and renamed into
place, so a reader (or a crash while saving) never leaves half a file behind: each file is
either the previous save's or the new one.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np


FORMAT = 2
HEAD, STATS = "run.json", "stats.npz"


def read_run_dir(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(head, arrays) of a directory written by :func:`write_run_dir`; clear errors otherwise."""
    d = pathlib.Path(directory)
    if not (d / HEAD).is_file():
        what = "does not exist" if not d.exists() else f"has no {HEAD}"
        raise FileNotFoundError(f"{d} is not a run directory: it {what} (write one with Run.save)")
    head = json.loads((d / HEAD).read_text())
    fmt = head.get("format")
    if fmt != FORMAT:
        raise ValueError(f"{d / HEAD} has format {fmt!r}; this dsnotebook reads format {FORMAT}")
    if not (d / STATS).is_file():
        raise FileNotFoundError(f"{d} has {HEAD} but no {STATS}: the save did not finish")
    with np.load(d / STATS, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}  # decompress each array once
    return head, arrays
