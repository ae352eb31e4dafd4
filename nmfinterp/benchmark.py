"""The evaluation benchmark: every explainer, five listening conditions, a third-party model, and costs.

    python -m nmfinterp.benchmark [--quick] [--data DIR] [--train-folds 1 2 3] [--test-fold 4]
                                  [--speech DIR] [--others DIR] [--out DIR]

(``benchmarks/esc10.py`` and ``nmfinterp bench`` run the same thing.) Protocol:

1. A :class:`~nmfinterp.classifiers.LogMelCNN` is trained on the training folds of a folder in the
   ESC-50 layout; its accuracy on the test fold is reported.
2. nmfinterp's interpreter is fitted on the classifier's outputs on the training folds with its
   defaults; L2I's (:data:`~nmfinterp.interpreter.L2I_TRAINING` on one dictionary for all
   classes); and, when their rows are asked for, with ``faithfulness=1``, and with nmfinterp's
   training on one dictionary for all classes where the default dictionary learned a block per
   class; top-1 fidelity of each on the test fold. The defaults'
   gate network (``fit_gates``, for ``explain(..., amortised=True)``) is trained on the same clips
   when its row is asked for.
3. On the test fold, five conditions: (a) clean clips; (b) ``0.8·s1 + 0.2·s2`` with s2 from another
   class; (c) equal-RMS mixtures of two clips of different classes; (d) ``s + 0.5·noise`` and
   (e) ``s + 0.5·speech``, where white noise / FSDD speech is first scaled to the RMS of s. With
   ``--others``, (b) and (c) take s2 from that folder instead.
4. Every explainer is asked to explain the classifier's decision on each input, and every one goes
   through the same mask -> ISTFT path: nmfinterp; nmfinterp without its refinement, with its
   amortised gates instead of the refinement (and with the gate network of 64 channels, the
   default before 32, or trained with the residual's weight of before, 1), with one dictionary
   for all classes, four ablations of it, its contrast term weighted by the class-block
   separation below instead of its source gates, and without source gates; L2I whole (its
   official training, dictionary and selection) and L2I's official selection on nmfinterp's
   interpreter of one dictionary for all classes; nmfinterp trained with
   ``faithfulness=1``; random components; all components; captum saliency, integrated gradients
   and occlusion; an L-MAC-style decoder; a black-box NMF explainer; supervised NMF separation
   with a block of magnitude patterns per class; and, on mixtures, an oracle that gates
   nmfinterp's own components with the true sources (an upper bound for a choice of gates, not an
   explainer) and the same oracle within
   nmfinterp's own selection (what nmfinterp kept, less what it kept of the other source). Per
   method and condition: FF, AI, AD, AG, Fid-In, mask sparseness and complexity (mean and 95%
   CI), and for mixtures the SI-SDR of the explanation against the deciding source and against
   the other source, the SI-SDR of the mixture itself, and the deciding source's share of the
   explanation's energy. Mixtures whose decision is neither source's class are left out (their
   count is reported).
5. Silero VAD, a model nobody here wrote: its speech decisions on FSDD speech mixed with test-fold
   sounds, explained by nmfinterp (and the random / all-components bounds).
6. Costs, as ratios measured in one run: explain (refined, not refined, amortised) vs classifier
   forward + STFT + ISTFT of the same batch; interpreter fit with cached vs recomputed hidden
   features; NMFDictionary vs sklearn's ``cd`` solver at equal reconstruction error; fit time per
   clip at 1x, 2x, 4x the data with the peak memory of each fit (in a fresh process).

The raw results go to ``<out>/esc10.json`` (``esc10_quick.json`` with ``--quick``);
``benchmarks/make_table.py`` turns them into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import os
import pickle
import platform
import queue as queue_module
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .baselines import (
    BlackBoxNMFExplainer,
    LMACExplainer,
    SpectrogramAttribution,
    all_masks,
    apply_masks,
    random_component_masks,
)
from .classifiers import LogMelCNN, predict_logits, train_classifier
from .datasets import AudioDataset, load_audio, load_esc_folder, load_fsdd, make_mixture, rms
from .demo import LAYERS, build_pipeline
from .dictionary import PER_CLASS_CHOICES
from .explain import (
    CONTRAST_PENALTY,
    CONTRAST_PENALTY_MILD,
    ENERGY_PENALTY,
    KEEP_CONFIDENCE,
    MASK_POWER,
    MASK_RATIO,
    REFINE_LR,
    REFINE_STEPS,
    RESIDUAL_WEIGHT,
    explain,
    soft_mask,
)
from .gates import GATES_RESIDUAL_WEIGHT, SourceGatesUnavailable
from .interpreter import L2I_TRAINING, InterpreterEstimator
from .metrics import energy_share, explanation_scores, mask_complexity, mask_sparseness, mean_ci
from .metrics import si_sdr as _si_sdr
from .parallel import THREADS_ENV

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
OFFICIAL = {
    "top_k": 5,
    "threshold": 0.2,
    "mask_domain": "log",
    "mask_ratio": "log",
    "relevance_mode": "raw",
    "refine_steps": 0,
}
CONDITIONS = {
    "clean": "(a) clean clips",
    "mix_0.8_0.2": "(b) 0.8·s1 + 0.2·s2",
    "mix_equal": "(c) equal-level mixtures",
    "white_noise": "(d) s + 0.5·white noise",
    "speech": "(e) s + 0.5·speech",
}
METHODS = [
    "nmfinterp",
    "nmfinterp, no refinement",
    "nmfinterp, amortised gates",
    "nmfinterp, amortised gates, hidden=64",
    "nmfinterp, amortised gates, residual_weight=1",
    "nmfinterp, amortised gates, distilled",
    "nmfinterp, one dictionary for all classes",
    "nmfinterp, log-ratio mask, contrast_penalty=100",
    "nmfinterp, contrast_penalty=0",
    "nmfinterp, energy_penalty=0",
    "nmfinterp, residual_weight=1",
    "nmfinterp, per-clip gates, energy_penalty=0",
    "nmfinterp, class-block contrast",
    "nmfinterp, no source gates",
    "L2I, official selection",
    "L2I, official training and selection",
    "nmfinterp, faithfulness=1",
    "random components",
    "all components",
    "oracle gates (true sources)",
    "oracle gates within nmfinterp's selection",
    "saliency",
    "integrated gradients",
    "occlusion",
    "L-MAC-style decoder",
    "black-box NMF",
    "class-block NMF separation",
]

#: the gate network's channels before ``fit_gates``' default became 32; its own row measures it
PREVIOUS_GATE_HIDDEN = 64

#: fit_gates' settings for the row "nmfinterp, amortised gates, distilled": the network first
#: learns the refinement's own gates on its training rows, then the objective with that kept
DISTILLED_GATES = {"distil_epochs": 60, "distil_weight": 1.0, "hidden": 64, "epochs": 8}

#: the amortised rows: the pipeline (a key of the benchmark's ``pipes``) whose gate network each
#: explains with, and the ``fit_gates`` settings that network is trained with
GATE_ROWS = {
    "nmfinterp, amortised gates": ("nmfinterp", {}),
    "nmfinterp, amortised gates, hidden=64": ("gates, hidden=64", {"hidden": PREVIOUS_GATE_HIDDEN}),
    "nmfinterp, amortised gates, residual_weight=1": (
        "gates, residual_weight=1",
        {"residual_weight": 1.0},
    ),
    "nmfinterp, amortised gates, distilled": ("gates, distilled", DISTILLED_GATES),
}

#: ``--dictionary``'s choices: the ``NMFDictionary(per_class=...)`` each stands for
DICTIONARY_CHOICES = PER_CLASS_CHOICES

#: the ``feature_components`` whose fit the cost section also times (docs/method.md measures its fidelity)
PROJECTED_COMPONENTS = 32

# settings that differ between the full run and --quick (which must finish in < 10 min on 2 cores)
FULL = {
    # 60: with 30 the classifier's training loss was still falling when the cosine decay ended
    # (0.30, training accuracy 0.95; 0.12 and 0.98 with 60 epochs)
    "classifier_epochs": 60,
    "epochs": None,  # the estimator's default
    "faithfulness_epochs": None,
    "n_components": 100,
    "max_test": None,
    "ig_steps": 32,
    "occlusion": ((64, 32), (32, 16)),
    "blackbox_samples": 128,
    "lmac_epochs": 20,
    "silero_train": 160,
    "silero_test": 60,
    "max_train": None,
    "scaling": (40, 80, 160),
    "scaling_epochs": None,  # the estimator's default: what a user's fit costs
    "gate_epochs": None,  # fit_gates' default
    "cost_batch": 16,  # clips in the batch whose explain time is compared
    "cost_repeats": 5,  # turns of the explain-cost comparison
    "fit_cost_repeats": 2,  # turns of the cached-vs-recomputed fit comparison
    "source_gates": None,  # fit_source_gates's defaults, as source_gates="auto" fits them
}
QUICK = {
    "classifier_epochs": 12,
    "epochs": 12,
    "faithfulness_epochs": 5,
    "n_components": 50,
    "max_test": 24,
    "ig_steps": 8,
    "occlusion": ((128, 64), (128, 64)),
    "blackbox_samples": 32,
    "lmac_epochs": 4,
    "silero_train": 48,
    "silero_test": 16,
    "max_train": 120,
    "scaling": (10, 20, 40),
    "scaling_epochs": 4,
    "gate_epochs": 2,
    # the cost section took half of a 10-minute --quick run on a slower 2-core machine
    "cost_batch": 8,
    "cost_repeats": 3,
    "fit_cost_repeats": 1,
    # fit_source_gates's settings after each fit (as the epochs above, shorter than the defaults)
    "source_gates": {"mixtures": 2, "epochs": 10},
}
# --quick leaves out the ablation rows that each cost a refined explain of every condition (the
# full run has them): the default row, "no refinement" and the official L2I row stay.
QUICK_SKIPS = (
    "nmfinterp, amortised gates, hidden=64",
    "nmfinterp, amortised gates, distilled",
    "nmfinterp, one dictionary for all classes",
    "nmfinterp, amortised gates, residual_weight=1",
    "nmfinterp, log-ratio mask, contrast_penalty=100",
    "nmfinterp, contrast_penalty=0",
    "nmfinterp, energy_penalty=0",
    "nmfinterp, residual_weight=1",
    "nmfinterp, per-clip gates, energy_penalty=0",
    "nmfinterp, class-block contrast",
    "nmfinterp, no source gates",
    "nmfinterp, faithfulness=1",
)


def default_methods(quick: bool) -> list[str]:
    """The methods a run compares when ``--methods`` is not given."""
    return [m for m in METHODS if not (quick and m in QUICK_SKIPS)]


def explain_defaults() -> dict:
    """explain's refinement settings by default (``nmfinterp.explain``'s constants), which every
    run records: the row "nmfinterp" is explained with them."""
    return {
        "refine_steps": REFINE_STEPS,
        "refine_lr": REFINE_LR,
        "energy_penalty": ENERGY_PENALTY,
        "contrast_penalty": [CONTRAST_PENALTY, CONTRAST_PENALTY_MILD],
        "keep_confidence": KEEP_CONFIDENCE,
        "residual_weight": RESIDUAL_WEIGHT,
        "mask_power": MASK_POWER,
        "mask_ratio": MASK_RATIO,
    }


def _log(*parts):
    print(*parts, flush=True)


def _softmax(s) -> np.ndarray:
    return torch.softmax(torch.as_tensor(np.asarray(s), dtype=torch.float32), -1).numpy()


def _ci(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return {"mean": None, "ci95": [None, None], "n": 0}
    m, lo, hi = mean_ci(values)
    return {"mean": float(m), "ci95": [float(lo), float(hi)], "n": len(values)}


# ---------------------------------------------------------------------------------------------
# conditions
# ---------------------------------------------------------------------------------------------
def _pairs(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each clip, another clip of a different class."""
    out = np.empty(len(labels), dtype=int)
    for i, c in enumerate(labels):
        out[i] = rng.choice(np.flatnonzero(labels != c))
    return out


def _speech_track(speech: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Random FSDD utterances, their padding trimmed, back to back until ``n_samples`` are filled."""
    parts, total = [], 0
    while total < n_samples:
        u = speech[rng.integers(len(speech))]
        nz = np.flatnonzero(np.abs(u) > 1e-4)
        u = u[nz[0] : nz[-1] + 1] if len(nz) else u
        gap = np.zeros(int(rng.integers(0, 1600)), dtype=np.float32)
        parts += [u, gap]
        total += len(u) + len(gap)
    return np.concatenate(parts)[:n_samples].astype(np.float32)


def make_conditions(
    test: AudioDataset,
    speech: np.ndarray | None,
    others: np.ndarray | None = None,
    random_state: int = 0,
) -> dict[str, dict]:
    """The five listening conditions on the test clips.

    Each condition has ``mixture``, ``target`` (the test clip's part), ``other`` (the interferer's
    part, ``mixture == target + other``), ``target_label`` and ``other_label`` (-1: no class).
    """
    rng = np.random.default_rng(random_state)
    x, labels = test.waveforms, test.labels
    n, length = x.shape
    out = {
        "clean": {
            "mixture": x,
            "target": x,
            "other": np.zeros_like(x),
            "target_label": labels,
            "other_label": np.full(n, -1),
        }
    }
    if others is None:
        j = _pairs(labels, rng)
        s2, s2_labels = x[j], labels[j]
    else:
        s2 = others[rng.integers(len(others), size=n)]
        s2_labels = np.full(n, -1)
    m = make_mixture(0.8 * x, 0.2 * s2, gain=1.0)
    out["mix_0.8_0.2"] = {
        "mixture": m.mixture,
        "target": m.target,
        "other": m.other,
        "target_label": labels,
        "other_label": s2_labels,
    }
    m = make_mixture(x, s2, snr_db=0.0)
    out["mix_equal"] = {
        "mixture": m.mixture,
        "target": m.target,
        "other": m.other,
        "target_label": labels,
        "other_label": s2_labels,
    }
    noise = rng.standard_normal(x.shape).astype(np.float32)
    interferers = {"white_noise": noise}
    if speech is not None:
        interferers["speech"] = np.stack([_speech_track(speech, length, rng) for _ in range(n)])
    level = np.maximum(rms(x, keepdims=True), 1e-6)
    for name, inter in interferers.items():
        other = (0.5 * inter * level / np.maximum(rms(inter, keepdims=True), 1e-8)).astype(
            np.float32
        )
        out[name] = {
            "mixture": x + other,
            "target": x,
            "other": other,
            "target_label": labels,
            "other_label": np.full(n, -1),
        }
    return out


def _decisions(cond: dict, decided: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows kept (decision = one source's class), and their deciding / other sources."""
    t_ok = decided == cond["target_label"]
    o_ok = (decided == cond["other_label"]) & ~t_ok
    keep = np.flatnonzero(t_ok | o_ok)
    deciding = np.where(t_ok[keep, None], cond["target"][keep], cond["other"][keep])
    other = np.where(t_ok[keep, None], cond["other"][keep], cond["target"][keep])
    return keep, deciding, other


def explained_inputs(clf, cond: dict, clean: bool):
    """One condition's inputs as the benchmark explains them: ``(x, classes, deciding, other)``,
    the classifier's decision on each as its class. Clean clips: all of them, no sources to tell
    apart (``deciding = other = None``); mixtures: those decided as one source's class
    (:func:`_decisions`), with their deciding and other source."""
    decided = predict_logits(clf, cond["mixture"]).argmax(1)
    if clean:
        keep, deciding, other = np.arange(len(decided)), None, None
    else:
        keep, deciding, other = _decisions(cond, decided)
    return cond["mixture"][keep], decided[keep], deciding, other


# ---------------------------------------------------------------------------------------------
# evaluation of masks
# ---------------------------------------------------------------------------------------------
def score_masks(
    clf_probs, spectrogram, x, masks, classes, deciding=None, other=None, domain="linear"
) -> dict:
    """Every metric of one method on one condition (per-clip values and their mean / CI)."""
    expl, resid = apply_masks(spectrogram, x, masks, domain)
    probs_x = clf_probs(x)
    scores = explanation_scores(probs_x, clf_probs(expl), clf_probs(resid))
    masks = np.asarray(masks)
    scores["sparseness"] = mask_sparseness(masks, batch=True)
    scores["complexity"] = mask_complexity(masks, batch=True)
    scores["mask_mean"] = masks.reshape(len(masks), -1).mean(1)
    if deciding is not None:
        part_d = np.asarray(spectrogram.apply_mask(deciding, torch.as_tensor(masks), domain))
        part_o = np.asarray(spectrogram.apply_mask(other, torch.as_tensor(masks), domain))
        scores["si_sdr_deciding"] = np.array(
            [_si_sdr(e, d) for e, d in zip(expl, deciding, strict=True)]
        )
        scores["si_sdr_other"] = np.array([_si_sdr(e, o) for e, o in zip(expl, other, strict=True)])
        scores["si_sdr_gap"] = scores["si_sdr_deciding"] - scores["si_sdr_other"]
        scores["si_sdr_mixture"] = np.array(
            [_si_sdr(m, d) for m, d in zip(x, deciding, strict=True)]
        )
        scores["energy_share"] = np.asarray(energy_share(part_d, part_o))
    assert np.all(np.asarray(classes) == probs_x.argmax(1)), "explained class != decision"
    return {k: _ci(v) for k, v in scores.items()}


# ---------------------------------------------------------------------------------------------
# the ESC benchmark
# ---------------------------------------------------------------------------------------------
def _seconds(text: str) -> float:
    """``--duration``'s value: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a positive number of seconds (e.g. 5 for ESC-50's clips)"
        )
    return value


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """The data arguments every benchmark command takes: ``--data`` (a folder in the ESC-50
    layout), ``--train-folds``, ``--test-fold``, ``--sr``, ``--duration`` (every clip's length)
    and ``--categories`` (a subset of the folder's classes; for :func:`split_from_args`)."""
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA / "esc10"), help="folder in the ESC-50 layout"
    )
    parser.add_argument("--train-folds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--test-fold", type=int, default=4)
    parser.add_argument("--sr", type=int, default=16000)
    parser.add_argument(
        "--duration",
        type=_seconds,
        default=5.0,
        help="every clip zero-padded or trimmed to this many seconds (default: 5, ESC-50's)",
    )
    parser.add_argument(
        "--categories",
        nargs="+",
        default=None,
        metavar="NAME",
        help="keep only these categories of meta.csv (default: all)",
    )


def load_split(
    data: str, train_folds, test_fold: int, sr: int, categories=None, duration: float = 5.0
):
    """A folder in the ESC-50 layout, its training folds and its test fold:
    ``(dataset, train, test)``; a clear error when either part has no clips. ``categories``
    keeps only those classes (re-indexed, see :func:`~nmfinterp.datasets.load_esc_folder`);
    every clip is zero-padded or trimmed to ``duration`` seconds."""
    ds = load_esc_folder(data, sr=sr, categories=categories, duration=duration)
    train = ds.subset(np.isin(ds.folds, train_folds))
    test = ds.subset(ds.folds == test_fold)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(
            f"{data}: {len(train)} clips in folds {list(train_folds)} and {len(test)} in fold "
            f"{test_fold}; expected clips in both."
        )
    return ds, train, test


def split_from_args(args: argparse.Namespace):
    """:func:`load_split` on the arguments of :func:`add_split_arguments`."""
    return load_split(
        args.data,
        args.train_folds,
        args.test_fold,
        args.sr,
        args.categories,
        args.duration,
    )


def split_record(args: argparse.Namespace, ds: AudioDataset, train, test) -> dict:
    """What a saved result records of its data: the folder, the folds, the classes, the clips'
    length, the sizes."""
    return {
        "data": args.data,
        "train_folds": args.train_folds,
        "test_fold": args.test_fold,
        "categories": args.categories,
        "duration": args.duration,
        "classes": ds.class_names,
        "n_train": len(train),
        "n_test": len(test),
    }


def train_benchmark_classifier(train, test, n_classes: int, sr: int, epochs: int):
    """The benchmark's classifier (a :class:`LogMelCNN`, seed 0) trained on ``train``: the model,
    its logits on ``train`` and on ``test``, its accuracy on ``test`` and its training seconds."""
    t = time.perf_counter()
    clf = train_classifier(
        LogMelCNN(n_classes, sr=sr, random_state=0),
        train.waveforms,
        train.labels,
        epochs=epochs,
        random_state=0,
    )
    seconds = time.perf_counter() - t
    y_train, y_test = predict_logits(clf, train.waveforms), predict_logits(clf, test.waveforms)
    return clf, y_train, y_test, float(np.mean(y_test.argmax(1) == test.labels)), seconds


def study_classifier(args: argparse.Namespace):
    """The data and classifier every study command starts from: ``args``' split
    (:func:`split_from_args`) and the benchmark's classifier trained on it with the full run's
    epochs, its accuracy logged; returns ``(ds, train, test, clf, y_train, y_test, accuracy)``."""
    ds, train, test = split_from_args(args)
    clf, y_train, y_test, accuracy, _ = train_benchmark_classifier(
        train, test, ds.n_classes, args.sr, FULL["classifier_epochs"]
    )
    _log(f"classifier: fold-{args.test_fold} accuracy {accuracy:.3f}")
    return ds, train, test, clf, y_train, y_test, accuracy


def study_without_source_gates(args: argparse.Namespace):
    """Where the source gates' studies start: :func:`study_classifier`, then the benchmark's
    pipeline (the full run's settings, seed 0) fitted without source gates, its top-1 fidelity
    logged; returns ``(train, test, clf, pipe, record)``, ``record`` what their JSON says of
    them (the commit, the split, the classifier's accuracy, the fidelity, the fit's seconds)."""
    ds, train, test, clf, y_train, y_test, accuracy = study_classifier(args)
    commit = _git_commit()  # before the fit: the code it ran
    pipe, fit_seconds = _fit_pipeline(clf, args.sr, FULL, train, y_train, source_gates=False)
    fidelity = float(pipe.score(test.waveforms, y_test))
    _log(f"pipeline fit without source gates {fit_seconds:.0f} s, top-1 fidelity {fidelity:.3f}")
    record = {
        "commit": commit,
        **split_record(args, ds, train, test),
        "classifier_accuracy": accuracy,
        "fidelity_top1": fidelity,
        "pipeline_fit_seconds": fit_seconds,
    }
    return train, test, clf, pipe, record


def _source_gates_note(interp) -> str:
    """ " (source gates' network N s of it)" for an interpreter whose fit learned them (the
    network's training epochs; the mixtures' features before them are not in it), else ""."""
    history = getattr(interp, "source_gates_history_", None)
    if history is None:
        return ""
    return f" (source gates' network {sum(h['seconds'] for h in history):.0f} s of it)"


def _fit_pipeline(clf, sr, cfg, train, y_train, **params):
    if "pooling" in cfg:
        params.setdefault("pooling", cfg["pooling"])
    faithfulness = params.get("faithfulness", InterpreterEstimator().faithfulness)
    if cfg["faithfulness_epochs"] is not None and faithfulness > 0:
        params.setdefault("faithfulness_epochs", cfg["faithfulness_epochs"])
    shorter = cfg.get("source_gates") is not None and params.get("source_gates", "auto") == "auto"
    if shorter:  # learned below with cfg's settings instead of the defaults
        params["source_gates"] = False
    # the run's epochs (--quick, --epochs) before a fit's own (L2I_TRAINING's), else the default
    own_epochs = params.pop("epochs", None)
    epochs = own_epochs if cfg["epochs"] is None else cfg["epochs"]
    pipe = build_pipeline(
        clf,
        sr,
        cfg["n_components"],
        epochs,
        random_state=0,
        dictionary_params={"per_class": cfg.get("per_class", "auto")},
        **params,
    )
    t = time.perf_counter()
    pipe.fit(train.waveforms, y_train)
    if shorter:
        interp = pipe[-1].set_params(source_gates="auto")
        if interp._auto_source_gates():
            try:
                interp.fit_source_gates(train.waveforms, **cfg["source_gates"])
            except SourceGatesUnavailable as exc:  # as fit's "auto" would: without them
                _log(f"no source gates: {exc}")
    return pipe, time.perf_counter() - t


def fit_gate_networks(pipes: dict, clips, methods, epochs=None) -> dict:
    """Train the gate networks the amortised rows of ``methods`` explain with, on ``clips``.

    "nmfinterp, amortised gates" trains ``fit_gates``' default network on ``pipes["nmfinterp"]``;
    "nmfinterp, amortised gates, hidden=64" one of :data:`PREVIOUS_GATE_HIDDEN` channels and
    "nmfinterp, amortised gates, residual_weight=1" one trained with the residual's weight of
    before on shallow copies of that pipeline and interpreter (``pipes["gates, hidden=64"]``,
    ``pipes["gates, residual_weight=1"]``, added here), which share the fitted dictionary and
    interpreter and hold their own ``gate_module_``. Returns each row's fit seconds, channels and
    training history.
    """
    gates = {}
    kw = {} if epochs is None else {"epochs": epochs}
    for name, (key, setting) in GATE_ROWS.items():
        if name not in methods:
            continue
        if key not in pipes:
            pipes[key] = copy.copy(pipes["nmfinterp"])
            step = pipes[key].steps[-1][0]
            pipes[key].steps = [*pipes[key].steps[:-1], (step, copy.copy(pipes[key][-1]))]
        t = time.perf_counter()
        interp = pipes[key][-1].fit_gates(clips, **{**setting, **kw})
        gates[name] = {
            "fit_seconds": time.perf_counter() - t,
            "hidden": interp.gate_module_.hidden,
            "residual_weight": setting.get("residual_weight", GATES_RESIDUAL_WEIGHT),
            "history": interp.gate_history_,
        }
        _log(f"{name}: {len(interp.gate_history_)} epochs, {gates[name]['fit_seconds']:.0f} s")
    return gates


def oracle_gate_masks(
    W, spectrogram, activations, deciding, other, gates=None, power=1.0, ratio="log"
) -> np.ndarray:
    """Masks from nmfinterp's own components and H, gated with the true sources (an upper bound).

    Component k is kept in frame t when its pattern correlates more with the deciding source's
    log-magnitude there than with the other's: Σ_f W_fk (V_d − V_o)_ft > 0. Not an explainer (it
    reads the sources); it shows how far a choice of gates over these components could go.

    With ``gates`` (an explainer's own per-clip ``(K, T)`` gates, such as ``Explanations.gates``),
    a component is kept where both keep it: that explainer's selection with what it kept of the
    other source taken out. Whether the classifier still recognises that tells whether the
    explainer kept the other source because the decision needs it. ``power`` and ``ratio``: the
    mask's sharpness and ratio (:func:`~nmfinterp.explain.soft_mask`), the explainer's own.
    """
    from .spectrogram import log_magnitude

    W = torch.as_tensor(np.asarray(W), dtype=torch.float32)
    H = torch.as_tensor(np.stack(activations), dtype=torch.float32)
    Vd = log_magnitude(spectrogram.stft(torch.as_tensor(deciding)))
    Vo = log_magnitude(spectrogram.stft(torch.as_tensor(other)))
    keep = (torch.einsum("fk,nft->nkt", W, Vd - Vo) > 0).float()
    if gates is not None:
        keep = keep * torch.as_tensor(np.stack(gates), dtype=torch.float32)
    return soft_mask(W, H, keep, power, ratio).numpy()


def _method_masks(
    method,
    x,
    classes,
    ex,
    pipes,
    spec,
    lmac,
    blackbox,
    attributions,
    sources,
    separated=None,
):
    """Masks of one method for clips ``x`` and the domain they apply in."""
    if method == "nmfinterp":
        return np.stack(ex.masks), "linear"
    if method == "nmfinterp, no refinement":
        return np.stack(
            explain(pipes["nmfinterp"], x, classes=classes, refine_steps=0).masks
        ), "linear"
    if method in GATE_ROWS:  # the gate network fit_gate_networks trained for the row
        ex = explain(pipes[GATE_ROWS[method][0]], x, classes=classes, amortised=True)
        return np.stack(ex.masks), "linear"
    if method == "nmfinterp, log-ratio mask, contrast_penalty=100":  # the default before
        ex = explain(
            pipes["nmfinterp"], x, classes=classes, mask_ratio="log", contrast_penalty=100.0
        )
        return np.stack(ex.masks), "linear"
    if method == "nmfinterp, contrast_penalty=0":
        ex = explain(pipes["nmfinterp"], x, classes=classes, contrast_penalty=0.0)
        return np.stack(ex.masks), "linear"
    if method == "nmfinterp, energy_penalty=0":
        ex = explain(pipes["nmfinterp"], x, classes=classes, energy_penalty=0.0)
        return np.stack(ex.masks), "linear"
    if method == "nmfinterp, residual_weight=1":  # the default first (0.25 before 0.5)
        ex = explain(pipes["nmfinterp"], x, classes=classes, residual_weight=1.0)
        return np.stack(ex.masks), "linear"
    if method == "nmfinterp, per-clip gates, energy_penalty=0":  # the default before all three
        ex = explain(
            pipes["nmfinterp"],
            x,
            classes=classes,
            per_frame=False,
            energy_penalty=0.0,
            contrast_penalty=0.0,
            residual_weight=1.0,
            mask_ratio="log",
        )
        return np.stack(ex.masks), "linear"
    if method == "nmfinterp, class-block contrast":  # the row "class-block NMF separation"'s
        # separation, instead of the source gates that separation="auto" would prefer
        ex = explain(separated, x, classes=classes, separation=separated.separation_)
        return np.stack(ex.masks), "linear"
    if method == "nmfinterp, no source gates":  # the default before source_gates="auto"
        ex = explain(pipes["nmfinterp"], x, classes=classes, separation=None)
        return np.stack(ex.masks), "linear"
    if method == "nmfinterp, one dictionary for all classes":  # the default dictionary before
        return np.stack(explain(pipes["one dictionary"], x, classes=classes).masks), "linear"
    if method == "L2I, official selection":  # L2I's selection on L2I's dictionary (one for all)
        ex = explain(pipes["one dictionary"], x, classes=classes, **OFFICIAL)
        return np.stack(ex.masks), "log"
    if method == "L2I, official training and selection":
        # L2I whole: its training and dictionary (the "l2i" pipeline), its selection
        ex = explain(pipes["l2i"], x, classes=classes, **OFFICIAL)
        return np.stack(ex.masks), "log"
    if method == "nmfinterp, faithfulness=1":
        return np.stack(explain(pipes["faithful"], x, classes=classes).masks), "linear"
    if method == "random components":
        n_selected = [len(s) for s in ex.selected]
        W = pipes["nmfinterp"][1].dictionary_
        ratio = ex.settings["mask_ratio"]
        return random_component_masks(W, ex.activations, n_selected, ratio=ratio), "linear"
    if method == "all components":
        return all_masks(spec, x), "linear"
    if method == "oracle gates (true sources)":
        W = pipes["nmfinterp"][1].dictionary_
        mask = {"power": ex.settings["mask_power"], "ratio": ex.settings["mask_ratio"]}
        return oracle_gate_masks(W, spec, ex.activations, *sources, **mask), "linear"
    if method == "oracle gates within nmfinterp's selection":
        W = pipes["nmfinterp"][1].dictionary_
        mask = {"power": ex.settings["mask_power"], "ratio": ex.settings["mask_ratio"]}
        return oracle_gate_masks(W, spec, ex.activations, *sources, ex.gates, **mask), "linear"
    if method == "L-MAC-style decoder":
        return lmac.masks(x, classes), "linear"
    if method == "black-box NMF":
        return blackbox.masks(x, classes), "linear"
    if method == "class-block NMF separation":
        return separated.separation_.masks(x, classes), "linear"
    return attributions[method].masks(x, classes), "linear"


def run_methods(
    clf,
    sr: int,
    pipes: dict,
    conditions: dict,
    cfg: dict,
    train: AudioDataset,
    methods: list[str],
) -> dict:
    """Every method on every condition; returns ``{condition: {method: metrics}}``."""
    probs = lambda w: _softmax(predict_logits(clf, w))  # noqa: E731
    nmf_pipe = pipes["nmfinterp"]
    spec = nmf_pipe[0]
    lmac = None
    if "L-MAC-style decoder" in methods:
        t = time.perf_counter()
        lmac = LMACExplainer(clf, LAYERS, spec, epochs=cfg["lmac_epochs"], random_state=0).fit(
            train.waveforms
        )
        _log(f"L-MAC-style decoder trained in {time.perf_counter() - t:.0f} s")
    occ_window, occ_stride = cfg["occlusion"]
    attributions = {
        "saliency": SpectrogramAttribution(clf, spec, "saliency"),
        "integrated gradients": SpectrogramAttribution(
            clf, spec, "integrated_gradients", n_steps=cfg["ig_steps"]
        ),
        "occlusion": SpectrogramAttribution(
            clf, spec, "occlusion", window=occ_window, stride=occ_stride
        ),
    }
    blackbox = BlackBoxNMFExplainer(
        clf, spec, nmf_pipe[1], n_samples=cfg["blackbox_samples"], random_state=0
    )
    separated = None
    if {"class-block NMF separation", "nmfinterp, class-block contrast"} & set(methods):
        # fitted as users fit it, on a copy of the interpreter (the other rows explain without):
        # K / n_classes patterns a class, as many as nmfinterp's blocks
        t = time.perf_counter()
        separated = copy.copy(nmf_pipe[-1])
        separated.fit_separation(train.waveforms)  # on the classifier's outputs on them
        _log(f"class-block NMF separation learned in {time.perf_counter() - t:.0f} s")
    results: dict = {}
    for cname, cond in conditions.items():
        x, classes, deciding, other = explained_inputs(clf, cond, cname == "clean")
        results[cname] = {"_n": int(len(cond["mixture"])), "_kept": int(len(x))}
        if len(x) == 0:
            continue
        t = time.perf_counter()
        ex = explain(nmf_pipe, x, classes=classes)
        t_ex = time.perf_counter() - t
        for method in methods:
            if method.startswith("oracle") and deciding is None:
                continue  # no second source to tell apart
            t = time.perf_counter()
            masks, domain = _method_masks(
                method,
                x,
                classes,
                ex,
                pipes,
                spec,
                lmac,
                blackbox,
                attributions,
                (deciding, other),
                separated,
            )
            seconds = time.perf_counter() - t + (t_ex if method == "nmfinterp" else 0.0)
            r = score_masks(probs, spec, x, masks, classes, deciding, other, domain)
            r["seconds_per_clip"] = seconds / len(x)
            results[cname][method] = r
            line = f"  {cname:12s} {method:32s} n={len(x):3d} " + " ".join(
                f"{k} {r[k]['mean']:.2f}" for k in ("Fid-In", "FF", "AI", "AD")
            )
            if "si_sdr_gap" in r:
                line += (
                    f" SI-SDR d/o {r['si_sdr_deciding']['mean']:.1f}/{r['si_sdr_other']['mean']:.1f}"
                    f" share {r['energy_share']['mean']:.2f}"
                )
            _log(line + f" ({seconds:.0f} s)")
    return results


# ---------------------------------------------------------------------------------------------
# Silero VAD
# ---------------------------------------------------------------------------------------------
def silero_benchmark(
    esc_train: AudioDataset, esc_test: AudioDataset, speech_root: str, cfg: dict, sr: int = 16000
) -> dict:
    """Explain Silero VAD's speech decisions on FSDD speech mixed with environmental sounds."""
    from sklearn.pipeline import make_pipeline

    from .dictionary import NMFDictionary
    from .silero import clip_speech_score, load_silero_vad
    from .spectrogram import SpectrogramTransformer

    if sr != 16000:
        raise ValueError(f"Silero VAD runs at 16 kHz; the benchmark was loaded at sr={sr}.")
    vad = load_silero_vad()
    fsdd = load_fsdd(speech_root, sr=sr)
    rng = np.random.default_rng(1)
    length = 2 * sr  # 2-second clips: a few digits and part of a sound

    def build(ds: AudioDataset, takes: np.ndarray, n: int):
        sounds = np.stack(
            [_loudest(s, length) for s in ds.waveforms[rng.integers(len(ds), size=n)]]
        )
        speech = np.stack([_speech_track(takes, length, rng) for _ in range(n)])
        m = make_mixture(speech, sounds, snr_db=0.0)
        return m

    train_takes = fsdd.waveforms[fsdd.folds == 1]
    test_takes = fsdd.waveforms[fsdd.folds == 0]
    n_tr = cfg["silero_train"]
    m_tr = build(esc_train, train_takes, n_tr)
    # the interpreter also sees sounds alone and speech alone, so both decisions occur
    X_train = np.concatenate(
        [
            m_tr.mixture[: n_tr // 2],
            m_tr.other[n_tr // 2 : 3 * n_tr // 4],
            m_tr.target[3 * n_tr // 4 :],
        ]
    )
    y_train = clip_speech_score(torch.as_tensor(_vad_probs(vad, X_train))).numpy()
    pipe = make_pipeline(
        SpectrogramTransformer(sr=sr, n_fft=512, hop_length=256),
        NMFDictionary(
            n_components=cfg["n_components"],
            per_class=cfg.get("per_class", "auto"),  # --dictionary, as for the ESC classifier
            random_state=0,
        ),
        InterpreterEstimator(
            vad,
            layers=["encoder.1", "encoder.3", "decoder.hidden"],
            classifier_output=clip_speech_score,
            output_type="probabilities",
            random_state=0,
            **({"epochs": cfg["epochs"]} if cfg["epochs"] else {}),
        ),
    )
    t = time.perf_counter()
    pipe.fit(X_train, y_train)
    fit_s = time.perf_counter() - t
    m_te = build(esc_test, test_takes, cfg["silero_test"])
    p_mix = _vad_probs(vad, m_te.mixture)
    speech_decided = np.flatnonzero(p_mix.max(1) > 0.5)
    y_test = clip_speech_score(torch.as_tensor(p_mix)).numpy()
    result = {
        "n_train": len(X_train),
        "fit_seconds": fit_s,
        "per_class": bool(pipe[1].per_class_),
        "n_test": len(m_te.mixture),
        "n_decided_speech": int(len(speech_decided)),
        "fidelity_top1": float(pipe.score(m_te.mixture, y_test)),
        "speech_probability_of_speech_alone": _ci(_vad_probs(vad, m_te.target).max(1)),
        "speech_probability_of_sound_alone": _ci(_vad_probs(vad, m_te.other).max(1)),
        "methods": {},
    }
    if len(speech_decided) == 0:
        return result
    x = m_te.mixture[speech_decided]
    classes = np.ones(len(x), dtype=int)

    def probs(w):
        return clip_speech_score(torch.as_tensor(_vad_probs(vad, w))).numpy()

    spec = pipe[0]
    ex = explain(pipe, x, classes=classes)
    makers = {
        "nmfinterp": lambda: np.stack(ex.masks),
        "nmfinterp, no refinement": lambda: np.stack(
            explain(pipe, x, classes=classes, refine_steps=0).masks
        ),
        "random components": lambda: random_component_masks(
            pipe[1].dictionary_, ex.activations, [len(s) for s in ex.selected]
        ),
        "all components": lambda: all_masks(spec, x),
    }
    for method, make in makers.items():
        r = score_masks(
            probs, spec, x, make(), classes, m_te.target[speech_decided], m_te.other[speech_decided]
        )
        result["methods"][method] = r
        _log(
            f"  silero {method:20s} n={len(x)} Fid-In {r['Fid-In']['mean']:.2f} FF {r['FF']['mean']:.2f} "
            f"SI-SDR speech/sound {r['si_sdr_deciding']['mean']:.1f}/{r['si_sdr_other']['mean']:.1f} "
            f"share {r['energy_share']['mean']:.2f}"
        )
    return result


def _loudest(x: np.ndarray, length: int) -> np.ndarray:
    """The ``length``-sample window of ``x`` with the most energy (ESC clips are often padded)."""
    if len(x) <= length:
        return np.pad(x, (0, length - len(x)))
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    hop = max(1, length // 8)
    starts = np.arange(0, len(x) - length + 1, hop)
    a = starts[np.argmax(energy[starts + length] - energy[starts])]
    return x[a : a + length]


def _vad_probs(vad, waves: np.ndarray, batch: int = 32) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in range(0, len(waves), batch):
            out.append(vad(torch.as_tensor(waves[s : s + batch])).numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# costs
# ---------------------------------------------------------------------------------------------
def _proc_status_mib(key: str) -> float | None:
    """A memory figure of this process from Linux's /proc/self/status (MiB), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_rss_mib() -> float:
    """This process's peak resident memory (MiB).

    ``VmHWM`` from /proc (Linux): unlike ``ru_maxrss``, which a spawned child inherits from the
    parent it was forked from, it starts afresh at ``exec``.
    """
    peak = _proc_status_mib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if peak is None else peak


def _rss_mib() -> float:
    """This process's resident memory now (MiB; where /proc is missing, its peak)."""
    now = _proc_status_mib("VmRSS")
    return _peak_rss_mib() if now is None else now


def _in_fresh_process(target, *args):
    """``target(*args)``'s result, computed in a new (spawned) Python process.

    Every timing of the cost section runs this way, as a benchmark runner such as asv does, so
    that what the benchmark process did before (half an hour of training and explaining: its
    allocator's state, caches, threads) cannot touch the ratios. The child runs with the parent's
    number of torch threads, nmfinterp's estimators included (they would otherwise take it for a
    parallel worker and use one thread: :func:`nmfinterp.parallel.worker_torch_threads`).
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_main, args=(queue, torch.get_num_threads(), target, args))
    proc.start()
    try:
        while True:
            try:
                status, value = queue.get(timeout=5)
                break
            except queue_module.Empty:
                if not proc.is_alive():
                    raise RuntimeError(
                        f"the benchmark's child process for {target.__name__} exited with code "
                        f"{proc.exitcode} without a result"
                    ) from None
    finally:
        proc.join(timeout=60)
    if status == "error":
        raise RuntimeError(f"{target.__name__} failed in the benchmark's child process:\n{value}")
    return pickle.loads(value)


def _child_main(queue, threads, target, args):
    try:
        os.environ[THREADS_ENV] = str(threads)
        torch.set_num_threads(threads)
        # as plain pickle bytes: torch's queue would share tensors through file descriptors
        # that close with this process, before the parent has read them
        queue.put(("ok", pickle.dumps(target(*args))))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        import traceback

        queue.put(("error", traceback.format_exc()))


def _scaling_fit(clf, sr, n_components, epochs, X, y):
    pipe = build_pipeline(clf, sr, n_components, epochs, random_state=0)
    t = time.perf_counter()
    pipe.fit(X, y)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "peak_rss_mib": _peak_rss_mib()}


def _interleaved_turns(fns: dict, repeats: int = 3, min_seconds: float = 0.5) -> dict:
    """Seconds per call of each of ``fns`` in each of ``repeats`` turns (a list per name): every
    workload runs once per turn, in turn (slow drifts of the machine's speed then touch every
    workload alike), after one untimed warm-up run of each.

    A workload whose warm-up took less than ``min_seconds`` is called enough times in a row in
    each turn to last about that long, and that turn's time per call is their mean: the
    scheduler's jitter then weighs on a 0.1 s workload about as little as on a 10 s one."""
    inner = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        fn()
        inner[name] = max(1, math.ceil(min_seconds / max(time.perf_counter() - t, 1e-6)))
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            times[name].append((time.perf_counter() - t) / inner[name])
    return times


def _medians(turns: dict) -> dict:
    return {name: float(np.median(v)) for name, v in turns.items()}


def _interleaved_times(fns: dict, repeats: int = 3, min_seconds: float = 0.5) -> dict:
    """Median seconds per call of each of ``fns`` over :func:`_interleaved_turns`."""
    return _medians(_interleaved_turns(fns, repeats, min_seconds))


def _turn_ratios(turns: dict, name: str, base: str = "base") -> dict:
    """``name``'s time over ``base``'s, turn by turn (both ran in the same turn): their median,
    smallest and largest. How much a ratio moves within one run is the noise it carries."""
    r = np.asarray(turns[name]) / np.asarray(turns[base])
    return {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}


#: the faster refinement the cost section also times (docs/method.md, "The refinement's learning
#: rate": about half the default's time at nearly its faithfulness)
FAST_REFINEMENT = {"refine_steps": 10, "refine_lr": 1.0}


def _explain_times(pipe, clf, batch, repeats: int = 5) -> dict:
    spec = pipe[0]
    return _interleaved_turns(
        {
            "explain": lambda: explain(pipe, batch),
            "fast": lambda: explain(pipe, batch, **FAST_REFINEMENT),
            "plain": lambda: explain(pipe, batch, refine_steps=0),
            **(
                {"amortised": lambda: explain(pipe, batch, amortised=True)}
                if getattr(pipe[-1], "gate_module_", None) is not None
                else {}
            ),
            "base": lambda: (
                predict_logits(clf, batch),
                spec.istft(spec.stft(batch), batch.shape[1]),
            ),
        },
        repeats,
    )


def _fit_times(interp, X, y, repeats: int) -> dict:
    # as many epochs as the benchmark's own fit: a fit of a few epochs would be dominated by
    # the one extraction of hidden features that both modes pay
    from sklearn.base import clone

    # the interpreter's training alone: the source gates' fit that follows it by default reads
    # no cached features and would add the same seconds to both
    fits = {
        mode: clone(interp).set_params(feature_cache=mode, source_gates=False, verbose=0)
        for mode in ("memory", "none")
    }
    return _interleaved_times(
        {mode: (lambda est=est: est.fit(X, y)) for mode, est in fits.items()}, repeats
    )


def cost_benchmark(clf, sr, pipe, train: AudioDataset, y_train, test: AudioDataset, cfg) -> dict:
    """Cost ratios measured in one run (medians over repeats)."""
    from sklearn.base import clone
    from sklearn.decomposition import NMF

    from .dictionary import to_frames

    out: dict = {}
    batch = test.waveforms[: cfg["cost_batch"]]
    turns = _in_fresh_process(_explain_times, pipe, clf, batch, cfg["cost_repeats"])
    times = _medians(turns)
    t_explain, t_plain, t_base = times["explain"], times["plain"], times["base"]
    out["explain_vs_forward_stft_istft"] = {
        "batch": len(batch),
        "repeats": cfg["cost_repeats"],
        "refine_steps": REFINE_STEPS,
        "explain_seconds": t_explain,
        "explain_no_refinement_seconds": t_plain,
        "forward_stft_istft_seconds": t_base,
        "ratio": t_explain / t_base,
        "ratio_no_refinement": t_plain / t_base,
        "fast_settings": FAST_REFINEMENT,
        "explain_fast_seconds": times["fast"],
        "ratio_fast": times["fast"] / t_base,
        "turns": turns,
        "turn_ratios": {name: _turn_ratios(turns, name) for name in turns if name != "base"},
    }
    if "amortised" in times:
        out["explain_vs_forward_stft_istft"].update(
            explain_amortised_seconds=times["amortised"],
            ratio_amortised=times["amortised"] / t_base,
        )
    _log(
        f"cost: explain {t_explain:.2f} s ({t_plain:.2f} s without refinement) vs "
        f"forward+STFT+ISTFT {t_base:.2f} s on {len(batch)} clips"
    )

    # interpreter fit: cached hidden features vs recomputed every epoch
    interp = pipe[-1]
    sub = train.subset(np.arange(min(48, len(train))))
    Xf = pipe[:-1].transform(sub.waveforms)
    ysub = y_train[: len(sub)]
    if "feature_cache" in interp.get_params():

        def fit_cost(est, what: str) -> dict:
            times = _in_fresh_process(_fit_times, est, Xf, ysub, cfg["fit_cost_repeats"])
            _log(
                f"cost: fit{what} cached {times['memory']:.1f} s vs recomputed {times['none']:.1f} s"
            )
            return {
                "n_clips": len(sub),
                "epochs": interp.epochs,
                "cached_seconds": times["memory"],
                "recomputed_seconds": times["none"],
                "speedup": times["none"] / times["memory"],
            }

        out["fit_cached_vs_recomputed"] = fit_cost(interp, "")
        # the same with each hidden layer projected onto its leading principal components
        projected = clone(interp).set_params(feature_components=PROJECTED_COMPONENTS)
        out["fit_cached_vs_recomputed_feature_components"] = {
            "feature_components": PROJECTED_COMPONENTS,
            **fit_cost(projected, f" with feature_components={PROJECTED_COMPONENTS}:"),
        }
    else:
        out["fit_cached_vs_recomputed"] = {"error": "InterpreterEstimator has no feature_cache"}

    # NMFDictionary vs sklearn's cd solver on every frame, at equal reconstruction error
    V = pipe[0].transform(train.waveforms).block("spectrogram")
    frames = to_frames(V).astype(np.float64)
    dico = clone(pipe[1])
    t = time.perf_counter()
    dico.fit(pipe[0].transform(train.waveforms))
    t_ours = time.perf_counter() - t
    err = lambda Ht, Wt: float(np.linalg.norm(frames - Ht @ Wt))  # noqa: E731
    err_ours = err(dico._activations(frames), dico.components_)
    row = {"n_frames": len(frames), "ours_seconds": t_ours, "ours_error": err_ours}
    # sklearn's cd on every frame, 10 iterations at a time (warm-started), until it is as good
    # or has used the dictionary's own iteration budget
    Ht = Wt = None
    t_cd, n_iter = 0.0, 0
    while n_iter < dico.max_iter:
        nmf = NMF(
            dico.n_components_,
            solver="cd",
            max_iter=10,
            tol=0.0,
            init=None if Ht is None else "custom",
            random_state=0,
        )
        t = time.perf_counter()
        Ht = nmf.fit_transform(frames, W=Ht, H=Wt)
        t_cd += time.perf_counter() - t
        Wt, n_iter = nmf.components_, n_iter + 10
        e = err(Ht, Wt)
        row.update({"cd_seconds": t_cd, "cd_error": e, "cd_max_iter": n_iter})
        if e <= err_ours:
            break
    row["cd_reached_equal_error"] = row["cd_error"] <= err_ours
    row["ratio_cd_over_ours"] = row["cd_seconds"] / t_ours
    out["nmf_vs_cd"] = row
    _log(
        f"cost: NMFDictionary {t_ours:.1f} s (error {err_ours:.1f}) vs cd {row['cd_seconds']:.1f} s "
        f"(error {row['cd_error']:.1f}, {row['cd_max_iter']} iterations)"
    )

    # fit time per clip at 1x, 2x, 4x the data, each in a fresh process (peak memory of that fit)
    rows = []
    for n in cfg["scaling"]:
        n = min(n, len(train))
        r = _in_fresh_process(
            _scaling_fit,
            clf,
            sr,
            pipe[1].n_components,
            cfg["scaling_epochs"],
            train.waveforms[:n],
            y_train[:n],
        )
        r.update(
            {"n_clips": n, "seconds_per_clip": r["seconds"] / n, "epochs": cfg["scaling_epochs"]}
        )
        rows.append(r)
        _log(f"cost: fit on {n} clips {r['seconds']:.0f} s, peak RSS {r['peak_rss_mib']:.0f} MiB")
    out["scaling"] = rows
    return out


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def save_results(out: dict, path) -> Path:
    """Write a benchmark command's raw results as JSON to ``path`` (folders made) and log it, with
    ``out["total_seconds"]``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float))
    _log(f"raw results: {path} ({out['total_seconds']:.0f} s in all)")
    return path


def _git_commit() -> str | None:
    """The commit the benchmark ran from (None outside a git checkout), with "+changes" when
    tracked files differ from it; the saved results themselves (benchmarks/results) do not count,
    so that one benchmark run after another in the same checkout records the same code."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)benchmarks/results",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _load_others(folder: str, sr: int, length: int) -> np.ndarray:
    paths = sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg")
    )
    if not paths:
        raise FileNotFoundError(f"--others {folder}: no .wav/.flac/.ogg files found in it.")
    return np.stack([load_audio(p, sr=sr, duration=length / sr) for p in paths])


def main(argv=None) -> int:
    """Run the benchmark (see the module docstring for the protocol); returns the exit code.

    ``argv`` are command-line arguments (``--help`` lists them); the raw results are written to
    ``<out>/esc10.json`` (``esc10_quick.json`` with ``--quick``, ``<name>.json`` with ``--name``).
    """
    p = argparse.ArgumentParser(
        prog="nmfinterp bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_split_arguments(p)
    p.add_argument("--speech", default=str(DEFAULT_DATA / "fsdd"), help="FSDD folder ('' to skip)")
    p.add_argument(
        "--others", default=None, help="folder of clips to use as interferers in (b), (c)"
    )
    p.add_argument("--quick", action="store_true", help="small settings: < 10 minutes on 2 cores")
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=METHODS,
        metavar="METHOD",
        help="methods to run (default: all; with --quick, all but the ablation rows in QUICK_SKIPS)",
    )
    p.add_argument(
        "--skip", nargs="*", default=[], choices=["methods", "silero", "cost"], help="parts to skip"
    )
    p.add_argument(
        "--classifier-epochs", type=int, default=None, help="override the classifier's epochs"
    )
    p.add_argument("--epochs", type=int, default=None, help="override the interpreters' epochs")
    p.add_argument(
        "--n-components",
        type=int,
        default=None,
        help="the dictionary's K (default: 100; 50 with --quick)",
    )
    p.add_argument(
        "--dictionary",
        choices=list(DICTIONARY_CHOICES),
        default="auto",
        help="the dictionaries (the ESC classifier's and Silero VAD's): NMFDictionary's default "
        "('auto': a block of patterns per predicted class where at least MIN_PREDICTED_CLASSES "
        "classes each get MIN_PATTERNS_PER_CLASS), one for all classes ('plain') or always per "
        "class ('per_class')",
    )
    p.add_argument(
        "--per-class",
        dest="dictionary",
        action="store_const",
        const="per_class",
        help="the same as --dictionary per_class",
    )
    p.add_argument(
        "--pooling",
        choices=["attention", "max", "mean"],
        default=None,
        help="the ESC classifier's interpreters with this pooling over time (default: "
        "InterpreterEstimator's, attention)",
    )
    p.add_argument("--name", default=None, help="JSON file name (default: esc10 / esc10_quick)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.methods is None:
        args.methods = default_methods(args.quick)
    if args.classifier_epochs is not None:
        cfg["classifier_epochs"] = args.classifier_epochs
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
        cfg["faithfulness_epochs"] = max(1, args.epochs // 3)
    if args.n_components is not None:
        if args.n_components < 2:
            p.error(f"--n-components {args.n_components}: expected an integer >= 2")
        cfg["n_components"] = args.n_components
    cfg["per_class"] = DICTIONARY_CHOICES[args.dictionary]
    if args.pooling is not None:
        cfg["pooling"] = args.pooling
    t_start = time.perf_counter()
    commit = _git_commit()  # before any work: the code the run ran, not what changed meanwhile

    ds, train, test = split_from_args(args)
    if cfg["max_train"] is not None and len(train) > cfg["max_train"]:
        pick = np.random.default_rng(0).choice(len(train), cfg["max_train"], replace=False)
        train = train.subset(np.sort(pick))
    if cfg["max_test"] is not None and len(test) > cfg["max_test"]:
        pick = np.random.default_rng(0).choice(len(test), cfg["max_test"], replace=False)
        test = test.subset(np.sort(pick))
    speech = None
    if args.speech:
        speech = load_fsdd(args.speech, sr=args.sr).waveforms
    others = _load_others(args.others, args.sr, ds.waveforms.shape[1]) if args.others else None

    clf, y_train, y_test, accuracy, clf_s = train_benchmark_classifier(
        train, test, ds.n_classes, args.sr, cfg["classifier_epochs"]
    )
    _log(f"classifier: fold-{args.test_fold} accuracy {accuracy:.3f} ({clf_s:.0f} s)")

    pipes, fits = {}, {}
    # the defaults train with the L2I loss alone; "l2i" is L2I whole (its official training on
    # one dictionary for all classes): its top-1 fidelity next to the defaults', and the row
    # "L2I, official training and selection" (runs before 2026-12-07 fitted "constant" instead:
    # the defaults' with lr_schedule="constant", weight_decay=0, for its fidelity alone)
    fits_to_run = [
        ("nmfinterp", {}),
        ("l2i", L2I_TRAINING),  # without source gates: L2I has none
    ]
    # the pipelines only some rows explain with: not fitted when the methods are skipped
    evaluated = [] if "methods" in args.skip else args.methods
    if "nmfinterp, faithfulness=1" in evaluated:
        fits_to_run.append(("faithful", {"faithfulness": 1.0}))
    # L2I's dictionary, one for all classes: its own pipeline where the defaults learned blocks
    if {"nmfinterp, one dictionary for all classes", "L2I, official selection"} & {*evaluated}:
        fits_to_run.append(("one dictionary", {}))
    for key, params in fits_to_run:
        if key == "one dictionary" and not pipes["nmfinterp"][1].per_class_:
            pipes[key] = pipes["nmfinterp"]  # the defaults' dictionary is one already
            continue
        run_cfg = cfg | {"per_class": False} if key in ("one dictionary", "l2i") else cfg
        pipes[key], fits[key] = _fit_pipeline(clf, args.sr, run_cfg, train, y_train, **params)
        _log(
            f"{key}: K={cfg['n_components']} per-class {pipes[key][1].per_class_}, fit "
            f"{fits[key]:.0f} s{_source_gates_note(pipes[key][-1])}, top-1 fidelity "
            f"{pipes[key].score(test.waveforms, y_test):.3f}"
        )
    # without the methods' evaluation only the defaults' network is needed (the cost section's)
    gated = [
        m for m in args.methods if "methods" not in args.skip or m == "nmfinterp, amortised gates"
    ]
    gates = fit_gate_networks(pipes, train.waveforms, gated, cfg["gate_epochs"])
    gate_records = {
        record: gates[row]
        for record, row in (
            ("gates", "nmfinterp, amortised gates"),
            ("previous_gates", "nmfinterp, amortised gates, hidden=64"),
            ("residual_weight_1_gates", "nmfinterp, amortised gates, residual_weight=1"),
            ("distilled_gates", "nmfinterp, amortised gates, distilled"),
        )
        if row in gates
    }
    results = {
        "settings": {k: v for k, v in vars(args).items()},
        "config": cfg,
        "conditions": CONDITIONS,
        "n_train": len(train),
        "n_test": len(test),
        "classes": ds.class_names,
        "classifier": {"model": "LogMelCNN", "accuracy": accuracy, "train_seconds": clf_s},
        "interpreters": {
            key: {
                "n_components": cfg["n_components"],
                "fit_seconds": fits[key],
                "fit_seconds_per_clip": fits[key] / len(train),
                "fidelity_top1": float(pipes[key].score(test.waveforms, y_test)),
                "per_class": bool(pipes[key][1].per_class_),
                "source_gates_history": getattr(pipes[key][-1], "source_gates_history_", None),
                **(gate_records if key == "nmfinterp" else {}),
                "params": {
                    k: v
                    for k, v in pipes[key][-1].get_params().items()
                    if isinstance(v, int | float | str | bool | dict | type(None))
                },
            }
            for key in fits
        },
        "commit": commit,
        "explain_defaults": explain_defaults(),
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.name or ('esc10_quick' if args.quick else 'esc10')}.json"

    def save():  # after every section: a failure later loses nothing already measured
        results["total_seconds"] = time.perf_counter() - t_start
        path.write_text(json.dumps(results, indent=2, default=float))

    save()
    conditions = make_conditions(test, speech, others)
    if "methods" not in args.skip:
        results["results"] = run_methods(clf, args.sr, pipes, conditions, cfg, train, args.methods)
        save()
    if "silero" not in args.skip and args.speech:
        _log("silero VAD:")
        try:
            results["silero"] = silero_benchmark(train, test, args.speech, cfg, args.sr)
        except (FloatingPointError, RuntimeError, ValueError) as exc:
            # recorded, not hidden: the table says the section failed and why
            results["silero"] = {"error": f"{type(exc).__name__}: {exc}"}
            _log(f"silero VAD failed: {type(exc).__name__}: {exc}")
        save()
    if "cost" not in args.skip:
        results["cost"] = cost_benchmark(
            clf, args.sr, pipes["nmfinterp"], train, y_train, test, cfg
        )
        results["cost"]["settings"] = {
            "classifier_epochs": cfg["classifier_epochs"],
            "epochs": cfg["epochs"],
            "n_train": len(train),
            "command_args": sys.argv[1:] if argv is None else list(argv),
        }
    save()
    _log(f"raw results: {path} ({results['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
