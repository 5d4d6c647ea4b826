"""benchmarks/bench_learning.py: yolov5's predictions (category_id = class index) are scored with this
project's category ids, so a perfect yolov5 prediction file scores mAP 1 (it scored ~0 for class 0 and
shifted every other class by one before the fix)."""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

import bench_learning

LABELS = {"00000": ["0 0.5 0.5 0.5 0.5"], "00001": ["1 0.25 0.25 0.3 0.3", "0 0.7 0.7 0.2 0.4"]}


def _dataset(root):
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem, lines in LABELS.items():
            cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), np.full((64, 80, 3), 127, np.uint8))
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    data = root / "d.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "format": "yolo", "train": "images/train",
                                    "val": "images/val", "names": ["a", "b"]}))
    return data


def _perfect_yolov5_json(path):
    """What yolov5's val.py --save-json writes for a perfect detector on LABELS (80x64 images)."""
    out = []
    for stem, lines in LABELS.items():
        for line in lines:
            c, x, y, w, h = map(float, line.split())
            out.append({"image_id": int(stem), "category_id": int(c), "score": 0.9,
                        "bbox": [(x - w / 2) * 80, (y - h / 2) * 64, w * 80, h * 64]})
    path.write_text(json.dumps(out))


def test_peer_predictions_take_the_dataset_category_ids(tmp_path):
    data = _dataset(tmp_path / "ds")
    raw = tmp_path / "cell" / "pred_best" / "best_predictions.json"
    raw.parent.mkdir(parents=True)
    _perfect_yolov5_json(raw)
    fixed = bench_learning.peer_predictions(raw, data)
    assert [e["category_id"] for e in json.loads(fixed.read_text())] == [1, 2, 1]   # YOLO data: ids 1..nc
    scores = bench_learning.score_peer(tmp_path / "cell", data, "best", tmp_path / "log.txt")
    assert scores["map50"] == 1.0 and scores["map"] == 1.0


def test_peer_weights_fill_every_tensor_of_yolov5n_layout_by_name():
    """benchmarks/peer_weights.py: a yolov5-named state (no ``detect.*`` alias, no stride buffer, anchors
    in grid units, maybe refitted by its autoanchor) fills every tensor of yolov5n_layout, the anchors in
    pixels; a missing tensor is one error line."""
    import pytest
    import torch
    from models.yolo import Model, load_model_cfg

    import peer_weights
    template = Model(load_model_cfg("configs/yolov5n_layout.yaml"), nc=4).state_dict()
    peer = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in template.items()
            if not k.startswith("detect.") and not k.endswith("stride")}
    # yolov5's autoanchor refitted: P3 (6,5) (18,10) (39,27) px = grid units / 8, P4 / 16, P5 / 32
    fitted = torch.tensor([[6, 5, 18, 10, 39, 27], [76, 25, 65, 73, 116, 68], [137, 133, 217, 112, 290, 211]],
                          dtype=torch.float32).view(3, 3, 2)
    peer["model.24.anchors"] = fitted / torch.tensor([8.0, 16.0, 32.0]).view(3, 1, 1)
    out = peer_weights.peer_state_into(template, peer)
    assert out.keys() == template.keys()
    assert torch.equal(out["model.0.conv.weight"], peer["model.0.conv.weight"])
    assert torch.equal(out["detect.m.2.bias"], peer["model.24.m.2.bias"])        # the head alias
    assert torch.allclose(out["model.24.anchors"], fitted) and torch.allclose(out["detect.anchors"], fitted)
    assert torch.equal(out["detect.stride"], template["detect.stride"])          # 8, 16, 32 kept
    del peer["model.23.cv3.conv.weight"]
    with pytest.raises(SystemExit, match="1 tensors have no yolov5 counterpart, e.g. model.23.cv3.conv.weight"):
        peer_weights.peer_state_into(template, peer)


def test_report_gives_mean_min_and_sd_per_group():
    def cell(seed, best, vbox):
        m = {"map50": best, "map": best / 2}
        return {"task": "shapes", "recipe": "same", "who": "ours-x", "seed": seed, "best": m, "last": m, "wall_s": 10.0,
                "final_val_box_loss": vbox}
    text = bench_learning.report([cell(0, 0.1, 0.07), cell(1, 0.3, 0.05)], [300.0, 310.0], "header")
    row = next(line for line in text.splitlines() if "ours-x" in line)
    # mean 0.2 (min 0.1); sample sd of (0.1, 0.3) = 0.1414; val box loss mean 0.06, sd 0.01414
    assert "| 0,1 | 0.200 (0.100) | 0.141 | 0.200 (0.100) | 0.100 (0.050) | 0.100 (0.050) | 0.0600 (0.0141) | 10 |" in row
    assert "300, 310 GFLOP/s" in text


def test_a_cell_written_before_the_val_loss_field_reads_it_from_its_results_csv(tmp_path):
    done = tmp_path / "seed0" / "cell.json"
    (done.parent / "train").mkdir(parents=True)
    done.write_text(json.dumps({"seed": 0, "best": {"map50": 0.1}}))
    (done.parent / "train" / "results.csv").write_text(
        "epoch,metrics/mAP_0.5,val/box_loss\n0,0.01,0.09\n1,0.05,0.0712\n")
    c = bench_learning.load_cell(done)
    assert c["final_val_box_loss"] == 0.0712 and c["best"] == {"map50": 0.1}


def test_peer_python_names_the_venv_that_runs_the_yolov5_cells(tmp_path, capsys, monkeypatch):
    """--peer-python picks the yolov5 venv (e.g. one with another OpenCV build); a missing one stops
    before any cell with one line naming it."""
    monkeypatch.setattr(bench_learning, "PEER", bench_learning.PEER)   # main() rebinds it: restore after
    missing = tmp_path / "no-venv" / "bin" / "python"
    rc = bench_learning.main(["--who", "yolov5-yolov5n", "--peer-python", str(missing), "--work", str(tmp_path / "w")])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (f"error: no peer venv at {missing} "
                                               "(set it up as ../shared/bench/peer_bench.py says)")
    assert bench_learning.PEER == missing and not (tmp_path / "w").exists()


def test_report_header_says_when_the_peer_venv_cannot_report_its_versions(tmp_path, monkeypatch):
    """A python without yolov5 is named as such, a missing one as 'no peer venv'; ours always gives OpenCV."""
    monkeypatch.setattr(bench_learning, "PEER", Path(sys.executable))   # this venv has no yolov5
    text = bench_learning._versions()
    assert f"+ OpenCV {cv2.__version__} (ours)" in text
    assert f"peer venv {sys.executable} did not report torch/yolov5/OpenCV" in text
    monkeypatch.setattr(bench_learning, "PEER", tmp_path / "missing")
    assert "no peer venv" in bench_learning._versions()


def test_vehicles_fit_task_is_every_vehicle_image_with_val_equal_to_train(tmp_path):
    """COCO128 holds 20 images with a motorcycle/car/bus/truck (71 boxes, one of them iscrowd), coco-mini
    train 11 (53) and val 10 (31): 41 images and 154 non-crowd boxes, validated on the same files."""
    import pytest
    if not (bench_learning.SHARED / "coco-mini").is_dir():
        pytest.skip(f"{bench_learning.SHARED} is absent (the shared COCO slices)")
    data = bench_learning.prepare_task("vehicles-fit", tmp_path)
    cfg = yaml.safe_load(data.read_text())
    assert cfg["names"] == ["motorcycle", "car", "bus", "truck"]
    root = Path(cfg["path"])
    labels = sorted((root / "labels" / "train").iterdir())
    assert len(list((root / "images" / "train").iterdir())) == len(labels) == 41
    lines = [ln for f in labels for ln in f.read_text().splitlines()]
    assert len(lines) == 154 and all(ln.split()[0] in "0123" for ln in lines)
    assert (root / "images" / "val").resolve() == (root / "images" / "train").resolve()
    assert bench_learning.TASK_SIZE["vehicles-fit"] == 320


def test_ablation_models_build_with_the_parameter_counts_results_md_quotes(tmp_path):
    """--who ours-<model> resolves configs/, then benchmarks/configs/ (the two hybrids of the eighteenth session's
    ablation: 1,802,921 and 2,259,953 parameters at nc 4), then a VARIANTS entry written into the cell, which
    differs from its base model in the given keys only; an unknown name stops before any cell with one line."""
    import learning_models as lm
    from models.yolo import Model, load_model_cfg

    def params(path):
        return sum(p.numel() for p in Model(load_model_cfg(path), nc=4).parameters())

    assert lm.model_cfg("yolov4_n", tmp_path) == lm.ROOT / "configs" / "yolov4_n.yaml"
    assert params(lm.model_cfg("hyb_v4bb_v5neck", tmp_path)) == 1_802_921
    assert params(lm.model_cfg("hyb_v5bb_v4neck", tmp_path)) == 2_259_953
    for name, (base, keys) in lm.VARIANTS.items():
        path = lm.model_cfg(name, tmp_path)
        assert path == tmp_path / f"{name}.yaml"
        derived, original = load_model_cfg(path), load_model_cfg(lm.ROOT / "configs" / f"{base}.yaml")
        changed = {k for k in derived.keys() | original.keys() if derived.get(k) != original.get(k)}
        assert changed - {"source"} == set(keys)                          # source: the file each was read from
        assert all(derived[k] == v for k, v in keys.items())
        assert params(path) == params(lm.ROOT / "configs" / f"{base}.yaml")   # anchors / eps: same weights
    assert bench_learning.main(["--who", "ours-no_such_model", "--work", str(tmp_path / "w")]) == 2
    assert not (tmp_path / "w").exists()
