"""Write docs/benchmarks.md from the raw JSON that benchmarks/esc10.py saved (no number typed by hand).

python benchmarks/make_table.py [benchmarks/results/esc10.json] [docs/benchmarks.md]
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from nmfinterp import InterpreterEstimator  # noqa: E402
from nmfinterp.benchmark import METHODS, explain_defaults  # noqa: E402

# (condition, metric, comparison, target): issue 4's targets for nmfinterp
TARGETS = [
    ("clean", "Fid-In", ">=", 0.95),
    ("clean", "FF", ">=", 0.60),
    ("clean", "AI", ">=", 60),
    ("clean", "AD", "<=", 5),
    ("mix_0.8_0.2", "Fid-In", ">=", 0.95),
    ("mix_0.8_0.2", "FF", ">=", 0.60),
    ("mix_0.8_0.2", "AD", "<=", 8),
    ("mix_equal", "Fid-In", ">=", 0.90),
    ("mix_equal", "FF", ">=", 0.60),
    ("mix_equal", "AD", "<=", 10),
    ("mix_equal", "energy_share", ">=", 0.90),
    ("mix_equal", "si_sdr_gap", ">=", 10),
]
CLEAN_COLS = [
    ("Fid-In", ".2f"),
    ("FF", ".2f"),
    ("AI", ".0f"),
    ("AD", ".0f"),
    ("AG", ".0f"),
    ("sparseness", ".2f"),
    ("complexity", ".1f"),
    ("mask_mean", ".2f"),
]
MIX_COLS = [
    ("Fid-In", ".2f"),
    ("FF", ".2f"),
    ("AI", ".0f"),
    ("AD", ".0f"),
    ("AG", ".0f"),
    ("si_sdr_deciding", ".1f"),
    ("si_sdr_other", ".1f"),
    ("si_sdr_gap", ".1f"),
    ("energy_share", ".2f"),
    ("sparseness", ".2f"),
    ("complexity", ".1f"),
]
HEAD = {
    "si_sdr_deciding": "SI-SDR deciding (dB)",
    "si_sdr_other": "SI-SDR other (dB)",
    "si_sdr_gap": "gap (dB)",
    "energy_share": "energy share",
    "mask_mean": "mask mean",
    "refined_again": "refined again",
}


def cell(entry: dict | None, fmt: str = ".2f") -> str:
    if not entry or entry.get("mean") is None:
        return "–"
    lo, hi = entry["ci95"]
    return f"{entry['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def table(rows: dict, cols, first: str = "method") -> list[str]:
    lines = [
        f"| {first} | " + " | ".join(HEAD.get(c, c) for c, _ in cols) + " | s/clip |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for name, r in rows.items():
        if name.startswith("_"):
            continue
        lines.append(
            f"| {name} | "
            + " | ".join(cell(r.get(c), f) for c, f in cols)
            + (f" | {r['seconds_per_clip']:.2f} |" if "seconds_per_clip" in r else " | – |")
        )
    return lines


def seed_row_label(seeds: dict, name: str) -> str:
    """A row of fidelity_seeds.py's table: "defaults" says what they were when the JSON was written
    (saved as ``defaults_params``; before that, only the commit), and in a JSON without them, a
    setting that is today's default says so."""
    known = seeds.get("defaults_params")
    if name == "defaults":
        if known is None:
            return f"defaults at `{seeds['commit']}`"
        return "defaults (" + ", ".join(f"{k}={v!r}" for k, v in known.items()) + ")"
    params = seeds.get("settings", {}).get(name)
    today = InterpreterEstimator(None).get_params()
    if known is None and params and all(k in today and today[k] == v for k, v in params.items()):
        return f"{name} (today's default)"
    return name


def seed_lines(seeds: dict, name: str = "fidelity_seeds") -> list[str]:
    """The fidelity-over-seeds section, from benchmarks/fidelity_seeds.py's JSON (``name``.json)."""
    n = len(seeds["seeds"])
    split = (
        ""
        if name == "fidelity_seeds"
        else f" --train-folds {' '.join(map(str, seeds['train_folds']))} --test-fold "
        f"{seeds['test_fold']} --out benchmarks/results/{name}.json"
    )
    lines = [
        "",
        f"Top-1 fidelity over {n} seeds (dictionary and interpreter seeded together; the same "
        f"classifier, fold-{seeds['test_fold']} accuracy {seeds['classifier_accuracy']:.3f}), from "
        f"`benchmarks/results/{name}.json` (`python benchmarks/fidelity_seeds.py{split}`, commit "
        f"`{seeds['commit']}`): one fit above is one draw of these.",
        "",
        "| interpreter | mean | sd | min | max | seeds where the defaults are higher / lower | fit (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in seeds["summary"].items():
        vs = "–" if name == "defaults" else f"{r['defaults_higher']} / {r['defaults_lower']}"
        lines.append(
            f"| {seed_row_label(seeds, name)} | {r['mean']:.3f} | {r['std']:.3f} | {r['min']:.3f} | {r['max']:.3f} | "
            f"{vs} | {r['mean_fit_seconds']:.0f} |"
        )
    return lines


#: the sweeps make_table shows: their JSON's name, the section's title and the command
SWEEPS = {
    "contrast_penalty": (
        "contrast_sweep",
        "The contrast term's weight",
        "python benchmarks/contrast_sweep.py",
    ),
    "refine_steps": (
        "refine_steps_sweep",
        "The refinement's number of steps",
        "python benchmarks/contrast_sweep.py --param refine_steps",
    ),
    "energy_penalty": (
        "energy_sweep",
        "The energy term's weight",
        "python benchmarks/contrast_sweep.py --param energy_penalty",
    ),
    "mask_power": (
        "mask_power_sweep",
        "The mask's sharpness",
        "python benchmarks/contrast_sweep.py --param mask_power",
    ),
    "residual_weight": (
        "residual_sweep",
        "The residual term's weight",
        "python benchmarks/contrast_sweep.py --param residual_weight",
    ),
}


def _in_turn(values) -> str:
    """A value, or weights tried in turn written ``A>B``, each number as short as it goes."""
    return ">".join(f"{float(v):g}" for v in values)


def _sweep_row(param: str, key: str) -> str:
    """A sweep's row label from its key: the value, then the ratio where it ran several."""
    value, _, ratio = key.partition(", ")
    return f"{param}={_in_turn(value.split('>'))}" + (f", {ratio}" if ratio else "")


def sweep_lines(sweep: dict, titles: dict, name: str | None = None) -> list[str]:
    """A sweep's section, from benchmarks/contrast_sweep.py's JSON (one explain setting over
    its values; saved before ``param`` existed: the contrast weight). ``name``: the JSON's, when
    not the param's own (a sweep run with ``--mask-power`` or on another split, and ``--out``)."""
    param = sweep.get("param", "contrast_penalty")
    default_name, title, command = SWEEPS[param]
    power = sweep.get("settings", {}).get("mask_power", 1.0)
    if param != "mask_power" and power != 1.0:
        title += f" at mask_power={power:g}"
        command += f" --mask-power {power:g}"
    ratio = sweep.get("settings", {}).get("mask_ratio")  # saved before it existed: "log"
    if isinstance(ratio, list):  # every value with each ratio, on the same pipeline
        title += ", " + " and ".join(ratio) + "-ratio masks"
        command += " --mask-ratio " + " ".join(ratio)
    elif ratio is not None:
        title += f", {ratio}-ratio mask"
        command += f" --mask-ratio {ratio}"
    lr = sweep.get("settings", {}).get("refine_lr")  # saved where --refine-lr was given
    if isinstance(lr, list):  # every value at each learning rate, on the same pipeline
        title += ", refine_lr " + " and ".join(f"{v:g}" for v in lr)
        command += " --refine-lr " + " ".join(f"{v:g}" for v in lr)
    elif lr is not None:
        title += f", refine_lr={lr:g}"
        command += f" --refine-lr {lr:g}"
    dictionary = sweep.get("dictionary", "plain")  # saved before it existed: plain
    if isinstance(dictionary, list):  # every value on each dictionary's pipeline, one classifier
        title += ", " + " and ".join(d.replace("_", "-") for d in dictionary) + " dictionaries"
        command += " --dictionary " + " ".join(dictionary)
    elif dictionary != "plain":
        title += f", {dictionary.replace('_', '-')} dictionary"
        command += f" --dictionary {dictionary}"
    fidelity, pipeline = f"{sweep['fidelity_top1']:.3f}", "the same pipeline"
    if isinstance(dictionary, list):
        pipeline = "each dictionary's pipeline, with one classifier"
        fidelity = " and ".join(
            f"{sweep['pipelines'][d]['fidelity_top1']:.3f} ({d})" for d in dictionary
        )
    data = sweep.get("data")  # another folder than ESC-10's (--data), clips of another length
    if data is not None and Path(data).name != "esc10":
        title += f", data `{Path(data).name}`"
        command += f" --data {data}"
    duration = sweep.get("duration", 5.0)
    if duration != 5.0:
        title += f" ({duration:g}-s clips)"
        command += f" --duration {duration:g}"
    train_folds, test_fold = sweep.get("train_folds", [1, 2, 3]), sweep.get("test_fold", 4)
    if list(train_folds) != [1, 2, 3] or test_fold != 4:
        title += f", trained on folds {list(train_folds)}, tested on fold {test_fold}"
        command += f" --train-folds {' '.join(map(str, train_folds))} --test-fold {test_fold}"
    categories = sweep.get("categories")  # a subset of the folder's classes (--categories)
    if categories:
        title += f", {len(categories)} classes ({', '.join(categories)})"
        command += " --categories " + " ".join(categories)
    confidence = sweep.get("keep_confidence")  # weights in turn: also below this confidence
    if confidence is not None:
        title += f", weights in turn with keep_confidence={confidence:g}"
        command += f" --keep-confidence {confidence:g}"
    if name is not None and name != default_name:
        command += f" --out benchmarks/results/{name}.json"
    name = name or default_name
    cols = [
        ("Fid-In", ".2f"),
        ("FF", ".2f"),
        ("AI", ".1f"),
        ("AD", ".1f"),
        ("energy_share", ".2f"),
        ("si_sdr_gap", ".1f"),
        ("mask_mean", ".2f"),
        ("refined_again", ".2f"),
    ]
    others = "".join(
        f"; {k}={' and '.join(map(str, v)) if isinstance(v, list) else v}"
        if isinstance(v, str | list)
        else f"; {k}={v:g}"
        for k, v in sweep.get("settings", {}).items()
    )
    if sweep.get("weights"):  # the values it ran, which --weights may have chosen
        command += " --weights " + " ".join(
            _in_turn(w if isinstance(w, list) else [w]) for w in sweep["weights"]
        )
    default = f"{sweep['default_weight']:g}"
    if sweep.get("default_weights"):  # explain's own, per pipeline (weights tried in turn: A>B)
        default = " and ".join(
            f"{_sweep_row(param, w).partition('=')[2]} ({d})"
            for d, w in sweep["default_weights"].items()
        )
    lines = [
        "",
        f"## {title}",
        "",
        f"`explain(..., {param}=w)` for each value w (the default at that commit: "
        f"{default}{others}) on {pipeline} (classifier "
        f"fold-{sweep['test_fold']} "
        f"accuracy {sweep['classifier_accuracy']:.3f}, interpreter top-1 fidelity "
        f"{fidelity}), from `benchmarks/results/{name}.json` "
        f"(`{command}`, commit `{sweep['commit']}`).",
    ]
    for cname, rows in sweep["results"].items():
        first = next(iter(rows.values()))
        lines += ["", f"{titles.get(cname, cname)} ({first['n']} clips):", ""]
        lines += table(
            {_sweep_row(param, w): r for w, r in rows.items()},
            [(c, f) for c, f in cols if any(c in r for r in rows.values())],
            first="value",
        )
    return lines


#: the gates study's cell formats (".2f" otherwise)
FORMATS = {"AI": ".0f", "AD": ".0f", "si_sdr_gap": ".1f"}


def gates_lines(study: dict) -> list[str]:
    """Why the amortised gates are not the default, from benchmarks/gates_study.py's JSON."""
    cols = [
        ("train clean", "AI"),
        ("test clean", "Fid-In"),
        ("test clean", "FF"),
        ("test clean", "AI"),
        ("test clean", "AD"),
        ("test clean", "mask_mean"),
        ("test mix_equal", "mask_mean"),
        ("test mix_equal", "energy_share"),
        ("test mix_equal", "si_sdr_gap"),
    ]
    labels = [name.split(" ")[0] for name in study["objective"] if name.startswith("(")]
    others = (
        f" {labels[0]}-{labels[-1]} are other ways of training the gate network (see the script's "
        "docstring)."
        if labels
        else ""
    )
    head = ["objective on the training rows"] + [f"{n}: {HEAD.get(m, m)}" for n, m in cols]
    lines = [
        "",
        "## Why the amortised gates are not the default",
        "",
        "The gate network (`fit_gates`, for `explain(..., amortised=True)`) costs about what "
        "`refine_steps=0` does, and its gates are less faithful than the refinement's. From `benchmarks/results/gates_study.json` (`python "
        f"benchmarks/gates_study.py`, commit `{study['commit']}`; the same classifier, "
        f"accuracy {study['classifier_accuracy']:.3f}; "
        + (
            f"a gate network of {study['gate_hidden']} channels"
            if "gate_hidden" in study
            else "the gate network of `fit_gates`' default at that commit"
        )
        + "): the objective `fit_gates` lowers "
        f"(lower is better), with hard gates, over {study['n_training_rows']} training rows like its "
        "own (the training clips and two rounds of mixtures of them), and how each set of gates "
        "scores on 80 of the training clips and on the test fold. 'refinement' is explain's "
        f"default.{others} Distilled gates agree with the refined ones on "
        f"{study['distillation_agreement']:.0%} of the "
        "(component, frame) cells of the training rows.",
        "",
        "| gates | " + " | ".join(head) + " |",
        "|---" * (len(head) + 1) + "|",
    ]
    for name, objective in study["objective"].items():
        scores = study["scores"][name]
        lines.append(
            f"| {name} | {objective:.3f} | "
            + " | ".join(
                cell(scores[set_][metric], FORMATS.get(metric, ".2f")) for set_, metric in cols
            )
            + " |"
        )
    return lines


def _study_header(study: dict, script: str, name: str, title: str) -> tuple[list[str], str]:
    """A study's heading lines and the opening of its first sentence: the title, and where the
    figures come from (``benchmarks/<script>.py``, with the split where it is not the default one,
    folds 1-3 -> 4, and ``--out`` where its JSON, ``name``, is not the default file; the commit,
    the classifier's accuracy and the interpreter's top-1 fidelity), the parenthesis left open."""
    command = f"python benchmarks/{script}.py"
    train_folds, test_fold = study["train_folds"], study["test_fold"]
    if list(train_folds) != [1, 2, 3] or test_fold != 4:
        title += f", trained on folds {list(train_folds)}, tested on fold {test_fold}"
        command += f" --train-folds {' '.join(map(str, train_folds))} --test-fold {test_fold}"
    if name != script:
        command += f" --out benchmarks/results/{name}.json"
    opening = (
        f"From `benchmarks/results/{name}.json` (`{command}`, commit `{study['commit']}`; the "
        f"classifier's accuracy {study['classifier_accuracy']:.3f}, the interpreter's top-1 "
        f"fidelity {study['fidelity_top1']:.3f}"
    )
    return ["", f"## {title}", ""], opening


def share_ceiling_lines(study: dict, name: str = "share_ceiling") -> list[str]:
    """How far explain's settings take the equal-level share, from benchmarks/share_ceiling.py's
    JSON (``name``: its file's stem)."""
    heading, opening = _study_header(
        study, "share_ceiling", name, "How far explain's settings take the deciding source's share"
    )
    where, auc = study["default_shortfall"], study["separability"]
    lines = [
        *heading,
        opening + f"): the test fold's {study['n_mixtures']} "
        "equal-level mixtures that the classifier decides as one source's class, explained with "
        "each setting of the refinement (the others at explain's defaults). 'kept' is the share of "
        "the clips whose explanation the classifier still decides as the class with at least its "
        "probability on the mixture (explain's `keep_confidence=1` check).",
        "",
        "| setting | energy share | gap (dB) | kept | mask mean | s/clip |",
        "|---|---|---|---|---|---|",
    ]
    for setting, r in study["results"].items():
        lines.append(
            f"| {setting} | {cell(r['energy_share'])} | {cell(r['si_sdr_gap'], '.1f')} | "
            f"{cell(r['decision_and_confidence_kept'])} | {cell(r['mask_mean'])} | "
            f"{r['seconds_per_clip']:.2f} |"
        )
    for pick, r in study["per_clip_pick"].items():
        lines.append(f"| per clip, {pick} (reads the sources) | {cell(r)} | – | – | – | – |")
    lines += [
        "",
        f"The default's shortfall, Σ (1 − share): the lowest tenth of the clips "
        f"({where['lowest_tenth_clips']}, mean share {where['lowest_tenth_mean_share']:.2f}) hold "
        f"{where['lowest_tenth_share_of_shortfall']:.0%} of it. Their explanations keep "
        f"{where['lowest_tenth_deciding_energy_kept']:.3f} of the deciding source's energy and "
        f"{where['lowest_tenth_other_energy_kept']:.3f} of the other's; those of the other clips "
        f"keep {where['rest_deciding_energy_kept']:.3f} and {where['rest_other_energy_kept']:.3f}.",
        "",
        f"Of the (component, frame) cells the default keeps ({auc['cells_kept']}), those the true "
        f"sources give to the other source carry {auc['other_source_weight_share']:.0%} of their "
        "weight (activation times the pattern's sum). How well scores that need no sources find "
        "them (area under the ROC curve, weighted; 0.5 is chance):",
        "",
        "| score | AUC |",
        "|---|---|",
    ]
    lines += [
        f"| {score} | {value:.2f} |"
        for score, value in auc.items()
        if score not in ("cells_kept", "other_source_weight_share")
    ]
    return lines


def source_gates_study_lines(study: dict, name: str = "source_gates_study") -> list[str]:
    """The source gates' training settings against their fit's time, memory and share, from
    benchmarks/source_gates_study.py's JSON (``name``: its file's stem)."""
    heading, opening = _study_header(
        study, "source_gates_study", name, "The source gates' settings: time, memory and share"
    )
    n = study["n_explained"]
    lines = [
        *heading,
        opening + f", fitted without source gates in "
        f"{study['pipeline_fit_seconds']:.0f} s on {study['n_train']} clips): "
        "`fit_source_gates` with each setting, each in a fresh process ('memory': its peak "
        "resident memory above what the process held before the fit), then the test fold's "
        f"equal-level ({n['mix_equal']}) and 0.8/0.2 ({n['mix_0.8_0.2']}) mixtures decided as one "
        "source's class explained with explain's defaults.",
        "",
        "| setting | fit (s) | network (s) | memory (MiB) | equal share | equal gap (dB) "
        "| equal FF | 0.8/0.2 share | 0.8/0.2 FF |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for setting, r in study["results"].items():
        eq, mild = r["conditions"]["mix_equal"], r["conditions"]["mix_0.8_0.2"]
        cost = (
            ["–"] * 3
            if r["params"] is None
            else [
                f"{r['seconds']:.0f}",
                f"{r['network_seconds']:.0f}",
                f"{r['peak_above_mib']:.0f}",
            ]
        )
        lines.append(
            f"| {setting} | "
            + " | ".join(cost)
            + f" | {cell(eq['energy_share'], '.3f')} | {cell(eq['si_sdr_gap'], '.1f')} | "
            f"{cell(eq['FF'])} | {cell(mild['energy_share'], '.3f')} | {cell(mild['FF'])} |"
        )
    return lines


def source_gates_generalisation_lines(
    study: dict, name: str = "source_gates_generalisation"
) -> list[str]:
    """The source gates' network's agreement with its targets on training rows and on the test
    fold's mixtures, by setting, from benchmarks/source_gates_generalisation.py's JSON (``name``:
    its file's stem)."""
    heading, opening = _study_header(
        study,
        "source_gates_generalisation",
        name,
        "The source gates' network on clips it never saw",
    )
    n = study["n_held_out"]
    groups = ("training rows", "mix_equal", "mix_0.8_0.2")
    lines = [
        *heading,
        opening + f", fitted without source gates on "
        f"{study['n_train']} clips): the network of `fit_source_gates` trained with each "
        "setting on the same rows, scored against the true targets (`source_targets`) of the "
        f"first {study['n_train_scored']} training rows and of the test fold's equal-level "
        f"({n['mix_equal']}) and 0.8/0.2 ({n['mix_0.8_0.2']}) mixtures decided as one source's "
        "class. 'agreement': over the components and frames, each weighted by the component's "
        "magnitude in the frame; 'precision': the weighted share of what the network gives the "
        "deciding source that the targets give it; 'untrained': the interpreter's own selection; "
        "'ensemble': the mean probability of the first three trained rows.",
        "",
        "| setting | rows | network (s) | "
        + " | ".join(
            f"{g} {m}"
            for g in ("training", "equal", "0.8/0.2")
            for m in ("agreement", "precision", "BCE")
        )
        + " |",
        "|---|---|---|" + "---|" * 9,
    ]
    for setting, r in study["results"].items():
        cost = [str(r["n_rows"]), f"{r['seconds']:.0f}"] if "seconds" in r else ["–", "–"]
        cells = [
            f"{r['scores'][g][m]:.3f}"
            for g in groups
            for m in ("weighted_agreement", "weighted_precision", "bce")
        ]
        lines.append(f"| {setting} | " + " | ".join(cost + cells) + " |")
    return lines


def device_lines(dev: dict) -> list[str]:
    """The ``device`` parameter on an accelerator against the same machine's CPU, from
    benchmarks/device.py's JSON."""
    d, c, served = dev["on_device"], dev["on_cpu"], dev["served_on_cpu"]
    lines = [
        "",
        f"## On a GPU ({dev['device_name']}) and served on a CPU",
        "",
        f"From `benchmarks/results/device.json` (`python benchmarks/device.py`, commit "
        f"`{dev['commit']}`, torch {dev['torch']}, {dev['cpu_count']} CPU cores on the same "
        f"machine): the benchmark's classifier trained on the GPU in "
        f"{dev['classifier_train_seconds']:.0f} s (fold-{dev['test_fold']} accuracy "
        f"{dev['classifier_accuracy']:.3f}), then the pipeline fitted with seed 0 twice, with "
        f"the classifier and `device=` on the GPU and on the CPU; `fit_gates` ran "
        f"{d['gate_epochs']} epochs (its default is 30) and the explain times are for the "
        f"{dev['n_test']} test clips.",
        "",
        "| | GPU | CPU | CPU / GPU |",
        "|---|---|---|---|",
    ]
    for key, name, fmt in [
        ("dictionary_fit_seconds", "dictionary fit, s (STFT and NMF run on the CPU)", ".1f"),
        ("interpreter_fit_seconds", "interpreter fit, s", ".1f"),
        ("fidelity", "top-1 fidelity on the test fold", ".3f"),
        ("fit_gates_seconds", "`fit_gates`, s", ".1f"),
        ("explain_seconds", "explain (refined, the default), s", ".2f"),
        ("explain_amortised_seconds", "explain (`amortised=True`), s", ".2f"),
    ]:
        ratio = "" if key == "fidelity" else f"{c[key] / d[key]:.1f}x"
        lines.append(f"| {name} | {d[key]:{fmt}} | {c[key]:{fmt}} | {ratio} |")
    lines += [
        "",
        "The GPU-fitted pipeline saved and loaded with the CPU classifier predicts within "
        f"{served['predict_proba_max_abs_diff']:.0e} of the GPU's probabilities. Its explanations "
        "on the CPU against the GPU's (relative L2 difference per clip), the change that noise of "
        "1e-6 of each clip's peak makes to them on the CPU alone, and their faithfulness by the "
        "classifier on each device:",
        "",
        "| explain | CPU vs GPU: median [max] | 1e-6 noise: median [max] | Fid-In GPU / CPU "
        "| FF GPU / CPU | AD GPU / CPU |",
        "|---|---|---|---|---|---|",
    ]
    for mode, cmp in served["explanations"].items():
        r, n = cmp["relative_difference"], cmp["noise_1e-6_relative_difference"]
        g, h = cmp["device"], cmp["cpu"]
        lines.append(
            f"| {mode} | {r['median']:.1e} [{r['max']:.1e}] | {n['median']:.1e} [{n['max']:.1e}] "
            f"| {g['Fid-In']:.2f} / {h['Fid-In']:.2f} | {g['FF']:.2f} / {h['FF']:.2f} "
            f"| {g['AD']:.1f} / {h['AD']:.1f} |"
        )
    refined = served["explanations"].get("refined (default)")
    if refined:
        lines += [
            "",
            "The refined explanation (the default) optimises thresholded gates through the "
            "classifier: float noise moves it (noise of 1e-6 changes it by a median "
            f"{refined['noise_1e-6_relative_difference']['median']:.0%}, the GPU against the CPU "
            f"by {refined['relative_difference']['median']:.0%}) with the same faithfulness. "
            "The other two are the same waveforms on both devices.",
        ]
    return lines


def defaults_note(res: dict) -> list[str]:
    """A line saying which of explain's defaults the run's row "nmfinterp" did not have (none when
    it had today's; for a run from before they were recorded, today's)."""
    today = explain_defaults()
    ran = res.get("explain_defaults")

    def settings(values: dict) -> str:
        return ", ".join(f"`{k}={v}`" for k, v in values.items())

    if ran is None:
        return [
            "",
            "This run predates the record of `explain`'s defaults in the results; today's are "
            f"{settings(today)} (docs/method.md names each change and the runs that measured it).",
        ]
    changed = {k: v for k, v in today.items() if ran.get(k) != v}
    if not changed:
        return []
    return [
        "",
        "The row 'nmfinterp' ran with `explain`'s defaults at its commit; today's differ: "
        + ", ".join(
            f"`{k}={v}` (this run: {ran.get(k, 'not recorded')})" for k, v in changed.items()
        )
        + " (docs/method.md measures each change).",
    ]


def target_lines(res: dict) -> list[str]:
    """The targets table of nmfinterp's defaults in one run (``–`` where a row was not run)."""
    lines = [
        "| condition | metric | target | measured | met | all components / oracle / oracle within "
        "nmfinterp's selection |",
        "|---|---|---|---|---|---|",
    ]
    for cond, metric, op, target in TARGETS:
        rows = res["results"].get(cond, {})
        entry = rows.get("nmfinterp", {}).get(metric)
        bounds = " / ".join(
            cell(rows.get(m, {}).get(metric))
            for m in (
                "all components",
                "oracle gates (true sources)",
                "oracle gates within nmfinterp's selection",
            )
        )
        if not entry or entry.get("mean") is None:
            lines.append(f"| {cond} | {metric} | {op} {target} | – | not measured | {bounds} |")
            continue
        m = entry["mean"]
        met = m >= target if op == ">=" else m <= target
        lines.append(
            f"| {cond} | {metric} | {op} {target} | {cell(entry)} | {'yes' if met else '**no**'} "
            f"| {bounds} |"
        )
    fid = res["interpreters"]["nmfinterp"]["fidelity_top1"]
    lines.append(
        f"| clean | top-1 fidelity | >= 0.95 | {fid:.3f} | {'yes' if fid >= 0.95 else '**no**'} | |"
    )
    return lines


#: the dictionary section's columns: (condition, metric, format)
DICTIONARY_COLS = [
    ("clean", "Fid-In", ".2f"),
    ("clean", "FF", ".2f"),
    ("clean", "AI", ".0f"),
    ("clean", "AD", ".0f"),
    ("mix_equal", "Fid-In", ".2f"),
    ("mix_equal", "FF", ".2f"),
    ("mix_equal", "AD", ".0f"),
    ("mix_equal", "energy_share", ".2f"),
    ("mix_equal", "si_sdr_gap", ".1f"),
]


def dictionary_choice(settings: dict) -> str:
    """``esc10.py``'s ``--dictionary`` in a run's settings (saved before it existed: ``per_class``
    True for ``--per-class``, else one dictionary, the default then)."""
    if "dictionary" in settings:
        return settings["dictionary"]
    return "per_class" if settings.get("per_class") else "plain"


def dictionary_label(res: dict) -> str:
    """How a run's dictionary was set (``esc10.py``'s ``--n-components`` and ``--dictionary``) and
    what it learned: one block of patterns per predicted class, or one for all classes."""
    k = res["config"]["n_components"]
    choice = dictionary_choice(res["settings"])
    per_class = res["interpreters"]["nmfinterp"].get("per_class")
    if per_class is None:  # saved before it was recorded: what the setting always learned then
        per_class = choice == "per_class"
    learned = "per-class blocks" if per_class else "one dictionary"
    return f"K={k}, {learned}" + (f" (--dictionary {choice})" if choice != "auto" else "")


def dictionary_lines(base: dict, variants: list[tuple[dict, str]]) -> list[str]:
    """nmfinterp's explanations with other dictionaries (runs of ``esc10.py --n-components K`` or
    ``--dictionary``) next to the defaults' in ``base``, the full run."""
    if not variants:
        return []
    head = [f"{cond} {HEAD.get(metric, metric)}" for cond, metric, _ in DICTIONARY_COLS]
    lines = [
        "",
        "## The dictionary: its size K and per-class patterns",
        "",
        "nmfinterp's explanations (the defaults' refinement) with other dictionaries, each a run of "
        "`python benchmarks/esc10.py` on the same split with the command in its row, against the "
        f"full run above ({dictionary_label(base)}). The classifier is retrained in "
        "every run with the same seed: the same accuracy says it is the same classifier. The last "
        "column is the equal-level energy share of the oracle within nmfinterp's selection: how "
        "much of the other source a choice of gates within that dictionary's selection could "
        "drop.",
        "",
        "| dictionary | command | classifier accuracy | top-1 fidelity | "
        + " | ".join(head)
        + " | oracle within selection: energy share |",
        "|---" * (len(head) + 5) + "|",
    ]
    first = variants[0][0]["settings"]

    def what_ran(settings: dict) -> str:
        methods = " ".join(f'"{m}"' for m in settings["methods"])
        skip = f" --skip {' '.join(settings['skip'])}" if settings["skip"] else ""
        return f"--methods {methods}{skip}"

    for res, name in [(base, "esc10"), *variants]:
        s = res["settings"]
        choice = dictionary_choice(s)
        flags = (f" --n-components {s['n_components']}" if s.get("n_components") else "") + (
            f" --dictionary {choice}" if choice != "auto" else ""
        )
        if name == "esc10":
            command = "the full run"
        elif what_ran(s) == what_ran(first):
            command = f"`...{flags} --name {name}`"
        else:  # other rows or parts than `...`: the whole command
            command = f"`python benchmarks/esc10.py{flags} {what_ran(s)} --name {name}`"
        rows = res["results"]
        oracle = rows.get("mix_equal", {}).get("oracle gates within nmfinterp's selection", {})
        lines.append(
            f"| {dictionary_label(res)} | {command} (commit `{res['commit']}`) | "
            f"{res['classifier']['accuracy']:.3f} | "
            f"{res['interpreters']['nmfinterp']['fidelity_top1']:.3f} | "
            + " | ".join(
                cell(rows.get(cond, {}).get("nmfinterp", {}).get(metric), fmt)
                for cond, metric, fmt in DICTIONARY_COLS
            )
            + f" | {cell(oracle.get('energy_share'))} |"
        )
    lines += [
        "",
        f"`...` is `python benchmarks/esc10.py {what_ran(first)}`.",
    ]
    return lines


def _l2i_key(res: dict) -> str | None:
    """The run's L2I interpreter: "l2i" (L2I's official training on one dictionary, since
    2026-12-07), "constant" (the defaults' with a constant rate, before) or None."""
    return next((k for k in ("l2i", "constant") if k in res["interpreters"]), None)


def _param(value) -> str:
    if isinstance(value, dict):  # fidelity_weight's schedule; JSON gave its epochs as strings
        return "{" + ", ".join(f"{k}: {v!r}" for k, v in value.items()) + "}"
    return repr(value).replace("'", '"')


def l2i_training(res: dict) -> str:
    """How the run's L2I interpreter (:func:`_l2i_key`) differs from the defaults, in their params."""
    ours, l2i = (res["interpreters"][k].get("params", {}) for k in ("nmfinterp", _l2i_key(res)))
    # the source gates' fit does not change the interpreter whose fidelity the row shows
    diff = {k: v for k, v in l2i.items() if ours.get(k) != v and k != "source_gates"}
    if not diff:  # results from before params were saved: only the schedule differed
        diff = {"lr_schedule": "constant"}
    return ", ".join(f"{k}={_param(v)}" for k, v in sorted(diff.items()))


def l2i_fidelity(res: dict) -> str:
    """ " (<the L2I interpreter>: <its top-1 fidelity>)" after the defaults', or "" without one."""
    key = _l2i_key(res)
    if key is None:
        return ""
    name = l2i_label(res) if key == "l2i" else f"the defaults with {l2i_training(res)}"
    return f" ({name}: {res['interpreters'][key]['fidelity_top1']:.3f})"


def l2i_label(res: dict) -> str:
    """The L2I interpreter's name in the tables."""
    if _l2i_key(res) == "l2i":
        return f"L2I's official training ({l2i_training(res)}) on one dictionary for all classes"
    # the runs before L2I_TRAINING: the defaults with L2I's constant rate, for its fidelity alone
    return f"{l2i_training(res)} (the defaults with L2I's constant rate)"


def split_lines(res: dict, name: str, seeds: dict | None = None) -> list[str]:
    """The targets on another split of the data, from ``benchmarks/esc10.py --name name``'s JSON
    (and ``fidelity_seeds.py``'s on the same split, when there is one)."""
    s, clf = res["settings"], res["classifier"]
    folds = " ".join(map(str, s["train_folds"]))
    methods = " ".join(f'"{m}"' for m in s["methods"])
    skip = f" --skip {' '.join(s['skip'])}" if s["skip"] else ""
    lines = [
        "",
        f"## Another split: trained on folds {s['train_folds']}, tested on fold {s['test_fold']}",
        "",
        "The defaults were chosen on fold 4; this is the same protocol and settings on clips they "
        f"were not chosen on. From `benchmarks/results/{name}.json` (`python benchmarks/esc10.py "
        f"--train-folds {folds} --test-fold {s['test_fold']} --methods {methods}{skip} --name "
        f"{name}`, commit `{res['commit']}`, {res['total_seconds'] / 60:.0f} min): the classifier "
        f"({clf['model']}, trained on these folds) scores fold-{s['test_fold']} accuracy "
        f"{clf['accuracy']:.3f}; the defaults' interpreter, top-1 fidelity "
        f"{res['interpreters']['nmfinterp']['fidelity_top1']:.3f}{l2i_fidelity(res)}"
        ". Only the rows named in the command ran; the others show –.",
        "",
        *target_lines(res),
        *defaults_note(res),
    ]
    if seeds is not None:
        lines += seed_lines(seeds, f"fidelity_seeds_test_fold{s['test_fold']}")
    return lines


def dataset_lines(res: dict, name: str) -> list[str]:
    """The targets and every method's key figures on another dataset, from
    ``benchmarks/fsdd_digits.py``'s JSON (``name``: its stem)."""
    s, clf = res["settings"], res["classifier"]
    methods = " ".join(f'"{m}"' for m in s["methods"])
    skip = f" --skip {' '.join(s['skip'])}" if s["skip"] != ["cost"] else ""
    name_flag = f" --name {name}" if name != "fsdd_digits" else ""
    return [
        "",
        f"## Another dataset: spoken digits (FSDD), clips of {s['duration']:g} s"
        + (f", `{name}`" if name != "fsdd_digits" else ""),
        "",
        "The defaults were chosen on ESC-10's environmental sounds; this is the same protocol and "
        "settings on ten classes of speech they were not chosen on. From "
        f"`benchmarks/results/{name}.json` (`python benchmarks/fsdd_digits.py --methods "
        f"{methods}{skip}{name_flag}`, commit `{res['commit']}`, "
        f"{res['total_seconds'] / 60:.0f} min): an ESC-50-layout folder of FSDD's takes, trained "
        f"on folds {s['train_folds']} ({res['n_train']} clips), tested on fold {s['test_fold']} "
        f"({res['n_test']} clips), every clip zero-padded to {s['duration']:g} s; no "
        "speech-corrupted condition and no Silero VAD section (the clips are speech already). "
        f"The classifier ({clf['model']}, trained on these folds) scores fold-{s['test_fold']} "
        f"accuracy {clf['accuracy']:.3f}; the defaults' interpreter, top-1 fidelity "
        f"{res['interpreters']['nmfinterp']['fidelity_top1']:.3f}.",
        "",
        *target_lines(res),
        *defaults_note(res),
        "",
        *method_lines(res),
    ]


def method_lines(res: dict) -> list[str]:
    """Every method of a run, with its key figures on the clean clips and the equal-level
    mixtures."""
    head = [f"{cond} {HEAD.get(metric, metric)}" for cond, metric, _ in DICTIONARY_COLS]
    lines = [
        "Every method that ran, on the clean clips and the equal-level mixtures (the JSON has the "
        "other conditions and metrics):",
        "",
        "| method | " + " | ".join(head) + " |",
        "|---" * (len(head) + 1) + "|",
    ]
    rows = res["results"]
    for method in res["settings"]["methods"]:
        lines.append(
            f"| {method} | "
            + " | ".join(
                cell(rows.get(cond, {}).get(method, {}).get(metric), fmt)
                for cond, metric, fmt in DICTIONARY_COLS
            )
            + " |"
        )
    return lines


def own_rows_lines(res: dict, name: str, base: dict) -> list[str]:
    """Rows measured in a run of their own (``esc10.py --methods ... --name esc10_rows_...``), on
    the full run's split: ``base``."""
    s, clf = res["settings"], res["classifier"]
    methods = " ".join(f'"{m}"' for m in s["methods"])
    skip = f" --skip {' '.join(s['skip'])}" if s["skip"] else ""
    new = [m for m in s["methods"] if m not in base["settings"].get("methods", METHODS)]
    split = lambda t: (t.get("data"), list(t["train_folds"]), t["test_fold"])  # noqa: E731
    same = split(s) == split(base["settings"])
    fidelity = res["interpreters"]["nmfinterp"]["fidelity_top1"]
    base_fidelity = base.get("interpreters", {}).get("nmfinterp", {}).get("fidelity_top1")
    if same:
        where = (
            f" (the full run's: {base['classifier']['accuracy']:.3f}; it is retrained in every run "
            "with the same seed, so the same accuracy says it is the same classifier)"
        )
        check = "The rows the full run has too are here as a check that they repeat it."
        if base_fidelity is not None and round(fidelity, 3) != round(base_fidelity, 3):
            platforms = [r.get("machine", {}).get("platform", "?") for r in (res, base)]
            check = (
                f"The full run's interpreter scored {base_fidelity:.3f}: this run's fit of it "
                f"came out otherwise (on `{platforms[0]}`, the full run on `{platforms[1]}`; the "
                "same seed gives the same interpreter only up to the machine's float rounding, "
                "which a training run amplifies), so compare the rows with each other."
            )
    else:
        where = ""
        check = "Another split than the full run's: compare the rows with each other."
    return [
        "",
        f"## Rows measured in a run of their own: {', '.join(new) or name}, fold {s['test_fold']}",
        "",
        f"From `benchmarks/results/{name}.json` (`python benchmarks/esc10.py"
        + (
            ""
            if same
            else f" --train-folds {' '.join(map(str, s['train_folds']))} --test-fold {s['test_fold']}"
        )
        + f" --methods {methods}{skip} --name {name}`, commit `{res['commit']}`, "
        f"{res['total_seconds'] / 60:.0f} min), trained on folds {s['train_folds']}, tested on "
        f"fold {s['test_fold']}: the classifier ({clf['model']}) scores fold-{s['test_fold']} "
        f"accuracy {clf['accuracy']:.3f}{where}, the defaults' interpreter top-1 fidelity "
        f"{fidelity:.3f}{l2i_fidelity(res) if 'l2i' in res['interpreters'] else ''}. {check}",
        "",
        *method_lines(res),
    ]


def silero_answer(sil: dict) -> list[str]:
    """The issue's question about Silero, answered from its figures: does nmfinterp's explanation
    keep the speech and drop the sound, and does Silero still decide speech on it?"""
    r = sil["methods"].get("nmfinterp")
    if r is None:
        return []
    m = lambda key: r[key]["mean"]  # noqa: E731
    share, mixture = m("energy_share"), m("si_sdr_mixture")
    kept = "mostly the speech" if share >= 0.9 else "more of the speech than of the sound"
    return [
        "",
        f"Does the explanation keep the speech and drop the rest? It keeps {kept}: "
        f"{share:.2f} of its energy comes from the speech (the input: 0.50), and its SI-SDR to the "
        f"speech is {m('si_sdr_gap'):.1f} dB above its SI-SDR to the sound (the input: 0). Its "
        f"SI-SDR to the speech itself, {m('si_sdr_deciding'):.1f} dB against the input's "
        f"{mixture:.1f} dB, says it "
        + (
            "keeps part of the speech, not all of it (the part Silero's decision rests on); "
            if m("si_sdr_deciding") < mixture
            else "is closer to the speech than the input is; "
        )
        + f"Silero still decides speech on it (Fid-In {m('Fid-In'):.2f}) and its speech "
        f"probability falls without it (FF {m('FF'):.2f}).",
    ]


def render(
    res: dict,
    src: str,
    seeds: dict | None = None,
    sweeps: list[tuple[dict, str]] = (),
    gates_study: dict | None = None,
    splits: list[tuple[dict, str, dict | None]] = (),
    device: dict | None = None,
    dictionaries: list[tuple[dict, str]] = (),
    share_ceilings: list[tuple[dict, str]] = (),
    source_gates_studies: list[tuple[dict, str]] = (),
    generalisation_studies: list[tuple[dict, str]] = (),
    datasets: list[tuple[dict, str]] = (),
    own_rows: list[tuple[dict, str]] = (),
    quick: dict | None = None,
) -> str:
    s, clf = res["settings"], res["classifier"]
    lines = [
        "# Benchmark: ESC-10, every explainer, five listening conditions, Silero VAD, costs",
        "",
        f"Generated by `python benchmarks/make_table.py` from `{src}`, which",
        f"`python benchmarks/esc10.py{' --quick' if s['quick'] else ''}` wrote (the protocol is in the",
        "docstring of `nmfinterp/benchmark.py`). Every cell is mean [95% CI] over the clips it names.",
        f"Data: `{Path(s['data']).name}`, trained on folds {s['train_folds']} ({res['n_train']} clips), "
        f"evaluated on fold {s['test_fold']} ({res['n_test']} clips). Total run time "
        f"{res['total_seconds'] / 60:.0f} min on {res['machine']['cpu_threads']} torch threads."
        + (
            f" The whole protocol with small settings, `python benchmarks/esc10.py --quick` "
            f"(`benchmarks/results/esc10_quick.json`, commit `{quick['commit']}`), took "
            f"{quick['total_seconds'] / 60:.1f} min on {quick['machine']['cpu_threads']} torch "
            "threads (its target: under 10 minutes on 2 cores)."
            if quick and not s["quick"]
            else ""
        ),
        "",
        *(
            [
                "**This is the `--quick` run** (120 training clips, 24 test clips, K=50, short training): "
                "it shows the whole protocol working in minutes, not the method at its best; the full "
                "run is `python benchmarks/esc10.py`.",
                "",
            ]
            if s["quick"]
            else []
        ),
        f"Classifier: {clf['model']} trained {res['config']['classifier_epochs']} epochs, "
        f"fold-{s['test_fold']} accuracy **{clf['accuracy']:.3f}**.",
        "",
        "| interpreter | K | top-1 fidelity | fit (s) | fit per clip (s) |",
        "|---|---|---|---|---|",
    ]
    for key, r in res["interpreters"].items():
        label = {
            "nmfinterp": "nmfinterp defaults",
            "faithful": "faithfulness=1",
            "one dictionary": "one dictionary for all classes (L2I's; the official row's)",
            "constant": l2i_label(res),
            "l2i": l2i_label(res) + " (the row 'L2I, official training and selection')",
        }.get(key, key)
        lines.append(
            f"| {label} | {r['n_components']} | {r['fidelity_top1']:.3f} | {r['fit_seconds']:.0f} | "
            f"{r['fit_seconds_per_clip']:.2f} |"
        )
    gated = {
        key: sum(h["seconds"] for h in r["source_gates_history"])
        for key, r in res["interpreters"].items()
        if r.get("source_gates_history")  # recorded since source_gates="auto"
    }
    if gated:
        lines += [
            "",
            'Fits that ended with the source gates (`source_gates="auto"`, the default), the '
            "seconds of their network's training within the fit time above: "
            + "; ".join(f"{key} {seconds:.0f} s" for key, seconds in gated.items())
            + " (the rest of theirs: the interpreter's features of the training mixtures).",
        ]
    gates = res["interpreters"]["nmfinterp"].get("gates")
    previous = res["interpreters"]["nmfinterp"].get("previous_gates")
    residual_1 = res["interpreters"]["nmfinterp"].get("residual_weight_1_gates")
    distilled = res["interpreters"]["nmfinterp"].get("distilled_gates")
    if gates:
        channels = f"{gates['hidden']} channels, " if "hidden" in gates else ""
        if "residual_weight" in gates:  # recorded since fit_gates has the parameter
            channels += f"residual weight {gates['residual_weight']:g}, "
        lines += [
            "",
            f"The defaults' gate network (`fit_gates`, {channels}{len(gates['history'])} epochs on "
            "the training clips and mixtures of them, for `explain(..., amortised=True)`): "
            f"{gates['fit_seconds']:.0f} s more"
            + (
                f"; with {previous['hidden']} channels (the default before, row 'nmfinterp, "
                f"amortised gates, hidden={previous['hidden']}'): {previous['fit_seconds']:.0f} s"
                if previous
                else ""
            )
            + (
                "; trained with the residual's weight of before, 1 (row 'nmfinterp, amortised "
                f"gates, residual_weight=1'): {residual_1['fit_seconds']:.0f} s"
                if residual_1
                else ""
            )
            + ".",
        ]
    if distilled:
        stages = [h.get("stage") for h in distilled["history"]]
        lines += [
            "",
            "The distilled gate network (row 'nmfinterp, amortised gates, distilled': "
            f"{distilled['hidden']} channels, the refinement run once on the training clips and "
            f"mixtures, {stages.count('distil')} epochs learning its gates, then "
            f"{stages.count('objective')} of the objective with that imitation kept): "
            f"{distilled['fit_seconds']:.0f} s more.",
        ]
    if seeds is not None and not s["quick"]:
        lines += seed_lines(seeds)
    lines += ["", "## Targets (nmfinterp defaults)", ""]
    lines += [
        "The last column is what a mask of ones (the input itself, row 'all components'), the",
        "oracle gates (nmfinterp's components chosen with the true sources) and the oracle within",
        "nmfinterp's own selection (what nmfinterp kept, less what the oracle gives to the other",
        "source) score: where even they miss a target, the classifier's own decisions bound it; where",
        "the last one meets the energy-share target but misses a faithfulness one, the other source's",
        "energy that nmfinterp keeps is energy the decision needs.",
        "",
    ]
    lines += target_lines(res)
    cost = res.get("cost", {})
    # the full run's own cost figures, when a cost-only run replaced that section: both are shown
    full = res.get("_replaced", {}).get("cost", {})

    def cost_row(label, section, key, op, target, turns=None) -> str:
        """One cost target's row: the figure (with its range over the run's turns, when recorded)
        and, when a cost-only run replaced the full run's section, the full run's figure too."""

        def figure(part: dict) -> tuple[str, bool] | None:
            e = part.get(section, {})
            if key not in e:
                return None
            t = e.get("turn_ratios", {}).get(turns)
            text = f"{e[key]:.2f}" + (
                f" (turn by turn: median {t['median']:.2f}, {t['min']:.2f}–{t['max']:.2f})"
                if t
                else ""
            )
            return text, (e[key] <= target if op == "<=" else e[key] >= target)

        def word(ok: bool) -> str:
            return "yes" if ok else "**no**"

        (measured, met), other = figure(cost), figure(full)
        verdict = word(met)
        if other is not None:
            measured += f"; full run: {other[0]}"
            if other[1] != met:
                verdict = f"{word(met)} in the cost run, {word(other[1])} in the full run"
        return f"| cost | {label} | {op} {target} | {measured} | {verdict} | |"

    ev = cost.get("explain_vs_forward_stft_istft")
    if ev:
        before = "" if "ratio_no_refinement" in ev else " (run before refinement: `refine_steps=0`)"
        section = "explain_vs_forward_stft_istft"
        lines.append(
            cost_row(
                f"explain / (forward+STFT+ISTFT){before}", section, "ratio", "<=", 1.5, "explain"
            )
        )
        fast = ", ".join(f"{k}={v:g}" for k, v in ev.get("fast_settings", {}).items())
        for key, name, label in (
            ("ratio_fast", "fast", f"`{fast}`"),
            ("ratio_no_refinement", "plain", "`refine_steps=0`"),
            ("ratio_amortised", "amortised", "`amortised=True`"),
        ):
            if key in ev:
                lines.append(cost_row(f"same, {label}", section, key, "<=", 1.5, name))
    fc = cost.get("fit_cached_vs_recomputed", {})
    if "speedup" in fc:
        lines.append(
            cost_row("fit recomputed / cached", "fit_cached_vs_recomputed", "speedup", ">=", 3)
        )
    projected = cost.get("fit_cached_vs_recomputed_feature_components", {})
    if "speedup" in projected:
        label = f"same, `feature_components={projected['feature_components']}`"
        section = "fit_cached_vs_recomputed_feature_components"
        lines.append(cost_row(label, section, "speedup", ">=", 3))
    lines += defaults_note(res)  # after the table and its cost rows
    skipped = [m for m in METHODS if m not in s.get("methods", METHODS)]
    if skipped:
        lines += [
            "",
            "Not run in this run (left out with `--methods`, or by `--quick`, to fit the time): "
            + ", ".join(skipped)
            + ". Where they ran before, their figures are in the git history of "
            "`benchmarks/results/`; docs/method.md quotes the runs that measured each since."
            + (
                " Rows measured in a run of their own on this split have their section below."
                if own_rows and not s["quick"]
                else ""
            ),
        ]
    if not s["quick"]:
        for split, name, split_seeds in splits:
            lines += split_lines(split, name, split_seeds)
        for other, name in datasets:
            lines += dataset_lines(other, name)
        for other, name in own_rows:
            lines += own_rows_lines(other, name, res)
    for cond, title in res["conditions"].items():
        rows = res["results"].get(cond)
        if not rows:
            continue
        lines += [
            "",
            f"## {title}",
            "",
            f"{rows['_kept']} of {rows['_n']} inputs"
            + (
                " (the rest were classified as neither source's class)." if cond != "clean" else "."
            ),
            "",
        ]
        lines += table(rows, CLEAN_COLS if cond == "clean" else MIX_COLS)
        if cond != "clean":
            any_row = next(v for k, v in rows.items() if not k.startswith("_"))
            lines += [
                "",
                f"The mixture itself: SI-SDR {cell(any_row['si_sdr_mixture'], '.1f')} dB.",
            ]
    sil = res.get("silero")
    if sil and res.get("_sections_from", {}).get("silero"):
        command, commit = res["_sections_from"]["silero"], res["_sections_commit"]["silero"]
        sil = {**sil, "_from": f"`{command}`{_code(commit)}"}
    if sil and "error" in sil:
        lines += ["", "## Silero VAD", "", f"This section failed in this run: `{sil['error']}`"]
    elif sil:
        lines += [
            "",
            "## Silero VAD (a model nobody here wrote): speech decisions on FSDD speech + ESC-10 sounds",
            "",
            (f"Measured by {sil['_from']}. " if "_from" in sil else "")
            + f"2-second clips, speech and sound at equal RMS. Interpreter fitted on {sil['n_train']} clips "
            f"({sil['fit_seconds']:.0f} s); top-1 fidelity on the {sil['n_test']} test mixtures "
            f"{sil['fidelity_top1']:.3f}; Silero decided *speech* on {sil['n_decided_speech']} of them. "
            f"Its speech probability on the speech alone {cell(sil['speech_probability_of_speech_alone'])}, "
            f"on the sound alone {cell(sil['speech_probability_of_sound_alone'])}. FF / Fid-In are in terms "
            "of its clip-level speech probability (the largest chunk probability); 'deciding' = the speech.",
            "",
        ]
        lines += table(sil["methods"], MIX_COLS)
        any_row = next(iter(sil["methods"].values()))
        if "si_sdr_mixture" in any_row:
            lines += [
                "",
                f"The mixture itself: SI-SDR {cell(any_row['si_sdr_mixture'], '.1f')} dB.",
            ]
        lines += silero_answer(sil)
    if cost:
        lines += ["", "## Costs (ratios measured in one run)", ""]
        if cost.get("settings"):
            cs = cost["settings"]
            lines += [
                f"Run with `{shlex.join(['python', 'benchmarks/esc10.py', *cs['command_args']])}`"
                f"{_code(res.get('_sections_commit', {}).get('cost'))} "
                f"({cs['n_train']} training clips; classifier epochs {cs['classifier_epochs']}, "
                f"interpreter epochs {cs['epochs'] or 'default'}).",
                "",
            ]
        if ev:
            lines.append(
                f"- explain {ev['explain_seconds']:.2f} s vs classifier forward + STFT + ISTFT "
                f"{ev['forward_stft_istft_seconds']:.2f} s on the same {ev['batch']} clips: "
                f"**{ev['ratio']:.2f}x**"
                + (
                    f" with the default refinement ({ev['refine_steps']} steps); "
                    + (
                        f"{ev['explain_fast_seconds']:.2f} s, **{ev['ratio_fast']:.2f}x**, with "
                        f"`{fast}`; "
                        if "ratio_fast" in ev
                        else ""
                    )
                    + f"{ev['explain_no_refinement_seconds']:.2f} s, **{ev['ratio_no_refinement']:.2f}x**, "
                    "with `refine_steps=0`"
                    + (
                        f"; {ev['explain_amortised_seconds']:.2f} s, **{ev['ratio_amortised']:.2f}x**, "
                        "with the amortised gates (`amortised=True`)."
                        if "ratio_amortised" in ev
                        else "."
                    )
                    if "ratio_no_refinement" in ev
                    else " (measured before explain refined its selection: that is `refine_steps=0`)."
                )
            )
        if "speedup" in fc:
            lines.append(
                f"- interpreter fit ({fc['n_clips']} clips, {fc['epochs']} epochs): hidden features cached "
                f"{fc['cached_seconds']:.1f} s vs recomputed every epoch {fc['recomputed_seconds']:.1f} s: "
                f"**{fc['speedup']:.1f}x** faster."
            )
        elif fc:
            lines.append(f"- cached vs recomputed features: {fc.get('error')}")
        if "speedup" in projected:
            lines.append(
                f"- the same with `feature_components={projected['feature_components']}` (each "
                "hidden layer projected onto its leading principal components): cached "
                f"{projected['cached_seconds']:.1f} s vs recomputed "
                f"{projected['recomputed_seconds']:.1f} s: **{projected['speedup']:.1f}x**."
            )
        nmf = cost.get("nmf_vs_cd")
        if nmf:
            lines.append(
                f"- NMFDictionary {nmf['ours_seconds']:.1f} s (error {nmf['ours_error']:.1f} on all "
                f"{nmf['n_frames']} frames) vs sklearn NMF `cd` on every frame {nmf['cd_seconds']:.1f} s "
                f"({nmf['cd_max_iter']} iterations, error {nmf['cd_error']:.1f}"
                + ("" if nmf["cd_reached_equal_error"] else ", did not reach equal error")
                + f"): **{nmf['ratio_cd_over_ours']:.1f}x**."
            )
        if cost.get("scaling"):
            lines += [
                "",
                "| training clips | fit (s) | per clip (s) | peak RSS (MiB) |",
                "|---|---|---|---|",
            ]
            for r in cost["scaling"]:
                lines.append(
                    f"| {r['n_clips']} | {r['seconds']:.0f} | {r['seconds_per_clip']:.2f} | "
                    f"{r['peak_rss_mib']:.0f} |"
                )
    m = res["machine"]
    commit = f" Code: commit `{res['commit']}`." if res.get("commit") else ""
    lines += [
        "",
        f"Machine: {m['platform']}, Python {m['python']}, torch {m['torch']}.{commit}",
        "",
    ]
    if not s["quick"]:
        lines += dictionary_lines(res, list(dictionaries))
    for sweep, name in sweeps if not s["quick"] else ():
        lines += sweep_lines(sweep, res["conditions"], name)
    if gates_study is not None and not s["quick"]:
        lines += gates_lines(gates_study)
    for study, name in share_ceilings if not s["quick"] else ():
        lines += share_ceiling_lines(study, name)
    for study, name in source_gates_studies if not s["quick"] else ():
        lines += source_gates_study_lines(study, name)
    for study, name in generalisation_studies if not s["quick"] else ():
        lines += source_gates_generalisation_lines(study, name)
    if device is not None and not s["quick"]:
        lines += device_lines(device)
    return "\n".join(lines)


def _command(settings: dict) -> str:
    """The ``esc10.py`` command line of a partial run, from its saved settings."""
    choice = dictionary_choice(settings)
    return (
        "python benchmarks/esc10.py"
        + (" --quick" if settings["quick"] else "")
        + (f" --dictionary {choice}" if choice != "auto" else "")
        + (f" --skip {' '.join(settings['skip'])}" if settings.get("skip") else "")
        + (f" --name {settings['name']}" if settings.get("name") else "")
    )


def _code(commit: str | None) -> str:
    """ ", code `<commit>`" where a partial run saved its commit (it can differ from the full run's,
    named at the end of the page)."""
    return f", code `{commit}`" if commit else ""


def merge(parts: list[dict]) -> dict:
    """The first run's results, with sections taken from later runs: those it skipped
    (``--skip``), and those a later partial run (one that skipped the others) measured anew."""
    res = dict(parts[0])
    for part in parts[1:]:
        partial = bool(part["settings"].get("skip"))
        for key in ("results", "silero", "cost"):
            if key in part and (key not in res or partial):
                if key in res:  # kept, so that the table can show both runs' figures
                    res.setdefault("_replaced", {})[key] = res[key]
                res[key] = part[key]
                res.setdefault("_sections_from", {})[key] = _command(part["settings"])
                res.setdefault("_sections_commit", {})[key] = part.get("commit")
    return res


def _saved(name: str) -> dict | None:
    """The results another benchmark command saved, or None when it has not run."""
    path = ROOT / "benchmarks" / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _runs(prefix: str) -> list[tuple[dict, str]]:
    """Every saved ``benchmarks/results/<prefix>*.json``, sorted by name, with its stem."""
    return [
        (json.loads(p.read_text()), p.stem)
        for p in sorted((ROOT / "benchmarks" / "results").glob(f"{prefix}*.json"))
    ]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    dst = ROOT / "docs" / "benchmarks.md"
    if argv and argv[-1].endswith(".md"):
        dst = Path(argv[-1])
        argv = argv[:-1]
    srcs = [Path(a) for a in argv] or [ROOT / "benchmarks" / "results" / "esc10.json"]
    # partial runs whose sections replace the full run's: the costs, and Silero VAD's section
    # at the default dictionary where the full run's Silero pipeline had another
    srcs += [
        p
        for p in [
            ROOT / "benchmarks" / "results" / f"esc10_{part}.json" for part in ("cost", "silero")
        ]
        if not argv and p.exists()
    ]
    rel = [
        str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p)
        for p in srcs
    ]
    seeds = _saved("fidelity_seeds")
    # each param's sweep, then the sweeps run at another mask_power or on another split
    # (contrast_sweep.py --mask-power P / --train-folds .. --test-fold N, with --out
    # benchmarks/results/<param's sweep>_<what differs>.json)
    names = [name for name, *_ in SWEEPS.values()]
    names += sorted(p.stem for p in (ROOT / "benchmarks" / "results").glob("*_sweep_*.json"))
    sweeps = [(r, name) for name in names if (r := _saved(name)) is not None]
    res = merge([json.loads(p.read_text()) for p in srcs])
    # other splits of the data: esc10.py --name esc10_test_foldN (and fidelity_seeds.py's JSON)
    splits = [
        (json.loads(p.read_text()), p.stem, _saved(p.stem.replace("esc10_", "fidelity_seeds_")))
        for p in sorted((ROOT / "benchmarks" / "results").glob("esc10_test_fold*.json"))
    ]
    # other dictionaries: esc10.py --n-components K / --dictionary D --name esc10_dictionary_...
    # (esc10_dictionary_converged.json, from before these options, is quoted in method.md instead)
    dictionaries = [
        (r, p.stem)
        for p in sorted((ROOT / "benchmarks" / "results").glob("esc10_dictionary_*.json"))
        if (r := json.loads(p.read_text()))["settings"].get("n_components")
        or dictionary_choice(r["settings"]) != "auto"
    ]
    dst.write_text(
        render(
            res,
            " + ".join(rel),
            seeds,
            sweeps,
            _saved("gates_study"),
            splits,
            _saved("device"),
            dictionaries,
            # share_ceiling.py's runs: the default split, then the others (--out ..._test_foldN)
            _runs("share_ceiling"),
            # source_gates_study.py's runs: the default split, then the others (--out ...)
            _runs("source_gates_study"),
            # source_gates_generalisation.py's runs (--out ... for other splits)
            _runs("source_gates_generalisation"),
            # other datasets: benchmarks/fsdd_digits.py
            _runs("fsdd_digits"),
            # rows measured in a run of their own: esc10.py --methods ... --name esc10_rows_...
            _runs("esc10_rows_"),
            _saved("esc10_quick"),
        )
    )
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
