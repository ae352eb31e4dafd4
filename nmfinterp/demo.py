"""End-to-end demo: train a classifier, explain it with nmfinterp, write WAVs and reports (HTML too).

``python -m nmfinterp.demo`` runs on an embedded default (synthetic sounds the package generates);
``python -m nmfinterp.demo --data ../shared/data/esc10`` runs on any folder in the ESC-50 layout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline

from .classifiers import LogMelCNN, predict_logits, train_classifier
from .datasets import AudioDataset, load_esc_folder, make_mixture, make_synthetic_sounds
from .dictionary import NMFDictionary
from .explain import Explanations, explain, write_wavs
from .interpreter import InterpreterEstimator
from .metrics import energy_share, explanation_scores, mean_ci, si_sdr
from .report import write_report
from .spectrogram import SpectrogramTransformer

LAYERS = ["blocks.1", "blocks.2", "blocks.3"]


def _softmax(scores: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(scores), dim=-1).numpy()


def default_n_fft(sr: int) -> int:
    """About 32 ms windows: 512 at 16 kHz, 1024 at 44.1 kHz (L2I's ESC-50 setting)."""
    return int(2 ** round(np.log2(0.032 * sr)))


def build_pipeline(
    classifier,
    sr: int,
    n_components: int,
    epochs: int | None = None,
    random_state: int = 0,
    verbose: int = 0,
    dictionary_params: dict | None = None,
    **interpreter_params,
):
    """The pipeline the demo and the benchmark use: STFT -> NMF dictionary -> interpreter
    (``dictionary_params``: more of :class:`~nmfinterp.NMFDictionary`'s parameters)."""
    n_fft = default_n_fft(sr)
    if epochs is not None:
        interpreter_params["epochs"] = epochs
    return make_pipeline(
        SpectrogramTransformer(sr=sr, n_fft=n_fft, hop_length=n_fft // 2),
        NMFDictionary(
            n_components=n_components, random_state=random_state, **(dictionary_params or {})
        ),
        InterpreterEstimator(
            classifier,
            layers=LAYERS,
            random_state=random_state,
            verbose=verbose,
            **interpreter_params,
        ),
    )


def mixture_pairs(labels: np.ndarray, n_pairs: int, random_state: int = 0) -> list[tuple[int, int]]:
    """Pairs of clip indices from different classes."""
    rng = np.random.default_rng(random_state)
    pairs = []
    while len(pairs) < n_pairs:
        a, b = rng.integers(len(labels), size=2)
        if labels[a] != labels[b]:
            pairs.append((int(a), int(b)))
    return pairs


def evaluate_mixtures(
    pipe, classifier, test: AudioDataset, n_pairs: int, random_state: int = 0, **explain_params
):
    """Equal-level two-clip mixtures: is the explanation closer to the source the classifier heard?

    Returns one row per mixture where the classifier picks one of the two sources' classes, with
    SI-SDR of the explanation against the deciding and the other source (and of the mixture itself),
    the energy share of the deciding source under the explanation's mask, and FF / Fid-In / AD.
    """
    kept = []
    for a, b in mixture_pairs(test.labels, n_pairs, random_state):
        mix = make_mixture(test.waveforms[a], test.waveforms[b], snr_db=0.0)
        kept.append((a, b, mix))
    if not kept:
        return []
    mixtures = np.stack([m.mixture for _, _, m in kept])
    decided = predict_logits(classifier, mixtures).argmax(1)
    keep = [i for i, (a, b, _) in enumerate(kept) if decided[i] in (test.labels[a], test.labels[b])]
    if not keep:
        return []
    ex = explain(pipe, mixtures[keep], **explain_params)
    waves, residuals = np.asarray(ex.waveforms), np.asarray(ex.residuals)
    scores = explanation_scores(
        _softmax(ex.classifier_scores),
        _softmax(predict_logits(classifier, waves)),
        _softmax(predict_logits(classifier, residuals)),
    )
    spec = pipe[-1].spectrogram_
    domain = explain_params.get("mask_domain", "linear")
    rows = []
    for j, i in enumerate(keep):
        a, b, mix = kept[i]
        c = int(decided[i])
        deciding, other = (
            (mix.target, mix.other) if c == test.labels[a] else (mix.other, mix.target)
        )
        mask = torch.as_tensor(ex.masks[j])[None]
        parts = [
            np.asarray(spec.apply_mask(src[None], mask, domain))[0] for src in (deciding, other)
        ]
        rows.append(
            {
                "a": a,
                "b": b,
                "class": c,
                "mixture": mix.mixture,
                "deciding": deciding,
                "other": other,
                "explanation": waves[j],
                "si_sdr_deciding": si_sdr(waves[j], deciding),
                "si_sdr_other": si_sdr(waves[j], other),
                "si_sdr_mixture": si_sdr(mix.mixture, deciding),
                "energy_share": energy_share(parts[0], parts[1]),
                **{key: float(v[j]) for key, v in scores.items()},
            }
        )
    return rows


def run_demo(
    data: str | None = None,
    out: str = "nmfinterp_output",
    n_components: int | None = None,
    epochs: int | None = None,
    classifier_epochs: int | None = None,
    n_examples: int = 8,
    n_mixtures: int = 20,
    sr: int = 16000,
    random_state: int = 0,
    verbose: int = 1,
    n_per_class: int = 40,
) -> dict:
    """Run the whole demo and return its figures.

    Writes to ``out``: ``clean/`` and ``mixtures/`` WAVs, ``report.json`` / ``report.md`` (the
    figures) and ``report.html``, a self-contained page to listen to the first ``n_examples``
    explanations (see :func:`nmfinterp.report.write_report`). ``n_per_class`` sets the number of
    synthetic clips per class when ``data`` is None (a fifth of them are the test clips).
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = print if verbose else (lambda *a, **k: None)
    t0 = time.perf_counter()
    if data is None:
        ds = make_synthetic_sounds(
            n_per_class=n_per_class, sr=sr, duration=2.0, random_state=random_state
        )
        source = "embedded synthetic sounds (4 classes, 2 s)"
        train, test = ds.subset(ds.folds != 5), ds.subset(ds.folds == 5)
        n_components = n_components or 40
        epochs = epochs or 30
        classifier_epochs = classifier_epochs or 15
    else:
        ds = load_esc_folder(data, sr=sr)
        source = str(data)
        last = int(ds.folds.max())
        train, test = ds.subset(ds.folds != last), ds.subset(ds.folds == last)
        n_components = n_components or 100
        epochs = epochs or 40
        classifier_epochs = classifier_epochs or 30
    log(
        f"data: {source}: {len(train)} training clips, {len(test)} test clips, classes {ds.class_names}"
    )

    t = time.perf_counter()
    clf = LogMelCNN(ds.n_classes, sr=sr, random_state=random_state)
    clf = train_classifier(
        clf, train.waveforms, train.labels, epochs=classifier_epochs, random_state=random_state
    )
    y_train, y_test = predict_logits(clf, train.waveforms), predict_logits(clf, test.waveforms)
    accuracy = float(np.mean(y_test.argmax(1) == test.labels))
    log(f"classifier: LogMelCNN, test accuracy {accuracy:.3f} ({time.perf_counter() - t:.0f} s)")

    pipe = build_pipeline(clf, sr, n_components, epochs, random_state, verbose=verbose)
    t = time.perf_counter()
    with warnings.catch_warnings():
        # the dictionary stops at max_iter=200 before NMF's tol on purpose (measured: docs/method.md,
        # "Dictionary"); the demo says so below instead of showing sklearn's warning
        warnings.filterwarnings(
            "ignore",
            category=ConvergenceWarning,
            module=r"(sklearn\.decomposition|nmfinterp\.dictionary)",
        )
        pipe.fit(train.waveforms, y_train)
    fit_s = time.perf_counter() - t
    dico = pipe[1]
    if dico.n_iter_ >= dico.max_iter:
        log(
            f"dictionary: stopped after max_iter={dico.max_iter} NMF iterations, before sklearn's "
            "tol: the default (on ESC-10 it explained as faithfully as a converged dictionary and "
            "fitted the interpreter closer to the classifier; docs/method.md, 'Dictionary')"
        )
    fidelity = pipe.score(test.waveforms, y_test)
    source_gates = hasattr(pipe[-1], "source_gates_")
    log(
        f"interpreter: K={n_components}, top-1 fidelity on held-out clips {fidelity:.3f} (fit "
        f"{fit_s:.0f} s{', source gates included' if source_gates else ''})"
    )

    t = time.perf_counter()
    ex = explain(pipe, test.waveforms)
    explain_s = (time.perf_counter() - t) / len(test)
    probs_x = _softmax(ex.classifier_scores)
    probs_in = _softmax(predict_logits(clf, np.asarray(ex.waveforms)))
    probs_out = _softmax(predict_logits(clf, np.asarray(ex.residuals)))
    scores = {k: mean_ci(v) for k, v in explanation_scores(probs_x, probs_in, probs_out).items()}
    log("clean clips: " + ", ".join(f"{k} {v[0]:.2f}" for k, v in scores.items()))

    clean_dir = out_dir / "clean"
    names = [
        f"{i:03d}_{test.class_names[test.labels[i]]}_as_{test.class_names[ex.classes[i]]}"
        for i in range(min(n_examples, len(test)))
    ]
    for i, name in enumerate(names):
        clean_dir.mkdir(exist_ok=True)
        sf.write(clean_dir / f"{name}_input.wav", test.waveforms[i], sr, subtype="PCM_16")
    sub = _first(ex, len(names))
    write_wavs(sub, clean_dir, names, residuals=True)

    rows = evaluate_mixtures(pipe, clf, test, n_mixtures, random_state)
    mix_dir = out_dir / "mixtures"
    mix_dir.mkdir(exist_ok=True)
    for j, r in enumerate(rows[:n_examples]):
        stem = f"{j:03d}_{test.class_names[r['class']]}_decides"
        for part in ("mixture", "deciding", "other", "explanation"):
            sf.write(mix_dir / f"{stem}_{part}.wav", np.clip(r[part], -1, 1), sr, subtype="PCM_16")
    mix = {
        key: mean_ci([r[key] for r in rows]) if rows else (float("nan"),) * 3
        for key in ("si_sdr_deciding", "si_sdr_other", "si_sdr_mixture")
    }
    log(
        f"mixtures ({len(rows)}): SI-SDR of the explanation to the deciding source "
        f"{mix['si_sdr_deciding'][0]:.1f} dB, to the other {mix['si_sdr_other'][0]:.1f} dB "
        f"(mixture itself: {mix['si_sdr_mixture'][0]:.1f} dB)"
    )

    report = {
        "data": source,
        "classes": ds.class_names,
        "n_train": len(train),
        "n_test": len(test),
        "classifier_accuracy": accuracy,
        "n_components": n_components,
        "interpreter_epochs": epochs,
        "fidelity_top1": fidelity,
        "source_gates": source_gates,
        "fit_seconds": fit_s,
        "explain_seconds_per_clip": explain_s,
        "clean": {k: {"mean": v[0], "ci95": [v[1], v[2]]} for k, v in scores.items()},
        "mixtures": {
            "n": len(rows),
            **{k: {"mean": v[0], "ci95": [v[1], v[2]]} for k, v in mix.items()},
        },
        "total_seconds": time.perf_counter() - t0,
        "output": str(out_dir.resolve()),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(_markdown(report))
    write_report(
        pipe,
        explanations=sub,
        path=out_dir / "report.html",
        names=names,
        class_names=test.class_names,
        metrics={k: v for k, v in report.items() if k not in ("classes", "output")},
        title=f"nmfinterp demo: {source}",
        verbose=verbose,
    )
    log(
        f"wrote WAVs, report.html and report.md / report.json to {out_dir} "
        f"({report['total_seconds']:.0f} s in all)"
    )
    return report


def _first(ex: Explanations, n: int) -> Explanations:
    """The explanations of the first ``n`` clips."""
    per_clip = {
        k: v[:n] for k, v in ex.__dict__.items() if k not in ("sr", "settings") and v is not None
    }
    return Explanations(**per_clip, sr=ex.sr, settings=dict(ex.settings))


def _markdown(r: dict) -> str:
    lines = [
        "# nmfinterp demo report",
        "",
        f"- data: {r['data']} ({r['n_train']} training / {r['n_test']} test clips); classes: {', '.join(r['classes'])}",
        f"- classifier test accuracy: {r['classifier_accuracy']:.3f}",
        f"- interpreter (K = {r['n_components']}): top-1 fidelity {r['fidelity_top1']:.3f}, "
        f"fit {r['fit_seconds']:.0f} s{' (source gates included)' if r.get('source_gates') else ''}, explain {1000 * r['explain_seconds_per_clip']:.0f} ms per clip",
        "",
        "| clean clips | mean | 95% CI |",
        "|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['mean']:.3f} | {v['ci95'][0]:.3f} – {v['ci95'][1]:.3f} |"
        for k, v in r["clean"].items()
    ]
    m = r["mixtures"]
    lines += ["", f"| equal-level mixtures (n = {m['n']}) | mean dB | 95% CI |", "|---|---|---|"]
    lines += [
        f"| {k} | {m[k]['mean']:.2f} | {m[k]['ci95'][0]:.2f} – {m[k]['ci95'][1]:.2f} |"
        for k in ("si_sdr_deciding", "si_sdr_other", "si_sdr_mixture")
    ]
    lines += [
        "",
        "WAVs: `clean/` (input, explanation, residual) and `mixtures/` (mixture, sources, explanation).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="nmfinterp-demo", description=__doc__)
    parser.add_argument(
        "--data",
        help="folder in the ESC-50 layout (meta.csv + audio/); default: embedded synthetic sounds",
    )
    parser.add_argument(
        "--out", default="nmfinterp_output", help="output folder (default: %(default)s)"
    )
    parser.add_argument("--n-components", type=int, help="dictionary size K")
    parser.add_argument("--epochs", type=int, help="interpreter epochs")
    parser.add_argument("--classifier-epochs", type=int, help="classifier training epochs")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        run_demo(
            data=args.data,
            out=args.out,
            n_components=args.n_components,
            epochs=args.epochs,
            classifier_epochs=args.classifier_epochs,
            verbose=0 if args.quiet else 1,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"nmfinterp-demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
