#!/usr/bin/env python3
"""Writes the dequantisation test vectors under tests/fixtures/gguf/.

For each GGML type the Rust reader supports, it writes a few seeded random blocks
(`<type>.bin`, raw block bytes as stored in a GGUF file) and the f32 values that the
`gguf` Python package (llama.cpp's gguf-py) gives for them with `gguf.quants.dequantize`
(`<type>.f32`, little-endian f32). The Rust tests in src/model/gguf/dequant.rs compare
their own dequantisation with these values bit for bit, so the reader is checked against
an independent implementation.

Run it by hand, from the repository root, in a throw-away virtual environment:

    python3 -m venv ../venv-gguf
    ../venv-gguf/bin/pip install gguf numpy
    ../venv-gguf/bin/python scripts/make_gguf_vectors.py

The output is deterministic for a given `gguf` version (the seed is fixed); the files
are small (a few KB each) and are committed.
"""

from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gguf"
SEED = 20250207


def f16_bytes(values: np.ndarray) -> np.ndarray:
    """Finite f16 scales as raw bytes, shape (n, 2)."""
    return values.astype(np.float16).view(np.uint8).reshape(-1, 2)


def quant_blocks(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    """Random block bytes whose f16 scale fields hold finite values (so no NaN/inf)."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    scale = lambda: f16_bytes(rng.normal(0.0, 0.05, size=n_blocks))  # noqa: E731
    if qtype in (T.Q4_0, T.Q8_0):
        blocks[:, 0:2] = scale()  # d
    elif qtype in (T.Q4_1, T.Q4_K):
        blocks[:, 0:2] = scale()  # d
        blocks[:, 2:4] = scale()  # m (Q4_1) or dmin (Q4_K)
    elif qtype == T.Q6_K:
        blocks[:, type_size - 2 : type_size] = scale()  # d is the last field
    else:
        raise ValueError(qtype)
    return blocks


def float_bytes(rng: np.random.Generator, qtype: T) -> np.ndarray:
    """Random values of a float type, plus its special values (zeros, inf, NaN, subnormals)."""
    if qtype == T.F32:
        v = rng.normal(0.0, 10.0, size=60).astype(np.float32)
        special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -3e-39, 3.4e38], np.float32)
        return np.concatenate([v, special]).view(np.uint8)
    if qtype == T.F16:
        v = rng.normal(0.0, 10.0, size=112).astype(np.float16).view(np.uint16)
        special = np.array(
            [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x0001, 0x83FF,
             0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x3C00, 0xBC00, 0x3555, 0x5640],
            np.uint16,
        )
        return np.concatenate([v, special]).view(np.uint8)
    if qtype == T.BF16:
        v = rng.integers(0, 1 << 16, size=112, dtype=np.uint16)
        special = np.array(
            [0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x0001, 0x807F,
             0x3F80, 0xBF80, 0x4049, 0x7F7F, 0xFF7F, 0x0080, 0x3E80, 0x4120],
            np.uint16,
        )
        return np.concatenate([v, special]).view(np.uint8)
    raise ValueError(qtype)


def main() -> None:
    rng = np.random.default_rng(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    cases = [
        (T.F32, None),
        (T.F16, None),
        (T.BF16, None),
        (T.Q8_0, 8),
        (T.Q4_0, 8),
        (T.Q4_1, 8),
        (T.Q4_K, 4),
        (T.Q6_K, 4),
    ]
    for qtype, n_blocks in cases:
        if n_blocks is None:
            raw = float_bytes(rng, qtype)
        else:
            raw = quant_blocks(rng, qtype, n_blocks).reshape(-1)
        values = np.asarray(dequantize(raw, qtype), dtype=np.float32).reshape(-1)
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        assert raw.size // type_size * block_size == values.size, qtype.name
        stem = qtype.name.lower()
        (OUT / f"{stem}.bin").write_bytes(raw.tobytes())
        (OUT / f"{stem}.f32").write_bytes(values.astype("<f4").tobytes())
        print(f"{stem}: {raw.size} bytes -> {values.size} values")


if __name__ == "__main__":
    main()
