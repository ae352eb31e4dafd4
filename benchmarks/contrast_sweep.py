"""The refinement over one of its settings: what each value buys on clean clips and mixtures, and costs.

    python benchmarks/contrast_sweep.py [--weights 0 10 30 100 300 1000] [--data DIR] [--speech DIR]
    python benchmarks/contrast_sweep.py --param refine_steps [--weights 0 5 10 20 40 80]
    python benchmarks/contrast_sweep.py --param energy_penalty [--weights 0 0.3 1 3 10 30]
    python benchmarks/contrast_sweep.py --param mask_power [--weights 1 1.5 2 3]
    python benchmarks/contrast_sweep.py --param residual_weight [--weights 0 0.25 0.5 1]
    python benchmarks/contrast_sweep.py --mask-power 2 --out F.json   # another param at mask_power=2
    python benchmarks/contrast_sweep.py --mask-ratio log --out F.json  # ... with the log-ratio mask
    python benchmarks/contrast_sweep.py --mask-ratio linear log --out F.json  # each value with both
    python benchmarks/contrast_sweep.py --dictionary plain per_class --out F.json  # both dictionaries
    python benchmarks/contrast_sweep.py --param refine_steps --weights 10 20 --refine-lr 0.5 1 \
        --out F.json  # each number of steps at each of the refinement's learning rates
    python benchmarks/make_table.py      # docs/benchmarks.md quotes the saved JSON

``--param contrast_penalty`` (the default): ``explain(..., contrast_penalty=w)`` adds to the
refinement's objective the energy the explanation keeps from components that the other classes the
classifier hears use more than the explained one (docs/method.md). A larger weight drops more of the
interfering source on mixtures, and can cost faithfulness on clean clips. ``--param refine_steps``:
the number of Adam steps the refinement takes (``REFINE_STEPS`` by default): its cost grows with
them; does its faithfulness, or the share of the explanation's energy from the deciding source?
``--param energy_penalty``: the weight of the share of the clip's energy the explanation keeps
(both sources alike). ``--param mask_power``: the explanation mask's sharpness (1: the ratio of the
kept components' model to the whole; 2: the Wiener mask on power spectra), which the refinement
optimises through; ``--mask-ratio`` the ratio it is (``explain``'s ``mask_ratio``) for every
value of another param; with several, every value is run with each, on the same pipeline.
``--dictionary``: the pipeline's dictionary, one for all classes (``plain``) or one block per
class (``per_class``, ``NMFDictionary(per_class=True)``); with both, each is fitted on the same
classifier and every value runs on each.
``--param residual_weight``: the weight of the objective's residual term (how
much what the explanation leaves out must lose the decision). ``--refine-lr``: the refinement's
Adam learning rate (``explain``'s ``refine_lr``) for every value; with several, each value with
each, on the same pipeline.

This trains the benchmark's classifier and the default pipeline once (``nmfinterp/benchmark.py``'s
full settings), then explains fold 4's clean clips, 0.8/0.2 mixtures and equal-level mixtures with
each value, scores them as the benchmark does, and saves every figure to
``benchmarks/results/contrast_sweep.json`` (``refine_steps_sweep.json``, ``energy_sweep.json``,
``mask_power_sweep.json``, ``residual_sweep.json`` for the others; ``--out`` names another, e.g.
for another split with ``--train-folds`` and ``--test-fold``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nmfinterp.benchmark import (  # noqa: E402
    DEFAULT_DATA,
    FULL,
    _ci,
    _fit_pipeline,
    _git_commit,
    _log,
    _softmax,
    add_split_arguments,
    explained_inputs,
    make_conditions,
    save_results,
    score_masks,
    split_record,
    study_classifier,
)
from nmfinterp.classifiers import predict_logits  # noqa: E402
from nmfinterp.datasets import load_fsdd  # noqa: E402
from nmfinterp.dictionary import PER_CLASS_CHOICES  # noqa: E402
from nmfinterp.explain import (  # noqa: E402
    CONTRAST_PENALTY,
    ENERGY_PENALTY,
    KEEP_CONFIDENCE,
    MASK_POWER,
    MASK_RATIO,
    MASK_RATIOS,
    REFINE_STEPS,
    RESIDUAL_WEIGHT,
    default_contrast_penalty,
    explain,
)

#: --dictionary's choices: one dictionary for all classes, or one block of patterns per class
DICTIONARIES = ("plain", "per_class")
CONDITIONS = ("clean", "mix_0.8_0.2", "mix_equal")
METRICS = ("Fid-In", "FF", "AI", "AD", "si_sdr_gap", "energy_share", "mask_mean")
#: the settings this sweeps: their defaults, the values swept unless --weights says, the JSON's name
PARAMS = {
    "contrast_penalty": (
        CONTRAST_PENALTY,
        [0.0, 10.0, 30.0, 100.0, 300.0, 1000.0],
        "contrast_sweep",
    ),
    "refine_steps": (REFINE_STEPS, [0, 5, 10, 20, 40, 80], "refine_steps_sweep"),
    "energy_penalty": (ENERGY_PENALTY, [0.0, 0.3, 1.0, 3.0, 10.0, 30.0], "energy_sweep"),
    "mask_power": (MASK_POWER, [1.0, 1.5, 2.0, 3.0], "mask_power_sweep"),
    "residual_weight": (RESIDUAL_WEIGHT, [0.0, 0.25, 0.5, 1.0], "residual_sweep"),
}


def _value(text: str) -> float | tuple[float, ...]:
    """A --weights value: a number, or weights tried in turn, ``300>100`` (contrast_penalty)."""
    parts = tuple(float(v) for v in text.split(">"))
    return parts[0] if len(parts) == 1 else parts


def _key(value) -> str:
    """A value's key in the saved results: ``300.0``, or ``300.0>100.0`` for weights in turn."""
    return ">".join(map(str, value)) if isinstance(value, tuple) else str(value)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--param", choices=list(PARAMS), default="contrast_penalty")
    p.add_argument(
        "--weights",
        type=_value,
        nargs="+",
        default=None,
        help="the values swept (contrast_penalty: 0 10 30 100 300 1000, and weights tried in "
        "turn as 300>100; refine_steps: 0 5 10 20 40 80; energy_penalty: 0 0.3 1 3 10 30; "
        "mask_power: 1 1.5 2 3; residual_weight: 0 0.25 0.5 1)",
    )
    add_split_arguments(p)
    p.add_argument("--speech", default=str(DEFAULT_DATA / "fsdd"), help="FSDD folder ('' to skip)")
    p.add_argument(
        "--mask-power",
        type=float,
        default=MASK_POWER,
        help="explain's mask_power for every value of another --param (%(default)s)",
    )
    p.add_argument(
        "--mask-ratio",
        nargs="+",
        choices=MASK_RATIOS,
        default=[MASK_RATIO],
        help="explain's mask_ratio for every value of --param; several: each value with each, "
        "on the same pipeline (%(default)s)",
    )
    p.add_argument(
        "--dictionary",
        nargs="+",
        choices=DICTIONARIES,
        default=["plain"],
        help="the pipeline's dictionary: one for all classes, or a block per class; several: "
        "each on the same classifier (%(default)s)",
    )
    p.add_argument(
        "--keep-confidence",
        type=float,
        default=None,
        help="explain's keep_confidence for weights tried in turn (A>B): a clip is also refined "
        "again where the classifier gives its class less than this times its probability on "
        "the clip; 0: the decision alone (default: explain's, KEEP_CONFIDENCE)",
    )
    p.add_argument(
        "--refine-lr",
        type=float,
        nargs="+",
        default=None,
        help="explain's refine_lr for every value of --param; several: each value with each, on "
        "the same pipeline (default: explain's, REFINE_LR)",
    )
    p.add_argument("--out", default=None, help="the JSON (default: benchmarks/results/<name>.json)")
    args = p.parse_args(argv)
    default, values, name = PARAMS[args.param]
    fixed = {} if args.param == "mask_power" else {"mask_power": args.mask_power}
    ratios = list(dict.fromkeys(args.mask_ratio))
    fixed["mask_ratio"] = ratios[0] if len(ratios) == 1 else ratios
    lrs = list(dict.fromkeys(args.refine_lr or [None]))
    if not all(lr is None or lr > 0 for lr in lrs):
        raise SystemExit(f"--refine-lr {args.refine_lr}: expected positive learning rates.")
    if args.refine_lr:  # recorded only where given: the sweeps before it ran explain's default
        fixed["refine_lr"] = lrs[0] if len(lrs) == 1 else lrs
    args.weights = values if args.weights is None else args.weights
    in_turn = [w for w in args.weights if isinstance(w, tuple)]
    if in_turn and args.param != "contrast_penalty":
        raise SystemExit(
            f"--weights {' '.join(map(_key, in_turn))}: weights tried in turn (A>B) are for "
            "--param contrast_penalty only."
        )
    if args.keep_confidence is not None and not in_turn:
        raise SystemExit(
            f"--keep-confidence {args.keep_confidence}: it decides which clips weights tried in "
            "turn refine again; add such weights, e.g. --weights 100 '300>100'."
        )
    bad = [w for w in args.weights if not min(w if isinstance(w, tuple) else (w,)) >= 0]
    if args.param == "refine_steps":
        bad += [w for w in args.weights if w != int(w)]
        args.weights = [int(w) for w in args.weights if w == int(w)]
    if bad:
        raise SystemExit(f"--weights {bad}: expected non-negative numbers (integers for steps).")
    args.out = args.out or str(ROOT / "benchmarks" / "results" / f"{name}.json")
    t_start = time.perf_counter()
    ds, train, test, clf, y_train, y_test, accuracy = study_classifier(args)
    speech = load_fsdd(args.speech, sr=args.sr).waveforms if args.speech else None
    commit = _git_commit()  # before the fit: the code it ran
    dictionaries = list(dict.fromkeys(args.dictionary))
    pipes, pipelines = {}, {}
    for d in dictionaries:
        cfg = FULL | {"per_class": PER_CLASS_CHOICES[d]}
        pipes[d], fit_seconds = _fit_pipeline(clf, args.sr, cfg, train, y_train)
        fidelity = float(pipes[d].score(test.waveforms, y_test))
        pipelines[d] = {"fidelity_top1": fidelity, "fit_seconds": fit_seconds}
        _log(f"{d} pipeline fit {fit_seconds:.0f} s, top-1 fidelity {fidelity:.3f}")
    probs = lambda w: _softmax(predict_logits(clf, w))  # noqa: E731
    conditions = make_conditions(test, speech)
    results: dict = {c: {} for c in CONDITIONS}
    for cname in CONDITIONS:
        cond = conditions[cname]
        x, classes, deciding, other = explained_inputs(clf, cond, cname == "clean")
        for d, ratio, lr, w in itertools.product(dictionaries, ratios, lrs, args.weights):
            t = time.perf_counter()
            settings = fixed | {"mask_ratio": ratio, args.param: w}
            if lr is not None:
                settings["refine_lr"] = lr
            if isinstance(w, tuple) and args.keep_confidence is not None:
                settings["keep_confidence"] = args.keep_confidence
            ex = explain(pipes[d], x, classes=classes, **settings)
            seconds = time.perf_counter() - t
            r = score_masks(probs, pipes[d][0], x, np.stack(ex.masks), classes, deciding, other)
            r["seconds_per_clip"] = seconds / len(x)
            r["n"] = len(x)
            if isinstance(w, tuple):  # the clips refined again with a later weight
                r["refined_again"] = _ci(ex.contrast_penalties != w[0])
            # the value alone where one ratio and one dictionary ran (as every sweep saved
            # before several existed), else what tells the rows apart
            key = _key(w) + (f", mask_ratio={ratio}" if len(ratios) > 1 else "")
            key += f", refine_lr={lr:g}" if len(lrs) > 1 else ""
            key += f", dictionary={d}" if len(dictionaries) > 1 else ""
            results[cname][key] = r
            _log(
                f"  {cname:12s} {args.param}={key:<24s} "
                + " ".join(f"{k} {r[k]['mean']:.2f}" for k in METRICS if k in r)
            )
    out = {
        **split_record(args, ds, train, test),
        "classifier_accuracy": accuracy,
        "fidelity_top1": pipelines[dictionaries[0]]["fidelity_top1"],
        "dictionary": dictionaries[0] if len(dictionaries) == 1 else dictionaries,
        "pipelines": pipelines,
        "n_components": FULL["n_components"],
        "param": args.param,
        "default_weight": default,
        # explain's own default contrast weights for each pipeline (A>B: tried in turn)
        "default_weights": {
            d: _key(default_contrast_penalty(pipes[d][-1]))
            for d in dictionaries
            if args.param == "contrast_penalty"
        },
        # explain's other settings in this run: their defaults at this commit (the contrast
        # weights as explain tries them in turn by default, e.g. "300.0>100.0")
        "settings": {k: v[0] for k, v in PARAMS.items() if k != args.param}
        | (
            {"contrast_penalty": _key(default_contrast_penalty(pipes[dictionaries[0]][-1]))}
            if args.param != "contrast_penalty"
            else {}
        )
        | fixed,
        "weights": args.weights,
        # weights in turn: a clip is also refined again below this share of its confidence
        "keep_confidence": KEEP_CONFIDENCE
        if in_turn and args.keep_confidence is None
        else args.keep_confidence,
        "results": results,
        "commit": commit,
        "torch_threads": torch.get_num_threads(),
        "total_seconds": time.perf_counter() - t_start,
    }
    save_results(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
