"""Colour scale shared by the heatmap and graph widgets (Python is the source of truth).

The 256-entry LUT is sent to the browser as a trait; ``color_for`` mirrors the
TypeScript scale in ``js/src/shared/colors.ts`` step for step, so tests (and users) can
compute exactly which RGB a value gets on the canvas.

Scale definition (identical in both languages, all arithmetic in float64):

* ``vmin``/``vmax``: min/max of the finite values (linear) or of the finite,
  strictly positive values (log) of the selected statistic over the columns held.
* NaN (no data) -> ``NAN_RGB``.
* log scale: ``t = (log10(v) - log10(vmin)) / (log10(vmax) - log10(vmin))``;
  values ``<= 0`` count as below ``vmin`` (t = 0).
  linear scale: ``t = (v - vmin) / (vmax - vmin)``.
* ``+inf`` -> t = 1, ``-inf`` -> t = 0; a zero-width range (vmin == vmax) -> t = 0.5;
  no finite range at all (vmin/vmax NaN) -> ``NAN_RGB``.
* ``index = floor(clamp(t, 0, 1) * 255 + 0.5)``; the colour is ``LUT[index]``.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

__all__ = [
    "LUT",
    "LUT_BYTES",
    "NAN_RGB",
    "MARK_RGB",
    "color_index",
    "color_for",
    "value_range",
]

# viridis, 256 entries (the same palette as bokeh.palettes.Viridis256)
_VIRIDIS_HEX = (
    "44015444025544035745055845065A45085B46095C460B5E460C5F460E61470F62471163471265471466471567471669"
    "47186A48196B481A6C481C6E481D6F481E70482071482172482273482374472575472676472777472878472A79472B7A"
    "472C7B462D7C462F7C46307D46317E45327F45347F453580453681443781443982433A83433B83433C84423D84423E85"
    "4240854141864142864043874044873F45873F47883E48883E49893D4A893D4B893D4C893C4D8A3C4E8A3B508A3B518A"
    "3A528B3A538B39548B39558B38568B38578C37588C37598C365A8C365B8C355C8C355D8C345E8D345F8D33608D33618D"
    "32628D32638D31648D31658D31668D30678D30688D2F698D2F6A8D2E6B8E2E6C8E2E6D8E2D6E8E2D6F8E2C708E2C718E"
    "2C728E2B738E2B748E2A758E2A768E2A778E29788E29798E287A8E287A8E287B8E277C8E277D8E277E8E267F8E26808E"
    "26818E25828E25838D24848D24858D24868D23878D23888D23898D22898D228A8D228B8D218C8D218D8C218E8C208F8C"
    "20908C20918C1F928C1F938B1F948B1F958B1F968B1E978A1E988A1E998A1E998A1E9A891E9B891E9C891E9D881E9E88"
    "1E9F881EA0871FA1871FA2861FA38620A48520A58521A68521A78422A78423A88323A98224AA8225AB8126AC8127AD80"
    "28AE7F29AF7F2AB07E2BB17D2CB17D2EB27C2FB37B30B47A32B57A33B67935B77836B87738B97639B9763BBA753DBB74"
    "3EBC7340BD7242BE7144BE7045BF6F47C06E49C16D4BC26C4DC26B4FC36951C46853C56755C66657C66559C7645BC862"
    "5EC96160C96062CA5F64CB5D67CC5C69CC5B6BCD596DCE5870CE5672CF5574D05477D05279D1517CD24F7ED24E81D34C"
    "83D34B86D44988D5478BD5468DD64490D64392D74195D73F97D83E9AD83C9DD93A9FD938A2DA37A5DA35A7DB33AADB32"
    "ADDC30AFDC2EB2DD2CB5DD2BB7DD29BADE27BDDE26BFDF24C2DF22C5DF21C7E01FCAE01ECDE01DCFE11CD2E11BD4E11A"
    "D7E219DAE218DCE218DFE318E1E318E4E318E7E419E9E419ECE41AEEE51BF1E51CF3E51EF6E61FF8E621FAE622FDE724"
)

LUT: tuple[tuple[int, int, int], ...] = tuple(
    (int(_VIRIDIS_HEX[i : i + 2], 16), int(_VIRIDIS_HEX[i + 2 : i + 4], 16), int(_VIRIDIS_HEX[i + 4 : i + 6], 16))
    for i in range(0, len(_VIRIDIS_HEX), 6)
)
assert len(LUT) == 256
#: the LUT as 768 bytes (r, g, b, r, g, b, ...) - the form the browser receives
LUT_BYTES: bytes = bytes(c for rgb in LUT for c in rgb)
#: cells without data (NaN)
NAN_RGB: tuple[int, int, int] = (128, 128, 128)
#: outline/cross drawn over cells whose non-finite count is > 0
MARK_RGB: tuple[int, int, int] = (255, 32, 32)


def color_index(value: float, vmin: float, vmax: float, log: bool) -> int | None:
    """LUT index of ``value`` on the scale [vmin, vmax]; None means NaN colour."""
    v = float(value)
    lo = float(vmin)
    hi = float(vmax)
    if math.isnan(v) or math.isnan(lo) or math.isnan(hi):
        return None
    if v == math.inf:
        t = 1.0
    elif v == -math.inf:
        t = 0.0
    elif hi <= lo:
        t = 0.5
    elif log:
        if v <= 0.0:
            t = 0.0
        else:
            llo = math.log10(lo)
            t = (math.log10(v) - llo) / (math.log10(hi) - llo)
    else:
        t = (v - lo) / (hi - lo)
    t = min(1.0, max(0.0, t))
    return int(math.floor(t * 255.0 + 0.5))


def color_for(value: float, vmin: float, vmax: float, log: bool) -> tuple[int, int, int]:
    """The RGB the heatmap draws for ``value`` (exactly as the JavaScript scale does)."""
    idx = color_index(value, vmin, vmax, log)
    return NAN_RGB if idx is None else LUT[idx]


def value_range(values: Iterable[float] | np.ndarray, log: bool) -> tuple[float, float]:
    """(vmin, vmax) of the finite (linear) / finite positive (log) values; NaNs if none.

    Values are taken as float32, as the browser holds them.
    """
    a = np.asarray(values, dtype=np.float32).ravel()
    a = a[np.isfinite(a)]
    if log:
        a = a[a > 0]
    if a.size == 0:
        return (math.nan, math.nan)
    return (float(a.min()), float(a.max()))
