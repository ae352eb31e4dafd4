"""Amortised refinement: a network that predicts the refined gates of a decision in one pass.

``explain``'s default refinement (:func:`~nmfinterp.explain.refine_selection`) takes ``refine_steps``
Adam steps through the classifier for every batch it explains. :func:`fit_gates` trains, once, a
small convolutional network on training clips (and on random two-clip mixtures of them) to lower
the same objective, so that ``explain(..., amortised=True)`` chooses the gates with one pass of
that network: about the cost of ``refine_steps=0``. The training costs what refining the training
clips about ``epochs`` times would; docs/benchmarks.md measures both the cost and how faithful the
amortised gates are next to the refined ones. With ``distil_epochs`` the network first learns the
gates the refinement itself finds on the training rows (:func:`teacher_gates`), then the objective.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .explain import ENERGY_PENALTY, MASK_RATIO, _Faithfulness, relevance, soft_mask

#: how much sharper than a plain sigmoid the gates are at the end of training (annealed
#: geometrically from 1): training with soft gates and explaining with hard ones otherwise disagree
SHARPEN = 5.0
#: Adam's rate while the network learns the refinement's own gates (``distil_epochs``)
DISTIL_LR = 3e-3
#: the residual term's weight fit_gates trains with by default: explain's own (0.5; docs/method.md,
#: "Amortised gates", measures it against 0.25 and 1, the weight before)
GATES_RESIDUAL_WEIGHT = 0.5


class GateNet(nn.Module):
    """Gate logits ``(n, K, T)`` from the interpreter's H, Θ's weights and the explained classes.

    Per component and frame it sees the component's contribution to the class (H times the centred
    θ, scaled per clip), its activation (log, scaled per clip) and the interpreter's own selection
    (the centred relevance over 0.1, clipped to ±3, as the refinement's starting point); a 1x1
    convolution mixes those 3K channels down to ``hidden``, two temporal convolutions of ``width``
    frames follow, and a 1x1 one predicts a correction added to that starting point. The last
    layer starts at zero, so an untrained GateNet gives the interpreter's own selection.

    With ``context_channels`` > 0 the network also reads the interpreter's hidden representation
    of the clip (``InterpreterNet.hidden``: the classifier's layers as Ψ's decoder reads them, which
    ``explain`` computes anyway): a 1x1 convolution of it, zero at the start, is added to the
    mixing layer's output. It sees then what the classifier heard, not only the K activations.

    ``bottleneck=False`` is the network of nmfinterp before the 1x1 mixing layer (its first
    temporal convolution read the 3K channels directly, about twice the work per frame); files
    saved with it load as such. Files saved before ``context_channels`` existed load with 0.
    """

    def __init__(
        self,
        n_components: int,
        hidden: int = 32,
        width: int = 5,
        bottleneck: bool = True,
        context_channels: int = 0,
    ):
        super().__init__()
        if context_channels and not bottleneck:
            raise ValueError("context_channels needs the 1x1 mixing layer (bottleneck=True).")
        self.n_components, self.hidden, self.width = n_components, hidden, width
        self.bottleneck, self.context_channels = bottleneck, context_channels
        pad = width // 2
        first = (
            [
                nn.Conv1d(3 * n_components, hidden, 1),
                nn.ReLU(),
                nn.Conv1d(hidden, hidden, width, padding=pad),
            ]
            if bottleneck
            else [nn.Conv1d(3 * n_components, hidden, width, padding=pad)]
        )
        self.body = nn.Sequential(
            *first,
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, width, padding=pad),
            nn.ReLU(),
            nn.Conv1d(hidden, n_components, 1),
        )
        self.register_module(
            "context", nn.Conv1d(context_channels, hidden, 1) if context_channels else None
        )
        zeroed = [self.body[-1]] + ([self.context] if context_channels else [])
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def __setstate__(self, state):
        state.setdefault("bottleneck", False)  # pickled by nmfinterp before the mixing layer
        state.setdefault("context_channels", 0)  # ... and before the hidden representation
        state["_modules"].setdefault("context", None)
        super().__setstate__(state)

    def forward(
        self,
        H: torch.Tensor,
        pooled: torch.Tensor,
        theta: torch.Tensor,
        classes,
        context: torch.Tensor | None = None,
    ):
        """Gate logits; ``context``: the hidden representation ``(n, context_channels, T)``,
        required when the network reads one and ignored otherwise."""
        if self.context_channels and (context is None or context.shape[1] != self.context_channels):
            got = None if context is None else tuple(context.shape)
            raise ValueError(
                f"this gate network reads the interpreter's hidden representation, "
                f"(n, {self.context_channels}, T); got {got}."
            )
        start = (relevance(pooled, theta, classes, centered=True) / 0.1).clamp(-3.0, 3.0)
        centred = theta - theta.mean(dim=0, keepdim=True)
        contrib = H * centred[classes][:, :, None]
        contrib = contrib / contrib.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        level = torch.log1p(H / H.mean(dim=(1, 2), keepdim=True).clamp_min(1e-8))
        if not self.bottleneck:
            feats = torch.cat([contrib, level, start[:, :, None].expand_as(H) / 3.0], dim=1)
            return start[:, :, None] + self.body(feats)
        # the 1x1 mixing layer on the three blocks of channels without concatenating them; the
        # selection is constant over the frames, so its part is one column per clip
        K, mix = self.n_components, self.body[0]
        w = mix.weight[:, :, 0]
        fixed = (start / 3.0) @ w[:, 2 * K :].T + mix.bias  # (n, hidden)
        y = torch.matmul(w[:, :K], contrib) + torch.matmul(w[:, K : 2 * K], level)
        if self.context is not None:
            y = y + self.context(context)
        return start[:, :, None] + self.body[1:](y + fixed[:, :, None])


def _mixture_rounds(x: np.ndarray, classes: np.ndarray, n_rounds: int, rng):
    """For each of ``n_rounds`` rounds: the clips ``a`` (all of them, in order, less those paired
    with their own class), a random partner ``b`` of another class for each, and the factors
    ``ratio · gain`` that put the partner at -12..0 dB under the clip (RMS ratio, random gain)."""
    # each clip's RMS once, not each round's copies of the clips
    level = np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True)) + 1e-8
    for _ in range(n_rounds):
        a = np.arange(len(x))
        b = rng.permutation(len(x))
        ok = classes[a] != classes[b]
        a, b = a[ok], b[ok]
        gain = rng.uniform(0.25, 1.0, (len(a), 1))
        yield a, b, level[a] / level[b], gain


def _mixtures(x: np.ndarray, classes: np.ndarray, n_rounds: int, rng) -> np.ndarray:
    """Each clip plus another clip the classifier puts in another class, the other at -12..0 dB."""
    out = [
        (x[a] + x[b] * ratio * gain).astype(np.float32)
        for a, b, ratio, gain in _mixture_rounds(x, classes, n_rounds, rng)
    ]
    return np.concatenate(out) if out else np.zeros((0, x.shape[1]), np.float32)


def _activations(interpreter, x: np.ndarray, context: bool = False):
    """H, pooled z, the classifier's scores and (with ``context``, else None) the interpreter's
    hidden representation for clips ``x``, batch by batch."""
    spec, net = interpreter.spectrogram_, interpreter.module_
    n_frames = spec._n_frames(x.shape[-1])
    Hs, zs, cs, hs = [], [], [], []
    for _, feats, scores in interpreter._batches(x):
        with torch.no_grad():
            hidden = net.hidden(feats, n_frames)
            H = net.decoder(hidden)
            Hs.append(H)
            zs.append(net.pool(H))
            if context:
                hs.append(hidden)
        cs.append(scores)
    return torch.cat(Hs), torch.cat(zs), torch.cat(cs), torch.cat(hs) if context else None


def training_rows(interpreter, X: np.ndarray, mixtures: int, rng, context: bool = False):
    """What :func:`fit_gates` trains on: the clips ``X`` and ``mixtures`` rounds of two-clip
    mixtures of them (:func:`_mixtures`, drawn from ``rng``), as ``(waveforms, H, z, scores,
    hidden)`` tensors, one row per clip; ``hidden`` (the interpreter's hidden representation) is
    None unless ``context``."""
    H, z, scores, hidden = _activations(interpreter, X, context)
    mixed = _mixtures(X, scores.argmax(-1).numpy(), mixtures, rng)
    if len(mixed):
        Hm, zm, sm, hm = _activations(interpreter, mixed, context)
        H, z, scores = torch.cat([H, Hm]), torch.cat([z, zm]), torch.cat([scores, sm])
        hidden = torch.cat([hidden, hm]) if context else None
    waves = torch.as_tensor(np.concatenate([X.astype(np.float32), mixed]))
    return waves, H, z, scores, hidden


def _cosine_adam(net: nn.Module, lr: float, steps: int, weight_decay: float = 0.0):
    """Adam at ``lr`` (AdamW with ``weight_decay``) and its rate's half cosine down to
    ``lr / 100`` over ``steps`` steps."""
    opt = (
        torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        if weight_decay
        else torch.optim.Adam(net.parameters(), lr=lr)
    )
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(steps, 1), eta_min=lr / 100
    )


def _descend(opt, schedule, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss``, then one of the rate's schedule."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    schedule.step()


def teacher_gates(interpreter, waves: torch.Tensor, mask_ratio: str) -> torch.Tensor:
    """``explain``'s default refinement of each row of ``waves`` (the classifier's decision on
    it): its gates, ``(n, K, T)`` floats of 0 and 1, what :func:`fit_gates` distils."""
    from .explain import explain_clips

    ex = explain_clips(interpreter, waves.numpy(), mask_ratio=mask_ratio)
    return torch.as_tensor(np.stack(ex.gates)).float()


def fit_gates(
    interpreter,
    X: np.ndarray,
    *,
    epochs: int,
    lr: float,
    hidden: int,
    mixtures: int,
    distil_epochs: int = 0,
    distil_weight: float = 0.0,
    read_hidden: bool = True,
    energy_penalty: float = ENERGY_PENALTY,
    contrast_penalty: float = 0.0,
    residual_weight: float = GATES_RESIDUAL_WEIGHT,
    mask_ratio: str = MASK_RATIO,
    batch_size: int = 16,
    random_state=None,
    verbose: int = 0,
) -> tuple[GateNet, list[dict]]:
    """Train a :class:`GateNet` for a fitted single-label interpreter on clips ``X`` (validated).

    The loss is :func:`~nmfinterp.explain.refine_selection`'s objective of the classifier's own
    decision on each clip (``contrast_penalty`` needs the interpreter's ``class_usage_``; the
    residual's term weighed by ``residual_weight``, the mask the ``mask_ratio`` one), with
    soft gates sharpened over the epochs (``SHARPEN``); ``mixtures`` rounds of two-clip mixtures of
    ``X`` (see :func:`_mixtures`) are added to the clips; with ``read_hidden`` the network also
    reads the interpreter's hidden representation (``GateNet``'s ``context_channels``).

    With ``distil_epochs`` or ``distil_weight``, ``explain``'s default refinement first explains
    every training row (:func:`teacher_gates`); the network then learns those gates for
    ``distil_epochs`` epochs (binary cross-entropy on its logits, Adam at ``DISTIL_LR``) before the
    ``epochs`` of the objective, which start from sharp gates (``SHARPEN``) and keep
    ``distil_weight`` times that cross-entropy in the loss. Returns the network (in eval mode, on
    the CPU) and the mean loss, seconds and ``stage`` ("distil" or "objective") of each epoch.
    """
    from .hooks import frozen

    rng = np.random.default_rng(random_state)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
    waves, H, z, scores, hidden_rep = training_rows(interpreter, X, mixtures, rng, read_hidden)
    decided = scores.argmax(-1)
    W = torch.as_tensor(interpreter.dictionary_.dictionary_, dtype=torch.float32)
    theta = interpreter.module_.theta.weight.detach()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        channels = hidden_rep.shape[1] if read_hidden else 0
        net = GateNet(W.shape[1], hidden, context_channels=channels)
    n = len(waves)
    history = []
    distil = bool(distil_epochs or distil_weight)
    if distil:
        targets = teacher_gates(interpreter, waves, mask_ratio)
        bce = nn.BCEWithLogitsLoss()
        opt, schedule = _cosine_adam(net, DISTIL_LR, distil_epochs * -(-n // batch_size))
        for _ in tqdm(range(distil_epochs), desc="gates (distil)", disable=verbose <= 0):
            total, t0 = 0.0, time.perf_counter()
            for idx in torch.randperm(n, generator=gen).split(batch_size):
                context = hidden_rep[idx] if read_hidden else None
                logits = net(H[idx], z[idx], theta, decided[idx], context)
                loss = bce(logits, targets[idx])
                _descend(opt, schedule, loss)
                total += float(loss.detach()) * len(idx)
            history.append(
                {"loss": total / n, "seconds": time.perf_counter() - t0, "stage": "distil"}
            )
    opt, schedule = _cosine_adam(net, lr, epochs * -(-n // batch_size))
    for epoch in tqdm(range(epochs), desc="gates", disable=verbose <= 0):
        # sharp from the start once the network has learned the refinement's (hard) gates
        sharp = SHARPEN if distil else SHARPEN ** (epoch / max(epochs - 1, 1))
        total, t0 = 0.0, time.perf_counter()
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            objective = _Faithfulness(
                interpreter,
                waves[idx],
                decided[idx],
                "linear",
                energy_penalty,
                contrast_penalty,
                H[idx],
                scores[idx],
                residual_weight,
                mask_ratio,
            )
            with frozen(interpreter.classifier), torch.enable_grad():
                context = hidden_rep[idx] if read_hidden else None
                logits = net(H[idx], z[idx], theta, decided[idx], context)
                gates = torch.sigmoid(logits * sharp)
                loss = objective(soft_mask(W, H[idx], gates, ratio=mask_ratio)).mean()
                if distil_weight:
                    loss = loss + distil_weight * bce(logits, targets[idx])
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the gate network's loss became {float(loss.detach())} in epoch "
                        f"{epoch + 1}; lower lr, or check the classifier for NaN/inf outputs."
                    )
                _descend(opt, schedule, loss)
            total += float(loss.detach()) * len(idx)
        history.append(
            {"loss": total / n, "seconds": time.perf_counter() - t0, "stage": "objective"}
        )
    return net.eval(), history


# ---------------------------------------------------------------------------------------------
# source gates: which components carry the decided class's source, learned from mixtures
# ---------------------------------------------------------------------------------------------
#: how much more the refinement's contrast term charges a bin the source gates give to the other
#: source (``2 · SOURCE_GATES_SCALE / 2 · (1 − M_s)``, as ``SEPARATION_SCALE`` does for the
#: class-block separation); docs/method.md, "Source gates", measured 2, 4 and 8
SOURCE_GATES_SCALE = 8.0


#: mixtures explained at a time while :func:`fit_source_gates` makes its training rows (their
#: waveforms and features are the fit's memory beside the rows)
SOURCE_ROWS_CHUNK = 32


class SourceGatesUnavailable(ValueError):
    """The clips give the source gates nothing to learn from: the classifier puts them all in
    one class, or decides none of their mixtures as one of their parts' classes."""


def source_targets(interpreter, deciding: np.ndarray, other: np.ndarray) -> torch.Tensor:
    """Which of the interpreter's components carry the deciding source in each frame, ``(n, K,
    T)`` floats of 0 and 1: component k where its pattern correlates more with the deciding
    source's log-magnitude than with the other's, Σ_f W_fk (V_d − V_o)_ft > 0 (the benchmark's
    oracle gates, here on mixtures whose parts are known)."""
    from .spectrogram import log_magnitude

    spec = interpreter.spectrogram_
    W = torch.as_tensor(interpreter.dictionary_.dictionary_, dtype=torch.float32)
    out = []
    for i in range(0, len(deciding), 64):
        Vd = log_magnitude(spec.stft(torch.as_tensor(deciding[i : i + 64])))
        Vo = log_magnitude(spec.stft(torch.as_tensor(other[i : i + 64])))
        out.append((torch.einsum("fk,nft->nkt", W, Vd - Vo) > 0).float())
    return torch.cat(out) if out else torch.zeros((0, W.shape[1], 0))


def _capped_chunks(X, decisions, n_rounds: int, max_mixtures: int, rng, chunk: int):
    """:func:`_mixture_rounds`' mixtures, at most ``max_mixtures`` in all (the last round a random
    subset of its own), ``chunk`` of them at a time."""
    n_mixtures = 0
    for a, b, ratio, gain in _mixture_rounds(X, decisions, n_rounds, rng):
        if n_mixtures >= max_mixtures:
            return
        if n_mixtures + len(a) > max_mixtures:
            pick = np.sort(rng.choice(len(a), max_mixtures - n_mixtures, replace=False))
            a, b, ratio, gain = a[pick], b[pick], ratio[pick], gain[pick]
        n_mixtures += len(a)
        for i in range(0, len(a), chunk):
            yield a[i : i + chunk], b[i : i + chunk], ratio[i : i + chunk], gain[i : i + chunk]


def _source_rows(
    interpreter, X: np.ndarray, decisions: np.ndarray, n_rounds: int, max_mixtures: int, rng
):
    """:func:`fit_source_gates`' training rows: ``n_rounds`` rounds of two-clip mixtures of ``X``
    as :func:`_mixtures` draws them (each clip plus one of another class at -12..0 dB; the
    classes: the classifier's ``decisions`` on ``X``), at most ``max_mixtures`` in all (the last
    round a random subset of its own), as ``(H, z, hidden, decided, targets)`` tensors of the
    mixtures the classifier decides as one of their parts' classes (a class the interpreter's Θ
    has), ``targets`` (bool) the :func:`source_targets` of that part.

    ``SOURCE_ROWS_CHUNK`` mixtures at a time, into tensors of room for every mixture (pages never
    written take no memory): only the kept rows' features outlive their chunk, not the mixtures'
    waveforms, and no copy of all the rows is made at the end."""
    n_classes = interpreter.module_.theta.weight.shape[0]
    room = min(max_mixtures, n_rounds * len(X))
    out: dict[str, torch.Tensor] = {}
    n_mixtures = n_rows = 0
    chunks = _capped_chunks(X, decisions, n_rounds, max_mixtures, rng, SOURCE_ROWS_CHUNK)
    for a, b, ratio, gain in chunks:
        n_mixtures += len(a)
        first, second = X[a].astype(np.float32), (X[b] * ratio * gain).astype(np.float32)
        H, z, scores, hidden = _activations(interpreter, first + second, context=True)
        decided = scores.argmax(-1).numpy()
        # a class the interpreter's Θ has (fitted on predicted labels, it may have fewer than
        # the classifier's outputs)
        rows = np.flatnonzero(
            ((decided == decisions[a]) | (decided == decisions[b])) & (decided < n_classes)
        )
        if not len(rows):
            continue
        own = (decided == decisions[a])[rows, None]
        deciding = np.where(own, first[rows], second[rows])
        other = np.where(own, second[rows], first[rows])
        idx = torch.as_tensor(rows)
        parts = {
            "H": H[idx],
            "z": z[idx],
            "hidden": hidden[idx],
            "decided": torch.as_tensor(decided[rows]),
            "targets": source_targets(interpreter, deciding, other).bool(),
        }
        for key, part in parts.items():
            if key not in out:
                out[key] = torch.empty((room, *part.shape[1:]), dtype=part.dtype)
            out[key][n_rows : n_rows + len(rows)] = part
        n_rows += len(rows)
    if n_mixtures == 0:
        raise SourceGatesUnavailable(
            "fit_source_gates needs clips the classifier puts in at least two classes (the "
            "mixtures are of clips of different classes); got none."
        )
    if n_rows == 0:
        raise SourceGatesUnavailable(
            "the classifier decided none of the training mixtures as one of their clips' classes: "
            "nothing to learn the source gates from."
        )
    return tuple(out[key][:n_rows] for key in ("H", "z", "hidden", "decided", "targets"))


def fit_source_gates(
    interpreter,
    X: np.ndarray,
    *,
    mixtures: int,
    epochs: int,
    lr: float,
    hidden: int,
    max_mixtures: int = 3000,
    batch_size: int = 16,
    random_state=None,
    verbose: int = 0,
) -> tuple[GateNet, list[dict]]:
    """Train a :class:`GateNet` that tells, per component and frame, whether the interpreter's
    component carries the source of the decided class, on ``mixtures`` rounds of two-clip mixtures
    of the clips ``X`` (validated; the training clips), whose parts are known.

    Each mixture the classifier decides as one of its parts' classes (the parts' classes: the
    classifier's decisions on the clips) is a training row; its targets are
    :func:`source_targets` of that part against the other; the loss is the binary cross-entropy of
    the network's logits (Adam at ``lr``, cosine decay). It reads what the amortised gates read (H,
    Θ, the selection and the interpreter's hidden representation): no classifier pass per step,
    so it trains in about the time of the interpreter's features of the mixtures. Returns the
    network (eval mode, CPU) and the mean loss and seconds of each epoch.
    """
    rows, gen = source_training_rows(interpreter, X, mixtures, max_mixtures, random_state)
    return train_source_net(
        rows,
        interpreter.module_.theta.weight.detach(),
        gen,
        epochs=epochs,
        lr=lr,
        hidden=hidden,
        batch_size=batch_size,
        verbose=verbose,
    )


def source_training_rows(
    interpreter, X: np.ndarray, mixtures: int, max_mixtures: int, random_state
):
    """:func:`fit_source_gates`' rows (:func:`_source_rows`; the classes: the classifier's
    decisions on ``X``) and the generator its network's draws then come from, both from
    ``random_state``."""
    from .explain import _batched_classifier_scores

    rng = np.random.default_rng(random_state)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
    decisions = _batched_classifier_scores(interpreter, X).argmax(-1).numpy()
    return _source_rows(interpreter, X, decisions, mixtures, max_mixtures, rng), gen


def train_source_net(
    rows,
    theta: torch.Tensor,
    gen: torch.Generator,
    *,
    epochs: int,
    lr: float,
    hidden: int,
    batch_size: int = 16,
    weight_decay: float = 0.0,
    read_hidden: bool = True,
    verbose: int = 0,
) -> tuple[GateNet, list[dict]]:
    """:func:`fit_source_gates`' network trained on its rows ``(H, z, hidden, decided,
    targets)`` (:func:`_source_rows`), Θ's weights ``theta``, the draws from ``gen``: binary
    cross-entropy, Adam at ``lr`` (AdamW with ``weight_decay``), cosine decay; without
    ``read_hidden`` the network does not read the hidden representation (what
    ``benchmarks/source_gates_generalisation.py`` compares). Returns the network (eval mode) and
    each epoch's mean loss and seconds."""
    H, z, hidden_rep, decided, targets = rows
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        channels = hidden_rep.shape[1] if read_hidden else 0
        net = GateNet(H.shape[1], hidden, context_channels=channels)
    bce = nn.BCEWithLogitsLoss()
    n = len(decided)
    opt, schedule = _cosine_adam(net, lr, epochs * -(-n // batch_size), weight_decay)
    history = []
    for _ in tqdm(range(epochs), desc="source gates", disable=verbose <= 0):
        total, t0 = 0.0, time.perf_counter()
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            context = hidden_rep[idx] if read_hidden else None
            logits = net(H[idx], z[idx], theta, decided[idx], context)
            loss = bce(logits, targets[idx].float())
            _descend(opt, schedule, loss)
            total += float(loss.detach()) * len(idx)
        history.append({"loss": total / n, "seconds": time.perf_counter() - t0})
    return net.eval(), history


def source_masks(interpreter, net: GateNet, H, z, classes, hidden) -> torch.Tensor:
    """The share of each bin the source gates give the decided class's source, ``(n, F, T)``:
    the mask of every component weighted by the network's probability that it carries it."""
    W = torch.as_tensor(interpreter.dictionary_.dictionary_, dtype=torch.float32)
    theta = interpreter.module_.theta.weight.detach()
    with torch.no_grad():
        p = torch.sigmoid(net(H, z, theta, classes, hidden))
    return soft_mask(W, H, p, 1.0, "linear")
