"""Shared fixtures: the offline backbone and tokenizer, loaded once per test session."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    from mtl_lab.backbone import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def backbone():
    """The packaged backbone, loaded once; tests take deep copies (see ``make_model``)."""
    from mtl_lab.backbone import load_backbone

    return load_backbone()


@pytest.fixture
def make_model(backbone):
    """Build a MultitaskModel on a fresh copy of the backbone (no disk read), seeded heads."""
    import copy

    import torch

    from mtl_lab.model import ModelConfig, MultitaskModel

    def build(**kw):
        torch.manual_seed(0)
        return MultitaskModel(ModelConfig(**kw), backbone=copy.deepcopy(backbone))

    return build
