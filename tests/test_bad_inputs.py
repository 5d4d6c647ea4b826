"""Bad inputs through the command lines, in-process (``main(argv)``): one row per class of problem
of issue #10. Every row must exit with code 2 and print exactly ONE line on stderr, starting with
``error:``, naming the culprit (file, key / row / entry, or flag), and no traceback.

A row is ``(id, cli, make, culprits)``: ``make(tmp_path, weights)`` writes the bad input and returns
the argv; every string of ``culprits`` (formatted with ``tmp``) must appear in the line."""
from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest
import torch

from bad_inputs_data import NAMES, coco_dataset, coco_json, voc_dataset, write_jpg, write_yaml, yolo_dataset
from utils.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "configs" / "yolov4_n.yaml"


def _load_cli(name: str):
    spec = importlib.util.spec_from_file_location(f"_cli_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLIS = {name: _load_cli(name) for name in ("train", "test", "detect", "export")}
CLIS["yolo"] = _load_cli("models/yolo")


# ------------------------------------------------------------------------------ input builders
def train_args(tmp: Path, data: Path | None = None, **flags) -> list[str]:
    data = data if data is not None else yolo_dataset(tmp / "yolo")
    args = {"cfg": str(MODEL), "data": str(data), "hyp": str(ROOT / "configs" / "hyp.shapes.yaml"), "epochs": "1",
            "img-size": "64", "batch-size": "2", "device": "cpu", "workers": "0", "project": str(tmp / "runs"),
            **{k.replace("_", "-"): v for k, v in flags.items()}}
    out = []
    for k, v in args.items():
        out += [f"--{k}"] + (v if isinstance(v, list) else [] if v is True else [str(v)])
    return out + ["--quiet"]


def hyp_file(tmp: Path, **values) -> Path:
    return write_yaml(tmp / "bad_hyp.yaml", values)


def model_file(tmp: Path, edit) -> Path:
    import yaml
    cfg = yaml.safe_load(MODEL.read_text())
    edit(cfg)
    return write_yaml(tmp / "bad_model.yaml", cfg)


def set_key(key, value):
    return lambda cfg: cfg.__setitem__(key, value)


def set_row(part: str, i: int, j: int, value):
    def edit(cfg):
        cfg[part][i][j] = value
    return edit


def insert_row(part: str, i: int, row):
    return lambda cfg: cfg[part].insert(i, row)


def coco_with(edit) -> callable:
    def make(tmp: Path, weights: Path) -> list[str]:
        data = copy.deepcopy(coco_json())
        edit(data)
        y = coco_dataset(tmp / "coco", data)
        return ["--weights", str(weights), "--data", str(y), "--img-size", "64", "--project", str(tmp / "runs"),
                "--workers", "0", "--no-plots"]
    return make


def voc_with(xml: dict):
    return lambda tmp, w: train_args(tmp, voc_dataset(tmp / "voc", xml))


def damaged_checkpoint(tmp: Path) -> Path:
    good = tmp / "good.pt"
    save_checkpoint({"epoch": 0, "model": {"w": torch.ones(64)}}, good)
    bad = tmp / "damaged.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return bad


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def pickled_code(tmp: Path) -> Path:
    path = tmp / "evil.pt"
    torch.save({"kind": "yolo-checkpoint", "x": _Evil()}, path)
    return path


def download_yaml(tmp: Path, download: str) -> Path:
    return write_yaml(tmp / "dl.yaml", {"path": str(tmp / "absent"), "format": "yolo", "train": "images/train",
                                        "val": "images/val", "names": NAMES, "download": download})


def script(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def resume_checkpoint(tmp: Path) -> Path:
    """A weights_only-clean checkpoint whose options point at a dataset YAML with a download script."""
    marker = tmp / "ran.txt"
    evil = script(tmp, "get_data.py", f"open({str(marker)!r}, 'w').write('ran')\n")
    data = download_yaml(tmp, str(evil))
    path = tmp / "exp" / "weights" / "last.pt"
    opt = {"cfg": str(MODEL), "data": str(data), "weights": "", "freeze": [], "epochs": 5, "device": "cpu",
           "batch_size": 2, "workers": 0}
    save_checkpoint({"epoch": 0, "opt": opt, "model": {}, "hyp": {}, "best_fitness": 0.0, "optimizer": {}, "loop": {},
                     "rng": {}}, path)
    return path


def partial_checkpoint(tmp: Path, drop: str) -> Path:
    path = resume_checkpoint(tmp)
    ckpt = torch.load(path, weights_only=True)
    ckpt.pop(drop)
    torch.save(ckpt, path)
    return path


# ------------------------------------------------------------------------------ the table
CASES = [
    # COCO JSON of the wrong shape (schema checked where the JSON is read)
    ("coco-top-level-list", "test", lambda t, w: _coco_raw(t, w, []), ["val.json", "list"]),
    ("coco-image-without-file_name", "test", coco_with(lambda d: d["images"][1].pop("file_name")),
        ["val.json", "images[1]", "file_name"]),
    ("coco-category-without-id", "test", coco_with(lambda d: d["categories"][2].pop("id")),
        ["val.json", "categories[2]", "'id'"]),
    ("coco-width-abc", "test", coco_with(lambda d: d["images"][0].__setitem__("width", "abc")),
        ["val.json", "images[0] (id 1)", "width"]),
    ("coco-annotation-without-image_id", "test", coco_with(lambda d: d["annotations"][1].pop("image_id")),
        ["val.json", "annotations[1] (id 101)", "image_id"]),
    ("coco-no-annotations-key", "test", coco_with(lambda d: d.pop("annotations")), ["val.json", "'annotations'"]),
    ("coco-no-images-key", "test", coco_with(lambda d: d.pop("images")), ["val.json", "'images'"]),
    ("coco-duplicate-image-id", "test", coco_with(lambda d: d["images"][2].__setitem__("id", 1)),
        ["val.json", "images[2]", "repeats id 1"]),
    # model YAML
    ("model-depth-abc", "yolo", lambda t, w: ["--cfg", str(model_file(t, set_key("depth_multiple", "abc")))],
        ["bad_model.yaml", "depth_multiple", "'abc'"]),
    ("model-nc-negative", "yolo", lambda t, w: ["--cfg", str(model_file(t, set_key("nc", -3)))],
        ["bad_model.yaml", "'nc'", "-3"]),
    ("model-nc-negative-train", "train", lambda t, w: train_args(t, cfg=model_file(t, set_key("nc", -3))),
        ["bad_model.yaml", "'nc'", "-3"]),
    ("model-depth-negative", "yolo", lambda t, w: ["--cfg", str(model_file(t, set_key("depth_multiple", -0.33)))],
        ["bad_model.yaml", "depth_multiple", "-0.33"]),
    ("model-width-zero", "yolo", lambda t, w: ["--cfg", str(model_file(t, set_key("width_multiple", 0)))],
        ["bad_model.yaml", "width_multiple"]),
    ("model-nc-zero", "yolo", lambda t, w: ["--cfg", str(model_file(t, set_key("nc", 0)))], ["bad_model.yaml", "'nc'"]),
    ("model-nc-fraction", "yolo", lambda t, w: ["--cfg", str(model_file(t, set_key("nc", 2.7)))],
        ["bad_model.yaml", "'nc'", "2.7"]),
    ("model-n-true", "yolo", lambda t, w: ["--cfg", str(model_file(t, set_row("backbone", 1, 1, True)))],
        ["bad_model.yaml", "backbone row 1", "n must be"]),
    ("model-channels-zero", "yolo", lambda t, w: ["--cfg", str(model_file(t, set_row("backbone", 0, 3, [0, 3, 1])))],
        ["bad_model.yaml", "backbone row 0", "output channels"]),
    ("model-maxpool-minus-one", "yolo",
        lambda t, w: ["--cfg", str(model_file(t, insert_row("backbone", 2, [-1, 1, "nn.MaxPool2d", [-1]])))],
        ["bad_model.yaml", "backbone row 2", "nn.MaxPool2d"]),
    # hyp YAML: non-finite and out-of-range values of every kind
    *[(f"hyp-{k}-{v}", "train", (lambda k, v: lambda t, w: train_args(t, hyp=hyp_file(t, **{k: v})))(k, v),
       ["bad_hyp.yaml", f"'{k}'"])
      for k, v in [("lr0", float("nan")), ("lr0", float("inf")), ("momentum", 1.5), ("ema_decay", 2.0), ("lrf", -1),
                   ("weight_decay", -1), ("hsv_s", 50), ("scale", 5), ("warmup_epochs", -3), ("bn_momentum", 5),
                   ("nbs", 0), ("fliplr", 1.5), ("lr_steps", [[3, "x"]]), ("optimizer", "Lion")]],
    ("hyp-not-yaml", "train", lambda t, w: train_args(t, hyp=script(t, "bad_hyp.yaml", "lr0: [\n")),
        ["bad_hyp.yaml", "line 2"]),
    ("model-not-yaml", "yolo", lambda t, w: ["--cfg", str(script(t, "bad_model.yaml", "nc: 4\n x: 1\n"))],
        ["bad_model.yaml", "line 2, column 3"]),
    # CLI flags
    ("train-freeze-999", "train", lambda t, w: train_args(t, freeze="999"), ["--freeze 999", "yolov4_n.yaml"]),
    ("train-freeze-index-out", "train", lambda t, w: train_args(t, freeze=["0", "99"]), ["--freeze", "99"]),
    ("train-freeze-negative", "train", lambda t, w: train_args(t, freeze="-1"), ["--freeze"]),
    ("train-seed-negative", "train", lambda t, w: train_args(t, seed="-5"), ["--seed"]),
    ("train-iou-thres-2", "train", lambda t, w: train_args(t, iou_thres="2"), ["--iou-thres"]),
    ("export-img-size-0", "export", lambda t, w: ["--weights", str(w), "--img-size", "0"], ["--img-size"]),
    ("export-img-size-minus-64", "export", lambda t, w: ["--weights", str(w), "--img-size", "-64"], ["--img-size", "-64"]),
    ("export-batch-0", "export", lambda t, w: ["--weights", str(w), "--batch-size", "0"], ["--batch-size"]),
    ("detect-conf-nan", "detect", lambda t, w: ["--weights", str(w), "--source", str(t), "--conf-thres", "nan"],
        ["--conf-thres"]),
    ("detect-classes-beyond-nc", "detect",
        lambda t, w: ["--weights", str(w), "--source", str(write_jpg(t / "a.jpg")), "--classes", "7",
                      "--project", str(t / "runs")], ["--classes 7", "4 classes"]),
    ("test-iou-thres-negative", "test", lambda t, w: ["--weights", str(w), "--data", "d.yaml", "--iou-thres", "-0.1"],
        ["--iou-thres"]),
    # downloads: never without consent, failures wrapped
    ("download-not-allowed", "train",
        lambda t, w: train_args(t, download_yaml(t, str(script(t, "get.sh", "exit 0\n")))),
        ["dl.yaml", "{tmp}/get.sh", "--download"]),
    ("download-script-fails", "train",
        lambda t, w: train_args(t, download_yaml(t, str(script(t, "get.sh", "exit 3\n"))), download=True),
        ["dl.yaml", "get.sh", "status 3"]),
    ("download-py-fails", "train",
        lambda t, w: train_args(t, download_yaml(t, str(script(t, "get.py", "raise SystemExit(4)\n"))), download=True),
        ["dl.yaml", "get.py", "status 4"]),
    ("download-unreachable-url", "train",
        lambda t, w: train_args(t, download_yaml(t, "http://127.0.0.1:9/data.zip"), download=True),
        ["dl.yaml", "http://127.0.0.1:9/data.zip"]),
    ("download-script-missing", "train", lambda t, w: train_args(t, download_yaml(t, "nope/get.sh"), download=True),
        ["dl.yaml", "nope/get.sh", "not found"]),
    ("resume-names-download", "train", lambda t, w: ["--resume", str(resume_checkpoint(t))],
        ["dl.yaml", "{tmp}/get_data.py", "--download"]),
    # readers: YOLO / VOC problems that stop a split
    ("voc-object-without-bndbox", "train",
        voc_with({i: "<annotation><size><width>64</width><height>48</height></size><object><name>car</name>"
                     "</object></annotation>" for i in range(3)}), ["000000.xml", "no <bndbox>"]),
    ("yolo-all-labels-broken", "train", lambda t, w: train_args(t, yolo_dataset(t / "yolo", labels={
        i: "1 0.5 0.5 abc 0.2\n" for i in range(4)})), ["data.yaml", "'train'"]),
    ("yolo-every-box-non-finite", "train", lambda t, w: train_args(t, yolo_dataset(t / "yolo", labels={
        i: "1 nan 0.5 0.2 0.2\n" for i in range(4)})), ["data.yaml", "'train'", "0.txt (line 1)", "non_finite"]),
    ("yolo-every-class-beyond-names", "train", lambda t, w: train_args(t, yolo_dataset(t / "yolo", labels={
        i: "7 0.5 0.5 0.2 0.2\n" for i in range(4)})), ["data.yaml", "0.txt (line 1)", "class id 7"]),
    # checkpoints
    ("checkpoint-damaged-detect", "detect", lambda t, w: ["--weights", str(damaged_checkpoint(t)), "--source",
                                                          str(write_jpg(t / "a.jpg")), "--project", str(t / "runs")],
        ["damaged.pt", "damaged"]),
    ("checkpoint-damaged-export", "export", lambda t, w: ["--weights", str(damaged_checkpoint(t))], ["damaged.pt"]),
    ("checkpoint-damaged-resume", "train", lambda t, w: ["--resume", str(damaged_checkpoint(t))], ["damaged.pt"]),
    ("checkpoint-pickled-code", "test", lambda t, w: ["--weights", str(pickled_code(t)), "--data", "d.yaml"],
        ["evil.pt", "refused"]),
    ("checkpoint-resume-without-optimizer", "train", lambda t, w: ["--resume", str(partial_checkpoint(t, "optimizer"))],
        ["last.pt", "cannot resume", "'optimizer'"]),
    ("checkpoint-resume-without-opt", "train", lambda t, w: ["--resume", str(partial_checkpoint(t, "opt"))],
        ["--resume", "last.pt"]),
    ("checkpoint-weights-without-model", "train",
        lambda t, w: train_args(t, weights=partial_checkpoint(t, "model")), ["last.pt", "'model'"]),
    ("export-opset-99", "export", lambda t, w: ["--weights", str(w), "--opset", "99"], ["--opset 99"]),
    ("checkpoint-empty", "export", lambda t, w: ["--weights", str(script(t, "empty.pt", ""))], ["empty.pt", "empty"]),
]


def _coco_raw(tmp: Path, weights: Path, data) -> list[str]:
    y = coco_dataset(tmp / "coco", data)
    return ["--weights", str(weights), "--data", str(y), "--img-size", "64", "--project", str(tmp / "runs")]


def run_cli(cli: str, argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = CLIS[cli].main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("case, cli, make, culprits", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(case, cli, make, culprits, tmp_path, tiny_weights, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # nothing may land in the repository
    monkeypatch.setattr("sys.stdin", None)      # a non-interactive run: nothing may ask
    argv = make(tmp_path, tiny_weights)
    capsys.readouterr()
    rc, err = run_cli(cli, argv, capsys)
    lines = err.strip().splitlines()
    assert rc == 2, f"{case}: exit code {rc}, stderr {err!r}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: stderr {err!r}"
    assert "Traceback" not in err and "weights_only=False" not in err
    for c in culprits:
        assert c.format(tmp=tmp_path) in lines[0], f"{case}: {c!r} not named in {lines[0]!r}"


def test_resume_shows_what_the_checkpoint_names_and_runs_nothing(tmp_path, capsys, caplog, monkeypatch):
    monkeypatch.setattr("sys.stdin", None)
    ckpt = resume_checkpoint(tmp_path)
    with caplog.at_level("INFO"):
        rc, err = run_cli("train", ["--resume", str(ckpt)], capsys)
    assert rc == 2 and not (tmp_path / "ran.txt").exists()      # the script named by the checkpoint never ran
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"cfg {MODEL}" in said and f"data {tmp_path / 'dl.yaml'}" in said and "weights (none)" in said


def test_every_class_of_the_issue_has_a_row():
    ids = " ".join(c[0] for c in CASES)
    for word in ("coco-", "model-", "hyp-", "freeze", "export-img-size", "download-", "resume", "voc-", "checkpoint-"):
        assert word in ids
    assert len(CASES) >= 50
