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
# # The data
#
# **What you will learn.** Which images every later chapter is computed on, where they come from
# without an internet connection, how the files are verified, and what the three transfer targets
# look like next to the source domain.
#
# The models of this book are trained, without labels, on **Fashion-MNIST**
# {cite}`xiao2017fashion`: 70,000 grayscale 28x28 pictures of clothing in ten classes. Its labels are
# used only to *evaluate* the models (linear probes, kNN accuracy) and to group points into per-class
# semantic manifolds. Transfer is measured on targets the models never saw during training:
# scikit-learn's **handwritten digits** (8x8 scans, resized) and **texture patches** cut from the sample
# images that ship with scikit-image {cite}`van2014scikit`, plus corrupted Fashion-MNIST (built in the
# transfer chapter).
#
# Library functions this chapter calls (see the API reference): {py:func}`~sslgeom.data.load_fashion_mnist`, {py:func}`~sslgeom.data.load_digits_task`, {py:func}`~sslgeom.data.load_textures_task`, {py:func}`~sslgeom.plots.image_grid`.

# %% tags=["parameters"]
profile = "default"
seed = 0
device = "cpu"
images_per_class = 8  # how many examples of each class the grids show
texture_patches_per_class = 300

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from myst_nb import glue

from sslgeom import data, params, plots

params.check_common(profile, seed, device)
params.check(
    {"images_per_class": images_per_class, "texture_patches_per_class": texture_patches_per_class},
    {"images_per_class": {"type": int, "minimum": 1, "maximum": 100},
     "texture_patches_per_class": {"type": int, "minimum": 5}},
)

# %% [markdown]
# ## Fashion-MNIST, read and verified offline
#
# `sslgeom.data.load_fashion_mnist` reads the four gzipped IDX files of the release. On Debian
# machines they come from the package `dataset-fashion-mnist`; elsewhere from a directory named by the
# environment variable `SSLGEOM_FASHION_MNIST_DIR`, or from a verified download into the cache. Every
# file is checked against the SHA-256 of its decompressed content before any pixel is used, so a
# truncated or altered copy stops the run with an error that names the file instead of silently
# producing different numbers.

# %%
train_images, train_labels = data.load_fashion_mnist("train")
test_images, test_labels = data.load_fashion_mnist("test")
print(f"train: images {train_images.shape} {train_images.dtype}, labels {train_labels.shape}")
print(f"test:  images {test_images.shape} {test_images.dtype}, labels {test_labels.shape}")

# %% tags=["remove-cell"]
glue("n_train", f"{len(train_labels):,}", display=False)
glue("n_test", f"{len(test_labels):,}", display=False)
glue("mean_pixel", f"{train_images.mean():.1f}", display=False)


def class_grid(images: np.ndarray, labels: np.ndarray, class_names, per_class: int, rng) -> plt.Figure:
    """A grid with one row per class and ``per_class`` random examples of it."""
    shown = plots.class_examples(labels, len(class_names), per_class, rng)
    fig, _ = plots.image_grid(images[shown], row_labels=list(class_names))
    return fig


fig = class_grid(test_images, test_labels, data.FASHION_CLASSES, images_per_class, np.random.default_rng(seed))
glue("fig_fashion_grid", fig, display=False)
plt.close(fig)

# %% [markdown]
# The split sizes are {glue:text}`n_train` training and {glue:text}`n_test` test images; the mean
# pixel value of the training set is {glue:text}`mean_pixel` on the 0-255 scale, so most of each
# image is background.
#
# ```{glue:figure} fig_fashion_grid
# :name: "fig-fashion-grid"
#
# Random Fashion-MNIST test images, one row per class. Look at which classes share silhouettes
# (T-shirt/top, Pullover, Coat and Shirt differ mostly in sleeves and texture) and which are easy
# (Trouser, Bag): the semantic manifolds of later chapters inherit these overlaps.
# ```

# %% tags=["remove-cell"]
counts = pd.DataFrame(
    {
        "class": data.FASHION_CLASSES,
        "train": data.class_counts(train_labels, 10),
        "test": data.class_counts(test_labels, 10),
    }
)
fig, axis = plt.subplots(figsize=(7, 2.8))
positions = np.arange(len(counts))
axis.bar(positions - 0.2, counts["train"] / counts["train"].sum(), width=0.4, label="train")
axis.bar(positions + 0.2, counts["test"] / counts["test"].sum(), width=0.4, label="test")
axis.set_xticks(positions, counts["class"], rotation=35, ha="right", fontsize=8)
axis.set_ylabel("fraction of split")
axis.set_ylim(0, 0.13)
axis.legend(frameon=False, ncol=2, loc="upper center")
fig.tight_layout()
glue("fig_class_balance", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_class_balance
# :name: "fig-class-balance"
#
# Fraction of each class in the train and test splits. Every bar has the same height: Fashion-MNIST is
# exactly balanced, so chance accuracy is 10% and per-class manifolds all have the same number of
# points.
# ```

# %%
counts

# %% [markdown]
# ## Transfer targets
#
# Transfer is measured on images the models never saw. Both out-of-domain targets ship inside
# Python packages, so the book needs no download:
#
# - **digits**: scikit-learn's 1,797 handwritten digits {cite}`alpaydin1998optical`, 8x8 with 17 grey
#   levels, rescaled to 0-255 and resized to 28x28. Split per class 50/20/30 into train, validation and test.
# - **textures**: patches cut from scikit-image sample images (brick, grass, gravel, the moon's surface,
#   a cell micrograph, a deep-field telescope image, an immunohistochemistry slide, printed text), one
#   class per source image. Each source is cut into a left band (train), a middle band (validation)
#   and a right band (test), so no two splits share pixels.

# %%
digits = data.load_digits_task(size=28, seed=seed)
textures = data.load_textures_task(size=28, seed=seed, patches_per_class=texture_patches_per_class)
targets = pd.DataFrame(
    [
        {"task": task.name, "classes": len(task.classes), **task.split_sizes()}
        for task in (digits, textures)
    ]
)
targets

# %% tags=["remove-cell"]
glue("n_digits", f"{sum(digits.split_sizes().values()):,}", display=False)
glue("n_textures", f"{sum(textures.split_sizes().values()):,}", display=False)
for task in (digits, textures):
    images, labels = task.train
    fig = class_grid(images, labels, task.classes, min(images_per_class, 6), np.random.default_rng(seed))
    glue(f"fig_{task.name}_grid", fig, display=False)
    plt.close(fig)

# %% [markdown]
# The digits task has {glue:text}`n_digits` images and the texture task {glue:text}`n_textures`.
#
# ```{glue:figure} fig_digits_grid
# :name: "fig-digits-grid"
#
# Digits resized from 8x8 to 28x28, one row per class (dark = high pixel values, as in the
# Fashion-MNIST grid). They are blurry, thick strokes on an empty background: the shapes are new to
# the models, but like Fashion-MNIST each image is one centred object on zero-valued background.
# ```
#
# ```{glue:figure} fig_textures_grid
# :name: "fig-textures-grid"
#
# Texture patches, one row per source image. Unlike Fashion-MNIST there is no object on a blank
# background: every pixel carries texture. This is the target farthest from the training domain.
# ```

# %% [markdown]
# ## Licences of the data
#
# The book redistributes no dataset: each one is read from a package installed on the machine. Their
# licences, as their distributors state them:
#
# | data | where it comes from here | licence |
# |---|---|---|
# | Fashion-MNIST {cite}`xiao2017fashion` | Debian package `dataset-fashion-mnist` (or `$SSLGEOM_FASHION_MNIST_DIR`) | MIT licence (Zalando Research) |
# | handwritten digits | `sklearn.datasets.load_digits`, a copy of the UCI "Optical Recognition of Handwritten Digits" test set | CC BY 4.0 (UCI Machine Learning Repository) |
# | textures: `brick`, `gravel` | `skimage.data` | CC0 (from CC0Textures, as the scikit-image docstrings state) |
# | textures: `grass` | `skimage.data` | CC0 (DeviantArt, linolafett) |
# | textures: `cell` | `skimage.data` | CC0, dedicated to the public domain |
# | textures: `text` | `skimage.data` | no known copyright restrictions, public domain |
# | textures: `hubble_deep_field` | `skimage.data` | NASA image, free to use in the public domain |
# | textures: `immunohistochemistry` | `skimage.data` | no known copyright restrictions |
# | textures: `moon` | `skimage.data` | shipped with scikit-image (BSD-3-Clause); its docstring states no separate licence |
#
# The code of the book is under the MIT licence (`LICENSE` at the top of the repository); `CITATION.cff`
# says how to cite it and the paper it reproduces.

# ## Exercises
#
# ```{exercise}
# :label: ex-data-balance
#
# The texture task is built so that train, validation and test patches come from disjoint bands of
# each source image. What would go wrong with transfer accuracies if patches were drawn anywhere in
# the image for every split?
# ```
#
# ```{solution} ex-data-balance
# :class: dropdown
#
# Overlapping patches would put nearly identical pixels in train and test, so a linear probe could
# memorise local appearance and the test accuracy would measure memory rather than transfer. The
# gap between models would shrink and the ranking could change for reasons unrelated to geometry.
# ```
#
# ```{exercise}
# :label: ex-data-rerun
#
# Rerun this chapter with `seed: 1` and `images_per_class: 12` (edit the `00_data` section of
# `params/default.yaml`, then `make chapter NB=00`). Which numbers on this page change, and which
# cannot change? Why?
# ```
#
# ```{solution} ex-data-rerun
# :class: dropdown
#
# The image grids show other random examples and the digits/texture splits are re-drawn (same sizes,
# other members), but the Fashion-MNIST split sizes, the mean pixel value and the class balance are
# properties of the fixed release and stay identical: the seed only chooses *which* images are shown
# or assigned to a split.
# ```
