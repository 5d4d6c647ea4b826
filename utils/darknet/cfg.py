"""Darknet ``.cfg`` text <-> sections, with typed option readers whose errors name the file, line and layer.

A cfg is a list of ``[type]`` headers, each followed by ``key=value`` lines; ``#`` and ``;`` start
comments. The first section is ``[net]``; darknet numbers the others from 0 (``layer i`` below).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from utils.config import ConfigError


_REQUIRED = object()  # option default meaning "must be present"


class DarknetError(ConfigError):
    """A darknet cfg or weights file is wrong or cannot be expressed; the message names where."""


@dataclass
class Section:
    """One ``[type]`` block: its options as strings, the line of its header and its layer index."""

    kind: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0
    index: int = -1            # darknet layer index (-1 for [net])
    source: str = "<cfg>"

    def where(self) -> str:
        return f"{self.source}:{self.line}: layer {self.index} [{self.kind}]" if self.index >= 0 \
            else f"{self.source}:{self.line}: [{self.kind}]"

    def fail(self, msg: str) -> None:
        raise DarknetError(f"{self.where()}: {msg}")

    def _raw(self, key: str, default):
        if key in self.options:
            return self.options[key]
        if default is _REQUIRED:
            self.fail(f"missing option '{key}'")
        return None

    def _get_number(self, key: str, default, convert, what: str):
        raw = self._raw(key, default)
        if raw is None:
            return default
        try:
            return convert(raw)
        except ValueError:
            self.fail(f"{key}={raw!r} is not {what}")

    def get_int(self, key: str, default=_REQUIRED) -> int:
        return self._get_number(key, default, int, "an integer")

    def get_float(self, key: str, default=_REQUIRED) -> float:
        return self._get_number(key, default, float, "a number")

    def get_str(self, key: str, default: str | None = None) -> str:
        raw = self._raw(key, default)
        return default if raw is None else raw.strip()

    def get_list(self, key: str, cast=int) -> list:
        raw = self._raw(key, _REQUIRED)
        try:
            return [cast(v) for v in raw.split(",") if v.strip()]
        except ValueError:
            self.fail(f"{key}={raw!r} is not a comma-separated list of {cast.__name__}s")


def parse_cfg_text(text: str, source: str = "<cfg>") -> list[Section]:
    """Sections of a cfg, ``[net]`` first; a key outside any section or a line without '=' is an error."""
    sections: list[Section] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise DarknetError(f"{source}:{n}: malformed section header {line!r}")
            sections.append(Section(line[1:-1].strip().lower(), {}, n, len(sections) - 1, source))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip().replace(" ", "")] = value.strip()
        else:
            raise DarknetError(f"{source}:{n}: expected '[section]' or 'key=value', got {line!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise DarknetError(f"{source}: a darknet cfg starts with a [net] section")
    return sections


def read_cfg(path: str | Path) -> list[Section]:
    path = Path(path)
    if not path.is_file():
        raise DarknetError(f"darknet cfg not found: {path}")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DarknetError(f"{path}: cannot read ({e.strerror})") from None
    return parse_cfg_text(text, str(path))


def sections_to_plain(sections: list[Section]) -> list[list]:
    """``[[kind, {options}], ...]`` (plain data, for the model dict and checkpoints)."""
    return [[s.kind, dict(s.options)] for s in sections]


def sections_from_plain(plain: list[list], source: str = "<model>") -> list[Section]:
    return [Section(kind, dict(opts), 0, i - 1, source) for i, (kind, opts) in enumerate(plain)]


def write_cfg_text(sections: list[Section]) -> str:
    """Cfg text of ``sections`` (options in their stored order)."""
    blocks = []
    for s in sections:
        blocks.append("\n".join([f"[{s.kind}]"] + [f"{k}={v}" for k, v in s.options.items()]))
    return "\n\n".join(blocks) + "\n"
