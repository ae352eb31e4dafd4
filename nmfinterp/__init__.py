"""nmfinterp: listenable explanations of audio classifiers with NMF (Listen to Interpret), scikit-learn style.

Waveform -> :class:`SpectrogramTransformer` -> :class:`NMFDictionary` -> :class:`InterpreterEstimator`,
then :func:`explain` turns a decision into audio.
"""

from .dictionary import NMFDictionary
from .explain import Explanations, explain, write_wavs
from .features import AudioFeatures
from .interpreter import L2I_TRAINING, InterpreterEstimator
from .persistence import load, save
from .spectrogram import SpectrogramTransformer

__all__ = [
    "AudioFeatures",
    "Explanations",
    "InterpreterEstimator",
    "L2I_TRAINING",
    "NMFDictionary",
    "SpectrogramTransformer",
    "explain",
    "load",
    "save",
    "write_wavs",
]
__version__ = "0.1.0"
