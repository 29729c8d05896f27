"""Every checker passes the reference (and torch's AdamW) and rejects each known mistake with its hint."""

import pytest
import torch

from mtl_lab.course import checks
from mtl_lab.course.checks import CheckFailed, ExerciseNotDone
from mtl_lab.models.encoders import build_encoder
from mtl_lab.training.optim import AdamW
from mtl_lab.training.optim.aggregation.pcgrad import project_conflicting
from mtl_lab.training.simcse import info_nce

# -- (i) AdamW --------------------------------------------------------------------------------------


class StudentAdamW(torch.optim.Optimizer):
    """A plain AdamW with switches for the known mistakes."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, mistake=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.mistake = mistake

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                g = p.grad
                if self.mistake == "l2":
                    g = g + group["weight_decay"] * p
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                state["m"].mul_(b1).add_(g, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                m, v = state["m"], state["v"]
                if self.mistake != "no_bias_correction":
                    m, v = m / (1 - b1 ** state["t"]), v / (1 - b2 ** state["t"])
                if self.mistake not in ("l2", "no_decay"):
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.sub_(group["lr"] * m / (v.sqrt() + group["eps"]))


def with_mistake(mistake):
    return lambda params, **kw: StudentAdamW(params, mistake=mistake, **kw)


def test_adamw_checker_passes_the_reference_torch_and_a_correct_student(capsys):
    for cls in (AdamW, torch.optim.AdamW, StudentAdamW):
        checks.check_adamw(cls)
    assert capsys.readouterr().out.count("✓ check_adamw") == 3


@pytest.mark.parametrize(
    "mistake, hint",
    [
        ("l2", "L2 penalty added to the gradient"),
        ("no_bias_correction", "no bias correction"),
        ("no_decay", "weight decay is missing"),
    ],
)
def test_adamw_checker_names_each_known_mistake(mistake, hint):
    with pytest.raises(CheckFailed, match=hint) as err:
        checks.check_adamw(with_mistake(mistake))
    assert "expected [" in str(err.value) and "got [" in str(err.value)


# -- (ii) pooling and the pair head ----------------------------------------------------------------


def test_mean_pooling_checker_passes_the_lab_encoder_and_names_mistakes():
    encoder = build_encoder("mean", 4, 8, 8, 0.0)
    checks.check_mean_pooling(lambda h, m: encoder(h, m, None))
    with pytest.raises(CheckFailed, match="padding included"):
        checks.check_mean_pooling(lambda h, m: h.mean(1))
    with pytest.raises(CheckFailed, match="sequence length T"):
        checks.check_mean_pooling(lambda h, m: (h * m.unsqueeze(-1)).sum(1) / h.shape[1])
    with pytest.raises(CheckFailed, match="shape"):
        checks.check_mean_pooling(lambda h, m: h.sum(-1))


def test_pair_features_checker():
    checks.check_pair_features(lambda u, v: torch.cat([u, v, (u - v).abs()], -1))
    with pytest.raises(CheckFailed, match="without the absolute value"):
        checks.check_pair_features(lambda u, v: torch.cat([u, v, u - v], -1))
    with pytest.raises(CheckFailed, match="u \\* v"):
        checks.check_pair_features(lambda u, v: torch.cat([u, v, u * v], -1))


# -- (iii) SimCSE ----------------------------------------------------------------------------------


def test_info_nce_checker_passes_the_reference_and_names_mistakes():
    checks.check_info_nce(info_nce)

    def unnormalised(a, p, temperature=0.05, hard_negatives=None, negative_mask=None):
        return checks._info_nce_raw(a, p, temperature, hard_negatives, negative_mask)

    def twice(a, p, temperature=0.05, **kw):
        return info_nce(a, p, temperature * temperature, **kw)

    def never(a, p, temperature=0.05, **kw):
        return info_nce(a, p, 1.0, **kw)

    def no_hard_negatives(a, p, temperature=0.05, hard_negatives=None, negative_mask=None):
        return info_nce(a, p, temperature)

    for fn, hint in ((unnormalised, "not normalised"), (twice, "applied twice"), (never, "not applied")):
        with pytest.raises(CheckFailed, match=hint):
            checks.check_info_nce(fn)
    with pytest.raises(CheckFailed, match="with hard negatives"):
        checks.check_info_nce(no_hard_negatives)


# -- (iv) PCGrad -----------------------------------------------------------------------------------


def test_pcgrad_checker_passes_the_reference_in_any_order_and_names_mistakes():
    checks.check_project_conflicting(project_conflicting)
    checks.check_project_conflicting(
        lambda g, r="mean", gen=None: project_conflicting(g, r, torch.Generator().manual_seed(7))
    )

    def against_projected(grads, reduction="mean", generator=None):
        k = len(grads)
        order = [[j for j in range(k) if j != i] for i in range(k)]
        return checks._pcgrad_variant(grads, order, reduction, against_projected=True)

    def always(grads, reduction="mean", generator=None):
        k = len(grads)
        order = [[j for j in range(k) if j != i] for i in range(k)]
        return checks._pcgrad_variant(grads, order, reduction, always=True)

    def plain(grads, reduction="mean", generator=None):
        return grads.mean(0) if reduction == "mean" else grads.sum(0)

    def wrong_reduction(grads, reduction="mean", generator=None):
        return project_conflicting(grads, "sum" if reduction == "mean" else "mean", generator)

    for fn, hint in (
        (against_projected, "already-projected"),
        (always, "without a conflict"),
        (plain, "no projection"),
        (wrong_reduction, "instead of the mean"),
    ):
        with pytest.raises(CheckFailed, match=hint):
            checks.check_project_conflicting(fn)


# -- stubs and messages ----------------------------------------------------------------------------


def test_a_stub_gives_one_clear_message_without_a_traceback():
    def stub(*args, **kwargs):
        raise NotImplementedError("write the masked mean here")

    with pytest.raises(ExerciseNotDone) as err:
        checks.check_mean_pooling(stub)
    shown = err.value._render_traceback_()
    assert len(shown) == 1 and "not written yet (write the masked mean here)" in shown[0]
    with pytest.raises(ExerciseNotDone):
        checks.check_adamw(lambda params, **kw: stub())
