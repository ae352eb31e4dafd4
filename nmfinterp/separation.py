"""Supervised NMF source separation by class: what a clip's magnitude spectrogram owes to each
class's own spectral patterns.

:class:`ClassNMFSeparation` is a listenable baseline explainer (``nmfinterp.baselines`` lists it)
and the hint ``explain``'s refinement can weight its contrast term by
(:meth:`nmfinterp.InterpreterEstimator.fit_separation` fits one with the interpreter).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ._validation import check_waveforms

__all__ = ["ClassNMFSeparation"]


def _clips(X, spectrogram) -> np.ndarray:
    X = check_waveforms(X, min_samples=spectrogram.n_fft // 2 + 1)
    return X[None, :] if X.ndim == 1 else X


@contextlib.contextmanager
def _early_stop_quiet():
    """Silence scikit-learn's warning that an NMF fit stopped at ``max_iter`` (the separation fits
    a few hundred iterations on purpose)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Maximum number of iterations")
        yield


class ClassNMFSeparation(BaseEstimator):
    """Supervised NMF source separation as an explainer: the part of a clip that class c's own
    spectral patterns model.

    ``fit(X, y)`` learns, for each class the classifier predicts (argmax of ``y``) on at least one
    training clip, a block of ``n_components`` patterns with :class:`sklearn.decomposition.NMF`
    (``beta_loss``, the multiplicative-update solver) on the STFT magnitudes of those clips (at
    most ``max_frames`` frames a class, drawn at random among those above −60 dB of the class's
    loudest); the patterns are L2-normalised. ``masks(X, classes)`` fits the activations of the
    clip's magnitude spectrogram with every block fixed
    (:func:`sklearn.decomposition.non_negative_factorization`) and returns the class-c block's
    share of the model, W_c H_c / (W H), in [0, 1] on the clip's STFT grid: the classic
    supervised separation of the clip into one source per class (Smaragdis et al., 2007), in the
    linear magnitude domain, where sources add (nmfinterp's dictionary models the
    log-magnitude). A class without a block (never predicted on the training clips) gets an empty
    mask. The classifier is used only through ``y``: no hidden layers, no gradients.

    Parameters
    ----------
    spectrogram : SpectrogramTransformer
        The STFT grid of the masks: the pipeline's (fitted), or one that ``fit`` fits (a clone)
        on ``X``.
    n_components : int, default=10
        Patterns per class.
    beta_loss : {"kullback-leibler", "frobenius", "itakura-saito"}, default="kullback-leibler"
    max_iter : int, default=200
        Iterations of each NMF fit (dictionary and activations).
    max_frames : int, default=4000
    random_state : int or None, default=0

    Attributes
    ----------
    spectrogram_ : SpectrogramTransformer
        The fitted STFT grid: ``spectrogram`` itself when it was fitted.
    components_ : ndarray (n_patterns, F)
        The blocks learned, class by class (scikit-learn's orientation: one pattern per row).
    class_of_component_ : ndarray (n_patterns,) of int
        The class each pattern was learned on (as ``NMFDictionary.class_of_component_``).
    classes_ : ndarray (n_classes,) of bool
        Which classes have a block.
    """

    def __init__(
        self,
        spectrogram,
        *,
        n_components: int = 10,
        beta_loss: str = "kullback-leibler",
        max_iter: int = 200,
        max_frames: int = 4000,
        random_state: int | None = 0,
    ):
        self.spectrogram, self.n_components, self.beta_loss = spectrogram, n_components, beta_loss
        self.max_iter, self.max_frames, self.random_state = max_iter, max_frames, random_state

    def _magnitudes(self, x: np.ndarray) -> np.ndarray:
        return self.spectrogram_.stft(x).abs().numpy()  # (n, F, T)

    def fit(self, X, y) -> ClassNMFSeparation:
        from sklearn.decomposition import NMF

        x = _clips(X, self.spectrogram)
        y = np.asarray(y, dtype=float)
        if y.ndim != 2 or len(y) != len(x) or y.shape[1] < 2:
            raise ValueError(
                f"y has shape {y.shape}; expected the classifier's outputs on the {len(x)} clips, "
                "(n_clips, n_classes) with at least 2 classes."
            )
        if not isinstance(self.n_components, int | np.integer) or self.n_components < 1:
            raise ValueError(f"n_components={self.n_components!r}; expected a positive integer.")
        predicted = y.argmax(1)
        try:
            check_is_fitted(self.spectrogram)
            self.spectrogram_ = self.spectrogram
        except NotFittedError:  # e.g. after sklearn's clone: the same grid, fitted on X
            self.spectrogram_ = clone(self.spectrogram).fit(x)
        S = self._magnitudes(x)
        n_classes, n_bins = y.shape[1], S.shape[1]
        rng = np.random.default_rng(self.random_state)
        blocks = []
        for c in range(n_classes):
            frames = S[predicted == c].transpose(0, 2, 1).reshape(-1, n_bins)
            energy = (frames**2).sum(1)
            frames = frames[energy > 1e-6 * energy.max(initial=0.0)]
            if len(frames) < self.n_components:
                continue  # too few frames for a block: an empty mask for this class
            frames = frames[rng.permutation(len(frames))[: self.max_frames]]
            with _early_stop_quiet():
                nmf = NMF(
                    self.n_components,
                    beta_loss=self.beta_loss,
                    solver="mu",
                    init="nndsvda",
                    max_iter=self.max_iter,
                    random_state=self.random_state,
                ).fit(frames)
            W = nmf.components_
            blocks.append((c, W / (np.linalg.norm(W, axis=1, keepdims=True) + 1e-12)))
        patterns = [W for _, W in blocks] or [np.zeros((0, n_bins))]
        self.components_ = np.concatenate(patterns).astype(np.float32)
        self.class_of_component_ = np.repeat([c for c, _ in blocks], self.n_components)
        self.classes_ = np.isin(np.arange(n_classes), self.class_of_component_)
        return self

    def masks(self, X, classes) -> np.ndarray:
        from sklearn.decomposition import non_negative_factorization

        if not hasattr(self, "components_"):
            raise RuntimeError("ClassNMFSeparation is not fitted yet: call fit(X_train, y) first.")
        x = _clips(X, self.spectrogram_)
        n_classes, W = len(self.classes_), self.components_.astype(np.float64)
        classes = np.array(np.broadcast_to(np.asarray(classes, dtype=int), (len(x),)))
        bad = classes[(classes < 0) | (classes >= n_classes)]
        if len(bad):
            raise ValueError(f"classes {bad.tolist()} out of range; expected 0..{n_classes - 1}.")
        S = self._magnitudes(x)
        masks = np.zeros_like(S)
        for i, c in enumerate(classes):
            if not self.classes_[c]:
                continue
            with _early_stop_quiet():
                H, _, _ = non_negative_factorization(
                    S[i].T.astype(np.float64) + 1e-9,
                    H=W,
                    n_components=len(W),
                    update_H=False,
                    beta_loss=self.beta_loss,
                    solver="mu",
                    max_iter=self.max_iter,
                )
            block = self.class_of_component_ == c
            model = H @ W
            part = H[:, block] @ W[block]
            masks[i] = (part / np.maximum(model, 1e-12)).T
        return np.clip(masks, 0.0, 1.0).astype(np.float32)
