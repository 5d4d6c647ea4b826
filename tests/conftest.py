"""Test-wide settings: one torch thread (2-core CI; parallel subprocesses and loader workers
otherwise oversubscribe the cores and OpenMP spin-waiting makes everything many times slower)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
