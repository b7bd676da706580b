"""The arrays of an extra data set on disk: ``.npy`` files and the members of ``.npz`` archives, read
without loading them: memory-mapped (a ``.npy``, or an uncompressed ``.npz`` member, as the released
generated sets are) or streamed in chunks (any member, compressed ones included).
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local file header (30 bytes)
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class ArrayRef:
    """Where one array lies: a ``.npy`` file, or member ``member`` of a ``.npz`` archive."""

    path: Path
    member: str | None = None  # "image.npy" inside an .npz; None for a .npy file

    def __str__(self) -> str:
        return f"{self.path}:{self.member[:-4]}" if self.member else str(self.path)


@dataclass(frozen=True)
class Header:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int  # of the first data byte in the file (memory-mappable) or in the member's stream


def _read_header(stream, where: str) -> tuple[tuple, np.dtype, bool, int]:
    start = stream.tell() if hasattr(stream, "tell") else 0
    try:
        version = np.lib.format.read_magic(stream)
        read = HEADER_READERS.get(version)
        if read is None:
            raise ValueError(f"format version {version[0]}.{version[1]}")
        shape, fortran, dtype = read(stream)
    except ValueError as err:
        raise DataError(f"{where} is not a .npy array ({err})") from None
    return tuple(shape), np.dtype(dtype), bool(fortran), stream.tell() - start


def header(ref: ArrayRef) -> Header:
    """The array's shape and dtype, read from its header alone."""
    if ref.member is None:
        with open(ref.path, "rb") as f:
            shape, dtype, fortran, size = _read_header(f, str(ref))
        return Header(shape, dtype, fortran, size)
    with zipfile.ZipFile(ref.path) as archive, archive.open(ref.member) as f:
        shape, dtype, fortran, size = _read_header(f, str(ref))
        return Header(shape, dtype, fortran, size)


def members(path: Path) -> list[str]:
    """The arrays of an .npz archive, by name ("image", "label")."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    except zipfile.BadZipFile:
        raise DataError(f"{path} is not an .npz archive (truncated, or another format)") from None


def data_bytes(h: Header) -> int:
    return int(np.prod(h.shape, dtype=np.int64)) * h.dtype.itemsize


def memmap(ref: ArrayRef) -> np.ndarray:
    """The array, memory-mapped read-only; a file shorter than its header says is refused."""
    h = header(ref)
    start = h.offset
    if ref.member is not None:
        with zipfile.ZipFile(ref.path) as archive:
            info = archive.getinfo(ref.member)
        if info.compress_type != zipfile.ZIP_STORED:
            raise DataError(f"{ref} is compressed and cannot be memory-mapped; convert it first: "
                            f"robustode data convert {ref.path} OUT/")
        start += _member_start(ref.path, info)
    need, have = start + data_bytes(h), ref.path.stat().st_size
    if have < need:
        raise DataError(f"{ref} is truncated: its header says {h.shape} {h.dtype} ({need} bytes with the "
                        f"header), the file holds {have}")
    return np.memmap(ref.path, dtype=h.dtype, mode="r", offset=start, shape=h.shape,
                     order="F" if h.fortran else "C")


def _member_start(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored member's data: after its local header, name and extra field."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        fields = LOCAL_HEADER.unpack(f.read(LOCAL_HEADER.size))
    return info.header_offset + LOCAL_HEADER.size + fields[10] + fields[11]


def chunks(ref: ArrayRef, rows: int) -> Iterator[np.ndarray]:
    """The array in consecutive blocks of at most ``rows`` rows, never more in memory (compressed
    members included); a stream that ends early raises DataError."""
    with ExitStack() as stack:
        if ref.member is None:
            f = stack.enter_context(open(ref.path, "rb"))
        else:
            f = stack.enter_context(stack.enter_context(zipfile.ZipFile(ref.path)).open(ref.member))
        shape, dtype, _, _ = _read_header(f, str(ref))
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        for first in range(0, shape[0], rows):
            n = min(rows, shape[0] - first)
            raw = f.read(n * row)
            if len(raw) < n * row:
                raise DataError(f"{ref} is truncated: it ends inside row {first + len(raw) // row} of {shape[0]}")
            yield np.frombuffer(raw, dtype=dtype).reshape((n, *shape[1:]))
