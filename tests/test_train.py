"""Training runs: the loop's last-batch step, the NaN guard, exact resume after kill -9, a 2-rank DDP
smoke run, a small learning test, and the CPU/CUDA execution policy. (Schedules, EMA and checkpoints:
tests/utils/train/test_schedule.py, test_ema.py, test_checkpoint.py.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from utils.train.checkpoint import load_checkpoint, save_checkpoint
from utils.config import Hyp, replace
from utils.train.schedule import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


# ------------------------------------------------------------------------------ the epoch loop
def test_tiny_dataset_still_steps(tmp_path):
    """6 images, batch 4, nominal batch 16: accumulate is 4 but an epoch has only 2 batches; a
    1-epoch run must still change the weights (warm-up steps at once; the run's last batch steps)."""
    from utils.train.loop import LoopSettings, LoopState, TrainParts, train_one_epoch
    from utils.train.loss import build_criterion
    from models.yolo import Model, load_model_cfg
    torch.manual_seed(0)
    cfg = load_model_cfg(ROOT / "configs" / "yolov4_n.yaml")
    model = Model(cfg, nc=2)
    hyp = Hyp(nbs=16, warmup_epochs=0.0, ema_decay=0.0)
    crit = build_criterion(model, hyp, 64)
    opt = build_optimizer(model, "SGD", 0.01, 0.9, 0.0)
    batches = [(torch.randint(0, 255, (b, 3, 64, 64), dtype=torch.uint8),
                torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3]]), ["x"] * b, None, None) for b in (4, 2)]
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = LoopState()
    s = LoopSettings(torch.device("cpu"), epochs=1, accumulate=4, warmup_iters=0, show_progress=False)
    train_one_epoch(TrainParts(model, crit, opt, scaler), batches, hyp, 0, s, state)
    assert state.last_opt_step == 1                      # stepped on the last batch of the run
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ------------------------------------------------------------------------------ NaN guard
class _NaNAfter:
    """Wraps a criterion; returns a NaN box loss from training call ``start`` on (validation calls,
    made under no_grad, are neither counted nor changed)."""

    def __init__(self, inner, start: int):
        self.inner, self.start, self.calls = inner, start, 0

    def __call__(self, preds, targets):
        loss, items = self.inner(preds, targets)
        if not torch.is_grad_enabled():
            return loss, items
        self.calls += 1
        if self.calls >= self.start:
            items = dict(items, box=torch.tensor(float("nan")))
            loss = loss * float("nan")
        return loss, items


def _opts(data: Path, project: Path, **kw) -> list[str]:
    from conftest import _train_args   # tests/conftest.py: the shared tiny-run command line
    return _train_args(data, project, **kw)


def test_nan_guard_reloads_then_stops(shapes_yaml, tmp_path, monkeypatch, caplog):
    import train
    import utils.train.trainer as training

    real = training.build_criterion
    made = []

    def nan_in_second_epoch(model, hyp, image_size=None):
        c = _NaNAfter(real(model, hyp, image_size=image_size), start=5)   # 4 batches/epoch: epoch 2 fails
        made.append(c)
        return c
    monkeypatch.setattr(training, "build_criterion", nan_in_second_epoch)
    rc = train.main(_opts(shapes_yaml, tmp_path, epochs=3, **{"nan-retries": 1}))
    assert rc == 2
    assert "non-finite box loss at epoch 2 batch 0" in caplog.text
    assert "reloading" in caplog.text                      # one reload of last.pt, then a clear stop
    ckpt = load_checkpoint(tmp_path / "exp" / "weights" / "last.pt")
    assert ckpt["epoch"] == 0                              # the NaN never reached a checkpoint
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.dtype.is_floating_point)


def test_val_interval_and_noval_validate_fewer_epochs_and_train_the_same(shapes_yaml, tmp_path, monkeypatch, caplog):
    """--val-interval 2 of 5 epochs validates after epochs 2, 4 and 5 (the last always), --noval (yolov5's
    flag) after epoch 5 only; the training is the same to the bit (validation takes no random draws), a
    validated row equals the every-epoch run's, the others leave the metric columns empty and say when the
    next validation comes, last.pt is written every epoch and best.pt only where a validation improved."""
    import csv
    import logging
    import train
    import utils.train.trainer as training
    from utils.eval.plots import read_results
    real, calls = training.evaluate, []

    def counted(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(training, "evaluate", counted)
    runs = {"every": {"val-interval": 1}, "two": {"val-interval": 2}, "noval": {"noval": True}}
    counts = []
    for name, flags in runs.items():
        with caplog.at_level(logging.INFO, logger="utils.train.trainer"):
            assert train.main(_opts(shapes_yaml, tmp_path, epochs=5, name=name, **flags)) == 0
        counts.append(len(calls))
    assert counts == [5, 5 + 3, 5 + 3 + 1]
    assert "epoch 3/5 (--val-interval 2: next validation after epoch 4)" in caplog.text
    assert "epoch 1/5 (--noval: validated after epoch 5 only)" in caplog.text
    rows = {n: list(csv.DictReader((tmp_path / n / "results.csv").open())) for n in runs}
    validated = {"two": [1, 3, 4], "noval": [4]}
    for name, keep in validated.items():
        for i, row in enumerate(rows[name]):
            if i in keep:
                assert row == rows["every"][i], (name, i)
            else:
                assert (row["metrics/mAP_0.5"], row["val/box_loss"]) == ("", ""), (name, i)
                assert row["train/box_loss"] == rows["every"][i]["train/box_loss"]
        a, b = (load_checkpoint(tmp_path / n / "weights" / "last.pt") for n in ("every", name))
        assert a["epoch"] == b["epoch"] == 4 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert load_checkpoint(tmp_path / name / "weights" / "best.pt")["epoch"] in keep
    assert load_checkpoint(tmp_path / "noval" / "weights" / "best.pt")["epoch"] == 4
    curves = read_results(tmp_path / "noval" / "results.csv")
    assert np.isnan(curves["metrics/mAP_0.5"][:4]).all()
    assert curves["metrics/mAP_0.5"][4] == float(rows["every"][4]["metrics/mAP_0.5"])
    assert (tmp_path / "noval" / "results.png").is_file()


def test_validates_the_last_epoch_and_every_nth():
    from utils.train.schedule import validates
    assert [e + 1 for e in range(10) if validates(e, 10, 4)] == [4, 8, 10]
    assert [e + 1 for e in range(10) if validates(e, 10, 1)] == list(range(1, 11))
    assert [e + 1 for e in range(10) if validates(e, 10, 3, noval=True)] == [10]
    assert [e + 1 for e in range(3) if validates(e, 3, 4)] == [3]


def test_patience_counts_epochs_not_validations(shapes_yaml, tmp_path, monkeypatch):
    """--patience 3 --val-interval 2: the best validation is epoch 2's, then epochs 3-6 bring no better
    one, so the run stops after epoch 6 (4 epochs without improvement), not after epoch 8 (3 validations)."""
    import train
    import utils.train.trainer as training
    from utils.eval.metrics import DetectionMetrics
    real, first = training.evaluate, []

    def scored(*a, **k):
        result = real(*a, **k)
        first.append(first[0] if first else result.metrics)
        return result
    monkeypatch.setattr(training, "evaluate", scored)
    monkeypatch.setattr(DetectionMetrics, "fitness", property(lambda m: 0.5 if m is first[0] else 0.1))
    assert train.main(_opts(shapes_yaml, tmp_path, epochs=10, patience=3, **{"val-interval": 2})) == 0
    assert load_checkpoint(tmp_path / "exp" / "weights" / "last.pt")["epoch"] == 5
    assert load_checkpoint(tmp_path / "exp" / "weights" / "best.pt")["epoch"] == 1
    assert len(first) == 3


@pytest.mark.parametrize("flag", [["--noval"], ["--val-interval", "2"]])
def test_noval_and_val_interval_are_refused_for_classify(capsys, flag):
    import train
    with pytest.raises(SystemExit) as e:
        train.main(["--task", "classify", *flag])
    assert e.value.code == 2 and f"{flag[0]} is for --task detect" in capsys.readouterr().err


# ------------------------------------------------------------------------------ resume exactness
def _train_cmd(data: Path, project: Path, name: str, **kw) -> list[str]:
    return [sys.executable, "train.py", *_opts(data, project, name=name, **kw)]


def _final_weights(run: Path) -> dict:
    return load_checkpoint(run / "weights" / "last.pt")["model"]


def test_resume_after_kill_is_bit_identical(shapes_yaml, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    straight = subprocess.run(_train_cmd(shapes_yaml, tmp_path, "straight"), cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]

    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(shapes_yaml, tmp_path, "killed"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    csv = run / "results.csv"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if csv.exists() and len(csv.read_text().splitlines()) >= 2:   # epoch 1 checkpointed
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert load_checkpoint(run / "weights" / "last.pt")["epoch"] == 0

    resumed = subprocess.run([sys.executable, "train.py", "--resume", str(run / "weights" / "last.pt"), "--quiet"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _final_weights(tmp_path / "straight"), _final_weights(run)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the straight run"
    assert len(csv.read_text().splitlines()) == 3     # header + 2 epochs, no duplicate rows


def test_resume_accepts_new_batch_size_and_workers(shapes_yaml, tmp_path):
    first = subprocess.run(_train_cmd(shapes_yaml, tmp_path, "r", epochs=1), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    last = tmp_path / "r" / "weights" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["opt"]["epochs"], ckpt["finished"] = 2, False   # pretend the run was interrupted after epoch 1 of 2
    save_checkpoint({k: v for k, v in ckpt.items() if k not in ("kind", "version")}, last)
    again = subprocess.run([sys.executable, "train.py", "--resume", str(last), "--batch-size", "4",
                            "--workers", "1", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert load_checkpoint(last)["epoch"] == 1
    assert load_checkpoint(last)["opt"]["batch_size"] == 4


def test_bad_config_stops_before_training(shapes_yaml, tmp_path):
    bad = tmp_path / "bad_hyp.yaml"
    bad.write_text("lr0: 0.01\nbox_los: ciou\n")
    proc = subprocess.run(_train_cmd(shapes_yaml, tmp_path, "bad", hyp=str(bad)), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "bad_hyp.yaml: unknown key(s) box_los" in proc.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("flag,value,low", [("--workers", "-1", 0), ("--batch-size", "0", 1), ("--epochs", "0", 1),
                                            ("--img-size", "-64", 1), ("--close-mosaic", "-1", 0)])
def test_bad_numeric_flags_stop_with_a_message(capsys, flag, value, low):
    import train
    with pytest.raises(SystemExit) as exc:
        train.parse_args([flag, value])
    assert exc.value.code == 2
    assert f"argument {flag}: must be >= {low}, got {value}" in capsys.readouterr().err


# ------------------------------------------------------------------------------ DDP smoke
def test_ddp_two_gloo_ranks(shapes_yaml, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "train.py", *_opts(shapes_yaml, tmp_path, epochs=1, **{"sync-bn": True})]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "exp" / "weights" / "last.pt")   # one run dir, written by rank 0
    assert ckpt["epoch"] == 0 and not any("module." in k for k in ckpt["model"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]
    summary = [line for line in proc.stdout.splitlines() if line.startswith("mAP@0.5 ")]
    assert len(summary) == 1 and "nan" not in summary[0], proc.stdout[-2000:]   # rank 0's line alone
    assert (proc.stdout + proc.stderr).count("--sync-bn ignored") == 1


# ------------------------------------------------------------------------------ learning
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "coco128").is_dir(), reason="../shared/datasets/coco128 not present")
def test_overfit_four_coco128_vehicle_images(tmp_path):
    """Four coco128 images with vehicles (48 px or more, not frame-filling), trained and validated on
    themselves at 256 px (rect validation, as training always validates)."""
    from utils.data.config import load_data_config
    from utils.data.datasets import load_split
    root = SHARED / "coco128"
    cfg_yaml = tmp_path / "veh.yaml"
    cfg_yaml.write_text(yaml.safe_dump({"path": str(root), "format": "coco", "train": "images/train2017",
                                        "val": "images/train2017",
                                        "train_annotations": "annotations/instances_train2017.json",
                                        "val_annotations": "annotations/instances_train2017.json",
                                        "names": ["motorcycle", "car", "bus", "truck"]}))
    info = load_split(load_data_config(cfg_yaml), "train", cache_dir=tmp_path)

    def large(r) -> bool:
        # boxes of at least 48 px that do not fill the frame: a frame-filling box sees different
        # border padding in the rect validation letterbox than in the square training one
        wh = r.boxes_xyxy[:, 2:] - r.boxes_xyxy[:, :2]
        inside = (wh / np.array([r.width, r.height]) < 0.8).all()
        return len(r) > 0 and r.train_mask.all() and len(r) <= 4 and (wh.min(1) >= 48).all() and inside
    picked = [r.path for r in info.records if large(r)][:4]
    assert len(picked) == 4
    (tmp_path / "four.txt").write_text("\n".join(picked) + "\n")
    y = yaml.safe_load(cfg_yaml.read_text())
    y.update(train=str(tmp_path / "four.txt"), val=str(tmp_path / "four.txt"))
    cfg_yaml.write_text(yaml.safe_dump(y))
    hyp = tmp_path / "hyp.yaml"
    # cls 2.0 (4x the default): with 0.5 the class term barely learns in short runs; on the AMD VM
    # with torch 2.14.1 this run then stalled at best mAP@0.5 0.626 (also at the last landed commit),
    # with 2.0 it reaches 1.0 (2026-12-01), as the main job's recipe found (benchmarks/RESULTS.md)
    hyp.write_text(yaml.safe_dump(replace(Hyp(), optimizer="Adam", lr0=0.003, nbs=4, warmup_epochs=0.0, mosaic=0.0,
                                          fliplr=0.0, scale=0.0, translate=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0,
                                          ema_decay=0.0, bn_momentum=0.3, lr_schedule="cosine", cls=2.0,
                                          lrf=0.1).to_dict()))
    import train
    rc = train.main(["--cfg", "configs/yolov4_n.yaml", "--data", str(cfg_yaml), "--hyp", str(hyp), "--epochs", "150",
                     "--batch-size", "4", "--img-size", "256", "--workers", "0", "--device", "cpu", "--project",
                     str(tmp_path), "--name", "overfit", "--quiet", "--patience", "0", "--noautoanchor",
                     "--val-interval", "1"])   # the best of every epoch, as calibrated
    assert rc == 0
    rows = (tmp_path / "overfit" / "results.csv").read_text().splitlines()
    best = max(float(r.split(",")[rows[0].split(",").index("metrics/mAP_0.5")]) for r in rows[1:])
    assert best >= 0.8


# ------------------------------------------------------------------------------ CPU/CUDA execution policy
@pytest.mark.parametrize("kind,cores,world,expected", [
    ("cpu", 2, 1, 0), ("cpu", 8, 1, 2), ("cpu", 16, 2, 2), ("cuda", 16, 1, 8), ("cuda", 16, 4, 4), ("cuda", 1, 1, 1)])
def test_default_workers(monkeypatch, kind, cores, world, expected):
    import utils.train.trainer as training
    monkeypatch.setattr(training, "_cores", lambda: cores)
    assert training.default_workers(torch.device(kind), world) == expected


def test_channels_last_model_computes_the_same():
    """--channels-last (the default) changes the memory layout only: same outputs, same gradients."""
    import dataclasses
    from utils.config import Hyp
    from utils.train.loss import build_criterion
    from utils.train.options import TrainOptions
    from utils.train.trainer import build_model
    torch.manual_seed(0)
    opt = TrainOptions(cfg=str(ROOT / "configs" / "yolov4_n.yaml"), channels_last=False)
    plain = build_model(opt, 4, torch.device("cpu"), 0.1)
    nhwc = build_model(dataclasses.replace(opt, channels_last=True), 4, torch.device("cpu"), 0.1)
    nhwc.load_state_dict(plain.state_dict())
    conv = next(m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64)
    t = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 2, 0.3, 0.6, 0.2, 0.2]])
    losses = []
    for m in (plain, nhwc):
        crit = build_criterion(m, Hyp(), 64)
        loss, _ = crit(m(x), t)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for (name, p), q in zip(plain.named_parameters(), nhwc.parameters()):   # summation order differs
        assert (p.grad - q.grad).norm() <= 1e-3 * p.grad.norm() + 1e-6, name


def test_validation_losses_are_evaluates_on_the_batches_they_read(shapes_yaml, tmp_path):
    """The divergence check of an unvalidated epoch: over every val batch it gives evaluate()'s losses
    (the same forward and criterion), on the first batch alone that batch's, and leaves the mode as it was."""
    from utils.eval.evaluate import EvalSettings, evaluate, validation_losses
    from utils.train.options import TrainOptions
    from utils.train.trainer import Trainer
    opt = TrainOptions(cfg=str(ROOT / "configs" / "yolov4_n.yaml"), data=str(shapes_yaml), epochs=1, img_size=64,
                       batch_size=4, device="cpu", workers=0, project=str(tmp_path), quiet=True, noautoanchor=True)
    t = Trainer(opt)
    model, dev = t.eval_model(), torch.device("cpu")
    model.train()
    full = evaluate(model, t.val_loader, t.val_info.records, t.names, EvalSettings(), dev, t.criterion,
                    show_progress=False).losses
    n = len(t.val_loader)
    assert n == 2   # 16 val images, val batches of 2 x 4
    assert validation_losses(model, t.val_loader, dev, t.criterion, batches=n) == pytest.approx(full, rel=1e-6)
    first = validation_losses(model, t.val_loader, dev, t.criterion)
    assert model.training and set(first) == set(full) and first != full
    imgs, targets, *_ = next(iter(t.val_loader))
    with torch.no_grad():
        _, items = t.criterion([r.float() for r in model.eval()(imgs.float() / 255)[1]], targets)
    assert first == pytest.approx({k: float(v) for k, v in items.items() if k in first}, rel=1e-6)


def test_validation_runs_a_fused_copy_of_the_ema(shapes_yaml, tmp_path):
    """Each epoch validates the EMA weights with Conv+BN folded (as test.py runs a checkpoint): the same
    predictions, and the EMA itself keeps its BatchNorms for the next updates."""
    from utils.train.options import TrainOptions
    from utils.train.trainer import Trainer
    opt = TrainOptions(cfg=str(ROOT / "configs" / "yolov4_n.yaml"), data=str(shapes_yaml), epochs=1, img_size=64,
                       batch_size=8, device="cpu", workers=0, project=str(tmp_path), quiet=True, noautoanchor=True)
    t = Trainer(opt)
    torch.manual_seed(0)
    for m in t.ema.ema.modules():   # running statistics far from the initial 0 / 1, so folding matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    fused = t.eval_model()
    bns = [sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) for model in (t.ema.ema, fused)]
    assert bns == [72, 9]   # yolov4_n: all but the 9 BNs after a concatenation (CSP blocks, SPPCSP) folded
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want, got = t.ema.ema.eval()(x)[0], fused(x)[0]
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_openmp_wait_policy_follows_the_load_at_start():
    from utils.cli.cpu_env import BUSY_CORES, wait_policy_for
    assert wait_policy_for(0.0) is None and wait_policy_for(BUSY_CORES - 0.01) is None   # quiet: libgomp default
    assert wait_policy_for(BUSY_CORES) == "PASSIVE" and wait_policy_for(3.7) == "PASSIVE"


def test_busy_cores_from_two_proc_stat_samples():
    """(busy ticks delta) / (all ticks delta) x CPUs: 50 of 100 ticks on 2 CPUs = one core busy."""
    from utils.cli.cpu_env import busy_cores
    samples = iter([(100, 1000, 2), (150, 1100, 2)])
    assert busy_cores(0.0, ticks=lambda: next(samples)) == pytest.approx(1.0)
    assert busy_cores(0.0, ticks=lambda: None) is None


def test_a_burst_at_start_is_not_a_neighbour():
    """Busy at start and still busy a moment later: the smaller reading (a lasting neighbour); busy at start and
    quiet later: quiet (a burst of short commands); quiet at start: one sample, no second look."""
    from utils.cli.cpu_env import lasting_busy_cores, wait_policy_for
    pauses = []

    def reading(*ticks):
        it = iter(ticks)
        return dict(sample_s=0.0, recheck_s=1.0, ticks=lambda: next(it), sleep=pauses.append)

    # 2 CPUs: 100 of 100 ticks busy = 2.0 cores, 60 of 100 = 1.2, 5 of 100 = 0.1
    assert lasting_busy_cores(**reading((0, 0, 2), (100, 100, 2), (100, 100, 2), (160, 200, 2))) == pytest.approx(1.2)
    assert pauses == [1.0]
    burst = lasting_busy_cores(**reading((0, 0, 2), (100, 100, 2), (100, 100, 2), (105, 200, 2)))
    assert burst == pytest.approx(0.1) and wait_policy_for(burst) is None
    pauses.clear()
    assert lasting_busy_cores(**reading((0, 0, 2), (5, 100, 2))) == pytest.approx(0.1) and pauses == []


@pytest.mark.parametrize("lasting,policy", [(0.1, None), (1.2, "PASSIVE")])
def test_the_policy_follows_the_lasting_reading(monkeypatch, lasting, policy):
    """choose_openmp_wait_policy decides on the re-checked reading (a burst that is gone reads quiet)."""
    from utils.cli import cpu_env
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(cpu_env, "lasting_busy_cores", lambda: lasting)
    cpu_env.choose_openmp_wait_policy()
    assert os.environ.get("OMP_WAIT_POLICY") == policy
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs /proc/stat (Linux)")
def test_busy_cores_sees_a_spinning_neighbour():
    """A process spinning on one core reads as >= BUSY_CORES busy (so the CLIs choose PASSIVE),
    whatever the 1-minute load average says."""
    from utils.cli.cpu_env import BUSY_CORES, busy_cores, lasting_busy_cores
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert busy_cores(0.5) >= BUSY_CORES
        assert lasting_busy_cores(0.3, 0.5) >= BUSY_CORES      # still there at the second look
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("module,given", [("train", "ACTIVE"), ("test", ""), ("detect", "PASSIVE")])
def test_clis_keep_the_users_openmp_wait_policy(module, given):
    """train.py / test.py / detect.py decide the policy before torch is imported (detect.py imports
    torch at its top) and never replace a value the user set, even an empty one."""
    env = {**os.environ, "OMP_WAIT_POLICY": given}
    code = f"import os; import {module}; print(repr(os.environ.get('OMP_WAIT_POLICY')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == repr(given)


def test_prepare_leaves_the_download_to_rank0_after_processes_connect(monkeypatch, shapes_yaml):
    """Under torchrun, prepare() (before the process group exists) must not fetch data: rank 0
    fetching there would keep the other ranks waiting to connect. build_data fetches after init."""
    import train
    import utils.data.config as data_config
    calls = []
    monkeypatch.setattr(data_config, "ensure_dataset", lambda *a, **k: calls.append(k))
    opt = train.parse_args(["--data", str(shapes_yaml)])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    train.prepare(opt)
    assert calls == []
    monkeypatch.setenv("WORLD_SIZE", "1")
    train.prepare(opt)
    assert calls == [{"download": True, "allowed": False}]


def test_close_mosaic_turns_mosaic_off_for_the_last_epochs(shapes_yaml, tmp_path, monkeypatch, caplog):
    """hyp close_mosaic 1 of 3 epochs (from the YAML): the Trainer switches the sampler off for the third
    epoch only and says so; ``--close-mosaic 3`` (the flag overrides the YAML's 1) is at least --epochs: a
    warning (no epoch uses mosaic), not silence."""
    import logging
    import train
    from utils.data.sampler import SeededSampler
    seen = []
    real = SeededSampler.set_mosaic
    monkeypatch.setattr(SeededSampler, "set_mosaic", lambda self, on: (seen.append(bool(on)), real(self, on))[1])
    hyp = yaml.safe_load((ROOT / "configs" / "hyp.shapes.yaml").read_text())
    (tmp_path / "one.yaml").write_text(yaml.safe_dump({**hyp, "close_mosaic": 1}))
    with caplog.at_level(logging.INFO):
        assert train.main(_opts(shapes_yaml, tmp_path, epochs=3, name="one", hyp=tmp_path / "one.yaml")) == 0
        assert seen == [True, True, False]
        assert "close_mosaic: mosaic off from epoch 3 of 3" in caplog.text
        assert train.main(_opts(shapes_yaml, tmp_path, epochs=3, name="all", hyp=tmp_path / "one.yaml",
                                **{"close-mosaic": 3})) == 0
    assert seen[3:] == [False] * 3
    assert "hyp close_mosaic 3 >= --epochs 3: no epoch of this run uses mosaic" in caplog.text
