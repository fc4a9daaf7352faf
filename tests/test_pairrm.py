"""PairRM through the real llm-blender package, offline, on a tiny random ranker of PairRM's architecture.

The ranker directory is built the way llm-blender builds PairRM: a RankerConfig
``config.json`` (pairranker on a DeBERTa-v3 backbone) plus the ranker's
``model.safetensors``; the backbone (DebertaV2Model with a sentencepiece
``spm.model``, as microsoft/deberta-v3-large ships) lives in ``backbone/``.
"""
import importlib.util
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from acqkit.cli import cli
from acqkit.store.ledger import Ledger
from labeling_helpers import context, pairs, table

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_blender") is None,
                                reason="llm-blender is not installed (pip install -e '.[pairrm]')")

CORPUS = ["write a short positive review of the film", "the film was great and the plot was wonderful",
          "a terrible boring movie with bad acting", "a haunting classic, hypnotic and bold"]


def build_tiny_ranker(out):
    import safetensors.torch
    import sentencepiece as spm
    import torch
    from transformers import DebertaV2Config, DebertaV2Model

    from acqkit_plugins._llm_blender_shim import import_llm_blender

    import_llm_blender()
    from llm_blender.pair_ranker.config import RankerConfig
    from llm_blender.pair_ranker.model_util import build_collator, build_ranker, build_tokenizer

    backbone = out / "backbone"
    backbone.mkdir(parents=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 10), model_writer=model, vocab_size=48, model_type="unigram",
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", user_defined_symbols=["[MASK]"], minloglevel=2)
    (backbone / "spm.model").write_bytes(model.getvalue())
    (backbone / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "vocab_type": "spm"}))
    torch.manual_seed(0)
    DebertaV2Model(DebertaV2Config(  # deberta-v3-large's attention layout, scaled down
        vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, relative_attention=True, position_buckets=64, pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, max_relative_positions=-1,
        type_vocab_size=0, pad_token_id=0, initializer_range=0.5)).save_pretrained(backbone)

    config = RankerConfig(ranker_type="pairranker", model_type="deberta", model_name=str(backbone),
                          source_maxlength=64, candidate_maxlength=32, n_tasks=1, drop_out=0.05, fp16=False)
    tokenizer = build_tokenizer(config.model_name)
    build_collator(config.ranker_type, tokenizer, config.source_maxlength, config.candidate_maxlength)  # adds tokens
    ranker = build_ranker(config.ranker_type, config.model_type, config.model_name, None, config, tokenizer)
    for layer in (ranker.head_layer[1], ranker.head_layer[4]):  # random, but decisive enough to test
        torch.nn.init.normal_(layer.weight, std=1.0)
    safetensors.torch.save_model(ranker, str(out / "model.safetensors"))
    config.model_name = "backbone"  # relative: the directory carries its backbone
    (out / "config.json").write_text(json.dumps(config.to_dict()))
    return out


@pytest.fixture(scope="module")
def ranker(tmp_path_factory):
    return build_tiny_ranker(tmp_path_factory.mktemp("pairrm") / "ranker")


def labeler(ranker, **options):
    from acqkit_plugins.pairrm import PairRMLabeler

    return PairRMLabeler(model=str(ranker), device="cpu", **options)


def test_soft_labels_from_both_orders_are_consistent(ranker):
    lab = labeler(ranker)
    forward = lab.label(pairs((0, 1), (5, 6), (0, 2)), table(), context())
    backward = lab.label(pairs((1, 0), (6, 5), (2, 0)), table(), context())
    p = forward["p"].to_numpy()
    assert ((p > 0) & (p < 1)).all() and np.abs(p - 0.5).max() > 1e-3  # soft, and not all ties
    np.testing.assert_allclose(p + backward["p"].to_numpy(), 1.0, atol=1e-5)
    assert set(forward["source"]) == {"pairrm"} and forward["cost"].tolist() == [1, 1, 1]


def test_random_positions_use_the_run_rng_and_hard_labels_threshold(ranker):
    todo = pairs((0, 1), (5, 6), (0, 2), (6, 7), (7, 8), (2, 3))
    a = labeler(ranker, order="random").label(todo, table(), context())
    b = labeler(ranker, order="random").label(todo, table(), context())
    fixed = labeler(ranker, order="fixed").label(todo, table(), context())
    np.testing.assert_allclose(a["p"], b["p"])  # same seeded rng, same answer
    assert not np.allclose(a["p"], fixed["p"])  # some positions were swapped
    hard = labeler(ranker, hard=True).label(todo, table(), context())
    assert set(hard["p"]) <= {0.0, 1.0}


def test_missing_weights_are_a_clear_error(tmp_path):
    from acqkit_plugins.pairrm import PairRMLabeler

    with pytest.raises(FileNotFoundError, match="no such directory"):
        PairRMLabeler(model=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        PairRMLabeler(model=str(tmp_path / "empty"))


def test_compare_runs_through_pairrm_and_fills_the_ledger(ranker, tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--labeler", f"pairrm(model={ranker})",
                                      "--strategies", "random", "--seeds", "1", "--rounds", "1", "--budget", "4",
                                      "--seed-labels", "0", "--eval-prompts", "4", "--kl-samples", "0",
                                      "--max-new-tokens", "8", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    ledgers = list(out.rglob("ledger.sqlite"))
    assert len(ledgers) == 1
    with Ledger(ledgers[0]) as ledger:
        records = list(ledger.records())
    assert len(records) == 4 and {r.labeler for r in records} == {"pairrm"}
    assert all(0 < r.p < 1 for r in records) and json.loads(records[0].config)["model"] == str(ranker)
