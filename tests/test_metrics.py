"""Task metrics equal scikit-learn's and scipy's on fixed arrays (and hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from minilm_deploy.data import metrics as m

RNG = np.random.default_rng(0)
CLASS_CASES = [
    (np.array([0, 1, 1, 0, 1, 1]), np.array([0, 1, 0, 0, 1, 1])),  # binary
    (RNG.integers(0, 5, 200), RNG.integers(0, 5, 200)),  # 5 classes, random
    (np.array([0, 1, 2, 2, 2]), np.array([0, 1, 1, 1, 3])),  # a class only predicted, one only true
    (np.array([2, 2, 2, 2]), np.array([2, 2, 2, 2])),  # a single class: MCC undefined -> 0
]
REG_CASES = [
    (np.array([0.1, 0.5, 0.2, 3.0, 2.0]), np.array([0.0, 0.7, 0.1, 2.5, 2.9])),
    (RNG.normal(size=300), RNG.normal(size=300)),
    (np.array([1.0, 2.0, 2.0, 3.0, 3.0, 3.0]), np.array([1.0, 1.0, 2.0, 2.0, 5.0, 4.0])),  # ties
]


@pytest.mark.filterwarnings("ignore:A single label was found")  # scikit-learn, on the one-class case
@pytest.mark.parametrize(("y_true", "y_pred"), CLASS_CASES)
def test_classification_metrics_equal_sklearn(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    assert m.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m.macro_f1(y_true, y_pred) == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert m.matthews_corrcoef(y_true, y_pred) == pytest.approx(skm.matthews_corrcoef(y_true, y_pred))


@pytest.mark.parametrize(("y_true", "y_pred"), REG_CASES)
def test_regression_metrics_equal_scipy(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    assert m.pearson(y_true, y_pred) == pytest.approx(stats.pearsonr(y_true, y_pred)[0])
    assert m.spearman(y_true, y_pred) == pytest.approx(stats.spearmanr(y_true, y_pred)[0])
    assert m.mse(y_true, y_pred) == pytest.approx(skm.mean_squared_error(y_true, y_pred))
    np.testing.assert_allclose(m.rankdata(y_pred), stats.rankdata(y_pred))


def test_hand_computed_binary_values() -> None:
    # tp=3 fn=1 fp=0 tn=2: acc 5/6; F1(pos)=6/7, F1(neg)=4/5; MCC=(3*2-0*1)/sqrt(3*4*2*3)
    y_true, y_pred = np.array([0, 1, 1, 0, 1, 1]), np.array([0, 1, 0, 0, 1, 1])
    assert m.accuracy(y_true, y_pred) == pytest.approx(5 / 6)
    assert m.macro_f1(y_true, y_pred) == pytest.approx((6 / 7 + 4 / 5) / 2)
    assert m.matthews_corrcoef(y_true, y_pred) == pytest.approx(6 / np.sqrt(72))


def test_perfect_and_constant_predictions() -> None:
    y = np.array([1.0, 2.0, 3.0])
    assert m.pearson(y, 2 * y + 1) == pytest.approx(1.0)
    assert m.spearman(y, y**3) == pytest.approx(1.0)
    assert m.pearson(y, np.ones(3)) == 0.0  # undefined: reported as 0, not NaN


def test_task_metrics_names_and_errors() -> None:
    out = m.task_metrics("classification", np.array([0, 1]), np.array([0, 0]))
    assert set(out) == {"accuracy", "macro_f1", "mcc"}
    assert set(m.task_metrics("regression", y := np.array([0.0, 1.0, 2.0]), y)) == {"pearson", "spearman", "mse"}
    assert m.metric_name("classification", "f1") == "macro_f1"
    with pytest.raises(ValueError, match="does not apply"):
        m.metric_name("regression", "accuracy")
    with pytest.raises(ValueError, match="differ in length"):
        m.accuracy(np.array([0, 1]), np.array([0]))
    assert m.better("mse", 0.1, 0.2) and not m.better("accuracy", 0.1, 0.2) and m.better("accuracy", 0.0, None)
