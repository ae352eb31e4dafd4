"""A tiny classifier and pipeline shared by the scale/robustness/persistence tests (seconds, CPU)."""

from functools import lru_cache

from sklearn.pipeline import make_pipeline

from nmfinterp import InterpreterEstimator, NMFDictionary, SpectrogramTransformer
from nmfinterp.classifiers import LogMelCNN, predict_logits, train_classifier
from nmfinterp.datasets import make_synthetic_sounds

SR = 8000
LAYERS = ["blocks.0", "blocks.1"]


@lru_cache(maxsize=1)
def small_setup():
    """(classifier, train waveforms, train logits, test waveforms): 4 classes, 0.5 s at 8 kHz."""
    ds = make_synthetic_sounds(n_per_class=6, sr=SR, duration=0.5, random_state=0)
    train, test = ds.subset(ds.folds != 5), ds.subset(ds.folds == 5)
    clf = LogMelCNN(
        ds.n_classes, sr=SR, n_fft=256, hop_length=128, n_mels=32, channels=(4, 8), random_state=0
    )
    clf = train_classifier(clf, train.waveforms, train.labels, epochs=3, random_state=0)
    return clf, train.waveforms, predict_logits(clf, train.waveforms), test.waveforms


def small_pipe(clf, *, k=6, **interp):
    kw = dict(
        layers=LAYERS,
        hidden=8,
        epochs=3,
        batch_size=8,
        faithfulness_epochs=1,
        random_state=0,
    )
    kw.update(interp)
    return make_pipeline(
        SpectrogramTransformer(sr=SR, n_fft=256, hop_length=128),
        NMFDictionary(n_components=k, max_iter=50, random_state=0),
        InterpreterEstimator(clf, **kw),
    )
