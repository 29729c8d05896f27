"""The aggregators: PCGrad against Algorithm 1 and on the paper's toy cases, IMTL-G, TaskGradients, the adapter."""

import itertools

import numpy as np
import pytest
import torch

from mtl_lab.training.optim.aggregation import AGGREGATORS, Aggregator, as_aggregator
from mtl_lab.training.optim.aggregation.imtl_g import imtl_g
from mtl_lab.training.optim.aggregation.matrix import cosine_matrix
from mtl_lab.training.optim.aggregation.pcgrad import project_conflicting, project_conflicting_reference
from mtl_lab.training.optim.aggregation.sum import sum_gradients
from mtl_lab.training.optim.aggregation.task_gradients import TaskGradients


def test_no_conflict_gives_the_plain_mean_and_sum():
    g = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(project_conflicting(g), g.mean(0))
    torch.testing.assert_close(project_conflicting(g, reduction="sum"), g.sum(0))


def test_two_conflicting_tasks_by_hand():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g1' = g1 - (g1.g2 / |g2|^2) g2 = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5); g2' = g2 + 1 * g1 = (0, 1)
    out = project_conflicting(torch.stack([g1, g2]), reduction="sum")
    torch.testing.assert_close(out, torch.tensor([0.5, 1.5]))
    assert out @ g1 >= 0 and out @ g2 >= 0


@pytest.mark.parametrize("seed", range(20))
def test_two_conflicting_tasks_never_hurt_either_task(seed):
    torch.manual_seed(seed)
    g = torch.randn(2, 50)
    if g[0] @ g[1] >= 0:
        g[1] = -g[1]
    for reduction in ("mean", "sum"):
        out = project_conflicting(g, reduction=reduction)
        assert out @ g[0] >= -1e-5 and out @ g[1] >= -1e-5


@pytest.mark.parametrize("seed", range(10))
def test_matches_algorithm_1_for_every_task_order_k3(seed):
    torch.manual_seed(seed)
    g = torch.randn(3, 20)
    g[2] = -0.7 * g[0] + 0.3 * torch.randn(20)  # make sure some pairs conflict
    per_task = [list(itertools.permutations([j for j in range(3) if j != i])) for i in range(3)]
    results = []
    for orders in itertools.product(*per_task):
        orders = [list(o) for o in orders]
        for reduction in ("mean", "sum"):
            ours = project_conflicting(g, reduction=reduction, orders=orders)
            ref = project_conflicting_reference(g, orders, reduction=reduction)
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        results.append(project_conflicting_reference(g, orders))
    drawn = project_conflicting(g, generator=torch.Generator().manual_seed(seed))
    assert any(torch.allclose(drawn, r, atol=1e-5) for r in results)


def test_zero_gradient_is_handled():
    g = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-1.0, 0.5]])
    out = project_conflicting(g)
    assert torch.isfinite(out).all()


def test_mean_and_sum_differ_by_k():
    torch.manual_seed(0)
    g = torch.randn(3, 8)
    orders = [[1, 2], [0, 2], [0, 1]]
    torch.testing.assert_close(
        project_conflicting(g, "sum", orders=orders), 3 * project_conflicting(g, "mean", orders=orders)
    )
    with pytest.raises(ValueError, match="reduction"):
        project_conflicting(g, reduction="max")


def test_task_gradients_collects_each_loss_without_copies():
    torch.manual_seed(0)
    shared = torch.nn.Linear(4, 3)
    heads = torch.nn.ModuleList([torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)])
    x = torch.randn(5, 4)
    losses = [heads[k](shared(x)).pow(2).mean() for k in range(2)]
    expected = [
        torch.autograd.grad(loss, list(shared.parameters()) + list(heads[k].parameters()), retain_graph=True)
        for k, loss in enumerate(losses)
    ]
    tg = TaskGradients(list(shared.parameters()))
    grads = tg.backward(losses)
    assert grads.shape == (2, 15)
    for k in range(2):
        torch.testing.assert_close(grads[k], torch.cat([g.reshape(-1) for g in expected[k][:2]]))
        # each head only ever sees its own task's gradient
        torch.testing.assert_close(heads[k].weight.grad, expected[k][2])
    combined = project_conflicting(grads, reduction="sum")
    tg.assign(combined)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared.parameters()]), combined)


@pytest.mark.parametrize("name", ["sum", "pcgrad", "imtl_g"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_an_aggregator_writes_the_same_vector_into_a_reused_out(name, reduction):
    grads = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    grads[1] = -0.5 * grads[0] + 0.1 * grads[1]  # a conflict, so PCGrad projects
    fresh = AGGREGATORS[name](grads, reduction, torch.Generator().manual_seed(0))
    tg = TaskGradients([torch.nn.Parameter(torch.zeros(50))])
    out = tg.result
    for _ in range(2):  # the same buffer, step after step
        got = AGGREGATORS[name](grads, reduction, torch.Generator().manual_seed(0), out=out)
        assert got.data_ptr() == out.data_ptr() and tg.result is out
        torch.testing.assert_close(got, fresh)


def test_the_registry_names_the_functions_of_their_modules():
    assert AGGREGATORS == {"sum": sum_gradients, "pcgrad": project_conflicting, "imtl_g": imtl_g}


@pytest.mark.parametrize("name", ["sum", "pcgrad", "imtl_g"])
def test_the_adapter_of_a_built_in_aggregator_writes_into_out(name):
    grads = torch.randn(3, 50, generator=torch.Generator().manual_seed(1))
    grads[1] = -0.5 * grads[0] + 0.1 * grads[1]
    for reduction in ("mean", "sum"):
        expected = AGGREGATORS[name](grads, reduction, torch.Generator().manual_seed(0))
        for spec in (name, AGGREGATORS[name]):  # by name or as the function itself
            agg = as_aggregator(spec, reduction)
            out = torch.zeros(50)
            got = agg(grads, torch.Generator().manual_seed(0), out)
            assert got.data_ptr() == out.data_ptr()
            torch.testing.assert_close(got, expected)
            assert as_aggregator(agg) is agg


def test_the_adapter_of_your_own_aggregator_never_passes_out():
    calls = []

    def first_task_only(grads, reduction="mean", generator=None):  # a student's signature: no ``out``
        calls.append(reduction)
        return grads[0].clone()

    class Unhashable:  # a callable object that cannot be hashed (a dataclass with eq, say)
        __hash__ = None

        def __call__(self, grads, reduction, generator):
            return first_task_only(grads, reduction, generator)

    grads = torch.randn(3, 8)
    for fn in (first_task_only, Unhashable()):
        got = as_aggregator(fn)(grads, torch.Generator(), out=torch.zeros(8))
        torch.testing.assert_close(got, grads[0])
    assert calls == ["sum", "sum"]  # the training step's loss weights took the mean already
    assert isinstance(as_aggregator(first_task_only, "mean"), Aggregator)


def test_the_adapter_refuses_clearly():
    with pytest.raises(ValueError, match=r"aggregation must be one of \('sum', 'pcgrad', 'imtl_g'\), got 'gradvac'"):
        as_aggregator("gradvac")
    with pytest.raises(ValueError, match="reduction"):
        as_aggregator("pcgrad", "max")
    with pytest.raises(TypeError, match="a name in"):
        as_aggregator(3)
    with pytest.raises(ValueError, match=r"aggregator <lambda> returned \(3, 8\), expected a vector of 8"):
        as_aggregator(lambda g, r, gen: g)(torch.randn(3, 8))


def test_cosine_matrix():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, 0.0]])
    cos = cosine_matrix(g)
    assert cos[0, 1] == 0 and cos[0, 2] == pytest.approx(-1.0) and cos[0, 0] == pytest.approx(1.0)
    assert cos[3].abs().sum() == 0


@pytest.mark.parametrize("seed", range(5))
def test_imtl_g_projects_equally_on_every_task(seed):
    torch.manual_seed(seed)
    g = torch.randn(3, 30, dtype=torch.float64)
    g[1] *= 10  # one task with a much larger gradient must not dominate
    out = imtl_g(g)
    proj = (g / g.norm(dim=1, keepdim=True)) @ out
    torch.testing.assert_close(proj, proj[0].expand(3), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(imtl_g(g, "sum"), 3 * out, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(imtl_g(torch.stack([g[0], torch.zeros(30, dtype=torch.float64), g[2]]))).all()


def test_toy_objective_plain_descent_stalls_and_pcgrad_does_not():
    from mtl_lab.training.optim.toy import optimize_toys, toy_losses

    # One path in the valley is chaotic: a start moved by 1e-13, or another CPU's last bit of tanh, ends
    # elsewhere. What holds is the average over a small cloud of starts (24 starts: plain 5.5-8.2, mean 7.0;
    # PCGrad 1.4-4.7, mean 3.2 after 20,000 steps).
    starts = [(-8.5 + 1e-4 * i, 7.5) for i in range(6)]
    paths = optimize_toys([(s, agg) for s in starts for agg in ("sum", "pcgrad")], steps=20000)
    final = [float(toy_losses(p[-1]).sum()) for p in paths]
    plain, pcgrad = sum(final[0::2]) / len(starts), sum(final[1::2]) / len(starts)
    assert plain > 6.0  # plain descent stays on the valley wall
    assert pcgrad < plain - 2.0  # PCGrad keeps descending along the floor


def test_2d_geometry_of_the_widget():
    from mtl_lab.course.widgets import pcgrad_2d

    agree = pcgrad_2d(45)
    np.testing.assert_allclose(agree["pcgrad"], agree["plain"])  # no conflict: nothing projected
    v = pcgrad_2d(135)  # g1 = (1, 0), g2 = (-0.707, 0.707): each loses its component along the other
    np.testing.assert_allclose(v["g1'"], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(v["g2'"], [0.0, np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(v["pcgrad"], v["g1'"] + v["g2'"], atol=1e-6)
    assert v["pcgrad"] @ v["g1"] >= 0 and v["pcgrad"] @ v["g2"] >= 0


def test_toy_points_optimised_together_move_as_if_alone():
    from mtl_lab.training.optim.toy import optimize_toy, optimize_toys

    runs = [((-8.5, 7.5), "sum"), ((-8.5, 7.5), "pcgrad"), ((9.0, 9.0), "imtl_g"), ((0.0, -3.0), "pcgrad")]
    together = optimize_toys(runs, steps=300, seed=3)
    for (start, agg), path in zip(runs, together):
        assert path.shape == (301, 2)
        torch.testing.assert_close(path, optimize_toy(start, agg, steps=300, seed=3), rtol=0, atol=0)
