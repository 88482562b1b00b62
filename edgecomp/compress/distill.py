"""Training helpers and knowledge distillation (Hinton et al., 2015).

* :func:`fit` - plain supervised training / fine-tuning (seeded, progress on stderr);
  it also runs distillation when given a ``teacher``.
* :func:`kd_loss` - ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``.
* :func:`distill` - train any student against any teacher whose outputs have the same
  shape, optionally matching intermediate features through a learned adapter
  (1x1 conv or linear, FitNets-style), dropped after training.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

import numpy as np

from ..errors import ModelError

__all__ = ["fit", "accuracy", "evaluate", "predict", "kd_loss", "distill", "FeatureAdapter"]


def _tensor(x):
    import torch
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def predict(model, x, batch: int = 512) -> np.ndarray:
    """Logits of ``model`` (eval mode, no grad) for numpy/tensor ``x``."""
    import torch
    x = _tensor(x)
    was = model.training
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(x[i:i + batch]).float().numpy())
    model.train(was)
    return np.concatenate(outs)


def accuracy(model, x, y) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((predict(model, x).argmax(1) == np.asarray(y)).mean())


def evaluate(model, x, y, task=None) -> float:
    """The task's score of ``model`` on (x, y) (higher is better; accuracy without a task)."""
    return accuracy(model, x, y) if task is None else task.score(predict(model, x), y)


def kd_loss(student_logits, teacher_logits, y=None, *, temperature: float = 4.0, alpha: float = 0.7):
    """Hinton distillation loss; ``alpha`` weights the soft (teacher) term, 1-alpha the hard labels."""
    import torch.nn.functional as F
    if student_logits.shape != teacher_logits.shape:
        raise ModelError(f"student outputs {tuple(student_logits.shape)} and teacher outputs "
                         f"{tuple(teacher_logits.shape)} differ", "distillation",
                         "Give a student whose output has the teacher's shape")
    T = float(temperature)
    soft = F.kl_div(F.log_softmax(student_logits / T, 1), F.softmax(teacher_logits.detach() / T, 1),
                    reduction="batchmean") * (T * T)
    if y is None or alpha >= 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, y)


class _Capture:
    def __init__(self, module):
        self.out = None
        self.h = module.register_forward_hook(self._hook)

    def _hook(self, _m, _i, o):
        self.out = o

    def remove(self):
        self.h.remove()


def FeatureAdapter(student_ch: int, teacher_ch: int, conv: bool):
    """Learned projection from a student feature to the teacher's width (1x1 conv or linear)."""
    import torch.nn as nn
    return nn.Conv2d(student_ch, teacher_ch, 1, bias=False) if conv else nn.Linear(student_ch, teacher_ch, bias=False)


def _feature_loss(s, t, adapter):
    import torch.nn.functional as F
    s = adapter(s)
    if s.dim() == 4 and s.shape[-2:] != t.shape[-2:]:
        s = F.adaptive_avg_pool2d(s, t.shape[-2:])
    return F.mse_loss(s, t.detach())


def fit(model, x, y, *, epochs: int = 10, lr: float = 2e-3, batch: int = 64, seed: int = 0,
        teacher=None, temperature: float = 4.0, alpha: float = 0.7,
        features: Sequence[tuple[str, str]] = (), feature_weight: float = 1.0,
        weight_decay: float = 0.0, verbose: bool = True, label: str = "train",
        step_hook: Callable[[], None] | None = None, x_val=None, y_val=None, task=None):
    """Train ``model`` on (x, y) with Adam; with ``teacher``, use :func:`kd_loss` (+ feature matching).

    ``task`` (:class:`edgecomp.compress.task.Task`) picks the loss: cross-entropy (the default,
    classification) or mean squared error (regression, distilled towards the teacher's outputs).

    ``features`` lists (student_module_name, teacher_module_name) pairs whose outputs
    are matched with MSE after a learned adapter.  ``step_hook`` runs after every
    optimizer step (pruning masks, projections).  Returns the model (eval mode).
    """
    import torch
    import torch.nn.functional as F

    if epochs <= 0:
        model.eval()
        return model
    torch.manual_seed(seed)
    xt = _tensor(x).float()
    yt = task.label_tensor(y) if task is not None else _tensor(y).long()
    if len(xt) != len(yt) or len(xt) == 0:
        raise ModelError(f"{len(xt)} samples but {len(yt)} labels", "training data",
                         "Give one label per sample (and at least one sample)")
    params = list(model.parameters())
    caps_s, caps_t, adapters = [], [], []
    if teacher is not None:
        teacher.eval()
        smods, tmods = dict(model.named_modules()), dict(teacher.named_modules())
        for sn, tn in features:
            if sn not in smods or tn not in tmods:
                raise ModelError(f"feature pair ({sn!r}, {tn!r}) names no module", "distillation features",
                                 f"Student modules: {[n for n in smods if n][:12]}...; teacher: "
                                 f"{[n for n in tmods if n][:12]}...")
            caps_s.append(_Capture(smods[sn]))
            caps_t.append(_Capture(tmods[tn]))
        if features:  # size the adapters from one forward pass
            with torch.no_grad():
                model.eval()
                model(xt[:2])
                teacher(xt[:2])
            for cs, ct in zip(caps_s, caps_t):
                a = FeatureAdapter(cs.out.shape[1], ct.out.shape[1], cs.out.dim() == 4)
                adapters.append(a)
                params += list(a.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    g = torch.Generator().manual_seed(seed)
    try:
        for ep in range(epochs):
            model.train()
            perm = torch.randperm(len(xt), generator=g)
            total = 0.0
            for i in range(0, len(xt), batch):
                idx = perm[i:i + batch]
                xb, yb = xt[idx], yt[idx]
                opt.zero_grad()
                out = model(xb)
                if teacher is None:
                    loss = F.cross_entropy(out, yb) if task is None else task.loss(out, yb)
                else:
                    with torch.no_grad():
                        tout = teacher(xb)
                    loss = (kd_loss(out, tout, yb, temperature=temperature, alpha=alpha) if task is None
                            else task.kd_loss(out, tout, yb, temperature=temperature, alpha=alpha))
                    for cs, ct, a in zip(caps_s, caps_t, adapters):
                        loss = loss + feature_weight * _feature_loss(cs.out, ct.out, a)
                loss.backward()
                opt.step()
                if step_hook is not None:
                    step_hook()
                total += loss.item() * len(idx)
            sched.step()
            if verbose and (ep == epochs - 1 or ep % max(1, epochs // 5) == 0):
                msg = f"  [{label}] epoch {ep + 1}/{epochs}: loss {total / len(xt):.4f}"
                if x_val is not None:
                    msg += (f", val acc {accuracy(model, x_val, y_val) * 100:.2f} %" if task is None else
                            f", val {task.score_name} {task.fmt(evaluate(model, x_val, y_val, task))}")
                print(msg, file=sys.stderr, flush=True)
    finally:
        for c in caps_s + caps_t:
            c.remove()
    model.eval()
    return model


def distill(student, teacher, x, y, *, epochs: int = 10, temperature: float = 4.0, alpha: float = 0.7,
            features: Sequence[tuple[str, str]] = (), feature_weight: float = 1.0, lr: float = 2e-3,
            seed: int = 0, verbose: bool = True, **kw):
    """Distill ``teacher`` into ``student`` (in place); returns the student in eval mode."""
    if not 0.0 <= alpha <= 1.0:
        raise ModelError(f"alpha must be in [0, 1], got {alpha}", "distill", "alpha weights the soft loss, e.g. 0.7")
    if temperature <= 0:
        raise ModelError(f"temperature must be > 0, got {temperature}", "distill", "Use e.g. 4")
    return fit(student, x, y, epochs=epochs, lr=lr, seed=seed, teacher=teacher, temperature=temperature,
               alpha=alpha, features=features, feature_weight=feature_weight, verbose=verbose,
               label="distill", **kw)
