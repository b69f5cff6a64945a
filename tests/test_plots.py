"""Tests of the shared figure module: palettes, markers, image grid, model ranking."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sslgeom import plots  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def manifest_labels(column: str) -> set[str]:
    entries = json.loads((REPO / "data" / "zoo" / "manifest.json").read_text())["models"]
    return {str(entry[column]) for entry in entries}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_every_zoo_and_published_label_has_its_own_entry():
    from sslgeom import published

    paradigms = manifest_labels("paradigm") | {spec.paradigm for spec in published.REGISTRY.values()}
    assert paradigms <= set(plots.PARADIGM_COLOURS) == set(plots.PARADIGM_MARKERS)
    assert {"random", "supervised", "contrastive", "non-contrastive", "clustering"} <= paradigms
    backbones = manifest_labels("backbone") | {"resnet50"}
    assert backbones <= set(plots.BACKBONE_COLOURS) == set(plots.BACKBONE_MARKERS)


def test_distinct_labels_get_distinct_colours_and_markers():
    paradigm_colours = [plots.paradigm_colour(p) for p in plots.PARADIGM_COLOURS]
    backbone_colours = [plots.backbone_colour(b) for b in plots.BACKBONE_COLOURS]
    as_rgb = {mcolors.to_hex(c) for c in paradigm_colours + backbone_colours}
    assert len(as_rgb) == len(paradigm_colours) + len(backbone_colours)  # paradigms vs backbones too
    assert len({plots.paradigm_marker(p) for p in plots.PARADIGM_MARKERS}) == len(plots.PARADIGM_MARKERS)
    assert len({plots.backbone_marker(b) for b in plots.BACKBONE_MARKERS}) == len(plots.BACKBONE_MARKERS)
    assert plots.paradigm_colour("contrastive") == "#1f77b4"
    assert plots.backbone_marker("resnet") == "s"


def test_same_label_same_colour_across_calls_reloads_and_helpers():
    first = {p: plots.paradigm_colour(p) for p in ["contrastive", "clustering", "my-new-paradigm"]}
    assert first == {p: plots.paradigm_colour(p) for p in first}
    reloaded = importlib.reload(plots)
    assert first == {p: reloaded.paradigm_colour(p) for p in first}
    # the legend helper and the ranking draw the colour of the lookup function
    handles = reloaded.legend_handles(["my-new-paradigm", "clustering", "contrastive", "clustering"])
    # palette order first (the same on every page), then unknown labels as first seen
    assert [h.get_label() for h in handles] == ["contrastive", "clustering", "my-new-paradigm"]
    assert [mcolors.to_hex(h.get_facecolor()) for h in handles] == [first[p] for p in
                                                                    ["contrastive", "clustering", "my-new-paradigm"]]
    markers = reloaded.legend_handles(["resnet"], kind="backbone", style="marker", colour="0.5", prefix="backbone: ")
    assert markers[0].get_marker() == "s" and markers[0].get_label() == "backbone: resnet"
    assert markers[0].get_color() == "0.5"
    lines = reloaded.legend_handles(["random"], style="line")
    assert lines[0].get_color() == plots.PARADIGM_COLOURS["random"]


def test_unknown_label_gets_a_deterministic_fallback_outside_the_palette():
    colour = plots.paradigm_colour("predictive")
    marker = plots.backbone_marker("vit-tiny")
    assert colour not in plots.PARADIGM_COLOURS.values() and colour not in plots.BACKBONE_COLOURS.values()
    assert marker not in plots.BACKBONE_MARKERS.values()
    mcolors.to_rgba(colour)  # a valid colour
    # a fresh interpreter with another string-hash salt picks the same fallback
    code = ("from sslgeom import plots; "
            "print(plots.paradigm_colour('predictive'), plots.backbone_marker('vit-tiny'))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONHASHSEED": "12345", "MPLBACKEND": "Agg", "PATH": ""}).stdout.split()
    assert output == [colour, marker]
    assert plots.paradigm_colour(None) == plots.paradigm_colour("None")  # labels go through str


def test_import_leaves_rcparams_alone():
    code = ("import matplotlib; before = {k: str(v) for k, v in matplotlib.rcParams.items()}; "
            "from sslgeom import plots; import matplotlib.pyplot; "
            "after = {k: str(v) for k, v in matplotlib.rcParams.items()}; "
            "print(sorted(k for k in before if before[k] != after[k]))")
    changed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"MPLBACKEND": "Agg", "PATH": ""}).stdout.strip()
    assert changed == "[]"


def test_image_grid_draws_every_image_with_its_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5, 6), dtype=np.uint8)
    fig, axes = plots.image_grid(images, row_labels=["a", "b", "c"], col_labels=["w", "x", "", "z"])
    assert axes.shape == (3, 4) and len(fig.axes) == 12
    for (row, col), axis in np.ndenumerate(axes):
        (shown,) = axis.get_images()
        np.testing.assert_array_equal(shown.get_array(), images[row, col])
        assert shown.get_clim() == (0, 255) and shown.get_cmap().name == "gray_r"
        assert list(axis.get_xticks()) == [] and list(axis.get_yticks()) == []
    assert [axes[row, 0].get_ylabel() for row in range(3)] == ["a", "b", "c"]
    assert [axes[0, col].get_title() for col in range(4)] == ["w", "x", "", "z"]
    assert all(axes[1, col].get_title() == "" for col in range(4))


def test_image_grid_channel_layout_per_cell_colour_maps_and_errors():
    images = np.arange(2 * 3 * 1 * 4 * 4, dtype=np.uint8).reshape(2, 3, 1, 4, 4)  # torchvision (C, H, W)
    cmaps = [["Greens", "Reds", "Greens"], ["Reds", "Reds", "Greens"]]
    fig, axes = plots.image_grid(images, cmap=cmaps, vmin=0, vmax=1)
    for (row, col), axis in np.ndenumerate(axes):
        np.testing.assert_array_equal(axis.get_images()[0].get_array(), images[row, col, 0])
        assert axis.get_images()[0].get_cmap().name == cmaps[row][col]
        assert axis.get_ylabel() == "" and axis.get_title() == ""
    with pytest.raises(ValueError, match="row_labels has 1 entries for 2 rows"):
        plots.image_grid(images, row_labels=["only one"])
    with pytest.raises(ValueError, match=r"images\[None\]"):
        plots.image_grid(images[0, 0])


def test_class_examples_draws_per_class_without_replacement():
    labels = np.array([0, 1, 2] * 5)
    indices = plots.class_examples(labels, 3, 4, np.random.default_rng(0))
    assert indices.shape == (3, 4)
    for label, row in enumerate(indices):
        assert np.all(labels[row] == label) and len(set(row)) == 4
    # the draws are those of one rng.choice per class, in class order
    rng = np.random.default_rng(0)
    expected = [rng.choice(np.flatnonzero(labels == c), size=4, replace=False) for c in range(3)]
    np.testing.assert_array_equal(indices, np.stack(expected))
    with pytest.raises(ValueError, match="fewer than per_class"):
        plots.class_examples(labels, 3, 6, np.random.default_rng(0))


def ranking_inputs():
    values = pd.Series({"m-a": 0.7, "m-b": 0.9, "m-c": 0.5, "m-d": 0.8})
    paradigms = pd.Series({"m-a": "contrastive", "m-b": "clustering", "m-c": "random", "m-d": "contrastive"})
    return values, paradigms


def test_model_ranking_orders_bars_by_value_and_colours_them_by_paradigm():
    values, paradigms = ranking_inputs()
    fig, axis = plt.subplots()
    order = plots.model_ranking(axis, values, paradigms, label="probe")
    assert order == ["m-c", "m-a", "m-d", "m-b"]
    bars = sorted(axis.patches, key=lambda bar: bar.get_y())
    assert [bar.get_width() for bar in bars] == [0.5, 0.7, 0.8, 0.9]
    assert [mcolors.to_hex(bar.get_facecolor()) for bar in bars] == [
        plots.paradigm_colour(paradigms[name]) for name in order]
    assert [tick.get_text() for tick in axis.get_yticklabels()] == order
    assert [mcolors.to_hex(tick.get_color()) for tick in axis.get_yticklabels()] == [
        plots.paradigm_colour(paradigms[name]) for name in order]
    handles, labels = axis.get_legend_handles_labels()
    assert labels == ["probe"] and handles[0].get_color() == "0.5"


def test_model_ranking_groups_points_intervals_and_given_order():
    values, paradigms = ranking_inputs()
    groups = {"m-a": "resnet", "m-b": "convnet", "m-c": "convnet", "m-d": "resnet"}
    fig, (left, right) = plt.subplots(1, 2, sharey=True)  # the right panel's names are hidden
    order = plots.model_ranking(left, values, paradigms, groups=groups)
    assert order == ["m-c", "m-b", "m-a", "m-d"]  # convnet first, ascending within each backbone
    low, high = values - 0.05, values + 0.1
    again = plots.model_ranking(right, values, paradigms, order=order, style="point", interval=(low, high),
                                marker="s")
    assert again == order
    (points,) = right.collections[1:]
    np.testing.assert_allclose(points.get_offsets(), np.c_[values[order], np.arange(4)])
    np.testing.assert_array_equal(points.get_facecolors(),
                                  mcolors.to_rgba_array([plots.paradigm_colour(paradigms[n]) for n in order]))
    segments = right.collections[0].get_segments()
    np.testing.assert_allclose([s[:, 0] for s in segments], np.c_[low[order], high[order]])
    assert right.get_yticklabels() == [] and [t.get_text() for t in left.get_yticklabels()] == order
    with pytest.raises(ValueError, match="no value or no paradigm"):
        plots.model_ranking(right, values, paradigms, order=["m-a", "unknown"])


def test_thumbnails_bring_rows_of_different_sizes_to_one_size():
    grid = plots.thumbnails([np.zeros((4, 28, 28), np.uint8), np.full((4, 3, 50, 40), 200, np.uint8)])
    assert grid.shape == (2, 4, 3, 50, 50) and grid.dtype == np.uint8
    # a constant image stays constant when resized; a greyscale row is repeated to three channels
    assert (grid[0] == 0).all() and (grid[1] == 200).all()
    # rows already at the common side are returned as they are
    ramp = np.arange(4 * 28 * 28, dtype=np.int64).reshape(4, 28, 28).astype(np.uint8)
    same = plots.thumbnails([ramp, ramp])
    assert same.shape == (2, 4, 28, 28) and (same[0] == ramp).all() and (same[1] == ramp).all()
    assert plots.thumbnails([ramp], size=14).shape == (1, 4, 14, 14)
    with pytest.raises(ValueError, match="size"):
        plots.thumbnails([ramp], size=0)
