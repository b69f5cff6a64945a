"""Leave-one-method-out prediction (sslgeom.lomo): the pipeline per fold, no leakage, validated options."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from sslgeom import design, lomo, prediction
from sslgeom.lomo import Evaluation, PipelineOptions

PARADIGMS = design.ssl_paradigms()
# every checkpoint of every SSL method: 8 methods x (3 seeds x 3 budgets on convnet + 1 resnet seed)
MANIFEST = design.synthetic_manifest(PARADIGMS, references=False).set_index("name", drop=False)
METHOD_CODES = pd.factorize(MANIFEST["method"])[0]
SELECT_2 = PipelineOptions(n_select=2)  # a descriptor set, two descriptors kept per fold
PLUS = PipelineOptions(sign=1)  # a fixed-sign baseline
CONVNET = Evaluation(backbone="convnet")  # the main backbone's models only


def _clustered(rng, n_columns, method_sd=1.0):
    """Values with a method effect and model-level noise: (n_models, n_columns), indexed by model."""
    values = method_sd * rng.normal(size=(8, n_columns))[METHOD_CODES] + rng.normal(size=(len(MANIFEST), n_columns))
    return pd.DataFrame(values, index=MANIFEST.index)


def test_lomo_matches_a_brute_force_pipeline_per_method():
    rng = np.random.default_rng(0)
    x = _clustered(rng, 3)
    y = pd.Series(x.to_numpy() @ [1.0, -0.5, 0.0] + rng.normal(size=len(x)), index=x.index)
    predicted = lomo.lomo_predict(x, y, MANIFEST, options=PipelineOptions(alphas=[3.0]))
    for method in PARADIGMS:
        test = (MANIFEST["method"] == method).to_numpy()
        scaler = StandardScaler().fit(x[~test])
        model = Ridge(alpha=3.0).fit(scaler.transform(x[~test]), y[~test])
        np.testing.assert_allclose(predicted[test], model.predict(scaler.transform(x[test])), rtol=1e-9)


def test_a_held_out_method_never_sees_its_own_targets():
    rng = np.random.default_rng(1)
    x, y = _clustered(rng, 25), pd.Series(rng.normal(size=len(MANIFEST)), index=MANIFEST.index)
    before = lomo.lomo_predict(x, y, MANIFEST, options=PipelineOptions(n_select=3))
    simclr = MANIFEST["method"] == "simclr"
    changed = y.where(~simclr, y + 100.0 * rng.normal(size=len(y)))
    after = lomo.lomo_predict(x, changed, MANIFEST, options=PipelineOptions(n_select=3))
    np.testing.assert_allclose(before[simclr.to_numpy()], after[simclr.to_numpy()])
    assert not np.allclose(before[~simclr.to_numpy()], after[~simclr.to_numpy()])


def test_main_backbone_only_ignores_the_second_backbone():
    rng = np.random.default_rng(2)
    x, y = _clustered(rng, 4), pd.Series(rng.normal(size=len(MANIFEST)), index=MANIFEST.index)
    main = lomo.lomo_predict(x, y, MANIFEST, evaluation=CONVNET)
    assert len(main) == 8 * 9 and set(MANIFEST.loc[main.index, "backbone"]) == {"convnet"}
    resnet = (MANIFEST["backbone"] == "resnet").to_numpy()
    x2 = x.copy()
    x2[resnet] = 1e3
    pd.testing.assert_series_equal(main, lomo.lomo_predict(x2, y, MANIFEST, evaluation=CONVNET))
    assert len(lomo.lomo_predict(x, y, MANIFEST)) == len(MANIFEST)  # pooled


def test_pipeline_options_are_validated_and_hashable():
    assert PipelineOptions() == PipelineOptions(alphas=list(prediction.RIDGE_ALPHAS))  # a list becomes the tuple
    assert PipelineOptions(n_select=np.int64(2)).n_select == 2 and isinstance(PipelineOptions(sign=-1.0).sign, int)
    assert len({SELECT_2, PipelineOptions(n_select=2), PLUS}) == 2  # usable as a cache key
    with pytest.raises(ValueError, match="n_select must be at least 1"):
        PipelineOptions(n_select=0)
    with pytest.raises(TypeError, match="n_select must be an integer"):
        PipelineOptions(n_select=2.5)
    with pytest.raises(ValueError, match="alphas must hold at least one ridge penalty, all positive"):
        PipelineOptions(alphas=(1.0, 0.0))
    with pytest.raises(ValueError, match="alphas must hold at least one"):
        PipelineOptions(alphas=())
    with pytest.raises(TypeError, match="alphas must be a sequence"):
        PipelineOptions(alphas=1.0)
    with pytest.raises(ValueError, match="sign must be None"):
        PipelineOptions(sign=2)
    with pytest.raises(ValueError, match="sign must be None"):
        PipelineOptions(sign=True)
    with pytest.raises(ValueError, match="leave n_select at None"):
        PipelineOptions(n_select=2, sign=1)
