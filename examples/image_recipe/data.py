"""Data sets for the recipe, read from disk without any download: CIFAR-10, an ImageFolder tree, synthetic.

Every data set yields ``(image, label)`` with ``image`` a ``uint8`` tensor of shape ``(3, S, S)``; all images of a
data set have the same size so that batches can be augmented on the device (:mod:`image_recipe.augment`).

- ``cifar10``: the standard python-format archive unpacked (``cifar-10-batches-py/`` with ``data_batch_1`` ...
  ``data_batch_5`` and ``test_batch``); ``root`` is that folder or its parent. S = 32.
- ``imagefolder``: ``root/<split>/<class>/<image>`` (ImageNet's usual layout, ``split`` is ``train`` or ``val``).
  Each image is decoded with Pillow (an optional dependency, imported only here), its shorter side resized to
  ``load_size`` and the central ``load_size × load_size`` square kept. S = ``load_size``.
- ``synthetic``: random images with a class-dependent colour and stripe pattern, generated from the index, for
  tests and smoke runs. S = ``load_size``.
"""

from __future__ import annotations

import pathlib
import pickle

import torch
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILES = ("test_batch",)


class TensorImages(Dataset):
    """Images held in memory as one ``uint8`` tensor ``(N, 3, S, S)`` with integer labels ``(N,)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 of shape (N, 3, S, S), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images, self.labels, self.num_classes = images, labels.long(), num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def cifar10(root: str | pathlib.Path, split: str = "train") -> TensorImages:
    """CIFAR-10 from its python-format pickle files (``cifar-10-batches-py``), no download."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    folder = pathlib.Path(root)
    if not (folder / "test_batch").exists() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    names = CIFAR_TRAIN_FILES if split == "train" else CIFAR_TEST_FILES
    missing = [name for name in names if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 python files {missing} not found in {folder}; unpack cifar-10-python.tar.gz "
            "(https://www.cs.toronto.edu/~kriz/cifar.html) and pass --data <folder>"
        )
    images, labels = [], []
    for name in names:
        with open(folder / name, "rb") as file:
            batch = pickle.load(file, encoding="bytes")
        images.append(torch.as_tensor(batch[b"data"], dtype=torch.uint8).view(-1, 3, 32, 32))
        labels.append(torch.as_tensor(batch[b"labels"]))
    return TensorImages(torch.cat(images), torch.cat(labels), num_classes=10)


def _require_pillow():
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading an ImageFolder tree needs Pillow: pip install pillow (CIFAR-10 and synthetic data do not)"
        ) from error
    return Image


class ImageFolder(Dataset):
    """``root/<class>/<image>`` files; classes are the sorted sub-folder names."""

    def __init__(self, root: str | pathlib.Path, load_size: int = 256) -> None:
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.samples = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((self.root / name).rglob("*"))
            if path.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not self.samples:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in class folders under {self.root}")
        self.num_classes = len(self.classes)
        self.load_size = load_size
        _require_pillow()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image_module = _require_pillow()
        path, label = self.samples[index]
        with image_module.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            scale = self.load_size / min(width, height)
            new_w, new_h = max(self.load_size, round(width * scale)), max(self.load_size, round(height * scale))
            image = image.resize((new_w, new_h), image_module.Resampling.BILINEAR)
            left, top = (new_w - self.load_size) // 2, (new_h - self.load_size) // 2
            image = image.crop((left, top, left + self.load_size, top + self.load_size))
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return pixels.view(self.load_size, self.load_size, 3).permute(2, 0, 1).contiguous(), label


class SyntheticImages(Dataset):
    """Deterministic random images whose colour and stripe direction depend on the class (learnable)."""

    def __init__(self, size: int = 256, load_size: int = 32, num_classes: int = 10, seed: int = 0) -> None:
        self.size, self.load_size, self.num_classes, self.seed = size, load_size, num_classes, seed
        generator = torch.Generator().manual_seed(seed)
        self.colors = torch.rand(num_classes, 3, 1, 1, generator=generator)
        self.frequencies = torch.randint(1, 5, (num_classes,), generator=generator)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = index % self.num_classes
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        s = self.load_size
        coordinate = torch.arange(s).float() / s
        axis = coordinate.view(1, s) if label % 2 else coordinate.view(s, 1)
        stripes = 0.5 + 0.5 * torch.sin(2 * torch.pi * self.frequencies[label] * axis).expand(s, s)
        noise = torch.rand(3, s, s, generator=generator)
        image = 0.6 * self.colors[label] * stripes + 0.4 * noise
        return (image.clamp(0, 1) * 255).round().to(torch.uint8), label


def build_dataset(name: str, root: str | None, split: str, *, load_size: int, synthetic_size: int = 256) -> Dataset:
    """The ``split`` (``"train"`` or ``"val"``) of the data set ``name``; see the module docstring."""
    if name == "synthetic":
        return SyntheticImages(synthetic_size, load_size, seed=0 if split == "train" else 1)
    if root is None:
        raise ValueError(f"--data (the data set folder) is required for dataset {name!r}")
    if name == "cifar10":
        return cifar10(root, split)
    if name == "imagefolder":
        return ImageFolder(pathlib.Path(root) / split, load_size)
    raise ValueError(f"dataset must be 'cifar10', 'imagefolder' or 'synthetic', got {name!r}")
