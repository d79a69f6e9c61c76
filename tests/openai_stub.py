"""A scripted OpenAI-compatible chat server on 127.0.0.1, for tests that drive the real `openai`
client without a network.

    with OpenAIStub(json_reply({"summary": "a dog", "subqueries": [...]})) as stub:
        LLMConfig(base_url=stub.base_url, model="stub-model", api_key="test", max_retries=0)
        ...
        stub.requests[-1]["response_format"]  # what the client sent

Replies are played in order; the last one repeats. ``stub.script(...)`` replaces them.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: object = None  # a dict/list is sent as JSON, a str as it is
    delay_s: float = 0.0  # wait this long before answering (to trip a client timeout)


def chat_reply(content: str | None, *, refusal: str | None = None, finish_reason: str = "stop",
               model: str = "stub-model", delay_s: float = 0.0) -> Reply:
    """A chat.completion whose single message says ``content`` (or refuses)."""
    message = {"role": "assistant", "content": content, "refusal": refusal}
    body = {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    return Reply(200, body, delay_s)


def json_reply(answer: object, **kwargs: object) -> Reply:
    """A chat.completion whose message is ``answer`` as JSON text (structured output)."""
    return chat_reply(json.dumps(answer), **kwargs)


def error_reply(status: int, message: str, *, kind: str = "server_error") -> Reply:
    """An OpenAI-style error body with an HTTP error status."""
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


class OpenAIStub:
    """Serves POST /v1/chat/completions from a script; records each request's JSON body."""

    def __init__(self, *replies: Reply) -> None:
        self._replies = list(replies)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.requests: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # a short poll interval makes shutdown (once per test) quick
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies = list(replies)

    def __enter__(self) -> "OpenAIStub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()  # wakes handlers still sleeping on a slow reply
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_reply(self, request: dict) -> Reply:
        with self._lock:
            self.requests.append(request)
            if not self._replies:
                return error_reply(500, "the stub has no scripted reply")
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(error_reply(404, f"no route {self.path}", kind="not_found"))
                try:
                    request = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    request = {"unparsed": raw.decode("utf-8", "replace")}
                reply = stub._next_reply(request)
                if reply.delay_s and stub._closing.wait(reply.delay_s):
                    return  # shutting down: the client gave up long ago
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = body.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return Handler
