"""MultitaskModel: output shapes and losses per task and pair head, parameter groups."""

import numpy as np
import pytest
import torch

from mtl_lab import data
from mtl_lab.evaluate import outputs_to_predictions
from mtl_lab.models.model import ModelConfig
from mtl_lab.tasks import kind_of


@pytest.fixture(scope="module")
def batches(tokenizer):
    out = {}
    for task in data.TASKS:
        enc = data.encode(data.load_split(task, "dev").head(6), task, tokenizer, max_length=32)
        out[task] = data.collate(enc, np.arange(6), ("joint", "pair") if task != "sst" else ("joint",))
    return out


@pytest.mark.parametrize("pair_head", ["cross", "bi", "ensemble"])
@pytest.mark.parametrize("encoder", ["cls", "mean", "sbert_cnn_bilstm"])
def test_output_shapes_losses_and_predictions(make_model, batches, pair_head, encoder):
    model = make_model(encoder=encoder, pair_head=pair_head)
    shapes = {"sst": (6, 5), "qqp": (6,), "sts": (6,)}
    for task, batch in batches.items():
        out = model(batch)
        assert out.shape == shapes[task]
        loss = model.loss(task, out, batch["labels"])
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        pred = outputs_to_predictions(task, kind_of(task).soft(out.detach()).numpy())
        if task == "sts":
            assert ((pred >= 0) & (pred <= 5)).all()
        else:
            assert set(pred.tolist()) <= set(range(5 if task == "sst" else 2))


def test_views_follow_the_pair_head(make_model):
    assert make_model(pair_head="cross").views("qqp") == ("joint",)
    assert make_model(pair_head="bi").views("sts") == ("pair",)
    assert make_model(pair_head="ensemble").views("qqp") == ("joint", "pair")
    assert make_model(pair_head="bi").views("sst") == ("joint",)


def test_ensemble_sts_starts_at_the_bi_encoder_cosine(make_model, batches):
    model = make_model(encoder="mean", pair_head="ensemble").eval()
    batch = batches["sts"]
    u, v = model.embed_pair(batch)
    torch.testing.assert_close(model(batch), 5 * torch.nn.functional.cosine_similarity(u, v))


def test_shared_and_task_parameters_partition_the_model(make_model):
    model = make_model(encoder="mean", pair_head="ensemble")
    shared = {id(p) for p in model.shared_parameters()}
    heads = {t: {id(p) for p in model.task_parameters(t)} for t in data.TASKS}
    assert not any(shared & h for h in heads.values())
    assert not (heads["sst"] & heads["qqp"]) and not (heads["qqp"] & heads["sts"])
    assert shared | set().union(*heads.values()) == {id(p) for p in model.parameters()}


def test_parameter_groups_decay_and_layerwise_lr(make_model):
    model = make_model()
    groups = model.parameter_groups(lr=1e-4, weight_decay=0.01, layer_decay=0.5)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    lrs = sorted({g["lr"] for g in groups})
    assert lrs[-1] == pytest.approx(1e-4) and lrs[0] == pytest.approx(1e-4 * 0.5**7)  # 6 layers + embeddings
    bias = model.backbone.encoder.layer[0].attention.self.query.bias
    assert next(g for g in groups if any(p is bias for p in g["params"]))["weight_decay"] == 0.0


def test_unknown_tasks_are_a_clear_error():
    with pytest.raises(ValueError, match="unknown task"):
        ModelConfig(tasks=("sst", "mnli"))


@pytest.mark.parametrize(
    ("field", "value", "choices"),
    [
        ("encoder", "sbert", "'cls', 'pooled', 'mean', 'cnn', 'bilstm', 'bilstm_cnn', 'sbert_cnn_bilstm'"),
        ("pair_head", "siamese", "'cross', 'bi', 'ensemble'"),
    ],
)
def test_a_bad_encoder_or_pair_head_fails_before_any_weights_load(monkeypatch, tmp_path, field, value, choices):
    import mtl_lab.models.model as model_module

    def no_loading(*args, **kwargs):
        raise AssertionError("weights loaded before the config was checked")

    monkeypatch.setattr(model_module, "load_backbone", no_loading)
    expected = f"ModelConfig.{field} must be one of {choices}; got {value!r}"
    with pytest.raises(ValueError) as raised:
        ModelConfig(**{field: value})
    assert str(raised.value) == expected
    # a checkpoint whose config names it fails the same way, before its weights are read into a model
    torch.save({"model_config": {field: value}, "state_dict": {}}, tmp_path / "best.pt")
    with pytest.raises(ValueError) as raised:
        model_module.load_model(tmp_path)
    assert str(raised.value) == expected
