"""Tests of nmfinterp.metrics against values worked out by hand (see the comments)."""

import math
import types

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV

from nmfinterp.metrics import (
    average_drop,
    average_gain,
    average_increase,
    energy_share,
    explanation_scores,
    faithfulness,
    fidelity_in,
    make_auprc_scorer,
    make_fidelity_scorer,
    mask_complexity,
    mask_sparseness,
    mean_ci,
    multilabel_auprc,
    si_sdr,
    top_k_fidelity,
)

# --------------------------------------------------------------------------------------------
# Fidelity of the interpreter
# --------------------------------------------------------------------------------------------
# Classifier top-1 classes: 0, 1, 2.
CLF = [[5.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 2.0]]
# Interpreter rank of the classifier's class: clip 0 -> rank 1 (0.5 is its largest),
# clip 1 -> rank 2 (0.3 behind 0.6), clip 2 -> rank 3 (0.1 is its smallest).
INTERP = [[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]]


@pytest.mark.parametrize(("k", "expected"), [(1, 1 / 3), (2, 2 / 3), (3, 1.0)])
def test_top_k_fidelity_hand_example(k, expected):
    assert top_k_fidelity(CLF, INTERP, k=k) == pytest.approx(expected)


def test_top_k_fidelity_ties_rank_lower_index_first():
    # Interpreter scores all equal: stable order ranks class 0 first, class 2 third.
    # The classifier decides class 2, so it is in the top 3 but not the top 2.
    clf = [[0.1, 0.2, 0.7]]
    flat = [[0.0, 0.0, 0.0]]
    assert top_k_fidelity(clf, flat, k=2) == 0.0
    assert top_k_fidelity(clf, flat, k=3) == 1.0
    # ... and class 0 is first among ties.
    assert top_k_fidelity([[0.9, 0.1, 0.0]], flat, k=1) == 1.0


def test_top_k_fidelity_errors():
    with pytest.raises(ValueError, match=r"same shape.*\(3, 3\) and \(2, 3\)"):
        top_k_fidelity(CLF, INTERP[:2])
    with pytest.raises(ValueError, match="k must be an integer between 1 and n_classes=3; got 4"):
        top_k_fidelity(CLF, INTERP, k=4)
    with pytest.raises(ValueError, match="k must be an integer"):
        top_k_fidelity(CLF, INTERP, k=1.5)
    with pytest.raises(ValueError, match=r"classifier_outputs must be 2-D; got .*shape \(3,\)"):
        top_k_fidelity([0.1, 0.2, 0.7], INTERP)
    with pytest.raises(ValueError, match="interpreter_outputs contains 1 NaN or infinite"):
        top_k_fidelity(CLF, [[0.5, np.nan, 0.2], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]])
    with pytest.raises(ValueError, match="could not convert it to floats"):
        top_k_fidelity([["a", "b"]], [[0.1, 0.2]])


def test_multilabel_auprc_hand_example_and_skipped_class():
    # Targets (>= 0.5): class 0 positive on clips 0, 1; class 1 positive on clip 2;
    # class 2 never positive -> skipped.
    clf = [[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.2, 0.7, 0.4], [0.1, 0.3, 0.2]]
    interp = [[0.7, 0.4, 0.9], [0.3, 0.1, 0.1], [0.4, 0.6, 0.5], [0.2, 0.5, 0.3]]
    # Class 0 ranking by score: 0.7 (pos), 0.4 (neg), 0.3 (pos), 0.2 (neg)
    #   -> AP = (1/1 + 2/3) / 2 = 5/6.
    # Class 1 ranking: 0.6 (pos) first -> AP = 1.
    # Macro over the two classes with a positive: (5/6 + 1) / 2 = 11/12.
    assert multilabel_auprc(clf, interp) == pytest.approx(11 / 12)
    # With threshold 0.35 class 2 gains clip 2 (0.4) as positive, ranked 2nd -> AP = 1/2.
    # Class 1 then also has positives clip 2 only (0.3 < 0.35) -> AP 1; class 0 unchanged.
    assert multilabel_auprc(clf, interp, threshold=0.35) == pytest.approx((5 / 6 + 1 + 0.5) / 3)


def test_multilabel_auprc_errors():
    with pytest.raises(ValueError, match="No class has a classifier output >= threshold=0.5"):
        multilabel_auprc([[0.1, 0.2], [0.3, 0.4]], [[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*sigmoid"):
        multilabel_auprc([[2.0, -1.0], [0.3, 0.4]], [[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        multilabel_auprc([[0.9, 0.2]], [[0.0, 1.0]], threshold=0.0)


class SoftmaxRidge(BaseEstimator):
    """A tiny interpreter stand-in: ridge regression on logits, softmax on output."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y):
        self.ridge_ = Ridge(alpha=self.alpha).fit(X, y)
        return self

    def predict_proba(self, X):
        z = self.ridge_.predict(X)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_fidelity_scorer_in_grid_search():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = X @ rng.normal(size=(5, 3))  # classifier logits, exactly linear in X
    search = GridSearchCV(
        SoftmaxRidge(), {"alpha": [1e-3, 1e6]}, scoring=make_fidelity_scorer(k=1), cv=3
    )
    search.fit(X, y)
    # Almost no shrinkage recovers the linear map: the interpreter agrees on every clip.
    assert search.best_params_ == {"alpha": 1e-3}
    assert search.best_score_ == pytest.approx(1.0)
    scorer = make_fidelity_scorer(k=3)
    assert scorer(search.best_estimator_, X, y) == 1.0  # k = n_classes always agrees


def test_fidelity_scorer_errors():
    with pytest.raises(ValueError, match="k must be a positive integer; got 0"):
        make_fidelity_scorer(k=0)
    with pytest.raises(ValueError, match="needs an estimator with predict_proba; Ridge has none"):
        make_fidelity_scorer()(Ridge().fit([[0.0], [1.0]], [0.0, 1.0]), [[0.0]], [[1.0, 0.0]])


class SigmoidRidge(SoftmaxRidge):
    """The multi-label stand-in: ridge regression on logits, a sigmoid per class on output."""

    def predict_proba(self, X):
        return 1 / (1 + np.exp(-self.ridge_.predict(X)))


def test_auprc_scorer_in_grid_search_and_by_hand():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = 1 / (1 + np.exp(-(X @ rng.normal(size=(5, 3)))))  # a multi-label classifier's probabilities
    search = GridSearchCV(
        SigmoidRidge(), {"alpha": [1e-3, 1e6]}, scoring=make_auprc_scorer(0.5), cv=3
    )
    search.fit(X, y)
    # heavy shrinkage flattens every class's scores: their ranking, hence AUPRC, suffers
    assert search.best_params_ == {"alpha": 1e-3} and search.best_score_ > 0.95
    est = search.best_estimator_
    assert make_auprc_scorer(0.3)(est, X, y) == multilabel_auprc(y, est.predict_proba(X), 0.3)
    # the hand example of test_multilabel_auprc_hand_example_and_skipped_class, through a scorer
    echo = types.SimpleNamespace(predict_proba=np.asarray)
    clf = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.7], [0.1, 0.3]]
    interp = [[0.7, 0.4], [0.3, 0.1], [0.4, 0.6], [0.2, 0.5]]
    assert make_auprc_scorer()(echo, interp, clf) == pytest.approx(11 / 12)


def test_auprc_scorer_errors():
    for bad in (0, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="threshold must be in \\(0, 1\\]"):
            make_auprc_scorer(bad)
    with pytest.raises(ValueError, match="needs an estimator with predict_proba; Ridge has none"):
        make_auprc_scorer()(Ridge().fit([[0.0], [1.0]], [0.0, 1.0]), [[0.0]], [[1.0, 0.0]])


# --------------------------------------------------------------------------------------------
# Faithfulness, per clip
# --------------------------------------------------------------------------------------------
def test_faithfulness_hand_example():
    # 0.9 - 0.2 = 0.7; 0.6 - 0.7 = -0.1 (the residual is more convincing than the input).
    np.testing.assert_allclose(faithfulness([0.9, 0.6], [0.2, 0.7]), [0.7, -0.1])
    # A scalar is one clip.
    np.testing.assert_allclose(faithfulness(0.5, 0.5), [0.0])


def test_average_increase_is_strict():
    # 0.6 > 0.5 -> 100; equal -> 0; lower -> 0.
    np.testing.assert_array_equal(average_increase([0.5, 0.5, 0.5], [0.6, 0.5, 0.4]), [100, 0, 0])


def test_average_drop_hand_example():
    # 100 * (0.8 - 0.6) / 0.8 = 25; 100 * (0.5 - 0.1) / 0.5 = 80; rise -> 0; p_x = 0 -> 0.
    np.testing.assert_allclose(
        average_drop([0.8, 0.5, 0.4, 0.0], [0.6, 0.1, 0.9, 0.3]), [25.0, 80.0, 0.0, 0.0]
    )
    # Complete loss of confidence is a 100 % drop.
    np.testing.assert_allclose(average_drop([0.7], [0.0]), [100.0])


def test_average_gain_hand_example():
    # 100 * (0.8 - 0.6) / (1 - 0.6) = 50; 100 * (0.6 - 0.2) / 0.8 = 50; drop -> 0; p_x = 1 -> 0.
    np.testing.assert_allclose(
        average_gain([0.6, 0.2, 0.5, 1.0], [0.8, 0.6, 0.3, 1.0]), [50.0, 50.0, 0.0, 0.0]
    )
    # Reaching certainty is a 100 % gain.
    np.testing.assert_allclose(average_gain([0.25], [1.0]), [100.0])


def test_fidelity_in_compares_with_decided_class_not_class_0():
    # Clip 0: decided class 1, explanation -> class 1 -> 1.
    # Clip 1: decided class 1, explanation -> class 0 -> 0 (comparing with class 0 would say 1).
    # Clip 2: decided class 0, explanation -> class 0 -> 1.
    probs_x = [[0.2, 0.8], [0.3, 0.7], [0.9, 0.1]]
    probs_in = [[0.4, 0.6], [0.6, 0.4], [0.8, 0.2]]
    np.testing.assert_array_equal(fidelity_in(probs_x, probs_in), [1.0, 0.0, 1.0])


def test_explanation_scores_hand_example():
    # Clip 0: c = 2, p_x = 0.5, p_in = 0.75, p_out = 0.25.
    #   FF = 0.25; AI = 100; AD = 0; AG = 100 * 0.25 / 0.5 = 50; Fid-In = 1.
    # Clip 1: c = 0, p_x = 0.8, p_in = 0.2, p_out = 0.1 (the explanation is decided as class 1).
    #   FF = 0.7; AI = 0; AD = 100 * 0.6 / 0.8 = 75 (no second softmax); AG = 0; Fid-In = 0.
    probs_x = [[0.2, 0.3, 0.5], [0.8, 0.1, 0.1]]
    probs_in = [[0.05, 0.2, 0.75], [0.2, 0.7, 0.1]]
    probs_out = [[0.4, 0.35, 0.25], [0.1, 0.1, 0.8]]
    scores = explanation_scores(probs_x, probs_in, probs_out)
    assert list(scores) == ["FF", "AI", "AD", "AG", "Fid-In"]
    np.testing.assert_allclose(scores["FF"], [0.25, 0.7])
    np.testing.assert_allclose(scores["AI"], [100.0, 0.0])
    np.testing.assert_allclose(scores["AD"], [0.0, 75.0])
    np.testing.assert_allclose(scores["AG"], [50.0, 0.0])
    np.testing.assert_allclose(scores["Fid-In"], [1.0, 0.0])


def test_per_clip_errors():
    with pytest.raises(
        ValueError, match=r"p_x and p_in must have the same shape.*\(2,\) and \(3,\)"
    ):
        average_drop([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"p_in must hold probabilities in \[0, 1\]; got .*1\.5"):
        average_gain([0.1, 0.2], [0.1, 1.5])
    with pytest.raises(ValueError, match=r"p_x must be 0-D or 1-D; got .*shape \(1, 2\)"):
        faithfulness([[0.1, 0.2]], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="p_x is empty"):
        faithfulness(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match=r"probs_out must hold probabilities.*softmax"):
        explanation_scores([[0.5, 0.5]], [[0.5, 0.5]], [[3.0, -2.0]])
    with pytest.raises(ValueError, match="probs_x and probs_out must have the same shape"):
        explanation_scores([[0.5, 0.5]], [[0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]])


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (6, 3), elements=st.floats(0.0, 1.0)),
    arrays(np.float64, (6, 3), elements=st.floats(0.0, 1.0)),
    arrays(np.float64, (6, 3), elements=st.floats(0.0, 1.0)),
)
def test_explanation_scores_ranges(px, pin, pout):
    scores = explanation_scores(px, pin, pout)
    assert np.all((scores["FF"] >= -1) & (scores["FF"] <= 1))
    for name in ("AI", "AD", "AG"):
        assert np.all((scores[name] >= 0) & (scores[name] <= 100))
    assert set(np.unique(scores["Fid-In"])) <= {0.0, 1.0}
    # A clip cannot both drop and gain.
    assert not np.any((scores["AD"] > 0) & (scores["AG"] > 0))


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------
def test_mask_sparseness_hand_examples():
    # [0, 0, 0, 1]: N = 4, ||c||_1 = 1; only k = 4 contributes, weight (4 - 4 + 1/2) / 4 = 1/8
    #   -> G = 1 - 2 * 1/8 = 0.75 (in general 1 - 1/N for one non-zero value).
    assert mask_sparseness([0.0, 0.0, 0.0, 1.0]) == pytest.approx(0.75)
    assert mask_sparseness(np.eye(1, 10).ravel()) == pytest.approx(0.9)
    # Uniform: sum_k (1/N)(N - k + 1/2)/N = (1/N^2)(N^2/2) = 1/2 -> G = 0.
    assert mask_sparseness(np.full((3, 5), 0.4)) == pytest.approx(0.0, abs=1e-12)
    # [1, 2, 3, 4] / 10 with weights 7/8, 5/8, 3/8, 1/8:
    #   (0.875 + 1.25 + 1.125 + 0.5) / 10 = 0.375 -> G = 1 - 0.75 = 0.25.
    assert mask_sparseness([1.0, 2.0, 3.0, 4.0]) == pytest.approx(0.25)
    # Order, shape and scale do not matter.
    assert mask_sparseness([[20.0, 5.0], [15.0, 10.0]]) == pytest.approx(0.25)
    # All-zero mask -> 0 by definition.
    assert mask_sparseness(np.zeros((2, 3))) == 0.0
    assert isinstance(mask_sparseness([1.0, 2.0]), float)


def test_mask_sparseness_batch():
    masks = np.stack([np.array([[0.0, 0.0], [0.0, 1.0]]), np.ones((2, 2)), np.zeros((2, 2))])
    np.testing.assert_allclose(mask_sparseness(masks, batch=True), [0.75, 0.0, 0.0], atol=1e-12)


def test_mask_complexity_hand_examples():
    # Uniform over N values -> log N.
    assert mask_complexity(np.full(8, 0.3)) == pytest.approx(math.log(8))
    # [1, 1, 2] -> q = [1/4, 1/4, 1/2]: H = 2 * (1/4) log 4 + (1/2) log 2 = 1.5 log 2.
    assert mask_complexity([1.0, 1.0, 2.0]) == pytest.approx(1.5 * math.log(2))
    # One non-zero value -> 0 (0 log 0 = 0); all-zero -> 0.
    assert mask_complexity([0.0, 0.0, 5.0]) == 0.0
    assert mask_complexity(np.zeros(4)) == 0.0
    np.testing.assert_allclose(
        mask_complexity(np.array([[1.0, 1.0], [0.0, 1.0]]), batch=True), [math.log(2), 0.0]
    )


def test_mask_errors():
    with pytest.raises(ValueError, match="mask must be non-negative; got a minimum of -0.5"):
        mask_sparseness([0.2, -0.5])
    with pytest.raises(
        ValueError, match=r"batch=True.*shape \(n_clips, \.\.\.\); got shape \(3,\)"
    ):
        mask_complexity([0.1, 0.2, 0.3], batch=True)
    with pytest.raises(ValueError, match="mask contains 1 NaN or infinite"):
        mask_complexity([0.1, np.inf])


@settings(max_examples=100, deadline=None)
@given(
    # no subnormals: scaling one by 0.5 can underflow to 0 and change the mask itself
    arrays(np.float64, st.integers(1, 40), elements=st.floats(0.0, 1e6, allow_subnormal=False)),
    st.floats(1e-3, 1e3),
)
def test_gini_in_unit_interval_and_scale_invariant(mask, scale):
    g = mask_sparseness(mask)
    assert 0.0 <= g <= 1.0
    assert g <= 1.0 - 1.0 / mask.size + 1e-9  # the one-hot mask is the sparsest
    assert mask_sparseness(scale * mask) == pytest.approx(g, abs=1e-9)
    assert 0.0 <= mask_complexity(mask) <= math.log(mask.size) + 1e-9


# --------------------------------------------------------------------------------------------
# Ground truth on mixtures
# --------------------------------------------------------------------------------------------
S = np.array([1.0, -1.0, 1.0, -1.0])  # energy 4
N_ORTH = np.array([1.0, 1.0, -1.0, -1.0])  # <S, N_ORTH> = 0, energy 4


def test_si_sdr_hand_examples():
    # s + orthogonal noise of equal energy: alpha = 1, target = s, 10 log10(4 / 4) = 0 dB.
    assert si_sdr(S + N_ORTH, S) == pytest.approx(0.0, abs=1e-9)
    # Half-amplitude noise: 10 log10(4 / 1) = 6.0206 dB.
    assert si_sdr(S + 0.5 * N_ORTH, S) == pytest.approx(10 * math.log10(4), abs=1e-6)
    # Scaled (even sign-flipped) copies: the error is 0, only eps bounds the ratio:
    #   2s -> 10 log10((16 + 1e-8) / 1e-8) = 92.04 dB.
    assert si_sdr(2.0 * S, S) > 80.0
    assert si_sdr(-0.5 * S, S) > 60.0
    # Orthogonal estimate: alpha ~ 0 -> very negative.
    assert si_sdr(N_ORTH, S) < -60.0


def test_si_sdr_batch_returns_array():
    est = np.stack([S + N_ORTH, S + 0.5 * N_ORTH])
    ref = np.stack([S, S])
    out = si_sdr(est, ref)
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    np.testing.assert_allclose(out, [0.0, 10 * math.log10(4)], atol=1e-6)
    assert isinstance(si_sdr(S, S), float)


def test_si_sdr_errors():
    with pytest.raises(ValueError, match=r"estimate and reference must have the same shape"):
        si_sdr(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="estimate must have a time axis"):
        si_sdr(1.0, 1.0)
    with pytest.raises(ValueError, match="eps must be a positive number"):
        si_sdr(S, S, eps=0.0)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, 32, elements=st.floats(-1.0, 1.0)),
    arrays(np.float64, 32, elements=st.floats(-1.0, 1.0)),
    st.floats(0.5, 4.0),
    st.sampled_from([-1.0, 1.0]),
)
def test_si_sdr_scale_invariance(estimate, reference, scale, sign):
    # Keep every energy in the ratio far above eps = 1e-8 so that eps does not set the value
    # (after scaling by >= 0.5 they stay >= 0.025, so eps moves the result by < 2e-6 dB).
    assume(np.sum(reference**2) > 1e-1)
    alpha = estimate @ reference / (reference @ reference)
    assume(np.sum((alpha * reference) ** 2) > 1e-1)
    assume(np.sum((estimate - alpha * reference) ** 2) > 1e-1)
    base = si_sdr(estimate, reference)
    assert si_sdr(sign * scale * estimate, reference) == pytest.approx(base, abs=1e-4)
    assert si_sdr(estimate, scale * reference) == pytest.approx(base, abs=1e-4)


def test_energy_share_hand_examples():
    # 9 / (9 + 1) = 0.9
    assert energy_share([3.0, 0.0], [0.0, 1.0]) == pytest.approx(0.9)
    # Equal level -> 0.5; both silent -> undefined (NaN).
    out = energy_share([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]], [[-1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(out, [0.5, np.nan, 1.0])
    with pytest.raises(ValueError, match="must have the same shape"):
        energy_share([1.0, 2.0], [1.0])


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def test_mean_ci_hand_example():
    # [1, 2, 3]: mean 2, std (ddof=1) 1, sem 1/sqrt(3) = 0.57735, t_{0.975, 2} = 4.30265
    #   -> half width 2.48414.
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert low == pytest.approx(2.0 - 2.48414, abs=1e-4)
    assert high == pytest.approx(2.0 + 2.48414, abs=1e-4)
    # A wider level gives a wider interval.
    _, low99, high99 = mean_ci([1.0, 2.0, 3.0], confidence=0.99)
    assert low99 < low and high99 > high


def test_mean_ci_edge_cases():
    assert mean_ci([0.25]) == (0.25, 0.25, 0.25)
    assert mean_ci([np.nan, 0.5, np.nan]) == (0.5, 0.5, 0.5)
    assert mean_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
    assert all(isinstance(v, float) for v in mean_ci([1.0, 2.0]))


def test_mean_ci_errors():
    with pytest.raises(ValueError, match="values are all NaN"):
        mean_ci([np.nan, np.nan])
    with pytest.raises(ValueError, match="values is empty"):
        mean_ci([])
    with pytest.raises(ValueError, match="values contains 1 infinite value"):
        mean_ci([1.0, np.inf])
    with pytest.raises(ValueError, match="confidence must be strictly between 0 and 1; got 95"):
        mean_ci([1.0, 2.0], confidence=95)
