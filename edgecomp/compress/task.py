"""What the compressed model is judged on: the task (loss and metric) and the data splits.

A :class:`Task` is classification (cross-entropy, top-1 accuracy) or regression (mean squared
error; RMSE or MAE as the metric).  Every metric is turned into a *score* where higher is
better, and a *drop* in the unit of the user's budget: accuracy points for classification,
percent of the baseline error for regression.

:class:`Splits` holds train / validation / test arrays.  Validation selects a candidate;
test only reports the chosen one (on the compiled firmware).  Missing splits are carved out
of the ones given (seeded, stratified for classification), and :attr:`Splits.notes` says how.
Data may come as numpy arrays, ``.npz`` files (arrays ``x`` and ``y``) or PyTorch data loaders
(materialized once: microcontroller data sets are small).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["Task", "Splits", "make_task", "load_npz", "as_arrays", "make_splits"]

METRICS = {"classification": ("accuracy",), "regression": ("rmse", "mae")}


@dataclass(frozen=True)
class Task:
    """``kind`` "classification" or "regression"; ``metric`` "accuracy", "rmse" or "mae"."""
    kind: str = "classification"
    metric: str = "accuracy"

    def __post_init__(self):
        if self.kind not in METRICS:
            raise ModelError(f"unknown task {self.kind!r}", "compress --task", "Use classification or regression")
        if self.metric not in METRICS[self.kind]:
            raise ModelError(f"metric {self.metric!r} does not fit a {self.kind} task", "compress --metric",
                             f"Use one of: {', '.join(METRICS[self.kind])}")

    @property
    def classification(self) -> bool:
        return self.kind == "classification"

    @property
    def budget_name(self) -> str:
        return "max_accuracy_drop" if self.classification else "max_error_increase"

    @property
    def drop_unit(self) -> str:
        return "pts" if self.classification else "% error"

    # -- torch side: losses
    def label_tensor(self, y):
        import torch
        t = y if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y))
        return t.long() if self.classification else t.float()

    def loss(self, out, y):
        import torch.nn.functional as F
        if self.classification:
            return F.cross_entropy(out, y)
        return F.mse_loss(out.reshape(y.shape), y)

    def kd_loss(self, student, teacher, y=None, *, temperature: float = 4.0, alpha: float = 0.7):
        """Distillation: Hinton's soft targets for classification, the teacher's outputs as
        regression targets otherwise (weighted ``alpha`` against the labels)."""
        import torch.nn.functional as F
        if self.classification:
            from .distill import kd_loss
            return kd_loss(student, teacher, y, temperature=temperature, alpha=alpha)
        soft = F.mse_loss(student, teacher.detach())
        if y is None or alpha >= 1.0:
            return soft
        return alpha * soft + (1.0 - alpha) * self.loss(student, y)

    # -- numpy side: metrics on model outputs
    def error(self, out: np.ndarray, y: np.ndarray) -> float:
        d = np.asarray(out, np.float64).reshape(len(y), -1) - np.asarray(y, np.float64).reshape(len(y), -1)
        return float(np.sqrt(np.mean(d * d))) if self.metric == "rmse" else float(np.mean(np.abs(d)))

    def score(self, out: np.ndarray, y: np.ndarray) -> float:
        """Higher is better: accuracy in [0, 1], or minus the error."""
        out = np.asarray(out)
        if self.classification:
            return float((out.reshape(len(y), -1).argmax(1) == np.asarray(y)).mean())
        return -self.error(out, y)

    def tiebreak(self, out: np.ndarray, y: np.ndarray) -> float:
        """A finer score for ties (higher is better): the mean log-probability of the true class,
        or minus the mean squared error."""
        out = np.asarray(out, np.float64)
        if self.classification:
            z = out.reshape(len(y), -1)
            z = z - z.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            return float(logp[np.arange(len(y)), np.asarray(y)].mean())
        d = out.reshape(len(y), -1) - np.asarray(y, np.float64).reshape(len(y), -1)
        return -float(np.mean(d * d))

    def drop(self, base: float, score: float) -> float:
        """How much worse ``score`` is than ``base``, in the budget's unit (positive = worse)."""
        if self.classification:
            return (base - score) * 100.0
        return (base - score) / max(-base, 1e-12) * 100.0  # relative error increase, percent

    def fmt(self, score: float | None) -> str:
        if score is None:
            return "n/a"
        return f"{score * 100:.2f} %" if self.classification else f"{-score:.4g}"

    @property
    def score_name(self) -> str:
        return "accuracy" if self.classification else self.metric.upper()

    def to_json(self) -> dict:
        return {"kind": self.kind, "metric": self.metric}


def make_task(kind: str = "classification", metric: str | None = None) -> Task:
    return Task(kind, metric or METRICS.get(kind, ("accuracy",))[0])


# --------------------------------------------------------------------------- data
def load_npz(path: str | Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) from an ``.npz`` with arrays ``x`` and ``y`` (or ``x_*`` / ``y_*``, or exactly two)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"data file {p} does not exist", where, "Give an .npz with arrays x and y")
    try:
        d = np.load(p, allow_pickle=False)
        keys = list(d.keys()) if hasattr(d, "keys") else None
    except Exception as e:
        raise ModelError(f"cannot read {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", where,
                         "Save the data with numpy.savez(path, x=inputs, y=labels)") from None
    if keys is None:
        raise ModelError(f"{p} is a single array, not an archive of inputs and labels", where,
                         "Save the data with numpy.savez(path, x=inputs, y=labels)")
    xk = "x" if "x" in keys else next((k for k in keys if k.startswith("x")), None)
    yk = "y" if "y" in keys else next((k for k in keys if k.startswith("y")), None)
    if xk is None or yk is None:
        raise ModelError(f"{p} has arrays {keys}, not x and y", where,
                         "Save the data with numpy.savez(path, x=inputs, y=labels)")
    return as_arrays((d[xk], d[yk]), f"{where} ({p.name})")


def as_arrays(data: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(x float32, y) from a pair of arrays/tensors or an iterable of (x, y) batches (a DataLoader)."""
    if isinstance(data, (str, Path)):
        return load_npz(data, where)
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _is_batch_iterable(data):
        x, y = (_np(a) for a in data)
    else:
        try:
            xs, ys = [], []
            for batch in data:
                if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                    raise ModelError("a data loader must yield (inputs, labels) batches", where,
                                     "Use a torch DataLoader over a TensorDataset(x, y)")
                xs.append(_np(batch[0]))
                ys.append(_np(batch[1]))
        except TypeError:
            raise ModelError(f"data of type {type(data).__name__} is neither (x, y) arrays nor a data loader", where,
                             "Give (x, y) numpy arrays, an .npz file or a DataLoader") from None
        if not xs:
            raise ModelError("the data loader yielded no batches", where, "Give at least one sample")
        x, y = np.concatenate(xs), np.concatenate(ys)
    if len(x) != len(y) or len(x) == 0:
        raise ModelError(f"{len(x)} samples but {len(y)} labels", where, "Give one label per sample, none empty")
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y)


def _is_batch_iterable(pair) -> bool:
    """A two-element list of (x, y) batches, not an (x, y) pair of arrays."""
    return all(isinstance(b, (tuple, list)) and len(b) == 2 for b in pair)


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> str:
        return f"{len(self.x_train):,} train / {len(self.x_val):,} validation / {len(self.x_test):,} test"

    def save(self, path: Path) -> None:
        np.savez(path, x_train=self.x_train, y_train=self.y_train, x_val=self.x_val, y_val=self.y_val,
                 x_test=self.x_test, y_test=self.y_test)

    @classmethod
    def load(cls, path: Path) -> "Splits":
        d = np.load(path, allow_pickle=False)
        return cls(*(d[k] for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")))


def _carve(x, y, fraction: float, seed: int, stratify: bool):
    """Split (x, y) into (rest, part) with ``fraction`` in the part (stratified when it can be)."""
    from sklearn.model_selection import train_test_split
    n_part = max(1, int(round(len(x) * fraction)))
    if len(x) - n_part < 1:
        raise ModelError(f"{len(x)} samples are too few to split off a validation or test set", "compress data",
                         "Give more samples, or pass --val and --test")
    strat = None
    if stratify:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_part >= len(counts) and len(x) - n_part >= len(counts):
            strat = y
    a, b, ya, yb = train_test_split(x, y, test_size=n_part, random_state=int(seed), stratify=strat)
    return a, ya, b, yb


def make_splits(train, val=None, test=None, *, task: Task, seed: int = 0, fraction: float = 0.15) -> Splits:
    """Train / validation / test arrays from what the user gave; missing splits are carved out
    (validation from train; test from the validation data when that was given separately, else from
    train) and :attr:`Splits.notes` says so."""
    xtr, ytr = as_arrays(train, "training data")
    notes: list[str] = []
    strat = task.classification
    if val is None:
        xtr, ytr, xva, yva = _carve(xtr, ytr, fraction, seed, strat)
        notes.append(f"validation: {len(xva):,} samples split off the training data (seed {seed})")
        given_val = False
    else:
        xva, yva = as_arrays(val, "validation data")
        given_val = True
    if test is None:
        if given_val:
            xva, yva, xte, yte = _carve(xva, yva, 0.5, seed + 1, strat)
            notes.append(f"test: half of the validation data ({len(xte):,} samples, seed {seed + 1}); give --test "
                         "for an independent test set")
        else:
            xtr, ytr, xte, yte = _carve(xtr, ytr, fraction, seed + 1, strat)
            notes.append(f"test: {len(xte):,} samples split off the training data (seed {seed + 1}): independent of "
                         "the baseline only if the given weights were not trained on them")
    else:
        xte, yte = as_arrays(test, "test data")
    for name, x in (("validation", xva), ("test", xte)):
        if x.shape[1:] != xtr.shape[1:]:
            raise ModelError(f"{name} samples have shape {x.shape[1:]}, training samples {xtr.shape[1:]}",
                             f"compress {name} data", "Give every split samples of the model's input shape")
    if task.classification:
        for name, y in (("training", ytr), ("validation", yva), ("test", yte)):
            if not np.issubdtype(np.asarray(y).dtype, np.integer):
                if np.all(np.asarray(y) == np.round(y)):
                    continue
                raise ModelError(f"{name} labels are not class indices", "compress data",
                                 "Give integer class labels, or use --task regression")
        ytr, yva, yte = (np.asarray(y).astype(np.int64) for y in (ytr, yva, yte))
    else:
        ytr, yva, yte = (np.asarray(y).astype(np.float32) for y in (ytr, yva, yte))
    return Splits(xtr, ytr, xva, yva, xte, yte, notes)
