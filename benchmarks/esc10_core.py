"""Core figures on real audio: classifier accuracy, interpreter fidelity per K, fit and explain time.

    python benchmarks/esc10_core.py [--data ../shared/data/esc10] [--ks 100 50] [--out benchmarks/results]

A LogMelCNN is trained on the training folds; for each dictionary size K a pipeline is fitted on the
classifier's outputs on those folds and evaluated on the test fold: top-1 fidelity, the explanation
metrics on clean clips (FF, AI, AD, AG, Fid-In, mean and 95% CI), SI-SDR of explanations of equal-level
two-clip mixtures, fit time and explain time per clip (explain also relative to one classifier forward
+ STFT + ISTFT of the same batch). Prints a table and saves the raw JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from nmfinterp import explain
from nmfinterp.classifiers import LogMelCNN, predict_logits, train_classifier
from nmfinterp.datasets import load_esc_folder
from nmfinterp.demo import build_pipeline, evaluate_mixtures
from nmfinterp.metrics import explanation_scores, mean_ci

ROOT = Path(__file__).resolve().parents[1]


def softmax(s):
    return torch.softmax(torch.as_tensor(s), -1).numpy()


def ci(values):
    m, lo, hi = mean_ci(values)
    return {"mean": float(m), "ci95": [float(lo), float(hi)]}


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=str(ROOT / ".." / "shared" / "data" / "esc10"))
    p.add_argument("--train-folds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--test-fold", type=int, default=4)
    p.add_argument("--ks", type=int, nargs="+", default=[100, 50])
    p.add_argument(
        "--epochs", type=int, default=None, help="interpreter epochs (default: the estimator's)"
    )
    p.add_argument("--no-l2i", action="store_true", help="skip the L2I-loss-only rows")
    p.add_argument("--classifier-epochs", type=int, default=30)
    p.add_argument("--mixtures", type=int, default=40)
    p.add_argument("--sr", type=int, default=16000)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)

    ds = load_esc_folder(args.data, sr=args.sr)
    train = ds.subset(np.isin(ds.folds, args.train_folds))
    test = ds.subset(ds.folds == args.test_fold)
    t = time.perf_counter()
    clf = train_classifier(
        LogMelCNN(ds.n_classes, sr=args.sr, random_state=0),
        train.waveforms,
        train.labels,
        epochs=args.classifier_epochs,
        random_state=0,
    )
    clf_seconds = time.perf_counter() - t
    y_train, y_test = predict_logits(clf, train.waveforms), predict_logits(clf, test.waveforms)
    accuracy = float(np.mean(y_test.argmax(1) == test.labels))
    print(
        f"classifier: fold-{args.test_fold} accuracy {accuracy:.3f} (trained in {clf_seconds:.0f} s)"
    )

    results = {
        "data": args.data,
        "train_folds": args.train_folds,
        "test_fold": args.test_fold,
        "n_train": len(train),
        "n_test": len(test),
        "classifier": {"model": "LogMelCNN", "accuracy": accuracy, "train_seconds": clf_seconds},
        "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version()},
        "runs": [],
    }
    # (label, K, interpreter params, explain params): the defaults at each K, then the L2I loss alone
    # with nmfinterp's selection and with L2I's official selection.
    variants = [(f"nmfinterp defaults, K={k}", k, {}, {}) for k in args.ks]
    if not args.no_l2i:
        k = args.ks[0]
        official = {"top_k": 5, "threshold": 0.2, "mask_domain": "log", "relevance_mode": "raw"}
        variants.append((f"L2I loss only, K={k}", k, {"faithfulness": 0.0}, {}))
        variants.append(
            (f"L2I loss only, official selection, K={k}", k, {"faithfulness": 0.0}, official)
        )
    fitted = {}
    for label, k, interp_params, explain_params in variants:
        key = (k, tuple(sorted(interp_params.items())))
        if key in fitted:
            pipe, t, t_spec, t_nmf, t_fit = fitted[key]
            print(f"{label}: reusing the fitted pipeline")
        else:
            pipe = build_pipeline(clf, args.sr, k, args.epochs, random_state=0, **interp_params)
            t = time.perf_counter()
            Xs = pipe[0].fit_transform(train.waveforms)
            t_spec = time.perf_counter()
            Xd = pipe[1].fit_transform(Xs, y_train)
            t_nmf = time.perf_counter()
            pipe[2].fit(Xd, y_train)
            t_fit = time.perf_counter()
            fitted[key] = (pipe, t, t_spec, t_nmf, t_fit)
        fidelity = pipe.score(test.waveforms, y_test)

        # explain cost vs the classifier forward + STFT + ISTFT of the same batch
        batch = test.waveforms
        t0 = time.perf_counter()
        ex = explain(pipe, batch, **explain_params)
        explain_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        predict_logits(clf, batch)
        S = pipe[0].stft(batch)
        pipe[0].istft(S, batch.shape[1])
        base_s = time.perf_counter() - t0

        probs_x = softmax(ex.classifier_scores)
        probs_in = softmax(predict_logits(clf, np.asarray(ex.waveforms)))
        probs_out = softmax(predict_logits(clf, np.asarray(ex.residuals)))
        clean = {key: ci(v) for key, v in explanation_scores(probs_x, probs_in, probs_out).items()}
        rows = evaluate_mixtures(pipe, clf, test, args.mixtures, random_state=0, **explain_params)
        mixtures = {"n": len(rows)}
        for key in ("si_sdr_deciding", "si_sdr_other", "si_sdr_mixture", "energy_share"):
            mixtures[key] = ci([r[key] for r in rows])
        for key in ("Fid-In", "FF", "AD"):
            mixtures[key] = ci([r[key] for r in rows])
        run = {
            "label": label,
            "interpreter_params": {"epochs": args.epochs, **interp_params},
            "explain_params": explain_params,
            "n_components": k,
            "fidelity_top1": fidelity,
            "fit_seconds": {
                "spectrogram": t_spec - t,
                "dictionary": t_nmf - t_spec,
                "interpreter": t_fit - t_nmf,
                "total": t_fit - t,
                "per_clip": (t_fit - t) / len(train),
            },
            "explain_seconds_per_clip": explain_s / len(batch),
            "explain_vs_forward_stft_istft": explain_s / base_s,
            "mask_mean": float(np.mean([m.mean() for m in ex.masks])),
            "selected_mean": float(np.mean([len(s) for s in ex.selected])),
            "clean": clean,
            "mixtures_equal_level": mixtures,
        }
        results["runs"].append(run)
        print(
            f"{label}: fidelity {fidelity:.3f}  fit {run['fit_seconds']['total']:.0f} s "
            f"({1000 * run['fit_seconds']['per_clip']:.0f} ms/clip)  explain {1000 * run['explain_seconds_per_clip']:.0f} ms/clip "
            f"({run['explain_vs_forward_stft_istft']:.1f}x forward+STFT+ISTFT)  "
            f"Fid-In {clean['Fid-In']['mean']:.2f}  FF {clean['FF']['mean']:.2f}  "
            f"AD {clean['AD']['mean']:.0f} | mixtures: Fid-In {mixtures['Fid-In']['mean']:.2f} FF {mixtures['FF']['mean']:.2f} "
            f"SI-SDR deciding {mixtures['si_sdr_deciding']['mean']:.1f} dB vs other {mixtures['si_sdr_other']['mean']:.1f} dB "
            f"energy share {mixtures['energy_share']['mean']:.2f}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "esc10_core.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"raw results: {path}")


if __name__ == "__main__":
    main()
