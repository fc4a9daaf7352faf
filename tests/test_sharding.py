"""Work shared by processes: keyed sampling, units that do not depend on the process count, the reference parked.

The two-process runs themselves are in tests/test_distributed.py; these are
the single-process properties they rest on.
"""
import numpy as np
import torch

from acqkit import Sampler
from acqkit.distributed import spread
from acqkit.round.sample import GenConfig, KeyedSampling, generate, sample
from acqkit.round.seeds import row_seed


def test_keyed_sampling_draws_from_the_tempered_top_k_softmax():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    rows = 6000
    proc = KeyedSampling([row_seed(7, "p", j) for j in range(rows)], temperature=0.7, top_k=4, device="cpu")
    drawn = proc(None, logits.repeat(rows, 1)).argmax(-1)
    counts = np.bincount(drawn.numpy(), minlength=6)
    assert counts[4:].sum() == 0  # outside the top 4: never
    want = torch.softmax(logits[:4] / 0.7, -1).numpy()
    se = np.sqrt(want * (1 - want) / rows)
    assert np.all(np.abs(counts[:4] / rows - want) < 4 * se), (counts / rows, want)
    again = KeyedSampling([row_seed(7, "p", j) for j in range(rows)], 0.7, 4, "cpu")(None, logits.repeat(rows, 1))
    assert torch.equal(again.argmax(-1), drawn)  # a row's seed is its draw


def test_a_response_depends_on_its_prompt_not_on_its_batch(tiny):
    model, tok = tiny
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("a good film", "so bad", "music", "plot")]
    cfg = GenConfig(max_new_tokens=8, temperature=1.0, top_k=0, batch_size=64)
    keys = ["p0", "p1", "p2", "p3"]
    together = generate(model, tok, prompts, 3, cfg, seed=5, keys=keys)
    small_batches = generate(model, tok, prompts, 3, GenConfig(8, 1.0, 0, batch_size=2), seed=5, keys=keys)
    assert small_batches == together
    reordered = generate(model, tok, prompts[::-1], 3, cfg, seed=5, keys=keys[::-1])
    assert [reordered[(3 - i) * 3 + j] for i in range(4) for j in range(3)] == together
    other_ids = generate(model, tok, prompts, 3, cfg, seed=5, keys=["q0", "q1", "q2", "q3"])
    assert other_ids != together  # the id is the key: other ids, other draws
    assert len({tuple(r) for r in together}) > 6  # and the responses to one prompt differ


def test_spread_in_one_process_is_a_map_in_order():
    assert spread(list(range(7)), lambda u: u * u, "units") == [u * u for u in range(7)]
    assert spread([], lambda u: u) == []


class WholeStage(Sampler):
    """An outside engine that batches by itself: called once per stage."""

    chunked = False

    def __init__(self):
        self.calls = []

    def generate(self, request):
        self.calls.append((len(request.prompt_ids), request.keys))
        return [[5, 6]] * (len(request.prompt_ids) * request.n)


class Chunked(WholeStage):
    chunked = True


def test_a_sampler_gets_chunks_of_whole_prompts_unless_it_says_it_is_not_chunked(tiny):
    model, tok = tiny
    prompts = [[1, 2, 3]] * 10
    cfg = GenConfig(max_new_tokens=4, temperature=1.0, batch_size=8)
    whole, chunked = WholeStage(), Chunked()
    keys = [f"id{i}" for i in range(10)]
    assert sample(whole, "whole", model, tok, prompts, 3, cfg, seed=1, keys=keys) == [[5, 6]] * 30
    assert whole.calls == [(10, tuple(keys))]
    assert sample(chunked, "chunked", model, tok, prompts, 3, cfg, seed=1, keys=keys) == [[5, 6]] * 30
    assert [n for n, _ in chunked.calls] == [2, 2, 2, 2, 2]  # 8 sequences per chunk: 2 prompts x 3 responses
    assert [k for _, ks in chunked.calls for k in ks] == keys


def test_the_reference_is_parked_off_the_device_only_through_training(monkeypatch):
    """The loop trains inside ``reference_parked``; on a GPU that moves the reference to host memory."""
    from dataclasses import replace

    from acqkit.config import preset
    from acqkit.plugins import registry
    from acqkit.round import loop
    from acqkit.round.session import Session

    cfg = replace(preset("smoke"), rounds=1, budget=4, seed_labels=4)
    session = Session.open(cfg, registry())
    events = []
    real_parked, real_train = Session.reference_parked, loop.train

    def parked(self, needed=False):
        events.append(("park", needed))
        return real_parked(self, needed)

    monkeypatch.setattr(Session, "reference_parked", parked)
    monkeypatch.setattr(loop, "train", lambda *a, **k: events.append("train") or real_train(*a, **k))
    loop.run(cfg, session=session)
    assert events == [("park", False), "train"] * 2  # the warm start and round 1
    before = [p.data_ptr() for p in session.reference.parameters()]
    with session.reference_parked():  # on the CPU: nothing moves
        assert [p.data_ptr() for p in session.reference.parameters()] == before


def test_the_win_rate_samples_share_random_numbers_within_a_seed_and_greedy_stays_available(tiny):
    from acqkit.round.evaluate import EvalSet, WinSamples, win_responses

    model, tok = tiny
    prompts = [type("P", (), {"id": f"e{i}"})() for i in range(3)]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in ("a film", "the plot", "music")]
    evalset = EvalSet(prompts, ids, [], np.zeros(3), np.zeros(3))
    design = WinSamples(n=2, temperature=1.0, top_k=0, seed=11)
    first, k = win_responses(model, tok, evalset, 8, 64, generate, design)
    again, _ = win_responses(model, tok, evalset, 8, 2, generate, design)  # another strategy, other batching
    other_seed, _ = win_responses(model, tok, evalset, 8, 64, generate, WinSamples(2, 1.0, 0, seed=12))
    assert k == 2 and len(first) == 6 and first == again and other_seed != first
    greedy_out, k = win_responses(model, tok, evalset, 8, 64, generate, WinSamples(n=0))
    assert k == 1 and greedy_out == win_responses(model, tok, evalset, 8, 64, generate, WinSamples(0, seed=5))[0]
