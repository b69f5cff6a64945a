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
# # Geometry across training paradigms
#
# **What you will learn.** How to turn the manifold graph metrics (MGMs) of one model into a single
# *geometry vector*; how to compare models through distances between these vectors, hierarchical
# clustering and a two-dimensional map; how to test, with a permutation null, whether the clusters
# follow the training paradigm (contrastive, non-contrastive, clustering-based), the backbone or the
# augmentation policy; which metrics differ most between paradigms; and whether the answer survives
# other choices of `k`, kernel, number of base images, and plain kNN neighbourhoods instead of NNK.
#
# The claim under test is the first of the paper {cite}`cosentino2022geometry`: *the geometry of SSL
# models is not tied to their training paradigm*. This chapter measures it on the book's own zoo; the
# paper's zoo of published ImageNet models is not used here.
#
# Library functions this chapter calls (see the API reference): {py:func}`~sslgeom.geometry.geometry_table`, {py:func}`~sslgeom.paradigm.geometry_vectors`, {py:func}`~sslgeom.paradigm.model_distances`, {py:func}`~sslgeom.paradigm.cluster_models`, {py:func}`~sslgeom.paradigm.effect_sizes`, {py:func}`~sslgeom.export.export_table`.

# %% tags=["parameters"]
profile = "default"
seed = 0
device = "cpu"
models = None  # list of zoo names, or None for the default zoo
models_per_paradigm = 0  # if models is None, keep only the first N models of each paradigm (0 keeps all)
paradigms = ["contrastive", "non-contrastive", "clustering"]  # the SSL paradigms compared
k = 20  # kNN candidates of the semantic NNK graphs
kernel = "cosine"
n_per_class = 100  # semantic manifold: test images per class
n_base = 30  # augmentation manifolds: base images
n_views = 16  # composition manifold: random views per base image (0 skips it)
k_augmentation = 10  # candidates of the augmentation graphs
statistics = ["mean", "median"]  # node summaries entering the geometry vector
linkage_method = "average"
n_permutations = 2000
sensitivity_k = [10, 30]  # other k for the sensitivity analysis ([] skips)
sensitivity_kernel = "gaussian"  # other kernel ("" skips)
sensitivity_n_base = 15  # fewer base images (0 skips)

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from myst_nb import glue
from scipy.cluster.hierarchy import dendrogram

from sslgeom import export, geometry, mgm, paradigm, params, plots, zoo

params.check_common(profile, seed, device)
params.check(
    {"models": models, "models_per_paradigm": models_per_paradigm, "paradigms": paradigms,
     "k": k, "kernel": kernel, "n_per_class": n_per_class, "n_base": n_base, "n_views": n_views,
     "k_augmentation": k_augmentation, "statistics": statistics, "linkage_method": linkage_method,
     "n_permutations": n_permutations, "sensitivity_k": sensitivity_k,
     "sensitivity_kernel": sensitivity_kernel, "sensitivity_n_base": sensitivity_n_base},
    {"models": {"type": (list, type(None)), "items": str, "min_length": 1},  # names: checked by the zoo
     "models_per_paradigm": {"type": int, "minimum": 0},
     "paradigms": {"type": list, "items": str, "choices": list(plots.PARADIGM_COLOURS), "min_length": 1},
     "k": {"type": int, "minimum": 2}, "kernel": {"type": str, "choices": ["cosine", "gaussian"]},
     "n_per_class": {"type": int, "minimum": 5, "maximum": 1000}, "n_base": {"type": int, "minimum": 0},
     "n_views": {"type": int, "minimum": 0}, "k_augmentation": {"type": int, "minimum": 2},
     "n_permutations": {"type": int, "minimum": 99},
     "linkage_method": {"type": str, "choices": ["average", "complete", "single", "ward"]},
     "statistics": {"type": list, "items": str, "choices": mgm.STATISTICS, "min_length": 1},
     "sensitivity_k": {"type": list, "items": int, "minimum": 2},
     "sensitivity_kernel": {"type": str, "choices": ["", *geometry.KERNELS]},
     "sensitivity_n_base": {"type": int, "minimum": 0}},
)
# every choice the geometry table depends on (also its cache key); the device is not one of them
geometry_settings = geometry.GeometrySettings(k=k, kernel=kernel, n_per_class=n_per_class, n_base=n_base,
                                              n_views=n_views, k_augmentation=k_augmentation, seed=seed)

# %% [markdown]
# ## The models and their labels
#
# Every model of the zoo carries three labels that could explain its geometry: the **paradigm** of
# its training objective, its **backbone** architecture, and the augmentation **policy** it was
# trained with. The supervised and random-initialisation references are kept in the figures for
# orientation but left out of the tests, which are about SSL paradigms.

# %% tags=["remove-stderr"]
names = zoo.select_models(models, models_per_paradigm)  # None: the default zoo
info = zoo.model_labels(names)
ssl_names = [n for n in names if info.loc[n, "paradigm"] in paradigms]
display(info)

# %% tags=["remove-cell"]
glue("n_models", len(names), display=False)
glue("n_ssl", len(ssl_names), display=False)
glue("paradigm_counts", ", ".join(f"{c} {p}" for p, c in info.loc[ssl_names, "paradigm"].value_counts().items()),
     display=False)
if len(set(info.loc[ssl_names, "paradigm"])) < 2:
    raise ValueError(f"the test needs SSL models of at least two paradigms; got {info.loc[ssl_names, 'paradigm'].unique()}. "
                     "Add models (parameter `models`) or train the zoo.")

# %% [markdown]
# The chapter uses {glue:text}`n_models` models, {glue:text}`n_ssl` of them self-supervised
# ({glue:text}`paradigm_counts`).
#
# ## The geometry table
#
# For each model, `geometry.geometry_table` builds the manifolds of the earlier chapters, their NNK
# graphs, and the per-node metrics, and summarises each metric over the nodes of a manifold. The
# manifolds are: the **semantic** manifold pooled over all classes and the ten within-class
# manifolds (metrics pooled over classes); one **augmentation** manifold per family and base image
# (a curve of views along the family's strength grid), pooled over base images; and the
# **composition** manifold, a cloud of random compositions of all families around each base image.
# Every summary is computed on the NNK graph and on the plain kNN graph with the same candidates, so
# the two can be compared. The table is tidy: one row per model, manifold, family, graph, metric and
# statistic.

# %% tags=["remove-stderr"]
table = geometry.geometry_table(names, geometry_settings, device=device)
table.head(8)

# %% [markdown]
# A model's geometry vector is the slice of that table for the NNK graph and the chosen statistics,
# one column per (manifold, family, metric, statistic). Columns are z-scored across models before
# distances are taken, so that counts, angles and lengths weigh the same.

# %% tags=["remove-stderr"]
vectors = paradigm.geometry_vectors(table, graph="nnk", statistics=statistics)
print(f"{vectors.shape[0]} models x {vectors.shape[1]} geometry features")
vectors.iloc[:, :6].round(3)

# %% tags=["remove-cell"]
glue("n_features", vectors.shape[1], display=False)
# the tables this chapter's conclusions rest on, as CSV next to the executed chapter
chapter_parameters = dict(
    profile=profile, seed=seed, models=models, models_per_paradigm=models_per_paradigm, paradigms=paradigms,
    k=k, kernel=kernel, n_per_class=n_per_class, n_base=n_base, n_views=n_views, k_augmentation=k_augmentation,
    statistics=statistics, linkage_method=linkage_method, n_permutations=n_permutations,
)
export.export_table(vectors, "geometry_vectors", chapter="04_geometry_vs_paradigm", parameters=chapter_parameters,
                    description="one row per model: its geometry vector (NNK graphs), before z-scoring")
distances = paradigm.model_distances(vectors)
label_columns = ["paradigm", "backbone", "policy"]
# paradigm and backbone colours are the book's; policies appear only here and get pastel shades
policies = sorted(info["policy"].astype(str).unique())
policy_colours = dict(zip(policies, plt.get_cmap("Pastel1")(np.arange(len(policies)) % 8)))
colour_of = {"paradigm": plots.paradigm_colour, "backbone": plots.backbone_colour, "policy": policy_colours.get}
n_clusters_all = max(2, info.loc[ssl_names, "paradigm"].nunique())
clusters_all, tree_all = paradigm.cluster_models(distances, n_clusters_all, method=linkage_method)

fig = plt.figure(figsize=(9, 5.2))
grid = fig.add_gridspec(2, 1, height_ratios=[4, 1], hspace=0.05)
axis = fig.add_subplot(grid[0])
tree_plot = dendrogram(tree_all, labels=list(distances.index), ax=axis, no_labels=True,
                       color_threshold=0, above_threshold_color="0.3")
axis.set_ylabel("distance between geometry vectors")
axis.set_xticks([])
for side in ("top", "right", "bottom"):
    axis.spines[side].set_visible(False)
order = tree_plot["ivl"]
strip = fig.add_subplot(grid[1])
for row, column in enumerate(label_columns):
    for position, name in enumerate(order):
        strip.add_patch(plt.Rectangle((position, row), 1, 0.9, color=colour_of[column](str(info.loc[name, column]))))
strip.set_xlim(0, len(order))
strip.set_ylim(len(label_columns), -0.1)
strip.set_yticks(np.arange(len(label_columns)) + 0.45, label_columns)
strip.set_xticks(np.arange(len(order)) + 0.5, order, rotation=90, fontsize=7)
for side in ("top", "right", "left", "bottom"):
    strip.spines[side].set_visible(False)
handles = (plots.legend_handles(info["paradigm"], prefix="paradigm: ")
           + plots.legend_handles(info["backbone"], kind="backbone", prefix="backbone: ")
           + [plt.Rectangle((0, 0), 1, 1, color=colour, label=f"policy: {value}") for value, colour in policy_colours.items()])
fig.legend(handles=handles, loc="upper right", fontsize=7, frameon=False, ncol=1, bbox_to_anchor=(1.18, 0.9))
glue("fig_dendrogram", fig, display=False)
plt.close(fig)

# %% [markdown]
# Every model's full geometry vector: {download}`geometry_vectors.csv <tables/04_geometry_vs_paradigm/geometry_vectors.csv>`
# (its parameters and package versions: {download}`geometry_vectors.json <tables/04_geometry_vs_paradigm/geometry_vectors.json>`).

# %% [markdown]
# ```{glue:figure} fig_dendrogram
# :name: "fig-dendrogram"
#
# Hierarchical clustering (average linkage) of all models on their NNK geometry vectors. The three
# strips under the tree colour each leaf by paradigm, backbone and augmentation policy. A label that
# explains the geometry paints long runs of one colour in its strip; a label that does not gives a
# strip that changes colour from leaf to leaf. Compare the three strips.
# ```

# %% tags=["remove-cell"]
fig, axis = plt.subplots(figsize=(7, 6))
ordered = distances.loc[order, order]
image = axis.imshow(ordered.to_numpy(), cmap="viridis")
axis.set_xticks(range(len(order)), order, rotation=90, fontsize=7)
axis.set_yticks(range(len(order)), order, fontsize=7)
for tick_labels in (axis.get_yticklabels(), axis.get_xticklabels()):
    plots.colour_tick_labels(tick_labels, info.loc[order, "paradigm"])
fig.colorbar(image, ax=axis, shrink=0.8, label="distance (z-scored features)")
glue("fig_distance_heatmap", fig, display=False)
plt.close(fig)

coords = paradigm.embedding_2d(distances, method="mds", seed=seed)
fig, axis = plt.subplots(figsize=(6.5, 5))
for name, (x, y) in coords.iterrows():
    axis.scatter(x, y, s=70, marker=plots.backbone_marker(info.loc[name, "backbone"]),
                 color=plots.paradigm_colour(info.loc[name, "paradigm"]), edgecolor="k", linewidth=0.5)
    axis.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
handles = (plots.legend_handles(info["paradigm"])  # colour: paradigm; shape: backbone
           + plots.legend_handles(info["backbone"], kind="backbone", style="marker", colour="0.5"))
axis.legend(handles=handles, fontsize=7, frameon=False, loc="best")
axis.set_xlabel("MDS 1")
axis.set_ylabel("MDS 2")
glue("fig_mds", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_distance_heatmap
# :name: "fig-distance-heatmap"
#
# Distances between the geometry vectors of all models, rows and columns in dendrogram order, names
# coloured by paradigm. Dark blocks on the diagonal are groups of models with similar geometry;
# check whether a block holds one colour of names or several.
# ```
#
# ```{glue:figure} fig_mds
# :name: "fig-mds"
#
# A two-dimensional map of the models (metric MDS of the distances above): colour is the paradigm,
# marker shape the backbone. Models close on the map have similar geometry. Look for whether colours
# or shapes form the clusters.
# ```
#
# ## Do the clusters follow the paradigm? A permutation test
#
# We cut the tree of the SSL models into as many clusters as there are paradigms and measure the
# agreement of the clusters with the paradigm labels by the adjusted Rand index (ARI, 0 for chance,
# 1 for identical partitions) and normalised mutual information (NMI). Under the null hypothesis
# that geometry is unrelated to the paradigm, every reassignment of the labels to the models is
# equally likely, so shuffling the labels gives the null distribution; the p-value is the share of
# shuffles that agree at least as well as the real labels. The same test is run for backbone and
# policy labels, cutting the tree into as many clusters as that label has values.
#
# ```{prf:definition} Permutation p-value of cluster agreement
# :label: def-permutation-p
#
# Let $c = (c_1, \dots, c_M)$ be the clusters of $M$ models cut from the tree of their geometry
# vectors, $y = (y_1, \dots, y_M)$ their labels, and $\pi_1, \dots, \pi_B$ independent uniformly
# random permutations of $\{1, \dots, M\}$. The permutation p-value of the agreement is
#
# $$
# p = \frac{1 + \#\{b \le B : \mathrm{ARI}(c, y \circ \pi_b) \ge \mathrm{ARI}(c, y)\}}{1 + B}.
# $$
#
# Under the null hypothesis that the labels are exchangeable given the geometry, $P(p \le \alpha)
# \le \alpha$ for every $\alpha$: the test is exact whatever the clustering method.
# ```

# %% tags=["remove-stderr"]
ssl_distances = paradigm.model_distances(vectors.loc[ssl_names])
# one test per label that takes two or more values among the SSL models
tests, null_results = paradigm.label_tests(ssl_distances, info.loc[ssl_names, label_columns],
                                           n_permutations=n_permutations, method=linkage_method, seed=seed)
tests.round(3)

# %% tags=["remove-cell"]
paradigm_result = null_results["paradigm"]
glue("paradigm_ari", f"{paradigm_result.ari:.2f}", display=False)
glue("paradigm_nmi", f"{paradigm_result.nmi:.2f}", display=False)
glue("paradigm_p_ari", f"{paradigm_result.p_ari:.3f}", display=False)
glue("paradigm_p_nmi", f"{paradigm_result.p_nmi:.3f}", display=False)
glue("n_permutations", f"{n_permutations:,}", display=False)
glue("null_ari_q95", f"{np.quantile(paradigm_result.null_ari, 0.95):.2f}", display=False)
other = {c: tests.loc[c] for c in tests.index if c != "paradigm"}
glue("other_labels_text",
     "; ".join(f"{c}: ARI {row['ARI']:.2f} (p = {row['p (ARI)']:.3f})" for c, row in other.items()) or
     "no other label varies among these models", display=False)

fig, axes = plt.subplots(1, len(null_results), figsize=(3.2 * len(null_results), 2.6), sharey=True)
for axis, (column, result) in zip(np.atleast_1d(axes), null_results.items()):
    axis.hist(result.null_ari, bins=30, color="0.7")
    axis.axvline(result.ari, color="C3", linewidth=2, label=f"observed {result.ari:.2f}")
    axis.set_title(f"{column} (p = {result.p_ari:.3f})", fontsize=9)
    axis.set_xlabel("ARI under shuffled labels")
    axis.legend(fontsize=7, frameon=False)
np.atleast_1d(axes)[0].set_ylabel("shuffles")
fig.tight_layout()
glue("fig_null", fig, display=False)
plt.close(fig)

# %% [markdown]
# Clusters versus paradigm: ARI {glue:text}`paradigm_ari` (permutation p = {glue:text}`paradigm_p_ari`
# over {glue:text}`n_permutations` shuffles), NMI {glue:text}`paradigm_nmi`
# (p = {glue:text}`paradigm_p_nmi`). Under shuffled labels, 95% of ARIs fall below
# {glue:text}`null_ari_q95`. For the other labels: {glue:text}`other_labels_text`.
#
# ```{glue:figure} fig_null
# :name: "fig-null"
#
# Null distributions of the ARI between geometry clusters and shuffled labels (grey), with the
# observed ARI (red line), for each label. A red line far in the right tail means the label explains
# the clustering better than chance; a line inside the bulk means it does not.
# ```
#
# With a dozen or two models, these tests have little power: a real but moderate link between
# geometry and paradigm can easily give p > 0.05. A large p-value is therefore *absence of evidence*
# for a paradigm effect in this zoo, not proof that there is none.
#
# ## Which metrics differ between paradigms?
#
# Clustering uses all features at once; a single metric may still separate the paradigms. For each
# feature we report eta squared (the share of its variance across SSL models explained by the
# paradigm, as in a one-way ANOVA) with its 95% confidence interval (from the noncentral F
# distribution, which assumes normal scatter within paradigms), its permutation p-value (no such
# assumption) and the Benjamini-Hochberg q-value over all features. By chance alone eta squared is
# about (groups - 1) / (models - 1), shown as the null mean.

# %% tags=["remove-stderr"]
effects = paradigm.effect_sizes(vectors.loc[ssl_names], info.loc[ssl_names, "paradigm"].astype(str),
                                n_permutations=n_permutations, seed=seed)
effects.head(10).round(3)

# %% tags=["remove-cell"]
export.export_table(effects, "metric_effects", chapter="04_geometry_vs_paradigm", parameters=chapter_parameters,
                    description="one row per geometry feature: eta squared of the paradigm, its interval, p and q")
top = effects.iloc[0]
glue("top_feature", effects.index[0].replace("/", " / "), display=False)
glue("top_eta2", f"{top['eta2']:.2f}", display=False)
glue("top_eta2_ci", f"[{top['eta2_low']:.2f}, {top['eta2_high']:.2f}]", display=False)
glue("top_p", f"{top['p_value']:.3f}", display=False)
glue("top_q", f"{top['q_value']:.3f}", display=False)
glue("n_q_below", int((effects["q_value"] < 0.05).sum()), display=False)
glue("null_eta2", f"{effects['null_mean'].mean():.2f}", display=False)

shown = effects.head(15).iloc[::-1]
fig, axis = plt.subplots(figsize=(7, 0.3 * len(shown) + 1))
positions = np.arange(len(shown))
# the interval need not contain the (upward-biased) point estimate: clip the bar lengths at 0
bars = np.clip([shown["eta2"] - shown["eta2_low"], shown["eta2_high"] - shown["eta2"]], 0, None)
axis.errorbar(shown["eta2"], positions, xerr=bars, fmt="o", color="C0", capsize=2)
axis.axvline(effects["null_mean"].mean(), color="0.5", linestyle="--", label="chance level")
axis.set_yticks(positions, [name.replace("/", " / ") for name in shown.index], fontsize=7)
axis.set_xlabel("eta squared (share of variance explained by paradigm)")
axis.set_xlim(0, 1)
axis.legend(fontsize=7, frameon=False)
fig.tight_layout()
glue("fig_effects", fig, display=False)
plt.close(fig)

# %% [markdown]
# The strongest single separator is *{glue:text}`top_feature`* with eta squared
# {glue:text}`top_eta2` (95% confidence interval {glue:text}`top_eta2_ci`, permutation
# p = {glue:text}`top_p`, q = {glue:text}`top_q`); {glue:text}`n_q_below` features have q < 0.05.
# The chance level of eta squared here is about {glue:text}`null_eta2`. Every feature's effect, interval,
# p and q: {download}`metric_effects.csv <tables/04_geometry_vs_paradigm/metric_effects.csv>`.
#
# ```{glue:figure} fig_effects
# :name: "fig-effects"
#
# The fifteen geometry features whose values differ most between SSL paradigms (eta squared), with
# 95% confidence intervals; the dashed line is the value expected by chance. With a handful of models
# per paradigm the intervals are wide, and the largest of many eta squared values is inflated by
# selection: trust a feature only if its interval stays clear of the dashed line and its q-value is
# small.
# ```
#
# ## Invariance to each augmentation family
#
# On an augmentation manifold, a small NNK polytope diameter means the views of an image stay close
# in feature space: the model is invariant to that family. Ranking the models per family shows which
# model is most invariant to what, and whether that follows the paradigm.

# %% tags=["remove-stderr"]
invariance = paradigm.invariance_ranking(table, metric="diameter", statistic="median", graph="nnk")
invariance = invariance.loc[order]
invariance.assign(paradigm=info.loc[order, "paradigm"])

# %% tags=["remove-cell"]
fig, axis = plt.subplots(figsize=(0.6 * invariance.shape[1] + 3, 0.28 * len(invariance) + 1))
image = axis.imshow(invariance.to_numpy(), cmap="magma_r", aspect="auto")
axis.set_xticks(range(invariance.shape[1]), invariance.columns, rotation=45, ha="right", fontsize=8)
axis.set_yticks(range(len(invariance)), invariance.index, fontsize=7)
plots.colour_tick_labels(axis.get_yticklabels(), info.loc[invariance.index, "paradigm"])
fig.colorbar(image, ax=axis, label="rank (1 = most invariant)")
fig.tight_layout()
glue("fig_invariance", fig, display=False)
plt.close(fig)
rank_groups = invariance.loc[ssl_names].assign(paradigm=info.loc[ssl_names, "paradigm"]).groupby("paradigm").mean()
glue("most_invariant_text", "; ".join(
    f"{family}: {invariance[family].idxmin()}" for family in invariance.columns), display=False)

# %% [markdown]
# ```{glue:figure} fig_invariance
# :name: "fig-invariance"
#
# Invariance ranks per augmentation family (columns; 1 = smallest median NNK diameter on that
# family's manifolds = most invariant), models in dendrogram order with names coloured by paradigm.
# Horizontal bands of one shade are models invariant to many families at once; a column whose dark
# cells share a name colour would tie that invariance to a paradigm.
# ```
#
# The most invariant model per family: {glue:text}`most_invariant_text`. The mean rank per paradigm
# and family is below.

# %% tags=["remove-stderr"]
rank_groups.round(1)

# %% [markdown]
# ## Sensitivity: does the conclusion depend on our choices?
#
# The test above fixes `k`, the kernel, the number of base images and the NNK graph. We rerun it
# with other values of `k`, the other kernel, fewer base images, and kNN metrics in place of NNK
# metrics (the same candidates without NNK's pruning). Each variant recomputes every model's
# geometry table (cached afterwards).

# %% tags=["remove-stderr"]
# the main table, one table per changed choice (NNK metrics only), and the main table's kNN metrics
variants = paradigm.sensitivity_variants(names, geometry_settings, ks=sensitivity_k, kernel=sensitivity_kernel,
                                         n_base=sensitivity_n_base, device=device)
sensitivity = paradigm.sensitivity_table(variants, info.loc[ssl_names, "paradigm"], statistics=statistics,
                                         n_permutations=n_permutations, method=linkage_method, seed=seed)
sensitivity.round(3)

# %% tags=["remove-cell"]
p_values = sensitivity["p (ARI)"].astype(float)
glue("sens_n", len(sensitivity), display=False)
glue("sens_n_significant", int((p_values < 0.05).sum()), display=False)
glue("sens_p_range", f"{p_values.min():.3f} to {p_values.max():.3f}", display=False)
glue("verdict", "the clusters agree with the paradigm more than chance would, so in this zoo geometry is tied to "
     "the paradigm, contrary to the paper's claim" if paradigm_result.p_ari < 0.05 else
     "the clusters agree with the paradigm no more than chance would, which is what the paper's claim predicts",
     display=False)
best_label = tests.astype(float).sort_values(["p (ARI)", "ARI"], ascending=[True, False]).index[0]
glue("best_label_text", f"{best_label} (ARI {tests.loc[best_label, 'ARI']:.2f}, p = {tests.loc[best_label, 'p (ARI)']:.3f})",
     display=False)
glue("sens_ari_range", f"{sensitivity['ARI'].astype(float).min():.2f} to {sensitivity['ARI'].astype(float).max():.2f}",
     display=False)

fig, axis = plt.subplots(figsize=(6.5, 2.8))
positions = np.arange(len(sensitivity))
axis.bar(positions, sensitivity["ARI"].astype(float), color=["C3" if p < 0.05 else "0.6" for p in p_values])
for position, p in zip(positions, p_values):
    axis.text(position, 0.01, f"p={p:.3f}", ha="center", va="bottom", fontsize=7, rotation=90)
axis.axhline(0, color="k", linewidth=0.8)
axis.set_xticks(positions, sensitivity.index, rotation=30, ha="right", fontsize=8)
axis.set_ylabel("ARI (clusters vs paradigm)")
fig.tight_layout()
glue("fig_sensitivity", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_sensitivity
# :name: "fig-paradigm-sensitivity"
#
# Agreement between geometry clusters and paradigm labels for each analysis variant (bars: ARI;
# red when the permutation p-value is below 0.05, grey otherwise). If the bars disagree in colour,
# the conclusion depends on an analysis choice and should be stated with that caveat.
# ```
#
# Across the {glue:text}`sens_n` variants the ARI ranges from {glue:text}`sens_ari_range`, the
# permutation p-values from {glue:text}`sens_p_range`; {glue:text}`sens_n_significant` of them fall
# below 0.05.
#
# ## The answer
#
# In this zoo, clustering the {glue:text}`n_ssl` SSL models on their manifold graph metrics agrees
# with the paradigm labels with ARI {glue:text}`paradigm_ari` (permutation p =
# {glue:text}`paradigm_p_ari`): {glue:text}`verdict`. Across analysis variants,
# {glue:text}`sens_n_significant` of {glue:text}`sens_n` give p < 0.05. Of the three labels, the
# geometry clusters agree best with {glue:text}`best_label_text`.
#
# Read these numbers with the size of the zoo in mind: with so few models per paradigm only a
# strong link between geometry and paradigm can reach significance, so a large p-value is weak
# evidence for the paper's claim (no detectable link), not a proof of it; a small p-value, on the
# other hand, would contradict the claim for this zoo.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-geometry-rerun
#
# Rerun this chapter with `kernel = "gaussian"` and `statistics = ["mean", "median", "q10", "q90"]`
# (for example `papermill ... -p kernel gaussian`). Do the permutation p-values for paradigm, backbone
# and policy change in the same direction? What does that tell you about how robust the answer is?
# ```
#
# ```{solution} ex-geometry-rerun
# :class: dropdown
#
# Compare the tables of the two runs row by row. If the paradigm p-value stays large while the
# backbone (or policy) p-value stays small, the conclusion is robust: geometry follows architecture
# or augmentations rather than the objective. If p-values swing across 0.05, the evidence is weak
# and depends on analysis choices; with this few models that is the expected outcome for moderate
# effects, and the honest report is "no clear evidence either way".
# ```
#
# ```{exercise}
# :label: ex-geometry-power
#
# Build a synthetic zoo in which geometry follows the paradigm only weakly: vectors equal to a
# paradigm centre times `s` plus standard normal noise, five models per paradigm, twenty features.
# For which `s` does `paradigm.permutation_test` find the structure (p < 0.05) in 80% of repeats?
# ```
#
# ```{solution} ex-geometry-power
# :class: dropdown
#
# Draw centres once, then for each `s` in a grid repeat: draw noise, compute
# `paradigm.model_distances`, `paradigm.cluster_models(..., 3)` and `paradigm.permutation_test`, and
# record whether p < 0.05. The fraction is the power at that `s`. With 15 models the power rises
# steeply only when between-paradigm spread is comparable to within-paradigm spread, which is why a
# non-significant result on a small zoo is weak evidence of no effect.
# ```
#
# ```{exercise}
# :label: ex-geometry-features
#
# Restrict the geometry vector to the semantic manifolds (`manifolds=["semantic"]` in
# `paradigm.geometry_vectors`) and then to the augmentation manifolds. Which of the two carries the
# paradigm signal, if any?
# ```
#
# ```{solution} ex-geometry-features
# :class: dropdown
#
# Call `paradigm.geometry_vectors(table, statistics=statistics, manifolds=["semantic"])`, rebuild the
# distances for the SSL models and rerun `paradigm.label_test`; repeat with `["augmentation"]`. Augmentation
# manifolds reflect invariances, which depend on the augmentation policy of training more than on the
# loss, so a policy effect is most likely to show up there.
# ```
