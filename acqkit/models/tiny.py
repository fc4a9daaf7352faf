"""A tiny random Llama with a tokenizer trained offline, for tests and smoke runs.

Built deterministically from a config (no download): the tokenizer is a
byte-level BPE trained on VADER's sentiment lexicon plus a few film-review
words, so even random weights emit words the sentiment oracle can score and
DPO has something to learn within seconds.
"""
from __future__ import annotations

import shutil
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EXTRA_WORDS = (
    "the film movie review write short positive a of and is was this it story actors plot scenes "
    "director cast music ending characters performance cinema watch audience about for in on with "
    "user assistant system please give me brief glowing enthusiastic"
).split()
VERSION = "1"  # bump to rebuild cached tiny models when the recipe changes


def _corpus() -> list[str]:
    import vaderSentiment

    lexicon = Path(vaderSentiment.__file__).with_name("vader_lexicon.txt")
    words = [line.split("\t", 1)[0] for line in lexicon.read_text(encoding="utf-8").splitlines() if line]
    words = [w for w in words if w.isalpha()]
    return [" ".join(words[i : i + 20]) for i in range(0, len(words), 20)] + [" ".join(EXTRA_WORDS)] * 50


def build_tiny(out: Path, vocab_size: int = 2048, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>", chat_template=CHAT_TEMPLATE,
    )
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "ACQKIT_TINY_VERSION").write_text(VERSION)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def ensure_tiny(out: Path) -> Path:
    marker = out / "ACQKIT_TINY_VERSION"
    if marker.exists() and marker.read_text() == VERSION:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    return build_tiny(out)
