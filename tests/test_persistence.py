"""save/load: safetensors + JSON, no code executed, classifier checked, same explanations."""

import json
import warnings

import joblib
import numpy as np
import pytest
import torch
from _small import LAYERS, SR, small_pipe, small_setup
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from nmfinterp import InterpreterEstimator, NMFDictionary, SpectrogramTransformer, explain
from nmfinterp.classifiers import LogMelCNN
from nmfinterp.persistence import classifier_fingerprint, load, save


@pytest.fixture(scope="module")
def setup():
    return small_setup()


@pytest.fixture(scope="module")
def fitted(setup):
    clf, X, y, _ = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return small_pipe(clf, epochs=4).fit(X, y)


def _same_explanations(a, b, X):
    ea, eb = explain(a, X, threshold=-1.0), explain(b, X, threshold=-1.0)
    np.testing.assert_array_equal(np.asarray(ea), np.asarray(eb))
    np.testing.assert_array_equal(ea.relevance, eb.relevance)
    for ma, mb in zip(ea.masks, eb.masks, strict=True):
        np.testing.assert_array_equal(ma, mb)


def test_round_trip_gives_identical_explanations(setup, fitted, tmp_path):
    clf, _, _, Xt = setup
    path = save(fitted, tmp_path / "model.safetensors")
    loaded = load(path, classifier=clf)
    _same_explanations(fitted, loaded, Xt)
    np.testing.assert_array_equal(loaded.predict_proba(Xt), fitted.predict_proba(Xt))
    interp = loaded[-1]
    # the pipeline's steps and the interpreter's front end are the same objects again
    assert interp.spectrogram_ is loaded[0] and interp.dictionary_ is loaded[1]
    assert interp.classifier is clf and interp.history_ == fitted[-1].history_
    assert loaded.get_params()["interpreterestimator__layers"] == LAYERS
    np.testing.assert_array_equal(interp.classes_, fitted[-1].classes_)
    np.testing.assert_array_equal(interp.class_usage_, fitted[-1].class_usage_)
    # the file is a plain safetensors file with JSON configuration and no pickle inside
    raw = path.read_bytes()
    assert b"__reduce__" not in raw and not raw.startswith(b"\x80")
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header["__metadata__"]["format"] == "nmfinterp"


def test_a_fitted_separation_round_trips_with_the_pipeline(setup, fitted, tmp_path):
    """fit_separation's ClassNMFSeparation is saved as its own node on the pipeline's
    spectrogram: loaded, it gives the same masks and the same explanations."""
    import copy

    clf, X, y, Xt = setup
    pipe = copy.deepcopy(fitted)
    pipe[-1].fit_separation(X, y, n_components=2, max_iter=30)
    loaded = load(save(pipe, tmp_path / "separated.safetensors"), classifier=clf)
    sep = loaded[-1].separation_
    assert type(sep) is type(pipe[-1].separation_)
    assert sep.spectrogram is sep.spectrogram_ is loaded[0]
    assert sep.get_params(deep=False).keys() == pipe[-1].separation_.get_params(deep=False).keys()
    for name in ("components_", "class_of_component_", "classes_"):
        np.testing.assert_array_equal(getattr(sep, name), getattr(pipe[-1].separation_, name))
    classes = np.arange(len(Xt)) % len(sep.classes_)
    np.testing.assert_array_equal(sep.masks(Xt, classes), pipe[-1].separation_.masks(Xt, classes))
    a, b = explain(pipe, Xt, refine_steps=2), explain(loaded, Xt, refine_steps=2)
    assert a.settings["separation"] is b.settings["separation"] is True
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_source_gates_round_trip_with_the_pipeline(setup, fitted, tmp_path):
    """fit_source_gates's network is saved with the interpreter (source_gates_ and its history):
    loaded, explain weights its refinement by it as before, to the sample, and joblib too."""
    import copy

    import joblib
    import torch

    from nmfinterp.gates import GateNet

    clf, X, _, Xt = setup
    pipe = copy.deepcopy(fitted)
    # this small classifier decides one class only (no mixtures of two to learn from): a network
    # of the shape fit_source_gates trains, with weights drawn at random, stands in for it
    interp = pipe[-1]
    net = GateNet(interp.n_components_, 4, context_channels=interp.module_.decoder[0].in_channels)
    torch.manual_seed(0)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    interp.source_gates_, interp.source_gates_history_ = net.eval(), [{"loss": 0.5, "seconds": 1.0}]
    loaded = load(save(pipe, tmp_path / "gated.safetensors"), classifier=clf)
    assert loaded[-1].source_gates_history_ == pipe[-1].source_gates_history_
    a, b = explain(pipe, Xt, refine_steps=2), explain(loaded, Xt, refine_steps=2)
    assert a.settings["separation"] is b.settings["separation"] is True
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    joblib.dump(pipe, tmp_path / "gated.joblib")
    again = joblib.load(tmp_path / "gated.joblib")
    np.testing.assert_array_equal(np.asarray(explain(again, Xt, refine_steps=2)), np.asarray(a))


def test_projected_layers_round_trip_and_older_files_read_every_channel(setup, fitted, tmp_path):
    clf, X, y, Xt = setup  # blocks.0 and blocks.1: 64 channels each (C x mels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = small_pipe(clf, epochs=4, feature_components=5).fit(X, y)
    assert pipe[-1].module_.proj_0.shape == pipe[-1].module_.proj_1.shape == (5, 64)
    loaded = load(save(pipe, tmp_path / "projected.safetensors"), classifier=clf)
    assert loaded[-1].feature_components == 5
    _same_explanations(pipe, loaded, Xt)
    np.testing.assert_array_equal(loaded.predict_proba(Xt), pipe.predict_proba(Xt))
    # a file written before the parameters existed holds a module that reads every channel,
    # trained at temperature 1
    path = save(fitted, tmp_path / "model.safetensors")
    with safe_open(path, "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    for node in config["nodes"]:
        node["params"].pop("feature_components", None)
        node["params"].pop("temperature", None)
        node["params"].pop("separation", None)
        node["fitted"].pop("temperature_", None)
    assert "feature_components" not in json.dumps(config)
    assert "separation" not in json.dumps(config)
    assert "temperature" not in json.dumps(config)
    old = tmp_path / "old.safetensors"
    save_file(tensors, old, metadata={**meta, "config": json.dumps(config)})
    with pytest.MonkeyPatch.context() as mp:  # whatever today's default is
        mp.setattr(
            InterpreterEstimator.__init__,
            "__kwdefaults__",
            {
                **InterpreterEstimator.__init__.__kwdefaults__,
                "feature_components": 3,
                "temperature": 2.0,
                "separation": True,
            },
        )
        back = load(old, classifier=clf)
    assert back[-1].feature_components is None and back[-1].temperature == 1.0
    assert back[-1].separation is False
    _same_explanations(fitted, back, Xt)


def test_joblib_still_works_alongside(setup, fitted, tmp_path):
    joblib.dump(fitted, tmp_path / "p.joblib")
    _same_explanations(fitted, joblib.load(tmp_path / "p.joblib"), setup[3])


def test_load_needs_the_classifier_and_checks_it(setup, fitted, tmp_path):
    clf, *_ = setup
    path = save(fitted, tmp_path / "m.safetensors")
    with pytest.raises(
        ValueError, match=r"interpreter of a nmfinterp\.classifiers\.LogMelCNN.*classifier=model"
    ):
        load(path)
    other_arch = LogMelCNN(4, sr=SR, n_fft=256, hop_length=128, n_mels=32, channels=(4, 16))
    with pytest.raises(ValueError, match=r"tensors that differ: \['blocks\.1.*Pass the classifier"):
        load(path, classifier=other_arch)
    with pytest.raises(ValueError, match=r"LogMelCNN.*the classifier given is a torch\.nn"):
        load(path, classifier=torch.nn.Linear(2, 2))
    retrained = LogMelCNN(
        4, sr=SR, n_fft=256, hop_length=128, n_mels=32, channels=(4, 8), random_state=1
    )
    with pytest.warns(UserWarning, match="other weights"):
        load(path, classifier=retrained)


def test_not_an_nmfinterp_save_and_incompatible_versions(fitted, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not a model")
    with pytest.raises(ValueError, match="is not an nmfinterp save: it is not a safetensors file"):
        load(junk)
    pickle_file = tmp_path / "p.joblib"
    joblib.dump({"a": 1}, pickle_file)
    with pytest.raises(ValueError, match="not an nmfinterp save.*joblib.load"):
        load(pickle_file)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="safetensors file but not an nmfinterp save"):
        load(foreign)
    # a file from a future format version
    path = save(fitted[1], tmp_path / "d.safetensors")
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = f.metadata()
    future = tmp_path / "future.safetensors"
    save_file(load_file(path), future, metadata=meta | {"format_version": "99"})
    with pytest.raises(ValueError, match=r"format version '99'.*reads format version 1 only"):
        load(future)
    # an unknown class name is refused, never imported
    evil = json.loads(meta["config"])
    evil["nodes"][0]["class"] = "os.system"
    bad = tmp_path / "evil.safetensors"
    save_file(load_file(path), bad, metadata=meta | {"config": json.dumps(evil)})
    with pytest.raises(ValueError, match="class 'os.system' this nmfinterp does not know"):
        load(bad)


def _to_logmel(x):
    return x


def test_callables_must_be_passed_again_and_other_estimators_refused(setup, tmp_path):
    clf, X, y, _ = setup
    interp = InterpreterEstimator(
        clf,
        layers=LAYERS,
        classifier_input=_to_logmel,
        spectrogram=SpectrogramTransformer(sr=SR, n_fft=256, hop_length=128),
        dictionary=NMFDictionary(n_components=4, max_iter=30, random_state=0),
        hidden=4,
        epochs=1,
        faithfulness=0.0,
        random_state=0,
    ).fit(X, y)
    path = save(interp, tmp_path / "i.safetensors")
    with pytest.raises(
        ValueError, match=r"classifier_input=test_persistence\._to_logmel.*pass it again"
    ):
        load(path, classifier=clf)
    loaded = load(path, classifier=clf, classifier_input=_to_logmel)
    np.testing.assert_array_equal(loaded.predict_proba(X[:3]), interp.predict_proba(X[:3]))
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(TypeError, match="StandardScaler.*joblib.dump"):
        save(StandardScaler(), tmp_path / "s.safetensors")
    with pytest.raises(TypeError, match="random_state=.*RandomState"):
        save(NMFDictionary(random_state=np.random.RandomState(0)), tmp_path / "r.safetensors")


def test_fingerprint_changes_with_weights():
    a = torch.nn.Linear(3, 2)
    fa = classifier_fingerprint(a)
    with torch.no_grad():
        a.weight[0, 0] += 1
    fb = classifier_fingerprint(a)
    assert fa["shapes"] == fb["shapes"] and fa["sha256"] != fb["sha256"]


def test_trained_on_another_device_explains_on_cpu(setup, fitted, tmp_path):
    """A model whose device says "cuda" (as trained on a GPU) loads and explains on a CPU machine."""
    clf, _, _, Xt = setup
    gpu_trained = load(save(fitted, tmp_path / "m.safetensors"), classifier=clf)
    gpu_trained.set_params(interpreterestimator__device="cuda")
    path = save(gpu_trained, tmp_path / "g.safetensors")
    loaded = load(path, classifier=clf)
    assert loaded[-1].device == "cuda"
    assert next(loaded[-1].module_.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():  # prediction falls back to the CPU here
        np.testing.assert_array_equal(loaded.predict_proba(Xt), fitted.predict_proba(Xt))
    _same_explanations(fitted, loaded, Xt)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")
def test_trained_on_gpu_saves_and_explains_on_cpu(setup, fitted, tmp_path):
    clf, X, y, Xt = setup
    gpu_clf = LogMelCNN(4, sr=SR, n_fft=256, hop_length=128, n_mels=32, channels=(4, 8))
    gpu_clf.load_state_dict(clf.state_dict())
    pipe = small_pipe(gpu_clf.cuda(), device="cuda").fit(X, y)
    assert next(pipe[-1].module_.parameters()).device.type == "cpu"
    path = save(pipe, tmp_path / "gpu.safetensors")
    on_cpu = load(path, classifier=clf)  # same weights, on the CPU
    ex_gpu, ex_cpu = explain(pipe, Xt, threshold=-1.0), explain(on_cpu, Xt, threshold=-1.0)
    np.testing.assert_allclose(np.asarray(ex_cpu), np.asarray(ex_gpu), atol=1e-3)
    joblib.dump(pipe[-1].set_params(classifier=clf), tmp_path / "p.joblib")
    assert np.asarray(explain(joblib.load(tmp_path / "p.joblib"), Xt)).shape == Xt.shape
