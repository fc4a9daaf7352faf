"""``judge``: an LLM behind any OpenAI-compatible chat-completions server labels the pairs.

Each pair is asked in both orders by default (position swap): the two verdicts
agree, or the pair is a tie (``on_disagreement=tie``) or asked once more in
both orders (``reask``; still split: a tie). Whether the first two orders agreed
is the pair's ``consistency``. An answer without a verdict line is asked again
(``parse_retries``), then the pair is skipped with the reason on stderr.
Every answer goes to the label ledger the moment it arrives, with its money
cost (tokens x price) and token counts. Needs ``pip install 'acqkit[judge]'``.

Options: ``base_url``, ``model`` (required), ``api_key_env`` (the environment
variable holding the key; empty: no key), ``template`` (a file with
``{prompt}``, ``{response_a}``, ``{response_b}``), ``order`` (both | random |
fixed), ``on_disagreement`` (tie | reask), ``parse_retries``, ``retries``,
``backoff``, ``timeout``, ``concurrency``, ``price_in``, ``price_out`` (USD per
million tokens), ``temperature``, ``max_tokens``.
"""
from __future__ import annotations

import hashlib
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from acqkit import Labeler, hookimpl
from acqkit.errors import ConfigError, MissingFileError

from ._human import Item, items_from
from ._judge_client import JudgeClient, Price, parse_verdict

PLACEHOLDERS = ("{prompt}", "{response_a}", "{response_b}")
DEFAULT_TEMPLATE = """Two AI assistants answered the same prompt. Judge which response is better: more helpful, \
correct and fitting for the prompt. Ignore the order in which they are shown and their length.

<prompt>
{prompt}
</prompt>

<response_a>
{response_a}
</response_a>

<response_b>
{response_b}
</response_b>

Think briefly if you need to. Then give your verdict on the last line, as a single letter and nothing else: \
A if response A is better, B if response B is better."""
ORDERS = ("both", "random", "fixed")
ON_DISAGREEMENT = ("tie", "reask")
WHO = "labeler 'judge'"


def read_template(path: str) -> str:
    """The prompt template: the built-in one, or a file that must hold every placeholder."""
    if not path:
        return DEFAULT_TEMPLATE
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingFileError(f"{WHO}: template file {file} does not exist")
    text = file.read_text(encoding="utf-8")
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise ConfigError(f"{WHO}: template file {file} lacks the placeholder(s) {', '.join(missing)} "
                          f"(it needs {', '.join(PLACEHOLDERS)})")
    return text


def fill(template: str, prompt: str, first: str, second: str) -> str:
    """The template with its placeholders replaced (plain replacement: a template may hold other braces)."""
    return template.replace("{prompt}", prompt).replace("{response_a}", first).replace("{response_b}", second)


@dataclass
class Verdict:
    """What the judge made of one pair: ``p`` (None: skipped, see ``reason``) and what it cost."""

    p: float | None
    usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    consistency: float = float("nan")
    answers: list = field(default_factory=list)  # the parsed verdicts, in the order asked
    reason: str = ""

    def meta(self) -> dict:
        out = {"tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "answers": self.answers}
        if not np.isnan(self.consistency):
            out["consistency"] = self.consistency
        return out


class JudgeLabeler(Labeler):
    paid = True

    def __init__(self, model: str = "", base_url: str = "https://api.openai.com/v1",
                 api_key_env: str = "OPENAI_API_KEY", template: str = "", order: str = "both",
                 on_disagreement: str = "tie", parse_retries: int = 2, retries: int = 4, backoff: float = 0.5,
                 timeout: float = 60.0, concurrency: int = 4, price_in: float = 0.0, price_out: float = 0.0,
                 temperature: float = 0.0, max_tokens: int = 256):
        if not str(model):
            raise ConfigError(f"{WHO}: option 'model' is required (the model name the server serves)")
        if order not in ORDERS:
            raise ConfigError(f"{WHO}: order must be one of {', '.join(ORDERS)}; got {order!r}")
        if on_disagreement not in ON_DISAGREEMENT:
            raise ConfigError(f"{WHO}: on_disagreement must be tie or reask; got {on_disagreement!r}")
        for name, value, low in (("parse_retries", parse_retries, 0), ("retries", retries, 0),
                                 ("concurrency", concurrency, 1), ("max_tokens", max_tokens, 1)):
            if int(value) < low:
                raise ConfigError(f"{WHO}: option {name!r} must be >= {low}, got {value}")
        for name, value in (("price_in", price_in), ("price_out", price_out), ("backoff", backoff),
                            ("temperature", temperature)):
            if not float(value) >= 0:
                raise ConfigError(f"{WHO}: option {name!r} must be >= 0, got {value}")
        if not float(timeout) > 0:
            raise ConfigError(f"{WHO}: option 'timeout' must be > 0 seconds, got {timeout}")
        key = ""
        if api_key_env:
            key = os.environ.get(str(api_key_env), "")
            if not key:
                raise ConfigError(f"{WHO}: environment variable {api_key_env} (the API key) is not set; set it, "
                                  "or pass api_key_env= (empty) for a server that needs no key")
        self.template = read_template(str(template))
        self.order, self.on_disagreement = order, on_disagreement
        self.parse_retries, self.concurrency = int(parse_retries), int(concurrency)
        self.price = Price(float(price_in), float(price_out))
        self.client = JudgeClient(WHO, str(base_url), str(model), key, float(timeout), int(retries),
                                  float(backoff), float(temperature), int(max_tokens))
        # Only what changes an answer: not the server's address, the key, the price or the plumbing.
        self.ledger_identity = ("judge", {"model": str(model), "order": order, "on_disagreement": on_disagreement,
                                          "temperature": float(temperature), "max_tokens": int(max_tokens),
                                          "template": "default" if not template else
                                          hashlib.sha256(self.template.encode()).hexdigest()[:16]})

    def preflight(self) -> None:
        """Before any model loads: the server answers and accepts the key (one model-list request)."""
        self.client.check()

    def label(self, pairs: pd.DataFrame, table: pd.DataFrame, context) -> pd.DataFrame:
        items = items_from(pairs, table, context)
        swaps = context.rng.random(len(items)) < 0.5 if self.order == "random" else np.zeros(len(items), bool)
        seed = int(context.rng.integers(2**31))  # the backoff jitter: seeded per pair
        book, usd_left = context.extras.get("ledger"), context.extras.get("usd_left")
        verdicts: list[Verdict | None] = [None] * len(items)
        spent = 0.0
        # With a money budget, pairs go out in waves of `concurrency`, and a wave starts only while money
        # is left: which pairs are asked depends on the answers, never on timing.
        wave = self.concurrency if usd_left is not None else max(1, len(items))
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="acqkit-judge") as pool:
            try:
                for start in range(0, len(items), wave):
                    if usd_left is not None and spent >= usd_left:
                        break
                    for item, verdict in self.answers(pool, items[start:start + wave], swaps, seed):
                        verdicts[item.index] = verdict
                        spent += verdict.usd
                        if verdict.p is not None and book is not None:  # durable before the next answer counts
                            book.put(item.a, item.b, verdict.p, "judge", 1, verdict.usd, verdict.meta())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        for item, verdict in zip(items, verdicts):
            if verdict is None:
                verdicts[item.index] = Verdict(None, reason=f"money budget spent (${spent:.6f} of "
                                                            f"${max(usd_left or 0.0, 0.0):.6f} left this round)")
            if verdicts[item.index].p is None:
                print(f"acqkit: judge skipped pair ({item.a}, {item.b}) of round {context.round}: "
                      f"{verdicts[item.index].reason}", file=sys.stderr, flush=True)
        p = np.array([np.nan if v.p is None else v.p for v in verdicts], dtype=float)
        return pairs.assign(p=p, source="judge", cost=np.where(np.isnan(p), 0, 1).astype(int),
                            cost_usd=[v.usd for v in verdicts], consistency=[v.consistency for v in verdicts],
                            tokens_in=[v.tokens_in for v in verdicts], tokens_out=[v.tokens_out for v in verdicts])

    def answers(self, pool, items: list[Item], swaps, seed: int):
        """``(item, verdict)`` as each pair is judged; with ``concurrency=1`` one pair at a time, in order,
        each answer stored before the next question is sent (nothing is in flight when a store returns)."""
        jitter = {it.index: random.Random(f"{seed}:{it.index}") for it in items}
        if self.concurrency == 1:
            yield from ((it, self.judge(it, bool(swaps[it.index]), jitter[it.index])) for it in items)
            return
        futures = {pool.submit(self.judge, it, bool(swaps[it.index]), jitter[it.index]): it for it in items}
        for future in as_completed(futures):
            yield futures[future], future.result()

    def judge(self, item: Item, swap: bool, jitter: random.Random) -> Verdict:
        """Ask about one pair in one or both orders; ``p`` is the probability that ``item.a`` is better."""
        out = Verdict(None)
        orders = [False, True] if self.order == "both" else [swap]
        p = self.ask_orders(item, orders, jitter, out)
        if p is None:
            return out
        if len(p) == 2:
            out.consistency = float(p[0] == p[1])
            if p[0] != p[1] and self.on_disagreement == "reask":
                p = self.ask_orders(item, orders, jitter, out)
                if p is None:
                    return out
        out.p = p[0] if len(set(p)) == 1 else 0.5  # orders that disagree: a tie
        return out

    def ask_orders(self, item: Item, orders: list[bool], jitter: random.Random, out: Verdict) -> list | None:
        """The verdict in each order; None as soon as one order has none (the rest are not paid for)."""
        p = []
        for swap in orders:
            p.append(self.ask(item, swap, jitter, out))
            if p[-1] is None:
                return None
        return p

    def ask(self, item: Item, swap: bool, jitter: random.Random, out: Verdict) -> float | None:
        """1.0 if the judge prefers ``item.a`` shown in this order, 0.0 if ``item.b``; None (reason in ``out``)."""
        first, second = (item.text_b, item.text_a) if swap else (item.text_a, item.text_b)
        messages = [{"role": "user", "content": fill(self.template, item.prompt, first, second)}]
        for _ in range(self.parse_retries + 1):
            reply = self.client.ask(messages, jitter)
            out.tokens_in += reply.tokens_in
            out.tokens_out += reply.tokens_out
            out.usd = self.price.usd(out.tokens_in, out.tokens_out)
            if reply.text is None:
                out.reason = f"no answer from the server: {reply.error}"
                return None
            verdict = parse_verdict(reply.text)
            if verdict is not None:
                out.answers.append(verdict)
                return float((verdict == "A") != swap)
            out.reason = (f"no verdict line (A or B) in {self.parse_retries + 1} answer(s); the last ended "
                          f"{reply.text.strip()[-60:]!r}")
        return None


@hookimpl
def acqkit_register_labelers(register):
    register("judge", JudgeLabeler)
