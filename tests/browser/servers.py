"""Start and stop a Jupyter server (JupyterLab or Notebook 7) for the browser tests.

Each server gets its own config, runtime and settings folders under a temporary folder, a
random token and a free port on 127.0.0.1, the news pop-up silenced, and the repository on
PYTHONPATH; startup waits for ``/api/status`` and fails with the server's log.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Iterator, NamedTuple

REPO = pathlib.Path(__file__).resolve().parents[2]


class Server(NamedTuple):
    url: str
    token: str
    root: pathlib.Path
    proc: subprocess.Popen


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_server(base: pathlib.Path, app: str, app_args: list[str]) -> Iterator[Server]:
    """Run ``python -m <app>`` (``jupyterlab`` or ``notebook``) until the block ends."""
    root = base / "notebooks"
    root.mkdir()
    settings = base / "settings"
    notif = settings / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True)
    (notif / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        PYTHONPATH=os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        PYTHONUNBUFFERED="1",
    )
    port, token = free_port(), secrets.token_hex(16)
    log_path = base / f"{app}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", app, "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0", *app_args],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            raise RuntimeError(f"{app} did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.2)
    try:
        yield Server(url, token, root, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
