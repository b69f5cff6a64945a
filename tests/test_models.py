"""Backbones: shapes, seeded initialisation, preprocessing."""

import pytest
import torch

from sslgeom.models import (
    BACKBONES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    build_backbone,
    count_parameters,
    preprocess_uint8,
)


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_maps_images_to_pooled_features(name):
    backbone = build_backbone(name, seed=0).eval()
    features = backbone(torch.rand(3, 1, 28, 28))
    assert features.shape == (3, backbone.feature_dim)
    assert torch.isfinite(features).all()
    # small enough that the whole zoo fits the 40 MB budget in half precision
    assert 50_000 < count_parameters(backbone) < 1_000_000


@pytest.mark.parametrize("name", BACKBONES)
def test_seed_fixes_initial_weights_without_touching_global_rng(name):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = build_backbone(name, seed=7).state_dict()
    assert torch.equal(torch.rand(1), expected_next)  # global stream unchanged
    second = build_backbone(name, seed=7).state_dict()
    other = build_backbone(name, seed=8).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_three_channel_backbone():
    backbone = build_backbone("resnet", in_channels=3, seed=0).eval()
    assert backbone(torch.rand(2, 3, 32, 32)).shape == (2, backbone.feature_dim)


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match="convnet"):
        build_backbone("vgg")


def test_preprocess_standardises_uint8():
    images = torch.tensor([0, 255, 73], dtype=torch.uint8).view(3, 1, 1, 1)
    out = preprocess_uint8(images)
    expected = (torch.tensor([0.0, 1.0, 73 / 255]) - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    assert out.dtype == torch.float32
    assert torch.allclose(out.flatten(), expected)


@pytest.mark.parametrize("bad", [torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(2, 1, 28, 28)])
def test_preprocess_rejects_wrong_layout_or_dtype(bad):
    with pytest.raises(ValueError, match="uint8"):
        preprocess_uint8(bad)
