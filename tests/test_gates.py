"""The amortised gates: fit_gates trains a network that chooses explain's gates in one pass."""

import joblib
import numpy as np
import pytest
import torch
from _small import small_pipe, small_setup

from nmfinterp import explain
from nmfinterp.explain import ENERGY_PENALTY, _Faithfulness, soft_mask
from nmfinterp.gates import GateNet
from nmfinterp.persistence import load, save


@pytest.fixture(scope="module")
def gated():
    clf, x_train, y_train, _ = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    # 20 epochs: with the default energy weight (0.3) 10 lowered the soft objective here without
    # yet flipping a hard gate of the interpreter's selection
    pipe[-1].fit_gates(x_train, epochs=20, hidden=16, mixtures=1, lr=1e-2)
    return pipe


def _objective(pipe, x, ex):
    """explain's refinement objective of each clip's explanation (what the gates are trained on)."""
    it = pipe[-1]
    W = torch.as_tensor(it.dictionary_.dictionary_, dtype=torch.float32)
    obj = _Faithfulness(
        it, torch.as_tensor(x), torch.as_tensor(ex.classes), "linear", ENERGY_PENALTY
    )
    with torch.no_grad():
        H = torch.as_tensor(np.stack(ex.activations))
        G = torch.as_tensor(np.stack(ex.gates), dtype=torch.float32)
        return obj(soft_mask(W, H, G, ratio=ex.settings["mask_ratio"])).numpy()


def test_an_untrained_gate_network_gives_the_interpreters_selection():
    clf, x_train, y_train, x_test = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    it = pipe[-1]
    it.gate_module_ = GateNet(it.n_components_, hidden=8).eval()  # last layer starts at zero
    amortised = explain(pipe, x_test, amortised=True)
    plain = explain(pipe, x_test, refine_steps=0)
    for a, p in zip(amortised.gates, plain.gates, strict=True):
        np.testing.assert_array_equal(a, p)
    np.testing.assert_allclose(np.asarray(amortised), np.asarray(plain), atol=1e-6)


def test_fit_gates_learns_gates_that_lower_the_objective(gated):
    _, x_train, _, x_test = small_setup()
    it = gated[-1]
    losses = [h["loss"] for h in it.gate_history_]
    assert len(losses) == 20 and losses[-1] < losses[0], losses
    # on the clips it was trained on, the amortised gates beat the interpreter's own selection on
    # the objective they were trained for
    amortised = explain(gated, x_train, amortised=True)
    plain = explain(gated, x_train, refine_steps=0)
    assert _objective(gated, x_train, amortised).mean() < _objective(gated, x_train, plain).mean()
    # and they are explanations like any other: per-frame gates, audio that splits the input
    ex = explain(gated, x_test, amortised=True)
    assert ex.settings["amortised"] is True and ex.settings["refine_steps"] == 0
    np.testing.assert_allclose(np.asarray(ex) + np.asarray(ex.residuals), x_test, atol=1e-5)
    assert all(
        g.dtype == bool and g.shape == h.shape
        for g, h in zip(ex.gates, ex.activations, strict=True)
    )
    # top_k caps the components kept, the most relevant ones
    capped = explain(gated, x_test, amortised=True, top_k=1)
    assert all(len(s) <= 1 for s in capped.selected)


def test_gates_survive_joblib_and_safetensors(gated, tmp_path):
    _, _, _, x_test = small_setup()
    before = np.asarray(explain(gated, x_test, amortised=True))
    joblib.dump(gated, tmp_path / "p.joblib")
    again = joblib.load(tmp_path / "p.joblib")
    np.testing.assert_allclose(np.asarray(explain(again, x_test, amortised=True)), before)
    save(gated, tmp_path / "p.safetensors")
    loaded = load(tmp_path / "p.safetensors", classifier=gated[-1].classifier)
    assert isinstance(loaded[-1].gate_module_, GateNet)
    np.testing.assert_allclose(np.asarray(explain(loaded, x_test, amortised=True)), before)
    assert loaded[-1].gate_history_ == gated[-1].gate_history_


def test_the_mixing_layer_without_concatenation_is_the_1x1_convolution():
    """GateNet's forward splits its first 1x1 convolution over the three blocks of features (the
    selection's block as one column per clip): the same logits as the convolution on them all."""
    torch.manual_seed(0)
    n, K, T = 3, 7, 11
    H, theta = torch.rand(n, K, T), torch.randn(4, K)
    net = GateNet(K, hidden=6).eval()
    torch.nn.init.normal_(net.body[-1].weight, std=0.5)
    with torch.no_grad():
        split = net(H, H.mean(-1), theta, torch.tensor([0, 2, 3]))
        net.bottleneck = False  # the concatenated features through the same layers
        whole = net(H, H.mean(-1), theta, torch.tensor([0, 2, 3]))
    assert split.abs().max() > 0.1
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-5)


def test_gate_networks_saved_before_the_bottleneck_still_load(tmp_path):
    """A file saved with the earlier network (no 1x1 mixing layer, no "bottleneck" in its
    metadata) loads as that network and explains as it did."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    clf, x_train, y_train, x_test = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    it = pipe[-1]
    torch.manual_seed(0)
    old = GateNet(it.n_components_, hidden=8, bottleneck=False)
    torch.nn.init.normal_(old.body[-1].weight, std=0.5)  # not the untrained selection
    it.gate_module_ = old.eval()
    assert len(old.body) == 5 and len(GateNet(it.n_components_, hidden=8).body) == 7
    before = np.asarray(explain(pipe, x_test, amortised=True))
    path = save(pipe, tmp_path / "p.safetensors")
    with safe_open(path, "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    text = json.dumps(json.loads(meta["config"]))
    text = text.replace(', "bottleneck": false', "").replace(', "context_channels": 0', "")
    assert "bottleneck" not in text and "context_channels" not in text  # as nmfinterp wrote it
    save_file(tensors, tmp_path / "old.safetensors", metadata={**meta, "config": text})
    loaded = load(tmp_path / "old.safetensors", classifier=clf)
    assert loaded[-1].gate_module_.bottleneck is False
    np.testing.assert_allclose(np.asarray(explain(loaded, x_test, amortised=True)), before)
    # and a pickle of it, made before the attribute existed, unpickles as it
    del it.gate_module_.bottleneck, it.gate_module_.context_channels
    del it.gate_module_._modules["context"]
    joblib.dump(pipe, tmp_path / "old.joblib")
    again = joblib.load(tmp_path / "old.joblib")
    assert again[-1].gate_module_.bottleneck is False
    assert again[-1].gate_module_.context_channels == 0 and again[-1].gate_module_.context is None
    np.testing.assert_allclose(np.asarray(explain(again, x_test, amortised=True)), before)


def test_amortised_without_a_gate_network_says_how_to_train_it():
    clf, x_train, y_train, x_test = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    with pytest.raises(ValueError, match=r"fit_gates"):
        explain(pipe, x_test, amortised=True)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"amortised": "yes"}, "amortised"),
        ({"amortised": True, "refine_steps": 5}, "refine_steps"),
        ({"amortised": True, "refine_lr": 1.0}, "refine_lr=1.0 with amortised=True"),
        ({"amortised": True, "threshold": 0.2}, "threshold"),
    ],
)
def test_bad_amortised_calls_are_named(gated, kwargs, word):
    with pytest.raises(ValueError, match=word):
        explain(gated, small_setup()[3][:1], **kwargs)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"hidden": 0}, "hidden"),
        ({"mixtures": -1}, "mixtures"),
        ({"lr": 0}, "lr"),
        ({"read_hidden": "yes"}, "read_hidden"),
        ({"energy_penalty": -1.0}, "energy_penalty"),
        ({"contrast_penalty": -1.0}, "contrast_penalty"),
        ({"contrast_penalty": "1"}, "contrast_penalty"),
        ({"residual_weight": -0.5}, "residual_weight"),
        ({"residual_weight": float("nan")}, "residual_weight"),
        ({"residual_weight": "1"}, "residual_weight"),
    ],
)
def test_bad_fit_gates_arguments_are_named(gated, kwargs, word):
    before = gated[-1].gate_module_
    with pytest.raises(ValueError, match=word):
        gated[-1].fit_gates(small_setup()[1], **kwargs)
    assert gated[-1].gate_module_ is before  # the trained gates are kept


def test_fit_gates_trains_with_its_residual_weight_unless_told(monkeypatch):
    """The residual's weight in the gates' objective is GATES_RESIDUAL_WEIGHT unless fit_gates is
    given another, and that one reaches the loss."""
    import nmfinterp.gates as gates_module
    from nmfinterp.gates import GATES_RESIDUAL_WEIGHT as RESIDUAL_WEIGHT

    seen = []

    class Recording(_Faithfulness):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.residual_weight)

    monkeypatch.setattr(gates_module, "_Faithfulness", Recording)
    clf, x_train, y_train, _ = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    pipe[-1].fit_gates(x_train, epochs=1, hidden=8, mixtures=0)
    assert seen and set(seen) == {RESIDUAL_WEIGHT} and RESIDUAL_WEIGHT != 1.0
    losses = {RESIDUAL_WEIGHT: pipe[-1].gate_history_[0]["loss"]}
    seen.clear()
    pipe[-1].fit_gates(x_train, epochs=1, hidden=8, mixtures=0, residual_weight=1.0)
    assert seen and set(seen) == {1.0}
    losses[1.0] = pipe[-1].gate_history_[0]["loss"]
    # the same network and clips: the residual's capped CE (> 0) weighs more, the loss is lower
    assert losses[1.0] < losses[RESIDUAL_WEIGHT]


def test_fit_gates_trains_through_the_mask_ratio_it_is_given(monkeypatch):
    """The gates are trained through explain's mask (MASK_RATIO) unless fit_gates is told another
    ratio, in the objective's mask and in its contrast term alike; a wrong one is named."""
    import sys

    import nmfinterp.gates as gates_module
    from nmfinterp.explain import MASK_RATIO

    explain_module = sys.modules["nmfinterp.explain"]  # the package's `explain` is the function

    seen = []

    def recording(*args, **kwargs):
        seen.append(kwargs.get("ratio", args[4] if len(args) > 4 else "log"))
        return soft_mask(*args, **kwargs)

    monkeypatch.setattr(gates_module, "soft_mask", recording)
    monkeypatch.setattr(explain_module, "soft_mask", recording)
    clf, x_train, y_train, _ = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    pipe[-1].fit_gates(x_train, epochs=1, hidden=8, mixtures=0, contrast_penalty=3.0)
    assert seen and set(seen) == {MASK_RATIO} and MASK_RATIO == "linear"
    seen.clear()
    pipe[-1].fit_gates(
        x_train, epochs=1, hidden=8, mixtures=0, contrast_penalty=3.0, mask_ratio="log"
    )
    assert seen and set(seen) == {"log"}
    with pytest.raises(ValueError, match=r"mask_ratio='Linear'; expected 'linear'"):
        pipe[-1].fit_gates(x_train, epochs=1, mask_ratio="Linear")


def test_fit_gates_needs_a_fitted_single_label_interpreter():
    from sklearn.exceptions import NotFittedError

    clf, x_train, y_train, _ = small_setup()
    with pytest.raises(NotFittedError):
        small_pipe(clf)[-1].fit_gates(x_train)
    multi = small_pipe(clf, multilabel=True).fit(x_train, (y_train > 0).astype(float))
    with pytest.raises(ValueError, match="multilabel"):
        multi[-1].fit_gates(x_train)


def test_fitting_again_drops_the_gates_of_the_previous_fit():
    clf, x_train, y_train, x_test = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    pipe[-1].fit_gates(x_train, epochs=1, hidden=8, mixtures=0)
    with pytest.raises(ValueError):  # a refused fit keeps them
        pipe[-1].fit(x_train, y_train[:3])
    assert hasattr(pipe[-1], "gate_module_")
    pipe.fit(x_train, y_train)
    assert not hasattr(pipe[-1], "gate_module_")
    with pytest.raises(ValueError, match="fit_gates"):
        explain(pipe, x_test, amortised=True)


def test_training_rows_are_the_clips_then_mixtures_of_them(gated):
    from nmfinterp.gates import _mixtures, training_rows

    _, x_train, _, _ = small_setup()
    it = gated[-1]
    waves, H, z, scores, hidden_rows = training_rows(
        it, x_train, 2, np.random.default_rng(0), context=True
    )
    n = len(x_train)
    plain = training_rows(it, x_train, 2, np.random.default_rng(0))
    assert plain[-1] is None  # no hidden representation unless asked
    for a, b in zip(plain[:-1], (waves, H, z, scores), strict=True):
        torch.testing.assert_close(a, b)
    mixed = _mixtures(x_train, scores[:n].argmax(-1).numpy(), 2, np.random.default_rng(0))
    assert len(waves) == len(H) == len(z) == len(scores) == n + len(mixed)
    np.testing.assert_array_equal(waves[:n].numpy(), x_train.astype(np.float32))
    np.testing.assert_array_equal(waves[n:].numpy(), mixed)
    np.testing.assert_allclose(H[:n].numpy(), it.activations(x_train), rtol=1e-5, atol=1e-6)
    # the interpreter's hidden representation is what its decoder turns into H
    feats, _ = it._extract(x_train)
    with torch.no_grad():
        hidden = it.module_.hidden(feats, H.shape[-1])
        assert hidden.shape[0] == n and hidden.shape[-1] == H.shape[-1]
        np.testing.assert_allclose(it.module_.decoder(hidden).numpy(), H[:n].numpy(), atol=1e-6)
        # and the rows carry it, mixtures included (each row's representation gives its H)
        assert len(hidden_rows) == len(H)
        torch.testing.assert_close(hidden_rows[:n], hidden, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(it.module_.decoder(hidden_rows), H, rtol=1e-5, atol=1e-6)


def test_the_gate_network_reads_the_hidden_representation_by_default(gated):
    """fit_gates' network reads InterpreterNet.hidden (one channel per channel of it) and its
    gates depend on it; read_hidden=False trains the network without it."""
    _, x_train, _, x_test = small_setup()
    it = gated[-1]
    net = it.gate_module_
    feats, _ = it._extract(x_test)
    T = it.spectrogram_._n_frames(x_test.shape[-1])
    with torch.no_grad():
        hidden = it.module_.hidden(feats, T)
        H = it.module_.decoder(hidden)
        z, theta = it.module_.pool(H), it.module_.theta.weight
        cls = torch.zeros(len(x_test), dtype=torch.long)
        assert net.context_channels == hidden.shape[1]
        assert net.context.weight.abs().max() > 0  # trained away from its zero start
        logits = net(H, z, theta, cls, hidden)
        assert not torch.allclose(logits, net(H, z, theta, cls, torch.zeros_like(hidden)))
    with pytest.raises(ValueError, match="hidden representation"):
        net(H, z, theta, cls)
    state = it.gate_module_, it.gate_history_
    try:
        it.fit_gates(x_train, epochs=2, hidden=8, mixtures=0, read_hidden=False)
        assert it.gate_module_.context_channels == 0 and it.gate_module_.context is None
        ex = explain(gated, x_test, amortised=True)
        np.testing.assert_allclose(np.asarray(ex) + np.asarray(ex.residuals), x_test, atol=1e-5)
    finally:
        it.gate_module_, it.gate_history_ = state


def test_the_benchmarks_previous_gate_row_has_its_own_network_on_the_same_interpreter():
    from nmfinterp.benchmark import PREVIOUS_GATE_HIDDEN, fit_gate_networks

    clf, x_train, y_train, _ = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    rows = ["nmfinterp, amortised gates", "nmfinterp, amortised gates, hidden=64"]
    pipes = {"nmfinterp": pipe}
    fits = fit_gate_networks(pipes, x_train, rows[:1], epochs=1)
    assert list(pipes) == ["nmfinterp"] and list(fits) == rows[:1]
    assert pipe[-1].gate_module_.hidden == fits[rows[0]]["hidden"] == 32  # fit_gates' default
    default_net = pipe[-1].gate_module_
    fits = fit_gate_networks(pipes, x_train, rows[1:], epochs=2)
    previous = pipes["gates, hidden=64"]
    assert previous[-1].gate_module_.hidden == fits[rows[1]]["hidden"] == PREVIOUS_GATE_HIDDEN
    assert len(fits[rows[1]]["history"]) == 2
    assert pipe[-1].gate_module_ is default_net  # the defaults' row keeps its own network
    assert previous[-1] is not pipe[-1] and previous[-1].module_ is pipe[-1].module_
    assert previous[1] is pipe[1] and previous[0] is pipe[0]
    row = "nmfinterp, amortised gates, residual_weight=1"
    fits = fit_gate_networks(pipes, x_train, [row], epochs=1)
    before = pipes["gates, residual_weight=1"]
    assert before[-1].module_ is pipe[-1].module_ and before[-1] is not pipe[-1]
    assert before[-1].gate_module_ is not default_net and pipe[-1].gate_module_ is default_net
    assert fits[row]["hidden"] == 32 and len(fits[row]["history"]) == 1


def test_distilled_gates_learn_the_refinements_own_gates(monkeypatch):
    """With distil_epochs the network first learns, by cross-entropy, the gates explain's default
    refinement finds on the training rows (teacher_gates), then the objective with distil_weight
    times that cross-entropy kept."""
    import nmfinterp.gates as gates_module

    clf, x_train, y_train, _ = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    it = pipe[-1]
    teacher = gates_module.teacher_gates(it, torch.as_tensor(x_train), "linear").numpy()
    np.testing.assert_array_equal(teacher, np.stack(explain(pipe, x_train).gates))
    # on these small clips the refinement hardly moves from the interpreter's selection, so the
    # network is given other gates to learn: every second component, in every frame
    target = np.zeros_like(teacher)
    target[:, ::2] = 1.0
    seen = []

    def other_teacher(interpreter, waves, mask_ratio):
        seen.append((len(waves), mask_ratio))
        return torch.as_tensor(target[: len(waves)])

    monkeypatch.setattr(gates_module, "teacher_gates", other_teacher)
    start = np.stack(explain(pipe, x_train, refine_steps=0).gates)  # the untrained network's
    it.fit_gates(
        x_train, epochs=1, lr=1e-6, hidden=16, mixtures=0, distil_epochs=60, distil_weight=1.0
    )
    assert seen == [(len(x_train), "linear")]
    assert [h["stage"] for h in it.gate_history_] == ["distil"] * 60 + ["objective"]
    losses = [h["loss"] for h in it.gate_history_[:60]]
    assert losses[-1] < 0.5 * losses[0], losses
    learned = np.stack(explain(pipe, x_train, amortised=True).gates)
    assert (learned == target).mean() > 0.9 > (start == target).mean(), (
        (learned == target).mean(),
        (start == target).mean(),
    )


def test_fit_gates_names_a_bad_distillation_setting():
    clf, x_train, y_train, _ = small_setup()
    pipe = small_pipe(clf).fit(x_train, y_train)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=rf"distil_epochs={bad!r}; expected an integer"):
            pipe[-1].fit_gates(x_train, epochs=1, distil_epochs=bad)
    for bad in (-0.1, float("nan"), "1", True):
        with pytest.raises(ValueError, match=r"distil_weight=.*; expected a non-negative number"):
            pipe[-1].fit_gates(x_train, epochs=1, distil_weight=bad)
    assert not hasattr(pipe[-1], "gate_module_")  # nothing trained, nothing set
