"""Leave-one-method-out prediction: the pipeline that turns a predictor's descriptors into out-of-sample predictions.

A method's seeds, budget checkpoints and backbones are near-copies of one another, so a model's
transfer is easy to "predict" from its siblings. :func:`lomo_predict` therefore predicts each
model with every model of its method held out together: in each fold, optional descriptor
selection, standardisation and a ridge whose penalty is chosen within the training methods (the
pipeline of :mod:`sslgeom.prediction`), pooling backbones or restricted to one. A predictor's
pipeline options (selection, ridge penalties, or a fixed sign for a single-number baseline)
travel together as one :class:`PipelineOptions`, and what is evaluated (backbone, unit, score) as
one :class:`Evaluation`. The statistics of these predictions (scores calibrated against their
permutation null, bootstraps, paired comparisons, power) are in :mod:`sslgeom.crossval`.

The design (one row per model) is a manifest: columns ``method, backbone, seed,
budget_fraction``, indexed by model name (or with a ``name`` column).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .prediction import RIDGE_ALPHAS, SCORES, _ridge_fit, _select_columns
from .validation import check_choice, check_float, check_int

__all__ = [
    "POSITION_COLUMNS",
    "PipelineOptions",
    "Evaluation",
    "lomo_predict",
]


#: Columns that locate a model within its method: permuted targets are matched on them.
POSITION_COLUMNS: tuple[str, ...] = ("backbone", "seed", "budget_fraction")


@dataclass(frozen=True)
class PipelineOptions:
    """How one predictor's descriptors become out-of-sample predictions.

    The options travel together through every function that predicts (:func:`lomo_predict`,
    :func:`sslgeom.crossval.score_targets`, :func:`sslgeom.crossval.correlation_power`): one set
    per predictor (:func:`sslgeom.crossval.paired_comparison` takes one for each of its two).
    Frozen and hashable, so a set of options can also key a cache.

    Attributes
    ----------
    n_select : int, optional
        Descriptors kept per fold, those with the largest absolute Spearman correlation with the
        target on the training units (``None``: all; a count at or above the number of descriptors
        keeps all).
    alphas : tuple of float
        Ridge penalties, positive and finite; each fold uses the one with the smallest exact
        leave-one-model-out error within its training units.
    sign : {None, 1, -1}
        ``None``: the predictor is fitted (in-fold selection, standardisation, ridge). ``1`` or
        ``-1``: a single number per model used as it is, ``sign * descriptor``, its direction
        fixed in advance; nothing is fitted, so ``n_select`` stays ``None``.

    Examples
    --------
    ``PipelineOptions(n_select=2)``: a descriptor set, two descriptors kept per fold.
    ``PipelineOptions(sign=-1)``: a single-number baseline, lower values predicting better transfer.
    """

    n_select: int | None = None
    alphas: tuple[float, ...] = RIDGE_ALPHAS
    sign: int | None = None

    def __post_init__(self) -> None:
        if self.n_select is not None:
            object.__setattr__(self, "n_select", check_int(self.n_select, "n_select", minimum=1))
        if isinstance(self.alphas, (str, bytes)) or not isinstance(self.alphas, Iterable):
            raise TypeError(f"alphas must be a sequence of ridge penalties, e.g. (0.1, 1.0, 10.0); "
                            f"got {self.alphas!r}.")
        alphas = tuple(check_float(alpha, "each ridge penalty in alphas") for alpha in self.alphas)
        if not alphas or min(alphas) <= 0:
            raise ValueError(f"alphas must hold at least one ridge penalty, all positive; got {alphas}.")
        object.__setattr__(self, "alphas", alphas)
        if self.sign is None:
            return
        if isinstance(self.sign, bool) or self.sign not in (1, -1):
            raise ValueError(f"sign must be None (fitted), 1 or -1 (a fixed-sign baseline); got {self.sign!r}.")
        object.__setattr__(self, "sign", int(self.sign))
        if self.n_select is not None:
            raise ValueError(f"a fixed-sign baseline is not fitted, so it selects nothing: with sign={self.sign} "
                             f"leave n_select at None (got {self.n_select}).")


@dataclass(frozen=True)
class Evaluation:
    """What a predictor is evaluated on: which models, which unit leaves together, which score.

    The three travel together through every function that predicts or scores
    (:func:`lomo_predict`, :func:`sslgeom.crossval.score_targets`,
    :func:`sslgeom.crossval.paired_comparison`, :func:`sslgeom.crossval.correlation_power`); a
    function that only predicts (:func:`lomo_predict`) reads ``backbone`` and ``unit`` and leaves
    ``statistic`` aside. Frozen and validated once; whether ``unit`` is a column of the design is
    checked against the design.

    Attributes
    ----------
    backbone : str, optional
        Restrict to models of this backbone (e.g. the main one); ``None`` pools backbones.
    unit : str
        Design column whose values leave together (and are permuted together).
    statistic : {"spearman", "kendall", "r2"}
        Score of out-of-sample predictions against the target (:data:`sslgeom.prediction.SCORES`).

    Examples
    --------
    ``Evaluation(backbone="convnet")``: the main backbone's models, methods leaving together,
    Spearman.
    """

    backbone: str | None = None
    unit: str = "method"
    statistic: str = "spearman"

    def __post_init__(self) -> None:
        if self.backbone is not None and not isinstance(self.backbone, str):
            raise TypeError(f"backbone must be a backbone name such as 'convnet', or None to pool backbones; "
                            f"got {self.backbone!r}.")
        if not isinstance(self.unit, str):
            raise TypeError(f"unit must be the name of a design column, e.g. 'method'; got {self.unit!r}.")
        if not self.unit:
            raise ValueError("unit must name a design column, e.g. 'method'; got an empty name.")
        check_choice(self.statistic, SCORES, "statistic")


def _unit_cv_columns(
    x: np.ndarray, y: np.ndarray, unit_codes: np.ndarray, n_select: int | None, alphas: Sequence[float],
    selected: np.ndarray | None = None,
) -> np.ndarray:
    """Leave-one-unit-out predictions of every column of ``y`` (n, m) from ``x`` (n, p).

    ``selected`` (optional, int array (m, p)) is incremented, per target column, by one for every
    fold in which a descriptor was kept.

    For each unit, using the other units' rows only: keep the ``n_select`` descriptors with the
    largest absolute Spearman correlation with the target (all when ``None``), standardise them, fit a ridge whose
    penalty is chosen by exact leave-one-*model*-out within the training units
    (:func:`sslgeom.prediction._ridge_fit`; it never sees the held-out unit), and predict the
    unit's rows. Target columns are independent problems batched together.
    """
    n_rows, n_targets = y.shape
    predictions = np.empty((n_rows, n_targets))
    select = n_select is not None and n_select < x.shape[1]
    for unit in np.unique(unit_codes):
        test = unit_codes == unit
        x_train, y_train = x[~test], y[~test]
        if select:
            columns = _select_columns(x_train, y_train, n_select)  # (m, k)
        else:
            columns = np.broadcast_to(np.arange(x.shape[1]), (n_targets, x.shape[1]))
        if selected is not None:
            np.add.at(selected, (np.arange(n_targets)[:, None], columns), 1)
        chosen = x_train[:, columns].transpose(1, 0, 2)  # (m, n_train, k)
        mean, std = chosen.mean(axis=1), chosen.std(axis=1)
        std[std == 0] = 1.0
        coef, intercept, _ = _ridge_fit((chosen - mean[:, None, :]) / std[:, None, :], y_train.T, alphas)
        x_test = (x[test][:, columns].transpose(1, 0, 2) - mean[:, None, :]) / std[:, None, :]  # (m, n_test, k)
        predictions[test] = (np.einsum("mtk,mk->mt", x_test, coef) + intercept[:, None]).T
    return predictions


def _design_table(design: pd.DataFrame) -> pd.DataFrame:
    table = design.set_index("name", drop=False) if "name" in design.columns else design
    missing = [c for c in ("method", *POSITION_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"design lacks column(s) {missing}; pass the zoo manifest (one row per model).")
    return table


@dataclass(frozen=True)
class _Problem:
    """Validated inputs of one prediction problem: rows are models."""

    index: pd.Index
    x: np.ndarray  # (n, p)
    y: np.ndarray  # (n,)
    units: np.ndarray  # (n,) unit codes
    positions: list  # (n,) position keys within units
    names: np.ndarray  # (n_units,) unit names

    def take(self, rows: np.ndarray) -> _Problem:
        """These rows (e.g. a bootstrap draw, with repeats); units keep their codes."""
        return _Problem(self.index[rows], self.x[rows], self.y[rows], self.units[rows],
                        [self.positions[r] for r in rows], self.names)


def _problem(
    descriptors: pd.DataFrame | pd.Series, target: pd.Series, design: pd.DataFrame, evaluation: Evaluation
) -> _Problem:
    """Align descriptors, target and design on the target's models (restricted to the evaluation's backbone)."""
    backbone, unit = evaluation.backbone, evaluation.unit
    if isinstance(descriptors, pd.Series):
        descriptors = descriptors.to_frame()
    if not isinstance(descriptors, pd.DataFrame) or not isinstance(target, pd.Series):
        raise TypeError("descriptors must be a DataFrame (or Series) and target a Series, both indexed by model name.")
    table = _design_table(design)
    if unit not in table.columns:
        raise ValueError(f"design has no column {unit!r} to use as the unit.")
    models = target.index
    missing = sorted(set(models) - set(table.index)) + sorted(set(models) - set(descriptors.index))
    if missing:
        raise ValueError(f"model(s) {missing[:5]} have a target but no design row or descriptors.")
    if backbone is not None:
        models = models[table.loc[models, "backbone"].to_numpy() == backbone]
    rows = table.loc[models]
    x = descriptors.loc[models].to_numpy(dtype=np.float64)
    y = target.loc[models].to_numpy(dtype=np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("descriptors and target must be finite for every model used.")
    names, codes = np.unique(rows[unit].to_numpy(), return_inverse=True)
    if len(names) < 3:
        raise ValueError(f"leave-one-{unit}-out needs at least 3 units; got {len(names)}.")
    positions = list(zip(*(rows[c].tolist() for c in POSITION_COLUMNS)))
    return _Problem(pd.Index(models), x, y, codes, positions, names)


def _predict_columns(
    problem: _Problem, y: np.ndarray, options: PipelineOptions, selected: np.ndarray | None = None
) -> np.ndarray:
    """Out-of-sample predictions of each column of ``y``: the cross-validated ridge, or ``sign * x`` when fixed."""
    if options.sign is None:
        return _unit_cv_columns(problem.x, y, problem.units, options.n_select, options.alphas, selected)
    if problem.x.shape[1] != 1:
        raise ValueError(f"a fixed-sign baseline is one number per model; got {problem.x.shape[1]} descriptors.")
    return np.repeat(options.sign * problem.x, y.shape[1], axis=1)


def lomo_predict(
    descriptors: pd.DataFrame | pd.Series,
    target: pd.Series,
    design: pd.DataFrame,
    *,
    options: PipelineOptions = PipelineOptions(),
    evaluation: Evaluation = Evaluation(),
) -> pd.Series:
    """Leave-one-method-out predictions: every model of the held-out method leaves together.

    Parameters
    ----------
    descriptors : pandas.DataFrame, shape (n_models, n_descriptors), or Series
        Index: model names.
    target : pandas.Series, shape (n_models,)
        The models to use are those of its index.
    design : pandas.DataFrame
        Manifest rows (see the module docstring).
    options : PipelineOptions
        Selection, ridge penalties, or a fixed sign (the default: fitted on every descriptor).
    evaluation : Evaluation
        The models used (``backbone``; the default pools backbones) and the ``unit`` whose values
        leave together; nothing is scored here, so its ``statistic`` plays no part.

    Returns
    -------
    pandas.Series
        Out-of-sample prediction per model.
    """
    problem = _problem(descriptors, target, design, evaluation)
    predictions = _predict_columns(problem, problem.y[:, None], options)
    return pd.Series(predictions[:, 0], index=problem.index, name="predicted")
