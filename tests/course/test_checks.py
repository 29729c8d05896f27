"""Every checker passes the reference (and torch's AdamW), and names each known mistake, written as a student would."""

import pytest
import torch

from mtl_lab.course import checks
from mtl_lab.course.checks import CheckFailed, ExerciseNotDone
from mtl_lab.models.encoders import build_encoder
from mtl_lab.training.optim import AdamW
from mtl_lab.training.optim.aggregation.pcgrad import project_conflicting
from mtl_lab.training.simcse import info_nce


def message(err) -> str:
    """The checker's message with its line breaks folded, to search for a hint."""
    return " ".join(str(err.value).split())


# -- (i) AdamW --------------------------------------------------------------------------------------


class StudentAdamW(torch.optim.Optimizer):
    """A plain AdamW with switches for the known mistakes."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, mistake=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.mistake = mistake

    @torch.no_grad()
    def step(self):
        bad = self.mistake
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                g = p.grad
                if bad == "l2":
                    g = g + wd * p
                state = self.state[p]
                if not state:
                    state.update(t=1 if bad == "fixed_t" else 0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                if bad not in ("fixed_t", "t_zero", "t_behind"):
                    state["t"] += 2 if bad == "t_ahead" and state["t"] == 0 else 1
                t = state["t"]
                if bad == "swapped_betas":
                    state["m"] = b1 * g + (1 - b1) * state["m"]
                    state["v"] = b2 * g * g + (1 - b2) * state["v"]
                else:
                    state["m"].mul_(b1).add_(g, alpha=1 - b1)
                    state["v"].mul_(b2).add_(g.abs() if bad == "v_of_g" else g * g, alpha=1 - b2)
                m, v = state["m"], state["v"]
                if bad != "no_bias_correction":
                    m, v = m / (1 - b1**t), v / (1 - b2**t)
                if bad == "t_behind":
                    state["t"] += 1
                decay = {"l2": 0.0, "no_decay": 0.0, "decay_sign": -lr * wd, "decay_no_lr": wd}.get(bad, lr * wd)
                p.mul_(1 - decay)
                step = lr * m / (v.sqrt() + group["eps"])
                p.add_(step) if bad == "ascent" else p.sub_(step)


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
        ("fixed_t", "step counter never moves"),
        ("t_zero", "1 - beta^t is 0 when t is 0"),
        ("t_behind", "1 - beta^t is 0 when t is 0"),
        ("t_ahead", "one step ahead"),
        ("decay_sign", "decay has the wrong sign"),
        ("decay_no_lr", "not scaled by the learning rate"),
        ("swapped_betas", "beta and 1 - beta swapped"),
        ("v_of_g", "squared gradient"),
        ("ascent", "update has the wrong sign"),
    ],
)
def test_adamw_checker_names_each_known_mistake(mistake, hint):
    with pytest.raises(CheckFailed) as err:
        checks.check_adamw(with_mistake(mistake))
    assert hint in message(err), message(err)
    lines = str(err.value).splitlines()
    assert lines[1].startswith("  expected [") and lines[2].startswith("  got      [")
    assert all(len(line) <= 80 for line in lines), lines


def test_an_error_in_the_students_code_is_one_line_with_their_line_and_no_lab_frames():
    class Broken(torch.optim.Optimizer):
        def __init__(self, params, **kw):
            super().__init__(params, kw)

        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    p.sub_(group["lr"] * gradient)  # noqa: F821 - the student's typo

    with pytest.raises(CheckFailed) as err:
        checks.check_adamw(Broken)
    text = str(err.value)
    assert "NameError: name 'gradient' is not defined" in text
    assert "your line" in text and 'p.sub_(group["lr"] * gradient)' in text
    assert "mtl_lab" not in text and "torch/" not in text and len(text.splitlines()) <= 3
    assert err.value._render_traceback_()[0].startswith("\x1b[31m✗ check_adamw")


def test_a_message_shows_the_values_where_they_differ():
    """Expected and got are shown around the largest difference, never as identical leading values."""

    def last_row_wrong(h, m):
        out = checks._mean_pool(h, m)
        out[-1] = h[-1].mean(0)
        return out

    with pytest.raises(CheckFailed) as err:
        checks.check_mean_pooling(last_row_wrong)
    expected, got = (line.split("[", 1)[1] for line in str(err.value).splitlines()[1:3])
    assert expected != got


# -- (ii) pooling and the pair head ----------------------------------------------------------------


def test_mean_pooling_checker_passes_the_lab_encoder_and_names_mistakes():
    encoder = build_encoder("mean", 4, 8, 8, 0.0)
    checks.check_mean_pooling(lambda h, m: encoder(h, m, None))
    mistakes = {
        "padding included": lambda h, m: h.mean(1),
        "sequence length T": lambda h, m: (h * m.unsqueeze(-1)).sum(1) / h.shape[1],
        "the batch's mean length": lambda h, m: (h * m.unsqueeze(-1)).sum(1) / m.sum(1).float().mean(),
        "the sum over real tokens": lambda h, m: (h * m.unsqueeze(-1)).sum(1),
        "[CLS] vector": lambda h, m: h[:, 0],
        "shape": lambda h, m: h.sum(-1),
    }
    for hint, fn in mistakes.items():
        with pytest.raises(CheckFailed) as err:
            checks.check_mean_pooling(fn)
        assert hint in message(err), message(err)


def test_pair_features_checker():
    checks.check_pair_features(lambda u, v: torch.cat([u, v, (u - v).abs()], -1))
    mistakes = {
        "without the absolute value": lambda u, v: torch.cat([u, v, u - v], -1),
        "u * v": lambda u, v: torch.cat([u, v, u * v], -1),
        "another order": lambda u, v: torch.cat([u, (u - v).abs(), v], -1),
        "concatenate along the last dimension": lambda u, v: torch.stack([u, v, (u - v).abs()]),
    }
    for hint, fn in mistakes.items():
        with pytest.raises(CheckFailed) as err:
            checks.check_pair_features(fn)
        assert hint in message(err), message(err)


# -- (iii) SimCSE ----------------------------------------------------------------------------------


def test_info_nce_checker_passes_the_reference_and_names_mistakes():
    checks.check_info_nce(info_nce)

    def unnormalised(a, p, temperature=0.05, hard_negatives=None, negative_mask=None):
        return checks._info_nce_raw(a, p, temperature, hard_negatives, negative_mask)

    mistakes = {
        "not normalised": unnormalised,
        "applied twice": lambda a, p, temperature=0.05, **kw: info_nce(a, p, temperature * temperature, **kw),
        "not applied": lambda a, p, temperature=0.05, **kw: info_nce(a, p, 1.0, **kw),
        "multiplied by the temperature": lambda a, p, temperature=0.05, **kw: info_nce(a, p, 1 / temperature, **kw),
        "hard negatives ignored": lambda a, p, temperature=0.05, **kw: info_nce(a, p, temperature),
        "negative_mask ignored": lambda a, p, temperature=0.05, hard_negatives=None, negative_mask=None: info_nce(
            a, p, temperature, hard_negatives
        ),
        "the sum over anchors": lambda a, p, temperature=0.05, **kw: info_nce(a, p, temperature, **kw) * len(a),
    }
    for hint, fn in mistakes.items():
        with pytest.raises(CheckFailed) as err:
            checks.check_info_nce(fn)
        assert hint in message(err), (hint, message(err))


# -- (iv) PCGrad -----------------------------------------------------------------------------------


def pcgrad(grads, reduction="mean", generator=None, mistake=None):
    """A student's PCGrad with switches for the known mistakes."""
    k = len(grads)
    projected = [g.clone() for g in grads]
    for i in range(k):
        for j in (j for j in range(k) if j != i):
            gj = projected[j] if mistake == "against_projected" else grads[j]
            dot = projected[i] @ gj
            conflict = {"always": True, "inverted": dot > 0}.get(mistake, dot < 0)
            if conflict and gj @ gj > 0:
                projected[i] = projected[i] - dot / (gj @ gj) * gj
    out = torch.stack(projected).sum(0)
    if mistake == "reduction":
        reduction = "sum" if reduction == "mean" else "mean"
    return out / k if reduction == "mean" else out


def test_pcgrad_checker_passes_the_reference_in_any_order_and_names_mistakes():
    checks.check_project_conflicting(project_conflicting)
    checks.check_project_conflicting(
        lambda g, r="mean", gen=None: project_conflicting(g, r, torch.Generator().manual_seed(7))
    )
    checks.check_project_conflicting(pcgrad)
    mistakes = {
        "against_projected": "already-projected",
        "always": "without a conflict",
        "inverted": "the condition is inverted",
        "reduction": "instead of the mean",
    }
    for mistake, hint in mistakes.items():
        with pytest.raises(CheckFailed) as err:
            checks.check_project_conflicting(lambda g, r="mean", gen=None, m=mistake: pcgrad(g, r, gen, m))
        assert hint in message(err), (mistake, message(err))
    with pytest.raises(CheckFailed) as err:
        checks.check_project_conflicting(lambda g, r="mean", gen=None: g.mean(0) if r == "mean" else g.sum(0))
    assert "no projection" in message(err)


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


def test_the_checks_module_holds_no_reference():
    """A student's kernel imports checks: the references it judges with are imported only inside the judges."""
    names = vars(checks)
    assert not {"AdamW", "info_nce", "project_conflicting", "project_conflicting_reference"} & set(names)
