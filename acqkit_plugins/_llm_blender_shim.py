"""Make llm-blender 0.0.2 work with transformers >= 5, without touching site-packages.

llm-blender 0.0.2 (the last release) was written for transformers 4 and breaks
on two removals (upstream LLM-Blender issue 33; TRL carries a similar shim):

* ``from transformers.utils.hub import TRANSFORMERS_CACHE`` at import time. The
  constant was the hub cache directory; we put the current one
  (``huggingface_hub.constants.HF_HUB_CACHE``) back before the import.
* its collators call ``tokenizer.batch_encode_plus(texts, ...)``, which is now
  just ``tokenizer(texts, ...)``. We add that method to the ranker's tokenizer
  instance only (see :func:`patch_tokenizer`), so no other tokenizer in the
  process changes behaviour.

Both shims are no-ops on transformers 4, where the names still exist.
"""
from __future__ import annotations

import types


def import_llm_blender():
    """Import ``llm_blender`` after restoring what it expects from transformers."""
    import transformers.utils.hub as hub

    if not hasattr(hub, "TRANSFORMERS_CACHE"):
        from huggingface_hub import constants

        hub.TRANSFORMERS_CACHE = constants.HF_HUB_CACHE
    try:
        import llm_blender
    except ImportError as exc:
        raise ImportError(
            f"the pairrm labeler needs llm-blender: pip install 'acqkit[pairrm]' ({type(exc).__name__}: {exc})"
        ) from exc
    return llm_blender


def _batch_encode_plus(self, batch_text_or_text_pairs, **kwargs):
    return self(batch_text_or_text_pairs, **kwargs)


def patch_tokenizer(tokenizer) -> None:
    """Give one tokenizer instance back the ``batch_encode_plus`` llm-blender calls."""
    if not hasattr(tokenizer, "batch_encode_plus"):
        tokenizer.batch_encode_plus = types.MethodType(_batch_encode_plus, tokenizer)
