"""Dask: grid search through joblib's dask backend, explaining files on workers, resumable; threads."""

import os
import warnings

import joblib
import numpy as np
import pytest
import soundfile as sf
import torch
from _small import SR, small_pipe, small_setup
from sklearn.model_selection import GridSearchCV, KFold

from nmfinterp import explain
from nmfinterp.parallel import (
    THREADS_ENV,
    configure_workers,
    explain_files,
    in_parallel_worker,
    torch_threads,
    worker_torch_threads,
)

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def setup():
    return small_setup()


@pytest.fixture(scope="module")
def fitted(setup):
    clf, X, y, _ = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return small_pipe(clf).fit(X, y)


@pytest.fixture(scope="module")
def client():
    threads = torch.get_num_threads()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c
    torch.set_num_threads(threads)  # thread workers share this process's torch setting
    os.environ.pop(THREADS_ENV, None)


def _on_worker():
    return in_parallel_worker(), worker_torch_threads(), torch.get_num_threads()


def test_configure_workers_limits_torch_threads(client):
    configure_workers(client, torch_threads=1)
    results = client.run(lambda: torch.get_num_threads())
    assert set(results.values()) == {1}
    assert client.submit(_on_worker, pure=False).result()[:2] == (True, 1)
    with pytest.raises(ValueError, match="positive integer"):
        configure_workers(client, torch_threads=0)


def test_torch_threads_context_and_env(monkeypatch):
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert not in_parallel_worker()
    monkeypatch.setenv(THREADS_ENV, "nope")
    with pytest.raises(ValueError, match="expected a positive integer"):
        worker_torch_threads()


def test_grid_search_on_dask_matches_the_sequential_one(setup, client):
    clf, X, y, _ = setup
    # dictionary size and interpreter settings, two points to keep it short
    grid = [
        {"nmfdictionary__n_components": [4], "interpreterestimator__hidden": [4]},
        {"nmfdictionary__n_components": [6], "interpreterestimator__hidden": [8]},
    ]
    pipe = small_pipe(clf, epochs=1, faithfulness=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sequential = GridSearchCV(pipe, grid, cv=KFold(2)).fit(X, y)
        with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
            on_dask = GridSearchCV(pipe, grid, cv=KFold(2), n_jobs=-1).fit(X, y)
    # the 2 x 2 fits ran as Dask tasks (joblib batches several fits per task)
    assert any("fit_and_score" in str(task["key"]) for task in stream.data)
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"], sequential.cv_results_["mean_test_score"]
    )
    assert on_dask.best_params_ == sequential.best_params_
    assert on_dask.best_estimator_[-1].classifier is clf  # shared, not copied, in thread workers


def _write_corpus(folder, clips, sr=SR):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, c in enumerate(clips):
        paths.append(folder / ("a" if i % 2 else "b") / f"clip{i}.wav")
        paths[-1].parent.mkdir(exist_ok=True)
        sf.write(paths[-1], c, sr, subtype="FLOAT")
    return paths


def test_explain_files_on_dask_writes_the_same_wavs_and_resumes(setup, fitted, client, tmp_path):
    X, Xt = setup[1], setup[3]
    clips = list(X[:6]) + [Xt[0][:3000]]  # one clip of another length
    paths = _write_corpus(tmp_path / "in", clips)
    # one stereo file at another rate: downmixed and resampled like librosa.load
    stereo = tmp_path / "in" / "stereo.wav"
    sf.write(stereo, np.stack([Xt[1], Xt[1]], axis=1), 2 * SR, subtype="FLOAT")
    broken = tmp_path / "in" / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    paths += [stereo, broken]

    out = tmp_path / "out"
    summary = explain_files(fitted, paths, out, client, batch_size=3, residuals=True)
    assert summary["n_files"] == 9 and summary["done"] == 8 and summary["skipped"] == 0
    assert (
        list(summary["failed"]) == [str(broken)]
        and "Could not decode" in summary["failed"][str(broken)]
    )
    assert summary["resampled"] == summary["downmixed"] == [str(stereo)]
    first = out / "b" / "clip0_explanation.wav"
    assert str(first) in summary["outputs"] and (out / "b" / "clip0_residual.wav").is_file()
    # the same as explaining here, clip by clip, at each clip's own length
    ex = explain(fitted, [clips[0], clips[6]])
    got, sr = sf.read(first, dtype="float32")
    assert sr == SR
    np.testing.assert_allclose(got, np.clip(ex.waveforms[0], -1, 1), atol=1 / 2**14)
    assert len(sf.read(out / "b" / "clip6_explanation.wav")[0]) == 3000
    assert not list(out.rglob("*.part"))

    # a second run does nothing but retry the failure; after the fix, only that file is done
    again = explain_files(fitted, paths, out, client, batch_size=3, residuals=True)
    assert again["done"] == 0 and again["skipped"] == 8 and list(again["failed"]) == [str(broken)]
    sf.write(broken, Xt[2], SR, subtype="FLOAT")
    fixed = explain_files(fitted, paths, out, client, batch_size=3, residuals=True)
    assert fixed["done"] == 1 and fixed["skipped"] == 8 and not fixed["failed"]


def test_a_crash_while_writing_never_leaves_a_file_counted_as_done(
    setup, fitted, tmp_path, monkeypatch
):
    X = setup[1]
    paths = _write_corpus(tmp_path / "in", X[:3])
    out = tmp_path / "out"
    real_write = sf.write
    state = {"n": 0}

    def crash_on_second(file, data, *a, **k):
        state["n"] += 1
        if state["n"] == 2:
            with open(file, "wb") as f:  # half a file, then the "crash"
                f.write(b"RIFF\x00\x00")
            raise OSError("disk full")
        return real_write(file, data, *a, **k)

    monkeypatch.setattr(sf, "write", crash_on_second)
    summary = explain_files(fitted, paths, out)  # no client: here, sequentially
    assert summary["done"] == 2 and len(summary["failed"]) == 1
    assert "disk full" in next(iter(summary["failed"].values()))
    assert len(list(out.rglob("*_explanation.wav"))) == 2 and not list(out.rglob("*.part"))
    monkeypatch.undo()
    resumed = explain_files(fitted, paths, out)
    assert resumed["done"] == 1 and resumed["skipped"] == 2 and not resumed["failed"]


def test_explain_files_refuses_colliding_outputs_and_unfitted_models(setup, fitted, tmp_path):
    paths = _write_corpus(tmp_path / "in", setup[1][:1])
    twin = paths[0].with_suffix(".flac")
    sf.write(twin, setup[1][0], SR)
    with pytest.raises(ValueError, match="same output"):
        explain_files(fitted, [paths[0], twin], tmp_path / "out")
    with pytest.raises(ValueError, match="not under root"):
        explain_files(fitted, paths, tmp_path / "out", root=tmp_path / "elsewhere")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        explain_files(small_pipe(setup[0]), paths, tmp_path / "out")
    assert explain_files(fitted, [], tmp_path / "out")["n_files"] == 0
