"""The GPU check's summary: ``<out>/summary.json`` and ``<out>/summary.md`` from the driver's
``sections.tsv`` (name, exit code, seconds, time box) and each section's ``<name>.json``.

A section passed when it exited 0 and its JSON says ``ok``. In a dry run a ``skipped: ...`` status
passes too (yolov5 is not installed on the CPU machines); on a GPU nothing may be skipped.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TIMEOUT_CODES = (124, 137)
NO_TIME = 125   # the driver's code for a section it did not start: the global time box was spent


def section_status(out: Path, name: str, rc: int, box: int) -> tuple[str, dict]:
    path = out / f"{name}.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    status = data.get("status")
    if rc == NO_TIME:
        return "failed: not started, the 8-minute box was spent", data
    if rc in TIMEOUT_CODES:
        return f"failed: time box of {box} s exceeded" + (f" (last status: {status})" if status else ""), data
    if status is None:
        return f"failed: exit {rc}, no {path.name} written (see logs/{name}.log)", data
    if rc != 0 and not status.startswith("failed"):
        return f"failed: exit {rc} after status '{status}' (see logs/{name}.log)", data
    return status, data


def passed(status: str, dry_run: bool) -> bool:
    return status == "ok" or (dry_run and status.startswith("skipped"))


def fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
        ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]


def throughput_lines(rows: list[dict]) -> list[str]:
    body = [[r["model"], r["batch"], r["amp"], "cl" if r["channels_last"] else "nchw", r["data"], r["img_s"],
             f"{r['step_s_median'] * 1e3:.1f} ({r['step_s_min'] * 1e3:.1f}-{r['step_s_max'] * 1e3:.1f}, "
             f"n={r['timed_steps']})", r["wait_s_total"], r["peak_mem_mib"] / 1024,
             f"{100 * r['gpu_busy_frac']:.0f}" if r.get("gpu_busy_frac") is not None else "-",
             r["nonfinite_steps"], r["loss"]] for r in rows]
    return table(["model", "batch", "amp", "layout", "data", "img/s", "step ms median (min-max, n)",
                  "batch wait s (timed)", "peak alloc GiB", "GPU busy %", "skipped steps", "loss"], body)


def detail_lines(sections: dict[str, dict]) -> list[str]:
    lines: list[str] = []
    tr = sections.get("train", {})
    if tr.get("train_loss_per_epoch") is not None:
        lines += ["", f"## Training: train loss per epoch {[round(x, 5) for x in tr['train_loss_per_epoch']]}, "
                      f"lowered: {tr.get('loss_lowered')}, last mAP@0.5 {fmt(tr.get('last_map50'))}"]
    te, de = sections.get("test", {}), sections.get("detect", {})
    if te.get("map") is not None:
        lines += ["", f"## test.py: mAP@0.5 {fmt(te.get('map50'))}, mAP@0.5:0.95 {fmt(te.get('map'))}, "
                      f"pycocotools AP {fmt(te.get('pycocotools_ap'))}, ms per image "
                      f"{ {k: round(v, 2) for k, v in (te.get('speed_ms_per_image') or {}).items()} }"]
    if de.get("images") is not None:
        lines += ["", f"## detect.py --half: {de['images']} images, {de.get('boxes')} boxes; {de.get('speed')}"]
    for row in sections.get("compile", {}).get("rows", []):   # a run killed while compiling has eager figures only
        g = row.get
        lines += ["", f"## torch.compile ({g('backend')}), {g('model')} b{g('batch')} {g('size')} {g('amp')}: eager "
                      f"{fmt(g('eager_img_s'))} img/s, compiled {fmt(g('compiled_img_s'))} img/s "
                      f"(x{fmt(g('speedup'))}), first compiled step {fmt(g('first_compiled_step_s'))} s, "
                      f"loss rel diff {fmt(g('loss_rel_diff'))}"]
    th = sections.get("throughput", {})
    if th.get("rows"):
        lines += ["", "## Training throughput (step: fwd + loss + bwd + clip + SGD + EMA)", "",
                  *throughput_lines(th["rows"])]
    for key in ("skipped", "failed_cells"):
        if th.get(key):
            lines += ["", f"throughput {key.replace('_', ' ')}: " + ", ".join(th[key])]
    lat = sections.get("latency", {}).get("rows", []) + sections.get("yolov5", {}).get("latency", [])
    if lat:
        lines += ["", "## Fused inference latency (channels_last)", "",
                  *table(["model", "batch", "dtype", "ms median", "ms min-max (n)", "img/s"],
                         [[r["model"], r["batch"], r["dtype"], r["ms_median"],
                           f"{r['ms_min']:.3g}-{r['ms_max']:.3g} (n={r['runs']})", r["img_s"]] for r in lat])]
    y = sections.get("yolov5", {})
    if y.get("rows"):
        lines += ["", f"## yolov5 {y.get('version')} (same batches, step and settings)", "",
                  *throughput_lines(y["rows"])]
    ratios = [["train", r.get("batch"), r.get("amp", "-"), {True: "cl", False: "nchw"}.get(r.get("channels_last"), "-"),
               r["ours_img_s"], r["peer_img_s"], r["ratio"]] for r in y.get("train_ratio", [])]
    ratios += [["inference", r["batch"], "fp16", "cl", r["ours_img_s"], r["peer_img_s"], r["ratio"]]
               for r in y.get("latency_ratio", [])]
    if ratios:
        lines += ["", "## ours / yolov5 images per second (> 1: ours faster)", "",
                  *table(["what", "batch", "amp", "layout", "ours img/s", "yolov5 img/s", "ratio"], ratios)]
    return lines


def summarize(out: Path, dry_run: bool) -> int:
    """Write summary.json and summary.md; 0 when every section passed, else 1."""
    tsv = out / "sections.tsv"
    entries = [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()] if tsv.is_file() else []
    results, sections = [], {}
    for name, rc, seconds, box in entries:
        status, data = section_status(out, name, int(rc), int(box))
        sections[name] = data
        results.append({"section": name, "status": status, "exit": int(rc), "seconds": int(seconds),
                        "box_s": int(box), "passed": passed(status, dry_run)})
    all_passed = bool(results) and all(r["passed"] for r in results)
    env = sections.get("env", {})
    (out / "summary.json").write_text(json.dumps({"dry_run": dry_run, "passed": all_passed, "sections": results,
                                                  "env": env}, indent=1))
    head = [f"# GPU check{' (dry run, CPU)' if dry_run else ''}: {'all sections passed' if all_passed else 'FAILED'}",
            "", f"- {env.get('date_utc', '?')}; {env.get('gpu', 'no GPU')}; nvidia-smi: {env.get('nvidia_smi', '-')}",
            f"- torch {env.get('torch', '?')} (CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}), python "
            f"{env.get('python', '?')}, {env.get('cpus', '?')} CPUs, commit {env.get('git_commit')}",
            f"- wall time {sum(r['seconds'] for r in results)} s", ""]
    body = table(["section", "status", "seconds", "time box s"],
                 [[r["section"], r["status"], r["seconds"], r["box_s"]] for r in results])
    try:
        details = detail_lines(sections)
    except (KeyError, TypeError, ValueError) as err:  # a malformed section file must not cost the summary
        details = ["", f"(details not rendered: {type(err).__name__}: {err}; see the section JSON files)"]
    (out / "summary.md").write_text("\n".join(head + body + details) + "\n")
    print("\n".join(head + body))
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(summarize(Path(sys.argv[1]), "--dry-run" in sys.argv))
