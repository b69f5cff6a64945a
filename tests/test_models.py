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


def conv_maps_and_multiply_adds(backbone: torch.nn.Module) -> tuple[list, int]:
    """Output map sizes of the convolutions and their multiply-adds on one 28x28 image, by forward hooks."""
    sizes, multiply_adds = [], []

    def count(module, inputs, output):
        sizes.append(tuple(output.shape[-2:]))
        kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
        multiply_adds.append(output.shape[1] * output.shape[2] * output.shape[3] * kernel)

    hooks = [m.register_forward_hook(count) for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    backbone.eval()(torch.rand(1, 1, 28, 28))
    for hook in hooks:
        hook.remove()
    return sizes, sum(multiply_adds)


def test_convnet_maps_and_multiply_adds_match_its_docstring():
    # ConvNet's docstring: on 28x28 inputs the blocks see 14x14, 14x14, 7x7, 7x7 maps, 3.6 million
    # multiply-adds per image at width 16 (what the training speed of the zoo rests on)
    backbone = build_backbone("convnet", seed=0)
    sizes, multiply_adds = conv_maps_and_multiply_adds(backbone)
    assert sizes == [(14, 14), (14, 14), (7, 7), (7, 7)]
    assert multiply_adds == 16 * 196 * 9 + 32 * 16 * 196 * 9 + 64 * 32 * 49 * 9 + 64 * 64 * 49 * 9
    assert round(multiply_adds / 1e6, 1) == 3.6
    assert backbone.feature_dim == 64


def test_earlier_convnet_took_four_times_the_multiply_adds():
    # the ConvNet of the first two zoos, as benchmarks/train.py rebuilds it: 14.7 million multiply-adds
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train.py"
    spec = importlib.util.spec_from_file_location("train_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    sizes, earlier = conv_maps_and_multiply_adds(benchmark.first_convnet())
    _, current = conv_maps_and_multiply_adds(build_backbone("convnet", seed=0))
    assert sizes == [(28, 28), (14, 14), (7, 7), (7, 7)]
    assert round(earlier / 1e6, 1) == 14.7
    assert 3.9 < earlier / current < 4.1
