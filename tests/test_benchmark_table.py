"""docs/benchmarks.md is what benchmarks/make_table.py makes of the saved results, and a cost-only
run that replaces the full run's cost section leaves both runs' figures in the targets table."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def make_table():
    spec = importlib.util.spec_from_file_location(
        "make_table", ROOT / "benchmarks" / "make_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def full_run():
    if not (RESULTS / "esc10.json").exists():
        pytest.skip("no saved benchmark results")
    return json.loads((RESULTS / "esc10.json").read_text())


def test_the_docs_table_is_generated_from_the_saved_results(make_table, tmp_path):
    out = tmp_path / "benchmarks.md"
    make_table.main([str(out)])  # the saved runs it reads by default
    assert out.read_text() == (ROOT / "docs" / "benchmarks.md").read_text(), (
        "docs/benchmarks.md is stale: run python benchmarks/make_table.py"
    )


def _cost_rows(text: str) -> dict:
    return {
        row.split(" | ")[1]: row.split(" | ")[3:5]
        for row in text.splitlines()
        if row.startswith("| cost |")
    }


def test_a_cost_run_keeps_the_full_runs_figures_beside_its_own(make_table, full_run):
    if "cost" not in full_run:
        pytest.skip("the saved run has no cost section")
    full = copy.deepcopy(full_run)
    # a cost-only run, as `esc10.py --skip methods silero` saves it
    cost = {k: copy.deepcopy(v) for k, v in full_run.items() if k not in ("results", "silero")}
    cost["settings"]["skip"] = ["methods", "silero"]
    full["cost"]["explain_vs_forward_stft_istft"]["ratio_amortised"] = 1.2
    cost["cost"]["explain_vs_forward_stft_istft"]["ratio_amortised"] = 1.7
    cost["cost"]["fit_cached_vs_recomputed"]["speedup"] = 3.5
    full["cost"]["fit_cached_vs_recomputed"]["speedup"] = 3.25
    full["commit"], cost["commit"] = "full123", "cost456"
    for run in (full, cost):  # first, runs from before the faster refinement was timed
        for key in ("ratio_fast", "explain_fast_seconds", "fast_settings"):
            run["cost"]["explain_vs_forward_stft_istft"].pop(key, None)
        run["cost"]["explain_vs_forward_stft_istft"].get("turn_ratios", {}).pop("fast", None)
    text = make_table.render(make_table.merge([full, cost]), "x")
    # the cost section names the cost run's code; the page ends with the full run's
    costs = text[text.index("## Costs") :]
    assert costs.startswith("## Costs") and "`, code `cost456` (240 training clips" in costs
    assert "Code: commit `full123`." in text and "cost456" not in text.replace(costs, "")
    rows = _cost_rows(text)
    measured, verdict = rows["same, `amortised=True`"]
    assert measured.startswith("1.70") and "full run: 1.20" in measured
    assert verdict == "**no** in the cost run, yes in the full run"
    assert rows["fit recomputed / cached"] == ["3.50; full run: 3.25", "yes"]
    assert "same, `refine_steps=10, refine_lr=1`" not in rows  # neither run timed it
    # a cost run that also timed the faster refinement (the full run before it did not)
    ev = cost["cost"]["explain_vs_forward_stft_istft"]
    ev.update(
        fast_settings={"refine_steps": 10, "refine_lr": 1.0},
        explain_fast_seconds=4.0,
        ratio_fast=80.0,
    )
    ev["turn_ratios"]["fast"] = {"median": 81.0, "min": 79.0, "max": 83.0}
    full["cost"]["explain_vs_forward_stft_istft"].pop("ratio_fast", None)
    text = make_table.render(make_table.merge([full, cost]), "x")
    assert _cost_rows(text)["same, `refine_steps=10, refine_lr=1`"] == [
        "80.00 (turn by turn: median 81.00, 79.00–83.00)",
        "**no**",
    ]
    assert "4.00 s, **80.00x**, with `refine_steps=10, refine_lr=1`; " in text
    # a run that also timed the fit with projected hidden layers has a row of its own (and a
    # full run that did not, as those before it, none beside it)
    full["cost"].pop("fit_cached_vs_recomputed_feature_components", None)
    cost["cost"]["fit_cached_vs_recomputed_feature_components"] = {
        **cost["cost"]["fit_cached_vs_recomputed"],
        "feature_components": 32,
        "speedup": 2.5,
    }
    text = make_table.render(make_table.merge([full, cost]), "x")
    assert _cost_rows(text)["same, `feature_components=32`"] == ["2.50", "**no**"]
    assert "`feature_components=32` (each hidden layer projected" in text
    # the full run alone: its own figures, no second run named
    rows = _cost_rows(make_table.render(make_table.merge([full]), "x"))
    assert rows["same, `amortised=True`"][0].startswith("1.20")
    assert "full run" not in rows["same, `amortised=True`"][0]


def test_the_gates_study_section_has_one_row_per_set_of_gates(make_table):
    scores = {
        "train clean": {"AI": {"mean": 31.25, "ci95": [20.0, 42.5]}},
        "test clean": {
            m: {"mean": v, "ci95": [v - 1, v + 1]}
            for m, v in (
                ("Fid-In", 0.99),
                ("FF", 0.68),
                ("AI", 33.75),
                ("AD", 2.3),
                ("mask_mean", 0.7),
            )
        },
        "test mix_equal": {
            "mask_mean": {"mean": 0.84, "ci95": [0.82, 0.86]},
            "energy_share": {"mean": 0.62, "ci95": [0.58, 0.66]},
            "si_sdr_gap": {"mean": 6.21, "ci95": [3.4, 9.0]},
        },
    }
    study = {
        "commit": "abc1234",
        "classifier_accuracy": 0.925,
        "n_training_rows": 677,
        "distillation_agreement": 0.82,
        "objective": {"refinement (explain's default)": -1.79, "gate network (fit_gates)": -1.24},
        "scores": {
            "refinement (explain's default)": scores,
            "gate network (fit_gates)": scores,
        },
    }
    lines = make_table.gates_lines(study)
    rows = [row for row in lines if row.startswith("| ") and not row.startswith("| gates")]
    assert [row.split(" | ")[0:2] for row in rows] == [
        ["| refinement (explain's default)", "-1.790"],
        ["| gate network (fit_gates)", "-1.240"],
    ]
    assert rows[1].split(" | ")[2:] == [
        "31 [20, 42]",
        "0.99 [-0.01, 1.99]",
        "0.68 [-0.32, 1.68]",
        "34 [33, 35]",
        "2 [1, 3]",
        "0.70 [-0.30, 1.70]",
        "0.84 [0.82, 0.86]",
        "0.62 [0.58, 0.66]",
        "6.2 [3.4, 9.0] |",
    ]
    assert "82%" in "\n".join(lines) and "677 training rows" in "\n".join(lines)
    assert "the gate network of `fit_gates`' default at that commit" in "\n".join(lines)
    assert "a gate network of 32 channels" in "\n".join(
        make_table.gates_lines({**study, "gate_hidden": 32})
    )
    assert "other ways of training" not in "\n".join(lines)  # no rows (a), (b)... to name
    for name in ("(a) distilled", "(b) straight-through", "(c) informed"):
        study["objective"][name], study["scores"][name] = -1.0, scores
    text = "\n".join(make_table.gates_lines(study))
    assert "(a)-(c) are other ways of training the gate network" in text


def test_the_share_ceiling_section_has_one_row_per_setting_and_names_its_split(make_table):
    def ci(mean):
        return {"mean": mean, "ci95": [mean - 0.1, mean + 0.1], "n": 65}

    study = {
        "commit": "abc1234",
        "classifier_accuracy": 0.9125,
        "fidelity_top1": 0.95,
        "n_mixtures": 65,
        "train_folds": [1, 2, 3],
        "test_fold": 4,
        "results": {
            name: {
                "energy_share": ci(share),
                "si_sdr_gap": ci(21.32),
                "decision_and_confidence_kept": ci(kept),
                "mask_mean": ci(0.37),
                "seconds_per_clip": 0.5,
            }
            for name, share, kept in (
                ("default (300 then 100)", 0.881, 1.0),
                ("contrast_penalty=1000", 0.898, 0.57),
            )
        },
        "per_clip_pick": {"best of every setting": ci(0.92)},
        "default_shortfall": {
            "lowest_tenth_clips": 6,
            "lowest_tenth_share_of_shortfall": 0.4,
            "lowest_tenth_mean_share": 0.55,
            "lowest_tenth_deciding_energy_kept": 0.012,
            "lowest_tenth_other_energy_kept": 0.02,
            "rest_deciding_energy_kept": 0.2,
            "rest_other_energy_kept": 0.03,
        },
        "separability": {
            "cells_kept": 1000,
            "other_source_weight_share": 0.095,
            "contrast weight a_k": 0.593,
        },
    }
    lines = make_table.share_ceiling_lines(study)
    text = "\n".join(lines)
    rows = [row for row in lines if row.startswith("| ") and " | " in row[2:]][1:]
    assert [row.split(" | ")[:2] for row in rows[:3]] == [
        ["| default (300 then 100)", "0.88 [0.78, 0.98]"],
        ["| contrast_penalty=1000", "0.90 [0.80, 1.00]"],
        ["| per clip, best of every setting (reads the sources)", "0.92 [0.82, 1.02]"],
    ]
    assert rows[1].split(" | ")[2:] == [
        "21.3 [21.2, 21.4]",
        "0.57 [0.47, 0.67]",
        "0.37 [0.27, 0.47]",
        "0.50 |",
    ]
    assert rows[-1] == "| contrast weight a_k | 0.59 |"
    assert "hold 40% of it" in text and "carry 10% of their weight" in text
    assert "(`python benchmarks/share_ceiling.py`, commit `abc1234`;" in text
    assert "## How far explain's settings take the deciding source's share\n" in text + "\n"
    other = "\n".join(
        make_table.share_ceiling_lines(
            {**study, "train_folds": [1, 2, 4], "test_fold": 3}, "share_ceiling_test_fold3"
        )
    )
    assert ", trained on folds [1, 2, 4], tested on fold 3" in other
    assert (
        "`python benchmarks/share_ceiling.py --train-folds 1 2 4 --test-fold 3 --out "
        "benchmarks/results/share_ceiling_test_fold3.json`" in other
    )


def test_the_source_gates_study_has_one_row_per_setting_with_its_cost(make_table):
    def ci(mean):
        return {"mean": mean, "ci95": [mean - 0.01, mean + 0.01], "n": 64}

    def conditions(share):
        return {
            "mix_equal": {"energy_share": ci(share), "si_sdr_gap": ci(27.81), "FF": ci(0.64)},
            "mix_0.8_0.2": {"energy_share": ci(0.959), "si_sdr_gap": ci(27.9), "FF": ci(0.72)},
        }

    study = {
        "commit": "abc1234",
        "classifier_accuracy": 0.9125,
        "fidelity_top1": 0.963,
        "pipeline_fit_seconds": 99.6,
        "n_train": 240,
        "n_explained": {"mix_equal": 64, "mix_0.8_0.2": 67},
        "train_folds": [1, 2, 3],
        "test_fold": 4,
        "results": {
            "no source gates (separation=None)": {"params": None, "conditions": conditions(0.864)},
            "30 epochs": {
                "params": {"epochs": 30},
                "seconds": 86.7,
                "network_seconds": 60.4,
                "peak_above_mib": 612.2,
                "conditions": conditions(0.91),
            },
        },
    }
    lines = make_table.source_gates_study_lines(study)
    rows = [row for row in lines if row.startswith("| ") and " | " in row[2:]][1:]
    assert rows == [
        "| no source gates (separation=None) | – | – | – | 0.864 [0.854, 0.874] | "
        "27.8 [27.8, 27.8] | 0.64 [0.63, 0.65] | 0.959 [0.949, 0.969] | 0.72 [0.71, 0.73] |",
        "| 30 epochs | 87 | 60 | 612 | 0.910 [0.900, 0.920] | 27.8 [27.8, 27.8] | "
        "0.64 [0.63, 0.65] | 0.959 [0.949, 0.969] | 0.72 [0.71, 0.73] |",
    ]
    text = "\n".join(lines)
    assert "(`python benchmarks/source_gates_study.py`, commit `abc1234`;" in text
    assert "fitted without source gates in 100 s on 240 clips" in text
    assert "equal-level (64) and 0.8/0.2 (67) mixtures" in text
    other = "\n".join(
        make_table.source_gates_study_lines(
            {**study, "train_folds": [1, 2, 4], "test_fold": 3}, "source_gates_study_fold3"
        )
    )
    assert "## The source gates' settings: time, memory and share, trained on folds" in other
    assert (
        "`python benchmarks/source_gates_study.py --train-folds 1 2 4 --test-fold 3 --out "
        "benchmarks/results/source_gates_study_fold3.json`" in other
    )


def test_the_generalisation_study_scores_each_setting_on_each_group(make_table):
    def scores(w):
        group = {
            "agreement": 0.8,
            "weighted_agreement": w,
            "weighted_precision": 0.83,
            "bce": 0.4856,
        }
        return {
            "training rows": {**group, "weighted_agreement": 0.8871},
            "mix_equal": group,
            "mix_0.8_0.2": {**group, "weighted_precision": 0.9069},
        }

    study = {
        "commit": "abc1234",
        "classifier_accuracy": 0.85,
        "fidelity_top1": 0.9125,
        "n_train": 240,
        "n_train_scored": 600,
        "n_held_out": {"mix_equal": 63, "mix_0.8_0.2": 62},
        "train_folds": [1, 3, 4],
        "test_fold": 2,
        "results": {
            "untrained": {"params": None, "scores": scores(0.6972)},
            "hidden=64": {
                "params": {"hidden": 64},
                "n_rows": 1847,
                "seconds": 201.4,
                "final_loss": 0.27,
                "scores": scores(0.7943),
            },
        },
    }
    lines = make_table.source_gates_generalisation_lines(study, "source_gates_generalisation_fold2")
    rows = [row for row in lines if row.startswith("| ") and " | " in row[2:]][1:]
    assert rows == [
        "| untrained | – | – | 0.887 | 0.830 | 0.486 | 0.697 | 0.830 | 0.486 | 0.697 | 0.907 "
        "| 0.486 |",
        "| hidden=64 | 1847 | 201 | 0.887 | 0.830 | 0.486 | 0.794 | 0.830 | 0.486 | 0.794 | "
        "0.907 | 0.486 |",
    ]
    text = "\n".join(lines)
    assert (
        "## The source gates' network on clips it never saw, trained on folds [1, 3, 4], " in text
    )
    assert (
        "`python benchmarks/source_gates_generalisation.py --train-folds 1 3 4 --test-fold 2 "
        "--out benchmarks/results/source_gates_generalisation_fold2.json`, commit `abc1234`" in text
    )
    assert "equal-level (63) and 0.8/0.2 (62) mixtures" in text and "first 600 training" in text


def test_the_gate_networks_fit_times_name_their_channels(make_table, full_run):
    res = copy.deepcopy(full_run)
    interp = res["interpreters"]["nmfinterp"]
    if "gates" not in interp:
        pytest.skip("the saved run has no gate network")
    epochs = len(interp["gates"]["history"])
    interp["gates"].pop("residual_weight", None)  # first as saved before it was recorded
    interp.pop("residual_weight_1_gates", None)  # and before that ablation was run
    interp["gates"].update(hidden=32, fit_seconds=600.0)
    interp["previous_gates"] = {**interp["gates"], "hidden": 64, "fit_seconds": 700.0}
    text = make_table.render(make_table.merge([res]), "x")
    assert f"(`fit_gates`, 32 channels, {epochs} epochs on the training clips" in text
    assert (
        "600 s more; with 64 channels (the default before, row 'nmfinterp, amortised gates, "
        "hidden=64'): 700 s." in text
    )
    del interp["previous_gates"]
    assert "): 600 s more.\n" in make_table.render(make_table.merge([res]), "x")
    interp["gates"]["residual_weight"] = 0.5  # recorded since fit_gates has the parameter
    interp["residual_weight_1_gates"] = {
        **interp["gates"],
        "residual_weight": 1.0,
        "fit_seconds": 650.0,
    }
    text = make_table.render(make_table.merge([res]), "x")
    assert f"(`fit_gates`, 32 channels, residual weight 0.5, {epochs} epochs" in text
    assert (
        "600 s more; trained with the residual's weight of before, 1 (row 'nmfinterp, amortised "
        "gates, residual_weight=1'): 650 s." in text
    )


def test_a_sweep_section_names_its_defaults_then_and_one_row_per_value(make_table):
    score = {"mean": 0.5, "ci95": [0.4, 0.6], "n": 3}
    sweep = {
        "param": "energy_penalty",
        "default_weight": 1.0,
        "settings": {"refine_steps": 20, "contrast_penalty": 100.0},
        "test_fold": 4,
        "classifier_accuracy": 0.925,
        "fidelity_top1": 0.975,
        "commit": "abc1234",
        "results": {"clean": {"0.3": {"Fid-In": score, "n": 3}, "1.0": {"Fid-In": score, "n": 3}}},
    }

    def section(name=None, titles=None):  # the sweep's section as make_table writes it
        return "\n".join(make_table.sweep_lines(sweep, titles or {}, name))

    text = section(titles={"clean": "(a) clean clips"})
    assert "(the default at that commit: 1; refine_steps=20; contrast_penalty=100)" in text
    assert "## The energy term's weight" in text and "`abc1234`" in text
    assert "(a) clean clips (3 clips)" in text
    rows = [r.split(" | ")[0] for r in text.splitlines() if r.startswith("| energy_penalty=")]
    assert rows == ["| energy_penalty=0.3", "| energy_penalty=1"]
    # saved before `settings` existed: the default alone
    del sweep["settings"]
    assert "(the default at that commit: 1)" in section()
    # run at another mask sharpness: the title and the command say so, and where it was saved
    sweep["settings"] = {"mask_power": 2.0}
    text = section("energy_sweep_mask_power2")
    assert "## The energy term's weight at mask_power=2" in text
    assert (
        "`benchmarks/results/energy_sweep_mask_power2.json` (`python benchmarks/contrast_sweep.py "
        "--param energy_penalty --mask-power 2 --out benchmarks/results/energy_sweep_mask_power2.json`"
    ) in text
    # run on another split: the title and the command name its folds
    sweep.update(param="residual_weight", settings={}, train_folds=[1, 3, 4], test_fold=2)
    text = section("residual_sweep_test_fold2")
    assert "## The residual term's weight, trained on folds [1, 3, 4], tested on fold 2" in text
    assert (
        "(`python benchmarks/contrast_sweep.py --param residual_weight --train-folds 1 3 4 "
        "--test-fold 2 --out benchmarks/results/residual_sweep_test_fold2.json`"
    ) in text
    # on another folder of clips of another length: the title and the command name both
    sweep.update(data="/tmp/nmfinterp_fsdd_digits", duration=1.0, train_folds=[1, 2, 3])
    sweep["test_fold"] = 4
    text = section("residual_sweep_fsdd_digits")
    assert "## The residual term's weight, data `nmfinterp_fsdd_digits` (1-s clips)\n" in text
    assert (
        "(`python benchmarks/contrast_sweep.py --param residual_weight --data "
        "/tmp/nmfinterp_fsdd_digits --duration 1 --out benchmarks/results/"
        "residual_sweep_fsdd_digits.json`"
    ) in text
    # ESC-10's folder and five seconds, as saved since they are recorded: nothing added
    sweep.update(data="../shared/data/esc10", duration=5.0)
    assert "## The residual term's weight\n" in section("residual_sweep")
    del sweep["data"], sweep["duration"]
    # every value with each of two mask ratios on one pipeline: both in the title, the command
    # and the rows
    sweep.update(param="contrast_penalty", settings={"mask_ratio": ["linear", "log"]}, test_fold=4)
    sweep["train_folds"] = [1, 2, 3]
    sweep["results"] = {
        "clean": {
            f"{w}, mask_ratio={m}": {"Fid-In": score, "n": 3}
            for m in ("linear", "log")
            for w in (100.0, 300.0)
        }
    }
    text = section("contrast_sweep_ratios")
    assert "## The contrast term's weight, linear and log-ratio masks" in text
    assert "; mask_ratio=linear and log)" in text
    assert "contrast_sweep.py --mask-ratio linear log --out benchmarks/" in text
    rows = [r.split(" | ")[0] for r in text.splitlines() if r.startswith("| contrast_penalty=")]
    assert rows == [
        f"| contrast_penalty={w}, mask_ratio={m}" for m in ("linear", "log") for w in (100, 300)
    ]
    # weights tried in turn: the row, the command and explain's own default per pipeline say so,
    # and the share of clips refined again has a column (empty for the single weights)
    sweep.update(weights=[100.0, [300.0, 100.0]], default_weights={"per_class": "300.0>100.0"})
    again = {"mean": 0.05, "ci95": [0.0, 0.1]}
    sweep["results"] = {
        "clean": {
            "100.0": {"Fid-In": score, "n": 3},
            "300.0>100.0": {"Fid-In": score, "refined_again": again, "n": 3},
        }
    }
    text = section("contrast_sweep_in_turn")
    assert "(the default at that commit: 300>100 (per_class); mask_ratio=" in text
    assert "--weights 100 300>100`" in text and "| value | Fid-In | refined again |" in text
    rows = [r for r in text.splitlines() if r.startswith("| contrast_penalty=")]
    assert rows[0].startswith("| contrast_penalty=100 | 0.50 [0.40, 0.60] | – |")
    assert rows[1].startswith(
        "| contrast_penalty=300>100 | 0.50 [0.40, 0.60] | 0.05 [0.00, 0.10] |"
    )
    # with keep_confidence: the title and the command say so
    sweep.update(keep_confidence=1.0, settings={})
    text = section("contrast_sweep_keep_confidence")
    assert "## The contrast term's weight, weights in turn with keep_confidence=1" in text
    assert (
        "contrast_sweep.py --keep-confidence 1 --out "
        "benchmarks/results/contrast_sweep_keep_confidence.json --weights 100 300>100`"
    ) in text
    del sweep["default_weights"], sweep["weights"], sweep["keep_confidence"]
    # on a subset of the classes: the title and the command name them
    sweep.update(settings={}, categories=["dog", "rain", "rooster"])
    text = section("contrast_sweep_classes_3")
    assert "## The contrast term's weight, 3 classes (dog, rain, rooster)" in text
    assert (
        "contrast_sweep.py --categories dog rain rooster --out "
        "benchmarks/results/contrast_sweep_classes_3.json"
    ) in text


def test_another_split_shows_its_command_targets_and_seeds(make_table):
    entry = {"mean": 0.75, "ci95": [0.72, 0.79]}
    split = {
        "settings": {
            "train_folds": [1, 2, 4],
            "test_fold": 3,
            "methods": ["nmfinterp", "all components"],
            "skip": ["silero", "cost"],
            "quick": False,
        },
        "classifier": {"model": "LogMelCNN", "accuracy": 0.875},
        "interpreters": {"nmfinterp": {"fidelity_top1": 0.85}, "constant": {"fidelity_top1": 0.9}},
        "results": {"mix_equal": {"nmfinterp": {"energy_share": entry}}},
        "commit": "abc1234",
        "total_seconds": 360.0,
    }
    seeds = {
        "seeds": [0, 1],
        "train_folds": [1, 2, 4],
        "test_fold": 3,
        "classifier_accuracy": 0.875,
        "commit": "def5678",
        "summary": {},
    }
    lines = make_table.split_lines(split, "esc10_test_fold3", seeds)
    text = "\n".join(lines)
    assert "## Another split: trained on folds [1, 2, 4], tested on fold 3" in text
    assert (
        '`python benchmarks/esc10.py --train-folds 1 2 4 --test-fold 3 --methods "nmfinterp" '
        '"all components" --skip silero cost --name esc10_test_fold3`, commit `abc1234`, 6 min'
    ) in text
    # saved before the params were: only the schedule differed
    assert 'top-1 fidelity 0.850 (the defaults with lr_schedule="constant": 0.900)' in text
    rows = {tuple(r.split(" | ")[:2]): r for r in lines if r.startswith("| ")}
    assert "| 0.75 [0.72, 0.79] | **no** |" in rows[("| mix_equal", "energy_share")]
    assert "| – | not measured |" in rows[("| clean", "Fid-In")]  # a row that did not run
    assert "| 0.850 | **no** |" in rows[("| clean", "top-1 fidelity")]
    assert (
        "`benchmarks/results/fidelity_seeds_test_fold3.json` (`python benchmarks/fidelity_seeds.py "
        "--train-folds 1 2 4 --test-fold 3 --out benchmarks/results/fidelity_seeds_test_fold3.json`"
    ) in text
    # no seeds on that split: no seeds section
    assert "Top-1 fidelity over" not in "\n".join(make_table.split_lines(split, "x"))
    # with params saved, every one that differs from the defaults' is named
    ours = {"lr_schedule": "cosine", "weight_decay": 0.01, "hidden": 32}
    split["interpreters"]["nmfinterp"]["params"] = ours
    split["interpreters"]["constant"]["params"] = {
        **ours,
        "lr_schedule": "constant",
        "weight_decay": 0.0,
    }
    assert make_table.l2i_training(split) == 'lr_schedule="constant", weight_decay=0.0'
    text = "\n".join(make_table.split_lines(split, "x"))
    assert '(the defaults with lr_schedule="constant", weight_decay=0.0: 0.900)' in text
    # since 2026-12-07 the runs fit L2I whole ("l2i": its official training on one dictionary)
    split["interpreters"]["l2i"] = split["interpreters"].pop("constant")
    split["interpreters"]["l2i"]["params"] = {
        **ours,
        "alpha": 5.0,
        "fidelity_weight": {"0": 0.5, "20": 1.0},  # as JSON gives a dict's keys back
        "lr_schedule": "constant",
    }
    assert make_table.l2i_training(split) == (
        'alpha=5.0, fidelity_weight={0: 0.5, 20: 1.0}, lr_schedule="constant"'
    )
    text = "\n".join(make_table.split_lines(split, "x"))
    assert (
        "(L2I's official training (alpha=5.0, fidelity_weight={0: 0.5, 20: 1.0}, "
        'lr_schedule="constant") on one dictionary for all classes: 0.900)'
    ) in text


def test_another_dataset_shows_its_command_targets_and_every_method_that_ran(make_table):
    entry = {"mean": 0.75, "ci95": [0.72, 0.79]}
    run = {
        "settings": {
            "train_folds": [1, 2, 3],
            "test_fold": 4,
            "duration": 1.0,
            "methods": ["nmfinterp", "all components"],
            "skip": ["cost"],
            "quick": False,
        },
        "classifier": {"model": "LogMelCNN", "accuracy": 0.958},
        "interpreters": {"nmfinterp": {"fidelity_top1": 0.942}},
        "results": {
            "mix_equal": {"nmfinterp": {"energy_share": entry}},
            "clean": {"all components": {"FF": {"mean": 0.5, "ci95": [0.4, 0.6]}}},
        },
        "n_train": 360,
        "n_test": 120,
        "commit": "abc1234",
        "total_seconds": 1500.0,
    }
    lines = make_table.dataset_lines(run, "fsdd_digits")
    text = "\n".join(lines)
    assert "## Another dataset: spoken digits (FSDD), clips of 1 s" in text
    # the script's own --skip and --name are not repeated
    assert (
        '`python benchmarks/fsdd_digits.py --methods "nmfinterp" "all components"`, commit '
        "`abc1234`, 25 min"
    ) in text
    assert "trained on folds [1, 2, 3] (360 clips), tested on fold 4 (120 clips)" in text
    assert "zero-padded to 1 s" in text and "accuracy 0.958" in text and "fidelity 0.942" in text
    rows = {tuple(r.split(" | ")[:2]): r for r in lines if r.startswith("| ")}
    assert "| 0.75 [0.72, 0.79] | **no** |" in rows[("| mix_equal", "energy_share")]
    assert "| 0.942 | **no** |" in rows[("| clean", "top-1 fidelity")]
    # one row per method, in the run's order; a figure the run has not: –
    methods = [r for r in lines if r.startswith(("| nmfinterp |", "| all components |"))]
    assert len(methods) == 2 and methods[0].startswith("| nmfinterp | – | – |")
    assert methods[1].startswith("| all components | – | 0.50 [0.40, 0.60] | – |")
    run["settings"]["skip"] = ["silero", "cost"]
    other = "\n".join(make_table.dataset_lines(run, "other"))
    assert "--skip silero cost --name other`" in other
    # a second run on the same dataset says which it is in its title
    assert "## Another dataset: spoken digits (FSDD), clips of 1 s, `other`\n" in other


def test_rows_run_on_their_own_show_their_command_and_every_method(make_table):
    run = {
        "settings": {
            "train_folds": [1, 2, 3],
            "test_fold": 4,
            "methods": ["nmfinterp", "class-block NMF separation"],
            "skip": ["silero", "cost"],
            "quick": False,
        },
        "classifier": {"model": "LogMelCNN", "accuracy": 0.912},
        "interpreters": {"nmfinterp": {"fidelity_top1": 0.95}},
        "results": {
            "mix_equal": {
                "class-block NMF separation": {"energy_share": {"mean": 0.76, "ci95": [0.7, 0.8]}}
            }
        },
        "commit": "abc1234",
        "total_seconds": 480.0,
    }
    base = {
        "settings": {"methods": ["nmfinterp"], "train_folds": [1, 2, 3], "test_fold": 4},
        "classifier": {"accuracy": 0.925},
    }
    lines = make_table.own_rows_lines(run, "esc10_rows_x", base)
    text = "\n".join(lines)
    # titled by the rows the full run lacks; the command that wrote it; both classifiers
    assert "## Rows measured in a run of their own: class-block NMF separation, fold 4\n" in text
    assert (
        '`python benchmarks/esc10.py --methods "nmfinterp" "class-block NMF separation" --skip '
        "silero cost --name esc10_rows_x`, commit `abc1234`, 8 min)"
    ) in text
    assert "accuracy 0.912 (the full run's: 0.925;" in text and "fidelity 0.950" in text
    assert "as a check that they repeat it" in text
    # the same classifier but another interpreter (another machine): not a check of the full run
    run["machine"], base["machine"] = {"platform": "Linux-b"}, {"platform": "Linux-a"}
    base["interpreters"] = {"nmfinterp": {"fidelity_top1": 0.9625}}
    text = "\n".join(make_table.own_rows_lines(run, "esc10_rows_x", base))
    assert "as a check that they repeat it" not in text
    assert (
        "The full run's interpreter scored 0.963: this run's fit of it came out otherwise" in text
    )
    assert "(on `Linux-b`, the full run on `Linux-a`;" in text
    del base["interpreters"]
    rows = [r for r in lines if r.startswith(("| nmfinterp |", "| class-block NMF separation |"))]
    assert len(rows) == 2 and rows[1].endswith("| 0.76 [0.70, 0.80] | – |")
    # on another split: its folds in the command, and no comparison with the full run's classifier
    run["settings"].update(train_folds=[1, 2, 4], test_fold=3)
    text = "\n".join(make_table.own_rows_lines(run, "esc10_rows_x_test_fold3", base))
    assert "--train-folds 1 2 4 --test-fold 3 --methods" in text and "(the full run's:" not in text
    assert "Another split than the full run's" in text


def test_seed_rows_say_what_the_defaults_were(make_table):
    row = {
        "mean": 0.9,
        "std": 0.01,
        "min": 0.88,
        "max": 0.92,
        "defaults_higher": 1,
        "defaults_lower": 2,
        "mean_fit_seconds": 30.0,
    }
    from nmfinterp import InterpreterEstimator

    today = InterpreterEstimator(None).get_params()["weight_decay"]
    seeds = {
        "seeds": [0, 1],
        "test_fold": 4,
        "classifier_accuracy": 0.9,
        "commit": "abc1234",
        "settings": {"defaults": {}, "wd": {"weight_decay": today}, "h": {"hidden": 999}},
        "summary": {"defaults": row, "wd": row, "h": row},
    }
    labels = [r.split(" | ")[0] for r in make_table.seed_lines(seeds) if r.startswith("| ")][1:]
    # written before defaults_params were saved: the commit, and which row is today's default
    assert labels == ["| defaults at `abc1234`", "| wd (today's default)", "| h"]
    seeds["defaults_params"] = {"hidden": 32, "weight_decay": 0.0}
    labels = [r.split(" | ")[0] for r in make_table.seed_lines(seeds) if r.startswith("| ")][1:]
    assert labels == ["| defaults (hidden=32, weight_decay=0.0)", "| wd", "| h"]


def test_the_gpu_section_divides_cpu_by_gpu_and_lists_every_explain_mode(make_table):
    if not (RESULTS / "device.json").exists():
        pytest.skip("no saved device results")
    dev = json.loads((RESULTS / "device.json").read_text())
    dev["on_device"]["explain_seconds"], dev["on_cpu"]["explain_seconds"] = 2.0, 9.0
    text = "\n".join(make_table.device_lines(dev))
    assert f"## On a GPU ({dev['device_name']})" in text
    assert "| explain (refined, the default), s | 2.00 | 9.00 | 4.5x |" in text
    rows = [line for line in text.splitlines() if "] | " in line][1:]  # after the header
    modes = [row.split(" | ")[0][2:] for row in rows]
    assert modes == list(dev["served_on_cpu"]["explanations"])
    median = dev["served_on_cpu"]["explanations"]["refined (default)"]["relative_difference"]
    assert f"the GPU against the CPU by {median['median']:.0%}" in text


def test_the_dictionary_section_has_one_row_per_run_beside_the_full_run(make_table, full_run):
    assert make_table.dictionary_lines(full_run, []) == []  # no other dictionary, no section
    new = full_run  # saved with --dictionary and what each interpreter's dictionary learned
    # a run saved before --dictionary existed: per_class=True or False, one dictionary by default
    full_run = copy.deepcopy(full_run)
    full_run["settings"].pop("dictionary", None)
    full_run["settings"]["per_class"] = False
    for record in full_run["interpreters"].values():
        record.pop("per_class", None)
    big = copy.deepcopy(full_run)
    big["settings"].update(
        n_components=200, per_class=False, methods=["nmfinterp"], skip=["silero", "cost"]
    )
    big["config"]["n_components"] = 200
    big["commit"] = "abc1234"
    big["interpreters"]["nmfinterp"]["fidelity_top1"] = 0.5
    big["results"]["mix_equal"]["nmfinterp"]["energy_share"] = {
        "mean": 0.93,
        "ci95": [0.9, 0.96],
        "n": 64,
    }
    del big["results"]["mix_equal"]["oracle gates within nmfinterp's selection"]
    blocks = copy.deepcopy(big)
    blocks["settings"].update(n_components=None, per_class=True)
    blocks["config"]["n_components"] = 100
    lines = make_table.dictionary_lines(
        full_run, [(big, "esc10_dictionary_k200"), (blocks, "esc10_dictionary_per_class")]
    )
    rows = [r.split(" | ") for r in lines if r.startswith("| K=")]
    # runs saved before --dictionary: per_class=False was one dictionary, the default then
    assert [r[0] for r in rows] == [
        "| K=100, one dictionary (--dictionary plain)",
        "| K=200, one dictionary (--dictionary plain)",
        "| K=100, per-class blocks (--dictionary per_class)",
    ]
    assert rows[0][1] == f"the full run (commit `{full_run['commit']}`)"
    assert rows[1][1] == (
        "`... --n-components 200 --dictionary plain --name esc10_dictionary_k200` "
        "(commit `abc1234`)"
    )
    assert rows[2][1].startswith("`... --dictionary per_class --name esc10_dictionary_per_class`")
    # a run with --dictionary: the default ('auto') has no flag, and the label says what it learned
    new = copy.deepcopy(new)
    assert new["settings"]["dictionary"] == "auto" and "per_class" not in new["settings"]
    new["interpreters"]["nmfinterp"]["per_class"] = True
    assert make_table.dictionary_label(new) == "K=100, per-class blocks"
    lines = make_table.dictionary_lines(new, [(big, "esc10_dictionary_k200")])
    assert "against the full run above (K=100, per-class blocks)" in " ".join(lines)
    new["interpreters"]["nmfinterp"]["per_class"] = False  # 'auto' with too few patterns a class
    assert make_table.dictionary_label(new) == "K=100, one dictionary"
    assert rows[1][3] == "0.500" and rows[1][11] == "0.93 [0.90, 0.96]"
    assert rows[1][-1] == "– |"  # that run had no oracle row
    oracle = full_run["results"]["mix_equal"]["oracle gates within nmfinterp's selection"]
    assert rows[0][-1] == make_table.cell(oracle["energy_share"]) + " |"
    assert (
        lines[-1]
        == '`...` is `python benchmarks/esc10.py --methods "nmfinterp" --skip silero cost`.'
    )
    # a run with other rows than the first: its row gives its whole command, `...` the first's
    fewer = copy.deepcopy(blocks)
    fewer["settings"].update(methods=["nmfinterp", "all components"], skip=["cost"])
    lines = make_table.dictionary_lines(
        full_run, [(big, "esc10_dictionary_k200"), (fewer, "esc10_dictionary_k200_blocks")]
    )
    rows = [r.split(" | ") for r in lines if r.startswith("| K=")]
    assert rows[1][1].startswith("`... --n-components 200 --dictionary plain --name")
    assert rows[2][1].startswith(
        '`python benchmarks/esc10.py --dictionary per_class --methods "nmfinterp" '
        '"all components" --skip cost --name esc10_dictionary_k200_blocks`'
    )
    assert lines[-1].endswith('--methods "nmfinterp" --skip silero cost`.')


def test_fidelity_seeds_describes_the_clips_the_interpreter_misses():
    spec = importlib.util.spec_from_file_location(
        "fidelity_seeds", ROOT / "benchmarks" / "fidelity_seeds.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    np = pytest.importorskip("numpy")
    # two seeds, three clips, the classifier decides class 0 on each
    probs = np.array(
        [
            [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]],  # misses clip 2
            [[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]],  # misses clips 1 and 2
        ]
    )
    margins = np.array([0.9, 0.2, 0.05])
    r = module.missed_clips(probs, np.zeros(3, dtype=int), margins)
    # averaged: clip 0 [0.85, 0.15], clip 1 [0.5, 0.5] (a tie goes to class 0), clip 2 [0.25, 0.75]
    assert r["ensemble_fidelity"] == pytest.approx(2 / 3)
    assert r["n_missed"] == 3
    assert r["missed_margin_median"] == pytest.approx(0.05)  # of 0.05, 0.2, 0.05
    assert r["margin_median"] == pytest.approx(0.2)
    assert (r["clips_missed_by_any"], r["clips_missed_by_all"]) == (2, 1)  # clips 1, 2; clip 2
    assert r["clips_missed_by_all_unsure"] == 1  # clip 2's margin, 0.05, is under 0.5
    assert r["n_confident"] == 1 and r["fidelity_confident"] == 1.0  # clip 0, kept by both
    assert module.missed_clips(probs, np.zeros(3, dtype=int), np.full(3, 0.6))[
        "fidelity_confident"
    ] == pytest.approx(3 / 6)  # every clip confident: 3 of the 6 (seed, clip) pairs kept
    none = module.missed_clips(probs[:, :1], np.zeros(1, dtype=int), margins[:1])
    assert none["ensemble_fidelity"] == 1.0 and none["n_missed"] == 0
    assert np.isnan(none["missed_margin_median"])


def test_a_run_says_which_of_explains_defaults_it_did_not_have(make_table):
    from nmfinterp.benchmark import explain_defaults

    today = explain_defaults()
    assert make_table.defaults_note({"explain_defaults": dict(today)}) == []
    older = {**today, "residual_weight": 0.25}
    (_, line) = make_table.defaults_note({"explain_defaults": older})
    assert f"today's differ: `residual_weight={today['residual_weight']}` (this run: 0.25)" in line
    assert "contrast_penalty" not in line  # only what changed
    # a run from before they were recorded: today's, every one
    (_, line) = make_table.defaults_note({})
    assert "predates the record of `explain`'s defaults" in line
    assert all(f"`{k}=" in line for k in today)
