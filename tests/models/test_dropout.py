"""mtl_lab.models.fast.dropout: the same dropout as PyTorch's (keep rate, scale, gradient), its masks reproducible by seed."""

import pytest
import torch
from conftest import tiny_config
from torch import nn

from mtl_lab.models.fast import dropout as lab_dropout
from mtl_lab.models.fast.dropout import ATTENTION, Dropout, eager_attention, fast_dropout, keep_mask, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.25])
def test_keeps_each_element_with_probability_one_minus_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    y = fast_dropout(x, p)
    kept = (y != 0).float().mean().item()
    assert abs(kept - (1 - p)) < 5 * ((p * (1 - p)) / x.numel()) ** 0.5  # five standard errors
    rate = round((1 - p) * 65536) / 65536
    assert abs(rate - (1 - p)) <= 1 / 131072
    assert torch.all((y == 0) | (y == 1 / rate))  # survivors scaled by the exact keep rate
    assert abs(y.mean().item() - 1.0) < 0.01


def test_the_sixteen_bit_pieces_are_uniform_and_independent_of_their_position():
    torch.manual_seed(0)
    keep, _ = keep_mask((400_000, 4), 0.5)  # column j: the j-th 16-bit piece of each 64-bit number
    rates = keep.float().mean(0)
    assert torch.all((rates - 0.5).abs() < 5 * (0.25 / 400_000) ** 0.5), rates


def test_off_in_eval_and_at_p_zero_all_zero_at_p_one():
    x = torch.randn(4, 8)
    assert fast_dropout(x, 0.1, training=False) is x and fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    layer = Dropout(0.3).eval()
    assert torch.equal(layer(x), x)


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = fast_dropout(x, 0.2)
    y.sum().backward()
    rate = round(0.8 * 65536) / 65536
    assert torch.equal(x.grad, (y != 0).float() / rate)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_equals_the_masked_scaled_input(dtype):
    torch.manual_seed(4)
    x = torch.randn(300, 40).to(dtype)
    torch.manual_seed(5)
    keep, rate = keep_mask(x.shape, 0.1)
    torch.manual_seed(5)
    as_floats, _ = keep_mask(x.shape, 0.1, dtype=dtype)  # the same draws, written as 0./1.
    assert as_floats.dtype == dtype and torch.equal(as_floats, keep.to(dtype))
    torch.manual_seed(5)
    assert torch.equal(fast_dropout(x, 0.1), torch.where(keep, x * (1 / rate), 0.0))


def test_masks_follow_the_global_seed():
    x = torch.ones(1000)
    torch.manual_seed(3)
    a = fast_dropout(x, 0.1)
    torch.manual_seed(3)
    b = fast_dropout(x, 0.1)
    c = fast_dropout(x, 0.1)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_attention_equals_transformers_eager_attention_without_dropout():
    from transformers.models.bert.modeling_bert import eager_attention_forward

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 12, 7, 32) for _ in range(3))
    mask = torch.zeros(2, 1, 1, 7)
    mask[1, ..., 5:] = torch.finfo(torch.float32).min
    module = nn.Module().train()
    ours, w_ours = eager_attention(module, q, k, v, mask, scaling=0.2, dropout=0.0)
    theirs, w_theirs = eager_attention_forward(module, q, k, v, mask, scaling=0.2, dropout=0.0)
    assert torch.equal(ours, theirs) and torch.equal(w_ours, w_theirs)
    _, dropped = eager_attention(module, q, k, v, mask, scaling=0.2, dropout=0.5)
    assert (dropped == 0).float().mean() > 0.3  # in training the attention map is dropped out


def test_the_model_trains_with_it_everywhere_and_scores_exactly_as_before(monkeypatch):
    import numpy as np

    from mtl_lab.data import collate, encode, load_split
    from mtl_lab.models.backbone import load_tokenizer
    from mtl_lab.models.model import ModelConfig, MultitaskModel

    torch.manual_seed(0)
    model = MultitaskModel(ModelConfig(encoder="sbert_cnn_bilstm")).eval()
    model.backbone.set_attn_implementation("eager")  # what training used before: the same maths, bit for bit
    df = load_split("sst", "dev", warn=False).head(4)
    batch = collate(encode(df, "sst", load_tokenizer(), 32), np.arange(4), model.views("sst"))
    with torch.no_grad():
        before = model(batch)
        use_fast_dropout(model)
        after = model(batch)
    assert torch.equal(before, after)  # no dropout in evaluation: the same scores
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert model.backbone.config._attn_implementation == ATTENTION

    calls = []
    original = lab_dropout.fast_dropout
    counted = lambda x, p, training=True: calls.append(x.dim()) or original(x, p, training)  # noqa: E731
    monkeypatch.setattr(lab_dropout, "fast_dropout", counted)
    model.train()
    model.unpad = False  # the padded backbone: its attention maps are the 4-dim ones
    model(batch)
    layers = model.backbone.config.num_hidden_layers
    assert calls.count(4) == layers  # every attention map
    assert len(calls) >= 1 + 3 * layers  # embeddings, attention maps, attention and feed-forward outputs
    padded, calls[:] = len(calls), []
    model.unpad = (
        True  # over real tokens only (mtl_lab.models.fast.unpad, a CPU's default): the same dropouts, each once
    )
    model(batch)
    assert len(calls) == padded


def test_training_on_a_cpu_uses_it_and_records_it(tmp_path):
    from mtl_lab.models.model import ModelConfig
    from mtl_lab.training.loop import train

    res = train(ModelConfig(), tiny_config(), tmp_path, progress=False)
    assert res["environment"]["dropout"] == "mtl_lab.models.fast.dropout"
    assert res["environment"]["tokens"] == "unpadded"  # mtl_lab.models.fast.unpad, a CPU's default


@pytest.mark.parametrize("p", [0.0, 1e-7, 1e-6, 1e-5, 0.1, 0.5, 0.9, 0.999, 1 - 1e-7])
def test_every_p_from_zero_to_almost_one_keeps_about_one_minus_p_and_the_expected_value(p):
    """16 bits resolve a keep rate to 1 / 131,072: below that p keeps everything (the comparison once wrapped and kept
    nothing), above 1 - 1 / 131,072 PyTorch's masks take over (the 16-bit keep rate would be 0, its scale 1 / 0)."""
    n = 1_000_000 if p < 0.999999 else 30_000_000  # about 3 survivors at p = 1 - 1e-7, to see their scale
    torch.manual_seed(0)
    x = torch.ones(n)
    y = fast_dropout(x, p)
    assert torch.isfinite(y).all()
    if p == 0:
        assert y is x
    survivors = y[y != 0]
    assert len(survivors) > 0 and torch.all(survivors == survivors[0])  # one scale for every survivor
    rate = 1 / survivors[0].double().item()  # the keep rate the scale undoes
    assert abs(rate - (1 - p)) <= 1 / 131072 + 1e-6 * (1 - p)  # 16 bits' resolution (float32 for the scale)
    kept = len(survivors) / n  # the survivors' share matches that keep rate, so the mean stays x's
    assert abs(kept - rate) <= 5 * (rate * (1 - rate) / n) ** 0.5 + 1 / n


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_a_p_outside_zero_to_one_is_refused(p):
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, got"):
        fast_dropout(torch.ones(4), p)
    with pytest.raises(ValueError, match="between 0 and 1"):
        keep_mask((4,), p)
