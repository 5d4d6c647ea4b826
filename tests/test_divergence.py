"""Divergence guards: a loss far above its running median and a non-finite validation loss are
handled like non-finite training losses (skip, reload last.pt, then stop with one line), and
initial weights that match no tensor of the model are an error."""
from __future__ import annotations

import logging

import pytest
import torch

import train
import utils.train.trainer as training
from utils.train.checkpoint import load_checkpoint, save_checkpoint
from utils.train.loop import EXPLODE_MIN_HISTORY, LoopState, exploded


def test_exploded_compares_with_the_running_median():
    state = LoopState()
    for v in [1.0, 2.0, 3.0, 100.0, 2.5, 1.5, 2.0, 3.0, 2.0, 1.0]:   # median 2.0 (100.0 is one outlier)
        assert not exploded(v, state, 100.0)                          # under 10 values: never flagged
    assert len(state.recent) == EXPLODE_MIN_HISTORY == 10
    assert not exploded(199.0, state, 100.0)                          # < 100 x 2.0: accepted, enters the window
    assert exploded(1e6, state, 100.0)                                # flagged and kept out of the window
    assert 1e6 not in state.recent and len(state.recent) == 11


class _Scaled:
    """Wraps a criterion: multiplies the training loss by ``factor`` from training call ``start`` on,
    or (``val_nan``) returns NaN validation losses."""

    def __init__(self, inner, start: int = 10 ** 9, factor: float = 1.0, val_nan: bool = False):
        self.inner, self.start, self.factor, self.val_nan, self.calls = inner, start, factor, val_nan, 0

    def __call__(self, preds, targets):
        loss, items = self.inner(preds, targets)
        if not torch.is_grad_enabled():                               # evaluate() runs under no_grad
            return (loss * float("nan"), {k: v * float("nan") for k, v in items.items()}) if self.val_nan \
                else (loss, items)
        self.calls += 1
        return (loss * self.factor, items) if self.calls >= self.start else (loss, items)


def _patch(monkeypatch, **kw):
    real = training.build_criterion
    monkeypatch.setattr(training, "build_criterion",
                        lambda model, hyp, image_size=None: _Scaled(real(model, hyp, image_size=image_size), **kw))


def test_exploding_loss_reloads_then_stops(shapes_yaml, tmp_path, monkeypatch, caplog, capsys, train_args):
    # batch 4: 8 batches an epoch; from the 12th training batch (epoch 2, batch 3) the loss is 1e6 x larger
    _patch(monkeypatch, start=12, factor=1e6)
    with caplog.at_level(logging.INFO):
        rc = train.main(train_args(shapes_yaml, tmp_path, epochs=3, **{"batch-size": 4, "nan-retries": 1,
                                                                        "val-interval": 1}))
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: training stopped: 3 consecutive bad batches")
    assert "exploded loss" in err and "still failing after 1 reload(s)" in err
    assert "exploded loss" in caplog.text and "at epoch 2 batch 3" in caplog.text and "reloading" in caplog.text
    assert load_checkpoint(tmp_path / "exp" / "weights" / "last.pt")["epoch"] == 0   # epoch 2 never saved
    assert load_checkpoint(tmp_path / "exp" / "weights" / "best.pt")["epoch"] == 0


@pytest.mark.parametrize("interval", ["1", "4"])   # 4: epoch 1 is not validated, one val batch is checked
def test_non_finite_validation_loss_stops_without_a_checkpoint(shapes_yaml, tmp_path, monkeypatch, capsys,
                                                               train_args, interval):
    _patch(monkeypatch, val_nan=True)
    assert train.main(train_args(shapes_yaml, tmp_path, epochs=2, **{"val-interval": interval})) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "non-finite validation box/obj/cls loss after epoch 1" in err and "no last.pt to reload yet" in err
    assert not (tmp_path / "exp" / "weights" / "best.pt").exists()
    assert not (tmp_path / "exp" / "weights" / "last.pt").exists()


def test_initial_weights_matching_no_tensor_are_an_error(shapes_yaml, tmp_path, capsys, train_args):
    foreign = tmp_path / "foreign.pt"
    save_checkpoint({"epoch": 0, "model": {"encoder.weight": torch.zeros(3, 3), "encoder.bias": torch.zeros(3)},
                     "ema": None}, foreign)
    assert train.main(train_args(shapes_yaml, tmp_path, epochs=1, weights=str(foreign))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--weights {foreign}: none of its 2 tensors matches a tensor of the model" in err
    assert not (tmp_path / "exp" / "weights" / "last.pt").exists()


@pytest.mark.parametrize("interval", ["1", "4"])   # 4: epoch 1 is not validated, one val batch is checked
def test_sgd_at_lr_one_without_clipping_is_stopped(shapes_yaml, tmp_path, capsys, train_args, interval):
    """A real divergence, no patching: training losses stay ordinary while the BatchNorm running
    statistics blow up (validation loss ~1e14-1e15 measured); before the guard it ran to the end
    and saved a best.pt with mAP@0.5 0.0002. On an epoch that is not validated the guard sees one
    validation batch, so last.pt never holds the blown-up weights either."""
    import yaml
    hyp = yaml.safe_load(open("configs/hyp.shapes.yaml"))
    hyp.update(optimizer="SGD", lr0=1.0, warmup_epochs=0.0, grad_clip=0.0)
    (tmp_path / "hyp.yaml").write_text(yaml.safe_dump(hyp))
    rc = train.main(train_args(shapes_yaml, tmp_path, epochs=2, hyp=str(tmp_path / "hyp.yaml"),
                               **{"batch-size": 4, "val-interval": interval}))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: training stopped: ") and "validation" in err and "after epoch 1" in err
    assert not (tmp_path / "exp" / "weights" / "best.pt").exists()
    assert not (tmp_path / "exp" / "weights" / "last.pt").exists()
