"""benchmarks/gpu_check.sh: the whole GPU check rehearsed on the CPU (``--dry-run``: every section
at tiny sizes), and the summary's rules for failed, killed and skipped sections."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

from gpu_summary import summarize

SECTIONS = ["env", "data", "cuda_tests", "train", "test", "detect", "throughput", "latency", "yolov5", "compile"]


# ------------------------------------------------------------------------------------- summary
def write_sections(out: Path, entries: list[tuple[str, int, str | None]]) -> None:
    """``sections.tsv`` rows (name, exit code, 3 s, box 60 s) and a ``<name>.json`` per given status."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sections.tsv").write_text("".join(f"{n}\t{rc}\t3\t60\n" for n, rc, _ in entries))
    for name, _, status in entries:
        if status is not None:
            (out / f"{name}.json").write_text(json.dumps({"section": name, "status": status}))


def test_summary_fails_killed_crashed_and_skipped_sections(tmp_path):
    write_sections(tmp_path, [("env", 0, "ok"), ("train", 124, None), ("test", 1, None), ("detect", 1, "ok"),
                              ("latency", 1, "failed: boom"), ("yolov5", 0, "skipped: yolov5 not installed"),
                              ("compile", 125, None)])
    assert summarize(tmp_path, dry_run=False) == 1
    s = json.loads((tmp_path / "summary.json").read_text())
    status = {r["section"]: r["status"] for r in s["sections"]}
    assert status == {"env": "ok", "train": "failed: time box of 60 s exceeded",
                      "test": "failed: exit 1, no test.json written (see logs/test.log)",
                      "detect": "failed: exit 1 after status 'ok' (see logs/detect.log)",
                      "latency": "failed: boom", "yolov5": "skipped: yolov5 not installed",
                      "compile": "failed: not started, the 8-minute box was spent"}
    assert [r["passed"] for r in s["sections"]] == [True, False, False, False, False, False, False]
    assert not s["passed"] and "FAILED" in (tmp_path / "summary.md").read_text()


def test_summary_passes_a_skip_only_in_a_dry_run(tmp_path):
    write_sections(tmp_path, [("env", 0, "ok"), ("yolov5", 0, "skipped: yolov5 not installed")])
    assert summarize(tmp_path, dry_run=True) == 0
    assert summarize(tmp_path, dry_run=False) == 1
    write_sections(tmp_path / "none", [])
    assert summarize(tmp_path / "none", dry_run=True) == 1          # no section ran: not a pass


# ------------------------------------------------------------------------------------- dry run
@pytest.mark.slow   # ~15 Python processes (each imports torch): 1.5-3 min on 2 busy cores
def test_dry_run_passes_every_section(tmp_path):
    out = tmp_path / "gpu"
    env = dict(os.environ, PYTHON=sys.executable)
    p = subprocess.run(["bash", "benchmarks/gpu_check.sh", str(out), "--dry-run"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1200)
    summary = json.loads((out / "summary.json").read_text())
    status = {s["section"]: s["status"] for s in summary["sections"]}
    assert list(status) == SECTIONS
    peer = "ok" if importlib.util.find_spec("yolov5") else "skipped: yolov5 not installed"
    logs = {n: (out / "logs" / f"{n}.log").read_text()[-1500:] for n in SECTIONS if status[n] not in ("ok", peer)}
    assert status == {**{n: "ok" for n in SECTIONS}, "yolov5": peer}, logs
    assert p.returncode == 0 and summary["passed"], p.stdout + p.stderr

    tests = json.loads((out / "cuda_tests.json").read_text())     # every cuda test collected, all skipped
    assert tests["skipped"] >= 10 and tests["passed"] == tests["failed"] == 0
    assert "tests.test_cuda::test_evaluate_on_cuda_equals_cpu" in tests["tests"]["skipped"]
    weights = out / "train" / "exp" / "weights"
    assert (weights / "last.pt").is_file() and (weights / "best.pt").is_file()
    assert len((out / "train" / "exp" / "results.csv").read_text().splitlines()) == 2    # header + 1 epoch
    assert json.loads((out / "test.json").read_text())["images"] == 4                    # the 4 val images
    assert len(list((out / "detect" / "exp" / "labels").glob("*.txt"))) == 4

    rows = json.loads((out / "throughput.json").read_text())["rows"]
    # pass 1: fp16 channels_last synthetic + loader; pass 2: bf16 cl, fp16 nchw, bf16 nchw (batch 2)
    assert [(r["amp"], r["channels_last"], r["data"]) for r in rows] == [
        ("fp16", True, "synthetic"), ("fp16", True, "loader"), ("bf16", True, "synthetic"),
        ("fp16", False, "synthetic"), ("bf16", False, "synthetic")]
    assert all(r["img_s"] > 0 and r["batch"] == 2 and r["size"] == 64 for r in rows)
    assert rows[1]["images"] == 8 and rows[1]["timed_steps"] == 4                         # one epoch of 8
    lat = json.loads((out / "latency.json").read_text())["rows"]
    assert [(r["model"], r["batch"], r["runs"]) for r in lat] == [("yolov4_n", 1, 2), ("yolov4_n", 2, 2)]
    comp = json.loads((out / "compile.json").read_text())["rows"][0]
    assert comp["backend"] == "eager" and comp["compiled_img_s"] > 0 and comp["loss_rel_diff"] <= 2e-2
    md = (out / "summary.md").read_text()
    assert "all sections passed" in md and "## Training throughput" in md
