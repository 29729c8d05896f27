"""The answer scan flags every known way to points without code, and leaves honest answers alone."""

import pytest

from mtl_lab.course import integrity

CHEATS = {
    "adamw": [
        'checks.check_adamw = lambda cls: print("✓")',
        "StudentAdamW = torch.optim.AdamW",
        "from torch.optim import AdamW as StudentAdamW",
        "from torch import optim as o\nStudentAdamW = o.AdamW",
        "import torch.optim as opt\nStudentAdamW = type('StudentAdamW', (opt.AdamW,), {})",
        "g = getattr\nStudentAdamW = g(torch.optim, 'Ada' + 'mW')",
        "import operator\nStudentAdamW = operator.attrgetter('optim.AdamW')(torch)",
        "StudentAdamW = getattr(torch.optim, 'AdamW')",
        "imp = __import__\nos = imp('os')",
    ],
    "info-nce": [
        "from mtl_lab.training.simcse import info_nce as student_info_nce",
        "import mtl_lab.training.simcse as s\nstudent_info_nce = s.info_nce",
    ],
    "pcgrad": [
        "torch.allclose = lambda *a, **k: True",
        "m = torch.sys.modules['__main__']\nm.run_cases = lambda *a: {}",
        "torch.save({'cases': {}}, '/job/outputs.pt')\ntorch.os._exit(0)",
        "import sys\nsys.modules['torch'].allclose = None",
        "F.normalize.__globals__['x'] = 1",
        "exec('torch.allclose = None')",
        "setattr(torch, 'allclose', None)",
        "open('/work/main/notebooks/04_pcgrad.ipynb').read()",
        "import socket",
        "(lambda: 0).__code__",
    ],
}
HONEST = {
    "adamw": """\
import math
import itertools


class StudentAdamW(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in itertools.chain(group["params"]):
                state = self.state[p]
                state["t"] = state.get("t", 0) + 1
                p.mul_(1 - group["lr"] * group["weight_decay"] * math.sqrt(1.0))
""",
    "pcgrad": """\
import functools


def student_pcgrad(grads, reduction="mean", generator=None):
    out = functools.reduce(lambda a, b: a + b, list(grads))
    return out / len(grads) if reduction == "mean" else out
""",
    "info-nce": """\
from torch import nn


def student_info_nce(anchors, positives, temperature=0.05, hard_negatives=None, negative_mask=None):
    a = F.normalize(anchors, dim=-1)
    return nn.CrossEntropyLoss()(a @ F.normalize(positives, dim=-1).T / temperature, torch.arange(len(a)))
""",
}


@pytest.mark.parametrize("exercise, source", [(e, s) for e, cheats in CHEATS.items() for s in cheats])
def test_every_known_cheat_is_flagged_with_its_line(exercise, source):
    flags = integrity.scan(source, exercise)
    assert flags, source
    assert all(f.line >= 1 and f.code for f in flags)


@pytest.mark.parametrize("exercise", sorted(HONEST))
def test_honest_answers_are_not_flagged(exercise):
    assert integrity.scan(HONEST[exercise], exercise) == []
