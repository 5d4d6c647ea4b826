"""Training plots (utils/eval/plots.py): results.csv read as float columns, and train_batch boxes
drawn in detect.py's class colours (one palette)."""
import cv2
import numpy as np
import pytest
import torch

from utils.config import ConfigError
from utils.eval.plots import plot_batch, plot_results, read_results
from utils.infer.annotate import class_color


def test_read_results_gives_float_columns_and_plot_results_writes_a_png(tmp_path):
    csv = tmp_path / "results.csv"
    csv.write_text("epoch,train/box_loss,metrics/mAP_0.5\n0,0.25,0.1\n1,0.125,0.5\n")
    assert read_results(csv) == {"epoch": [0.0, 1.0], "train/box_loss": [0.25, 0.125], "metrics/mAP_0.5": [0.1, 0.5]}
    plot_results(csv, tmp_path / "results.png")
    assert cv2.imread(str(tmp_path / "results.png")) is not None
    (tmp_path / "bad.csv").write_text("epoch,x\n0,abc\n")
    with pytest.raises(ConfigError, match="bad.csv: not a results.csv of numbers"):
        read_results(tmp_path / "bad.csv")


def test_batch_boxes_are_drawn_in_the_class_colour(tmp_path):
    imgs = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
    targets = torch.tensor([[0, 3, 0.5, 0.5, 0.5, 0.5]])     # class 3, the box x, y in [16, 48] px
    plot_batch(imgs, targets, ["a", "b", "c", "d"], tmp_path / "batch.png")
    out = cv2.imread(str(tmp_path / "batch.png"))             # BGR, lossless
    assert tuple(int(v) for v in out[40, 16]) == class_color(3)  # the left edge, below the label
    assert tuple(int(v) for v in out[5, 5]) == (128, 128, 128)
    assert np.array_equal(out[32, 32], [128, 128, 128])
