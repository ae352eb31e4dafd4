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
def runs():
    if not (RESULTS / "esc10.json").exists():
        pytest.skip("no saved benchmark results")
    return [json.loads((RESULTS / f"{n}.json").read_text()) for n in ("esc10", "esc10_cost")]


def test_the_docs_table_is_generated_from_the_saved_results(make_table, tmp_path):
    out = tmp_path / "benchmarks.md"
    make_table.main([str(RESULTS / "esc10.json"), str(RESULTS / "esc10_cost.json"), str(out)])
    assert out.read_text() == (ROOT / "docs" / "benchmarks.md").read_text(), (
        "docs/benchmarks.md is stale: run python benchmarks/make_table.py"
    )


def _cost_rows(text: str) -> dict:
    return {
        row.split(" | ")[1]: row.split(" | ")[3:5]
        for row in text.splitlines()
        if row.startswith("| cost |")
    }


def test_a_cost_run_keeps_the_full_runs_figures_beside_its_own(make_table, runs):
    full, cost = copy.deepcopy(runs)
    if "cost" not in full or not cost.get("settings", {}).get("skip"):
        pytest.skip("the saved runs are not a full run and a cost-only run")
    full["cost"]["explain_vs_forward_stft_istft"]["ratio_amortised"] = 1.2
    cost["cost"]["explain_vs_forward_stft_istft"]["ratio_amortised"] = 1.7
    cost["cost"]["fit_cached_vs_recomputed"]["speedup"] = 3.5
    full["cost"]["fit_cached_vs_recomputed"]["speedup"] = 3.25
    rows = _cost_rows(make_table.render(make_table.merge([full, cost]), "x"))
    measured, verdict = rows["same, `amortised=True`"]
    assert measured.startswith("1.70") and "full run: 1.20" in measured
    assert verdict == "**no** in the cost run, yes in the full run"
    assert rows["fit recomputed / cached"] == ["3.50; full run: 3.25", "yes"]
    # the full run alone: its own figures, no second run named
    rows = _cost_rows(make_table.render(make_table.merge([full]), "x"))
    assert rows["same, `amortised=True`"][0].startswith("1.20")
    assert "full run" not in rows["same, `amortised=True`"][0]
