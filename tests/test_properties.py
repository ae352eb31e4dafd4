"""Property-based tests (hypothesis) for the invariants every explanation must keep."""

import warnings
from functools import lru_cache

import numpy as np
import torch
from _small import small_pipe, small_setup
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nmfinterp import NMFDictionary, SpectrogramTransformer, explain
from nmfinterp.explain import masked_spectrum, relevance, select_components, soft_mask

finite = st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(130, 700)), elements=finite),
    st.sampled_from([(64, 16), (128, 32), (128, 64)]),
)
def test_stft_istft_round_trip_keeps_length_and_signal(x, fft_hop):
    n_fft, hop = fft_hop
    spec = SpectrogramTransformer(n_fft=n_fft, hop_length=hop).fit(x)
    S = spec.stft(x)
    back = spec.istft(S, x.shape[1])
    assert back.shape == x.shape
    np.testing.assert_allclose(back, x, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(2, 12), st.integers(1, 6)),
        elements=st.floats(0, 5, width=32),
    ),
    arrays(
        np.float32,
        st.tuples(st.just(1), st.integers(1, 6), st.integers(1, 9)),
        elements=st.floats(0, 5, width=32),
    ),
    st.integers(0, 2**31 - 1),
)
def test_masks_stay_in_unit_interval_and_never_amplify(W, H, seed):
    K = min(W.shape[1], H.shape[1])
    W, H = torch.as_tensor(W[:, :K]), torch.as_tensor(H[:, :K])
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(1, K, generator=g)
    M = soft_mask(W, H, weights)
    assert M.shape == (1, W.shape[0], H.shape[2])
    assert (M >= 0).all() and (M <= 1).all()
    S = torch.randn(1, W.shape[0], H.shape[2], dtype=torch.complex64, generator=g)
    for domain in ("linear", "log"):
        assert (masked_spectrum(S, M, domain).abs() <= S.abs() * (1 + 1e-5) + 1e-6).all()


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float32, (3, 7), elements=st.floats(0, 10, width=32)),
    arrays(np.float32, (4, 7), elements=st.floats(-3, 3, width=32)),
    st.integers(0, 3),
    st.booleans(),
    st.one_of(st.none(), st.integers(1, 7)),
    st.floats(0, 1),
)
def test_relevance_and_selection_invariants(z, theta, c, centered, top_k, threshold):
    r = relevance(torch.as_tensor(z), torch.as_tensor(theta), torch.full((3,), c), centered)
    assert torch.isfinite(r).all() and (r <= 1 + 1e-5).all()
    keep = select_components(r, top_k, threshold)
    assert (r[keep] > threshold).all()
    if top_k is not None:
        assert (keep.sum(1) <= top_k).all()


# ---------------------------------------------------------------- whole explanations
@lru_cache(maxsize=1)
def _fitted():
    clf, X, y, _ = small_setup()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Hann with hop = n_fft / 4: its square overlap-adds to a constant, the condition for
        # the energy bound (SpectrogramTransformer.apply_mask)
        pipe = small_pipe(clf, epochs=2)
        return pipe.set_params(spectrogramtransformer__hop_length=64).fit(X, y)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(129, 6000), st.floats(0, 4), st.floats(-0.5, 0.5)),
        min_size=1,
        max_size=3,
    ),
    st.integers(0, 2**31 - 1),
    st.one_of(st.none(), st.integers(0, 3)),
    st.one_of(st.none(), st.integers(1, 6)),
    st.floats(-1, 1),
    st.sampled_from(["linear", "log"]),
)
def test_explanations_keep_length_bounded_masks_and_never_add_energy(
    clips, seed, cls, top_k, threshold, domain
):
    rng = np.random.default_rng(seed)
    X = [(gain * rng.standard_normal(n) + offset).astype(np.float32) for n, gain, offset in clips]
    ex = explain(_fitted(), X, classes=cls, top_k=top_k, threshold=threshold, mask_domain=domain)
    for x, w, r, m in zip(X, ex.waveforms, ex.residuals, ex.masks, strict=True):
        assert len(w) == len(x) and w.dtype == np.float32 and np.isfinite(w).all()
        assert m.min() >= 0 and m.max() <= 1
        energy_in = float(np.sum(x.astype(np.float64) ** 2))
        assert float(np.sum(w.astype(np.float64) ** 2)) <= energy_in * (1 + 1e-4) + 1e-6
        np.testing.assert_allclose(w + r, x, atol=1e-5 * (1 + np.abs(x).max()))


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 30), st.just(5)), elements=st.floats(0, 3)),
    st.integers(0, 2**31 - 1),
)
def test_dictionary_transform_inverse_round_trip(H, seed):
    """Spectra made of the dictionary's own patterns come back through transform/inverse."""
    d = _dictionary()
    V = H @ d.components_
    back = d.inverse_transform(d.transform(V))
    assert back.shape == V.shape
    np.testing.assert_allclose(back, V, atol=1e-3 * (1 + np.abs(V).max()))


@lru_cache(maxsize=1)
def _dictionary():
    rng = np.random.default_rng(0)
    spectra = rng.random((200, 5)) @ rng.random((5, 40))
    return NMFDictionary(n_components=5, max_iter=1000, tol=1e-10, random_state=0).fit(spectra)
