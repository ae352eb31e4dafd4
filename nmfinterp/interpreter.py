"""The interpreter of L2I: hidden layers of a frozen classifier -> activations H >= 0 -> class scores."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from tqdm.auto import tqdm

from ._validation import check_allocation, check_outputs, check_waveforms, user_stacklevel
from .dictionary import NMFDictionary
from .features import is_audio_features
from .hooks import classifier_device, frozen, resolve_layers, run_with_hooks
from .metrics import multilabel_auprc
from .parallel import limit_threads_in_workers
from .spectrogram import SpectrogramTransformer, log_magnitude

#: below this top-1 agreement with the classifier on its training clips (last epoch), ``fit`` warns
MIN_TRAINING_FIDELITY = 0.9


class InterpreterNet(nn.Module):
    """Ψ (hidden features -> H, K x T) and Θ (time pooling + bias-free linear -> class scores).

    Each hidden layer (channels x its own time grid) is standardised, passed through a 1-D conv and
    resampled to the spectrogram's T frames; the layers are concatenated and decoded to K
    non-negative activations per frame (ReLU), as in L2I's decoder.

    With ``feature_components`` r, a layer of more than r channels is first projected onto its r
    leading principal components (buffer ``proj_i``, set by :meth:`set_feature_stats`), so its
    conv reads r channels instead of all of them.
    """

    #: while training, each standardised hidden feature is zeroed with this probability (the rest
    #: scaled by 1 / (1 - p)), drawn from ``dropout_generator``; set by the estimator's fit only
    feature_dropout: float = 0.0
    dropout_generator: torch.Generator | None = None

    def __init__(
        self,
        layer_channels,
        n_components,
        n_classes,
        hidden,
        pooling="attention",
        feature_components=None,
    ):
        super().__init__()
        self.pooling = pooling
        self.feature_components = feature_components
        reads = [_projected_channels(c, feature_components) for c in layer_channels]
        self.adapters = nn.ModuleList(
            nn.Sequential(nn.Conv1d(r, hidden, 3, padding=1), nn.ReLU()) for r in reads
        )
        for i, (c, r) in enumerate(zip(layer_channels, reads, strict=True)):
            self.register_buffer(f"mean_{i}", torch.zeros(c, 1))
            self.register_buffer(f"std_{i}", torch.ones(c, 1))
            self.register_buffer(f"proj_{i}", torch.zeros(r, c) if r < c else None)
        self.decoder = nn.Sequential(
            nn.Conv1d(hidden * len(layer_channels), hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(hidden, n_components, 1),
            nn.ReLU(),
        )
        if pooling == "attention":  # gated attention over time (L2I's Θ)
            self.att_v = nn.Conv1d(n_components, hidden, 1)
            self.att_u = nn.Conv1d(n_components, hidden, 1)
            self.att_w = nn.Conv1d(hidden, 1, 1)
        self.theta = nn.Linear(n_components, n_classes, bias=False)

    def __setstate__(self, state):
        state.setdefault("feature_components", None)  # pickled before the projection existed
        super().__setstate__(state)

    def set_feature_stats(self, stats, projections=None):
        """Standardise each layer with ``stats``: a list of (mean, std) per channel; and, for the
        layers this network projects, with ``projections``: a list of ``(r, channels)`` matrices
        (None for a layer read whole), applied to the standardised channels."""
        for i, (mean, std) in enumerate(stats):
            getattr(self, f"mean_{i}").copy_(torch.as_tensor(mean, dtype=torch.float32)[:, None])
            getattr(self, f"std_{i}").copy_(
                torch.as_tensor(std, dtype=torch.float32)[:, None] + 1e-5
            )
            buffer = getattr(self, f"proj_{i}", None)
            if buffer is not None:
                buffer.copy_(torch.as_tensor(projections[i], dtype=torch.float32))

    def activations(self, feats, n_frames: int, prepared: bool = False) -> torch.Tensor:
        """H: ``(batch, K, n_frames)``, non-negative."""
        return self.decoder(self.hidden(feats, n_frames, prepared))

    def prepare(self, feats, inplace: bool = False):
        """What the adapters read of the classifier's hidden features: every layer standardised
        (and projected, for the layers this network projects). ``inplace`` standardises the given
        tensors in place (no copy of large cached features; they are overwritten)."""
        out = []
        for i, f in enumerate(feats):
            mean, std = getattr(self, f"mean_{i}"), getattr(self, f"std_{i}")
            proj = getattr(self, f"proj_{i}", None)
            f = f.sub_(mean).div_(std) if inplace else (f - mean) / std
            out.append(f if proj is None else torch.matmul(proj, f))  # (r, C) @ (batch, C, t)
        return out

    def hidden(self, feats, n_frames: int, prepared: bool = False) -> torch.Tensor:
        """What the decoder reads: every layer standardised (:meth:`prepare`, unless ``prepared``
        says ``feats`` already are), through its adapter and resampled to the ``n_frames`` frames,
        concatenated: ``(batch, hidden * n_layers, n_frames)``."""
        parts = []
        feats = feats if prepared else self.prepare(feats)
        for adapter, f in zip(self.adapters, feats, strict=True):
            if self.training and self.feature_dropout > 0:
                p = self.feature_dropout
                keep = torch.rand(f.shape, generator=self.dropout_generator, device=f.device) >= p
                f = f * keep / (1.0 - p)
            a = adapter(f)
            if a.shape[-1] == 1:
                a = a.expand(-1, -1, n_frames)
            else:
                a = F.interpolate(a, size=n_frames, mode="linear", align_corners=False)
            parts.append(a)
        return torch.cat(parts, dim=1)

    def pool(self, H: torch.Tensor) -> torch.Tensor:
        """z: ``(batch, K)`` pooled over time."""
        if self.pooling == "max":
            return H.amax(dim=-1)
        if self.pooling == "mean":
            return H.mean(dim=-1)
        a = self.att_w(torch.tanh(self.att_v(H)) * torch.sigmoid(self.att_u(H)))  # (batch, 1, T)
        return (H * torch.softmax(a, dim=-1)).sum(dim=-1)

    def forward(self, feats, n_frames: int, prepared: bool = False):
        H = self.activations(feats, n_frames, prepared)
        return H, self.theta(self.pool(H))


def _projected_channels(channels: int, feature_components: int | None) -> int:
    """How many channels of a layer of ``channels`` Ψ's adapter reads."""
    return channels if feature_components is None else min(channels, feature_components)


def _trained(net: InterpreterNet) -> InterpreterNet:
    """The fitted module as the estimator keeps it: on the CPU, in eval mode, without training state."""
    for name in ("feature_dropout", "dropout_generator"):  # back to the class's (0, None)
        net.__dict__.pop(name, None)  # (a torch.Generator does not pickle)
    return net.cpu().eval()


class _ReconstructionError:
    """Ψ's reconstruction term, ``mean((V − W H)²)`` over a batch, from per-clip projections.

    With K < F it expands ``‖V − W H‖² = ‖V‖² − 2⟨WᵀV, H⟩ + ⟨H, WᵀW H⟩``: WᵀV and ‖V‖² are
    computed once per clip, so a step costs K²T instead of the F×K×T product and the F×T residual
    and its gradient (the same value and gradient, to float rounding). With K ≥ F it is computed
    directly.
    """

    def __init__(self, W: torch.Tensor, n_bins: int, n_frames: int):
        self.W, self.size = W, n_bins * n_frames
        self.gram = W.T @ W if W.shape[1] < n_bins else None

    def project(self, V: torch.Tensor, chunk: int = 256):
        """What the term needs of clips ``V``: ``(WᵀV, ‖V‖²)``, or ``(V, None)`` when K ≥ F."""
        if self.gram is None:
            return V, None
        W = self.W.to(V.device)
        proj = torch.cat([torch.einsum("fk,nft->nkt", W, v) for v in V.split(chunk)])
        return proj, V.double().pow(2).sum(dim=(1, 2))

    def __call__(self, H: torch.Tensor, proj: torch.Tensor, sq: torch.Tensor | None):
        n = H.shape[0] * self.size
        if self.gram is None:
            return ((proj - torch.einsum("fk,bkt->bft", self.W, H)) ** 2).sum() / n
        quad = (H * torch.einsum("kj,bjt->bkt", self.gram, H)).sum()
        return (float(sq.sum()) - 2 * (proj * H).sum() + quad).clamp_min(0) / n


class _RunningStats:
    """Per-channel mean and (unbiased) std of hidden features over clips and time, batch by batch;
    with ``covariance``, also each layer's channel covariance (for :meth:`projections`)."""

    def __init__(self, covariance: bool = False):
        self.sums, self.squares, self.counts = None, None, None
        self.covariance, self.products = covariance, None

    def add(self, feats):
        if self.sums is None:
            self.sums = [torch.zeros(f.shape[1], dtype=torch.float64) for f in feats]
            self.squares = [torch.zeros(f.shape[1], dtype=torch.float64) for f in feats]
            self.counts = [0 for _ in feats]
            if self.covariance:
                self.products = [
                    torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64) for f in feats
                ]
        for i, f in enumerate(feats):
            f = f.double()
            self.sums[i] += f.sum(dim=(0, 2))
            self.squares[i] += (f * f).sum(dim=(0, 2))
            self.counts[i] += f.shape[0] * f.shape[2]
            if self.covariance:
                frames = f.transpose(1, 2).reshape(-1, f.shape[1])
                self.products[i] += frames.T @ frames

    def result(self):
        out = []
        for s, q, n in zip(self.sums, self.squares, self.counts, strict=True):
            mean = s / n
            var = (q - s * mean) / max(n - 1, 1)
            out.append((mean, var.clamp_min(0).sqrt()))
        return out

    def projections(self, n_components: int | None):
        """Per layer, the ``(r, channels)`` orthogonal projection of the standardised channels onto
        their ``r`` leading principal components (the eigenvectors of their correlation matrix
        with the largest eigenvalues; each keeps its variance), or None where the layer has ``r``
        channels or fewer (it is read whole)."""
        out = []
        for (mean, std), s, p, n in zip(
            self.result(),
            self.sums,
            self.products or [None] * len(self.sums),
            self.counts,
            strict=True,
        ):
            r = _projected_channels(len(s), n_components)
            if r == len(s):
                out.append(None)
                continue
            cov = (p - torch.outer(s, mean)) / max(n - 1, 1)
            scale = std + 1e-5  # as InterpreterNet standardises
            values, vectors = torch.linalg.eigh(cov / torch.outer(scale, scale))
            top = torch.argsort(values, descending=True)[:r]
            out.append(vectors[:, top].T.float())
        return out


class _MemoryFeatures:
    """Hidden features held in memory as one tensor per layer; :meth:`prepare` turns them, once,
    into what the interpreter's adapters read (``prepared``), instead of at every step."""

    prepared = False

    def __init__(self, parts):
        self.feats = [torch.cat(p) for p in parts]

    def prepare(self, net):
        with torch.no_grad():
            self.feats = net.prepare(self.feats, inplace=True)
        self.prepared = True

    def batch(self, idx):
        return [f[idx] for f in self.feats]

    def close(self):
        self.feats = None


class _DiskFeatures:
    """Hidden features in numpy memmaps (one file per layer) in a temporary folder, removed on close."""

    prepared = False  # read raw from the files: the interpreter standardises them at every step

    def __init__(self, folder, n_clips):
        self.folder = Path(tempfile.mkdtemp(prefix="nmfinterp-features-", dir=folder))
        self.n_clips, self.maps, self.filled = n_clips, None, 0

    def write(self, feats):
        if self.maps is None:
            self.maps = [
                np.lib.format.open_memmap(
                    self.folder / f"layer{i}.npy",
                    mode="w+",
                    dtype=np.float32,
                    shape=(self.n_clips, *f.shape[1:]),
                )
                for i, f in enumerate(feats)
            ]
        n = feats[0].shape[0]
        for m, f in zip(self.maps, feats, strict=True):
            m[self.filled : self.filled + n] = f.numpy()
        self.filled += n

    def batch(self, idx):
        order = np.asarray(idx)
        return [torch.from_numpy(np.ascontiguousarray(m[order])) for m in self.maps]

    def close(self):
        for m in self.maps or []:
            m._mmap.close()
        self.maps = None
        shutil.rmtree(self.folder, ignore_errors=True)


class _RecomputedFeatures:
    """No cache: the classifier's hidden features are recomputed for every batch of every epoch."""

    prepared = False

    def __init__(self, estimator, waves):
        self.estimator, self.waves = estimator, waves

    def batch(self, idx):
        return self.estimator._extract(self.waves[np.asarray(idx)])[0]

    def close(self):
        self.waves = None


def _to_probabilities(scores: np.ndarray | torch.Tensor, output_type: str, multilabel: bool):
    s = torch.as_tensor(scores, dtype=torch.float32)
    if output_type == "probabilities":
        return s
    return torch.sigmoid(s) if multilabel else torch.softmax(s, dim=-1)


#: L2I's official training (METHOD.md: reconstruction, sparsity and L_FID weighted 5.0 / 0.4 / 0.5,
#: L_FID's weight raised to 1.0 from epoch 20; Adam at a constant 2e-4, batch 32, 35 epochs, no
#: weight decay; L2I learns no source gates): ``InterpreterEstimator(classifier, **L2I_TRAINING)``.
#: The benchmark's L2I row trains so, on one dictionary for all classes, and explains with L2I's
#: selection.
L2I_TRAINING = {
    "alpha": 5.0,
    "beta": 0.4,
    "fidelity_weight": {0: 0.5, 20: 1.0},
    "lr": 2e-4,
    "lr_schedule": "constant",
    "weight_decay": 0.0,
    "batch_size": 32,
    "epochs": 35,
    "source_gates": False,
}


def _fidelity_weights(value, epochs: int) -> list[float]:
    """L_FID's weight in each of ``epochs`` epochs from ``fidelity_weight`` (a number, or a dict
    ``{first epoch: weight}`` with 0 among its keys); a clear error for anything else."""
    if not isinstance(value, dict):
        return [float(value)] * epochs
    steps = {}
    for key, weight in value.items():
        try:
            first = int(key)  # a saved model's JSON gives the keys back as strings
            ok = first >= 0 and str(first) == str(key).strip() and float(weight) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok or not np.isfinite(float(weight)):
            raise ValueError(
                f"fidelity_weight={value!r}: {key!r}: {weight!r} is not an epoch (an integer >= 0) "
                "and a weight (a finite number > 0); expected e.g. {0: 0.5, 20: 1.0}."
            )
        steps[first] = float(weight)
    if 0 not in steps:
        raise ValueError(
            f"fidelity_weight={value!r} has no weight for epoch 0; expected a dict whose keys "
            "include 0 (the weight from the first epoch), e.g. {0: 0.5, 20: 1.0}."
        )
    out, current = [], steps[0]
    for epoch in range(epochs):
        current = steps.get(epoch, current)
        out.append(current)
    return out


def _tempered(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Class distributions softened to temperature T: ``p^(1/T)`` renormalised, which is
    ``softmax(logits / T)`` for ``p = softmax(logits)`` (a one-hot row stays one-hot)."""
    if temperature == 1:
        return probs
    p = probs.double().clamp_min(0) ** (1.0 / temperature)
    return (p / p.sum(dim=-1, keepdim=True).clamp_min(1e-300)).float()


def _infer_output_type(y: np.ndarray, multilabel: bool) -> str:
    in_range = bool(((y >= 0) & (y <= 1)).all())
    if multilabel:
        return "probabilities" if in_range else "logits"
    return "probabilities" if in_range and np.allclose(y.sum(axis=1), 1, atol=1e-3) else "logits"


def _switched_on(value) -> bool:
    """Whether a parameter that takes a bool or "auto" is set to true (numpy's bools too);
    "auto" is not."""
    return not isinstance(value, str) and bool(value)


class InterpreterEstimator(BaseEstimator):
    """Train L2I's interpreter of a frozen torch classifier, the scikit-learn way.

    ``fit(X, classifier_outputs)`` reads the classifier's hidden layers on every clip (once: they are
    cached for all epochs), then trains Ψ (hidden features -> activations H >= 0 on the
    spectrogram's frame grid) and Θ (pooling over time + bias-free linear) with the L2I loss::

        alpha * mean((V - W H)^2) + beta * mean|H| + L_FID

    where L_FID is the cross-entropy between the classifier's and Θ's class distributions (binary
    cross-entropy with ``multilabel=True``).

    Parameters
    ----------
    classifier : torch.nn.Module
        The trained classifier to explain. It is run in eval mode and never modified; it is shared,
        not copied, by ``clone`` (so a grid search does not duplicate it).
    layers : list of str or None, default=None
        Names (from ``classifier.named_modules()``) of the hidden layers to read; ``None`` takes the
        last three convolutional or recurrent layers (L2I's choice). The last axis of a layer's output
        is taken as time; the others are channels.
    classifier_input : callable or None, default=None
        Turns a batch of waveforms ``(batch, n_samples)`` float32 tensor into what the classifier takes
        (log-mel, resampled audio, ...). ``None``: the classifier takes waveforms. Must be picklable
        (a module-level function or an ``nn.Module``) for joblib.
    classifier_output : callable or None, default=None
        Turns the classifier's raw output into ``(batch, n_classes)`` scores; ``None``: it already is.
    output_type : {"auto", "logits", "probabilities"}, default="auto"
        What ``classifier_outputs`` (and the classifier) produce; "auto" decides from their range.
    multilabel : bool, default=False
        Sigmoid/BCE instead of softmax/cross-entropy.
    spectrogram, dictionary : estimators or None
        Front end used only when ``fit`` is given raw waveforms instead of the output of a
        ``SpectrogramTransformer`` + ``NMFDictionary`` pipeline. ``None``: the defaults.
    hidden : int, default=32
        Width of Ψ's convolutions. On ESC-10 (K=100), over ten seeds, 32 agreed with the
        classifier more often than 64 (and 64 was as close as 128), and a fit costs less;
        ``benchmarks/fidelity_seeds.py`` compares the two (figures in docs/benchmarks.md).
    pooling : {"attention", "max", "mean"}, default="attention"
        Θ's pooling over time: L2I's gated attention, or the simple variants. On ESC-10, over ten
        seeds on three splits, "mean" agreed with the classifier more often on two splits and less
        often on the third (mean top-1 fidelity 0.929 against 0.924), and its refined
        explanations were no more faithful (docs/method.md): a parameter to grid-search rather
        than a better default.
    alpha, beta : float, default=10.0, 0.8
        Weights of the reconstruction and sparsity terms relative to L_FID (L2I's official ratios).
    fidelity_weight : float or dict, default=1.0
        Weight of L_FID. A dict ``{first epoch: weight}`` (keys counted from 0 in each ``fit``,
        0 among them) changes it during training: each epoch takes the weight of the largest key
        not after it. L2I's official training weighs reconstruction, sparsity and L_FID
        5.0 / 0.4 / 0.5 and raises L_FID's weight to 1.0 from epoch 20:
        ``alpha=5.0, beta=0.4, fidelity_weight={0: 0.5, 20: 1.0}``, as
        :data:`nmfinterp.interpreter.L2I_TRAINING` (``nmfinterp.L2I_TRAINING``)
        sets (with L2I's rate, batch, epochs and schedule, and no source gates). ``history_``
        records each epoch's.
    epochs, batch_size, lr : training settings (Adam).
    weight_decay : float, default=1e-2
        Adam's L2 penalty on Ψ and Θ. The interpreter fits its training clips almost perfectly
        (top-1 fidelity about 0.99 there), so what it loses on held-out clips is over-fitting; on
        ESC-10, over ten seeds on three splits, 1e-2 agreed with the classifier as often as 0 or
        more often, with a smaller spread (``benchmarks/fidelity_seeds.py``, docs/benchmarks.md).
    temperature : float > 0, default=1.0
        Distillation temperature T of L_FID, for a single-label classifier: Θ learns the
        classifier's class distribution softened to ``softmax(y / T)`` (``p^(1/T)`` renormalised
        when ``y`` holds probabilities), which weighs how the classifier ranks the other classes
        more than ``T = 1`` does; after training Θ's weights are multiplied by T, so the
        interpreter's scores stay on the classifier's scale. ``1`` (the default) is L2I's loss;
        a multilabel interpreter takes no other value. docs/method.md measures T = 2 over seeds.
    feature_dropout : float in [0, 1), default=0.0
        While training, each standardised hidden feature is zeroed with this probability (the rest
        scaled by ``1 / (1 - p)``; dropout on Ψ's input, drawn from a stream seeded by
        ``random_state``). Another regulariser against over-fitting the training clips; prediction
        and ``explain`` never drop. Not the default: on ESC-10, over ten seeds on three splits,
        0.3 tied 0 on one split, raised top-1 fidelity slightly on another and lowered it on the
        third (``benchmarks/fidelity_seeds.py``; figures in docs/method.md).
    feature_components : int or None, default=None
        Project each hidden layer of more than this many channels, standardised, onto its leading
        principal components over the training clips' frames (an orthogonal projection: each
        component keeps its variance) before Ψ's adapters read it; ``None`` reads every channel.
        Ψ's adapters, which dominate a training step when the layers are wide, then read r
        channels instead of hundreds, so training and the interpreter's pass in ``explain`` cost
        less; the projection is fitted once, in ``fit``, from the features it reads anyway
        (docs/method.md measures fidelity and cost against reading every channel).
    lr_schedule : {"cosine", "constant"}, default="cosine"
        "cosine": the learning rate decays from ``lr`` to ``lr / 100`` over all the steps of
        ``fit`` (half a cosine, as :func:`~nmfinterp.classifiers.train_classifier` does).
        "constant": ``lr`` throughout (L2I's official training). With ``warm_start`` the schedule
        starts again over the new epochs. On ESC-10 the cosine decay's top-1 fidelity was higher
        over seeds (``benchmarks/results/fidelity_seeds.json``, docs/benchmarks.md).
    faithfulness : float, default=0.0
        Weight of a term that makes the explanation itself convince the classifier (beyond L2I):
        the explanation is re-synthesised (soft selection: a sigmoid of the centred relevance, linear
        mask, the input's phase) and fed to the frozen classifier; the term is
        CE(f(x_in), c) − min(CE(f(x − x_in), c), log C) + mask_penalty · mean(M), with c the
        classifier's class. Gradients pass through the classifier to the input only. Costs a few
        classifier forward/backward passes per batch, and the mixture batches recompute hidden
        features. ``0`` (the default) trains with the L2I loss alone: ``explain``'s refinement
        through the classifier makes the explanations faithful, and in the benchmark they were as
        faithful without the term, at about a third of the fit time (docs/benchmarks.md, rows
        "nmfinterp" and "nmfinterp, faithfulness=1"). With ``refine_steps=0`` the term makes the
        interpreter's own selection more faithful (docs/method.md).
    faithfulness_epochs : int or None, default=15
        Apply that term in the last this-many epochs only (``None``: all epochs).
    mixture_fraction : float, default=0.5
        With the faithfulness term, the share of batches trained on random two-clip mixtures of the
        batch (their hidden features, spectrograms and classifier outputs computed on the fly).
    mask_penalty : float, default=0.1
    feature_cache : {"memory", "disk", "none"}, default="memory"
        Where the classifier's hidden features live during ``fit``. "memory": computed once and
        kept in memory for all epochs. "disk": computed once and kept in numpy memory-mapped files
        in a temporary folder (under ``feature_cache_dir``), removed when ``fit`` ends, so corpora
        whose features do not fit in memory train. "none": recomputed by the classifier for every
        batch of every epoch (slowest; measures what the cache saves). The same ``random_state``
        gives the same interpreter in all three (up to float rounding).
    feature_cache_dir : str, path or None, default=None
        Parent folder of the "disk" cache; ``None``: the system's temporary folder.
    warm_start : bool, default=False
        ``fit`` continues training the fitted interpreter (same layers, K and classes) for
        ``epochs`` more epochs instead of starting anew; ``history_`` grows. Adam's state restarts.
    separation : bool, default=False
        Also fit, at the end of ``fit``, the class-block separation that ``explain`` weights the
        refinement's contrast term by (:meth:`fit_separation` with its defaults, on the same
        clips and outputs): more of the deciding source of mixtures kept for about 0.01 less FF
        and about 1.2x the explain time (docs/method.md). Single-label interpreters only.
    source_gates : {"auto", True, False}, default="auto"
        Also learn, at the end of ``fit``, the source gates that ``explain`` weights the
        refinement's contrast term by (:meth:`fit_source_gates` with its defaults, on the same
        clips), before a separation's: on ESC-10 and the spoken digits more of the deciding
        source of mixtures kept at the same faithfulness and explain time, for about 2.5x the
        interpreter's fit time (docs/method.md, "Source gates"). "auto": learned when they can
        be, that is for a single-label interpreter without ``separation=True`` whose classifier
        puts the training clips in two classes or more (otherwise ``fit`` ends without them:
        ``source_gates_`` is absent); True: learned, or ``fit`` refuses what they cannot be
        learned from (multilabel, one class); False: not learned (the fit's time is the
        interpreter's alone). Their training rows (the interpreter's H and hidden representation
        of ten mixtures a clip, at most ``fit_source_gates``' ``max_mixtures``, 3000) stay in
        memory for the network's epochs: on ESC-10's 240 clips its fit's peak memory was about
        1 GiB above what the process held before (benchmarks/source_gates_study.py).
    device : str, default="cpu"
        Where Ψ and Θ train. The fitted module is kept on the CPU, so a pickle made on a GPU loads
        anywhere; prediction falls back to the CPU when this device is not available.
    random_state : int or None
        Seeds a local ``torch.Generator`` (initialisation and shuffling); the global seed is untouched.
    verbose : int, default=0
        Progress bar over epochs when > 0.

    Attributes
    ----------
    module_ : InterpreterNet
    layers_ : list of str
    classes_ : ndarray of int
    n_components_, n_frames_ : int
    spectrogram_, dictionary_ : the fitted front end (from the pipeline, or fitted here)
    history_ : list of dict
        Per epoch: loss, reconstruction, sparsity, fidelity_loss, faithfulness, fidelity (top-1 on
        the training clips), lr (the learning rate of its first step), fidelity_weight (L_FID's
        weight) and seconds.
    temperature_ : float
        The temperature L_FID trained with (the ``temperature`` of the last fit).
    output_type_ : str
        What ``classifier_outputs`` hold.
    classifier_output_type_ : str
        What the classifier itself returns (with "auto", inferred from its scores on the clips).
    class_usage_ : ndarray (n_classes, K) or None
        How much each class's training clips (by the top class of ``y``) use each component: the
        mean of the pooled activations z. ``explain``'s ``contrast_penalty`` reads it; None for a
        multilabel interpreter.
    interrupted_ : bool
        True when the last ``fit`` was stopped by KeyboardInterrupt: the module then holds the
        state after the last completed epoch, and ``warm_start=True`` continues from it.

    Notes
    -----
    ``fit`` warns when, in its last epoch, the interpreter agreed with the classifier's top class on
    fewer than ``MIN_TRAINING_FIDELITY`` (0.9) of its training clips: its explanations would
    describe another model. The number of optimiser steps an epoch is the number of clips over
    ``batch_size``, so a few dozen clips may need more epochs than the default.

    Stopping ``fit`` with Ctrl-C (KeyboardInterrupt) is not an error: the interpreter keeps the
    state it had after its last completed epoch (a half-done epoch is dropped), a warning says so,
    and ``fit`` returns. A NaN or infinite loss raises ``FloatingPointError`` and also leaves the
    state after the last completed epoch in ``module_``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.pipeline import make_pipeline
    >>> from nmfinterp import SpectrogramTransformer, NMFDictionary, InterpreterEstimator
    >>> clf = torch.nn.Sequential(torch.nn.Unflatten(1, (1, -1)), torch.nn.Conv1d(1, 4, 64, stride=32),
    ...                           torch.nn.ReLU(), torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(),
    ...                           torch.nn.Linear(4, 3))
    >>> X = np.random.default_rng(0).standard_normal((12, 2048)).astype(np.float32)
    >>> y = clf(torch.from_numpy(X)).detach().numpy()
    >>> pipe = make_pipeline(SpectrogramTransformer(n_fft=256), NMFDictionary(n_components=6, random_state=0),
    ...                      InterpreterEstimator(clf, layers=["1"], epochs=2, random_state=0))
    >>> pipe = pipe.fit(X, y)
    >>> pipe.predict_proba(X).shape
    (12, 3)
    """

    _parameter_constraints: dict = {
        "classifier": [object],
        "layers": [list, tuple, str, None],
        "classifier_input": [callable, None],
        "classifier_output": [callable, None],
        "output_type": [StrOptions({"auto", "logits", "probabilities"})],
        "multilabel": ["boolean"],
        "spectrogram": [SpectrogramTransformer, None],
        "dictionary": [NMFDictionary, None],
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "pooling": [StrOptions({"attention", "max", "mean"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
        "fidelity_weight": [Interval(Real, 0, None, closed="neither"), dict],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [StrOptions({"cosine", "constant"})],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "feature_dropout": [Interval(Real, 0, 1, closed="left")],
        "feature_components": [Interval(Integral, 1, None, closed="left"), None],
        "faithfulness": [Interval(Real, 0, None, closed="left")],
        "faithfulness_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "mixture_fraction": [Interval(Real, 0, 1, closed="both")],
        "mask_penalty": [Interval(Real, 0, None, closed="left")],
        "feature_cache": [StrOptions({"memory", "disk", "none"})],
        "feature_cache_dir": [str, Path, None],
        "warm_start": ["boolean"],
        "separation": ["boolean"],
        "source_gates": [StrOptions({"auto"}), "boolean"],
        "device": [str, torch.device],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        classifier=None,
        layers=None,
        *,
        classifier_input=None,
        classifier_output=None,
        output_type="auto",
        multilabel=False,
        spectrogram=None,
        dictionary=None,
        hidden=32,
        pooling="attention",
        alpha=10.0,
        beta=0.8,
        fidelity_weight=1.0,
        epochs=40,
        batch_size=32,
        lr=1e-3,
        lr_schedule="cosine",
        weight_decay=1e-2,
        temperature=1.0,
        feature_dropout=0.0,
        feature_components=None,
        faithfulness=0.0,
        faithfulness_epochs=15,
        mixture_fraction=0.5,
        mask_penalty=0.1,
        feature_cache="memory",
        feature_cache_dir=None,
        warm_start=False,
        separation=False,
        source_gates="auto",
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        self.classifier = classifier
        self.layers = layers
        self.classifier_input = classifier_input
        self.classifier_output = classifier_output
        self.output_type = output_type
        self.multilabel = multilabel
        self.spectrogram = spectrogram
        self.dictionary = dictionary
        self.hidden = hidden
        self.pooling = pooling
        self.alpha = alpha
        self.beta = beta
        self.fidelity_weight = fidelity_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.feature_dropout = feature_dropout
        self.feature_components = feature_components
        self.faithfulness = faithfulness
        self.faithfulness_epochs = faithfulness_epochs
        self.mixture_fraction = mixture_fraction
        self.mask_penalty = mask_penalty
        self.feature_cache = feature_cache
        self.feature_cache_dir = feature_cache_dir
        self.warm_start = warm_start
        self.separation = separation
        self.source_gates = source_gates
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_clone__(self):
        # The classifier is frozen and only read: share it instead of deep-copying it per clone.
        params = self.get_params(deep=False)
        return type(self)(
            **{k: v if k == "classifier" else clone(v, safe=False) for k, v in params.items()}
        )

    # ------------------------------------------------------------------ data plumbing
    def _front_end(self, X, y, *, fit: bool):
        """(V, waveforms, W) from the pipeline's AudioFeatures, or from raw waveforms."""
        if is_audio_features(X):
            if X.dictionary is None:
                raise ValueError(
                    "InterpreterEstimator got spectrograms without a dictionary; put an NMFDictionary "
                    "step before it in the pipeline."
                )
            if fit:
                self.spectrogram_, self.dictionary_ = X.spectrogram, X.dictionary
            return X.block("spectrogram"), X.block("waveform")
        if fit:
            spec = (
                clone(self.spectrogram)
                if self.spectrogram is not None
                else SpectrogramTransformer()
            )
            dico = clone(self.dictionary) if self.dictionary is not None else NMFDictionary()
            Xs = spec.fit_transform(X)
            dico.fit(Xs, y)
            self.spectrogram_, self.dictionary_ = spec, dico
        else:
            check_is_fitted(self)
            Xs = self.spectrogram_.transform(X)
        return Xs.block("spectrogram"), Xs.block("waveform")

    def _batches(self, waveforms: np.ndarray, *, desc: str = "features"):
        """Yield (start, hidden features (list of (b, C, t) CPU tensors), scores) batch by batch."""
        dev = classifier_device(self.classifier)
        with frozen(self.classifier), torch.no_grad():
            for start in tqdm(
                range(0, len(waveforms), self.batch_size),
                desc=desc,
                disable=self.verbose <= 1,
                leave=False,
            ):
                x = torch.as_tensor(np.asarray(waveforms[start : start + self.batch_size])).to(dev)
                h, s = run_with_hooks(
                    self.classifier, self.layers_, x, self.classifier_input, self.classifier_output
                )
                yield start, [t.float().cpu() for t in h], s.float().cpu()

    def _extract(self, waveforms: np.ndarray, *, desc: str = "features"):
        """Hidden features (list of (n, C, t) CPU tensors) and the classifier's scores, in batches."""
        parts, scores = None, []
        for _, h, s in self._batches(waveforms, desc=desc):
            parts = (
                [[t] for t in h]
                if parts is None
                else [p + [t] for p, t in zip(parts, h, strict=True)]
            )
            scores.append(s)
        return [torch.cat(p) for p in parts], torch.cat(scores)

    def _feature_store(self, waveforms: np.ndarray):
        """One pass of the classifier over the clips: the feature store, its scores and stats."""
        n = len(waveforms)
        covariance = self.feature_components is not None
        stats, scores, parts, store = _RunningStats(covariance), [], None, None
        try:
            for start, h, s in self._batches(waveforms):
                if start == 0:
                    per_clip = sum(4 * t[0].numel() for t in h)
                    if self.feature_cache == "memory":
                        check_allocation(
                            per_clip * n,
                            "the classifier's hidden features of the training clips",
                            'Use feature_cache="disk" (memory-mapped files) or "none" (recomputed '
                            "every epoch), or read fewer/smaller layers.",
                        )
                    elif self.feature_cache == "disk":
                        store = _DiskFeatures(self.feature_cache_dir, n)
                stats.add(h)
                scores.append(s)
                if self.feature_cache == "memory":
                    parts = (
                        [[t] for t in h]
                        if parts is None
                        else [p + [t] for p, t in zip(parts, h, strict=True)]
                    )
                elif self.feature_cache == "disk":
                    store.write(h)
        except BaseException:
            if store is not None:
                store.close()
            raise
        if self.feature_cache == "memory":
            store = _MemoryFeatures(parts)
        elif self.feature_cache == "none":
            store = _RecomputedFeatures(self, waveforms)
        return store, torch.cat(scores), stats

    def _generator(self) -> torch.Generator:
        g = torch.Generator()
        seed = (
            self.random_state
            if self.random_state is not None
            else int(torch.randint(0, 2**31 - 1, (1,)))
        )
        return g.manual_seed(int(seed))

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Train Ψ and Θ to mimic ``y``, the classifier's outputs on the clips ``X``.

        Inside a Dask worker or a joblib worker process torch uses
        :func:`nmfinterp.parallel.worker_torch_threads` threads (1 unless configured).

        Parameters
        ----------
        X : AudioFeatures or array (n_clips, n_samples)
            The output of ``NMFDictionary`` in a pipeline, or raw waveforms.
        y : array (n_clips, n_classes) or (n_clips,)
            The classifier's outputs (logits or probabilities) on those clips, or its predicted labels.
        """
        saved = dict(self.__dict__) if self.warm_start and hasattr(self, "module_") else None
        before = getattr(self, "module_", None)
        with limit_threads_in_workers():
            try:
                self._fit(X, y)
            except ValueError:
                if saved is not None:  # refused input: the fitted interpreter stays as it was
                    self.__dict__.clear()
                    self.__dict__.update(saved)
                raise
            finally:
                # a gate network (fit_gates, fit_source_gates) learned the previous module's H, and
                # a separation (fit_separation) the previous spectrogram and outputs: not this fit's
                if getattr(self, "module_", None) is not before:
                    for name in (
                        "gate_module_",
                        "gate_history_",
                        "separation_",
                        "source_gates_",
                        "source_gates_history_",
                    ):
                        self.__dict__.pop(name, None)
            if self.separation and not self.interrupted_:
                self.fit_separation(X, y)
            if _switched_on(self.source_gates) and not self.interrupted_:
                self.fit_source_gates(X)
            elif self._auto_source_gates():
                from .gates import SourceGatesUnavailable

                try:
                    self.fit_source_gates(X)
                except SourceGatesUnavailable:  # clips of one class, or no mixture to learn from
                    pass
        return self

    def _auto_source_gates(self) -> bool:
        """Whether ``source_gates="auto"`` learns them after this fit (what they need aside from
        the classifier's decisions, which ``fit_source_gates`` checks)."""
        return (
            isinstance(self.source_gates, str)
            and not self.interrupted_
            and not self.multilabel
            and not _switched_on(self.separation)
        )

    def _fit(self, X, y):
        self._validate_params()
        if self.classifier is None:
            raise ValueError(
                "InterpreterEstimator needs classifier=..., the trained torch model to explain."
            )
        previous = self._warm_state()
        self.layers_ = resolve_layers(self.classifier, self.layers)
        if not is_audio_features(X):
            X = check_waveforms(X, min_samples=1)
        n_clips = X.shape[0]
        targets = check_outputs(y, n_clips)
        self.output_type_ = (
            _infer_output_type(targets, self.multilabel)
            if self.output_type == "auto"
            else self.output_type
        )
        V, waves = self._front_end(X, targets, fit=True)
        self.n_features_in_ = X.shape[1]
        W = torch.as_tensor(self.dictionary_.dictionary_, dtype=torch.float32)
        n_classes = targets.shape[1]
        self.classes_ = np.arange(n_classes)
        self.n_components_ = W.shape[1]
        self.n_frames_ = V.shape[2]
        if self.multilabel and self.temperature != 1:
            raise ValueError(
                f"temperature={self.temperature!r} with multilabel=True: the temperature softens "
                "a single-label classifier's class distribution; leave temperature=1 (the targets "
                "as given) for a multilabel one."
            )
        self.temperature_ = float(self.temperature)
        _fidelity_weights(self.fidelity_weight, self.epochs)  # its mistakes before any work
        probs = _tempered(
            _to_probabilities(targets, self.output_type_, self.multilabel), self.temperature_
        )

        for name in ("separation", "source_gates"):
            if _switched_on(getattr(self, name)) and self.multilabel:
                raise ValueError(
                    f"{name}=True fits what the refinement of single-label decisions uses; "
                    f"use {name}=False with multilabel=True (explained without refinement)."
                )
        if self.faithfulness > 0 and self.multilabel:
            raise ValueError(
                "faithfulness > 0 is implemented for single-label classifiers; use multilabel=False."
            )
        store, scores, stats = self._feature_store(waves)
        try:
            return self._fit_from_store(store, scores, stats, V, waves, W, probs, previous)
        finally:
            store.close()

    def _fit_from_store(self, store, scores, stats, V, waves, W, probs, previous):
        n_classes = probs.shape[1]
        self.classifier_output_type_ = (
            _infer_output_type(scores.numpy(), self.multilabel)
            if self.output_type == "auto"
            else self.output_type
        )
        if self.faithfulness > 0 and scores.shape[1] != n_classes:
            raise ValueError(
                f"classifier_outputs has {n_classes} columns but the classifier gives {scores.shape[1]} "
                "scores per clip; the faithfulness term compares the two. Pass the classifier's own "
                "outputs (or set faithfulness=0 to train on other targets)."
            )
        self._waves = torch.as_tensor(waves)
        gen = self._generator()
        with torch.random.fork_rng(
            devices=[]
        ):  # module init from our generator, not the global seed
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            channels = [len(s) for s in stats.sums]
            net = InterpreterNet(
                channels,
                W.shape[1],
                n_classes,
                self.hidden,
                self.pooling,
                self.feature_components,
            )
        self.layer_channels_ = channels
        if previous is not None:
            net, self.history_ = self._continue_from(previous, net)
        else:
            net.set_feature_stats(stats.result(), stats.projections(self.feature_components))
            self.history_ = []
        if isinstance(store, _MemoryFeatures):  # standardised (and projected) once, not every step
            store.prepare(net)
        self.interrupted_ = False
        self.__dict__.pop("class_usage_", None)  # a previous fit's; computed again after training
        try:
            self.module_ = self._train(net, store, torch.as_tensor(V), W, probs, gen)
        finally:
            del self._waves
        self.class_usage_ = None if self.multilabel else self._class_usage(store, probs, V.shape[2])
        if not self.interrupted_:
            self._warn_if_undertrained(V.shape[0])
        return self

    def _warn_if_undertrained(self, n_clips: int) -> None:
        """Warn when the last epoch agreed with the classifier's top class on fewer than
        ``MIN_TRAINING_FIDELITY`` of the training clips: an interpreter that does not mimic the
        classifier explains another model. On ESC-10 the defaults reach 0.99 to 1.00 there; a
        small set of clips gives few optimiser steps per epoch and can stop well short."""
        if self.multilabel or not self.history_:
            return
        fid = self.history_[-1]["fidelity"]
        if fid >= MIN_TRAINING_FIDELITY:
            return
        steps = -(-n_clips // self.batch_size)
        warnings.warn(
            f"the interpreter agrees with the classifier's top class on only {fid:.0%} of its "
            f"training clips after {len(self.history_)} epoch(s) ({steps} optimiser step(s) an "
            f"epoch: {n_clips} clips in batches of {self.batch_size}), so its explanations may not "
            "describe the classifier's decisions. Train longer (more epochs, or warm_start=True "
            "and fit again), or with a larger lr or a smaller batch_size; if it stays low, the "
            "chosen layers may not carry the decision (try others).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )

    def _class_usage(self, store, probs, n_frames: int) -> np.ndarray:
        """``(n_classes, K)``: the mean pooled activation z of each component over the training
        clips of each class (the top class of ``y``; 0 for a class no clip has). ``explain``'s
        contrast term (``contrast_penalty``) reads it."""
        n_classes, K = probs.shape[1], self.n_components_
        sums, counts = torch.zeros(n_classes, K, dtype=torch.float64), torch.zeros(n_classes)
        top = probs.argmax(-1)
        with torch.no_grad():
            for idx in torch.arange(len(probs)).split(self.batch_size):
                H = self.module_.activations(store.batch(idx), n_frames, store.prepared)
                z = self.module_.pool(H)
                sums.index_add_(0, top[idx], z.double())
                counts += torch.bincount(top[idx], minlength=n_classes)
        return (sums / counts.clamp_min(1)[:, None]).float().numpy()

    def _warm_state(self):
        """The fitted module and history to continue from with ``warm_start``, else None."""
        if not self.warm_start or not hasattr(self, "module_"):
            return None
        return {
            "module": self.module_,
            "history": list(getattr(self, "history_", [])),
            "layers": list(self.layers_),
            "temperature": getattr(self, "temperature_", 1.0),  # fitted before it existed: 1
        }

    def _continue_from(self, previous, net):
        old = previous["module"]
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        old_shapes = {k: tuple(v.shape) for k, v in old.state_dict().items()}
        if previous["layers"] != list(self.layers_) or shapes != old_shapes:
            diff = sorted(
                k for k in shapes.keys() | old_shapes.keys() if shapes.get(k) != old_shapes.get(k)
            )
            raise ValueError(
                "warm_start=True continues the fitted interpreter, but its shape changed "
                f"(layers {previous['layers']} -> {list(self.layers_)}; differing tensors {diff[:5]}: "
                "K, the classes, hidden, pooling or the layers' channels). Use the same settings, or "
                "warm_start=False to train a new interpreter."
            )
        net.load_state_dict(old.state_dict())  # features are standardised as in the first fit
        with torch.no_grad():  # Θ trains at its own temperature's scale (see _fold_temperature)
            net.theta.weight.div_(previous["temperature"])
        return net, previous["history"]

    def _fidelity_loss(self, logits, probs):
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, probs)
        return -(probs * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()

    def _train(self, net, store, V, W, probs, gen):
        device = torch.device(self.device)
        net = net.to(device)
        W = W.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        net.feature_dropout = float(self.feature_dropout)
        if self.feature_dropout > 0:  # its own stream, seeded from ours (none drawn without it)
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            net.dropout_generator = torch.Generator(device=device).manual_seed(seed)
        schedule = None
        if self.lr_schedule == "cosine":
            steps = self.epochs * -(-V.shape[0] // self.batch_size)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=steps, eta_min=self.lr / 100
            )
        last_good = {k: v.detach().clone() for k, v in net.state_dict().items()}
        try:
            self._epochs(net, store, V, W, probs, gen, opt, schedule, device, last_good)
        except KeyboardInterrupt:
            net.load_state_dict(last_good)
            self._fold_temperature(net)
            self.interrupted_ = True
            warnings.warn(
                f"training interrupted after {len(self.history_)} epoch(s): the interpreter keeps "
                "its state after the last completed epoch and is usable; fit again with "
                "warm_start=True to continue.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        except FloatingPointError:
            net.load_state_dict(last_good)
            self.module_ = _trained(self._fold_temperature(net))
            raise
        else:
            self._fold_temperature(net)
        return _trained(net)

    def _fold_temperature(self, net):
        """Θ learned the classifier's scores divided by the temperature T; Θ is linear and bias-
        free, so multiplying its weights by T puts the interpreter's scores on the classifier's
        scale (relevance, gates and selections are ratios of Θ's weights: unchanged)."""
        with torch.no_grad():
            net.theta.weight.mul_(self.temperature_)
        return net

    def _epochs(self, net, store, V, W, probs, gen, opt, schedule, device, last_good):
        n = V.shape[0]
        recon = _ReconstructionError(W, V.shape[1], V.shape[2])
        proj, sq = recon.project(V)
        bar = tqdm(range(self.epochs), desc="interpreter", disable=self.verbose <= 0)
        n_faith = 0 if self.faithfulness == 0 else (self.faithfulness_epochs or self.epochs)
        weights = _fidelity_weights(self.fidelity_weight, self.epochs)
        for epoch in bar:
            net.train()
            fid_weight = weights[epoch]
            faithful = epoch >= self.epochs - n_faith
            sums = dict.fromkeys(
                ("loss", "reconstruction", "sparsity", "fidelity_loss", "faithfulness"), 0.0
            )
            agree = 0
            lr = opt.param_groups[0]["lr"]
            t0 = time.perf_counter()
            for idx in torch.randperm(n, generator=gen).split(self.batch_size):
                mix = (
                    faithful
                    and float(torch.rand(1, generator=gen)) < self.mixture_fraction
                    and len(idx) > 1
                )
                prepared = False  # the mixtures' features are raw
                if mix:
                    fb, vb, pb, xb = self._mixture_batch(idx, gen)
                    fb, pb = [f.to(device) for f in fb], pb.to(device)
                    pj, sb = recon.project(vb.to(device))
                else:
                    fb = [f.to(device) for f in store.batch(idx)]
                    prepared = store.prepared
                    pb = probs[idx].to(device)
                    xb = self._waves[idx] if faithful else None  # the term's input only
                    pj, sb = proj[idx].to(device), None if sq is None else sq[idx]
                H, logits = net(fb, V.shape[-1], prepared)
                rec = recon(H, pj, sb)
                spa = H.abs().mean()
                fid = self._fidelity_loss(logits, pb)
                loss = self.alpha * rec + self.beta * spa + fid_weight * fid
                faith = self._faithfulness_loss(net, H, W, xb, pb) if faithful else torch.zeros(())
                loss = loss + self.faithfulness * faith.to(loss.device)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the interpreter's loss became {float(loss.detach())} in epoch {len(self.history_) + 1} "
                        f"(reconstruction {float(rec.detach()):.4g}, sparsity {float(spa.detach()):.4g}, "
                        f"fidelity {float(fid.detach()):.4g}, faithfulness {float(faith.detach()):.4g}); "
                        "the interpreter keeps its state after the last completed epoch. Lower lr, "
                        "or check the classifier outputs and hidden features for NaN/inf."
                    )
                opt.zero_grad()
                loss.backward()
                opt.step()
                if schedule is not None:
                    schedule.step()
                k = len(idx)
                for key, val in zip(sums, (loss, rec, spa, fid, faith), strict=True):
                    sums[key] += float(val.detach()) * k
                agree += int((logits.argmax(-1) == pb.argmax(-1)).sum())
            record = {key: val / n for key, val in sums.items()}
            record.update(
                fidelity=agree / n,
                lr=lr,
                fidelity_weight=fid_weight,
                seconds=time.perf_counter() - t0,
            )
            self.history_.append(record)
            for k, v in net.state_dict().items():
                last_good[k].copy_(v)
            bar.set_postfix(loss=f"{record['loss']:.3f}", fidelity=f"{record['fidelity']:.2f}")

    def _log_probs(self, scores):
        if self.classifier_output_type_ == "probabilities":
            return torch.log(scores.clamp_min(1e-8))
        return torch.log_softmax(scores, dim=-1)

    def _mixture_batch(self, idx, gen):
        """Random equal-level mixtures of the batch's clips: features, V and targets on the fly."""
        x = self._waves[idx]
        other = x[torch.roll(torch.arange(len(idx)), 1)]
        rms = lambda a: a.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)  # noqa: E731
        gain = torch.rand(len(idx), 1, generator=gen) * 0.75 + 0.25  # other source at -12..0 dB
        xm = x + other * (rms(x) / rms(other)) * gain
        feats, scores = self._extract(xm.numpy(), desc="mixtures")
        V = log_magnitude(self.spectrogram_.stft(xm))
        probs = _to_probabilities(scores, self.classifier_output_type_, False)
        return feats, V, _tempered(probs, self.temperature_), xm

    def _faithfulness_loss(self, net, H, W, x, probs):
        """CE(f(x_in), c) − min(CE(f(x_out), c), log C) + mask_penalty·mean(M), through the frozen f."""
        from .explain import relevance, soft_mask

        c = probs.argmax(-1)
        # The term reaches both H and Θ's weights: on ESC-10 this was more faithful *and* closer to
        # the classifier (fidelity 0.90 vs 0.86) than holding Θ fixed here.
        weights = torch.sigmoid(relevance(net.pool(H), net.theta.weight, c, centered=True) / 0.1)
        M = soft_mask(W, H, weights)
        dev = classifier_device(self.classifier)
        spec = self.spectrogram_.stft(x.to(dev))
        x_in = self.spectrogram_._istft_torch(M.to(dev) * spec, x.shape[-1])
        x_out = x.to(dev) - x_in
        params = {k: v.detach() for k, v in self.classifier.named_parameters()}
        with frozen(self.classifier):
            scores = [self._call_classifier(params, inp) for inp in (x_in, x_out)]
        c = c.to(dev)
        ce_in = F.nll_loss(self._log_probs(scores[0]), c)
        ce_out = F.nll_loss(self._log_probs(scores[1]), c)
        cap = float(np.log(len(self.classes_)))
        return (ce_in - ce_out.clamp(max=cap) + self.mask_penalty * M.mean().to(dev)).to(H.device)

    def _call_classifier(self, params, waveforms):
        inputs = (
            self.classifier_input(waveforms) if self.classifier_input is not None else waveforms
        )
        out = torch.func.functional_call(self.classifier, params, (inputs,))
        return self.classifier_output(out) if self.classifier_output is not None else out

    # ------------------------------------------------------------------ predict
    def _forward(self, X, *, keep=False):
        """Run the classifier's hidden layers and the interpreter on features or raw waveforms."""
        with limit_threads_in_workers():
            return self._forward_batches(X, keep)

    def _forward_batches(self, X, keep):
        check_is_fitted(self, "module_")
        if not is_audio_features(X):
            X = check_waveforms(X, min_samples=1)
        V, waves = self._front_end(X, None, fit=False)
        device = self._inference_device()
        net = self.module_.to(device)
        outs = []
        try:
            with torch.no_grad():
                for _, h, s in self._batches(waves):  # one batch of features at a time
                    H, logits = net([f.to(device) for f in h], V.shape[2])
                    outs.append((H.cpu() if keep else None, logits.cpu(), s))
        finally:
            self.module_.cpu()
        logits = torch.cat([o[1] for o in outs])
        H = torch.cat([o[0] for o in outs]) if keep else None
        return logits, H, torch.cat([o[2] for o in outs])

    def _inference_device(self) -> torch.device:
        """``device``, or the CPU when it is not available here (a model trained on a GPU)."""
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            return torch.device("cpu")
        if device.type == "mps" and not torch.backends.mps.is_available():
            return torch.device("cpu")
        return device

    def decision_function(self, X) -> np.ndarray:
        """Θ's scores (logits), ``(n_clips, n_classes)``."""
        return self._forward(X)[0].numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Θ's class probabilities (softmax, or sigmoid when multilabel)."""
        logits = self._forward(X)[0]
        return (torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, -1)).numpy()

    def predict(self, X) -> np.ndarray:
        """Θ's top-1 class per clip (multilabel: 0/1 per class at probability 0.5)."""
        logits = self._forward(X)[0]
        if self.multilabel:
            return (logits > 0).int().numpy()
        return logits.argmax(-1).numpy()

    def score(self, X, y) -> float:
        """Fidelity to the classifier's outputs ``y`` (what ``GridSearchCV`` maximises by default).

        Single-label: top-1 fidelity, how often Θ's top class is the classifier's top class.
        Multilabel: macro AUPRC of Θ's scores against the classifier's outputs as probabilities
        (``y`` read as ``fit`` read its targets) thresholded at 0.5
        (:func:`nmfinterp.metrics.multilabel_auprc`, METHOD.md's multi-label fidelity): the
        top class of a multilabel decision says little of the others.
        """
        check_is_fitted(self, "module_")
        targets = check_outputs(y, len(X), n_classes=len(self.classes_))
        logits = self._forward(X)[0]
        if self.multilabel:
            probs = _to_probabilities(targets, self.output_type_, True).numpy()
            return multilabel_auprc(probs, logits.numpy())
        return float(np.mean(logits.argmax(-1).numpy() == targets.argmax(axis=1)))

    def activations(self, X) -> np.ndarray:
        """The interpreter's activations H, ``(n_clips, K, T)``."""
        H = self._forward(X, keep=True)[1]
        return H.numpy()

    def fit_gates(
        self,
        X,
        *,
        epochs: int = 30,
        lr: float = 1e-3,
        hidden: int = 32,
        mixtures: int = 2,
        distil_epochs: int = 0,
        distil_weight: float = 0.0,
        read_hidden: bool = True,
        energy_penalty: float | None = None,
        contrast_penalty: float = 0.0,
        residual_weight: float | None = None,
        mask_ratio: str | None = None,
    ):
        """Train the amortised gates ``explain(..., amortised=True)`` uses; returns ``self``.

        A small network (:class:`nmfinterp.gates.GateNet`) learns to predict, in one pass, the gates
        ``explain``'s refinement would find through the classifier, by lowering the same objective
        on the clips ``X`` (the training clips, say) and on ``mixtures`` rounds of random two-clip
        mixtures of them, for ``epochs`` epochs. Afterwards ``explain(..., amortised=True)`` costs
        about what ``refine_steps=0`` does; docs/benchmarks.md measures how faithful it is next to
        the refinement, and what training it costs (about ``epochs`` refinements of the clips).
        Single-label interpreters only. Sets ``gate_module_`` and ``gate_history_`` (the loss and
        seconds of each epoch).

        Parameters
        ----------
        X : AudioFeatures or array (n_clips, n_samples)
            Clips of equal length at the pipeline's sample rate (or the pipeline's features of them).
        epochs, lr, hidden : training length, Adam's learning rate, the network's channels.
            (On ESC-10, 32 channels kept the classifier's decision on more clips than 64, the
            default before, and trained faster: docs/benchmarks.md has both rows; with the
            network before its 1x1 mixing layer, 64 had been as faithful as 256.)
        mixtures : int, default=2
            Rounds of mixtures: each clip plus one clip of another (classifier) class, the other at
            -12..0 dB, so that the gates also learn to drop an interfering source.
        distil_epochs : int, default=0
            Epochs in which the network first learns the gates ``explain``'s default refinement
            finds on the same training clips and mixtures (the refinement runs once on each, about
            what explaining them costs), before the ``epochs`` of the objective. 0 with
            ``distil_weight=0``: the objective alone, as before. On ESC-10 fold 4, 60 epochs of it
            with ``distil_weight=1``, ``hidden=64`` and ``epochs=8`` dropped more of an
            interfering source than the objective alone, and the classifier was surer of its
            explanations, but they carried less of the decision (lower FF: on one of three splits
            under the benchmark's target); docs/method.md, "Amortised gates", and the benchmark's
            row "nmfinterp, amortised gates, distilled".
        distil_weight : float, default=0.0
            The weight of that imitation (binary cross-entropy of the network's gates against the
            refinement's) kept in the loss during the objective's epochs.
        read_hidden : bool, default=True
            The network also reads the interpreter's hidden representation of the clip (the
            classifier's layers as Ψ's decoder reads them), not only H, Θ and the selection. On
            ESC-10 its gates kept the classifier's decision on somewhat more held-out clips (clean
            AI 60 against 56, one seed each; docs/method.md, "Amortised gates"); ``explain``
            computes that representation anyway, so it adds one 1x1 convolution per explanation
            and about 40% to the training time. False: the network of nmfinterp before it.
        energy_penalty : float or None
            The objective's energy term; ``None``: ``explain``'s default.
        contrast_penalty : float, default=0.0
            The objective's contrast term (see ``explain``). Off by default, unlike ``explain``'s
            refinement: on ESC-10, gates trained with it (100) kept the classifier's decision on
            fewer held-out clips than the interpreter's own selection.
        residual_weight : float or None
            The weight of the objective's residual term (see ``explain``); ``None``: 0.5
            (``nmfinterp.gates.GATES_RESIDUAL_WEIGHT``). On ESC-10 gates trained with 0.5 dropped
            more of an interfering source than with 1 (the weight before; equal-level SI-SDR gap
            5.4 dB against 2.8) and kept the classifier's decision on somewhat fewer clips (clean
            AI 66 against 71); with ``explain``'s 0.25 they dropped more still (7.7 dB) but kept it
            on too few (clean AI 55): docs/method.md, "Amortised gates".
        mask_ratio : {"linear", "log"} or None
            The mask the gates are trained through (see ``explain``); ``None``: ``explain``'s
            default. Explain with the same one.
        """
        from .explain import (
            ENERGY_PENALTY,
            MASK_RATIO,
            _contrast_penalty,
            _mask_ratio,
            _residual_weight,
        )
        from .gates import GATES_RESIDUAL_WEIGHT, fit_gates

        check_is_fitted(self, "module_")
        if self.multilabel:
            raise ValueError(
                "fit_gates learns the refinement of single-label decisions; this interpreter is "
                "multilabel=True (explain it with refine_steps=0)."
            )
        for name, value, low in (
            ("epochs", epochs, 1),
            ("hidden", hidden, 1),
            ("mixtures", mixtures, 0),
            ("distil_epochs", distil_epochs, 0),
        ):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}={value!r}; expected an integer >= {low}.")
        if not isinstance(lr, Real) or not lr > 0:
            raise ValueError(f"lr={lr!r}; expected a positive number.")
        if (
            isinstance(distil_weight, bool)
            or not isinstance(distil_weight, Real)
            or not (np.isfinite(distil_weight) and distil_weight >= 0)
        ):
            raise ValueError(f"distil_weight={distil_weight!r}; expected a non-negative number.")
        if not isinstance(read_hidden, bool | np.bool_):
            raise ValueError(f"read_hidden={read_hidden!r}; expected True or False.")
        energy_penalty = ENERGY_PENALTY if energy_penalty is None else energy_penalty
        if not isinstance(energy_penalty, Real) or not energy_penalty >= 0:
            raise ValueError(f"energy_penalty={energy_penalty!r}; expected a non-negative number.")
        contrast_penalty = _contrast_penalty(self, contrast_penalty, none="")
        residual_weight = _residual_weight(
            GATES_RESIDUAL_WEIGHT if residual_weight is None else residual_weight
        )
        mask_ratio = _mask_ratio(MASK_RATIO if mask_ratio is None else mask_ratio)
        if is_audio_features(X):
            X = X.block("waveform")
        clips = check_waveforms(X, min_samples=self.spectrogram_.n_fft // 2 + 1)
        with limit_threads_in_workers():
            self.gate_module_, self.gate_history_ = fit_gates(
                self,
                np.asarray(clips, dtype=np.float32),
                epochs=epochs,
                lr=lr,
                hidden=hidden,
                mixtures=mixtures,
                distil_epochs=int(distil_epochs),
                distil_weight=float(distil_weight),
                read_hidden=bool(read_hidden),
                energy_penalty=energy_penalty,
                contrast_penalty=contrast_penalty,
                residual_weight=residual_weight,
                mask_ratio=mask_ratio,
                random_state=self.random_state,
                verbose=self.verbose,
            )
        return self

    def fit_separation(self, X, y=None, *, n_components: int | None = None, max_iter: int = 200):
        """Fit the class-block separation ``explain``'s refinement weights its contrast term by;
        returns ``self``.

        A :class:`~nmfinterp.separation.ClassNMFSeparation` on the pipeline's spectrogram: for
        each class the classifier predicts on the clips ``X``, a block of ``n_components``
        magnitude patterns learned by KL-NMF on those clips. Afterwards ``explain`` (by default,
        ``separation="auto"``) weights the refinement's contrast term in each bin by
        2 (1 − M_c), M_c the separation's share of the bin for the explained class, so that it
        charges most what the other classes' own patterns model; where the interpreter has
        source gates too (``source_gates="auto"``, the default, learns them unless
        ``separation=True``), "auto" takes those, and ``separation=interp.separation_`` this.
        Saved and loaded with the interpreter (``separation_``), dropped by the next ``fit``.
        Single-label interpreters only.

        On ESC-10 (three splits) and spoken digits it kept more of the deciding source of
        equal-level mixtures (energy share +0.8 to +3.5 points, SI-SDR gap +1.4 to +2.2 dB) at
        about 0.01 less FF and 1.2-1.5x the explain time (docs/method.md, "The separation as a
        hint for the contrast term"): a trade, so it is not fitted unless asked for.

        Parameters
        ----------
        X : AudioFeatures or array (n_clips, n_samples)
            The training clips (or the pipeline's features of them).
        y : array (n_clips, n_classes) or None
            The classifier's outputs on them; ``None``: the classifier is run on ``X``.
        n_components : int or None
            Patterns per class; ``None``: the dictionary's size over the number of classes
            (10 for K=100 and ten classes, what was measured), at least 1.
        max_iter : int, default=200
            Iterations of each NMF fit (the blocks, and a clip's activations in ``explain``).
        """
        from .explain import _batched_classifier_scores
        from .separation import ClassNMFSeparation

        check_is_fitted(self, "module_")
        if self.multilabel:
            raise ValueError(
                "fit_separation weights the refinement of single-label decisions; this "
                "interpreter is multilabel=True (explained without refinement)."
            )
        if n_components is None:
            n_components = max(1, self.n_components_ // len(self.classes_))
        for name, value in (("n_components", n_components), ("max_iter", max_iter)):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer.")
        if is_audio_features(X):
            X = X.block("waveform")
        clips = np.asarray(
            check_waveforms(X, min_samples=self.spectrogram_.n_fft // 2 + 1), dtype=np.float32
        )
        if y is None:
            y = _batched_classifier_scores(self, clips).numpy()
        y = check_outputs(y, len(clips), n_classes=len(self.classes_), name="y")
        self.separation_ = ClassNMFSeparation(
            self.spectrogram_,
            n_components=int(n_components),
            max_iter=int(max_iter),
            random_state=self.random_state if self.random_state is not None else 0,
        ).fit(clips, y)
        return self

    def fit_source_gates(
        self,
        X,
        *,
        mixtures: int = 10,
        epochs: int = 60,
        hidden: int = 32,
        lr: float = 3e-3,
        max_mixtures: int = 3000,
    ):
        """Learn which of the interpreter's components carry the decided class's source, from
        mixtures of the training clips whose parts are known; returns ``self``.

        ``mixtures`` rounds of two-clip mixtures of the clips ``X`` (each clip plus one the
        classifier puts in another class, at -12..0 dB) are explained by the interpreter; on each
        the classifier decides as one of its parts' classes, a small network
        (:class:`nmfinterp.gates.GateNet`, reading what the amortised gates read) learns, per
        component and frame, whether the component's pattern lies more in that part than in the
        other (:func:`nmfinterp.gates.source_targets`). No test clip's sources are read: the
        network learns from mixtures it made of ``X``. Afterwards ``explain`` (by default,
        ``separation="auto"``) weights the refinement's contrast term in each bin by
        ``SOURCE_GATES_SCALE · (1 − M_s)``, M_s the share of the bin the network gives the
        decided class's source (it takes precedence over a ``fit_separation`` separation). Saved
        and loaded with the interpreter (``source_gates_``, ``source_gates_history_``), dropped by
        the next ``fit``. Single-label interpreters only. Costs the interpreter's features of the
        mixtures and ``epochs`` passes of the small network over them (no classifier pass per
        step), and about one more network pass per explained batch.

        On ESC-10 (docs/method.md, "Source gates") it kept more of the deciding source of
        equal-level mixtures than the defaults with the classifier's decision kept.

        Parameters
        ----------
        X : AudioFeatures or array (n_clips, n_samples)
            The training clips (or the pipeline's features of them), of at least two classes.
        mixtures : int, default=10
            Rounds of mixtures (each about ``n_clips`` mixtures).
        epochs, hidden, lr : the network's training length, channels and Adam's rate.
        max_mixtures : int, default=3000
            At most this many mixtures in all (the rounds stop there; the last one is a random
            subset of its clips): it bounds the fit's memory and time on a large corpus. The
            features of each kept mixture stay for the epochs (H, the hidden representation and
            the targets: 0.26 MiB a 5 s clip at 16 kHz with K=100, so at most about 0.8 GiB);
            the mixtures' waveforms are made and dropped 32 at a time
            (``nmfinterp.gates.SOURCE_ROWS_CHUNK``).
        """
        from .gates import fit_source_gates

        check_is_fitted(self, "module_")
        if self.multilabel:
            raise ValueError(
                "fit_source_gates weights the refinement of single-label decisions; this "
                "interpreter is multilabel=True (explained without refinement)."
            )
        for name, value in (
            ("mixtures", mixtures),
            ("epochs", epochs),
            ("hidden", hidden),
            ("max_mixtures", max_mixtures),
        ):
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer.")
        if isinstance(lr, bool) or not isinstance(lr, Real) or not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"lr={lr!r}; expected a positive number.")
        if is_audio_features(X):
            X = X.block("waveform")
        clips = np.asarray(
            check_waveforms(X, min_samples=self.spectrogram_.n_fft // 2 + 1), dtype=np.float32
        )
        with limit_threads_in_workers():
            self.source_gates_, self.source_gates_history_ = fit_source_gates(
                self,
                clips,
                mixtures=int(mixtures),
                epochs=int(epochs),
                lr=float(lr),
                hidden=int(hidden),
                max_mixtures=int(max_mixtures),
                random_state=self.random_state,
                verbose=self.verbose,
            )
        return self

    def explain(self, X, **kwargs):
        """Listenable explanations of the classifier's decisions; see :func:`nmfinterp.explain`."""
        from .explain import explain_clips

        return explain_clips(self, X, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = self.random_state is None
        return tags
