"""Shared fixtures: the offline backbone and tokenizer, loaded once per test session."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    from mtl_lab.models.backbone import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def backbone():
    """The packaged backbone, loaded once; tests take deep copies (see ``make_model``)."""
    from mtl_lab.models.backbone import load_backbone

    return load_backbone()


@pytest.fixture
def make_model(backbone):
    """Build a MultitaskModel on a fresh copy of the backbone (no disk read), seeded heads."""
    import copy

    import torch

    from mtl_lab.models.model import ModelConfig, MultitaskModel

    def build(**kw):
        torch.manual_seed(0)
        return MultitaskModel(ModelConfig(**kw), backbone=copy.deepcopy(backbone))

    return build


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory, tokenizer):
    """A 2-layer, 32-wide BERT with random weights and the packaged tokenizer, saved as a local model folder.

    For tests of the loop's machinery where MiniLM would only make them slow (e.g. fp16, which this
    CPU emulates at ~1/15 of the fp32 speed)."""
    import torch
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def frozen_runs(tmp_path_factory):
    """A runs folder shared by the tests that need the frozen playground model (its heads are fitted once)."""
    return tmp_path_factory.mktemp("frozen-runs")


# Two epochs of a few steps each, with mid-epoch checkpoints: enough to interrupt and resume anywhere.
RESUMABLE = dict(train_limit=48, dev_limit=48, epochs=2, batch_size=16, max_length=24, checkpoint_every=5)


def tiny_config(**kw):
    """The tests' one tiny training config: a few steps on a few examples (the loop's machinery, not learning).

    Keyword arguments override it, e.g. ``tiny_config(**RESUMABLE)`` for the resume tests."""
    from mtl_lab.training.config import profile_config

    base = dict(train_limit=16, dev_limit=16, epochs=1, batch_size=8, max_length=16, checkpoint_every=0)
    return profile_config("smoke", **{**base, **kw})


# Tests that train, drive a browser, run notebooks or start a cluster: `-m "not slow"` leaves them out for a quick run.
SLOW_MODULES = {
    "test_browser.py",
    "test_cluster.py",
    "test_full_budget.py",
    "test_grading.py",
    "test_mixed_precision.py",
    "test_pcgrad_training.py",
    "test_reproduce.py",
    "test_train.py",
}


def pytest_collection_modifyitems(config, items):
    """Mark the notebooks (nbval) and the slow modules' tests ``slow``."""
    for item in items:
        path = item.path
        if path.suffix == ".ipynb" or path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
