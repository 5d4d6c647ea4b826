"""Timing sections of the GPU check (benchmarks/gpu_check.sh): the training-throughput grid,
torch.compile on/off, fused inference latency, and GPU busy time per step.

A library for ``gpu_check.py``; the step, the model builders and the forward timer are
``bench_train.train_step`` / ``build_trainee`` / ``time_steps`` and ``bench_models.build`` /
``time_forward``, so these figures are measured exactly as the CPU tables in RESULTS.md.

Cells of the grid: (model, batch, amp, channels_last, data). ``data`` is ``synthetic`` (a few real
mosaic batches drawn once with the project loader, moved to the GPU and cycled: loading excluded)
or ``loader`` (a live ``build_dataloader`` with ``workers`` processes: one warm-up epoch, then whole
timed epochs, i.e. end-to-end epoch time). Cells run in two passes over the models (pass 1: fp16,
channels_last, both batches, synthetic and loader; pass 2: bf16 and channels_last off, the model
compared with yolov5l first), and a cell predicted to end past the section's budget is skipped and
listed instead.
"""
from __future__ import annotations

import gc
import itertools
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

from bench_models import time_forward
from bench_train import RowResult, Trainee, draw_batches, time_steps, train_step
from models.summary import gflops
from utils.config import Hyp
from utils.data.loader import LoaderSettings, build_dataloader

AMPS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}
Builder = Callable[[Optional[torch.dtype], bool], Trainee]   # (amp, channels_last) -> fresh trainee


@dataclass(frozen=True)
class Grid:
    """What the throughput grid runs (one config section, read-only)."""
    size: int
    batches: tuple[int, ...]
    amps: tuple[str, ...]
    channels_last: tuple[bool, ...]
    loader_batches: tuple[int, ...]   # batches that also get a live-loader cell (fp16, channels_last)
    warmup: int
    steps: int
    workers: int
    budget_s: float


@dataclass(frozen=True)
class Cell:
    model: str
    batch: int
    amp: str
    channels_last: bool
    data: str                         # synthetic | loader

    @property
    def label(self) -> str:
        return f"{self.model} b{self.batch} {self.amp} {'cl' if self.channels_last else 'nchw'} {self.data}"


def plan(models: list[str], g: Grid, lead: Optional[str] = None) -> list[list[Cell]]:
    """Groups of cells, one model each: pass 1 (first amp, first layout; synthetic and loader) for
    every model, then pass 2 (the other amps and layouts, synthetic), ``lead`` first."""
    first = [[Cell(m, b, g.amps[0], g.channels_last[0], d) for b in g.batches
              for d in ("synthetic", "loader") if d == "synthetic" or b in g.loader_batches] for m in models]
    rest = [[Cell(m, b, a, cl, "synthetic") for cl in g.channels_last for a in g.amps for b in g.batches
             if (a, cl) != (g.amps[0], g.channels_last[0])] for m in sorted(models, key=lambda m: m != lead)]
    return [group for group in first + rest if group]


def retarget(t: Trainee, amp: str, channels_last: bool) -> Trainee:
    """The same model, optimiser and EMA with another autocast dtype and memory format (a fresh
    GradScaler; momentum buffers dropped when the layout changes)."""
    if channels_last != t.channels_last:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        t.model.to(memory_format=fmt)
        t.ema.ema.to(memory_format=fmt)
        t.optimizer.state.clear()
    dtype = AMPS[amp]
    return replace(t, amp=dtype, channels_last=channels_last,
                   scaler=torch.amp.GradScaler(t.device.type, enabled=dtype == torch.float16))


def to_device(batches: list, device: torch.device) -> list:
    return [(imgs.to(device), targets.to(device)) for imgs, targets in batches]


def epochs(loader) -> Iterator:
    """Batches of ``loader`` over successive epochs (the sampler reseeded per epoch, as train.py)."""
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        yield from loader


def gpu_busy_s(t: Trainee, batch: tuple, steps: int = 2) -> Optional[float]:
    """Seconds per step during which at least one CUDA kernel or copy runs (union of the profiler's
    device intervals, so overlapping streams count once); None without CUDA."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    cuda = t.device.type == "cuda"
    with profile(activities=[ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(t, *batch, sync=False)
        if cuda:
            torch.cuda.synchronize(t.device)
    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                   if getattr(e, "device_type", None) == DeviceType.CUDA)
    if not cuda:
        return None
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            busy += b - max(a, end)
            end = b
    return busy / 1e6 / steps


def row_dict(cell: Cell, row: RowResult, busy: Optional[float]) -> dict:
    """A JSON row: the cell, images/s, step and wait medians, peak memory, GPU busy fraction."""
    steps = row.step_s()
    med = statistics.median(steps)
    wall = sum(steps) + sum(row.waits)
    d = {"cell": cell.label, "model": cell.model, "batch": cell.batch, "amp": cell.amp,
         "channels_last": cell.channels_last, "data": cell.data, "size": row.size, "params_m": row.params_m,
         "gflops": row.gflops, "timed_steps": len(steps), "step_s_median": med, "step_s_min": min(steps),
         "step_s_max": max(steps), "wait_s_total": sum(row.waits), "images": row.images,
         "img_s": row.images / wall if cell.data == "loader" else row.batch / med,
         "peak_mem_mib": row.mem_mib, "loss": row.loss, "nonfinite_steps": row.nonfinite,
         "boxes_per_batch": row.targets, "gpu_busy_s_per_step": busy}
    if busy is not None:  # loader cells: kernel time of the batches over the wall time of the epochs
        d["gpu_busy_frac"] = busy * row.images / row.batch / wall if cell.data == "loader" else busy / med
    return d


class GridRun:
    """Runs planned cells against a deadline, one model built at a time, appending rows to a list."""

    def __init__(self, g: Grid, info, hyp: Hyp, device: torch.device, log_row: Callable[[dict], None]):
        self.g, self.info, self.hyp, self.device, self.log_row = g, info, hyp, device, log_row
        self.deadline = time.perf_counter() + g.budget_s
        n = g.warmup + g.steps
        distinct = max(1, min(3, n, len(info) // max(g.batches)))
        self.synthetic = {b: to_device(draw_batches(info, g.size, b, hyp, distinct), device) for b in g.batches}
        self.rows: list[dict] = []
        self.skipped: list[str] = []
        self.failed: list[str] = []
        self.per_image_s: dict[str, float] = {}   # model -> seconds per image of its last synthetic cell
        self.busy: dict[tuple, float] = {}        # (model, batch, amp, cl) -> GPU busy s per step

    def predict_s(self, cell: Cell) -> float:
        per_image = self.per_image_s.get(cell.model, max(self.per_image_s.values(), default=0.0))
        n = self.g.steps + self.g.warmup
        if cell.data == "loader":
            n = 2 * len(self.info) / cell.batch if len(self.info) > 2 * cell.batch else n
        return per_image * cell.batch * n * 1.3 + 2.0

    def run(self, groups: list[list[Cell]], builders: dict[str, Builder]) -> None:
        for group in groups:
            if time.perf_counter() + self.predict_s(group[0]) > self.deadline:
                self.skipped += [f"{c.label} (time box)" for c in group]
                continue
            try:
                t = builders[group[0].model](AMPS[group[0].amp], group[0].channels_last)
                gf = gflops(t.model, self.g.size)
            except Exception as err:  # a model that does not build fails its cells, not the grid
                traceback.print_exc()
                self.failed += [f"{c.label}: build: {type(err).__name__}: {err}" for c in group]
                continue
            params = sum(p.numel() for p in t.model.parameters()) / 1e6
            for cell in group:
                if time.perf_counter() + self.predict_s(cell) > self.deadline:
                    self.skipped.append(f"{cell.label} (time box)")
                    continue
                t = retarget(t, cell.amp, cell.channels_last)
                self.run_cell(t, cell, RowResult(cell.model, self.g.size, cell.batch, params, gf))
            del t
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def run_cell(self, t: Trainee, cell: Cell, row: RowResult) -> None:
        print(f"cell {cell.label}", file=sys.stderr, flush=True)
        key = (cell.model, cell.batch, cell.amp, cell.channels_last)
        try:
            if cell.data == "synthetic":
                time_steps(t, row, itertools.cycle(self.synthetic[cell.batch]), self.g.warmup, self.g.steps)
                if cell.amp == self.g.amps[0] and cell.channels_last == self.g.channels_last[0]:
                    self.busy[key] = gpu_busy_s(t, self.synthetic[cell.batch][0])
                self.per_image_s[cell.model] = statistics.median(row.step_s()) / cell.batch
            else:
                self.run_loader_cell(t, cell, row)
        except torch.cuda.OutOfMemoryError:
            self.failed.append(f"{cell.label}: CUDA out of memory")
            t.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            return
        except Exception as err:  # one broken cell must not end the grid; the traceback goes to the log
            traceback.print_exc()
            self.failed.append(f"{cell.label}: {type(err).__name__}: {err}")
            return
        self.rows.append(row_dict(cell, row, self.busy.get(key)))
        self.log_row(self.rows[-1])

    def run_loader_cell(self, t: Trainee, cell: Cell, row: RowResult) -> None:
        loader = build_dataloader(self.info, LoaderSettings(self.g.size, cell.batch, augment=True, shuffle=True,
                                                           workers=self.g.workers, seed=0), self.hyp)
        n = len(loader)
        timed_epochs = max(1, -(-2 * self.g.steps * cell.batch // max(len(self.info), 1)) // 2)
        stream = epochs(loader)
        try:
            time_steps(t, row, stream, n, n * timed_epochs)   # warm-up: one epoch (workers start, autotuning)
        finally:
            stream.close()
            del loader


def latency_rows(name: str, model: torch.nn.Module, size: int, batches: tuple[int, ...], warmup: int, runs: int,
                 device: torch.device, half: bool) -> list[dict]:
    """Fused eval ``model`` (already fused) in channels_last, FP16 when ``half``: median ms per
    forward at each batch, via bench_models.time_forward."""
    dtype = torch.float16 if half else torch.float32
    model = model.to(device).eval().to(memory_format=torch.channels_last).to(dtype)
    rows = []
    for b in batches:
        x = torch.rand(b, 3, size, size, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
        times = time_forward(model, x, warmup, runs)
        med = statistics.median(times)
        rows.append({"model": name, "batch": b, "size": size, "dtype": str(dtype).replace("torch.", ""),
                     "ms_median": med * 1e3, "ms_min": min(times) * 1e3, "ms_max": max(times) * 1e3,
                     "runs": len(times), "img_s": b / med})
        print(f"latency {name} b{b}: {med * 1e3:.2f} ms", file=sys.stderr, flush=True)
    return rows


def compile_rows(t: Trainee, batches: list, warmup: int, steps: int, backend: str, name: str,
                 progress: Optional[Callable[[dict], None]] = None) -> dict:
    """The same trainee timed eagerly, then after ``model.compile(backend=...)`` (in place, so the
    EMA and state_dict keys are unchanged): the first compiled step (compilation) and steady steps.
    The loss of the first batch, eager (no step) and then compiled (the first compiled step's loss,
    taken before its optimiser step), on the same weights. ``progress`` sees the eager figures
    before compilation starts (a run killed while compiling keeps them)."""
    imgs, targets = batches[0]
    size, batch, cuda = imgs.shape[-1], imgs.shape[0], t.device.type == "cuda"
    eager = time_steps(t, RowResult(name, size, batch, 0, 0), itertools.cycle(batches), warmup, steps)
    eager_loss = train_step_loss(t, imgs, targets)
    if progress is not None:
        progress({"model": name, "backend": backend, "eager_img_s": eager.img_s(), "loss_eager": eager_loss})
    t.model.compile(backend=backend)
    if cuda:
        torch.cuda.synchronize(t.device)
    t0 = time.perf_counter()
    compiled_loss, _, _ = train_step(t, imgs, targets, sync=cuda)
    compile_s = time.perf_counter() - t0
    compiled = time_steps(t, RowResult(name, size, batch, 0, 0), itertools.cycle(batches), warmup, steps)
    return {"model": name, "backend": backend, "batch": batch, "size": size, "amp": next(k for k, v in AMPS.items() if v == t.amp),
            "channels_last": t.channels_last, "eager_img_s": eager.img_s(), "compiled_img_s": compiled.img_s(),
            "speedup": compiled.img_s() / eager.img_s(), "first_compiled_step_s": compile_s,
            "eager_peak_mem_mib": eager.mem_mib, "compiled_peak_mem_mib": compiled.mem_mib,
            "loss_eager": eager_loss, "loss_compiled": compiled_loss,
            "loss_rel_diff": abs(compiled_loss - eager_loss) / max(abs(eager_loss), 1e-12)}


def train_step_loss(t: Trainee, imgs: torch.Tensor, targets: torch.Tensor) -> float:
    """The training-mode loss of one batch without a step (BN uses batch statistics either way)."""
    from utils.eval.evaluate import preprocess
    from utils.train.loop import autocast
    x = preprocess(imgs, t.device)
    if t.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast(t.device, t.amp):
        preds = t.model(x)
    loss, _ = t.criterion([p.float() for p in preds], targets.to(t.device))
    return float(loss)
