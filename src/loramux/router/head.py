"""The classifier head: multinomial logistic regression on embeddings, in numpy.

Classes are the route names plus `NONE` (out of scope). Training is full-batch accelerated gradient
descent (FISTA) on the weighted cross-entropy with an L2 penalty; on unit-norm inputs it converges
in a few hundred steps, a fraction of a second for thousands of examples. A head can start from
another head's weights (warm start), which keeps adding or removing a route cheap.

The matrices are small, and multi-threaded BLAS on small matrices is slower than one thread (much
slower on a busy machine), so training limits BLAS to one thread when `threadpoolctl` is present.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NONE = "none"
"""The out-of-scope class (and label in calibration data)."""

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SoftmaxHead:
    """A trained linear softmax classifier.

    Attributes:
        weights: (dim, classes) matrix.
        bias: (classes,) vector.
        classes: class names, in column order.
    """

    weights: Matrix
    bias: Matrix
    classes: tuple[str, ...]

    def predict_proba(self, vectors: Matrix) -> Matrix:
        """Class probabilities, (n, classes), rows summing to 1."""
        return softmax(vectors @ self.weights + self.bias)

    def column(self, name: str) -> int:
        """Column of class `name`."""
        return self.classes.index(name)

    @classmethod
    def fit(
        cls,
        vectors: Matrix,
        labels: Sequence[str],
        classes: Sequence[str],
        *,
        l2: float = 1e-3,
        sample_weight: npt.NDArray[np.float64] | None = None,
        init: SoftmaxHead | None = None,
        max_iter: int = 400,
        tol: float = 1e-5,
    ) -> SoftmaxHead:
        """Train a head.

        Args:
            vectors: (n, dim) training inputs.
            labels: class name of each row (each one of `classes`).
            classes: class names; a class without rows gets a strongly negative bias.
            l2: L2 penalty on the weights (not the bias).
            sample_weight: per-row weights; default: every class weighs the same in total.
            init: a head to start from (its columns are matched by class name).
            max_iter: most gradient steps.
            tol: stop when the largest weight change of a step is below this.

        Returns:
            The trained head.
        """
        classes = tuple(classes)
        col = {name: i for i, name in enumerate(classes)}
        y = np.array([col[label] for label in labels], dtype=np.int64)
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = x.shape
        c = len(classes)
        counts = np.bincount(y, minlength=c)
        if sample_weight is None:
            sample_weight = 1.0 / np.maximum(counts, 1)[y]
        w_rows = np.asarray(sample_weight, dtype=np.float64)
        w_rows = (w_rows / w_rows.sum()).astype(np.float32)
        onehot = np.zeros((n, c), dtype=np.float32)
        onehot[np.arange(n), y] = 1.0
        weights = np.zeros((dim, c), dtype=np.float32)
        bias = np.zeros(c, dtype=np.float32)
        if init is not None:
            for j, name in enumerate(classes):
                if name in init.classes:
                    weights[:, j] = init.weights[:, init.column(name)]
                    bias[j] = init.bias[init.column(name)]
        with _single_threaded_blas():
            weights, bias = _fista(x, onehot, w_rows, weights, bias, l2, max_iter, tol)
        bias = np.where(counts == 0, np.float32(-30.0), bias).astype(np.float32)
        return cls(weights, bias, classes)


def _fista(
    x: Matrix,
    onehot: Matrix,
    w_rows: Matrix,
    weights: Matrix,
    bias: Matrix,
    l2: float,
    max_iter: int,
    tol: float,
) -> tuple[Matrix, Matrix]:
    """Accelerated gradient descent on the weighted, L2-penalised cross-entropy."""
    # Lipschitz constant of the gradient: 0.5 * (largest eigenvalue of [X 1]^T diag(w) [X 1]) + l2.
    lipschitz = 0.5 * (_top_eigenvalue(x, w_rows) + float(w_rows.sum())) + l2
    step = np.float32(1.0 / lipschitz)
    penalty = np.float32(l2)
    prev_w, prev_b = weights.copy(), bias.copy()
    t = 1.0
    for _ in range(max_iter):
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        momentum = np.float32((t - 1.0) / t_next)
        look_w = weights + momentum * (weights - prev_w)
        look_b = bias + momentum * (bias - prev_b)
        resid = (softmax(x @ look_w + look_b) - onehot) * w_rows[:, None]
        prev_w, prev_b = weights, bias
        weights = look_w - step * (x.T @ resid + penalty * look_w)
        bias = look_b - step * resid.sum(axis=0)
        t = t_next
        if float(np.abs(weights - prev_w).max()) < tol:
            break
    return weights.astype(np.float32), bias.astype(np.float32)


def _top_eigenvalue(x: Matrix, w_rows: Matrix, steps: int = 30) -> float:
    """Largest eigenvalue of X^T diag(w) X by power iteration, padded by 5% to stay above it."""
    v = np.ones(x.shape[1], dtype=np.float32) / np.float32(np.sqrt(x.shape[1]))
    value = 0.0
    for _ in range(steps):
        u = x.T @ (w_rows * (x @ v))
        value = float(np.linalg.norm(u))
        if value == 0.0:
            return 0.0
        v = u / np.float32(value)
    return 1.05 * value


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no hints
    except ImportError:  # optional: only speed depends on it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def softmax(logits: Matrix) -> Matrix:
    """Row-wise softmax, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: Matrix = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return out
