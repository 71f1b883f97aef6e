"""The built wheel ships the heatmap's JavaScript bundle (it went missing from other
projects' wheels more than once)."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
BUNDLE = "dsnotebook/widgets/static/heatmap.js"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-isolation: build with the hatchling/hatch-jupyter-builder of this environment
    # (pip installs them from the test extras); the jupyter-builder hook runs
    # `npm run build` in js/ unless the bundle is already there.
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list(out.glob("dsnotebook-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contains_the_js_bundle(wheel: pathlib.Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert BUNDLE in names, [n for n in names if "widgets" in n]
        js = z.read(BUNDLE).decode("utf-8")
    assert len(js) > 1000
    assert "export" in js and "dsn-heatmap" in js and "msg:custom" in js
    # bundled, no CDN imports
    assert "https://" not in js and "esm.sh" not in js and "cdn" not in js.lower()


def test_wheel_contains_the_widget_python(wheel: pathlib.Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for mod in ("dsnotebook/widgets/__init__.py", "dsnotebook/widgets/heatmap.py", "dsnotebook/widgets/colors.py"):
        assert mod in names


def test_typescript_passes_strict_typecheck() -> None:
    """`npm run typecheck` (tsc --noEmit --strict) in js/."""
    import shutil

    if shutil.which("npm") is None or not (REPO / "js" / "node_modules" / ".bin" / "tsc").exists():
        pytest.skip("needs npm and js/node_modules (npm ci in js/)")
    proc = subprocess.run(["npm", "run", "--silent", "typecheck"], cwd=REPO / "js",
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
