"""Test-session guards shared by every test module."""

import warnings

import pytest
import torch

_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _torch_threads_restored(request):
    """Every test starts with the session's torch thread count, and one that changes it is named.

    Training results depend (in the last float bits, then in where training goes) on the number of
    threads; a test that leaves it changed would change the fits of the tests after it.
    """
    if torch.get_num_threads() != _THREADS:
        torch.set_num_threads(_THREADS)
    yield
    if torch.get_num_threads() != _THREADS:
        warnings.warn(
            f"{request.node.nodeid} left torch at {torch.get_num_threads()} threads "
            f"(session: {_THREADS}); restored.",
            stacklevel=1,
        )
        torch.set_num_threads(_THREADS)
