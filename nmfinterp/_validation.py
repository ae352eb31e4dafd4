"""The one gate every audio input passes (after ``librosa.util.valid_audio``).

Waveforms come in as int PCM or float, one clip (1-D), a batch of equal-length clips (2-D,
``(n_clips, n_samples)``) or a list of 1-D clips of different lengths. They leave as float32 in
[-1, 1] scale for PCM, with every problem reported once, naming what was wrong and what is expected.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from scipy.sparse import issparse
from sklearn.utils import check_array


def user_stacklevel() -> int:
    """``stacklevel`` for a ``warnings.warn`` in the calling function that points at the user's
    line: the first frame outside nmfinterp and scikit-learn (a ``Pipeline.fit`` call as well as a
    direct ``fit``), whatever the depth of the calls in between."""
    import sys

    import sklearn

    inside = tuple(
        os.path.dirname(m.__file__) + os.sep for m in (sys.modules[__package__], sklearn)
    )
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


_PCM_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def _as_float32(x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype in _PCM_SCALE:
        return (x.astype(np.float64) / _PCM_SCALE[x.dtype]).astype(np.float32)
    if x.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        return ((x.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
        return x.astype(np.float32)
    raise TypeError(
        f"{name} has dtype {x.dtype}; expected real-valued audio samples "
        "(float, or integer PCM such as int16)."
    )


def _check_finite(x: np.ndarray, name: str) -> None:
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).reshape(len(x), -1).all(axis=1)) if x.ndim > 1 else []
        where = f" (clips {bad[:10].tolist()})" if len(bad) else ""
        raise ValueError(
            f"{name} contains NaN or infinite samples{where}; audio must be finite. "
            "Replace them (e.g. np.nan_to_num) or drop those clips."
        )


def check_waveforms(
    X,
    *,
    min_samples: int = 1,
    name: str = "X",
    allow_ragged: bool = False,
    allow_1d: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """Validate waveforms and return them as float32.

    Parameters
    ----------
    X : array-like
        ``(n_clips, n_samples)`` array, or (with ``allow_1d``) one clip, or (with ``allow_ragged``)
        a list of 1-D clips of different lengths.
    min_samples : int
        Shortest clip accepted (an STFT needs at least ``n_fft`` samples to be meaningful).
    name : str
        How the input is called in error messages.
    allow_ragged, allow_1d : bool
        Accept a list of clips of different lengths, or a single 1-D clip.

    Returns
    -------
    ndarray or list of ndarray
        float32 waveforms: a 1-D or 2-D array, or a list of 1-D arrays when the clips differ in length.

    Examples
    --------
    >>> import numpy as np
    >>> check_waveforms(np.array([[0, 16384, -32768]], dtype=np.int16))
    array([[ 0. ,  0.5, -1. ]], dtype=float32)
    """
    if X is None:
        raise ValueError(f"{name} is None; expected waveforms of shape (n_clips, n_samples).")
    if isinstance(X, Sequence) and not isinstance(X, str | bytes) and len(X) == 0:
        raise ValueError(
            f"{name} is an empty list: it holds no clips; expected at least one waveform."
        )
    if isinstance(X, Sequence) and not isinstance(X, str | bytes) and len(X) > 0:
        clips = [np.asarray(c) for c in X]
        lengths = {c.shape for c in clips}
        if len(lengths) > 1 or (clips and clips[0].ndim != 1 and allow_ragged):
            if not allow_ragged:
                raise ValueError(
                    f"{name} holds clips of different lengths {sorted(s[0] if s else 0 for s in lengths)[:5]}; "
                    "expected a 2-D array (n_clips, n_samples). Pad or trim the clips to one length first."
                )
            out = []
            for i, c in enumerate(clips):
                if c.ndim != 1:
                    raise ValueError(
                        f"{name}[{i}] has shape {c.shape}; expected a 1-D mono waveform. "
                        "For stereo, average the channels first."
                    )
                out.append(
                    check_waveforms(c, min_samples=min_samples, name=f"{name}[{i}]", allow_1d=True)
                )
            return out
    if issparse(X):
        raise TypeError(
            f"{name} is a sparse matrix; sparse input is not supported: audio is dense. "
            "Pass a dense array (X.toarray())."
        )
    x = check_array(
        X,
        accept_sparse=False,
        dtype="numeric" if np.asarray(X).dtype == object else None,
        ensure_2d=False,
        allow_nd=True,
        ensure_all_finite=False,
        ensure_min_samples=0,
        input_name=name,
    )
    if np.iscomplexobj(x):
        raise ValueError(f"Complex data not supported: {name} must hold real audio samples.")
    if x.ndim == 1 and not allow_1d:
        raise ValueError(
            f"{name} is 1-D with shape {x.shape}; expected a 2-D array (n_clips, n_samples). "
            "Reshape your data: x[np.newaxis, :] for one clip."
        )
    if x.ndim == 0 or x.ndim > 2:
        hint = (
            " It looks like multi-channel audio: average the channels first (x.mean(axis=1))."
            if x.ndim == 3
            else ""
        )
        raise ValueError(
            f"{name} has {x.ndim} dimensions (shape {x.shape}); expected a 2-D array (n_clips, n_samples).{hint}"
        )
    if x.ndim == 2 and x.shape[0] == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={x.shape}) while a minimum of 1 is required: "
            f"{name} holds no clips."
        )
    n_samples = x.shape[-1]
    if n_samples < min_samples:
        channels = (
            " If this is one multi-channel clip laid out (n_samples, n_channels) as soundfile "
            "reads it, downmix it first: x.mean(axis=1) (what librosa.load(..., mono=True) does)."
            if x.ndim == 2 and 1 < n_samples <= 8 and x.shape[0] > 64 * n_samples
            else ""
        )
        raise ValueError(
            f"{name} has {n_samples} feature(s) (shape={x.shape}) while a minimum of {min_samples} is "
            f"required: clips of {n_samples} samples are too short (at least {min_samples}, "
            f"about half an analysis window). Pad short clips or use a smaller n_fft.{channels}"
        )
    x = _as_float32(x, name)
    _check_finite(x, name)
    return x


def check_outputs(
    y, n_clips: int, *, n_classes: int | None = None, name: str = "classifier_outputs"
):
    """Validate the classifier's outputs per clip: ``(n_clips, n_classes)`` scores or 1-D labels.

    1-D integer labels are turned into one-hot rows (``n_classes`` wide, or ``max + 1``).

    Examples
    --------
    >>> check_outputs([0, 2], 2).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if y is None:
        raise ValueError(
            f"requires y to be passed, but the target y is None: {name} must be the classifier's outputs for each clip, "
            "shape (n_clips, n_classes) (logits or probabilities), or 1-D predicted labels."
        )
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(
            f"Unknown label type: {name} has dtype {y.dtype}; expected numbers "
            "(logits, probabilities or integer labels)."
        )
    if y.ndim == 2 and y.shape[1] == 1:
        raise ValueError(
            f"{name} has a single column; expected one column per class (n_clips, n_classes), "
            "n_classes >= 2, or 1-D labels."
        )
    if y.ndim == 1:
        if len(y) != n_clips:
            raise ValueError(
                f"{name} has {len(y)} rows but there are {n_clips} clips; expected one row per clip."
            )
        if not np.all(np.isfinite(y)) or not np.all(np.equal(np.mod(y, 1), 0)) or (y < 0).any():
            raise ValueError(
                f"1-D {name} must be non-negative integer class labels; got other values. "
                "Pass scores as a 2-D array (n_clips, n_classes)."
            )
        labels = y.astype(int)
        width = n_classes if n_classes is not None else max(int(labels.max()) + 1, 2)
        if labels.max() >= width:
            raise ValueError(
                f"{name} has label {labels.max()}; expected labels below n_classes={width}."
            )
        return np.eye(width, dtype=np.float32)[labels]
    if y.ndim != 2:
        raise ValueError(f"{name} has shape {y.shape}; expected (n_clips, n_classes).")
    if y.shape[0] != n_clips:
        raise ValueError(
            f"{name} has {y.shape[0]} rows but there are {n_clips} clips; expected one row per clip."
        )
    if n_classes is not None and y.shape[1] != n_classes:
        raise ValueError(
            f"{name} has {y.shape[1]} columns; expected {n_classes}, the number of classes seen in fit."
        )
    y = y.astype(np.float32)
    if not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinite values; expected finite scores.")
    return y


def memory_limit() -> int:
    """Bytes of physical memory on this machine (what one allocation may take at most)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: no check
        return 2**63


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def check_allocation(nbytes: float, what: str, hint: str) -> None:
    """Refuse, before allocating, an array larger than this machine's memory.

    Examples
    --------
    >>> check_allocation(1e18, "the spectrograms", "Pass fewer clips at a time.")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    MemoryError: the spectrograms would take 888.2 PiB, more than this machine's ...
    """
    limit = memory_limit()
    if nbytes > limit:
        raise MemoryError(
            f"{what} would take {_size(nbytes)}, more than this machine's {_size(limit)} of "
            f"memory; nothing was allocated. {hint}"
        )
