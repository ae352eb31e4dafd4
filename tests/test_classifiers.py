"""Tests of nmfinterp.classifiers: the waveform-in log-mel CNN and its training helpers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from nmfinterp.classifiers import LogMelCNN, predict_logits, predict_proba, train_classifier
from nmfinterp.datasets import make_synthetic_sounds

SR = 8000
SMALL = dict(sr=SR, n_fft=512, hop_length=80, n_mels=32, channels=(8, 16, 32, 32))


@pytest.fixture(scope="module")
def synthetic():
    ds = make_synthetic_sounds(n_per_class=30, sr=SR, duration=0.5, random_state=0)
    return ds.subset(ds.folds != 1), ds.subset(ds.folds == 1)


@pytest.fixture(scope="module")
def trained(synthetic):
    train, _ = synthetic
    model = LogMelCNN(4, **SMALL, random_state=0)
    return train_classifier(model, train.waveforms, train.labels, epochs=12, random_state=0)


def test_default_model_is_small_and_maps_waveforms_to_logits():
    model = LogMelCNN(10).eval()
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert [name for name, _ in model.blocks.named_children()] == ["0", "1", "2", "3"]
    x = torch.randn(3, 16000) * 0.1
    with torch.no_grad():
        assert model(x).shape == (3, 10)
        assert model(x[0]).shape == (1, 10)  # one 1-D clip
        assert model.log_mel(x).shape == (3, 64, model.n_frames(16000))
    assert set(dict(model.named_buffers())) >= {"window", "mel_fb"}
    assert model.mel_fb.shape == (64, 513)


def test_blocks_give_time_last_features_via_hooks():
    model = LogMelCNN(4, **SMALL).eval()
    outputs = {}
    handles = [
        model.get_submodule(f"blocks.{k}").register_forward_hook(
            lambda mod, inp, out, k=k: outputs.__setitem__(k, out)
        )
        for k in range(4)
    ]
    shapes = {}
    for n_samples in (4000, 8000):
        with torch.no_grad():
            model(torch.randn(2, n_samples) * 0.1)
        shapes[n_samples] = {k: tuple(v.shape) for k, v in outputs.items()}
    for h in handles:
        h.remove()
    frames = {n: model.n_frames(n) for n in shapes}
    for k, channels in enumerate(SMALL["channels"]):
        short, long = shapes[4000][k], shapes[8000][k]
        assert short[:3] == long[:3] == (2, channels, int(np.ceil(32 / 2 ** (k + 1))))
        # time is the last axis: only it grows with the clip, by the pooling factor
        assert short[3] == int(np.ceil(frames[4000] / 2 ** (k + 1)))
        assert long[3] == int(np.ceil(frames[8000] / 2 ** (k + 1)))
        assert (outputs[k] >= 0).all()  # after ReLU: non-negative, ready for NMF


def test_picklable_and_same_outputs():
    model = LogMelCNN(3, **SMALL).eval()
    x = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32) * 0.1
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(predict_logits(model, x), predict_logits(clone, x))


def test_training_learns_synthetic_sounds(trained, synthetic):
    _, test = synthetic
    logits = predict_logits(trained, test.waveforms)
    assert logits.shape == (len(test), 4) and logits.dtype == np.float32
    accuracy = np.mean(logits.argmax(1) == test.labels)
    assert accuracy > 0.8
    assert trained.training is False
    history = trained.history_
    assert len(history["loss"]) == len(history["accuracy"]) == 12
    assert history["loss"][-1] < history["loss"][0]
    assert history["train_time"] > 0
    proba = predict_proba(trained, test.waveforms)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(1), logits.argmax(1))


def test_predictions_do_not_depend_on_batch_size(trained, synthetic):
    _, test = synthetic
    np.testing.assert_allclose(
        predict_logits(trained, test.waveforms, batch_size=5),
        predict_logits(trained, test.waveforms, batch_size=64),
        rtol=1e-4,
        atol=1e-4,
    )


def test_predict_logits_restores_training_mode():
    model = LogMelCNN(2, **SMALL).train()
    predict_logits(model, np.zeros((2, 2000), dtype=np.float32))
    assert model.training


def test_training_is_deterministic_and_leaves_global_rng_alone(synthetic):
    train, test = synthetic
    sub = train.subset(slice(0, 32))

    def fit(seed: int) -> LogMelCNN:
        model = LogMelCNN(4, **SMALL, random_state=seed)
        return train_classifier(
            model, sub.waveforms, sub.labels, epochs=2, batch_size=8, random_state=seed
        )

    state = torch.random.get_rng_state()
    a, b, c = fit(0), fit(0), fit(1)
    assert torch.equal(state, torch.random.get_rng_state())
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    np.testing.assert_array_equal(
        predict_logits(a, test.waveforms), predict_logits(b, test.waveforms)
    )
    assert not torch.equal(a.fc.weight, c.fc.weight)
    assert a.history_["loss"] == b.history_["loss"]


def test_validation_history(synthetic):
    train, test = synthetic
    model = LogMelCNN(4, **SMALL)
    train_classifier(
        model,
        train.waveforms[:16],
        train.labels[:16],
        epochs=2,
        batch_size=8,
        augment=False,
        validation_data=(test.waveforms, test.labels),
    )
    assert len(model.history_["val_accuracy"]) == 2
    assert all(0.0 <= acc <= 1.0 for acc in model.history_["val_accuracy"])


def test_errors():
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogMelCNN(1)
    with pytest.raises(ValueError, match="n_mels"):
        LogMelCNN(3, n_mels=8)
    with pytest.raises(ValueError, match="dropout"):
        LogMelCNN(3, dropout=1.5)
    model = LogMelCNN(3, **SMALL)
    x = np.zeros((4, 2000), dtype=np.float32)
    with pytest.raises(ValueError, match="class indices in 0 .. 2"):
        train_classifier(model, x, [0, 1, 2, 3], epochs=1)
    with pytest.raises(ValueError, match="one integer label per clip"):
        train_classifier(model, x, [0, 1], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(model, x, [0, 1, 2, 0], epochs=0)
    with pytest.raises(ValueError, match="2-D"):
        predict_logits(model, np.zeros(2000, dtype=np.float32))
    with pytest.raises(ValueError, match="batch, n_samples"):
        model.log_mel(torch.zeros(1, 1, 2000))
