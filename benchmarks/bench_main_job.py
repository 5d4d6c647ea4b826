"""Where the main job's wall time goes: train.py's Trainer (the main job's defaults) with timers
around its phases -- imports, build, each epoch's training pass and validation (or, on an epoch not
validated, the one-batch divergence check), checkpoints.

    .venv/bin/python benchmarks/bench_main_job.py                       # the whole main job, seed 0
    .venv/bin/python benchmarks/bench_main_job.py --epochs 6 --amp bf16 # a variant, a few epochs
    .venv/bin/python benchmarks/bench_main_job.py --epochs 6 --workers 1
    .venv/bin/python benchmarks/bench_main_job.py --epochs 6 --loader-thread
    .venv/bin/python benchmarks/bench_main_job.py --val-interval 1     # what each epoch's validation costs

Prints one JSON line: seconds per phase, per-epoch lists, one extra pass of the training loader
alone (``loader_pass_s``, after training), torch threads, the final mAP@0.5, and the fp32 matmul
probe before and after (machine_probe.matmul_probe, 2 threads). Time it on a quiet machine only,
and compare variants as ratios within one session. ``--loader-thread`` runs the training loader in a
background thread, a batch or two ahead of the model (measured: slower on 2 cores, see RESULTS.md).
"""
from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import queue  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402


class ThreadPrefetch:
    """Iterate ``loader`` in a background thread, ``depth`` batches ahead (keeps ``sampler``/``len``)."""

    def __init__(self, loader, depth: int = 2):
        self.loader, self.depth, self.sampler, self.dataset = loader, depth, loader.sampler, loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        q: queue.Queue = queue.Queue(self.depth)
        end = object()

        def work():
            for batch in self.loader:
                q.put(batch)
            q.put(end)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        while (batch := q.get()) is not end:
            yield batch
        worker.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the main job's")
    ap.add_argument("--amp", default="auto", choices=("auto", "off", "fp16", "bf16"))
    ap.add_argument("--workers", type=int, default=None, help="default: the Trainer's (0 on 2 cores)")
    ap.add_argument("--loader-thread", action="store_true", help="prefetch training batches in a thread")
    ap.add_argument("--val-interval", type=int, default=None,
                    help="validate every Nth epoch and the last (default: the main job's; 1 times every epoch's)")
    ap.add_argument("--project", default="runs/bench_main_job")
    a = ap.parse_args(argv)

    import torch
    import utils.train.trainer as trainer_module
    from machine_probe import matmul_probe
    from utils.config import ConfigError
    from utils.train.options import TrainOptions

    times: dict[str, list[float]] = {"train": [], "val": [], "check": [], "ckpt": []}

    def timed(name, f):
        def wrapper(*args, **kw):
            t = time.perf_counter()
            out = f(*args, **kw)
            times[name].append(time.perf_counter() - t)
            return out
        return wrapper

    trainer_module.train_one_epoch = timed("train", trainer_module.train_one_epoch)
    trainer_module.evaluate = timed("val", trainer_module.evaluate)
    trainer_module.validation_losses = timed("check", trainer_module.validation_losses)  # unvalidated epochs
    trainer_module.save_checkpoint = timed("ckpt", trainer_module.save_checkpoint)
    t_imports = time.perf_counter()
    probe_before = matmul_probe(threads=2)
    t0 = time.perf_counter()
    extra = {k: v for k, v in (("epochs", a.epochs), ("val_interval", a.val_interval)) if v is not None}
    try:
        opt = TrainOptions(seed=a.seed, amp=a.amp, workers=a.workers, quiet=True, project=a.project, name="run",
                           exist_ok=True, **extra)
    except ConfigError as e:   # e.g. --workers -1: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    trainer = trainer_module.Trainer(opt)
    if a.loader_thread:
        trainer.train_loader = ThreadPrefetch(trainer.train_loader)
    t_built = time.perf_counter()
    summary = trainer.fit()
    t_end = time.perf_counter()
    t = time.perf_counter()
    for _ in trainer.train_loader:   # one more pass of the training loader alone: its share of a training pass
        pass
    loader_pass = time.perf_counter() - t
    out = {"imports_s": t_imports - T_START, "build_s": t_built - t0, "fit_s": t_end - t_built,
           **{f"{k}_s": sum(v) for k, v in times.items()}}
    out["other_s"] = out["fit_s"] - out["train_s"] - out["val_s"] - out["check_s"] - out["ckpt_s"]
    out["total_s"] = out["imports_s"] + out["build_s"] + out["fit_s"]   # the probe's seconds left out
    out["loader_pass_s"] = loader_pass
    out = {k: round(v, 2) for k, v in out.items()}
    out.update(train_epoch_s=[round(v, 2) for v in times["train"]], val_epoch_s=[round(v, 2) for v in times["val"]],
               threads=torch.get_num_threads(), map50=round(summary["map50"], 4), amp=a.amp,
               workers=trainer.opt.workers, loader_thread=a.loader_thread, val_interval=trainer.opt.val_interval,
               probe_gflops=[round(probe_before), round(matmul_probe(threads=2))], torch=torch.__version__)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
