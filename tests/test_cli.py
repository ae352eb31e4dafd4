"""The ``nmfinterp`` command line, driven through ``main(argv)`` (and once as a real process)."""

import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import soundfile as sf
import torch

from nmfinterp import explain
from nmfinterp.classifiers import LogMelCNN, predict_logits, train_classifier
from nmfinterp.cli import main
from nmfinterp.datasets import SYNTHETIC_CLASSES, make_synthetic_sounds

SR = 8000
KWARGS = {"n_classes": 4, "sr": SR, "n_fft": 256, "hop_length": 80, "channels": [4, 8, 8]}
FAST = ["--n-components", "6", "--epochs", "2", "--faithfulness", "0", "--sr", str(SR)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Clips in class subfolders, a CSV listing them, and a tiny trained classifier's weights."""
    root = tmp_path_factory.mktemp("cli")
    ds = make_synthetic_sounds(n_per_class=3, sr=SR, duration=0.5, random_state=0)
    rows = ["filename,category"]
    for i, (x, y) in enumerate(zip(ds.waveforms, ds.labels, strict=True)):
        name = SYNTHETIC_CLASSES[y]
        (root / "clips" / name).mkdir(parents=True, exist_ok=True)
        sf.write(root / "clips" / name / f"{i:02d}.wav", x, SR, subtype="FLOAT")
        rows.append(f"{name}/{i:02d}.wav,{name}")
    (root / "clips.csv").write_text("\n".join(rows) + "\n")
    clf = train_classifier(
        LogMelCNN(**KWARGS, random_state=0), ds.waveforms, ds.labels, epochs=1, random_state=0
    )
    torch.save(clf.state_dict(), root / "weights.pt")
    return root, ds, clf


@pytest.fixture(scope="module")
def fitted(corpus):
    root, _, _ = corpus
    model = root / "model.joblib"
    rc = main(
        [
            "fit",
            str(root / "clips"),
            "--classifier",
            "nmfinterp.classifiers:LogMelCNN",
            "--classifier-kwargs",
            json.dumps(KWARGS),
            "--weights",
            str(root / "weights.pt"),
            "-o",
            str(model),
            *FAST,
        ]
    )
    assert rc == 0
    return model


def test_fit_from_folder_saves_a_pipeline_that_explains_like_the_library(corpus, fitted):
    root, ds, clf = corpus
    pipe = joblib.load(fitted)
    meta = json.loads(fitted.with_suffix(".json").read_text())
    # subfolder names, sorted, are the class names (as many as the classifier's outputs)
    assert meta["class_names"] == sorted(SYNTHETIC_CLASSES)
    assert 0.0 <= meta["metrics"]["fidelity_top1_train"] <= 1.0
    # the saved classifier carries the trained weights, not the factory's fresh ones
    np.testing.assert_allclose(
        predict_logits(pipe[-1].classifier, ds.waveforms[:2]),
        predict_logits(clf, ds.waveforms[:2]),
        atol=1e-5,
    )
    assert pipe[1].n_components == 6 and len(pipe[-1].history_) == 2


def test_explain_writes_one_wav_per_clip_equal_to_the_library(corpus, fitted, tmp_path, capsys):
    root, _, _ = corpus
    out = tmp_path / "wavs"
    assert (
        main(["explain", str(fitted), str(root / "clips" / "bird"), "-o", str(out), "--residuals"])
        == 0
    )
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 6 and sum(f.endswith("_residual.wav") for f in files) == 3
    assert "wrote 6 WAV files for 3 clips" in capsys.readouterr().out
    first = sorted((root / "clips" / "bird").iterdir())[0]
    x, _ = sf.read(first, dtype="float32")
    ex = explain(joblib.load(fitted), x[None])
    name = next(f for f in files if f.startswith(first.stem) and f.endswith("_explanation.wav"))
    wav, sr = sf.read(out / name, dtype="float32")
    assert sr == SR
    np.testing.assert_allclose(wav, np.clip(ex.waveforms[0], -1, 1), atol=1.0 / 2**15 + 1e-6)


def test_explain_a_chosen_class_by_name(corpus, fitted, tmp_path):
    root, _, _ = corpus
    clip = next((root / "clips" / "rain").iterdir())
    out = tmp_path / "o"
    assert main(["explain", str(fitted), str(clip), "-o", str(out), "--class", "siren"]) == 0
    assert [p.name for p in out.iterdir()] == [f"{clip.stem}_as_siren_explanation.wav"]


def test_refine_steps_reach_explain(corpus, fitted, tmp_path, capsys):
    root, _, _ = corpus
    clip = next((root / "clips" / "rain").iterdir())
    out = tmp_path / "o"
    assert main(["explain", str(fitted), str(clip), "-o", str(out), "--refine-steps", "0"]) == 0
    x, _ = sf.read(clip, dtype="float32")
    ex = explain(joblib.load(fitted), x[None], refine_steps=0)
    wav, _ = sf.read(next(out.iterdir()), dtype="float32")
    np.testing.assert_allclose(wav, np.clip(ex.waveforms[0], -1, 1), atol=1.0 / 2**15 + 1e-6)
    capsys.readouterr()
    assert main(["explain", str(fitted), str(clip), "-o", str(out), "--refine-steps", "-1"]) == 2
    assert "--refine-steps" in capsys.readouterr().err


def test_penalties_and_per_clip_gates_reach_explain(corpus, fitted, tmp_path, capsys):
    root, _, _ = corpus
    clip = next((root / "clips" / "rain").iterdir())
    out = tmp_path / "o"
    args = ["--refine-steps", "5", "--energy-penalty", "0", "--contrast-penalty", "3"]
    args += ["--per-clip-gates", "--mask-power", "2", "--residual-weight", "0.5"]
    args += ["--mask-ratio", "log", "--refine-lr", "1"]
    assert main(["explain", str(fitted), str(clip), "-o", str(out), *args]) == 0
    x, _ = sf.read(clip, dtype="float32")
    ex = explain(
        joblib.load(fitted),
        x[None],
        refine_steps=5,
        energy_penalty=0.0,
        contrast_penalty=3.0,
        per_frame=False,
        mask_power=2.0,
        residual_weight=0.5,
        mask_ratio="log",
        refine_lr=1.0,
    )
    wav, _ = sf.read(next(out.iterdir()), dtype="float32")
    np.testing.assert_allclose(wav, np.clip(ex.waveforms[0], -1, 1), atol=1.0 / 2**15 + 1e-6)
    # several contrast weights, tried in turn
    out2 = tmp_path / "o2"
    command = ["explain", str(fitted), str(clip), "-o", str(out2), "--refine-steps", "5"]
    assert main([*command, "--contrast-penalty", "1e5", "0"]) == 0
    ex = explain(joblib.load(fitted), x[None], refine_steps=5, contrast_penalty=(1e5, 0.0))
    wav, _ = sf.read(next(out2.iterdir()), dtype="float32")
    np.testing.assert_allclose(wav, np.clip(ex.waveforms[0], -1, 1), atol=1.0 / 2**15 + 1e-6)
    # ... and the confidence the explanation must keep not to be refined again
    out3 = tmp_path / "o3"
    command = ["explain", str(fitted), str(clip), "-o", str(out3), "--refine-steps", "5"]
    given = ["--contrast-penalty", "1e5", "0", "--keep-confidence", "2"]
    assert main([*command, *given]) == 0
    ex = explain(
        joblib.load(fitted),
        x[None],
        refine_steps=5,
        contrast_penalty=(1e5, 0.0),
        keep_confidence=2.0,
    )
    wav, _ = sf.read(next(out3.iterdir()), dtype="float32")
    np.testing.assert_allclose(wav, np.clip(ex.waveforms[0], -1, 1), atol=1.0 / 2**15 + 1e-6)
    capsys.readouterr()
    for option in ("--energy-penalty", "--contrast-penalty", "--keep-confidence"):
        assert main(["explain", str(fitted), str(clip), "-o", str(out), option, "-1"]) == 2
        assert option in capsys.readouterr().err
    assert main(["explain", str(fitted), str(clip), "-o", str(out), "--mask-power", "0.5"]) == 2
    assert "--mask-power: 0.5 is not a finite number >= 1" in capsys.readouterr().err
    assert main(["explain", str(fitted), str(clip), "-o", str(out), "--mask-ratio", "lin"]) == 2
    assert "--mask-ratio: invalid choice: 'lin'" in capsys.readouterr().err
    for bad in ("-1", "inf"):
        command = ["explain", str(fitted), str(clip), "-o", str(out), "--residual-weight", bad]
        assert main(command) == 2
        assert "--residual-weight: " in capsys.readouterr().err
    for bad, why in (("0", "0.0 is not positive"), ("inf", "inf is not a finite positive")):
        command = ["explain", str(fitted), str(clip), "-o", str(out), "--refine-lr", bad]
        assert main(command) == 2
        assert f"--refine-lr: {why}" in capsys.readouterr().err


def test_fit_separation_then_explain_with_and_without_it(corpus, tmp_path, capsys):
    root, _, _ = corpus
    model = tmp_path / "separated.joblib"
    fit = ["fit", str(root / "clips"), "--classifier", "nmfinterp.classifiers:LogMelCNN"]
    fit += ["--classifier-kwargs", json.dumps(KWARGS), "--weights", str(root / "weights.pt")]
    assert main([*fit, "-o", str(model), *FAST, "--separation"]) == 0
    assert "class-block separation" in capsys.readouterr().out
    pipe = joblib.load(model)
    assert pipe[-1].separation and pipe[-1].separation_.spectrogram_ is pipe[0]
    clip = root / "clips" / SYNTHETIC_CLASSES[0] / "00.wav"
    x, _ = sf.read(clip, dtype="float32")
    written = []  # the tiny classifier decides one class: explain another, which has no block
    for extra, separation in (([], "auto"), (["--no-separation"], None)):
        out = tmp_path / f"o{len(extra)}"
        command = ["explain", str(model), str(clip), "-o", str(out), "--refine-steps", "2"]
        assert main([*command, "--class", "0", *extra]) == 0
        ex = explain(pipe, x[None], classes=0, refine_steps=2, separation=separation)
        assert ex.settings["separation"] is (separation == "auto")
        wav, _ = sf.read(next(out.iterdir()), dtype="float32")
        np.testing.assert_allclose(wav, np.clip(ex.waveforms[0], -1, 1), atol=1.0 / 2**15 + 1e-6)
        written.append(wav)
    assert np.abs(written[0] - written[1]).max() > 1e-3  # the separation changed the explanation


def test_gate_epochs_then_amortised_explain_equals_the_library(corpus, tmp_path, capsys):
    root, _, _ = corpus
    model = tmp_path / "gated.joblib"
    fit = ["fit", str(root / "clips"), "--classifier", "nmfinterp.classifiers:LogMelCNN"]
    fit += ["--classifier-kwargs", json.dumps(KWARGS), "--weights", str(root / "weights.pt")]
    assert main([*fit, "-o", str(model), *FAST, "--gate-epochs", "2"]) == 0
    assert "gate network 2 epochs" in capsys.readouterr().out
    pipe = joblib.load(model)
    assert len(pipe[-1].gate_history_) == 2
    clip = next((root / "clips" / "rain").iterdir())
    out = tmp_path / "o"
    assert (
        main(["explain", str(model), str(clip), "-o", str(out), "--amortised", "--top-k", "3"]) == 0
    )
    x, _ = sf.read(clip, dtype="float32")
    ex = explain(pipe, x[None], amortised=True, top_k=3)
    assert ex.selected[0].size <= 3
    wav, _ = sf.read(next(out.iterdir()), dtype="float32")
    np.testing.assert_allclose(wav, np.clip(ex.waveforms[0], -1, 1), atol=1.0 / 2**15 + 1e-6)


def test_report_command_writes_a_self_contained_html(corpus, fitted, tmp_path):
    root, _, _ = corpus
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"fidelity": {"mean": 0.75}}))
    out = tmp_path / "r.html"
    rc = main(
        ["report", str(fitted), str(root / "clips" / "engine"), "-o", str(out),
         "--metrics", str(metrics), "--max-components", "2"]
    )  # fmt: skip
    assert rc == 0
    text = out.read_text()
    assert text.count('<section class="clip"') == 3
    assert "fidelity.mean" in text and "0.75" in text
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert text.count('src="data:audio/wav;base64,') == text.count("<audio")


def test_fit_from_csv_with_precomputed_outputs(corpus, tmp_path):
    root, ds, clf = corpus
    # outputs as CSV with a header of class names, rows in the CSV's order
    order = [line.split(",")[0] for line in (root / "clips.csv").read_text().split()[1:]]
    X = np.stack([sf.read(root / "clips" / p, dtype="float32")[0] for p in order])
    y = predict_logits(clf, X)
    names = ["b", "e", "r", "s"]
    (tmp_path / "y.csv").write_text(
        ",".join(names) + "\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in y)
    )
    model = tmp_path / "m.joblib"
    rc = main(
        ["fit", str(root / "clips.csv"), "--audio-root", str(root / "clips"),
         "--classifier", "nmfinterp.classifiers:LogMelCNN", "--classifier-kwargs", json.dumps(KWARGS),
         "--weights", str(root / "weights.pt"), "--outputs", str(tmp_path / "y.csv"),
         "-o", str(model), *FAST, "--dictionary", "per_class"]
    )  # fmt: skip
    assert rc == 0
    assert json.loads(model.with_suffix(".json").read_text())["class_names"] == names
    dictionary = joblib.load(model)[1]
    assert dictionary.per_class is True and dictionary.per_class_ is True
    # refuses to overwrite without --force
    argv = [
        "fit",
        str(root / "clips"),
        "--classifier",
        "nmfinterp.classifiers:LogMelCNN",
        "-o",
        str(model),
    ]
    assert main(argv) == 2


def test_factory_from_a_python_file(corpus, tmp_path, monkeypatch):
    root, _, _ = corpus
    (tmp_path / "my_models.py").write_text(
        "from nmfinterp.classifiers import LogMelCNN\n"
        f"def build():\n    return LogMelCNN(**{KWARGS!r})\n"
        "def probs(out):\n    return out.softmax(-1)\n"
    )
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "m.joblib"
    rc = main(
        ["fit", str(root / "clips"), "--classifier", "my_models.py:build",
         "--weights", str(root / "weights.pt"), "-o", str(model), *FAST,
         "--classifier-output", "my_models:probs", "--output-type", "probabilities"]
    )  # fmt: skip
    assert rc == 0
    assert json.loads(model.with_suffix(".json").read_text())["python_path"] == [str(tmp_path)]
    interp = joblib.load(model)[-1]
    assert interp.classifier_output.__name__ == "probs" and interp.output_type_ == "probabilities"
    # the model refers to my_models: explain finds it from the saved python_path, elsewhere too
    monkeypatch.chdir(root)
    monkeypatch.delitem(sys.modules, "my_models")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    assert (
        main(["explain", str(model), str(root / "clips" / "bird"), "-o", str(tmp_path / "o")]) == 0
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "MISSING", "--classifier", "a:b", "-o", "m.joblib"], "'MISSING' does not exist"),
        (["fit", "CLIPS", "--classifier", "nmfinterp.classifiers", "-o", "m.joblib"], "expected MODULE:FACTORY"),
        (["fit", "CLIPS", "--classifier", "no_such_mod_xyz:f", "-o", "m.joblib"], "cannot import 'no_such_mod_xyz'"),
        (["fit", "CLIPS", "--classifier", "nmfinterp.classifiers:Nope", "-o", "m.joblib"], "has no callable 'Nope'"),
        (["fit", "CLIPS", "--classifier", "nmfinterp.classifiers:LogMelCNN", "-o", "m.joblib"], "LogMelCNN(**{}) raised TypeError"),
        (["fit", "CLIPS", "--classifier", "nmfinterp.classifiers:LogMelCNN", "--classifier-kwargs",
          '{"n_classes": 3, "sr": 8000}', "--weights", "WEIGHTS", "-o", "m.joblib"], "do not fit the model"),
        (["fit", "CLIPS", "--classifier", "nmfinterp.classifiers:LogMelCNN", "--classifier-kwargs",
          json.dumps(KWARGS), "--outputs", "BADY", "-o", "m.joblib"], "has shape (5, 4); expected one row per clip, (12, n_classes)"),
        (["explain", "MODEL", "nothing_here.wav", "-o", "x"], "'nothing_here.wav' does not exist"),
        (["explain", "CLIPS/bird/00.wav", "CLIPS", "-o", "x"], "could not be loaded as a joblib model"),
        (["explain", "MODEL", "CLIPS", "-o", "x", "--class", "cow"], "'cow' is not a class name"),
        (["report", "MODEL", "CLIPS", "--metrics", "CLIPS/bird/00.wav"], "is not valid JSON"),
        (["explain", "MODEL", "CLIPS", "-o", "x", "--amortised"], "has none; fit the model with 'nmfinterp fit ... --gate-epochs 30'"),
        (["explain", "MODEL", "CLIPS", "-o", "x", "--amortised", "--refine-steps", "5", "--threshold", "0.1"],
         "drop --refine-steps, --threshold (--top-k still applies)"),
        (["explain", "MODEL", "CLIPS", "-o", "x", "--keep-confidence", "1", "--contrast-penalty", "9"],
         "--keep-confidence decides which clips are refined again with the next of several"),
        (["report", "MODEL", "CLIPS", "--amortised", "--per-clip-gates", "--energy-penalty", "0",
          "--contrast-penalty", "1"], "drop --energy-penalty, --contrast-penalty, --per-clip-gates"),
        (["fit", "CLIPS", "--classifier", "a:b", "-o", "m.joblib", "--gate-epochs", "3", "--multilabel"],
         "--gate-epochs serves the refinement of single-label decisions"),
        (["fit", "CLIPS", "--classifier", "a:b", "-o", "m.joblib", "--separation", "--multilabel"],
         "--separation serves the refinement of single-label decisions"),
    ],
)  # fmt: skip
def test_user_mistakes_exit_2_with_one_line_and_no_traceback(
    corpus, fitted, tmp_path, monkeypatch, capsys, argv, message
):
    root, _, _ = corpus
    np.save(tmp_path / "bad.npy", np.zeros((5, 4)))
    subst = {
        "CLIPS": str(root / "clips"),
        "WEIGHTS": str(root / "weights.pt"),
        "MODEL": str(fitted),
        "BADY": str(tmp_path / "bad.npy"),
    }
    argv = [
        next((a.replace(k, v, 1) for k, v in subst.items() if a.startswith(k)), a) for a in argv
    ]
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_everywhere_and_usage_errors(capsys):
    for cmd in ([], ["fit"], ["explain"], ["report"]):
        assert main([*cmd, "--help"]) == 0
        assert "usage: nmfinterp" in capsys.readouterr().out
    assert main([]) == 2  # no command
    assert main(["fit", "x", "--classifier", "a:b", "-o", "m", "--epochs", "0"]) == 2
    assert "0 is not positive" in capsys.readouterr().err


def test_help_states_explain_s_defaults():
    # the parser leaves these at None (explain decides); its help states the library's defaults
    from nmfinterp.cli import build_parser
    from nmfinterp.explain import (
        CONTRAST_PENALTY,
        CONTRAST_PENALTY_MILD,
        ENERGY_PENALTY,
        KEEP_CONFIDENCE,
        MASK_POWER,
        MASK_RATIO,
        REFINE_LR,
        REFINE_STEPS,
        RESIDUAL_WEIGHT,
    )

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    helps = {f: a.help for a in sub.choices["explain"]._actions for f in a.option_strings}
    assert f"(default: {REFINE_STEPS} for" in helps["--refine-steps"]
    assert f"(default: {REFINE_LR:g};" in helps["--refine-lr"]
    assert f"(default: {ENERGY_PENALTY:g};" in helps["--energy-penalty"]
    assert (
        f"(default: {CONTRAST_PENALTY:g} then {CONTRAST_PENALTY_MILD:g}; 0: off);"
        in helps["--contrast-penalty"]
    )
    assert f"(default: {KEEP_CONFIDENCE:g}; 0: the decision alone)" in helps["--keep-confidence"]
    assert f"(default: {MASK_POWER:g}, the ratio itself;" in helps["--mask-power"]
    assert f"(default: {RESIDUAL_WEIGHT:g};" in helps["--residual-weight"]
    assert f"(default: {MASK_RATIO})" in helps["--mask-ratio"]


def test_bench_forwards_its_arguments(monkeypatch):
    import types

    seen = {}

    def fake_main(argv):
        seen["argv"] = argv
        return 3

    monkeypatch.setitem(sys.modules, "nmfinterp.benchmark", types.SimpleNamespace(main=fake_main))
    assert main(["bench", "--", "--folds", "1", "-q"]) == 3
    assert seen["argv"] == ["--folds", "1", "-q"]
    assert main(["bench", "--help"]) == 3 and seen["argv"] == ["--help"]  # the benchmark's help

    def exits(argv):
        raise SystemExit(0)  # what argparse does on --help

    monkeypatch.setitem(sys.modules, "nmfinterp.benchmark", types.SimpleNamespace(main=exits))
    assert main(["bench", "--help"]) == 0


def test_bench_without_the_benchmark_module_says_so(monkeypatch, capsys):
    import importlib.util

    if importlib.util.find_spec("nmfinterp.benchmark") is None:  # really absent: nothing patched
        assert main(["bench"]) == 1
        err = capsys.readouterr().err
        assert "no nmfinterp.benchmark module" in err and "Traceback" not in err
    # None in sys.modules: importing it raises ModuleNotFoundError, as when it is absent
    monkeypatch.setitem(sys.modules, "nmfinterp.benchmark", None)
    assert main(["bench"]) == 1
    err = capsys.readouterr().err
    assert "no nmfinterp.benchmark module" in err and "Traceback" not in err


def test_console_script_runs_as_a_process(tmp_path):
    """The installed entry point: a real process, its exit code and its one-line error."""
    exe = Path(sys.executable).with_name("nmfinterp")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nmfinterp.cli"]
    done = subprocess.run(
        [*cmd, "explain", str(tmp_path / "missing.joblib"), "x.wav", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("nmfinterp explain: error: model ")
    assert "Traceback" not in done.stderr


def test_fit_source_gates_needs_two_classes_and_says_so_before_fitting(corpus, tmp_path, capsys):
    root, _, _ = corpus
    model = tmp_path / "gated.joblib"
    fit = ["fit", str(root / "clips"), "--classifier", "nmfinterp.classifiers:LogMelCNN"]
    fit += ["--classifier-kwargs", json.dumps(KWARGS), "--weights", str(root / "weights.pt")]
    # the tiny classifier decides one class on every clip: nothing to mix, told before the fit
    assert main([*fit, "-o", str(model), *FAST, "--source-gates"]) == 2
    err = capsys.readouterr().err
    assert "--source-gates learns from mixtures of clips of two different classes" in err
    assert not model.exists()
    assert main([*fit, "-o", str(model), *FAST, "--source-gates", "--multilabel"]) == 2
    assert "--source-gates serves the refinement of single-label decisions" in (
        capsys.readouterr().err
    )
    # without the flag they are learned where they can be; here they cannot, and the fit goes on
    assert main([*fit, "-o", str(model), *FAST]) == 0
    assert "source gates" not in capsys.readouterr().out
    interp = joblib.load(model)[-1]
    assert interp.source_gates == "auto" and not hasattr(interp, "source_gates_")
    assert main([*fit, "-o", str(model), *FAST, "--no-source-gates", "--force"]) == 0
    assert joblib.load(model)[-1].source_gates is False
