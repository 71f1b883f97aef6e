"""The compression panel in a real JupyterLab, in headless Chromium: the table's rows and bars match
the result's numbers, a constructed slow method is marked worse with its warning, a hostile method
name stays text, the sensitivity chart is drawn, and the "use this model" button hands the model
back to Python."""
from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.browser

HOSTILE = "<img src=x onerror=alert(1)>"

SETUP = f'''import json, time, torch
from torch import nn
import dsnotebook
from dsnotebook.compress import Compressed, Method

class Sleep(nn.Module):
    def forward(self, x):
        time.sleep(0.01)
        return x

class AddSleep(Method):
    key = "add_sleep"
    def apply(self, model, ctx, only=None):
        model.head = nn.Sequential(Sleep(), model.head)
        return Compressed(model, "a 10 ms sleep before the head")

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 32),
                                  nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.body(x))

torch.manual_seed(0)
model = Net()
x = torch.randn(16, 1, 8, 8)
target = model(x).argmax(1)
result = dsnotebook.compress(model, ["magnitude_prune", "channel_prune", AddSleep(name={HOSTILE!r})], x,
                             eval_fn=lambda m: float((m(x).argmax(1) == target).float().mean()), metric="top1",
                             rounds=3, block_s=0.002, threads=1)
chosen = []
'''

SHOW = "result.widget(on_choose=lambda name, m: chosen.append(name))"

STATE = '''print("STATE" + json.dumps({"chosen": result.chosen, "seen": chosen,
      "same": result.chosen_model is result.models.get(result.chosen),
      "size": {k: float(v) for k, v in result.table["size_bytes"].items()},
      "worse": {k: str(v) for k, v in result.table["worse"].items()}}))'''


def _state(nb: Any) -> dict[str, Any]:
    out = nb.run_new_cell(STATE)
    return json.loads(next(l for l in out.splitlines() if l.startswith("STATE"))[5:])


def test_compression_panel(page: Any, lab: Any, nb: Any) -> None:
    lab.write_notebook("compress.ipynb", [SETUP, SHOW])
    nb.open("compress.ipynb")
    nb.run_all()
    nb.wait_done(2, timeout=240)
    page.wait_for_selector(".dsn-compress .dsn-cmp-row", timeout=30000)
    root = page.locator(".dsn-compress")
    assert root.get_attribute("data-rows") == "4"
    methods = page.eval_on_selector_all(".dsn-cmp-row", "rows => rows.map(r => r.dataset.method)")
    assert methods == ["original", "magnitude_prune", "channel_prune", HOSTILE]
    st = _state(nb)

    # bars: size bar length = size / largest size, as Python measured it
    biggest = max(st["size"].values())
    for m in methods:
        frac = page.locator(f".dsn-cmp-row[data-method={json.dumps(m)}] td[data-measure=size] .dsn-cmp-bar")
        assert abs(float(frac.get_attribute("data-frac")) - st["size"][m] / biggest) < 1e-3, m

    # the constructed slow method: latency cells marked worse, its warning under the row, name as text
    slow = page.locator(f".dsn-cmp-row[data-method={json.dumps(HOSTILE)}]")
    assert "b1" in st["worse"][HOSTILE].split(",")
    assert slow.locator("td[data-measure=b1]").get_attribute("data-tone") == "worse"
    assert "slower" in (slow.locator("td[data-measure=b1]").text_content() or "")
    warn = page.locator(".dsn-cmp-warn").all_text_contents()
    assert any(HOSTILE in w and "slower than the original at batch 1" in w for w in warn), warn
    assert page.evaluate("() => document.querySelectorAll('.dsn-compress img').length") == 0
    assert slow.locator(".dsn-cmp-name").text_content() == HOSTILE
    # magnitude pruning: the sparse size beside the dense one; channel pruning: smaller
    assert "as bitmask" in (page.locator(".dsn-cmp-row[data-method=magnitude_prune] td[data-measure=size]")
                            .text_content() or "") or "as csr" in (
        page.locator(".dsn-cmp-row[data-method=magnitude_prune] td[data-measure=size]").text_content() or "")
    assert page.locator(".dsn-cmp-row[data-method=channel_prune] td[data-measure=size]").get_attribute("data-tone") == "better"

    # sensitivity chart: one group per per-layer method, one bar per layer
    groups = page.eval_on_selector_all(".dsn-cmp-sens-group", "gs => gs.map(g => [g.dataset.method, g.querySelectorAll('.dsn-cmp-sensbar').length])")
    assert dict(groups) == {"magnitude_prune": 3, "channel_prune": 2}, groups
    nb.screenshot(root, "compress_panel.png")

    # the button hands the model back to Python
    page.locator(".dsn-cmp-choose[data-method=channel_prune]").click()
    page.wait_for_function("() => document.querySelector('.dsn-compress').dataset.chosen === 'channel_prune'")
    page.wait_for_selector(".dsn-cmp-row.dsn-cmp-chosen[data-method=channel_prune]")
    st = _state(nb)
    assert st["chosen"] == "channel_prune" and st["seen"] == ["channel_prune"] and st["same"], st
    assert "chosen: channel_prune" in (page.locator(".dsn-cmp-statusline").text_content() or "")
    nb.screenshot(root, "compress_panel_chosen.png")
