"""Weight averaging (mtl_lab.training.ema): the moving average's arithmetic, the swap, and a run scored with it."""

import pytest
import torch
from conftest import RESUMABLE, tiny_config
from torch import nn

from mtl_lab.models.model import ModelConfig, load_model
from mtl_lab.study import experiments
from mtl_lab.training.config import profile_config
from mtl_lab.training.ema import WeightAverage
from mtl_lab.training.loop import train


def test_the_average_follows_the_weights_with_a_warm_start_and_swaps_in_and_out():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # not trained: not averaged
    average = WeightAverage(model, decay=0.9)
    expected = model.weight.detach().clone()
    for n in range(1, 40):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        average.update(model)
        decay = min(0.9, (1 + n) / (10 + n))  # low at first, then the set decay
        expected = decay * expected + (1 - decay) * model.weight.detach()
    assert average.names == ["weight"]
    torch.testing.assert_close(average.averaged[0], expected)

    last = model.weight.detach().clone()
    with average.swapped_in(model) as scored:
        torch.testing.assert_close(scored.weight.detach(), expected)
    assert torch.equal(model.weight.detach(), last)  # training goes on from its own weights

    again = WeightAverage(model, decay=0.5)
    again.load_state_dict(average.state_dict())
    assert again.updates == 39 and again.decay == 0.9 and torch.equal(again.averaged[0], average.averaged[0])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        WeightAverage(model, decay=1.0)
    with pytest.raises(ValueError, match="other weights"):
        WeightAverage(nn.Linear(3, 2), 0.9).load_state_dict(average.state_dict())


def tiny(**kw):
    """The resumable tiny config with a weight average; frozen word embeddings as in the cpu profile (a weight that
    does not train is not averaged)."""
    return tiny_config(**{**RESUMABLE, "ema": 0.9, "freeze_word_embeddings": True, **kw})


def test_a_run_with_ema_scores_and_saves_the_average_and_resumes_to_the_same_result(tmp_path):
    straight = train(ModelConfig(), tiny(), tmp_path / "straight", progress=False)
    plain = train(ModelConfig(), tiny(ema=0.0), tmp_path / "plain", progress=False)
    assert straight["config"]["train"]["ema"] == 0.9
    # the same steps (the average never feeds back into training), other weights scored and saved
    assert [h["train_loss"] for h in straight["history"]] == [h["train_loss"] for h in plain["history"]]
    averaged, last = load_model(tmp_path / "straight").state_dict(), load_model(tmp_path / "plain").state_dict()
    trained = "backbone.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(averaged[trained], last[trained])
    word = "backbone.embeddings.word_embeddings.weight"  # frozen: not averaged, the same in both
    assert torch.equal(averaged[word], last[word])

    def interrupt(step):
        if step == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ModelConfig(), tiny(), tmp_path / "resumed", progress=False, on_step=interrupt)
    resumed = train(ModelConfig(), tiny(), tmp_path / "resumed", progress=False)
    assert [h["dev"] for h in resumed["history"]] == [h["dev"] for h in straight["history"]]
    again = load_model(tmp_path / "resumed").state_dict()
    assert all(torch.equal(again[k], averaged[k]) for k in averaged)

    with pytest.raises(ValueError, match="ema is the weight average's decay"):
        profile_config("smoke", ema=1.5)


def test_ema_run_names():
    model, cfg = experiments.experiment("full-mean-ema-s1", "cpu")
    plain_model, plain = experiments.experiment("full-mean-s1", "cpu")
    assert model == plain_model and cfg.ema == experiments.EMA_DECAY
    assert {**cfg.to_dict(), "ema": 0.0} == plain.to_dict()
    assert experiments.experiment("full-mean-llrd-ema", "cpu")[1].layer_decay == experiments.LLRD["layer_decay"]
