"""The scikit-learn experience end to end on synthetic sounds: Pipeline, explain, clone, grid search, joblib."""

import copy
import warnings

import joblib
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.special import softmax
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline, make_pipeline

from nmfinterp import (
    L2I_TRAINING,
    InterpreterEstimator,
    NMFDictionary,
    SpectrogramTransformer,
    explain,
    write_wavs,
)
from nmfinterp.classifiers import LogMelCNN, predict_logits, train_classifier
from nmfinterp.datasets import make_synthetic_sounds
from nmfinterp.explain import (
    CONTRAST_PENALTY,
    CONTRAST_PENALTY_MILD,
    default_contrast_penalty,
    refine_selection,
    soft_mask,
)
from nmfinterp.interpreter import _fidelity_weights
from nmfinterp.persistence import load, save

SR = 16000
LAYERS = ["blocks.1", "blocks.2", "blocks.3"]


@pytest.fixture(scope="module")
def setup():
    ds = make_synthetic_sounds(n_per_class=16, sr=SR, duration=0.5, random_state=0)
    train, test = ds.subset(ds.folds != 5), ds.subset(ds.folds == 5)
    clf = LogMelCNN(
        ds.n_classes, sr=SR, n_fft=512, hop_length=160, channels=(8, 16, 16, 32), random_state=0
    )
    clf = train_classifier(clf, train.waveforms, train.labels, epochs=15, random_state=0)
    return (
        clf,
        train,
        test,
        predict_logits(clf, train.waveforms),
        predict_logits(clf, test.waveforms),
    )


def make_pipe(clf, k=8, **kw):
    return make_pipeline(
        SpectrogramTransformer(sr=SR, n_fft=256, hop_length=128),
        NMFDictionary(n_components=k, max_iter=100, random_state=0),
        InterpreterEstimator(
            clf,
            layers=LAYERS,
            hidden=16,
            epochs=kw.pop("epochs", 60),  # ~4 steps an epoch: enough steps to learn
            batch_size=16,
            faithfulness=kw.pop("faithfulness", 1.0),  # the training term's path (off by default)
            faithfulness_epochs=3,
            # the source gates' own tests ask for them; the rest keep the interpreter's fit alone
            source_gates=kw.pop("source_gates", False),
            random_state=0,
            **kw,
        ),
    )


@pytest.fixture(scope="module")
def fitted(setup):
    clf, train, _, y_train, _ = setup
    return make_pipe(clf).fit(train.waveforms, y_train)


def test_fit_learns_to_mimic_the_classifier(setup, fitted):
    _, train, test, y_train, y_test = setup
    interp = fitted[-1]
    assert len(interp.history_) == 60 and {"reconstruction", "sparsity", "fidelity_loss"} <= set(
        interp.history_[0]
    )
    # the total loss gains the faithfulness term in the last 3 epochs only (which may trade some
    # reconstruction for faithfulness), so compare the term that measures mimicking
    assert all(h["faithfulness"] == 0 for h in interp.history_[:57])
    assert all(h["faithfulness"] != 0 for h in interp.history_[57:])
    first, last = interp.history_[0], interp.history_[-1]
    # (the soft-target cross-entropy cannot go below the targets' entropy: compare, don't expect 0)
    assert last["fidelity_loss"] < first["fidelity_loss"]
    assert last["fidelity"] > first["fidelity"]
    assert fitted.score(train.waveforms, y_train) > 0.6  # chance is 0.25
    assert fitted.predict_proba(test.waveforms).shape == (len(test), 4)
    np.testing.assert_allclose(fitted.predict_proba(test.waveforms).sum(1), 1, rtol=1e-5)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_lr_schedule_sets_each_epochs_learning_rate(setup, schedule):
    clf, train, _, y_train, _ = setup
    pipe = make_pipe(clf, epochs=5, faithfulness=0.0, lr=2e-3, lr_schedule=schedule)
    lrs = [h["lr"] for h in pipe.fit(train.waveforms, y_train)[-1].history_]
    if schedule == "constant":
        assert lrs == [2e-3] * 5
    else:  # half a cosine from lr to lr / 100 over all the steps (batches of 16)
        per_epoch = -(-len(train) // 16)
        assert per_epoch > 1
        steps = 5 * per_epoch
        expected = [
            2e-5 + (2e-3 - 2e-5) * (1 + np.cos(np.pi * per_epoch * e / steps)) / 2 for e in range(5)
        ]
        np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_fidelity_weight_schedules_l_fid_and_l2i_training_is_l2is(setup, tmp_path):
    clf, train, test, y_train, _ = setup
    pipe = make_pipe(
        clf, epochs=4, faithfulness=0.0, lr_schedule="constant", fidelity_weight={0: 0.5, 2: 2.0}
    ).fit(train.waveforms, y_train)
    interp = pipe[-1]
    assert [h["fidelity_weight"] for h in interp.history_] == [0.5, 0.5, 2.0, 2.0]
    for h in interp.history_:  # every batch's loss: alpha·rec + beta·sparsity + weight·L_FID
        expected = 10.0 * h["reconstruction"] + 0.8 * h["sparsity"]
        assert h["loss"] == pytest.approx(expected + h["fidelity_weight"] * h["fidelity_loss"])
    # nmfinterp.save keeps the schedule's epochs as integers
    path = save(pipe, tmp_path / "m.nmfi")
    loaded = load(path, classifier=clf)
    assert loaded[-1].get_params()["fidelity_weight"] == {0: 0.5, 2: 2.0}
    np.testing.assert_allclose(
        loaded.predict_proba(test.waveforms), pipe.predict_proba(test.waveforms), atol=1e-6
    )
    assert _fidelity_weights({"0": 0.5, "2": 2.0}, 3) == [0.5, 0.5, 2.0]  # JSON's string keys
    # L2I's official training: 5.0 / 0.4 / 0.5, L_FID's weight 1.0 from epoch 20 (METHOD.md)
    assert L2I_TRAINING["alpha"] == 5.0 and L2I_TRAINING["beta"] == 0.4
    assert _fidelity_weights(L2I_TRAINING["fidelity_weight"], 35) == [0.5] * 20 + [1.0] * 15
    official = clone(InterpreterEstimator(clf, **L2I_TRAINING)).get_params()
    assert {k: official[k] for k in L2I_TRAINING} == L2I_TRAINING
    assert (official["lr"], official["batch_size"], official["epochs"]) == (2e-4, 32, 35)


@pytest.mark.parametrize(
    "weight, message",
    [
        ({2: 1.0}, r"no weight for epoch 0; expected a dict whose keys include 0"),
        ({0: 1.0, 3: -1.0}, r"3: -1.0 is not an epoch .* and a weight \(a finite number > 0\)"),
        ({0: 1.0, "x": 2.0}, r"'x': 2.0 is not an epoch"),
        ({0: float("nan")}, r"0: nan is not an epoch"),
        (0.0, r"fidelity_weight"),
    ],
)
def test_fidelity_weight_names_what_is_wrong_before_any_work(setup, weight, message):
    clf, train, _, y_train, _ = setup
    interp = make_pipe(clf, epochs=2, faithfulness=0.0, fidelity_weight=weight)[-1]
    with pytest.raises(ValueError, match=message):
        interp.fit(train.waveforms, y_train)
    assert not hasattr(interp, "history_")  # nothing trained, nothing extracted


def test_lr_schedule_refuses_unknown_names(setup):
    clf, train, _, y_train, _ = setup
    with pytest.raises(ValueError, match="lr_schedule"):
        make_pipe(clf, epochs=1, lr_schedule="linear").fit(train.waveforms, y_train)


def test_fit_warns_when_the_interpreter_does_not_mimic_its_training_clips(setup):
    clf, train, _, y_train, _ = setup
    # one epoch of 4 steps leaves it far from the classifier: the warning names what to change
    with pytest.warns(
        UserWarning,
        match=r"on only \d+% of its training clips after 1 epoch.*"
        r"4 optimiser step\(s\) an epoch: 52 clips in batches of 16.*more epochs",
    ) as caught:
        pipe = make_pipe(clf, epochs=1, faithfulness=0.0).fit(train.waveforms, y_train)
    interp = pipe[-1]
    assert interp.history_[-1]["fidelity"] < 0.9
    # it points at the user's line (here), through Pipeline.fit as through a direct fit
    assert {w.filename for w in caught if "optimiser step" in str(w.message)} == {__file__}
    with pytest.warns(UserWarning, match="optimiser step") as caught:
        interp.fit(pipe[:-1].transform(train.waveforms), y_train)
    assert {w.filename for w in caught if "optimiser step" in str(w.message)} == {__file__}
    # the same check, at and below the threshold, on the last epoch's agreement
    interp.history_[-1]["fidelity"] = 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        interp._warn_if_undertrained(52)
    interp.history_[-1]["fidelity"] = 0.89
    with pytest.warns(UserWarning, match="89%"):
        interp._warn_if_undertrained(52)


@pytest.mark.parametrize("n_bins", [40, 6])  # K=8 < F: the expanded form; K >= F: direct
def test_reconstruction_term_equals_the_direct_mean_squared_error(n_bins):
    from nmfinterp.interpreter import _ReconstructionError

    g = torch.Generator().manual_seed(0)
    W = torch.rand(n_bins, 8, generator=g, dtype=torch.float64)
    V = torch.rand(5, n_bins, 30, generator=g, dtype=torch.float64) * 3
    H = torch.rand(5, 8, 30, generator=g, dtype=torch.float64).requires_grad_()
    direct = ((V - torch.einsum("fk,bkt->bft", W, H)) ** 2).mean()
    (grad_direct,) = torch.autograd.grad(direct, H)
    recon = _ReconstructionError(W, n_bins, 30)
    assert (recon.gram is None) == (n_bins <= 8)
    proj, sq = recon.project(V, chunk=2)  # chunks give the same projections
    value = recon(H[1:4], proj[1:4], None if sq is None else sq[1:4])
    expected = ((V[1:4] - torch.einsum("fk,bkt->bft", W, H[1:4])) ** 2).mean()
    torch.testing.assert_close(value, expected)
    full = recon(H, proj, sq)
    torch.testing.assert_close(full, direct)
    (grad,) = torch.autograd.grad(full, H)
    torch.testing.assert_close(grad, grad_direct)


def test_explanations_have_the_input_length_and_bounded_masks(setup, fitted):
    _, _, test, _, _ = setup
    ex = explain(fitted, test.waveforms[:4])
    wav = np.asarray(ex)
    assert wav.dtype == np.float32 and wav.shape == test.waveforms[:4].shape
    assert all(m.min() >= 0 and m.max() <= 1 for m in ex.masks)
    np.testing.assert_allclose(ex.waveforms + ex.residuals, test.waveforms[:4], atol=1e-5)
    # r_k is scaled by the top contribution (max 1); a clip where no component speaks for the
    # class has every r_k <= 0 (see relevance's docstring)
    top = ex.relevance.max(1)
    assert ex.relevance.shape == (4, 8)
    assert np.all(np.isclose(top, 1) | (top <= 1e-5)) and np.isclose(top, 1).any()
    # the interpreter's own selection (no refinement) keeps the positively relevant components;
    # either way they are listed most relevant first
    plain = explain(fitted, test.waveforms[:4], refine_steps=0)
    for sel, r in zip(plain.selected, plain.relevance, strict=True):
        assert (r[sel] > 0).all() and list(sel) == sorted(sel, key=lambda k: -r[k])
    for sel, r in zip(ex.selected, ex.relevance, strict=True):
        assert list(sel) == sorted(sel, key=lambda k: -r[k])
    # official selection keeps fewer components
    official = explain(fitted, test.waveforms[:4], top_k=5, threshold=0.2)
    assert all(len(s) <= 5 for s in official.selected)
    # any class can be asked for; one clip and ragged lists keep their own lengths
    assert explain(fitted, test.waveforms[:2], classes=3).classes.tolist() == [3, 3]
    ragged = explain(fitted, [test.waveforms[0], test.waveforms[1][:5000]])
    assert [len(w) for w in ragged.waveforms] == [8000, 5000]
    assert np.asarray(explain(fitted, test.waveforms[0]).waveforms).shape == (1, 8000)


def _faithfulness_objective(clf, interp, x, ex, energy_penalty=None, contrast_penalty=None):
    """CE(f(x_in), c) − min(CE(f(x_out), c), log C) + mask_penalty·mean(M)
    + energy_penalty·(share of the clip's STFT energy under the mask)
    + contrast_penalty·(the part of that share from components weighted by how much more the
    classes the classifier also hears use them than c does), per clip."""
    rows = np.arange(len(x))
    logp_in = torch.log_softmax(torch.as_tensor(predict_logits(clf, ex.waveforms)), -1).numpy()
    logp_out = torch.log_softmax(torch.as_tensor(predict_logits(clf, ex.residuals)), -1).numpy()
    ce_in, ce_out = -logp_in[rows, ex.classes], -logp_out[rows, ex.classes]
    masks = np.stack(ex.masks)
    if energy_penalty is None:
        energy_penalty = ex.settings["energy_penalty"]
    S, pad = interp.spectrogram_._padded_stft(torch.as_tensor(x))
    power = (S.abs() ** 2).numpy()[..., pad : S.shape[-1] - pad]
    share = (masks * power).sum(axis=(1, 2)) / power.sum(axis=(1, 2))
    if contrast_penalty is None:
        contrast_penalty = _penalties(ex)["contrast_penalty"]
    usage = interp.class_usage_ / np.maximum(interp.class_usage_.max(axis=0), 1e-8)  # in [0, 1]
    p = torch.softmax(torch.as_tensor(ex.classifier_scores), -1).numpy()
    p[rows, ex.classes] = 0
    a = np.clip(p @ usage - p.sum(1, keepdims=True) * usage[ex.classes], 0, 1)  # (n, K)
    W, H = interp.dictionary_.dictionary_, np.stack(ex.activations)
    part = np.einsum("fk,nkt->nft", W, H * a[:, :, None])
    rival = np.clip(part / (np.einsum("fk,nkt->nft", W, H) + 1e-8), 0, 1)
    rival_share = (masks * power * rival).sum(axis=(1, 2)) / power.sum(axis=(1, 2))
    return (
        ce_in
        - np.minimum(ce_out, np.log(logp_in.shape[1]))
        + interp.mask_penalty * masks.mean(axis=(1, 2))
        + energy_penalty * share
        + contrast_penalty * rival_share
    )


def _penalties(ex) -> dict:
    """The penalties the refinement of ``ex`` used: its energy weight and each clip's contrast
    weight (the one it kept where several were tried in turn)."""
    weights = ex.contrast_penalties
    return {
        "energy_penalty": ex.settings["energy_penalty"],
        "contrast_penalty": ex.settings["contrast_penalty"] if weights is None else weights,
    }


def test_refinement_never_makes_an_explanation_less_faithful(setup, fitted):
    clf, _, test, _, _ = setup
    x = test.waveforms[:8]
    plain = explain(fitted, x, refine_steps=0)
    refined = explain(fitted, x, refine_steps=10)
    assert refined.settings["refine_steps"] == 10 and plain.settings["refine_steps"] == 0
    np.testing.assert_array_equal(refined.classes, plain.classes)
    # judged by the objective the refinement lowers (with the refined call's energy penalty)
    before = _faithfulness_objective(clf, fitted[-1], x, plain, **_penalties(refined))
    after = _faithfulness_objective(clf, fitted[-1], x, refined)
    assert np.all(after <= before + 1e-3), (before, after)
    # where the interpreter's selection leaves room (here: a threshold that keeps nothing, so the
    # explanation is silent), refinement finds the components the classifier needs
    empty = explain(fitted, x, refine_steps=0, threshold=1.5)
    assert all(len(s) == 0 for s in empty.selected)
    # (faithfulness alone: the penalties would also ask it to keep little)
    found = explain(
        fitted, x, refine_steps=10, threshold=1.5, energy_penalty=0.0, contrast_penalty=0.0
    )
    assert sum(len(s) > 0 for s in found.selected) >= 3, found.selected
    start = _faithfulness_objective(clf, fitted[-1], x, empty, **_penalties(found))
    better = _faithfulness_objective(clf, fitted[-1], x, found)
    assert np.all(better <= start + 1e-3) and better.mean() < start.mean() - 0.1, (start, better)
    # the refined explanation is still a sum of the interpreter's components, and still audio
    # that splits the input in two
    np.testing.assert_allclose(refined.waveforms + refined.residuals, x, atol=1e-5)
    assert all(m.min() >= 0 and m.max() <= 1 for m in refined.masks)
    # the default refines (single-label)
    assert explain(fitted, x[:2]).settings["refine_steps"] > 0
    # an energy penalty makes the explanations keep less of the clips' energy
    lean = explain(fitted, x, refine_steps=10, energy_penalty=5.0)
    kept = lambda e: (np.asarray(e.waveforms) ** 2).sum() / (x**2).sum()  # noqa: E731
    assert kept(lean) < kept(refined), (kept(lean), kept(refined))


def test_gates_say_where_each_component_is_kept(setup, fitted):
    _, _, test, _, _ = setup
    x = test.waveforms[:4]
    W = torch.as_tensor(fitted[1].dictionary_, dtype=torch.float32)
    for params in ({}, {"per_frame": False}, {"refine_steps": 0}):
        ex = explain(fitted, x, **params)
        for j in range(len(x)):
            g = ex.gates[j]
            assert g.dtype == bool and g.shape == ex.activations[j].shape
            # the mask is the gated components' share, and `selected` the components kept anywhere
            H = torch.as_tensor(ex.activations[j])[None]
            gates = torch.as_tensor(g, dtype=torch.float32)[None]
            mask = soft_mask(W, H, gates, ratio=ex.settings["mask_ratio"])[0].numpy()
            np.testing.assert_allclose(ex.masks[j], mask, atol=1e-6)
            assert set(ex.selected[j].tolist()) == set(np.flatnonzero(g.any(1)).tolist())
            if params:  # one gate per component for the whole clip
                assert (g == g[:, :1]).all()
    # per frame, some component is kept in some frames and dropped in others
    ex = explain(fitted, x, refine_steps=20)
    assert any(((g.any(1)) & ~g.all(1)).any() for g in ex.gates)


def test_class_usage_is_each_class_mean_pooled_activation(setup, fitted):
    _, train, _, y_train, _ = setup
    interp = fitted[-1]
    H = torch.as_tensor(interp.activations(train.waveforms))
    with torch.no_grad():
        z = interp.module_.pool(H).numpy()
    top = y_train.argmax(1)
    assert interp.class_usage_.shape == (4, interp.n_components_)
    for c in range(4):
        np.testing.assert_allclose(
            interp.class_usage_[c], z[top == c].mean(0), rtol=1e-4, atol=1e-6
        )


def test_contrast_penalty_keeps_less_of_what_rival_classes_use(setup, fitted):
    """The contrast term is what the refinement lowers: with a large weight the explanations keep
    less energy from components the other probable classes use more than the explained one."""
    clf, _, test, _, _ = setup
    x = test.waveforms[:8]
    off = explain(fitted, x, refine_steps=10, contrast_penalty=0.0)
    on = explain(fitted, x, refine_steps=10, contrast_penalty=1000.0)
    assert off.settings["contrast_penalty"] == 0 and on.settings["contrast_penalty"] == 1000
    # the default starts at CONTRAST_PENALTY, as the interpreter has class_usage_
    assert explain(fitted, x[:1]).settings["contrast_penalty"][0] == CONTRAST_PENALTY > 0

    def rival_share(ex):  # the objective's contrast term alone, per clip
        kw = {"energy_penalty": 0.0}
        return _faithfulness_objective(
            clf, fitted[-1], x, ex, contrast_penalty=1.0, **kw
        ) - _faithfulness_objective(clf, fitted[-1], x, ex, contrast_penalty=0.0, **kw)

    assert rival_share(on).sum() < rival_share(off).sum(), (rival_share(on), rival_share(off))
    assert np.all(rival_share(on) >= 0)


def test_the_default_contrast_weights_are_tried_in_turn_with_either_dictionary(setup, fitted):
    """CONTRAST_PENALTY then CONTRAST_PENALTY_MILD, tried in turn at KEEP_CONFIDENCE, with one
    dictionary (what K=8 patterns for 4 classes learns by default) or a block per class; 0
    without class usage."""
    interp = fitted[-1]
    assert interp.dictionary_.per_class_ is False
    in_turn = (CONTRAST_PENALTY, CONTRAST_PENALTY_MILD)
    assert default_contrast_penalty(interp) == in_turn and CONTRAST_PENALTY_MILD < CONTRAST_PENALTY
    blocks = copy.copy(interp)
    blocks.dictionary_ = copy.copy(interp.dictionary_)
    blocks.dictionary_.class_of_component_ = np.repeat(np.arange(4), 2)
    assert default_contrast_penalty(blocks) == in_turn
    pipe = copy.copy(fitted)
    pipe.steps = [*fitted.steps[:-1], (fitted.steps[-1][0], blocks)]
    x = setup[2].waveforms[:1]
    for model in (fitted, pipe):
        settings = explain(model, x).settings
        assert settings["contrast_penalty"] == in_turn and settings["keep_confidence"] == 1.0
    # one weight, or no refinement: nothing to keep
    settings = explain(pipe, x, contrast_penalty=7.0).settings
    assert settings["contrast_penalty"] == 7.0 and settings["keep_confidence"] is None
    assert explain(pipe, x, contrast_penalty=[7.0]).settings["contrast_penalty"] == 7.0
    assert explain(pipe, x, refine_steps=0).settings["keep_confidence"] is None
    no_usage = copy.copy(interp)
    no_usage.class_usage_ = None
    assert default_contrast_penalty(no_usage) == 0.0


def test_a_clip_whose_explanation_loses_the_decision_is_refined_with_the_next_weight(setup, fitted):
    """contrast_penalty=(strong, mild), keep_confidence=0: each clip keeps the strong weight's
    explanation where the classifier still decides it as the explained class, and gets the mild
    weight's elsewhere."""
    clf, _, test, _, _ = setup
    x = test.waveforms[:12]
    strong, mild = 1e5, 0.0
    alone = {w: explain(fitted, x, refine_steps=5, contrast_penalty=w) for w in (strong, mild)}
    both = explain(fitted, x, refine_steps=5, contrast_penalty=(strong, mild), keep_confidence=0)
    assert both.settings["contrast_penalty"] == (strong, mild)
    decided = predict_logits(clf, np.asarray(alone[strong].waveforms)).argmax(1)
    kept = decided == both.classes
    assert 0 < kept.sum() < len(x), kept  # the test needs clips of both kinds
    np.testing.assert_array_equal(both.contrast_penalties, np.where(kept, strong, mild))
    for i in range(len(x)):
        expected = alone[strong if kept[i] else mild]
        # the same gates as the weight alone gives (a clip's refinement does not depend on the
        # other clips of its batch, up to the convolutions' rounding)
        assert np.mean(both.gates[i] == expected.gates[i]) > 0.99, i
    # without the refinement there is no weight to record
    assert explain(fitted, x[:2], refine_steps=0).contrast_penalties is None


def test_keep_confidence_also_refines_again_where_the_explanation_is_less_sure(setup, fitted):
    """keep_confidence=q: a clip keeps the first weight's explanation only where the classifier
    still decides it as the class and gives the class at least q times its probability on the
    clip; the others get the next weight's."""
    clf, _, test, _, _ = setup
    x = test.waveforms[:12]
    strong, mild = 300.0, 0.0
    first = explain(fitted, x, refine_steps=5, contrast_penalty=strong)
    p = lambda w: torch.softmax(torch.as_tensor(predict_logits(clf, w)), -1).numpy()  # noqa: E731
    rows = np.arange(len(x))
    before, after = p(x)[rows, first.classes], p(np.asarray(first.waveforms))
    decided = after.argmax(1) == first.classes
    for q in (0.5, 1.0):
        both = explain(
            fitted, x, refine_steps=5, contrast_penalty=(strong, mild), keep_confidence=q
        )
        kept = decided & (after[rows, first.classes] >= q * before)
        assert both.settings["keep_confidence"] == q
        np.testing.assert_array_equal(both.contrast_penalties, np.where(kept, strong, mild))
    # the test needs clips the decision alone keeps and the confidence sends on
    assert 0 < kept.sum() < decided.sum(), (kept, decided)
    # by default KEEP_CONFIDENCE (1); 0 the decision alone
    for q, expected in ((None, 1.0), (0, 0.0)):
        ex = explain(
            fitted, x[:1], refine_steps=5, contrast_penalty=(strong, mild), keep_confidence=q
        )
        assert ex.settings["keep_confidence"] == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keep_confidence": -0.5}, r"keep_confidence=-0.5; expected a finite number >= 0"),
        ({"keep_confidence": "1"}, r"keep_confidence='1'; expected a finite number >= 0"),
        (
            {"keep_confidence": 1.0, "contrast_penalty": 100},
            r"contrast weights tried in turn; pass contrast_penalty=",
        ),
        (
            {"keep_confidence": 1.0, "contrast_penalty": (300, 100), "refine_steps": 0},
            r"with refinement \(refine_steps > 0\)",
        ),
    ],
)
def test_keep_confidence_names_a_bad_value(fitted, setup, kwargs, message):
    with pytest.raises(ValueError, match=message):
        explain(fitted, setup[2].waveforms[:1], **kwargs)


@pytest.mark.parametrize(
    "value, message",
    [
        ([], r"contrast_penalty=\[\]; expected a non-negative number, a non-empty sequence"),
        ((300.0, -1.0), r"contrast_penalty=\(300.0, -1.0\): -1.0 is not a non-negative number"),
        ("300", r"contrast_penalty='300'; expected a non-negative number or None"),
    ],
)
def test_contrast_penalty_names_a_bad_weight(fitted, setup, value, message):
    with pytest.raises(ValueError, match=message):
        explain(fitted, setup[2].waveforms[:1], contrast_penalty=value)


@pytest.mark.parametrize("penalty", [-1.0, float("nan"), "100"])
def test_bad_contrast_penalty_is_named(setup, fitted, penalty):
    with pytest.raises(ValueError, match="contrast_penalty"):
        explain(fitted, setup[2].waveforms[:1], contrast_penalty=penalty)


def test_refine_selection_asks_for_the_scores_the_contrast_term_reads(setup, fitted):
    x = torch.as_tensor(setup[2].waveforms[:2])
    interp = fitted[-1]
    H = torch.as_tensor(interp.activations(x.numpy()))
    r, classes = torch.zeros(2, interp.n_components_), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="H and the classifier's scores"):
        refine_selection(interp, x, H, r, classes, 2, contrast_penalty=10.0)


def test_an_interpreter_without_class_usage_explains_without_the_contrast_term(setup, fitted):
    """Interpreters fitted before class_usage_ existed (or multilabel ones) have none: by default
    the term is off for them, and asking for it says what to do."""
    x = setup[2].waveforms[:2]
    old = copy.deepcopy(fitted)
    del old[-1].class_usage_
    ex = explain(old, x, refine_steps=2)
    assert ex.settings["contrast_penalty"] == 0
    np.testing.assert_array_equal(
        np.asarray(ex), np.asarray(explain(fitted, x, refine_steps=2, contrast_penalty=0.0))
    )
    with pytest.raises(ValueError, match="class_usage_.*fit it again, or pass contrast_penalty=0"):
        explain(old, x, contrast_penalty=10.0)


def test_mask_ratio_chooses_the_models_the_mask_divides(setup, fitted):
    """mask_ratio="log" is L2I's mask, W(g ⊙ H) / (W H); the default divides the magnitudes those
    models stand for, which keeps less of the same gates' bins. The refinement optimises through
    the mask it is given, and the explanation's mask is that one of its own gates."""
    x = setup[2].waveforms[:4]
    W = torch.as_tensor(fitted[1].dictionary_, dtype=torch.float32)
    linear = explain(fitted, x, refine_steps=0)
    log = explain(fitted, x, refine_steps=0, mask_ratio="log")
    assert (linear.settings["mask_ratio"], log.settings["mask_ratio"]) == ("linear", "log")
    for j in range(len(x)):
        np.testing.assert_array_equal(linear.gates[j], log.gates[j])
        H = torch.as_tensor(log.activations[j])[None]
        g = torch.as_tensor(log.gates[j], dtype=torch.float32)[None]
        np.testing.assert_allclose(log.masks[j], soft_mask(W, H, g)[0].numpy(), atol=1e-6)
        np.testing.assert_allclose(
            linear.masks[j], soft_mask(W, H, g, ratio="linear")[0].numpy(), atol=1e-6
        )
        assert np.all(linear.masks[j] <= log.masks[j] + 1e-6)
    assert np.mean(np.concatenate(linear.masks)) < np.mean(np.concatenate(log.masks))
    refined = explain(fitted, x, refine_steps=5, mask_ratio="log")
    for j in range(len(x)):
        H = torch.as_tensor(refined.activations[j])[None]
        g = torch.as_tensor(refined.gates[j], dtype=torch.float32)[None]
        np.testing.assert_allclose(refined.masks[j], soft_mask(W, H, g)[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match=r"mask_ratio='magnitude'; expected 'linear'"):
        explain(fitted, x, mask_ratio="magnitude")


def test_mask_power_sharpens_the_mask_of_the_same_gates(setup, fitted):
    """mask_power=p turns the ratio r of the kept components' model into r^p / (r^p + (1 - r)^p):
    the same gates without refinement, a mask nearer 0 and 1, and the refinement optimises the
    gates through that mask (its explanation's mask is the sharpened one of its own gates)."""
    x = setup[2].waveforms[:4]
    ratio = explain(fitted, x, refine_steps=0)
    assert ratio.settings["mask_power"] == 1.0
    sharp = explain(fitted, x, refine_steps=0, mask_power=2)
    assert sharp.settings["mask_power"] == 2.0
    for j in range(len(x)):
        np.testing.assert_array_equal(sharp.gates[j], ratio.gates[j])
        r = ratio.masks[j]
        np.testing.assert_allclose(sharp.masks[j], r**2 / (r**2 + (1 - r) ** 2), atol=1e-5)
        # further from 0.5 everywhere the ratio is not 0, 0.5 or 1
        assert np.all(np.abs(sharp.masks[j] - 0.5) >= np.abs(r - 0.5) - 1e-6)
    np.testing.assert_array_equal(
        np.asarray(explain(fitted, x, refine_steps=0, mask_power=1)), np.asarray(ratio)
    )
    W = torch.as_tensor(fitted[1].dictionary_, dtype=torch.float32)
    refined = explain(fitted, x, refine_steps=5, mask_power=3.0)
    for j in range(len(x)):
        H = torch.as_tensor(refined.activations[j])[None]
        g = torch.as_tensor(refined.gates[j], dtype=torch.float32)[None]
        np.testing.assert_allclose(
            refined.masks[j], soft_mask(W, H, g, 3.0, "linear")[0].numpy(), atol=1e-6
        )


def test_residual_weight_scales_the_residual_s_term(setup, fitted):
    """The refinement's objective is CE(f(x_in), c) − w · min(CE(f(x − x_in), c), log C) + the
    penalties: between w = 0 and w = 1 it differs by the residual's capped cross-entropy, worked
    out here from the classifier's own outputs on the residual's audio; explain records w, and a
    different w refines to different gates."""
    from nmfinterp.explain import _Faithfulness

    clf, _, test, _, _ = setup
    x = torch.as_tensor(test.waveforms[:4])
    interp = fitted[-1]
    ex = explain(fitted, x.numpy(), refine_steps=0)
    M = torch.as_tensor(np.stack(ex.masks))
    classes = torch.as_tensor(ex.classes)
    args = (interp, x, classes, "linear", 0.3, 0.0)
    with torch.no_grad():
        full = _Faithfulness(*args, residual_weight=1.0)(M)
        none = _Faithfulness(*args, residual_weight=0.0)(M)
        half = _Faithfulness(*args, residual_weight=0.5)(M)
    logp = torch.log_softmax(torch.as_tensor(predict_logits(clf, ex.residuals)), -1)
    ce_out = -logp[torch.arange(4), classes].clamp(min=-np.log(len(interp.classes_)))
    np.testing.assert_allclose((none - full).numpy(), ce_out.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose((none - half).numpy(), 0.5 * ce_out.numpy(), rtol=1e-3, atol=1e-4)
    xs = setup[2].waveforms[:8]
    refined = {w: explain(fitted, xs, refine_steps=10, residual_weight=w) for w in (0, 1.0)}
    assert refined[0].settings["residual_weight"] == 0.0
    assert refined[1.0].settings["residual_weight"] == 1.0
    assert any(
        not np.array_equal(a, b) for a, b in zip(refined[0].gates, refined[1.0].gates, strict=True)
    )


def test_refine_lr_is_the_refinement_s_adam_rate(setup, fitted, monkeypatch):
    """explain hands refine_lr to the refinement's Adam (REFINE_LR by default), records it, and a
    different rate refines to different gates."""
    import importlib

    from nmfinterp.explain import REFINE_LR

    module = importlib.import_module("nmfinterp.explain")
    seen, original = [], module.refine_selection

    def spy(*args, **kwargs):
        seen.append(kwargs["lr"])
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "refine_selection", spy)
    xs = setup[2].waveforms[:8]
    rates = {
        lr: explain(fitted, xs, refine_steps=5, contrast_penalty=0, refine_lr=lr)
        for lr in (0.1, 2.0)
    }
    default = explain(fitted, xs, refine_steps=5, contrast_penalty=0)
    assert seen == [0.1, 2.0, REFINE_LR]
    assert [ex.settings["refine_lr"] for ex in (*rates.values(), default)] == [0.1, 2.0, REFINE_LR]
    assert any(
        not np.array_equal(a, b) for a, b in zip(rates[0.1].gates, rates[2.0].gates, strict=True)
    )


@pytest.mark.parametrize("lr", [0, -0.5, float("nan"), float("inf"), "1", True])
def test_bad_refine_lr_is_named(setup, fitted, lr):
    with pytest.raises(ValueError, match=r"refine_lr=.*expected a positive finite number"):
        explain(fitted, setup[2].waveforms[:1], refine_lr=lr)


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf"), "1", True])
def test_bad_residual_weight_is_named(setup, fitted, weight):
    with pytest.raises(ValueError, match=r"residual_weight=.*expected a finite number >= 0"):
        explain(fitted, setup[2].waveforms[:1], residual_weight=weight)


@pytest.mark.parametrize("power", [0.5, 0, float("nan"), float("inf"), "2", True])
def test_bad_mask_power_is_named(setup, fitted, power):
    with pytest.raises(ValueError, match=r"mask_power=.*expected a finite number >= 1"):
        explain(fitted, setup[2].waveforms[:1], mask_power=power)


@pytest.mark.parametrize("per_frame", [1, "yes", None])
def test_bad_per_frame_is_named(setup, fitted, per_frame):
    with pytest.raises(ValueError, match="per_frame"):
        explain(fitted, setup[2].waveforms[:1], per_frame=per_frame)


@pytest.mark.parametrize("penalty", [-0.5, float("nan"), "1"])
def test_bad_energy_penalty_is_named(setup, fitted, penalty):
    with pytest.raises(ValueError, match="energy_penalty"):
        explain(fitted, setup[2].waveforms[:1], energy_penalty=penalty)


@pytest.mark.parametrize("steps", [-1, 2.5, "10"])
def test_bad_refine_steps_are_named(setup, fitted, steps):
    with pytest.raises(ValueError, match="refine_steps"):
        explain(fitted, setup[2].waveforms[:1], refine_steps=steps)


def test_write_wavs(setup, fitted, tmp_path):
    ex = explain(fitted, setup[2].waveforms[:2])
    paths = write_wavs(ex, tmp_path, residuals=True)
    assert len(paths) == 4
    data, sr = sf.read(paths[0], dtype="float32")
    assert sr == SR and len(data) == 8000
    np.testing.assert_allclose(data, np.clip(ex.waveforms[0], -1, 1), atol=1 / 2**14)


def test_joblib_round_trip_gives_the_same_explanations(setup, fitted, tmp_path):
    test = setup[2]
    joblib.dump(fitted, tmp_path / "p.joblib")
    loaded = joblib.load(tmp_path / "p.joblib")
    np.testing.assert_array_equal(
        np.asarray(explain(loaded, test.waveforms)), np.asarray(explain(fitted, test.waveforms))
    )


def test_random_state_reproducible_and_classifier_untouched(setup):
    clf, train, test, y_train, _ = setup
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    a = make_pipe(clf, epochs=3).fit(train.waveforms, y_train)
    b = make_pipe(clf, epochs=3).fit(train.waveforms, y_train)
    np.testing.assert_array_equal(
        np.asarray(explain(a, test.waveforms)), np.asarray(explain(b, test.waveforms))
    )
    assert all(torch.equal(before[k], v) for k, v in clf.state_dict().items())
    assert not clf.training


def test_feature_dropout_is_reproducible_leaves_the_global_seed_and_only_trains(setup, tmp_path):
    clf, train, test, y_train, _ = setup
    front = make_pipe(clf)[:-1].fit(train.waveforms, y_train)
    Xf, Xt = front.transform(train.waveforms), front.transform(test.waveforms)

    def fit(p):
        base = make_pipe(clf, epochs=3, faithfulness=0.0, feature_dropout=p)[-1]
        return base.fit(Xf, y_train)

    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b, plain = fit(0.3), fit(0.3), fit(0.0)
    assert torch.equal(torch.random.get_rng_state(), state)  # its own stream, not the global one
    for (name, pa), pb in zip(
        a.module_.state_dict().items(), b.module_.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
    assert any(
        not torch.equal(pa, pp)
        for pa, pp in zip(a.module_.parameters(), plain.module_.parameters(), strict=True)
    )
    # no dropping outside training: the same predictions twice; the fitted module pickles
    np.testing.assert_array_equal(a.predict_proba(Xt), a.predict_proba(Xt))
    assert a.module_.feature_dropout == 0.0 and a.module_.dropout_generator is None
    joblib.dump(a.module_, tmp_path / "m.joblib")
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="feature_dropout"):
            make_pipe(clf, feature_dropout=bad)[-1].fit(Xf, y_train)


def test_feature_components_project_wide_layers_onto_their_principal_components(setup):
    clf, train, test, y_train, _ = setup  # blocks.1..3: 256, 128 and 128 channels (C x mels)
    front = make_pipe(clf)[:-1].fit(train.waveforms, y_train)
    Xf, Xt = front.transform(train.waveforms), front.transform(test.waveforms)

    def fit(r, epochs=60):
        pipe = make_pipe(clf, epochs=epochs, faithfulness=0.0, feature_components=r)
        with warnings.catch_warnings():  # these short fits may warn they are undertrained
            warnings.simplefilter("ignore", UserWarning)
            return pipe[-1].fit(Xf, y_train)

    whole, some, all3 = fit(None), fit(128, epochs=1), fit(12)
    assert not any("proj_" in k for k in whole.module_.state_dict())
    assert [getattr(some.module_, f"proj_{i}") is None for i in range(3)] == [False, True, True]
    assert some.module_.proj_0.shape == (128, 256)
    assert [a[0].in_channels for a in some.module_.adapters] == [128, 128, 128]
    assert [a[0].in_channels for a in all3.module_.adapters] == [12, 12, 12]
    # an orthogonal projection onto the leading principal components of the training clips'
    # standardised frames: what the adapters read is centred, uncorrelated, by decreasing variance
    net = all3.module_
    for i, f in enumerate(all3._extract(train.waveforms)[0]):
        P = getattr(net, f"proj_{i}")
        np.testing.assert_allclose(P @ P.T, np.eye(12), atol=1e-5)
        z = torch.matmul(P, (f - getattr(net, f"mean_{i}")) / getattr(net, f"std_{i}"))
        frames = z.transpose(1, 2).reshape(-1, 12).double()
        np.testing.assert_allclose(frames.mean(0), 0, atol=1e-4)
        cov = torch.cov(frames.T)
        variances = cov.diagonal()
        np.testing.assert_allclose(cov - torch.diag(variances), 0, atol=1e-3 * float(variances[0]))
        assert (variances[:-1] >= variances[1:] - 1e-6).all()
        # no other 12 directions keep more of the layer's variance than these
        x = ((f - getattr(net, f"mean_{i}")) / getattr(net, f"std_{i}")).transpose(1, 2)
        total = torch.linalg.svdvals(
            x.reshape(-1, x.shape[-1]).double() - x.reshape(-1, x.shape[-1]).double().mean(0)
        )
        kept = float(variances.sum()) * (len(frames) - 1)
        assert kept == pytest.approx(float((total[:12] ** 2).sum()), rel=1e-3)
    # the projection is part of the fitted model: the interpreter trains on what it reads (how
    # close it comes to the classifier depends on where the layers keep the decision: docs),
    # explains, and the same random_state gives the same projection
    history = all3.history_
    assert history[-1]["fidelity_loss"] < history[0]["fidelity_loss"]
    top = np.asarray(y_train).argmax(axis=1)  # better than always answering the commonest class
    assert history[-1]["fidelity"] > np.bincount(top).max() / len(top)
    np.testing.assert_allclose(all3.predict_proba(Xt).sum(axis=1), 1, rtol=1e-5)
    e = explain(make_pipeline(*front, all3), test.waveforms[:3])
    assert np.asarray(e).shape == test.waveforms[:3].shape
    again = fit(12, epochs=2)
    for name in ("proj_0", "proj_1", "proj_2"):  # fitted from the features, before training
        assert torch.equal(getattr(net, name), getattr(again.module_, name)), name
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="feature_components"):
            make_pipe(clf, feature_components=bad)[-1].fit(Xf, y_train)


def test_temperature_trains_on_softened_targets_and_scores_on_the_classifiers_scale(setup):
    clf, train, test, y_train, _ = setup
    front = make_pipe(clf)[:-1].fit(train.waveforms, y_train)
    Xf, Xt = front.transform(train.waveforms), front.transform(test.waveforms)
    y = np.asarray(y_train, dtype=np.float64)

    def fit(targets, **kw):
        with warnings.catch_warnings():  # three epochs may not reach the training-fidelity bar
            warnings.simplefilter("ignore", UserWarning)
            return make_pipe(clf, epochs=3, faithfulness=0.0, **kw)[-1].fit(Xf, targets)

    default, hot = fit(y), fit(y, temperature=2.0)
    cold = fit(y / 2, temperature=1.0, output_type="logits")  # softmax(y / 2) as plain targets
    from_probs = fit(softmax(y, axis=1), temperature=2.0)
    assert hot.temperature_ == 2.0 and cold.temperature_ == default.temperature_ == 1.0
    # the same training as on softmax(y / 2) (from logits or from probabilities), Θ then
    # multiplied by T: the interpreter's scores are on the classifier's scale, not half of it
    for (name, a), b in zip(
        hot.module_.state_dict().items(), from_probs.module_.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.allclose(hot.module_.theta.weight, default.module_.theta.weight)
    for (name, a), b in zip(
        hot.module_.state_dict().items(), cold.module_.state_dict().values(), strict=True
    ):
        expected = 2 * b if name == "theta.weight" else b
        torch.testing.assert_close(a, expected, rtol=1e-4, atol=1e-5, msg=name)
    np.testing.assert_allclose(
        hot.decision_function(Xt), 2 * cold.decision_function(Xt), rtol=1e-3, atol=1e-4
    )
    # warm_start continues at the training scale: a step of ~0 leaves Θ where it was
    theta = hot.module_.theta.weight.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        hot.set_params(warm_start=True, lr=1e-12, epochs=1).fit(Xf, y)
    torch.testing.assert_close(hot.module_.theta.weight, theta, rtol=1e-5, atol=1e-7)
    # a multilabel interpreter trains on its targets as given, and says so when asked otherwise
    multi = (y > 0).astype(float)
    assert fit(multi, multilabel=True).temperature_ == 1.0
    with pytest.raises(ValueError, match="temperature=2.0 with multilabel=True"):
        fit(multi, multilabel=True, temperature=2.0)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            fit(y, temperature=bad)


def test_clone_shares_the_classifier(setup):
    pipe = make_pipe(setup[0])
    cloned = clone(pipe)
    assert cloned[-1].classifier is pipe[-1].classifier
    assert cloned[-1] is not pipe[-1]


def test_grid_search_over_dictionary_size_reuses_spectrograms(setup, tmp_path, monkeypatch):
    clf, train, _, y_train, _ = setup
    calls = []
    original = SpectrogramTransformer.fit_transform

    def counting(self, X, y=None, **kw):
        calls.append(len(X))
        return original(self, X, y, **kw)

    monkeypatch.setattr(SpectrogramTransformer, "fit_transform", counting)
    pipe = make_pipe(clf, epochs=2)
    pipe = Pipeline(pipe.steps, memory=str(tmp_path))
    search = GridSearchCV(pipe, {"nmfdictionary__n_components": [4, 8]}, cv=KFold(2), refit=False)
    search.fit(train.waveforms, y_train)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert len(calls) == 2  # one spectrogram per fold, shared by both dictionary sizes


@pytest.mark.parametrize(
    ("make_bad", "error", "match"),
    [
        (lambda X, y: (X, y[:-1]), ValueError, "rows but there are"),
        (lambda X, y: (X, y[:, :1]), ValueError, "single column"),
        (lambda X, y: (X[:, :0], y), ValueError, "0 feature"),
        (lambda X, y: (np.where(np.arange(X.shape[1]) == 5, np.nan, X), y), ValueError, "NaN"),
        (lambda X, y: (X[0], y), ValueError, "1-D"),
    ],
)
def test_bad_fit_input_is_named(setup, make_bad, error, match):
    clf, train, _, y_train, _ = setup
    X, y = make_bad(train.waveforms, y_train)
    with pytest.raises(error, match=match):
        make_pipe(clf, epochs=1).fit(X, y)


def test_wrong_number_of_columns_in_score(setup, fitted):
    _, _, test, _, y_test = setup
    with pytest.raises(ValueError, match="expected 4"):
        fitted.score(test.waveforms, np.hstack([y_test, y_test]))


def test_unknown_layer_and_unfitted_explain(setup):
    clf, train, test, y_train, _ = setup
    with pytest.raises(ValueError, match="no layer named"):
        InterpreterEstimator(clf, layers=["blocks.9"], epochs=1).fit(
            train.waveforms[:4], y_train[:4]
        )
    with pytest.raises(NotFittedError):
        explain(make_pipe(clf), test.waveforms)
    with pytest.raises(TypeError, match="ending in an InterpreterEstimator"):
        explain(make_pipeline(SpectrogramTransformer()), test.waveforms)


def test_standalone_interpreter_on_waveforms(setup):
    clf, train, test, y_train, _ = setup
    interp = InterpreterEstimator(
        clf,
        layers=LAYERS,
        spectrogram=SpectrogramTransformer(sr=SR, n_fft=256, hop_length=128),
        dictionary=NMFDictionary(n_components=6, max_iter=50, random_state=0),
        hidden=8,
        epochs=2,
        random_state=0,
    ).fit(train.waveforms, y_train.argmax(1))
    assert interp.dictionary_.n_components_ == 6
    assert np.asarray(interp.explain(test.waveforms[:2]).waveforms).shape == (2, 8000)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")
@pytest.mark.parametrize("feature_components", [None, 12])
def test_device_parameter_trains_on_gpu_and_keeps_the_module_on_cpu(setup, feature_components):
    clf, train, test, y_train, _ = setup
    pipe = make_pipe(clf, epochs=3, feature_components=feature_components)
    pipe.set_params(interpreterestimator__device="cuda").fit(train.waveforms, y_train)
    assert {t.device.type for t in pipe[-1].module_.state_dict().values()} == {"cpu"}
    assert np.asarray(explain(pipe, test.waveforms[:2])).shape == (2, 8000)
    # the projection is fitted before training, on the CPU: the same on either device
    cpu = make_pipe(clf, epochs=3, feature_components=feature_components).fit(
        train.waveforms, y_train
    )
    for name, t in cpu[-1].module_.state_dict().items():
        if name.startswith(("mean_", "std_", "proj_")):
            torch.testing.assert_close(pipe[-1].module_.state_dict()[name], t)


@pytest.fixture(scope="module")
def separation(setup, fitted):
    from nmfinterp.separation import ClassNMFSeparation

    _, train, _, y_train, _ = setup
    return ClassNMFSeparation(fitted[0], n_components=2, max_iter=50).fit(train.waveforms, y_train)


def test_a_separation_weights_the_contrast_term_by_what_the_other_classes_model(
    setup, fitted, separation
):
    """explain(..., separation=sep): the contrast term's energy in each bin is weighted by
    SEPARATION_SCALE · (1 − M_c), M_c the separation's mask of the explained class."""
    import importlib

    E = importlib.import_module("nmfinterp.explain")
    clf, _, test, _, _ = setup
    x = test.waveforms[:4]
    ex = explain(fitted, x, refine_steps=0)
    H, scores = torch.as_tensor(np.stack(ex.activations)), torch.as_tensor(ex.classifier_scores)
    cls, xt = torch.as_tensor(ex.classes), torch.as_tensor(x)
    args = (fitted[-1], xt, cls, "linear", 0.3, 300.0, H, scores, 0.5, "linear")
    own = torch.as_tensor(separation.masks(x, ex.classes))
    alone, weighted = E._Faithfulness(*args), E._Faithfulness(*args, separation_masks=own)
    assert 0 < float(own.mean()) < 1  # a mask that neither keeps nor drops everything
    expected = alone.contrast * E.SEPARATION_SCALE * (1 - own)
    assert torch.allclose(weighted.contrast, expected, atol=1e-12)
    refined = explain(fitted, x, refine_steps=5, separation=separation)
    assert (
        refined.settings["separation"] is True
        and explain(fitted, x[:1]).settings["separation"] is False
    )
    assert np.all(np.isfinite(np.asarray(refined)))


def test_fit_separation_fits_the_separation_explain_uses_by_default(setup, fitted, separation):
    """pipe[-1].fit_separation(X_train, y_train) fits the same ClassNMFSeparation on the pipeline's
    spectrogram; explain then weights its contrast term by it (separation="auto") unless told
    separation=None, and not without refinement."""
    clf, train, test, y_train, _ = setup
    x = test.waveforms[:3]
    pipe = copy.deepcopy(fitted)
    interp = pipe[-1].fit_separation(train.waveforms, y_train, n_components=2, max_iter=50)
    own = interp.separation_
    assert own.spectrogram is own.spectrogram_ is pipe[0] and own.n_components == 2
    np.testing.assert_array_equal(own.components_, separation.components_)
    # without y the classifier's outputs on the clips: the same classes, the same blocks
    again = copy.deepcopy(fitted)[-1].fit_separation(train.waveforms, n_components=2, max_iter=50)
    np.testing.assert_array_equal(again.separation_.components_, separation.components_)
    default = copy.deepcopy(fitted)[-1].fit_separation(train.waveforms, y_train, max_iter=5)
    assert default.separation_.n_components == max(1, 8 // y_train.shape[1])  # K / n_classes

    ex = explain(pipe, x, refine_steps=5)
    given = explain(fitted, x, refine_steps=5, separation=separation)
    assert ex.settings["separation"] is True
    np.testing.assert_allclose(np.asarray(ex), np.asarray(given), atol=1e-6)
    off = explain(pipe, x, refine_steps=5, separation=None)
    assert off.settings["separation"] is False
    np.testing.assert_allclose(
        np.asarray(off), np.asarray(explain(fitted, x, refine_steps=5)), atol=1e-6
    )
    assert not np.allclose(np.asarray(off), np.asarray(ex), atol=1e-4)
    assert explain(pipe, x, refine_steps=0).settings["separation"] is False
    assert explain(pipe, x, contrast_penalty=0.0).settings["separation"] is False

    # a new fit learns on other outputs (maybe another spectrogram): the separation goes
    refit = copy.deepcopy(pipe)
    with warnings.catch_warnings():  # one epoch: a warning that it agrees too little
        warnings.simplefilter("ignore")
        refit[-1].set_params(epochs=1).fit(refit[:-1].transform(train.waveforms), y_train)
    assert not hasattr(refit[-1], "separation_")


def test_separation_true_fits_it_with_the_pipeline(setup, fitted):
    """InterpreterEstimator(separation=True): Pipeline.fit ends with fit_separation's defaults on
    the same clips and outputs; a multilabel interpreter refuses it before training."""
    clf, train, _, y_train, _ = setup
    pipe = clone(fitted).set_params(
        interpreterestimator__separation=True, interpreterestimator__epochs=2
    )
    with warnings.catch_warnings():  # two epochs: a warning that it agrees too little
        warnings.simplefilter("ignore")
        pipe.fit(train.waveforms, y_train)
    sep = pipe[-1].separation_
    assert sep.spectrogram_ is pipe[0] and sep.n_components == 8 // y_train.shape[1]
    again = copy.deepcopy(pipe)[-1].fit_separation(train.waveforms, y_train).separation_
    np.testing.assert_array_equal(sep.components_, again.components_)
    assert not hasattr(clone(pipe)[-1], "separation_")  # a parameter, not carried by clone
    with pytest.raises(ValueError, match="separation=True fits what the refinement"):
        InterpreterEstimator(clf, layers=LAYERS, multilabel=True, separation=True).fit(
            train.waveforms, y_train
        )


def test_fit_separation_names_what_it_cannot_use(setup, fitted):
    clf, train, _, y_train, _ = setup
    interp = copy.deepcopy(fitted)[-1]
    with pytest.raises(NotFittedError):
        InterpreterEstimator(clf).fit_separation(train.waveforms, y_train)
    with pytest.raises(ValueError, match="y has 2 columns; expected 4"):
        interp.fit_separation(train.waveforms, y_train[:, :2])
    with pytest.raises(ValueError, match="n_components=0; expected a positive integer"):
        interp.fit_separation(train.waveforms, y_train, n_components=0)
    with pytest.raises(ValueError, match="y has 5 rows but there are"):
        interp.fit_separation(train.waveforms, y_train[:5])
    assert not hasattr(interp, "separation_")


def test_a_separation_that_does_not_fit_the_pipeline_is_named(setup, fitted, separation):
    from nmfinterp.separation import ClassNMFSeparation

    _, train, test, y_train, _ = setup
    x = test.waveforms[:1]
    with pytest.raises(ValueError, match="needs refine_steps > 0 and a contrast_penalty > 0"):
        explain(fitted, x, refine_steps=0, separation=separation)
    with pytest.raises(ValueError, match="needs refine_steps > 0 and a contrast_penalty > 0"):
        explain(fitted, x, contrast_penalty=0.0, separation=separation)
    with pytest.raises(ValueError, match="expected 'auto'.*a fitted nmfinterp.separation"):
        explain(fitted, x, separation="blocks")
    other_grid = SpectrogramTransformer(sr=SR, n_fft=512).fit(train.waveforms[:1])
    wrong = ClassNMFSeparation(other_grid, n_components=2, max_iter=20).fit(
        train.waveforms, y_train
    )
    with pytest.raises(ValueError, match=r"is not the pipeline's \(16000, 256, 128\)"):
        explain(fitted, x, separation=wrong)
    fewer = ClassNMFSeparation(fitted[0], n_components=2, max_iter=20).fit(
        train.waveforms, y_train[:, :2]
    )
    with pytest.raises(ValueError, match="fitted on 2 classes and the interpreter on"):
        explain(fitted, x, separation=fewer)


def test_source_targets_follow_the_part_each_component_lies_in(setup, fitted):
    """source_targets: component k is the deciding part's in frame t where its pattern correlates
    more with that part's log-magnitude than with the other's; swapping the parts flips every
    target that is not a tie."""
    from nmfinterp.gates import source_targets

    _, train, _, _, _ = setup
    a, b = train.waveforms[:3], train.waveforms[-3:]
    t_ab, t_ba = source_targets(fitted[-1], a, b), source_targets(fitted[-1], b, a)
    assert t_ab.shape == (3, fitted[1].n_components_, fitted[0].n_frames_)
    assert 0 < float(t_ab.mean()) < 1
    assert torch.all(t_ab + t_ba <= 1) and float((t_ab + t_ba).mean()) > 0.95
    # a part against silence: every component with any energy correlates more with the part
    assert float(source_targets(fitted[-1], a, np.zeros_like(a)).mean()) > 0.95


def test_fit_source_gates_learns_the_parts_and_explain_uses_them_by_default(setup, fitted):
    """pipe[-1].fit_source_gates(X_train): a network that predicts the source targets of mixtures
    of the training clips better than chance, saved as source_gates_; explain's refinement then
    weights its contrast term by SOURCE_GATES_SCALE · (1 − M_s) (separation="auto"), before a
    class-block separation; separation=None and a new fit leave it out."""
    import importlib

    from nmfinterp.gates import _activations, source_masks, source_targets

    E = importlib.import_module("nmfinterp.explain")
    G = importlib.import_module("nmfinterp.gates")
    _, train, test, y_train, _ = setup
    pipe = copy.deepcopy(fitted)
    interp = pipe[-1].fit_source_gates(train.waveforms, mixtures=6, epochs=30)
    hist = interp.source_gates_history_
    assert len(hist) == 30 and hist[-1]["loss"] < hist[0]["loss"]
    # on mixtures of its training clips it tells the parts apart (held-out clips: the benchmark)
    a, b = train.waveforms[train.labels == 0][:6], train.waveforms[train.labels == 1][:6]
    H, z, scores, hidden = _activations(interp, a + b, context=True)
    cls = scores.argmax(-1)
    first = (cls == 0).numpy()
    target = source_targets(interp, np.where(first[:, None], a, b), np.where(first[:, None], b, a))
    theta = interp.module_.theta.weight.detach()
    with torch.no_grad():
        guess = (interp.source_gates_(H, z, theta, cls, hidden) > 0).float()
    hit = guess == target
    balanced = 0.5 * (
        float(hit[target == 1].float().mean()) + float(hit[target == 0].float().mean())
    )
    assert balanced > 0.75, balanced  # chance: 0.5

    x = test.waveforms[:3]
    ex = explain(pipe, x, refine_steps=5)
    assert ex.settings["separation"] is True
    off = explain(pipe, x, refine_steps=5, separation=None)
    np.testing.assert_allclose(
        np.asarray(off), np.asarray(explain(fitted, x, refine_steps=5)), atol=1e-6
    )
    assert not np.allclose(np.asarray(off), np.asarray(ex), atol=1e-4)
    # the same weighting, by hand: the contrast term times SOURCE_GATES_SCALE (1 - M_s)
    e0 = explain(fitted, x, refine_steps=0)
    Hx = torch.as_tensor(np.stack(e0.activations))
    feats, sx = interp._extract(x)
    with torch.no_grad():
        hid = interp.module_.hidden(feats, Hx.shape[-1])
    own = source_masks(
        interp, interp.source_gates_, Hx, interp.module_.pool(Hx), torch.as_tensor(e0.classes), hid
    )
    assert own.shape == (3, pipe[0].n_freqs_, pipe[0].n_frames_) and 0 < float(own.mean()) < 1
    args = (
        interp,
        torch.as_tensor(x),
        torch.as_tensor(e0.classes),
        "linear",
        0.3,
        300.0,
        Hx,
        sx,
        0.5,
        "linear",
    )
    alone = E._Faithfulness(*args)
    weighted = E._Faithfulness(*args, separation_masks=own, separation_scale=G.SOURCE_GATES_SCALE)
    expected = alone.contrast * G.SOURCE_GATES_SCALE * (1 - own)
    assert torch.allclose(weighted.contrast, expected, atol=1e-12)
    # given explicitly, the same; with a class-block separation too, the source gates come first
    given = explain(fitted, x, refine_steps=5, separation=interp.source_gates_)
    np.testing.assert_allclose(np.asarray(given), np.asarray(ex), atol=1e-6)
    both = copy.deepcopy(pipe)
    both[-1].fit_separation(train.waveforms, y_train, n_components=2, max_iter=20)
    np.testing.assert_allclose(
        np.asarray(explain(both, x, refine_steps=5)), np.asarray(ex), atol=1e-6
    )

    refit = copy.deepcopy(pipe)
    with warnings.catch_warnings():  # one epoch: a warning that it agrees too little
        warnings.simplefilter("ignore")
        refit[-1].set_params(epochs=1).fit(refit[:-1].transform(train.waveforms), y_train)
    assert not hasattr(refit[-1], "source_gates_")


def test_source_rows_are_made_round_by_round_and_stop_at_max_mixtures(setup, fitted, monkeypatch):
    """fit_source_gates' training rows (gates._source_rows), made SOURCE_ROWS_CHUNK mixtures at a
    time: the same rows as the interpreter's features of all the rounds' mixtures at once, the
    targets as bools; max_mixtures bounds the mixtures the interpreter explains (the last round a
    random subset)."""
    import importlib

    from nmfinterp.explain import _batched_classifier_scores

    G = importlib.import_module("nmfinterp.gates")
    _, train, _, _, _ = setup
    interp, X = fitted[-1], train.waveforms
    monkeypatch.setattr(G, "SOURCE_ROWS_CHUNK", 5)
    decisions = _batched_classifier_scores(interp, X).argmax(-1).numpy()
    H, z, hidden, decided, targets = G._source_rows(
        interp, X, decisions, 2, 10_000, np.random.default_rng(0)
    )
    rounds = list(G._mixture_rounds(X, decisions, 2, np.random.default_rng(0)))
    a, b = (np.concatenate([r[i] for r in rounds]) for i in (0, 1))
    second = np.concatenate([X[r[1]] * r[2] * r[3] for r in rounds]).astype(np.float32)
    H_all, z_all, scores, hidden_all = G._activations(interp, X[a] + second, context=True)
    d = scores.argmax(-1).numpy()
    rows = np.flatnonzero((d == decisions[a]) | (d == decisions[b]))
    assert 0 < len(rows) == len(decided) and torch.equal(decided, torch.as_tensor(d[rows]))
    for got, want in ((H, H_all), (z, z_all), (hidden, hidden_all)):
        torch.testing.assert_close(got, want[torch.as_tensor(rows)], atol=1e-5, rtol=1e-4)
    own = (d == decisions[a])[rows, None]
    want = G.source_targets(
        interp,
        np.where(own, X[a][rows], second[rows]),
        np.where(own, second[rows], X[a][rows]),
    )
    assert targets.dtype == torch.bool and torch.equal(targets, want.bool())

    explained = []
    real = G._activations

    def counting(interpreter, x, context=False):
        explained.append(len(x))
        return real(interpreter, x, context)

    monkeypatch.setattr(G, "_activations", counting)
    capped = G._source_rows(interp, X, decisions, 3, 7, np.random.default_rng(0))
    assert explained == [5, 2] and len(capped[3]) <= 7


def test_the_source_network_trains_from_fit_source_gates_rows_and_draws(setup, fitted):
    """gates.train_source_net on gates.source_training_rows (what the generalisation study trains
    each setting with, from the generator's start) is fit_source_gates' network, weight for
    weight; weight_decay (AdamW) gives another, and read_hidden=False one that reads no hidden
    representation."""
    from nmfinterp.gates import source_training_rows, train_source_net

    _, train, _, _, _ = setup
    interp = copy.deepcopy(fitted)[-1]
    interp.random_state = 3
    interp.fit_source_gates(train.waveforms, mixtures=2, epochs=3, hidden=8)
    rows, gen = source_training_rows(interp, train.waveforms, 2, 3000, 3)
    theta = interp.module_.theta.weight.detach()

    def trained(**kw):
        start = torch.Generator().manual_seed(gen.initial_seed())
        return train_source_net(rows, theta, start, epochs=3, lr=3e-3, hidden=8, **kw)

    net, history = trained()
    assert [h["loss"] for h in history] == [h["loss"] for h in interp.source_gates_history_]
    for (name, got), want in zip(
        net.state_dict().items(), interp.source_gates_.state_dict().values(), strict=True
    ):
        assert torch.equal(got, want), name
    decayed, _ = trained(weight_decay=0.1)
    assert not torch.equal(decayed.body[0].weight, net.body[0].weight)
    blind, blind_history = trained(read_hidden=False)
    assert blind.context_channels == 0 and blind.context is None
    assert np.isfinite(blind_history[-1]["loss"])


def test_fit_source_gates_names_what_it_cannot_use(setup, fitted):
    from nmfinterp.gates import GateNet

    clf, train, test, y_train, _ = setup
    interp = copy.deepcopy(fitted)[-1]
    with pytest.raises(NotFittedError):
        InterpreterEstimator(clf).fit_source_gates(train.waveforms)
    bads = ({"mixtures": 0}, {"epochs": 1.5}, {"hidden": True}, {"lr": 0.0}, {"max_mixtures": 0})
    for bad in bads:
        with pytest.raises(ValueError, match=f"{next(iter(bad))}=.*expected a positive"):
            interp.fit_source_gates(train.waveforms, **bad)
    one_class = train.waveforms[train.labels == 0]
    if len(np.unique(predict_logits(clf, one_class).argmax(1))) == 1:
        with pytest.raises(ValueError, match="at least two classes"):
            interp.fit_source_gates(one_class, mixtures=1, epochs=1)
    assert not hasattr(interp, "source_gates_")
    with pytest.raises(ValueError, match="a gate network for another interpreter"):
        explain(fitted, test.waveforms[:1], separation=GateNet(3, 4, context_channels=2))


def test_source_gates_auto_learns_them_where_they_can_be(setup, fitted):
    """The default, source_gates="auto": a single-label fit on clips the classifier puts in two
    classes or more ends with the source gates (as source_gates=True would); one whose clips it
    puts in one class, a multilabel one and one asked for a separation end without them, and
    without an error."""
    clf, train, _, y_train, _ = setup
    assert InterpreterEstimator(clf).get_params()["source_gates"] == "auto"
    assert len(np.unique(y_train.argmax(1))) > 1
    with warnings.catch_warnings():  # two epochs: a warning that it agrees too little
        warnings.simplefilter("ignore")
        auto = make_pipe(clf, epochs=2, source_gates="auto").fit(train.waveforms, y_train)
        assert len(auto[-1].source_gates_history_) == 60  # fit_source_gates's defaults
        decided = y_train.argmax(1)
        same = decided == np.bincount(decided).argmax()  # the clips it puts in one class
        single = make_pipe(clf, epochs=2, source_gates="auto").fit(
            train.waveforms[same], y_train[same]
        )
        assert not hasattr(single[-1], "source_gates_")
        with pytest.raises(ValueError, match="at least two classes"):
            make_pipe(clf, epochs=2, source_gates=True).fit(train.waveforms[same], y_train[same])
        multi = make_pipe(clf, epochs=2, faithfulness=0.0, multilabel=True)
        multi.set_params(interpreterestimator__source_gates="auto")
        multi.fit(train.waveforms, y_train)
        assert not hasattr(multi[-1], "source_gates_")
        separated = make_pipe(clf, epochs=2, source_gates="auto", separation=True)
        separated.fit(train.waveforms, y_train)
        assert hasattr(separated[-1], "separation_")
        assert not hasattr(separated[-1], "source_gates_")


def test_source_gates_true_learns_them_with_the_pipeline(setup, fitted):
    """InterpreterEstimator(source_gates=True): Pipeline.fit ends with fit_source_gates's
    defaults on the same clips; a multilabel interpreter refuses it before training; clone
    carries the parameter, not the network."""
    import importlib

    G = importlib.import_module("nmfinterp.gates")
    clf, train, _, y_train, _ = setup
    pipe = clone(fitted).set_params(
        interpreterestimator__source_gates=True, interpreterestimator__epochs=2
    )
    calls = []
    real = G.fit_source_gates

    def spy(interpreter, X, **kw):
        calls.append((len(X), kw["mixtures"], kw["epochs"], kw["max_mixtures"]))
        return real(interpreter, X, **{**kw, "epochs": 2})

    G.fit_source_gates = spy
    try:
        with warnings.catch_warnings():  # two epochs: a warning that it agrees too little
            warnings.simplefilter("ignore")
            pipe.fit(train.waveforms, y_train)
    finally:
        G.fit_source_gates = real
    assert calls == [(len(train.waveforms), 10, 60, 3000)]  # fit_source_gates's defaults
    assert len(pipe[-1].source_gates_history_) == 2
    assert clone(pipe)[-1].source_gates is True and not hasattr(clone(pipe)[-1], "source_gates_")
    with pytest.raises(ValueError, match="source_gates=True fits what the refinement"):
        InterpreterEstimator(clf, layers=LAYERS, multilabel=True, source_gates=True).fit(
            train.waveforms, y_train
        )
