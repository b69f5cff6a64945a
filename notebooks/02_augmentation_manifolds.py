# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Augmentation and semantic manifolds
#
# **What you will learn.** How this book turns a model into point clouds that can be measured:
# the *semantic manifold* (features of clean held-out images, per class and pooled) and the
# *augmentation manifolds* (features of one image swept along an augmentation family such as
# rotation or blur, and clouds of random compositions of families, the kind of views SSL training
# sees). You will see what each family does to an image, how the feature vector of one image moves
# as the strength grows, and how far it moves for models of different training paradigms. The next
# chapter measures the geometry of these clouds with NNK graphs.
#
# Library functions this chapter calls (see the API reference): {py:func}`~sslgeom.augment.sweep`, {py:func}`~sslgeom.manifolds.augmentation_manifolds`, {py:func}`~sslgeom.manifolds.model_manifolds`, {py:func}`~sslgeom.manifolds.invariance_table`, {py:func}`~sslgeom.zoo.select_models`.

# %% tags=["parameters"]
profile = "default"
seed = 0
device = "cpu"
models = None  # zoo names for the trajectory figure; None: one model per paradigm from the manifest
profile_models = None  # more zoo names for the invariance profiles (the models above are always in); None: every
# full-budget model of the seeds in profile_seeds
profile_seeds = [0]  # with profile_models None: the seeds whose models get invariance profiles (the other seeds
# are replicates of the same methods; chapter 04 compares every model)
n_per_class = 100  # semantic manifold: held-out test images per class
n_base = 30  # base images of the augmentation manifolds (stratified by class; as chapters 04/05: shared features)
n_points = None  # grid points per family; None: each family's default grid
n_views = 32  # random compositions per base image
strip_points = 7  # columns of the image strips (odd, so the identity is the middle of two-sided grids)
example_index = 0  # which base image the strips and trajectories follow
# your own images and models (the same four parameters in chapters 02, 04 and 05; see "Published checkpoints")
image_folder = None  # None: Fashion-MNIST; or a folder of class sub-folders, root/<class>/<image> (PNG, JPEG)
registry = None  # a user registry YAML naming user/<name> checkpoints; None: $SSLGEOM_USER_REGISTRY if set
input_size = None  # input side of published and user models and of the folder's images; None: each model's own
images_per_class = 100  # images read per class from image_folder (the pool the manifolds are drawn from)

# %% tags=["remove-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from myst_nb import glue

from sslgeom import augment, manifolds, params, plots, sources, zoo

params.check_common(profile, seed, device)
params.check(
    {"image_folder": image_folder, "registry": registry, "input_size": input_size,
     "images_per_class": images_per_class,
     "models": models, "profile_models": profile_models, "profile_seeds": profile_seeds,
     "n_per_class": n_per_class, "n_base": n_base,
     "n_points": n_points, "n_views": n_views, "strip_points": strip_points,
     "example_index": example_index},
    {"image_folder": sources.PARAMETER_RULES["image_folder"],
     "registry": sources.PARAMETER_RULES["registry"],
     "input_size": sources.PARAMETER_RULES["input_size"],
     "images_per_class": sources.PARAMETER_RULES["images_per_class"],
     "models": {"type": (list, type(None)), "items": str, "min_length": 1},
     "profile_models": {"type": (list, type(None)), "items": str},
     "profile_seeds": {"type": list, "items": int, "minimum": 0, "min_length": 1},
     "n_per_class": {"type": int, "minimum": 2, "maximum": 1000},
     "n_base": {"type": int, "minimum": 2, "maximum": 10000},
     # an int for every family, or {family: int} for some (the others keep their default grid)
     "n_points": {"type": (int, dict, type(None)), "items": int, "minimum": 2,
                  "keys": list(augment.FAMILIES)},
     "n_views": {"type": int, "minimum": 2},
     "strip_points": {"type": int, "minimum": 3, "maximum": 15},
     "example_index": {"type": int, "minimum": 0}},
)
sources.check_paths(image_folder, registry)
if example_index >= n_base:
    raise params.ParameterError(f"example_index must be < n_base ({n_base}), got {example_index}")
if strip_points % 2 == 0:
    raise params.ParameterError(f"strip_points must be odd so every strip shows the identity, got {strip_points}")

# %% [markdown]
# ## Augmentation families
#
# ```{prf:definition} Augmentation family and augmentation manifold
# :label: def-augmentation-manifold
#
# An *augmentation family* is a map $(x, t) \mapsto a_t(x)$ from an image $x$ and a scalar
# strength $t$ to an image, with an identity strength $t_0$ such that $a_{t_0}(x) = x$. For a
# model $f$ with L2-normalised features $\bar f(x) = f(x) / \lVert f(x) \rVert$ and a grid of
# strengths $T$ containing $t_0$, the *augmentation manifold* of $x$ is the curve
#
# $$
# \mathcal{A}_a(x) = \{\, \bar f(a_t(x)) : t \in T \,\}.
# $$
#
# A model *invariant* to the family maps the whole curve to one point; a model that keeps the
# family's information spreads it out.
# ```
#
# `sslgeom.augment` implements the families below with `torchvision.transforms.v2.functional`:
# each is a deterministic function of the image and one strength (the noise family draws a fixed,
# seeded noise field and scales it, so a sweep moves an image along a straight ray). Geometric
# families resample bilinearly with a black fill, which is Fashion-MNIST's background. Hue and
# saturation exist for colour images and refuse greyscale input.

# %% tags=["remove-input"]
augment.family_table()

# %% tags=["remove-cell"]
# the images: Fashion-MNIST's test split, or the pool of image_folder (the manifolds read it from here on)
pool = sources.activate(image_folder, registry=registry, input_size=input_size, images_per_class=images_per_class,
                        seed=seed)
sources.check_class_sizes(n_per_class, pool)
base_ids = manifolds.select_test_images(n_base, seed)
test_images, test_labels = pool.images, pool.labels
example_id = int(base_ids[example_index])
example = test_images[example_id][None]
glue("example_class", pool.classes[test_labels[example_id]], display=False)
glue("example_id", example_id, display=False)
glue("pool_description", pool.description, display=False)
example_tensor = torch.from_numpy(np.ascontiguousarray(example))
families = pool.families  # hue and saturation too for colour images
strip_strengths = [augment.grid(family, strip_points) for family in families]
strips = [augment.sweep(example_tensor, family, strengths, seed=seed)[0]  # (points, channels, height, width)
          for family, strengths in zip(families, strip_strengths)]
strips = [strip[:, 0] if pool.channels == 1 else strip for strip in strips]
fig, axes = plots.image_grid(torch.stack(strips), row_labels=list(families), cell_size=(0.95, 1.05))
for row, (family, strengths) in enumerate(zip(families, strip_strengths)):
    for axis, strength in zip(axes[row], strengths):  # each view's strength, in bold at the identity
        is_identity = strength == augment.FAMILIES[family].identity
        axis.set_title(f"{strength:.3g}", fontsize=7, fontweight="bold" if is_identity else "normal")
fig.tight_layout(pad=0.2)
glue("fig_family_strips", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_family_strips
# :name: "fig-family-strips"
#
# One test image (a {glue:text}`example_class`, test index {glue:text}`example_id`) swept along each
# family's grid; the number above each view is the strength, in bold at the identity. Look at how
# different the families are in kind: rotation, zoom and shift move pixels, brightness and contrast
# rescale them, blur removes fine texture, and noise adds texture that was never there. A model can
# be invariant to one kind and sensitive to another.
# ```
#
# Random compositions apply every family in the order of the table, each with probability 0.8 and
# a strength drawn uniformly over its grid, independently for every image and every view. They are
# a stand-in for the augmentation distribution SSL methods train on, and give a *cloud* of views per
# image instead of a curve.

# %% tags=["remove-cell"]
n_cloud_images, n_cloud_views = 4, 8
cloud_base = torch.from_numpy(np.ascontiguousarray(test_images[base_ids[:n_cloud_images]]))
cloud_views, _ = augment.random_views(cloud_base, n_cloud_views, seed=seed)
fig, _ = plots.image_grid(torch.cat([cloud_base[:, None], cloud_views], dim=1),
                          col_labels=["clean"] + [""] * n_cloud_views)
glue("fig_random_views", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_random_views
# :name: "fig-random-views"
#
# Random compositions: the clean image (left) and eight independent views of it. Check that no two
# views of the same image are alike: each view draws its own strengths. These clouds are the
# composition manifolds measured later next to the one-family curves.
# ```
#
# ## Models and manifolds
#
# ```{prf:definition} Semantic manifold
# :label: def-semantic-manifold
#
# For held-out images $x_1, \dots, x_N$ with classes $y_1, \dots, y_N$, the *semantic manifold* of a
# model is the point cloud $\{\bar f(x_i)\}_{i=1}^N$ (pooled) and, for each class $c$, its subset
# $\{\bar f(x_i) : y_i = c\}$ (within-class).
# ```
#
# The manifolds below use {glue:text}`pool_description` chosen by `seed`, stratified by class:
# {glue:text}`n_semantic` images for the semantic manifold and {glue:text}`n_base_text` base images
# for the augmentation manifolds. Every (model, manifold) piece is cached on disk by content
# (checkpoint hash, image ids, family, grid, seed), so rerunning the chapter reads features instead
# of computing them, and an interrupted run resumes where it stopped.

# %% tags=["remove-cell"]
# None: one model per paradigm (the first listed for each in the manifest), and the full-budget models of profile_seeds
models = zoo.select_models(models, models_per_paradigm=1)
if profile_models is None and any(map(sources.is_external, models)):
    profile_models = []  # published or user models: profile the models listed, not the default zoo besides
elif profile_models is None:  # every full-budget model of the chosen seeds (and references of those seeds)
    candidates = zoo.select_models(None)
    seeds = zoo.model_labels(candidates)["seed"]
    profile_models = [name for name in candidates if seeds[name] in profile_seeds]
profile_models = zoo.select_models(profile_models)
all_models = sources.check_models(dict.fromkeys(list(models) + list(profile_models)), pool)  # one set of images
glue("n_semantic", f"{len(pool.classes) * n_per_class:,}", display=False)
glue("n_base_text", f"{n_base:,}", display=False)

# %%
zoo.model_labels(models)[["method", "paradigm", "backbone"]]

# %% tags=["remove-stderr"]
start = time.perf_counter()
built = {
    result.model: result
    for result in manifolds.model_manifolds(
        all_models, n_per_class=n_per_class, n_base=n_base, n_points=n_points, n_views=n_views,
        seed=seed, device=device,
    )
}
elapsed = time.perf_counter() - start
example_model = built[models[0]]
print(f"{len(built)} models in {elapsed:.1f} s")
print(f"semantic manifold of {example_model.model}: features {example_model.semantic.features.shape}")
for family, manifold in example_model.augmentation.items():
    print(f"  {family:>10}: features {manifold.features.shape}, strengths {manifold.strengths.min():g}..{manifold.strengths.max():g}")
print(f"  composition: features {example_model.composition.features.shape}")

# %% tags=["remove-cell"]
glue("n_models_built", len(built), display=False)
glue("build_seconds", f"{elapsed:.0f}", display=False)
n_images_per_model = (example_model.semantic.features.shape[0]
                      + sum(m.features.shape[0] * m.features.shape[1] for m in example_model.augmentation.values())
                      + example_model.composition.features.shape[0] * (example_model.composition.features.shape[1] + 1))
glue("images_per_model", f"{n_images_per_model:,}", display=False)

# %% [markdown]
# Each model's manifolds hold {glue:text}`images_per_model` feature vectors. Building them for
# {glue:text}`n_models_built` models took {glue:text}`build_seconds` s in this run (pieces already
# in the cache are read, not recomputed).
#
# ## Feature trajectories
#
# To see a curve $\mathcal{A}_a(x)$ we project it to two dimensions. The projection is each model's
# own PCA of its semantic manifold, so the axes are the two directions along which *different
# images* vary most, and the grey points show where the test images lie in that plane.

# %% tags=["hide-input"]
def pca_basis(points: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, top principal directions (n_components, dim) and their share of the variance."""
    mean = points.mean(axis=0)
    _, singular, vt = np.linalg.svd(points - mean, full_matrices=False)
    share = float((singular[:n_components] ** 2).sum() / (singular**2).sum())
    return mean, vt[:n_components], share


colors = dict(zip(families, plt.cm.tab10(np.arange(len(families)))))
n_cols = 2 if len(models) == 4 else min(3, len(models))  # 2x2 rather than 3+1
n_rows = int(np.ceil(len(models) / n_cols))
fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.9 * n_rows), squeeze=False)
variance_shares = {}
for axis, name in zip(axes.ravel(), models):
    result = built[name]
    mean, basis, share = pca_basis(result.semantic.features)
    variance_shares[name] = share
    semantic_2d = (result.semantic.features - mean) @ basis.T
    axis.scatter(*semantic_2d.T, s=2, color="0.8", rasterized=True)
    cloud_2d = (result.composition.features[example_index] - mean) @ basis.T
    axis.scatter(*cloud_2d.T, s=10, marker="x", color="0.35", label="random compositions")
    for family, manifold in result.augmentation.items():
        curve = (manifold.features[example_index] - mean) @ basis.T
        axis.plot(*curve.T, "-o", ms=2.5, lw=1.2, color=colors[family], label=family)
    clean = (result.augmentation[families[0]].clean_features[example_index] - mean) @ basis.T
    axis.plot(*clean, marker="*", ms=12, color="black", ls="none", label="clean image")
    paradigm = result.info.get("paradigm", "?")
    axis.set_title(f"{name} ({paradigm})\nPCA share {share:.0%}", fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
for axis in axes.ravel()[len(models):]:
    axis.axis("off")
handles, labels = axes[0, 0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
fig.tight_layout(rect=(0, 0.07, 1, 1))
glue("fig_trajectories", fig, display=False)
plt.close(fig)
glue("pca_share_min", f"{min(variance_shares.values()):.0%}", display=False)
glue("pca_share_max", f"{max(variance_shares.values()):.0%}", display=False)

# %% [markdown]
# ```{glue:figure} fig_trajectories
# :name: "fig-trajectories"
#
# Feature trajectories of the example image (black star) under each family, one panel per model,
# projected on the first two principal components of the model's semantic manifold (grey). Look at
# the length of each coloured curve against the spread of the grey cloud: a long curve means the
# augmentation moves the image about as far as changing it for another image; a curve folded onto
# the star means invariance. The crosses are random compositions of the same image.
# ```
#
# The two principal components keep between {glue:text}`pca_share_min` and
# {glue:text}`pca_share_max` of the semantic manifold's variance, so the picture is a shadow:
# curves can look short because they leave the plane. The invariance profiles below measure
# distances in the full feature space.
#
# ## Invariance profiles
#
# For each family and strength $t$ we average, over the base images, the distance
# $\lVert \bar f(a_t(x)) - \bar f(x) \rVert$ between a view's feature and the clean feature (both
# on the unit sphere, so distances lie in $[0, 2]$). Dividing by the mean distance between the
# features of two *different* base images gives the *relative distance*: 1 means the augmentation
# moves an image as far, on average, as swapping it for another image.

# %% tags=["hide-input"]
profile_rows = []
for name in all_models:
    result = built[name]
    info = {"paradigm": result.info.get("paradigm", "?"), "method": result.info.get("method", "?")}
    profile_rows.append(manifolds.invariance_table(result.augmentation.values(), info=info))
profiles = pd.concat(profile_rows, ignore_index=True)

n_cols = 4
n_rows = int(np.ceil(len(families) / n_cols))
fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.3 * n_cols, 2.7 * n_rows), squeeze=False)
for axis, family in zip(axes.ravel(), families):
    for (name, paradigm), rows in profiles[profiles["family"] == family].groupby(["model", "paradigm"], sort=False):
        rows = rows.sort_values("strength")
        axis.plot(rows["strength"], rows["relative_distance"], "-", lw=1.2, color=plots.paradigm_colour(paradigm),
                  alpha=0.85)
    axis.axvline(augment.FAMILIES[family].identity, color="0.6", lw=0.8, ls=":")
    axis.set_title(family, fontsize=9)
    axis.set_xlabel("strength", fontsize=8)
    axis.tick_params(labelsize=7)
for axis in axes[:, 0]:
    axis.set_ylabel("relative distance", fontsize=8)
for axis in axes.ravel()[len(families):]:
    axis.axis("off")
fig.legend(handles=plots.legend_handles(profiles["paradigm"], style="line"), loc="lower right", fontsize=8, frameon=False,
           bbox_to_anchor=(0.98, 0.08) if len(families) % n_cols else (0.98, 0.0))
fig.tight_layout()
glue("fig_invariance_profiles", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_invariance_profiles
# :name: "fig-invariance-profiles"
#
# Invariance profiles: mean distance between a view's feature and the clean feature, relative to
# the distance between two different images, against strength (dotted line: identity). One line
# per model, coloured by paradigm. Look for families where the lines of one paradigm stay together
# and apart from the others (the paradigm shapes invariance to that family) and for families where
# paradigms interleave (it does not).
# ```
#
# A single number per model and family summarises a profile: the mean relative distance over the
# non-identity strengths of the grid (the *sensitivity*; lower means more invariant).

# %% tags=["hide-input"]
sensitivity = (
    profiles[profiles["relative_strength"] != 0.0]
    .groupby(["model", "paradigm", "family"], sort=False)["relative_distance"].mean()
    .unstack("family")[list(families)]
)
sensitivity = sensitivity.sort_index(level="paradigm", sort_remaining=False, kind="stable")
fig, axis = plt.subplots(figsize=(1.0 * len(families) + 2.5, 0.38 * len(sensitivity) + 1.4))
image = axis.imshow(sensitivity.to_numpy(), cmap="viridis", aspect="auto")
axis.set_xticks(range(len(families)), families, rotation=30, ha="right", fontsize=8)
axis.set_yticks(range(len(sensitivity)), [f"{m} ({p})" for m, p in sensitivity.index], fontsize=8)
plots.colour_tick_labels(axis.get_yticklabels(), sensitivity.index.get_level_values("paradigm"))
for (i, j), value in np.ndenumerate(sensitivity.to_numpy()):
    axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6.5,
              color="white" if value < np.nanmedian(sensitivity.to_numpy()) else "black")
fig.colorbar(image, ax=axis, label="sensitivity (relative distance)")
fig.tight_layout()
glue("fig_sensitivity", fig, display=False)
plt.close(fig)

by_family = sensitivity.median(axis=0).sort_values()
glue("least_family", by_family.index[0], display=False)
glue("least_family_value", f"{by_family.iloc[0]:.2f}", display=False)
glue("most_family", by_family.index[-1], display=False)
glue("most_family_value", f"{by_family.iloc[-1]:.2f}", display=False)
by_paradigm = sensitivity.groupby(level="paradigm", sort=False).mean()
by_paradigm.round(2)

# %% [markdown]
# ```{glue:figure} fig_sensitivity
# :name: "fig-sensitivity"
#
# Sensitivity of every profiled model (the `profile_seeds` models; rows, grouped by paradigm, names coloured by it) to every family (columns): the mean
# relative distance of the views from the clean image. Read across a row for a model's invariance
# fingerprint, and down a column to see whether models of the same paradigm agree.
# ```
#
# Across models, the median sensitivity is lowest for **{glue:text}`least_family`**
# ({glue:text}`least_family_value`) and highest for **{glue:text}`most_family`**
# ({glue:text}`most_family_value`); the table above the figure averages each paradigm's models.
# These are distances from one clean point; whether the *shape* of the manifolds (their local
# dimension, spread and curvature) follows the paradigm is what the next two chapters test with
# manifold graph metrics.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-aug-rerun
#
# Rerun this chapter with `seed = 1` and `n_base = 100` (for example
# `papermill 02_augmentation_manifolds.ipynb out.ipynb -p seed 1 -p n_base 100`). Which
# sensitivities in {numref}`fig-sensitivity` change by more than a few hundredths, and what does that
# say about how many base images a stable estimate needs?
# ```
#
# ```{solution} ex-aug-rerun
# :class: dropdown
#
# Another seed draws other base images (and another noise field). Sensitivities are means over
# `n_base` images, so their run-to-run change shrinks roughly like $1/\sqrt{n_\text{base}}$. Families
# whose effect depends strongly on the image vary most between seeds (a shift crops a wide coat
# at the border but only moves a narrow trouser leg, for instance); compare the change against the
# gaps between paradigms before reading anything into those gaps.
# ```
#
# ```{exercise}
# :label: ex-aug-identity
#
# Why does every family need an exact identity strength, and why must the grids of two-sided
# families (rotation, shift, brightness, contrast) have an odd number of points?
# ```
#
# ```{solution} ex-aug-identity
# :class: dropdown
#
# The clean feature $\bar f(x)$ is the reference of every invariance profile and the anchor of each
# trajectory; it must be one of the views, computed exactly like the others. `augment.grid` spaces
# points evenly between the two ends; with a range symmetric about the identity, only an odd number
# of points puts one on the identity, and `grid` raises an error otherwise.
# ```
#
# ```{exercise}
# :label: ex-aug-normalise
#
# The profiles use L2-normalised features. Rebuild one model's rotation manifold with
# `manifolds.augmentation_manifolds(name, families=["rotation"], normalize=False)` and compare the
# raw distances from the clean feature with the normalised ones. What does normalisation remove?
# ```
#
# ```{solution} ex-aug-normalise
# :class: dropdown
#
# Raw distances mix two effects: the feature vector turning (a change of direction) and its norm
# growing or shrinking (e.g. a darker image giving smaller activations after ReLUs). On the unit
# sphere only the change of direction remains, which is what cosine-based neighbourhoods and NNK
# graphs see, and distances are comparable across models whose feature scales differ.
# ```
