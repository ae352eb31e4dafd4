"""A self-contained HTML report of explanations: listen, look, compare.

One file, nothing to fetch: audio is embedded as base64 WAV ``data:`` URIs and figures as base64
PNG. Per clip it shows players for the input, the explanation and the residual (input minus
explanation); the input, mask and explanation spectrograms on the same axes and the components'
relevance (:func:`nmfinterp.plots.plot_explanation`); each selected component's spectral pattern
with its own audio (the mask of that component alone applied to the input, re-synthesised with the
input's phase); the classifier's and the interpreter's class probabilities; and the run's metrics.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from .explain import Explanations, explain, masked_spectrum, soft_mask
from .plots import component_patterns, input_waveform, plot_dictionary, plot_explanation

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from .interpreter import InterpreterEstimator

__all__ = ["component_audio", "render_report", "wav_data_uri", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.2em;border-top:1px solid #ccc;padding-top:1em}
table{border-collapse:collapse;margin:.5em 0} td,th{padding:2px 8px;text-align:left;font-size:.9em}
tr:nth-child(even){background:#f4f4f4} .players{display:flex;gap:1.5em;flex-wrap:wrap}
.players div,.comp div{display:flex;flex-direction:column;font-size:.9em} audio{width:260px}
.bar{display:inline-block;height:.8em;background:#e08a2c;vertical-align:middle}
.bar.i{background:#3b75af} img{max-width:100%} .comps{display:flex;flex-wrap:wrap;gap:1em}
.comp{border:1px solid #ddd;padding:.4em;font-size:.85em} .comp img{width:240px}
.note{color:#666;font-size:.85em}
"""


def wav_data_uri(waveform, sr: int) -> str:
    """A ``data:audio/wav;base64,...`` URI of a mono waveform (16-bit PCM, clipped to [-1, 1]).

    Examples
    --------
    >>> uri = wav_data_uri(np.zeros(160, dtype=np.float32), 16000)
    >>> uri[:22], base64.b64decode(uri.split(",", 1)[1])[:4]
    ('data:audio/wav;base64,', b'RIFF')
    """
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"waveform has shape {x.shape}; expected one mono clip (n_samples,).")
    buf = io.BytesIO()
    sf.write(buf, np.clip(np.nan_to_num(x), -1.0, 1.0), int(sr), format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _png_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def component_audio(
    model: Pipeline | InterpreterEstimator, explanations: Explanations, index: int, component: int
) -> np.ndarray:
    """The audio of one component alone for one clip: mask w_k h_kᵀ / (W H + ε) on the input.

    That is the log ratio (:func:`~nmfinterp.explain.soft_mask`'s ``"log"``) whatever the
    explanation's ``mask_ratio``: the components' masks then add up to one, so their audio adds
    up to the input (the linear ratios of the parts add up to less than the whole's).

    h_k is taken in the frames where the explanation keeps the component
    (``explanations.gates``), or in every frame when it keeps it nowhere.

    The mask is applied the way the explanation's was (``explanations.settings["mask_domain"]``)
    and turned back into audio with the input's own phase; same length as the input.

    Examples
    --------
    >>> from nmfinterp.plots import _toy_pipeline
    >>> from nmfinterp import explain
    >>> pipe, X = _toy_pipeline()
    >>> ex = explain(pipe, X[:2])
    >>> parts = [component_audio(pipe, ex, 0, k) for k in range(6)]
    >>> parts[0].shape == X[0].shape
    True
    """
    from .plots import spectrogram_of

    spec = spectrogram_of(model)
    W = torch.as_tensor(component_patterns(model), dtype=torch.float32)
    K = W.shape[1]
    if not 0 <= component < K:
        raise ValueError(f"component={component} out of range; the dictionary has 0..{K - 1}.")
    H = torch.as_tensor(np.asarray(explanations.activations[index]), dtype=torch.float32)[None]
    # the component where the explanation keeps it (every frame for a whole-clip selection, or
    # when it was not selected: then its whole part of the clip)
    weights = torch.zeros(1, K, H.shape[-1])
    gates = explanations.gates[index] if explanations.gates is not None else None
    if gates is not None and np.asarray(gates)[component].any():
        weights[0, component] = torch.as_tensor(np.asarray(gates)[component], dtype=torch.float32)
    else:
        weights[0, component] = 1.0
    M = soft_mask(W, H, weights)  # its share of the model (no mask_power: one component alone)
    x = input_waveform(explanations, index)
    S = spec.stft(x[None])
    domain = explanations.settings.get("mask_domain", "linear")
    return spec.istft(masked_spectrum(S, M, domain), len(x))[0].astype(np.float32)


def _probabilities(scores: np.ndarray, kind: str, multilabel: bool) -> np.ndarray:
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    if kind == "probabilities":
        return s.numpy()
    return (torch.sigmoid(s) if multilabel else torch.softmax(s, dim=-1)).numpy()


def _fmt(v) -> str:
    if isinstance(v, float | np.floating):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    if isinstance(v, list | tuple) and all(isinstance(u, int | float | np.number) for u in v):
        return "[" + ", ".join(_fmt(u) for u in v) + "]"
    return str(v)


def _settings(settings: Mapping) -> str:
    keys = (
        "top_k",
        "threshold",
        "refine_steps",
        "separation",
        "mask_ratio",
        "mask_domain",
        "relevance_mode",
    )
    return ", ".join(f"{k}={settings[k]}" for k in keys if k in settings) or "default"


def _flatten(metrics: Mapping, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += _flatten(value, name + ".")
        else:
            rows.append((name, _fmt(value)))
    return rows


def _table(rows, header=None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _audio(label: str, waveform, sr: int) -> str:
    return (
        f'<div><span>{html.escape(label)}</span><audio controls preload="auto" '
        f'src="{wav_data_uri(waveform, sr)}"></audio></div>'
    )


def render_report(
    model: Pipeline | InterpreterEstimator,
    explanations: Explanations,
    *,
    names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    metrics: Mapping | None = None,
    max_components: int = 5,
    title: str = "nmfinterp explanations",
    verbose: int = 0,
) -> str:
    """The HTML text of the report (see :func:`write_report` for the parameters).

    Examples
    --------
    >>> from nmfinterp.plots import _toy_pipeline
    >>> pipe, X = _toy_pipeline()
    >>> page = render_report(pipe, explain(pipe, X[:1]), names=["my clip"])
    >>> page.startswith("<!DOCTYPE html>"), "my clip: explained for class" in page
    (True, True)
    """
    from .explain import _interpreter_of

    if not isinstance(explanations, Explanations):
        raise TypeError(
            f"expected an Explanations (from nmfinterp.explain); got {type(explanations).__name__}."
        )
    interp = _interpreter_of(model)
    n = len(explanations)
    n_classes = explanations.classifier_scores.shape[1]
    if names is None:
        names = [f"clip {i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"got {len(names)} names for {n} clips; expected one name per clip.")
    if class_names is None:
        class_names = [f"class {c}" for c in range(n_classes)]
    if len(class_names) != n_classes:
        raise ValueError(
            f"got {len(class_names)} class names but the classifier has {n_classes} classes; "
            "expected one name per class."
        )
    if not isinstance(max_components, int) or max_components < 1:
        raise ValueError(f"max_components={max_components!r}; expected a positive integer.")
    sr = explanations.sr
    W = component_patterns(model)
    p_clf = _probabilities(explanations.classifier_scores, interp.output_type_, interp.multilabel)
    p_int = _probabilities(explanations.interpreter_scores, "logits", interp.multilabel)

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # an inline icon: the page fetches nothing, not even /favicon.ico
        '<link rel="icon" href="data:,">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{n} clips at {sr} Hz; dictionary of {W.shape[1]} components '
        f"({W.shape[0]} frequency bins); hidden layers {html.escape(', '.join(interp.layers_))}; "
        f"selection: {html.escape(_settings(explanations.settings))}.</p>",
    ]
    if metrics:
        parts += ["<h2>Metrics of the run</h2>", _table(_flatten(metrics), ["metric", "value"])]
    pattern_figs: dict[int, str] = {}
    for i in tqdm(range(n), desc="report", disable=verbose <= 0):
        c = int(explanations.classes[i])
        x = input_waveform(explanations, i)
        parts.append(
            f'<section class="clip" id="clip{i}"><h2>{html.escape(str(names[i]))}: explained '
            f"for {html.escape(str(class_names[c]))}</h2>"
        )
        # one gain for all of a clip's players, so that loud clips do not clip and their parts
        # keep their relative levels
        peak = max(
            float(np.max(np.abs(w), initial=0.0))
            for w in (x, explanations.waveforms[i], explanations.residuals[i])
        )
        gain = 1.0 / peak if peak > 1.0 else 1.0
        parts.append('<div class="players">')
        parts.append(_audio("input", gain * x, sr))
        parts.append(_audio("explanation", gain * explanations.waveforms[i], sr))
        parts.append(_audio("residual (input − explanation)", gain * explanations.residuals[i], sr))
        parts.append("</div>")
        if gain != 1.0:
            parts.append(f'<p class="note">Players scaled by {gain:.3g} (peak {peak:.3g} > 1).</p>')
        fig = plot_explanation(
            model,
            explanations,
            i,
            class_names=class_names,
            title=f"{names[i]}: explained for {class_names[c]}",
        )
        parts.append(f'<img alt="spectrograms and relevance" src="{_png_data_uri(fig)}">')
        rows = []
        for k in range(n_classes):
            a, b = float(p_clf[i, k]), float(p_int[i, k])
            mark = " ◀" if k == c else ""
            rows.append(
                (
                    html.escape(str(class_names[k])) + mark,
                    f'<span class="bar" style="width:{100 * a:.0f}px"></span> {a:.3f}',
                    f'<span class="bar i" style="width:{100 * b:.0f}px"></span> {b:.3f}',
                )
            )
        parts.append("<h3>Class probabilities</h3>")
        parts.append(_table(rows, ["class", "classifier", "interpreter"]))
        selected = [int(k) for k in np.asarray(explanations.selected[i])][:max_components]
        r = np.asarray(explanations.relevance[i])
        parts.append(
            f"<h3>Selected components ({len(explanations.selected[i])}; "
            f"the {len(selected)} most relevant below)</h3>"
        )
        if not selected:
            parts.append('<p class="note">No component speaks for this class.</p>')
        parts.append('<div class="comps">')
        for k in selected:
            if k not in pattern_figs:
                pattern_figs[k] = _png_data_uri(plot_dictionary(W, [k], sr=sr))
            parts.append(
                f'<div class="comp"><div>component {k}, relevance {r[k]:.3f}</div>'
                f'<img alt="spectral pattern of component {k}" src="{pattern_figs[k]}">'
                + _audio(
                    f"component {k} alone",
                    gain * component_audio(model, explanations, i, k),
                    sr,
                )
                + "</div>"
            )
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    model: Pipeline | InterpreterEstimator,
    X=None,
    path: str | Path = "report.html",
    *,
    explanations: Explanations | None = None,
    names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    metrics: Mapping | None = None,
    max_components: int = 5,
    title: str = "nmfinterp explanations",
    verbose: int = 0,
    **explain_params,
) -> Path:
    """Write one self-contained HTML report of explanations; returns its path.

    Parameters
    ----------
    model : Pipeline or InterpreterEstimator
        The fitted model.
    X : array (n_clips, n_samples) or list of clips, optional
        Clips to explain with ``explain(model, X, **explain_params)``; not needed when
        ``explanations`` are given.
    path : str or Path, default="report.html"
        The file to write (its folder is created).
    explanations : Explanations, optional
        Already computed explanations (from the same ``model``).
    names : sequence of str, optional
        One title per clip (file names, say).
    class_names : sequence of str, optional
        One name per class of the classifier.
    metrics : mapping, optional
        The run's metrics, shown as a table (nested mappings are flattened to ``a.b``).
    max_components : int, default=5
        Per clip, the spectral pattern and audio of at most this many selected components.
    title : str
    verbose : int, default=0
        A progress bar over the clips when > 0.
    **explain_params
        Passed to :func:`nmfinterp.explain` (``top_k``, ``threshold``, ...).

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from nmfinterp.plots import _toy_pipeline
    >>> pipe, X = _toy_pipeline()
    >>> out = write_report(pipe, X[:2], pathlib.Path(tempfile.mkdtemp()) / "r.html",
    ...                    metrics={"fidelity": 0.5})
    >>> text = out.read_text()
    >>> text.count('<section class="clip"'), text.count("<audio") >= 6, "fidelity" in text
    (2, True, True)
    """
    if explanations is None:
        if X is None:
            raise ValueError("write_report needs clips X or precomputed explanations=...")
        explanations = explain(model, X, **explain_params)
    elif explain_params:
        raise ValueError(
            f"explain parameters {sorted(explain_params)} given with precomputed explanations; "
            "pass them to explain() instead."
        )
    text = render_report(
        model,
        explanations,
        names=names,
        class_names=class_names,
        metrics=metrics,
        max_components=max_components,
        title=title,
        verbose=verbose,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
