"""The interpreter of L2I: hidden layers of a frozen classifier -> activations H >= 0 -> class scores."""

from __future__ import annotations

import time
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn
from tqdm.auto import tqdm

from ._validation import check_outputs, check_waveforms
from .dictionary import NMFDictionary
from .features import is_audio_features
from .hooks import classifier_device, frozen, resolve_layers, run_with_hooks
from .spectrogram import SpectrogramTransformer, log_magnitude


class InterpreterNet(nn.Module):
    """Ψ (hidden features -> H, K x T) and Θ (time pooling + bias-free linear -> class scores).

    Each hidden layer (channels x its own time grid) is standardised, passed through a 1-D conv and
    resampled to the spectrogram's T frames; the layers are concatenated and decoded to K
    non-negative activations per frame (ReLU), as in L2I's decoder.
    """

    def __init__(self, layer_channels, n_components, n_classes, hidden=128, pooling="attention"):
        super().__init__()
        self.pooling = pooling
        self.adapters = nn.ModuleList(
            nn.Sequential(nn.Conv1d(c, hidden, 3, padding=1), nn.ReLU()) for c in layer_channels
        )
        for i, c in enumerate(layer_channels):
            self.register_buffer(f"mean_{i}", torch.zeros(c, 1))
            self.register_buffer(f"std_{i}", torch.ones(c, 1))
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

    def set_feature_stats(self, feats):
        for i, f in enumerate(feats):
            getattr(self, f"mean_{i}").copy_(f.mean(dim=(0, 2))[:, None])
            getattr(self, f"std_{i}").copy_(f.std(dim=(0, 2))[:, None] + 1e-5)

    def activations(self, feats, n_frames: int) -> torch.Tensor:
        """H: ``(batch, K, n_frames)``, non-negative."""
        parts = []
        for i, (adapter, f) in enumerate(zip(self.adapters, feats, strict=True)):
            f = (f - getattr(self, f"mean_{i}")) / getattr(self, f"std_{i}")
            a = adapter(f)
            if a.shape[-1] == 1:
                a = a.expand(-1, -1, n_frames)
            else:
                a = F.interpolate(a, size=n_frames, mode="linear", align_corners=False)
            parts.append(a)
        return self.decoder(torch.cat(parts, dim=1))

    def pool(self, H: torch.Tensor) -> torch.Tensor:
        """z: ``(batch, K)`` pooled over time."""
        if self.pooling == "max":
            return H.amax(dim=-1)
        if self.pooling == "mean":
            return H.mean(dim=-1)
        a = self.att_w(torch.tanh(self.att_v(H)) * torch.sigmoid(self.att_u(H)))  # (batch, 1, T)
        return (H * torch.softmax(a, dim=-1)).sum(dim=-1)

    def forward(self, feats, n_frames: int):
        H = self.activations(feats, n_frames)
        return H, self.theta(self.pool(H))


def _to_probabilities(scores: np.ndarray | torch.Tensor, output_type: str, multilabel: bool):
    s = torch.as_tensor(scores, dtype=torch.float32)
    if output_type == "probabilities":
        return s
    return torch.sigmoid(s) if multilabel else torch.softmax(s, dim=-1)


def _infer_output_type(y: np.ndarray, multilabel: bool) -> str:
    in_range = bool(((y >= 0) & (y <= 1)).all())
    if multilabel:
        return "probabilities" if in_range else "logits"
    return "probabilities" if in_range and np.allclose(y.sum(axis=1), 1, atol=1e-3) else "logits"


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
    hidden : int, default=128
        Width of the decoder.
    pooling : {"attention", "max", "mean"}, default="attention"
    alpha, beta : float, default=10.0, 0.8
        Weights of the reconstruction and sparsity terms relative to L_FID (L2I's official ratios).
    epochs, batch_size, lr, weight_decay : training settings (Adam).
    device : str, default="cpu"
        Where Ψ and Θ train. The fitted module is kept on the CPU, so a pickle made on a GPU loads
        anywhere.
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
        Per epoch: loss, reconstruction, sparsity, fidelity_loss, fidelity (top-1 on the training clips).
    output_type_ : str

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
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
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
        hidden=128,
        pooling="attention",
        alpha=10.0,
        beta=0.8,
        epochs=60,
        batch_size=32,
        lr=1e-3,
        weight_decay=0.0,
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
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
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
            spec = clone(self.spectrogram) if self.spectrogram is not None else SpectrogramTransformer()
            dico = clone(self.dictionary) if self.dictionary is not None else NMFDictionary()
            Xs = spec.fit_transform(X)
            dico.fit(Xs, y)
            self.spectrogram_, self.dictionary_ = spec, dico
        else:
            check_is_fitted(self)
            Xs = self.spectrogram_.transform(X)
        return Xs.block("spectrogram"), Xs.block("waveform")

    def _extract(self, waveforms: np.ndarray, *, desc: str = "features"):
        """Hidden features (list of (n, C, t) CPU tensors) and the classifier's scores, in batches."""
        dev = classifier_device(self.classifier)
        feats, scores = None, []
        with frozen(self.classifier), torch.no_grad():
            for start in tqdm(
                range(0, len(waveforms), self.batch_size), desc=desc, disable=self.verbose <= 1, leave=False
            ):
                x = torch.as_tensor(waveforms[start : start + self.batch_size]).to(dev)
                h, s = run_with_hooks(self.classifier, self.layers_, x, self.classifier_input, self.classifier_output)
                h = [t.float().cpu() for t in h]
                feats = [[t] for t in h] if feats is None else [f + [t] for f, t in zip(feats, h, strict=True)]
                scores.append(s.float().cpu())
        return [torch.cat(f) for f in feats], torch.cat(scores)

    def _generator(self) -> torch.Generator:
        g = torch.Generator()
        seed = self.random_state if self.random_state is not None else int(torch.randint(0, 2**31 - 1, (1,)))
        return g.manual_seed(int(seed))

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Train Ψ and Θ to mimic ``y``, the classifier's outputs on the clips ``X``.

        Parameters
        ----------
        X : AudioFeatures or array (n_clips, n_samples)
            The output of ``NMFDictionary`` in a pipeline, or raw waveforms.
        y : array (n_clips, n_classes) or (n_clips,)
            The classifier's outputs (logits or probabilities) on those clips, or its predicted labels.
        """
        self._validate_params()
        if self.classifier is None:
            raise ValueError("InterpreterEstimator needs classifier=..., the trained torch model to explain.")
        self.layers_ = resolve_layers(self.classifier, self.layers)
        if not is_audio_features(X):
            X = check_waveforms(X, min_samples=1)
        n_clips = X.shape[0]
        targets = check_outputs(y, n_clips)
        self.output_type_ = (
            _infer_output_type(targets, self.multilabel) if self.output_type == "auto" else self.output_type
        )
        V, waves = self._front_end(X, targets, fit=True)
        self.n_features_in_ = X.shape[1]
        W = torch.as_tensor(self.dictionary_.dictionary_, dtype=torch.float32)
        n_classes = targets.shape[1]
        self.classes_ = np.arange(n_classes)
        self.n_components_ = W.shape[1]
        self.n_frames_ = V.shape[2]
        probs = _to_probabilities(targets, self.output_type_, self.multilabel)

        feats, _ = self._extract(waves)
        gen = self._generator()
        with torch.random.fork_rng(devices=[]):  # module init from our generator, not the global seed
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            net = InterpreterNet([f.shape[1] for f in feats], W.shape[1], n_classes, self.hidden, self.pooling)
        net.set_feature_stats(feats)
        self.history_ = []
        self.module_ = self._train(net, feats, torch.as_tensor(V), W, probs, gen)
        return self

    def _fidelity_loss(self, logits, probs):
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, probs)
        return -(probs * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()

    def _train(self, net, feats, V, W, probs, gen):
        device = torch.device(self.device)
        net = net.to(device)
        W = W.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n, T = V.shape[0], V.shape[2]
        bar = tqdm(range(self.epochs), desc="interpreter", disable=self.verbose <= 0)
        for _ in bar:
            net.train()
            sums = dict.fromkeys(("loss", "reconstruction", "sparsity", "fidelity_loss"), 0.0)
            agree = 0
            t0 = time.perf_counter()
            for idx in torch.randperm(n, generator=gen).split(self.batch_size):
                fb = [f[idx].to(device) for f in feats]
                vb, pb = V[idx].to(device), probs[idx].to(device)
                H, logits = net(fb, T)
                rec = ((vb - torch.einsum("fk,bkt->bft", W, H)) ** 2).mean()
                spa = H.abs().mean()
                fid = self._fidelity_loss(logits, pb)
                loss = self.alpha * rec + self.beta * spa + fid
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        "the interpreter's loss became NaN/inf; lower lr or check the classifier outputs."
                    )
                opt.zero_grad()
                loss.backward()
                opt.step()
                k = len(idx)
                for key, val in zip(sums, (loss, rec, spa, fid), strict=True):
                    sums[key] += float(val.detach()) * k
                agree += int((logits.argmax(-1) == pb.argmax(-1)).sum())
            record = {key: val / n for key, val in sums.items()}
            record.update(fidelity=agree / n, seconds=time.perf_counter() - t0)
            self.history_.append(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", fidelity=f"{record['fidelity']:.2f}")
        return net.cpu().eval()

    # ------------------------------------------------------------------ predict
    def _forward(self, X, *, keep=False):
        """Run the classifier's hidden layers and the interpreter on features or raw waveforms."""
        check_is_fitted(self, "module_")
        if not is_audio_features(X):
            X = check_waveforms(X, min_samples=1)
        V, waves = self._front_end(X, None, fit=False)
        feats, scores = self._extract(waves)
        device = torch.device(self.device)
        net = self.module_.to(device)
        outs = []
        with torch.no_grad():
            for start in range(0, len(waves), self.batch_size):
                fb = [f[start : start + self.batch_size].to(device) for f in feats]
                H, logits = net(fb, V.shape[2])
                outs.append((H.cpu() if keep else None, logits.cpu()))
        self.module_.cpu()
        logits = torch.cat([o[1] for o in outs])
        H = torch.cat([o[0] for o in outs]) if keep else None
        return logits, H, scores

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
        """Top-1 fidelity: how often Θ's top class is the classifier's top class in ``y``."""
        check_is_fitted(self, "module_")
        targets = check_outputs(y, len(X), n_classes=len(self.classes_))
        pred = self._forward(X)[0].argmax(-1).numpy()
        return float(np.mean(pred == targets.argmax(axis=1)))

    def activations(self, X) -> np.ndarray:
        """The interpreter's activations H, ``(n_clips, K, T)``."""
        H = self._forward(X, keep=True)[1]
        return H.numpy()

    def explain(self, X, **kwargs):
        """Listenable explanations of the classifier's decisions; see :func:`nmfinterp.explain`."""
        from .explain import explain_clips

        return explain_clips(self, X, **kwargs)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = self.random_state is None
        return tags
