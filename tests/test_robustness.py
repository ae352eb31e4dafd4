"""Hostile and odd input, interruption, NaN losses and determinism, on a tiny pipeline (seconds)."""

import warnings

import numpy as np
import pytest
import torch
from _small import SR, small_pipe, small_setup

from nmfinterp import InterpreterEstimator, SpectrogramTransformer, explain
from nmfinterp._validation import check_waveforms


@pytest.fixture(scope="module")
def setup():
    return small_setup()


@pytest.fixture(scope="module")
def fitted(setup):
    clf, X, y, _ = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return small_pipe(clf).fit(X, y)


def _energy(x):
    return float(np.sum(np.asarray(x, np.float64) ** 2))


# ---------------------------------------------------------------- odd audio
def test_nan_and_inf_are_refused_naming_the_clips(fitted, setup):
    X = setup[3][:3].copy()
    X[1, 10] = np.nan
    X[2, 0] = np.inf
    for call in (lambda: explain(fitted, X), lambda: fitted.predict(X)):
        with pytest.raises(ValueError, match=r"NaN or infinite samples \(clips \[1, 2\]\)"):
            call()
    assert np.isnan(X[1, 10]) and np.isinf(X[2, 0])  # the user's data is left as it was


@pytest.mark.parametrize("kw", [{}, {"refine_steps": 0}])
def test_explain_reads_the_clips_without_touching_them(fitted, setup, kw):
    # float32 clips of one length go through as views of the caller's array: explain must
    # neither write to it nor hand back arrays that share its memory
    X = np.ascontiguousarray(setup[3][:5], dtype=np.float32)
    assert len(X) >= 3  # more than one batch of 2
    before = X.copy()
    ex = explain(fitted, X, batch_size=2, **kw)
    np.testing.assert_array_equal(X, before)
    for out in (ex.waveforms, ex.residuals):
        assert out.shape == X.shape and out.dtype == np.float32
        assert not np.shares_memory(out, X)
    np.testing.assert_allclose(ex.waveforms + ex.residuals, X, atol=1e-6)
    # the same explanations, clip by clip, as explaining each clip alone
    for i in (0, len(X) - 1):
        alone = explain(fitted, X[i : i + 1], **kw)
        np.testing.assert_allclose(alone.waveforms[0], ex.waveforms[i], atol=1e-5)


def test_silence_gives_a_finite_silent_explanation(fitted):
    ex = explain(fitted, np.zeros((2, 4000), np.float32))
    assert np.all(np.asarray(ex) == 0) and np.isfinite(ex.relevance).all()
    assert all(np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 for m in ex.masks)
    assert np.isfinite(fitted.predict_proba(np.zeros((2, 4000), np.float32))).all()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda x: np.clip(8 * x, -1, 1), id="clipping"),
        pytest.param(lambda x: x + 0.5, id="dc-offset"),
        pytest.param(lambda x: 4.0 * x, id="beyond-full-scale"),
    ],
)
def test_clipped_offset_and_loud_clips_explain_within_the_input(fitted, setup, make):
    X = make(setup[3][:3]).astype(np.float32)
    ex = explain(fitted, X, threshold=-1.0)  # keep components even if weakly relevant
    wav = np.asarray(ex)
    assert wav.shape == X.shape and np.isfinite(wav).all()
    for w, x in zip(wav, X, strict=True):
        assert _energy(w) <= _energy(x) * (1 + 1e-4)


def test_very_short_and_very_long_clips(fitted, setup):
    x = setup[3][0]
    n_min = fitted[0].n_fft // 2 + 1
    assert np.asarray(explain(fitted, x[:n_min])).shape == (1, n_min)
    with pytest.raises(ValueError, match="too short.*smaller n_fft"):
        explain(fitted, x[: n_min - 1])
    long = np.tile(x, 40)  # 20 s, 40 times the training length: explained at its own length
    ex = explain(fitted, long)
    assert np.asarray(ex).shape == (1, len(long)) and np.isfinite(np.asarray(ex)).all()


def test_stereo_is_refused_with_the_downmix_to_use(fitted, setup):
    stereo = np.stack([setup[3][:2], setup[3][:2]], axis=1)  # (clips, channels, samples)
    with pytest.raises(ValueError, match=r"multi-channel audio.*x\.mean\(axis=1\)"):
        explain(fitted, stereo)
    with pytest.raises(ValueError, match=r"multi-channel audio.*x\.mean\(axis=1\)"):
        fitted.predict(stereo)
    as_soundfile_reads_it = stereo[0].T  # (n_samples, 2)
    with pytest.raises(ValueError, match=r"\(n_samples, n_channels\).*x\.mean\(axis=1\)"):
        explain(fitted, as_soundfile_reads_it)
    with pytest.raises(ValueError, match=r"1-D mono waveform.*average the channels"):
        explain(fitted, [setup[3][0], stereo[0]])
    # the documented downmix works
    assert np.asarray(explain(fitted, stereo.mean(axis=1))).shape == (2, 4000)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float64])
def test_pcm_and_double_inputs_explain_like_float32(fitted, setup, dtype):
    x = setup[3][:2]
    if np.issubdtype(dtype, np.integer):
        scale = float(2 ** (8 * np.dtype(dtype).itemsize - 1))
        raw = np.round(x * (scale - 1)).astype(dtype)
        ref = (raw.astype(np.float64) / scale).astype(np.float32)
    else:
        raw, ref = x.astype(dtype), x
    a, b = explain(fitted, raw), explain(fitted, ref)
    assert np.asarray(a).dtype == np.float32
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    np.testing.assert_allclose(fitted.predict_proba(raw), fitted.predict_proba(ref), atol=1e-6)


def test_wrong_sample_rate_is_refused_where_known(fitted, setup):
    x = setup[3][:1]
    with pytest.raises(ValueError, match=r"44100 Hz.*fitted at 8000 Hz.*librosa\.resample"):
        explain(fitted, x, sr=44100)
    assert np.asarray(explain(fitted, x, sr=SR)).shape == x.shape


@pytest.mark.parametrize(
    ("empty", "match"),
    [(np.zeros((0, 4000), np.float32), "holds no clips"), ([], "empty list.*no clips")],
)
def test_empty_batches_are_refused_clearly(fitted, empty, match):
    with pytest.raises(ValueError, match=match):
        explain(fitted, empty)
    with pytest.raises(ValueError, match=match):
        fitted.predict(empty)


def test_probabilities_and_logits_train_the_same_interpreter(setup):
    clf, X, logits, Xt = setup
    probs = torch.softmax(torch.as_tensor(logits), -1).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = small_pipe(clf, epochs=2).fit(X, logits)
        b = small_pipe(clf, epochs=2).fit(X, probs)
    assert a[-1].output_type_ == "logits" and b[-1].output_type_ == "probabilities"
    # the classifier itself gives logits in both cases; its type is inferred from its own scores
    assert a[-1].classifier_output_type_ == b[-1].classifier_output_type_ == "logits"
    np.testing.assert_allclose(a.predict_proba(Xt), b.predict_proba(Xt), atol=1e-4)


class _Raises(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if x.shape[0] > 0:
            raise RuntimeError("CUDA-like failure inside the model")
        return self.inner(x)


def test_a_classifier_that_raises_is_named_and_data_untouched(setup):
    clf, X, y, _ = setup
    X0, y0 = X.copy(), y.copy()
    bad = _Raises(clf)
    pipe = small_pipe(bad, layers=["inner.blocks.0"])
    with pytest.raises(RuntimeError, match=r"_Raises.*CUDA-like failure.*classifier_input") as err:
        pipe.fit(X, y)
    assert isinstance(err.value.__cause__, RuntimeError)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    assert not any(m._forward_hooks for m in bad.modules())


def test_absurd_sizes_are_refused_before_allocating(setup):
    spec = SpectrogramTransformer(n_fft=256, n_samples=10**13).fit(setup[1][:2])
    with pytest.raises(
        MemoryError, match=r"TiB, more than this machine's .* nothing was allocated"
    ):
        spec.transform(setup[1][:2])


def test_feature_cache_in_memory_refuses_features_bigger_than_memory(setup, monkeypatch):
    clf, X, y, _ = setup
    import nmfinterp._validation as v

    pipe = small_pipe(clf)
    features = pipe[:-1].fit_transform(X, y)  # spectrograms made before memory "shrinks"
    monkeypatch.setattr(v, "memory_limit", lambda: 1000)
    with pytest.raises(MemoryError, match=r'hidden features.*feature_cache="disk"'):
        pipe[-1].fit(features, y)
    pipe[-1].set_params(feature_cache="disk").fit(features, y)  # the way out works
    assert len(pipe[-1].history_) == 3


def test_check_waveforms_never_modifies_its_input():
    x = np.array([[1, -2, 3] * 100], dtype=np.int16)
    before = x.copy()
    out = check_waveforms(x)
    assert out.dtype == np.float32 and out is not x
    np.testing.assert_array_equal(x, before)


# ---------------------------------------------------------------- interruption and NaN
def _fail_at(monkeypatch, call, exc_or_nan):
    """Make the fidelity loss raise (or turn NaN) at its ``call``-th call."""
    original = InterpreterEstimator._fidelity_loss
    count = {"n": 0}

    def patched(self, logits, probs):
        count["n"] += 1
        if count["n"] == call:
            if exc_or_nan == "nan":
                return original(self, logits, probs) * float("nan")
            raise exc_or_nan
        return original(self, logits, probs)

    monkeypatch.setattr(InterpreterEstimator, "_fidelity_loss", patched)


def _state(pipe):
    return {k: v.clone() for k, v in pipe[-1].module_.state_dict().items()}


def test_keyboard_interrupt_keeps_the_last_completed_epoch_and_warm_start_continues(
    setup, monkeypatch
):
    clf, X, y, Xt = setup
    # 20 clips / batch 8 = 3 batches per epoch; a constant learning rate, so that the first epoch
    # of a 2-epoch fit takes the same steps as a 1-epoch fit (a cosine decay spans all epochs)
    kw = {"faithfulness": 0.0, "epochs": 2, "lr_schedule": "constant"}
    one_epoch = small_pipe(clf, **(kw | {"epochs": 1})).fit(X, y)
    _fail_at(monkeypatch, 5, KeyboardInterrupt())  # in the 2nd batch of epoch 2
    pipe = small_pipe(clf, **kw)
    with pytest.warns(UserWarning, match=r"interrupted after 1 epoch.*warm_start=True"):
        pipe.fit(X, y)
    interp = pipe[-1]
    assert interp.interrupted_ and len(interp.history_) == 1
    for k, v in _state(one_epoch).items():
        torch.testing.assert_close(interp.module_.state_dict()[k], v)
    assert np.isfinite(pipe.predict_proba(Xt)).all()  # usable
    assert np.asarray(explain(pipe, Xt[:2])).shape == (2, 4000)
    # warm start: continue from that state, history grows, nothing re-initialised
    monkeypatch.undo()
    before = _state(pipe)
    pipe.set_params(interpreterestimator__warm_start=True).fit(X, y)
    assert len(pipe[-1].history_) == 3 and not pipe[-1].interrupted_
    assert pipe[-1].history_[1]["loss"] < pipe[-1].history_[0]["loss"] * 1.5
    fresh = small_pipe(clf, **kw).fit(X, y)
    assert pipe[-1].history_[1]["loss"] != fresh[-1].history_[0]["loss"]
    changed = [k for k, v in before.items() if not torch.equal(v, pipe[-1].module_.state_dict()[k])]
    assert changed  # it trained on from the kept state


def test_warm_start_refuses_a_different_shape(setup):
    clf, X, y, _ = setup
    pipe = small_pipe(clf, faithfulness=0.0, epochs=1).fit(X, y)
    interp = pipe[-1]
    before = dict(vars(interp))
    pipe.set_params(interpreterestimator__warm_start=True, nmfdictionary__n_components=4)
    with pytest.raises(ValueError, match="warm_start=True continues.*shape changed"):
        pipe.fit(X, y)
    # nothing the fitted interpreter had is lost
    assert interp.n_components_ == 6 and interp.module_ is before["module_"]
    assert interp.dictionary_ is before["dictionary_"] and interp.history_ == before["history_"]


def test_nan_loss_stops_with_a_clear_error_and_the_last_good_state(setup, monkeypatch):
    clf, X, y, _ = setup
    kw = {"faithfulness": 0.0, "epochs": 3, "lr_schedule": "constant"}  # as above
    one_epoch = small_pipe(clf, **(kw | {"epochs": 1})).fit(X, y)
    _fail_at(monkeypatch, 4, "nan")  # first batch of epoch 2
    pipe = small_pipe(clf, **kw)
    with pytest.raises(
        FloatingPointError, match=r"loss became nan in epoch 2.*last completed epoch"
    ):
        pipe.fit(X, y)
    state = pipe[-1].module_.state_dict()
    assert all(torch.isfinite(v).all() for v in state.values())
    for k, v in _state(one_epoch).items():
        torch.testing.assert_close(state[k], v)


# ---------------------------------------------------------------- determinism
def test_same_random_state_same_explanations_to_the_sample(setup):
    clf, X, y, Xt = setup
    a = small_pipe(clf).fit(X, y)
    b = small_pipe(clf).fit(X, y)
    ea, eb = explain(a, Xt, threshold=-1.0), explain(b, Xt, threshold=-1.0)
    np.testing.assert_array_equal(np.asarray(ea), np.asarray(eb))
    np.testing.assert_array_equal(ea.relevance, eb.relevance)
    c = small_pipe(clf, random_state=1).fit(X, y)
    assert not np.array_equal(explain(c, Xt).relevance, ea.relevance)


def test_the_interpreters_own_selection_holds_still_under_float_noise(fitted, setup):
    """``refine_steps=0`` is the reproducible explanation (docs/scale-and-persistence.md): noise of
    1e-6 of each clip's peak moves it by float rounding, not by a different selection."""
    Xt = setup[3]
    noise = np.random.default_rng(0).standard_normal(Xt.shape).astype(np.float32)
    noisy = Xt + 1e-6 * np.abs(Xt).max(axis=-1, keepdims=True) * noise
    a, b = explain(fitted, Xt, refine_steps=0), explain(fitted, noisy, refine_steps=0)
    assert [s.tolist() for s in a.selected] == [s.tolist() for s in b.selected]
    wa, wb = np.asarray(a), np.asarray(b)
    change = np.linalg.norm(wa - wb, axis=-1) / np.linalg.norm(Xt, axis=-1)  # of the clip's level
    assert change.max() < 1e-3, change
