"""The Barlow Twins image augmentations, applied to a whole batch on its device.

Every image of the batch gets its own random parameters. Inputs are float images in [0, 1] of shape
``(N, 3, H, W)`` (all the same size, as the loaders deliver them); outputs are normalized with the ImageNet mean
and standard deviation. The two views follow the paper (Zbontar et al., 2021, appendix):

========================  =======  =======
transformation            view 1   view 2
========================  =======  =======
random resized crop       1.0      1.0      scale (0.08, 1), ratio (3/4, 4/3), bilinear
horizontal flip           0.5      0.5
colour jitter             0.8      0.8      brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1
grayscale                 0.2      0.2
Gaussian blur             1.0      0.1      σ ∈ (0.1, 2), kernel 10% of the output size (odd)
solarization              0.0      0.2      inverts pixels ≥ 0.5
========================  =======  =======

Differences from the PIL pipeline: the crop is resampled bilinearly without antialiasing, and the four colour
jitter operations run in one random order per batch rather than per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ViewConfig:
    """Probabilities of the random transformations of one view."""

    blur: float
    solarize: float
    flip: float = 0.5
    color_jitter: float = 0.8
    grayscale: float = 0.2
    crop_scale: tuple[float, float] = (0.08, 1.0)


VIEW1 = ViewConfig(blur=1.0, solarize=0.0)
VIEW2 = ViewConfig(blur=0.1, solarize=0.2)


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def _chosen(n: int, probability: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) < probability


def random_resized_crop(
    images: torch.Tensor,
    size: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_probability: float = 0.0,
) -> torch.Tensor:
    """Crop a random region of each image (area share in ``scale``, aspect ratio in ``ratio``), resize it to
    ``size × size`` and mirror it horizontally with probability ``flip_probability``.

    As torchvision does, up to 10 draws are made per image; an image with no valid draw keeps its last one,
    clipped to the image.
    """
    n, device = images.shape[0], images.device
    width = torch.ones(n, device=device)
    height = torch.ones(n, device=device)
    pending = torch.ones(n, dtype=torch.bool, device=device)
    for _ in range(10):
        area = _uniform(n, *scale, device)
        log_ratio = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), device)
        w = torch.sqrt(area * torch.exp(log_ratio))
        h = torch.sqrt(area / torch.exp(log_ratio))
        take = pending & (w <= 1) & (h <= 1)
        width = torch.where(take, w, width)
        height = torch.where(take, h, height)
        pending &= ~take
    width, height = width.clamp(max=1.0), height.clamp(max=1.0)
    # Normalized coordinates span [-1, 1]: the crop's half-sides are width and height, its centre moves freely
    # as long as the crop stays inside.
    center_x = (torch.rand(n, device=device) * 2 - 1) * (1 - width)
    center_y = (torch.rand(n, device=device) * 2 - 1) * (1 - height)
    mirror = torch.where(_chosen(n, flip_probability, device), -1.0, 1.0)
    zero = torch.zeros(n, device=device)
    theta = torch.stack([torch.stack([width * mirror, zero, center_x], 1), torch.stack([zero, height, center_y], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, shape ``(N, 1, H, W)``."""
    weights = torch.tensor(LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] to HSV in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = images.unbind(1)
    value, argmax = images.max(1)
    minimum = images.min(1).values
    delta = value - minimum
    saturation = torch.where(value > 0, delta / value.clamp(min=1e-12), torch.zeros_like(value))
    safe = delta.clamp(min=1e-12)
    hue = torch.stack([((g - b) / safe) % 6, (b - r) / safe + 2, (r - g) / safe + 4], 1)
    hue = hue.gather(1, argmax.unsqueeze(1)).squeeze(1) / 6
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    return torch.stack([hue, saturation, value], 1)


def hsv_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] back to RGB in [0, 1]."""
    hue, saturation, value = images.unbind(1)
    k = (
        torch.tensor([5.0, 3.0, 1.0], device=images.device, dtype=images.dtype).view(1, 3, 1, 1) + hue.unsqueeze(1) * 6
    ) % 6
    weight = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return value.unsqueeze(1) - (value * saturation).unsqueeze(1) * weight


def color_jitter(
    images: torch.Tensor,
    *,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue changes, one factor per image, in a random order."""
    n, device = images.shape[0], images.device

    def factor(strength: float) -> torch.Tensor:
        return _uniform(n, 1 - strength, 1 + strength, device).view(n, 1, 1, 1)

    def adjust_brightness(x: torch.Tensor) -> torch.Tensor:
        return (x * factor(brightness)).clamp(0, 1)

    def adjust_contrast(x: torch.Tensor) -> torch.Tensor:
        mean = grayscale(x).mean((1, 2, 3), keepdim=True)
        return (mean + (x - mean) * factor(contrast)).clamp(0, 1)

    def adjust_saturation(x: torch.Tensor) -> torch.Tensor:
        gray = grayscale(x)
        return (gray + (x - gray) * factor(saturation)).clamp(0, 1)

    def adjust_hue(x: torch.Tensor) -> torch.Tensor:
        hsv = rgb_to_hsv(x)
        shift = _uniform(n, -hue, hue, device).view(n, 1, 1)
        hsv = torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
        return hsv_to_rgb(hsv)

    operations = [adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue]
    for index in torch.randperm(4).tolist():
        images = operations[index](images)
    return images


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each image with its own σ (``sigma`` of shape ``(N,)``), separable, reflection padding."""
    n, c, h, w = images.shape
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1).to(images.dtype)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N·C, k)
    x = images.reshape(1, n * c, h, w)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    x = F.conv2d(x, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return x.view(n, c, h, w)


def solarize(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Invert every pixel value at or above ``threshold``."""
    return torch.where(images >= threshold, 1.0 - images, images)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Subtract the ImageNet mean and divide by its standard deviation, per channel."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def _apply_to(images: torch.Tensor, chosen: torch.Tensor, transform) -> torch.Tensor:
    """``transform`` applied to the chosen images only (a boolean mask over the batch)."""
    index = chosen.nonzero().squeeze(1)
    if index.numel() == 0:
        return images
    images = images.clone()
    images[index] = transform(images[index])
    return images


def blur_kernel_size(size: int) -> int:
    """10% of the image side, made odd (23 for 224, 3 for 32)."""
    return max(3, int(0.1 * size) // 2 * 2 + 1)


def barlow_twins_view(images: torch.Tensor, size: int, config: ViewConfig) -> torch.Tensor:
    """One augmented, normalized view of a batch of float images in [0, 1]."""
    n, device = images.shape[0], images.device
    x = random_resized_crop(images, size, scale=config.crop_scale, flip_probability=config.flip)
    x = _apply_to(x, _chosen(n, config.color_jitter, device), color_jitter)
    x = _apply_to(x, _chosen(n, config.grayscale, device), lambda v: grayscale(v).expand_as(v))
    kernel_size = blur_kernel_size(size)
    x = _apply_to(
        x,
        _chosen(n, config.blur, device),
        lambda v: gaussian_blur(v, _uniform(v.shape[0], 0.1, 2.0, device), kernel_size),
    )
    x = _apply_to(x, _chosen(n, config.solarize, device), solarize)
    return normalize(x)


def two_views(images: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two asymmetric Barlow Twins views of a batch (uint8 or float in [0, 1])."""
    images = to_unit_float(images)
    return barlow_twins_view(images, size, VIEW1), barlow_twins_view(images, size, VIEW2)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [0, 1]; float images are returned as they are."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def train_view(images: torch.Tensor, size: int) -> torch.Tensor:
    """Linear-evaluation training view: random resized crop and horizontal flip, normalized."""
    return normalize(random_resized_crop(to_unit_float(images), size, flip_probability=0.5))


def eval_view(images: torch.Tensor, size: int, crop_fraction: float = 1.0) -> torch.Tensor:
    """Evaluation view: central crop of ``crop_fraction`` of the side (224/256 for ImageNet), resized to ``size``."""
    images = to_unit_float(images)
    side = images.shape[-1]
    crop = max(1, round(side * crop_fraction))
    start = (side - crop) // 2
    images = images[..., start : start + crop, start : start + crop]
    if crop != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return normalize(images)
