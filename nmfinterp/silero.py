"""Hookable PyTorch port of the Silero VAD model (16 kHz branch).

`Silero VAD <https://github.com/snakers4/silero-vad>`_ (MIT licence) ships its
model as TorchScript, which does not support forward hooks.  This module
re-implements the 16 kHz branch as an ordinary :class:`torch.nn.Module` with the
same architecture and parameter names, and loads the weights of the scripted
model shipped in the ``silero-vad`` package (no network access).

Architecture (per 512-sample chunk, 16 kHz)
-------------------------------------------
1. The last 64 samples of the previous chunk (zeros before the first chunk) are
   prepended: 576 samples.
2. ``stft``: reflect padding of 64 samples on the right (640 samples), a
   strided convolution with a fixed Fourier basis (``forward_basis_buffer``,
   258 filters of length 256, hop 128) and the magnitude
   ``sqrt(re**2 + im**2)``: 129 bins x 4 frames.
3. ``encoder.0`` ... ``encoder.3``: ``Conv1d(kernel_size=3, padding=1)`` + ReLU
   blocks, 129 -> 128 (stride 1) -> 64 (stride 2) -> 64 (stride 2) -> 128
   (stride 1) channels; 4 -> 4 -> 2 -> 1 -> 1 frames.
4. ``decoder.rnn``: an ``LSTMCell(128, 128)`` whose state is carried from chunk
   to chunk.
5. ``decoder.decoder``: Dropout(0.1), ReLU, ``Conv1d(128, 1, 1)``, Sigmoid: the
   speech probability of the chunk.

The encoder has no state across chunks apart from the 64-sample context, so
:class:`SileroVAD` runs it on all chunks of all clips at once; only the LSTM
runs sequentially over chunks.  The result equals calling the scripted model on
consecutive chunks after ``reset_states()``.

Hooks
-----
The blocks ``stft``, ``encoder.0`` ... ``encoder.3``, ``decoder.hidden`` and
``decoder.decoder`` (and its children) receive and return per-clip time series
of shape ``(batch, channels, time)``, so forward hooks registered on them fire
once per forward call and see whole clips.  Their time resolution (hop, in
samples at 16 kHz) is given by :data:`LAYER_HOP_SAMPLES`.  The convolutions
inside the blocks (``encoder.k.reparam_conv``, ``encoder.k.activation``) work
on chunks stacked along the batch axis, ``(batch * n_chunks, channels,
frames_per_chunk)``, and ``decoder.rnn`` fires once per chunk with
``(batch, 128)`` tensors.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from numpy.typing import ArrayLike
from torch import nn

__all__ = [
    "CHUNK_SAMPLES",
    "CONTEXT_SAMPLES",
    "LAYER_HOP_SAMPLES",
    "SAMPLE_RATE",
    "SileroVAD",
    "frame_chunks",
    "load_silero_vad",
    "speech_probability",
]

SAMPLE_RATE: int = 16000
"""Sampling rate (Hz) of the ported branch."""

CHUNK_SAMPLES: int = 512
"""Number of new samples per model call (32 ms at 16 kHz)."""

CONTEXT_SAMPLES: int = 64
"""Number of samples of the previous chunk prepended to each chunk."""

LAYER_HOP_SAMPLES: dict[str, int] = {
    "stft": 128,
    "encoder.0": 128,
    "encoder.1": 256,
    "encoder.2": 512,
    "encoder.3": 512,
    "decoder.hidden": 512,
    "decoder.decoder": 512,
}
"""Hop (in samples at 16 kHz) of the time axis seen by hooks on each block.

Frame ``j`` of chunk ``n`` of ``stft`` covers waveform samples
``[512 * n - 64 + 128 * j, 512 * n + 192 + 128 * j)`` (the last frame of each
chunk is completed by reflection instead of the next chunk's samples).
"""

_FRAMES_PER_CHUNK = 4  # STFT frames per chunk: (576 + 64 - 256) // 128 + 1


def frame_chunks(waveform: torch.Tensor) -> torch.Tensor:
    """Split waveforms into 512-sample chunks, each preceded by 64 context samples.

    Parameters
    ----------
    waveform : torch.Tensor
        Audio of shape ``(batch, n_samples)`` at 16 kHz.  The end is zero-padded
        to a multiple of 512 samples.

    Returns
    -------
    torch.Tensor
        Shape ``(batch, n_chunks, 576)``: chunk ``n`` is the 64 samples before it
        (zeros for ``n = 0``) followed by its 512 samples, exactly the input the
        scripted model sees on its ``n``-th call.

    Examples
    --------
    >>> frame_chunks(torch.arange(1.0, 1025.0)[None]).shape
    torch.Size([1, 2, 576])
    """
    n_samples = waveform.shape[-1]
    n_chunks = max(1, math.ceil(n_samples / CHUNK_SAMPLES))
    right = n_chunks * CHUNK_SAMPLES - n_samples
    padded = nn.functional.pad(waveform, (CONTEXT_SAMPLES, right))
    return padded.unfold(-1, CHUNK_SAMPLES + CONTEXT_SAMPLES, CHUNK_SAMPLES)


def _to_chunks(x: torch.Tensor, frames_per_chunk: int) -> torch.Tensor:
    """Reshape a ``(batch, C, n_chunks * f)`` time series to ``(batch * n_chunks, C, f)``."""
    batch, channels, time = x.shape
    n_chunks = time // frames_per_chunk
    x = x.reshape(batch, channels, n_chunks, frames_per_chunk).permute(0, 2, 1, 3)
    return x.reshape(batch * n_chunks, channels, frames_per_chunk)


def _to_series(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Reshape ``(batch * n_chunks, C, f)`` chunk outputs to a ``(batch, C, n_chunks * f)`` series."""
    n_total, channels, frames = x.shape
    n_chunks = n_total // batch
    x = x.reshape(batch, n_chunks, channels, frames).permute(0, 2, 1, 3)
    return x.reshape(batch, channels, n_chunks * frames)


class STFTMagnitude(nn.Module):
    """Silero's convolutional STFT magnitude front end, applied to every chunk.

    Parameters
    ----------
    filter_length : int, default=256
        Length of the Fourier basis filters.
    hop_length : int, default=128
        Stride of the convolution.
    pad : int, default=64
        Reflect padding added to the right of each chunk.
    """

    def __init__(self, filter_length: int = 256, hop_length: int = 128, pad: int = 64) -> None:
        super().__init__()
        self.filter_length = filter_length
        self.hop_length = hop_length
        self.pad = pad
        self.register_buffer(
            "forward_basis_buffer", torch.zeros(2 * (filter_length // 2 + 1), 1, filter_length)
        )

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        """Compute the magnitude spectrogram of context-prefixed chunks.

        Parameters
        ----------
        chunks : torch.Tensor
            Shape ``(batch, n_chunks, 576)``, as returned by :func:`frame_chunks`.

        Returns
        -------
        torch.Tensor
            Shape ``(batch, 129, n_chunks * 4)``: 4 frames per chunk, concatenated
            along time.
        """
        batch, n_chunks, length = chunks.shape
        x = chunks.reshape(batch * n_chunks, length)
        x = nn.functional.pad(x, (0, self.pad), mode="reflect").unsqueeze(1)
        spec = nn.functional.conv1d(x, self.forward_basis_buffer, stride=self.hop_length)
        cutoff = self.filter_length // 2 + 1
        real, imag = spec[:, :cutoff].float(), spec[:, cutoff:].float()
        power = real.pow(2) + imag.pow(2)
        # sqrt has an infinite gradient at 0 (silent bins): same values, zero gradient there, so
        # gradients through the model (nmfinterp's faithfulness term) stay finite
        positive = power > 0
        magnitude = torch.where(positive, torch.sqrt(torch.where(positive, power, 1.0)), 0.0)
        return _to_series(magnitude, batch)


class SileroVadBlock(nn.Module):
    """Conv1d + ReLU block applied chunk by chunk to a per-clip time series.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the convolution.
    stride : int
        Stride of the convolution (kernel size 3, padding 1 within each chunk).
    frames_per_chunk : int
        Number of input frames belonging to each 512-sample chunk.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, frames_per_chunk: int
    ) -> None:
        super().__init__()
        self.frames_per_chunk = frames_per_chunk
        self.reparam_conv = nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to every chunk.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(batch, in_channels, n_chunks * frames_per_chunk)``.

        Returns
        -------
        torch.Tensor
            Shape ``(batch, out_channels, n_chunks * out_frames_per_chunk)``.
        """
        batch = x.shape[0]
        out = self.activation(self.reparam_conv(_to_chunks(x, self.frames_per_chunk)))
        return _to_series(out, batch)


class VADDecoderRNN(nn.Module):
    """LSTM cell run over chunks, then a 1x1 convolution head with sigmoid."""

    def __init__(self, hidden_size: int = 128) -> None:
        super().__init__()
        self.rnn = nn.LSTMCell(hidden_size, hidden_size)
        self.hidden = nn.Identity()
        self.decoder = nn.Sequential(
            nn.Dropout(0.1), nn.ReLU(), nn.Conv1d(hidden_size, 1, kernel_size=1), nn.Sigmoid()
        )

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the LSTM sequentially over chunks and compute speech probabilities.

        Parameters
        ----------
        x : torch.Tensor
            Encoder output of shape ``(batch, 128, n_chunks)``.
        state : torch.Tensor or None, default=None
            LSTM state ``stack([h, c])`` of shape ``(2, batch, 128)``; zeros if None.

        Returns
        -------
        probs : torch.Tensor
            Speech probabilities of shape ``(batch, n_chunks)``.
        state : torch.Tensor
            LSTM state after the last chunk, shape ``(2, batch, 128)``.
        """
        if state is None or state.numel() == 0:
            hc = None
        else:
            hc = (state[0], state[1])
        hidden = []
        for n in range(x.shape[-1]):
            hc = self.rnn(x[:, :, n], hc)
            hidden.append(hc[0])
        h_series = self.hidden(torch.stack(hidden, dim=-1))  # (batch, 128, n_chunks)
        probs = self.decoder(h_series)[:, 0]
        return probs, torch.stack(hc)


class SileroVAD(nn.Module):
    """Hookable port of the Silero VAD model (16 kHz branch).

    ``forward(waveform)`` splits each clip into 512-sample chunks and returns one
    speech probability per chunk, identical (up to float rounding) to calling the
    scripted model on consecutive chunks after ``reset_states()``.  The model has
    243,585 parameters; use :func:`load_silero_vad` for the pretrained weights.

    Named blocks for hooks (outputs are ``(batch, channels, time)``; hops in
    :data:`LAYER_HOP_SAMPLES`):

    ========================  ========================  =====================
    module                    output shape              time step
    ========================  ========================  =====================
    ``stft``                  ``(B, 129, 4 N)``         128 samples (8 ms)
    ``encoder.0``             ``(B, 128, 4 N)``         128 samples (8 ms)
    ``encoder.1``             ``(B, 64, 2 N)``          256 samples (16 ms)
    ``encoder.2``             ``(B, 64, N)``            512 samples (32 ms)
    ``encoder.3``             ``(B, 128, N)``           512 samples (32 ms)
    ``decoder.hidden``        ``(B, 128, N)``           LSTM hidden state h
    ``decoder.decoder``       ``(B, 1, N)``             speech probability
    ========================  ========================  =====================

    where ``B`` is the batch size and ``N`` the number of chunks.

    Examples
    --------
    >>> model = SileroVAD().eval()
    >>> sum(p.numel() for p in model.parameters())
    243585
    >>> model(torch.zeros(2, 1600)).shape
    torch.Size([2, 4])
    """

    sample_rate: int = SAMPLE_RATE
    chunk_samples: int = CHUNK_SAMPLES
    context_samples: int = CONTEXT_SAMPLES

    def __init__(self) -> None:
        super().__init__()
        self.stft = STFTMagnitude(filter_length=256, hop_length=128, pad=CONTEXT_SAMPLES)
        self.encoder = nn.Sequential(
            SileroVadBlock(129, 128, stride=1, frames_per_chunk=4),
            SileroVadBlock(128, 64, stride=2, frames_per_chunk=4),
            SileroVadBlock(64, 64, stride=2, frames_per_chunk=2),
            SileroVadBlock(64, 128, stride=1, frames_per_chunk=1),
        )
        self.decoder = VADDecoderRNN(128)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Speech probability of every 512-sample chunk of every clip.

        Parameters
        ----------
        waveform : torch.Tensor
            Float audio at 16 kHz, shape ``(batch, n_samples)`` (a 1-D tensor is
            treated as a batch of one).  The end is zero-padded to a multiple of
            512 samples.

        Returns
        -------
        torch.Tensor
            Shape ``(batch, n_chunks)`` with ``n_chunks = ceil(n_samples / 512)``.
        """
        probs, _, _ = self.forward_with_state(waveform)
        return probs

    def forward_with_state(
        self,
        waveform: torch.Tensor,
        context: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Streaming variant of :meth:`forward` that takes and returns the state.

        Parameters
        ----------
        waveform : torch.Tensor
            Shape ``(batch, n_samples)`` at 16 kHz; zero-padded to a multiple of 512.
        context : torch.Tensor or None, default=None
            The 64 samples preceding ``waveform``, shape ``(batch, 64)``; zeros if None.
        state : torch.Tensor or None, default=None
            LSTM state of shape ``(2, batch, 128)``; zeros if None.

        Returns
        -------
        probs : torch.Tensor
            Shape ``(batch, n_chunks)``.
        context : torch.Tensor
            Last 64 samples of the (padded) input, shape ``(batch, 64)``.
        state : torch.Tensor
            LSTM state after the last chunk, shape ``(2, batch, 128)``.
        """
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(
                f"waveform must have shape (batch, n_samples), got {tuple(waveform.shape)}"
            )
        if waveform.shape[-1] == 0:
            raise ValueError("waveform is empty")
        waveform = waveform.to(self.stft.forward_basis_buffer.dtype)
        chunks = frame_chunks(waveform)  # (batch, n_chunks, 576)
        if context is not None:
            chunks = chunks.clone()
            chunks[:, 0, :CONTEXT_SAMPLES] = context.to(chunks)
        new_context = chunks[:, -1, -CONTEXT_SAMPLES:]
        features = self.encoder(self.stft(chunks))  # (batch, 128, n_chunks)
        probs, new_state = self.decoder(features, state)
        return probs, new_context, new_state


def _jit_model_path() -> Path:
    """Path of ``silero_vad/data/silero_vad.jit`` in the installed package."""
    try:
        import importlib.resources

        import silero_vad  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_silero_vad needs the silero-vad package: pip install silero-vad"
        ) from exc
    path = Path(str(importlib.resources.files("silero_vad") / "data" / "silero_vad.jit"))
    if not path.is_file():  # pragma: no cover - depends on the environment
        raise FileNotFoundError(
            f"{path} not found; reinstall silero-vad (pip install --force-reinstall silero-vad)"
        )
    return path


def load_silero_vad(path: str | Path | None = None) -> SileroVAD:
    """Build a :class:`SileroVAD` with the pretrained 16 kHz weights.

    Parameters
    ----------
    path : str, Path or None, default=None
        TorchScript file to read; by default ``silero_vad/data/silero_vad.jit``
        of the installed ``silero-vad`` package (no network access).

    Returns
    -------
    SileroVAD
        The model in eval mode.

    Raises
    ------
    ImportError
        If ``path`` is None and silero-vad is not installed.
    """
    if path is None:
        path = _jit_model_path()
    with warnings.catch_warnings():
        # torch >= 2.10 deprecates TorchScript loading; we only read the weights.
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(path), map_location="cpu")
    prefix = "_model."
    weights = {
        key[len(prefix) :]: value
        for key, value in scripted.state_dict().items()
        if key.startswith(prefix)
    }
    model = SileroVAD()
    model.load_state_dict(weights, strict=True)
    return model.eval()


def speech_probability(
    model: SileroVAD, waveform: torch.Tensor | ArrayLike, sample_rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """Speech probability per 32 ms chunk, without gradients.

    Parameters
    ----------
    model : SileroVAD
        The model, e.g. from :func:`load_silero_vad`.
    waveform : torch.Tensor or array-like
        Shape ``(n_samples,)`` or ``(batch, n_samples)``.
    sample_rate : int, default=16000
        Sampling rate of ``waveform``; other rates are resampled to 16 kHz with
        :func:`librosa.resample`.

    Returns
    -------
    torch.Tensor
        Shape ``(n_chunks,)`` for 1-D input, otherwise ``(batch, n_chunks)``.

    Examples
    --------
    >>> speech_probability(SileroVAD().eval(), torch.zeros(1024)).shape
    torch.Size([2])
    """
    x = torch.as_tensor(waveform, dtype=torch.float32)
    if sample_rate != SAMPLE_RATE:
        import librosa

        x = torch.from_numpy(
            librosa.resample(x.numpy(), orig_sr=sample_rate, target_sr=SAMPLE_RATE)
        ).float()
    squeeze = x.dim() == 1
    with torch.no_grad():
        probs = model(x.reshape(-1, x.shape[-1]))
    return probs[0] if squeeze else probs


def clip_speech_score(probs: torch.Tensor) -> torch.Tensor:
    """Per-chunk speech probabilities ``(batch, n_chunks)`` -> clip scores ``(batch, 2)``.

    Ordered ``[no speech, speech]``, with p(speech) = the largest chunk probability ("is there speech
    anywhere in the clip"). A module-level function, so a pipeline using it as
    ``classifier_output`` pickles.

    Examples
    --------
    >>> clip_speech_score(torch.tensor([[0.1, 0.7, 0.2]])).tolist()
    [[0.30000001192092896, 0.699999988079071]]
    """
    p = probs.amax(dim=1)
    return torch.stack([1 - p, p], dim=1)
