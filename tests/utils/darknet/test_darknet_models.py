"""The real darknet cfgs of ../shared/darknet/cfg (yolov4, yolov3, yolov2-voc, darknet19, darknet19_448)
with random weights of the exact length, judged by OpenCV's darknet importer; import -> export
byte identity; the seed YAMLs taking darknet weights."""
from pathlib import Path

import numpy as np
import pytest
import torch

from models.yolo import Model
from utils.darknet.build import translate
from utils.darknet.cfg import read_cfg
from utils.darknet.export import export_sections
from utils.darknet.io import import_darknet, weights_checkpoint, write_darknet
from utils.darknet.weights import random_state, write_weights

cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[3]
CFG_DIR = ROOT.parent / "shared" / "darknet" / "cfg"
if not CFG_DIR.is_dir():
    pytest.skip(f"{CFG_DIR} (the darknet cfgs) is absent", allow_module_level=True)
if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
    pytest.skip("OpenCV without the darknet importer (OpenCV 5 removed it; pin opencv<5)", allow_module_level=True)

# input size per cfg: 416 for yolov4 (the detectors' size); smaller where OpenCV agrees, to stay fast
SIZES = {"yolov4": 416, "yolov3": 320, "yolov2-voc": 320, "darknet19": 224, "darknet19_448": 448}
DETECTORS = ("yolov4", "yolov3", "yolov2-voc")
GAIN = 0.6  # keeps the random networks' head logits within a few units (exp() stays finite)


class Case:
    """One cfg with random weights written to disk, our imported model and both networks' outputs."""

    def __init__(self, name: str, folder: Path):
        text = (CFG_DIR / f"{name}.cfg").read_text()
        if name == "yolov2-voc":  # OpenCV zeroes region class scores below `thresh`; compare them all
            text = text.replace("thresh = .6", "thresh = 0")
        self.cfg, self.weights = folder / f"{name}.cfg", folder / f"{name}.weights"
        self.cfg.write_text(text)
        self.convs = translate(read_cfg(self.cfg))[1]
        write_weights(self.weights, random_state(self.convs, seed=0, gain=GAIN), self.convs)
        self.model, self.header = import_darknet(self.cfg, self.weights)
        self.size = SIZES[name]
        self.x = torch.rand(1, 3, self.size, self.size, generator=torch.Generator().manual_seed(1))
        self.feeds = [c for c in self.convs if ".m." in c.prefix]  # the convs feeding [yolo]/[region]
        net = cv2.dnn.readNetFromDarknet(str(self.cfg), str(self.weights))
        net.enableWinograd(False)
        net.setInput(self.x.numpy())
        heads = list(net.getUnconnectedOutLayersNames())
        outs = net.forward([f"conv_{c.layer}" for c in self.feeds] + heads)
        self.ref_conv, self.ref_out = outs[:len(self.feeds)], outs[len(self.feeds):]
        with torch.no_grad():
            self.out = self.model(self.x)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    cache: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name not in cache:  # all five together hold ~1 GB
            cache[name] = Case(name, tmp_path_factory.mktemp(name))
        return cache[name]
    return get


def _close(ours: np.ndarray, ref: np.ndarray, tol: float = 1e-3) -> bool:
    return ours.shape == ref.shape and float(np.abs(ours - ref).max()) <= tol * max(float(np.abs(ref).max()), 1e-6)


def _level(c) -> int:
    return int(c.prefix.rsplit(".", 1)[1])


@pytest.mark.parametrize("name", DETECTORS)
def test_head_convs_equal_opencv(case, name):
    c = case(name)
    raw = c.out[1]
    assert len(c.feeds) == len(raw) == {"yolov4": 3, "yolov3": 3, "yolov2-voc": 1}[name]
    for conv, ref in zip(c.feeds, c.ref_conv):
        ours = raw[_level(conv)]
        ours = ours.permute(0, 1, 4, 2, 3).reshape(ref.shape).numpy()
        assert _close(ours, ref), conv.layer
        assert 0.1 < np.abs(ref).max() < 10  # a meaningful range for sigmoid / exp


@pytest.mark.parametrize("name", DETECTORS)
def test_decoded_boxes_equal_opencv(case, name):
    """Ours (cx, cy, w, h / input size, obj, obj * cls) vs OpenCV's [yolo]/[region] rows (cell-major)."""
    c = case(name)
    pred, raw = c.out
    det = c.model.detect
    starts = np.cumsum([0] + [det.na * r.shape[2] * r.shape[3] for r in raw])
    for conv, ref in zip(c.feeds, c.ref_out):
        k = _level(conv)
        h, w = raw[k].shape[2:4]
        ours = pred[0, starts[k]:starts[k + 1]].view(det.na, h, w, -1).permute(1, 2, 0, 3).reshape(-1, det.no)
        ours = ours.numpy().copy()
        ours[:, :4] /= c.size
        ours[:, 5:] *= ours[:, 4:5]
        assert _close(ours[:, :5], ref[:, :5])
        # OpenCV zeroes [yolo] class scores below 0.2, and [region] scores that its per-class NMS drops
        kept = ref[:, 5:] > 0
        assert kept.mean() > (0.25 if name == "yolov2-voc" else 0.05)
        assert np.abs(np.where(kept, ours[:, 5:], 0) - ref[:, 5:]).max() <= 1e-3 * np.abs(ref[:, 5:]).max()
        if name != "yolov2-voc":
            assert np.all(ours[:, 5:][~kept] <= 0.2 + 1e-5)


@pytest.mark.parametrize("name", ["darknet19", "darknet19_448"])
def test_classifier_probabilities_equal_opencv(case, name):
    c = case(name)
    ref = c.ref_out[0]
    assert ref.size == 1000 and abs(ref.sum() - 1) < 1e-4
    assert _close(c.out.numpy().reshape(ref.shape), ref)
    assert int(c.out.argmax()) == int(ref.argmax())


@pytest.mark.parametrize("name", list(SIZES))
def test_import_export_is_byte_identical(case, name, tmp_path):
    c = case(name)
    cfg, weights = write_darknet(c.model, tmp_path / "back", header=c.header)
    assert weights.read_bytes()[20:] == c.weights.read_bytes()[20:]
    assert translate(read_cfg(cfg))[0]["backbone"] == c.model.yaml["backbone"]


@pytest.mark.parametrize("yaml_name,cfg_name", [("yolov4_csp_darknet53", "yolov4"), ("yolov3", "yolov3"),
                                                ("yolov2", "yolov2-voc")])
def test_seed_yaml_takes_darknet_weights(case, tmp_path, yaml_name, cfg_name):
    """train.py --cfg configs/<yaml> --weights <cfg>.weights: every darknet tensor lands in the YAML
    model (equal outputs); with another class count everything but the prediction convs; the YAML
    model exports to a cfg OpenCV reads to the same outputs."""
    from utils.train.trainer import _transfer_weights
    c = case(cfg_name)
    src = weights_checkpoint(c.weights)["model"]
    yaml_model = Model(ROOT / "configs" / f"{yaml_name}.yaml", nc=c.model.nc)
    own = yaml_model.state_dict()
    kept = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    n_tensors = sum(5 if conv.bn_prefix else 2 for conv in c.convs)
    assert len(kept) == n_tensors
    yaml_model.load_state_dict(kept, strict=False)
    yaml_model.eval()
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, theirs = yaml_model(x)[1], c.model(x)[1]
    for a, b in zip(ours, theirs):  # BN eps 1e-5 (YAML) vs 1e-6 (darknet): far inside the tolerance
        assert _close(a.numpy(), b.numpy())
    cfg, weights = write_darknet(yaml_model, tmp_path / yaml_name, img_size=128)
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.enableWinograd(False)
    net.setInput(x.numpy())
    feeds = [cv for cv in translate(read_cfg(cfg))[1] if ".m." in cv.prefix]
    for conv, ref in zip(feeds, net.forward([f"conv_{cv.layer}" for cv in feeds])):
        assert _close(ours[_level(conv)].permute(0, 1, 4, 2, 3).reshape(ref.shape).numpy(), ref)
    subset = Model(ROOT / "configs" / f"{yaml_name}.yaml", nc=4)
    head_before = subset.detect.m[0].weight.clone()
    _transfer_weights(subset, str(c.weights))
    first_ours = export_sections(subset)[1][0].prefix + ".weight"  # the first conv, in the YAML's keys
    assert torch.equal(subset.state_dict()[first_ours], src[c.convs[0].prefix + ".weight"])
    assert torch.equal(subset.detect.m[0].weight, head_before)
