"""The hand-written AdamW against torch.optim.AdamW, and its state_dict."""

import copy

import pytest
import torch

from mtl_lab.training.optim import AdamW


def make_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.LayerNorm(32), torch.nn.Linear(32, 3))


def run(model, opt, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 10, generator=g)
        y = torch.randn(16, 3, generator=g)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "readable"])
@pytest.mark.parametrize("wd", [0.0, 0.01, 0.1])
def test_matches_torch_adamw_over_1000_steps(wd, fused):
    ours_model, ref_model = make_model(), make_model()
    kw = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    ours = AdamW(ours_model.parameters(), fused=fused, **kw)
    run(ours_model, ours, 1000)
    assert ours.paths == {"fused" if fused else "readable"}
    run(ref_model, torch.optim.AdamW(ref_model.parameters(), foreach=False, **kw), 1000)
    for p, q in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_param_groups_with_different_lr_and_decay():
    ours_model, ref_model = make_model(), make_model()

    def groups(m):
        return [
            {"params": m[0].parameters(), "lr": 1e-3},
            {"params": m[3].parameters(), "lr": 3e-4, "weight_decay": 0.0},
        ]

    run(ours_model, AdamW(groups(ours_model), weight_decay=0.05), 200)
    run(ref_model, torch.optim.AdamW(groups(ref_model), weight_decay=0.05), 200)
    for p, q in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_first_step_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AdamW([p], lr=0.1, weight_decay=0.5, eps=0.0)
    p.grad = torch.tensor([0.5, 0.25])
    opt.step()
    # step 1: m_hat = g, v_hat = g^2 -> update = lr * sign(g); decay lr * wd * p first
    expected = torch.tensor([1.0, -2.0]) * (1 - 0.1 * 0.5) - 0.1 * torch.tensor([1.0, 1.0])
    torch.testing.assert_close(p.detach(), expected)


def test_without_bias_correction_takes_smaller_first_steps():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = AdamW([p], lr=0.1, weight_decay=0.0, correct_bias=False, eps=0.0)
    p.grad = torch.tensor([1.0])
    opt.step()
    # m = 0.1, v = 0.001 -> step = 0.1 * 0.1 / sqrt(0.001)
    assert p.item() == pytest.approx(1.0 - 0.1 * 0.1 / 0.001**0.5)


def test_state_dict_round_trip_continues_identically():
    a = make_model()
    opt_a = AdamW(a.parameters(), lr=1e-3)
    run(a, opt_a, 50)
    b = copy.deepcopy(a)
    opt_b = AdamW(b.parameters(), lr=1e-3)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    run(a, opt_a, 50, seed=7)
    run(b, opt_b, 50, seed=7)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert opt_b.state_dict()["state"][0]["step"] == 100


def test_parameters_without_grad_are_left_alone():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = AdamW([p, q], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.equal(q.detach(), torch.ones(2))
    assert q not in opt.state


def test_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="learning rate"):
        AdamW([torch.nn.Parameter(torch.ones(1))], lr=-1)
    with pytest.raises(ValueError, match="betas"):
        AdamW([torch.nn.Parameter(torch.ones(1))], betas=(1.0, 0.9))


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_fused_fast_path_matches_the_readable_path(wd):
    """The fused kernel (the default) and the readable _foreach update agree over many steps, two param groups."""
    models = [make_model(), make_model()]

    def groups(m):
        return [{"params": m[0].parameters()}, {"params": m[3].parameters(), "lr": 3e-4, "weight_decay": 0.0}]

    fast = AdamW(groups(models[0]), lr=1e-3, weight_decay=wd)
    readable = AdamW(groups(models[1]), lr=1e-3, weight_decay=wd, fused=False)
    calls = []
    fast._fused_update = lambda *a: calls.append(1) or AdamW._fused_update(*a)
    run(models[0], fast, 300)
    run(models[1], readable, 300)
    assert len(calls) == 300 * 2  # every step of both groups took the fused path
    for p, q in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for s, r in zip(fast.state.values(), readable.state.values()):
        torch.testing.assert_close(s["exp_avg_sq"], r["exp_avg_sq"], rtol=1e-5, atol=1e-12)
        assert s["step"] == r["step"] == 300


def test_fused_path_is_skipped_where_it_does_not_apply():
    """No bias correction, a group mixing dtypes, or a non-contiguous gradient takes the readable path."""
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    c = torch.nn.Parameter(torch.ones(3, 2))
    cases = (([a], {"correct_bias": False}, None), ([a, b], {}, None), ([c], {}, torch.ones(2, 3).t()))
    for params, kw, grad in cases:
        opt = AdamW(params, lr=0.1, **kw)
        opt._fused_update = lambda *_: pytest.fail("the fused path ran")
        for p in params:
            p.grad = torch.ones_like(p) if grad is None else grad
        opt.step()
        assert opt.paths == {"readable"}


def test_a_subclass_with_its_own_update_keeps_it():
    """A student's AdamW subclass that writes _update is run as written, not replaced by the fused kernel."""
    calls = []

    class Student(AdamW):
        @staticmethod
        def _update(group, params, grads, ms, vs, steps):
            calls.append(len(params))
            AdamW._update(group, params, grads, ms, vs, steps)

    model = make_model()
    opt = Student(model.parameters(), lr=1e-3)
    run(model, opt, 3)
    assert calls == [6, 6, 6] and opt.paths == {"readable"}


def test_fused_path_with_parameters_at_different_step_counts():
    """A parameter that skipped steps (no gradient) keeps its own step count on the fused path, as on the readable."""
    models = [make_model(), make_model()]
    opts = [AdamW(models[0].parameters(), lr=1e-2), AdamW(models[1].parameters(), lr=1e-2, fused=False)]
    g = torch.Generator().manual_seed(3)
    for step in range(20):
        x, y = torch.randn(8, 10, generator=g), torch.randn(8, 3, generator=g)
        for model, opt in zip(models, opts):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(model(x), y).backward()
            if step % 3:
                model[0].weight.grad = None  # this parameter sits out two steps in three
            opt.step()
    assert {s["step"] for s in opts[0].state.values()} == {7, 20}
    assert opts[0].paths == {"fused"}
    for p, q in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
