import numpy as np
import pytest

from ser_tasks.learn.metrics import plot_confusion, plot_history, scores
from ser_tasks.learn.training import class_weights


def test_ua_differs_from_wa_on_unbalanced_classes():
    # 8 clips of class 0 all right, 2 of class 1 all wrong: WA 0.8, UA 0.5
    y_true = np.array([0] * 8 + [1] * 2)
    y_pred = np.zeros(10, dtype=int)
    m = scores(y_true, y_pred, ["neutral", "angry"])
    assert m["wa"] == pytest.approx(0.8) and m["ua"] == pytest.approx(0.5)
    assert m["confusion"] == [[8, 0], [2, 0]]
    assert m["report"]["angry"]["recall"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 * 0.8 / 1.8 + 0) / 2)


def test_absent_classes_still_get_a_row():
    m = scores(np.array([0, 0]), np.array([0, 0]), ["a", "b", "c"])
    assert np.array(m["confusion"]).shape == (3, 3)


def test_empty_or_mismatched_raise():
    with pytest.raises(ValueError):
        scores(np.array([]), np.array([]), ["a"])
    with pytest.raises(ValueError):
        scores(np.array([0]), np.array([0, 1]), ["a", "b"])


def test_plots_are_written(tmp_path):
    png = plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "cm.png", "t")
    curves = plot_history({"loss": [1.0, 0.5], "val_ua": [0.3, 0.6]}, tmp_path / "h.png")
    for p in (png, curves):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_balanced_class_weights():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert w[0] == pytest.approx(4 / 6) and w[1] == pytest.approx(2.0) and w[2] == 0.0
