"""DeviceLoader: batching, reproducible epochs, resumption, and the batched crop + flip."""

import pytest
import torch
import torch.nn.functional as F

from robustode.data import DeviceLoader, Split
from robustode.data.loader import PAD, crop_flip
from robustode.errors import ConfigError


def numbered_split(n=10, height=6, width=7, seed=0) -> Split:
    """Random uint8 images whose label is their index, so a batch says where it came from."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, height, width), generator=gen, dtype=torch.uint8)
    return Split(images, torch.arange(n))


def epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_unshuffled_batches_are_the_images_scaled_to_unit_range():
    split = numbered_split()
    loader = DeviceLoader(split, 4, "cpu", shuffle=False)
    batches = epoch(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2] and len(loader) == 3
    x = torch.cat([x for x, _ in batches])
    assert x.dtype == torch.float32 and torch.equal(x, split.images.float() / 255)
    assert torch.equal(torch.cat([y for _, y in batches]), split.labels)
    assert loader.images.dtype == torch.uint8 and loader.labels.dtype == torch.int64


def test_every_example_appears_exactly_once_per_epoch():
    loader = DeviceLoader(numbered_split(23), 5, "cpu", augment=True)
    for _ in range(3):
        seen = torch.cat([y for _, y in loader])
        assert torch.equal(seen.sort().values, torch.arange(23))


def test_drop_last_drops_the_remainder():
    loader = DeviceLoader(numbered_split(10), 4, "cpu", drop_last=True)
    batches = epoch(loader)
    assert len(loader) == 2 and [len(y) for _, y in batches] == [4, 4]
    assert len(set(torch.cat([y for _, y in batches]).tolist())) == 8


def test_same_seed_same_batches_and_epochs_differ():
    a = DeviceLoader(numbered_split(), 4, "cpu", augment=True, seed=7)
    b = DeviceLoader(numbered_split(), 4, "cpu", augment=True, seed=7)
    first_a, first_b = epoch(a), epoch(b)
    assert same_batches(first_a, first_b)
    second_a = epoch(a)
    assert same_batches(second_a, epoch(b))
    assert not torch.equal(torch.cat([y for _, y in first_a]), torch.cat([y for _, y in second_a]))
    other = epoch(DeviceLoader(numbered_split(), 4, "cpu", augment=True, seed=8))
    assert not same_batches(first_a, other)


def test_iter_starts_the_next_epoch_at_once():
    loader = DeviceLoader(numbered_split(), 4, "cpu")
    assert loader.state_dict()["epoch"] == 0
    iter(loader)
    assert loader.state_dict()["epoch"] == 1
    next(iter(loader))  # an abandoned epoch still counts
    assert loader.state_dict()["epoch"] == 2


def test_state_dict_round_trip_reproduces_the_next_epoch():
    loader = DeviceLoader(numbered_split(), 3, "cpu", augment=True, seed=3)
    epoch(loader)
    state = loader.state_dict()
    expected = epoch(loader)
    resumed = DeviceLoader(numbered_split(), 3, "cpu", augment=True, seed=3)
    resumed.load_state_dict(state)
    assert same_batches(epoch(resumed), expected)
    assert resumed.state_dict() == loader.state_dict() == {"epoch": 2, "seed": 3}


def test_channels_last_batches():
    x, _ = next(iter(DeviceLoader(numbered_split(), 4, "cpu", channels_last=True, augment=True)))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert x.shape == (4, 3, 6, 7)


def padded_windows(image):
    """All crops (and their mirror images) of a zero-padded image, as (dy, dx, flipped) -> window."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (PAD,) * 4)
    windows = {}
    for dy in range(2 * PAD + 1):
        for dx in range(2 * PAD + 1):
            window = padded[:, dy:dy + height, dx:dx + width]
            windows[dy, dx, False], windows[dy, dx, True] = window, window.flip(-1)
    return windows


def test_augmented_batches_are_shifted_or_mirrored_crops_of_their_source():
    split = numbered_split(40)
    loader = DeviceLoader(split, 16, "cpu", augment=True, seed=1)
    found = []
    for x, y in loader:
        assert x.shape[1:] == (3, 6, 7) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        for image, label in zip(x, y):
            windows = padded_windows(split.images[label])
            matches = [k for k, w in windows.items() if torch.equal((image * 255).round().to(torch.uint8), w)]
            assert matches, f"batch image {label} is no crop of its source"
            found.append(matches[0])
    assert len({(dy, dx) for dy, dx, _ in found}) > 10  # the offsets do vary
    assert {flipped for _, _, flipped in found} == {False, True}


def test_crop_flip_exactly():
    images = numbered_split(3).images
    padded = F.pad(images, (PAD,) * 4)
    shifts = torch.tensor([[0, 8], [4, 4], [3, 1]])
    out = crop_flip(images, shifts, torch.tensor([False, True, False]))
    assert torch.equal(out[0], padded[0, :, 0:6, 8:15])  # top-right corner of the padded image
    assert torch.equal(out[1], images[1].flip(-1))  # no shift, mirrored
    assert torch.equal(out[2], padded[2, :, 3:9, 1:8])
    assert torch.equal(out[0, :, :4, :], torch.zeros(3, 4, 7, dtype=torch.uint8))  # zero padding shows
    same = crop_flip(images, torch.full((3, 2), PAD), torch.zeros(3, dtype=torch.bool))
    assert torch.equal(same, images)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"seed": -1}, "seed"),
    ({"batch_size": 11, "drop_last": True}, "no batch would ever be produced"),
    ({"device": "tpu7"}, "unknown device"),
])
def test_bad_settings_are_one_line_errors(kwargs, match):
    settings = {"batch_size": 4, "device": "cpu", **kwargs}
    with pytest.raises(ConfigError, match=match):
        DeviceLoader(numbered_split(), settings.pop("batch_size"), settings.pop("device"), **settings)


def test_float_images_are_refused():
    split = numbered_split()
    with pytest.raises(ConfigError, match="uint8 NCHW"):
        DeviceLoader(Split(split.images.float(), split.labels), 4, "cpu")
