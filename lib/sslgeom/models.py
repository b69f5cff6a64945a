"""Small backbones for 28x28 grayscale images.

Two architectures, chosen so that geometry can differ between backbones while training stays
within minutes on two CPU cores:

* ``convnet``: a plain four-block ConvNet (conv-BN-ReLU; block 1 has stride 2, a max-pool follows
  block 2), 16-32-64-64 channels,
* ``resnet``: a narrow residual network with one basic block per stage.

Both end in global average pooling and return ``(batch, feature_dim)`` features; nothing after the
pooling belongs to the backbone (projection heads live in :mod:`sslgeom.ssl_methods`).
"""

from __future__ import annotations

import torch
from torch import nn

BACKBONES: tuple[str, ...] = ("convnet", "resnet")


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvNet(nn.Module):
    """Plain ConvNet: four conv-BN-ReLU blocks, the first with stride 2, a max-pool, global average pooling.

    On 28x28 inputs the blocks see 14x14, 14x14, 7x7 and 7x7 maps: 3.6 million multiply-adds per image
    at width 16. The ConvNet of the first two zoos (width 32, a max-pool after blocks 1 and 2; rebuilt
    in ``benchmarks/train.py``) took 14.7 million; this one trains 2.5 to 3 times as fast on two CPU
    cores, which buys the zoo more steps.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for Fashion-MNIST).
    width : int
        Channels of the first block; later blocks use ``2 * width``, ``4 * width``, ``4 * width``.
    """

    def __init__(self, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 4 * width)
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, widths[0], stride=2),
            _conv_bn_relu(widths[0], widths[1]),
            nn.MaxPool2d(2),
            _conv_bn_relu(widths[1], widths[2]),
            _conv_bn_relu(widths[2], widths[3]),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.feature_dim = widths[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, channels, height, width)`` floats to ``(batch, feature_dim)``."""
        return self.features(images)


class BasicBlock(nn.Module):
    """Residual block: two 3x3 convolutions with a projected shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Narrow ResNet for 28x28 inputs: a stem and one basic block per stage.

    Parameters
    ----------
    in_channels : int
        Image channels.
    width : int
        Channels of the stem and first stage; stages double it (strides 1, 2, 2, 2).
    """

    def __init__(self, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        widths = (width, 2 * width, 4 * width, 8 * width)
        self.stem = _conv_bn_relu(in_channels, widths[0])
        blocks = []
        previous = widths[0]
        for index, channels in enumerate(widths):
            blocks.append(BasicBlock(previous, channels, stride=1 if index == 0 else 2))
            previous = channels
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = widths[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(batch, channels, height, width)`` floats to ``(batch, feature_dim)``."""
        return self.pool(self.stages(self.stem(images)))


def build_backbone(name: str, *, in_channels: int = 1, seed: int | None = None) -> nn.Module:
    """Build a freshly initialised backbone by name.

    Parameters
    ----------
    name : str
        One of :data:`BACKBONES`.
    in_channels : int
        Image channels (1 for Fashion-MNIST).
    seed : int or None
        If given, the initial weights are drawn from ``torch.Generator`` seeded with it, so two
        calls with the same seed give identical networks (global RNG state is left untouched).

    Returns
    -------
    torch.nn.Module
        Maps ``(batch, in_channels, H, W)`` float images to ``(batch, feature_dim)``; the
        dimension is in its ``feature_dim`` attribute.
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose one of {list(BACKBONES)}.")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
    if seed is None:
        return _construct(name, in_channels)
    # fork_rng keeps the caller's global RNG untouched while initialisation uses the seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _construct(name, in_channels)


def _construct(name: str, in_channels: int) -> nn.Module:
    if name == "convnet":
        return ConvNet(in_channels=in_channels)
    return SmallResNet(in_channels=in_channels)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


#: Per-channel statistics of the Fashion-MNIST train split (pixel values scaled to [0, 1]),
#: used to standardise inputs for every backbone of the default zoo.
FASHION_MNIST_MEAN: float = 0.2860
FASHION_MNIST_STD: float = 0.3530


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """Standardise float images in ``[0, 1]`` with the Fashion-MNIST mean and std."""
    return (images - FASHION_MNIST_MEAN) / FASHION_MNIST_STD


def preprocess_uint8(images: torch.Tensor) -> torch.Tensor:
    """Default-zoo preprocessing: ``uint8 (batch, C, H, W)`` -> standardised float tensor.

    Raises
    ------
    ValueError
        If ``images`` is not a 4-D ``uint8`` tensor.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ValueError(
            f"Expected a uint8 tensor of shape (batch, channels, height, width), got {shape} "
            f"{getattr(images, 'dtype', '')}; convert with torch.from_numpy(array)[:, None]."
        )
    return normalize_images(images.float() / 255.0)
