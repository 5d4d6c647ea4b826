"""Whether a run keeps its decoded images in RAM (``--cache auto | ram | off``).

Decoding dominates the loader's per-image work on small images: for the main job (400 + 100 PNGs
at 160 px) one training pass of the loader took 0.81-1.04 s decoding from disk and 0.31-0.42 s from
RAM (Intel 2-core VM, 2026-12-02, benchmarks/RESULTS.md "The main job"), the same batches bit for
bit. ``auto`` (the default) caches when the resized images of the training and validation splits,
in every process, take at most :data:`AUTO_MAX_BYTES` and :data:`AUTO_MAX_SHARE` of the memory
available now; a COCO-sized set stays on disk. ``ram`` always caches, ``off`` never does.
"""
from __future__ import annotations

import os
from typing import Iterable, Optional

from utils.data.loader import resized_shape

AUTO_MAX_BYTES = 1 << 30      # 1 GiB: ~9,000 images at 320 px, ~1,700 at 640
AUTO_MAX_SHARE = 0.1          # of the memory available when the run starts


def cache_bytes(records: Iterable, img_size: int) -> int:
    """Bytes of the decoded 3-channel uint8 images, each resized to long side ``img_size``."""
    total = 0
    for r in records:
        h, w = resized_shape(r.width, r.height, img_size)
        total += h * w * 3
    return total


def available_memory() -> Optional[int]:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def decide_ram_cache(choice: str, need: int, processes: int = 1,
                     available: Optional[int] = None) -> tuple[bool, str]:
    """``(cache?, why)`` for ``--cache choice`` when the images need ``need`` bytes per process."""
    total = need * max(processes, 1)
    size = f"{total / 1e6:.0f} MB" + (f" over {processes} processes" if processes > 1 else "")
    if choice == "ram":
        return True, f"--cache ram: {size} of decoded images"
    if choice == "off":
        return False, "--cache off"
    if available is None:
        return False, f"--cache auto: not caching {size} (the available memory is unknown; --cache ram forces it)"
    limit = min(AUTO_MAX_BYTES, int(AUTO_MAX_SHARE * available))
    if total <= limit:
        return True, (f"--cache auto: caching {size} of decoded images in RAM (limit {limit / 1e6:.0f} MB: "
                      f"1 GiB and {AUTO_MAX_SHARE:.0%} of {available / 1e9:.1f} GB available; --cache off to stop)")
    return False, (f"--cache auto: not caching {size} of decoded images (over {limit / 1e6:.0f} MB: 1 GiB and "
                   f"{AUTO_MAX_SHARE:.0%} of {available / 1e9:.1f} GB available; --cache ram forces it)")
