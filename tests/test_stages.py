"""Unit tests for each stage alone: spectrogram, dictionary, hooks, selection and mask."""

import pickle

import librosa
import numpy as np
import pytest
import torch
from sklearn.base import clone

from nmfinterp import AudioFeatures, NMFDictionary, SpectrogramTransformer
from nmfinterp.dictionary import from_frames, to_frames
from nmfinterp.explain import masked_spectrum, relevance, select_components, soft_mask
from nmfinterp.hooks import frozen, resolve_layers, run_with_hooks

RNG = np.random.default_rng(0)


def tones(n=6, length=4000, sr=8000):
    t = np.arange(length) / sr
    freqs = np.linspace(200, 2000, n)
    return np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)


# ---------------------------------------------------------------- spectrogram
def test_spectrogram_matches_librosa_and_shapes():
    X = tones()
    spec = SpectrogramTransformer(sr=8000, n_fft=256, hop_length=64).fit(X)
    Xt = spec.transform(X)
    V = Xt.block("spectrogram")
    assert V.shape == (6, 129, 1 + 4000 // 64) == (6, spec.n_freqs_, spec.n_frames_)
    ref = np.log1p(np.abs(librosa.stft(X[2], n_fft=256, hop_length=64)))
    np.testing.assert_allclose(V[2], ref, atol=1e-4)
    np.testing.assert_array_equal(Xt.block("waveform"), X)


def test_int16_input_is_scaled_like_float():
    X = tones()
    pcm = np.round(X * 32767).astype(np.int16)
    spec = SpectrogramTransformer(n_fft=256).fit(X)
    np.testing.assert_allclose(
        spec.transform(pcm), spec.transform(pcm.astype(np.float32) / 32768), atol=1e-6
    )


def test_resynthesis_with_own_phase_is_identity():
    X = RNG.standard_normal((3, 3000)).astype(np.float32)
    spec = SpectrogramTransformer(n_fft=512, hop_length=128).fit(X)
    S = spec.stft(X)
    np.testing.assert_allclose(spec.resynthesize(S.abs(), S, 3000), X, atol=1e-4)
    np.testing.assert_allclose(spec.resynthesize(S.abs(), S.angle(), 3000), X, atol=1e-4)


def test_length_policy_pads_and_trims_to_fitted_length():
    X = tones(length=4000)
    spec = SpectrogramTransformer(n_fft=256).fit(X)
    short, long = X[:, :3000], np.hstack([X, X])
    np.testing.assert_array_equal(spec.transform(short).block("waveform")[:, 3000:], 0)
    np.testing.assert_array_equal(spec.transform(long).block("waveform"), X)
    ragged = spec.transform([X[0], X[1, :100]])
    assert ragged.shape == spec.transform(X[:2]).shape


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.full((2, 1000), np.nan, np.float32), "NaN or infinite"),
        (np.zeros(1000, np.float32), "1-D"),
        (np.zeros((2, 2, 1000), np.float32), "multi-channel"),
        (np.zeros((0, 1000), np.float32), "0 sample"),
        (np.zeros((2, 10), np.float32), "too short"),
        (np.zeros((2, 1000), np.complex64), "Complex"),
    ],
)
def test_spectrogram_rejects_bad_audio_clearly(bad, match):
    with pytest.raises(ValueError, match=match):
        SpectrogramTransformer(n_fft=256).fit(bad)


def test_audio_features_pickle_keeps_blocks():
    X = tones()
    Xt = SpectrogramTransformer(n_fft=256).fit_transform(X)
    back = pickle.loads(pickle.dumps(Xt))
    assert isinstance(back, AudioFeatures) and back.blocks == Xt.blocks
    np.testing.assert_array_equal(back.block("spectrogram"), Xt.block("spectrogram"))
    assert isinstance(Xt[:2], AudioFeatures) and Xt[:2].block("waveform").shape == (2, 4000)


# ---------------------------------------------------------------- dictionary
def test_orientation_swap_round_trip():
    V = RNG.random((3, 5, 7))
    frames = to_frames(V)
    assert frames.shape == (21, 5)
    np.testing.assert_array_equal(from_frames(frames, 3), V)


def test_dictionary_on_clips_normalised_and_attached():
    X = tones()
    Xt = SpectrogramTransformer(n_fft=256).fit_transform(X)
    d = NMFDictionary(n_components=6, random_state=0).fit(Xt)
    assert d.dictionary_.shape == (129, 6)
    np.testing.assert_allclose(np.linalg.norm(d.dictionary_, axis=0), 1, rtol=1e-6)
    out = d.transform(Xt)
    assert out.dictionary is d and out.block("activations").shape == (
        6,
        6,
        Xt.block("spectrogram").shape[2],
    )
    V = Xt.block("spectrogram")
    rel = np.linalg.norm(V - d.inverse_transform(out)) / np.linalg.norm(V)
    assert rel < 0.3, rel


def test_per_class_blocks_learned_on_each_predicted_class():
    X = tones(n=6)
    Xt = SpectrogramTransformer(n_fft=256).fit_transform(X)
    y = np.array([0, 0, 0, 1, 1, 1])
    d = NMFDictionary(n_components=5, per_class=True, random_state=0).fit(Xt, y)
    assert d.class_of_component_.tolist() == [0, 0, 1, 1, -1]
    # class 0 holds the low tones, class 1 the high ones: their patterns peak where their tones are
    peaks = d.dictionary_.argmax(axis=0)
    assert peaks[:2].max() < peaks[2:4].min()
    with pytest.raises(ValueError, match="needs y"):
        NMFDictionary(n_components=4, per_class=True).fit(Xt)
    assert d.per_class_ is True


def test_dictionary_tells_its_stops_at_max_iter_once():
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    Xt = SpectrogramTransformer(n_fft=256).fit_transform(tones(n=6))
    y = np.eye(3)[np.array([0, 0, 1, 1, 2, 2])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        NMFDictionary(n_components=6, per_class=True, max_iter=2, random_state=0).fit(Xt, y)
    stops = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    # three blocks and the error sample's activations, each stopped at 2 iterations: one warning
    assert len(stops) == 1, [str(w.message) for w in caught]
    assert "4 of its 4 NMF solves stopped at max_iter=2" in str(stops[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: nothing to tell
        NMFDictionary(n_components=2, max_iter=5000, tol=1e-2, random_state=0).fit(Xt)


def test_per_class_auto_learns_blocks_only_where_enough_classes_get_enough_patterns():
    from nmfinterp.dictionary import MIN_PATTERNS_PER_CLASS as MIN
    from nmfinterp.dictionary import MIN_PREDICTED_CLASSES as C

    assert C == 3
    Xt = SpectrogramTransformer(n_fft=256).fit_transform(tones(n=6))
    labels = np.array([0, 0, 1, 1, 2, 2])
    scores = np.eye(4)[labels] * 4.0  # logits of a 4-class classifier that predicts three classes
    auto = NMFDictionary(n_components=C * MIN, random_state=0, max_iter=50)
    assert auto.per_class == "auto"  # the default
    # three predicted classes, MIN patterns each: a block per class, as per_class=True learns it
    d = clone(auto).fit(Xt, scores)
    forced = NMFDictionary(n_components=C * MIN, per_class=True, random_state=0, max_iter=50)
    assert d.per_class_ is True
    assert d.class_of_component_.tolist() == [0] * MIN + [1] * MIN + [2] * MIN
    np.testing.assert_allclose(d.dictionary_, forced.fit(Xt, scores).dictionary_)
    # no outputs, one output column, two predicted classes (a detector's yes / no) or one: one
    # dictionary for all clips, the same as per_class=False learns
    plain = NMFDictionary(n_components=C * MIN, per_class=False, random_state=0, max_iter=50)
    W = plain.fit(Xt).dictionary_
    assert plain.per_class_ is False
    two = np.eye(4)[np.array([0, 0, 0, 1, 1, 1])]
    for y in (None, scores[:, :1], two, np.eye(4)[np.zeros(6, int)]):
        d = clone(auto).fit(Xt, y)
        assert d.per_class_ is False and (d.class_of_component_ == -1).all(), y
        np.testing.assert_allclose(d.dictionary_, W)
    # one pattern short of MIN per class
    d = clone(auto).set_params(n_components=C * MIN - 1).fit(Xt, scores)
    assert d.per_class_ is False and (d.class_of_component_ == -1).all()
    W = plain.set_params(n_components=C * MIN - 1).fit(Xt).dictionary_
    np.testing.assert_allclose(d.dictionary_, W)
    # a y that is not one row of outputs per clip: one dictionary, as NMF ignores y; per_class=True
    # names the problem
    d = clone(auto).fit(Xt, scores[:4])
    assert d.per_class_ is False
    with pytest.raises(ValueError, match="rows but there are 6 clips"):
        clone(forced).fit(Xt, scores[:4])
    with pytest.raises(ValueError, match="per_class"):
        NMFDictionary(per_class="yes").fit(Xt, scores)


def test_divergences_need_mu_solver():
    V = RNG.random((40, 10))
    with pytest.raises(ValueError, match="solver='mu'"):
        NMFDictionary(n_components=2, beta_loss="itakura-saito").fit(V)
    d = NMFDictionary(n_components=2, beta_loss="itakura-saito", solver="mu", random_state=0).fit(
        np.zeros((5, 10))
    )
    assert np.isfinite(d.dictionary_).all()


# ---------------------------------------------------------------- hooks
def small_net():
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, -1)),
        torch.nn.Conv1d(1, 4, 16, stride=8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )


def test_hooks_read_layers_and_leave_the_classifier_untouched():
    net = small_net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with frozen(net), torch.no_grad():
        feats, scores = run_with_hooks(net, ["1", "4"], torch.randn(2, 800))
    assert [tuple(f.shape) for f in feats] == [(2, 4, 99), (2, 4, 1)]
    assert scores.shape == (2, 3)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(m._forward_hooks for m in net.modules())


def test_unknown_layer_name_is_reported_with_known_names():
    with pytest.raises(ValueError, match=r"no layer named \['conv9'\].*'1'"):
        resolve_layers(small_net(), ["conv9"])
    assert resolve_layers(small_net(), None) == ["1"]


# ---------------------------------------------------------------- selection and mask
def test_relevance_selection_and_mask():
    z = torch.tensor([[1.0, 2.0, 0.5, 0.1]])
    theta = torch.tensor([[1.0, 1.0, -1.0, 1.0]])
    r = relevance(z, theta, torch.tensor([0]))
    torch.testing.assert_close(r, torch.tensor([[0.5, 1.0, -0.25, 0.05]]))
    assert select_components(r).tolist() == [[True, True, False, True]]
    assert select_components(r, top_k=5, threshold=0.2).tolist() == [[True, True, False, False]]
    assert select_components(r, top_k=1).tolist() == [[False, True, False, False]]
    W = torch.rand(6, 4)
    H = torch.rand(1, 4, 9)
    M = soft_mask(W, H, select_components(r).float())
    assert M.shape == (1, 6, 9) and M.min() >= 0 and M.max() <= 1
    torch.testing.assert_close(
        soft_mask(W, H, torch.ones(1, 4)), torch.ones(1, 6, 9), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("ratio", ["linear", "log"])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_soft_mask_without_gradients_is_the_one_with_them_and_spares_its_inputs(ratio, power):
    # without autograd the ratio is computed in place: the same values, bit for bit, tiny bins
    # included, and the caller's W, H and gates left as they were
    gen = torch.Generator().manual_seed(0)
    W, H = torch.rand(7, 5, generator=gen) * 2, torch.rand(2, 5, 11, generator=gen)
    H[:, :, :3] *= 1e-6  # bins the model calls nearly silent
    g = (torch.rand(2, 5, 11, generator=gen) > 0.5).float()
    before = [t.clone() for t in (W, H, g)]
    with torch.no_grad():
        fast = soft_mask(W, H, g, power, ratio)
    gates = g.clone().requires_grad_(True)
    slow = soft_mask(W, H, gates, power, ratio)
    assert slow.requires_grad and not fast.requires_grad
    assert torch.equal(fast, slow.detach())
    for t, b in zip((W, H, g), before, strict=True):
        assert torch.equal(t, b)


def test_the_linear_ratio_mask_divides_the_magnitudes_the_components_model():
    # mask_ratio="linear": expm1(W(g ⊙ H)) / expm1(W H), against float64 numpy
    rng = np.random.default_rng(0)
    W, H = rng.random((6, 4)) * 2, rng.random((1, 4, 9))
    g = (rng.random((1, 4, 9)) > 0.5).astype(np.float64)
    expected = np.expm1(W @ (H * g)) / np.expm1(W @ H)
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    linear = soft_mask(t(W), t(H), t(g), ratio="linear")
    np.testing.assert_allclose(linear.numpy(), expected, atol=1e-5)
    # expm1 is convex and 0 at 0: the linear ratio never keeps more than the log one
    log = soft_mask(t(W), t(H), t(g))
    assert (linear <= log + 1e-6).all() and (linear < log - 0.01).any()
    # with the power, it sharpens the linear ratio
    r = linear.numpy()
    sharp = soft_mask(t(W), t(H), t(g), power=2.0, ratio="linear").numpy()
    np.testing.assert_allclose(sharp, r**2 / (r**2 + (1 - r) ** 2), atol=1e-5)
    # a model far louder than float32's expm1 reaches (e^89 overflows): still the ratio
    loud = soft_mask(
        t(np.full((1, 2), 100.0)), t(np.ones((1, 2, 1))), t([[1.0, 0.0]]), ratio="linear"
    )
    assert torch.isfinite(loud).all()
    np.testing.assert_allclose(loud.numpy().ravel(), [np.exp(-100.0)], atol=1e-30)
    # nothing modelled (W H = 0): nothing kept, not NaN
    assert (
        soft_mask(torch.zeros(3, 2), t(np.ones((1, 2, 4))), t([[1.0, 1.0]]), ratio="linear")
        .eq(0)
        .all()
    )
    with pytest.raises(ValueError, match=r"mask_ratio='lin'; expected 'linear' .* or 'log'"):
        soft_mask(t(W), t(H), t(g), ratio="lin")


def test_masked_spectrum_keeps_phase_and_bounds_magnitude():
    S = torch.randn(1, 5, 7, dtype=torch.complex64)
    M = torch.rand(1, 5, 7)
    for domain in ("linear", "log"):
        out = masked_spectrum(S, M, domain)
        assert (out.abs() <= S.abs() + 1e-5).all()
        keep = out.abs() > 1e-6
        torch.testing.assert_close(out.angle()[keep], S.angle()[keep], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="mask_domain"):
        masked_spectrum(S, M, "db")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_apply_mask_in_place_matches_the_differentiable_path(dtype):
    # apply_mask masks its own padded spectrum in place; the refinement's path (a padded copy of
    # the mask, a new spectrum) must give the same audio, edges included, in either precision
    X = tones(n=3, length=3000).astype(np.float32)
    spec = SpectrogramTransformer(sr=8000, n_fft=256, hop_length=64).fit(X)
    x = torch.as_tensor(X)
    mask = torch.rand(
        3, spec.n_freqs_, spec._n_frames(3000), generator=torch.Generator().manual_seed(0)
    )
    mask = mask.to(dtype)
    fast = spec.apply_mask(X, mask)
    slow = spec._masked_audio(spec._padded_stft(x), mask, 3000, "linear").numpy()
    assert fast.dtype == slow.dtype
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-6)
    assert not np.allclose(fast, X, atol=1e-3)  # the mask did something
