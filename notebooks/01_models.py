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
# # The model zoo
#
# **What you will learn.** Which self-supervised models the book studies and how they were trained
# on a laptop-sized budget; how their training went; how good their features are by the standard
# yardsticks (linear probe, kNN accuracy) and whether any of them collapsed (effective rank); what
# their nearest neighbours look like; how published ResNet-50 checkpoints load through the same
# function; and how to add a model of your own.
#
# Every later chapter reads models through one call, `sslgeom.zoo.load(name)`, which returns the
# backbone (features *before* any projection head, shape `(batch, dim)`) and the preprocessing that
# turns a `uint8` image batch `(batch, channels, height, width)` into the backbone's input. The
# default zoo was trained by `make zoo` (the script `scripts/train_zoo.py`) on the Fashion-MNIST
# train split without its labels, and its checkpoints ship with the book in `data/zoo/`.
#
# Library functions this chapter calls (see the API reference): {py:func}`~sslgeom.zoo.load`, {py:func}`~sslgeom.zoo.names`, {py:func}`~sslgeom.zoo.manifest`, {py:func}`~sslgeom.zoo.save_checkpoint`, {py:func}`~sslgeom.plots.model_ranking`.

# %% tags=["parameters"]
profile = "default"
seed = 0
device = "cpu"
neighbour_models = ["random-convnet", "simclr-convnet-s0", "barlowtwins-convnet-s0", "swav-convnet-s0", "supervised-convnet"]
n_queries = 4  # query images in the nearest-neighbour figure
n_neighbours = 6  # neighbours shown per query
n_gallery = 5000  # test images searched for neighbours
smoothing = 10  # steps in the moving average of the training curves

# %% tags=["remove-cell"]
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from myst_nb import glue

from sslgeom import data, evaluation, params, plots, published, zoo
from sslgeom.ssl_augment import random_views

params.check_common(profile, seed, device)
params.check(
    {"neighbour_models": neighbour_models, "n_queries": n_queries, "n_neighbours": n_neighbours,
     "n_gallery": n_gallery, "smoothing": smoothing},
    {"neighbour_models": {"type": list, "items": str, "min_length": 1},  # names: checked against the zoo below
     "n_queries": {"type": int, "minimum": 1, "maximum": 12},
     "n_neighbours": {"type": int, "minimum": 1, "maximum": 20},
     "n_gallery": {"type": int, "minimum": 100, "maximum": 10000}, "smoothing": {"type": int, "minimum": 1}},
)
unknown = sorted(set(neighbour_models) - set(zoo.names()))
if unknown:
    raise ValueError(f"neighbour_models has unknown names {unknown}; choose from {zoo.names(include_published=False)}")

# %% [markdown]
# ## How the zoo was trained
#
# Eight self-supervised methods, each built from the losses and heads of the `lightly` library on top
# of our own small backbones, cover the three paradigms the paper compares:
#
# ```{prf:definition} Paradigms of self-supervised learning
# :label: def-paradigms
#
# - **Contrastive** methods pull two views of an image together and push views of *other* images
#   away: SimCLR {cite}`chen2020simple` (negatives from the batch) and MoCo-v2 {cite}`chen2020improved`
#   (negatives from a queue filled by a momentum encoder).
# - **Non-contrastive** methods use no negatives and avoid collapse by architecture or by a
#   regulariser: BYOL {cite}`grill2020bootstrap` (predictor and momentum target), SimSiam
#   {cite}`chen2021exploring` (predictor and stop-gradient), Barlow Twins {cite}`zbontar2021barlow`
#   (cross-correlation pushed to the identity) and VICReg {cite}`bardes2022vicreg` (variance, invariance
#   and covariance terms).
# - **Clustering** methods assign views to learned prototypes or to a sharpened teacher distribution
#   and predict one view's assignment from the other: SwAV {cite}`caron2020unsupervised` (Sinkhorn codes)
#   and DINO {cite}`caron2021emerging` (centred, sharpened teacher).
# ```
#
# Every method is trained on two backbones with a strong augmentation policy: a plain four-block
# ConvNet and a narrow ResNet. The ConvNet is trained a third time with a weak policy (larger crops,
# milder jitter, no blur), except for SimSiam, SwAV and MoCo-v2: with the weak policy they did not
# clear the quality bar described below, even when trained twice as long. In their place the zoo has
# a second seed of the strong-policy ConvNet for SimSiam, SwAV and SimCLR (MoCo-v2's second seed also
# fell short). The measurements behind these choices are recorded in `scripts/train_zoo.py`; a zoo
# that keeps only the models that pass a bar is a selected zoo, and the chapters that compare
# paradigms should be read with that in mind.
# Views are drawn independently for every image of a batch (the
# `sslgeom.ssl_augment` module applies per-image crop boxes, flips, jitter factors and blur widths in
# one batched operation; a test checks that two copies of one image get different views). Two
# references share the protocol: a **supervised** backbone trained with labels and the same
# augmentations, and the **random** initialisation every model starts from.

# %%
table = zoo.manifest()
ssl_rows = table[~table.paradigm.isin(["supervised", "random"])]
columns = ["name", "method", "paradigm", "backbone", "policy", "seed", "epochs", "n_train", "train_seconds",
           "final_loss", "probe_accuracy", "knn_accuracy", "effective_rank", "size_bytes"]
table[columns].style.format({"probe_accuracy": "{:.3f}", "knn_accuracy": "{:.3f}", "effective_rank": "{:.1f}",
                             "train_seconds": "{:.0f}", "final_loss": "{:.3f}", "size_bytes": "{:,}"}, na_rep="")

# %% tags=["remove-cell"]
glue("n_models", len(table), display=False)
glue("n_ssl", len(ssl_rows), display=False)
glue("zoo_mb", f"{table.size_bytes.sum() / 2**20:.1f}", display=False)
glue("train_minutes", f"{table.train_seconds.sum() / 60:.0f}", display=False)
epochs_by_method = ssl_rows.groupby("method").epochs.max()
common_epochs = int(ssl_rows.epochs.mode().iloc[0])
longer = epochs_by_method[epochs_by_method != common_epochs]
glue("epochs", common_epochs, display=False)
glue("epochs_exceptions", "; ".join(f"{m} {e}" for m, e in longer.items()) or "none", display=False)
glue("n_train_images", f"{int(ssl_rows.n_train.iloc[0]):,}", display=False)
glue("batch_size", int(ssl_rows.config.iloc[0]["batch_size"]), display=False)

# %% [markdown]
# The zoo holds {glue:text}`n_models` models, {glue:text}`n_ssl` of them self-supervised, stored in
# half precision ({glue:text}`zoo_mb` MB in all). Each self-supervised model saw a random subset of
# {glue:text}`n_train_images` training images for {glue:text}`epochs` epochs with batches of
# {glue:text}`batch_size`, AdamW and a cosine learning-rate schedule. Methods that learn through a
# predictor and a momentum or stop-gradient target start slowly and were given more epochs (epochs
# per method where they differ: {glue:text}`epochs_exceptions`). The training times of all models add
# up to {glue:text}`train_minutes` minutes; `make zoo` trains two models at a time, one per core, on
# a CPU shared with other jobs, so the times in the table are wall-clock times under load. This is a tiny budget next to the
# hundreds of ImageNet epochs behind published models: the zoo is meant to have *varied* geometry,
# not state-of-the-art accuracy.
#
# Here are the two augmentation policies, applied to the same image eight times:

# %% tags=["hide-input"]
train_images, train_labels = data.load_fashion_mnist("train")
example = torch.from_numpy(train_images[:1])[:, None].repeat(8, 1, 1, 1)
policies = ["strong", "weak"]
strips = [torch.cat([example[:1] / 255.0, random_views(example, policy, torch.Generator().manual_seed(seed))])
          for policy in policies]  # views are floats in [0, 1]: the original is scaled to match
fig, _ = plots.image_grid(torch.stack(strips), row_labels=policies, col_labels=["original"] + [""] * 8,
                          vmin=0, vmax=1, cell_size=(1.0, 1.15))
glue("fig_views", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_views
# :name: "fig-views"
#
# Eight random training views of one image under the strong (top) and weak (bottom) policies. Every
# view has its own crop, flip, contrast and blur even though all eight come from one batched call:
# this is what "augmentations drawn per image" means.
# ```
#
# ## Training curves
#
# Losses of different methods live on different scales (a negative cosine similarity, a
# cross-entropy, a sum of regularisers), so each method gets its own panel and its own vertical axis.

# %% tags=["hide-input"]
raw = zoo.read_manifest()["models"]
trained = [entry for entry in raw if entry["step_losses"]]
methods = list(dict.fromkeys(entry["method"] for entry in trained))
n_cols = 5
n_rows = int(np.ceil(len(methods) / n_cols))
fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 2.2 * n_rows), sharex=True, squeeze=False)
kernel = np.ones(smoothing) / smoothing
for axis, method in zip(axes.flat, methods):
    for entry in (e for e in trained if e["method"] == method):
        losses = np.asarray(entry["step_losses"])
        smooth = np.convolve(losses, kernel, mode="valid") if len(losses) > smoothing else losses
        variant = entry["backbone"] + ("" if entry["policy"] == "strong" else f", {entry['policy']}")
        variant += f", seed {entry['seed']}" if entry["seed"] else ""
        axis.plot(smooth, label=variant, lw=1.2)
    axis.set_title(method, fontsize=9)
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=6)
for axis in axes.flat[len(methods):]:
    axis.axis("off")
fig.supxlabel("training step", fontsize=9)
fig.supylabel("training loss (each panel on its own scale)", fontsize=9)
fig.tight_layout()
glue("fig_curves", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_curves
# :name: "fig-curves"
#
# Training loss per step (moving average), one panel per method, one line per variant (backbone,
# policy, seed). A flat curve would be a run that learned nothing; compare the shapes
# within a panel to see whether backbone and augmentation policy changed how the optimisation went.
# Losses with negatives (SimCLR, MoCo-v2) or with a moving target (BYOL, DINO) need not decrease
# monotonically: the task gets harder as the encoder improves.
# ```
#
# ## Are the features any good?
#
# Each model is checked with one protocol, written once in `sslgeom.evaluation` and used for every model
# (including the two references): features of the backbone (global average pooling, before any head)
# for a fixed random subset of the train split and of the test split; a **linear probe** (standardised
# features, multinomial logistic regression with its regularisation chosen on a validation split,
# refit, test accuracy); a **kNN** classifier (cosine similarity, 20 neighbours, majority vote); and
# the **effective rank** of the test features. The linear probe is the one the transfer chapter uses,
# with the same grid of six regularisation strengths, so the two chapters agree on a model's accuracy
# for the same images.
#
# ```{prf:definition} Effective rank
# :label: def-effective-rank
#
# Let $\sigma_1, \dots, \sigma_r$ be the singular values of the centred feature matrix
# $F - \bar F \in \mathbb{R}^{n \times d}$ and $p_i = \sigma_i / \sum_j \sigma_j$. The effective rank
# (Roy and Vetterli, 2007; used as a collapse detector by {cite:t}`garrido2023rankme`) is
#
# $$
# \operatorname{erank}(F) = \exp\Big(-\sum_{i=1}^{r} p_i \log p_i\Big),
# $$
#
# which equals $d$ for isotropic features and $1$ when all points lie on a line. A collapsed
# representation, the failure mode of non-contrastive methods, has an effective rank near 1.
# ```

# %% tags=["hide-input"]
random_probe = table[table.paradigm == "random"].set_index("backbone").probe_accuracy
by_name = table.set_index("name")
fig, (ax_probe, ax_rank) = plt.subplots(1, 2, figsize=(11, 0.24 * len(by_name) + 1.2), sharey=True)
# ranked by probe accuracy within each backbone, so each backbone's random baseline is one line
order = plots.model_ranking(ax_probe, by_name.probe_accuracy, by_name.paradigm, groups=by_name.backbone)
positions = np.arange(len(order))
ax_probe.scatter(by_name.knn_accuracy[order], positions, marker="|", color="black", s=60, label="kNN accuracy", zorder=3)
for backbone, accuracy in random_probe.items():
    rows = positions[(by_name.backbone[order] == backbone).to_numpy()]
    ax_probe.plot([accuracy + 0.02] * 2, [rows.min() - 0.5, rows.max() + 0.5], "k--", lw=1)
ax_probe.set_xlim(min(by_name.knn_accuracy.min(), by_name.probe_accuracy.min()) - 0.02, by_name.probe_accuracy.max() + 0.01)
ax_probe.set_xlabel("Fashion-MNIST test accuracy")
ax_probe.legend(fontsize=8, loc="lower right")
plots.model_ranking(ax_rank, by_name.effective_rank, by_name.paradigm, order=order)
ax_rank.set_xlabel("effective rank of test features")
fig.legend(handles=plots.legend_handles(by_name.paradigm), loc="upper center", ncol=5, fontsize=8)
fig.tight_layout(rect=(0, 0, 1, 0.96))
glue("fig_probe", fig, display=False)
plt.close(fig)

gain = ssl_rows.probe_accuracy - ssl_rows.backbone.map(random_probe)
glue("min_gain", f"{100 * gain.min():.1f}", display=False)
glue("min_gain_model", ssl_rows.name[gain.idxmin()], display=False)
glue("max_probe", f"{100 * ssl_rows.probe_accuracy.max():.1f}", display=False)
glue("max_probe_model", ssl_rows.name[ssl_rows.probe_accuracy.idxmax()], display=False)
glue("random_convnet_probe", f"{100 * random_probe.get('convnet', np.nan):.1f}", display=False)
glue("random_resnet_probe", f"{100 * random_probe.get('resnet', np.nan):.1f}", display=False)
glue("min_rank", f"{ssl_rows.effective_rank.min():.1f}", display=False)
glue("n_beat", int((gain >= 0.02).sum()), display=False)
random_rank = table[table.paradigm == "random"].set_index("backbone").effective_rank
glue("n_rank_below_random", int((ssl_rows.effective_rank < ssl_rows.backbone.map(random_rank)).sum()), display=False)

# %% [markdown]
# ```{glue:figure} fig_probe
# :name: "fig-probe"
#
# Left: linear-probe accuracy (bars) and kNN accuracy (ticks) on Fashion-MNIST for every model,
# grouped by backbone and coloured by paradigm; the dashed line is the random initialisation of that
# backbone plus two points, the bar every self-supervised model is required to clear. Right: the
# effective rank of each model's test features; a collapsed model would sit near 1.
# ```
#
# A randomly initialised network is a strong baseline on Fashion-MNIST: its features already give
# {glue:text}`random_convnet_probe`% (ConvNet) and {glue:text}`random_resnet_probe`% (ResNet) with
# a linear probe. {glue:text}`n_beat` of the {glue:text}`n_ssl` self-supervised models beat their
# backbone's random initialisation by at least two points; the smallest margin is
# {glue:text}`min_gain_model` with {glue:text}`min_gain` points, the best probe is
# {glue:text}`max_probe_model` with {glue:text}`max_probe`%. The lowest effective rank among them is
# {glue:text}`min_rank` (a collapsed model would be near 1).
#
# ## Nearest neighbours
#
# What a model considers similar is the raw material of the geometry chapters. For a few test images
# we list their nearest neighbours (cosine similarity of the features) among other test images.

# %% tags=["hide-input"]
test_images, test_labels = data.load_fashion_mnist("test")
rng = np.random.default_rng(seed)
gallery = rng.choice(len(test_images), size=n_gallery, replace=False)
queries = gallery[:n_queries]
gallery_images = torch.from_numpy(test_images[gallery])[:, None]
agreement, grid_rows, grid_cmaps, grid_labels = {}, [], [], []
for name in neighbour_models:
    model = zoo.load(name, device=device)
    features = model.features(gallery_images, device=device)
    # the queries are the first gallery images; a query is not its own neighbour
    neighbours = evaluation.cosine_neighbours(features[:n_queries], features, n_neighbours, exclude=np.arange(n_queries))
    same_class = test_labels[gallery][neighbours] == test_labels[queries][:, None]  # (n_queries, n_neighbours)
    agreement[name] = float(same_class.mean())
    for q in range(n_queries):  # one grid row per query: the query, then its neighbours
        grid_rows.append(np.concatenate([test_images[queries[q]][None], test_images[gallery[neighbours[q]]]]))
        grid_cmaps.append(["gray_r"] + ["Greens" if same else "Reds" for same in same_class[q]])
        grid_labels.append(name if q == 0 else "")
fig, _ = plots.image_grid(np.stack(grid_rows), row_labels=grid_labels, col_labels=["query"] + [""] * n_neighbours,
                          cmap=grid_cmaps, cell_size=(0.75, 0.8), fontsize=6)
glue("fig_neighbours", fig, display=False)
plt.close(fig)
neighbour_table = pd.Series(agreement, name="neighbours with the query's class").to_frame()
glue("best_neighbour_model", max(agreement, key=agreement.get), display=False)
glue("best_neighbour_share", f"{100 * max(agreement.values()):.0f}", display=False)
glue("worst_neighbour_model", min(agreement, key=agreement.get), display=False)
glue("worst_neighbour_share", f"{100 * min(agreement.values()):.0f}", display=False)
neighbour_table

# %% [markdown]
# ```{glue:figure} fig_neighbours
# :name: "fig-neighbours"
#
# For each model (block of rows) and query image (first column), the nearest test images in feature
# space; green neighbours share the query's class, red ones do not. The table above gives, per model,
# the fraction of the shown neighbours that share the query's class.
# ```
#
# With these queries, {glue:text}`best_neighbour_model` has the most same-class neighbours
# ({glue:text}`best_neighbour_share`%) and {glue:text}`worst_neighbour_model` the fewest
# ({glue:text}`worst_neighbour_share`%). A few queries are a small sample: the kNN accuracies of the
# table at the top of the chapter are the reliable comparison.
#
# ## Published checkpoints
#
# The paper studies ResNet-50 models released by their authors and trained on ImageNet. Their
# registry lives in `sslgeom.published`: the source, the layout of the file's keys (a prefix such as
# `module.encoder_q.`, nesting under `state_dict` or `model`, heads to drop) and the input
# normalisation. Loading one is the same call as for the default zoo, `zoo.load("published/moco-v2")`,
# once the file is in the folder named by `$SSLGEOM_CHECKPOINTS` or in the cache; without it the error
# says where to put the file and where to get it. The page {ref}`published-checkpoints` explains how
# to run the whole book on them.

# %%
registry = pd.DataFrame(
    [{"name": f"published/{s.key}", "method": s.method, "paradigm": s.paradigm, "nesting": "/".join(s.nesting) or "-",
      "prefix": s.prefix or "-", "ImageNet normalisation": s.normalize,
      "available here": any((d / s.filename).is_file() for d in published.search_dirs())}
     for s in published.REGISTRY.values()]
)
registry

# %% [markdown]
# ## Adding your own model
#
# Any backbone that maps images to `(batch, dim)` features can join the zoo: save its weights with
# `zoo.save_checkpoint` (half precision, safetensors, atomic, returns the SHA-256) and add an entry to the
# manifest. The cell below does this in a temporary directory (`$SSLGEOM_ZOO_DIR` points the zoo
# elsewhere) with a freshly initialised ResNet, then loads it back through the common API. To
# train a new method instead, register it in `sslgeom.ssl_methods.METHODS` and add it to
# `scripts/train_zoo.py`; `make zoo` then trains only what is missing.

# %%
from sslgeom.models import build_backbone

with tempfile.TemporaryDirectory() as folder, zoo.use_zoo_dir(folder):
    my_backbone = build_backbone("resnet", seed=seed)
    sha256 = zoo.save_checkpoint(my_backbone, os.path.join(folder, "my-model.safetensors"))
    entry = {"name": "my-model", "method": "random", "paradigm": "random", "backbone": "resnet",
             "file": "my-model.safetensors", "sha256": sha256}
    zoo.write_manifest({"models": [entry]})
    mine = zoo.load("my-model")
    images = torch.from_numpy(test_images[:5])[:, None]
    print("my-model features:", mine.features(images).shape, "sha256", mine.info["sha256"][:12], "...")

# %% [markdown]
# ## Exercises
#
# ```{exercise}
# :label: ex-models-neighbours
#
# Rerun this chapter with other models in the nearest-neighbour figure, for example
# `-p neighbour_models '["random-resnet", "simclr-resnet-s0", "simclr-convnet-weak-s0"]'` and
# `-p n_queries 8`. Which model's neighbours agree most often with the query's class, and does that
# order match the kNN accuracies in the table?
# ```
#
# ```{solution} ex-models-neighbours
# :class: dropdown
#
# The same-class fraction of the first few neighbours is a small-sample version of kNN accuracy, so
# with enough queries the ordering follows the `knn_accuracy` column; with four queries it is noisy.
# A model trained with the weak policy was asked to be invariant to less (small crops, blur), so it
# may keep more information about position and contrast; look whether its neighbours share the
# query's layout across classes more often than those of the strong-policy model.
# ```
#
# ```{exercise}
# :label: ex-models-rank
#
# Compute the effective rank of the random ConvNet's features on 1,000 test images after replacing
# every feature vector by its sign. Is a large effective rank enough to say that a representation is
# useful?
# ```
#
# ```{solution} ex-models-rank
# :class: dropdown
#
# Use `model = zoo.load("random-convnet")`, `f = np.sign(model.features(images))` and
# `sslgeom.baselines.effective_rank(f)`. Pooled features after a ReLU are non-negative, so their signs are
# almost all `+1`: the effective rank falls towards 1 although the original features were fine. The
# table of this chapter shows the converse: {glue:text}`n_rank_below_random` of the
# {glue:text}`n_ssl` self-supervised models have a *lower* effective rank than the random
# initialisation of their backbone, yet every one of them probes better. Effective rank detects
# collapse; it does not rank useful representations.
# ```
#
# ```{exercise}
# :label: ex-models-own
#
# Add a model of your own: train `sslgeom.train.train_model(TrainConfig("vicreg", "convnet", epochs=1))`
# on the Fashion-MNIST train split, save it with `zoo.save_checkpoint`, and compare its linear probe
# (`sslgeom.evaluation.linear_probe`) with `vicreg-convnet-s0`.
# ```
#
# ```{solution} ex-models-own
# :class: dropdown
#
# One epoch is less than the zoo's budget (the `epochs` column of the table), so expect the probe to
# land between the random initialisation and the zoo's model. Pass the images as `torch.from_numpy(images)[:, None]` and use
# the same probe subsets as the manifest (`scripts/train_zoo.py`, function `probe_split`) so the numbers
# are comparable.
# ```
