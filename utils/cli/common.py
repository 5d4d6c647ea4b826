"""What every command line (train.py, test.py, detect.py, export.py) does the same way: logging to
the terminal, the exit code of a run, the ``--half`` fallback, the image size rounded up to the
model stride, and the flag groups that detect.py and test.py share."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from utils.cli.checks import float_in, int_at_least
from utils.config import ConfigError

if TYPE_CHECKING:  # torch loads only when a run needs it: --help and flag errors stay quick
    import torch

LOGGER = logging.getLogger(__name__)
Failure = tuple[type[BaseException], str, int]  # exception kind, message prefix, exit code


def log_to_terminal() -> None:
    """INFO and up on stderr, the message alone (no level, no logger name)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def exit_code(call: Callable[[], object], *, errors: Sequence[type[BaseException]] = (ConfigError,),
              failures: Sequence[Failure] = (), done: Sequence[type[BaseException]] = (),
              interrupted: str | None = None) -> int:
    """Run ``call()`` and turn its outcome into a process exit code.

    * returns normally: 0 (what it returns is ignored);
    * raises one of ``errors``: ``error: <message>`` on stderr, 2 (bad input, told in one line);
    * raises ``kind`` of a ``(kind, prefix, code)`` in ``failures``: ``<prefix><message>`` on stderr,
      ``code`` (checked first, in order);
    * raises one of ``done`` (a run with nothing left to do): ``<message>`` on stdout, 0;
    * Ctrl-C: ``interrupted: <hint>`` on stderr, 130 when a hint is given; otherwise it propagates.
    """
    try:
        call()
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    except Exception as e:  # re-raised below unless it is one of the kinds named
        for kind, prefix, code in failures:
            if isinstance(e, kind):
                print(f"{prefix}{e}", file=sys.stderr)
                return code
        if isinstance(e, tuple(errors)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, tuple(done)):
            print(e)
            return 0
        raise
    return 0


def fp16_on(device: torch.device, half: bool) -> bool:
    """``--half`` is honoured on CUDA only; elsewhere a warning and FP32."""
    if half and device.type != "cuda":
        LOGGER.warning("warning: --half needs CUDA; running FP32 on %s", device)
        return False
    return half


def round_up(size: int, stride: int) -> int:
    """The smallest multiple of ``stride`` that is ``>= size`` (``round_up(100, 32) == 128``)."""
    return -(-size // stride) * stride


def img_size_for(img_size: int, stride: int) -> int:
    """``--img-size`` rounded up to a multiple of the model ``stride``, with a warning when it changes."""
    size = round_up(img_size, stride)
    if size != img_size:
        LOGGER.warning("warning: --img-size %d is not a multiple of the stride %d; using %d", img_size, stride, size)
    return size


def add_nms_flags(ap: argparse.ArgumentParser, conf_thres: float, iou_thres: float, kinds: Sequence[str]) -> None:
    """--conf-thres, --iou-thres, --nms, --max-det and --augment: how predictions become detections."""
    ap.add_argument("--conf-thres", type=float_in(0, 1), default=conf_thres, help="score threshold (obj x class)")
    ap.add_argument("--iou-thres", type=float_in(0, 1), default=iou_thres, help="NMS IoU threshold")
    ap.add_argument("--nms", choices=tuple(kinds), default="nms", help="suppression rule")
    ap.add_argument("--max-det", type=int_at_least(1), default=300, help="detections per image at most")
    ap.add_argument("--augment", action="store_true", help="test-time augmentation: scales 1/0.83/0.67, one flipped")


def add_device_flags(ap: argparse.ArgumentParser) -> None:
    """--device (CPU by default) and --half."""
    ap.add_argument("--device", default="cpu", help="cpu, 0 or cuda:0")
    ap.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")


def add_run_dir_flags(ap: argparse.ArgumentParser, project: str) -> None:
    """--project, --name and --exist-ok: where the run folder goes (``project/name``, numbered)."""
    ap.add_argument("--project", default=project, help="parent folder of the run folders")
    ap.add_argument("--name", default="exp", help="run folder name (numbered when it exists)")
    ap.add_argument("--exist-ok", action="store_true", help="reuse --project/--name as is")
