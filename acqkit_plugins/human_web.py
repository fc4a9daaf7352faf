"""``human-web``: a person labels pairs on a local web page.

The labeler serves the pairs awaiting labels (stdlib ``http.server``) and
prints the URL; it returns when every pair is answered or skipped. One pair at
a time: the prompt, responses A and B side by side, buttons and keys ``a`` /
``b`` / ``t`` (tie) / ``s`` (skip), progress "n of m". Closing the browser and
opening the URL again resumes at the first unanswered pair.

Options: ``host`` (default 127.0.0.1: only this machine), ``port`` (default 0:
a free one), ``open_browser`` (default false), ``annotator`` (see human-cli).
Every request must carry the session's random token (``?token=...``), else 403.
"""
from __future__ import annotations

import hmac
import json
import secrets
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from rich.console import Console

from acqkit import Labeler, hookimpl

from ._human import Answers, identity, items_from

MAX_BODY = 4096


def page() -> bytes:
    return resources.files("acqkit_plugins").joinpath("data/human_web.html").read_bytes()


def state(answers: Answers) -> dict:
    item = answers.next_item()
    return {"total": len(answers.items), "done": answers.done,
            "item": None if item is None else {"index": item.index, "prompt": item.prompt,
                                               "a": item.text_a, "b": item.text_b}}


class Handler(BaseHTTPRequestHandler):
    server: "LabelServer"

    def do_GET(self):
        path = self._authorised()
        if path == "/":
            self._send(HTTPStatus.OK, page(), "text/html; charset=utf-8")
        elif path == "/api/state":
            self._json(state(self.server.answers))
        elif path is not None:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def do_POST(self):
        path = self._authorised()
        if path is None:
            return
        if path != "/api/answer":
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= MAX_BODY:
                raise ValueError("bad body length")
            body = json.loads(self.rfile.read(length))
            self.server.answers.answer(int(body["index"]), str(body["key"]))
        except (ValueError, KeyError, TypeError) as exc:
            self._send(HTTPStatus.BAD_REQUEST, f"bad answer: {exc}".encode(), "text/plain")
            return
        self._json(state(self.server.answers))

    def _authorised(self) -> str | None:
        """The request path if it carries the session token; else answer 403 and return None."""
        url = urlsplit(self.path)
        token = parse_qs(url.query).get("token", [""])[0]
        if not hmac.compare_digest(token.encode(), self.server.token.encode()):
            self._send(HTTPStatus.FORBIDDEN, b"forbidden: open the URL with the token printed by acqkit",
                       "text/plain")
            return None
        return url.path

    def _json(self, data: dict) -> None:
        self._send(HTTPStatus.OK, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # keep the token out of Referer headers
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # the terminal shows the URL, not every request
        pass


class LabelServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the last answer's response to be sent

    def __init__(self, address, answers: Answers, token: str):
        super().__init__(address, Handler)
        self.answers = answers
        self.token = token


class HumanWebLabeler(Labeler):
    paid = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, open_browser: bool = False, annotator: str = ""):
        self.host, self.port, self.open_browser = str(host), int(port), bool(open_browser)
        self.annotator = str(annotator)
        self.ledger_identity = identity(self.annotator)
        self.url: str | None = None  # set while a labeling session is being served

    def label(self, pairs, table, context):
        answers = Answers(items_from(pairs, table, context), context.extras.get("ledger"), "human")
        if not answers.items:
            return answers.labels(pairs)
        server = LabelServer((self.host, self.port), answers, secrets.token_urlsafe(24))
        thread = threading.Thread(target=server.serve_forever, name="acqkit-human-web", daemon=True)
        thread.start()
        self.url = f"http://{self.host}:{server.server_address[1]}/?token={server.token}"
        Console(stderr=True).print(f"[bold]{len(answers.items)} pair(s) to label[/bold] (round {context.round}): "
                                   f"open {self.url}", soft_wrap=True, highlight=False)
        if self.open_browser:
            webbrowser.open(self.url)
        try:
            while not answers.finished.wait(0.5):  # short waits keep Ctrl-C responsive
                pass
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            self.url = None
        return answers.labels(pairs)


@hookimpl
def acqkit_register_labelers(register):
    register("human-web", HumanWebLabeler)
