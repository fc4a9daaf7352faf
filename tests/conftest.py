import numpy as np
import pytest
import torch

from acqkit import models


@pytest.fixture(scope="session")
def tiny():
    """The tiny random Llama and its tokenizer (built once, cached under the acqkit cache)."""
    tok = models.load_tokenizer("tiny")
    model = models.load_model("tiny")
    return model, tok


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _torch_seed():
    torch.manual_seed(0)
