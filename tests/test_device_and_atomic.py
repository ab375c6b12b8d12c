"""neurosim.config.check_device (the one device check) and neurosim.atomic's temporaries."""

from __future__ import annotations

import pytest
import torch

from neurosim.atomic import atomic_path, is_temporary, remove_stale_temporaries
from neurosim.config import check_device


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_check_device_accepts_cpu(device):
    assert check_device(device) == "cpu"


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "mps", 0, None])
def test_check_device_names_the_argument_and_what_is_allowed(device):
    with pytest.raises(ValueError) as err:
        check_device(device, "--device")
    assert str(err.value) == (
        f"--device must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index); got {device!r}"
    )


def test_check_device_syntax_only_accepts_cuda_anywhere():
    assert check_device("cuda:3", available=False) == "cuda:3"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_check_device_refuses_cuda_without_a_gpu():
    with pytest.raises(ValueError, match=r"^device is 'cuda' but torch .* sees no CUDA GPU here"):
        check_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_check_device_refuses_a_gpu_index_out_of_range():
    n = torch.cuda.device_count()
    assert check_device(f"cuda:{n - 1}") == f"cuda:{n - 1}"
    with pytest.raises(ValueError, match=f"torch sees {n} GPU"):
        check_device(f"cuda:{n}")


def test_atomic_path_removes_its_temporary_on_keyboard_interrupt(tmp_path):
    target = tmp_path / "fig.png"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"")
        assert is_temporary(tmp)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_temporaries_removes_only_atomic_temporaries(tmp_path):
    stale = [tmp_path / ".transfer_accuracy.k2_x9abc.tmp.png", tmp_path / ".results.abcdefgh.tmp"]
    kept = [tmp_path / "results.nc", tmp_path / ".hidden", tmp_path / "notes.tmp.txt"]
    for path in (*stale, *kept):
        path.write_bytes(b"")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temporaries(tmp_path / "missing") == []
