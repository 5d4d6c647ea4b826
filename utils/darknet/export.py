"""A model of this framework -> darknet sections + the convolutions in darknet order (for ``.weights``).

Models imported from a cfg carry their sections (``model.yaml["darknet"]``); they are written back
with the classes, anchors and prediction filters of the model's Detect head (a model retrained on
another class count exports as such). YAML models are translated row by row: ``Conv``,
``DarknetConv``, ``Bottleneck``, ``DarkResidual``, ``CSPStage``, ``Darknet19Block``, ``SPPPool``, ``nn.Upsample``,
``nn.MaxPool2d``, ``DarknetMaxPool``, ``DarknetReorg``, ``Concat`` and the ``Detect`` head (``exp``:
``[yolo]``; ``scaled``: ``[yolo] new_coords=1`` after a logistic conv; ``region``: ``[region]``).
Any other row stops with an error naming it. BatchNorm layers of YAML models keep their own
epsilon (1e-5 in PyTorch vs darknet's 1e-6: < 1e-5 relative for variances above 0.01).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from models import blocks, darknet, darknet_layers
from models.head import Detect
from utils.darknet.build import ConvSpec, translate
from utils.darknet.cfg import DarknetError, Section, sections_from_plain

_ACT_NAMES = [(nn.LeakyReLU, "leaky"), (nn.Mish, "mish"), (nn.SiLU, "swish"), (nn.ReLU, "relu"),
              (nn.Identity, "linear"), (nn.Sigmoid, "logistic"), (nn.Tanh, "tanh")]


class _Writer:
    """Sections being emitted for a YAML model, with the darknet index of every row's output."""

    def __init__(self, model: nn.Module, img_size: int):
        self.model = model
        self.sections = [Section("net", {"batch": "1", "subdivisions": "1", "width": str(img_size),
                                         "height": str(img_size), "channels": "3"})]
        self.convs: list[ConvSpec] = []
        self.out: dict[int, int] = {}       # row -> darknet layer of its output
        self.row = 0
        self.prefix = "model.0"

    @property
    def last(self) -> int:
        return len(self.sections) - 2

    def add(self, kind: str, **opts: Any) -> int:
        self.sections.append(Section(kind, {k: str(v) for k, v in opts.items()}, 0, len(self.sections) - 1))
        return self.last

    def route(self, layers: list[int]) -> int:
        return self.add("route", layers=",".join(str(j) for j in layers))

    def read(self, layer: int) -> None:
        """Make ``layer`` the input of the next section."""
        if layer != self.last:
            self.route([layer])

    def conv(self, conv: nn.Conv2d, key: str, bn: nn.Module | None, act: nn.Module) -> int:
        k, s, p, g = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.groups
        if conv.kernel_size[0] != conv.kernel_size[1] or conv.stride[0] != conv.stride[1] or conv.dilation[0] != 1:
            self.fail(f"conv {key} is not square / has dilation")
        opts = {"batch_normalize": 1} if isinstance(bn, nn.BatchNorm2d) else {}
        opts.update(filters=conv.out_channels, size=k, stride=s, **({"pad": 1} if p == k // 2 and k > 1 else
                                                                      {"padding": p}), groups=g, activation=act_name(act, self))
        if not isinstance(bn, nn.BatchNorm2d) and conv.bias is None:
            self.fail(f"conv {key} has neither BatchNorm nor a bias")
        layer = self.add("convolutional", **opts)
        self.convs.append(ConvSpec(layer, 0, f"{self.prefix}.{key}", None, conv.in_channels, conv.out_channels, k, g))
        return layer

    def fail(self, msg: str) -> None:
        y = self.model.yaml
        rows = list(y.get("backbone", [])) + list(y.get("head", []))
        nb = len(y.get("backbone", []))
        where = f"backbone row {self.row}" if self.row < nb else f"head row {self.row - nb}"
        raise DarknetError(f"{y.get('source', '<model>')}: layer {self.row} ({where}) {rows[self.row]}: {msg}")


def act_name(act: nn.Module, w: _Writer) -> str:
    for cls, name in _ACT_NAMES:
        if isinstance(act, cls) and (cls is not nn.LeakyReLU or abs(act.negative_slope - 0.1) < 1e-12):
            return name
    w.fail(f"activation {act} has no darknet equivalent")
    return ""


def _conv_bn(w: _Writer, m: nn.Module, name: str) -> int:
    """A ``blocks.Conv`` / ``DarknetConv`` submodule ``name`` ('' = the row itself)."""
    pre = f"{name}." if name else ""
    if isinstance(m, darknet_layers.DarknetConv):
        bn = m[1] if isinstance(m[1], nn.BatchNorm2d) else None
        layer = w.conv(m[0], f"{pre}0", bn, m[-1])
        w.convs[-1].bn_prefix = f"{w.prefix}.{pre}1" if bn is not None else None
        return layer
    if isinstance(m, blocks.Conv):
        layer = w.conv(m.conv, f"{pre}conv", m.bn, m.act)
        w.convs[-1].bn_prefix = f"{w.prefix}.{pre}bn"
        return layer
    w.fail(f"{type(m).__name__} {name} has no darknet equivalent")
    return -1


def _residual_units(w: _Writer, units: list[nn.Sequential], key: str, shortcut: bool) -> None:
    """Conv pairs (``key`` formats the unit j / conv q key), each added to its input with ``shortcut``."""
    for j, unit in enumerate(units):
        start = w.last
        for q, conv in enumerate(unit):
            _conv_bn(w, conv, key.format(j=j, q=q))
        if shortcut:
            w.add("shortcut", **{"from": start - (w.last + 1)}, activation="linear")


def _emit_module(w: _Writer, m: nn.Module, src: list[int]) -> None:
    """Sections of one row (its inputs already emitted: darknet layers ``src``)."""
    if isinstance(m, blocks.Concat):
        w.route(src)
        return
    if len(src) != 1:
        w.fail(f"{type(m).__name__} with several inputs has no darknet equivalent")
    w.read(src[0])
    if isinstance(m, (blocks.Conv, darknet_layers.DarknetConv)):
        _conv_bn(w, m, "")
    elif isinstance(m, blocks.Bottleneck):
        start = w.last
        _conv_bn(w, m.cv1, "cv1")
        _conv_bn(w, m.cv2, "cv2")
        if m.add:
            w.add("shortcut", **{"from": start - (w.last + 1)}, activation="linear")
    elif isinstance(m, darknet.DarkResidual):
        _residual_units(w, list(m.units), "units.{j}.{q}", m.shortcut)
    elif isinstance(m, darknet.CSPStage):
        x = _conv_bn(w, m.downsample, "downsample")
        part = _conv_bn(w, m.split0, "split0")
        w.route([x])
        _conv_bn(w, m.split1, "split1")
        units = [u.block for u in m.blocks[:-1]]
        _residual_units(w, units, "blocks.{j}.block.{q}", True)
        _conv_bn(w, m.blocks[-1], f"blocks.{len(units)}")
        w.route([w.last, part])
        _conv_bn(w, m.fuse, "fuse")
    elif isinstance(m, darknet.Darknet19Block):
        for q, layer in enumerate(m.layers):
            if isinstance(layer, nn.MaxPool2d):
                _maxpool(w, layer)
            else:
                _conv_bn(w, layer, f"layers.{q}")
    elif isinstance(m, blocks.SPPPool):
        x, pools = w.last, []
        for pool in m.m:
            w.read(x)
            pools.append(_maxpool(w, pool))
        w.route(pools + [x])
    elif isinstance(m, nn.Upsample) and m.mode == "nearest" and m.size is None and float(m.scale_factor) == int(m.scale_factor):
        w.add("upsample", stride=int(m.scale_factor))
    elif isinstance(m, darknet_layers.DarknetUpsample):
        w.add("upsample", stride=m.stride, **({"scale": m.scale} if m.scale != 1 else {}))
    elif isinstance(m, (nn.MaxPool2d, darknet_layers.DarknetMaxPool)):
        _maxpool(w, m)
    elif isinstance(m, darknet_layers.DarknetReorg):
        w.add("reorg", stride=m.stride)
    else:
        w.fail(f"{type(m).__name__} has no darknet equivalent")


def _maxpool(w: _Writer, m: nn.Module) -> int:
    if isinstance(m, darknet_layers.DarknetMaxPool):
        return w.add("maxpool", size=m.size, stride=m.stride, padding=m.padding)
    k, s, p = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding))
    if m.ceil_mode or m.dilation not in (1, (1, 1)):
        w.fail("nn.MaxPool2d with ceil_mode or dilation has no darknet equivalent")
    return w.add("maxpool", size=k, stride=s, padding=2 * p)


def _fmt(values) -> str:
    return ", ".join(f"{float(v):.9g}" for v in values)


def _floats(t) -> list[float]:
    """Values of a tensor (zeros for a model built on the meta device, used only for its layout)."""
    return [0.0] * t.numel() if t.device.type == "meta" else t.reshape(-1).tolist()


def _emit_head(w: _Writer, det: Detect, level: int, det_row: int) -> None:
    """The prediction conv of one Detect level and its [yolo] / [region] section."""
    w.prefix = f"model.{det_row}"
    w.conv(det.m[level], f"m.{level}", None, nn.Sigmoid() if det.decode == "scaled" else nn.Identity())
    anchors = det.anchors.view(det.nl, det.na, 2)
    if det.decode == "region":
        if det.nl != 1:
            w.fail("a region (YOLOv2) head has one level")
        grid = anchors[0] / (1.0 if det.stride.device.type == "meta" else float(det.stride[0]))
        w.add("region", anchors=_fmt(_floats(grid)), classes=det.nc, coords=4, num=det.na, softmax=1)
        return
    opts = {"mask": ",".join(str(level * det.na + a) for a in range(det.na)),
            "anchors": _fmt(_floats(anchors)), "classes": det.nc, "num": det.nl * det.na}
    if det.decode == "scaled":
        opts["new_coords"] = 1
    if det.scale_xy[level] != 1:
        opts["scale_x_y"] = f"{det.scale_xy[level]:.9g}"
    w.add("yolo", **opts)


def _emission_order(froms: list, feeds: list[int]) -> list[int]:
    """Rows in darknet order: a row read only by Detect, from one earlier row, follows that row
    (yolov4.cfg puts each level's 3x3 conv + [yolo] right after the neck output it reads)."""
    n = len(froms) - 1
    absolute = [[i - 1 if j == -1 else j for j in (f if isinstance(f, list) else [f])] for i, f in enumerate(froms)]
    readers = {i: [r for r in range(n) if i in absolute[r]] for i in range(n)}
    moved = {r: absolute[r][0] for r in feeds if len(absolute[r]) == 1 and not readers[r] and absolute[r][0] < r - 1}
    order: list[int] = []
    for i in range(n):
        if i in moved:
            continue
        order.append(i)
        order += [r for r in sorted(moved) if moved[r] == i]
    return order


def _from_rows(model: nn.Module, img_size: int) -> tuple[list[Section], list[ConvSpec]]:
    w = _Writer(model, img_size)
    det_row = len(model.model) - 1
    det = model.model[-1]
    if not isinstance(det, Detect):
        w.row = det_row
        w.fail(f"{type(det).__name__} has no darknet equivalent")
    feeds = model.froms[-1] if isinstance(model.froms[-1], list) else [model.froms[-1]]
    feeds = [det_row - 1 if j == -1 else j for j in feeds]
    for i in _emission_order(model.froms, feeds):
        m, f = model.model[i], model.froms[i]
        w.row, w.prefix = i, f"model.{i}"
        fs = f if isinstance(f, list) else [f]
        _emit_module(w, m, [(w.out[i - 1] if i else -1) if j == -1 else w.out[j] for j in fs])
        w.out[i] = w.last
        for level, j in enumerate(feeds):
            if j == i:
                w.read(w.out[i])
                _emit_head(w, det, level, det_row)
    return w.sections, w.convs


def _imported(model: nn.Module) -> tuple[list[Section], list[ConvSpec]]:
    """The model's own cfg sections with the Detect head's classes, anchors and filters written in."""
    secs = sections_from_plain(model.yaml["darknet"]["sections"], str(model.yaml.get("source", "<model>")))
    det = getattr(model, "detect", None)
    if det is None:
        return secs, translate(secs)[1]
    heads = []
    for c in translate(secs)[1]:
        if ".m." in c.prefix:
            heads.append((int(c.prefix.rsplit(".", 1)[1]), secs[c.layer + 1], secs[c.layer + 2]))
    anchors = det.anchors.view(det.nl, det.na, 2)
    full = None
    for pos, conv, head in heads:
        conv.options["filters"] = str(det.na * det.no)
        head.options["classes"] = str(det.nc)
        if head.kind == "region":
            head.options["anchors"] = _fmt((anchors[pos] / float(det.stride[pos])).reshape(-1).tolist())
            continue
        full = full or head.get_list("anchors", float)
        mask = head.get_list("mask") if "mask" in head.options else list(range(len(full) // 2))
        for a, m in enumerate(mask):
            full[2 * m:2 * m + 2] = anchors[pos, a].tolist()
    for _, _, head in heads:
        if head.kind == "yolo":
            head.options["anchors"] = _fmt(full)
    return secs, translate(secs)[1]


def export_sections(model: nn.Module, img_size: int = 416) -> tuple[list[Section], list[ConvSpec]]:
    """Darknet sections (``[net]`` first) and convolutions (keys into ``model.state_dict()``)."""
    if isinstance(model.yaml.get("darknet"), dict):
        return _imported(model)
    return _from_rows(model, img_size)
