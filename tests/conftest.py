"""Test-session guards shared by every test module."""

import warnings

import pytest
import torch

_THREADS = torch.get_num_threads()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Every test (and the fixtures it sets up) starts with the session's torch thread count.

    Training results depend (in the last float bits, then in where training goes) on the number of
    threads; a test or fixture teardown that left it changed would change the fits of the tests after
    it. This runs before any fixture of the test is set up, module-scoped ones included.
    """
    if torch.get_num_threads() != _THREADS:
        warnings.warn(
            f"torch was left at {torch.get_num_threads()} threads before {item.nodeid} "
            f"(session: {_THREADS}); restored.",
            stacklevel=1,
        )
        torch.set_num_threads(_THREADS)
