"""The HTML report's content: embedded audio that decodes to the right signals, figures, tables."""

import base64
import html
import io
import re

import numpy as np
import pytest
import soundfile as sf

from nmfinterp import explain
from nmfinterp.plots import _toy_pipeline, input_waveform
from nmfinterp.report import component_audio, render_report, write_report


@pytest.fixture(scope="module")
def fitted():
    pipe, X = _toy_pipeline()
    # the interpreter's own selection, the three most relevant components whatever their sign:
    # on this untrained toy classifier refinement, or a positive threshold, may keep none, and
    # these tests need component players to check
    return pipe, X, explain(pipe, X[:2], refine_steps=0, top_k=3, threshold=-np.inf)


def _decode(uri: str) -> np.ndarray:
    data = base64.b64decode(uri.split(",", 1)[1])
    x, _ = sf.read(io.BytesIO(data), dtype="float32")
    return x


def test_players_hold_input_explanation_residual_and_components(fitted, tmp_path):
    pipe, X, ex = fitted
    path = write_report(
        pipe,
        explanations=ex,
        path=tmp_path / "sub" / "r.html",
        names=["first", "second"],
        class_names=["x", "y", "z"],
        metrics={"clean": {"FF": 0.25}, "n": 2},
        max_components=2,
    )
    text = path.read_text()
    sections = text.split('<section class="clip"')[1:]
    assert len(sections) == 2
    assert "top_k=3, threshold=-inf, refine_steps=0, separation=False, mask_ratio=linear" in text
    for i, sec in enumerate(sections):
        uris = re.findall(r'<audio controls preload="auto" src="([^"]+)"', sec)
        assert len(ex.selected[i]) > 0
        n_comp = min(2, len(ex.selected[i]))
        assert len(uris) == 3 + n_comp
        q = 1.0 / 2**15 + 1e-6  # 16-bit PCM
        # these noise clips peak above 1: every player of a clip is scaled by the same gain
        g = 1.0 / max(
            np.abs(X[i]).max(), np.abs(ex.waveforms[i]).max(), np.abs(ex.residuals[i]).max()
        )
        assert g < 1.0 and f"Players scaled by {g:.3g}" in sec
        np.testing.assert_allclose(_decode(uris[0]), g * X[i], atol=q)
        np.testing.assert_allclose(_decode(uris[1]), g * ex.waveforms[i], atol=q)
        np.testing.assert_allclose(_decode(uris[2]), g * ex.residuals[i], atol=q)
        k = int(ex.selected[i][0])
        np.testing.assert_allclose(
            _decode(uris[3]), np.clip(g * component_audio(pipe, ex, i, k), -1, 1), atol=q
        )
        assert sec.count('src="data:image/png;base64,') == 1 + n_comp
        assert f"component {k}, relevance" in sec
    # names, class names, metrics (flattened), probabilities of both models
    assert "first: explained for" in text
    assert "clean.FF" in html.unescape(text) and "0.25" in text
    p = np.exp(ex.classifier_scores[0]) / np.exp(ex.classifier_scores[0]).sum()
    assert f"{p[0]:.3f}" in sections[0]


def test_component_audio_adds_up_to_the_input_when_all_are_kept(fitted):
    """Soft masks of every component sum to 1 where W H > 0 (and to 0 elsewhere): their audio
    sums to the input seen through that support."""
    pipe, _, ex = fitted
    total = sum(component_audio(pipe, ex, 0, k) for k in range(ex.relevance.shape[1]))
    x = input_waveform(ex, 0)
    support = (pipe[1].dictionary_ @ ex.activations[0] > 0).astype(np.float32)
    assert support.mean() > 0.9  # most of the clip: the sum is checked on most of its energy
    expected = pipe[0].apply_mask(x[None], support[None])[0]
    assert np.linalg.norm(total - expected) < 0.02 * np.linalg.norm(x)
    assert np.linalg.norm(expected - x) < 0.5 * np.linalg.norm(x)


def test_report_arguments_are_checked(fitted):
    pipe, _, ex = fitted
    with pytest.raises(ValueError, match="one name per class"):
        render_report(pipe, ex, class_names=["a"])
    with pytest.raises(ValueError, match="one name per clip"):
        render_report(pipe, ex, names=["a"])
    with pytest.raises(ValueError, match="component=9 out of range"):
        component_audio(pipe, ex, 0, 9)
    with pytest.raises(ValueError, match="needs clips X"):
        write_report(pipe)


def test_demo_writes_the_html_report(tmp_path):
    from nmfinterp.demo import run_demo

    out = tmp_path / "demo"
    figures = run_demo(
        out=str(out), n_components=8, epochs=1, classifier_epochs=1, n_examples=2,
        n_mixtures=2, verbose=0, n_per_class=10,
    )  # fmt: skip
    text = (out / "report.html").read_text()
    assert text.count('<section class="clip"') == 2
    assert "fidelity_top1" in text and f"{figures['fidelity_top1']:.4g}" in text
    for name in figures["classes"]:
        assert name in text
    assert (out / "report.json").is_file() and len(list((out / "clean").glob("*.wav"))) == 6


def test_progress_bars_are_silent_by_default(fitted, capsys, tmp_path):
    pipe, X, ex = fitted
    explain(pipe, X[:2])
    write_report(pipe, explanations=ex, path=tmp_path / "a.html")
    assert capsys.readouterr().err == ""
    explain(pipe, X[:2], verbose=1)
    write_report(pipe, explanations=ex, path=tmp_path / "b.html", verbose=1)
    err = capsys.readouterr().err
    assert "explaining" in err and "2/2" in err and "report" in err
