"""Task metrics as pure numpy functions: accuracy, macro-F1, Matthews correlation, Pearson, Spearman.

Each takes 1-D arrays of equal length (`y_true`, `y_pred`): class ids for classification,
floats for regression, and returns a Python float. They agree with scikit-learn / scipy
(tests/test_metrics.py checks them on fixed arrays) without depending on either.
`task_metrics(kind, y_true, y_pred)` returns every metric that applies to a task kind.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise ValueError("metrics need at least one example")
    return t, p


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted, over the classes seen in either."""
    t, p = _pair(y_true, y_pred)
    classes, idx = np.unique(np.concatenate([t, p]), return_inverse=True)
    k = len(classes)
    ti, pi = idx[: t.size], idx[t.size :]
    return np.bincount(ti * k + pi, minlength=k * k).reshape(k, k)  # (K, K)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in y_true or y_pred (a class
    never predicted and never true does not count; 0/0 counts as 0, as scikit-learn does)."""
    cm = confusion_matrix(y_true, y_pred).astype(np.float64)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # (pred count) + (true count) = 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def matthews_corrcoef(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Multi-class Matthews correlation (Gorodkin's R_K); 0 when undefined (one class only)."""
    cm = confusion_matrix(y_true, y_pred).astype(np.float64)
    t_k, p_k = cm.sum(axis=1), cm.sum(axis=0)  # true / predicted counts per class
    c, s = np.trace(cm), cm.sum()
    cov_ytyp = c * s - t_k @ p_k
    cov_ypyp = s * s - p_k @ p_k
    cov_ytyt = s * s - t_k @ t_k
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    return float(cov_ytyp / denom) if denom > 0 else 0.0


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant (undefined)."""
    t, p = _pair(y_true, y_pred)
    t, p = t.astype(np.float64) - t.mean(), p.astype(np.float64) - p.mean()
    denom = np.sqrt((t @ t) * (p @ p))
    return float((t @ p) / denom) if denom > 0 else 0.0


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank (scipy's `rankdata(method="average")`)."""
    x = np.asarray(x).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]  # first element of each run of ties
    run_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], x.size] - 1
    avg = (first + last) / 2.0 + 1.0  # average 1-based rank per run
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = avg[run_id]
    return ranks


def spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    return pearson(rankdata(t), rankdata(p))


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.mean((t.astype(np.float64) - p.astype(np.float64)) ** 2))


# Every metric that applies to a task kind, by the name written into metrics.json.
METRICS: dict[str, dict[str, MetricFn]] = {
    "classification": {"accuracy": accuracy, "macro_f1": macro_f1, "mcc": matthews_corrcoef},
    "regression": {"pearson": pearson, "spearman": spearman, "mse": mse},
}
LOWER_IS_BETTER = frozenset({"mse"})
ALIASES = {"f1": "macro_f1", "matthews": "mcc", "matthews_corrcoef": "mcc", "acc": "accuracy"}


def metric_name(kind: str, name: str) -> str:
    """The canonical name of `name` for a task kind, or ValueError listing the choices."""
    canonical = ALIASES.get(name, name)
    if canonical not in METRICS[kind]:
        raise ValueError(f"metric {name!r} does not apply to {kind} tasks; choose one of {', '.join(METRICS[kind])}")
    return canonical


def task_metrics(kind: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """All metrics of a task kind: {"accuracy": ..., "macro_f1": ..., "mcc": ...} or the regression ones."""
    return {name: fn(y_true, y_pred) for name, fn in METRICS[kind].items()}


def better(name: str, new: float, old: float | None) -> bool:
    """Whether `new` improves on `old` for metric `name` (higher is better unless listed otherwise)."""
    if old is None:
        return True
    return new < old if name in LOWER_IS_BETTER else new > old
