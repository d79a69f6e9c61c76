"""The dashboard served as `make run` serves it (`python -m dashboard.serve`) on a free loopback port, against
a DB with runs, studies and jobs in a scratch folder, and the Chromium that visits it: the browser tests and
bench/browser.py start both from here."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from tiny_db import ENV_CLEARED

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120
CHROMIUM = Path("/usr/bin/chromium")  # Debian's (`make browser`), driven by Playwright
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(db: Path, tmp: Path) -> Iterator[str]:
    """Serve the dashboard on ``db`` (tiny backend, no LLM or GPU worker), its log in ``tmp``/streamlit.log;
    yields its URL once it answers, and stops it and the job worker a page started afterwards."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_CLEARED}
    env.update(RDM_DB=str(db), RDM_RUNS=str(tmp / "runs"), RDM_STUDIES=str(tmp / "studies"),
               RDM_JOBS=str(tmp / "jobs"), RDM_BACKEND="tiny", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS="1")
    port = free_port()
    with open(tmp / "streamlit.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dashboard.serve", "--server.address", "127.0.0.1", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                        if reply.read() == b"ok":
                            break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start:\n{(tmp / 'streamlit.log').read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            proc.kill()
            with contextlib.suppress(OSError, ValueError):  # the job worker a page started
                os.kill(int((tmp / "jobs" / "worker.pid").read_text()), signal.SIGTERM)
