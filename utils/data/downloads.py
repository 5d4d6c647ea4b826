"""A dataset YAML's ``download`` entry: run only with the user's consent, never inside this process.

Consent (:func:`may_download`): ``train.py --download``, or a yes typed at an interactive prompt
that shows the absolute script path or URL. A non-interactive run without the flag never runs
anything. The one exception is :data:`PROJECT_GENERATORS`: scripts shipped with this code that
only generate files under the dataset root, with no network (``make_shapes.py``, the default
dataset of ``python train.py``, and ``make_shapes_cls.py``, its classification crops).

What runs (:func:`run_download`):

* ``http(s)://...``: fetched into the dataset root; a zip/tar is unpacked there (a single top
  folder named like the root is stripped) after every member was checked to stay inside it
  (absolute names, ``..``, links and devices are refused); the archive is then deleted.
* ``*.py``: ``python <script> <root>`` in a subprocess (never imported).
* anything else: ``bash <script> <root>``.

Every failure is one :class:`DownloadError` naming the YAML and the entry.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from utils.config import ConfigError

LOGGER = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_GENERATORS = (REPO_ROOT / "data" / "scripts" / "make_shapes.py",
                      REPO_ROOT / "data" / "scripts" / "make_shapes_cls.py")
URL_TIMEOUT_S = 60


class DownloadError(ConfigError):
    """A download entry is refused, missing or failed; the message names the YAML and the entry."""


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def resolve_script(yaml_path: Path, spec: str) -> Path:
    """The script a ``download`` entry names: absolute, or relative to the YAML's folder, the
    repository or the working directory (first found)."""
    p = Path(spec).expanduser()
    candidates = [p] if p.is_absolute() else [yaml_path.resolve().parent / p, REPO_ROOT / p, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise DownloadError(f"{yaml_path}: key 'download': script {spec} not found (looked in "
                        f"{', '.join(str(c.parent) for c in candidates)})")


def describe(yaml_path: Path, spec: str) -> str:
    """What would run, with the absolute path: ``script /abs/get.sh`` or ``URL https://...``."""
    return f"URL {spec}" if is_url(spec) else f"script {resolve_script(yaml_path, spec)}"


def may_download(yaml_path: Path, spec: str, root: Path, allowed: bool,
                 ask: Callable[[str], str] = input, interactive: bool | None = None) -> bool:
    """Consent to run ``spec``: ``allowed`` (the --download flag), a project generator, or a yes at
    an interactive prompt. Non-interactive without the flag: False, nothing asked."""
    if allowed:
        return True
    if not is_url(spec) and resolve_script(yaml_path, spec) in PROJECT_GENERATORS:
        return True
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        return False
    try:
        answer = ask(f"{yaml_path}: dataset {root} not found. Run its download entry, {describe(yaml_path, spec)}? "
                     f"[y/N] ")
    except (EOFError, KeyboardInterrupt):
        return False
    return answer.strip().lower() in ("y", "yes")


def run_download(yaml_path: Path, spec: str, root: Path) -> None:
    """Run one ``download`` entry for dataset ``root`` (see module docstring); DownloadError on failure."""
    if is_url(spec):
        fetch_url(yaml_path, spec, root)
        return
    script = resolve_script(yaml_path, spec)
    cmd = [sys.executable, str(script), str(root)] if script.suffix == ".py" else ["bash", str(script), str(root)]
    LOGGER.info("running %s", " ".join(cmd))
    try:
        subprocess.run(cmd, check=True)
    except subprocess.CalledProcessError as e:
        raise DownloadError(f"{yaml_path}: key 'download': {script} exited with status {e.returncode} "
                            f"(see its output above)") from None
    except OSError as e:
        raise DownloadError(f"{yaml_path}: key 'download': cannot run {cmd[0]} {script}: {e}") from None


def fetch_url(yaml_path: Path, url: str, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    target = root / (PurePosixPath(url.split("?")[0].rstrip("/")).name or "download")
    LOGGER.info("downloading %s -> %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as r, open(target, "wb") as f:  # noqa: S310
            shutil.copyfileobj(r, f)
    except (urllib.error.URLError, OSError, ValueError) as e:
        target.unlink(missing_ok=True)
        raise DownloadError(f"{yaml_path}: key 'download': cannot fetch {url}: {getattr(e, 'reason', e)}") from None
    if zipfile.is_zipfile(target) or tarfile.is_tarfile(target):
        try:
            extract_inside(target, root)
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, DownloadError) as e:
            raise DownloadError(f"{yaml_path}: key 'download': cannot unpack {target}: {e}") from None
        finally:
            target.unlink(missing_ok=True)


def _member_target(root: Path, name: str, strip: str | None) -> Path | None:
    """Where member ``name`` goes under ``root``; None for the stripped top folder itself;
    DownloadError when it would leave ``root``."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise DownloadError(f"archive member {name!r} would be written outside {root}; refusing the archive")
    if strip and parts[0] == strip:
        parts = parts[1:]
    return root.joinpath(*parts) if parts else None


def _top_folder(names: list[str], root: Path) -> str | None:
    tops = {PurePosixPath(n.replace("\\", "/")).parts[0] for n in names if n.strip("/")}
    return root.name if tops == {root.name} else None


def extract_inside(archive: Path, root: Path) -> list[Path]:
    """Unpack a zip or tar into ``root`` after checking EVERY member first (no partial writes of a
    hostile archive). Regular files and folders only; returns the files written."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            return _unpack(root, z.infolist(), lambda i: i.filename, lambda i: i.is_dir(), z.open)
    with tarfile.open(archive) as t:
        return _unpack(root, t.getmembers(), lambda m: m.name, lambda m: m.isdir(), t.extractfile,
                       regular=lambda m: m.isfile() or m.isdir())


def _unpack(root: Path, members: list, name: Callable[[Any], str], is_dir: Callable[[Any], bool],
            open_member: Callable[[Any], Any], regular: Callable[[Any], bool] = lambda m: True) -> list[Path]:
    """The members' targets are checked (inside ``root``, and ``regular``) before the first write."""
    strip = _top_folder([name(m) for m in members], root)
    plan = [(m, _member_target(root, name(m), strip)) for m in members]
    for m, _ in plan:
        if not regular(m):
            raise DownloadError(f"archive member {name(m)!r} is a link or device; refusing the archive")
    written = []
    for m, dest in plan:
        if dest is None or is_dir(m):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open_member(m) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
        written.append(dest)
    return written
