"""Shared figure helpers: one colour and marker per paradigm and per backbone, image grids, rankings.

Every chapter draws paradigms and backbones through this module, so a paradigm has the same colour
and a backbone the same marker on every page. A label outside the tables (a new paradigm, a user's
backbone) gets a fallback chosen from a hash of its name: the same in every run and every process,
and different from the colours of the known labels.

Importing the module changes no global matplotlib state (no style, no ``rcParams``, no backend).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text

from .validation import check_int

__all__ = [
    "PARADIGM_COLOURS",
    "PARADIGM_MARKERS",
    "BACKBONE_COLOURS",
    "BACKBONE_MARKERS",
    "paradigm_colour",
    "paradigm_marker",
    "backbone_colour",
    "backbone_marker",
    "legend_handles",
    "colour_tick_labels",
    "class_examples",
    "thumbnails",
    "image_grid",
    "model_ranking",
]

# Paradigms of the default zoo and of the published registry, plus the two references.
# Colours are from matplotlib's tab10, so they read well on white and in grey-scale print.
PARADIGM_COLOURS: Mapping[str, str] = MappingProxyType({
    "contrastive": "#1f77b4",  # blue
    "non-contrastive": "#ff7f0e",  # orange
    "clustering": "#2ca02c",  # green
    "supervised": "#9467bd",  # purple
    "random": "#7f7f7f",  # grey
})
PARADIGM_MARKERS: Mapping[str, str] = MappingProxyType({
    "contrastive": "o", "non-contrastive": "s", "clustering": "^", "supervised": "D", "random": "X",
})
# Backbones: the zoo's two and the published ResNet-50; colours disjoint from the paradigms'.
BACKBONE_COLOURS: Mapping[str, str] = MappingProxyType({
    "convnet": "#8c564b",  # brown
    "resnet": "#17becf",  # cyan
    "resnet50": "#bcbd22",  # olive
})
BACKBONE_MARKERS: Mapping[str, str] = MappingProxyType({"convnet": "o", "resnet": "s", "resnet50": "D"})

# Fallbacks for labels outside the tables (tab20b shades, none equal to a colour above).
_FALLBACK_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
                     "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194")
_FALLBACK_MARKERS = ("v", "<", ">", "p", "P", "*", "h", "8")

Kind = Literal["paradigm", "backbone"]
_TABLES = {
    "paradigm": (PARADIGM_COLOURS, PARADIGM_MARKERS),
    "backbone": (BACKBONE_COLOURS, BACKBONE_MARKERS),
}


def _fallback(label: str, choices: Sequence[str]) -> str:
    # sha256 rather than hash(): Python salts str hashes per process, a figure must not change.
    digest = hashlib.sha256(label.encode("utf-8")).digest()
    return choices[int.from_bytes(digest[:4], "big") % len(choices)]


def _lookup(label: Any, kind: Kind, what: Literal["colour", "marker"]) -> str:
    if kind not in _TABLES:
        raise ValueError(f"kind must be 'paradigm' or 'backbone', got {kind!r}.")
    colours, markers = _TABLES[kind]
    table, fallback = (colours, _FALLBACK_COLOURS) if what == "colour" else (markers, _FALLBACK_MARKERS)
    label = str(label)
    return table[label] if label in table else _fallback(f"{kind}:{label}", fallback)


def paradigm_colour(paradigm: Any) -> str:
    """Colour (hex string) of a training paradigm; unknown names get a deterministic fallback.

    Parameters
    ----------
    paradigm : str
        ``contrastive``, ``non-contrastive``, ``clustering``, ``supervised``, ``random`` or any
        other name (converted with ``str``).

    Returns
    -------
    str
        A matplotlib colour such as ``"#1f77b4"``.
    """
    return _lookup(paradigm, "paradigm", "colour")


def paradigm_marker(paradigm: Any) -> str:
    """Marker (matplotlib marker code) of a training paradigm; unknown names get a fallback."""
    return _lookup(paradigm, "paradigm", "marker")


def backbone_colour(backbone: Any) -> str:
    """Colour (hex string) of a backbone architecture; unknown names get a deterministic fallback."""
    return _lookup(backbone, "backbone", "colour")


def backbone_marker(backbone: Any) -> str:
    """Marker of a backbone architecture (``convnet`` a circle, ``resnet`` a square, ...)."""
    return _lookup(backbone, "backbone", "marker")


def legend_handles(
    labels: Iterable[Any],
    kind: Kind = "paradigm",
    style: Literal["patch", "line", "marker"] = "patch",
    *,
    colour: str | None = None,
    prefix: str = "",
) -> list[Artist]:
    """Legend handles for paradigms or backbones, one per distinct label.

    Labels of the palette come in the palette's order, so legends list paradigms (or backbones) in
    the same order on every page; other labels follow in the order first seen.

    Parameters
    ----------
    labels : iterable of str
        Paradigm or backbone names, e.g. a table column.
    kind : {"paradigm", "backbone"}
        Which colour and marker table to use.
    style : {"patch", "line", "marker"}
        A filled square (bars, strips), a line (curves) or the label's marker (scatter plots).
    colour : str, optional
        One colour for every handle instead of the label's colour, e.g. ``"0.5"`` for a legend of
        marker shapes only.
    prefix : str
        Put before each label in the legend text, e.g. ``"paradigm: "``.

    Returns
    -------
    list of matplotlib.artist.Artist
        Pass to ``axis.legend(handles=...)`` or ``fig.legend(handles=...)``.
    """
    if kind not in _TABLES:
        raise ValueError(f"kind must be 'paradigm' or 'backbone', got {kind!r}.")
    distinct = dict.fromkeys(str(label) for label in labels)
    known = [label for label in _TABLES[kind][0] if label in distinct]
    handles: list[Artist] = []
    for label in known + [label for label in distinct if label not in known]:
        face = colour if colour is not None else _lookup(label, kind, "colour")
        text = f"{prefix}{label}"
        if style == "patch":
            handles.append(Patch(facecolor=face, label=text))
        elif style == "line":
            handles.append(Line2D([], [], color=face, label=text))
        elif style == "marker":
            handles.append(Line2D([], [], marker=_lookup(label, kind, "marker"), linestyle="", color=face,
                                  markeredgecolor="k", markeredgewidth=0.5, label=text))
        else:
            raise ValueError(f"style must be 'patch', 'line' or 'marker', got {style!r}.")
    return handles


def colour_tick_labels(tick_labels: Sequence[Text], paradigms: Sequence[Any]) -> None:
    """Colour tick labels by paradigm, e.g. model names on an axis.

    Parameters
    ----------
    tick_labels : sequence of matplotlib.text.Text, length n
        From ``axis.get_yticklabels()`` or ``axis.get_xticklabels()`` after the ticks are set.
    paradigms : sequence of str, length n
        The paradigm of each tick, in tick order.
    """
    tick_labels, paradigms = list(tick_labels), list(paradigms)
    if len(tick_labels) != len(paradigms):
        raise ValueError(f"got {len(tick_labels)} tick labels but {len(paradigms)} paradigms; pass one "
                         "paradigm per tick, in tick order (set the ticks before colouring them).")
    for tick, paradigm in zip(tick_labels, paradigms):
        tick.set_color(paradigm_colour(paradigm))


def class_examples(labels: np.ndarray, n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Random indices of ``per_class`` examples of each class, drawn without replacement.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (n,)
    n_classes : int
        Classes ``0 .. n_classes - 1``, one row each.
    per_class : int
    rng : numpy.random.Generator
        Draws once per class, in class order.

    Returns
    -------
    numpy.ndarray of int, shape (n_classes, per_class)
        Indices into ``labels``; pass ``images[indices]`` to :func:`image_grid`.
    """
    labels = np.asarray(labels)
    rows = []
    for label in range(n_classes):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"class {label} has {len(members)} examples, fewer than per_class={per_class}; "
                             "lower per_class.")
        rows.append(rng.choice(members, size=per_class, replace=False))
    return np.stack(rows)


def _as_image_grid(images: Any) -> np.ndarray:
    """Images as (rows, cols, H, W) or (rows, cols, H, W, 3); a channel axis of 1 or 3 first is moved."""
    array = np.asarray(images)
    if array.ndim == 5 and array.shape[2] in (1, 3) and array.shape[-1] not in (1, 3):  # (r, c, C, H, W)
        array = np.moveaxis(array, 2, -1)
    if array.ndim == 5 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (4, 5) or (array.ndim == 5 and array.shape[-1] != 3):
        raise ValueError(
            "images must have shape (rows, cols, height, width), with an optional channel axis of 1 or 3 "
            f"after cols or at the end; got {array.shape}. For one strip of n images use images[None]."
        )
    return array


def thumbnails(rows: Sequence[np.ndarray], size: int | None = None) -> np.ndarray:
    """Rows of uint8 images of different sizes, resized to one side for a figure grid.

    Parameters
    ----------
    rows : sequence of numpy.ndarray
        Each ``(n, H, W)`` or ``(n, C, H, W)`` uint8, the same ``n`` in every row.
    size : int or None
        Side of the result; None: the largest side among the rows, at most 64 pixels. Rows already
        at that side are not resampled.

    Returns
    -------
    numpy.ndarray, shape (rows, n, size, size) or (rows, n, 3, size, size)
        RGB when any row is in colour (greyscale rows repeated to three channels).
    """
    import torch
    import torch.nn.functional as F

    tensors = [torch.from_numpy(np.array(r if r.ndim == 4 else r[:, None], dtype=np.uint8)) for r in rows]
    size = min(max(max(t.shape[-2:]) for t in tensors), 64) if size is None else check_int(size, "size", minimum=1)
    colour = any(t.shape[1] == 3 for t in tensors)

    def fit(t: torch.Tensor) -> torch.Tensor:
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            t = t.round().clamp(0, 255).to(torch.uint8)
        return t.expand(-1, 3, -1, -1) if colour else t

    stacked = torch.stack([fit(t) for t in tensors]).numpy()
    return stacked if colour else stacked[:, :, 0]


def image_grid(
    images: Any,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    cmap: str | Sequence[Sequence[str]] = "gray_r",
    vmin: float = 0,
    vmax: float = 255,
    cell_size: tuple[float, float] = (0.9, 0.95),
    fontsize: float = 8,
) -> tuple[Figure, np.ndarray]:
    """A grid of images without ticks, with optional row labels (left) and column titles (top).

    Parameters
    ----------
    images : array-like, shape (rows, cols, height, width) or (rows, cols, height, width, 3)
        ``uint8`` pixels by default (see ``vmin``, ``vmax``); a channel axis ``(rows, cols, C, H, W)``
        with ``C`` 1 or 3 (torchvision layout) is accepted too.
    row_labels : sequence of str, length rows, optional
        Written left of each row ("" leaves a row unlabelled).
    col_labels : sequence of str, length cols, optional
        Titles of the top row ("" leaves a column untitled).
    cmap : str or sequence of sequences of str, shape (rows, cols)
        One colour map for all cells (default ``gray_r``: dark strokes on a light background), or
        one per cell. Ignored for RGB images.
    vmin, vmax : float
        Pixel values mapped to the ends of the colour map (0 and 255 for ``uint8``).
    cell_size : (float, float)
        Width and height of one cell in inches.
    fontsize : float
        Of the row and column labels.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : numpy.ndarray of matplotlib.axes.Axes, shape (rows, cols)
        For per-cell decoration (titles, frames) after the call.
    """
    grid = _as_image_grid(images)
    n_rows, n_cols = grid.shape[:2]
    for labels, n, what in ((row_labels, n_rows, "row_labels"), (col_labels, n_cols, "col_labels")):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{what} has {len(labels)} entries for {n} {what.split('_')[0]}s; give one per "
                             f"{what.split('_')[0]} ('' for none).")
    cmaps = np.broadcast_to(np.asarray(cmap, dtype=object), (n_rows, n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * cell_size[0], n_rows * cell_size[1]), squeeze=False)
    for (row, col), axis in np.ndenumerate(axes):
        axis.imshow(grid[row, col], cmap=cmaps[row, col], vmin=vmin, vmax=vmax)
        axis.set_xticks([])
        axis.set_yticks([])
    for row, label in enumerate(row_labels or ()):
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=fontsize)
    for col, label in enumerate(col_labels or ()):
        axes[0, col].set_title(label, fontsize=fontsize)
    fig.tight_layout(pad=0.2)
    return fig, axes


def model_ranking(
    axis: Axes,
    values: pd.Series,
    paradigms: Mapping[str, Any] | pd.Series,
    *,
    order: Sequence[str] | None = None,
    groups: Mapping[str, Any] | pd.Series | None = None,
    style: Literal["bar", "point"] = "bar",
    interval: tuple[pd.Series, pd.Series] | None = None,
    marker: str = "o",
    label: str | None = None,
    colour_labels: bool = True,
    fontsize: float = 7,
) -> list[str]:
    """Models ranked by a value on horizontal rows, bars or points coloured by paradigm.

    Row 0 is at the bottom, so with the default ascending order the best model is on top.

    Parameters
    ----------
    axis : matplotlib.axes.Axes
    values : pandas.Series, indexed by model name
        The value to rank by and draw (e.g. linear-probe accuracy).
    paradigms : mapping or pandas.Series, model name -> paradigm
    order : sequence of str, optional
        Models from bottom to top; default: ascending ``values`` (within ``groups`` if given).
        Pass the order returned by a first call to draw a second panel in the same rows.
    groups : mapping or pandas.Series, model name -> group, optional
        Keep the models of a group in adjacent rows (groups sorted by name), e.g. the backbone.
    style : {"bar", "point"}
        Horizontal bars from 0, or points (with ``interval`` as horizontal lines).
    interval : (pandas.Series, pandas.Series), optional
        Lower and upper ends (absolute values, not lengths) of an interval per model, for ``"point"``.
    marker : str
        Marker of the points.
    label : str, optional
        Legend label of the bars or points (drawn in grey in a legend, since colours mean paradigms).
    colour_labels : bool
        Colour the model names on the y axis by paradigm.
    fontsize : float
        Of the model names.

    Returns
    -------
    list of str
        The models from bottom (row 0) to top.
    """
    if order is None:
        if groups is None:
            order = values.sort_values(kind="stable").index.tolist()
        else:
            frame = pd.DataFrame({"group": pd.Series(groups).reindex(values.index).astype(str), "value": values})
            order = frame.sort_values(["group", "value"], kind="stable").index.tolist()
    order = list(order)
    missing = [name for name in order if name not in values.index or name not in paradigms]
    if missing:
        raise ValueError(f"no value or no paradigm for models {missing}; pass values and paradigms indexed by "
                         "every model in order.")
    positions = np.arange(len(order))
    shown = values.loc[order].to_numpy(dtype=float)
    colours = [paradigm_colour(paradigms[name]) for name in order]
    if style == "bar":
        axis.barh(positions, shown, color=colours)
    elif style == "point":
        if interval is not None:
            low, high = (pd.Series(end).loc[order].to_numpy(dtype=float) for end in interval)
            axis.hlines(positions, low, high, colors=colours, linewidth=1)
        axis.scatter(shown, positions, c=colours, marker=marker, s=18, edgecolors="k", linewidths=0.3, zorder=3)
    else:
        raise ValueError(f"style must be 'bar' or 'point', got {style!r}.")
    if label is not None:  # a grey proxy: in the legend the shape names the series, colours the paradigm
        axis.plot([], [], marker="s" if style == "bar" else marker, linestyle="", color="0.5",
                  markeredgecolor="k", markeredgewidth=0.3, label=label)
    axis.set_yticks(positions, order, fontsize=fontsize)
    axis.set_ylim(-0.6, len(order) - 0.4)
    shown_labels = axis.get_yticklabels()
    if colour_labels and shown_labels:  # none on a panel whose labels a shared y axis hides
        colour_tick_labels(shown_labels, [paradigms[name] for name in order])
    return order
