"""ResNet-18 and ResNet-50 (He et al., 2016) as backbones: the classifier is replaced by the identity.

Defined here so that the recipe needs only ``torch``. The layout is the usual ImageNet one (7×7 stride-2 stem
and max pooling); ``small_images=True`` swaps it for a 3×3 stride-1 stem without pooling, the usual choice for
32×32 images (CIFAR). ``width`` scales every stage (64 is the standard network; tests use 8).
"""

from __future__ import annotations

from torch import Tensor
from torch import nn


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, channels * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1, 3×3 (strided), 1×1 convolutions with a residual connection (ResNet-50 and deeper)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, channels * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))


class ResNet(nn.Module):
    """A ResNet backbone returning the globally pooled features, shape ``(N, out_features)``."""

    def __init__(
        self, block: type[BasicBlock | Bottleneck], layers: list[int], *, width: int = 64, small_images: bool = False
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive number of channels, got {width!r}")
        if small_images:
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages = []
        in_channels = width
        for index, blocks in enumerate(layers):
            channels = width * 2**index
            stride = 1 if index == 0 else 2
            for b in range(blocks):
                stages.append(block(in_channels, channels, stride if b == 0 else 1))
                in_channels = channels * block.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last BatchNorm of every residual branch, so that each block starts as the identity.
        for module in self.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)


def resnet18(*, width: int = 64, small_images: bool = False) -> ResNet:
    """ResNet-18: 512·width/64 features."""
    return ResNet(BasicBlock, [2, 2, 2, 2], width=width, small_images=small_images)


def resnet50(*, width: int = 64, small_images: bool = False) -> ResNet:
    """ResNet-50: 2048·width/64 features."""
    return ResNet(Bottleneck, [3, 4, 6, 3], width=width, small_images=small_images)


ARCHITECTURES = {"resnet18": resnet18, "resnet50": resnet50}


def build_backbone(name: str, *, width: int = 64, small_images: bool = False) -> ResNet:
    """The backbone called ``name`` (``"resnet18"`` or ``"resnet50"``)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {name!r}")
    return ARCHITECTURES[name](width=width, small_images=small_images)
