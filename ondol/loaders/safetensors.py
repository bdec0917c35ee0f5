"""Reading .safetensors files through one private memory map.

A tensor already in the runtime dtype is a zero-copy view of the map: the model's weights are the
file's pages, with no second copy. A tensor that needs converting is converted, and the source range
is then dropped from memory (madvise DONTNEED), so loading an fp32 file as bf16 peaks near the bf16
size instead of fp32 + bf16. The ``safetensors`` package offers no way to release those pages,
hence this small reader; the header is validated before anything is mapped, so a corrupt or
truncated file is a clear ModelFormatError, never a crash.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path

import torch

from ondol.errors import ModelFormatError

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_HEADER = 100 * 1024 * 1024
PAGE = mmap.PAGESIZE


class SafetensorsFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelFormatError(f"{path.name} is truncated: it is {size} bytes, too short for a safetensors header.")
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER or 8 + n > size:
                raise ModelFormatError(f"{path.name} is not a valid safetensors file (header length {n} for a {size}-byte file).")
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ModelFormatError(f"{path.name} has a corrupt safetensors header: {e}.") from None
        if not isinstance(header, dict):
            raise ModelFormatError(f"{path.name} has a corrupt safetensors header.")
        header.pop("__metadata__", None)
        self.data_start = 8 + n
        data_size = size - self.data_start
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        for name, e in header.items():
            try:
                dtype = DTYPES[e["dtype"]]
                shape = tuple(int(d) for d in e["shape"])
                begin, end = (int(o) for o in e["data_offsets"])
            except KeyError as err:
                if isinstance(e, dict) and e.get("dtype") not in DTYPES:
                    raise ModelFormatError(f"{path.name}: tensor {name!r} has unsupported dtype {e.get('dtype')!r}.") from None
                raise ModelFormatError(f"{path.name}: tensor {name!r} lacks {err}.") from None
            except (TypeError, ValueError):
                raise ModelFormatError(f"{path.name}: tensor {name!r} has a malformed entry.") from None
            numel = 1
            for d in shape:
                numel *= d
            if min(shape, default=0) < 0 or not 0 <= begin <= end or end - begin != numel * dtype.itemsize:
                raise ModelFormatError(f"{path.name}: tensor {name!r} has inconsistent shape and offsets.")
            if end > data_size:
                raise ModelFormatError(
                    f"{path.name} is truncated: tensor {name!r} ends at byte {end} of the data, "
                    f"but the file holds only {data_size} bytes of data."
                )
            self.entries[name] = (dtype, shape, begin, end)
        self._map = None
        if size > self.data_start:
            with open(path, "rb") as f:
                # ACCESS_COPY: a private mapping, so the file can never be written through it.
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)

    def keys(self) -> list[str]:
        return list(self.entries)

    def nbytes(self, name: str) -> int:
        _, _, begin, end = self.entries[name]
        return end - begin

    def tensor(self, name: str) -> torch.Tensor:
        """A zero-copy view of the tensor (its pages are read from disk on first touch)."""
        dtype, shape, begin, end = self.entries[name]
        if end == begin:
            return torch.empty(shape, dtype=dtype)
        offset = self.data_start + begin
        if offset % dtype.itemsize:  # misaligned data cannot be viewed in place
            return torch.frombuffer(bytearray(self._map[offset : offset + end - begin]), dtype=dtype).reshape(shape)
        return torch.frombuffer(self._map, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=offset).reshape(shape)

    def quantized(self, name: str) -> None:
        return None  # an ondol quantized folder stores its parts as tensors of their own

    def release(self, name: str) -> None:
        """Drop the tensor's pages from memory once a converted copy exists.

        Only whole pages inside the range are dropped. Pages of a private mapping that were never
        written are re-read from the file if touched again, so this never changes any data.
        """
        if self._map is None:
            return
        _, _, begin, end = self.entries[name]
        start = -(-(self.data_start + begin) // PAGE) * PAGE
        stop = (self.data_start + end) // PAGE * PAGE
        if stop > start:
            self._map.madvise(mmap.MADV_DONTNEED, start, stop - start)


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a HF folder, from the shard index if there is one."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ModelFormatError(f"{index.name} is not a valid shard index.") from None
        files = [folder / f for f in dict.fromkeys(weight_map.values())]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise ModelFormatError(f"{index.name} names shard files that are missing: {', '.join(missing)}.")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pth", ".pt", ".ckpt"))
    if pickles:
        raise ModelFormatError(
            f"{folder} has only pickle weights ({', '.join(pickles[:3])}); ondol never unpickles model files. "
            "Convert them to safetensors first."
        )
    raise ModelFormatError(f"{folder} has a config.json but no *.safetensors weights.")


def folder_nbytes(folder: Path) -> int:
    return sum(os.path.getsize(f) for f in weight_files(folder))
