"""The judge's side of the wire: one chat completion, retried, timed out, and counted in tokens.

Through the ``openai`` client (its own retries off: the backoff here is
seeded, so a rerun waits the same way). HTTP 429, 5xx, timeouts and dropped
connections are retried with exponential backoff and jitter; after the last
attempt a 429/5xx/timeout becomes a failed reply (the pair is skipped), a
server that cannot be reached at all is an error. Any other HTTP error (401
bad key, 404 unknown model, 400) will not get better by asking again: it is
an error at once, naming the labeler and the server's message.
"""
from __future__ import annotations

import random
import sys
import re
import time
from dataclasses import dataclass

from acqkit.errors import ModelError

# The verdict is the last non-empty line: "A" or "B", tolerating markdown and a leading word.
VERDICT = re.compile(r"[\s*_#>\[(\"'`]*(?:(?:final\s+)?(?:answer|verdict|winner|response|better)\s*(?:is)?\s*"
                     r"[:\-]?\s*)?[\[(\"'`*_]*([AB])[\])\"'`*_.!]*\s*", re.IGNORECASE)


def parse_verdict(text: str | None) -> str | None:
    """``"A"``, ``"B"``, or None when the last non-empty line is not a verdict."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    m = VERDICT.fullmatch(lines[-1])
    return m.group(1).upper() if m else None


@dataclass(frozen=True)
class Reply:
    """One completion: its text (None if no usable reply came back) and the tokens it was billed for."""

    text: str | None
    tokens_in: int = 0
    tokens_out: int = 0
    error: str = ""


@dataclass(frozen=True)
class Price:
    """USD per million prompt (``usd_in``) and completion (``usd_out``) tokens."""

    usd_in: float = 0.0
    usd_out: float = 0.0

    def usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.usd_in + tokens_out * self.usd_out) / 1e6


class JudgeClient:
    """Chat completions from one OpenAI-compatible server; ``who`` names the labeler in errors."""

    def __init__(self, who: str, base_url: str, model: str, api_key: str, timeout: float, retries: int,
                 backoff: float, temperature: float, max_tokens: int):
        import httpx
        from openai import OpenAI

        self.who, self.base_url, self.model = who, base_url, model
        self.retries, self.backoff = retries, backoff
        self.temperature, self.max_tokens = temperature, max_tokens
        # The timeout holds for every phase of a request (connect, each read, write): a server that
        # stops sending is cut off after `timeout` seconds; the request is then retried like a 5xx.
        self.client = OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=0,
                             timeout=httpx.Timeout(timeout))

    def check(self) -> None:
        """One cheap request before any model loads: the model list. Unreachable, or a key refused: an error.

        A server without a model list (404) is not an error; nor is a model missing from the list (some
        servers load models on demand): that is a warning, and the first label call will tell.
        """
        import openai

        try:
            served = [m.id for m in self.client.with_options(max_retries=0).models.list()]
        except openai.APIConnectionError as exc:
            raise ModelError(f"{self.who}: cannot reach the server at {self.base_url} "
                             f"({exc.__cause__ or exc}); is it running, and is base_url right (with /v1)?") from None
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise ModelError(f"{self.who}: the server at {self.base_url} refused the API key (HTTP "
                                 f"{exc.status_code}): {_message(exc)}") from None
            return  # no model list here (404), or a server error: the label calls will retry and tell
        if served and self.model not in served:
            print(f"acqkit: {self.who}: the server at {self.base_url} does not list model {self.model!r} "
                  f"(it lists {', '.join(served[:5])}{', ...' if len(served) > 5 else ''}); asking it anyway",
                  file=sys.stderr, flush=True)

    def ask(self, messages: list[dict], jitter: random.Random) -> Reply:
        """One completion, retried on 429, 5xx, timeouts and dropped connections."""
        import openai

        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + jitter.random()))  # exponential, jittered
            try:
                resp = self.client.chat.completions.create(model=self.model, messages=messages,
                                                           temperature=self.temperature, max_tokens=self.max_tokens)
            except openai.APITimeoutError:
                last = "timed out"
                continue
            except openai.APIConnectionError as exc:
                last = f"cannot connect ({exc.__cause__ or exc})"
                continue
            except openai.APIStatusError as exc:
                if exc.status_code == 429 or exc.status_code >= 500:
                    last = f"HTTP {exc.status_code}"
                    continue
                raise ModelError(f"{self.who}: the server at {self.base_url} answered HTTP {exc.status_code} "
                                 f"for model {self.model!r}: {_message(exc)}") from None
            usage = getattr(resp, "usage", None)
            tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
            tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
            choices = getattr(resp, "choices", None) or []
            text = choices[0].message.content if choices and choices[0].message else None
            if text is None:
                return Reply(None, tokens_in, tokens_out, "an answer without text")
            return Reply(str(text), tokens_in, tokens_out)
        if last.startswith("cannot connect"):
            raise ModelError(f"{self.who}: cannot reach the server at {self.base_url} after {self.retries + 1} "
                             f"attempt(s): {last}; is it running, and is base_url right (with /v1)?")
        return Reply(None, error=f"{last} after {self.retries + 1} attempt(s)")


def _message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return str(exc)[:300]
