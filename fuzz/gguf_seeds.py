#!/usr/bin/env python3
"""Writes small valid GGUF files as a seed corpus for the `gguf` fuzz target.

    python3 fuzz/gguf_seeds.py OUT_DIR

Tensor data is the raw blocks of tests/fixtures/gguf/<type>.bin (the dequantisation test
vectors), so every block type the reader dequantises appears with realistic bytes. The
layout matches src/model/gguf/writer.rs: GGUF v3 (or v2), little-endian, tensor data
aligned to `general.alignment` (32 when absent). Standard library only.
"""

import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "gguf"

# name: (GGML type id, elements per block, bytes per block)
TYPES = {
    "f32": (0, 1, 4),
    "f16": (1, 1, 2),
    "q4_0": (2, 32, 18),
    "q4_1": (3, 32, 20),
    "q8_0": (8, 32, 34),
    "q4_k": (12, 256, 144),
    "q6_k": (14, 256, 210),
    "bf16": (30, 1, 2),
}
Q5_K = (13, 256, 176)  # a known type the reader range-checks but does not dequantise

# GGUF value type ids
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


def gstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def value(ty: int, v) -> bytes:
    if ty == STR:
        return gstr(v)
    if ty == ARR:
        elem, items = v
        return struct.pack("<IQ", elem, len(items)) + b"".join(value(elem, x) for x in items)
    return struct.pack(SCALAR[ty], v)


def gguf(metadata, tensors, version=3) -> bytes:
    """metadata: [(key, type, value)]; tensors: [(name, dims, type id, data bytes)]."""
    align = next((v for k, t, v in metadata if k == "general.alignment"), 32)
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata)))
    for key, ty, v in metadata:
        out += gstr(key) + struct.pack("<I", ty) + value(ty, v)
    offset, offsets = 0, []
    for name, dims, tid, data in tensors:
        offset = -(-offset // align) * align
        offsets.append(offset)
        out += gstr(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", tid, offset)
        offset += len(data)
    start = -(-len(out) // align) * align
    out += bytes(start - len(out))
    for (_, _, _, data), off in zip(tensors, offsets):
        out += bytes(start + off - len(out)) + data
    return bytes(out)


def blocks(name: str, n: int) -> bytes:
    _, _, bb = TYPES[name]
    data = (FIXTURES / f"{name}.bin").read_bytes()
    return data[: n * bb]


def tensor(name: str, n_blocks: int, rows: int = 1):
    """A tensor of `n_blocks` fixture blocks shaped [n_blocks / rows * block, rows]."""
    tid, bs, _ = TYPES[name]
    row = n_blocks // rows * bs
    dims = [row] if rows == 1 else [row, rows]
    return (f"blk.0.{name}.weight", dims, tid, blocks(name, n_blocks))


LLAMA = [
    ("general.architecture", STR, "llama"),
    ("general.name", STR, "fuzz-seed"),
    ("llama.context_length", U32, 2048),
    ("llama.embedding_length", U32, 64),
    ("llama.block_count", U32, 1),
    ("llama.attention.head_count", U32, 4),
    ("llama.attention.head_count_kv", U32, 2),
    ("llama.rope.freq_base", F32, 10000.0),
    ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
    ("tokenizer.ggml.model", STR, "llama"),
    ("tokenizer.ggml.tokens", ARR, (STR, ["<unk>", "<s>", "</s>", "a", "b"])),
    ("tokenizer.ggml.scores", ARR, (F32, [0.0, 0.0, 0.0, -1.0, -2.0])),
    ("tokenizer.ggml.token_type", ARR, (I32, [2, 3, 3, 1, 1])),
    ("tokenizer.ggml.bos_token_id", U32, 1),
]

EVERY_VALUE_TYPE = [
    ("u8", U8, 200), ("i8", I8, -100), ("u16", U16, 60000), ("i16", I16, -30000),
    ("u32", U32, 4000000000), ("i32", I32, -2000000000), ("f32", F32, 1.5),
    ("bool", BOOL, True), ("str", STR, "hé\nllo"), ("u64", U64, 2**63), ("i64", I64, -2**62),
    ("f64", F64, -0.25), ("empty", ARR, (U8, [])),
    ("nested", ARR, (ARR, [(U16, [1, 2]), (U16, [3])])),
    ("strings", ARR, (STR, ["", "x", "yz"])),
    ("bools", ARR, (BOOL, [True, False])),
]


def seeds():
    # One file per dequantised type, with llama metadata.
    for name, (_, bs, _) in TYPES.items():
        rows = 2 if bs == 1 else 1
        n = 32 if bs == 1 else 2
        yield f"{name}.gguf", gguf(LLAMA, [tensor(name, n, rows)])
    # Every supported type in one file, one block each.
    every = [tensor(n, 1) for n in TYPES]
    every = [(f"t{i}.{t[0]}", t[1], t[2], t[3]) for i, t in enumerate(every)]
    yield "all_types.gguf", gguf(LLAMA, every)
    # Every metadata value type, no tensors; v2 header; larger alignment; 3-D and 4-D
    # shapes; a type that is range-checked but not dequantised.
    yield "values.gguf", gguf(EVERY_VALUE_TYPE, [])
    yield "v2.gguf", gguf(LLAMA[:3], [tensor("q8_0", 1)], version=2)
    yield "align64.gguf", gguf(
        [("general.alignment", U32, 64)],
        [("a", [4, 2], 1, blocks("f16", 8)), ("b", [32], 2, blocks("q4_0", 1))],
    )
    f32 = blocks("f32", 24)
    yield "dims.gguf", gguf([], [("a", [2, 3, 4], 0, f32[: 24 * 4]), ("b", [2, 2, 2, 2], 0, f32[: 16 * 4])])
    yield "q5_k.gguf", gguf([], [("q5k", [256], Q5_K[0], bytes(Q5_K[2]))])
    yield "empty.gguf", gguf([], [])


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds():
        (out / name).write_bytes(data)


if __name__ == "__main__":
    main()
