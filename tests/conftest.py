"""Test-session settings shared by every test module."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op torch thread for the whole session (restored afterwards).

    The tests use tiny tensors; on a busy 2-core CI machine oversubscribed intra-op threads
    spin-wait and make small ops 10-30x slower, while one thread loses nothing.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
