"""nmfinterp on an accelerator: the ``device`` parameter on real audio, against the same machine's CPU.

    python benchmarks/device.py [--device cuda] [--quick] [--data DIR] [--train-folds 1 2 3]
                                [--test-fold 4] [--out benchmarks/results/device.json]
    python benchmarks/make_table.py      # docs/benchmarks.md quotes the saved JSON

Trains the benchmark's classifier (``nmfinterp/benchmark.py``'s settings) on ``--device``, then
fits the benchmark's pipeline with seed 0 twice: the classifier and the interpreter on the device,
and both on the CPU (a copy of the same classifier). For each: the fit's seconds, top-1 fidelity on
the test fold, the seconds of ``fit_gates`` and those to explain the test fold (the default
refined path and ``amortised=True``). Then what a user who trains on a GPU and serves on a CPU does: the
device-fitted pipeline is saved, loaded with the CPU classifier and explains on the CPU; its
predictions and explanations (each explain mode) are compared with the device's, with the
faithfulness scores of both, and with the change that noise of 1e-6 of each clip's peak makes on the
CPU alone. Every figure is from this run.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nmfinterp import explain, load, save  # noqa: E402
from nmfinterp.benchmark import (  # noqa: E402
    FULL,
    QUICK,
    _git_commit,
    _log,
    add_split_arguments,
    save_results,
    split_from_args,
    split_record,
)
from nmfinterp.classifiers import LogMelCNN, predict_logits, train_classifier  # noqa: E402
from nmfinterp.demo import build_pipeline  # noqa: E402
from nmfinterp.metrics import explanation_scores  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


EXPLAIN_MODES = {
    "refined (default)": {},
    "refine_steps=0": {"refine_steps": 0},
    "amortised": {"amortised": True},
}


def _probabilities(clf, x: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(predict_logits(clf, x)), dim=-1).numpy()


def _faithfulness(clf, p_x: np.ndarray, ex) -> dict:
    """Mean Fid-In, FF, AI, AD of explanations ``ex`` by the classifier ``clf``."""
    p_in = _probabilities(clf, np.asarray(ex.waveforms))
    p_out = _probabilities(clf, np.asarray(ex.residuals))
    return {k: float(np.mean(v)) for k, v in explanation_scores(p_x, p_in, p_out).items()}


def _relative_differences(a: np.ndarray, b: np.ndarray) -> dict:
    """Per clip ``‖a − b‖ / ‖b‖`` of two sets of explanations: median, max, clips over 1%."""
    d = np.linalg.norm(a - b, axis=-1) / np.maximum(np.linalg.norm(b, axis=-1), 1e-12)
    return {
        "median": float(np.median(d)),
        "max": float(d.max()),
        "over_1_percent": int((d > 0.01).sum()),
        "n_clips": len(d),
    }


def _fit_and_explain(clf, cfg, sr, data, device: torch.device, gate_epochs: int) -> dict:
    train, test, y_train, y_test = data
    pipe = build_pipeline(clf, sr, cfg["n_components"], cfg["epochs"], random_state=0)
    pipe.set_params(interpreterestimator__device=str(device))
    # what Pipeline.fit does, one step at a time: the dictionary (STFT, NMF) runs on the CPU
    Xt, dictionary_s = _timed(lambda: pipe[:-1].fit_transform(train.waveforms, y_train), device)
    _, interpreter_s = _timed(lambda: pipe[-1].fit(Xt, y_train), device)
    fit_s = dictionary_s + interpreter_s
    fidelity = float(pipe.score(test.waveforms, y_test))
    _, gates_s = _timed(lambda: pipe[-1].fit_gates(train.waveforms, epochs=gate_epochs), device)
    refined, explain_s = _timed(lambda: explain(pipe, test.waveforms), device)
    amortised, amortised_s = _timed(lambda: explain(pipe, test.waveforms, amortised=True), device)
    _log(
        f"{device}: fit {fit_s:.1f} s (interpreter {interpreter_s:.1f} s), fidelity "
        f"{fidelity:.4f}, gates {gates_s:.1f} s, explain {explain_s:.1f} s (amortised "
        f"{amortised_s:.2f} s) for {len(test)} clips"
    )
    return {
        "pipe": pipe,
        # the timed explanations, kept for the comparison with the CPU (by EXPLAIN_MODES' names)
        "explanations": {"refined (default)": refined, "amortised": amortised},
        "result": {
            "fit_seconds": fit_s,
            "dictionary_fit_seconds": dictionary_s,
            "interpreter_fit_seconds": interpreter_s,
            "fidelity": fidelity,
            "gate_epochs": gate_epochs,
            "fit_gates_seconds": gates_s,
            "explain_seconds": explain_s,
            "explain_amortised_seconds": amortised_s,
            "training_fidelity": float(pipe[-1].history_[-1]["fidelity"]),
        },
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="the accelerator (%(default)s)")
    p.add_argument("--quick", action="store_true", help="the benchmark's quick settings")
    p.add_argument(
        "--gate-epochs", type=int, default=30, help="fit_gates's epochs (%(default)s, its default)"
    )
    add_split_arguments(p)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "device.json"))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch sees no CUDA GPU on this machine.")
    cfg = QUICK if args.quick else FULL
    t_start = time.perf_counter()
    # a copy of the tree whose .git is absent or stale (as on a lent GPU machine) is named by the caller
    commit = os.environ.get("NMFINTERP_COMMIT") or _git_commit()
    ds, train, test = split_from_args(args)
    if cfg.get("max_train"):
        train = train.subset(np.arange(len(train)) < cfg["max_train"])
    if cfg.get("max_test"):
        test = test.subset(np.arange(len(test)) < cfg["max_test"])
    clf, clf_s = _timed(
        lambda: train_classifier(
            LogMelCNN(ds.n_classes, sr=args.sr, random_state=0),
            train.waveforms,
            train.labels,
            epochs=cfg["classifier_epochs"],
            random_state=0,
            device=device,
        ),
        device,
    )
    y_train, y_test = predict_logits(clf, train.waveforms), predict_logits(clf, test.waveforms)
    accuracy = float(np.mean(y_test.argmax(1) == test.labels))
    _log(
        f"classifier trained on {device} in {clf_s:.1f} s: fold-{args.test_fold} acc {accuracy:.3f}"
    )
    clf_cpu = copy.deepcopy(clf).cpu()

    data = (train, test, y_train, y_test)
    on_device = _fit_and_explain(clf, cfg, args.sr, data, device, args.gate_epochs)
    on_cpu = _fit_and_explain(clf_cpu, cfg, args.sr, data, torch.device("cpu"), args.gate_epochs)

    # trained on the device, served on the CPU: save, load with the CPU classifier, explain there
    with tempfile.TemporaryDirectory() as tmp:
        served = load(save(on_device["pipe"], Path(tmp) / "m.safetensors"), classifier=clf_cpu)
    served.set_params(interpreterestimator__device="cpu")
    proba_diff = float(
        np.abs(
            served.predict_proba(test.waveforms) - on_device["pipe"].predict_proba(test.waveforms)
        ).max()
    )
    # the same explanations on both (each mode), and how the default refined one moves when the
    # clips move by float noise on one device: refining is an optimisation with thresholded gates
    x = test.waveforms
    noise = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    x_noisy = x + 1e-6 * np.abs(x).max(axis=-1, keepdims=True) * noise
    p_x = _probabilities(clf_cpu, x)
    comparison = {}
    for mode, kw in EXPLAIN_MODES.items():
        on_gpu = on_device["explanations"].get(mode)
        if on_gpu is None:  # not timed above
            on_gpu = explain(on_device["pipe"], x, **kw)
        on_host = explain(served, x, **kw)
        comparison[mode] = {
            "relative_difference": _relative_differences(np.asarray(on_host), np.asarray(on_gpu)),
            "noise_1e-6_relative_difference": _relative_differences(
                np.asarray(explain(served, x_noisy, **kw)), np.asarray(on_host)
            ),
            "device": _faithfulness(clf_cpu, p_x, on_gpu),
            "cpu": _faithfulness(clf_cpu, p_x, on_host),
        }
        r, n = (
            comparison[mode]["relative_difference"],
            comparison[mode]["noise_1e-6_relative_difference"],
        )
        _log(
            f"served on the CPU, {mode}: relative difference to the device's median "
            f"{r['median']:.1e} (max {r['max']:.1e}); 1e-6 noise on the clips: median "
            f"{n['median']:.1e}; FF {comparison[mode]['device']['FF']:.3f} on the device, "
            f"{comparison[mode]['cpu']['FF']:.3f} on the CPU"
        )
    agree = float(
        np.mean(on_device["pipe"].predict(test.waveforms) == on_cpu["pipe"].predict(test.waveforms))
    )
    _log(
        f"served on the CPU: predict_proba max diff {proba_diff:.2e}; "
        f"device and CPU fits agree on {agree:.3f} of clips"
    )
    d, c = on_device["result"], on_cpu["result"]
    out = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "quick": args.quick,
        **split_record(args, ds, train, test),
        "n_components": cfg["n_components"],
        "classifier_accuracy": accuracy,
        "classifier_train_seconds": clf_s,
        "on_device": d,
        "on_cpu": c,
        "fit_speedup": c["fit_seconds"] / d["fit_seconds"],
        "fit_gates_speedup": c["fit_gates_seconds"] / d["fit_gates_seconds"],
        "explain_speedup": c["explain_seconds"] / d["explain_seconds"],
        "device_cpu_prediction_agreement": agree,
        "served_on_cpu": {
            "predict_proba_max_abs_diff": proba_diff,
            "explanations": comparison,
        },
        "commit": commit,
        "total_seconds": time.perf_counter() - t_start,
    }
    _log(
        f"fit {out['fit_speedup']:.2f}x and explain {out['explain_speedup']:.2f}x faster on "
        f"{out['device_name']} than on {out['cpu_count']} CPU cores"
    )
    save_results(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
