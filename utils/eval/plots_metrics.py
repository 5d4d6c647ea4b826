"""PNG plots of the evaluation results: PR curve, F1 / P / R against confidence, confusion matrix.

matplotlib comes from :func:`utils.eval.plots._plt` (the Agg backend, loaded on the first plot), so
importing this module has no side effect and works on machines without a display.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from utils.eval.metrics import DetectionMetrics
from utils.eval.plots import _plt

LOGGER = logging.getLogger(__name__)
_MAX_LEGEND = 20  # more classes than this: per-class curves are drawn without a legend


def plot_pr_curve(recall: np.ndarray, precision: np.ndarray, names: Sequence[str], path: Path,
                  ap50: Optional[np.ndarray] = None) -> Path:
    """Precision ``[K, R]`` (nan rows for classes without GT) against recall ``[R]`` -> PNG."""
    plt = _plt()
    fig, ax = plt.subplots(1, 1, figsize=(9, 6), tight_layout=True)
    rows = [k for k in range(len(precision)) if not np.isnan(precision[k]).all()]
    legend = len(rows) <= _MAX_LEGEND
    for k in rows:
        label = f"{names[k]} {ap50[k]:.3f}" if legend and ap50 is not None else (names[k] if legend else None)
        ax.plot(recall, precision[k], linewidth=1, label=label, color=None if legend else "grey")
    if rows:
        mean = np.nanmean(precision[rows], axis=0)
        ax.plot(recall, mean, linewidth=3, color="blue", label=f"all classes {mean.mean():.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01),
           title="Precision-Recall (IoU 0.5)")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    return _save(fig, plt, path)


def plot_conf_curve(conf: np.ndarray, values: np.ndarray, names: Sequence[str], path: Path,
                    ylabel: str = "F1") -> Path:
    """A per-class metric ``[K, C]`` (nan rows skipped) against confidence ``[C]`` -> PNG."""
    plt = _plt()
    fig, ax = plt.subplots(1, 1, figsize=(9, 6), tight_layout=True)
    rows = [k for k in range(len(values)) if not np.isnan(values[k]).all()]
    legend = len(rows) <= _MAX_LEGEND
    for k in rows:
        ax.plot(conf, values[k], linewidth=1, label=names[k] if legend else None,
                color=None if legend else "grey")
    if rows:
        mean = np.nanmean(values[rows], axis=0)
        i = int(np.argmax(mean))
        ax.plot(conf, mean, linewidth=3, color="blue", label=f"all classes {mean[i]:.2f} at {conf[i]:.3f}")
    ax.set(xlabel="Confidence", ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.01), title=f"{ylabel}-Confidence")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    return _save(fig, plt, path)


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: Path,
                          normalize: bool = True) -> Path:
    """``[nc+1, nc+1]`` matrix (rows predicted, columns true, last = background) -> PNG.

    With ``normalize`` each column is divided by its sum (the fraction of each true class).
    """
    plt = _plt()
    m = matrix.astype(float)
    if normalize:
        m = m / np.maximum(m.sum(0, keepdims=True), 1e-9)
    labels = list(names) + ["background"]
    n = len(labels)
    size = min(max(6.0, 0.35 * n + 3), 24)
    fig, ax = plt.subplots(1, 1, figsize=(size, size * 0.85), tight_layout=True)
    im = ax.imshow(np.where(m > 0, m, np.nan), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 30:
        ax.set_xticks(range(n), labels, rotation=90)
        ax.set_yticks(range(n), labels)
        for i, j in zip(*np.nonzero(m)):
            ax.text(j, i, f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}", ha="center", va="center",
                    fontsize=7, color="white" if m[i, j] > 0.5 * np.nanmax(m) else "black")
    title = "Confusion matrix" + (" (column-normalised)" if normalize else "")
    ax.set(xlabel="True", ylabel="Predicted", title=title)
    return _save(fig, plt, path)


def plot_detection_metrics(metrics: DetectionMetrics, save_dir: Path,
                           matrix: Optional[np.ndarray] = None) -> list[Path]:
    """Write PR_curve.png, F1_curve.png, P_curve.png, R_curve.png (and confusion_matrix.png when
    ``matrix`` is given) into ``save_dir``; returns the written paths."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    m = metrics
    paths = [plot_pr_curve(m.pr_recall, m.pr_precision, m.names, save_dir / "PR_curve.png", m.ap50),
             plot_conf_curve(m.conf_grid, m.f1_curve, m.names, save_dir / "F1_curve.png", "F1"),
             plot_conf_curve(m.conf_grid, m.p_curve, m.names, save_dir / "P_curve.png", "Precision"),
             plot_conf_curve(m.conf_grid, m.r_curve, m.names, save_dir / "R_curve.png", "Recall")]
    if matrix is not None:
        paths.append(plot_confusion_matrix(matrix, m.names, save_dir / "confusion_matrix.png"))
    return paths


def _save(fig, plt, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    LOGGER.debug("wrote %s", path)
    return path
