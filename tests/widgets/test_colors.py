"""The colour scale: dsnotebook/widgets/colors.py is the source of truth; the TypeScript
copy (js/src/shared/colors.ts) must give the same LUT index for the same float32 value."""
from __future__ import annotations

import json
import math
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

from dsnotebook.widgets import GraphWidget, HeatmapWidget, colors

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_lut_is_256_rgb_entries_sent_as_bytes() -> None:
    assert len(colors.LUT) == 256 and len(colors.LUT_BYTES) == 768
    assert colors.LUT[0] == (0x44, 0x01, 0x54) and colors.LUT[255] == (0xFD, 0xE7, 0x24)
    assert HeatmapWidget(rows=[{"name": "fc.weight"}]).lut == colors.LUT_BYTES
    assert GraphWidget(None).lut == colors.LUT_BYTES


def test_color_for() -> None:
    lut = colors.LUT
    assert colors.color_for(1e-3, 1e-3, 10.0, True) == lut[0]
    assert colors.color_for(10.0, 1e-3, 10.0, True) == lut[255]
    assert colors.color_for(0.1, 1e-3, 10.0, True) == lut[128]  # 2 of 4 decades -> 127.5 -> 128
    assert colors.color_for(5.0, 0.0, 10.0, False) == lut[128]
    assert colors.color_for(0.0, 1e-3, 10.0, True) == lut[0]  # zero on a log scale: bottom
    assert colors.color_for(-1.0, 1e-3, 10.0, True) == lut[0]
    assert colors.color_for(math.inf, 1e-3, 10.0, True) == lut[255]
    assert colors.color_for(-math.inf, 0.0, 1.0, False) == lut[0]
    assert colors.color_for(100.0, 1e-3, 10.0, True) == lut[255]  # clamped
    assert colors.color_for(math.nan, 0.0, 1.0, False) == colors.NAN_RGB
    assert colors.color_for(0.5, math.nan, math.nan, False) == colors.NAN_RGB
    assert colors.color_for(3.0, 3.0, 3.0, True) == lut[128]  # zero-width range: middle


def test_value_range() -> None:
    v = np.array([np.nan, 0.0, -1.0, 1e-4, 5.0, np.inf, -np.inf], dtype=np.float32)
    assert colors.value_range(v, log=True) == (float(np.float32(1e-4)), 5.0)
    assert colors.value_range(v, log=False) == (-1.0, 5.0)
    assert all(math.isnan(x) for x in colors.value_range([np.nan, 0.0], log=True))


def test_javascript_scale_mirrors_python(tmp_path: pathlib.Path) -> None:
    """colors.ts and colors.py give the same LUT index for the same float32 values."""
    esbuild = REPO / "js" / "node_modules" / ".bin" / "esbuild"
    node = shutil.which("node")
    if node is None or not esbuild.exists():
        pytest.skip("needs node and js/node_modules (npm install in js/)")
    bundle = tmp_path / "colors.mjs"
    subprocess.run([str(esbuild), str(REPO / "js" / "src" / "shared" / "colors.ts"), "--bundle", "--format=esm",
                    f"--outfile={bundle}"], check=True, capture_output=True)
    rng = np.random.default_rng(7)
    values = np.concatenate([
        (10.0 ** rng.uniform(-9, 6, 4000)).astype(np.float32),
        rng.normal(0, 3, 2000).astype(np.float32),
        np.array([0, -0.0, np.nan, np.inf, -np.inf, 1e-38, 3.4e38], dtype=np.float32),
    ])
    cases = []
    for i, v in enumerate(values):
        lo, hi = sorted(rng.choice(values[:4000], 2))
        log = bool(i % 2)
        cases.append([float(v), float(lo), float(hi), log])
    def enc(x: float) -> float | str:  # JSON has no NaN/Infinity
        return x if math.isfinite(x) else repr(x)

    (tmp_path / "cases.json").write_text(json.dumps([[enc(c[0]), c[1], c[2], c[3]] for c in cases]))
    script = tmp_path / "run.mjs"
    script.write_text(
        f"import {{ colorIndex }} from {json.dumps(str(bundle))};\n"
        "import { readFileSync } from 'node:fs';\n"
        "const dec = (x) => x === 'nan' ? NaN : x === 'inf' ? Infinity : x === '-inf' ? -Infinity : x;\n"
        f"const cases = JSON.parse(readFileSync({json.dumps(str(tmp_path / 'cases.json'))}, 'utf8'));\n"
        "process.stdout.write(JSON.stringify(cases.map(([v, lo, hi, log]) => colorIndex(dec(v), lo, hi, log))));\n"
    )
    out = subprocess.run([node, str(script)], check=True, capture_output=True, text=True).stdout
    js = json.loads(out)
    py = [colors.color_index(*c) for c in cases]
    py = [-1 if i is None else i for i in py]
    diff = [(c, a, b) for c, a, b in zip(cases, py, js) if a != b]
    # identical but for (rare) last-ulp differences of log10 at a rounding boundary
    assert len(diff) <= len(cases) // 1000, diff[:5]
    assert all(abs(a - b) <= 1 for _, a, b in diff), diff[:5]
