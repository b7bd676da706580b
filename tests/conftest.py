"""Fixtures shared across the test files. Keep them small and generic."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR10_JPEG = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty data directory, also set as $ROBUSTODE_DATA, so no test touches ~/.cache."""
    path = tmp_path / "robustode-data"
    path.mkdir()
    monkeypatch.setenv("ROBUSTODE_DATA", str(path))
    return path


@pytest.fixture(scope="session")
def cifar10_jpeg_tar() -> Path:
    """The shared CIFAR-10 JPEG copy (../shared/data from the repo), or skip."""
    if not CIFAR10_JPEG.is_file():
        pytest.skip(f"the CIFAR-10 JPEG copy is not at {CIFAR10_JPEG}")
    return CIFAR10_JPEG


@pytest.fixture(scope="session")
def tiny_synthetic():
    """A 100 / 50 image synthetic DataSet (10 classes, 32x32); do not modify it."""
    from robustode.data import make_synthetic

    return make_synthetic(100, 50, seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: on a shared, loaded 2-core machine OpenMP threads
    spin against each other over tiny tensors. Use with pytest.mark.usefixtures("one_thread")."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
