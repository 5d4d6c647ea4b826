"""Shared by the loss tests: a tiny stand-in for models.yolo.Model and three hand-made targets."""
import torch
from torch import nn

from models.head import Detect

ANCHORS_3 = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
IMG = 64


class TinyNet(nn.Module):
    """Strided convs to strides 8/16/32 (or 8 only) feeding a Detect; stands in for models.yolo.Model."""

    def __init__(self, nc: int = 3, decode: str = "scaled", nl: int = 3):
        super().__init__()
        act = nn.SiLU()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), act, nn.Conv2d(16, 16, 3, 2, 1), act,
                                  nn.Conv2d(16, 16, 3, 2, 1), act)
        self.downs = nn.ModuleList(nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), act) for _ in range(nl - 1))
        self.detect = Detect(nc, ANCHORS_3[:nl], [16] * nl, decode)
        self.detect.stride = torch.tensor([8.0, 16.0, 32.0][:nl])

    def forward(self, x):
        feats = [self.stem(x)]
        for d in self.downs:
            feats.append(d(feats[-1]))
        return self.detect(feats)


def targets() -> torch.Tensor:
    """(image, class, cx, cy, w, h) normalised to the 64 px image: boxes 20x20, 30x14, 40x44 px."""
    return torch.tensor([[0, 0, 0.30, 0.45, 20 / 64, 20 / 64],
                         [0, 2, 0.70, 0.25, 30 / 64, 14 / 64],
                         [1, 1, 0.50, 0.60, 40 / 64, 44 / 64]])


def fit_steps(model: nn.Module, crit, steps: int, lr: float = 1e-2) -> list[dict[str, float]]:
    """``steps`` Adam steps of ``model`` on one fixed batch (2 random images, :func:`targets`); the
    loss items after each step's forward, as floats."""
    imgs, t = torch.rand(2, 3, IMG, IMG), targets()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        loss, items = crit(model(imgs), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({name: v.item() for name, v in items.items()})
    return history
