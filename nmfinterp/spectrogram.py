"""Waveforms to log-magnitude spectrograms V = log(1 + |STFT|), and back with a given phase."""

from __future__ import annotations

from numbers import Integral

import librosa
import numpy as np
import scipy.signal
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._validation import check_allocation, check_waveforms
from .features import AudioFeatures, is_audio_features


def _window(window, n_fft: int) -> torch.Tensor:
    return torch.as_tensor(
        librosa.filters.get_window(window, n_fft, fftbins=True), dtype=torch.float32
    )


def stft(waveforms, *, n_fft: int = 1024, hop_length: int = 256, window="hann") -> torch.Tensor:
    """Complex STFT of a batch of waveforms, ``(n_clips, F, T)``, as librosa computes it.

    Centred frames with zero padding (librosa's default ``pad_mode="constant"``), F = n_fft // 2 + 1,
    T = 1 + n_samples // hop_length. Differentiable (torch), so a loss can pass through it.

    Examples
    --------
    >>> import numpy as np, librosa
    >>> x = np.random.default_rng(0).standard_normal((1, 2048)).astype(np.float32)
    >>> S = stft(x, n_fft=512, hop_length=128)
    >>> tuple(S.shape)
    (1, 257, 17)
    >>> bool(np.allclose(S[0].numpy(), librosa.stft(x[0], n_fft=512, hop_length=128), atol=1e-3))
    True
    """
    x = torch.as_tensor(waveforms)
    win = _window(window, n_fft).to(x.device)
    return torch.stft(
        x, n_fft, hop_length, window=win, center=True, pad_mode="constant", return_complex=True
    )


def istft(
    spec: torch.Tensor, *, length: int, n_fft: int = 1024, hop_length: int = 256, window="hann"
):
    """Inverse of :func:`stft` for ``(n_clips, F, T)`` complex spectra, trimmed/padded to ``length``."""
    spec = torch.as_tensor(spec)
    win = _window(window, n_fft).to(spec.device)
    return torch.istft(spec, n_fft, hop_length, window=win, center=True, length=length)


def log_magnitude(spec: torch.Tensor) -> torch.Tensor:
    """V = log(1 + |S|), the NMF target of L2I."""
    return torch.log1p(spec.abs())


def resynthesize(
    magnitude, phase, *, length: int, n_fft: int = 1024, hop_length: int = 256, window="hann"
):
    """Waveform from a linear magnitude and a phase (radians or a complex unit phasor), ``(n, length)``.

    This is the explanation path: a masked magnitude of the input with the input's own phase.
    """
    magnitude = torch.as_tensor(magnitude, dtype=torch.float32)
    phase = torch.as_tensor(phase)
    if phase.is_complex():  # a spectrum: keep its phase only
        phase = phase.angle()
    phasor = torch.polar(torch.ones_like(phase, dtype=torch.float32), phase.float())
    return istft(
        magnitude * phasor, length=length, n_fft=n_fft, hop_length=hop_length, window=window
    )


class SpectrogramTransformer(TransformerMixin, BaseEstimator):
    """Turn waveforms into log-magnitude spectrograms V = log(1 + |STFT(x)|), one row per clip.

    Parameters
    ----------
    sr : int, default=16000
        Sample rate of the clips (kept for writing WAVs and for the classifier's front end).
    n_fft : int, default=1024
        FFT size; F = n_fft // 2 + 1 frequency bins (513, as the official L2I dictionaries).
    hop_length : int or None, default=None
        Hop between frames; ``None`` means ``n_fft // 4`` (librosa's default).
    window : str or tuple, default="hann"
        Any window ``librosa.filters.get_window`` knows; it must satisfy NOLA for the inverse.
    n_samples : int or None, default=None
        Clip length. ``None`` takes the length of the clips seen in ``fit``.

    Attributes
    ----------
    n_samples_ : int
        Clip length every row has. Length policy: in ``transform``, shorter clips are zero-padded at
        the end and longer ones trimmed to ``n_samples_``, so every row has the same F*T columns
        (``explain`` is different: it explains every clip at its own length).
    n_freqs_, n_frames_ : int
        F and T of one clip's spectrogram.
    hop_length_ : int
        The hop actually used.

    Notes
    -----
    ``transform`` returns :class:`~nmfinterp.features.AudioFeatures`: the flattened spectrograms
    ``(n_clips, F*T)`` followed by the (padded) waveforms, so that the interpreter at the end of the
    pipeline can feed the classifier the very clip the spectrogram came from.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((3, 4000)).astype(np.float32)
    >>> spec = SpectrogramTransformer(n_fft=256).fit(X)
    >>> Xt = spec.transform(X)
    >>> spec.n_freqs_, spec.n_frames_, Xt.block("spectrogram").shape
    (129, 63, (3, 129, 63))
    """

    _parameter_constraints: dict = {
        "sr": [Interval(Integral, 1, None, closed="left")],
        "n_fft": [Interval(Integral, 2, None, closed="left")],
        "hop_length": [Interval(Integral, 1, None, closed="left"), None],
        "window": [str, tuple],
        "n_samples": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, sr=16000, n_fft=1024, hop_length=None, window="hann", n_samples=None):
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window = window
        self.n_samples = n_samples

    # ---- pieces each step can call alone ----
    @property
    def _stft_kwargs(self) -> dict:
        return {"n_fft": self.n_fft, "hop_length": self.hop_length_, "window": self.window}

    def stft(self, waveforms) -> torch.Tensor:
        """Complex STFT ``(n_clips, F, T)`` with this transformer's settings (any clip length)."""
        check_is_fitted(self)
        return stft(torch.as_tensor(waveforms), **self._stft_kwargs)

    def _istft_torch(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        return istft(spec, length=length, **self._stft_kwargs)

    def istft(self, spec, length: int) -> np.ndarray:
        """Waveforms ``(n, length)`` float32 from complex spectra ``(n, F, T)``."""
        check_is_fitted(self)
        return istft(torch.as_tensor(spec), length=length, **self._stft_kwargs).numpy()

    def resynthesize(self, magnitude, phase, length: int) -> np.ndarray:
        """Waveforms ``(n, length)`` float32 from linear magnitudes and phases ``(n, F, T)``."""
        check_is_fitted(self)
        return resynthesize(magnitude, phase, length=length, **self._stft_kwargs).numpy()

    def apply_mask(self, waveforms, mask, domain: str = "linear") -> np.ndarray:
        """Mask the clips' STFT (their own phase kept) and return the audio, ``(n, n_samples)``.

        ``mask`` is ``(n, F, T)`` on the frame grid of :meth:`stft` of the same clips. The clips
        are zero-padded by a whole number of hops on both sides before the STFT (the mask's edge
        frames repeated over the padding) and the result trimmed back: every sample is then
        covered by all the frames that overlap it, as inside the clip, so the edges are not
        amplified by the inverse STFT's normalisation. When the squared window overlap-adds to
        a constant (Hann with ``hop_length <= n_fft // 4``, the default), the result never has
        more energy than the clip for a mask in [0, 1].
        """
        check_is_fitted(self)
        x = torch.as_tensor(waveforms)
        padded = self._padded_stft(x)
        with torch.no_grad():
            return self._masked_audio(
                padded, torch.as_tensor(mask), x.shape[-1], domain, inplace=True
            ).numpy()

    def _n_frames(self, n_samples: int) -> int:
        """Frames :meth:`stft` gives a clip of ``n_samples`` (centred frames)."""
        return 1 + n_samples // self.hop_length_

    def _padded_stft(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """STFT of the clips zero-padded by whole hops (see :meth:`apply_mask`), and the padding
        in frames."""
        hop = self.hop_length_
        frames = -(-(self.n_fft // 2 + hop) // hop)
        return self.stft(torch.nn.functional.pad(x, (frames * hop, frames * hop))), frames

    def _masked_audio(
        self, padded, mask: torch.Tensor, n: int, domain: str, inplace: bool = False
    ) -> torch.Tensor:
        """Differentiable core of :meth:`apply_mask`: ``padded`` from :meth:`_padded_stft`.
        ``inplace`` masks ``padded``'s spectrum in place when it can (the linear domain, a mask of
        its real dtype): no padded copy of the mask, no second spectrum; ``padded`` is then spent."""
        from .explain import masked_spectrum

        S, frames = padded
        pad = frames * self.hop_length_
        T = S.shape[-1]
        if mask.shape[-1] + 2 * frames != T:
            raise ValueError(
                f"mask has {mask.shape[-1]} frames; expected {T - 2 * frames}, the "
                "frame count of stft() of these clips."
            )
        if inplace and domain == "linear" and mask.dtype == S.real.dtype:
            # the same product as masked_spectrum's, the edge frames taking the mask's edges
            S[..., frames : T - frames].mul_(mask)
            S[..., :frames].mul_(mask[..., :1])
            S[..., T - frames :].mul_(mask[..., -1:])
            masked = S
        else:
            M = torch.cat(
                [
                    mask[..., :1].expand(*mask.shape[:-1], frames),
                    mask,
                    mask[..., -1:].expand(*mask.shape[:-1], frames),
                ],
                dim=-1,
            )
            masked = masked_spectrum(S, M, domain)
        out = self._istft_torch(masked, n + 2 * pad)
        return out[..., pad : pad + n]

    def fit_length(self, waveforms) -> np.ndarray:
        """Apply the length policy: zero-pad or trim every clip to ``n_samples_``."""
        check_is_fitted(self)
        clips = waveforms if isinstance(waveforms, list) else list(waveforms)
        out = np.zeros((len(clips), self.n_samples_), dtype=np.float32)
        for i, c in enumerate(clips):
            n = min(len(c), self.n_samples_)
            out[i, :n] = c[:n]
        return out

    # ---- scikit-learn API ----
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Record the clip length and spectrogram geometry; learns nothing else."""
        hop = self.hop_length if self.hop_length is not None else self.n_fft // 4
        if self.n_samples is not None and self.n_samples < self.n_fft // 2 + 1:
            raise ValueError(
                f"n_samples={self.n_samples} is too short for n_fft={self.n_fft}; expected at least "
                f"{self.n_fft // 2 + 1} samples (or a smaller n_fft)."
            )
        if hop > self.n_fft:
            raise ValueError(
                f"hop_length={hop} is larger than n_fft={self.n_fft}; expected hop_length <= n_fft."
            )
        win = librosa.filters.get_window(self.window, self.n_fft, fftbins=True)
        if not scipy.signal.check_NOLA(win, self.n_fft, self.n_fft - hop):
            raise ValueError(
                f"window={self.window!r} with n_fft={self.n_fft}, hop_length={hop} cannot be inverted "
                "(NOLA fails); use a smaller hop_length or another window."
            )
        X = check_waveforms(
            X, min_samples=1 if self.n_samples else self.n_fft // 2 + 1, allow_ragged=True
        )
        lengths = [len(c) for c in X] if isinstance(X, list) else [X.shape[1]]
        self.n_samples_ = int(self.n_samples or max(lengths))
        self.hop_length_ = int(hop)
        self.n_freqs_ = self.n_fft // 2 + 1
        self.n_frames_ = self._n_frames(self.n_samples_)
        self.n_features_in_ = self.n_samples_ if not isinstance(X, list) else self.n_samples_
        return self

    def transform(self, X) -> AudioFeatures:
        """Log-spectrograms of the clips, flattened, followed by the waveforms (see Notes)."""
        check_is_fitted(self)
        X = check_waveforms(X, min_samples=1, allow_ragged=True)
        # the spectrograms, the complex STFT they come from and the waveforms, float32
        check_allocation(
            len(X) * (3 * self.n_freqs_ * self.n_frames_ + 2 * self.n_samples_) * 4,
            f"the spectrograms of {len(X)} clips of {self.n_samples_} samples",
            "Transform fewer clips at a time, or set n_samples to the clip length you need.",
        )
        if not isinstance(X, list) and X.shape[1] == self.n_samples_:
            waves = X
        else:
            waves = self.fit_length(X)
        V = log_magnitude(self.stft(waves)).numpy()
        F, T = self.n_freqs_, self.n_frames_
        blocks = {
            "spectrogram": (0, F * T, (F, T)),
            "waveform": (F * T, F * T + self.n_samples_, (self.n_samples_,)),
        }
        return AudioFeatures(np.hstack([V.reshape(len(V), -1), waves]), blocks, self)

    def inverse_transform(self, X) -> np.ndarray:
        """Waveforms back from ``transform``'s output (exact: they travel with the spectrogram)."""
        check_is_fitted(self)
        if is_audio_features(X):
            return X.block("waveform")
        raise ValueError(
            "inverse_transform expects the AudioFeatures returned by transform; to turn a magnitude and "
            "a phase into audio use resynthesize(magnitude, phase, length)."
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
