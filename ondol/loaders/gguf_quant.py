"""GGUF's quantized blocks as ondol's quantized tensors (ondol/quant/formats.py), never as floats.

Each llama.cpp block type maps onto one layout of ondol's, so a quantized file runs on the
quantized kernels with no full-precision copy:

* Q8_0 (blocks of 32: fp16 d, 32 int8)      -> int8, group 32: the same numbers.
* Q4_0 (blocks of 32: fp16 d, 16 nibble bytes) -> int4, group 32, no zeros: the bytes are copied as
  they are (ondol's nibble order is Q4_0's).
* Q6_K (256 = 16 x 16: 6-bit q, int8 scale each, fp16 d) -> int8, group 16 with scale d * sc. The
  values are exact; the product d * sc is rounded to float16 (at most 2^-11 relative).
* Q4_K (256 = 8 x 32: 4-bit q, 6-bit scale and min each, fp16 d and dmin) -> int4, group 32 with
  zeros: W = d*sc*q - dmin*m = scale * (q - 8) + zero with scale = d*sc, zero = 8*d*sc - dmin*m,
  both rounded to float16; the nibbles are reordered.

``raw`` is a tensor's bytes as gguf-py maps them, uint8 [N, bytes per row]; rows are outputs.
"""

from __future__ import annotations

import numpy as np
import torch
from gguf import GGMLQuantizationType as QType

from ondol.errors import ModelFormatError
from ondol.quant.formats import BLOCK, QuantTensor, by_rows, pack_int4

QK_K = 256
BLOCK_BYTES = {QType.Q8_0: (32, 34), QType.Q4_0: (32, 18), QType.Q6_K: (QK_K, 210), QType.Q4_K: (QK_K, 144)}
QUANTIZED = tuple(BLOCK_BYTES)


def quant_tensor(raw: np.ndarray, qtype: QType, shape: tuple[int, ...], name: str) -> QuantTensor:
    if len(shape) != 2:
        raise ModelFormatError(f"Quantized tensor {name} has shape {shape}; only matrices are quantized.")
    n, k = shape
    values, nbytes = BLOCK_BYTES[qtype]
    if k % values or raw.shape != (n, k // values * nbytes):
        raise ModelFormatError(f"Tensor {name}: {qtype.name} data of shape {raw.shape} does not fit {shape}.")
    blocks = raw.reshape(n, k // values, nbytes)
    if qtype == QType.Q8_0:
        scales = _f16(blocks[..., :2])
        q = torch.from_numpy(np.ascontiguousarray(blocks[..., 2:]).view(np.int8).reshape(n, k))
        return QuantTensor(8, 32, q, scales)
    if qtype == QType.Q4_0:
        scales = _f16(blocks[..., :2])
        q = torch.from_numpy(np.ascontiguousarray(blocks[..., 2:]).reshape(n, k // 2))
        return QuantTensor(4, 32, q, scales)
    convert = _q6_k if qtype == QType.Q6_K else _q4_k
    # row slices: the unpacking makes byte-per-value temporaries, ~0.3 GB each for a 128k-row table
    return by_rows(lambda i, j: convert(blocks[i:j], j - i, k), n)


def _f16(two_bytes: np.ndarray) -> torch.Tensor:
    """[..., 2] uint8 -> float16 [...]"""
    return torch.from_numpy(np.ascontiguousarray(two_bytes).view(np.float16)[..., 0])


def _q6_k(blocks: np.ndarray, n: int, k: int) -> QuantTensor:
    nb = k // QK_K
    b = blocks.reshape(n * nb, 210)
    ql, qh, sc, d = b[:, :128], b[:, 128:192], b[:, 192:208].view(np.int8), b[:, 208:210]
    # As llama.cpp's dequantize_row_q6_K: two halves of 128; in each, ql's low then high nibbles
    # give four runs of 32 values, and qh's bit pairs 0-1, 2-3, 4-5, 6-7 their top two bits.
    low = (ql.reshape(-1, 2, 1, 64) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)) & 0x0F
    low = low.reshape(-1, 2, 4, 32)  # [blocks, half, run, 32]
    high = (qh.reshape(-1, 2, 1, 32) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 0x03
    q = (low | (high << 4)).astype(np.int8) - np.int8(32)  # [blocks, 2, 4, 32] = 256 values in order
    dd = d.copy().view(np.float16).astype(np.float32)  # [blocks, 1]
    scales = (dd * sc.astype(np.float32)).astype(np.float16)  # [blocks, 16]: one per 16 values
    return QuantTensor(8, 16, torch.from_numpy(q.reshape(n, k)), torch.from_numpy(scales.reshape(n, k // 16)))


def _q4_k(blocks: np.ndarray, n: int, k: int) -> QuantTensor:
    nb = k // QK_K
    b = blocks.reshape(n * nb, 144)
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32)  # [blocks, 1]
    dmin = b[:, 2:4].copy().view(np.float16).astype(np.float32)
    packed, qs = b[:, 4:16].reshape(-1, 3, 4), b[:, 16:]
    # 6-bit scales and mins of the 8 sub-blocks, as gguf-py's Q4_K.get_scale_min unpacks them
    lo, mid, top = packed[:, 0], packed[:, 1], packed[:, 2]
    sc = np.concatenate([lo & 0x3F, (top & 0x0F) | ((lo >> 2) & 0x30)], axis=-1).astype(np.float32)
    mins = np.concatenate([mid & 0x3F, (top >> 4) | ((mid >> 2) & 0x30)], axis=-1).astype(np.float32)
    scale = d * sc  # [blocks, 8]
    scales = scale.astype(np.float16)
    zeros = (8 * scales.astype(np.float32) - dmin * mins).astype(np.float16)
    # qs: four runs of 32 bytes; each run's low nibbles are sub-block 2j, its high nibbles 2j + 1.
    runs = qs.reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
    q = (runs & 0x0F).reshape(n, k)  # values 0..15 in order
    return QuantTensor(4, BLOCK, pack_int4(torch.from_numpy(np.ascontiguousarray(q))),
                       torch.from_numpy(scales.reshape(n, k // 32)), torch.from_numpy(zeros.reshape(n, k // 32)))
