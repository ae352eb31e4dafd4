"""Metrics for explanations of audio classifiers.

Every function here is pure numpy (plus :mod:`scipy.stats` for confidence intervals and
:func:`sklearn.metrics.average_precision_score` for AUPRC) and accepts array-likes.

Notation (see ``METHOD.md``, section "Metrics"): ``f`` is the classifier, ``p = softmax(f(.))``
its class probabilities, ``c = argmax f(x)`` the class it decides for the input ``x``,
``x_in`` the explanation and ``x_out = x - x_in`` the residual, both re-synthesised and fed to
the classifier the way it normally receives audio.

- Fidelity of the interpreter: :func:`top_k_fidelity` (single label),
  :func:`multilabel_auprc` (multi-label), :func:`make_fidelity_scorer` and
  :func:`make_auprc_scorer` (for ``GridSearchCV``).
- Faithfulness of the explanation, per clip: :func:`faithfulness` (FF),
  :func:`average_increase` (AI), :func:`average_drop` (AD), :func:`average_gain` (AG),
  :func:`fidelity_in` (Fid-In), or all of them at once with :func:`explanation_scores`.
  The published figures are the averages over clips of these per-clip values
  (see :func:`mean_ci`).
- Masks: :func:`mask_sparseness` (SPS, Gini index), :func:`mask_complexity` (COMP, entropy).
- Ground truth on controlled mixtures: :func:`si_sdr`, :func:`energy_share`.

These follow the definitions, not the known deviations of some public implementations:
AD is computed on the probabilities themselves (no second softmax), and Fid-In compares the
explanation's decision with the class ``c`` decided on the input (not with class 0).
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.metrics import average_precision_score

__all__ = [
    "average_drop",
    "average_gain",
    "average_increase",
    "energy_share",
    "explanation_scores",
    "faithfulness",
    "fidelity_in",
    "make_auprc_scorer",
    "make_fidelity_scorer",
    "mask_complexity",
    "mask_sparseness",
    "mean_ci",
    "multilabel_auprc",
    "si_sdr",
    "top_k_fidelity",
]


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------
def _as_float_array(
    x: ArrayLike, name: str, ndim: int | tuple[int, ...] | None = None, allow_nan: bool = False
) -> NDArray[np.float64]:
    """Convert ``x`` to a float64 array, checking its number of dimensions and finiteness."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be an array of numbers; could not convert it to floats ({exc})."
        ) from exc
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            expected = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {expected}; got an array of shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected at least one value.")
    bad = ~np.isfinite(arr) if not allow_nan else np.isinf(arr)
    if bad.any():
        what = "NaN or infinite" if not allow_nan else "infinite"
        raise ValueError(
            f"{name} contains {int(bad.sum())} {what} value(s); expected finite numbers."
        )
    return arr


def _check_probabilities(arr: NDArray[np.float64], name: str) -> None:
    """Raise if ``arr`` has values outside [0, 1]."""
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]. "
            "Apply softmax (single label) or a sigmoid (multi-label) to logits first."
        )


def _check_same_shape(a: NDArray[Any], b: NDArray[Any], name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape (one row per clip, same classes); "
            f"got {a.shape} and {b.shape}."
        )


def _per_clip_probs(p_x: ArrayLike, p_other: ArrayLike, name_other: str) -> tuple[NDArray, NDArray]:
    """Validate two 1-D (or scalar) vectors of probabilities of the decided class."""
    a = np.atleast_1d(_as_float_array(p_x, "p_x", ndim=(0, 1)))
    b = np.atleast_1d(_as_float_array(p_other, name_other, ndim=(0, 1)))
    _check_same_shape(a, b, "p_x", name_other)
    _check_probabilities(a, "p_x")
    _check_probabilities(b, name_other)
    return a, b


def _prob_matrix(x: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = _as_float_array(x, name, ndim=2)
    _check_probabilities(arr, name)
    return arr


# --------------------------------------------------------------------------------------------
# Fidelity of the interpreter to the classifier
# --------------------------------------------------------------------------------------------
def top_k_fidelity(
    classifier_outputs: ArrayLike, interpreter_outputs: ArrayLike, k: int = 1
) -> float:
    """Fraction of clips whose classifier top-1 class is among the interpreter's top-k classes.

    Parameters
    ----------
    classifier_outputs : array-like of shape (n_clips, n_classes)
        Outputs of the classifier (logits or probabilities; only the argmax is used).
    interpreter_outputs : array-like of shape (n_clips, n_classes)
        Outputs of the interpreter (logits or probabilities; only the ranking is used).
    k : int, default=1
        Number of top interpreter classes to consider, ``1 <= k <= n_classes``.

    Returns
    -------
    float
        Fidelity in [0, 1].

    Notes
    -----
    Ties are broken by class index, lowest first, on both sides: the classifier's class is the
    first maximum (as :func:`numpy.argmax`) and, among interpreter classes with equal scores,
    the lower index ranks higher (as a stable sort on descending scores).

    Examples
    --------
    >>> clf = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]
    >>> interp = [[0.6, 0.3, 0.1], [0.5, 0.3, 0.2]]
    >>> top_k_fidelity(clf, interp, k=1)
    0.5
    >>> top_k_fidelity(clf, interp, k=2)
    1.0
    """
    clf = _as_float_array(classifier_outputs, "classifier_outputs", ndim=2)
    interp = _as_float_array(interpreter_outputs, "interpreter_outputs", ndim=2)
    _check_same_shape(clf, interp, "classifier_outputs", "interpreter_outputs")
    n_classes = clf.shape[1]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n_classes:
        raise ValueError(f"k must be an integer between 1 and n_classes={n_classes}; got {k!r}.")
    c = np.argmax(clf, axis=1)
    score_c = interp[np.arange(len(c)), c][:, None]
    lower_index = np.arange(n_classes)[None, :] < c[:, None]
    rank = np.sum(interp > score_c, axis=1) + np.sum((interp == score_c) & lower_index, axis=1)
    return float(np.mean(rank < k))


def multilabel_auprc(
    classifier_outputs: ArrayLike, interpreter_scores: ArrayLike, threshold: float = 0.5
) -> float:
    """Macro-averaged AUPRC of the interpreter against thresholded classifier outputs.

    The classifier's probabilities are turned into binary targets with
    ``classifier_outputs >= threshold``; for each class the average precision
    (:func:`sklearn.metrics.average_precision_score`) of the interpreter's scores is computed
    and the mean over classes is returned. Classes without any positive clip are skipped
    (their average precision is undefined).

    Parameters
    ----------
    classifier_outputs : array-like of shape (n_clips, n_classes)
        Classifier probabilities in [0, 1] (e.g. sigmoid outputs of a multi-label classifier).
    interpreter_scores : array-like of shape (n_clips, n_classes)
        Interpreter scores (probabilities or logits; only the ranking within a class matters).
    threshold : float, default=0.5
        Probability at or above which a classifier output counts as a positive label.

    Returns
    -------
    float
        Macro AUPRC in [0, 1] over the classes that have at least one positive clip.

    Raises
    ------
    ValueError
        If no class has a positive clip at this threshold.

    Examples
    --------
    >>> clf = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.7], [0.1, 0.3]]
    >>> interp = [[0.7, 0.4], [0.3, 0.1], [0.4, 0.6], [0.2, 0.5]]
    >>> round(multilabel_auprc(clf, interp), 4)
    0.9167
    """
    clf = _prob_matrix(classifier_outputs, "classifier_outputs")
    scores = _as_float_array(interpreter_scores, "interpreter_scores", ndim=2)
    _check_same_shape(clf, scores, "classifier_outputs", "interpreter_scores")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}.")
    y_true = clf >= threshold
    has_positive = y_true.any(axis=0)
    if not has_positive.any():
        raise ValueError(
            f"No class has a classifier output >= threshold={threshold} in any clip, so AUPRC is "
            "undefined for every class; lower the threshold or evaluate on more clips."
        )
    aps = [
        average_precision_score(y_true[:, j], scores[:, j]) for j in np.flatnonzero(has_positive)
    ]
    return float(np.mean(aps))


def make_fidelity_scorer(k: int = 1) -> Callable[[Any, ArrayLike, ArrayLike], float]:
    """Build a scikit-learn scorer of top-k fidelity, usable as ``scoring=`` in ``GridSearchCV``.

    Parameters
    ----------
    k : int, default=1
        Passed to :func:`top_k_fidelity`.

    Returns
    -------
    callable
        ``scorer(estimator, X, y)`` returning
        ``top_k_fidelity(y, estimator.predict_proba(X), k)``, where ``y`` holds the
        classifier's outputs of shape (n_clips, n_classes), the targets the interpreter is
        fitted on. Higher is better, as scikit-learn expects.

    Examples
    --------
    >>> import numpy as np
    >>> class Echo:
    ...     def predict_proba(self, X):
    ...         return np.asarray(X)
    >>> scorer = make_fidelity_scorer(k=1)
    >>> scorer(Echo(), [[0.9, 0.1], [0.6, 0.4]], [[2.0, 0.0], [0.0, 1.0]])
    0.5
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    return _proba_scorer(lambda y, p: top_k_fidelity(y, p, k=k), "fidelity", f"top_{k}_fidelity")


def _proba_scorer(metric, what: str, name: str) -> Callable[[Any, ArrayLike, ArrayLike], float]:
    """``scorer(estimator, X, y) = metric(y, estimator.predict_proba(X))``, named ``<name>_scorer``."""

    def scorer(estimator: Any, X: ArrayLike, y: ArrayLike) -> float:
        if not hasattr(estimator, "predict_proba"):
            raise ValueError(
                f"The {what} scorer needs an estimator with predict_proba; "
                f"{type(estimator).__name__} has none."
            )
        return metric(y, estimator.predict_proba(X))

    scorer.__name__ = scorer.__qualname__ = f"{name}_scorer"
    return scorer


def make_auprc_scorer(threshold: float = 0.5) -> Callable[[Any, ArrayLike, ArrayLike], float]:
    """Build a scikit-learn scorer of multi-label fidelity (:func:`multilabel_auprc`).

    Parameters
    ----------
    threshold : float, default=0.5
        Passed to :func:`multilabel_auprc`.

    Returns
    -------
    callable
        ``scorer(estimator, X, y)`` returning
        ``multilabel_auprc(y, estimator.predict_proba(X), threshold)``, where ``y`` holds the
        classifier's probabilities (sigmoid outputs) of shape (n_clips, n_classes). Higher is
        better. A multilabel :class:`~nmfinterp.InterpreterEstimator`'s own ``score`` is this at
        0.5 (and reads logits too).

    Examples
    --------
    >>> import numpy as np
    >>> class Echo:
    ...     def predict_proba(self, X):
    ...         return np.asarray(X)
    >>> scorer = make_auprc_scorer()
    >>> clf = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.7], [0.1, 0.3]]
    >>> round(scorer(Echo(), [[0.7, 0.4], [0.3, 0.1], [0.4, 0.6], [0.2, 0.5]], clf), 4)
    0.9167
    """
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}.")
    return _proba_scorer(
        lambda y, p: multilabel_auprc(y, p, threshold=threshold), "AUPRC", "macro_auprc"
    )


# --------------------------------------------------------------------------------------------
# Faithfulness of the explanation (per clip)
# --------------------------------------------------------------------------------------------
def faithfulness(p_x: ArrayLike, p_out: ArrayLike) -> NDArray[np.float64]:
    """Faithfulness FF = p_c(x) - p_c(x_out), per clip. Higher is better.

    Parameters
    ----------
    p_x : array-like of shape (n_clips,)
        Probability of the decided class ``c`` on the input.
    p_out : array-like of shape (n_clips,)
        Probability of the same class ``c`` on the residual ``x_out = x - explanation``.

    Returns
    -------
    ndarray of shape (n_clips,)
        Values in [-1, 1].

    Examples
    --------
    >>> faithfulness([0.9, 0.6], [0.2, 0.7]).round(3).tolist()
    [0.7, -0.1]
    """
    a, b = _per_clip_probs(p_x, p_out, "p_out")
    return a - b


def average_increase(p_x: ArrayLike, p_in: ArrayLike) -> NDArray[np.float64]:
    """Per-clip increase indicator AI = 100 * 1[p_c(x_in) > p_c(x)]. Higher is better.

    Parameters
    ----------
    p_x : array-like of shape (n_clips,)
        Probability of the decided class ``c`` on the input.
    p_in : array-like of shape (n_clips,)
        Probability of the same class ``c`` on the explanation ``x_in``.

    Returns
    -------
    ndarray of shape (n_clips,)
        100 where the explanation is strictly more confident than the input, else 0. The mean
        over clips is the "average increase" in percent.

    Examples
    --------
    >>> average_increase([0.5, 0.5, 0.5], [0.6, 0.5, 0.4]).tolist()
    [100.0, 0.0, 0.0]
    """
    a, b = _per_clip_probs(p_x, p_in, "p_in")
    return 100.0 * (b > a).astype(np.float64)


def average_drop(p_x: ArrayLike, p_in: ArrayLike) -> NDArray[np.float64]:
    """Per-clip drop AD = 100 * max(0, p_c(x) - p_c(x_in)) / p_c(x). Lower is better.

    Parameters
    ----------
    p_x : array-like of shape (n_clips,)
        Probability of the decided class ``c`` on the input.
    p_in : array-like of shape (n_clips,)
        Probability of the same class ``c`` on the explanation ``x_in``.

    Returns
    -------
    ndarray of shape (n_clips,)
        Relative drop in percent, in [0, 100]. Where ``p_x == 0`` nothing can drop and the
        value is defined as 0.

    Examples
    --------
    >>> average_drop([0.8, 0.5, 0.0], [0.6, 0.9, 0.3]).round(3).tolist()
    [25.0, 0.0, 0.0]
    """
    a, b = _per_clip_probs(p_x, p_in, "p_in")
    drop = np.maximum(0.0, a - b)
    safe = np.where(a > 0.0, a, 1.0)
    # Clip rounding noise: the drop can exceed p_x by an ulp after division.
    return np.where(a > 0.0, np.minimum(100.0 * drop / safe, 100.0), 0.0)


def average_gain(p_x: ArrayLike, p_in: ArrayLike) -> NDArray[np.float64]:
    """Per-clip gain AG = 100 * max(0, p_c(x_in) - p_c(x)) / (1 - p_c(x)). Higher is better.

    Parameters
    ----------
    p_x : array-like of shape (n_clips,)
        Probability of the decided class ``c`` on the input.
    p_in : array-like of shape (n_clips,)
        Probability of the same class ``c`` on the explanation ``x_in``.

    Returns
    -------
    ndarray of shape (n_clips,)
        Gain relative to the room left above ``p_x``, in percent, in [0, 100]. Where
        ``p_x == 1`` there is no room to gain and the value is defined as 0.

    Examples
    --------
    >>> average_gain([0.6, 0.5, 1.0], [0.8, 0.3, 1.0]).round(3).tolist()
    [50.0, 0.0, 0.0]
    """
    a, b = _per_clip_probs(p_x, p_in, "p_in")
    gain = np.maximum(0.0, b - a)
    room = 1.0 - a
    safe = np.where(room > 0.0, room, 1.0)
    return np.where(room > 0.0, np.minimum(100.0 * gain / safe, 100.0), 0.0)


def fidelity_in(probs_x: ArrayLike, probs_in: ArrayLike) -> NDArray[np.float64]:
    """Per-clip Fid-In = 1[argmax f(x_in) == argmax f(x)]. Higher is better.

    Parameters
    ----------
    probs_x : array-like of shape (n_clips, n_classes)
        Classifier outputs on the input (probabilities or logits; only the argmax is used).
    probs_in : array-like of shape (n_clips, n_classes)
        Classifier outputs on the explanation ``x_in``.

    Returns
    -------
    ndarray of shape (n_clips,)
        1.0 where the classifier decides the same class on the explanation as on the input,
        else 0.0 (ties: first maximum, as :func:`numpy.argmax`).

    Examples
    --------
    >>> fidelity_in([[0.7, 0.3], [0.2, 0.8]], [[0.6, 0.4], [0.9, 0.1]]).tolist()
    [1.0, 0.0]
    """
    px = _as_float_array(probs_x, "probs_x", ndim=2)
    pin = _as_float_array(probs_in, "probs_in", ndim=2)
    _check_same_shape(px, pin, "probs_x", "probs_in")
    return (np.argmax(pin, axis=1) == np.argmax(px, axis=1)).astype(np.float64)


def explanation_scores(
    probs_x: ArrayLike, probs_in: ArrayLike, probs_out: ArrayLike
) -> dict[str, NDArray[np.float64]]:
    """All per-clip faithfulness scores of explanations at once.

    The decided class is ``c = argmax probs_x`` for each clip.

    Parameters
    ----------
    probs_x : array-like of shape (n_clips, n_classes)
        Classifier probabilities on the inputs ``x``.
    probs_in : array-like of shape (n_clips, n_classes)
        Classifier probabilities on the explanations ``x_in``.
    probs_out : array-like of shape (n_clips, n_classes)
        Classifier probabilities on the residuals ``x_out = x - x_in``.

    Returns
    -------
    dict of str to ndarray of shape (n_clips,)
        Keys ``"FF"`` (:func:`faithfulness`), ``"AI"`` (:func:`average_increase`),
        ``"AD"`` (:func:`average_drop`), ``"AG"`` (:func:`average_gain`) and ``"Fid-In"``
        (:func:`fidelity_in`). Average over clips (e.g. with :func:`mean_ci`) to report them.

    Examples
    --------
    >>> px = [[0.8, 0.2], [0.4, 0.6]]
    >>> pin = [[0.9, 0.1], [0.7, 0.3]]
    >>> pout = [[0.3, 0.7], [0.5, 0.5]]
    >>> scores = explanation_scores(px, pin, pout)
    >>> {name: v.round(3).tolist() for name, v in scores.items()}
    {'FF': [0.5, 0.1], 'AI': [100.0, 0.0], 'AD': [0.0, 50.0], 'AG': [50.0, 0.0], 'Fid-In': [1.0, 0.0]}
    """
    px = _prob_matrix(probs_x, "probs_x")
    pin = _prob_matrix(probs_in, "probs_in")
    pout = _prob_matrix(probs_out, "probs_out")
    _check_same_shape(px, pin, "probs_x", "probs_in")
    _check_same_shape(px, pout, "probs_x", "probs_out")
    rows = np.arange(px.shape[0])
    c = np.argmax(px, axis=1)
    p_x, p_in, p_out = px[rows, c], pin[rows, c], pout[rows, c]
    return {
        "FF": faithfulness(p_x, p_out),
        "AI": average_increase(p_x, p_in),
        "AD": average_drop(p_x, p_in),
        "AG": average_gain(p_x, p_in),
        "Fid-In": fidelity_in(px, pin),
    }


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------
def _mask_rows(mask: ArrayLike, batch: bool) -> NDArray[np.float64]:
    """Validate a mask (or a batch of masks) and return it as (n_masks, n_values)."""
    arr = _as_float_array(mask, "mask")
    if batch:
        if arr.ndim < 2:
            raise ValueError(
                "With batch=True, mask must have a leading clip axis and at least one more axis, "
                f"shape (n_clips, ...); got shape {arr.shape}."
            )
        rows = arr.reshape(arr.shape[0], -1)
    else:
        rows = arr.reshape(1, -1)
    if (rows < 0).any():
        raise ValueError(
            f"mask must be non-negative; got a minimum of {float(rows.min()):.4g}. "
            "Use the soft mask (values in [0, 1]) or its magnitude."
        )
    return rows


def mask_sparseness(mask: ArrayLike, batch: bool = False) -> float | NDArray[np.float64]:
    """Sparseness (SPS) of a non-negative mask: its Gini index (Hurley & Rickard, 2009).

    With the flattened values sorted ascending, ``c_1 <= ... <= c_N``,
    ``G = 1 - 2 * sum_k (c_k / ||c||_1) * (N - k + 1/2) / N``. G is 0 for a uniform mask and
    ``1 - 1/N`` for a mask with a single non-zero value: higher means more concentrated.

    Parameters
    ----------
    mask : array-like
        One mask of any shape (flattened), or with ``batch=True`` masks stacked along the first
        axis, shape (n_clips, ...).
    batch : bool, default=False
        Whether the first axis indexes clips.

    Returns
    -------
    float or ndarray of shape (n_clips,)
        Gini index in [0, 1); an all-zero mask gets 0.

    Examples
    --------
    >>> mask_sparseness([0.0, 0.0, 0.0, 1.0])
    0.75
    >>> mask_sparseness([[1.0, 1.0], [1.0, 1.0]])
    0.0
    >>> mask_sparseness([[0.0, 2.0], [1.0, 1.0]], batch=True).tolist()
    [0.5, 0.0]
    """
    rows = _mask_rows(mask, batch)
    n = rows.shape[1]
    c = np.sort(rows, axis=1)
    total = c.sum(axis=1)
    weights = (n - np.arange(1, n + 1) + 0.5) / n
    safe = np.where(total > 0.0, total, 1.0)
    gini = 1.0 - 2.0 * (c / safe[:, None]) @ weights
    # Clip rounding noise (e.g. -1e-17 for a uniform mask); the index lies in [0, 1).
    gini = np.where(total > 0.0, np.clip(gini, 0.0, 1.0), 0.0)
    return gini if batch else float(gini[0])


def mask_complexity(mask: ArrayLike, batch: bool = False) -> float | NDArray[np.float64]:
    """Complexity (COMP) of a non-negative mask: Shannon entropy of the normalised mask.

    The flattened mask is divided by its sum to give a distribution ``q``, and
    ``H = -sum_i q_i log q_i`` (natural log, ``0 log 0 = 0``). H is 0 for a single non-zero
    value and ``log N`` for a uniform mask of N values: lower means simpler.

    Parameters
    ----------
    mask : array-like
        One mask of any shape (flattened), or with ``batch=True`` masks stacked along the first
        axis, shape (n_clips, ...).
    batch : bool, default=False
        Whether the first axis indexes clips.

    Returns
    -------
    float or ndarray of shape (n_clips,)
        Entropy in nats, in [0, log N]; an all-zero mask gets 0.

    Examples
    --------
    >>> mask_complexity([0.0, 3.0, 0.0])
    0.0
    >>> round(mask_complexity([[0.5, 0.5], [0.5, 0.5]]), 6)  # log(4)
    1.386294
    """
    rows = _mask_rows(mask, batch)
    total = rows.sum(axis=1)
    safe = np.where(total > 0.0, total, 1.0)
    q = rows / safe[:, None]
    logq = np.log(np.where(q > 0.0, q, 1.0))
    entropy = -(q * logq).sum(axis=1)
    entropy = np.where(total > 0.0, np.maximum(entropy, 0.0), 0.0)
    return entropy if batch else float(entropy[0])


# --------------------------------------------------------------------------------------------
# Ground truth on controlled mixtures
# --------------------------------------------------------------------------------------------
def si_sdr(
    estimate: ArrayLike, reference: ArrayLike, eps: float = 1e-8
) -> float | NDArray[np.float64]:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019).

    With ``alpha = <s_hat, s> / ||s||^2`` and ``target = alpha * s``,
    ``SI-SDR = 10 log10(||target||^2 / ||s_hat - target||^2)``. No mean is removed from the
    signals. ``eps`` is added to the numerator and the denominator of ``alpha`` and to both
    energies of the ratio (as torchmetrics does), so that silent signals and perfect estimates
    give finite values: a scaled copy of the reference scores about
    ``10 log10(||target||^2 / eps)``, an estimate orthogonal to the reference very low, and
    a silent estimate (0/0, undefined) exactly 0 dB, so check explanations for silence
    separately (e.g. with :func:`energy_share`).

    Parameters
    ----------
    estimate : array-like of shape (..., n_samples)
        Estimated waveform(s), e.g. the explanation; the last axis is time.
    reference : array-like of shape (..., n_samples)
        Reference waveform(s), e.g. the source that carries the decision. Same shape.
    eps : float, default=1e-8
        Small positive constant for numerical safety.

    Returns
    -------
    float or ndarray of shape (...)
        SI-SDR in dB; a float for 1-D inputs. Higher is better.

    Examples
    --------
    >>> s = [1.0, -1.0, 1.0, -1.0]
    >>> noise = [1.0, 1.0, -1.0, -1.0]  # orthogonal to s, same energy
    >>> round(si_sdr([a + b for a, b in zip(s, noise)], s), 6)
    0.0
    >>> si_sdr([0.5 * a for a in s], s) > 60
    True
    """
    est = _as_float_array(estimate, "estimate")
    ref = _as_float_array(reference, "reference")
    if est.ndim == 0:
        raise ValueError("estimate must have a time axis (last axis); got a scalar.")
    _check_same_shape(est, ref, "estimate", "reference")
    if not eps > 0.0:
        raise ValueError(f"eps must be a positive number; got {eps!r}.")
    alpha = (np.sum(est * ref, axis=-1, keepdims=True) + eps) / (
        np.sum(ref**2, axis=-1, keepdims=True) + eps
    )
    target = alpha * ref
    noise = est - target
    ratio = (np.sum(target**2, axis=-1) + eps) / (np.sum(noise**2, axis=-1) + eps)
    out = 10.0 * np.log10(ratio)
    return float(out) if out.ndim == 0 else out


def energy_share(
    mask_applied_to_deciding: ArrayLike, mask_applied_to_other: ArrayLike
) -> float | NDArray[np.float64]:
    """Share of the explanation's energy that comes from the source carrying the decision.

    The explanation's mask is applied to the STFT of each source of the mixture separately and
    each part is re-synthesised; the share is ``E(d) / (E(d) + E(o))`` with ``E`` the sum of
    squares over time. The unmasked mixture scores the sources' own energy ratio (0.5 at equal
    level); an ideal explanation approaches 1.

    Parameters
    ----------
    mask_applied_to_deciding : array-like of shape (..., n_samples)
        Re-synthesised masked part of the deciding source; the last axis is time.
    mask_applied_to_other : array-like of shape (..., n_samples)
        Re-synthesised masked part of the other source. Same shape.

    Returns
    -------
    float or ndarray of shape (...)
        Share in [0, 1]; a float for 1-D inputs. NaN where both parts are silent (the share is
        undefined); :func:`mean_ci` ignores NaNs.

    Examples
    --------
    >>> energy_share([3.0, 0.0], [0.0, 1.0])  # 9 / (9 + 1)
    0.9
    """
    d = _as_float_array(mask_applied_to_deciding, "mask_applied_to_deciding")
    o = _as_float_array(mask_applied_to_other, "mask_applied_to_other")
    if d.ndim == 0:
        raise ValueError(
            "mask_applied_to_deciding must have a time axis (last axis); got a scalar."
        )
    _check_same_shape(d, o, "mask_applied_to_deciding", "mask_applied_to_other")
    e_d = np.sum(d**2, axis=-1)
    e_o = np.sum(o**2, axis=-1)
    total = e_d + e_o
    out = np.where(total > 0.0, e_d / np.where(total > 0.0, total, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------
def mean_ci(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided confidence interval of the mean (Student's t distribution).

    Parameters
    ----------
    values : array-like
        Per-clip values (flattened). NaNs are ignored (e.g. undefined :func:`energy_share`).
    confidence : float, default=0.95
        Confidence level, strictly between 0 and 1.

    Returns
    -------
    mean, low, high : float
        The mean and the interval ``mean -/+ t_{(1+confidence)/2, n-1} * std / sqrt(n)``
        (``std`` with ``ddof=1``). With a single value the interval collapses to the mean.

    Raises
    ------
    ValueError
        If there are no values, all values are NaN, or some are infinite.

    Examples
    --------
    >>> mean, low, high = mean_ci([1.0, 2.0, 3.0])  # 2 -/+ t_{0.975, 2} * 1 / sqrt(3)
    >>> round(mean, 4), round(low, 4), round(high, 4)  # t_{0.975, 2} = 4.3027
    (2.0, -0.4841, 4.4841)
    >>> mean_ci([0.7, float("nan")])
    (0.7, 0.7, 0.7)
    """
    arr = _as_float_array(values, "values", allow_nan=True).ravel()
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1; got {confidence!r}.")
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        raise ValueError("values are all NaN; expected at least one defined value.")
    mean = float(np.mean(arr))
    if arr.size == 1:
        return mean, mean, mean
    sem = float(np.std(arr, ddof=1)) / np.sqrt(arr.size)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df=arr.size - 1)) * sem
    return mean, float(mean - half), float(mean + half)
