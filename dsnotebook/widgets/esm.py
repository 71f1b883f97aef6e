"""The one loader of the panels' JavaScript bundles (built by ``npm run build`` in js/).

A widget's ``_esm`` is the bundle's text, not its path: a ``pathlib.Path`` would make
anywidget watch the file (a hot-reload thread per widget class).
"""
from __future__ import annotations

import json
import pathlib

__all__ = ["load_esm", "STATIC"]

#: where esbuild writes the bundles (git-ignored; shipped in the wheel)
STATIC = pathlib.Path(__file__).parent / "static"


def load_esm(name: str, static: pathlib.Path | None = None) -> str:
    """The bundle ``static/<name>.js`` as text, or a small module that says it is missing.

    The text always spans several lines: anywidget takes a one-line string with a dot for a path.
    """
    path = (STATIC if static is None else static) / f"{name}.js"
    try:
        return f"// dsnotebook {name} widget\n" + path.read_text(encoding="utf-8")
    except OSError:
        msg = (f"dsnotebook: the {name} panel's JavaScript bundle is missing (dsnotebook/widgets/static/{name}.js). "
               "Reinstall dsnotebook, or run `npm install && npm run build` in js/.")
        return ("\nexport default { render({ el }) { const p = document.createElement('pre');\n"
                f"  p.className = 'dsn-missing dsn-{name}-missing'; p.textContent = {json.dumps(msg)};\n"
                "  el.appendChild(p); } };\n")
