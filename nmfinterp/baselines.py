"""Baseline explainers, all listenable through nmfinterp's own path: soft mask -> ISTFT with the input's phase.

Each explainer returns soft masks ``(n_clips, F, T)`` in [0, 1] on the input's STFT (the grid of a
fitted :class:`~nmfinterp.SpectrogramTransformer`); :func:`apply_masks` turns them into the
explanation and the residual, exactly as :func:`nmfinterp.explain` does. This is what makes the
methods comparable in the benchmark: only the mask differs.

- :func:`all_masks` — every bin kept (the explanation is the input): an upper bound on Fid-In, FF = 0.
- :func:`random_component_masks` — random NMF components, as many as nmfinterp selected.
- :class:`SpectrogramAttribution` — captum's saliency, integrated gradients or occlusion on the
  magnitude spectrogram, turned into a soft mask.
- :class:`LMACExplainer` — an L-MAC-style mask decoder trained on the classifier's hidden layers with
  CE(f(x_in), c) − CE(f(x_out), c) + λ·mean(M).
- :class:`BlackBoxNMFExplainer` — needs only the classifier's outputs: it keeps random subsets of the
  clip's NMF components, listens to how the classifier's probability changes, and fits each
  component's relevance by ridge regression (no hidden layers, no gradients).
- :class:`ClassNMFSeparation` — supervised NMF source separation: a block of spectral patterns per
  class, learned by scikit-learn's NMF on the magnitude spectra of the training clips the
  classifier puts in that class; a clip is explained for class c by the share of its magnitude the
  class-c block models (no hidden layers, no gradients, one classifier pass per training clip).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .explain import soft_mask
from .hooks import classifier_device, frozen, resolve_layers, run_with_hooks
from .separation import ClassNMFSeparation, _clips
from .spectrogram import log_magnitude

__all__ = [
    "apply_masks",
    "all_masks",
    "random_component_masks",
    "attribution_to_mask",
    "SpectrogramAttribution",
    "LMACExplainer",
    "BlackBoxNMFExplainer",
    "ClassNMFSeparation",
]


def _scores_fn(classifier: nn.Module, classifier_input=None, classifier_output=None):
    """Differentiable ``waveforms -> (n, C)`` scores through the frozen classifier's weights."""
    params = {k: v.detach() for k, v in classifier.named_parameters()}
    buffers = dict(classifier.named_buffers())

    def scores(waveforms: torch.Tensor) -> torch.Tensor:
        inputs = classifier_input(waveforms) if classifier_input is not None else waveforms
        out = torch.func.functional_call(classifier, {**params, **buffers}, (inputs,))
        return classifier_output(out) if classifier_output is not None else out

    return scores


def apply_masks(spectrogram, X, masks, domain: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Explanations and residuals ``(n_clips, n_samples)`` float32 from masks on the inputs' STFT.

    Examples
    --------
    >>> from nmfinterp import SpectrogramTransformer
    >>> spec = SpectrogramTransformer(sr=8000, n_fft=256).fit(np.zeros((1, 2048), np.float32))
    >>> x = np.random.default_rng(0).standard_normal((2, 2048)).astype(np.float32)
    >>> ex, res = apply_masks(spec, x, all_masks(spec, x))
    >>> bool(np.allclose(ex, x, atol=1e-4)), bool(np.allclose(res, 0, atol=1e-4))
    (True, True)
    """
    x = _clips(X, spectrogram)
    shape = spectrogram.stft(x[:1]).shape[1:]
    M = torch.as_tensor(np.asarray(masks), dtype=torch.float32)
    if tuple(M.shape) != (len(x), *shape):
        raise ValueError(
            f"masks have shape {tuple(M.shape)}; expected {(len(x), *shape)} (clips, frequency "
            "bins, frames) as the spectrogram of X."
        )
    wave = np.asarray(spectrogram.apply_mask(x, M.clamp(0, 1), domain))
    return wave.astype(np.float32), (x - wave).astype(np.float32)


def all_masks(spectrogram, X) -> np.ndarray:
    """Masks of ones: the explanation is the whole input."""
    S = spectrogram.stft(_clips(X, spectrogram))
    return np.ones(S.shape, dtype=np.float32)


def random_component_masks(
    W,
    activations: Sequence,
    n_selected: Sequence[int],
    random_state: int | None = 0,
    ratio: str = "log",
) -> np.ndarray:
    """Soft masks from random NMF components, ``n_selected[i]`` of them for clip i.

    ``W`` is the dictionary ``(F, K)``, ``activations`` the clips' H ``(K, T)`` (e.g.
    ``Explanations.activations``), ``ratio`` the mask's (:func:`~nmfinterp.explain.soft_mask`; an
    explainer's is ``Explanations.settings["mask_ratio"]``). The chance level of a component
    selection.

    Examples
    --------
    >>> W = np.abs(np.random.default_rng(0).standard_normal((6, 4)))
    >>> H = [np.ones((4, 3))]
    >>> random_component_masks(W, H, [4])[0].round(3).min()  # all components: a mask of ones
    np.float32(1.0)
    """
    rng = np.random.default_rng(random_state)
    W = torch.as_tensor(np.asarray(W), dtype=torch.float32)
    K = W.shape[1]
    out = []
    for H, n in zip(activations, n_selected, strict=True):
        n = int(min(max(n, 0), K))
        weights = torch.zeros(1, K)
        weights[0, rng.choice(K, n, replace=False)] = 1.0
        Ht = torch.as_tensor(np.asarray(H), dtype=torch.float32)[None]
        out.append(soft_mask(W, Ht, weights, ratio=ratio)[0].numpy())
    return np.stack(out)


def attribution_to_mask(attribution, quantile: float = 0.99) -> np.ndarray:
    """Soft mask from an attribution map: its positive part over its ``quantile``, clipped to [0, 1].

    The quantile (per clip) rather than the maximum keeps one extreme bin from flattening the rest.

    Examples
    --------
    >>> attribution_to_mask(np.array([[[-1.0, 0.5, 1.0, 4.0]]]), quantile=0.5).tolist()
    [[[0.0, 0.6666666865348816, 1.0, 1.0]]]
    """
    A = np.clip(np.asarray(attribution, dtype=np.float64), 0, None)
    flat = A.reshape(len(A), -1)
    q = np.quantile(flat, quantile, axis=1)
    q = np.where(q > 0, q, flat.max(axis=1))
    q = np.where(q > 0, q, 1.0)
    return np.clip(A / q[:, None, None], 0, 1).astype(np.float32)


class SpectrogramAttribution:
    """Captum attributions on the magnitude spectrogram, as soft masks.

    The classifier is seen as a function of the magnitude ``|X|`` with the input's phase held fixed:
    ``f(istft(|X| e^{iφ}))``. ``method`` is ``"saliency"`` (|∂f_c/∂|X||), ``"integrated_gradients"``
    (from a silent baseline) or ``"occlusion"`` (silencing ``window`` patches of bins x frames).

    Parameters
    ----------
    classifier : torch.nn.Module
        Takes waveforms (or ``classifier_input(waveforms)``) and returns class scores.
    spectrogram : SpectrogramTransformer
        Fitted; defines the STFT grid of the masks.
    method : {"saliency", "integrated_gradients", "occlusion"}
    n_steps : int, default=32
        Integration steps of integrated gradients.
    window, stride : (int, int)
        Occlusion patch and stride in (frequency bins, frames).
    batch_size : int, default=8
    quantile : float, default=0.99
        See :func:`attribution_to_mask`.
    """

    METHODS = ("saliency", "integrated_gradients", "occlusion")

    def __init__(
        self,
        classifier: nn.Module,
        spectrogram,
        method: str = "saliency",
        *,
        classifier_input: Callable | None = None,
        classifier_output: Callable | None = None,
        n_steps: int = 32,
        window: tuple[int, int] = (32, 8),
        stride: tuple[int, int] = (16, 4),
        batch_size: int = 8,
        quantile: float = 0.99,
    ):
        if method not in self.METHODS:
            raise ValueError(f"method={method!r}; expected one of {self.METHODS}.")
        self.classifier, self.spectrogram, self.method = classifier, spectrogram, method
        self.classifier_input, self.classifier_output = classifier_input, classifier_output
        self.n_steps, self.window, self.stride = n_steps, tuple(window), tuple(stride)
        self.batch_size, self.quantile = batch_size, quantile

    def attribute(self, X, classes) -> np.ndarray:
        """Raw attribution maps ``(n_clips, F, T)`` for ``classes`` (one per clip)."""
        from captum.attr import IntegratedGradients, Occlusion, Saliency

        x = _clips(X, self.spectrogram)
        classes = np.array(np.broadcast_to(np.asarray(classes, dtype=int), (len(x),)))
        scores = _scores_fn(self.classifier, self.classifier_input, self.classifier_output)
        dev = classifier_device(self.classifier)
        length = x.shape[1]

        def forward(mag, phase):
            return scores(self.spectrogram._istft_torch(mag * torch.exp(1j * phase), length))

        out = []
        with frozen(self.classifier), warnings.catch_warnings():
            # captum warns that the spectrogram batch did not require gradients: it sets that itself
            warnings.filterwarnings("ignore", message=".*required_grads.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="captum")
            for start in range(0, len(x), self.batch_size):
                S = self.spectrogram.stft(x[start : start + self.batch_size]).to(dev)
                mag, phase = S.abs(), S.angle()
                target = torch.as_tensor(classes[start : start + self.batch_size]).to(dev)
                if self.method == "saliency":
                    A = Saliency(forward).attribute(
                        mag, target=target, additional_forward_args=(phase,), abs=True
                    )
                elif self.method == "integrated_gradients":
                    A = IntegratedGradients(forward).attribute(
                        mag,
                        baselines=torch.zeros_like(mag),
                        target=target,
                        additional_forward_args=(phase,),
                        n_steps=self.n_steps,
                        internal_batch_size=len(mag) * 8,
                    )
                else:
                    fw = min(self.window[0], mag.shape[1])
                    tw = min(self.window[1], mag.shape[2])
                    A = Occlusion(forward).attribute(
                        mag,
                        sliding_window_shapes=(fw, tw),
                        strides=(max(1, min(self.stride[0], fw)), max(1, min(self.stride[1], tw))),
                        baselines=0.0,
                        target=target,
                        additional_forward_args=(phase,),
                        perturbations_per_eval=8,
                    )
                out.append(A.detach().float().cpu().numpy())
        return np.concatenate(out)

    def masks(self, X, classes) -> np.ndarray:
        """Soft masks ``(n_clips, F, T)`` in [0, 1] for ``classes``."""
        return attribution_to_mask(self.attribute(X, classes), self.quantile)


class _MaskDecoder(nn.Module):
    """Hidden layers (+ the class) -> a mask ``(F, T)`` in [0, 1] (sigmoid)."""

    def __init__(self, layer_channels, n_bins, n_classes, hidden=128):
        super().__init__()
        self.adapters = nn.ModuleList(
            nn.Sequential(nn.Conv1d(c, hidden, 3, padding=1), nn.ReLU()) for c in layer_channels
        )
        for i, c in enumerate(layer_channels):
            self.register_buffer(f"mean_{i}", torch.zeros(c, 1))
            self.register_buffer(f"std_{i}", torch.ones(c, 1))
        self.embed = nn.Embedding(n_classes, hidden)
        self.body = nn.Sequential(
            nn.Conv1d(hidden * len(layer_channels), hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
        )
        self.out = nn.Conv1d(hidden, n_bins, 1)

    def set_feature_stats(self, feats):
        for i, f in enumerate(feats):
            getattr(self, f"mean_{i}").copy_(f.mean(dim=(0, 2))[:, None])
            getattr(self, f"std_{i}").copy_(f.std(dim=(0, 2))[:, None] + 1e-5)

    def forward(self, feats, classes, n_frames: int):
        parts = []
        for i, (adapter, f) in enumerate(zip(self.adapters, feats, strict=True)):
            a = adapter((f - getattr(self, f"mean_{i}")) / getattr(self, f"std_{i}"))
            if a.shape[-1] == 1:
                a = a.expand(-1, -1, n_frames)
            else:
                a = F.interpolate(a, size=n_frames, mode="linear", align_corners=False)
            parts.append(a)
        h = self.body(torch.cat(parts, dim=1)) + self.embed(classes)[:, :, None]
        return torch.sigmoid(self.out(h))


class LMACExplainer:
    """An L-MAC-style learned mask decoder on the classifier's hidden layers.

    Trained on clips ``X`` (the classes are the classifier's own decisions) with
    ``CE(f(x_in), c) − min(CE(f(x_out), c), log C) + lam·mean(M)``, where ``x_in`` / ``x_out`` are
    the input masked by ``M`` / by ``1 − M`` (linear magnitude, the input's phase), through the frozen
    classifier. The cap on the residual term keeps the objective bounded (without it, destroying the
    residual wins over everything else).

    Parameters
    ----------
    classifier : torch.nn.Module
    layers : list of str or None
        Hidden layers to read (as :class:`~nmfinterp.InterpreterEstimator`).
    spectrogram : SpectrogramTransformer
        Fitted; defines the mask grid.
    lam : float, default=0.5
        Weight of the mask-size penalty.
    epochs, batch_size, lr, hidden, random_state : training settings.
    """

    def __init__(
        self,
        classifier: nn.Module,
        layers,
        spectrogram,
        *,
        classifier_input: Callable | None = None,
        classifier_output: Callable | None = None,
        lam: float = 0.5,
        epochs: int = 20,
        batch_size: int = 16,
        lr: float = 1e-3,
        hidden: int = 128,
        random_state: int | None = 0,
        verbose: int = 0,
    ):
        self.classifier, self.layers, self.spectrogram = classifier, layers, spectrogram
        self.classifier_input, self.classifier_output = classifier_input, classifier_output
        self.lam, self.epochs, self.batch_size, self.lr = lam, epochs, batch_size, lr
        self.hidden, self.random_state, self.verbose = hidden, random_state, verbose

    def _features(self, x: np.ndarray):
        dev = classifier_device(self.classifier)
        feats, scores = None, []
        with frozen(self.classifier), torch.no_grad():
            for start in range(0, len(x), self.batch_size):
                h, s = run_with_hooks(
                    self.classifier,
                    self.layers_,
                    torch.as_tensor(x[start : start + self.batch_size]).to(dev),
                    self.classifier_input,
                    self.classifier_output,
                )
                h = [t.float().cpu() for t in h]
                feats = (
                    [[t] for t in h]
                    if feats is None
                    else [a + [t] for a, t in zip(feats, h, strict=True)]
                )
                scores.append(s.float().cpu())
        return [torch.cat(f) for f in feats], torch.cat(scores)

    def fit(self, X, y=None):
        """Train the decoder on clips ``X`` (``y`` is ignored: the classes are the classifier's)."""
        from tqdm.auto import tqdm

        x = _clips(X, self.spectrogram)
        self.layers_ = resolve_layers(self.classifier, self.layers)
        feats, scores = self._features(x)
        classes = scores.argmax(-1)
        S = self.spectrogram.stft(x)
        self.n_classes_ = scores.shape[1]
        gen = torch.Generator().manual_seed(0 if self.random_state is None else self.random_state)
        torch_state = torch.random.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        net = _MaskDecoder([f.shape[1] for f in feats], S.shape[1], self.n_classes_, self.hidden)
        torch.random.set_rng_state(torch_state)
        net.set_feature_stats(feats)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        f = _scores_fn(self.classifier, self.classifier_input, self.classifier_output)
        dev = classifier_device(self.classifier)
        cap = float(np.log(self.n_classes_))
        self.history_ = []
        with frozen(self.classifier):
            for epoch in tqdm(range(self.epochs), desc="L-MAC", disable=not self.verbose):
                perm = torch.randperm(len(x), generator=gen)
                total = 0.0
                for start in range(0, len(x), self.batch_size):
                    idx = perm[start : start + self.batch_size]
                    M = net([t[idx] for t in feats], classes[idx], S.shape[-1])
                    x_in = self.spectrogram._istft_torch(M.to(dev) * S[idx].to(dev), x.shape[1])
                    x_out = torch.as_tensor(x[idx.numpy()]).to(dev) - x_in
                    c = classes[idx].to(dev)
                    ce_in = F.cross_entropy(f(x_in), c)
                    ce_out = F.cross_entropy(f(x_out), c)
                    loss = ce_in - ce_out.clamp(max=cap) + self.lam * M.mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                self.history_.append({"epoch": epoch, "loss": total / len(x)})
        self.module_ = net.eval()
        return self

    def masks(self, X, classes=None) -> np.ndarray:
        """Masks ``(n_clips, F, T)`` for ``classes`` (default: the classifier's decisions)."""
        if not hasattr(self, "module_"):
            raise RuntimeError("LMACExplainer is not fitted; call fit(X) on training clips first.")
        x = _clips(X, self.spectrogram)
        feats, scores = self._features(x)
        c = scores.argmax(-1) if classes is None else torch.as_tensor(classes).broadcast_to(len(x))
        T = self.spectrogram.stft(x[:1]).shape[-1]
        with torch.no_grad():
            return self.module_(feats, c.long(), T).numpy()


class BlackBoxNMFExplainer:
    """Component relevance from the classifier's outputs alone.

    For each clip, H is solved for the fitted dictionary W on the clip's spectrogram
    (``NMFDictionary.transform``). ``n_samples`` random subsets of the components (each kept with
    probability ``keep_prob``) are played to the classifier through the soft-mask path; the
    relevance r_k of component k is the ridge-regression weight of "k kept" on the classifier's
    probability of the class. Components with r_k > 0 make the explanation.

    Parameters
    ----------
    classifier : callable
        ``waveforms (n, n_samples) float32 tensor -> scores (n, C)``; an ``nn.Module`` or any function
        (no hidden layers or gradients are used).
    spectrogram, dictionary : fitted SpectrogramTransformer and NMFDictionary
    output_type : {"logits", "probabilities"}, default="logits"
    n_samples : int, default=128
    keep_prob : float, default=0.5
    ridge : float, default=1.0
    """

    def __init__(
        self,
        classifier: Callable,
        spectrogram,
        dictionary,
        *,
        output_type: str = "logits",
        n_samples: int = 128,
        keep_prob: float = 0.5,
        ridge: float = 1.0,
        batch_size: int = 32,
        random_state: int | None = 0,
    ):
        if output_type not in ("logits", "probabilities"):
            raise ValueError(f"output_type={output_type!r}; expected 'logits' or 'probabilities'.")
        self.classifier, self.spectrogram, self.dictionary = classifier, spectrogram, dictionary
        self.output_type, self.n_samples, self.keep_prob = output_type, n_samples, keep_prob
        self.ridge, self.batch_size, self.random_state = ridge, batch_size, random_state

    def _probs(self, waves: torch.Tensor) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for start in range(0, len(waves), self.batch_size):
                s = torch.as_tensor(self.classifier(waves[start : start + self.batch_size])).float()
                out.append(s if self.output_type == "probabilities" else torch.softmax(s, -1))
        return torch.cat(out)

    def explain(self, X, classes) -> tuple[np.ndarray, np.ndarray]:
        """``(masks (n, F, T), relevance (n, K))`` for ``classes`` (one per clip)."""
        x = _clips(X, self.spectrogram)
        classes = np.array(np.broadcast_to(np.asarray(classes, dtype=int), (len(x),)))
        rng = np.random.default_rng(self.random_state)
        W = torch.as_tensor(self.dictionary.dictionary_, dtype=torch.float32)
        K = W.shape[1]
        was_module = isinstance(self.classifier, nn.Module)
        masks, relevances = [], []
        with frozen(self.classifier) if was_module else contextlib.nullcontext():
            for i in range(len(x)):
                S = self.spectrogram.stft(x[i : i + 1])
                V = log_magnitude(S)[0].numpy()  # (F, T)
                H = torch.as_tensor(self.dictionary.transform(V.T).T, dtype=torch.float32)[None]
                Z = (rng.random((self.n_samples, K)) < self.keep_prob).astype(np.float32)
                M = soft_mask(W, H.expand(self.n_samples, -1, -1), torch.as_tensor(Z))
                waves = self.spectrogram._istft_torch(M * S, x.shape[1])
                p = self._probs(waves)[:, classes[i]].numpy()
                Zc = Z - Z.mean(0)
                r = np.linalg.solve(Zc.T @ Zc + self.ridge * np.eye(K), Zc.T @ (p - p.mean()))
                keep = torch.as_tensor((r > 0).astype(np.float32))[None]
                masks.append(soft_mask(W, H, keep)[0].numpy())
                relevances.append(r.astype(np.float32))
        return np.stack(masks), np.stack(relevances)

    def masks(self, X, classes) -> np.ndarray:
        return self.explain(X, classes)[0]
