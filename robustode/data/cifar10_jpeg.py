"""The CIFAR-10 JPEG copy: all 60,000 images re-encoded at quality 75, as one tar.

It is lossy, so its accuracies run a few points below real CIFAR-10: records
carry kind "jpeg-copy" so that the two are never mixed in one table.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .catalog import DATA_ENV, data_root, datasets
from .imagefolder import load_imagefolder
from .types import DataSet

ARCHIVE = "cifar10-jpeg.tar.gz"
_REPO = Path(__file__).resolve().parents[2]


@datasets.register("cifar10-jpeg")
def cifar10_jpeg(*, data_dir: Path | None = None, download: bool = True) -> DataSet:
    """CIFAR-10 (JPEG copy, quality 75): found in the data dir, $ROBUSTODE_DATA or a shared/data folder."""
    data_dir = data_root(data_dir)
    places = candidate_dirs(data_dir)
    for folder in places:
        if (folder / ARCHIVE).is_file():
            return load_imagefolder(folder / ARCHIVE, data_dir / "cache", name="cifar10-jpeg", kind="jpeg-copy")
    raise DataError(f"the CIFAR-10 JPEG copy {ARCHIVE} was not found; looked in "
                    f"{', '.join(map(str, places))}; put it in one of them, or pass --data-dir or set "
                    f"{DATA_ENV} to the folder that holds it")


def candidate_dirs(data_dir: Path) -> list[Path]:
    """The folders searched, in order: the data dir, $ROBUSTODE_DATA, then shared/data
    beside the current directory or the robustode checkout or any folder above them."""
    places = [data_dir]
    if os.environ.get(DATA_ENV):
        places.append(Path(os.environ[DATA_ENV]).expanduser())
    for start in (Path.cwd(), _REPO):
        places += [folder / "shared" / "data" for folder in (start, *start.parents)]
    return list(dict.fromkeys(p.absolute() for p in places))
