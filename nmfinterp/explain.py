"""From a decision to audio: relevance -> selection -> soft mask -> ISTFT with the input's own phase.

Each hop is a function you can call alone; :func:`explain` chains them for a fitted pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._validation import check_waveforms

_EPS = 1e-8
#: refinement steps explain() takes by default (single-label); measured in docs/benchmarks.md
REFINE_STEPS = 20
#: the refinement's Adam learning rate by default (on the gates' logits; docs/method.md, "The
#: refinement's learning rate": 0.5 before, which kept the classifier less sure of the explanations)
REFINE_LR = 1.0
#: weight of the kept energy share in the refinement's objective by default (docs/benchmarks.md)
ENERGY_PENALTY = 0.3
#: the refinement's contrast weights (see :func:`contrast_weights`), tried in turn by default
#: (:func:`default_contrast_penalty`): every clip is refined with CONTRAST_PENALTY, and again with
#: CONTRAST_PENALTY_MILD where its explanation lost the classifier's decision or KEEP_CONFIDENCE of
#: its confidence. 300 is the largest weight whose intervals stayed inside every clean-clip target
#: with one dictionary for all classes, 100 with a block of patterns per class (docs/method.md,
#: "The mask's ratio", "Dictionary"); tried in turn, they kept 100's clean-clip faithfulness and
#: 300's separation of mixtures with either dictionary ("Weights tried in turn")
CONTRAST_PENALTY = 300.0
CONTRAST_PENALTY_MILD = 100.0
#: with contrast weights tried in turn, the share of the classifier's probability of the class on
#: the clip that an explanation must keep not to be refined again with the next weight
KEEP_CONFIDENCE = 1.0
#: the explanation mask's sharpness by default (:func:`soft_mask`; 1: the ratio mask)
MASK_POWER = 1.0
#: the models whose ratio the mask is by default (:func:`soft_mask`; docs/method.md, "The mask's
#: ratio": "log" before)
MASK_RATIO = "linear"
#: the ratios soft_mask takes, for the messages that name them
MASK_RATIOS = ("linear", "log")
#: weight of the residual's term in the refinement's objective by default (docs/method.md, "The
#: residual term's weight": the sweeps on three ESC-10 splits and on spoken digits; 1, then 0.25,
#: before)
RESIDUAL_WEIGHT = 0.5

#: with a class-block separation (``explain(..., separation=...)``), the contrast term's energy in
#: each bin is weighted by SEPARATION_SCALE · (1 − M_c), M_c the separation's mask of the class
SEPARATION_SCALE = 2.0


def relevance(
    z: torch.Tensor, theta: torch.Tensor, classes: torch.Tensor, centered: bool = False
) -> torch.Tensor:
    """r_k = z_k θ_{c,k} / max_j z_j θ_{c,j}, ``(n_clips, K)``.

    With ``centered=True`` θ_{c,k} is replaced by θ_{c,k} − mean_j θ_{j,k}: how much component k
    pushes class c above the average class. A softmax cannot tell the two θ apart (they give the
    same probabilities), so the raw sign of θ_{c,k} is arbitrary; the centred one is not. Measured
    on ESC-10 it selects more faithful explanations (``benchmarks/results``). Use it for single-label
    classifiers; ``centered=False`` is L2I's definition.

    When no component speaks for the class (max <= 0, or below 1e-6 of the largest magnitude), the
    contributions are scaled by their largest magnitude instead, so nothing gets a relevance near 1
    and every r_k stays finite.

    Examples
    --------
    >>> z = torch.tensor([[1.0, 2.0, 0.5]]); theta = torch.tensor([[1.0, 1.0, -1.0], [1.0, 0.0, 0.0]])
    >>> relevance(z, theta, torch.tensor([0])).tolist()
    [[0.5, 1.0, -0.25]]
    >>> relevance(z, theta, torch.tensor([0]), centered=True).tolist()
    [[0.0, 1.0, -0.25]]
    """
    if centered:
        theta = theta - theta.mean(dim=0, keepdim=True)
    contrib = z * theta[classes]
    top = contrib.amax(dim=1, keepdim=True)
    largest = contrib.abs().amax(dim=1, keepdim=True)
    # a top contribution negligible next to the largest one speaks for nothing (and dividing by a
    # subnormal one would overflow to -inf)
    scale = torch.where(top > 1e-6 * largest, top, largest.clamp_min(_EPS))
    return contrib / scale


def select_components(
    r: torch.Tensor, top_k: int | None = None, threshold: float = 0.0
) -> torch.Tensor:
    """Boolean ``(n_clips, K)``: the ``top_k`` most relevant components with r_k > threshold.

    ``top_k=None`` keeps every component above the threshold. L2I's official selection is
    ``top_k=5, threshold=0.2`` (0.3 multi-label).

    Examples
    --------
    >>> select_components(torch.tensor([[0.5, 1.0, -0.25, 0.1]]), top_k=2, threshold=0.0).tolist()
    [[True, True, False, False]]
    """
    keep = r > threshold
    if top_k is not None and top_k < r.shape[1]:
        kth = r.topk(top_k, dim=1).indices
        in_top = torch.zeros_like(keep).scatter_(1, kth, True)
        keep &= in_top
    return keep


def contrast_weights(
    usage: torch.Tensor, probs: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """a_k = max(0, Σ_{j≠c} p_j (u_{j,k} − u_{c,k})), ``(n_clips, K)``, each in [0, 1].

    How much more the other classes than the explained class c use component k, weighted by the
    classifier's probabilities p_j of those classes. ``usage`` is the interpreter's
    ``class_usage_`` (the mean pooled activation of each component over each class's training
    clips), scaled per component by the class that uses it most: u_{j,k} in [0, 1]. A component
    that the explained class uses as much as any probable rival gets 0; one that only a class the
    classifier also hears uses gets up to that class's probability. The refinement weighs the
    energy kept from such components (``contrast_penalty``): on a mixture, where they mostly carry
    the other source, this keeps less of it (docs/benchmarks.md).

    Examples
    --------
    >>> usage = torch.tensor([[1.0, 0.0], [0.5, 2.0]])  # scaled per column: [[1, 0], [0.5, 1]]
    >>> contrast_weights(usage, torch.tensor([[0.8, 0.2]]), torch.tensor([0])).tolist()
    [[0.0, 0.20000000298023224]]
    """
    usage = torch.as_tensor(usage, dtype=torch.float32)
    scaled = usage / usage.amax(dim=0, keepdim=True).clamp_min(_EPS)
    others = probs.float().clone()
    others[torch.arange(len(classes)), classes] = 0.0
    rivals = others @ scaled - others.sum(dim=1, keepdim=True) * scaled[classes]
    return rivals.clamp(0.0, 1.0)


def soft_mask(
    W: torch.Tensor,
    H: torch.Tensor,
    weights: torch.Tensor,
    power: float = 1.0,
    ratio: str = "log",
) -> torch.Tensor:
    """M = (Σ_k w_k (g_k ⊙ h_k)ᵀ) / (W H + ε), in [0, 1], ``(n_clips, F, T)``.

    ``weights`` g are 0/1 for a hard selection (or in [0, 1] for a soft one): ``(n_clips, K)``, one
    per component for the whole clip, or ``(n_clips, K, T)``, one per component and frame.

    ``ratio``: which models the mask divides. The dictionary models the log-magnitude
    log1p|X| ≈ W H; ``"log"`` (L2I's) divides the kept components' log-magnitude model by the whole
    one, r = W(g ⊙ H) / (W H); ``"linear"`` divides the magnitudes those models stand for,
    r = expm1(W(g ⊙ H)) / expm1(W H): the share of the bin's magnitude the kept components would
    have alone. Where the dropped components dominate a bin, the linear ratio is smaller (the log
    compresses the loud part of the bin), so it keeps less of them.

    ``power`` p ≥ 1 sharpens the ratio r = W(g ⊙ H) / (W H) into the generalised Wiener mask
    r^p / (r^p + (1 − r)^p) (the kept and the dropped part of the model, each raised to p): 1 is
    the ratio itself, 2 the Wiener filter on power spectra. A bin that the kept components
    dominate goes towards 1, one that the dropped components dominate towards 0.

    Examples
    --------
    >>> W = torch.tensor([[3.0, 1.0], [1.0, 3.0]])  # two bins, two components
    >>> H, keep_first = torch.ones(1, 2, 1), torch.tensor([[1.0, 0.0]])  # one frame
    >>> soft_mask(W, H, keep_first)[0, :, 0].tolist()  # r = 3/4, 1/4
    [0.75, 0.25]
    >>> [round(v, 3) for v in soft_mask(W, H, keep_first, power=2.0)[0, :, 0].tolist()]
    [0.9, 0.1]
    >>> linear = soft_mask(W, H, keep_first, ratio="linear")[0, :, 0]  # (e³ − 1) / (e⁴ − 1), ...
    >>> [round(v, 3) for v in linear.tolist()]
    [0.356, 0.032]
    """
    _mask_ratio(ratio)
    full = torch.matmul(W, H)  # (F, K) @ (n, K, T): W H for every clip
    g = weights[:, :, None] if weights.dim() == 2 else weights
    part = torch.matmul(W, H * g)
    if torch.is_grad_enabled() and (part.requires_grad or full.requires_grad):
        if ratio == "linear":  # expm1(part) / expm1(full), without overflow where W H is large
            r = torch.exp(part - full) * -torch.expm1(-part) / (_EPS - torch.expm1(-full))
        else:
            r = part / full.add_(_EPS)
        r = r.clamp(0.0, 1.0)
    elif ratio == "linear":  # the same operations in place (no gradient): 2.5x faster
        r = torch.sub(part, full).exp_()
        r.mul_(part.neg_().expm1_()).div_(full.neg_().expm1_().sub_(_EPS))  # both signs flipped
        r.clamp_(0.0, 1.0)
    else:
        r = part.div_(full.add_(_EPS)).clamp_(0.0, 1.0)
    if power == 1:
        return r
    kept = r.pow(power)
    return kept / (kept + (1.0 - r).pow(power))


def masked_spectrum(spec: torch.Tensor, mask: torch.Tensor, domain: str = "linear") -> torch.Tensor:
    """Apply the mask to the input's complex STFT, keeping its phase.

    ``"linear"``: M·|X| (the default: measured slightly more faithful); ``"log"``: expm1(M·log1p|X|),
    L2I's log-domain mask. The phase is kept without computing it: M·|X|·e^{j∠X} is M·X, and the
    log-domain magnitude multiplies X/|X| (``torch.sgn``, 0 where X is 0).

    Examples
    --------
    >>> X = torch.tensor([[3.0 + 4.0j, 0.0j]])
    >>> masked_spectrum(X, torch.tensor([[0.5, 1.0]])).tolist()
    [[(1.5+2j), 0j]]
    """
    if domain == "linear":
        return mask * spec
    if domain == "log":
        return torch.expm1(mask * torch.log1p(spec.abs())) * torch.sgn(spec)
    raise ValueError(f"mask_domain={domain!r}; expected 'linear' or 'log'.")


def default_contrast_penalty(interpreter) -> float | tuple[float, ...]:
    """The contrast weights ``explain`` tries in turn by default for this fitted interpreter:
    ``(CONTRAST_PENALTY, CONTRAST_PENALTY_MILD)``, (300, 100); 0 without ``class_usage_``
    (multilabel, or fitted before it existed), where the contrast term cannot be computed."""
    if getattr(interpreter, "class_usage_", None) is None:
        return 0.0
    return (CONTRAST_PENALTY, CONTRAST_PENALTY_MILD)


def _contrast_penalties(interpreter, value) -> tuple[float, ...]:
    """explain's ``contrast_penalty`` checked, as the weights to try in turn: a number alone, a
    non-empty sequence of them, or ``None`` (:func:`default_contrast_penalty`)."""
    if value is None:
        default = default_contrast_penalty(interpreter)
        return default if isinstance(default, tuple) else (default,)
    if isinstance(value, list | tuple | np.ndarray):
        weights = tuple(np.asarray(value, dtype=object).ravel())
        if not weights:
            raise ValueError(
                f"contrast_penalty={value!r}; expected a non-negative number, a non-empty sequence "
                "of them (tried in turn), or None."
            )
        return tuple(_contrast_penalty(interpreter, w, sequence=value) for w in weights)
    return (_contrast_penalty(interpreter, value),)


def _contrast_penalty(interpreter, value, sequence=None, none=" or None") -> float:
    """One contrast weight checked. ``sequence``: the weights ``value`` is one of, for the
    message; ``none``: what the message adds to "a non-negative number" (explain also takes
    None)."""
    usage = getattr(interpreter, "class_usage_", None)
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not value >= 0:
        if sequence is not None:
            raise ValueError(
                f"contrast_penalty={sequence!r}: {value!r} is not a non-negative number; expected "
                "non-negative weights, tried in turn."
            )
        raise ValueError(f"contrast_penalty={value!r}; expected a non-negative number{none}.")
    if value and usage is None:
        raise ValueError(
            f"contrast_penalty={value!r} needs the interpreter's class_usage_, which this one "
            "lacks (a multilabel interpreter, or one fitted by an earlier nmfinterp): fit it "
            "again, or pass contrast_penalty=0."
        )
    return float(value)


class _Faithfulness:
    """The faithfulness objective of a decision, per clip, for masks on a batch of clips:
    ``CE(f(x_in), c) − residual_weight · min(CE(f(x − x_in), c), log C) + mask_penalty · mean(M)
    + energy_penalty · E(x_in) / E(x) + contrast_penalty · E_a(x_in) / E(x)`` (E: the STFT energy
    the mask keeps; E_a: the part of it from components weighted by :func:`contrast_weights`,
    ``Σ M ⊙ |X|² ⊙ soft_mask(W, H, a)``, with the mask's own ``mask_ratio``, which needs ``H`` and
    the classifier's ``scores`` on ``x``; with ``separation_masks`` M_c, each bin's part is also
    weighted by ``separation_scale · (1 − M_c)``)."""

    def __init__(
        self,
        interpreter,
        x: torch.Tensor,
        classes: torch.Tensor,
        mask_domain: str,
        energy_penalty: float = 0.0,
        contrast_penalty: float = 0.0,
        H: torch.Tensor | None = None,
        scores: torch.Tensor | None = None,
        residual_weight: float = 1.0,
        mask_ratio: str = "log",
        separation_masks: torch.Tensor | None = None,
        separation_scale: float = SEPARATION_SCALE,
    ):
        from .hooks import classifier_device

        self.it, self.domain, self.energy_penalty = interpreter, mask_domain, energy_penalty
        self.contrast_penalty, self.residual_weight = contrast_penalty, residual_weight
        self.dev = classifier_device(interpreter.classifier)
        self.x = x.to(self.dev)
        self.padded = interpreter.spectrogram_._padded_stft(self.x)
        if energy_penalty or contrast_penalty:  # each bin's share of the clip's energy
            S, frames = self.padded  # (on the mask's frame grid)
            power = S.abs()[..., frames : S.shape[-1] - frames] ** 2
            self.power = power / power.sum(dim=(1, 2), keepdim=True).clamp_min(1e-20)
        if contrast_penalty:  # each bin's share that comes from the weighted components
            if H is None or scores is None:
                raise ValueError(
                    "contrast_penalty > 0 needs the interpreter's activations H and the "
                    "classifier's scores on the clips; pass both (or contrast_penalty=0)."
                )
            W = torch.as_tensor(interpreter.dictionary_.dictionary_, dtype=torch.float32)
            probs = interpreter._log_probs(scores.detach().float()).exp()
            a = contrast_weights(interpreter.class_usage_, probs.cpu(), classes.cpu())
            share = soft_mask(W, H.detach().cpu(), a, ratio=mask_ratio)
            if separation_masks is not None:  # towards the bins the other classes' patterns model
                share = share * separation_scale * (1.0 - separation_masks.cpu())
            self.contrast = self.power * share.to(self.dev)
        self.cls = classes.to(self.dev)
        self.cap = float(np.log(len(interpreter.classes_)))
        self.params = {k: v.detach() for k, v in interpreter.classifier.named_parameters()}

    def __call__(self, M: torch.Tensor) -> torch.Tensor:
        M = M.to(self.dev)
        n, length = self.x.shape
        x_in = self.it.spectrogram_._masked_audio(self.padded, M, length, self.domain)
        scores = self.it._call_classifier(self.params, torch.cat([x_in, self.x - x_in]))
        logp = self.it._log_probs(scores)
        ce_in = F.nll_loss(logp[:n], self.cls, reduction="none")
        ce_out = F.nll_loss(logp[n:], self.cls, reduction="none")
        penalty = self.it.mask_penalty * M.mean(dim=(1, 2))
        if self.energy_penalty:
            penalty = penalty + self.energy_penalty * (M * self.power).sum(dim=(1, 2))
        if self.contrast_penalty:
            penalty = penalty + self.contrast_penalty * (M * self.contrast).sum(dim=(1, 2))
        return ce_in - self.residual_weight * ce_out.clamp(max=self.cap) + penalty


def refine_selection(
    interpreter,
    x: torch.Tensor,
    H: torch.Tensor,
    r: torch.Tensor,
    classes: torch.Tensor,
    steps: int,
    *,
    top_k: int | None = None,
    per_frame: bool = True,
    mask_domain: str = "linear",
    energy_penalty: float = ENERGY_PENALTY,
    contrast_penalty: float = 0.0,
    scores: torch.Tensor | None = None,
    mask_power: float = 1.0,
    residual_weight: float = RESIDUAL_WEIGHT,
    mask_ratio: str = "log",
    lr: float = REFINE_LR,
    temperature: float = 0.1,
    separation_masks: torch.Tensor | None = None,
    separation_scale: float = SEPARATION_SCALE,
) -> torch.Tensor:
    """Components to keep, boolean gates ``(n_clips, K, T)``, refined through the frozen classifier.

    Starts from the interpreter's soft selection ``sigmoid(r / temperature)`` (the one its
    faithfulness term trains with; ``r`` is the relevance minus the threshold) and takes ``steps``
    Adam steps on the logits of the gates to lower the faithfulness objective of the decision
    itself, ``CE(f(x_in), c) − w · min(CE(f(x − x_in), c), log C) + mask_penalty · mean(M) +
    energy_penalty · E(x_in) / E(x) + contrast_penalty · E_a(x_in) / E(x)``, where x_in is the clip
    re-synthesised through the mask of the gated components, c the explained class, E(x_in) / E(x)
    the share of the clip's STFT energy the mask keeps (so the explanation drops loud parts the
    decision does not need, such as an interfering source; docs/benchmarks.md measures it) and
    E_a(x_in) the part of it from components that other probable classes use more than c
    (:func:`contrast_weights`, from the classifier's ``scores`` on ``x`` and the interpreter's
    ``class_usage_``; needed when ``contrast_penalty > 0``). With ``per_frame=True`` there is
    one gate per component and frame (component k can be kept where it carries the decision and
    dropped where it does not: on ESC-10 mixtures this was more faithful and kept less of the
    interfering source than one gate per component); ``per_frame=False`` has one gate per
    component for the whole clip (returned broadcast over the frames). ``mask_power`` and
    ``mask_ratio``: the mask's sharpness and ratio (:func:`soft_mask`), the same as the
    explanation's. ``separation_masks``: ``(n_clips, F, T)``, a
    :class:`~nmfinterp.separation.ClassNMFSeparation`'s masks of the explained classes (or the
    source gates' masks), which weight the contrast term by ``separation_scale · (1 − M_c)`` (see
    :func:`explain`).
    ``residual_weight`` w: how much
    the residual x − x_in must lose the decision (up to chance, log C) next to the explanation
    keeping it. Only the gates move (the
    dictionary, H and the classifier are fixed), so the explanation stays a sum of the
    interpreter's components. Gates whose refined value is above 0.5 are kept (at most ``top_k``
    components per clip, by relevance), unless the interpreter's own selection (``r > 0``) scores
    better on that objective for that clip: refining never makes a clip's explanation worse by
    this measure. Costs ``steps`` forward and backward passes of the classifier on twice the
    batch, plus two forward passes on it.
    """
    from .hooks import frozen

    W = torch.as_tensor(interpreter.dictionary_.dictionary_, dtype=torch.float32)
    objective = _Faithfulness(
        interpreter,
        x,
        classes,
        mask_domain,
        energy_penalty,
        contrast_penalty,
        H,
        scores,
        residual_weight,
        mask_ratio,
        separation_masks,
        separation_scale,
    )
    mask = lambda gates: soft_mask(W, H, gates, mask_power, mask_ratio)  # noqa: E731
    T = H.shape[-1]
    # clamped so that a few steps can flip any gate (Adam moves each logit ~lr per step)
    start_logit = (r / temperature).clamp(-3.0, 3.0)
    if per_frame:
        start_logit = start_logit[:, :, None].expand(-1, -1, T)
    logit = start_logit.clone().requires_grad_(True)
    opt = torch.optim.Adam([logit], lr=lr)
    with frozen(interpreter.classifier):
        with torch.enable_grad():
            for _ in range(steps):
                loss = objective(mask(torch.sigmoid(logit))).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            start = select_components(r, top_k, 0.0)[:, :, None].expand(-1, -1, T)
            if not per_frame:
                refined = select_components(logit.detach(), top_k, 0.0)[:, :, None].expand(
                    -1, -1, T
                )
            else:  # at most top_k components, the most relevant ones
                refined = logit.detach() > 0
                refined &= select_components(r, top_k, -float("inf"))[:, :, None]
            before = objective(mask(start.float()))
            after = objective(mask(refined.float()))
    return torch.where((after <= before).cpu()[:, None, None], refined, start)


@dataclass
class Explanations:
    """Explanations of a batch of clips.

    Attributes
    ----------
    waveforms : ndarray (n_clips, n_samples) float32, or list of 1-D arrays for clips of different lengths
        What the classifier used, as audio; each has its input's length.
    residuals : same as waveforms
        input − explanation: what the explanation left out.
    classes : ndarray (n_clips,)
        The class each clip is explained for.
    relevance : ndarray (n_clips, K)
        r_k for that class.
    selected : list of ndarray
        Indices of the components kept, most relevant first.
    masks : list of ndarray (F, T)
        The soft masks applied to the inputs' spectrograms.
    activations : list of ndarray (K, T)
        The interpreter's H.
    gates : list of ndarray (K, T) of bool
        Where each component is kept: the mask is ``soft_mask(W, H, gates, mask_power,
        mask_ratio)`` (the explanation's ``settings``). With a whole-clip
        selection every row is constant; with the per-frame refinement a component can be kept in
        some frames and dropped in others.
    classifier_scores, interpreter_scores : ndarray (n_clips, n_classes)
        The classifier's outputs on the inputs and Θ's logits.
    sr : int
    contrast_penalties : ndarray (n_clips,) or None
        With the refinement, the contrast weight each clip's explanation was refined with (the
        first of ``contrast_penalty``'s weights whose explanation the classifier still decides as
        the explained class, with ``keep_confidence`` of its confidence, or the last one);
        ``None`` without the refinement.
    """

    waveforms: np.ndarray | list
    residuals: np.ndarray | list
    classes: np.ndarray
    relevance: np.ndarray
    selected: list
    masks: list
    activations: list
    classifier_scores: np.ndarray
    interpreter_scores: np.ndarray
    sr: int
    settings: dict = field(default_factory=dict)
    gates: list | None = None
    contrast_penalties: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.classes)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.waveforms, dtype=dtype)


def _classifier_scores(interpreter, waveforms: np.ndarray) -> torch.Tensor:
    """The classifier's outputs on each of ``waveforms``, on CPU."""
    from .hooks import classifier_device, frozen

    with frozen(interpreter.classifier), torch.no_grad():
        params = dict(interpreter.classifier.named_parameters())
        x = torch.as_tensor(np.ascontiguousarray(waveforms))
        scores = interpreter._call_classifier(
            params, x.to(classifier_device(interpreter.classifier))
        )
    return scores.cpu()


def _batched_classifier_scores(interpreter, waveforms: np.ndarray) -> torch.Tensor:
    """:func:`_classifier_scores` of ``waveforms``, ``interpreter.batch_size`` clips at a time."""
    step = interpreter.batch_size
    return torch.cat(
        [
            _classifier_scores(interpreter, waveforms[i : i + step])
            for i in range(0, len(waveforms), step)
        ]
    )


def _lost(interpreter, explained, scores, cls, keep_confidence) -> torch.Tensor:
    """Which explanations (the classifier's outputs on them, ``explained``) no longer hold the
    decision: the classifier does not decide them as ``cls``, or (``keep_confidence`` > 0) gives
    ``cls`` less than ``keep_confidence`` times its probability on the clips (``scores``)."""
    lost = explained.argmax(-1) != cls
    if keep_confidence:  # 0 (and None) ask for the decision alone
        rows = torch.arange(len(cls))
        before = interpreter._log_probs(scores.float())[rows, cls]
        after = interpreter._log_probs(explained.float())[rows, cls]
        lost |= after < before + float(np.log(keep_confidence))
    return lost


def _interpreter_of(model):
    from .interpreter import InterpreterEstimator

    if isinstance(model, Pipeline):
        model = model.steps[-1][1]
    if not isinstance(model, InterpreterEstimator):
        raise TypeError(
            f"explain needs a fitted pipeline ending in an InterpreterEstimator (or the estimator itself); "
            f"got {type(model).__name__}."
        )
    check_is_fitted(model, "module_")
    return model


def _finite_number(name: str, value, minimum: float, hint: str) -> float:
    """``value`` as a float, checked to be a finite number >= ``minimum`` (not a bool)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.number)
        or not value >= minimum
        or not np.isfinite(value)
    ):
        raise ValueError(f"{name}={value!r}; expected a finite number >= {minimum} ({hint}).")
    return float(value)


def _residual_weight(value) -> float:
    """``residual_weight`` checked (explain's and fit_gates')."""
    return _finite_number(
        "residual_weight", value, 0, "0: the residual is not asked to lose the decision"
    )


def _check_separation(separation, interpreter, refine_steps, contrast_penalties):
    """The hint to use: None, the interpreter's source gates (a ``GateNet`` for its K
    components, reading its hidden representation), or a fitted class-block separation the
    refinement's contrast term can use (as many classes as the interpreter, on its spectrogram's
    grid); "auto" is the interpreter's own (``fit_source_gates``, else ``fit_separation``) where
    the refinement has a contrast term."""
    from .gates import GateNet

    weighted = bool(refine_steps) and any(contrast_penalties)  # a contrast term to weight
    if isinstance(separation, str) and separation == "auto":
        own = getattr(interpreter, "source_gates_", None)
        own = own if own is not None else getattr(interpreter, "separation_", None)
        separation = own if weighted else None
    if separation is None:
        return None
    gates = isinstance(separation, GateNet)
    if not gates and (not hasattr(separation, "masks") or not hasattr(separation, "classes_")):
        raise ValueError(
            f"separation={separation!r}; expected 'auto' (the interpreter's own, from "
            "fit_source_gates or fit_separation), a fitted "
            "nmfinterp.separation.ClassNMFSeparation, the interpreter's source_gates_, or None."
        )
    if not weighted:
        raise ValueError(
            "separation weights the refinement's contrast term; it needs refine_steps > 0 and a "
            "contrast_penalty > 0 (the defaults), or leave separation='auto' (the default)."
        )
    if gates:
        if separation.n_components != interpreter.n_components_ or not separation.context_channels:
            raise ValueError(
                "separation is a gate network for another interpreter: pass this interpreter's "
                "source_gates_ (fit_source_gates), or 'auto'."
            )
        return separation
    n_classes, spec = len(interpreter.classes_), interpreter.spectrogram_
    if len(separation.classes_) != n_classes:
        raise ValueError(
            f"separation was fitted on {len(separation.classes_)} classes and the interpreter "
            f"on {n_classes}; fit it on the classifier's outputs on the training clips."
        )
    grid = lambda t: (t.sr, t.n_fft, getattr(t, "hop_length_", t.hop_length))  # noqa: E731
    if grid(separation.spectrogram_) != grid(spec):
        raise ValueError(
            "separation's spectrogram (sr, n_fft, hop_length) = "
            f"{grid(separation.spectrogram_)} is not the pipeline's {grid(spec)}; fit it on the "
            "pipeline's: ClassNMFSeparation(pipe[0], ...)."
        )
    return separation


def _mask_ratio(value) -> str:
    """``mask_ratio`` checked (explain's and fit_gates')."""
    if not isinstance(value, str) or value not in MASK_RATIOS:
        raise ValueError(
            f"mask_ratio={value!r}; expected 'linear' (the ratio of the magnitudes the components "
            "model) or 'log' (of their log-magnitude models, L2I's)."
        )
    return value


def explain_clips(
    interpreter,
    X,
    *,
    classes=None,
    top_k: int | None = None,
    threshold: float = 0.0,
    mask_domain: str = "linear",
    relevance_mode: str = "centered",
    refine_steps: int | None = None,
    refine_lr: float | None = None,
    per_frame: bool = True,
    energy_penalty: float = ENERGY_PENALTY,
    contrast_penalty: float | Sequence[float] | None = None,
    keep_confidence: float | None = None,
    amortised: bool = False,
    mask_power: float = MASK_POWER,
    residual_weight: float = RESIDUAL_WEIGHT,
    mask_ratio: str = MASK_RATIO,
    separation="auto",
    batch_size: int | None = None,
    sr: int | None = None,
    verbose: int = 0,
) -> Explanations:
    """Explain clips with a fitted :class:`~nmfinterp.InterpreterEstimator` (see :func:`explain`)."""
    from .gates import SOURCE_GATES_SCALE, GateNet, source_masks

    spec, dico = interpreter.spectrogram_, interpreter.dictionary_
    if sr is not None and sr != spec.sr:
        raise ValueError(
            f"the clips are at {sr} Hz but the pipeline was fitted at {spec.sr} Hz; resample them "
            f"first: librosa.resample(x, orig_sr={sr}, target_sr={spec.sr})."
        )
    batch_size = interpreter.batch_size if batch_size is None else batch_size
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; expected a positive integer or None.")
    if top_k is not None and (not isinstance(top_k, int | np.integer) or top_k < 1):
        raise ValueError(f"top_k={top_k!r}; expected a positive integer or None (all components).")
    if mask_domain not in ("linear", "log"):
        raise ValueError(f"mask_domain={mask_domain!r}; expected 'linear' or 'log'.")
    if relevance_mode not in ("centered", "raw"):
        raise ValueError(
            f"relevance_mode={relevance_mode!r}; expected 'centered' or 'raw' (L2I's)."
        )
    centered = relevance_mode == "centered" and not interpreter.multilabel
    if not isinstance(amortised, bool | np.bool_):
        raise ValueError(f"amortised={amortised!r}; expected True or False.")
    if amortised:
        if getattr(interpreter, "gate_module_", None) is None:
            raise ValueError(
                "amortised=True uses the interpreter's gate network, which is not trained yet: "
                "train it once with interpreter.fit_gates(X_train) (in a pipeline: "
                "pipe[-1].fit_gates(X_train)), or explain with amortised=False."
            )
        if refine_steps:
            raise ValueError(
                f"refine_steps={refine_steps!r} with amortised=True: the gate network replaces the "
                "refinement; leave refine_steps=None."
            )
        if refine_lr is not None:
            raise ValueError(
                f"refine_lr={refine_lr!r} with amortised=True: the gate network replaces the "
                "refinement; leave refine_lr=None."
            )
        if threshold != 0:
            raise ValueError(
                f"threshold={threshold!r} with amortised=True: the gate network was trained from "
                "the interpreter's selection at threshold 0; leave threshold=0 (top_k still applies)."
            )
        refine_steps = 0
    if refine_steps is None:
        refine_steps = 0 if interpreter.multilabel else REFINE_STEPS
    if not isinstance(refine_steps, int | np.integer) or refine_steps < 0:
        raise ValueError(f"refine_steps={refine_steps!r}; expected a non-negative integer or None.")
    refine_lr = REFINE_LR if refine_lr is None else refine_lr
    if (
        isinstance(refine_lr, bool)
        or not isinstance(refine_lr, int | float | np.number)
        or not 0 < refine_lr < np.inf
    ):
        raise ValueError(
            f"refine_lr={refine_lr!r}; expected a positive finite number (the refinement's Adam "
            f"learning rate) or None ({REFINE_LR})."
        )
    if not isinstance(energy_penalty, int | float | np.number) or not energy_penalty >= 0:
        raise ValueError(f"energy_penalty={energy_penalty!r}; expected a non-negative number.")
    contrast_penalties = _contrast_penalties(interpreter, contrast_penalty)
    if keep_confidence is None:  # the default, where several weights are tried
        keep_confidence = KEEP_CONFIDENCE if len(contrast_penalties) > 1 and refine_steps else None
    else:
        keep_confidence = _finite_number(
            "keep_confidence", keep_confidence, 0, "0: the decision alone decides"
        )
        if len(contrast_penalties) < 2 or not refine_steps:
            raise ValueError(
                f"keep_confidence={keep_confidence!r} decides which clips are refined again with "
                "the next of several contrast weights tried in turn; pass contrast_penalty=(300, "
                "100) with refinement (refine_steps > 0), or leave keep_confidence=None."
            )
    mask_power = _finite_number(
        "mask_power", mask_power, 1, "1: the ratio mask, 2: the Wiener mask on power spectra"
    )
    residual_weight = _residual_weight(residual_weight)
    _mask_ratio(mask_ratio)
    separation = _check_separation(separation, interpreter, refine_steps, contrast_penalties)
    if not isinstance(per_frame, bool | np.bool_):
        raise ValueError(f"per_frame={per_frame!r}; expected True or False.")
    if refine_steps and interpreter.multilabel:
        raise ValueError(
            "refine_steps > 0 needs a single-label classifier (it refines through the "
            "cross-entropy of the explained class); use refine_steps=0 with multilabel=True."
        )
    single = isinstance(X, np.ndarray) and X.ndim == 1
    clips = check_waveforms(X, min_samples=spec.n_fft // 2 + 1, allow_ragged=True, allow_1d=True)
    if isinstance(clips, np.ndarray) and clips.ndim == 1:
        clips = clips[None, :]
    ragged = isinstance(clips, list)
    n = len(clips)
    if classes is None or isinstance(classes, str):
        if classes not in (None, "classifier", "interpreter"):
            raise ValueError(
                f"classes={classes!r}; expected None/'classifier', 'interpreter', or class indices."
            )
        wanted = None
    else:
        wanted = np.broadcast_to(np.asarray(classes, dtype=int), (n,))
        bad = wanted[(wanted < 0) | (wanted >= len(interpreter.classes_))]
        if len(bad):
            raise ValueError(
                f"classes {bad.tolist()} out of range; expected 0..{len(interpreter.classes_) - 1}."
            )

    # equal-length clips go through together, batch by batch
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(clips):
        groups.setdefault(len(c), []).append(i)
    W = torch.as_tensor(dico.dictionary_, dtype=torch.float32)
    net = interpreter.module_
    theta = net.theta.weight.detach()
    out: dict[str, list] = {
        k: [None] * n
        for k in ("wave", "res", "rel", "sel", "mask", "H", "gate", "cs", "is", "cls", "cp")
    }
    waves = None if ragged else np.empty_like(clips)
    bar = tqdm(total=n, desc="explaining", unit="clip", disable=verbose <= 0)
    for idx_all in groups.values():
        for start in range(0, len(idx_all), batch_size):
            idx = idx_all[start : start + batch_size]
            # equal lengths: the clips' own rows, in order (a view, nothing copied)
            x = torch.as_tensor(
                clips[start : start + len(idx)] if not ragged else np.stack([clips[i] for i in idx])
            )
            n_frames = spec._n_frames(x.shape[-1])  # the mask's grid
            feats, scores = interpreter._extract(x.numpy())
            with torch.no_grad():
                hidden = net.hidden(feats, n_frames)
                H = net.decoder(hidden)
                z = net.pool(H)  # pooled once: Θ's logits and the relevance both use it
                logits = net.theta(z)
                if wanted is not None:
                    cls = torch.as_tensor(wanted[idx])
                elif classes == "interpreter":
                    cls = logits.argmax(-1)
                else:
                    cls = scores.argmax(-1)
                r = relevance(z, theta, cls, centered)
                # the separation's masks of the explained classes, once per batch
                own, scale = None, SEPARATION_SCALE
                if isinstance(separation, GateNet):  # the source gates (fit_source_gates)
                    own = source_masks(interpreter, separation, H, z, cls, hidden)
                    scale = SOURCE_GATES_SCALE
                elif separation is not None:  # only with refinement (_check_separation)
                    own = torch.as_tensor(separation.masks(x.numpy(), cls.numpy()))

                # the refined gates of the clips ``rows`` (indices or a slice) at one weight
                def refine(
                    rows,
                    weight,
                    x=x,
                    H=H,
                    shifted=r - threshold,
                    cls=cls,
                    scores=scores,
                    own=own,
                    scale=scale,
                ):
                    return refine_selection(
                        interpreter,
                        x[rows],
                        H[rows],
                        shifted[rows],
                        cls[rows],
                        refine_steps,
                        top_k=top_k,
                        per_frame=per_frame,
                        mask_domain=mask_domain,
                        energy_penalty=energy_penalty,
                        contrast_penalty=weight,
                        scores=scores[rows],
                        mask_power=mask_power,
                        residual_weight=residual_weight,
                        mask_ratio=mask_ratio,
                        lr=float(refine_lr),
                        separation_masks=None if own is None else own[rows],
                        separation_scale=scale,
                    )

                rows = torch.arange(len(idx))
                used = torch.full((len(idx),), contrast_penalties[0])
                if refine_steps:  # every clip: a slice, so that nothing is copied
                    keep = refine(slice(None), contrast_penalties[0])
                elif amortised:  # at most top_k components, the most relevant ones
                    keep = interpreter.gate_module_(H, z, theta, cls, hidden) > 0
                    keep &= select_components(r, top_k, -float("inf"))[:, :, None]
                else:
                    keep = select_components(r, top_k, threshold)[:, :, None].expand_as(H)
                M = soft_mask(W, H, keep.float(), mask_power, mask_ratio)
                wave = spec.apply_mask(x, M, mask_domain)
                # the next weight, for the clips whose explanation lost the decision (or the
                # classifier's confidence)
                for weight in contrast_penalties[1:] if refine_steps else ():
                    explained = _classifier_scores(interpreter, wave[rows.numpy()])
                    rows = rows[
                        _lost(interpreter, explained, scores[rows], cls[rows], keep_confidence)
                    ]
                    if not len(rows):
                        break
                    keep[rows] = refine(rows, weight)
                    used[rows] = weight
                    M[rows] = soft_mask(W, H[rows], keep[rows].float(), mask_power, mask_ratio)
                    wave[rows.numpy()] = spec.apply_mask(x[rows], M[rows], mask_domain)
            if not ragged:  # one group, the clips in order
                waves[start : start + len(idx)] = wave
            for j, i in enumerate(idx):
                order = torch.argsort(r[j], descending=True)
                if ragged:
                    out["wave"][i] = wave[j]  # float32, as are the clips
                    out["res"][i] = clips[i] - wave[j]
                out["rel"][i] = r[j].numpy()
                out["sel"][i] = order[keep[j].any(dim=-1)[order]].numpy()
                out["mask"][i] = M[j].numpy()
                out["H"][i] = H[j].numpy()
                out["gate"][i] = keep[j].numpy().copy()
                out["cs"][i] = scores[j].numpy()
                out["is"][i] = logits[j].numpy()
                out["cls"][i] = int(cls[j])
                out["cp"][i] = float(used[j])
            bar.update(len(idx))
    bar.close()
    result = Explanations(
        waveforms=out["wave"] if ragged else waves,
        residuals=out["res"] if ragged else clips - waves,
        classes=np.array(out["cls"]),
        relevance=np.stack(out["rel"]),
        selected=out["sel"],
        masks=out["mask"],
        activations=out["H"],
        gates=out["gate"],
        classifier_scores=np.stack(out["cs"]),
        interpreter_scores=np.stack(out["is"]),
        contrast_penalties=np.array(out["cp"]) if refine_steps else None,
        sr=spec.sr,
        settings={
            "top_k": top_k,
            "threshold": threshold,
            "mask_domain": mask_domain,
            "relevance_mode": relevance_mode,
            "refine_steps": refine_steps,
            "refine_lr": float(refine_lr),
            "per_frame": per_frame,
            "energy_penalty": energy_penalty,
            # one weight as a number (as before several could be tried), several as a tuple
            "contrast_penalty": contrast_penalties[0]
            if len(contrast_penalties) == 1
            else contrast_penalties,
            "keep_confidence": keep_confidence,
            "amortised": amortised,
            "mask_power": mask_power,
            "residual_weight": residual_weight,
            "mask_ratio": mask_ratio,
            "separation": separation is not None,
            "single": single,
        },
    )
    return result


def explain(
    model,
    X,
    *,
    classes=None,
    top_k: int | None = None,
    threshold: float = 0.0,
    mask_domain: str = "linear",
    relevance_mode: str = "centered",
    refine_steps: int | None = None,
    refine_lr: float | None = None,
    per_frame: bool = True,
    energy_penalty: float = ENERGY_PENALTY,
    contrast_penalty: float | Sequence[float] | None = None,
    keep_confidence: float | None = None,
    amortised: bool = False,
    mask_power: float = MASK_POWER,
    residual_weight: float = RESIDUAL_WEIGHT,
    mask_ratio: str = MASK_RATIO,
    separation="auto",
    batch_size: int | None = None,
    sr: int | None = None,
    verbose: int = 0,
) -> Explanations:
    """Listenable explanations of the classifier's decisions on clips ``X``.

    For each clip: the interpreter's activations H, the relevance of each component to the class
    (r_k = z_k θ_{c,k} / max_j z_j θ_{c,j}), the selected components (refined through the
    classifier unless ``refine_steps=0``), a soft mask, the kept components' share of the
    model (expm1(W_S H_S) / expm1(W H) by default, :func:`soft_mask`), and the masked
    spectrogram turned back into audio with the input's own phase.

    Parameters
    ----------
    model : Pipeline or InterpreterEstimator
        Fitted, ending in an :class:`~nmfinterp.InterpreterEstimator`.
    X : array (n_clips, n_samples), one 1-D clip, or a list of clips of different lengths
        Waveforms at the sample rate the pipeline was fitted on (int PCM or float).
    classes : None, "classifier", "interpreter", int or array of int
        Class to explain per clip; by default the classifier's own decision.
    top_k : int or None, default=None
        Keep at most this many components; ``None``: all above ``threshold``.
    threshold : float, default=0.0
        Keep components with relevance above it. The default (every positively relevant component,
        all of them) is the most faithful measured setting; L2I's official one is
        ``top_k=5, threshold=0.2``.
    mask_domain : {"linear", "log"}, default="linear"
    relevance_mode : {"centered", "raw"}, default="centered"
        "raw" is L2I's r_k; "centered" measures θ against the average class (see :func:`relevance`);
        multi-label interpreters always use "raw".
    refine_steps : int or None, default=None
        Gradient steps that refine the selection through the frozen classifier
        (:func:`refine_selection`): starting from the interpreter's choice, the components that the
        classifier itself needs to keep its decision on the explanation, and to lose it on the
        residual, are kept. ``None``: ``REFINE_STEPS`` (20) for single-label classifiers, 0 for
        multi-label ones; ``0``: the interpreter's selection alone (L2I's procedure, ~40x faster;
        docs/benchmarks.md measures both). Each step costs a forward and backward pass of the
        classifier on twice the batch.
    refine_lr : float or None, default=None
        The refinement's Adam learning rate on the gates' logits; ``None``: ``REFINE_LR`` (1.0).
        A larger one moves the gates further per step: on ESC-10, 1.0 kept the classifier surer of
        the explanations than 0.5 (the default before) with the same separation of mixtures, and
        ``refine_steps=10`` at 1.0 explained about as faithfully as the default in about half its
        time, with a little more of an interfering source kept (docs/method.md, "The refinement's
        learning rate").
    per_frame : bool, default=True
        With refinement, keep or drop each component frame by frame (True: the component can be
        kept where it carries the decision and dropped elsewhere) or for the whole clip (False).
    energy_penalty : float, default=0.3
        With refinement, also penalise the share of the clip's energy the explanation keeps (see
        :func:`refine_selection`): higher values drop more of what the decision does not need,
        e.g. an interfering source, and keep less of the rest; ``0`` asks only for faithfulness.
    contrast_penalty : float, sequence of float, or None, default=None
        With refinement, also penalise the energy the explanation keeps from components that the
        other classes the classifier hears in the clip use more than the explained class does
        (:func:`contrast_weights`, from the interpreter's ``class_usage_``): on a mixture these
        mostly carry the other source. ``None``: ``(CONTRAST_PENALTY, CONTRAST_PENALTY_MILD)``,
        (300, 100) tried in turn (:func:`default_contrast_penalty`), 0 when the interpreter has no
        ``class_usage_``; ``0`` turns the term off. Several weights are tried in turn: the clips
        whose explanation does not keep the classifier's decision and confidence
        (``keep_confidence``) are refined again with the next weight (the last one is kept in any
        case; ``contrast_penalties`` of the result says which each clip got), so a
        strong weight separates where the classifier stays as sure and a milder one keeps the
        decision elsewhere, for one more classifier pass per batch and a refinement per clip
        refined again (on ESC-10, (300, 100) kept as much of the deciding source of mixtures as
        300 alone and the clean-clip faithfulness of 100 alone, with either dictionary, for about
        1.2x the time; docs/method.md, "Weights tried in turn").
    keep_confidence : float or None, default=None
        With several contrast weights, what an explanation must keep not to be refined again with
        the next one: the classifier's decision, and at least ``keep_confidence`` times the
        probability it gives the class on the clip itself. ``None``: ``KEEP_CONFIDENCE`` (1: an
        explanation the classifier is less sure of than of the clip is refined again); 0: the
        decision alone. It reads only the classifier's outputs, as the refinement does.
    amortised : bool, default=False
        Choose the gates with the interpreter's gate network (trained once by
        :meth:`~nmfinterp.InterpreterEstimator.fit_gates`) instead of refining them through the
        classifier: one pass, about the cost of ``refine_steps=0``, and in the benchmark more
        faithful than it but less than the refinement (docs/benchmarks.md).
    mask_power : float, default=1.0
        The mask's sharpness p ≥ 1 (:func:`soft_mask`): 1 is the ratio of the kept components'
        model to the whole model, W_S H_S / (W H); p > 1 the generalised Wiener mask
        r^p / (r^p + (1 − r)^p), which keeps less of the bins the dropped components dominate
        (on a mixture, more of them belong to the other source) and more of those the kept ones
        dominate. The refinement optimises the gates through the same mask (the amortised gates
        were trained through the ratio mask). On ESC-10, p = 2 kept the classifier surer of the
        explanations but no less of an interfering source (docs/method.md, "The mask's sharpness").
    residual_weight : float, default=0.5
        With refinement, the weight w of the residual's term in its objective,
        ``− w · min(CE(f(x − x_in), c), log C)``: how much what the explanation leaves out must
        lose the decision, next to the explanation keeping it. A lower weight lets the explanation
        leave out energy that supports the decision only a little (on a mixture, often the other
        source's); ``1`` weighs it as much as the explanation's own term (the default first);
        ``0.25`` (the default before) separated ESC-10 mixtures a little more but left FF under
        its target on spoken digits; ``0`` asks nothing of the residual, and the explanation
        stops being needed for the decision (docs/method.md measures each).
    mask_ratio : {"linear", "log"}, default="linear"
        Which models the mask divides (:func:`soft_mask`): ``"linear"``, the magnitudes the kept
        components and all of them model, expm1(W_S H_S) / expm1(W H); ``"log"``, their
        log-magnitude models, W_S H_S / (W H) (L2I's, the default before). The linear ratio keeps
        less of the bins the dropped components dominate: on ESC-10 it kept the classifier's
        decision better at the same contrast penalty, and with the penalty raised from 100 to 300
        kept less of an interfering source at every faithfulness target still met, on three
        splits (docs/method.md, "The mask's ratio"). The refinement optimises through the same
        mask.
    separation : "auto", nmfinterp.separation.ClassNMFSeparation, GateNet or None, default="auto"
        A hint that weights the contrast term of the refinement (with refinement and a contrast
        term only). The interpreter's source gates
        (:meth:`~nmfinterp.InterpreterEstimator.fit_source_gates`, ``source_gates_``): the
        contrast term's energy in each bin is weighted by ``SOURCE_GATES_SCALE · (1 − M_s)``
        (8 (1 − M_s)), M_s the share of the bin that the network gives the decided class's
        source. Or a class-block separation (:class:`~nmfinterp.separation.ClassNMFSeparation`)
        fitted on the training clips and the classifier's outputs on them, on the pipeline's
        spectrogram: weighted by ``SEPARATION_SCALE · (1 − M_c)`` (2 (1 − M_c)), M_c the
        separation's mask of the explained class, so that the term charges most the bins the
        other classes' own patterns model. ``"auto"`` (the default): the interpreter's source
        gates when it has them, else its own separation (``fit_separation``), else none (neither
        is fitted unless asked for); ``None``: the contrast term alone. Measured in
        docs/method.md ("Source gates", "The separation as a hint for the contrast term").
    batch_size : int or None, default=None
        Clips explained together (the classifier, the interpreter and the STFT run on one batch at
        a time); ``None``: the interpreter's ``batch_size``.
    sr : int or None, default=None
        The clips' sample rate, when known: checked against the pipeline's (no silent resampling).
    verbose : int, default=0
        A progress bar over the clips when > 0.

    Returns
    -------
    Explanations
        ``np.asarray(result)`` gives the float32 waveforms, each the length of its input.
    """
    return explain_clips(
        _interpreter_of(model),
        X,
        classes=classes,
        top_k=top_k,
        threshold=threshold,
        mask_domain=mask_domain,
        relevance_mode=relevance_mode,
        refine_steps=refine_steps,
        refine_lr=refine_lr,
        per_frame=per_frame,
        energy_penalty=energy_penalty,
        contrast_penalty=contrast_penalty,
        keep_confidence=keep_confidence,
        amortised=amortised,
        mask_power=mask_power,
        residual_weight=residual_weight,
        mask_ratio=mask_ratio,
        separation=separation,
        batch_size=batch_size,
        sr=sr,
        verbose=verbose,
    )


def write_wavs(
    explanations: Explanations, folder, names=None, *, residuals: bool = False
) -> list[Path]:
    """Write each explanation (and optionally its residual) as a 16-bit WAV; returns the paths.

    Files are ``{name}_explanation.wav`` (and ``{name}_residual.wav``); names default to
    ``clip{i:04d}_class{c}``. Nothing is overwritten silently: existing files are replaced only
    with the same name, and the folder is created if needed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(explanations)
    if names is None:
        names = [f"clip{i:04d}_class{c}" for i, c in enumerate(explanations.classes)]
    if len(names) != n:
        raise ValueError(
            f"got {len(names)} names for {n} explanations; expected one name per clip."
        )
    paths = []
    for i, name in enumerate(names):
        parts = [("explanation", explanations.waveforms[i])]
        if residuals:
            parts.append(("residual", explanations.residuals[i]))
        for kind, wave in parts:
            p = folder / f"{name}_{kind}.wav"
            sf.write(p, np.clip(wave, -1.0, 1.0), explanations.sr, subtype="PCM_16")
            paths.append(p)
    return paths
