"""Evaluation on held-out speakers: WA, UA, macro-F1, per-class report, confusion matrix, curves.

WA (weighted accuracy) is plain accuracy over clips; UA (unweighted average recall) is the mean of
per-class recalls, the headline metric of the SER literature because classes are unbalanced
(e.g. RAVDESS has half as many neutral clips as the other classes).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on workers or CI
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    recall_score,
)

from ser_tasks.errors import InputError


def scores(y_true: np.ndarray, y_pred: np.ndarray, vocabulary: list[str], present_only: bool = False) -> dict:
    """Scores of integer predictions against integer labels.

    Args:
        y_true: ``(n,)`` true class indices into ``vocabulary``.
        y_pred: ``(n,)`` predicted class indices into ``vocabulary``.
        vocabulary: class names, index ``i`` naming class ``i`` (the report's keys; ``k`` classes).
        present_only: average UA and macro-F1 over the classes present in ``y_true`` only, for a
            corpus that lacks some of the model's classes (``ser score``); predictions still range
            over the whole vocabulary.

    Returns:
        ``{"wa", "ua", "macro_f1", "n", "report": per-class dict, "confusion": (k, k) int list}``;
        rows of the confusion matrix are true classes. With ``present_only``, also ``"classes"``:
        the names of the present classes, in vocabulary order.

    Raises:
        InputError: empty or mismatched inputs.
    """
    if len(y_true) == 0 or len(y_true) != len(y_pred):
        raise InputError(f"need equal, non-empty label arrays, got {len(y_true)} and {len(y_pred)}")
    labels = list(range(len(vocabulary)))
    present = sorted({int(v) for v in y_true})
    out = {
        "wa": float(accuracy_score(y_true, y_pred)),
        "ua": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0) if present_only
                    else balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present if present_only else labels, average="macro",
                                   zero_division=0)),
        "n": int(len(y_true)),
        "report": classification_report(y_true, y_pred, labels=labels, target_names=vocabulary,
                                        output_dict=True, zero_division=0),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if present_only:
        out["classes"] = [vocabulary[i] for i in present]
    return out


def report_text(result: dict, title: str) -> str:
    """A plain-text classification report of :func:`scores` (with ``vocabulary``).

    Args:
        result: :func:`scores`'s output plus ``vocabulary``.
        title: the first line's subject, e.g. ``"Test speakers (actor-disjoint split)"``.

    Returns:
        UA, WA and macro-F1, a table of per-class precision, recall, F1 and support, and the confusion
        matrix as JSON.
    """
    lines = [f"{title}, {result['n']} clips",
             f"UA (unweighted average recall) {result['ua']:.4f}",
             f"WA (accuracy)                  {result['wa']:.4f}",
             f"macro-F1                       {result['macro_f1']:.4f}", "",
             f"{'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for cls in result["vocabulary"]:
        r = result["report"][cls]
        lines.append(f"{cls:<12}{r['precision']:>10.3f}{r['recall']:>10.3f}{r['f1-score']:>10.3f}"
                     f"{int(r['support']):>10d}")
    return "\n".join(lines) + "\n" + json.dumps({"confusion": result["confusion"]}) + "\n"


def plot_confusion(confusion: np.ndarray, vocabulary: list[str], path: Path, title: str = "") -> Path:
    """Confusion matrix as counts and row-normalised (recall per true class), side by side, PNG."""
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(vocabulary)
    fig, axes = plt.subplots(1, 2, figsize=(5 + 1.1 * k, 0.55 * k + 2.5))
    for ax, data, fmt, name in ((axes[0], cm, "{:.0f}", "counts"), (axes[1], norm, "{:.2f}", "row-normalised")):
        im = ax.imshow(data, cmap="Blues", vmin=0)
        ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title=name)
        ax.set_xticklabels(vocabulary, rotation=45, ha="right")
        ax.set_yticklabels(vocabulary)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if data[i, j] > data.max() / 2 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_history(history: dict[str, list[float]], path: Path) -> Path:
    """Training curves (loss; accuracy and validation UA) per epoch, PNG."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "val_loss"):
        if key in history:
            ax1.plot(history[key], label=key)
    for key in ("accuracy", "val_accuracy", "val_ua"):
        if key in history:
            ax2.plot(history[key], label=key)
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax2.set(xlabel="epoch", ylabel="score", title="accuracy / UA", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
