"""How well the source gates' network predicts its targets on clips it never saw, by setting.

    python benchmarks/source_gates_generalisation.py [--data DIR] [--train-folds 1 2 3] [--test-fold 4] [--out FILE]
    python benchmarks/make_table.py      # docs/benchmarks.md quotes the saved JSON

The source gates (``fit_source_gates``) learn, per component and frame, whether the component
carries the deciding source of a two-clip mixture (:func:`nmfinterp.gates.source_targets`), from
mixtures of the training clips. On the test folds where the equal-level share misses its target,
is the network short of capacity, overfitting, or short of information? This fits the benchmark's
pipeline once without source gates (the full settings of ``nmfinterp/benchmark.py``, seed 0),
makes ``fit_source_gates``' training rows once, trains the network with each of
:data:`SETTINGS`, and scores its predictions against the true targets of (a) the first
:data:`N_TRAIN_SCORED` training rows and (b) the test fold's equal-level and 0.8/0.2 mixtures
decided as one source's class (the benchmark's: their sources are known): agreement over the
components and frames, the same weighted by each component's magnitude in the frame
(Σ_f W_fk H_kt, what the mask is made of), the magnitude-weighted share of what the network
gives the deciding source that the targets give it too ('precision'), and the binary
cross-entropy. The row 'untrained' is the network before training (the interpreter's own
selection); 'ensemble' averages the probabilities of the first three trained rows.

Raw results: ``benchmarks/results/source_gates_generalisation.json`` (``--out`` for another
split; about 25 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nmfinterp.benchmark import (  # noqa: E402
    _log,
    add_split_arguments,
    explained_inputs,
    make_conditions,
    save_results,
    study_without_source_gates,
)
from nmfinterp.gates import (  # noqa: E402
    GateNet,
    _activations,
    source_targets,
    source_training_rows,
    train_source_net,
)

#: fit_source_gates' network trained with each: (rounds of mixtures, train_source_net's keywords);
#: the first is fit_source_gates' defaults
SETTINGS = {
    "defaults (hidden=32, 60 epochs)": (10, {}),
    "hidden=64": (10, {"hidden": 64}),
    "weight_decay=0.1": (10, {"weight_decay": 0.1}),
    "hidden=16": (10, {"hidden": 16}),
    "without the hidden representation": (10, {"read_hidden": False}),
    "30 rounds of mixtures, 20 epochs": (30, {"epochs": 20}),
}
DEFAULTS = {"epochs": 60, "lr": 3e-3, "hidden": 32}
#: the averaged rows of 'ensemble'
ENSEMBLE = ("defaults (hidden=32, 60 epochs)", "hidden=64", "weight_decay=0.1")
N_TRAIN_SCORED = 600
CONDITIONS = ("mix_equal", "mix_0.8_0.2")


def probabilities(net: GateNet, rows, theta: torch.Tensor) -> torch.Tensor:
    """The network's probabilities ``(n, K, T)`` on rows ``(H, z, hidden, decided, ...)``."""
    H, z, hidden, decided = rows[:4]
    out = []
    with torch.no_grad():
        for i in range(0, len(H), 64):
            context = hidden[i : i + 64] if net.context_channels else None
            logits = net(H[i : i + 64], z[i : i + 64], theta, decided[i : i + 64], context)
            out.append(torch.sigmoid(logits))
    return torch.cat(out)


def agreement(p: torch.Tensor, targets: torch.Tensor, H: torch.Tensor, W: torch.Tensor) -> dict:
    """Probabilities ``p`` against the 0/1 ``targets``: agreement, the magnitude-weighted
    agreement and precision (each component's Σ_f W_fk H_kt) and the binary cross-entropy."""
    t = targets.float()
    weight = W.sum(0)[None, :, None] * H
    right = ((p > 0.5).float() == t).float()
    return {
        "agreement": float(right.mean()),
        "weighted_agreement": float((right * weight).sum() / weight.sum()),
        "weighted_precision": float((p * t * weight).sum() / (p * weight).sum().clamp_min(1e-12)),
        "bce": float(torch.nn.functional.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), t)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_split_arguments(p)
    p.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "results" / "source_gates_generalisation.json"),
    )
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    train, test, clf, pipe, record = study_without_source_gates(args)
    interp = pipe[-1]
    W = torch.as_tensor(interp.dictionary_.dictionary_, dtype=torch.float32)
    theta = interp.module_.theta.weight.detach()
    conditions = make_conditions(test, None)
    held_out = {}
    for c in CONDITIONS:
        x, classes, deciding, other = explained_inputs(clf, conditions[c], clean=False)
        H, z, _, hidden = _activations(interp, x, context=True)
        decided = torch.as_tensor(np.asarray(classes))
        held_out[c] = (H, z, hidden, decided, source_targets(interp, deciding, other).bool())
    rows = {}
    for n_rounds in sorted({r for r, _ in SETTINGS.values()}):
        rows[n_rounds] = source_training_rows(interp, train.waveforms, n_rounds, 10**6, 0)
        _log(f"{n_rounds} rounds: {len(rows[n_rounds][0][3])} training rows")

    # the training rows scored: the first of the defaults' (fit_source_gates' own rounds)
    scored_rows = tuple(t[:N_TRAIN_SCORED] for t in rows[next(iter(SETTINGS.values()))[0]][0])

    def scored(probs_of) -> dict:
        out = {"training rows": agreement(probs_of(scored_rows), scored_rows[4], scored_rows[0], W)}
        for c, r in held_out.items():
            out[c] = agreement(probs_of(r), r[4], r[0], W)
        return out

    def line(name: str, r: dict) -> None:
        _log(
            f"{name}: "
            + "; ".join(
                f"{k} agreement {v['agreement']:.3f} weighted {v['weighted_agreement']:.3f} "
                f"precision {v['weighted_precision']:.3f} bce {v['bce']:.3f}"
                for k, v in r.items()
            )
        )

    # its last layer starts at zero: the interpreter's own selection, whatever the other weights
    untrained = GateNet(W.shape[1], DEFAULTS["hidden"], context_channels=0)
    results = {
        "untrained": {
            "params": None,
            "scores": scored(lambda r: probabilities(untrained, r, theta)),
        }
    }
    line("untrained", results["untrained"]["scores"])
    nets = {}
    for name, (n_rounds, params) in SETTINGS.items():
        train_rows, gen = rows[n_rounds]
        kwargs = {**DEFAULTS, **params}
        t = time.perf_counter()
        # every setting from the generator's start: the defaults' row is fit_source_gates' own
        same = torch.Generator().manual_seed(gen.initial_seed())
        net, history = train_source_net(train_rows, theta, same, **kwargs)
        nets[name] = net
        results[name] = {
            "params": {"mixtures": n_rounds, **kwargs},
            "n_rows": int(len(train_rows[3])),
            "seconds": time.perf_counter() - t,
            "final_loss": history[-1]["loss"],
            "scores": scored(lambda r, net=net: probabilities(net, r, theta)),
        }
        line(name, results[name]["scores"])
    mean = lambda r: torch.stack([probabilities(nets[n], r, theta) for n in ENSEMBLE]).mean(0)  # noqa: E731
    results["ensemble"] = {"params": {"of": list(ENSEMBLE)}, "scores": scored(mean)}
    line("ensemble", results["ensemble"]["scores"])
    out = {
        **record,
        "n_held_out": {c: int(len(held_out[c][3])) for c in CONDITIONS},
        "n_train_scored": N_TRAIN_SCORED,
        "results": results,
        "total_seconds": time.perf_counter() - t_start,
    }
    save_results(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
