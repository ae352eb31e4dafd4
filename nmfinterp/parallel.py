"""Many cores and many machines: torch threads per worker, and explaining a corpus of files on Dask.

Grid search needs nothing special: every nmfinterp estimator works with scikit-learn's
``GridSearchCV`` under joblib's Dask backend::

    from dask.distributed import Client
    client = Client("tcp://scheduler:8786")       # or Client(LocalCluster(...))
    configure_workers(client, torch_threads=1)    # one torch thread per task on every worker
    with joblib.parallel_backend("dask"):
        GridSearchCV(pipe, grid, cv=3).fit(X, y)

:class:`~nmfinterp.InterpreterEstimator` limits torch to ``worker_torch_threads()`` threads while it
fits or predicts inside a Dask worker or a joblib (loky/multiprocessing) worker process, so that
workers do not oversubscribe the cores. :func:`explain_files` explains a folder of audio files on
the workers, writing WAVs; it is resumable (what is done is skipped) and never leaves half a file
under an output name.

Dask is optional: ``pip install "nmfinterp[dask]"``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

#: Environment variable: torch threads per task inside parallel workers (default 1).
THREADS_ENV = "NMFINTERP_WORKER_TORCH_THREADS"


def in_parallel_worker() -> bool:
    """True inside a Dask worker task or a joblib/multiprocessing worker process."""
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker

            get_worker()
            return True
        except (ValueError, ImportError):
            pass
    return multiprocessing.current_process().name != "MainProcess"


def worker_torch_threads() -> int:
    """Torch threads a task may use inside a parallel worker: ``$NMFINTERP_WORKER_TORCH_THREADS`` or 1."""
    value = os.environ.get(THREADS_ENV, "1")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{THREADS_ENV}={value!r}; expected a positive integer.") from None
    if n < 1:
        raise ValueError(f"{THREADS_ENV}={value!r}; expected a positive integer.")
    return n


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)``, then restore (``None``: unchanged).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def limit_threads_in_workers():
    """:func:`torch_threads` with :func:`worker_torch_threads` inside a parallel worker, else nothing."""
    with torch_threads(worker_torch_threads() if in_parallel_worker() else None):
        yield


def configure_workers(client, torch_threads: int = 1) -> None:
    """Set torch's thread count on every Dask worker of ``client``, now and for workers joining later.

    Registers a worker plugin that calls ``torch.set_num_threads(torch_threads)`` and sets
    ``$NMFINTERP_WORKER_TORCH_THREADS`` so that nmfinterp's estimators use the same count.
    Use ``torch_threads = cores per worker // threads per worker``.
    """
    from distributed.diagnostics.plugin import WorkerPlugin

    if not isinstance(torch_threads, int) or torch_threads < 1:
        raise ValueError(f"torch_threads={torch_threads!r}; expected a positive integer.")

    class TorchThreads(WorkerPlugin):
        name = "nmfinterp-torch-threads"

        def __init__(self, n):
            self.n = n

        def setup(self, worker):
            os.environ[THREADS_ENV] = str(self.n)
            torch.set_num_threads(self.n)

    client.register_plugin(TorchThreads(torch_threads))


# ---------------------------------------------------------------- explaining files
def _output_paths(paths, out_dir: Path, root, residuals: bool):
    paths = [Path(p) for p in paths]
    if root is None:
        parents = [str(p.resolve().parent) for p in paths]
        root = Path(os.path.commonpath(parents)) if parents else Path(".")
    root = Path(root).resolve()
    outputs = []
    for p in paths:
        try:
            rel = p.resolve().relative_to(root)
        except ValueError:
            raise ValueError(
                f"{p} is not under root={root}; expected every path under it (output names "
                "mirror the paths relative to root)."
            ) from None
        base = out_dir / rel.parent / rel.stem
        outs = [base.with_name(base.name + "_explanation.wav")]
        if residuals:
            outs.append(base.with_name(base.name + "_residual.wav"))
        outputs.append(outs)
    flat = [str(o) for outs in outputs for o in outs]
    if len(set(flat)) != len(flat):
        dup = sorted({o for o in flat if flat.count(o) > 1})[:3]
        raise ValueError(
            f"several inputs would write the same output ({dup}); expected distinct file names "
            "(files of one folder that differ only by extension collide)."
        )
    return paths, outputs


def _write_atomic(path: Path, wave: np.ndarray, sr: int) -> None:
    """Write a 16-bit WAV to a temporary name in the same folder, then rename it into place."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        sf.write(tmp, np.clip(wave, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _explain_chunk(model, items, explain_kwargs, threads):
    """Explain one chunk of files: list of records, one per file (errors caught per file)."""
    import soundfile as sf

    from .datasets import load_audio
    from .explain import _interpreter_of, explain

    with torch_threads(threads):
        spec = _interpreter_of(model).spectrogram_
        records, clips, keep = [], [], []
        for path, outs in items:
            record = {"path": str(path), "outputs": [str(o) for o in outs], "status": "failed"}
            try:
                clip = load_audio(path, spec.sr)  # clear errors for missing/undecodable files
                info = sf.info(str(path))
                record["resampled"] = info.samplerate != spec.sr
                record["downmixed"] = info.channels > 1
                if len(clip) < spec.n_fft // 2 + 1:
                    raise ValueError(
                        f"{len(clip)} samples, shorter than the {spec.n_fft // 2 + 1} the "
                        "pipeline's STFT needs"
                    )
                if not np.isfinite(clip).all():
                    raise ValueError("NaN or infinite samples")
                clips.append(clip)
                keep.append(len(records))
            except Exception as exc:  # one bad file must not stop the others
                record["error"] = f"{type(exc).__name__}: {exc}"
            records.append(record)
        if clips:
            try:
                ex = explain(model, clips, **explain_kwargs)
            except Exception as exc:
                for i in keep:
                    records[i]["error"] = f"{type(exc).__name__}: {exc}"
                return records
            for j, i in enumerate(keep):
                outs = [Path(o) for o in records[i]["outputs"]]
                try:
                    _write_atomic(outs[0], ex.waveforms[j], ex.sr)
                    if len(outs) > 1:
                        _write_atomic(outs[1], ex.residuals[j], ex.sr)
                    records[i]["status"] = "done"
                    records[i]["class"] = int(ex.classes[j])
                except Exception as exc:
                    for o in outs:  # no explanation without its residual
                        o.unlink(missing_ok=True)
                    records[i]["error"] = f"{type(exc).__name__}: {exc}"
        return records


def explain_files(
    model,
    paths,
    out_dir,
    client=None,
    *,
    root=None,
    batch_size: int = 8,
    residuals: bool = False,
    torch_threads: int | None = 1,
    **explain_kwargs,
) -> dict:
    """Explain audio files, in parallel on Dask workers, writing one WAV per file; resumable.

    Each file is read as mono at the pipeline's sample rate (multi-channel files are averaged,
    other rates resampled, as ``librosa.load`` does by default), explained at its own length, and
    written as ``out_dir/<path relative to root without extension>_explanation.wav`` (and
    ``_residual.wav``). Files whose outputs exist are skipped, so running again after a crash or
    a failure does only what is left. Each WAV is written under a temporary name and renamed, so
    an interrupted write never leaves a half file under an output name. A file that cannot be
    read or explained is reported in the summary; it does not stop the others.

    Parameters
    ----------
    model : Pipeline or InterpreterEstimator
        Fitted, ending in an :class:`~nmfinterp.InterpreterEstimator`. Sent once to every
        worker (it must pickle: the classifier too).
    paths : list of str or path-like
        Audio files (any format soundfile reads).
    out_dir : str or path-like
    client : distributed.Client or None, default=None
        Where to run; ``None``: here, one batch after the other.
    root : str, path-like or None
        Output names mirror the paths relative to it; ``None``: the inputs' common folder.
    batch_size : int, default=8
        Files per task (explained together).
    residuals : bool, default=False
        Also write input − explanation.
    torch_threads : int or None, default=1
        Torch threads per task (``None``: leave torch's setting).
    **explain_kwargs
        Passed to :func:`nmfinterp.explain` (``top_k``, ``threshold``, ``classes``...).

    Returns
    -------
    dict
        ``n_files``, ``done`` (written now), ``skipped`` (already there), ``failed`` (path ->
        error), ``resampled`` and ``downmixed`` (paths), ``outputs`` (explanation paths present).
    """
    from .explain import _interpreter_of

    _interpreter_of(model)  # fails early on an unfitted model
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; expected a positive integer.")
    out_dir = Path(out_dir)
    paths, outputs = _output_paths(list(paths), out_dir, root, residuals)
    todo, skipped = [], 0
    for p, outs in zip(paths, outputs, strict=True):
        if all(o.is_file() for o in outs):
            skipped += 1
        else:
            todo.append((p, outs))
    chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    records: list[dict] = []
    if client is None:
        for chunk in chunks:
            records += _explain_chunk(model, chunk, explain_kwargs, torch_threads)
    elif chunks:
        from distributed import as_completed

        shared = client.scatter(model, broadcast=True, hash=False)
        futures = {
            client.submit(
                _explain_chunk, shared, chunk, explain_kwargs, torch_threads, pure=False
            ): chunk
            for chunk in chunks
        }
        for future in as_completed(futures):
            try:
                records += future.result()
            except Exception as exc:  # a worker died: its files are failed, the rest go on
                records += [
                    {"path": str(p), "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                    for p, _ in futures[future]
                ]
    return {
        "n_files": len(paths),
        "done": sum(r["status"] == "done" for r in records),
        "skipped": skipped,
        "failed": {r["path"]: r["error"] for r in records if r["status"] == "failed"},
        "resampled": sorted(r["path"] for r in records if r.get("resampled")),
        "downmixed": sorted(r["path"] for r in records if r.get("downmixed")),
        "outputs": [str(outs[0]) for outs in outputs if outs[0].is_file()],
    }
