"""mtl_lab.models.fast.unpad: the backbone over real tokens only gives the padded backbone's states, outputs and gradients."""

import numpy as np
import pytest
import torch

from mtl_lab import data
from mtl_lab.models.fast import unpad
from mtl_lab.models.fast.dropout import use_fast_dropout


def _batch(rows: list[list[int]], types: bool = False):
    """Right-padded ids, mask (and token types: 1 from the middle of each row) of token-id lists."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    tt = (torch.arange(width) >= width // 2).long().expand(len(rows), width) * mask if types else None
    return ids, mask, tt


def test_the_installed_transformers_has_what_the_lab_reads_and_meets_the_requirements_bound():
    """unpad reads each attention layer's ``scaling`` and dropout registers a mask function with ``masking_utils``:
    transformers 4.x has neither on BERT (its BertSdpaSelfAttention lacks ``scaling``), hence the bound."""
    import re
    from pathlib import Path

    import transformers
    from packaging.version import Version
    from transformers.masking_utils import AttentionMaskInterface, eager_mask  # noqa: F401 -- what dropout imports

    config = transformers.BertConfig(
        vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    attention = transformers.BertModel(config).encoder.layer[0].attention.self
    assert attention.scaling == pytest.approx(4**-0.5)  # head size 4
    requirements = (Path(__file__).parents[2] / "requirements.txt").read_text()
    bound = re.search(r"^transformers>=([\d.]+)", requirements, re.M).group(1)
    assert Version(transformers.__version__) >= Version(bound)


@pytest.fixture(scope="module")
def pair_batches(tokenizer):
    out = {}
    for task in data.TASKS:
        enc = data.encode(data.load_split(task, "dev").head(7), task, tokenizer, max_length=48)
        out[task] = data.collate(enc, np.arange(7), ("joint", "pair") if task != "sst" else ("joint",))
    return out


def test_states_equal_the_padded_backbone_at_every_real_token_in_one_pass_for_several_batches(make_model):
    backbone = make_model().backbone.eval()
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(1000, 5000, (n,), generator=g).tolist() for n in (9, 4, 7, 1)]
    groups = [_batch(rows, types=True), _batch(rows[1:3]), _batch([rows[0] + rows[1]])]  # widths 9, 7, 13
    with torch.no_grad():
        got = unpad.encode(backbone, groups)
        for (ids, mask, types), (states, pooled) in zip(groups, got):
            ref = backbone(input_ids=ids, attention_mask=mask, token_type_ids=types)
            assert states.shape == ref.last_hidden_state.shape
            real = mask.bool()
            torch.testing.assert_close(states[real], ref.last_hidden_state[real], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(pooled, ref.pooler_output, atol=1e-5, rtol=1e-5)
            assert torch.all(states[~real] == 0)  # padding positions: zeros, never read by the encoders


def test_first_only_gives_the_first_tokens_state_and_gradients_with_the_last_layer_cut_short(make_model):
    backbone = make_model().backbone.eval()
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(1000, 5000, (n,), generator=g).tolist() for n in (9, 4, 7, 1)]
    groups = [_batch(rows, types=True), _batch(rows[1:3]), _batch([rows[0] + rows[1]])]

    def run(first_only):
        backbone.zero_grad()
        got = unpad.encode(backbone, groups, first_only)
        sum(s[:, 0].square().sum() + p.sum() for s, p in got).backward()  # reads the first token alone
        grads = {n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None}
        return [(s.detach(), p.detach()) for s, p in got], grads

    (full, full_grads), (short, short_grads) = run([False] * 3), run([True, False, True])
    assert [s.shape[1] for s, _ in short] == [1, 7, 1]
    for (full_states, full_pooled), (states, pooled) in zip(full, short):
        torch.testing.assert_close(states[:, 0], full_states[:, 0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pooled, full_pooled, atol=1e-5, rtol=1e-5)
    assert short_grads.keys() == full_grads.keys()
    for name, grad in full_grads.items():
        scale = max(grad.abs().max().item(), 1.0)  # a squared sum's gradients run to 1e3: compare at float rounding
        torch.testing.assert_close(short_grads[name], grad, atol=1e-5 * scale, rtol=1e-4, msg=name)
    ids, mask, _ = groups[1]
    with pytest.raises(ValueError, match="first position"):
        unpad.encode(backbone, [(ids.flip(1), mask.flip(1), None)], [True])  # left padding


@pytest.mark.parametrize("encoder,pair_head", [("cls", "cross"), ("mean", "bi"), ("sbert_cnn_bilstm", "ensemble")])
def test_model_outputs_and_gradients_equal_the_padded_model(make_model, pair_batches, encoder, pair_head):
    model = use_fast_dropout(make_model(encoder=encoder, pair_head=pair_head)).eval()  # eval: no dropout
    for task, batch in pair_batches.items():
        outs, grads = [], []
        for flag in (False, True):
            model.unpad = flag
            model.zero_grad()
            out = model(batch)
            model.loss(task, out, batch["labels"]).backward()
            outs.append(out.detach())
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
        assert grads[1].keys() == grads[0].keys()
        for name, g in grads[0].items():
            torch.testing.assert_close(grads[1][name], g, atol=1e-6, rtol=1e-4, msg=f"{task}: {name}")


def test_on_by_default_on_a_cpu_and_switchable(make_model, pair_batches):
    model = make_model(encoder="mean", pair_head="ensemble").eval()
    assert model.unpad is None and model.unpadded()
    calls = []
    real = unpad.encode
    try:
        unpad.encode = lambda backbone, groups, *rest: calls.append(len(groups)) or real(backbone, groups, *rest)
        model(pair_batches["qqp"])
        assert calls == [2]  # the cross-encoder's pairs and both sentences alone: one pass
        model.unpad = False
        model(pair_batches["qqp"])
        assert calls == [2]  # the padded backbone instead
    finally:
        unpad.encode = real


def test_attention_dropout_in_training_follows_the_seed(make_model, pair_batches):
    model = use_fast_dropout(make_model()).train()
    for m in model.modules():  # only the attention maps' dropout left on
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for layer in model.backbone.encoder.layer:
        layer.attention.self.dropout.p = 0.5
    batch = pair_batches["sst"]
    torch.manual_seed(1)
    first = model(batch)
    torch.manual_seed(1)
    again = model(batch)
    torch.manual_seed(2)
    other = model(batch)
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)
    assert not torch.allclose(first, model.eval()(batch))
