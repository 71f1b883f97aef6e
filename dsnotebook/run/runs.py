"""A folder of run directories: list them, open them, compare their tables.

``Run.open("runs/")`` on a folder that is not itself a run returns a :class:`RunSet`: the runs
found directly inside it (format version 3 and the older ``run.json`` saves), listed from
their manifests and last segments without reading every step.  ``to_dataframe(table)``
stacks one table of every run (or of the ones named) with a ``run`` column first.
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterator, Mapping

import pandas as pd

from dsnotebook.run.reader import run_dir_state
from dsnotebook.run.rundir_format import HEAD, MANIFEST, list_segments

LIST_COLUMNS = ["run", "state", "model", "steps", "last_step", "created", "last_write", "command", "path"]


def is_run_dir(d: pathlib.Path) -> bool:
    return (d / MANIFEST).is_file() or (d / "run.json").is_file()


def _summary(d: pathlib.Path) -> dict[str, Any]:
    row: dict[str, Any] = {"run": d.name, "path": str(d)}
    if not (d / MANIFEST).is_file():  # a save of format version 2
        try:
            head = json.loads((d / "run.json").read_text())
            row.update(state="finished", model=head.get("meta", {}).get("model"),
                       command=head.get("meta", {}).get("command"), created=head.get("meta", {}).get("started"))
        except (OSError, ValueError):
            row["state"] = "unreadable"
        return row
    try:
        man = json.loads((d / MANIFEST).read_text())
    except (OSError, ValueError):
        return {**row, "state": "unreadable"}
    row.update(model=man.get("model"), created=man.get("created"), command=man.get("command"))
    segs = list_segments(d)
    steps, last, closed = 0, None, None
    for _, p in segs:  # head.json only: a few hundred bytes per segment
        try:
            head = json.loads((p / HEAD).read_text())
        except (OSError, ValueError):
            continue
        n = len(head.get("steps", []))
        steps = n if "reset" in head else steps + n
        if n:
            last = head["steps"][-1]
        closed, row["last_write"] = bool(head.get("closed")), head.get("written")
        if "meta" in head:
            row["model"] = head["meta"].get("model", row["model"])
            row["command"] = head["meta"].get("command", row["command"])
    row.update(steps=steps, last_step=last, state=run_dir_state(d, closed))
    return row


class RunSet(Mapping[str, Any]):
    """The runs in a folder, by name (the sub-folder's name); each opened on first access."""

    def __init__(self, folder: str | os.PathLike[str], keep: int | None = None) -> None:
        self.folder = pathlib.Path(folder)
        self.keep = keep
        self.paths = {p.name: p for p in sorted(self.folder.iterdir()) if p.is_dir() and is_run_dir(p)}
        self._opened: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.paths:
            raise KeyError(f"no run {name!r} in {self.folder}; runs: {', '.join(self.paths) or 'none'}")
        if name not in self._opened:
            from dsnotebook.run.store import Run

            self._opened[name] = Run.open(self.paths[name], keep=self.keep)
        return self._opened[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def list(self) -> pd.DataFrame:
        """One row per run: state (live, finished, crashed), model, steps written, times, command."""
        return pd.DataFrame([_summary(p) for p in self.paths.values()], columns=LIST_COLUMNS)

    def to_dataframe(self, table: str = "grads", runs: list[str] | None = None) -> pd.DataFrame:
        """One table of several runs stacked, with a ``run`` column first (see :func:`compare_frames`)."""
        names = list(self.paths) if runs is None else list(runs)
        return compare_frames({n: self[n] for n in names}, table)

    def __repr__(self) -> str:
        if not self.paths:
            return f"<RunSet {self.folder}: no runs>"
        lines = [f"<RunSet {self.folder}: {len(self.paths)} runs>"]
        for _, r in self.list().iterrows():
            lines.append(f"  {r['run']}: {r['state']}, {r['model']}, {r['steps']} steps written"
                         + (f", last step {r['last_step']}" if r['last_step'] is not None else ""))
        return "\n".join(lines)


def compare_frames(runs: Mapping[str, Any], table: str = "grads") -> pd.DataFrame:
    """``table`` of each run (name -> Run) stacked, with a ``run`` column first."""
    frames = []
    for name, run in runs.items():
        df = run.to_dataframe(table)
        df.insert(0, "run", name)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["run"])
    return pd.concat(frames, ignore_index=True)
