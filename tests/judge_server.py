"""A small OpenAI-compatible chat-completions server for the judge tests (stdlib ``http.server``, loopback).

It judges deterministically from the prompt, so answers are checkable: the
response with more occurrences of ``WORD`` wins, then the longer one, then A.
It finds the two responses between the default template's ``<response_a>`` /
``<response_b>`` tags. Faults are injected by setting attributes:

- ``statuses``: HTTP statuses the next requests get instead of an answer (429, 500, 503, 400...);
- ``malformed``: how many of the next answers have no verdict line;
- ``biased``: always answer "A" (a judge whose verdict follows the position: orders disagree);
- ``delay``: seconds to wait before answering (timeouts, concurrency);
- ``garbage``: answer with text that is never a verdict;
- ``required_key``: the model list (``GET /v1/models``, the labeler's preflight) wants this key.

Every request is logged (``requests``: model, response A, response B, authorization header);
``peak`` is the most requests in flight at once.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORD = "good"
TAG = re.compile(r"<response_a>\n(.*?)\n</response_a>.*?<response_b>\n(.*?)\n</response_b>", re.DOTALL)


def preferred(first: str, second: str) -> str:
    """The deterministic judge: more WORDs wins, then the longer text, then A."""
    ka, kb = (t.lower().split().count(WORD) for t in (first, second))
    if ka != kb:
        return "A" if ka > kb else "B"
    return "B" if len(second) > len(first) else "A"


class Handler(BaseHTTPRequestHandler):
    server: "JudgeServer"
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        content = body["messages"][-1]["content"]
        m = TAG.search(content)
        first, second = (m.group(1), m.group(2)) if m else ("", "")
        with srv.lock:
            srv.requests.append({"model": body.get("model"), "a": first, "b": second,
                                 "authorization": self.headers.get("Authorization", "")})
            status = srv.statuses.popleft() if srv.statuses else 200
            malformed = srv.malformed > 0 and status == 200
            srv.malformed -= int(malformed)
            srv.active += 1
            srv.peak = max(srv.peak, srv.active)
        try:
            if srv.delay:
                time.sleep(srv.delay)
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            if srv.models and body.get("model") not in srv.models:
                return self._json(404, {"error": {"message": f"model {body.get('model')!r} not found",
                                                  "type": "invalid_request_error"}})
            if status != 200:
                return self._json(status, {"error": {"message": f"injected HTTP {status}"}})
            if malformed or srv.garbage:
                answer = "Both responses have merits and I cannot pick one."
            else:
                answer = f"Comparing the two.\n{'A' if srv.biased else preferred(first, second)}"
            usage = {"prompt_tokens": len(content.split()), "completion_tokens": len(answer.split())}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            self._json(200, {"id": "cmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": answer}}],
                             "usage": usage})
        finally:
            with srv.lock:
                srv.active -= 1

    def do_GET(self):
        """``/v1/models``: the served models; HTTP 401 unless the request carries ``required_key``."""
        srv = self.server
        with srv.lock:
            srv.listings += 1
        if self.path.rstrip("/") != "/v1/models":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        if srv.required_key and self.headers.get("Authorization", "") != f"Bearer {srv.required_key}":
            return self._json(401, {"error": {"message": "Incorrect API key provided"}})
        self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "test"}
                                                    for m in sorted(srv.models)]})

    def _json(self, status: int, data: dict) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format, *args):
        pass


class JudgeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, models=("judge-test",)):
        super().__init__(("127.0.0.1", 0), Handler)
        self.models = set(models)
        self.lock = threading.Lock()
        self.reset()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reset(self) -> None:
        """Forget the log and every injected fault."""
        with self.lock:
            self.requests: list[dict] = []
            self.statuses: deque = deque()
            self.malformed, self.biased, self.garbage, self.delay = 0, False, False, 0.0
            self.active = self.peak = 0
            self.required_key, self.listings = "", 0

    def handle_error(self, request, client_address):
        pass  # a client that timed out and hung up: the late answer has nowhere to go

    def close(self) -> None:
        self.shutdown()
        self.server_close()
