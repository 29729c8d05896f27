"""Sentence encoders: output sizes, and padding never leaks into a pooled value."""

import pytest
import torch

from mtl_lab.models.encoders import ENCODERS, build_encoder, masked_max, masked_mean

H = 16


@pytest.mark.parametrize("name", ENCODERS)
def test_padding_does_not_change_the_embedding(name):
    torch.manual_seed(0)
    enc = build_encoder(name, H, filters=8, lstm_hidden=6).eval()
    hidden = torch.randn(2, 5, H)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    garbage = torch.randn(2, 7, H) * 100  # what the backbone leaves on padded positions
    longer = torch.cat([hidden, garbage], 1)
    longer_mask = torch.cat([mask, torch.zeros(2, 7, dtype=torch.long)], 1)
    hidden_dirty = hidden.clone()
    hidden_dirty[1, 3:] = 1e4  # padded positions of the short sentence
    with torch.no_grad():
        ref = enc(hidden, mask)
        torch.testing.assert_close(enc(longer, longer_mask), ref)
        torch.testing.assert_close(enc(hidden_dirty, mask), ref)
        alone = enc(hidden[1:, :3], mask[1:, :3])  # the short sentence in a batch of its own
    torch.testing.assert_close(alone, ref[1:])
    assert ref.shape == (2, enc.out_dim)


def test_output_sizes():
    assert build_encoder("mean", H).out_dim == H
    assert build_encoder("cnn", H, filters=8).out_dim == 4 * 8
    assert build_encoder("bilstm", H, lstm_hidden=6).out_dim == 12
    assert build_encoder("sbert_cnn_bilstm", H, filters=8, lstm_hidden=6).out_dim == H + 32 + 12
    with pytest.raises(ValueError, match="unknown sentence encoder"):
        build_encoder("gru", H)


def test_masked_pooling_by_hand():
    h = torch.tensor([[[1.0, 5.0], [3.0, -1.0], [100.0, 100.0]]])
    m = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(masked_mean(h, m), torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(masked_max(h, m), torch.tensor([[3.0, 5.0]]))


def test_cnn_ngrams_see_neighbouring_tokens():
    torch.manual_seed(0)
    cnn = build_encoder("cnn", H, filters=32).eval()
    h = torch.randn(1, 4, H)
    m = torch.ones(1, 4, dtype=torch.long)
    feats = cnn.features(h, m)
    h2 = h.clone()
    h2[0, 1] += 1.0  # change token 1: the bigram starting at token 0 must change, the unigram at 0 not
    feats2 = cnn.features(h2, m)
    assert torch.equal(feats[0, 0, :32], feats2[0, 0, :32])
    assert not torch.equal(feats[0, 0, 32:64], feats2[0, 0, 32:64])


@pytest.mark.parametrize("name", ["cnn", "bilstm_cnn", "sbert_cnn_bilstm"])
def test_fused_cnn_features_equal_the_four_convolutions(name):
    torch.manual_seed(0)
    enc = build_encoder(name, H, filters=8, lstm_hidden=6).eval()
    cnn = enc if name == "cnn" else enc.cnn
    hidden = torch.randn(3, 7, H, requires_grad=True)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    ref, fast = cnn.conv_features(hidden, mask), cnn.fused_features(hidden, mask)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(ref)
    grads = [torch.autograd.grad((t * weights).sum(), [hidden, *cnn.parameters()]) for t in (fast, ref)]
    for g, r in zip(*grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)
    # the whole encoder on either path: same embedding, same gradients of every weight
    outs = []
    for fused in (True, False):
        cnn.fused = fused
        out = enc(hidden, mask)
        outs.append((out, torch.autograd.grad(out.pow(2).sum(), [hidden, *enc.parameters()])))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-5)
    for g, r in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def test_cnn_weights_live_in_the_convolutions_whichever_path_runs():
    cnn = build_encoder("cnn", H, filters=8)
    assert cnn.fused  # the fast path by default
    keys = {f"convs.{i}.{w}" for i in range(4) for w in ("weight", "bias")}
    assert set(cnn.state_dict()) == keys
    cnn.fused = False
    assert set(cnn.state_dict()) == keys
    assert [c.weight.shape for c in cnn.convs] == [(8, H, k) for k in (1, 2, 3, 4)]
