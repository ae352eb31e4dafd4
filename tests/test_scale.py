"""Scale: feature caches (memory / disk / none), streaming dictionary learning, batched explain."""

import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from _small import SR, small_pipe, small_setup

from nmfinterp import NMFDictionary, SpectrogramTransformer, explain
from nmfinterp.datasets import make_synthetic_sounds
from nmfinterp.dictionary import fit_streaming


@pytest.fixture(scope="module")
def setup():
    return small_setup()


def test_feature_caches_train_the_same_interpreter(setup, tmp_path, monkeypatch):
    clf, X, y, Xt = setup
    made = []
    import tempfile

    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(
        tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1]
    )
    pipes = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mode in ("memory", "disk", "none"):
            pipes[mode] = small_pipe(
                clf, feature_cache=mode, feature_cache_dir=tmp_path if mode == "disk" else None
            ).fit(X, y)
    ref = pipes["memory"]
    for mode in ("disk", "none"):
        for a, b in zip(pipes[mode][-1].history_, ref[-1].history_, strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        for k, v in ref[-1].module_.state_dict().items():
            torch.testing.assert_close(
                pipes[mode][-1].module_.state_dict()[k], v, rtol=1e-4, atol=1e-5
            )
        np.testing.assert_allclose(
            np.asarray(explain(pipes[mode], Xt, threshold=-1.0)),
            np.asarray(explain(ref, Xt, threshold=-1.0)),
            atol=1e-4,
        )
    # the disk cache lived in a folder under feature_cache_dir, removed after fit
    assert len(made) == 1 and os.path.dirname(made[0]) == str(tmp_path)
    assert not os.path.exists(made[0]) and os.listdir(tmp_path) == []


def test_disk_cache_is_removed_when_fit_fails(setup, tmp_path, monkeypatch):
    clf, X, y, _ = setup
    from nmfinterp.interpreter import InterpreterEstimator

    def boom(self, *a, **k):
        raise RuntimeError("stop")

    monkeypatch.setattr(InterpreterEstimator, "_epochs", boom)
    with pytest.raises(RuntimeError, match="stop"):
        small_pipe(clf, feature_cache="disk", feature_cache_dir=tmp_path).fit(X, y)
    assert os.listdir(tmp_path) == []


def test_none_cache_runs_the_classifier_every_epoch(setup, monkeypatch):
    clf, X, y, _ = setup
    from nmfinterp import interpreter as mod

    calls = {"n": 0}
    real = mod.run_with_hooks

    def counting(*a, **k):
        calls["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(mod, "run_with_hooks", counting)
    n_batches = -(-len(X) // 8)
    # "none": one pass (stats) + 2 epochs + one pass for class_usage_ after training
    for mode, expected in (("memory", n_batches), ("none", n_batches * 4)):
        calls["n"] = 0
        small_pipe(clf, feature_cache=mode, epochs=2, faithfulness=0.0).fit(X, y)
        assert calls["n"] == expected, mode


def test_pipeline_solves_no_nmf_activations_but_they_stay_available(setup, monkeypatch):
    clf, X, y, Xt = setup
    calls = {"n": 0}
    real = NMFDictionary._activations

    def counting(self, frames):
        calls["n"] += 1
        return real(self, frames)

    monkeypatch.setattr(NMFDictionary, "_activations", counting)
    pipe = small_pipe(clf, epochs=1).fit(X, y)
    assert calls["n"] == 1  # reconstruction_err_ in fit only, never per clip in transform
    pipe.predict(Xt)
    pipe.score(Xt, clf(torch.as_tensor(Xt)).detach().numpy())
    assert calls["n"] == 1
    feats = pipe[:-1].transform(Xt)
    assert "activations" not in feats.blocks and feats.dictionary is pipe[1]
    H = feats.block("activations")  # solved on demand
    assert calls["n"] == 2 and H.shape == (len(Xt), 6, feats.block("spectrogram").shape[2])
    # plain arrays: activations as NMF.transform returns them
    frames = np.random.default_rng(0).random((5, pipe[1].n_features_in_))
    assert pipe[1].transform(frames).shape == (5, 6)


def test_explain_batches_give_the_same_result(setup):
    clf, X, y, Xt = setup
    pipe = small_pipe(clf, epochs=1).fit(X, y)
    a = explain(pipe, Xt, batch_size=1, threshold=-1.0)
    b = explain(pipe, Xt, batch_size=64, threshold=-1.0)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size=0"):
        explain(pipe, Xt, batch_size=0)


# ---------------------------------------------------------------- streaming dictionary
@pytest.fixture(scope="module")
def corpus():
    ds = make_synthetic_sounds(n_per_class=10, sr=SR, duration=0.5, random_state=0)
    return ds.waveforms


def _spec():
    return SpectrogramTransformer(sr=SR, n_fft=256, hop_length=128)


def test_streaming_dictionary_is_close_to_the_in_memory_fit(corpus):
    Xs = _spec().fit_transform(corpus)
    full = NMFDictionary(n_components=8, max_frames=None, random_state=0).fit(Xs)
    batches = [corpus[i : i + 8] for i in range(0, len(corpus), 8)]  # 5 batches of 8 clips
    stream = fit_streaming(
        NMFDictionary(n_components=8, batch_size=128, random_state=0), batches, _spec(), passes=2
    )
    ratio = stream.reconstruction_error(Xs) / full.reconstruction_error(Xs)
    # measured 1.07 (MiniBatchNMF, 2 passes of 128-frame mini-batches, vs batch NMF on all frames)
    assert 1.0 <= ratio < 1.15, ratio
    np.testing.assert_allclose(np.linalg.norm(stream.dictionary_, axis=0), 1, rtol=1e-6)
    assert stream.n_iter_ > 0 and np.isfinite(stream.reconstruction_err_)


def test_streaming_from_files_equals_streaming_from_arrays(corpus, tmp_path):
    paths = []
    for i, clip in enumerate(corpus[:12]):
        paths.append(tmp_path / f"c{i:02d}.wav")
        sf.write(paths[-1], clip, SR, subtype="FLOAT")
    kw = {"n_components": 4, "batch_size": 64, "random_state": 0}
    from_files = fit_streaming(NMFDictionary(**kw), paths, _spec(), passes=2, files_per_batch=4)
    arrays = [corpus[i : i + 4] for i in range(0, 12, 4)]
    from_arrays = fit_streaming(NMFDictionary(**kw), lambda: iter(arrays), _spec(), passes=2)
    np.testing.assert_allclose(from_files.dictionary_, from_arrays.dictionary_, rtol=1e-6)
    with pytest.raises(ValueError, match="generator is used up after one pass"):
        fit_streaming(NMFDictionary(**kw), iter(arrays), _spec(), passes=2)
    with pytest.raises(ValueError, match="gave no batch"):
        fit_streaming(NMFDictionary(**kw), [], _spec())


def test_partial_fit_chunks_and_minibatch_fit_in_a_pipeline(setup, corpus):
    Xs = _spec().fit_transform(corpus)
    d = NMFDictionary(n_components=5, batch_size=100, random_state=0)
    for i in range(0, len(Xs), 10):
        d.partial_fit(Xs[i : i + 10])
    assert d.dictionary_.shape == (129, 5)
    assert d.per_class == "auto" and d.per_class_ is False  # a stream learns one dictionary
    with pytest.raises(ValueError, match="frequency bins"):
        d.partial_fit(SpectrogramTransformer(n_fft=512).fit_transform(corpus[:2]))
    with pytest.raises(ValueError, match="per_class=True.*partial_fit"):
        NMFDictionary(n_components=4, per_class=True).partial_fit(Xs)
    clf, X, y, Xt = setup
    pipe = small_pipe(clf, epochs=1)
    pipe.set_params(nmfdictionary__batch_size=64).fit(X, y)
    assert pipe[1].dictionary_.shape[1] == 6
    assert np.asarray(explain(pipe, Xt)).shape == Xt.shape


def test_a_streamed_dictionary_is_used_frozen_in_a_pipeline(setup):
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import make_pipeline

    clf, X, y, Xt = setup
    d = fit_streaming(
        NMFDictionary(n_components=5, batch_size=64, random_state=0), [X[:10], X[10:]], _spec()
    )
    W = d.dictionary_.copy()
    parts = small_pipe(clf, epochs=1)
    pipe = make_pipeline(parts[0], FrozenEstimator(d), parts[2]).fit(X, y)
    assert pipe[-1].dictionary_ is d and np.array_equal(d.dictionary_, W)  # not learned again
    assert np.asarray(explain(pipe, Xt)).shape == Xt.shape
