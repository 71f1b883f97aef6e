"""Rows of the ``calls`` table -> the boxes of a flame view (and its text fallback).

Three views of the same rows:

* ``call``: one root call as it ran: x is the time since the call started (from each call's
  ``start_s``), width its wall time (tracing cost subtracted), one box per call;
* ``step``: every call of one training step, merged by call path (root name / child name /
  ...): width is the summed wall time, boxes packed left to right in order of first call;
* ``all``: the same over every retained call.

A box (node) is a dict: ``id``, ``parent`` (id or None), ``name``, ``kind``, ``depth``, ``x``,
``w`` (seconds), ``count`` (calls merged), ``wall`` (summed wall time), ``self`` (wall minus the
children's), ``device`` (summed device time or None), ``errors`` (calls that raised), ``error``
(the last one's text), ``inputs``/``outputs`` (summaries of the last call), ``module`` (the
module path for module calls, to select its node in the dataflow graph), ``call`` (the call id
in ``call`` view), ``steps`` (first and last step).  At most ``max_nodes`` boxes are kept, the
widest first (a parent always before its children).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

__all__ = ["MODES", "roots", "build", "text_tree"]

MODES = ("call", "step", "all")


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _step(v: Any) -> int | None:
    f = _num(v)
    return None if f is None else int(f)


def roots(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls without a (retained) parent, in the order they started."""
    ids = {r["call"] for r in rows}
    out = [r for r in rows if _step(r.get("parent")) is None or _step(r.get("parent")) not in ids]
    return sorted(out, key=lambda r: (_num(r.get("start_s")) or 0.0, r["call"]))


def _children(rows: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    kids: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        p = _step(r.get("parent"))
        if p is not None:
            kids.setdefault(p, []).append(r)
    for v in kids.values():
        v.sort(key=lambda r: (_num(r.get("start_s")) or 0.0, r["call"]))
    return kids


def _node(r: dict[str, Any], nid: str, parent: str | None, depth: int) -> dict[str, Any]:
    wall = _num(r.get("wall_s")) or 0.0
    err = r.get("error")
    return {"id": nid, "parent": parent, "name": str(r.get("name", "")), "kind": str(r.get("kind", "")),
            "depth": depth, "x": 0.0, "w": wall, "count": 1, "wall": wall, "self": wall,
            "device": _num(r.get("device_s")), "errors": 1 if err else 0, "error": err or None,
            "inputs": r.get("inputs") or [], "outputs": r.get("outputs") or [],
            "module": str(r.get("name", "")) if r.get("kind") == "module" else "",
            "call": int(r["call"]), "steps": [_step(r.get("step")), _step(r.get("step"))]}


def _one_call(root: dict[str, Any], kids: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    t0 = _num(root.get("start_s")) or 0.0
    out: list[dict[str, Any]] = []

    def visit(r: dict[str, Any], parent: dict[str, Any] | None, depth: int) -> None:
        n = _node(r, str(r["call"]), None if parent is None else parent["id"], depth)
        start = (_num(r.get("start_s")) or t0) - t0
        if parent is not None:  # inside the parent's box (tracing cost shifts children a little)
            start = min(max(start, parent["x"]), parent["x"] + parent["w"])
            n["w"] = min(n["w"], parent["x"] + parent["w"] - start)
        n["x"] = start
        out.append(n)
        for c in kids.get(int(r["call"]), ()):
            visit(c, n, depth + 1)
        n["self"] = max(0.0, n["wall"] - sum(_num(c.get("wall_s")) or 0.0 for c in kids.get(int(r["call"]), ())))

    visit(root, None, 0)
    return out


def _merged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls merged by path; boxes packed left to right under their parent."""
    kids = _children(rows)
    nodes: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    child_sum: dict[str, float] = {}

    def visit(r: dict[str, Any], parent: str | None, depth: int) -> None:
        nid = f"{parent}/{r.get('kind')}:{r.get('name')}" if parent is not None else f"{r.get('kind')}:{r.get('name')}"
        n = nodes.get(nid)
        if n is None:
            n = nodes[nid] = _node(r, nid, parent, depth)
            order.append(nid)
        else:
            wall = _num(r.get("wall_s")) or 0.0
            n["count"] += 1
            n["wall"] += wall
            n["w"] += wall
            dev = _num(r.get("device_s"))
            if dev is not None:
                n["device"] = (n["device"] or 0.0) + dev
            if r.get("error"):
                n["errors"] += 1
                n["error"] = r.get("error")
            n["inputs"] = r.get("inputs") or n["inputs"]
            n["outputs"] = r.get("outputs") or n["outputs"]
            st = _step(r.get("step"))
            if st is not None:
                lo, hi = n["steps"]
                n["steps"] = [st if lo is None else min(lo, st), st if hi is None else max(hi, st)]
            n["call"] = int(r["call"])
        if parent is not None:
            child_sum[parent] = child_sum.get(parent, 0.0) + (_num(r.get("wall_s")) or 0.0)
        for c in kids.get(int(r["call"]), ()):
            visit(c, nid, depth + 1)

    for r in roots(rows):
        visit(r, None, 0)
    out = [nodes[i] for i in order]
    cursor: dict[str | None, float] = {None: 0.0}
    for n in out:  # parents come before their children in ``order``
        base = cursor.get(n["parent"], 0.0) if n["parent"] is not None else cursor[None]
        n["x"] = base
        if n["parent"] is None:
            cursor[None] = base + n["w"]
        else:
            cursor[n["parent"]] = base + n["w"]
        cursor[n["id"]] = n["x"]
        n["self"] = max(0.0, n["wall"] - child_sum.get(n["id"], 0.0))
    return out


def _limit(nodes: list[dict[str, Any]], max_nodes: int) -> tuple[list[dict[str, Any]], int]:
    if len(nodes) <= max_nodes:
        return nodes, 0
    keep: set[str] = set()
    by_id = {n["id"]: n for n in nodes}
    for n in sorted(nodes, key=lambda n: -n["w"]):
        if len(keep) >= max_nodes:
            break
        chain = []
        cur: dict[str, Any] | None = n
        while cur is not None and cur["id"] not in keep:
            chain.append(cur["id"])
            cur = by_id.get(cur["parent"]) if cur["parent"] is not None else None
        keep.update(chain)
    return [n for n in nodes if n["id"] in keep], len(nodes) - len(keep)


def build(rows: list[dict[str, Any]], mode: str = "call", call_index: int = -1, step: int = -1,
          max_nodes: int = 3000) -> dict[str, Any]:
    """The boxes of one view, plus what the view's controls need: ``nodes``, ``total`` (x extent),
    ``calls`` (root calls available), ``call_index`` (the one shown), ``steps`` (steps with calls),
    ``step`` (the one shown), ``hidden`` (boxes left out to stay under ``max_nodes``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rs = roots(rows)
    steps = sorted({s for s in (_step(r.get("step")) for r in rows) if s is not None})
    out: dict[str, Any] = {"calls": len(rs), "steps": steps, "call_index": -1, "step": -1, "hidden": 0}
    nodes: list[dict[str, Any]] = []
    if mode == "call" and rs:
        i = call_index if 0 <= call_index < len(rs) else len(rs) - 1
        out["call_index"] = i
        nodes = _one_call(rs[i], _children(rows))
    elif mode == "step" and steps:
        s = step if step in steps else steps[-1]
        if step >= 0 and step not in steps:  # the latest step with calls at or before it
            s = max([t for t in steps if t <= step], default=steps[0])
        out["step"] = s
        nodes = _merged([r for r in rows if _step(r.get("step")) == s])
    elif mode == "all":
        nodes = _merged(rows)
    nodes, out["hidden"] = _limit(nodes, max_nodes)
    out["nodes"] = nodes
    out["total"] = max((n["x"] + n["w"] for n in nodes if n["depth"] == 0), default=0.0)
    return out


def _fmt(s: float | None) -> str:
    if s is None:
        return "-"
    a = abs(s)
    if a >= 1:
        return f"{s:.2f} s"
    if a >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def text_tree(view: dict[str, Any], width: int = 100) -> str:
    """The boxes as an indented tree (terminals, plain scripts, ``repr``)."""
    nodes = view.get("nodes", [])
    if not nodes:
        return "no traced calls yet (decorate a function with @dsnotebook.trace)"
    lines = []
    for n in nodes:
        label = "  " * n["depth"] + (n["name"] if n["kind"] != "op" else f"[op] {n['name']}")
        extra = f" x{n['count']}" if n["count"] > 1 else ""
        dev = f"  device {_fmt(n['device'])}" if n["device"] is not None else ""
        err = f"  raised {n['error']}" if n["errors"] else ""
        shapes = ", ".join("x".join(map(str, d.get("shape", []))) or "scalar" for d in n["outputs"][:3] if "shape" in d)
        lines.append(f"{label[:60]:<60} {_fmt(n['wall']):>10}{extra}{dev}{err}" + (f"  -> {shapes}" if shapes else ""))
    if view.get("hidden"):
        lines.append(f"... {view['hidden']} smaller boxes not shown")
    return "\n".join(line[:width + 60] for line in lines)
