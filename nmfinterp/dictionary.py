"""The spectral dictionary W (F x K) learned by NMF on log-spectrogram frames."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.decomposition import NMF, MiniBatchNMF, non_negative_factorization
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data
from tqdm.auto import tqdm

from ._validation import check_outputs
from .features import AudioFeatures, is_audio_features

# beta <= 0 (Itakura-Saito) cannot take zeros: every frame gets this floor.
_EPS = 1e-6

#: ``per_class="auto"`` learns a block per predicted class when each gets at least this many
#: patterns (the setting measured on ESC-10: K=100 for 10 classes; docs/method.md, "Dictionary")
MIN_PATTERNS_PER_CLASS = 10
#: ... and the classifier predicts at least this many classes: a two-output detector (Silero VAD's
#: speech / no speech) was explained better with one dictionary (docs/method.md, "Dictionary")
MIN_PREDICTED_CLASSES = 3
#: the names the command lines give ``per_class``'s values (``--dictionary``)
PER_CLASS_CHOICES = {"auto": "auto", "plain": False, "per_class": True}


@contextmanager
def _convergence_told_once(dictionary, n_fits: int):
    """Collect sklearn's ConvergenceWarnings of a dictionary's ``n_fits`` NMF solves (a block's
    fit each, and the activations of its error sample) and warn once for them all; other warnings
    pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield
    stops = 0
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            stops += 1
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if stops:
        warnings.warn(
            f"NMFDictionary: {stops} of its {n_fits} NMF solves stopped at "
            f"max_iter={dictionary.max_iter} before reaching tol={dictionary.tol}; raise max_iter "
            "to converge (the default, 200, stops short on purpose: a converged dictionary was no "
            "better for the interpreter, docs/method.md, 'Dictionary').",
            ConvergenceWarning,
            stacklevel=3,
        )


def to_frames(V: np.ndarray) -> np.ndarray:
    """Audio orientation ``(n_clips, F, T)`` -> scikit-learn orientation ``(n_clips * T, F)``.

    The only place the two orientations meet: NMF's ``components_`` (K x F) is Wᵀ and its
    ``transform`` returns Hᵀ (frames x K).
    """
    n, F, T = V.shape
    return np.ascontiguousarray(V.transpose(0, 2, 1).reshape(n * T, F))


def from_frames(Ht: np.ndarray, n_clips: int) -> np.ndarray:
    """scikit-learn orientation ``(n_clips * T, K)`` -> audio orientation ``(n_clips, K, T)``."""
    K = Ht.shape[1]
    return np.ascontiguousarray(Ht.reshape(n_clips, -1, K).transpose(0, 2, 1))


class NMFDictionary(TransformerMixin, BaseEstimator):
    """Learn the dictionary W (frequency x K) of spectral patterns with ``sklearn.decomposition.NMF``.

    Parameters
    ----------
    n_components : int, default=100
        K, the number of spectral patterns (L2I used 100 for ESC-50). With ``per_class=True``, the
        total over all blocks.
    beta_loss : {"frobenius", "kullback-leibler", "itakura-saito"} or float, default="frobenius"
        β-divergence, as in ``NMF``. Anything but Frobenius needs ``solver="mu"``.
    solver : {"cd", "mu"}, default="cd"
    per_class : bool or "auto", default="auto"
        ``True``: learn one block of ``n_components // n_classes`` patterns on the clips of each
        class the classifier predicts (``argmax`` of ``y``) and concatenate the blocks; any
        remainder is learned on all clips. Needs ``y`` in ``fit``. ``False``: one dictionary for
        all clips (L2I's). ``"auto"``: per class when ``fit`` is given the classifier's outputs
        (one row of class scores per clip, or labels), they predict at least
        ``MIN_PREDICTED_CLASSES`` (3) classes and each gets at least ``MIN_PATTERNS_PER_CLASS``
        (10) patterns; else one dictionary, also for a ``y`` that is not such outputs
        (``partial_fit`` always learns one). ``per_class_`` says which was learned. On ESC-10
        (10 classes, K=100) the blocks let the explanations of equal-level mixtures keep more of
        the deciding source with the classifier's decision kept as well; on Silero VAD's two
        outputs (speech, no speech) one dictionary explained better (docs/method.md,
        "Dictionary").
    max_frames : int or None, default=10000
        NMF is fitted on at most this many frames, drawn at random (all when ``None``).
    batch_size : int or None, default=None
        Learn W with ``sklearn.decomposition.MiniBatchNMF`` on mini-batches of this many frames
        (multiplicative updates; ``solver`` is then not used). Needed to learn from a corpus larger
        than memory with :meth:`partial_fit` or :func:`fit_streaming`; ``None``: batch ``NMF``.
    max_iter : int, default=200
        Iterations at most, for learning W and for solving activations, as in ``NMF``. 200 stop
        short of ``tol`` on ESC-10 and on the demo's sounds (a ``ConvergenceWarning``); the
        converged dictionary (``max_iter=1000``) was measured and made the interpreter agree with
        the classifier less often, with no more faithful explanations, and took 3-4x as long to
        fit (docs/method.md, "Dictionary").
    tol, init, alpha_W, l1_ratio : see ``sklearn.decomposition.NMF``.
    random_state : int, RandomState or None
    verbose : int, default=0

    Attributes
    ----------
    components_ : ndarray (K, F)
        Wᵀ, as scikit-learn orients it, columns of W L2-normalised.
    dictionary_ : ndarray (F, K)
        W in the audio orientation.
    per_class_ : bool
        Whether one block per predicted class was learned (what ``per_class`` chose).
    class_of_component_ : ndarray (K,)
        With ``per_class_``, the class whose clips each pattern was learned on (-1: shared).
    reconstruction_err_ : float
        Frobenius error of the frames it was fitted on, with the normalised W.

    Notes
    -----
    Input is either the :class:`~nmfinterp.features.AudioFeatures` a
    :class:`~nmfinterp.SpectrogramTransformer` makes (rows = clips, fitted on all their frames) or a
    plain non-negative array whose rows are spectra (like ``NMF``). For a plain array ``transform``
    returns Hᵀ (rows x K), like ``NMF.transform``. For ``AudioFeatures`` it attaches the dictionary,
    so that the interpreter downstream finds W, and solves no activations (the interpreter does not
    use them); ``X.block("activations")`` or :meth:`clip_activations` solve them on demand.

    Examples
    --------
    >>> import numpy as np
    >>> V = np.random.default_rng(0).random((50, 20))
    >>> d = NMFDictionary(n_components=4, random_state=0).fit(V)
    >>> d.dictionary_.shape, np.allclose(np.linalg.norm(d.dictionary_, axis=0), 1)
    ((20, 4), True)
    >>> d.transform(V).shape
    (50, 4)
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "beta_loss": [StrOptions({"frobenius", "kullback-leibler", "itakura-saito"}), Real],
        "solver": [StrOptions({"cd", "mu"})],
        "per_class": ["boolean", StrOptions({"auto"})],
        "max_frames": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "init": [StrOptions({"random", "nndsvd", "nndsvda", "nndsvdar"}), None],
        "alpha_W": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=100,
        *,
        beta_loss="frobenius",
        solver="cd",
        per_class="auto",
        max_frames=10000,
        batch_size=None,
        max_iter=200,
        tol=1e-4,
        init=None,
        alpha_W=0.0,
        l1_ratio=0.0,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.beta_loss = beta_loss
        self.solver = solver
        self.per_class = per_class
        self.max_frames = max_frames
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.alpha_W = alpha_W
        self.l1_ratio = l1_ratio
        self.random_state = random_state
        self.verbose = verbose

    def _nmf(self, n_components: int, batch_size: int | None = None) -> NMF | MiniBatchNMF:
        batch_size = batch_size or self.batch_size
        common = {
            "n_components": n_components,
            "beta_loss": self.beta_loss,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "init": self.init,
            "alpha_W": self.alpha_W,
            "l1_ratio": self.l1_ratio,
            "random_state": self.random_state,
            "verbose": self.verbose,
        }
        if batch_size is not None:
            return MiniBatchNMF(batch_size=batch_size, **common)
        return NMF(solver=self.solver, **common)

    def _frames(self, X, *, reset: bool) -> tuple[np.ndarray, int | None]:
        """Rows of spectra (frames x F) from either input form, and the clip count if clips."""
        if is_audio_features(X):
            V = X.block("spectrogram")
            if reset:
                self.n_features_in_ = V.shape[1]
            elif V.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"spectrograms have {V.shape[1]} frequency bins; expected {self.n_features_in_} "
                    "as in fit (same n_fft)."
                )
            return to_frames(V).astype(np.float64), len(V)
        frames = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        if (frames < 0).any():
            raise ValueError(
                "Negative values in data passed to NMFDictionary: it needs non-negative spectra "
                "(e.g. log(1 + |STFT|))."
            )
        return frames, None

    def _floor(self, frames: np.ndarray) -> np.ndarray:
        beta = {"frobenius": 2, "kullback-leibler": 1, "itakura-saito": 0}.get(
            self.beta_loss, self.beta_loss
        )
        return frames + _EPS if beta <= 0 else frames

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn W from the frames of the clips (``y``: classifier outputs, used with ``per_class``)."""
        frames, n_clips = self._frames(X, reset=True)
        self._check_solver()
        if hasattr(self, "_minibatch"):
            del self._minibatch  # fit starts anew; partial_fit continues
        rng = check_random_state(self.random_state)
        frames = self._floor(frames)
        return self._fit_frames(frames, n_clips, y, rng)

    def _check_solver(self):
        if (
            self.batch_size is None
            and self.solver == "cd"
            and self.beta_loss not in ("frobenius", 2, 2.0)
        ):
            raise ValueError(
                f"beta_loss={self.beta_loss!r} needs solver='mu'; solver='cd' only handles 'frobenius'."
            )

    def _fit_frames(self, frames, n_clips, y, rng):
        clip_of_frame = (
            np.repeat(np.arange(n_clips), len(frames) // n_clips)
            if n_clips
            else np.arange(len(frames))
        )
        labels = self._predicted_classes(y, n_clips if n_clips else len(frames))
        self.per_class_ = labels is not None
        if self.per_class_:
            labels = labels[clip_of_frame]
            classes = np.unique(labels)
            k = self.n_components // len(classes)
            groups = [(c, labels == c, k) for c in classes]
            rest = self.n_components - k * len(classes)
            if rest:
                groups.append((-1, np.ones(len(frames), bool), rest))
        else:
            groups = [(-1, np.ones(len(frames), bool), self.n_components)]

        blocks, owners, self.n_iter_ = [], [], 0
        with _convergence_told_once(self, len(groups) + 1):
            for c, sel, k in tqdm(
                groups, desc="dictionary blocks", disable=not self.verbose or len(groups) == 1
            ):
                part = frames[sel]
                if self.max_frames is not None and len(part) > self.max_frames:
                    part = part[rng.choice(len(part), self.max_frames, replace=False)]
                if len(part) < k and self.init in (None, "nndsvd", "nndsvda", "nndsvdar"):
                    nmf = self._nmf(k).set_params(init="random")
                else:
                    nmf = self._nmf(k)
                nmf.fit(part)
                self.n_iter_ = max(self.n_iter_, nmf.n_iter_)
                blocks.append(nmf.components_)
                owners.append(np.full(k, c))
            self._set_components(np.vstack(blocks), np.concatenate(owners))
            sample = (
                frames
                if len(frames) <= 20000
                else frames[rng.choice(len(frames), 20000, replace=False)]
            )
            Ht = self._activations(sample)
        self.reconstruction_err_ = float(np.linalg.norm(sample - Ht @ self.components_))
        return self

    def _predicted_classes(self, y, rows: int) -> np.ndarray | None:
        """Each row's predicted class where ``per_class`` learns blocks, else ``None``."""
        mode = "auto" if isinstance(self.per_class, str) else bool(self.per_class)
        if mode is False or (mode == "auto" and y is None):
            return None
        if y is None:
            raise ValueError(
                "per_class=True learns one block per predicted class and needs y "
                "(the classifier's outputs per clip) in fit."
            )
        if mode == "auto" and self.n_components < MIN_PREDICTED_CLASSES * MIN_PATTERNS_PER_CLASS:
            return None  # too few patterns for enough classes: y need not even be read
        try:
            labels = check_outputs(y, rows).argmax(axis=1)
        except ValueError:
            if mode != "auto":
                raise
            # not one row of class scores per clip (a detector's single output, or a y that a
            # standalone transformer is handed and ignores, as NMF does): nothing to split by
            return None
        n_classes = len(np.unique(labels))
        if mode == "auto":
            enough = (
                n_classes >= MIN_PREDICTED_CLASSES
                and self.n_components // n_classes >= MIN_PATTERNS_PER_CLASS
            )
            return labels if enough else None
        if self.n_components < n_classes:
            raise ValueError(
                f"n_components={self.n_components} is fewer than the {n_classes} predicted classes; "
                "per_class=True needs at least one component per class."
            )
        return labels

    def _set_components(self, Wt, owners):
        norms = np.linalg.norm(Wt, axis=1, keepdims=True)
        # a component that came out all zero (too little data) is kept as a flat spectrum
        Wt = np.where(norms > 0, Wt / np.where(norms > 0, norms, 1), 1 / np.sqrt(Wt.shape[1]))
        self.components_ = Wt
        self.dictionary_ = np.ascontiguousarray(Wt.T)
        self.class_of_component_ = owners
        self.n_components_ = Wt.shape[0]

    def partial_fit(self, X, y=None):
        """Update W with the frames of ``X`` (one chunk of a corpus too large for memory).

        Uses ``MiniBatchNMF.partial_fit`` on mini-batches of ``batch_size`` frames (1024 when
        ``batch_size`` is None), shuffled. Call it on chunk after chunk, over as many passes as
        needed; :func:`fit_streaming` does that from waveform batches or audio files. ``fit``
        starts anew. ``reconstruction_err_`` is then the error on the latest chunk (at most 2000
        of its frames); :meth:`reconstruction_error` measures any data.

        Parameters
        ----------
        X : AudioFeatures or array (n_frames, F)
            Clips from a ``SpectrogramTransformer`` or rows of non-negative spectra.
        y : ignored
        """
        first = not hasattr(self, "_minibatch")
        if first:
            self._validate_params()
            self._check_solver()
            if not isinstance(self.per_class, str) and self.per_class:
                raise ValueError(
                    "per_class=True learns one block per class from all the data at once; "
                    "partial_fit learns one dictionary from a stream. Use per_class=False "
                    "(or 'auto', which learns one there)."
                )
            self.per_class_ = False
        frames, _ = self._frames(X, reset=first)
        frames = self._floor(frames)
        if first:
            self._minibatch = self._nmf(self.n_components, self.batch_size or 1024)
            self._rng = check_random_state(self.random_state)
            self.n_iter_ = 0
        size = self._minibatch.batch_size
        order = self._rng.permutation(len(frames))
        for start in range(0, len(frames), size):
            chunk = frames[order[start : start + size]]
            if self.n_iter_ == 0 and len(chunk) < self.n_components:
                self._minibatch.set_params(init="random")
            self._minibatch.partial_fit(chunk)
            self.n_iter_ += 1
        self._set_components(
            self._minibatch.components_, np.full(self._minibatch.components_.shape[0], -1)
        )
        sample = frames[order[:2000]]
        self.reconstruction_err_ = float(
            np.linalg.norm(sample - self._activations(sample) @ self.components_)
        )
        return self

    def reconstruction_error(self, X) -> float:
        """Frobenius error ‖V − W H‖ over all frames of ``X``, with H re-solved for W.

        Examples
        --------
        >>> V = np.random.default_rng(0).random((40, 10))
        >>> d = NMFDictionary(n_components=10, max_iter=500, random_state=0).fit(V)
        >>> bool(d.reconstruction_error(V) < 0.1 * np.linalg.norm(V))
        True
        """
        check_is_fitted(self)
        frames, _ = self._frames(X, reset=False)
        frames = self._floor(frames)
        return float(np.linalg.norm(frames - self._activations(frames) @ self.components_))

    def _activations(self, frames: np.ndarray) -> np.ndarray:
        Ht, _, _ = non_negative_factorization(
            frames,
            H=self.components_.astype(frames.dtype),
            n_components=self.n_components_,
            update_H=False,
            beta_loss=self.beta_loss,
            solver=self.solver,
            max_iter=self.max_iter,
            tol=self.tol,
        )
        return Ht

    def transform(self, X):
        """Activations of the dictionary (plain arrays), or the clips with the dictionary attached.

        For a plain array of spectra, NMF's activations Hᵀ ``(rows, K)``, like ``NMF.transform``.
        For :class:`~nmfinterp.features.AudioFeatures` (the pipeline path), the same features with
        this dictionary attached and no activations solved: the interpreter learns its own H and
        never reads NMF's, so solving them for every clip in each ``fit``/``predict`` would be
        wasted. They are solved on demand by ``X.block("activations")`` or
        :meth:`clip_activations`.
        """
        check_is_fitted(self)
        if is_audio_features(X):
            self._frames(X[:1], reset=False)  # checks the frequency bins only
            out = X.view(AudioFeatures)
            out.blocks = {k: v for k, v in X.blocks.items() if k != "activations"}
            out.spectrogram, out.dictionary = X.spectrogram, self
            return out
        frames, _ = self._frames(X, reset=False)
        return self._activations(self._floor(frames))

    def clip_activations(self, X) -> np.ndarray:
        """NMF's activations of each clip of ``X`` (AudioFeatures), ``(n_clips, K, T)``."""
        check_is_fitted(self)
        frames, n_clips = self._frames(X, reset=False)
        if n_clips is None:
            raise ValueError(
                "clip_activations needs the AudioFeatures made by SpectrogramTransformer; for "
                "plain rows of spectra use transform."
            )
        return from_frames(self._activations(self._floor(frames)), n_clips).astype(np.float32)

    def inverse_transform(self, X):
        """Spectra back from activations: W·H (plain arrays: rows of Hᵀ -> rows of spectra)."""
        check_is_fitted(self)
        if isinstance(X, AudioFeatures):
            H = X.block("activations")
            return np.einsum("fk,nkt->nft", self.dictionary_, H)
        return np.asarray(X) @ self.components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags


def _waveform_batches(source, sr: int, files_per_batch: int):
    from .datasets import load_audio

    if isinstance(source, str | os.PathLike):
        raise TypeError(
            f"got one path {os.fspath(source)!r}; expected a list of audio files, an iterable of "
            "waveform batches, or a function returning one."
        )
    if callable(source):
        source = source()
    items = iter(source)
    pending: list = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            pending.append(load_audio(Path(item), sr))
            if len(pending) == files_per_batch:
                yield pending
                pending = []
        else:
            yield item
    if pending:
        yield pending


def fit_streaming(
    dictionary: NMFDictionary,
    source: Iterable | Callable[[], Iterable],
    spectrogram,
    *,
    passes: int = 1,
    files_per_batch: int = 16,
) -> NMFDictionary:
    """Learn a dictionary from a corpus larger than memory, one batch of clips at a time.

    Each batch is turned into log-spectrogram frames (each clip at its own length) and given to
    :meth:`NMFDictionary.partial_fit`; only one batch is in memory at a time.

    Parameters
    ----------
    dictionary : NMFDictionary
        Set ``batch_size`` (frames per mini-batch). Updated in place and returned.
    source : list of audio file paths, iterable of waveform batches, or a function returning one
        File paths are read ``files_per_batch`` at a time (mono, resampled to
        ``spectrogram.sr``, as :func:`nmfinterp.datasets.load_audio` does). A batch of waveforms is
        a 2-D array ``(n_clips, n_samples)`` or a list of 1-D clips. With ``passes > 1`` pass a list
        or a function returning a fresh iterable (a generator is used up after one pass).
    spectrogram : SpectrogramTransformer
        The STFT settings (the same as in the pipeline). Fitted on the first batch if it is not.
    passes : int, default=1
        Passes over the corpus.

    Returns
    -------
    NMFDictionary

    Examples
    --------
    >>> from nmfinterp import SpectrogramTransformer
    >>> rng = np.random.default_rng(0)
    >>> batches = [rng.standard_normal((4, 2000)).astype(np.float32) for _ in range(3)]
    >>> d = fit_streaming(NMFDictionary(n_components=4, batch_size=64, random_state=0), batches,
    ...                   SpectrogramTransformer(n_fft=256), passes=2)
    >>> d.dictionary_.shape
    (129, 4)
    """
    from ._validation import check_waveforms
    from .spectrogram import log_magnitude

    if not isinstance(passes, Integral) or passes < 1:
        raise ValueError(f"passes={passes!r}; expected a positive integer.")
    if passes > 1 and not callable(source) and iter(source) is source:
        raise ValueError(
            "passes > 1 needs a source that can be read again: a list, or a function returning a "
            "fresh iterable; a generator is used up after one pass."
        )
    if hasattr(dictionary, "_minibatch"):
        del dictionary._minibatch
    seen = False
    for p in range(passes):
        for batch in tqdm(
            _waveform_batches(source, spectrogram.sr, files_per_batch),
            desc=f"dictionary, pass {p + 1}/{passes}",
            unit="batch",
            disable=not dictionary.verbose,
            leave=False,
        ):
            clips = check_waveforms(
                batch, min_samples=spectrogram.n_fft // 2 + 1, allow_ragged=True, name="batch"
            )
            if not hasattr(spectrogram, "hop_length_"):
                spectrogram.fit(clips)
            frames = [
                log_magnitude(spectrogram.stft(c[None]))[0].numpy().T.astype(np.float64)
                for c in clips
            ]
            dictionary.partial_fit(np.concatenate(frames))
            seen = True
    if not seen:
        raise ValueError("the source gave no batch of clips; expected at least one.")
    return dictionary
