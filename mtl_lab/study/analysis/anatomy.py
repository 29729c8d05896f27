"""A model's parts (notebook 02): parameter counts, and the tensor shapes a batch takes through the encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def parameter_table(model: torch.nn.Module) -> pd.DataFrame:
    """Parameter counts of a MultitaskModel's parts: backbone, sentence encoder, each head."""
    parts = {
        "backbone": model.backbone,
        "sentence encoder": model.encoder,
        **{f"head {k}": v for k, v in model.heads.items()},
    }
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    table = pd.DataFrame({"parameters": counts})
    table.loc["total"] = table["parameters"].sum()
    return table


@torch.no_grad()
def encoder_walkthrough(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, sentences: list[str]
) -> pd.DataFrame:
    """Tensor shapes at each stage of an SBERT + CNN-BiLSTM model, for a batch of sentences (eval mode)."""
    from mtl_lab.models.encoders import masked_max, masked_mean

    enc = model.encoder
    if not hasattr(enc, "cnn") or not hasattr(enc, "lstm"):
        raise ValueError("encoder_walkthrough needs the sbert_cnn_bilstm encoder")
    model.eval()
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    hidden, _ = model._states(ids, mask)
    feats = enc.cnn.features(hidden, mask)
    u = model.embed(ids, mask)
    rows = [
        ("wordpiece ids (padded)", ids, "tokenizer"),
        ("backbone token states", hidden, f"{model.num_layers}-layer backbone, last layer"),
        ("SBERT mean pool", masked_mean(hidden, mask), "mean over real tokens"),
        ("CNN n-gram features", feats, f"Conv1d k=1..4, {enc.cnn.convs[0].out_channels} filters each, ReLU"),
        ("CNN max pool", masked_max(feats, mask), "max over real tokens"),
        ("BiLSTM over n-grams", enc.lstm(feats, mask), "final forward + backward states"),
        ("sentence embedding u", u, "concat of the three"),
        ("QQP bi features [u; v; |u-v|]", torch.cat([u, u, u], -1), "-> Linear -> 1 logit"),
    ]
    return pd.DataFrame(
        [{"stage": s, "shape": " x ".join(map(str, t.shape)), "how": how} for s, t, how in rows]
    ).set_index("stage")
