"""Read hidden layers of a frozen torch classifier with forward hooks (after captum's LayerActivation)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import nn

_AUTO_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LSTM, nn.GRU, nn.TransformerEncoderLayer)


def default_layers(classifier: nn.Module, n: int = 3) -> list[str]:
    """The last ``n`` convolutional/recurrent layers, L2I's choice ("the last conv blocks")."""
    names = [name for name, m in classifier.named_modules() if isinstance(m, _AUTO_TYPES)]
    if not names:
        raise ValueError(
            "could not find a convolutional or recurrent layer in the classifier to read; "
            "pass layers=[...] with names from classifier.named_modules()."
        )
    return names[-n:]


def resolve_layers(classifier: nn.Module, layers: Sequence[str] | str | None) -> list[str]:
    """Check the layer names against the classifier, with one clear error for unknown names."""
    if not isinstance(classifier, nn.Module):
        raise TypeError(
            f"classifier is a {type(classifier).__name__}; expected a torch.nn.Module "
            "(its hidden layers are read with forward hooks)."
        )
    if layers is None:
        return default_layers(classifier)
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty; expected at least one layer name of the classifier.")
    modules = dict(classifier.named_modules())
    missing = [name for name in layers if name not in modules or name == ""]
    if missing:
        known = [n for n in modules if n][:25]
        raise ValueError(
            f"the classifier has no layer named {missing}; expected names from "
            f"classifier.named_modules(), such as {known}."
        )
    return layers


_FROZEN_LOCK = threading.Lock()
_FROZEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> [users, mode]


@contextmanager
def frozen(classifier: nn.Module):
    """Eval mode for the duration, then the classifier's own mode again; parameters untouched.

    Safe when several threads share one classifier (joblib's threading or Dask's thread
    workers): the first to enter switches it to eval mode, the last to leave restores its mode.
    """
    with _FROZEN_LOCK:
        entry = _FROZEN.get(classifier)
        if entry is None:
            entry = _FROZEN[classifier] = [0, classifier.training]
            classifier.eval()
        entry[0] += 1
    try:
        yield classifier
    finally:
        with _FROZEN_LOCK:
            entry[0] -= 1
            if entry[0] == 0:
                del _FROZEN[classifier]
                classifier.train(entry[1])


def as_time_series(t: torch.Tensor) -> torch.Tensor:
    """Any hidden output to ``(batch, channels, time)``: time is the last axis, the rest are channels."""
    if t.ndim == 1:
        return t[:, None, None]
    if t.ndim == 2:  # pooled / fully connected: one value for the whole clip
        return t[:, :, None]
    return t.reshape(t.shape[0], -1, t.shape[-1])


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list) and out:
        return _first_tensor(out[0])
    raise TypeError(
        f"a hooked layer returned {type(out).__name__}; expected a tensor (or a tuple of them)."
    )


def classifier_device(classifier: nn.Module) -> torch.device:
    p = next(iter(classifier.parameters()), None)
    if p is None:
        p = next(iter(classifier.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


def run_with_hooks(
    classifier: nn.Module,
    layers: Sequence[str],
    waveforms: torch.Tensor,
    classifier_input: Callable | None = None,
    classifier_output: Callable | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One forward pass of the classifier that also returns the named layers' outputs.

    Returns the hidden outputs as ``(batch, channels, time)`` tensors and the classifier's scores
    ``(batch, n_classes)``. Gradients flow if the caller enables them (the classifier's parameters
    are never updated here).
    """
    modules = dict(classifier.named_modules())
    captured: dict[str, torch.Tensor] = {}
    me = (
        threading.get_ident()
    )  # another thread's forward pass through a shared classifier is not ours

    def hook(module, inputs, output, name):
        if threading.get_ident() == me:
            captured[name] = _first_tensor(output)

    handles = [
        modules[name].register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name))
        for name in layers
    ]
    try:
        inputs = classifier_input(waveforms) if classifier_input is not None else waveforms
        out = classifier(inputs)
    except Exception as exc:
        raise RuntimeError(
            f"the classifier ({type(classifier).__name__}, read at layers {list(layers)}) raised "
            f"{type(exc).__name__} on a batch of shape {tuple(waveforms.shape)}: {exc}. "
            "Check classifier_input: it must turn waveforms (batch, n_samples) into what the classifier takes."
        ) from exc
    finally:
        for h in handles:
            h.remove()
    missing = [name for name in layers if name not in captured]
    if missing:
        raise ValueError(
            f"layers {missing} were not run by the classifier's forward pass; pick layers it uses."
        )
    scores = classifier_output(out) if classifier_output is not None else _first_tensor(out)
    if scores.ndim != 2:
        raise ValueError(
            f"the classifier returned scores of shape {tuple(scores.shape)}; expected (batch, n_classes). "
            "Pass classifier_output=... to turn its output into per-clip class scores."
        )
    return [as_time_series(captured[name]) for name in layers], scores
