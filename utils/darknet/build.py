"""Darknet cfg sections -> the model dict of this framework (rows ``[from, n, module, args]``).

Every darknet layer becomes one row of registry modules (``models/darknet_layers.py``), except:

* a ``[route]`` of one layer without groups, ``[dropout]`` and ``[cost]`` add no row: later
  references go to the layer they pass on;
* the 1x1 linear (``new_coords``: logistic) convolution right before each ``[yolo]`` /
  ``[region]`` becomes that level's prediction conv inside the final ``Detect`` row, whose inputs
  are sorted by stride (darknet's yolov3 order P5, P4, P3 becomes P3, P4, P5).

A cfg without ``[yolo]``/``[region]`` is a classifier (``darknet19.cfg``): its rows end with the
last conv, ``GlobalAvgPool`` and ``ChannelSoftmax``. The cfg itself travels in the dict's
``darknet`` key, so weights I/O and export work from a checkpoint alone. :func:`translate` also
returns the convolutions in darknet order with their tensor keys (:class:`ConvSpec`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.darknet_layers import ACTIVATIONS
from utils.darknet.cfg import DarknetError, Section, read_cfg, sections_from_plain, sections_to_plain

SUPPORTED = ("convolutional", "conv", "route", "shortcut", "maxpool", "upsample", "reorg", "yolo",
             "region", "avgpool", "softmax", "cost", "dropout")
# options that change what a layer computes at inference and that this reader does not implement
UNSUPPORTED_OPTIONS = {"dilation": "1", "xnor": "0", "binary": "0", "antialiasing": "0", "deform": "0",
                       "share_index": None, "stride_x": None, "stride_y": None, "maxpool_depth": "0",
                       "weights_type": "none", "reverse": "0", "softmax_tree": None, "tree": None}


@dataclass
class ConvSpec:
    """One darknet convolution: where its tensors live in the model and how many values it stores."""

    layer: int
    line: int
    prefix: str            # conv weight key prefix ("model.7.0" or "model.160.m.2")
    bn_prefix: str | None  # BatchNorm key prefix, None when the conv has a bias
    c_in: int
    filters: int
    size: int
    groups: int

    def n_floats(self) -> int:
        return self.filters * (4 if self.bn_prefix else 1) + self.filters * self.c_in // self.groups * self.size ** 2


@dataclass
class _State:
    rows: list = field(default_factory=list)
    row_of: dict = field(default_factory=dict)     # darknet layer -> row index (None: inside Detect)
    ch: dict = field(default_factory=dict)         # darknet layer -> output channels
    hw: dict = field(default_factory=dict)         # darknet layer -> (h, w) at the cfg's size
    convs: list = field(default_factory=list)      # (ConvSpec with a row prefix or a level placeholder)
    levels: list = field(default_factory=list)     # dicts per [yolo]/[region]


def _check_options(s: Section) -> None:
    for key, ok in UNSUPPORTED_OPTIONS.items():
        if key in s.options and (ok is None or s.options[key].strip().lower() != ok):
            s.fail(f"option {key}={s.options[key]} is not supported by this reader")


def _src(st: _State, s: Section, j: int) -> int:
    """Row index holding darknet layer ``j``'s output, for layer ``s``."""
    if j < 0 or j >= s.index:
        s.fail(f"refers to layer {j}, which is not an earlier layer")
    r = st.row_of[j]
    if r is None:
        s.fail(f"reads layer {j}, a [yolo]/[region] head layer or the conv feeding it, which this reader "
               f"keeps inside the Detect head")
    return r


def _from(st: _State, r: int) -> int:
    return -1 if r == len(st.rows) - 1 else r


def _input(st: _State, s: Section, ch_in: int, hw_in: tuple[int, int]) -> tuple[int, int, tuple[int, int]]:
    """(row of the previous layer or -1 for the image, its channels, its size)."""
    if s.index == 0:
        return -1, ch_in, hw_in
    return _src(st, s, s.index - 1), st.ch[s.index - 1], st.hw[s.index - 1]


def _conv(st: _State, s: Section, secs: list[Section], ch_in: int, hw_in) -> None:
    r_in, c1, (h, w) = _input(st, s, ch_in, hw_in)
    filters, size = s.get_int("filters", 1), s.get_int("size", 1)
    stride, groups = s.get_int("stride", 1), s.get_int("groups", 1)
    pad = size // 2 if s.get_int("pad", 0) else s.get_int("padding", 0)
    bn = bool(s.get_int("batch_normalize", 0))
    act = s.get_str("activation", "logistic")
    if act not in ACTIVATIONS:
        s.fail(f"activation={act} is not supported; supported: {', '.join(sorted(ACTIVATIONS))}")
    if min(filters, size, stride, groups) < 1 or c1 % groups or filters % groups:
        s.fail(f"filters={filters} size={size} stride={stride} groups={groups} do not fit {c1} input channels")
    oh, ow = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
    nxt = secs[s.index + 2] if s.index + 2 < len(secs) else None
    if nxt is not None and nxt.kind in ("yolo", "region"):
        if size != 1 or stride != 1 or groups != 1 or bn:
            s.fail(f"the conv before [{nxt.kind}] must be 1x1, stride 1, no groups, no batch_normalize")
        st.levels.append({"conv": s, "head": nxt, "in_row": r_in, "c_in": c1, "act": act,
                          "stride": hw_in[0] / oh, "filters": filters})
        st.row_of[s.index], st.ch[s.index], st.hw[s.index] = None, filters, (oh, ow)
        return
    st.rows.append([_from(st, r_in), 1, "DarknetConv", [filters, size, stride, pad, groups, bn, {"act": act}]])
    r = len(st.rows) - 1
    st.convs.append(ConvSpec(s.index, s.line, f"model.{r}.0", f"model.{r}.1" if bn else None, c1, filters, size,
                             groups))
    st.row_of[s.index], st.ch[s.index], st.hw[s.index] = r, filters, (oh, ow)


def _route(st: _State, s: Section) -> None:
    layers = [j if j >= 0 else s.index + j for j in s.get_list("layers")]
    groups, gid = s.get_int("groups", 1), s.get_int("group_id", 0)
    if not layers or groups < 1 or not 0 <= gid < groups:
        s.fail(f"needs layers= and 0 <= group_id < groups (got groups={groups} group_id={gid})")
    rows = [_src(st, s, j) for j in layers]
    sizes = {st.hw[j] for j in layers}
    if len(sizes) > 1:
        s.fail(f"concatenates maps of different sizes {sorted(sizes)} (layers {layers})")
    if any(st.ch[j] % groups for j in layers):
        s.fail(f"groups={groups} does not divide the channels {[st.ch[j] for j in layers]}")
    st.ch[s.index], st.hw[s.index] = sum(st.ch[j] // groups for j in layers), st.hw[layers[0]]
    if len(rows) == 1 and groups == 1:
        st.row_of[s.index] = rows[0]
        return
    st.rows.append([[_from(st, r) if len(rows) == 1 else r for r in rows], 1, "Route", [groups, gid]])
    st.row_of[s.index] = len(st.rows) - 1


def _shortcut(st: _State, s: Section, ch_in: int, hw_in) -> None:
    r_in, c1, hw = _input(st, s, ch_in, hw_in)
    others = [j if j >= 0 else s.index + j for j in s.get_list("from")]
    act = s.get_str("activation", "linear")
    if act not in ACTIVATIONS:
        s.fail(f"activation={act} is not supported; supported: {', '.join(sorted(ACTIVATIONS))}")
    rows = [_src(st, s, j) for j in others]
    if any(st.ch[j] != c1 or st.hw[j] != hw for j in others):
        s.fail(f"adds maps of different shapes ({c1}x{hw} and {[(st.ch[j], st.hw[j]) for j in others]})")
    st.rows.append([[r_in, *rows], 1, "Shortcut", [act]])
    st.row_of[s.index], st.ch[s.index], st.hw[s.index] = len(st.rows) - 1, c1, hw


def _simple(st: _State, s: Section, ch_in: int, hw_in) -> None:
    """maxpool, upsample, reorg, avgpool, softmax, dropout, cost."""
    r_in, c, (h, w) = _input(st, s, ch_in, hw_in)
    if s.kind in ("dropout", "cost"):
        st.row_of[s.index], st.ch[s.index], st.hw[s.index] = st.row_of.get(s.index - 1, r_in), c, (h, w)
        return
    if s.kind == "maxpool":
        stride = s.get_int("stride", 1)
        size = s.get_int("size", stride)
        pad = s.get_int("padding", size - 1)
        row, c2, hw = ["DarknetMaxPool", [size, stride, pad]], c, ((h + pad - size) // stride + 1,
                                                                    (w + pad - size) // stride + 1)
    elif s.kind == "upsample":
        stride = s.get_int("stride", 2)
        if stride < 1:
            s.fail(f"stride={stride}: only upsampling (stride >= 1) is supported")
        row, c2, hw = ["DarknetUpsample", [stride, s.get_float("scale", 1.0)]], c, (h * stride, w * stride)
    elif s.kind == "reorg":
        k = s.get_int("stride", 1)
        if k < 1 or c % (k * k) or h % k or w % k:
            s.fail(f"stride={k} does not divide {c} channels and size {h}x{w}")
        row, c2, hw = ["DarknetReorg", [k]], c * k * k, (h // k, w // k)
    elif s.kind == "avgpool":
        row, c2, hw = ["GlobalAvgPool", []], c, (1, 1)
    else:  # softmax
        if s.get_int("groups", 1) != 1 or s.get_float("temperature", 1.0) != 1.0:
            s.fail("only groups=1, temperature=1 is supported")
        row, c2, hw = ["ChannelSoftmax", []], c, (h, w)
    st.rows.append([_from(st, r_in), 1, *row])
    st.row_of[s.index], st.ch[s.index], st.hw[s.index] = len(st.rows) - 1, c2, hw


def _level(lv: dict) -> dict:
    """Anchors (input pixels), classes, decode and scale_x_y of one [yolo]/[region] level."""
    s, conv = lv["head"], lv["conv"]
    classes, num = s.get_int("classes", 20), s.get_int("num", 1)
    anchors = s.get_list("anchors", float) if "anchors" in s.options else []
    if len(anchors) != 2 * num:
        s.fail(f"has {len(anchors) // 2} anchor pairs for num={num}")
    pairs = [anchors[2 * k:2 * k + 2] for k in range(num)]
    if s.kind == "region":
        if s.get_int("coords", 4) != 4 or not s.get_int("softmax", 0):
            s.fail("only coords=4 with softmax=1 is supported")
        if lv["act"] != "linear":
            s.fail(f"the conv before [region] must be linear, got activation={lv['act']}")
        picked, decode, sxy = [[a * lv["stride"] for a in p] for p in pairs], "region", 1.0
    else:
        mask = s.get_list("mask") if "mask" in s.options else list(range(num))
        if any(not 0 <= m < num for m in mask):
            s.fail(f"mask {mask} indexes beyond num={num} anchors")
        new_coords = bool(s.get_int("new_coords", 0))
        if lv["act"] != ("logistic" if new_coords else "linear"):
            s.fail(f"the conv before [yolo] must be {'logistic' if new_coords else 'linear'} with "
                   f"new_coords={int(new_coords)}, got activation={lv['act']}")
        picked, decode, sxy = [pairs[m] for m in mask], ("scaled" if new_coords else "exp"), \
            s.get_float("scale_x_y", 1.0)
    if lv["filters"] != len(picked) * (classes + 5):
        conv.fail(f"filters={lv['filters']} but the next [{s.kind}] needs {len(picked)} x (classes {classes} + 5)")
    return {"anchors": [v for p in picked for v in p], "nc": classes, "decode": decode, "scale_xy": sxy}


def _detect_row(st: _State, source: str) -> tuple[list, int, list[list[float]]]:
    order = sorted(range(len(st.levels)), key=lambda k: st.levels[k]["stride"])
    info = [_level(st.levels[k]) for k in order]
    if len({(d["nc"], d["decode"], len(d["anchors"])) for d in info}) > 1:
        raise DarknetError(f"{source}: the [yolo]/[region] layers differ in classes, decoding or anchor "
                           f"count ({[(d['nc'], d['decode'], len(d['anchors']) // 2) for d in info]})")
    det = len(st.rows)
    for pos, k in enumerate(order):
        lv = st.levels[k]
        st.convs.append(ConvSpec(lv["conv"].index, lv["conv"].line, f"model.{det}.m.{pos}", None, lv["c_in"],
                                 lv["filters"], 1, 1))
    st.convs.sort(key=lambda c: c.layer)
    explicit = info[0]["decode"] == "scaled" or any(d["scale_xy"] != 1 for d in info)
    kwargs = {"scale_xy": [d["scale_xy"] for d in info]} if explicit else {}
    args = ["nc", "anchors", info[0]["decode"]] + ([kwargs] if kwargs else [])
    row = [[st.levels[k]["in_row"] for k in order], 1, "Detect", args]
    return row, info[0]["nc"], [d["anchors"] for d in info]


def _net(s: Section) -> tuple[int, int, int]:
    w, h, c = s.get_int("width", 416), s.get_int("height", 416), s.get_int("channels", 3)
    if c != 3:
        s.fail(f"channels={c}: this framework reads RGB images (channels=3)")
    if w < 1 or h < 1:
        s.fail(f"width={w} height={h} must be positive")
    return w, h, c


def translate(sections: list[Section]) -> tuple[dict[str, Any], list[ConvSpec]]:
    """``(model dict, convolutions in darknet order)`` of a parsed cfg."""
    source = sections[0].source
    w, h, c = _net(sections[0])
    st = _State()
    for s in sections[1:]:
        if s.kind not in SUPPORTED:
            s.fail(f"unknown section [{s.kind}]; supported: {', '.join('[' + k + ']' for k in SUPPORTED)}")
        _check_options(s)
        if s.kind in ("convolutional", "conv"):
            _conv(st, s, sections, c, (h, w))
        elif s.kind == "route":
            _route(st, s)
        elif s.kind == "shortcut":
            _shortcut(st, s, c, (h, w))
        elif s.kind in ("yolo", "region"):
            prev = sections[s.index]  # the section before this one
            if not st.levels or st.levels[-1]["head"] is not s:
                s.fail(f"must follow a [convolutional] layer, not [{prev.kind}]")
            st.row_of[s.index], st.ch[s.index], st.hw[s.index] = None, st.ch[s.index - 1], st.hw[s.index - 1]
        else:
            _simple(st, s, c, (h, w))
    if not st.rows:
        raise DarknetError(f"{source}: the cfg has no layers")
    model: dict[str, Any] = {"source": source, "depth_multiple": 1.0, "width_multiple": 1.0,
                             "activation": "leaky"}
    if st.levels:
        row, nc, anchors = _detect_row(st, source)
        model.update(nc=nc, anchors=anchors, backbone=st.rows, head=[row])
    else:
        model.update(nc=st.ch[len(sections) - 2], backbone=st.rows[:-1], head=st.rows[-1:])
    model["darknet"] = {"sections": sections_to_plain(sections), "classifier": not st.levels,
                        "rows": [st.row_of[i] for i in range(len(sections) - 1)]}  # layer -> row (None: in Detect)
    return model, st.convs


def cfg_to_model_dict(path: str | Path) -> dict[str, Any]:
    """A darknet cfg file -> model dict for :class:`models.yolo.Model` (``train.py --cfg x.cfg``)."""
    return translate(read_cfg(path))[0]


def model_dict_convs(model_cfg: dict[str, Any]) -> list[ConvSpec]:
    """The darknet convolutions of a model dict made by :func:`translate` (e.g. from a checkpoint)."""
    dn = model_cfg.get("darknet")
    if not isinstance(dn, dict) or "sections" not in dn:
        raise DarknetError(f"{model_cfg.get('source', '<model>')}: not a model imported from a darknet cfg")
    return translate(sections_from_plain(dn["sections"], str(model_cfg.get("source", "<model>"))))[1]
