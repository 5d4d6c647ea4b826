"""Conv+BatchNorm folding for inference."""
from __future__ import annotations

import torch
from torch import nn


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv whose output equals ``bn(conv(x))`` with ``bn`` in eval mode."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    fused = fused.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((b - bn.running_mean) * scale + bn.bias)
    return fused


# attribute pairs whose forward applies the BN directly to the conv output
_NAMED_PAIRS = [("conv", "bn")] + [(f"conv{k}", f"bn{k}") for k in range(1, 5)]


def fuse_conv_bn_pairs(model: nn.Module) -> int:
    """Fold BN into the preceding conv wherever the pairing is structural.

    Two patterns are recognised: attribute pairs ``conv``/``bn`` and ``convK``/``bnK`` (Conv,
    ResNet and MobileNet blocks), and a ``Conv2d`` immediately followed by a ``BatchNorm2d`` inside
    an ``nn.Sequential`` (torchvision-layout blocks, projection shortcuts). The BN is replaced by
    ``nn.Identity``. Returns the number of pairs fused.
    """
    count = 0
    for module in list(model.modules()):
        for conv_name, bn_name in _NAMED_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn(conv, bn))
                setattr(module, bn_name, nn.Identity())
                count += 1
        if isinstance(module, nn.Sequential):
            keys = list(module._modules)
            for a, b in zip(keys, keys[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[a] = fuse_conv_bn(conv, bn)
                    module._modules[b] = nn.Identity()
                    count += 1
    return count
