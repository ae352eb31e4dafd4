"""The ``nmfinterp`` command line: fit an interpreter, explain clips to WAVs, build a report, benchmark.

::

    nmfinterp fit CLIPS --classifier MODULE:FACTORY [--weights W.pt | --outputs Y.npy] -o model.joblib
    nmfinterp explain model.joblib FILE_OR_FOLDER ... -o explanations/
    nmfinterp report model.joblib FILE_OR_FOLDER ... -o report.html
    nmfinterp bench [ARGS ...]

Exit codes: 0 success; 2 a usage or input error (missing file, bad ``module:factory``, shapes that
do not match), reported in one line on stderr; 1 anything unexpected (with its traceback); 130
interrupted.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["CLIError", "find_audio", "load_classifier", "main", "read_clip_list"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE = 0, 1, 2


class CLIError(Exception):
    """A mistake in the command's arguments or inputs: reported in one line, exit code 2."""


# ---------------------------------------------------------------------------------- inputs
def find_audio(paths: Sequence[str | Path]) -> list[Path]:
    """Audio files named directly or found (recursively, sorted) in the folders given.

    Examples
    --------
    >>> import tempfile, soundfile as sf
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "b").mkdir(); sf.write(root / "b" / "x.wav", np.zeros(8), 8000)
    >>> sf.write(root / "a.wav", np.zeros(8), 8000); (root / "notes.txt").write_text("-")
    1
    >>> [p.relative_to(root).as_posix() for p in find_audio([root])]
    ['a.wav', 'b/x.wav']
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not inside:
                raise CLIError(
                    f"folder {str(p)!r} holds no audio file; expected files ending in "
                    f"{', '.join(AUDIO_EXTENSIONS)}."
                )
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            raise CLIError(
                f"{str(p)!r} does not exist; expected an audio file or a folder of them."
            )
    return found


def read_clip_list(
    source: str | Path,
    *,
    path_column: str | None = None,
    label_column: str | None = None,
    audio_root: str | Path | None = None,
) -> tuple[list[Path], list[str] | None]:
    """Clips and their labels (or ``None``) from a folder or a CSV file.

    A folder: every audio file inside, sorted by path; when every file lies in a subfolder, the
    first subfolder's name is its label. A CSV file: one row per clip, the path in
    ``path_column`` (default: the first of ``path``, ``filename``, ``file``), relative to
    ``audio_root`` (default: the CSV's folder, or its ``audio/`` subfolder as in ESC-50), and the
    label in ``label_column`` (default: ``label`` or ``category`` when present).

    Examples
    --------
    >>> import tempfile, soundfile as sf
    >>> root = Path(tempfile.mkdtemp())
    >>> for lab in ("dog", "rain"):
    ...     (root / lab).mkdir(); sf.write(root / lab / "1.wav", np.zeros(8), 8000)
    >>> paths, labels = read_clip_list(root)
    >>> labels
    ['dog', 'rain']
    """
    source = Path(source)
    if source.is_dir():
        paths = find_audio([source])
        parts = [p.relative_to(source).parts for p in paths]
        labels = [q[0] for q in parts] if all(len(q) > 1 for q in parts) else None
        if label_column is not None:
            raise CLIError(
                "--label-column applies to a CSV of clips; a folder's labels are its subfolders."
            )
        return paths, labels
    if not source.is_file():
        raise CLIError(f"{str(source)!r} does not exist; expected a folder of clips or a CSV file.")
    if source.suffix.lower() != ".csv":
        raise CLIError(f"{str(source)!r} is neither a folder nor a .csv file listing clips.")
    with open(source, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise CLIError(f"{str(source)!r} lists no clips; expected a header and one row per clip.")
    columns = list(rows[0])
    if path_column is None:
        path_column = next((c for c in ("path", "filename", "file") if c in columns), None)
        if path_column is None:
            raise CLIError(
                f"{str(source)!r} has columns {columns}; none is 'path', 'filename' or 'file': "
                "name the one with the audio paths with --path-column."
            )
    elif path_column not in columns:
        raise CLIError(
            f"--path-column {path_column!r} is not in {str(source)!r}: columns are {columns}."
        )
    if label_column is None:
        label_column = next((c for c in ("label", "category") if c in columns), None)
    elif label_column not in columns:
        raise CLIError(
            f"--label-column {label_column!r} is not in {str(source)!r}: columns are {columns}."
        )
    roots = [Path(audio_root)] if audio_root else [source.parent, source.parent / "audio"]
    paths, missing = [], []
    for row in rows:
        rel = Path(row[path_column])
        cands = [rel] if rel.is_absolute() else [r / rel for r in roots]
        hit = next((c for c in cands if c.is_file()), None)
        if hit is None:
            missing.append(str(cands[0]))
        paths.append(hit)
    if missing:
        raise CLIError(
            f"{len(missing)} of the {len(rows)} clips listed in {str(source)!r} were not found, "
            f"e.g. {missing[0]!r}; paths are read relative to "
            f"{', '.join(str(r.resolve()) for r in roots)} "
            "(set --audio-root)."
        )
    labels = [row[label_column] for row in rows] if label_column else None
    return paths, labels


def _load_clips(paths: list[Path], sr: int, duration: float | None, verbose: int):
    from tqdm.auto import tqdm

    from .datasets import load_audio

    return [
        load_audio(p, sr, duration) for p in tqdm(paths, desc="reading audio", disable=verbose <= 0)
    ]


def _stack(clips: list[np.ndarray]) -> np.ndarray:
    from .datasets import fix_length

    n = max(len(c) for c in clips)
    return np.stack([fix_length(c, n) for c in clips])


def _read_outputs(path: str | Path, n_clips: int) -> tuple[np.ndarray, list[str] | None]:
    """Classifier outputs from .npy or .csv (a header of class names is optional)."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"--outputs {str(path)!r} does not exist; expected a .npy or .csv file.")
    names = None
    if path.suffix.lower() == ".npy":
        try:
            y = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise CLIError(f"--outputs {str(path)!r} is not a numeric .npy array ({exc}).") from exc
    elif path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
        try:
            float(rows[0][0])
        except (ValueError, IndexError):
            names, rows = rows[0], rows[1:]
        try:
            y = np.array([[float(v) for v in r] for r in rows])
        except ValueError as exc:
            raise CLIError(
                f"--outputs {str(path)!r} has a value that is not a number ({exc}); expected one "
                "row of scores per clip, with an optional header of class names."
            ) from exc
    else:
        raise CLIError(f"--outputs {str(path)!r}: expected a .npy or .csv file.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or len(y) != n_clips:
        raise CLIError(
            f"--outputs {str(path)!r} has shape {y.shape}; expected one row per clip, "
            f"({n_clips}, n_classes) or ({n_clips},) predicted labels, in the order of the clips."
        )
    return y, names


def _import_object(spec: str, option: str, what: str):
    """``module:name`` or ``file.py:name`` -> (the callable, the folder added to ``sys.path``)."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise CLIError(
            f"{option} {spec!r}: expected MODULE:{what} (e.g. mypackage.models:build) or "
            f"path/to/file.py:{what}."
        )
    if module_name.endswith(".py"):
        file = Path(module_name)
        if not file.is_file():
            raise CLIError(f"{option} {spec!r}: file {module_name!r} does not exist.")
        extra = str(file.resolve().parent)
        module_name = file.stem
    else:
        extra = str(Path.cwd())
    if extra not in sys.path:
        sys.path.insert(0, extra)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CLIError(f"{option} {spec!r}: cannot import {module_name!r} ({exc}).") from exc
    except Exception as exc:  # the user's module failed while importing
        raise CLIError(
            f"{option} {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    obj = getattr(module, attr, None)
    if not callable(obj):
        raise CLIError(f"{option} {spec!r}: module {module_name!r} has no callable {attr!r}.")
    return obj, extra


def load_classifier(spec: str, kwargs: dict | None = None, weights: str | Path | None = None):
    """Build a torch classifier from ``module:factory`` (or ``file.py:factory``) and weights.

    ``factory(**kwargs)`` must return a ``torch.nn.Module``; ``weights`` is a file saved with
    ``torch.save(model.state_dict(), ...)`` (a dict with a ``"state_dict"`` entry works too).
    Returns ``(model, extra_sys_path)``: the folder added to ``sys.path`` to import a file, if any.

    Examples
    --------
    >>> model, _ = load_classifier("nmfinterp.classifiers:LogMelCNN", {"n_classes": 3, "channels": [4, 4]})
    >>> type(model).__name__, model.training
    ('LogMelCNN', False)
    >>> load_classifier("nmfinterp.classifiers")
    Traceback (most recent call last):
    ...
    nmfinterp.cli.CLIError: --classifier 'nmfinterp.classifiers': expected MODULE:FACTORY ...
    """
    import torch

    factory, extra = _import_object(spec, "--classifier", "FACTORY")
    attr = spec.rpartition(":")[2]
    try:
        model = factory(**(kwargs or {}))
    except Exception as exc:
        raise CLIError(
            f"--classifier {spec!r}: {attr}(**{kwargs or {}}) raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise CLIError(
            f"--classifier {spec!r} returned a {type(model).__name__}; expected a torch.nn.Module."
        )
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise CLIError(f"--weights {str(weights)!r} does not exist.")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CLIError(
                f"--weights {str(weights)!r} could not be read as a torch state_dict ({exc})."
            ) from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CLIError(
                f"--weights {str(weights)!r} do not fit the model built by {spec!r}: {first}"
            ) from exc
    return model.eval(), extra


def _classifier_outputs(clf, X: np.ndarray, to_scores=None, batch_size: int = 32) -> np.ndarray:
    """The classifier's scores on waveforms, the way the interpreter reads them."""
    import torch

    from .hooks import classifier_device

    dev = classifier_device(clf)
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            o = clf(torch.as_tensor(X[start : start + batch_size]).to(dev))
            if isinstance(o, tuple | list):
                o = o[0]
            if to_scores is not None:
                o = to_scores(o)
            out.append(o.float().cpu().numpy())
    return np.concatenate(out)


def _meta_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def _load_model(path: str | Path):
    """A fitted pipeline saved by ``nmfinterp fit`` and its metadata (empty if none)."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise CLIError(
            f"model {str(path)!r} does not exist; expected a file saved by 'nmfinterp fit'."
        )
    meta = {}
    if _meta_path(path).is_file():
        meta = json.loads(_meta_path(path).read_text())
    for folder in [str(Path.cwd()), *meta.get("python_path", [])]:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        model = joblib.load(path)
    except ModuleNotFoundError as exc:
        raise CLIError(
            f"model {str(path)!r} needs module {exc.name!r}, which is not importable here; run "
            "from the folder where the model was fitted or add it to PYTHONPATH."
        ) from exc
    except Exception as exc:
        raise CLIError(f"{str(path)!r} could not be loaded as a joblib model ({exc}).") from exc
    from .explain import _interpreter_of

    try:
        _interpreter_of(model)
    except Exception as exc:
        raise CLIError(f"{str(path)!r} is not a fitted nmfinterp pipeline: {exc}") from exc
    return model, meta


def _clip_names(paths: list[Path], roots: Sequence[str]) -> list[str]:
    names = []
    for p in paths:
        rel = p.name
        for r in map(Path, roots):
            if r.is_dir():
                try:
                    rel = p.relative_to(r).as_posix()
                    break
                except ValueError:
                    continue
        names.append(str(Path(rel).with_suffix("")).replace("/", "__"))
    seen: dict[str, int] = {}
    unique = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return unique


def _class_index(value: str, class_names: list[str] | None, n_classes: int) -> int:
    if class_names and value in class_names:
        return class_names.index(value)
    try:
        c = int(value)
    except ValueError:
        raise CLIError(
            f"--class {value!r} is not a class name{' (' + ', '.join(class_names) + ')' if class_names else ''} "
            f"or an index 0..{n_classes - 1}."
        ) from None
    if not 0 <= c < n_classes:
        raise CLIError(f"--class {c} out of range; expected 0..{n_classes - 1}.")
    return c


# ---------------------------------------------------------------------------------- commands
def _cmd_fit(args) -> int:
    from sklearn.pipeline import make_pipeline

    from .demo import default_n_fft
    from .dictionary import PER_CLASS_CHOICES, NMFDictionary
    from .interpreter import InterpreterEstimator
    from .spectrogram import SpectrogramTransformer

    out = Path(args.out)
    if out.exists() and not args.force:
        raise CLIError(f"{str(out)!r} exists; choose another --out or pass --force to replace it.")
    for flag, given in (
        ("--gate-epochs", args.gate_epochs),
        ("--separation", args.separation),
        ("--source-gates", args.source_gates is True),
    ):
        if given and args.multilabel:
            raise CLIError(
                f"{flag} serves the refinement of single-label decisions; drop it with "
                "--multilabel (multilabel models are explained without refinement)."
            )
    try:
        kwargs = json.loads(args.classifier_kwargs) if args.classifier_kwargs else {}
    except json.JSONDecodeError as exc:
        raise CLIError(f"--classifier-kwargs is not valid JSON ({exc}).") from exc
    if not isinstance(kwargs, dict):
        raise CLIError("--classifier-kwargs must be a JSON object, e.g. '{\"n_classes\": 10}'.")
    paths, labels = read_clip_list(
        args.clips,
        path_column=args.path_column,
        label_column=args.label_column,
        audio_root=args.audio_root,
    )
    clf, extra_path = load_classifier(args.classifier, kwargs, args.weights)
    python_path = [extra_path]
    to_scores = None
    if args.classifier_output:
        to_scores, extra = _import_object(args.classifier_output, "--classifier-output", "FUNCTION")
        python_path.append(extra)
    X = _stack(_load_clips(paths, args.sr, args.duration, args.verbose))
    class_names = None
    if args.outputs:
        y, class_names = _read_outputs(args.outputs, len(X))
    else:
        try:
            y = _classifier_outputs(clf, X, to_scores)
        except Exception as exc:
            raise CLIError(
                f"running the classifier on the clips failed ({type(exc).__name__}: {exc}); it "
                "must map float32 waveforms (batch, n_samples) to scores (batch, n_classes), "
                "after --classifier-output if given."
            ) from exc
        if y.ndim != 2:
            raise CLIError(
                f"the classifier returned shape {y.shape}; expected (batch, n_classes) scores."
            )
    n_classes = y.shape[1] if y.ndim == 2 else int(y.max()) + 1
    if args.class_names:
        class_names = [c.strip() for c in args.class_names.split(",")]
    elif class_names is None and labels is not None and len(set(labels)) == n_classes:
        class_names = sorted(set(labels))
    if class_names is not None and len(class_names) != n_classes:
        raise CLIError(
            f"{len(class_names)} class names ({', '.join(class_names)}) for {n_classes} classifier "
            "outputs; expected one name per output column."
        )
    if args.source_gates is True and y.ndim == 2 and len(np.unique(y.argmax(1))) < 2:
        raise CLIError(
            "--source-gates learns from mixtures of clips of two different classes, and the "
            "classifier puts every clip in one class; drop --source-gates (by default they are "
            "learned when they can be) or give clips of more classes."
        )
    n_fft = args.n_fft or default_n_fft(args.sr)
    layers = [s.strip() for s in args.layers.split(",")] if args.layers else None
    interp_params = {
        "epochs": args.epochs,
        "random_state": args.random_state,
        "classifier_output": to_scores,
        "output_type": args.output_type,
    }
    if args.separation:
        interp_params["separation"] = True
    interp_params["source_gates"] = "auto" if args.source_gates is None else args.source_gates
    if args.multilabel:
        interp_params.update(multilabel=True, faithfulness=0.0)
    elif args.faithfulness is not None:
        interp_params["faithfulness"] = args.faithfulness
    pipe = make_pipeline(
        SpectrogramTransformer(sr=args.sr, n_fft=n_fft, hop_length=args.hop_length or n_fft // 2),
        NMFDictionary(
            n_components=args.n_components,
            per_class=PER_CLASS_CHOICES[args.dictionary],
            random_state=args.random_state,
            verbose=int(args.verbose > 1),
        ),
        InterpreterEstimator(clf, layers=layers, verbose=args.verbose, **interp_params),
    )
    pipe.fit(X, y)
    if args.gate_epochs:
        pipe[-1].fit_gates(X, epochs=args.gate_epochs)
    metrics: dict = {"n_clips": len(X), "fidelity_top1_train": float(pipe.score(X, y))}
    if labels is not None and class_names is not None and y.ndim == 2 and not args.multilabel:
        known = [i for i, lab in enumerate(labels) if lab in class_names]
        truth = np.array([class_names.index(labels[i]) for i in known])
        if known:
            metrics["classifier_accuracy_vs_labels"] = float(np.mean(y[known].argmax(1) == truth))
    import joblib

    out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipe, out)
    meta = {
        "class_names": class_names,
        "sr": args.sr,
        "classifier": args.classifier,
        "python_path": sorted(set(python_path)),
        "clips": str(Path(args.clips).resolve()),
        "metrics": metrics,
    }
    _meta_path(out).write_text(json.dumps(meta, indent=2))
    print(
        f"fitted on {len(X)} clips ({pipe[1].n_components} components, {args.epochs} epochs"
        + (f", gate network {args.gate_epochs} epochs" if args.gate_epochs else "")
        + (", class-block separation" if args.separation else "")
        + (", source gates" if hasattr(pipe[-1], "source_gates_") else "")
        + "); "
        f"top-1 fidelity on those clips {metrics['fidelity_top1_train']:.3f}; "
        f"saved {out} and {_meta_path(out)}"
    )
    return EXIT_OK


def _explain_inputs(args):
    model, meta = _load_model(args.model)  # first: a wrong path fails before torch is imported
    from .explain import _contrast_penalties, _interpreter_of
    from .explain import explain as explain_fn

    interp = _interpreter_of(model)
    if args.amortised:
        _check_amortised(args, interp)
    elif args.keep_confidence is not None and (
        args.refine_steps == 0 or len(_contrast_penalties(interp, args.contrast_penalty)) < 2
    ):
        raise CLIError(
            "--keep-confidence decides which clips are refined again with the next of several "
            "contrast weights; give them, e.g. --contrast-penalty 300 100, with refinement "
            "(--refine-steps > 0)."
        )
    sr = interp.spectrogram_.sr
    paths = find_audio(args.inputs)
    clips = _load_clips(paths, sr, None, args.verbose)
    class_names = meta.get("class_names")
    n_classes = len(interp.classes_)
    classes = None if args.target is None else _class_index(args.target, class_names, n_classes)
    ex = explain_fn(
        model,
        clips if len({len(c) for c in clips}) > 1 else np.stack(clips),
        classes=classes,
        top_k=args.top_k,
        threshold=args.threshold,
        refine_steps=args.refine_steps,
        **({} if args.refine_lr is None else {"refine_lr": args.refine_lr}),
        per_frame=not args.per_clip_gates,
        **({} if args.energy_penalty is None else {"energy_penalty": args.energy_penalty}),
        contrast_penalty=args.contrast_penalty,
        keep_confidence=args.keep_confidence,
        amortised=args.amortised,
        **({} if args.mask_power is None else {"mask_power": args.mask_power}),
        **({} if args.mask_ratio is None else {"mask_ratio": args.mask_ratio}),
        **({} if args.residual_weight is None else {"residual_weight": args.residual_weight}),
        **({"separation": None} if args.no_separation else {}),
        verbose=args.verbose,
    )
    names = _clip_names(paths, args.inputs)
    return model, meta, ex, names, class_names


def _check_amortised(args, interp) -> None:
    """--amortised: a gate network saved with the model, and no option it replaces."""
    clash = [
        name
        for name, given in (
            ("--refine-steps", args.refine_steps is not None),
            ("--refine-lr", args.refine_lr is not None),
            ("--energy-penalty", args.energy_penalty is not None),
            ("--contrast-penalty", args.contrast_penalty is not None),
            ("--keep-confidence", args.keep_confidence is not None),
            ("--per-clip-gates", args.per_clip_gates),
            ("--threshold", args.threshold != 0),
        )
        if given
    ]
    if clash:
        raise CLIError(
            f"--amortised replaces the refinement and its options; drop {', '.join(clash)} "
            "(--top-k still applies)."
        )
    if getattr(interp, "gate_module_", None) is None:
        raise CLIError(
            f"--amortised needs a gate network, and {args.model!r} has none; fit the model with "
            "'nmfinterp fit ... --gate-epochs 30', or explain without --amortised."
        )


def _cmd_explain(args) -> int:
    from .explain import write_wavs

    model, meta, ex, names, class_names = _explain_inputs(args)
    if class_names:
        names = [f"{n}_as_{class_names[c]}" for n, c in zip(names, ex.classes, strict=True)]
    written = write_wavs(ex, args.out, names, residuals=args.residuals)
    print(f"wrote {len(written)} WAV files for {len(ex)} clips to {args.out}")
    return EXIT_OK


def _cmd_report(args) -> int:
    from .report import write_report

    metrics = {}
    if args.metrics:
        mpath = Path(args.metrics)
        if not mpath.is_file():
            raise CLIError(f"--metrics {str(mpath)!r} does not exist; expected a JSON file.")
        try:
            metrics = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CLIError(f"--metrics {str(mpath)!r} is not valid JSON ({exc}).") from exc
        if not isinstance(metrics, dict):
            raise CLIError(f"--metrics {str(mpath)!r} must hold a JSON object.")
    model, meta, ex, names, class_names = _explain_inputs(args)
    if not metrics:
        metrics = meta.get("metrics", {})
    path = write_report(
        model,
        explanations=ex,
        path=args.out,
        names=names,
        class_names=class_names,
        metrics=metrics,
        max_components=args.max_components,
        title=args.title,
        verbose=args.verbose,
    )
    print(f"wrote {path} ({len(ex)} clips)")
    return EXIT_OK


def _cmd_bench(args) -> int:
    argv = list(args.args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    try:
        benchmark = importlib.import_module("nmfinterp.benchmark")
    except ModuleNotFoundError as exc:
        if exc.name != "nmfinterp.benchmark":
            raise
        print(
            "nmfinterp bench: error: this installation has no nmfinterp.benchmark module; "
            "update nmfinterp to a version that includes the benchmark.",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED
    try:
        rc = benchmark.main(argv)
    except SystemExit as exc:  # the benchmark's own argparse: --help (0) or a usage error (2)
        rc = exc.code if isinstance(exc.code, int) or exc.code is None else 1
    return int(rc or 0)


# ---------------------------------------------------------------------------------- parser
def _positive_int(text: str, least: int = 1) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < least:
        raise argparse.ArgumentTypeError(f"{v} is not {'positive' if least == 1 else '>= 0'}")
    return v


def _count(text: str) -> int:
    return _positive_int(text, least=0)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _positive_float(text: str) -> float:
    v = _float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{v} is not positive")
    return v


def _non_negative_float(text: str) -> float:
    v = _float(text)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"{v} is not >= 0")
    return v


def _finite_positive_float(text: str) -> float:
    v = _positive_float(text)
    if not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"{v} is not a finite positive number")
    return v


def _finite_non_negative_float(text: str) -> float:
    v = _non_negative_float(text)
    if not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"{v} is not a finite number >= 0")
    return v


def _mask_power(text: str) -> float:
    v = _float(text)
    if not (v >= 1 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{v} is not a finite number >= 1")
    return v


def _explain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a model saved by 'nmfinterp fit' (.joblib)")
    p.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    p.add_argument(
        "--class",
        dest="target",
        metavar="CLASS",
        help="explain this class (name or index) for every clip; default: the classifier's decision",
    )
    p.add_argument(
        "--top-k", type=_positive_int, help="keep at most this many components (default: all)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        help="keep components with relevance above this (default: %(default)s)",
    )
    p.add_argument(
        "--refine-steps",
        type=_count,
        default=None,
        metavar="N",
        help="refine the selection through the classifier in N steps (default: 20 for "
        "single-label models; 0: the interpreter's selection alone, much faster)",
    )
    p.add_argument(
        "--refine-lr",
        type=_finite_positive_float,
        default=None,
        metavar="X",
        help="with refinement, its Adam learning rate on the gates (default: 1; --refine-steps 10 "
        "takes about half the time)",
    )
    p.add_argument(
        "--energy-penalty",
        type=_non_negative_float,
        default=None,
        metavar="X",
        help="with refinement, weight of the share of the clip's energy kept (default: 0.3; "
        "0: faithfulness alone)",
    )
    p.add_argument(
        "--contrast-penalty",
        type=_non_negative_float,
        nargs="+",
        default=None,
        metavar="X",
        help="with refinement, weight of the energy kept from components that other classes the "
        "classifier hears use more than the explained one (default: 300 then 100; 0: off); "
        "several: tried in turn, the next for the clips whose explanation lost the decision or "
        "the classifier's confidence (--keep-confidence)",
    )
    p.add_argument(
        "--keep-confidence",
        type=_finite_non_negative_float,
        default=None,
        metavar="Q",
        help="with several --contrast-penalty weights, also refine a clip again with the next "
        "where the classifier gives its explanation less than Q times the clip's probability "
        "of the class (default: 1; 0: the decision alone)",
    )
    p.add_argument(
        "--mask-power",
        type=_mask_power,
        default=None,
        metavar="P",
        help="sharpen the mask into r^P / (r^P + (1 - r)^P), r the kept components' share of the "
        "model (default: 1, the ratio itself; 2: the Wiener mask)",
    )
    p.add_argument(
        "--mask-ratio",
        choices=("linear", "log"),
        default=None,
        help="the mask is the ratio of the magnitudes the kept components and all of them "
        "model (linear), or of their log-magnitude models (log, L2I's) (default: linear)",
    )
    p.add_argument(
        "--residual-weight",
        type=_finite_non_negative_float,
        default=None,
        metavar="W",
        help="with refinement, weight of asking the residual to lose the decision (default: 0.5; "
        "0: the residual is not asked)",
    )
    p.add_argument(
        "--per-clip-gates",
        action="store_true",
        help="with refinement, keep or drop each component for the whole clip instead of frame "
        "by frame",
    )
    p.add_argument(
        "--no-separation",
        action="store_true",
        help="with refinement, do not weight the contrast term by the model's source gates or "
        "class-block separation (fit with --source-gates or --separation); without them this "
        "changes nothing",
    )
    p.add_argument(
        "--amortised",
        action="store_true",
        help="gates from the model's gate network (fit with --gate-epochs) in one pass instead "
        "of the refinement: about as fast as --refine-steps 0, less faithful than the refinement",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nmfinterp`` (one subcommand per task).

    Examples
    --------
    >>> args = build_parser().parse_args(["explain", "model.joblib", "clips/", "-o", "out", "--top-k", "5"])
    >>> args.command, args.inputs, args.top_k, args.threshold
    ('explain', ['clips/'], 5, 0.0)
    """
    parser = argparse.ArgumentParser(
        prog="nmfinterp",
        description="Listenable explanations of audio classifiers (NMF, Listen to Interpret).",
        epilog="Exit codes: 0 success, 2 usage or input error, 1 unexpected error.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fit = sub.add_parser(
        "fit",
        help="fit an interpreter of a classifier on clips and save it",
        description=(
            "Fit SpectrogramTransformer -> NMFDictionary -> InterpreterEstimator on clips and save "
            "the pipeline with joblib (and its metadata, class names and metrics, next to it as "
            ".json). The classifier maps float32 waveforms (batch, n_samples) at --sr to scores "
            "(batch, n_classes); its outputs on the clips supervise the interpreter (or give them "
            "with --outputs)."
        ),
        epilog="Exit codes: 0 success, 2 usage or input error, 1 unexpected error.",
    )
    fit.add_argument(
        "clips",
        help="a folder of audio files (labels: subfolder names, if every file is in one) or a CSV "
        "with a path column and optionally a label column",
    )
    fit.add_argument(
        "--classifier",
        required=True,
        metavar="MODULE:FACTORY",
        help="importable factory of the torch classifier, e.g. mypkg.models:build or models.py:build",
    )
    fit.add_argument(
        "--classifier-kwargs", metavar="JSON", help="keyword arguments of the factory, as JSON"
    )
    fit.add_argument(
        "--classifier-output",
        metavar="MODULE:FUNCTION",
        help="turns the classifier's raw output into (batch, n_classes) scores (picklable)",
    )
    fit.add_argument(
        "--output-type",
        choices=["auto", "logits", "probabilities"],
        default="auto",
        help="what the classifier's scores are (%(default)s: decided from their range)",
    )
    fit.add_argument("--weights", help="state_dict to load (torch.save(model.state_dict(), ...))")
    fit.add_argument(
        "--outputs",
        help="precomputed classifier outputs, .npy or .csv, one row per clip in the clips' order "
        "(sorted paths for a folder, row order for a CSV); a CSV header gives class names",
    )
    fit.add_argument("-o", "--out", required=True, help="where to save the model (.joblib)")
    fit.add_argument("--force", action="store_true", help="replace --out if it exists")
    fit.add_argument("--path-column", help="CSV column of audio paths")
    fit.add_argument("--label-column", help="CSV column of labels (default: label or category)")
    fit.add_argument("--audio-root", help="folder the CSV's paths are relative to")
    fit.add_argument(
        "--class-names",
        help="comma-separated names of the classifier's outputs (default: the CSV header of "
        "--outputs, or the sorted labels when there are as many as outputs)",
    )
    fit.add_argument("--sr", type=_positive_int, default=16000, help="sample rate (Hz)")
    fit.add_argument(
        "--duration",
        type=_positive_float,
        help="trim or zero-pad every clip to this many seconds (default: the longest clip)",
    )
    fit.add_argument(
        "--n-components", type=_positive_int, default=100, help="dictionary size K (%(default)s)"
    )
    fit.add_argument(
        "--dictionary",
        choices=["auto", "plain", "per_class"],
        default="auto",
        help="the NMF dictionary: a block of patterns per predicted class where at least 3 "
        "classes each get 10 (auto, the default), one for all classes (plain, L2I's) or always "
        "a block per class (per_class)",
    )
    fit.add_argument(
        "--epochs", type=_positive_int, default=40, help="interpreter epochs (%(default)s)"
    )
    fit.add_argument("--n-fft", type=_positive_int, help="STFT size (default: about 32 ms)")
    fit.add_argument("--hop-length", type=_positive_int, help="STFT hop (default: n_fft / 2)")
    fit.add_argument(
        "--layers",
        help="comma-separated hidden layers to read (default: the last three conv/recurrent ones)",
    )
    fit.add_argument(
        "--faithfulness", type=float, help="weight of the faithfulness term (0: plain L2I)"
    )
    fit.add_argument(
        "--gate-epochs",
        type=_count,
        default=0,
        metavar="N",
        help="then train the gate network of 'explain --amortised' for N epochs (about N "
        "refinements of the clips; default: %(default)s, none)",
    )
    fit.add_argument(
        "--separation",
        action="store_true",
        help="also fit a class-block NMF separation that weights the refinement's contrast term "
        "(keeps more of the deciding source of mixtures for a little faithfulness and about "
        "1.2x the explain time; off by default)",
    )
    fit.add_argument(
        "--source-gates",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="then learn, from mixtures of the clips, which components carry the decided "
        "class's source; they weight the refinement's contrast term (keeps more of the deciding "
        "source of mixtures for about 2.5x the interpreter's fit time; before --separation's). "
        "Default: learned when they can be (single-label, clips of two classes or more, no "
        "--separation); --source-gates insists, --no-source-gates leaves them out",
    )
    fit.add_argument("--multilabel", action="store_true", help="sigmoid outputs, one per class")
    fit.add_argument("--random-state", type=int, default=0, help="seed (%(default)s)")
    fit.add_argument("-v", "--verbose", action="count", default=0, help="progress bars (-vv: more)")
    fit.set_defaults(func=_cmd_fit)

    ex = sub.add_parser(
        "explain",
        help="explain audio files or folders to WAVs",
        description="Write NAME_explanation.wav (and NAME_residual.wav) for every clip.",
        epilog="Exit codes: 0 success, 2 usage or input error, 1 unexpected error.",
    )
    _explain_options(ex)
    ex.add_argument("-o", "--out", required=True, help="output folder")
    ex.add_argument("--residuals", action="store_true", help="also write input − explanation")
    ex.set_defaults(func=_cmd_explain)

    rep = sub.add_parser(
        "report",
        help="build a self-contained HTML report of explanations",
        description="One HTML file with audio players, spectrograms, component patterns and "
        "audio, class probabilities and metrics; it fetches nothing.",
        epilog="Exit codes: 0 success, 2 usage or input error, 1 unexpected error.",
    )
    _explain_options(rep)
    rep.add_argument("-o", "--out", default="report.html", help="HTML file (%(default)s)")
    rep.add_argument(
        "--metrics", help="JSON object of metrics to show (default: those saved by fit)"
    )
    rep.add_argument(
        "--max-components",
        type=_positive_int,
        default=5,
        help="patterns and audio of at most this many components per clip (%(default)s)",
    )
    rep.add_argument("--title", default="nmfinterp explanations")
    rep.set_defaults(func=_cmd_report)

    bench = sub.add_parser(
        "bench",
        help="run the benchmark (arguments go to nmfinterp.benchmark)",
        description="Runs nmfinterp.benchmark.main(ARGS): every argument after 'bench', --help "
        "included, goes to the benchmark.",
        epilog="Exit codes: those of the benchmark; 1 if it is not installed.",
    )
    bench.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Examples
    --------
    >>> main(["explain", "no_such_model.joblib", "x.wav", "-o", "out"])
    2
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # everything after it, --help included, is the benchmark's
        args = argparse.Namespace(command="bench", args=argv[1:], func=_cmd_bench)
    else:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
            return int(exc.code or 0)
    try:
        return int(args.func(args))
    except CLIError as exc:
        print(f"nmfinterp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, ValueError) as exc:
        # nmfinterp's own checks raise these with a message meant for the user
        print(f"nmfinterp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"nmfinterp {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(
            f"nmfinterp {args.command}: unexpected error (the traceback above says where); "
            "please report it.",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
