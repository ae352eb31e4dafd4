"""Why the amortised gates are not explain's default: where the gate network falls short, measured.

    python benchmarks/gates_study.py [--data DIR] [--train-folds 1 2 3] [--test-fold 4]
    python benchmarks/make_table.py      # docs/benchmarks.md quotes the saved JSON

``explain(..., amortised=True)`` costs about 1.5x the classifier plus STFT, and its gates are less
faithful than those of the refinement (20 gradient steps through the classifier, over 100x), which
stays the default. This asks why, on the benchmark's classifier and pipeline (``nmfinterp/benchmark.py``'s
full settings, seed 0):

1. Is it generalisation? The gates are scored on the training clips they learned from as well as
   on the test fold.
2. Is the gate network short of the per-clip optimum of its own objective? The objective
   ``fit_gates`` lowers, with hard gates, averaged over rows like its training rows (the training
   clips and two rounds of two-clip mixtures of them, drawn as ``fit_gates`` draws its own: the
   same clips, another draw of mixtures; (a)-(c) train on these rows): for the interpreter's own
   selection, the gate network's gates and the gates ``explain``'s refinement finds for each row.
3. Do other ways of training it close the gap? (a) distillation: the network fitted to the
   refined gates themselves (binary cross-entropy, no classifier in the loop); (b) straight-through:
   the trained network trained on for more epochs with hard gates in the forward pass (so that
   training and explaining use the same gates); (c) less information: ``fit_gates`` with
   ``read_hidden=False``, the network without the interpreter's hidden representation of the
   classifier's layers (the adapters' outputs, before Ψ's decoder; nmfinterp's network until it
   read it); (d) a lighter objective: ``fit_gates`` without the energy term
   (``energy_penalty=0``), scored like the others on the default one.

Each set of gates is scored like the benchmark's methods (Fid-In, FF, AI, AD, mask mean; energy
share and SI-SDR gap on equal-level mixtures). Raw results: ``benchmarks/results/gates_study.json``
(about 45 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nmfinterp.benchmark import (  # noqa: E402
    FULL,
    _fit_pipeline,
    _git_commit,
    _log,
    _softmax,
    add_split_arguments,
    explained_inputs,
    make_conditions,
    score_masks,
    split_from_args,
    split_record,
    train_benchmark_classifier,
)
from nmfinterp.classifiers import predict_logits  # noqa: E402
from nmfinterp.explain import (  # noqa: E402
    CONTRAST_PENALTY,
    ENERGY_PENALTY,
    REFINE_STEPS,
    _Faithfulness,
    refine_selection,
    relevance,
    soft_mask,
)
from nmfinterp.gates import SHARPEN, GateNet, training_rows  # noqa: E402
from nmfinterp.hooks import frozen  # noqa: E402

METRICS = ("Fid-In", "FF", "AI", "AD", "mask_mean", "energy_share", "si_sdr_gap")


def hidden_representation(interp, x: np.ndarray) -> torch.Tensor:
    """The interpreter's hidden representation of clips ``x`` at the mask's frames, ``(n, C, T)``:
    the classifier's hidden layers as Ψ's decoder reads them (``InterpreterNet.hidden``)."""
    feats, _ = interp._extract(x)
    with torch.no_grad():
        return interp.module_.hidden(feats, interp.spectrogram_._n_frames(x.shape[-1]))


def refined(interp, theta, waves, H, z, classes, scores) -> torch.Tensor:
    """The gates ``explain``'s default refinement finds, 16 clips at a time."""
    r = relevance(z, theta, classes, centered=True)
    return torch.cat(
        [
            refine_selection(
                interp,
                torch.as_tensor(waves[i : i + 16]),
                H[i : i + 16],
                r[i : i + 16],
                classes[i : i + 16],
                REFINE_STEPS,
                contrast_penalty=CONTRAST_PENALTY,
                scores=scores[i : i + 16],
            )
            for i in range(0, len(H), 16)
        ]
    )


def selection(theta, H, z, classes) -> torch.Tensor:
    """The interpreter's own selection (centred relevance > 0) as gates ``(n, K, T)``."""
    return (relevance(z, theta, classes, centered=True) > 0)[:, :, None].expand_as(H)


class Study:
    """The benchmark's pipeline, rows like the gate network's training rows (the clips and a draw
    of mixtures of them) and the objective on them."""

    def __init__(self, pipe, train_x: np.ndarray, random_state: int = 0):
        self.pipe, self.interp = pipe, pipe[-1]
        self.W = torch.as_tensor(pipe[1].dictionary_, dtype=torch.float32)
        self.theta = self.interp.module_.theta.weight.detach()
        rng = np.random.default_rng(random_state)
        self.waves, self.H, self.z, self.scores, self.context = training_rows(
            self.interp, train_x.astype(np.float32), 2, rng, context=True
        )
        self.decided = self.scores.argmax(-1)

    def objective(self, idx) -> _Faithfulness:
        """``fit_gates``' objective (its default energy term, no contrast term) on rows ``idx``."""
        return _Faithfulness(
            self.interp,
            self.waves[idx],
            self.decided[idx],
            "linear",
            ENERGY_PENALTY,
            0.0,
            self.H[idx],
            self.scores[idx],
        )

    def hard_objective(self, gates_of) -> float:
        """The objective's mean over the rows with the hard gates ``gates_of(idx)``."""
        total = 0.0
        with torch.no_grad():
            for idx in torch.arange(len(self.H)).split(32):
                mask = soft_mask(self.W, self.H[idx], gates_of(idx).float())
                total += float(self.objective(idx)(mask).sum())
        return total / len(self.H)

    def logits(self, net, idx) -> torch.Tensor:
        """A gate network's logits on rows ``idx`` (with their hidden representation if it reads
        one)."""
        context = self.context[idx] if net.context_channels else None
        return net(self.H[idx], self.z[idx], self.theta, self.decided[idx], context)

    def gates(self, net) -> torch.Tensor:
        """A gate network's hard gates on every row."""
        with torch.no_grad():
            return self.logits(net, slice(None)) > 0

    def train(self, net, epochs, loss_of, lr=1e-3, seed=0) -> list[float]:
        """Adam with cosine decay on ``loss_of(net, idx, epoch)`` over the rows; per-epoch losses."""
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        n, batch = len(self.H), 16
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=epochs * -(-n // batch), eta_min=lr / 100
        )
        history = []
        net.train()
        for epoch in range(epochs):
            total = 0.0
            for idx in torch.randperm(n, generator=gen).split(batch):
                with frozen(self.interp.classifier), torch.enable_grad():
                    loss = loss_of(net, idx, epoch)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    schedule.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / n)
            if (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
                _log(f"    epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}")
        net.eval()
        return history


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_split_arguments(p)
    p.add_argument(
        "--gate-epochs",
        type=int,
        default=30,
        help="fit_gates' epochs, also (c)'s and (d)'s (%(default)s)",
    )
    p.add_argument("--max-train", type=int, default=None, help="first N training clips only")
    p.add_argument("--classifier-epochs", type=int, default=FULL["classifier_epochs"])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gates_study.json"))
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    commit = _git_commit()  # before any work: the code the study ran
    ds, train, test = split_from_args(args)
    if args.max_train is not None:
        train = train.subset(np.arange(min(args.max_train, len(train))))
    clf, y_train, _, accuracy, _ = train_benchmark_classifier(
        train, test, ds.n_classes, args.sr, args.classifier_epochs
    )
    pipe, _ = _fit_pipeline(clf, args.sr, dict(FULL), train, y_train)
    interp, spec = pipe[-1], pipe[0]
    _log(f"classifier: accuracy {accuracy:.3f}; pipeline fitted")

    # the sets the gates are scored on: 80 training clips, the test fold clean and mixed
    conditions = make_conditions(test, None)
    sets = {}
    x = train.waveforms[:80]
    sets["train clean"] = (x, predict_logits(clf, x).argmax(1), None, None)
    for name in ("clean", "mix_equal"):
        sets[f"test {name}"] = explained_inputs(clf, conditions[name], name == "clean")
    probs = lambda w: _softmax(predict_logits(clf, w))  # noqa: E731

    def score(gates_for) -> dict:
        """``gates_for(x, classes, H, z)`` -> gates, scored on every set."""
        out = {}
        for name, (xs, cls, deciding, other) in sets.items():
            feats, _ = interp._extract(xs)
            with torch.no_grad():
                H = interp.module_.activations(feats, spec._n_frames(xs.shape[-1]))
                z = interp.module_.pool(H)
                g = gates_for(xs, torch.as_tensor(cls), H, z)
            masks = soft_mask(study.W, H, g.float()).numpy()
            r = score_masks(probs, spec, xs, masks, cls, deciding, other)
            out[name] = {k: r[k] for k in METRICS if k in r}
        return out

    def network_gates(net):
        def gates_for(xs, cls, H, z):
            context = hidden_representation(interp, xs) if net.context_channels else None
            return net(H, z, study.theta, cls, context) > 0

        return gates_for

    t = time.perf_counter()
    interp.fit_gates(train.waveforms, epochs=args.gate_epochs)
    gate_seconds = time.perf_counter() - t
    _log(f"fit_gates: {gate_seconds:.0f} s")
    study = Study(pipe, train.waveforms, interp.random_state)
    t = time.perf_counter()
    refined_rows = refined(
        interp, study.theta, study.waves, study.H, study.z, study.decided, study.scores
    )
    refine_seconds = time.perf_counter() - t
    _log(f"refined gates of {len(refined_rows)} training rows: {refine_seconds:.0f} s")

    results = {
        "command": "python benchmarks/gates_study.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": commit,
        **split_record(args, ds, train, test),
        "classifier_accuracy": accuracy,
        "n_training_rows": len(study.H),
        "gate_hidden": interp.gate_module_.hidden,
        "seconds": {"fit_gates": gate_seconds, "refine_training_rows": refine_seconds},
        "objective": {},
        "scores": {},
        "history": {},
    }
    out = Path(args.out)

    def save():
        results["total_seconds"] = time.perf_counter() - t_start
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=float))

    def record(name, row_gates, scorer, history=None):
        results["objective"][name] = study.hard_objective(lambda idx: row_gates[idx])
        results["scores"][name] = score(scorer)
        if history is not None:
            results["history"][name] = history
        line = "; ".join(
            f"{k} AI {v['AI']['mean']:.0f} FF {v['FF']['mean']:.2f}"
            for k, v in results["scores"][name].items()
        )
        _log(f"  {name}: objective {results['objective'][name]:.3f}; {line}")
        save()

    def refined_for(xs, cls, H, z):
        return refined(interp, study.theta, xs, H, z, cls, interp._extract(xs)[1])

    record(
        "interpreter's selection",
        selection(study.theta, study.H, study.z, study.decided),
        lambda xs, cls, H, z: selection(study.theta, H, z, cls),
    )
    record("refinement (explain's default)", refined_rows, refined_for)
    record(
        "gate network (fit_gates)",
        study.gates(interp.gate_module_),
        network_gates(interp.gate_module_),
    )

    # (a) distillation: the refined gates as targets, no classifier in the loop
    torch.manual_seed(0)
    net = GateNet(study.W.shape[1])
    target = refined_rows.float()
    history = study.train(
        net,
        60,
        lambda net, idx, _: F.binary_cross_entropy_with_logits(
            net(study.H[idx], study.z[idx], study.theta, study.decided[idx]), target[idx]
        ),
    )
    results["distillation_agreement"] = float((study.gates(net).float() == target).float().mean())
    record("(a) distilled from the refined gates", study.gates(net), network_gates(net), history)

    # (b) straight-through: fit_gates' network, 10 more epochs with hard gates forward
    net = copy.deepcopy(interp.gate_module_)

    def straight_through(net, idx, _):
        logit = study.logits(net, idx)
        soft = torch.sigmoid(logit * SHARPEN)
        hard = (logit > 0).float() + soft - soft.detach()
        return study.objective(idx)(soft_mask(study.W, study.H[idx], hard)).mean()

    history = study.train(net, 10, straight_through, lr=3e-4)
    record("(b) straight-through, 10 more epochs", study.gates(net), network_gates(net), history)

    # (c) and (d): fit_gates with one setting changed, scored on the default objective
    default_net, default_history = interp.gate_module_, interp.gate_history_
    for name, setting in (
        ("(c) fit_gates with read_hidden=False", {"read_hidden": False}),
        ("(d) fit_gates with energy_penalty=0", {"energy_penalty": 0.0}),
    ):
        interp.fit_gates(train.waveforms, epochs=args.gate_epochs, **setting)
        net, history = interp.gate_module_, [h["loss"] for h in interp.gate_history_]
        interp.gate_module_, interp.gate_history_ = default_net, default_history
        record(name, study.gates(net), network_gates(net), history)
    _log(f"raw results: {out} ({time.perf_counter() - t_start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
