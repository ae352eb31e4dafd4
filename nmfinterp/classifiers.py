"""A small log-mel CNN audio classifier that takes waveforms, and helpers to train and run it.

:class:`LogMelCNN` computes its own log-mel spectrogram inside ``forward``, so it maps a batch
of float32 waveforms ``(batch, n_samples)`` straight to logits: exactly the kind of black box
the interpreter explains. Its four convolutional blocks are the modules ``blocks.0`` ..
``blocks.3``; each outputs ``(batch, channels, mel_bins, frames)`` with time on the last axis,
so a forward hook on one of them reads hidden features aligned with the input's time axis.

:func:`train_classifier` fits it with Adam and simple waveform augmentation (random circular
shift and random gain), deterministically from ``random_state``; :func:`predict_logits`
runs it on a numpy batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_waveforms

__all__ = ["LogMelCNN", "predict_logits", "predict_proba", "train_classifier"]


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}={value!r}; expected a positive integer.")
    return int(value)


def _seed_from(random_state: int | None) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise ValueError(f"random_state={random_state!r}; expected an integer or None.")
    return int(random_state)


class LogMelCNN(nn.Module):
    """Waveform-in CNN classifier with a built-in log-mel front end.

    ``forward`` computes ``log(1e-6 + mel)`` of the power STFT (Hann window and librosa's mel
    filterbank, both registered buffers), normalises every mel bin with a batch norm
    (``input_norm``), then applies ``len(channels)`` blocks
    ``Conv2d(3x3) - BatchNorm2d - ReLU - MaxPool2d(2)`` (``blocks.0`` ...), averages over
    frequency, pools over time (max + mean), and a linear layer ``fc`` gives the logits.

    Parameters
    ----------
    n_classes : int
        Number of output classes (>= 2).
    sr : int, default 16000
        Sample rate the model expects, in Hz (used for the mel filterbank).
    n_fft : int, default 1024
        STFT size (Hann window of the same length).
    hop_length : int, default 320
        STFT hop (20 ms at 16 kHz).
    n_mels : int, default 64
        Number of mel bands (from 0 Hz to ``sr / 2``).
    channels : sequence of int, default (16, 32, 64, 128)
        Output channels of each convolutional block.
    dropout : float, default 0.0
        Dropout before ``fc`` during training. It draws from torch's global generator, so keep
        0 when you need training runs that do not depend on the global seed.
    random_state : int or None, default 0
        Seed of the weight initialisation (a local :class:`torch.Generator`; the global seed
        is neither read nor changed). ``None`` draws a fresh seed.

    Attributes
    ----------
    history_ : dict
        Set by :func:`train_classifier`: per-epoch ``"loss"`` and ``"accuracy"`` on the
        training data (plus ``"val_accuracy"`` when validation data was given) and
        ``"train_time"`` in seconds.

    Examples
    --------
    >>> import torch
    >>> model = LogMelCNN(n_classes=3).eval()
    >>> x = torch.zeros(2, 16000)
    >>> model(x).shape
    torch.Size([2, 3])
    >>> model.log_mel(x).shape  # (batch, n_mels, frames)
    torch.Size([2, 64, 51])
    >>> feats = {}
    >>> hook = model.get_submodule("blocks.1").register_forward_hook(
    ...     lambda mod, inp, out: feats.update(b1=out))
    >>> _ = model(x); hook.remove()
    >>> feats["b1"].shape  # (batch, channels, mel', time'), time last
    torch.Size([2, 32, 16, 13])
    """

    def __init__(
        self,
        n_classes: int,
        sr: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_mels: int = 64,
        channels: Sequence[int] = (16, 32, 64, 128),
        dropout: float = 0.0,
        random_state: int | None = 0,
    ) -> None:
        super().__init__()
        n_classes = _check_positive_int(n_classes, "n_classes")
        if n_classes < 2:
            raise ValueError(f"n_classes={n_classes}; expected at least 2 classes.")
        sr = _check_positive_int(sr, "sr")
        n_fft = _check_positive_int(n_fft, "n_fft")
        hop_length = _check_positive_int(hop_length, "hop_length")
        n_mels = _check_positive_int(n_mels, "n_mels")
        channels = tuple(_check_positive_int(c, "channels[i]") for c in channels)
        if not channels:
            raise ValueError("channels is empty; expected at least one convolutional block.")
        if n_mels < 2 ** len(channels):
            raise ValueError(
                f"n_mels={n_mels} is too small for {len(channels)} blocks that each halve the "
                f"frequency axis; expected n_mels >= {2 ** len(channels)}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r}; expected a probability in [0, 1).")
        self.n_classes = n_classes
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.channels = channels
        self.dropout = float(dropout)

        import librosa  # slow import: only when a model is built

        mel = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
        self.register_buffer("window", torch.hann_window(n_fft))
        self.register_buffer(
            "mel_fb", torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))
        )
        # torch's layers initialise themselves from the global generator: build them inside
        # fork_rng so that its state is restored, then initialise from a local generator.
        with torch.random.fork_rng(devices=[]):
            self.input_norm = nn.BatchNorm2d(n_mels)
            blocks = []
            c_in = 1
            for c_out in channels:
                blocks.append(
                    nn.Sequential(
                        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                        nn.BatchNorm2d(c_out),
                        nn.ReLU(inplace=True),
                        nn.MaxPool2d(2, ceil_mode=True),
                    )
                )
                c_in = c_out
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(2 * c_in, n_classes)
        self.reset_parameters(random_state)

    def reset_parameters(self, random_state: int | None = 0) -> None:
        """(Re-)initialise every weight from a local generator seeded with ``random_state``."""
        g = torch.Generator().manual_seed(_seed_from(random_state))
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(
                        m.weight, mode="fan_out", nonlinearity="relu", generator=g
                    )
                elif isinstance(m, nn.BatchNorm2d):
                    m.reset_running_stats()
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    bound = 1.0 / np.sqrt(m.in_features)
                    nn.init.uniform_(m.weight, -bound, bound, generator=g)
                    nn.init.zeros_(m.bias)

    def n_frames(self, n_samples: int) -> int:
        """Frames of the log-mel spectrogram of a clip of ``n_samples`` samples."""
        return 1 + n_samples // self.hop_length

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrogram ``(batch, n_mels, frames)`` of waveforms ``(batch, n_samples)``."""
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2:
            raise ValueError(
                f"LogMelCNN expects waveforms of shape (batch, n_samples); got shape {tuple(x.shape)}."
            )
        spec = torch.stft(
            x.float(),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real**2 + spec.imag**2
        return torch.log(1e-6 + torch.matmul(self.mel_fb, power))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` of waveforms ``(batch, n_samples)`` (or one 1-D clip)."""
        z = self.log_mel(x)  # (batch, mel, time)
        z = self.input_norm(z.unsqueeze(-1)).squeeze(-1).unsqueeze(1)  # (batch, 1, mel, time)
        z = self.blocks(z)  # (batch, C, mel', time')
        z = z.mean(dim=2)  # (batch, C, time')
        z = torch.cat([z.amax(dim=2), z.mean(dim=2)], dim=1)
        if self.dropout > 0:
            z = F.dropout(z, self.dropout, self.training)
        return self.fc(z)


def _as_batch(waveforms, name: str = "waveforms") -> np.ndarray:
    return np.ascontiguousarray(check_waveforms(waveforms, name=name), dtype=np.float32)


def _check_labels(labels, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(
            f"labels has shape {y.shape}; expected one integer label per clip, shape ({n},)."
        )
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"labels have dtype {y.dtype}; expected integer class indices.")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"labels range from {y.min()} to {y.max()}; expected class indices in 0 .. {n_classes - 1} "
            "(the model's n_classes)."
        )
    return y.astype(np.int64)


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def predict_logits(model: nn.Module, waveforms, batch_size: int = 64) -> np.ndarray:
    """Run ``model`` in eval mode (no gradients) on a batch of waveforms.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a float32 tensor ``(batch, n_samples)`` to logits ``(batch, n_classes)``.
    waveforms : array-like, shape (n_clips, n_samples)
    batch_size : int, default 64

    Returns
    -------
    ndarray of float32, shape (n_clips, n_classes)

    Examples
    --------
    >>> model = LogMelCNN(n_classes=4, channels=(8, 8))
    >>> predict_logits(model, np.zeros((3, 8000), dtype=np.float32)).shape
    (3, 4)
    """
    batch_size = _check_positive_int(batch_size, "batch_size")
    x = _as_batch(waveforms)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[start : start + batch_size]).to(device)
                out.append(model(xb).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.float32, copy=False)


def predict_proba(model: nn.Module, waveforms, batch_size: int = 64) -> np.ndarray:
    """Softmax of :func:`predict_logits`, shape ``(n_clips, n_classes)``."""
    logits = predict_logits(model, waveforms, batch_size=batch_size).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _augment(xb: torch.Tensor, g: torch.Generator, max_gain_db: float, roll: bool) -> torch.Tensor:
    n, length = xb.shape
    if roll:
        shift = torch.randint(0, length, (n, 1), generator=g)
        idx = (torch.arange(length).unsqueeze(0) + shift) % length
        xb = torch.gather(xb, 1, idx)
    if max_gain_db > 0:
        gain_db = (torch.rand(n, 1, generator=g) * 2 - 1) * max_gain_db
        xb = xb * 10.0 ** (gain_db / 20.0)
    return xb


def train_classifier(
    model: nn.Module,
    waveforms,
    labels,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 1e-3,
    random_state: int | None = 0,
    augment: bool = True,
    verbose: bool = False,
    device: str | torch.device = "cpu",
    weight_decay: float = 1e-4,
    max_gain_db: float = 6.0,
    validation_data: tuple | None = None,
) -> nn.Module:
    """Train a waveform classifier with Adam and cross-entropy; return it in eval mode.

    The learning rate follows a cosine decay from ``lr`` to ``lr / 100`` over all steps.
    Shuffling and augmentation draw from a local :class:`torch.Generator` seeded with
    ``random_state`` (torch's global generator is neither seeded nor used), so with a
    deterministically initialised model (e.g. ``LogMelCNN(..., random_state=0)``, no dropout)
    two runs with the same ``random_state`` give the same weights on the same machine.

    Parameters
    ----------
    model : torch.nn.Module
        Maps float32 waveforms ``(batch, n_samples)`` to logits ``(batch, n_classes)``, e.g.
        :class:`LogMelCNN`. Trained in place.
    waveforms : array-like, shape (n_clips, n_samples)
    labels : array-like of int, shape (n_clips,)
        Class indices in ``0 .. n_classes - 1``.
    epochs : int, default 30
    batch_size : int, default 32
    lr : float, default 1e-3
        Initial learning rate of Adam.
    random_state : int or None, default 0
        Seed of the shuffling and augmentation; ``None`` draws a fresh one.
    augment : bool, default True
        Per-clip random circular time shift (``np.roll`` by a uniform number of samples) and
        random gain (uniform in +-``max_gain_db`` dB).
    verbose : bool, default False
        Print loss and accuracy after every epoch.
    device : str or torch.device, default "cpu"
        Where to train; the model is moved there (and stays there).
    weight_decay : float, default 1e-4
        L2 penalty of Adam.
    max_gain_db : float, default 6.0
        Range of the random gain augmentation.
    validation_data : (waveforms, labels), optional
        Evaluated after every epoch; the accuracies go to ``history_["val_accuracy"]``.

    Returns
    -------
    torch.nn.Module
        The same ``model``, in eval mode, with an attribute ``history_``: a dict with the
        per-epoch mean training ``"loss"`` and ``"accuracy"`` (on augmented batches, in train
        mode), ``"val_accuracy"`` if ``validation_data`` was given, and ``"train_time"``
        (seconds).

    Examples
    --------
    >>> from nmfinterp.datasets import make_synthetic_sounds
    >>> ds = make_synthetic_sounds(n_per_class=4, duration=0.5)
    >>> model = LogMelCNN(ds.n_classes, sr=ds.sr, channels=(8, 8))
    >>> model = train_classifier(model, ds.waveforms, ds.labels, epochs=2)
    >>> len(model.history_["loss"]), model.training
    (2, False)
    """
    epochs = _check_positive_int(epochs, "epochs")
    batch_size = _check_positive_int(batch_size, "batch_size")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r}; expected a positive learning rate.")
    x = _as_batch(waveforms)
    n_classes = getattr(model, "n_classes", None)
    if n_classes is None:
        with torch.no_grad():
            was = model.training
            model.eval()
            n_classes = int(model(torch.from_numpy(x[:1]).to(_model_device(model))).shape[-1])
            model.train(was)
    y = _check_labels(labels, len(x), n_classes)
    if validation_data is not None:
        if len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (waveforms, labels).")
        x_val = _as_batch(validation_data[0], name="validation waveforms")
        y_val = _check_labels(validation_data[1], len(x_val), n_classes)

    device = torch.device(device)
    model.to(device)
    g = torch.Generator().manual_seed(_seed_from(random_state))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = int(np.ceil(len(x) / batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs * steps_per_epoch, eta_min=lr / 100
    )
    x_t = torch.from_numpy(x)
    y_t = torch.from_numpy(y)
    history: dict[str, list[float] | float] = {"loss": [], "accuracy": []}
    if validation_data is not None:
        history["val_accuracy"] = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        total_loss, correct, seen = 0.0, 0, 0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2 and len(x) >= 2:
                continue  # batch norm needs more than one clip per batch
            xb, yb = x_t[idx], y_t[idx]
            if augment:
                xb = _augment(xb, g, max_gain_db, roll=True)
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == yb).sum())
            seen += len(idx)
        history["loss"].append(total_loss / max(seen, 1))
        history["accuracy"].append(correct / max(seen, 1))
        msg = f"epoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.4f}, acc {history['accuracy'][-1]:.3f}"
        if validation_data is not None:
            acc = float(np.mean(predict_logits(model, x_val).argmax(1) == y_val))
            history["val_accuracy"].append(acc)
            msg += f", val acc {acc:.3f}"
        if verbose:
            print(f"{msg} ({time.perf_counter() - t0:.1f} s)", flush=True)
    history["train_time"] = time.perf_counter() - t0
    model.history_ = history
    return model.eval()
