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
# seeing the *method* it predicts (leave-one-method-out cross-validation, descriptor selection
# inside the loop); why a cross-validated score means nothing until it is set beside the same
# pipeline's score on permuted targets; how label-free baselines compare, scored directly and
# through the same pipeline; how reliable the targets themselves are; and what this design could
# have detected at all.
#
# The claim under test is the second of the paper {cite}`cosentino2022geometry`: *the transfer ability of
# a model can be predicted from the geometry of its semantic and augmentation manifolds*. The paper
# shows it on published ImageNet models; the book's default run tests it on its own Fashion-MNIST
# zoo, and the parameters `image_folder` and `registry` rerun the chapter on other models and images
# (the page *Your own models and images*).
#
# Library functions this chapter calls (see the API reference): {py:func}`~sslgeom.tasks.build_tasks`,
# {py:func}`~sslgeom.transfer.measure_transfer`, {py:func}`~sslgeom.transfer.spectrum_baselines`,
# {py:func}`~sslgeom.transfer.source_scores`, {py:func}`~sslgeom.crossval.score_targets`,
# {py:func}`~sslgeom.crossval.paired_comparison`,
# {py:func}`~sslgeom.crossval.correlation_power`, {py:func}`~sslgeom.stats.verdict`,
# {py:func}`~sslgeom.export.export_table`.
#
# ## The test, fixed before the run
#
# Everything below is decided by the parameters cell, before any number is seen:
#
# - **Targets**: the linear-probe accuracy on each task of `tasks` (the confirmatory family) and the
#   5-way few-shot accuracy on the same tasks (a second, exploratory family).
# - **Predictors**: MGMs (all NNK descriptors; the semantic ones only; the augmentation ones only),
#   fitted by leave-one-method-out ridge regression with `n_select` descriptors chosen inside each
#   fold; three label-free or source-domain baselines, each *directly* with its direction fixed in
#   advance (RankMe: higher is better; alpha-ReQ: $|\alpha - 1|$ smaller is better; source kNN
#   accuracy: higher is better) and *through the same cross-validation*; and a nuisance baseline,
#   the backbone label, through the cross-validation (pooled analysis only; the training budget is
#   the nuisance of the budget section).
# - **Analyses**: the main backbone (`main_backbone`, every seed), and all backbones pooled.
# - **Score**: the out-of-sample Spearman correlation, *calibrated*: minus the mean of its own null
#   distribution (defined below).
# - **The claim's test**: the MGM predictor (all descriptors) on the main backbone, mean calibrated
#   Spearman over the linear-probe targets, one-sided method-level permutation p-value,
#   Benjamini-Hochberg adjusted within the confirmatory family.
# - **The rule** ({py:func}`~sslgeom.stats.verdict`): *supported* if the adjusted p-value is at most
#   `q`; otherwise *not supported* if the design had at least 80% power to detect a true
#   method-level correlation of `minimal_rho` between geometry and transfer; otherwise *this design
#   cannot tell*.

# %% tags=["parameters"]
profile = "default"
seed = 0
device = "cpu"
models = None  # list of zoo names, or None for the default zoo
models_per_paradigm = 0  # if models is None, keep only the first N models of each paradigm (0 keeps all)
paradigms = ["contrastive", "non-contrastive", "clustering"]  # models whose transfer is predicted
reference_seeds = [0]  # seeds of the random and supervised references whose transfer is measured (shown only)
main_backbone = "convnet"
tasks = ["fashion_corrupted", "digits", "textures"]
n_train = 500  # images per task split (at most)
n_val = 250
n_test = 1000
c_grid = [0.01, 0.1, 1.0, 10.0]  # inverse regularisation of the linear probe
shots = [5]
n_way = 5
n_query = 15
n_episodes = 400
# geometry settings: the same as the geometry chapter, so its cached table is reused
k = 20
kernel = "cosine"
n_per_class = 100
n_base = 30
n_views = 32
k_augmentation = 10
statistics = ["mean", "median"]
# the claim-2 design (fixed before the run)
n_select = 2  # descriptors kept in each leave-one-method-out fold
q = 0.05  # false discovery rate of the Benjamini-Hochberg correction
minimal_rho = 0.5  # smallest method-level geometry-transfer correlation that would matter
n_permutations = 0  # 0: the fewest with which BH can reject, stats.permutations_needed(m, q)
n_boot = 200  # bootstrap draws over methods (every draw refits everything)
power_rhos = [0.3, 0.5, 0.7, 0.9]
n_power_sim = 100  # simulations per correlation of the power curve
n_power_permutations = 39
n_spectrum = 500  # test images (Fashion-MNIST, or the image_folder pool) for RankMe and alpha-ReQ
# the budget axis
budget_seeds = [0]  # seeds whose budget checkpoints get a measured transfer
budget_tasks = ["digits"]
# your own images and models (the same four parameters in chapters 02, 04 and 05; see "Published checkpoints");
# with image_folder, the task "image_folder" is the folder's pool split 50/20/30 per class (in colour)
image_folder = None  # None: Fashion-MNIST; or a folder of class sub-folders, root/<class>/<image> (PNG, JPEG)
registry = None  # a user registry YAML naming user/<name> checkpoints; None: $SSLGEOM_USER_REGISTRY if set
input_size = None  # input side of published and user models and of the folder's images; None: each model's own
images_per_class = 100  # images read per class from image_folder (the pool the manifolds are drawn from)

# %% tags=["remove-cell"]
import dataclasses
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from myst_nb import glue
from tqdm.auto import tqdm

from sslgeom import crossval, export, geometry, lomo, mgm, paradigm, params, plots, reliability, sources, stats, transfer, zoo
from sslgeom.tasks import TASK_NAMES, build_tasks

params.check_common(profile, seed, device)
params.check(
    {"image_folder": image_folder, "registry": registry, "input_size": input_size,
     "images_per_class": images_per_class,
     "models": models, "models_per_paradigm": models_per_paradigm, "paradigms": paradigms,
     "reference_seeds": reference_seeds, "main_backbone": main_backbone, "tasks": tasks,
     "n_train": n_train, "n_val": n_val, "n_test": n_test, "c_grid": c_grid, "shots": shots,
     "n_way": n_way, "n_query": n_query, "n_episodes": n_episodes, "k": k, "kernel": kernel,
     "n_per_class": n_per_class, "n_base": n_base, "n_views": n_views, "k_augmentation": k_augmentation,
     "statistics": statistics, "n_select": n_select, "q": q, "minimal_rho": minimal_rho,
     "n_permutations": n_permutations, "n_boot": n_boot, "power_rhos": power_rhos, "n_power_sim": n_power_sim,
     "n_power_permutations": n_power_permutations, "n_spectrum": n_spectrum, "budget_seeds": budget_seeds,
     "budget_tasks": budget_tasks},
    {"image_folder": sources.PARAMETER_RULES["image_folder"],
     "registry": sources.PARAMETER_RULES["registry"],
     "input_size": sources.PARAMETER_RULES["input_size"],
     "images_per_class": sources.PARAMETER_RULES["images_per_class"],
     "models": {"type": (list, type(None)), "items": str, "min_length": 1},  # names: checked by the zoo
     "models_per_paradigm": {"type": int, "minimum": 0},
     "paradigms": {"type": list, "items": str, "choices": list(plots.PARADIGM_COLOURS), "min_length": 1},
     "reference_seeds": {"type": list, "items": int, "minimum": 0},
     "main_backbone": {"type": str},
     "tasks": {"type": list, "items": str, "choices": TASK_NAMES, "min_length": 1},
     "n_train": {"type": int, "minimum": 50}, "n_val": {"type": int, "minimum": 20},
     "n_test": {"type": int, "minimum": 50},
     "c_grid": {"type": list, "items": float, "exclusive_minimum": 0, "min_length": 1},
     "shots": {"type": list, "items": int, "minimum": 1, "min_length": 1},
     "n_way": {"type": int, "minimum": 2},
     "n_query": {"type": int, "minimum": 1}, "n_episodes": {"type": int, "minimum": 10},
     "n_select": {"type": int, "minimum": 1}, "q": {"type": float, "exclusive_minimum": 0, "maximum": 0.5},
     "minimal_rho": {"type": float, "exclusive_minimum": 0, "maximum": 0.99},
     "n_permutations": {"type": int, "minimum": 0}, "n_boot": {"type": int, "minimum": 20},
     "power_rhos": {"type": list, "items": float, "minimum": 0, "maximum": 0.99, "min_length": 1},
     "n_power_sim": {"type": int, "minimum": 5}, "n_power_permutations": {"type": int, "minimum": 19},
     "k": {"type": int, "minimum": 2},
     "kernel": {"type": str, "choices": ["cosine", "gaussian"]},
     # the geometry chapter's rules for its settings (same values reuse its cached table)
     "n_per_class": {"type": int, "minimum": 5, "maximum": 1000}, "n_base": {"type": int, "minimum": 0},
     "n_views": {"type": int, "minimum": 0}, "k_augmentation": {"type": int, "minimum": 2},
     "statistics": {"type": list, "items": str, "choices": mgm.STATISTICS, "min_length": 1},
     "n_spectrum": {"type": int, "minimum": 10},
     "budget_seeds": {"type": list, "items": int, "minimum": 0},
     "budget_tasks": {"type": list, "items": str, "choices": TASK_NAMES}},
)
sources.check_paths(image_folder, registry)
# the geometry chapter's settings type (also the cache key), so its tables are read from the cache
geometry_settings = geometry.GeometrySettings(k=k, kernel=kernel, n_per_class=n_per_class, n_base=n_base,
                                              n_views=n_views, k_augmentation=k_augmentation, seed=seed)
chapter_parameters = {name: globals()[name] for name in [
    "profile", "seed", "models", "models_per_paradigm", "paradigms", "reference_seeds", "main_backbone", "tasks",
    "n_train", "n_val", "n_test", "c_grid", "shots", "n_way", "n_query", "n_episodes", "k", "kernel",
    "n_per_class", "n_base", "n_views", "k_augmentation", "statistics", "n_select", "q", "minimal_rho",
    "n_permutations", "n_boot", "power_rhos", "n_power_sim", "n_power_permutations", "n_spectrum",
    "budget_seeds", "budget_tasks", "image_folder", "registry", "input_size", "images_per_class"]}

# %% [markdown]
# ## Target tasks
#
# The default run measures three tasks, none of them the training task itself (the source-domain
# probe and kNN accuracies of every checkpoint are in the zoo's manifest and serve as a baseline
# here); a run on an image folder measures the task `image_folder`, the folder's colour images split
# 50/20/30 per class:
#
# - **fashion_corrupted**: Fashion-MNIST test images, each hit by one of Gaussian noise, blur or low
#   contrast (a shifted domain with the same classes);
# - **digits**: scikit-learn's handwritten digits, resized to 28x28 (out of domain);
# - **textures**: patches of scikit-image's sample images, one class per source image (out of
#   domain, and not object-like at all).

# %% tags=["remove-stderr"]
# the images of the manifolds, of the image_folder task and of the baselines: Fashion-MNIST or image_folder's pool
pool = sources.activate(image_folder, registry=registry, input_size=input_size, images_per_class=images_per_class,
                        seed=seed)
sources.check_class_sizes(n_per_class, pool)
if not pool.is_default:
    print(pool.summary())
task_data = build_tasks(tasks, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, pool=pool)
sizes = pd.DataFrame({name: {**task.split_sizes(), "classes": len(task.classes)} for name, task in task_data.items()}).T
sizes

# %% tags=["remove-cell"]
rng = np.random.default_rng(seed)
shown = [task.test[0][rng.choice(len(task.test[1]), size=8, replace=False)] for task in task_data.values()]
fig, _ = plots.image_grid(plots.thumbnails(shown), row_labels=list(task_data), cell_size=(1.0, 1.1))
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
# chosen on the validation split, then refit on train+validation and scored on the test split.
# Each fit minimises exactly scikit-learn's `LogisticRegression(C=C)` objective, solved to a
# gradient below $10^{-8}$ by `sslgeom.evaluation` (tested against scikit-learn).
#
# **Few-shot**: {glue:text}`n_way`-way episodes with {glue:text}`shots_text` labelled examples per
# class and {glue:text}`n_query` queries per class, drawn from the test split; a query gets the class
# of the nearest class mean of the L2-normalised support features, averaged over
# {glue:text}`n_episodes` episodes.
#
# **What was reduced to keep the book's run short** (about 40 full-budget models on two CPU cores):
# three target tasks instead of four (the in-domain probe is read from the manifest), splits of at
# most {glue:text}`split_text` images, a grid of {glue:text}`n_c` values of `C`
# ({glue:text}`c_range`, against 45 in the reference protocol), one few-shot setting, and transfer
# measured for the seed-{glue:text}`reference_seeds_text` references only (the references are shown,
# never predicted). The `full` profile restores larger splits and grids.

# %% tags=["remove-stderr"]
all_names = zoo.select_models(models, models_per_paradigm)  # None: the default zoo at full budget
all_names = sources.check_models(all_names, pool)  # default-zoo and external models only on images both can see
all_info = zoo.model_labels(all_names)
is_ssl = all_info["paradigm"].isin(paradigms)
names = [n for n in all_names if is_ssl[n] or int(all_info.loc[n, "seed"]) in reference_seeds]
info = all_info.loc[names]
ssl_names = [n for n in names if info.loc[n, "paradigm"] in paradigms]
transfer_protocol = transfer.TransferProtocol(c_grid=c_grid, shots=shots, n_way=n_way, n_query=n_query,
                                              n_episodes=n_episodes, seed=seed)
measured = transfer.measure_transfer(names, task_data, transfer_protocol, device=device)
export.export_table(measured.set_index(["model", "task", "protocol"]), "transfer_scores",
                    chapter="05_transfer_prediction", parameters=chapter_parameters,
                    description="one row per model, task and protocol: the measured transfer score and its interval")
scores = measured.pivot_table(index="model", columns=["task", "protocol"], values="score").loc[names]
scores.round(3)

# %% tags=["remove-cell"]
protocols = transfer_protocol.protocol_names()
few_shot_protocol = protocols[1]
glue("n_way", n_way, display=False)
glue("n_c", len(c_grid), display=False)
glue("c_range", f"{min(c_grid):g} to {max(c_grid):g}", display=False)
glue("shots_text", " or ".join(str(s) for s in shots), display=False)
glue("n_query", n_query, display=False)
glue("n_episodes", f"{n_episodes:,}", display=False)
glue("split_text", f"{n_train:,}/{n_val:,}/{n_test:,} (train/validation/test)", display=False)
glue("reference_seeds_text", ", ".join(str(s) for s in reference_seeds) or "none", display=False)
glue("n_models", str(len(names)), display=False)
glue("n_ssl", str(len(ssl_names)), display=False)
linear = scores.xs("linear", axis=1, level="protocol")[tasks]
order = linear.mean(axis=1).sort_values().index
fig, axes = plt.subplots(1, len(tasks), figsize=(3 * len(tasks), 0.2 * len(order) + 1.2), sharey=True,
                         squeeze=False)
for axis, task in zip(axes[0], tasks):
    for protocol, marker in zip(protocols, "os^"):
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

# %% [markdown]
# ```{glue:figure} fig_transfer
# :name: "fig-transfer"
#
# Transfer of every model (rows, sorted by mean linear-probe accuracy; names and points coloured by
# paradigm) on each task (panels): linear probe (circles) and few-shot accuracy with 95% intervals
# (squares). Look at whether the order of models is the same in every panel (one number would then
# summarise transfer) and at how far apart the SSL models are compared with the references: the
# spread among SSL models is what a predictor has to explain.
# ```
#
# ## How reliable are the targets?
#
# A predictor cannot rank models better than the measurement ranks them. Two kinds of reliability
# apply, each to a different statement:
#
# - **Measurement noise** (for predicting one model's number): a probe's accuracy on $n$ test images
#   has standard error $\sqrt{a(1-a)/n}$ (what a bootstrap over test examples gives), a few-shot mean
#   the standard error of its episodes. The reliability $1 - \overline{SE^2} / \mathrm{Var}(a)$ across
#   the SSL models ({py:func}`~sslgeom.reliability.noise_reliability`) is the share of the spread that is
#   not test-set noise. It leaves out the noise of training (which seed the model got).
# - **Seeds** (for statements about methods): the intraclass correlation ICC(1,k) of method means over
#   the main backbone's seeds ({py:func}`~sslgeom.reliability.icc`), the reliability of a method's mean
#   transfer. ICC(1,1), one seed's reliability, is the share of model-to-model variance that lies
#   between methods: the ceiling for a predictor that knows only the method.

# %% tags=["remove-stderr"]
n_test_of = {name: len(task.test[1]) for name, task in task_data.items()}
target_columns = {protocol: [f"{task} | {protocol}" for task in tasks] for protocol in protocols}
targets = scores.loc[ssl_names].copy()
targets.columns = [f"{task} | {protocol}" for task, protocol in targets.columns]
design = zoo.model_labels(ssl_names)  # method, backbone, seed, budget: from the manifest or the registries
main_names = [n for n in ssl_names if info.loc[n, "backbone"] == main_backbone]
seeds_main = sorted(info.loc[main_names, "seed"].unique())
reliability_rows = {}
for task in tasks:
    for protocol in protocols:
        rows = measured[(measured["task"] == task) & (measured["protocol"] == protocol)].set_index("model").loc[ssl_names]
        if protocol == "linear":
            se = reliability.binomial_standard_error(rows["score"], n_test_of[task])
        else:
            se = (rows["ci_high"] - rows["ci_low"]) / (2 * 1.96)
        row = {"noise reliability": reliability.noise_reliability(rows["score"], se),
               "SD across SSL models": rows["score"].std(ddof=1), "mean SE": float(np.sqrt(np.mean(se**2)))}
        by_seed = rows.loc[main_names].assign(method=info.loc[main_names, "method"], seed=info.loc[main_names, "seed"]) \
            .pivot(index="method", columns="seed", values="score").dropna()
        complete = len(seeds_main) >= 2 and len(by_seed) >= 3
        row["ICC(1,k) method means"] = reliability.icc(by_seed, "1k") if complete else np.nan
        row["ICC(1,1) one seed"] = reliability.icc(by_seed, "1") if complete else np.nan
        reliability_rows[f"{task} | {protocol}"] = row
target_reliability = pd.DataFrame(reliability_rows).T
target_reliability.round(3)

# %% tags=["remove-cell"]
linear_reliability = target_reliability.loc[target_columns["linear"]]
glue("noise_rel_range", f"{linear_reliability['noise reliability'].min():.2f} to "
     f"{linear_reliability['noise reliability'].max():.2f}", display=False)
if linear_reliability["ICC(1,k) method means"].notna().any():
    icc_text = (f"ICC(1,k) of method means over {len(seeds_main)} seeds ranges from "
                f"{linear_reliability['ICC(1,k) method means'].min():.2f} to "
                f"{linear_reliability['ICC(1,k) method means'].max():.2f} on the linear-probe targets, and one seed's "
                f"ICC(1,1) from {linear_reliability['ICC(1,1) one seed'].min():.2f} to "
                f"{linear_reliability['ICC(1,1) one seed'].max():.2f}")
else:
    icc_text = (f"this run has {len(seeds_main)} seed(s) per method on {main_backbone}, so the seed reliability "
                "cannot be computed (n/a)")
glue("icc_text", icc_text, display=False)

# %% [markdown]
# On the linear-probe targets the measurement-noise reliability ranges over
# {glue:text}`noise_rel_range`; {glue:text}`icc_text`. Each predictor's score below is printed beside
# these numbers: a Spearman correlation near the square root of a reliability is as good as the
# measurement allows.
#
# ## Descriptors: geometry and baselines
#
# The geometry descriptors are the NNK geometry vectors of the geometry chapter (same settings, read
# from the cache), split into those of the semantic manifolds and those of the augmentation
# manifolds. The baselines:
#
# - **RankMe** {cite}`garrido2023rankme`: the exponential of the entropy of the normalised singular
#   values of the feature matrix of {glue:text}`n_spectrum` {glue:text}`pool_description`, an
#   effective rank (higher is better);
# - **alpha-ReQ** {cite}`agrawal2022alpha`: the decay exponent alpha of the covariance eigenspectrum,
#   $\lambda_i \propto i^{-\alpha}$; alpha near 1 is the claimed optimum, so the descriptor is
#   $|\alpha - 1|$ (smaller is better);
# - **source kNN**: the cosine 20-nearest-neighbour accuracy on Fashion-MNIST recorded in the zoo's
#   manifest (10,000 training images as memory, 5,000 test images), which uses source labels (higher
#   is better); in a run on an image folder, the same accuracy on the folder's pool (half of each
#   class as memory, the other half as queries);
# - **backbone label** (nuisance): 1 for the second backbone, 0 for the main one.

# %% tags=["remove-stderr"]
glue("n_spectrum", f"{n_spectrum:,}", display=False)
glue("pool_description", pool.description, display=False)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # features undefined for some model are left out (reported in chapter 04)
    table = geometry.geometry_table(ssl_names, geometry_settings, device=device)
    mgm_sets = {
        "MGM all": paradigm.geometry_vectors(table, graph="nnk", statistics=statistics),
        "MGM semantic": paradigm.geometry_vectors(table, graph="nnk", statistics=statistics, manifolds=["semantic"]),
        "MGM augmentation": paradigm.geometry_vectors(table, graph="nnk", statistics=statistics,
                                                      manifolds=["augmentation"]),
    }
spectra = sources.spectrum_baselines(ssl_names, n_spectrum=n_spectrum, seed=seed, device=device, pool=pool)
source = sources.source_scores(ssl_names, seed=seed, device=device, pool=pool)  # the manifest, or kNN on the pool
baselines = pd.DataFrame({"rankme": spectra["rankme"], "alpha_req_distance": (spectra["alpha_req"] - 1).abs(),
                          "source_knn": source["source_knn"]}).loc[ssl_names]
backbone_label = (info.loc[ssl_names, "backbone"] != main_backbone).astype(float).rename("backbone")
# (name, descriptors, pipeline options: fitted with in-fold selection, fitted on all, or a fixed sign)
mgm_options = lomo.PipelineOptions(n_select=n_select)
cv_options = lomo.PipelineOptions()
higher_better, lower_better = lomo.PipelineOptions(sign=+1), lomo.PipelineOptions(sign=-1)
PREDICTORS = [
    ("MGM all", mgm_sets["MGM all"], mgm_options),
    ("MGM semantic", mgm_sets["MGM semantic"], mgm_options),
    ("MGM augmentation", mgm_sets["MGM augmentation"], mgm_options),
    ("RankMe (direct)", baselines["rankme"], higher_better),
    ("alpha-ReQ (direct)", baselines["alpha_req_distance"], lower_better),
    ("source kNN (direct)", baselines["source_knn"], higher_better),
    ("RankMe (CV)", baselines["rankme"], cv_options),
    ("alpha-ReQ (CV)", baselines["alpha_req_distance"], cv_options),
    ("source kNN (CV)", baselines["source_knn"], cv_options),
    ("backbone label (CV)", backbone_label, cv_options),
]
descriptor_counts = pd.Series({name: (frame.shape[1] if frame.ndim == 2 else 1) for name, frame, _ in PREDICTORS},
                               name="descriptors")
baselines.join(info[["method", "backbone", "seed"]]).round(3)

# %% [markdown]
# ## Leave-one-method-out prediction, and why its score needs a null
#
# A method's seeds and its second-backbone run are near-copies of one another: a model whose
# seed twin is in the training folds is predicted from its twin, not from geometry. So every fold
# holds out **all models of one method** ({py:func}`~sslgeom.lomo.lomo_predict`): for the
# held-out method, using the other methods only, keep the {glue:text}`n_select` descriptors with the
# strongest rank correlation with the target, standardise them, fit a ridge regression (penalty
# chosen by an inner leave-one-out), and predict the held-out models.
#
# ```{prf:definition} Calibrated out-of-sample score
# :label: def-calibrated-score
#
# Let $S$ be the Spearman correlation between measured targets $y$ and their leave-one-method-out
# predictions. Let $S^{(1)}, \dots, S^{(B)}$ be the same statistic after permuting whole methods'
# targets (method $u$ receives method $\pi(u)$'s targets, matched on backbone, seed and budget) and
# rerunning the identical pipeline. The calibrated score is
#
# $$
# S_{\mathrm{cal}} = S - \frac{1}{B}\sum_{b=1}^{B} S^{(b)} ,
# $$ (eq-calibrated-score)
#
# and the one-sided p-value is $\bigl(1 + \#\{b : S^{(b)} \ge S\}\bigr) / (B + 1)$.
# ```
#
# Why not report $S$ itself? Holding a method out moves the training mean away from its targets,
# so out-of-sample predictions anti-correlate with the truth even when the descriptors carry no
# information: a negative bias whose size depends on the number of methods, descriptors and the
# selection. Under the null hypothesis (descriptors uninformative, methods exchangeable) the
# permuted runs have the same expectation as the real one, so $S_{\mathrm{cal}}$ averages zero; the
# test suite checks it for every kind of predictor used here (mean within 0.05 of zero on
# pure-noise targets). Because permutations keep each model's backbone, seed and budget, a
# predictor that only knows the backbone earns nothing in the pooled analysis: the calibrated score
# measures what a predictor knows *beyond the design*. A fixed-sign baseline fits nothing and has no
# leave-one-out bias (within one backbone its null mean is about zero; pooled, it carries the
# backbone's share like every other predictor); it goes through the same permutations for its
# p-value.
#
# **Multiplicity.** The confirmatory family is every (analysis, predictor) test on the linear-probe
# targets, one per target plus their mean; BH at $q$ = {glue:text}`q_text` across the family, with
# {glue:text}`n_permutations_text` permutations, at least the $m/q$ needed for BH to reject anything
# ($m$ = {glue:text}`m_confirm` tests). The few-shot targets form a second family, corrected the
# same way.

# %% tags=["remove-stderr"]
backbones_present = sorted(info.loc[ssl_names, "backbone"].unique())
# each analysis evaluates on its models (one backbone, or all pooled), methods leaving together, Spearman
analyses = {main_backbone: lomo.Evaluation(backbone=main_backbone)}
if len(backbones_present) > 1:
    analyses["pooled"] = lomo.Evaluation()


def predictors_for(analysis):
    """The predictors of an analysis: the backbone label only where backbones vary."""
    return [p for p in PREDICTORS if not (p[0].startswith("backbone") and analyses[analysis].backbone is not None)]


m_per_family = sum(len(predictors_for(a)) for a in analyses) * (len(tasks) + 1)
B = n_permutations or stats.permutations_needed(m_per_family, q)
results, scored = [], {}
jobs = [(a, p, protocol) for a in analyses for p in predictors_for(a) for protocol in protocols]
for analysis, (name, descriptors, options), protocol in tqdm(jobs, desc="scores"):
    is_claim = (analysis, name, protocol) == (main_backbone, "MGM all", "linear")  # the claim's interval
    result = crossval.score_targets(descriptors, targets[target_columns[protocol]], design, options=options,
                                    evaluation=analyses[analysis], n_permutations=B, n_boot=n_boot if is_claim else 0,
                                    seed=seed)
    scored[(analysis, name, protocol)] = result
    frame = result.table().rename_axis("target").reset_index()
    results.append(frame.assign(analysis=analysis, predictor=name, protocol=protocol))
comparison = pd.concat(results, ignore_index=True)
for protocol in protocols:  # one BH family per protocol
    rows = comparison["protocol"] == protocol
    comparison.loc[rows, "q_bh"] = stats.bh(comparison.loc[rows, "p_value"].to_numpy(), q)[1]
comparison["p_text"] = [stats.format_pvalue(p, B) for p in comparison["p_value"]]
primary = comparison[(comparison["protocol"] == "linear") & (comparison["target"] == "mean")]
primary.pivot(index="predictor", columns="analysis", values="calibrated").loc[
    [p[0] for p in predictors_for(list(analyses)[-1])]].round(3)

# %% tags=["remove-cell"]
glue("q_text", f"{q:g}", display=False)
glue("n_permutations_text", f"{B:,}", display=False)
glue("m_confirm", str(m_per_family), display=False)
glue("n_select", n_select, display=False)
# the plots module's colours for labels outside its tables (fixed per label; these four are distinct)
KIND_LABELS = {"geometry": "geometry", "baseline (fitted)": "baseline (fitted)",
               "direct baseline": "baseline (direct)", "nuisance": "nuisance"}
kind_of = {name: ("geometry" if name.startswith("MGM") else "nuisance" if name.startswith("backbone") else
                  "direct baseline" if "direct" in name else "baseline (fitted)") for name, *_ in PREDICTORS}
kind_colour = {name: plots.paradigm_colour(kind) for name, kind in kind_of.items()}
fig, axes = plt.subplots(1, len(analyses), figsize=(5.2 * len(analyses), 0.45 * len(PREDICTORS) + 1.4),
                         squeeze=False, sharex=True)
for axis, analysis in zip(axes[0], analyses):
    shown_predictors = [p[0] for p in predictors_for(analysis)]
    for row, name in enumerate(shown_predictors):
        result = scored[(analysis, name, "linear")].mean
        parts = axis.violinplot([result.null], positions=[row], vert=False, widths=0.8, showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor("0.75")
            body.set_alpha(0.8)
        axis.plot(result.observed, row, "o", color=kind_colour[name], markeredgecolor="k", markersize=7)
        axis.plot(result.null_mean, row, "|", color="k", markersize=12)
    axis.set_yticks(range(len(shown_predictors)), shown_predictors, fontsize=8)
    axis.axvline(0, color="k", linewidth=0.6, linestyle=":")
    axis.invert_yaxis()
    axis.set_title(f"{analysis}: mean over linear-probe targets", fontsize=9)
    axis.set_xlabel("out-of-sample Spearman")
kinds_shown = sorted(set(kind_of[p[0]] for a in analyses for p in predictors_for(a)))
axes[0, -1].legend(handles=[plt.Line2D([], [], marker="o", linestyle="", markeredgecolor="k",
                                       color=plots.paradigm_colour(kind), label=KIND_LABELS[kind])
                            for kind in kinds_shown], fontsize=7, frameon=False, loc="lower right")
fig.tight_layout()
glue("fig_null", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_null
# :name: "fig-transfer-null"
#
# Each predictor's real out-of-sample Spearman correlation (dot, mean over the linear-probe
# targets; colour: geometry, fitted baseline, direct baseline, nuisance) beside the distribution of
# the same pipeline's score on method-level permuted targets (grey; the bar is its mean). Look at
# where the grey mass sits: within one backbone the fitted predictors' nulls lie below zero (the
# leave-one-out bias) and the direct baselines' around zero; pooled, the nulls also carry what the
# backbone alone explains, since the permutations keep each model's backbone. A predictor tells
# something only where its dot lies outside its own grey distribution; the calibrated score is the
# distance from the bar to the dot.
# ```
#
# The table: every predictor's real score, its null mean and SD, the calibrated score, the
# p-value (written "< 1/(B+1)" at its floor) and the BH-adjusted value, on the main backbone,
# mean over the linear-probe targets; each beside the targets' reliabilities (mean over the targets).

# %% tags=["remove-stderr"]
def score_view(analysis, protocol="linear", target="mean"):
    rows = comparison[(comparison["analysis"] == analysis) & (comparison["protocol"] == protocol)
                      & (comparison["target"] == target)].set_index("predictor")
    view = rows[["observed", "null_mean", "null_sd", "calibrated", "p_text", "q_bh"]].copy()
    relevant = target_reliability.loc[target_columns[protocol]] if target == "mean" else target_reliability.loc[[target]]
    view["sqrt noise reliability"] = np.sqrt(relevant["noise reliability"].clip(lower=0)).mean()
    view["sqrt ICC(1,1)"] = np.sqrt(relevant["ICC(1,1) one seed"].clip(lower=0)).mean()
    return view


score_view(main_backbone).round(3)

# %% [markdown]
# The same on the pooled backbones (where there is a second backbone), then every target separately:

# %% tags=["remove-stderr"]
if "pooled" in analyses:
    display(score_view("pooled").round(3))
else:
    print(f"Only the {main_backbone} backbone is in this run: no pooled analysis.")
comparison[comparison["protocol"] == "linear"].pivot_table(
    index="predictor", columns=["analysis", "target"], values="calibrated").round(2)

# %% [markdown]
# ## Semantic or augmentation geometry? Which descriptors are chosen?
#
# Each fold picks its own {glue:text}`n_select` descriptors, so the fraction of folds in which a
# descriptor is chosen (main backbone, averaged over the linear-probe targets) says how consistently
# it carries the signal. The semantic and augmentation predictors are scored separately above.

# %% tags=["remove-stderr"]
selection = scored[(main_backbone, "MGM all", "linear")].selected.mean(axis=1).sort_values(ascending=False)
semantic_share = float(selection[selection.index.str.startswith("semantic")].sum() / selection.sum())
selection.head(10).rename("fraction of folds").round(3).to_frame()

# %% tags=["remove-cell"]
glue("semantic_share", f"{100 * semantic_share:.0f}%", display=False)
sem = score_view(main_backbone).loc[["MGM semantic", "MGM augmentation"]]
glue("sem_aug_text", f"semantic descriptors alone: calibrated {sem.loc['MGM semantic', 'calibrated']:.2f} "
     f"(p {sem.loc['MGM semantic', 'p_text']}); augmentation descriptors alone: calibrated "
     f"{sem.loc['MGM augmentation', 'calibrated']:.2f} (p {sem.loc['MGM augmentation', 'p_text']})", display=False)

# %% [markdown]
# Of all selections made by the full MGM predictor, {glue:text}`semantic_share` went to semantic
# descriptors; {glue:text}`sem_aug_text`. With this few methods a descriptor can be chosen often
# because it is correlated with one that matters.
#
# ## Geometry against each baseline, paired
#
# Two predictors are compared on the same models: the difference of their mean Spearman over the
# linear-probe targets, a bootstrap interval that resamples methods and **refits everything** in
# each of {glue:text}`n_boot` draws, and a paired permutation p-value that swaps the two
# predictors' held-out predictions method by method
# ({py:func}`~sslgeom.crossval.paired_comparison`; its docstring gives its measured type-I rates).
# The difference is of raw scores: the fitted predictors' raw scores carry their null bias, the
# direct baselines' do not, so read it beside the calibrated scores above.

# %% tags=["remove-stderr"]
glue("n_boot", f"{n_boot:,}", display=False)
# the paired test's swap patterns (all 2^methods when at most 4096: exact); the seed also seeds the bootstrap
swaps = dataclasses.replace(crossval.PAIRED_SWAPS, seed=seed)
paired_rows = []
mgm_all = mgm_sets["MGM all"]
pair_jobs = [(a, p) for a in analyses for p in predictors_for(a) if not p[0].startswith("MGM")]
for analysis, (name, descriptors, options) in tqdm(pair_jobs, desc="paired comparisons"):
    result = crossval.paired_comparison(mgm_all, descriptors, targets[target_columns["linear"]], design,
                                        options_a=mgm_options, options_b=options, evaluation=analyses[analysis],
                                        n_boot=n_boot, permutations=swaps)
    paired_rows.append({"analysis": analysis, "baseline": name, "MGM": result.score_a, "baseline score": result.score_b,
                        "difference": result.difference, "low": result.low, "high": result.high,
                        "p_value": result.p_value, "exact": result.exact})
paired = pd.DataFrame(paired_rows)
paired["p_text"] = [stats.format_pvalue(p) if exact else stats.format_pvalue(p, 999)
                    for p, exact in zip(paired["p_value"], paired["exact"])]
paired.round(3)

# %% [markdown]
# ## What could this design detect? Power
#
# "No effect found" means something only beside the smallest effect the design would have found.
# {py:func}`~sslgeom.crossval.correlation_power` simulates the claim's test on this design (same
# methods, seeds and models; the same pipeline, keeping {glue:text}`n_select` descriptors per fold;
# the mean over {glue:text}`n_linear` targets). The {glue:text}`n_descriptors_all` MGM descriptors
# are correlated: their correlation matrix has a participation ratio
# ({py:func}`~sslgeom.crossval.effective_descriptors`) of {glue:text}`n_effective`, so the
# simulation searches {glue:text}`n_effective` independent descriptors, one of them informative
# (searching as many independent descriptors as there are columns would understate the power).
# Each descriptor has a latent per-method value; the informative one and the methods' transfer
# value have true correlation $\rho$; every model adds seed-level noise whose size relative to the
# between-method spread is
# taken from the data (the median over descriptors, and over the linear targets, of the within- to
# between-method SD ratio; 0.5 when there is one seed). The targets share the method-level
# transfer value, the optimistic case of tasks that agree; power is computed at the 5% level,
# before the BH correction, so it is an upper bound for the corrected test.

# %% tags=["remove-stderr"]
main_design = design.loc[main_names]


def noise_ratio(values):
    """Median over columns of the within- to between-method SD ratio on the main backbone (NaN without seeds)."""
    if len(seeds_main) < 2:
        return np.nan
    between, within = stats.variance_components(values.loc[main_names].to_numpy(), info.loc[main_names, "method"])
    ratio = np.where(between > 0, within / np.where(between > 0, between, 1), 3.0)
    return float(np.median(np.minimum(ratio, 3.0)))


noise_x = noise_ratio(mgm_all.loc[:, stats.varying_columns(mgm_all.loc[main_names])])
noise_y = noise_ratio(targets[target_columns["linear"]])
noise_x, noise_y = (0.5 if not np.isfinite(v) else v for v in (noise_x, noise_y))
n_effective = max(1, int(round(crossval.effective_descriptors(mgm_all.loc[main_names]))))
power_kwargs = dict(noise_x=noise_x, noise_y=noise_y, n_descriptors=n_effective,
                    options=lomo.PipelineOptions(n_select=min(n_select, n_effective)), n_targets=len(tasks),
                    simulation=stats.PowerSimulation(n_sim=n_power_sim, n_permutations=n_power_permutations,
                                                     seed=seed))
power_grid = sorted(set(power_rhos) | {minimal_rho})
power_curve, power_min_rho = crossval.correlation_power(main_design, power_grid, **power_kwargs)
power_at_minimal = float(power_curve.loc[np.isclose(power_curve["rho"], minimal_rho), "power"].iloc[0])
power_curve.round(3)

# %% tags=["remove-cell"]
glue("n_descriptors_all", str(mgm_all.shape[1]), display=False)
glue("n_effective", str(n_effective), display=False)
glue("n_linear", str(len(tasks)), display=False)
glue("noise_text", f"{noise_x:.2f} (descriptors) and {noise_y:.2f} (targets)", display=False)
glue("power_at_minimal", f"{100 * power_at_minimal:.0f}%", display=False)
glue("minimal_rho_text", f"{minimal_rho:g}", display=False)
power_text = (f"80% power at rho = {power_min_rho:.1f}" if np.isfinite(power_min_rho)
              else f"below 80% power at every rho up to {max(power_grid):g}")
glue("power_text", power_text, display=False)
fig, axis = plt.subplots(figsize=(5, 3.2))
axis.fill_between(power_curve["rho"], power_curve["low"], power_curve["high"], color="0.85")
axis.plot(power_curve["rho"], power_curve["power"], "o-", color=plots.paradigm_colour("geometry"))
axis.axhline(0.8, color="k", linestyle="--", linewidth=0.8)
axis.axvline(minimal_rho, color="0.4", linestyle=":", linewidth=1)
axis.set_xlabel("true method-level correlation ρ")
axis.set_ylabel("power at the 5% level")
axis.set_ylim(0, 1.02)
fig.tight_layout()
glue("fig_power", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_power
# :name: "fig-transfer-power"
#
# Power of the claim's test on this design (dots; grey band: 95% interval over the simulations)
# against the true correlation between methods' geometry and transfer. The dashed line is 80%
# power, the dotted line the minimal effect of interest. Read where the curve crosses the dashed
# line: effects to its left would go unseen most of the time.
# ```
#
# The seed noise measured here is {glue:text}`noise_text` times the between-method SD. At the
# minimal effect of interest, $\rho$ = {glue:text}`minimal_rho_text`, the power is
# {glue:text}`power_at_minimal`; overall: {glue:text}`power_text`.
#
# ## The verdict on claim 2
#
# The rule, as stated at the top: the claim's test is the MGM predictor's mean calibrated Spearman
# over the linear-probe targets on the main backbone. *Supported* if its BH-adjusted p-value is at
# most $q$; otherwise *not supported* if the power at the minimal effect is at least 80%; otherwise
# *this design cannot tell*.

# %% tags=["remove-stderr"]
claim_row = primary.set_index(["analysis", "predictor"]).loc[(main_backbone, "MGM all")]
claim_result = scored[(main_backbone, "MGM all", "linear")]
claim_low, claim_high = claim_result.mean_interval
claim_verdict = stats.verdict(claim_row["q_bh"], power_at_minimal, q=q)
claim_statistic = (f"calibrated Spearman {claim_row['calibrated']:.2f} [{claim_low:.2f}, {claim_high:.2f}], "
                   f"p {stats.format_pvalue(claim_row['p_value'], B)}, BH q = {stats.format_pvalue(claim_row['q_bh'])}")
claim_scores = primary.set_index(["analysis", "predictor"])[["observed", "null_mean", "calibrated", "p_value", "q_bh"]]
export.export_table(comparison.set_index(["analysis", "predictor", "protocol", "target"]).drop(columns="p_text"),
                    "predictor_comparison", chapter="05_transfer_prediction", parameters=chapter_parameters,
                    description="one row per analysis, predictor, protocol and target (and their mean): out-of-sample "
                                "Spearman, its permutation null mean and SD, calibrated score, p-value, BH-adjusted p")
export.export_table(claim_scores, "claim_scores", chapter="05_transfer_prediction", parameters=chapter_parameters,
                    description="one row per analysis and predictor: mean Spearman over the linear-probe targets, "
                                "null mean, calibrated score, p-value and BH-adjusted p")
pd.Series({"test": "MGM all, main backbone, mean over linear-probe targets", "statistic": claim_statistic,
           "power": power_text, "verdict": claim_verdict}).to_frame("claim 2")

# %% tags=["remove-cell"]
glue("claim2_test", f"leave-one-method-out ridge on MGMs ({main_backbone}, {len(main_names)} SSL models); mean "
     f"calibrated Spearman over {len(tasks)} linear-probe targets; method-level permutations", display=False)
glue("claim2_statistic", claim_statistic, display=False)
glue("claim2_power", power_text, display=False)
glue("claim2_verdict", claim_verdict, display=False)
main_paired = paired[paired["analysis"] == main_backbone].set_index("baseline")
main_calibrated = primary[primary["analysis"] == main_backbone].set_index("predictor")["calibrated"]
best_baseline = main_calibrated.loc[main_paired.index].idxmax()  # best by calibrated score (raw CV scores carry their bias)
best = main_paired.loc[best_baseline]
baseline_text = (f"best baseline by calibrated score: {best_baseline} (calibrated {main_calibrated[best_baseline]:.2f}, "
                 f"raw {best['baseline score']:.2f}); MGM raw minus baseline raw {best['difference']:+.2f} "
                 f"[{best['low']:.2f}, {best['high']:.2f}], paired p = {best['p_text']}")
glue("claim2_baseline_text", baseline_text, display=False)
label_sensitivity = ("n/a: the claim-2 test uses no paradigm labels (methods are the units; predictors, targets and "
                     "permutations never group methods by paradigm)")
glue("claim2_label_sensitivity", label_sensitivity, display=False)
if claim_verdict == stats.SUPPORTED:
    meaning = (f"the test rejects after the BH correction: the geometry ranks the held-out methods' transfer better than "
               f"the same pipeline does on permuted targets")
elif claim_verdict == stats.NOT_SUPPORTED:
    meaning = (f"the test does not reject, and the design had {100 * power_at_minimal:.0f}% power at rho = "
               f"{minimal_rho:g}: an effect of that size would most likely have been seen")
else:
    meaning = (f"the test does not reject, but the design had only {100 * power_at_minimal:.0f}% power at rho = "
               f"{minimal_rho:g}: this is absence of evidence, not evidence that geometry fails to predict transfer. "
               f"What limits it: {len(set(info.loc[main_names, 'method']))} methods are the units, the search runs over "
               f"{mgm_all.shape[1]} correlated descriptors, and the seed-to-seed SD of the targets is {noise_y:.2f} times "
               f"their between-method SD")
glue("verdict_meaning", meaning, display=False)
glue("claim_calibrated", f"{claim_row['calibrated']:.2f}", display=False)
glue("claim_observed", f"{claim_row['observed']:.2f}", display=False)
glue("claim_null_mean", f"{claim_result.mean.null_mean:.2f}", display=False)
if "pooled" in analyses:
    pooled_row = primary.set_index(["analysis", "predictor"]).loc[("pooled", "MGM all")]
    pooled_text = (f"pooled over backbones the same predictor scores calibrated {pooled_row['calibrated']:.2f} "
                   f"(p {stats.format_pvalue(pooled_row['p_value'], B)}, BH q = {stats.format_pvalue(pooled_row['q_bh'])})")
else:
    pooled_text = "this run has one backbone, so there is no pooled analysis"
glue("pooled_text", pooled_text, display=False)
n_supported = int(((comparison["protocol"] == "linear") & (comparison["q_bh"] <= q)).sum())
glue("n_rejected", str(n_supported), display=False)

# %% [markdown]
# **Verdict: {glue:text}`claim2_verdict`.** In words: {glue:text}`verdict_meaning`.
#
# The MGM predictor's raw out-of-sample Spearman is
# {glue:text}`claim_observed` against a null mean of {glue:text}`claim_null_mean`:
# {glue:text}`claim2_statistic` (the interval: {glue:text}`n_boot` bootstrap draws over methods,
# each refitted, shifted by the null mean). Power: {glue:text}`claim2_power`. Against the
# baselines: {glue:text}`claim2_baseline_text`. As a sensitivity check of scope,
# {glue:text}`pooled_text`. In the whole confirmatory family {glue:text}`n_rejected` tests are
# rejected at BH q = {glue:text}`q_text`. Sensitivity to the paradigm labels:
# {glue:text}`claim2_label_sensitivity`.
#
# The numbers behind this section, to take away: every predictor's mean score
# ({download}`claim_scores.csv <tables/05_transfer_prediction/claim_scores.csv>`), every predictor on
# every target ({download}`predictor_comparison.csv <tables/05_transfer_prediction/predictor_comparison.csv>`)
# and the measured transfer of every model ({download}`transfer_scores.csv <tables/05_transfer_prediction/transfer_scores.csv>`),
# each with a `.json` file beside it that records the parameters and package versions of this run.

# %% tags=["remove-cell"]
def scatter_figure():
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.1 * len(tasks), 3.2), squeeze=False)
    predictions = claim_result.predictions
    for axis, target in zip(axes[0], target_columns["linear"]):
        measured_values = targets.loc[main_names, target]
        for model in main_names:
            axis.scatter(measured_values[model], predictions.loc[model, target], s=25, edgecolor="k", linewidth=0.4,
                         color=plots.paradigm_colour(info.loc[model, "paradigm"]),
                         marker=plots.backbone_marker(info.loc[model, "backbone"]))
        low_, high_ = measured_values.min(), measured_values.max()
        axis.plot([low_, high_], [low_, high_], color="0.4", linestyle="--", linewidth=1)
        calibrated = claim_result.per_target[target].calibrated
        axis.set_title(f"{target.split(' | ')[0]}\ncalibrated ρ = {calibrated:.2f}", fontsize=9)
        axis.set_xlabel("measured accuracy")
    axes[0, 0].set_ylabel("predicted (leave-one-method-out)")
    axes[0, -1].legend(handles=plots.legend_handles(info.loc[main_names, "paradigm"]), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


fig = scatter_figure()
glue("fig_scatter", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_scatter
# :name: "fig-scatter"
#
# Linear-probe accuracy predicted from MGMs (leave-one-method-out, main backbone) against the
# measured accuracy, one panel per task, one point per SSL model (colour: paradigm); the dashed line
# is perfect prediction. Points along the line mean the geometry ranks transfer; a cloud whose
# predictions hardly vary, or whose seeds of one method scatter as widely as different methods,
# means it does not.
# ```
#
# ## Along training: the budget axis
#
# Every main-backbone run saved checkpoints at {glue:text}`budget_fractions_text` of its training
# budget. Checkpoints of one run are repeated measures of that run, so they stay out of the main
# analysis; here they answer a different question: does transfer grow with training, and does it
# follow the source-domain accuracy? The manifest's source-domain probe and kNN accuracies cover
# every checkpoint; measured transfer ({glue:text}`budget_tasks_text`, linear probe and few-shot) is
# computed for the runs of seed(s) {glue:text}`budget_seeds_text` only, to keep the run short.
# Geometry along training is not computed in this chapter.

# %% tags=["remove-stderr"]
manifest_table = zoo.manifest()
run_rows = manifest_table[(manifest_table["backbone"] == main_backbone) & manifest_table["paradigm"].isin(paradigms)]
if models_per_paradigm:  # the smoke profile: the methods of the main analysis only
    run_rows = run_rows[run_rows["method"].isin(info.loc[ssl_names, "method"])]
run_rows = run_rows[["name", "run_id", "method", "paradigm", "seed", "budget_fraction", "probe_accuracy",
                     "knn_accuracy"]].copy()
budgets = sorted(run_rows["budget_fraction"].unique())
glue("budget_fractions_text", ", ".join(f"{b:g}" for b in budgets), display=False)
glue("budget_tasks_text", ", ".join(budget_tasks) or "none", display=False)
glue("budget_seeds_text", ", ".join(str(s) for s in budget_seeds) or "none", display=False)
budget_names = list(run_rows.loc[run_rows["seed"].isin(budget_seeds), "name"])
budget_measured = pd.DataFrame(columns=["model", "task", "protocol", "score", "ci_low", "ci_high"])
if budget_tasks and budget_names:
    budget_task_data = {t: task_data[t] if t in task_data else
                        build_tasks([t], n_train=n_train, n_val=n_val, n_test=n_test, seed=seed)[t] for t in budget_tasks}
    budget_measured = transfer.measure_transfer(budget_names, budget_task_data, transfer_protocol, device=device)
along = run_rows.set_index("name")
if len(budget_measured):
    measured_along = budget_measured.pivot_table(index="model", columns=["task", "protocol"], values="score")
    measured_along.columns = [f"{task} | {protocol}" for task, protocol in measured_along.columns]
    along = along.join(measured_along, how="left")


def method_gain(column):
    """Per method: mean over its runs of (value at full budget - value at the smallest budget)."""
    wide = along.dropna(subset=[column]).pivot_table(index=["method", "run_id"], columns="budget_fraction",
                                                     values=column)
    if wide.shape[1] < 2:
        return pd.Series(dtype=float)
    return (wide[wide.columns.max()] - wide[wide.columns.min()]).groupby(level="method").mean()


def sign_flip_p(gains):
    """Exact two-sided sign-flip p-value of the mean gain over methods (methods are the units)."""
    values = gains.to_numpy()
    if len(values) < 2:
        return np.nan
    patterns = np.where((np.arange(2 ** len(values))[:, None] >> np.arange(len(values))) & 1, -1.0, 1.0)
    null = np.abs(patterns @ values)
    return stats.exact_pvalue(abs(values.sum()), null)


budget_columns = ["probe_accuracy", "knn_accuracy"] + [c for c in along.columns if " | " in c]
budget_summary = pd.DataFrame({column: {"mean gain, smallest to full budget": method_gain(column).mean(),
                                        "methods with a gain": int((method_gain(column) > 0).sum()),
                                        "methods": len(method_gain(column)),
                                        "sign-flip p (methods)": sign_flip_p(method_gain(column))}
                               for column in budget_columns}).T
budget_summary.round(3)

# %% tags=["remove-cell"]
panels = ["probe_accuracy"] + [c for c in along.columns if c.endswith("| linear")]
fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
for axis, column in zip(axes[0], panels):
    for run_id, rows in along.dropna(subset=[column]).groupby("run_id"):
        rows = rows.sort_values("budget_fraction")
        axis.plot(rows["budget_fraction"], rows[column], "-o", markersize=3, linewidth=1, alpha=0.8,
                  color=plots.paradigm_colour(rows["paradigm"].iloc[0]))
    axis.set_xlabel("fraction of the training budget")
    axis.set_title("source probe (manifest)" if column == "probe_accuracy" else column, fontsize=9)
axes[0, 0].set_ylabel("accuracy")
axes[0, -1].legend(handles=plots.legend_handles(along["paradigm"]), fontsize=7, frameon=False)
fig.tight_layout()
glue("fig_budget", fig, display=False)
plt.close(fig)
probe_gain = budget_summary.loc["probe_accuracy"]
glue("budget_probe_text", f"{probe_gain['mean gain, smallest to full budget'] * 100:+.1f} points on average, "
     f"{int(probe_gain['methods with a gain'])} of {int(probe_gain['methods'])} methods gaining "
     f"(sign-flip p = {stats.format_pvalue(probe_gain['sign-flip p (methods)'])})", display=False)

# %% [markdown]
# ```{glue:figure} fig_budget
# :name: "fig-transfer-budget"
#
# Accuracy along training: the source-domain linear probe recorded in the manifest (left; every
# run of every seed) and the measured linear-probe transfer on the budget task(s) (right; the runs
# of the chosen seeds), one line per run, coloured by paradigm. Look at whether lines rise, and
# whether the runs that gain most on the source also gain most on transfer.
# ```
#
# From the smallest budget to the full one, the source probe changes by {glue:text}`budget_probe_text`.
# The table above gives the same for every measured column; the units of the sign-flip test are the
# methods (each method's gain averaged over its runs), so its smallest attainable p-value is
# $2/2^{n}$ for $n$ methods.
#
# The same checkpoints let the *training budget* play its role as a nuisance baseline: on the
# checkpoints with measured transfer, how well does the budget fraction alone rank transfer, through
# the same leave-one-method-out pipeline, beside the source-domain kNN accuracy scored directly?

# %% tags=["remove-stderr"]
budget_targets_columns = [c for c in along.columns if " | " in c]
if budget_targets_columns and along[budget_targets_columns].notna().all(axis=1).sum() >= 6:
    checked = along.dropna(subset=budget_targets_columns)
    budget_design = manifest_table.set_index("name").loc[checked.index]
    budget_rows = {}
    for name, descriptor, options in [("budget fraction (CV)", checked["budget_fraction"], cv_options),
                                      ("budget fraction (direct)", checked["budget_fraction"], higher_better),
                                      ("source kNN (direct)", checked["knn_accuracy"], higher_better)]:
        if len(checked["method"].unique()) < 3:
            break
        result = crossval.score_targets(descriptor, checked[budget_targets_columns], budget_design, options=options,
                                        n_permutations=max(B, 199), seed=seed).mean
        budget_rows[name] = {"observed": round(result.observed, 3), "null mean": round(result.null_mean, 3),
                             "calibrated": round(result.calibrated, 3) + 0.0,  # + 0.0: no "-0.0"
                             "p": stats.format_pvalue(result.p_value, max(B, 199))}
    budget_scores = pd.DataFrame.from_dict(budget_rows, orient="index")
else:
    budget_scores = pd.DataFrame(columns=["observed", "null mean", "calibrated", "p"])
budget_scores

# %% [markdown]
# The permutations keep each checkpoint's budget (they move whole methods, matched on budget), so
# the budget's *calibrated* score is zero by construction: the raw score says how much of the
# ranking the budget alone explains, and the calibrated scores of the other predictors measure what
# they add beyond it.
#
# ## Exercises
#
# ```{exercise}
# :label: ex-transfer-design
#
# Change the design and read the power: rerun the power simulation of this chapter on the main
# backbone with one seed per method instead of {glue:text}`n_seeds_main`
# (`crossval.correlation_power(main_design[main_design["seed"] == 0], ...)` with the same
# `power_kwargs`). At the minimal effect $\rho$ = {glue:text}`minimal_rho_text`, how does the power
# change, and what would the verdict rule then say about a non-significant result?
# ```

# %% tags=["remove-cell"]
glue("n_seeds_main", str(len(seeds_main)), display=False)
one_seed = main_design[main_design["seed"] == min(seeds_main)]
if len(one_seed) >= 3 and one_seed["method"].nunique() >= 3:
    one_seed_curve, _ = crossval.correlation_power(one_seed, [minimal_rho], **power_kwargs)
    one_seed_power = float(one_seed_curve["power"].iloc[0])
    one_seed_text = (f"with one seed ({len(one_seed)} models) the power at rho = {minimal_rho:g} is "
                     f"{100 * one_seed_power:.0f}%, against {100 * power_at_minimal:.0f}% with {len(seeds_main)} seed(s)")
else:
    one_seed_power = np.nan
    one_seed_text = "the main backbone has too few methods for the simulation"
glue("one_seed_text", one_seed_text, display=False)
rule_text = ("below 80%, so a non-significant result would read 'this design cannot tell'"
             if not (np.isfinite(one_seed_power) and one_seed_power >= 0.8)
             else "still at least 80%, so a non-significant result would read 'not supported'")
glue("one_seed_rule", rule_text, display=False)

# %% [markdown]
# ```{solution} ex-transfer-design
# :class: dropdown
#
# Computed in this run: {glue:text}`one_seed_text`; the power is {glue:text}`one_seed_rule`. Seeds
# do not add methods (the unit of the test), but they average the seed noise out of each method's
# descriptors and targets, which is what makes a given method-level correlation visible.
# ```
#
# ```{exercise}
# :label: ex-transfer-leak
#
# Select the {glue:text}`n_select` descriptors most correlated with the target on *all* models,
# then run the leave-one-method-out ridge on those only, on targets replaced by pure noise. Compare
# the mean raw Spearman over repetitions with that of the honest pipeline (selection inside the
# folds). What goes wrong?
# ```

# %% tags=["remove-cell"]
leak_rng = np.random.default_rng(seed)
leaky, honest = [], []
for _ in range(20):
    noise = pd.Series(leak_rng.normal(size=len(main_names)), index=main_names)
    chosen = mgm_all.loc[main_names].corrwith(noise, method="spearman").abs().nlargest(n_select).index
    for store, frame, options in ((leaky, mgm_all[chosen], cv_options), (honest, mgm_all, mgm_options)):
        predicted = lomo.lomo_predict(frame, noise, design, options=options)
        store.append(predicted.corr(noise.loc[predicted.index], method="spearman"))
glue("leak_text", f"over 20 noise targets the leaky protocol's mean raw Spearman is {np.mean(leaky):.2f}, the "
     f"honest one's {np.mean(honest):.2f}", display=False)

# %% [markdown]
# ```{solution} ex-transfer-leak
# :class: dropdown
#
# Computed in this run: {glue:text}`leak_text`. Selecting on all models lets the held-out methods
# decide which descriptors are used, so their predictions are no longer out of sample: among
# {glue:text}`n_descriptors_all` descriptors some correlate with pure noise by chance, and the leaky
# protocol reports a positive score where the honest one reports its (negative) leave-one-out bias,
# which the calibration then removes.
# ```
#
# ```{exercise}
# :label: ex-transfer-fewshot
#
# Is few-shot transfer easier or harder to predict from geometry than the linear probe on this zoo,
# and which manifold (semantic or augmentation) carries more of it? Use the `comparison` table
# (rows with protocol `5way5shot`, target `mean`, the main backbone).
# ```

# %% tags=["remove-cell"]
few = comparison[(comparison["protocol"] == few_shot_protocol) & (comparison["target"] == "mean")
                 & (comparison["analysis"] == main_backbone)].set_index("predictor")
lin = primary[primary["analysis"] == main_backbone].set_index("predictor")
glue("fewshot_text", "; ".join(
    f"{name}: calibrated {lin.loc[name, 'calibrated']:.2f} (linear) against {few.loc[name, 'calibrated']:.2f} "
    f"(few-shot, BH q = {stats.format_pvalue(few.loc[name, 'q_bh'])})"
    for name in ["MGM all", "MGM semantic", "MGM augmentation"]), display=False)

# %% [markdown]
# ```{solution} ex-transfer-fewshot
# :class: dropdown
#
# Computed in this run, main backbone, mean over tasks: {glue:text}`fewshot_text`. Nearest-prototype
# accuracy depends directly on how tight and separated the class clouds are, which the semantic
# metrics describe, so one might expect the semantic predictor to do better on few-shot targets;
# read the numbers above against that expectation, and against the few-shot targets' reliabilities
# in the reliability table.
# ```
