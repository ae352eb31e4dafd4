"""Baseline explainers: same mask -> ISTFT path, and each finds what a known classifier listens to."""

import numpy as np
import pytest
import torch
from torch import nn

from nmfinterp import SpectrogramTransformer
from nmfinterp.baselines import (
    BlackBoxNMFExplainer,
    ClassNMFSeparation,
    LMACExplainer,
    SpectrogramAttribution,
    all_masks,
    apply_masks,
    attribution_to_mask,
    random_component_masks,
)

SR, N_FFT, LEN = 8000, 256, 4096
LOW, HIGH = (5, 20), (70, 110)  # frequency-bin bands (of 129)


class BandClassifier(nn.Module):
    """Class 1 = "there is energy in the low band", class 0 = in the high band. Hooks: ``feat``."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Identity()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        S = torch.stft(x, N_FFT, N_FFT // 4, window=torch.hann_window(N_FFT), return_complex=True)
        mag = self.feat(S.abs())  # (B, F, T)
        low = mag[:, LOW[0] : LOW[1]].mean(dim=(1, 2))
        high = mag[:, HIGH[0] : HIGH[1]].mean(dim=(1, 2))
        return self.scale * torch.stack([torch.log1p(high), torch.log1p(low)], dim=1) * 5


def _tone(freq_bin: float, n: int = LEN, seed: int = 0) -> np.ndarray:
    t = np.arange(n) / SR
    f = freq_bin * SR / N_FFT
    rng = np.random.default_rng(seed)
    return (0.5 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))).astype(np.float32)


@pytest.fixture(scope="module")
def setup():
    spec = SpectrogramTransformer(sr=SR, n_fft=N_FFT).fit(np.zeros((1, LEN), np.float32))
    # each clip: a low tone (class 1 evidence) and a high tone, at levels that vary independently
    lows, highs = [1, 0.3, 0.8, 0.5, 1, 0.4], [0.3, 1, 0, 1, 0.6, 0.9]
    X = np.stack(
        [
            a * _tone(12, seed=i) + b * _tone(90, seed=i + 10)
            for i, (a, b) in enumerate(zip(lows, highs, strict=True))
        ]
    )
    return spec, X, BandClassifier().eval()


def _band_share(masks, band):
    m = np.asarray(masks)
    inside = m[:, band[0] : band[1]].mean()
    return inside / (m.mean() + 1e-12)


def test_apply_masks_ones_and_zeros(setup):
    spec, X, _ = setup
    ex, res = apply_masks(spec, X, all_masks(spec, X))
    assert np.allclose(ex, X, atol=1e-4) and np.allclose(res, 0, atol=1e-4)
    ex, res = apply_masks(spec, X, np.zeros_like(all_masks(spec, X)))
    assert np.allclose(ex, 0) and np.allclose(res, X)
    assert ex.dtype == np.float32 and ex.shape == X.shape


def test_apply_masks_rejects_wrong_shape(setup):
    spec, X, _ = setup
    with pytest.raises(ValueError, match="masks have shape"):
        apply_masks(spec, X, np.ones((len(X), 3, 3)))


def test_attribution_to_mask_range():
    A = np.random.default_rng(0).standard_normal((3, 10, 7))
    M = attribution_to_mask(A)
    assert M.min() >= 0 and M.max() <= 1
    assert np.all(M[A <= 0] == 0)
    assert np.all(attribution_to_mask(np.zeros((1, 2, 2))) == 0)  # no evidence: empty mask


def test_random_component_masks_counts_and_seed():
    rng = np.random.default_rng(0)
    W = np.abs(rng.standard_normal((10, 6)))
    H = [np.abs(rng.standard_normal((6, 4))) for _ in range(3)]
    a = random_component_masks(W, H, [0, 3, 6], random_state=1)
    b = random_component_masks(W, H, [0, 3, 6], random_state=1)
    assert np.array_equal(a, b)
    assert np.all(a[0] == 0) and np.allclose(a[2], 1, atol=1e-5)
    assert 0 < a[1].mean() < 1


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "occlusion"])
def test_attributions_find_the_band_the_classifier_uses(setup, method):
    spec, X, clf = setup
    explainer = SpectrogramAttribution(
        clf, spec, method, n_steps=8, window=(8, 4), stride=(8, 4), batch_size=3
    )
    masks = explainer.masks(X, classes=1)  # class 1 listens to the low band only
    assert masks.shape == spec.stft(X).shape
    assert masks.min() >= 0 and masks.max() <= 1
    assert _band_share(masks, LOW) > 3 * _band_share(masks, HIGH)


def test_attribution_rejects_unknown_method(setup):
    spec, _, clf = setup
    with pytest.raises(ValueError, match="expected one of"):
        SpectrogramAttribution(clf, spec, "gradcam")


def test_blackbox_nmf_keeps_the_component_the_classifier_uses(setup):
    spec, X, clf = setup
    from nmfinterp import NMFDictionary

    dico = NMFDictionary(n_components=2, random_state=0).fit(spec.transform(X))
    masks, r = BlackBoxNMFExplainer(clf, spec, dico, n_samples=32).explain(X, classes=1)
    W = dico.dictionary_
    low_k = int(np.argmax(W[LOW[0] : LOW[1]].sum(0)))
    assert np.all(r[:, low_k] > r[:, 1 - low_k])
    assert _band_share(masks, LOW) > _band_share(masks, HIGH)


def test_lmac_decoder_trains_and_masks(setup):
    spec, X, clf = setup
    lmac = LMACExplainer(clf, ["feat"], spec, epochs=3, batch_size=3, hidden=16).fit(X)
    assert len(lmac.history_) == 3 and all(np.isfinite(h["loss"]) for h in lmac.history_)
    masks = lmac.masks(X)
    assert masks.shape == spec.stft(X).shape and masks.min() >= 0 and masks.max() <= 1
    # trained longer, its loss falls and its masks of "low band" decisions keep the low band
    lmac = LMACExplainer(clf, ["feat"], spec, epochs=40, batch_size=3, hidden=16, random_state=0)
    losses = [h["loss"] for h in lmac.fit(X).history_]
    assert losses[-1] < losses[0] - 0.3
    low = clf(torch.as_tensor(X)).argmax(1).numpy() == 1
    assert low.sum() >= 3
    masks = lmac.masks(X)[low]
    assert _band_share(masks, LOW) > 1.5 * _band_share(masks, HIGH)
    with pytest.raises(RuntimeError, match="not fitted"):
        LMACExplainer(clf, ["feat"], spec).masks(X)


@pytest.fixture(scope="module")
def separation(setup):
    spec, _, clf = setup
    # pure clips of each class: low tones (class 1) and high tones (class 0), the classifier's labels
    X = np.stack([_tone(12, seed=i) for i in range(3)] + [_tone(90, seed=i) for i in range(3, 6)])
    y = clf(torch.as_tensor(X)).detach().numpy()
    assert np.array_equal(y.argmax(1), [1, 1, 1, 0, 0, 0])
    return ClassNMFSeparation(spec, n_components=2, max_iter=100).fit(X, y), y


def test_class_nmf_separation_keeps_the_explained_class_source(setup, separation):
    spec, _, _ = setup
    sep, _ = separation
    low, high = _tone(12, seed=7), _tone(90, seed=8)
    masks = sep.masks(np.stack([low + high, low + high]), classes=[1, 0])
    assert masks.shape == (2, *spec.stft(low[None]).shape[1:])
    assert masks.min() >= 0 and masks.max() <= 1
    # the mask of each class, applied to each source alone: its own source's energy dominates
    for mask, mine, theirs in ((masks[0], low, high), (masks[1], high, low)):
        e_mine = np.sum(apply_masks(spec, mine[None], mask[None])[0] ** 2)
        e_theirs = np.sum(apply_masks(spec, theirs[None], mask[None])[0] ** 2)
        assert e_mine / (e_mine + e_theirs) > 0.95


def test_class_nmf_separation_clones_as_a_scikit_learn_estimator(setup, separation):
    """clone gives an unfitted twin, whose spectrogram is an unfitted clone too: fit fits one on
    the clips (the same grid), and the separation is the same."""
    from sklearn.base import clone

    spec, _, clf = setup
    sep, y = separation
    X = np.stack([_tone(12, seed=i) for i in range(3)] + [_tone(90, seed=i) for i in range(3, 6)])
    twin = clone(sep)
    assert not hasattr(twin, "components_") and twin.get_params()["n_components"] == 2
    twin.fit(X, y)
    assert twin.spectrogram_ is not spec and sep.spectrogram_ is spec
    x = (_tone(12, seed=7) + _tone(90, seed=8))[None]
    np.testing.assert_allclose(twin.masks(x, 1), sep.masks(x, 1), atol=1e-6)


def test_class_nmf_separation_checks_its_inputs(setup, separation):
    spec, _, _ = setup
    sep, y = separation
    x = _tone(12)[None]
    with pytest.raises(RuntimeError, match="not fitted yet"):
        ClassNMFSeparation(spec).masks(x, 0)
    with pytest.raises(ValueError, match=r"y has shape \(6,\); expected the classifier's outputs"):
        ClassNMFSeparation(spec).fit(np.repeat(x, 6, 0), y.argmax(1))
    with pytest.raises(ValueError, match=r"classes \[2\] out of range; expected 0..1"):
        sep.masks(x, 2)
    # a class the classifier never predicts on the training clips has no block: an empty mask
    y3 = np.concatenate([y, np.full((len(y), 1), -1e3)], axis=1)
    X = np.stack([_tone(12, seed=i) for i in range(3)] + [_tone(90, seed=i) for i in range(3, 6)])
    three = ClassNMFSeparation(spec, n_components=2, max_iter=50).fit(X, y3)
    assert three.classes_.tolist() == [True, True, False]
    assert np.all(three.masks(x, 2) == 0) and three.masks(x, 1).max() > 0.5
