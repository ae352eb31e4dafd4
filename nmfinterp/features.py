"""What travels between the steps of an nmfinterp ``Pipeline``.

The interpreter at the end of a pipeline needs, for each clip, three things that are made by different
steps: the waveform (to run the classifier and read its hidden layers), the log-spectrogram V (the
target of the reconstruction loss) and the dictionary W (learned by the step before it). A scikit-learn
``Pipeline`` passes one array from step to step, so the per-clip parts travel as columns of that array
and the per-data-set parts (the fitted spectrogram step, the fitted dictionary) travel as attributes of
it: :class:`AudioFeatures` is a plain ``numpy.ndarray`` (rows = clips, so ``y`` stays aligned and
cross-validation splits clips) that also remembers which columns hold what.
"""

from __future__ import annotations

import numpy as np


class AudioFeatures(np.ndarray):
    """2-D float32 array of clips whose columns are named blocks, plus the fitted steps that made them.

    Columns are ``[log-spectrogram (F*T) | waveform (n_samples) | activations (K*T), if any]``.
    In a pipeline :class:`~nmfinterp.NMFDictionary` only attaches itself (``dictionary``): NMF's own
    activations are not stored, the interpreter never reads them. ``block("activations")`` solves
    them on demand (the dictionary's ``clip_activations``) when the block is absent.

    Attributes
    ----------
    blocks : dict
        Block name -> ``(start, stop, shape)`` of its columns, ``shape`` being one row's shape.
    spectrogram : SpectrogramTransformer
        The fitted step that made the spectrogram block.
    dictionary : NMFDictionary or None
        The fitted dictionary, once an :class:`~nmfinterp.NMFDictionary` has transformed the data.
    """

    def __new__(cls, data, blocks, spectrogram, dictionary=None):
        obj = np.asarray(data, dtype=np.float32).view(cls)
        obj.blocks = dict(blocks)
        obj.spectrogram = spectrogram
        obj.dictionary = dictionary
        return obj

    def __array_finalize__(self, obj):
        self.blocks = getattr(obj, "blocks", {})
        self.spectrogram = getattr(obj, "spectrogram", None)
        self.dictionary = getattr(obj, "dictionary", None)

    def __reduce__(self):  # keep the attributes through pickling (Pipeline(memory=...), joblib)
        reconstruct, args, state = super().__reduce__()
        return reconstruct, args, (state, self.blocks, self.spectrogram, self.dictionary)

    def __setstate__(self, state):
        nd_state, self.blocks, self.spectrogram, self.dictionary = state
        super().__setstate__(nd_state)

    def block(self, name: str) -> np.ndarray:
        """Return one block as a plain array of shape ``(n_clips, *shape)``.

        ``"activations"`` absent but a dictionary attached: NMF's activations are solved now.
        """
        if name == "activations" and name not in self.blocks and self.dictionary is not None:
            return self.dictionary.clip_activations(self)
        if name not in self.blocks:
            raise KeyError(
                f"these features have no {name!r} block; they have {sorted(self.blocks)}."
            )
        start, stop, shape = self.blocks[name]
        if self.ndim != 2 or self.shape[1] < stop:
            raise ValueError(
                "these AudioFeatures were sliced across columns; keep whole rows (X[rows]) "
                "so the blocks stay intact."
            )
        return np.asarray(self)[:, start:stop].reshape((self.shape[0], *shape))

    def with_block(self, name: str, values: np.ndarray, *, dictionary=None) -> AudioFeatures:
        """Return new features with ``values`` (n_clips, ...) appended as block ``name``."""
        values = np.asarray(values, dtype=np.float32)
        base = np.asarray(self)
        blocks = {k: v for k, v in self.blocks.items() if k != name}
        if name in self.blocks:  # replace: drop the old columns (always the last block we append)
            start, _, _ = self.blocks[name]
            base = base[:, :start]
        start = base.shape[1]
        blocks[name] = (start, start + int(np.prod(values.shape[1:])), values.shape[1:])
        data = np.hstack([base, values.reshape(len(values), -1)])
        return AudioFeatures(data, blocks, self.spectrogram, dictionary or self.dictionary)


def is_audio_features(X) -> bool:
    """True when ``X`` came out of a :class:`~nmfinterp.SpectrogramTransformer`."""
    return isinstance(X, AudioFeatures) and "spectrogram" in X.blocks and X.spectrogram is not None
