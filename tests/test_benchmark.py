"""The benchmark's building blocks: conditions, decisions, scoring (small synthetic data)."""

import os
import types

import numpy as np
import pytest
import torch

from nmfinterp import SpectrogramTransformer
from nmfinterp.baselines import all_masks
from nmfinterp.benchmark import (
    METHODS,
    QUICK_SKIPS,
    _decisions,
    _in_fresh_process,
    _interleaved_times,
    _interleaved_turns,
    _load_others,
    _loudest,
    _speech_track,
    _turn_ratios,
    default_methods,
    make_conditions,
    oracle_gate_masks,
    score_masks,
)
from nmfinterp.datasets import make_synthetic_sounds, rms
from nmfinterp.metrics import energy_share
from nmfinterp.parallel import worker_torch_threads


@pytest.fixture(scope="module")
def data():
    return make_synthetic_sounds(n_per_class=3, sr=8000, duration=0.5, random_state=0)


def test_conditions_are_exact_sums_at_the_stated_levels(data):
    speech = np.random.default_rng(1).standard_normal((4, 1000)).astype(np.float32)
    conds = make_conditions(data, speech)
    assert set(conds) == {"clean", "mix_0.8_0.2", "mix_equal", "white_noise", "speech"}
    for c in conds.values():
        assert np.allclose(c["mixture"], c["target"] + c["other"], atol=1e-6)
        assert c["mixture"].shape == data.waveforms.shape
    x = data.waveforms
    assert np.allclose(conds["mix_0.8_0.2"]["target"], 0.8 * x, atol=1e-6)
    assert np.all(conds["mix_equal"]["other_label"] != data.labels)  # other class
    assert np.allclose(rms(conds["mix_equal"]["other"]), rms(x), rtol=1e-3)
    for name in ("white_noise", "speech"):
        assert np.allclose(rms(conds[name]["other"]), 0.5 * rms(x), rtol=1e-3)


def test_others_folder_gives_the_interferers_of_both_mixtures(data, tmp_path):
    """--others: any clips under a folder (nested, WAV or FLAC, any rate) become s2 of (b) and (c),
    with no class of their own (so only the test clip's class can be the deciding one)."""
    import soundfile as sf

    (tmp_path / "others" / "deep").mkdir(parents=True)
    t = np.arange(4000) / 16000
    sf.write(tmp_path / "others" / "a.wav", np.sin(2 * np.pi * 300 * t), 16000)
    sf.write(tmp_path / "others" / "deep" / "b.flac", np.sin(2 * np.pi * 900 * t[:2000]), 16000)
    (tmp_path / "others" / "notes.txt").write_text("not audio")
    n = data.waveforms.shape[1]
    others = _load_others(str(tmp_path / "others"), 8000, n)
    assert others.shape == (2, n) and others.dtype == np.float32  # resampled, padded / trimmed
    conds = make_conditions(data, None, others)
    for name in ("mix_0.8_0.2", "mix_equal"):
        c = conds[name]
        assert np.all(c["other_label"] == -1)
        np.testing.assert_allclose(c["mixture"], c["target"] + c["other"], atol=1e-6)
        for row in c["other"]:  # every interferer is one of the folder's clips, rescaled
            assert any(abs(np.corrcoef(row, o)[0, 1]) > 0.999 for o in others)
    assert np.allclose(rms(conds["mix_equal"]["other"]), rms(data.waveforms), rtol=1e-3)
    with pytest.raises(FileNotFoundError, match=r"--others .*empty: no .wav/.flac/.ogg files"):
        (tmp_path / "empty").mkdir()
        _load_others(str(tmp_path / "empty"), 8000, n)


def test_decisions_pick_the_source_of_the_decided_class(data):
    conds = make_conditions(data, None)
    c = conds["mix_equal"]
    decided = c["target_label"].copy()
    decided[0] = c["other_label"][0]  # clip 0: the other source decides
    decided[1] = 99  # clip 1: neither -> left out
    keep, deciding, other = _decisions(c, decided)
    assert 1 not in keep and 0 in keep
    assert np.array_equal(deciding[0], c["other"][0]) and np.array_equal(other[0], c["target"][0])
    j = list(keep).index(2)
    assert np.array_equal(deciding[j], c["target"][2])


def test_score_masks_of_the_whole_input(data):
    spec = SpectrogramTransformer(sr=8000, n_fft=256).fit(data.waveforms)
    x = data.waveforms[:4]

    def probs(w):  # a fake classifier: loud clips are class 1
        p1 = torch.sigmoid(torch.as_tensor(50 * (rms(np.asarray(w)) - 0.01)))
        return torch.stack([1 - p1, p1], 1).numpy()

    classes = probs(x).argmax(1)
    r = score_masks(probs, spec, x, all_masks(spec, x), classes, x, np.zeros_like(x))
    assert r["Fid-In"]["mean"] == 1.0 and r["AD"]["mean"] == pytest.approx(0, abs=1e-3)
    assert r["energy_share"]["mean"] == pytest.approx(1.0)
    assert r["si_sdr_deciding"]["mean"] > 40  # the explanation is the input itself
    assert r["mask_mean"]["mean"] == 1.0


def test_speech_track_and_loudest_window():
    rng = np.random.default_rng(0)
    utt = np.zeros((3, 500), np.float32)
    utt[:, 100:300] = 0.5
    track = _speech_track(utt, 2000, rng)
    assert track.shape == (2000,) and np.abs(track).max() == pytest.approx(0.5)
    x = np.zeros(1000, np.float32)
    x[700:800] = 1
    w = _loudest(x, 200)
    assert w.shape == (200,) and w.sum() == 100


def _two_tones():
    """A 300 Hz and a 3 kHz tone, a spectrogram, a two-pattern W (one per tone) and H of ones."""
    sr, n = 8000, 4000
    t = np.arange(n) / sr
    low = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)[None]
    high = (0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)[None]
    spec = SpectrogramTransformer(sr=sr, n_fft=256).fit(low)
    freqs = np.fft.rfftfreq(256, 1 / sr)
    W = np.stack([np.abs(freqs - 300) < 100, np.abs(freqs - 3000) < 100], 1).astype(np.float32)
    W /= np.linalg.norm(W, axis=0)
    T = spec.stft(torch.as_tensor(low)).shape[-1]
    H = [np.ones((2, T), np.float32)]
    return low, high, spec, freqs, W, T, H


def test_oracle_gates_keep_the_deciding_sources_components():
    low, high, spec, _, W, _, H = _two_tones()
    for deciding, other in ((low, high), (high, low)):
        M = oracle_gate_masks(W, spec, H, deciding, other)
        parts = [spec.apply_mask(src, torch.as_tensor(M)) for src in (deciding, other)]
        assert energy_share(parts[0], parts[1])[0] > 0.99


def test_oracle_gates_within_a_selection_keep_only_what_both_keep():
    low, high, spec, freqs, W, T, H = _two_tones()
    both = [np.ones((2, T), bool)]
    # a selection that kept both components: the oracle takes the other source's one out
    M = oracle_gate_masks(W, spec, H, low, high, gates=both)
    assert np.allclose(M, oracle_gate_masks(W, spec, H, low, high))
    # a selection that kept only the other source's component: nothing is left
    wrong = [np.array([[False] * T, [True] * T])]
    assert np.all(oracle_gate_masks(W, spec, H, low, high, gates=wrong) == 0)
    # the deciding source's component in the first half of the frames only
    half = [np.array([[True] * (T // 2) + [False] * (T - T // 2), [True] * T])]
    M = oracle_gate_masks(W, spec, H, low, high, gates=half)
    row = np.argmin(np.abs(freqs - 300))
    assert np.all(M[0, row, : T // 2] > 0.99) and np.all(M[0, row, T // 2 :] == 0)


def test_quick_runs_every_method_but_the_costly_ablations():
    full, quick = default_methods(False), default_methods(True)
    assert full == METHODS
    assert "nmfinterp" in quick and "L2I, official selection" in quick
    assert "L2I, official training and selection" in quick  # its fit runs in every run anyway
    assert set(full) - set(quick) == set(QUICK_SKIPS) and QUICK_SKIPS


def test_fresh_process_returns_the_result_and_reports_failures():
    assert _in_fresh_process(max, 3, 7) == 7
    # tensors too (torch's queue would hand them over through the ended child's descriptors)
    assert torch.equal(_in_fresh_process(torch.arange, 3), torch.arange(3))
    net = _in_fresh_process(torch.nn.Linear, 2, 1)
    assert isinstance(net, torch.nn.Linear) and net.weight.shape == (1, 2)
    with pytest.raises(RuntimeError, match="ValueError"):  # the child's traceback, not a hang
        _in_fresh_process(int, "not a number")
    with pytest.raises(RuntimeError, match="exited with code 3"):  # died without a result
        _in_fresh_process(os._exit, 3)


def test_fresh_process_gives_nmfinterp_the_parents_threads():
    # a spawned child is a "parallel worker" to nmfinterp (one torch thread) unless told otherwise
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _in_fresh_process(worker_torch_threads) == 2
    finally:
        torch.set_num_threads(before)


def test_interleaved_times_warm_up_then_time_each_in_turn():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = _interleaved_times(fns, 2, min_seconds=0)
    assert calls == ["a", "b"] * 3  # one untimed warm-up round, then two timed rounds
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


def test_interleaved_times_repeat_a_short_workload_within_each_turn():
    import time

    calls = []

    def short():
        calls.append("s")
        time.sleep(0.01)

    def long():
        calls.append("l")
        time.sleep(0.06)

    times = _interleaved_times({"s": short, "l": long}, 2, min_seconds=0.05)
    # the 0.06 s workload once per turn; the 0.01 s one several times in a row per turn
    turns = "".join(calls[2:]).split("l")
    assert calls[:2] == ["s", "l"] and len(turns) == 3 and turns[-1] == ""
    assert all(1 < len(t) <= 5 and set(t) == {"s"} for t in turns[:2]), turns
    # the time per call, not per turn
    assert 0.009 < times["s"] < 0.03 and 0.055 < times["l"] < 0.2, times


def test_interleaved_turns_keep_every_turn_and_ratios_pair_them_turn_by_turn():
    ticks = iter(range(100))
    fns = {"a": lambda: next(ticks), "base": lambda: next(ticks)}
    turns = _interleaved_turns(fns, 3, min_seconds=0)
    assert set(turns) == {"a", "base"} and all(len(v) == 3 for v in turns.values())
    r = _turn_ratios({"a": [2.0, 3.0, 8.0], "base": [1.0, 2.0, 2.0]}, "a")
    # per turn: 2.0, 1.5, 4.0 (not the ratio of the medians, 3.0 / 2.0)
    assert r == {"median": 2.0, "min": 1.5, "max": 4.0}


def test_the_dictionary_is_an_argument_of_the_benchmark(capsys):
    from nmfinterp.benchmark import main
    from nmfinterp.demo import build_pipeline

    pipe = build_pipeline(None, 16000, 20, dictionary_params={"per_class": True})
    assert pipe[1].n_components == 20 and pipe[1].per_class is True
    assert build_pipeline(None, 16000, 20)[1].per_class == "auto"  # NMFDictionary's default
    with pytest.raises(SystemExit):
        main(["--n-components", "1"])
    assert "--n-components 1: expected an integer >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--dictionary", "blocks"])
    assert "--dictionary: invalid choice: 'blocks'" in capsys.readouterr().err


def test_l2is_fit_takes_its_own_epochs_unless_the_run_sets_them(monkeypatch):
    """The "l2i" pipeline's params carry L2I_TRAINING's 35 epochs: the full run trains it so,
    --quick / --epochs (cfg["epochs"]) override them, as they do every interpreter's."""
    import nmfinterp.benchmark as bench

    real, epochs = bench.build_pipeline, []

    class Fitted(list):
        def fit(self, X, y):
            return self

    def build(*args, **kwargs):
        pipe = real(*args, **kwargs)  # the real signature: an epochs given twice fails here
        epochs.append(pipe[-1].epochs)
        return Fitted([pipe[-1]])

    monkeypatch.setattr(bench, "build_pipeline", build)
    clips = types.SimpleNamespace(waveforms=np.zeros((2, 8)))
    cfg = {"n_components": 4, "faithfulness_epochs": None}
    l2i = bench.L2I_TRAINING
    for run_epochs, expected in ((None, 35), (12, 12)):
        bench._fit_pipeline(None, 16000, cfg | {"epochs": run_epochs}, clips, None, **l2i)
        assert epochs[-1] == expected
    bench._fit_pipeline(None, 16000, cfg | {"epochs": None}, clips, None, source_gates=False)
    assert epochs[-1] == bench.InterpreterEstimator().epochs  # the defaults' own


def test_quick_fits_shorter_source_gates_and_the_full_run_the_defaults(monkeypatch):
    """cfg["source_gates"]: None (the full run) leaves source_gates="auto" to the fit; settings
    (--quick) fit the interpreter without them and then fit_source_gates with those settings,
    where "auto" would have learned them; an interpreter asked for source_gates=False gets none."""
    import nmfinterp.benchmark as bench

    seen, calls = [], []

    class Interp:
        multilabel = separation = interrupted_ = False

        def set_params(self, **kw):
            self.source_gates = kw["source_gates"]
            return self

        _auto_source_gates = bench.InterpreterEstimator._auto_source_gates

        def fit_source_gates(self, X, **kw):
            calls.append(kw)

    class Fitted(list):
        def fit(self, X, y):
            return self

    def fake_build(*args, **kwargs):
        seen.append(kwargs)
        return Fitted([Interp()])

    monkeypatch.setattr(bench, "build_pipeline", fake_build)
    clips = types.SimpleNamespace(waveforms=np.zeros((2, 8)))
    cfg = {"n_components": 4, "epochs": 1, "faithfulness_epochs": None}
    bench._fit_pipeline(None, 16000, cfg | {"source_gates": None}, clips, np.zeros((2, 3)))
    assert "source_gates" not in seen[-1] and calls == []
    quick = cfg | {"source_gates": bench.QUICK["source_gates"]}
    pipe, _ = bench._fit_pipeline(None, 16000, quick, clips, np.zeros((2, 3)))
    assert seen[-1]["source_gates"] is False and calls == [bench.QUICK["source_gates"]]
    assert pipe[-1].source_gates == "auto"
    bench._fit_pipeline(None, 16000, quick, clips, np.zeros((2, 3)), source_gates=False)
    assert seen[-1]["source_gates"] is False and len(calls) == 1
    assert bench.FULL["source_gates"] is None


def test_the_interpreters_pooling_is_an_argument_of_the_benchmark(monkeypatch, capsys):
    import nmfinterp.benchmark as bench

    seen = []

    class Fitted:
        def fit(self, X, y):
            return self

    def fake_build(*args, **kwargs):
        seen.append(kwargs)
        return Fitted()

    monkeypatch.setattr(bench, "build_pipeline", fake_build)
    clips = types.SimpleNamespace(waveforms=np.zeros((2, 8)))
    cfg = {"n_components": 4, "epochs": 1, "faithfulness_epochs": None, "pooling": "mean"}
    bench._fit_pipeline(None, 16000, cfg, clips, np.zeros((2, 3)))
    bench._fit_pipeline(None, 16000, cfg, clips, np.zeros((2, 3)), pooling="max")
    no_pooling = {k: v for k, v in cfg.items() if k != "pooling"}  # without --pooling
    bench._fit_pipeline(None, 16000, no_pooling, clips, np.zeros((2, 3)))
    assert [k.get("pooling") for k in seen] == ["mean", "max", None]
    # the dictionary: NMFDictionary's default unless --dictionary (cfg["per_class"]) says
    assert [k["dictionary_params"]["per_class"] for k in seen] == ["auto"] * 3
    for choice, per_class in bench.DICTIONARY_CHOICES.items():
        bench._fit_pipeline(None, 16000, cfg | {"per_class": per_class}, clips, np.zeros((2, 3)))
        assert seen[-1]["dictionary_params"]["per_class"] == per_class, choice
    assert bench.DICTIONARY_CHOICES == {"auto": "auto", "plain": False, "per_class": True}
    with pytest.raises(SystemExit):
        bench.main(["--pooling", "median"])
    assert "--pooling: invalid choice: 'median'" in capsys.readouterr().err


def _fsdd_digits_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fsdd_digits.py"
    spec = importlib.util.spec_from_file_location("fsdd_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fsdd_digits_writes_an_esc50_layout_that_the_benchmark_loads(tmp_path):
    import soundfile as sf

    from nmfinterp.benchmark import load_split

    script = _fsdd_digits_script()
    fsdd = tmp_path / "fsdd"
    fsdd.mkdir()
    rng = np.random.default_rng(0)
    for digit in (3, 7):
        for speaker in ("ann", "bob"):
            for take in range(6):
                wave = 0.1 * rng.standard_normal(int(8000 * (0.3 + 0.1 * take)))
                sf.write(fsdd / f"{digit}_{speaker}_{take}.wav", wave, 8000)
    (fsdd / "README.txt").write_text("not a clip")
    layout = tmp_path / "layout"
    assert script.write_layout(fsdd, layout, takes=4) == 16  # takes 0-3 of 2 digits x 2 speakers
    ds, train, test = load_split(str(layout), [1, 2, 3], 4, 8000, duration=1.0)
    assert ds.class_names == ["seven", "three"] and ds.waveforms.shape == (16, 8000)
    # take t in fold t % 4 + 1: every speaker and digit in each fold
    assert sorted(test.filenames) == ["3_ann_3.wav", "3_bob_3.wav", "7_ann_3.wav", "7_bob_3.wav"]
    assert len(train) == 12
    # written again with more takes: the same link, a longer meta.csv
    assert script.write_layout(fsdd, layout, takes=6) == 24
    assert (layout / "audio").resolve() == fsdd.resolve()
    with pytest.raises(SystemExit, match="no '{digit}_{speaker}_{take}.wav' file"):
        script.write_layout(tmp_path / "layout", tmp_path / "other", takes=4)


def test_fsdd_digits_names_a_bad_number_of_takes(tmp_path, capsys):
    script = _fsdd_digits_script()
    with pytest.raises(SystemExit):
        script.run(["--takes", "2", "--layout", str(tmp_path / "layout")])
    assert "--takes 2: expected 4 to 50" in capsys.readouterr().err
    assert not (tmp_path / "layout").exists()  # nothing written


def test_study_classifier_trains_on_the_split_with_the_full_runs_epochs(monkeypatch, capsys):
    """study_classifier: the split of the arguments, the classifier trained on it with FULL's
    epochs, its accuracy logged."""
    import importlib

    B = importlib.import_module("nmfinterp.benchmark")
    ds, train, test = types.SimpleNamespace(n_classes=3), object(), object()
    seen = {}
    monkeypatch.setattr(B, "split_from_args", lambda args: (ds, train, test))

    def trained(tr, te, n_classes, sr, epochs):
        seen.update(train=tr, test=te, n_classes=n_classes, sr=sr, epochs=epochs)
        return "clf", "y_train", "y_test", 0.875, 1.0

    monkeypatch.setattr(B, "train_benchmark_classifier", trained)
    args = types.SimpleNamespace(sr=8000, test_fold=3)
    assert B.study_classifier(args) == (ds, train, test, "clf", "y_train", "y_test", 0.875)
    assert seen == {
        "train": train,
        "test": test,
        "n_classes": 3,
        "sr": 8000,
        "epochs": B.FULL["classifier_epochs"],
    }
    assert "classifier: fold-3 accuracy 0.875" in capsys.readouterr().out


def test_study_without_source_gates_fits_the_pipeline_without_them_and_records_it(
    monkeypatch, capsys
):
    """study_without_source_gates: study_classifier's split and classifier, the benchmark's
    pipeline fitted with FULL's settings and source_gates=False, its fidelity logged, and the
    record the source gates' studies save."""
    import importlib

    B = importlib.import_module("nmfinterp.benchmark")
    train = types.SimpleNamespace(waveforms="train clips")
    test = types.SimpleNamespace(waveforms="test clips")
    ds = types.SimpleNamespace(class_names=["a", "b"])
    monkeypatch.setattr(
        B, "study_classifier", lambda args: (ds, train, test, "clf", "y_train", "y_test", 0.85)
    )
    monkeypatch.setattr(B, "_git_commit", lambda: "abc1234")
    monkeypatch.setattr(
        B, "split_record", lambda args, d, tr, te: {"classes": d.class_names, "n_train": 240}
    )
    seen = {}

    class Pipe:
        def score(self, X, y):
            seen["scored"] = (X, y)
            return 0.9125

    def fitted(clf, sr, cfg, tr, y, **params):
        seen.update(clf=clf, sr=sr, cfg=cfg, train=tr, y=y, params=params)
        return Pipe(), 73.8

    monkeypatch.setattr(B, "_fit_pipeline", fitted)
    got_train, got_test, clf, pipe, record = B.study_without_source_gates(
        types.SimpleNamespace(sr=16000)
    )
    assert (got_train, got_test, clf, isinstance(pipe, Pipe)) == (train, test, "clf", True)
    assert seen["cfg"] is B.FULL and seen["params"] == {"source_gates": False}
    assert (seen["clf"], seen["sr"], seen["train"], seen["y"]) == ("clf", 16000, train, "y_train")
    assert seen["scored"] == ("test clips", "y_test")
    assert record == {
        "commit": "abc1234",
        "classes": ["a", "b"],
        "n_train": 240,
        "classifier_accuracy": 0.85,
        "fidelity_top1": 0.9125,
        "pipeline_fit_seconds": 73.8,
    }
    assert "pipeline fit without source gates 74 s, top-1 fidelity 0.912" in capsys.readouterr().out
