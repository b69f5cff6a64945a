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
# # Predicting transfer from geometry
#
# **What you will learn.** How to measure the transfer of frozen features to new tasks (a linear
# probe chosen on a validation split, and few-shot episodes with a nearest-prototype classifier);
# how to predict those measurements from manifold graph metrics (MGMs) without the predictor ever
# seeing the model it predicts (leave-one-model-out cross-validation with feature selection inside
# the loop); how label-free baselines (effective rank, eigenspectrum decay) and the source-domain
# kNN accuracy compare; and how uncertain all of this is with a zoo of about twenty models.
#
# The claim under test is the second of the paper {cite}`cosentino2022geometry`: *the transfer ability of
# a model can be predicted from the geometry of its semantic and augmentation manifolds*. The paper
# shows it on published ImageNet models; here we test it on the book's own Fashion-MNIST zoo.
#
# Library functions this chapter calls (see the API reference): {py:func}`~sslgeom.tasks.build_tasks`, {py:func}`~sslgeom.transfer.measure_transfer`, {py:func}`~sslgeom.transfer.baseline_table`, {py:func}`~sslgeom.prediction.compare_predictors`, {py:func}`~sslgeom.export.export_table`.

# %% tags=["parameters"]
profile = "default"
seed = 0
device = "cpu"
models = None  # list of zoo names, or None for the default zoo
models_per_paradigm = 0  # if models is None, keep only the first N models of each paradigm (0 keeps all)
paradigms = ["contrastive", "non-contrastive", "clustering"]  # models whose transfer is predicted
tasks = ["fashion", "fashion_corrupted", "digits", "textures"]
n_train = 2000  # images per task split (at most)
n_val = 1000
n_test = 2000
c_grid = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]  # inverse regularisation of the linear probe
shots = [5, 20]
n_way = 5
n_query = 15
n_episodes = 600
# geometry settings: the same as the geometry chapter, so its cached table is reused
k = 20
kernel = "cosine"
n_per_class = 100
n_base = 30
n_views = 16
k_augmentation = 10
statistics = ["mean", "median"]
# prediction
n_select = 2  # descriptors kept in each leave-one-out fold
n_boot = 1000
n_permutations = 100
n_spectrum = 2000  # images for RankMe and alpha-ReQ
n_knn_train = 5000  # source kNN memory

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from myst_nb import glue

from sslgeom import export, geometry, mgm, paradigm, params, plots, prediction, transfer, zoo
from sslgeom.tasks import TASK_NAMES, build_tasks

params.check_common(profile, seed, device)
params.check(
    {"models": models, "models_per_paradigm": models_per_paradigm, "paradigms": paradigms, "tasks": tasks,
     "n_train": n_train, "n_val": n_val, "n_test": n_test, "c_grid": c_grid, "shots": shots,
     "n_way": n_way, "n_query": n_query, "n_episodes": n_episodes, "k": k, "kernel": kernel,
     "n_per_class": n_per_class, "n_base": n_base, "n_views": n_views, "k_augmentation": k_augmentation,
     "statistics": statistics, "n_select": n_select, "n_boot": n_boot, "n_permutations": n_permutations,
     "n_spectrum": n_spectrum, "n_knn_train": n_knn_train},
    {"models": {"type": (list, type(None)), "items": str, "min_length": 1},  # names: checked by the zoo
     "models_per_paradigm": {"type": int, "minimum": 0},
     "paradigms": {"type": list, "items": str, "choices": list(plots.PARADIGM_COLOURS), "min_length": 1},
     "tasks": {"type": list, "items": str, "choices": TASK_NAMES, "min_length": 1},
     "n_train": {"type": int, "minimum": 50}, "n_val": {"type": int, "minimum": 20},
     "n_test": {"type": int, "minimum": 50},
     "c_grid": {"type": list, "items": float, "exclusive_minimum": 0, "min_length": 1},
     "shots": {"type": list, "items": int, "minimum": 1, "min_length": 1},
     "n_way": {"type": int, "minimum": 2},
     "n_query": {"type": int, "minimum": 1}, "n_episodes": {"type": int, "minimum": 10},
     "n_select": {"type": int, "minimum": 1}, "n_boot": {"type": int, "minimum": 100},
     "n_permutations": {"type": int, "minimum": 0}, "k": {"type": int, "minimum": 2},
     "kernel": {"type": str, "choices": ["cosine", "gaussian"]},
     # the geometry chapter's rules for its settings (same values reuse its cached table)
     "n_per_class": {"type": int, "minimum": 5, "maximum": 1000}, "n_base": {"type": int, "minimum": 0},
     "n_views": {"type": int, "minimum": 0}, "k_augmentation": {"type": int, "minimum": 2},
     "statistics": {"type": list, "items": str, "choices": mgm.STATISTICS, "min_length": 1},
     "n_spectrum": {"type": int, "minimum": 10},
     "n_knn_train": {"type": int, "minimum": 20}},
)
# the geometry chapter's settings type (also the cache key), so its tables are read from the cache
geometry_settings = geometry.GeometrySettings(k=k, kernel=kernel, n_per_class=n_per_class, n_base=n_base,
                                              n_views=n_views, k_augmentation=k_augmentation, seed=seed)

# %% [markdown]
# ## Target tasks
#
# Four tasks, from close to far from the training domain:
#
# - **fashion**: Fashion-MNIST itself, the source domain (train and validation images from the
#   training split, test images from the test split);
# - **fashion_corrupted**: Fashion-MNIST test images, each hit by one of Gaussian noise, blur or low
#   contrast (a shifted domain with the same classes);
# - **digits**: scikit-learn's handwritten digits, resized to 28x28 (out of domain);
# - **textures**: patches of scikit-image's sample images, one class per source image (out of
#   domain, and not object-like at all).

# %% tags=["remove-stderr"]
task_data = build_tasks(tasks, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)
sizes = pd.DataFrame({name: {**task.split_sizes(), "classes": len(task.classes)} for name, task in task_data.items()}).T
sizes

# %% tags=["remove-cell"]
rng = np.random.default_rng(seed)
shown = [task.test[0][rng.choice(len(task.test[1]), size=8, replace=False)] for task in task_data.values()]
fig, _ = plots.image_grid(np.stack(shown), row_labels=list(task_data), cell_size=(1.0, 1.1))
glue("fig_tasks", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_tasks
# :name: "fig-tasks"
#
# Random test images of each target task (one row per task). The corrupted row mixes noisy, blurred
# and washed-out clothes; digits and textures look nothing like the training images, which is what
# makes them a test of transfer rather than of fit.
# ```
#
# ## Measured transfer
#
# **Linear probe**, following the protocol of {cite}`ericsson2021well`: features standardised,
# multinomial logistic regression for each inverse regularisation `C` of a log-spaced grid, `C`
# chosen on the validation split, then refit on train+validation and scored on the test split. Our
# grid is coarser than theirs ({glue:text}`n_c` values from {glue:text}`c_range` instead of 45) to
# keep the run short on a CPU. Each fit minimises exactly scikit-learn's `LogisticRegression(C=C)`
# objective, solved to a gradient below $10^{-8}$ by `sslgeom.evaluation` (L-BFGS started from the
# exact Hessian, tested against scikit-learn): scikit-learn's own L-BFGS needed hundreds of steps
# at large `C`, stopped short of the optimum at its default step cap, and gave accuracies that
# depended on the number of BLAS threads.
#
# **Few-shot**: {glue:text}`n_way`-way episodes with {glue:text}`shots_text` labelled examples per
# class and {glue:text}`n_query` queries per class, drawn from the test split; a query gets the class of the nearest class mean of
# the L2-normalised support features. Accuracy is averaged over {glue:text}`n_episodes` episodes,
# with a 95% interval.

# %% tags=["remove-stderr"]
names = zoo.select_models(models, models_per_paradigm)  # None: the default zoo
info = zoo.model_labels(names)
transfer_protocol = transfer.TransferProtocol(c_grid=c_grid, shots=shots, n_way=n_way, n_query=n_query,
                                              n_episodes=n_episodes, seed=seed)
measured = transfer.measure_transfer(names, task_data, transfer_protocol, device=device)
chapter_parameters = dict(
    profile=profile, seed=seed, models=models, models_per_paradigm=models_per_paradigm, paradigms=paradigms,
    tasks=tasks, n_train=n_train, n_val=n_val, n_test=n_test, c_grid=c_grid, shots=shots, n_way=n_way,
    n_query=n_query, n_episodes=n_episodes, k=k, kernel=kernel, n_per_class=n_per_class, n_base=n_base,
    n_views=n_views, k_augmentation=k_augmentation, statistics=statistics, n_select=n_select, n_boot=n_boot,
    n_permutations=n_permutations, n_spectrum=n_spectrum, n_knn_train=n_knn_train,
)
export.export_table(measured.set_index(["model", "task", "protocol"]), "transfer_scores",
                    chapter="05_transfer_prediction", parameters=chapter_parameters,
                    description="one row per model, task and protocol: the measured transfer score and its interval")
scores = measured.pivot_table(index="model", columns=["task", "protocol"], values="score").loc[names]
scores.round(3)

# %% tags=["remove-cell"]
glue("n_way", n_way, display=False)
glue("n_c", len(c_grid), display=False)
glue("c_range", f"{min(c_grid):g} to {max(c_grid):g}", display=False)
glue("shots_text", " or ".join(str(s) for s in shots), display=False)
glue("n_query", n_query, display=False)
glue("n_episodes", f"{n_episodes:,}", display=False)
few_shot_rows = measured[measured["protocol"] != "linear"]
glue("max_ci_halfwidth", f"{100 * ((few_shot_rows['ci_high'] - few_shot_rows['ci_low']) / 2).max():.1f}",
     display=False)
linear = scores.xs("linear", axis=1, level="protocol")[tasks]
order = linear.mean(axis=1).sort_values().index
fig, axes = plt.subplots(1, len(tasks), figsize=(3 * len(tasks), 0.22 * len(order) + 1.2), sharey=True,
                         squeeze=False)
for axis, task in zip(axes[0], tasks):
    for protocol, marker in [("linear", "o")] + [(f"{n_way}way{s}shot", m) for s, m in zip(shots, "s^")]:
        rows = measured[(measured["task"] == task) & (measured["protocol"] == protocol)].set_index("model")
        plots.model_ranking(axis, rows["score"], info["paradigm"], order=order, style="point", marker=marker,
                            interval=None if protocol == "linear" else (rows["ci_low"], rows["ci_high"]),
                            label=protocol)
    axis.set_title(task, fontsize=9)
    axis.set_xlabel("accuracy")
axes[0, -1].legend(fontsize=7, frameon=False, loc="lower right")
fig.tight_layout()
glue("fig_transfer", fig, display=False)
plt.close(fig)
correlation = linear.corr(method="spearman")
glue("min_task_corr", f"{correlation.to_numpy()[np.triu_indices(len(tasks), 1)].min():.2f}", display=False)
glue("max_task_corr", f"{correlation.to_numpy()[np.triu_indices(len(tasks), 1)].max():.2f}", display=False)

# %% [markdown]
# ```{glue:figure} fig_transfer
# :name: "fig-transfer"
#
# Transfer of every model (rows, sorted by mean linear-probe accuracy; names and points coloured by paradigm)
# on each task (panels): linear probe (circles) and few-shot accuracy with 95% intervals (squares
# and triangles). Look at whether the order of models is the same in every panel: if it is, one
# number per model would summarise transfer; if not, a predictor has to be judged task by task.
# ```
#
# Few-shot intervals are at most ±{glue:text}`max_ci_halfwidth` accuracy points wide. The rank
# correlation of linear-probe accuracy between tasks ranges from {glue:text}`min_task_corr` to
# {glue:text}`max_task_corr`:

# %% tags=["remove-stderr"]
correlation.round(2)

# %% [markdown]
# ## Descriptors: geometry and baselines
#
# The geometry descriptors are the NNK geometry vectors of the geometry chapter (same settings, read
# from the cache). We also keep the same metrics on plain kNN neighbourhoods, to see what NNK adds.
# The baselines are label-free except the last:
#
# - **RankMe** {cite}`garrido2023rankme`: the exponential of the entropy of the normalised singular
#   values of the feature matrix, an effective rank;
# - **alpha-ReQ** {cite}`agrawal2022alpha`: the decay exponent alpha of the covariance eigenspectrum,
#   $\lambda_i \propto i^{-\alpha}$, fitted in log-log coordinates;
# - **source kNN**: the cosine 20-nearest-neighbour accuracy on Fashion-MNIST, which uses source
#   labels.

# %% tags=["remove-stderr"]
table = geometry.geometry_table(names, geometry_settings, device=device)
baselines = transfer.baseline_table(names, n_spectrum=n_spectrum, n_knn_train=n_knn_train, seed=seed,
                                    device=device)
predictor_sets = {
    "MGM (NNK)": paradigm.geometry_vectors(table, graph="nnk", statistics=statistics),
    "MGM semantic": paradigm.geometry_vectors(table, graph="nnk", statistics=statistics, manifolds=["semantic"]),
    "MGM augmentation": paradigm.geometry_vectors(table, graph="nnk", statistics=statistics,
                                                  manifolds=["augmentation"]),
    "MGM (kNN graph)": paradigm.geometry_vectors(table, graph="knn", statistics=statistics),
    "RankMe": baselines[["rankme"]],
    "alpha-ReQ": baselines[["alpha_req"]],
    "source kNN": baselines[["source_knn"]],
}
baselines.join(info["paradigm"]).round(3)

# %% [markdown]
# ## Leave-one-model-out prediction
#
# Only the self-supervised models are predicted (the supervised and random references would make
# the task easy: their transfer and geometry are both extreme). For each held-out model, using the
# other models only, we keep the {glue:text}`n_select` descriptors with the strongest rank
# correlation with the target, standardise them, fit a ridge regression (penalty chosen by an inner
# leave-one-out), and predict the held-out model. The scores are computed on these out-of-sample
# predictions (definition below), Spearman's rho and Kendall's tau. Intervals resample the models
# ({glue:text}`n_boot` bootstrap draws); the p-value reruns the whole procedure on shuffled targets
# ({glue:text}`n_permutations` times).
#
# ```{prf:definition} Leave-one-model-out R²
# :label: def-loo-r2
#
# For models $m = 1, \dots, M$ with measured transfer $y_m$, let $\hat y_{-m}$ be the prediction
# for model $m$ of a regression whose every step (descriptor selection, standardisation, penalty
# choice, fit) used only the other $M - 1$ models. Then
#
# $$
# R^2_{\mathrm{LOO}} = 1 - \frac{\sum_{m=1}^{M} (y_m - \hat y_{-m})^2}{\sum_{m=1}^{M} (y_m - \bar y)^2},
# \qquad \bar y = \frac{1}{M} \sum_{m=1}^{M} y_m .
# $$ (eq-loo-r2)
#
# It is at most 1, and negative when the predictions are worse than predicting the mean.
# ```

# %% tags=["remove-stderr"]
ssl_names = [n for n in names if info.loc[n, "paradigm"] in paradigms]
targets = scores.loc[ssl_names].copy()
targets.columns = [f"{task} | {protocol}" for task, protocol in targets.columns]
comparison, loo_results = prediction.compare_predictors(
    {name: frame.loc[ssl_names] for name, frame in predictor_sets.items()}, targets,
    n_select=n_select, n_boot=n_boot, n_permutations=n_permutations, seed=seed)
comparison.pivot(index="predictor", columns="target", values="spearman").loc[list(predictor_sets)].round(2)

# %% tags=["remove-cell"]
glue("n_select", n_select, display=False)
glue("n_boot", f"{n_boot:,}", display=False)
glue("n_permutations", f"{n_permutations:,}", display=False)
glue("n_ssl", len(ssl_names), display=False)
linear_targets = [f"{task} | linear" for task in tasks]
fig, axes = plt.subplots(1, len(tasks), figsize=(3.1 * len(tasks), 3.2))
for axis, target in zip(np.atleast_1d(axes), linear_targets):
    result = loo_results[("MGM (NNK)", target)]
    for model in ssl_names:
        axis.scatter(result.measured[model], result.predictions[model], s=25, edgecolor="k", linewidth=0.4,
                     color=plots.paradigm_colour(info.loc[model, "paradigm"]),
                     marker=plots.backbone_marker(info.loc[model, "backbone"]))
    low = min(result.measured.min(), result.predictions.min())
    high = max(result.measured.max(), result.predictions.max())
    axis.plot([low, high], [low, high], color="0.4", linestyle="--", linewidth=1)
    axis.set_title(f"{target.split(' | ')[0]}\nR² = {result.r2:.2f}, ρ = {result.spearman:.2f}", fontsize=9)
    axis.set_xlabel("measured accuracy")
np.atleast_1d(axes)[0].set_ylabel("predicted (leave-one-model-out)")
handles = (plots.legend_handles(info.loc[ssl_names, "paradigm"])  # colour: paradigm; shape: backbone
           + plots.legend_handles(info.loc[ssl_names, "backbone"], kind="backbone", style="marker", colour="0.5"))
np.atleast_1d(axes)[-1].legend(handles=handles, fontsize=7, frameon=False)
fig.tight_layout()
glue("fig_scatter", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_scatter
# :name: "fig-scatter"
#
# Linear-probe accuracy predicted from MGMs (leave-one-model-out) against the measured accuracy,
# one panel per task, one point per SSL model (colour: paradigm, shape: backbone); the dashed line is perfect
# prediction. Points spread along the line mean the geometry ranks and scales transfer correctly;
# a horizontal cloud means the prediction is no better than the average model.
# ```
#
# ## Which predictor wins?

# %% tags=["remove-cell"]
predictors = list(predictor_sets)
fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(targets.columns) + 1.5), sharey=True)
positions = np.arange(len(targets.columns))
for axis, statistic in zip(axes, ["spearman", "r2"]):
    for offset, predictor in enumerate(predictors):
        rows = comparison[comparison["predictor"] == predictor].set_index("target").loc[targets.columns]
        y = positions + (offset - len(predictors) / 2) * 0.1
        # a percentile interval need not contain the point estimate (R² with few models): draw
        # the interval and the point separately rather than as error bar lengths
        axis.hlines(y, rows[f"{statistic}_low"], rows[f"{statistic}_high"], color=f"C{offset}", linewidth=1)
        axis.plot(rows[statistic], y, "o", markersize=3, label=predictor, color=f"C{offset}")
    axis.axvline(0, color="k", linewidth=0.8)
    axis.set_xlabel({"spearman": "Spearman ρ (out of sample)", "r2": "R² (out of sample)"}[statistic])
axes[1].set_xlim(max(-1.5, comparison["r2_low"].min() - 0.05), 1)
axes[0].set_yticks(positions, targets.columns, fontsize=7)
axes[0].invert_yaxis()
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, fontsize=8, frameon=False, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.02))
fig.tight_layout(rect=(0, 0.08, 1, 1))
glue("fig_predictors", fig, display=False)
plt.close(fig)

best = comparison.loc[comparison.groupby("target")["spearman"].idxmax()].set_index("target").loc[targets.columns]
winners = best[["predictor", "spearman", "spearman_low", "spearman_high", "r2", "p_spearman"]]
glue("winner_text", "; ".join(
    f"{target}: {row['predictor']} (ρ = {row['spearman']:.2f}, p = {row['p_spearman']:.3f})"
    for target, row in winners.iterrows()), display=False)
win_counts = winners["predictor"].value_counts()
glue("win_counts_text", ", ".join(f"{p} {c}" for p, c in win_counts.items()), display=False)
glue("n_targets", len(targets.columns), display=False)

# %% [markdown]
# ```{glue:figure} fig_predictors
# :name: "fig-predictors"
#
# Out-of-sample Spearman correlation (left) and R² (right) of every predictor (colours) on every
# target (rows), with 95% bootstrap intervals over models. A predictor is useful on a target when its
# interval stays to the right of zero; two predictors differ only where their intervals separate.
# ```
#
# The best predictor by out-of-sample Spearman on each target is: {glue:text}`winner_text`.
# Counting wins over the {glue:text}`n_targets` targets: {glue:text}`win_counts_text`. Wins are
# counted on point estimates; where the intervals above overlap, the ranking of predictors on that
# target is not established.

# %% tags=["remove-stderr"]
winners.round(3)

# %% [markdown]
# ## Which metrics matter?
#
# Each fold picks its own descriptors, so the frequency with which a metric is chosen (across folds
# and across the linear-probe targets) says how consistently it carries the signal; the sign of its
# ridge coefficient says in which direction.

# %% tags=["remove-stderr"]
importance = pd.concat(
    {target: loo_results[("MGM (NNK)", target)].importance() for target in linear_targets}, names=["target"]
).reset_index(names=["target", "feature"])
importance_summary = (importance.groupby("feature")
                      .agg(selected_fraction=("selected_fraction", "mean"),
                           mean_coefficient=("mean_coefficient", "mean"))
                      .sort_values("selected_fraction", ascending=False))
importance_summary.head(10).round(3)

# %% tags=["remove-cell"]
top_features = importance_summary.head(3)
glue("top_metrics_text", "; ".join(
    f"{name.replace('/', ' / ')} (chosen in {100 * row['selected_fraction']:.0f}% of folds, "
    f"{'higher' if row['mean_coefficient'] > 0 else 'lower'} value, better transfer)"
    for name, row in top_features.iterrows()), display=False)

# %% [markdown]
# The most often selected metrics are: {glue:text}`top_metrics_text`. Remember that with so few
# models a metric can be chosen often because it is correlated with one that matters.
#
# ## The answer, with its uncertainty
#
# For the paper's claim we average, over the linear-probe targets, the out-of-sample Spearman
# correlation between the MGM prediction and the measured accuracy; the interval resamples models
# (once per draw, for all tasks together).

# %% tags=["remove-stderr"]
claim = {}
for predictor in predictors:
    results = [loo_results[(predictor, target)] for target in linear_targets]
    claim[predictor] = prediction.bootstrap_mean_score(results, "spearman", n_boot=n_boot, seed=seed)
claim = pd.DataFrame(claim, index=["mean Spearman", "low", "high"]).T
export.export_table(comparison.set_index(["predictor", "target"]), "predictor_comparison",
                    chapter="05_transfer_prediction", parameters=chapter_parameters,
                    description="one row per predictor and target: out-of-sample Spearman and R2 with intervals")
export.export_table(claim.rename_axis("predictor"), "claim_scores", chapter="05_transfer_prediction",
                    parameters=chapter_parameters,
                    description="one row per predictor: mean out-of-sample Spearman over the linear targets, interval")
claim.round(3)

# %% tags=["remove-cell"]
mgm_mean, mgm_low, mgm_high = claim.loc["MGM (NNK)"]
glue("mgm_mean", f"{mgm_mean:.2f}", display=False)
glue("mgm_ci", f"[{mgm_low:.2f}, {mgm_high:.2f}]", display=False)
best_baseline = claim.drop(index=[p for p in predictors if p.startswith("MGM")])["mean Spearman"].idxmax()
glue("best_baseline", best_baseline, display=False)
glue("best_baseline_mean", f"{claim.loc[best_baseline, 'mean Spearman']:.2f}", display=False)
glue("best_baseline_ci", f"[{claim.loc[best_baseline, 'low']:.2f}, {claim.loc[best_baseline, 'high']:.2f}]",
     display=False)
verdict = ("the interval excludes zero: geometry carries out-of-sample information about transfer in this zoo"
           if mgm_low > 0 else
           "the interval includes zero: in this zoo we cannot show that geometry predicts transfer out of sample")
glue("verdict", verdict, display=False)
comparison_text = ("the MGMs do better than the best baseline on average" if mgm_mean > claim.loc[best_baseline, "mean Spearman"]
                   else "the best baseline does at least as well as the MGMs on average")
glue("comparison_text", comparison_text, display=False)

# %% [markdown]
# Averaged over the {glue:text}`n_ssl`-model zoo's linear-probe targets, the MGM predictor reaches an
# out-of-sample Spearman correlation of {glue:text}`mgm_mean` (95% bootstrap interval
# {glue:text}`mgm_ci`): {glue:text}`verdict`. The best baseline is {glue:text}`best_baseline` with
# {glue:text}`best_baseline_mean` ({glue:text}`best_baseline_ci`), so {glue:text}`comparison_text`.
# These intervals are wide because the zoo is small; they are the honest size of what the data
# can tell.
#
# The numbers behind this section, to take away: every predictor's mean score
# ({download}`claim_scores.csv <tables/05_transfer_prediction/claim_scores.csv>`), every predictor on
# every target ({download}`predictor_comparison.csv <tables/05_transfer_prediction/predictor_comparison.csv>`)
# and the measured transfer of every model ({download}`transfer_scores.csv <tables/05_transfer_prediction/transfer_scores.csv>`),
# each with a `.json` file beside it that records the parameters and package versions of this run.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-transfer-rerun
#
# Rerun this chapter with `n_select = 1` and again with `n_select = 4`, and with
# `paradigms = ["contrastive", "non-contrastive", "clustering", "supervised", "random"]`. How do the
# out-of-sample scores change, and why does including the reference models make prediction look
# easier?
# ```
#
# ```{solution} ex-transfer-rerun
# :class: dropdown
#
# More descriptors per fold fit the training models better but generalise worse with twenty models,
# so out-of-sample $R^2$ usually drops beyond two or three. Adding the random-initialisation and
# supervised models adds points far from the SSL cloud in both geometry and transfer; any descriptor
# that separates them then gets a high rank correlation, even if it says nothing about differences
# among SSL models.
# ```
#
# ```{exercise}
# :label: ex-transfer-leak
#
# Select the two descriptors most correlated with the target on *all* models, then run
# `prediction.loo_predict` on those two only. Compare the $R^2$ with the honest procedure on a target
# replaced by random noise. What goes wrong?
# ```
#
# ```{solution} ex-transfer-leak
# :class: dropdown
#
# Selecting on all models lets the held-out model influence which descriptors are used, so its
# prediction is no longer out of sample. With a hundred descriptors and twenty models, some
# descriptors correlate with pure noise by chance, and the leaky protocol reports a clearly positive
# $R^2$ where the honest one gives about zero or less (the test suite checks exactly this).
# ```
#
# ```{exercise}
# :label: ex-transfer-fewshot
#
# Compare the predictors on the 5-shot and 20-shot targets only. Is few-shot transfer easier or
# harder to predict from geometry than the linear probe, and which manifold (semantic or
# augmentation) carries the signal?
# ```
#
# ```{solution} ex-transfer-fewshot
# :class: dropdown
#
# Filter `comparison` on targets ending in `shot` and compare the rows of "MGM semantic" and
# "MGM augmentation". Nearest-prototype accuracy depends directly on how tight and separated the
# class clouds are, which is what the semantic-manifold metrics describe, so one expects the semantic
# metrics to matter more there; whether the data agree is what the table shows.
# ```
