"""Figures of explanations and dictionaries (matplotlib), for notebooks and the HTML report.

Every function builds on a :class:`matplotlib.figure.Figure` that it returns (or on the ``fig`` /
``ax`` you pass), never on pyplot's global state, so it works with the Agg backend, in a script
or in a notebook (a returned figure displays itself there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .explain import Explanations

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from .dictionary import NMFDictionary
    from .interpreter import InterpreterEstimator
    from .spectrogram import SpectrogramTransformer

__all__ = [
    "component_patterns",
    "input_waveform",
    "plot_dictionary",
    "plot_explanation",
    "plot_relevance",
    "spectrogram_of",
]


def _interpreter(model):
    from .explain import _interpreter_of

    return _interpreter_of(model)


def spectrogram_of(
    model: Pipeline | InterpreterEstimator | SpectrogramTransformer,
) -> SpectrogramTransformer:
    """The fitted :class:`~nmfinterp.SpectrogramTransformer` of a pipeline or interpreter.

    A fitted ``SpectrogramTransformer`` is returned as it is.

    Examples
    --------
    >>> pipe, X = _toy_pipeline()
    >>> spectrogram_of(pipe) is pipe[-1].spectrogram_, spectrogram_of(pipe).n_fft
    (True, 256)
    """
    from .spectrogram import SpectrogramTransformer

    if isinstance(model, SpectrogramTransformer):
        return model
    return _interpreter(model).spectrogram_


def component_patterns(
    model: Pipeline | InterpreterEstimator | NMFDictionary | np.ndarray,
) -> np.ndarray:
    """The dictionary W ``(F, K)`` of a fitted pipeline, interpreter or ``NMFDictionary``.

    A 2-D array is checked (non-negative, finite) and returned as float64.

    Examples
    --------
    >>> component_patterns(np.ones((5, 3))).shape
    (5, 3)
    """
    from .dictionary import NMFDictionary

    if isinstance(model, NMFDictionary):
        W = model.dictionary_
    elif isinstance(model, np.ndarray | torch.Tensor | list):
        W = np.asarray(model, dtype=np.float64)
        if W.ndim != 2 or not np.all(np.isfinite(W)) or (W < 0).any():
            raise ValueError(
                f"dictionary has shape {W.shape}; expected a finite non-negative (F, K) array "
                "(frequencies x components)."
            )
    else:
        W = _interpreter(model).dictionary_.dictionary_
    return np.asarray(W, dtype=np.float64)


def input_waveform(explanations: Explanations, index: int) -> np.ndarray:
    """The clip that was explained: explanation + residual (the residual is input − explanation).

    Examples
    --------
    >>> ex = _toy_explanations()
    >>> ex.waveforms[0, :2] = [0.25, 0.5]; ex.residuals[0, :2] = [0.5, 0.25]
    >>> input_waveform(ex, 0)[:3].tolist()
    [0.75, 0.75, 0.0]
    """
    _check_index(explanations, index)
    return np.asarray(explanations.waveforms[index], dtype=np.float32) + np.asarray(
        explanations.residuals[index], dtype=np.float32
    )


def _check_index(explanations: Explanations, index: int) -> None:
    if not isinstance(explanations, Explanations):
        raise TypeError(
            f"expected an Explanations (from nmfinterp.explain); got {type(explanations).__name__}."
        )
    if not -len(explanations) <= index < len(explanations):
        raise IndexError(
            f"index={index} out of range; these explanations hold {len(explanations)} clips."
        )


def _log_mag(spec, waveform: np.ndarray) -> np.ndarray:
    return np.log1p(spec.stft(waveform[None]).abs()[0].numpy())


def _new_fig(fig: Figure | None, figsize) -> Figure:
    if fig is None:
        return Figure(figsize=figsize, layout="constrained")
    fig.clear()
    return fig


def _class_label(c: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[c]) if class_names is not None else f"class {c}"


def plot_relevance(
    explanations: Explanations,
    index: int = 0,
    *,
    ax: Axes | None = None,
    max_components: int | None = 20,
) -> Axes:
    """Bars of the components' relevance r_k for one clip, most relevant first.

    Selected components are drawn in colour, the others in grey. Returns the axes.

    Parameters
    ----------
    explanations : Explanations
    index : int, default=0
        Which clip.
    ax : matplotlib Axes, optional
        Drawn on a new figure's axes when not given.
    max_components : int or None, default=20
        Show the most relevant this-many components (``None``: all).

    Examples
    --------
    >>> from nmfinterp.plots import plot_relevance
    >>> ex = _toy_explanations()
    >>> ax = plot_relevance(ex, 0)
    >>> len(ax.patches), [t.get_text() for t in ax.get_xticklabels()][:2]
    (4, ['2', '0'])
    """
    _check_index(explanations, index)
    r = np.asarray(explanations.relevance[index], dtype=float)
    order = np.argsort(-r, kind="stable")
    if max_components is not None:
        order = order[:max_components]
    selected = set(np.asarray(explanations.selected[index]).tolist())
    if ax is None:
        ax = Figure(figsize=(6, 2.5), layout="constrained").add_subplot()
    colors = ["tab:orange" if k in selected else "0.7" for k in order]
    ax.bar(np.arange(len(order)), r[order], color=colors)
    ax.set_xticks(np.arange(len(order)), [str(k) for k in order], fontsize=7)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("component (coloured: selected)")
    ax.set_ylabel("relevance r_k")
    return ax


def plot_explanation(
    model: Pipeline | InterpreterEstimator | SpectrogramTransformer,
    explanations: Explanations,
    index: int = 0,
    *,
    class_names: Sequence[str] | None = None,
    max_components: int | None = 20,
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """One clip's explanation: input, mask and explanation spectrograms, and the relevance bars.

    The three spectrograms share their axes (time in seconds, frequency in Hz): the input's
    log-magnitude ``log(1 + |X|)``, the soft mask M in [0, 1] and the explanation's log-magnitude,
    both magnitudes on the input's colour scale. The fourth axes holds :func:`plot_relevance`.

    Parameters
    ----------
    model : Pipeline, InterpreterEstimator or SpectrogramTransformer
        The fitted model that made the explanations (for its STFT settings).
    explanations : Explanations
        From :func:`nmfinterp.explain`.
    index : int, default=0
        Which clip.
    class_names : sequence of str, optional
        Names of the classes, for the title.
    max_components : int or None, default=20
        Bars for at most this many components.
    title : str, optional
        Figure title; by default the clip's index and the class explained.
    fig : matplotlib Figure, optional
        Cleared and drawn on; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[:4]``: input, mask, explanation (images of shape (F, T)), relevance bars;
        then the colour bars of the magnitudes and of the mask.

    Examples
    --------
    >>> pipe, X = _toy_pipeline()
    >>> from nmfinterp import explain
    >>> ex = explain(pipe, X)
    >>> fig = plot_explanation(pipe, ex, 0)
    >>> [len(a.images) for a in fig.axes[:4]], fig.axes[1].images[0].get_array().shape == ex.masks[0].shape
    ([1, 1, 1, 0], True)
    """
    _check_index(explanations, index)
    spec = spectrogram_of(model)
    x = input_waveform(explanations, index)
    V_in = _log_mag(spec, x)
    V_ex = _log_mag(spec, np.asarray(explanations.waveforms[index], dtype=np.float32))
    mask = np.asarray(explanations.masks[index])
    if mask.shape != V_in.shape:
        raise ValueError(
            f"mask has shape {mask.shape} but the model's spectrogram of the clip has shape "
            f"{V_in.shape}; pass the model that made these explanations."
        )
    sr = explanations.sr
    n_frames = V_in.shape[1]
    extent = (0.0, n_frames * spec.hop_length_ / sr, 0.0, sr / 2)
    fig = _new_fig(fig, (10, 7))
    grid = fig.add_gridspec(4, 2, width_ratios=[40, 1])
    axes = [fig.add_subplot(grid[0, 0])]
    axes += [fig.add_subplot(grid[i, 0], sharex=axes[0], sharey=axes[0]) for i in (1, 2)]
    vmax = float(V_in.max()) or 1.0
    panels = [
        ("input  log(1 + |X|)", V_in, "magma", (0.0, vmax)),
        ("mask M", mask, "viridis", (0.0, 1.0)),
        ("explanation  log(1 + |X_in|)", V_ex, "magma", (0.0, vmax)),
    ]
    rel_ax = fig.add_subplot(grid[3, 0])
    images = []
    for ax, (label, img, cmap, (lo, hi)) in zip(axes, panels, strict=True):
        images.append(
            ax.imshow(
                img, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi, extent=extent
            )
        )
        ax.set_title(label, fontsize=9, loc="left")
        ax.set_ylabel("Hz")
    axes[2].set_xlabel("time (s)")
    plot_relevance(explanations, index, ax=rel_ax, max_components=max_components)
    for i in (0, 1):  # colour bars last, so fig.axes[:4] are the four panels
        fig.colorbar(images[i], cax=fig.add_subplot(grid[i, 1]))
    c = int(explanations.classes[index])
    if title is None:
        title = f"clip {index}: explained for {_class_label(c, class_names)}"
    fig.suptitle(title, fontsize=10)
    return fig


def plot_dictionary(
    model: Pipeline | InterpreterEstimator | NMFDictionary | np.ndarray,
    components: Sequence[int] | None = None,
    *,
    sr: int | None = None,
    ncols: int = 5,
    fig: Figure | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The NMF dictionary: all of W as one image, or chosen components' spectral patterns.

    Parameters
    ----------
    model : Pipeline, InterpreterEstimator, NMFDictionary or array (F, K)
        Where W comes from (see :func:`component_patterns`).
    components : sequence of int, optional
        ``None``: one image of W (frequency x component). Otherwise one small line plot per
        component, w_k over frequency, ``ncols`` to a row.
    sr : int, optional
        Sample rate, to label frequencies in Hz (taken from the model when it has one).
    ncols : int, default=5
    fig : matplotlib Figure, optional
        Cleared and drawn on.
    ax : matplotlib Axes, optional
        With ``components=None`` only: draw the image there (its figure is returned).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> W = np.abs(np.random.default_rng(0).standard_normal((33, 6)))
    >>> fig = plot_dictionary(W, sr=1000)
    >>> fig.axes[0].images[0].get_array().shape
    (33, 6)
    >>> fig = plot_dictionary(W, [4, 1, 2], sr=1000)
    >>> [a.get_title() for a in fig.axes]
    ['component 4', 'component 1', 'component 2']
    """
    W = component_patterns(model)
    n_freqs, k_total = W.shape
    if sr is None and not isinstance(model, np.ndarray | torch.Tensor | list):
        try:
            sr = spectrogram_of(model).sr
        except (TypeError, AttributeError):
            sr = None
    f_max = sr / 2 if sr else n_freqs - 1
    f_label = "Hz" if sr else "frequency bin"
    if components is None:
        if ax is None:
            fig = _new_fig(fig, (8, 4))
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        im = ax.imshow(
            W,
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=(-0.5, k_total - 0.5, 0.0, f_max),
            interpolation="nearest",
        )
        ax.set_xlabel("component k")
        ax.set_ylabel(f_label)
        ax.set_title(f"dictionary W ({n_freqs} x {k_total})", fontsize=9)
        fig.colorbar(im, ax=ax)
        return fig
    comps = [int(k) for k in components]
    bad = [k for k in comps if not 0 <= k < k_total]
    if bad:
        raise ValueError(f"components {bad} out of range; the dictionary has 0..{k_total - 1}.")
    if not comps:
        raise ValueError("components is empty; expected at least one component index.")
    ncols = max(1, min(int(ncols), len(comps)))
    nrows = int(np.ceil(len(comps) / ncols))
    fig = _new_fig(fig, (2.4 * ncols, 1.9 * nrows))
    freqs = np.linspace(0.0, f_max, n_freqs)
    for i, k in enumerate(comps):
        a = fig.add_subplot(nrows, ncols, i + 1)
        a.fill_between(freqs, W[:, k], color="tab:orange", alpha=0.4, lw=0)
        a.plot(freqs, W[:, k], color="tab:orange", lw=1)
        a.set_title(f"component {k}", fontsize=8)
        a.set_xlabel(f_label, fontsize=7)
        a.tick_params(labelsize=6)
        a.set_yticks([])
    return fig


# ------------------------------------------------------------------ doctest helpers
def _toy_explanations() -> Explanations:
    rel = np.array([[0.5, -0.2, 1.0, 0.1]])
    return Explanations(
        waveforms=np.zeros((1, 16), np.float32),
        residuals=np.zeros((1, 16), np.float32),
        classes=np.array([0]),
        relevance=rel,
        selected=[np.array([2, 0])],
        masks=[np.zeros((3, 2))],
        activations=[np.zeros((4, 2))],
        classifier_scores=np.zeros((1, 2)),
        interpreter_scores=np.zeros((1, 2)),
        sr=8000,
    )


def _toy_pipeline():
    from sklearn.pipeline import make_pipeline

    from .dictionary import NMFDictionary
    from .interpreter import InterpreterEstimator
    from .spectrogram import SpectrogramTransformer

    # seeded here, not by whatever state the global torch generator was left in: the same toy
    # classifier (and so the same explanations) whatever ran before
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clf = torch.nn.Sequential(
            torch.nn.Unflatten(1, (1, -1)),
            torch.nn.Conv1d(1, 4, 64, stride=32),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool1d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(4, 3),
        )
    X = np.random.default_rng(0).standard_normal((8, 2048)).astype(np.float32)
    with torch.no_grad():
        y = clf(torch.from_numpy(X)).numpy()
    pipe = make_pipeline(
        SpectrogramTransformer(n_fft=256),
        NMFDictionary(n_components=6, random_state=0),
        InterpreterEstimator(clf, layers=["1"], epochs=1, random_state=0, faithfulness=0),
    )
    return pipe.fit(X, y), X
