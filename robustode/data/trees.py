"""Read-only views of a file tree, either a directory or a tar archive, by relative POSIX path."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zlib
from pathlib import Path

from ..errors import DataError

# Archives are decompressed in memory once: member-by-member reads of a .tar.gz
# through tarfile cost more than decoding the images themselves.
_DECOMPRESS = {b"\x1f\x8b": gzip.decompress, b"BZh": bz2.decompress, b"\xfd7zXZ\x00": lzma.decompress}


def open_tree(path: Path) -> DirTree | TarTree:
    """A directory or a (possibly compressed) tar archive; a clear DataError for anything else."""
    if not path.exists():
        raise DataError(f"image folder path {path} does not exist")
    if path.is_dir():
        return DirTree(path)
    if tarfile.is_tarfile(path):
        return TarTree(path)
    raise DataError(f"{path} is neither a directory nor a .tar/.tar.gz archive")


class DirTree:
    def __init__(self, root: Path):
        self.origin = str(root)
        self.root = root
        self.files: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns)
        self.dirs: set[str] = set()
        for folder, subdirs, names in os.walk(root):
            rel = Path(folder).relative_to(root).as_posix()
            prefix = "" if rel == "." else rel + "/"
            self.dirs.update(prefix + d for d in subdirs)
            for name in names:
                st = os.stat(os.path.join(folder, name))
                self.files[prefix + name] = (st.st_size, st.st_mtime_ns)

    def key(self) -> list:
        """Changes whenever a file is added, removed, resized or touched."""
        return ["dir", str(self.root.resolve()), sorted(self.files.items()), sorted(self.dirs)]

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()


class TarTree:
    def __init__(self, path: Path):
        self.origin = str(path)
        self.path = path
        self._raw = b""
        self._spans: dict[str, tuple[int, int]] = {}  # relative path -> (offset, size) in _raw
        self._dirs: set[str] = set()
        self._indexed = False

    def key(self) -> list:
        """Path, size and modification time: enough to notice a replaced archive without reading it."""
        st = self.path.stat()
        return ["tar", str(self.path.resolve()), st.st_size, st.st_mtime_ns]

    # Indexed lazily: a cache hit needs only key(), not the archive's contents.
    @property
    def files(self) -> dict[str, tuple[int, int]]:
        self._index()
        return self._spans

    @property
    def dirs(self) -> set[str]:
        self._index()
        return self._dirs

    def read(self, rel: str) -> bytes:
        offset, size = self.files[rel]
        return self._raw[offset:offset + size]

    def _index(self) -> None:
        if self._indexed:
            return
        try:
            raw = self.path.read_bytes()
            decompress = next((f for magic, f in _DECOMPRESS.items() if raw.startswith(magic)), None)
            self._raw = decompress(raw) if decompress else raw
            with tarfile.open(fileobj=io.BytesIO(self._raw), mode="r:") as archive:
                members = archive.getmembers()
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, tarfile.TarError) as err:
            raise DataError(f"cannot read the archive {self.path}: {err}") from err
        for member in members:
            rel = _clean(member.name)
            if not rel:
                continue
            if member.isdir():
                self._dirs.add(rel)
            elif member.isfile():
                self._spans[rel] = (member.offset_data, member.size)
        # Archives need not list directories separately: every file implies its parents.
        for rel in self._spans:
            parts = rel.split("/")[:-1]
            self._dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        self._indexed = True


def _clean(name: str) -> str:
    """``./a//b/`` -> ``a/b``: tar tools spell the same member in several ways."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))
