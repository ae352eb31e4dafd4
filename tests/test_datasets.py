"""Tests of nmfinterp.datasets: file loaders, mixtures and the synthetic data set."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nmfinterp.datasets import (
    SYNTHETIC_CLASSES,
    AudioDataset,
    fix_length,
    load_audio,
    load_esc_folder,
    load_fsdd,
    make_mixture,
    make_synthetic_sounds,
    mix_at_gain,
    mix_equal_rms,
    rms,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ESC10 = DATA / "esc10"
FSDD = DATA / "fsdd"

needs_esc10 = pytest.mark.skipif(
    not (ESC10 / "meta.csv").is_file(),
    reason=f"real ESC-10 data not found at {ESC10} (expected ../shared/data/esc10 next to the repo)",
)
needs_fsdd = pytest.mark.skipif(
    not FSDD.is_dir(),
    reason=f"real FSDD data not found at {FSDD} (expected ../shared/data/fsdd next to the repo)",
)


# --------------------------------------------------------------------------------------------
# A tiny ESC-50-layout folder
# --------------------------------------------------------------------------------------------
def _tone(freq: float, sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def _write_esc_folder(root: Path, extra_columns: bool = True) -> Path:
    """3 clips, 2 categories, WAV files at 8 kHz, 22.05 kHz (stereo) and 44.1 kHz."""
    (root / "audio").mkdir(parents=True)
    specs = [
        ("a.wav", 1, 41, "zebra", 8000, 1.0, 1),
        ("b.wav", 2, 7, "apple", 22050, 0.5, 2),
        ("c.wav", 2, 41, "zebra", 44100, 2.0, 1),
    ]
    for name, _, _, _, sr, seconds, ch in specs:
        sf.write(root / "audio" / name, _tone(440.0, sr, seconds, ch), sr, subtype="PCM_16")
    with open(root / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        header = ["filename", "fold", "target", "category"] + (
            ["src_file", "take"] if extra_columns else []
        )
        w.writerow(header)
        for name, fold, target, cat, *_ in specs:
            w.writerow([name, fold, target, cat] + (["x", "A"] if extra_columns else []))
    return root


def test_load_audio_resamples_mixes_down_and_fixes_length(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, _tone(440.0, 22050, 0.5, channels=2), 22050)
    y = load_audio(path, sr=16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 8000) <= 1
    # still a 440 Hz tone of amplitude 0.5 after resampling
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 440.0) < 5.0
    assert 0.45 < np.abs(y[100:-100]).max() < 0.55
    padded = load_audio(path, sr=16000, duration=1.0)
    assert padded.shape == (16000,) and np.all(padded[8100:] == 0)
    assert load_audio(path, sr=16000, duration=0.1).shape == (1600,)


def test_load_audio_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_audio(tmp_path / "nope.wav", sr=16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="Could not decode"):
        load_audio(bad, sr=16000)
    sf.write(tmp_path / "ok.wav", np.zeros(100), 8000)
    with pytest.raises(ValueError, match="sample rate"):
        load_audio(tmp_path / "ok.wav", sr=0)
    with pytest.raises(ValueError, match="duration"):
        load_audio(tmp_path / "ok.wav", sr=8000, duration=-1)


def test_load_esc_folder_tiny(tmp_path):
    root = _write_esc_folder(tmp_path / "esc")
    ds = load_esc_folder(root, sr=16000, duration=1.0)
    assert isinstance(ds, AudioDataset)
    assert ds.waveforms.shape == (3, 16000) and ds.waveforms.dtype == np.float32
    assert ds.class_names == ["apple", "zebra"]  # sorted by name, re-indexed
    assert ds.labels.tolist() == [1, 0, 1]
    assert ds.folds.tolist() == [1, 2, 2]
    assert ds.extra["target"].tolist() == [41, 7, 41]
    assert ds.filenames == ["a.wav", "b.wav", "c.wav"]
    assert ds.sr == 16000 and ds.duration == 1.0
    # b.wav lasts 0.5 s: zero-padded; every file was resampled to a 440 Hz tone at 16 kHz
    assert np.all(ds.waveforms[1, 8100:] == 0)
    for y in ds.waveforms:
        spectrum = np.abs(np.fft.rfft(y))
        assert abs(np.argmax(spectrum) * 16000 / len(y) - 440.0) < 5.0


def test_load_esc_folder_filters_and_no_extra_columns(tmp_path):
    root = _write_esc_folder(tmp_path / "esc", extra_columns=False)
    ds = load_esc_folder(root, sr=8000, folds=[2], duration=None)
    assert ds.filenames == ["b.wav", "c.wav"]
    assert ds.waveforms.shape == (2, 16000)  # padded to the longest clip (c.wav, 2 s)
    ds = load_esc_folder(root, sr=8000, folds=2, categories=["zebra"], duration=0.25)
    assert ds.filenames == ["c.wav"] and ds.class_names == ["zebra"] and ds.labels.tolist() == [0]
    with pytest.raises(ValueError, match="folds"):
        load_esc_folder(root, folds=[5])
    with pytest.raises(ValueError, match="categories"):
        load_esc_folder(root, categories=["dog"])


def test_load_esc_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_esc_folder(tmp_path / "missing")
    root = _write_esc_folder(tmp_path / "esc")
    (root / "meta.csv").rename(root / "other.csv")
    with pytest.raises(FileNotFoundError, match=r"No meta CSV .*meta\.csv.*meta/esc50\.csv"):
        load_esc_folder(root)

    root = _write_esc_folder(tmp_path / "esc2")
    (root / "meta.csv").write_text("filename,fold,category\na.wav,1,zebra\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['target'\]"):
        load_esc_folder(root)

    root = _write_esc_folder(tmp_path / "esc3")
    (root / "audio" / "b.wav").unlink()
    with pytest.raises(FileNotFoundError, match="b.wav"):
        load_esc_folder(root)

    root = _write_esc_folder(tmp_path / "esc4")
    (root / "meta.csv").write_text("filename,fold,target,category\na.wav,one,41,zebra\n")
    with pytest.raises(ValueError, match="line 2 is malformed"):
        load_esc_folder(root)


def test_load_esc_folder_reads_esc50s_own_layout(tmp_path):
    """An unpacked ESC-50 release: meta/esc50.csv (with its esc10 / src_file / take columns) beside
    audio/, FLAC as well as WAV; the same clips as with meta.csv at the top."""
    flat = _write_esc_folder(tmp_path / "flat")
    root = _write_esc_folder(tmp_path / "ESC-50-master")
    (root / "meta").mkdir()
    rows = (root / "meta.csv").read_text().splitlines()
    (root / "meta.csv").unlink()
    y, sr = sf.read(root / "audio" / "a.wav")
    sf.write(root / "audio" / "a.flac", y, sr)
    rows[1] = rows[1].replace("a.wav", "a.flac")
    (root / "meta" / "esc50.csv").write_text(
        "\n".join([rows[0] + ",esc10"] + [r + ",True" for r in rows[1:]]) + "\n"
    )
    ds = load_esc_folder(root, sr=16000, duration=1.0)
    assert ds.filenames == ["a.flac", "b.wav", "c.wav"]
    assert ds.class_names == ["apple", "zebra"] and ds.labels.tolist() == [1, 0, 1]
    np.testing.assert_allclose(
        ds.waveforms, load_esc_folder(flat, sr=16000, duration=1.0).waveforms, atol=1e-4
    )
    # another name in meta/ is found when it is the only CSV there; two are refused by name
    (root / "meta" / "esc50.csv").rename(root / "meta" / "mine.csv")
    assert load_esc_folder(root, sr=16000, duration=1.0).filenames == ds.filenames
    (root / "meta" / "old.csv").write_text("filename\n")
    with pytest.raises(
        FileNotFoundError, match=r"several CSV files in meta/ \(mine.csv, old.csv\)"
    ):
        load_esc_folder(root)


@needs_esc10
def test_load_esc10_real():
    ds = load_esc_folder(ESC10, sr=16000, folds=[4], duration=5.0)
    assert ds.waveforms.shape == (80, 80000) and ds.waveforms.dtype == np.float32
    assert ds.n_classes == 10 and ds.class_names == sorted(ds.class_names)
    assert np.bincount(ds.labels).tolist() == [8] * 10
    assert set(ds.folds.tolist()) == {4}
    assert np.isfinite(ds.waveforms).all() and np.abs(ds.waveforms).max() <= 1.0
    assert (rms(ds.waveforms) > 0).all()


@needs_fsdd
def test_load_fsdd_real():
    ds = load_fsdd(FSDD, sr=8000, n_clips=30, random_state=1)
    assert len(ds) == 30 and ds.class_names == [str(d) for d in range(10)]
    assert ds.waveforms.dtype == np.float32 and ds.sr == 8000
    for name, label, speaker in zip(ds.filenames, ds.labels, ds.extra["speaker"], strict=True):
        digit, spk, _ = name[:-4].split("_")
        assert int(digit) == label and spk == speaker
    again = load_fsdd(FSDD, sr=8000, n_clips=30, random_state=1)
    assert again.filenames == ds.filenames
    one = load_fsdd(FSDD, sr=16000, speakers=["george"], duration=1.0)
    assert len(one) == 500 and one.waveforms.shape == (500, 16000)
    assert set(one.extra["speaker"].tolist()) == {"george"}
    assert set(one.folds.tolist()) == {0, 1} and (one.folds == 0).sum() == 50
    with pytest.raises(ValueError, match="speakers"):
        load_fsdd(FSDD, speakers=["nobody"])


def test_load_fsdd_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_fsdd(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no file named"):
        load_fsdd(tmp_path)
    sf.write(tmp_path / "3_amy_0.wav", _tone(300.0, 8000, 0.3), 8000)
    sf.write(tmp_path / "5_amy_7.wav", _tone(300.0, 8000, 0.2), 8000)
    ds = load_fsdd(tmp_path, sr=8000)
    assert ds.labels.tolist() == [3, 5] and ds.folds.tolist() == [0, 1]
    assert ds.waveforms.shape == (2, 2400)
    with pytest.raises(ValueError, match="n_clips"):
        load_fsdd(tmp_path, n_clips=3)


# --------------------------------------------------------------------------------------------
# Mixtures
# --------------------------------------------------------------------------------------------
def test_fix_length():
    x = np.arange(5, dtype=np.float32)
    assert fix_length(x, 3).tolist() == [0, 1, 2]
    assert fix_length(x, 7).tolist() == [0, 1, 2, 3, 4, 0, 0]
    assert fix_length(np.ones((2, 5)), 6).shape == (2, 6)


def test_mix_at_gain_is_exact():
    rng = np.random.default_rng(0)
    s1 = rng.standard_normal(1000).astype(np.float32)
    s2 = rng.standard_normal(1500).astype(np.float32)
    mix, t, o = mix_at_gain(s1, s2, 0.3)
    assert mix.dtype == t.dtype == o.dtype == np.float32
    assert mix.shape == t.shape == o.shape == (1000,)
    np.testing.assert_array_equal(t, s1)
    np.testing.assert_array_equal(o, np.float32(0.3) * s2[:1000])
    np.testing.assert_array_equal(mix, t + o)
    short = mix_at_gain(s1, s2[:10], 2.0)
    assert np.all(short.other[10:] == 0)
    np.testing.assert_array_equal(short.mixture[10:], s1[10:])


def test_mix_equal_rms_and_snr():
    rng = np.random.default_rng(1)
    s1 = 0.1 * rng.standard_normal(2000).astype(np.float32)
    s2 = 3.0 * rng.standard_normal(2000).astype(np.float32)
    mix, t, o = mix_equal_rms(s1, s2)
    np.testing.assert_allclose(rms(o), rms(t), rtol=1e-5)
    np.testing.assert_array_equal(mix, t + o)
    np.testing.assert_allclose(o / s2, o[0] / s2[0], rtol=1e-4)  # only scaled
    for snr in (-10.0, 0.0, 12.5):
        m = make_mixture(s1, s2, snr_db=snr)
        assert 20 * np.log10(rms(m.target) / rms(m.other)) == pytest.approx(snr, abs=1e-4)
        np.testing.assert_array_equal(m.mixture, m.target + m.other)
    default = make_mixture(s1, s2)
    np.testing.assert_allclose(default.other, o)
    gained = make_mixture(s1, s2, gain=0.5)
    np.testing.assert_array_equal(gained.other, np.float32(0.5) * s2)


def test_mixture_batches_match_rms_per_clip():
    rng = np.random.default_rng(2)
    s1 = rng.standard_normal((3, 500)).astype(np.float32) * np.array(
        [[0.1], [1.0], [0.01]], dtype=np.float32
    )
    s2 = rng.standard_normal((3, 400)).astype(np.float32)
    mix, t, o = make_mixture(s1, s2, snr_db=6.0)
    assert mix.shape == (3, 500)
    np.testing.assert_allclose(20 * np.log10(rms(t) / rms(o)), 6.0, atol=1e-4)
    # a single 1-D interferer is mixed into every clip
    mix, t, o = mix_at_gain(s1, s2[0], 1.0)
    assert o.shape == (3, 500)
    np.testing.assert_array_equal(o[1, :400], s2[0])


def test_mixture_errors():
    x = np.ones(10, dtype=np.float32)
    with pytest.raises(ValueError, match="at most one"):
        make_mixture(x, x, gain=1.0, snr_db=0.0)
    with pytest.raises(ValueError, match="silent"):
        mix_equal_rms(x, np.zeros(10))
    with pytest.raises(ValueError, match="same number"):
        mix_at_gain(np.ones((2, 10)), np.ones((3, 10)), 1.0)
    with pytest.raises(ValueError, match="finite"):
        mix_at_gain(x, np.full(10, np.nan), 1.0)
    with pytest.raises(ValueError, match="1-D waveforms or 2-D"):
        mix_at_gain(np.ones((1, 1, 10)), x, 1.0)


# --------------------------------------------------------------------------------------------
# Synthetic sounds
# --------------------------------------------------------------------------------------------
def test_synthetic_shapes_and_labels():
    ds = make_synthetic_sounds(n_per_class=5, sr=8000, duration=0.5, random_state=3)
    assert ds.waveforms.shape == (20, 4000) and ds.waveforms.dtype == np.float32
    assert ds.class_names == list(SYNTHETIC_CLASSES)
    assert np.bincount(ds.labels).tolist() == [5] * 4
    assert sorted(set(ds.folds.tolist())) == [1, 2, 3, 4, 5]
    assert len(set(ds.filenames)) == 20
    assert np.isfinite(ds.waveforms).all() and np.abs(ds.waveforms).max() < 1.0
    levels = rms(ds.waveforms)
    assert levels.min() > 0.005 and levels.max() < 0.25


def test_synthetic_is_deterministic():
    a = make_synthetic_sounds(n_per_class=4, duration=0.5, random_state=7)
    b = make_synthetic_sounds(n_per_class=4, duration=0.5, random_state=7)
    c = make_synthetic_sounds(n_per_class=4, duration=0.5, random_state=8)
    np.testing.assert_array_equal(a.waveforms, b.waveforms)
    assert not np.allclose(a.waveforms, c.waveforms)
    # more clips per class extend the set: the first ones are unchanged
    d = make_synthetic_sounds(n_per_class=6, duration=0.5, random_state=7)
    np.testing.assert_array_equal(d.waveforms[:16], a.waveforms)


def test_synthetic_loudness_does_not_give_the_class_away():
    ds = make_synthetic_sounds(n_per_class=40, duration=0.5)
    levels = np.log(rms(ds.waveforms))
    lo = [levels[ds.labels == c].min() for c in range(4)]
    hi = [levels[ds.labels == c].max() for c in range(4)]
    assert max(lo) < min(hi)  # all classes' level ranges overlap


def test_synthetic_errors():
    with pytest.raises(ValueError, match="n_per_class"):
        make_synthetic_sounds(n_per_class=0)
    with pytest.raises(ValueError, match="at least 256"):
        make_synthetic_sounds(duration=0.001)
    with pytest.raises(ValueError, match="random_state"):
        make_synthetic_sounds(random_state=-1)


def test_audio_dataset_subset_and_length_check():
    ds = make_synthetic_sounds(n_per_class=5, duration=0.25)
    sub = ds.subset(ds.labels == 2)
    assert len(sub) == 5 and set(sub.labels.tolist()) == {2} and sub.class_names == ds.class_names
    assert sub.filenames == [ds.filenames[i] for i in np.flatnonzero(ds.labels == 2)]
    with pytest.raises(ValueError, match="one per clip"):
        AudioDataset(ds.waveforms, ds.labels[:3], ds.class_names, ds.folds, ds.filenames, ds.sr)


def test_benchmark_load_split_takes_folds_and_names_an_empty_part(tmp_path):
    from nmfinterp.benchmark import load_split

    root = _write_esc_folder(tmp_path / "esc")
    ds, train, test = load_split(str(root), [1], 2, 8000)
    assert len(ds) == 3 and list(train.folds) == [1] and list(test.folds) == [2, 2]
    with pytest.raises(
        ValueError, match=r"3 clips in folds \[1, 2\] and 0 in fold 4; expected clips in both"
    ):
        load_split(str(root), [1, 2], 4, 8000)


def test_benchmark_split_arguments_keep_the_categories_asked_for(tmp_path):
    import argparse

    from nmfinterp.benchmark import add_split_arguments, split_from_args, split_record

    root = _write_esc_folder(tmp_path / "esc")
    parser = argparse.ArgumentParser()
    add_split_arguments(parser)
    args = parser.parse_args(
        ["--data", str(root), "--train-folds", "1", "--test-fold", "2", "--sr", "8000"]
        + ["--categories", "zebra"]
    )
    ds, train, test = split_from_args(args)
    assert ds.class_names == ["zebra"] and ds.filenames == ["a.wav", "c.wav"]
    assert list(train.labels) == [0] and list(test.filenames) == ["c.wav"]
    record = split_record(args, ds, train, test)
    assert record == {
        "data": str(root),
        "train_folds": [1],
        "test_fold": 2,
        "categories": ["zebra"],
        "duration": 5.0,
        "classes": ["zebra"],
        "n_train": 1,
        "n_test": 1,
    }
    # every class by default; an unknown name is named, with the ones there are
    args = parser.parse_args(["--data", str(root), "--train-folds", "1", "--test-fold", "2"])
    assert args.categories is None and split_from_args(args)[0].class_names == ["apple", "zebra"]
    args.categories = ["zebra", "horse"]
    with pytest.raises(ValueError, match=r"categories \['horse'\] are not in .*'apple', 'zebra'"):
        split_from_args(args)


def test_benchmark_split_arguments_fix_every_clip_to_the_duration_asked_for(tmp_path, capsys):
    import argparse

    from nmfinterp.benchmark import add_split_arguments, split_from_args

    root = _write_esc_folder(tmp_path / "esc")
    parser = argparse.ArgumentParser()
    add_split_arguments(parser)
    folds = ["--data", str(root), "--train-folds", "1", "--test-fold", "2", "--sr", "8000"]
    ds, train, test = split_from_args(parser.parse_args(folds))
    assert ds.waveforms.shape == (3, 5 * 8000)  # ESC-50's five seconds by default
    ds, train, test = split_from_args(parser.parse_args(folds + ["--duration", "0.75"]))
    assert ds.waveforms.shape == (3, 6000) and test.waveforms.shape == (2, 6000)
    # the 2-second clip is trimmed, the half-second one zero-padded at the end
    assert np.abs(ds.waveforms[ds.filenames.index("b.wav"), 4000:]).max() == 0.0
    assert np.abs(ds.waveforms[ds.filenames.index("c.wav"), 5900:]).max() > 0.1
    # a length that is not one is named before any clip is read
    for bad in ("0", "-1", "inf", "five"):
        with pytest.raises(SystemExit):
            parser.parse_args(folds + ["--duration", bad])
        assert f"'{bad}': expected a positive number of seconds" in capsys.readouterr().err
