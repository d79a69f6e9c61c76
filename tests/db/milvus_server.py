"""A real standalone Milvus server for the tests: PyPI's ``milvus`` package ships one (an embedded etcd and
local storage, Linux); it is started on free local ports in a folder of the test's and stopped by its
process group. Where the package or its binary cannot run, ``start`` says why, and the tests skip with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

START_S = 120  # about 30 s on an idle 2-core machine; a loaded one takes longer
PORT_FLAGS = ("--proxy-port", "--etcd-port", "--root-coord-port", "--proxy-internal-port", "--query-coord-port",
              "--query-node-port", "--index-coord-port", "--index-node-port", "--data-coord-port", "--data-node-port")


class Unavailable(Exception):
    """The server cannot run here; the message says why."""


@dataclass(frozen=True)
class MilvusServer:
    uri: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        """The wrapper and the server binary it starts share a process group: both go."""
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait_s)
                time.sleep(0.5)  # the binary outlives its wrapper by a moment
            except subprocess.TimeoutExpired:
                continue
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start(folder: Path) -> MilvusServer:
    try:
        import milvus  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"the milvus package is not installed ({exc}): pip install milvus") from exc
    ports = free_ports(len(PORT_FLAGS))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "server.log"
    args = [arg for flag, port in zip(PORT_FLAGS, ports) for arg in (flag, str(port))]
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-c", "import sys\nfrom milvus import main\nsys.exit(main())",
                                    "--data", str(folder / "data"), *args], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = MilvusServer(f"http://127.0.0.1:{ports[0]}", process, log)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: MilvusServer) -> None:
    from pymilvus import MilvusClient

    deadline = time.monotonic() + START_S
    while True:
        if server.process.poll() is not None:
            raise Unavailable(f"milvus-server exited with {server.process.returncode}: "
                              f"{server.log.read_text(errors='replace')[-600:]}")
        try:
            client = MilvusClient(uri=server.uri, timeout=5)
            client.list_collections()
            client.close()
            return
        except Exception:  # noqa: BLE001 - not up yet: any failure means "ask again"
            if time.monotonic() > deadline:
                raise Unavailable(f"milvus-server did not answer within {START_S} s; its log: {server.log}")
            time.sleep(1)
