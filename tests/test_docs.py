"""The documentation: it builds offline with warnings as errors, its runnable how-tos run, the
command-line reference names every option the parser has, and the defaults method.md states are the
code's."""

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nmfinterp import InterpreterEstimator, NMFDictionary, SpectrogramTransformer, explain
from nmfinterp.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# pages whose ```python blocks are complete programs (run in order, one namespace per page, from the
# repository's root)
RUNNABLE = ["howto-multilabel.md", "howto-grid-search.md", "howto-silero.md"]


def test_sphinx_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(tmp_path / "html"), "-d", str(tmp_path / "doctrees")],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "html" / "api.html").read_text()
    # the API reference is generated from the docstrings, examples included
    for name in ("plots.plot_explanation", "plots.plot_dictionary", "report.write_report",
                 "InterpreterEstimator", "explain", "cli.main", "metrics.fidelity_in"):  # fmt: skip
        assert f'id="nmfinterp.{name}"' in api, name
    assert "Examples" in api
    index = (tmp_path / "html" / "index.html").read_text()
    for page in ("getting-started", "howto-multilabel", "howto-grid-search", "howto-silero",
                 "howto-many-machines", "api", "cli", "method", "evaluation", "benchmarks"):  # fmt: skip
        assert f'href="{page}.html"' in index, page


@pytest.mark.parametrize("page", RUNNABLE)
def test_howto_code_runs(page, monkeypatch):
    if page == "howto-silero.md":
        pytest.importorskip("silero_vad")
        if not (ROOT.parent / "shared" / "data" / "fsdd").is_dir():
            pytest.skip("FSDD recordings not in ../shared/data/fsdd")
    monkeypatch.chdir(ROOT)
    text = (DOCS / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"{page} has no python block"
    namespace: dict = {"__name__": f"docs_{page}"}
    for block in blocks:
        exec(compile(block, f"docs/{page}", "exec"), namespace)


def test_cli_reference_lists_every_option():
    text = (DOCS / "cli.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert f"## `nmfinterp {name}" in text, name
        for action in p._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text or f"{flag}`" in text or f", `{flag}" in text, (
                        name,
                        flag,
                    )


def _documented(passage: str) -> dict:
    """The `name=value` settings a passage of prose states, leaving out parenthesised asides
    (such as "use `solver="mu"` for ...")."""
    passage = re.sub(r"\([^()]*\)", "", passage)
    return {k: ast.literal_eval(v) for k, v in re.findall(r"`(\w+)=([^`=]+)`", passage)}


@pytest.mark.parametrize(
    "start, end, defaults",
    [
        ("The defaults are `n_fft", "`fit` checks", lambda: SpectrogramTransformer().get_params()),
        ("- Defaults: `n_components", "\n- ", lambda: NMFDictionary().get_params()),
        ("The defaults `alpha", "The learning rate", lambda: InterpreterEstimator().get_params()),
        (
            "**Defaults: `top_k",
            "which keeps",
            lambda: {k: p.default for k, p in inspect.signature(explain).parameters.items()},
        ),
    ],
)
def test_method_page_states_the_code_defaults(start, end, defaults):
    text = (DOCS / "method.md").read_text()
    i = text.index(start)
    stated = _documented(text[i : text.index(end, i)])
    assert stated, start
    actual = defaults()
    assert {k: actual[k] for k in stated} == stated
