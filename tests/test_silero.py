"""Tests for the hookable Silero VAD port (:mod:`nmfinterp.silero`)."""

from __future__ import annotations

import importlib.resources
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nmfinterp.silero import (
    LAYER_HOP_SAMPLES,
    SileroVAD,
    frame_chunks,
    load_silero_vad,
    speech_probability,
)

FSDD_CLIP = Path("/work/shared/data/fsdd/0_george_0.wav")
N_PARAMETERS = 243_585


@pytest.fixture(scope="module")
def silero_vad():
    """The installed silero-vad package (tests that need it are skipped otherwise)."""
    return pytest.importorskip("silero_vad")


@pytest.fixture(scope="module")
def model(silero_vad) -> SileroVAD:
    """The port with pretrained weights."""
    return load_silero_vad()


@pytest.fixture(scope="module")
def scripted(silero_vad) -> torch.jit.ScriptModule:
    """The original TorchScript model shipped with silero-vad."""
    path = importlib.resources.files("silero_vad") / "data" / "silero_vad.jit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def _scripted_probs(scripted: torch.jit.ScriptModule, waveform: torch.Tensor) -> torch.Tensor:
    """Call the scripted model on consecutive 512-sample chunks (zero-padded end)."""
    n_chunks = -(-waveform.shape[-1] // 512)
    x = torch.nn.functional.pad(waveform, (0, n_chunks * 512 - waveform.shape[-1]))
    scripted.reset_states()
    with torch.no_grad():
        out = [scripted(x[:, i * 512 : (i + 1) * 512], 16000) for i in range(n_chunks)]
    scripted.reset_states()
    return torch.cat(out, dim=1)


def _synthetic(n_samples: int, seed: int = 0) -> torch.Tensor:
    """Harmonic 'voiced' bursts separated by quiet noise, at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 15))
    envelope = (np.sin(2 * np.pi * 1.3 * t) > 0).astype(float)
    x = 0.3 * envelope * voiced + 0.01 * rng.standard_normal(n_samples)
    return torch.from_numpy(x.astype(np.float32))


def test_parameter_count() -> None:
    model = SileroVAD()
    assert sum(p.numel() for p in model.parameters()) == N_PARAMETERS


def test_weights_match_scripted(model: SileroVAD, scripted: torch.jit.ScriptModule) -> None:
    assert not model.training
    reference = scripted.state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, reference["_model." + name], rtol=0, atol=0)


def test_frame_chunks_context() -> None:
    x = torch.arange(1.0, 1201.0)[None]
    chunks = frame_chunks(x)
    assert chunks.shape == (1, 3, 576)
    assert torch.all(chunks[0, 0, :64] == 0)
    torch.testing.assert_close(chunks[0, 1, :64], x[0, 448:512])
    torch.testing.assert_close(chunks[0, 2, 64 : 64 + 176], x[0, 1024:])
    assert torch.all(chunks[0, 2, 64 + 176 :] == 0)


@pytest.mark.skipif(not FSDD_CLIP.is_file(), reason="FSDD clip not available")
def test_matches_scripted_on_fsdd(model: SileroVAD, scripted: torch.jit.ScriptModule) -> None:
    librosa = pytest.importorskip("librosa")
    soundfile = pytest.importorskip("soundfile")
    audio, sr = soundfile.read(FSDD_CLIP, dtype="float32")
    audio = librosa.resample(audio, orig_sr=sr, target_sr=16000)
    x = torch.from_numpy(audio)[None]
    with torch.no_grad():
        probs = model(x)
    expected = _scripted_probs(scripted, x)
    assert probs.shape == expected.shape == (1, -(-x.shape[-1] // 512))
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-5)
    assert probs.max() > 0.5  # the clip contains speech
    torch.testing.assert_close(speech_probability(model, audio), probs[0], rtol=0, atol=1e-6)


def test_matches_scripted_on_synthetic(model: SileroVAD, scripted: torch.jit.ScriptModule) -> None:
    x = torch.stack([_synthetic(3 * 16000 + 100, seed=0), _synthetic(3 * 16000 + 100, seed=1)])
    with torch.no_grad():
        probs = model(x)
    expected = _scripted_probs(scripted, x)
    assert probs.shape == (2, 94)
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-5)


def test_batch_equals_single_clips(model: SileroVAD) -> None:
    x = torch.stack([_synthetic(20000, seed=2), 0.1 * torch.randn(20000)])
    with torch.no_grad():
        batch = model(x)
        singles = torch.cat([model(x[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(batch, singles, rtol=0, atol=1e-6)


def test_streaming_state(model: SileroVAD) -> None:
    x = _synthetic(10 * 512)[None]
    with torch.no_grad():
        full = model(x)
        first, context, state = model.forward_with_state(x[:, : 6 * 512])
        second, _, _ = model.forward_with_state(x[:, 6 * 512 :], context, state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full, rtol=0, atol=1e-6)


def test_hooks_give_time_series() -> None:
    model = SileroVAD().eval()
    modules = dict(model.named_modules())
    batch, n_samples = 2, 5 * 512 - 30
    n_chunks = 5
    expected = {
        "stft": (batch, 129, 4 * n_chunks),
        "encoder.0": (batch, 128, 4 * n_chunks),
        "encoder.1": (batch, 64, 2 * n_chunks),
        "encoder.2": (batch, 64, n_chunks),
        "encoder.3": (batch, 128, n_chunks),
        "decoder.hidden": (batch, 128, n_chunks),
        "decoder.decoder": (batch, 1, n_chunks),
    }
    assert set(expected) == set(LAYER_HOP_SAMPLES)
    for name in expected:
        assert n_samples / LAYER_HOP_SAMPLES[name] <= expected[name][-1]
    captured: dict[str, list[tuple[int, ...]]] = {name: [] for name in expected}
    handles = [
        modules[name].register_forward_hook(
            lambda mod, inp, out, name=name: captured[name].append(tuple(out.shape))
        )
        for name in expected
    ]
    try:
        with torch.no_grad():
            probs = model(torch.randn(batch, n_samples))
    finally:
        for handle in handles:
            handle.remove()
    assert probs.shape == (batch, n_chunks)
    for name, shape in expected.items():
        assert captured[name] == [shape], name
    for k in range(4):
        assert isinstance(modules[f"encoder.{k}.reparam_conv"], torch.nn.Conv1d)
    assert isinstance(modules["decoder.rnn"], torch.nn.LSTMCell)


def test_encoder_hook_is_per_clip(model: SileroVAD) -> None:
    """Time step n of a hooked encoder output belongs to chunk n of the same clip."""
    x = torch.stack([_synthetic(8 * 512, seed=3), torch.zeros(8 * 512)])
    outputs: list[torch.Tensor] = []
    handle = model.encoder[3].register_forward_hook(lambda m, i, o: outputs.append(o))
    try:
        with torch.no_grad():
            model(x)
            model(x[:1, : 3 * 512])
    finally:
        handle.remove()
    full, prefix = outputs
    torch.testing.assert_close(full[:1, :, :3], prefix, rtol=0, atol=1e-5)
    # a silent clip gives the same encoder output in every chunk
    torch.testing.assert_close(full[1], full[1, :, :1].expand(-1, 8), rtol=0, atol=1e-6)


def test_rejects_bad_input() -> None:
    model = SileroVAD()
    with pytest.raises(ValueError):
        model(torch.zeros(1, 2, 512))
    with pytest.raises(ValueError):
        model(torch.zeros(1, 0))


def test_gradients_through_silence_are_finite():
    """nmfinterp's faithfulness term backpropagates through the model: silent bins must not give NaN."""
    vad = load_silero_vad()
    x = torch.zeros(2, 16000)
    x[0, 4000:8000] = 0.1 * torch.randn(4000, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    vad(x).amax(1).sum().backward()
    assert torch.isfinite(x.grad).all()
