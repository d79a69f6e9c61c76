"""The GPU worker's app served on a free 127.0.0.1 port (uvicorn in a thread), and a plan that needs a DB
picture: for the worker's tests and the studies spread over served workers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import uvicorn

from rdm.plan import ConditioningPlan, PlanItem


@contextlib.contextmanager
def serving(app):
    """Run ``app`` on a free 127.0.0.1 port for the duration of the block."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def plan_with_reference():
    return ConditioningPlan(prompt="a dog on a sofa", mode="exp4", items=(
        PlanItem(kind="text", weight=0.6, source="summary", text="a dog on a sofa"),
        PlanItem(kind="image", weight=0.4, source="reference", image_id=3, subquery="a sofa", score=0.4)))
