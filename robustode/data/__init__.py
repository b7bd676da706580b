"""Data sets as uint8 tensors, and a loader that keeps them on the device.

    data = load_dataset("cifar10-jpeg")          # or "cifar10", "imagefolder:PATH", "synthetic"
    loader = DeviceLoader(data.train, 512, "cuda", augment=True)
    for x, y in loader: ...                      # x float in [0, 1], NCHW
"""

from . import cifar10_jpeg, imagefolder, synthetic, torchvision_sets  # noqa: F401  (they register)
from .catalog import data_root, datasets, load_dataset
from .loader import DeviceLoader
from .synthetic import make_synthetic
from .types import DataSet, Split

__all__ = ["DataSet", "DeviceLoader", "Split", "data_root", "datasets", "load_dataset", "make_synthetic"]
