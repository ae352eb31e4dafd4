"""What the source gates' training settings trade: their fit's time and memory against the share.

    python benchmarks/source_gates_study.py [--data DIR] [--train-folds 1 2 3] [--test-fold 4]
    python benchmarks/make_table.py      # docs/benchmarks.md quotes the saved JSON

``InterpreterEstimator``'s default fit ends with ``fit_source_gates`` (``source_gates="auto"``):
ten rounds of two-clip mixtures of the training clips (at most ``max_mixtures``), 60 epochs of a
small network on their features. This fits the benchmark's pipeline once without them (the full
settings of ``nmfinterp/benchmark.py``, seed 0), then ``fit_source_gates`` with each of
:data:`SETTINGS`, each in a fresh process (its seconds, the network's epochs' seconds, and the
peak resident memory of that process above what it held before the fit), and explains the test
fold's equal-level and 0.8/0.2 mixtures (those the classifier decides as one source's class, as
the benchmark does) with each, and without source gates (``separation=None``: the interpreter
alone): the deciding source's energy share, the SI-SDR gap, Fid-In, FF and AD, mean and 95% CI.

Raw results: ``benchmarks/results/source_gates_study.json`` (``--out`` for another split; about
30 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nmfinterp.benchmark import (  # noqa: E402
    _in_fresh_process,
    _log,
    _peak_rss_mib,
    _rss_mib,
    _softmax,
    add_split_arguments,
    explained_inputs,
    make_conditions,
    save_results,
    score_masks,
    study_without_source_gates,
)
from nmfinterp.classifiers import predict_logits  # noqa: E402
from nmfinterp.explain import explain  # noqa: E402

#: fit_source_gates' settings tried; the first is its defaults
SETTINGS = {
    "defaults (10 rounds, 60 epochs)": {},
    "30 epochs": {"epochs": 30},
    "15 epochs": {"epochs": 15},
    "5 rounds": {"mixtures": 5},
    "max_mixtures=1000": {"max_mixtures": 1000},
}
#: the benchmark's conditions explained (mixtures of two classes' clips)
CONDITIONS = ("mix_equal", "mix_0.8_0.2")
METRICS = ("energy_share", "si_sdr_gap", "Fid-In", "FF", "AD")
#: the row explained without source gates
NONE = "no source gates (separation=None)"


def _fit_gates_measured(interp, X, params: dict) -> dict:
    """``interp.fit_source_gates(X, **params)`` in this (fresh) process: the network, its
    history, the seconds, and the peak resident memory above the memory held before it."""
    try:  # Linux: the peak (VmHWM) restarts from here, after the arguments were unpickled
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    before = _rss_mib()
    t = time.perf_counter()
    interp.fit_source_gates(X, **params)
    seconds = time.perf_counter() - t
    return {
        "net": interp.source_gates_,
        "history": interp.source_gates_history_,
        "seconds": seconds,
        "rss_before_mib": before,
        "peak_above_mib": _peak_rss_mib() - before,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_split_arguments(p)
    p.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "source_gates_study.json")
    )
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    train, test, clf, pipe, record = study_without_source_gates(args)
    interp = pipe[-1]
    probs = lambda w: _softmax(predict_logits(clf, w))  # noqa: E731
    conditions = make_conditions(test, None)
    inputs = {c: explained_inputs(clf, conditions[c], clean=False) for c in CONDITIONS}

    def scores(**kw) -> dict:
        out = {}
        for cname, (x, classes, deciding, other) in inputs.items():
            ex = explain(pipe, x, classes=classes, **kw)
            s = score_masks(probs, pipe[0], x, np.stack(ex.masks), classes, deciding, other)
            out[cname] = {m: s[m] for m in METRICS}
            _log(
                f"  {cname:12s} n={s['energy_share']['n']:3d} share "
                f"{s['energy_share']['mean']:.3f} gap {s['si_sdr_gap']['mean']:.1f} dB Fid-In "
                f"{s['Fid-In']['mean']:.2f} FF {s['FF']['mean']:.2f} AD {s['AD']['mean']:.2f}"
            )
        return out

    results = {}
    _log(NONE)
    results[NONE] = {"params": None, "conditions": scores(separation=None)}
    for name, params in SETTINGS.items():
        fit = _in_fresh_process(_fit_gates_measured, interp, train.waveforms, params)
        interp.source_gates_, interp.source_gates_history_ = fit["net"], fit["history"]
        network = sum(h["seconds"] for h in fit["history"])
        _log(
            f"{name}: fit_source_gates {fit['seconds']:.0f} s (network {network:.0f} s), peak "
            f"memory {fit['peak_above_mib']:.0f} MiB above the {fit['rss_before_mib']:.0f} before"
        )
        results[name] = {
            "params": params,
            "seconds": fit["seconds"],
            "network_seconds": network,
            "epochs": len(fit["history"]),
            "final_loss": fit["history"][-1]["loss"],
            "rss_before_mib": fit["rss_before_mib"],
            "peak_above_mib": fit["peak_above_mib"],
            "conditions": scores(),
        }
    out = {
        **record,
        "n_explained": {c: int(len(inputs[c][0])) for c in CONDITIONS},
        "results": results,
        "total_seconds": time.perf_counter() - t_start,
    }
    save_results(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
