"""PCGrad inside training: the shared/head split, both reductions, the sampling, the monitor."""

import dataclasses

import numpy as np
import pytest
import torch

from mtl_lab import data
from mtl_lab.models.model import ModelConfig
from mtl_lab.training.config import profile_config
from mtl_lab.training.loop import train
from mtl_lab.training.optim.aggregation import AGGREGATORS
from mtl_lab.training.optim.aggregation.imtl_g import imtl_g
from mtl_lab.training.optim.aggregation.pcgrad import project_conflicting
from mtl_lab.training.optim.aggregation.task_gradients import TaskGradients
from mtl_lab.training.sampling import epoch_plan
from mtl_lab.training.step import aggregate_backward


@pytest.fixture(scope="module")
def batches(tokenizer):
    out = {}
    for task in data.TASKS:
        enc = data.encode(data.load_split(task, "train", warn=False).head(4), task, tokenizer, max_length=24)
        out[task] = data.collate(enc, np.arange(4), ("joint", "pair") if task != "sst" else ("joint",))
    return out


def _flat(grads, params):
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


@pytest.mark.parametrize("aggregation", ["pcgrad", "imtl_g"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_heads_get_only_their_own_gradient_and_shared_parameters_the_aggregate(
    make_model, batches, aggregation, reduction
):
    model = make_model(encoder="mean", pair_head="ensemble").eval()  # eval: no dropout, same losses twice
    shared = model.shared_parameters()

    def losses():
        return [model.loss(t, model(b), b["labels"]) for t, b in batches.items()]

    per_task, heads = [], {}
    for task, loss in zip(batches, losses()):
        own = model.task_parameters(task)
        grads = torch.autograd.grad(loss, shared + own, allow_unused=True)
        per_task.append(_flat(grads[: len(shared)], shared))
        heads[task] = grads[len(shared) :]
    weight = 1 / 3 if reduction == "mean" else 1.0
    expected = AGGREGATORS[aggregation](torch.stack(per_task) * weight, "sum", torch.Generator().manual_seed(0))

    aggregate_backward(losses(), aggregation, reduction, TaskGradients(shared), torch.Generator().manual_seed(0))
    got = torch.cat([p.grad.flatten() for p in shared])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    for task in batches:  # each head: its own task's gradient, never the surgery's mixture
        for p, g in zip(model.task_parameters(task), heads[task]):
            torch.testing.assert_close(p.grad, g * weight, rtol=1e-4, atol=1e-6)


def test_sum_reduction_is_k_times_the_mean(make_model, batches):
    model = make_model().eval()
    shared = model.shared_parameters()
    out = {}
    for reduction in ("mean", "sum"):
        model.zero_grad(set_to_none=True)
        losses = [model.loss(t, model(b), b["labels"]) for t, b in batches.items()]
        aggregate_backward(losses, "pcgrad", reduction, TaskGradients(shared), torch.Generator().manual_seed(1))
        out[reduction] = torch.cat([p.grad.flatten() for p in shared]).clone()
    torch.testing.assert_close(out["sum"], 3 * out["mean"], rtol=1e-4, atol=1e-6)


def test_an_aggregator_of_your_own_without_out_works_by_name_and_as_a_function(make_model, batches, monkeypatch):
    model = make_model().eval()
    shared = model.shared_parameters()
    seen = []

    def first_task_only(grads, reduction="mean", generator=None):  # a student's signature: no ``out``
        seen.append(grads.shape)
        return grads[0].clone()

    @dataclasses.dataclass
    class FirstTask:  # a callable object, not a function (and unhashable: a dataclass with eq)
        def __call__(self, grads, reduction="mean", generator=None, out=None):
            return first_task_only(grads, reduction, generator)

    monkeypatch.setitem(AGGREGATORS, "first", first_task_only)  # notebook 04: "add it to AGGREGATORS"
    tg = TaskGradients(shared)
    for aggregation in ("first", first_task_only, FirstTask()):
        model.zero_grad(set_to_none=True)
        losses = [model.loss(t, model(b), b["labels"]) for t, b in batches.items()]
        aggregate_backward(losses, aggregation, "sum", tg, torch.Generator().manual_seed(0))
        torch.testing.assert_close(torch.cat([p.grad.flatten() for p in shared]), tg.buffer[0])
    assert seen == [(3, tg.dim)] * 3
    # a built-in one wrote nowhere else than the reused vector
    aggregate_backward(
        [model.loss(t, model(b), b["labels"]) for t, b in batches.items()], "pcgrad", "sum", tg, torch.Generator()
    )
    assert shared[0].grad.data_ptr() == tg.result.data_ptr()


def test_aggregators_commute_with_a_loss_scale():
    """Surgery on GradScaler-scaled gradients equals scaled surgery (so fp16 unscaling may come after)."""
    g = torch.randn(3, 50, generator=torch.Generator().manual_seed(3))
    g[1] = -g[0] + 0.1 * g[1]  # a conflict
    orders = [[1, 2], [2, 0], [0, 1]]
    torch.testing.assert_close(
        project_conflicting(1024.0 * g, "sum", orders=orders), 1024.0 * project_conflicting(g, "sum", orders=orders)
    )
    torch.testing.assert_close(imtl_g(1024.0 * g), 1024.0 * imtl_g(g), rtol=1e-4, atol=1e-3)


class _Sized:
    def __init__(self, n):
        self.lengths = np.full(n, 10)

    def __len__(self):
        return len(self.lengths)


def test_pcgrad_sampling_draws_tasks_uniformly_with_replacement():
    train = {"sst": _Sized(400), "qqp": _Sized(1600), "sts": _Sized(200)}
    plan = epoch_plan(train, ("sst", "qqp", "sts"), "uniform", 4, seed=0, epoch=0, epochs=1, draws=3)
    assert len(plan) == -(-(100 + 400 + 50) // 3)  # as many batches as the tasks hold, 3 a step
    assert all(len(step) == 3 and all(len(idx) == 4 for _, idx in step) for step in plan[:-1])
    tasks = [t for step in plan for t, _ in step]
    share = {t: tasks.count(t) / len(tasks) for t in train}
    assert all(abs(s - 1 / 3) < 0.05 for s in share.values()), share  # uniform, whatever the sizes
    assert any(len({t for t, _ in step}) < 3 for step in plan)  # with replacement: repeats happen


def test_pcgrad_run_logs_gradient_conflicts(tmp_path):
    cfg = profile_config(
        "smoke",
        epochs=1,
        train_limit=48,
        dev_limit=32,
        sampler="uniform",
        task_draws=3,
        batch_size=4,
        aggregation="pcgrad",
        monitor_every=4,
    )
    res = train(ModelConfig(), cfg, tmp_path, progress=False)
    log = res["gradient_conflicts"]
    assert [r["step"] for r in log] == list(range(0, 12, 4))  # 36 batches / 3 draws = 12 steps
    for row in log:
        assert set(row) == {"step", "epoch", "sst-qqp", "sst-sts", "qqp-sts"}
        assert all(-1.0 <= row[k] <= 1.0 for k in ("sst-qqp", "sst-sts", "qqp-sts"))
    assert res["finished"] and np.isfinite(res["best"]["overall"])
