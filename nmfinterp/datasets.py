"""Audio data: file loaders, controlled mixtures and an embedded synthetic data set.

Everything returns float32 numpy waveforms; a batch is a 2-D array ``(n_clips, n_samples)``.

- :func:`load_audio` reads one file (WAV, FLAC, ... anything :mod:`soundfile` reads) as mono,
  resampled to the requested rate and optionally padded/trimmed to a fixed duration.
- :func:`load_esc_folder` loads any folder in the ESC-50 layout (``meta.csv`` or ESC-50's
  ``meta/esc50.csv`` + ``audio/``),
  e.g. the ESC-10 copy in ``../shared/data/esc10``; :func:`load_fsdd` loads the Free Spoken
  Digit Dataset. Both return an :class:`AudioDataset`.
- :func:`make_mixture`, :func:`mix_at_gain` and :func:`mix_equal_rms` build mixtures whose
  two parts are known exactly (ground truth for the explanation metrics).
- :func:`make_synthetic_sounds` generates a small four-class data set ("bird", "engine",
  "rain", "siren") without any file, for examples, tests and quick experiments.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from scipy import signal

__all__ = [
    "AudioDataset",
    "Mixture",
    "SYNTHETIC_CLASSES",
    "esc_meta_path",
    "fix_length",
    "load_audio",
    "load_esc_folder",
    "load_fsdd",
    "make_mixture",
    "make_synthetic_sounds",
    "mix_at_gain",
    "mix_equal_rms",
    "rms",
]

#: Class names of :func:`make_synthetic_sounds`, in label order.
SYNTHETIC_CLASSES: tuple[str, ...] = ("bird", "engine", "rain", "siren")

_ESC_COLUMNS = ("filename", "fold", "target", "category")
#: where :func:`esc_meta_path` looks for the meta CSV of a folder, in turn: this repository's
#: layout, then ESC-50's own (``meta/esc50.csv`` beside ``audio/``)
_ESC_META_PATHS = ("meta.csv", "meta/esc50.csv")
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


# --------------------------------------------------------------------------------------------
# Data set container
# --------------------------------------------------------------------------------------------
@dataclass
class AudioDataset:
    """A labelled batch of equal-length clips.

    Attributes
    ----------
    waveforms : ndarray of float32, shape (n_clips, n_samples)
        The audio, mono, at rate ``sr``.
    labels : ndarray of int, shape (n_clips,)
        Class indices in ``0 .. n_classes - 1``; ``class_names[labels[i]]`` names clip ``i``.
    class_names : list of str
        One name per class, in label order.
    folds : ndarray of int, shape (n_clips,)
        Cross-validation fold (or split) of every clip; what it means depends on the loader.
    filenames : list of str
        Where each clip came from (a file name, or a synthetic identifier).
    sr : int
        Sample rate of ``waveforms`` in Hz.

    Examples
    --------
    >>> ds = make_synthetic_sounds(n_per_class=2, duration=0.25)
    >>> len(ds), ds.n_classes, ds.waveforms.shape
    (8, 4, (8, 4000))
    >>> train = ds.subset(ds.folds != 1)
    >>> len(train)
    4
    """

    waveforms: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    folds: np.ndarray
    filenames: list[str]
    sr: int
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.waveforms)
        for name in ("labels", "folds", "filenames"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"AudioDataset.{name} has {len(getattr(self, name))} entries but there are "
                    f"{n} waveforms; expected one per clip."
                )
        for name, values in self.extra.items():
            if len(values) != n:
                raise ValueError(
                    f"AudioDataset.extra[{name!r}] has {len(values)} entries but there are "
                    f"{n} waveforms; expected one per clip."
                )

    def __len__(self) -> int:
        return len(self.waveforms)

    @property
    def n_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def duration(self) -> float:
        """Length of every clip in seconds."""
        return self.waveforms.shape[1] / self.sr

    def subset(self, index: np.ndarray | Sequence[int] | slice) -> AudioDataset:
        """Return the clips selected by a boolean mask, integer indices or a slice.

        The class list is kept as it is, so labels stay comparable with the full set.
        """
        idx = np.arange(len(self))[index]
        return AudioDataset(
            waveforms=self.waveforms[idx],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            folds=self.folds[idx],
            filenames=[self.filenames[i] for i in idx],
            sr=self.sr,
            extra={k: np.asarray(v)[idx] for k, v in self.extra.items()},
        )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _check_sr(sr: int, name: str = "sr") -> int:
    if isinstance(sr, bool) or not isinstance(sr, int | np.integer) or sr <= 0:
        raise ValueError(
            f"{name}={sr!r} is not a valid sample rate; expected a positive integer (Hz)."
        )
    return int(sr)


def _n_samples(duration: float | None, sr: int) -> int | None:
    if duration is None:
        return None
    if not np.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration={duration!r}; expected a positive number of seconds or None.")
    return max(1, int(round(duration * sr)))


def fix_length(x: np.ndarray, n_samples: int) -> np.ndarray:
    """Trim or zero-pad the last axis of ``x`` to ``n_samples``.

    Examples
    --------
    >>> fix_length(np.ones(3, dtype=np.float32), 5)
    array([1., 1., 1., 0., 0.], dtype=float32)
    >>> fix_length(np.ones((2, 4), dtype=np.float32), 2).shape
    (2, 2)
    """
    x = np.asarray(x)
    n = x.shape[-1]
    if n == n_samples:
        return x
    if n > n_samples:
        return x[..., :n_samples]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, n_samples - n)]
    return np.pad(x, pad)


def rms(x: np.ndarray, axis: int | None = -1, keepdims: bool = False) -> np.ndarray:
    """Root-mean-square value along ``axis`` (computed in float64).

    Examples
    --------
    >>> float(rms(np.array([3.0, -3.0])))
    3.0
    """
    x = np.asarray(x, dtype=np.float64)
    return np.sqrt(np.mean(x**2, axis=axis, keepdims=keepdims))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def load_audio(path: str | os.PathLike, sr: int, duration: float | None = None) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at rate ``sr``.

    Multi-channel files are averaged to mono; files at another rate are resampled with
    :func:`librosa.resample`.

    Parameters
    ----------
    path : str or path-like
        Any file :mod:`soundfile` can read (WAV, FLAC, OGG, ...).
    sr : int
        Target sample rate in Hz.
    duration : float, optional
        If given, the clip is trimmed or zero-padded at the end to ``round(duration * sr)``
        samples.

    Returns
    -------
    ndarray of float32, shape (n_samples,)

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be decoded as audio, or ``sr`` / ``duration`` are invalid.
    """
    sr = _check_sr(sr)
    n_target = _n_samples(duration, sr)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Audio file {str(path)!r} does not exist; expected a readable audio file."
        )
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ValueError(
            f"Could not decode {str(path)!r} as audio ({exc}); expected a WAV, FLAC or other "
            "format readable by soundfile."
        ) from exc
    y = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if file_sr != sr and len(y) > 0:
        import librosa  # slow import: only when needed

        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr)
    y = np.ascontiguousarray(y, dtype=np.float32)
    if n_target is not None:
        y = fix_length(y, n_target)
    return y


def _stack(clips: list[np.ndarray], n_target: int | None) -> np.ndarray:
    n = n_target if n_target is not None else max((len(c) for c in clips), default=0)
    out = np.zeros((len(clips), n), dtype=np.float32)
    for i, c in enumerate(clips):
        c = c[:n]
        out[i, : len(c)] = c
    return out


def _as_int_set(values: Iterable[int] | int | None, name: str) -> set[int] | None:
    if values is None:
        return None
    if isinstance(values, int | np.integer):
        values = [values]
    try:
        return {int(v) for v in values}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}={values!r}; expected an iterable of integers or None.") from exc


def esc_meta_path(root: str | os.PathLike) -> Path:
    """The meta CSV of a folder in the ESC-50 layout: ``root/meta.csv`` (this repository's
    layout), else ``root/meta/esc50.csv`` (ESC-50's own release), else the one ``.csv`` file in
    ``root/meta/``. A clear error names the paths tried when there is none, or several
    candidates in ``meta/``.
    """
    root = Path(root)
    for name in _ESC_META_PATHS:
        if (root / name).is_file():
            return root / name
    found = sorted((root / "meta").glob("*.csv")) if (root / "meta").is_dir() else []
    if len(found) == 1:
        return found[0]
    tried = ", ".join(repr(str(root / name)) for name in _ESC_META_PATHS)
    if found:
        raise FileNotFoundError(
            f"{str(root)!r} has no meta.csv and several CSV files in meta/ "
            f"({', '.join(p.name for p in found)}); expected one meta CSV with columns "
            f"{', '.join(_ESC_COLUMNS)}: rename the one to use to {str(root / 'meta.csv')!r}."
        )
    raise FileNotFoundError(
        f"No meta CSV in {str(root)!r} (tried {tried} and meta/*.csv); expected an "
        f"ESC-50-style CSV with columns {', '.join(_ESC_COLUMNS)} beside audio/."
    )


def load_esc_folder(
    root: str | os.PathLike,
    sr: int = 16000,
    folds: Iterable[int] | int | None = None,
    duration: float | None = 5.0,
    categories: Iterable[str] | None = None,
) -> AudioDataset:
    """Load a folder in the ESC-50 layout.

    The folder must hold a meta CSV with (at least) the columns ``filename``, ``fold``,
    ``target`` and ``category`` (other columns are ignored), and the clips under
    ``audio/<filename>`` (any sample rate, any format soundfile reads: WAV, FLAC, ...). The CSV is
    ``meta.csv``, or ESC-50's own ``meta/esc50.csv``, or the one CSV file in ``meta/``
    (:func:`esc_meta_path`): an unpacked ESC-50 release loads as it is.

    Parameters
    ----------
    root : str or path-like
        The folder, e.g. ``"../shared/data/esc10"``.
    sr : int, default 16000
        Sample rate to resample every clip to.
    folds : int or iterable of int, optional
        Keep only these folds (e.g. ``[1, 2, 3]``); default all.
    duration : float or None, default 5.0
        Clip length in seconds (zero-padded / trimmed at the end). ``None`` pads every clip to
        the longest one.
    categories : iterable of str, optional
        Keep only these categories; default all.

    Returns
    -------
    AudioDataset
        Rows in the meta CSV's order. ``labels`` are re-indexed ``0 .. n_classes - 1`` following
        the alphabetical order of the kept category names (``class_names``); the original
        ESC-50 class index is in ``extra["target"]``. ``folds`` are the folds of the meta CSV.

    Raises
    ------
    FileNotFoundError
        If ``root``, the meta CSV or one of the listed audio files is missing.
    ValueError
        If the meta CSV lacks a required column or has malformed rows, if an unknown
        category is requested, or if no clip is left after filtering.
    """
    sr = _check_sr(sr)
    n_target = _n_samples(duration, sr)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"ESC folder {str(root)!r} does not exist; expected a folder holding a meta CSV "
            "(meta.csv or meta/esc50.csv) and audio/."
        )
    meta = esc_meta_path(root)
    with open(meta, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in _ESC_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"{str(meta)!r} lacks column(s) {missing}; expected at least the columns "
                f"{', '.join(_ESC_COLUMNS)} (found {header})."
            )
        reader.fieldnames = header
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append(
                    (
                        row["filename"].strip(),
                        int(row["fold"]),
                        int(row["target"]),
                        row["category"].strip(),
                    )
                )
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(
                    f"{str(meta)!r} line {line} is malformed ({row}); expected a file name, an "
                    "integer fold, an integer target and a category name."
                ) from exc
    if not rows:
        raise ValueError(f"{str(meta)!r} lists no clips; expected at least one row.")

    all_categories = {r[3] for r in rows}
    if categories is not None:
        if isinstance(categories, str):
            categories = [categories]
        wanted = set(categories)
        unknown = sorted(wanted - all_categories)
        if unknown:
            raise ValueError(
                f"categories {unknown} are not in {str(meta)!r}; expected some of {sorted(all_categories)}."
            )
        rows = [r for r in rows if r[3] in wanted]
    fold_set = _as_int_set(folds, "folds")
    if fold_set is not None:
        available = sorted({r[1] for r in rows})
        rows = [r for r in rows if r[1] in fold_set]
        if not rows:
            raise ValueError(
                f"No clip of {str(meta)!r} is in folds {sorted(fold_set)}; expected some of {available}."
            )

    audio_dir = root / "audio"
    paths = [audio_dir / r[0] for r in rows]
    missing_files = [str(p) for p in paths if not p.is_file()]
    if missing_files:
        more = f" (and {len(missing_files) - 3} more)" if len(missing_files) > 3 else ""
        raise FileNotFoundError(
            f"Audio file(s) listed in {meta.name} are missing: {missing_files[:3]}{more}; "
            f"expected every filename of {str(meta)!r} under {str(audio_dir)!r}."
        )
    clips = [load_audio(p, sr, duration) for p in paths]
    class_names = sorted({r[3] for r in rows})
    index = {name: i for i, name in enumerate(class_names)}
    return AudioDataset(
        waveforms=_stack(clips, n_target),
        labels=np.array([index[r[3]] for r in rows], dtype=np.int64),
        class_names=class_names,
        folds=np.array([r[1] for r in rows], dtype=np.int64),
        filenames=[r[0] for r in rows],
        sr=sr,
        extra={"target": np.array([r[2] for r in rows], dtype=np.int64)},
    )


def load_fsdd(
    root: str | os.PathLike,
    sr: int = 16000,
    n_clips: int | None = None,
    speakers: Iterable[str] | None = None,
    random_state: int | None = 0,
    duration: float | None = None,
) -> AudioDataset:
    """Load the Free Spoken Digit Dataset (files ``{digit}_{speaker}_{index}.wav``).

    Parameters
    ----------
    root : str or path-like
        The folder holding the WAV files, e.g. ``"../shared/data/fsdd"``.
    sr : int, default 16000
        Sample rate to resample to (the recordings are 8 kHz).
    n_clips : int, optional
        Keep a random subset of this many clips (drawn with ``random_state``); default all.
    speakers : iterable of str, optional
        Keep only these speakers (e.g. ``["george", "jackson"]``); default all.
    random_state : int or None, default 0
        Seed of the subset drawn when ``n_clips`` is given.
    duration : float, optional
        Clip length in seconds; default pads every clip to the longest one kept.

    Returns
    -------
    AudioDataset
        Sorted by (digit, speaker, index). ``labels`` are the digits, ``class_names`` are
        ``"0" .. "9"``. ``folds`` follow the dataset's official split: 0 for the test takes
        (index 0-4), 1 for the training takes. ``extra["speaker"]`` and ``extra["index"]``
        hold the speaker name and take number.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist or holds no FSDD-named WAV file.
    ValueError
        If an unknown speaker is requested or ``n_clips`` is out of range.
    """
    sr = _check_sr(sr)
    n_target = _n_samples(duration, sr)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"FSDD folder {str(root)!r} does not exist; expected a folder of "
            "'{digit}_{speaker}_{index}.wav' files."
        )
    entries = []
    for p in root.iterdir():
        m = _FSDD_NAME.match(p.name)
        if m:
            entries.append((int(m.group(1)), m.group(2), int(m.group(3)), p))
    if not entries:
        raise FileNotFoundError(
            f"{str(root)!r} holds no file named '{{digit}}_{{speaker}}_{{index}}.wav'; expected the "
            "Free Spoken Digit Dataset recordings."
        )
    if speakers is not None:
        if isinstance(speakers, str):
            speakers = [speakers]
        wanted = set(speakers)
        known = {e[1] for e in entries}
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(
                f"speakers {unknown} are not in {str(root)!r}; expected some of {sorted(known)}."
            )
        entries = [e for e in entries if e[1] in wanted]
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    if n_clips is not None:
        if (
            isinstance(n_clips, bool)
            or not isinstance(n_clips, int | np.integer)
            or not (1 <= n_clips <= len(entries))
        ):
            raise ValueError(
                f"n_clips={n_clips!r}; expected an integer between 1 and {len(entries)}."
            )
        rng = np.random.default_rng(random_state)
        keep = np.sort(rng.choice(len(entries), size=int(n_clips), replace=False))
        entries = [entries[i] for i in keep]
    clips = [load_audio(e[3], sr, duration) for e in entries]
    return AudioDataset(
        waveforms=_stack(clips, n_target),
        labels=np.array([e[0] for e in entries], dtype=np.int64),
        class_names=[str(d) for d in range(10)],
        folds=np.array([0 if e[2] < 5 else 1 for e in entries], dtype=np.int64),
        filenames=[e[3].name for e in entries],
        sr=sr,
        extra={
            "speaker": np.array([e[1] for e in entries]),
            "index": np.array([e[2] for e in entries], dtype=np.int64),
        },
    )


# --------------------------------------------------------------------------------------------
# Mixtures
# --------------------------------------------------------------------------------------------
class Mixture(NamedTuple):
    """A mixture and its two parts, exactly: ``mixture == target + other``."""

    mixture: np.ndarray
    target: np.ndarray
    other: np.ndarray


def _mix_inputs(s1, s2) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(s1, dtype=np.float32)
    b = np.asarray(s2, dtype=np.float32)
    if a.ndim not in (1, 2) or b.ndim not in (1, 2):
        raise ValueError(
            f"Sources have shapes {a.shape} and {b.shape}; expected 1-D waveforms or 2-D batches "
            "(n_clips, n_samples)."
        )
    if a.shape[-1] == 0:
        raise ValueError("The target source is empty; expected at least one sample.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("Sources contain NaN or infinite samples; expected finite audio.")
    b = fix_length(b, a.shape[-1])
    if a.ndim == 2 and b.ndim == 2 and a.shape[0] != b.shape[0]:
        raise ValueError(
            f"Sources hold {a.shape[0]} and {b.shape[0]} clips; expected the same number (or a "
            "single 1-D clip to mix into every one)."
        )
    return a, b


def mix_at_gain(s1: np.ndarray, s2: np.ndarray, gain: float) -> Mixture:
    """Mix ``s1 + gain * s2``, with ``s2`` trimmed or zero-padded to the length of ``s1``.

    Works on 1-D clips or on 2-D batches (along the last axis; a 1-D ``s2`` is mixed into
    every clip of a 2-D ``s1``).

    Returns
    -------
    Mixture
        ``(mixture, s1, gain * s2)`` as float32, with ``mixture == target + other`` exactly.

    Examples
    --------
    >>> m = mix_at_gain(np.ones(4, dtype=np.float32), np.ones(2, dtype=np.float32), 0.5)
    >>> m.mixture
    array([1.5, 1.5, 1. , 1. ], dtype=float32)
    >>> m.other
    array([0.5, 0.5, 0. , 0. ], dtype=float32)
    """
    if not np.isfinite(gain):
        raise ValueError(f"gain={gain!r}; expected a finite number.")
    a, b = _mix_inputs(s1, s2)
    other = (np.float32(gain) * b).astype(np.float32)
    target = np.broadcast_to(a, np.broadcast_shapes(a.shape, other.shape)).astype(np.float32)
    other = np.broadcast_to(other, target.shape).astype(np.float32)
    return Mixture(target + other, target, other)


def _scale_to(a: np.ndarray, b: np.ndarray, snr_db: float) -> np.ndarray:
    ra = rms(a, keepdims=True)
    rb = rms(b, keepdims=True)
    if np.any(rb == 0):
        raise ValueError(
            "The other source is silent (RMS 0), so it cannot be scaled to a level; expected a "
            "source with some energy."
        )
    return (ra / rb * 10.0 ** (-snr_db / 20.0)).astype(np.float32)


def mix_equal_rms(s1: np.ndarray, s2: np.ndarray) -> Mixture:
    """Mix ``s1`` with ``s2`` scaled to the RMS of ``s1`` (0 dB target-to-other ratio).

    ``s2`` is first trimmed or zero-padded to the length of ``s1``; for 2-D batches the RMS
    is matched clip by clip.

    Returns
    -------
    Mixture
        ``(mixture, s1, scaled s2)`` as float32, with ``mixture == target + other`` exactly.

    Examples
    --------
    >>> m = mix_equal_rms(np.full(4, 0.1, dtype=np.float32), np.ones(4, dtype=np.float32))
    >>> np.allclose(m.other, 0.1)
    True
    """
    return make_mixture(s1, s2, snr_db=0.0)


def make_mixture(
    target: np.ndarray,
    other: np.ndarray,
    gain: float | None = None,
    snr_db: float | None = None,
) -> Mixture:
    """Mix ``target`` with ``other`` at a fixed gain or at a target-to-other ratio.

    Parameters
    ----------
    target, other : ndarray
        1-D clips or 2-D batches ``(n_clips, n_samples)``; ``other`` is trimmed or zero-padded
        to the length of ``target``.
    gain : float, optional
        Mix ``target + gain * other`` (see :func:`mix_at_gain`).
    snr_db : float, optional
        Scale ``other`` so that ``20 log10(rms(target) / rms(other)) == snr_db`` (clip by clip).
        With neither ``gain`` nor ``snr_db``, the two parts get the same RMS (``snr_db=0``).

    Returns
    -------
    Mixture
        ``(mixture, target, scaled other)`` as float32, ``mixture == target + other`` exactly.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s1, s2 = rng.standard_normal((2, 800)).astype(np.float32)
    >>> mix, t, o = make_mixture(s1, s2, snr_db=6.0)
    >>> round(float(20 * np.log10(rms(t) / rms(o))), 3)
    6.0
    >>> bool(np.array_equal(mix, t + o))
    True
    """
    if gain is not None and snr_db is not None:
        raise ValueError("Both gain and snr_db were given; expected at most one of them.")
    if gain is not None:
        return mix_at_gain(target, other, gain)
    snr = 0.0 if snr_db is None else float(snr_db)
    if not np.isfinite(snr):
        raise ValueError(f"snr_db={snr_db!r}; expected a finite number of decibels.")
    a, b = _mix_inputs(target, other)
    shape = np.broadcast_shapes(a.shape, b.shape)
    a = np.broadcast_to(a, shape).astype(np.float32)
    b = np.broadcast_to(b, shape).astype(np.float32)
    scaled = (b * _scale_to(a, b, snr)).astype(np.float32)
    return Mixture(a + scaled, a, scaled)


# --------------------------------------------------------------------------------------------
# Synthetic sounds
# --------------------------------------------------------------------------------------------
def _fade(n: int, sr: int, ms: float = 10.0) -> np.ndarray:
    env = np.ones(n)
    k = min(n // 2, max(1, int(sr * ms / 1000)))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, k))
    env[:k] = ramp
    env[n - k :] = ramp[::-1]
    return env


def _siren(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    f0 = rng.uniform(450.0, 1100.0)
    rate = rng.uniform(0.8, 4.0)
    depth = rng.uniform(0.15, 0.35) * f0
    phase0 = rng.uniform(0, 2 * np.pi)
    inst = f0 + depth * np.sin(2 * np.pi * rate * t + phase0)
    phase = 2 * np.pi * np.cumsum(inst) / sr
    out = np.zeros(n)
    for k in (1, 2, 3):
        if k * (f0 + depth) < sr / 2:
            out += rng.uniform(0.4, 1.0) / k * np.sin(k * phase)
    return out


def _engine(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    f0 = rng.uniform(35.0, 110.0) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = np.zeros(n)
    tilt = rng.uniform(0.8, 1.5)
    for k in range(1, int(1500 / f0.max()) + 1):
        out += rng.uniform(0.5, 1.0) / k**tilt * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    am_rate = rng.uniform(6.0, 18.0)
    am = 1.0 - rng.uniform(0.3, 0.8) * (0.5 + 0.5 * np.sin(2 * np.pi * am_rate * t))
    out = out * am
    # a little mechanical noise in the low band
    sos = signal.butter(2, [60, 800], btype="bandpass", fs=sr, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal(n))
    return out / (rms(out) + 1e-12) + rng.uniform(0.05, 0.2) * noise / (rms(noise) + 1e-12)


def _bird(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    for _ in range(rng.integers(2, 7)):
        length = int(sr * rng.uniform(0.03, 0.12))
        if length >= n:
            length = n // 2
        start = rng.integers(0, n - length)
        f_start = rng.uniform(2500.0, 5500.0)
        f_end = f_start * rng.uniform(0.6, 1.6)
        inst = np.linspace(f_start, min(f_end, 0.45 * sr), length)
        phase = 2 * np.pi * np.cumsum(inst) / sr
        chirp = np.sin(phase) + 0.3 * np.sin(2 * phase) * (2 * inst.max() < sr / 2)
        out[start : start + length] += rng.uniform(0.5, 1.0) * np.hanning(length) * chirp
    return out


def _rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    lo = rng.uniform(400.0, 2000.0)
    hi = min(lo * rng.uniform(2.0, 4.0), 0.45 * sr)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal(n))
    # slowly fluctuating intensity (bursts)
    n_ctrl = max(2, int(n / sr * rng.uniform(3.0, 10.0)))
    ctrl = rng.uniform(0.3, 1.0, n_ctrl)
    env = np.interp(np.arange(n), np.linspace(0, n - 1, n_ctrl), ctrl)
    out = env * noise / (rms(noise) + 1e-12)
    # crackle: sparse decaying droplets
    n_drops = rng.poisson(n / sr * rng.uniform(20.0, 80.0))
    drops = np.zeros(n)
    drops[rng.integers(0, n, n_drops)] = rng.uniform(-1.0, 1.0, n_drops)
    tau = int(sr * 0.002) + 1
    drops = np.convolve(drops, np.exp(-np.arange(4 * tau) / tau))[:n]
    sos_hp = signal.butter(2, 1500.0, btype="highpass", fs=sr, output="sos")
    drops = signal.sosfilt(sos_hp, drops)
    return out + rng.uniform(0.2, 0.7) * drops / (rms(drops) + 1e-12) * (n_drops > 0)


_GENERATORS = {"bird": _bird, "engine": _engine, "rain": _rain, "siren": _siren}


def _synthetic_clip(rng: np.random.Generator, name: str, n: int, sr: int) -> np.ndarray:
    # the event lasts 40-100 % of the clip (birds scatter their chirps inside it)
    length = max(int(n * rng.uniform(0.4, 1.0)), min(n, 64))
    start = int(rng.integers(0, n - length + 1))
    event = _GENERATORS[name](rng, length, sr) * _fade(length, sr)
    event = event / (rms(event) + 1e-12) * np.exp(rng.uniform(np.log(0.02), np.log(0.2)))
    peak = np.abs(event).max()
    if peak > 0.9:  # sparse events (chirps, droplets): limit the peak rather than clip
        event *= 0.9 / peak
    clip = np.zeros(n)
    clip[start : start + length] = event
    clip += rng.uniform(0.001, 0.006) * rng.standard_normal(n)
    return clip.astype(np.float32)


def make_synthetic_sounds(
    n_per_class: int = 40,
    sr: int = 16000,
    duration: float = 1.0,
    random_state: int | None = 0,
) -> AudioDataset:
    """Generate a four-class data set of synthetic environmental sounds (no file needed).

    The classes (``SYNTHETIC_CLASSES``, labels in that order) are

    - ``"bird"``: 2 to 6 short (30-120 ms) high chirps (2.5-5.5 kHz sweeps) at random times,
    - ``"engine"``: a low harmonic buzz (35-110 Hz fundamental) with 6-18 Hz amplitude
      modulation and some low-band noise,
    - ``"rain"``: band-passed noise with slowly fluctuating bursts plus sparse crackle,
    - ``"siren"``: a frequency-modulated harmonic tone (450-1100 Hz base pitch).

    Each event lasts 40-100 % of the clip at a random onset, is normalised to a random RMS in
    [0.02, 0.2] (so loudness says little about the class; sparse events are scaled down when
    their peak would exceed 0.9) and sits on faint white noise (RMS 0.001-0.006).

    Parameters
    ----------
    n_per_class : int, default 40
        Clips per class.
    sr : int, default 16000
        Sample rate in Hz.
    duration : float, default 1.0
        Clip length in seconds.
    random_state : int or None, default 0
        Seed. Clip ``i`` of a class depends only on ``(random_state, class, i)``, so a larger
        ``n_per_class`` extends a smaller set with the same first clips.

    Returns
    -------
    AudioDataset
        Clips interleaved by class (``labels`` = 0, 1, 2, 3, 0, 1, ...); ``folds`` are
        ``1 + i % 5`` for the ``i``-th clip of each class (five stratified folds).

    Examples
    --------
    >>> ds = make_synthetic_sounds(n_per_class=3, duration=0.5, random_state=1)
    >>> ds.waveforms.shape, ds.waveforms.dtype, ds.class_names
    ((12, 8000), dtype('float32'), ['bird', 'engine', 'rain', 'siren'])
    >>> ds.labels.tolist()
    [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]
    >>> bool(np.array_equal(ds.waveforms, make_synthetic_sounds(3, duration=0.5, random_state=1).waveforms))
    True
    """
    if (
        isinstance(n_per_class, bool)
        or not isinstance(n_per_class, int | np.integer)
        or n_per_class < 1
    ):
        raise ValueError(f"n_per_class={n_per_class!r}; expected a positive integer.")
    sr = _check_sr(sr)
    n = _n_samples(duration, sr)
    if n < 256:
        raise ValueError(
            f"duration={duration!r} s at sr={sr} gives {n} samples; expected at least 256."
        )
    if random_state is None:
        root_seed = np.random.SeedSequence().entropy
    elif (
        isinstance(random_state, int | np.integer)
        and not isinstance(random_state, bool)
        and random_state >= 0
    ):
        root_seed = int(random_state)
    else:
        raise ValueError(f"random_state={random_state!r}; expected a non-negative integer or None.")
    waveforms, labels, folds, names = [], [], [], []
    for i in range(int(n_per_class)):
        for c, name in enumerate(SYNTHETIC_CLASSES):
            rng = np.random.default_rng([root_seed, c, i])
            waveforms.append(_synthetic_clip(rng, name, n, sr))
            labels.append(c)
            folds.append(1 + i % 5)
            names.append(f"synthetic-{name}-{i:04d}")
    return AudioDataset(
        waveforms=np.stack(waveforms),
        labels=np.array(labels, dtype=np.int64),
        class_names=list(SYNTHETIC_CLASSES),
        folds=np.array(folds, dtype=np.int64),
        filenames=names,
        sr=sr,
    )
