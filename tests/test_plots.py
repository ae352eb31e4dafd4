"""Figures: what they contain (axes, images and their shapes, bars), not only that they draw."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from nmfinterp import explain
from nmfinterp.plots import (
    _toy_pipeline,
    component_patterns,
    input_waveform,
    plot_dictionary,
    plot_explanation,
    plot_relevance,
)


@pytest.fixture(scope="module")
def fitted():
    pipe, X = _toy_pipeline()
    return pipe, X, explain(pipe, X[:3])


def test_explanation_figure_panels(fitted):
    pipe, X, ex = fitted
    fig = plot_explanation(pipe, ex, 1, class_names=["a", "b", "c"])
    assert isinstance(fig, Figure)
    spec_in, mask, spec_ex, bars = fig.axes[:4]
    F, T = ex.masks[1].shape
    for ax in (spec_in, mask, spec_ex):
        assert ax.images[0].get_array().shape == (F, T)
    np.testing.assert_allclose(mask.images[0].get_array(), ex.masks[1])
    # the three spectrograms share their time and frequency axes
    assert spec_in.get_shared_x_axes().joined(spec_in, spec_ex)
    assert spec_in.get_shared_y_axes().joined(spec_in, mask)
    assert spec_in.images[0].get_extent()[3] == pytest.approx(ex.sr / 2)
    # one bar per component (6 < max_components), tallest first, selected ones coloured
    heights = [p.get_height() for p in bars.patches]
    assert len(heights) == 6 and heights == sorted(heights, reverse=True)
    assert f"explained for {['a', 'b', 'c'][ex.classes[1]]}" in fig._suptitle.get_text()
    assert [a.get_title(loc="left") for a in fig.axes[:3]] == [
        "input  log(1 + |X|)",
        "mask M",
        "explanation  log(1 + |X_in|)",
    ]
    assert plot_explanation(pipe, ex, 1, title="dog 7")._suptitle.get_text() == "dog 7"
    # the input panel is the clip itself: explanation + residual
    np.testing.assert_allclose(input_waveform(ex, 1), X[1], atol=1e-5)


def test_explanation_figure_reuses_a_given_figure_and_checks_the_model(fitted):
    pipe, _, ex = fitted
    fig = Figure()
    fig.add_subplot()
    assert plot_explanation(pipe, ex, 0, fig=fig) is fig
    assert len(fig.axes) == 6  # cleared first: 4 panels + 2 colour bars
    from nmfinterp import SpectrogramTransformer

    other = SpectrogramTransformer(n_fft=128).fit(np.zeros((1, 2048), np.float32))
    with pytest.raises(ValueError, match="pass the model that made these explanations"):
        plot_explanation(other, ex, 0)
    with pytest.raises(IndexError, match="hold 3 clips"):
        plot_explanation(pipe, ex, 3)


def test_relevance_bars_limit_and_colours(fitted):
    _, _, ex = fitted
    ax = plot_relevance(ex, 0, max_components=3)
    assert len(ax.patches) == 3
    grey = matplotlib.colors.to_rgba("0.7")
    chosen = set(ex.selected[0].tolist())
    order = np.argsort(-ex.relevance[0], kind="stable")[:3]
    for patch, k in zip(ax.patches, order, strict=True):
        assert (patch.get_facecolor() != grey) == (k in chosen)


def test_dictionary_figures(fitted):
    pipe, _, _ = fitted
    W = component_patterns(pipe)
    fig = plot_dictionary(pipe)
    assert fig.axes[0].images[0].get_array().shape == W.shape
    assert fig.axes[0].images[0].get_extent()[3] == pytest.approx(
        pipe[0].sr / 2
    )  # Hz from the model
    fig = plot_dictionary(pipe, [5, 0], ncols=1)
    lines = [a.lines[0] for a in fig.axes]
    assert len(fig.axes) == 2 and [a.get_title() for a in fig.axes] == [
        "component 5",
        "component 0",
    ]
    np.testing.assert_allclose(lines[0].get_ydata(), W[:, 5])
    # drawn on a given axes
    other = Figure().add_subplot()
    assert plot_dictionary(W, ax=other) is other.figure and other.images
    with pytest.raises(ValueError, match="out of range"):
        plot_dictionary(W, [6])
    with pytest.raises(ValueError, match="non-negative"):
        plot_dictionary(-W)
