"""The one converter to plain JSON values, for everything sent to a widget or written to a file.

Records mix Python numbers with numpy and torch scalars (a median is a ``numpy.float64``, a
count a ``numpy.int64``), arrays, tuples and dtypes; ``json.dumps`` refuses most of them and
writes NaN/Infinity, which browsers' ``JSON.parse`` rejects.  :func:`to_json` turns any of
them into dicts with string keys, lists, str, int, float, bool and None: non-finite floats
become None (a missing value), numpy/torch scalars Python numbers, arrays and tensors
(nested) lists, tuples and sets lists, anything else (a dtype, a device, a path) its ``str``.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["to_json"]


def to_json(v: Any) -> Any:
    """``v`` as plain JSON values (see the module docstring); never raises for odd leaves."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, str):
        return str(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return [to_json(x) for x in sorted(v, key=repr)]
    if hasattr(v, "tolist") and callable(v.tolist) and hasattr(v, "shape"):  # numpy / torch scalars and arrays
        try:
            return to_json(v.detach().cpu().tolist() if hasattr(v, "detach") else v.tolist())
        except (TypeError, ValueError, RuntimeError):
            return str(v)
    if hasattr(v, "item") and callable(v.item):  # other scalar types that know their Python value
        try:
            return to_json(v.item())
        except (TypeError, ValueError, RuntimeError):
            return str(v)
    return str(v)
