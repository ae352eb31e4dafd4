"""Save and load fitted nmfinterp models without executing code from the file.

:func:`save` writes one `safetensors <https://huggingface.co/docs/safetensors>`_ file: every array
and weight is a tensor, and the configuration (estimator parameters, fitted scalars, which estimator
uses which) is JSON in the file's metadata, with a format name and version. :func:`load` reads the
JSON, builds only the estimator classes of nmfinterp it knows by name, and fills them with the
tensors: nothing in the file can run code, unlike a pickle (``joblib.load`` of an untrusted file can).

The classifier being explained is the user's model and is not saved. Its fingerprint (class, shapes
of its parameters, a hash of its weights) is, and :func:`load` checks the classifier it is given
against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from ._validation import user_stacklevel
from .dictionary import NMFDictionary
from .gates import GateNet
from .interpreter import InterpreterEstimator, InterpreterNet
from .separation import ClassNMFSeparation
from .spectrogram import SpectrogramTransformer

FORMAT = "nmfinterp"
FORMAT_VERSION = 1
_CLASSES = {
    c.__name__: c
    for c in (SpectrogramTransformer, NMFDictionary, InterpreterEstimator, ClassNMFSeparation)
}
_CALLABLE_PARAMS = ("classifier_input", "classifier_output")
#: parameters added after files of this format were first written, with the value that gives
#: what a file without them holds (whatever today's default is)
_ADDED_PARAMS = {
    "InterpreterEstimator": {
        "feature_components": None,
        "temperature": 1.0,
        "separation": False,
        "source_gates": False,
        "fidelity_weight": 1.0,
    }
}


# ---------------------------------------------------------------- classifier fingerprint
def classifier_fingerprint(classifier: torch.nn.Module) -> dict:
    """Class, parameter count, tensor shapes and a SHA-256 of the weights of a torch classifier.

    Examples
    --------
    >>> fp = classifier_fingerprint(torch.nn.Linear(3, 2))
    >>> fp["class"], fp["n_parameters"], fp["shapes"]["weight"]
    ('torch.nn.modules.linear.Linear', 8, [2, 3])
    """
    if not isinstance(classifier, torch.nn.Module):
        raise TypeError(
            f"classifier is a {type(classifier).__name__}; expected the torch.nn.Module the "
            "interpreter explains."
        )
    digest = hashlib.sha256()
    shapes = {}
    for name, t in sorted(classifier.state_dict().items()):
        shapes[name] = list(t.shape)
        t = t.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{shapes[name]};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    kind = type(classifier)
    return {
        "class": f"{kind.__module__}.{kind.__qualname__}",
        "n_parameters": int(sum(p.numel() for p in classifier.parameters())),
        "shapes": shapes,
        "sha256": digest.hexdigest(),
    }


def _check_classifier(classifier, expected: dict, path) -> None:
    got = classifier_fingerprint(classifier)
    if got["class"] != expected["class"] or got["shapes"] != expected["shapes"]:
        differ = sorted(
            k
            for k in got["shapes"].keys() | expected["shapes"].keys()
            if got["shapes"].get(k) != expected["shapes"].get(k)
        )
        raise ValueError(
            f"{path} explains a {expected['class']} with {expected['n_parameters']} parameters; "
            f"the classifier given is a {got['class']} with {got['n_parameters']} parameters"
            + (f" (tensors that differ: {differ[:5]})" if differ else "")
            + ". Pass the classifier the interpreter was trained on."
        )
    if got["sha256"] != expected["sha256"]:
        warnings.warn(
            f"the classifier given to load has the architecture saved in {path} but other weights "
            "(or batch-norm statistics): the interpreter was trained on another state of it, so "
            "its explanations may not hold for this one.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


# ---------------------------------------------------------------- encoding
class _Writer:
    def __init__(self):
        self.nodes: list[dict] = []
        self.ids: dict[int, int] = {}
        self.tensors: dict[str, torch.Tensor] = {}
        self.classifiers: list[dict] = []

    def node(self, est) -> int:
        if id(est) in self.ids:
            return self.ids[id(est)]
        name = type(est).__name__
        if _CLASSES.get(name) is not type(est):
            raise TypeError(
                f"save handles nmfinterp's own estimators ({sorted(_CLASSES)}) and pipelines of them; "
                f"got {type(est).__module__}.{type(est).__qualname__}. Use joblib.dump for other "
                "estimators (and load such files only from trusted sources)."
            )
        index = len(self.nodes)
        self.ids[id(est)] = index
        node: dict = {"class": name, "params": {}, "fitted": {}}
        self.nodes.append(node)
        for key, value in est.get_params(deep=False).items():
            node["params"][key] = self.param(est, key, value)
        for key, value in vars(est).items():
            if key.endswith("_") and not key.startswith("_"):
                node["fitted"][key] = self.fitted(index, key, value)
        return index

    def param(self, est, key, value):
        if key == "classifier":
            if value is None:
                return None
            fp = classifier_fingerprint(value)
            self.classifiers.append(fp)
            return {"__classifier__": fp}
        if key in _CALLABLE_PARAMS and value is not None:
            kind = getattr(value, "__qualname__", type(value).__qualname__)
            module = getattr(value, "__module__", type(value).__module__)
            return {"__callable__": f"{module}.{kind}"}
        if isinstance(value, BaseEstimator):
            return {"__estimator__": self.node(value)}
        if isinstance(value, torch.device):
            return str(value)
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        try:
            return _json_value(value)
        except TypeError:
            raise TypeError(
                f"{type(est).__name__}.{key}={value!r} cannot be saved as JSON; expected numbers, "
                "strings, booleans, None, or lists or dicts of them (e.g. an int random_state, not a "
                "RandomState). Use joblib.dump for such a model."
            ) from None

    def fitted(self, index, key, value):
        if isinstance(value, BaseEstimator):
            return {"__estimator__": self.node(value)}
        if isinstance(value, InterpreterNet | GateNet):
            prefix = f"{index}/{key}/"
            for name, t in value.state_dict().items():
                self.tensors[prefix + name] = t.detach().cpu().contiguous().clone()
            if isinstance(value, GateNet):
                return {
                    "__gates__": prefix,
                    "hidden": value.hidden,
                    "width": value.width,
                    "bottleneck": value.bottleneck,
                    "context_channels": value.context_channels,
                }
            return {"__module__": prefix}
        if isinstance(value, np.ndarray) and value.dtype != object:
            name = f"{index}/{key}"
            self.tensors[name] = torch.from_numpy(np.ascontiguousarray(value).copy())
            return {"__array__": name}
        if isinstance(value, torch.Tensor):
            name = f"{index}/{key}"
            self.tensors[name] = value.detach().cpu().contiguous().clone()
            return {"__tensor__": name}
        try:
            return _json_value(value)
        except TypeError:
            raise TypeError(
                f"fitted attribute {key} of {self.nodes[index]['class']} ({type(value).__name__}) "
                "has no safe encoding; use joblib.dump."
            ) from None


def _json_value(value):
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, tuple):
        return {"__tuple__": [_json_value(v) for v in value]}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype == object:
        return {"__object_array__": [_json_value(v) for v in value.tolist()]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _json_value(v) for k, v in value.items()}}
    if isinstance(value, dict) and all(isinstance(k, Integral) for k in value):
        # e.g. fidelity_weight's {first epoch: weight}: JSON keys are strings, so as pairs
        return {"__int_dict__": [[int(k), _json_value(v)] for k, v in value.items()]}
    raise TypeError(type(value).__name__)


def save(model, path) -> Path:
    """Save a fitted pipeline (or one nmfinterp estimator) to ``path`` without pickling.

    Weights and arrays go to a safetensors file, configuration to JSON inside it. The classifier
    is not saved (pass it to :func:`load`); ``classifier_input``/``classifier_output`` functions
    are not saved either, only their names, and must be passed to :func:`load` again. The file is
    written to a temporary name and renamed, so a crash never leaves half a file under ``path``.

    Parameters
    ----------
    model : Pipeline or SpectrogramTransformer, NMFDictionary, InterpreterEstimator
    path : str or path-like
        Conventionally ``*.safetensors``.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from nmfinterp import NMFDictionary
    >>> d = NMFDictionary(n_components=3, random_state=0).fit(np.random.default_rng(0).random((30, 8)))
    >>> p = save(d, os.path.join(tempfile.mkdtemp(), "d.safetensors"))
    >>> np.array_equal(load(p).dictionary_, d.dictionary_)
    True
    """
    from safetensors.torch import save_file

    from . import __version__

    writer = _Writer()
    if isinstance(model, Pipeline):
        steps = []
        for name, step in model.steps:
            if step is None or step == "passthrough":
                raise TypeError(
                    f"pipeline step {name!r} is {step!r}; save handles pipelines whose steps are "
                    "all nmfinterp estimators."
                )
            steps.append([name, writer.node(step)])
        memory = model.memory if isinstance(model.memory, str | type(None)) else None
        root = {"pipeline": {"steps": steps, "memory": memory, "verbose": bool(model.verbose)}}
    else:
        root = {"estimator": writer.node(model)}
    config = {"nodes": writer.nodes, **root}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "nmfinterp_version": __version__,
        "config": json.dumps(config, allow_nan=True),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(writer.tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------- decoding
def _read(path):
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iteration)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(
            f"{path} is not an nmfinterp save: it is not a safetensors file ({exc}). Files made "
            "with joblib.dump are read with joblib.load (only from sources you trust)."
        ) from None
    return meta, tensors


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _decode(v) for k, v in value["__dict__"].items()}
        if "__int_dict__" in value:
            return {int(k): _decode(v) for k, v in value["__int_dict__"]}
        if "__object_array__" in value:
            items = _decode(value["__object_array__"])
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out
        raise ValueError(f"unknown value {sorted(value)} in the file's configuration")
    return value


def load(path, classifier=None, *, classifier_input=None, classifier_output=None):
    """Load what :func:`save` wrote; nothing from the file is executed.

    Parameters
    ----------
    path : str or path-like
    classifier : torch.nn.Module or None
        The classifier the interpreter explains (required when the save holds an
        :class:`~nmfinterp.InterpreterEstimator` trained with one). It is checked against the
        saved fingerprint: another class or other tensor shapes raise ``ValueError``; the same
        architecture with other weights warns.
    classifier_input, classifier_output : callable or None
        The functions given to the interpreter at training time, when it had any (their names
        are in the file; their code is not).

    Returns
    -------
    The pipeline or estimator that was saved, fitted as it was, on the CPU.

    Raises
    ------
    ValueError
        The file is not an nmfinterp save, was written by an incompatible format version, or does
        not match the classifier given.
    """
    meta, tensors = _read(path)
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is a safetensors file but not an nmfinterp save (its metadata has no "
            f"format={FORMAT!r}); load it with the library that wrote it."
        )
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        version = None
    if version != FORMAT_VERSION:
        from . import __version__

        raise ValueError(
            f"{path} was written in nmfinterp save format version {meta.get('format_version')!r} "
            f"(by nmfinterp {meta.get('nmfinterp_version', '?')}); this nmfinterp ({__version__}) "
            f"reads format version {FORMAT_VERSION} only. Load it with the nmfinterp version that "
            "wrote it (and re-save), or re-fit the model."
        )
    config = json.loads(meta["config"])
    nodes = config["nodes"]
    built: dict[int, BaseEstimator] = {}
    given = {"classifier_input": classifier_input, "classifier_output": classifier_output}

    def build(index: int):
        if index in built:
            return built[index]
        node = nodes[index]
        cls = _CLASSES.get(node["class"])
        if cls is None:
            raise ValueError(
                f"{path} names an estimator class {node['class']!r} this nmfinterp does not know; "
                f"expected one of {sorted(_CLASSES)}."
            )
        params = dict(_ADDED_PARAMS.get(node["class"], {}))
        for key, value in node["params"].items():
            if isinstance(value, dict) and "__estimator__" in value:
                params[key] = build(value["__estimator__"])
            elif isinstance(value, dict) and "__classifier__" in value:
                if classifier is None:
                    raise ValueError(
                        f"{path} holds an interpreter of a {value['__classifier__']['class']}; the "
                        "classifier is not saved with it: pass it, load(path, classifier=model)."
                    )
                _check_classifier(classifier, value["__classifier__"], path)
                params[key] = classifier
            elif isinstance(value, dict) and "__callable__" in value:
                if given[key] is None:
                    raise ValueError(
                        f"the interpreter in {path} was trained with {key}="
                        f"{value['__callable__']}; code is not saved: pass it again, "
                        f"load(path, classifier=..., {key}=...)."
                    )
                params[key] = given[key]
            else:
                params[key] = _decode(value)
        est = cls(**params)
        built[index] = est
        for key, value in node["fitted"].items():
            if isinstance(value, dict) and "__estimator__" in value:
                setattr(est, key, build(value["__estimator__"]))
            elif isinstance(value, dict) and "__module__" in value:
                setattr(est, key, _module(est, value["__module__"], tensors, path))
            elif isinstance(value, dict) and "__gates__" in value:
                setattr(est, key, _gates(est, value, tensors, path))
            elif isinstance(value, dict) and "__array__" in value:
                setattr(est, key, tensors[value["__array__"]].numpy())
            elif isinstance(value, dict) and "__tensor__" in value:
                setattr(est, key, tensors[value["__tensor__"]])
            else:
                setattr(est, key, _decode(value))
        return est

    if "pipeline" in config:
        spec = config["pipeline"]
        return Pipeline(
            [(name, build(i)) for name, i in spec["steps"]],
            memory=spec["memory"],
            verbose=spec["verbose"],
        )
    return build(config["estimator"])


def _load_state(net, prefix, tensors, path, what: str):
    """``net`` with the saved tensors under ``prefix``, in eval mode."""
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path}: {what}'s saved weights do not fit its shape: {exc}") from None
    return net.eval()


def _module(est, prefix, tensors, path) -> InterpreterNet:
    net = InterpreterNet(
        est.layer_channels_,
        est.n_components_,
        len(est.classes_),
        est.hidden,
        est.pooling,
        est.feature_components,
    )
    net = _load_state(net, prefix, tensors, path, "the interpreter")
    if est.classifier is not None:
        from .hooks import resolve_layers

        resolve_layers(est.classifier, est.layers_)
    return net


def _gates(est, spec: dict, tensors, path) -> GateNet:
    # files saved before the 1x1 mixing layer existed have no "bottleneck": their network had none;
    # files saved before the hidden representation was an input have no "context_channels"
    net = GateNet(
        est.n_components_,
        spec["hidden"],
        spec["width"],
        spec.get("bottleneck", False),
        spec.get("context_channels", 0),
    )
    return _load_state(net, spec["__gates__"], tensors, path, "the gate network")
