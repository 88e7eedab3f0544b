//! Tests of the GGUF reader as a whole: writer round trips, corrupt files, the real model.

use super::*;
use half::f16;

fn s(x: &str) -> String {
    x.to_string()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One Q4_1 block: d = 1, m = 0, nibbles j for element j (j < 16) and 15 - j after.
fn q4_1_block() -> Vec<u8> {
    let mut b = Vec::with_capacity(20);
    b.extend_from_slice(&f16::from_f32(1.0).to_bits().to_le_bytes());
    b.extend_from_slice(&f16::from_f32(0.0).to_bits().to_le_bytes());
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    b
}

/// A small valid file: a few metadata types and three tensors (F32, Q4_1, F16).
fn tiny() -> Vec<u8> {
    write_gguf(
        &[
            (s("general.architecture"), MetaValue::Str(s("llama"))),
            (s("llama.block_count"), MetaValue::U32(2)),
            (
                s("tokenizer.ggml.tokens"),
                MetaValue::Array(vec![MetaValue::Str(s("a")), MetaValue::Str(s("bc"))]),
            ),
        ],
        &[
            (
                s("norm"),
                vec![3],
                GgmlType::F32,
                f32_bytes(&[1.0, -2.0, 3.5]),
            ),
            (
                s("w"),
                vec![32, 2],
                GgmlType::Q4_1,
                [q4_1_block(), q4_1_block()].concat(),
            ),
            (
                s("h"),
                vec![2],
                GgmlType::F16,
                [f16::from_f32(0.5), f16::from_f32(-4.0)]
                    .iter()
                    .flat_map(|h| h.to_bits().to_le_bytes())
                    .collect(),
            ),
        ],
    )
}

fn open(bytes: Vec<u8>) -> Result<GgufFile> {
    GgufFile::from_bytes("tiny.gguf", bytes)
}

fn err(bytes: Vec<u8>) -> String {
    match open(bytes) {
        Ok(_) => panic!("a corrupt file was accepted"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn every_metadata_type_round_trips_in_v2_and_v3() {
    let values = vec![
        (s("u8"), MetaValue::U8(250)),
        (s("i8"), MetaValue::I8(-7)),
        (s("u16"), MetaValue::U16(65535)),
        (s("i16"), MetaValue::I16(-300)),
        (s("u32"), MetaValue::U32(4_000_000_000)),
        (s("i32"), MetaValue::I32(-2_000_000_000)),
        (s("u64"), MetaValue::U64(u64::MAX)),
        (s("i64"), MetaValue::I64(i64::MIN)),
        (s("f32"), MetaValue::F32(1.0e-5)),
        (s("f64"), MetaValue::F64(-1.5e300)),
        (s("yes"), MetaValue::Bool(true)),
        (s("no"), MetaValue::Bool(false)),
        (s("str"), MetaValue::Str(s("héllo\nworld"))),
        (s("empty"), MetaValue::Str(String::new())),
        (
            s("ints"),
            MetaValue::Array(vec![MetaValue::I32(-1), MetaValue::I32(2)]),
        ),
        (
            s("nested"),
            MetaValue::Array(vec![
                MetaValue::Array(vec![MetaValue::Str(s("x")), MetaValue::Str(s("yz"))]),
                MetaValue::Array(vec![MetaValue::Str(s("w"))]),
            ]),
        ),
        (s("none"), MetaValue::Array(vec![])),
    ];
    for version in [2, 3] {
        let g = open(write_gguf_version(version, &values, &[])).unwrap();
        assert_eq!(g.version(), version);
        assert_eq!(g.metadata().len(), values.len());
        for (k, v) in &values {
            assert_eq!(g.get(k), Some(v), "key {k} in v{version}");
        }
        assert!(g.tensors().is_empty());
    }
}

#[test]
fn tensors_round_trip_with_default_and_custom_alignment() {
    for align in [None, Some(1u32), Some(64), Some(4096)] {
        let mut meta = vec![(s("k"), MetaValue::Str(s("odd length")))];
        if let Some(a) = align {
            meta.push((s("general.alignment"), MetaValue::U32(a)));
        }
        let data_a = f32_bytes(&[1.0, 2.0, 3.0]);
        let data_b = f32_bytes(&[-1.0; 5]);
        let bytes = write_gguf(
            &meta,
            &[
                (s("a"), vec![3], GgmlType::F32, data_a.clone()),
                (s("b"), vec![5, 1], GgmlType::F32, data_b.clone()),
            ],
        );
        let g = open(bytes).unwrap();
        let a = u64::from(align.unwrap_or(32));
        assert_eq!(g.alignment(), a);
        assert_eq!(g.data_start() % a, 0);
        for (name, data) in [("a", &data_a), ("b", &data_b)] {
            let t = g.tensor(name).unwrap();
            assert_eq!(
                (t.offset - g.data_start()) % a,
                0,
                "{name} with alignment {a}"
            );
            assert_eq!(g.tensor_bytes(t), &data[..]);
        }
        assert_eq!(g.tensor("b").unwrap().shape(), vec![1, 5]);
        assert_eq!(g.dequantize(g.tensor("b").unwrap()).unwrap(), vec![-1.0; 5]);
    }
}

#[test]
fn tiny_file_reads_back_and_dequantises() {
    let g = open(tiny()).unwrap();
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 2);
    assert_eq!(
        g.get_str_array("tokenizer.ggml.tokens").unwrap(),
        vec!["a", "bc"]
    );
    let names: Vec<&str> = g.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["norm", "w", "h"]);
    let w = g.tensor("w").unwrap();
    assert_eq!((w.n_elements(), w.n_bytes, w.n_blocks()), (64, 40, 2));
    assert_eq!(
        w.layout,
        BlockLayout {
            block_size: 32,
            block_bytes: 20
        }
    );
    let y = g.dequantize(w).unwrap();
    assert_eq!(y.len(), 64);
    assert_eq!(
        (y[0], y[15], y[16], y[31], y[32]),
        (0.0, 15.0, 15.0, 0.0, 0.0)
    );
    assert_eq!(
        g.dequantize(g.tensor("norm").unwrap()).unwrap(),
        vec![1.0, -2.0, 3.5]
    );
    assert_eq!(
        g.dequantize(g.tensor("h").unwrap()).unwrap(),
        vec![0.5, -4.0]
    );
    assert!(g.tensor("missing").is_none());
}

#[test]
fn typed_getters_name_the_key_and_expected_type() {
    let g = open(write_gguf(
        &[
            (s("neg"), MetaValue::I32(-3)),
            (s("pos"), MetaValue::I16(3)),
            (s("f"), MetaValue::F32(0.25)),
            (s("txt"), MetaValue::Str(s("x"))),
            (s("mixed"), MetaValue::Array(vec![MetaValue::Str(s("a"))])),
            (s("big"), MetaValue::Array(vec![MetaValue::U64(u64::MAX)])),
            (
                s("types"),
                MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(-2)]),
            ),
        ],
        &[],
    ))
    .unwrap();
    assert_eq!(g.get_u64("pos").unwrap(), 3);
    assert_eq!(g.get_f64("f").unwrap(), 0.25);
    assert_eq!(g.get_f64("pos").unwrap(), 3.0);
    assert_eq!(g.get_i64_array("types").unwrap(), vec![1, -2]);
    let cases = [
        (g.get_u64("neg").err(), "metadata key 'neg' is int32 -3, expected a non-negative integer"),
        (g.get_u64("absent").err(), "metadata key 'absent' is missing (expected a non-negative integer)"),
        (g.get_f64("txt").err(), "metadata key 'txt' is string \"x\", expected a number"),
        (g.get_str("f").err(), "metadata key 'f' is float32 0.25, expected a string"),
        (g.get_str_array("txt").err(), "metadata key 'txt' is string \"x\", expected an array of strings"),
        (g.get_i64_array("mixed").err(), "metadata key 'mixed' element 0 is string \"a\", expected an array of integers"),
        (g.get_i64_array("big").err(), "metadata key 'big' element 0 is uint64 18446744073709551615, expected an array of integers"),
        (g.get_str_array("types").err(), "metadata key 'types' element 0 is int32 1, expected an array of strings"),
    ];
    for (e, want) in cases {
        assert_eq!(e.map(|e| e.to_string()).as_deref(), Some(want));
    }
}

#[test]
fn every_truncation_is_an_error_naming_the_file() {
    let full = tiny();
    assert!(open(full.clone()).is_ok());
    for len in 0..full.len() {
        let e = err(full[..len].to_vec());
        assert!(e.starts_with("tiny.gguf: "), "prefix {len}: {e}");
        assert!(!e.contains('\n'), "prefix {len}: {e}");
        assert!(
            e.contains("truncated") || e.contains("too short") || e.contains("only"),
            "prefix {len}: {e}"
        );
    }
}

#[test]
fn random_corruption_never_panics() {
    let full = tiny();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        // xorshift64: a fixed, dependency-free pseudo-random sequence.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut b = full.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        if let Ok(g) = open(b) {
            for t in g.tensors() {
                let _ = g.dequantize(t);
            }
        }
    }
}

/// Builds headers and tables byte by byte, for files the writer cannot produce.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, tensors: u64, kvs: u64) -> Raw {
        Raw(Vec::new())
            .bytes(b"GGUF")
            .u32(version)
            .u64(tensors)
            .u64(kvs)
    }
    fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(self, v: u32) -> Raw {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(self, v: u64) -> Raw {
        self.bytes(&v.to_le_bytes())
    }
    fn str(self, v: &str) -> Raw {
        self.u64(v.len() as u64).bytes(v.as_bytes())
    }
    /// A tensor info: name, dims, type id, relative offset.
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    /// Pads with zeros to `len` bytes.
    fn pad(mut self, len: usize) -> Raw {
        self.0.resize(len.max(self.0.len()), 0);
        self
    }
}

#[test]
fn corrupt_files_are_one_line_errors_naming_the_problem() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "0 bytes is too short for the magic"),
        ("bad magic", b"GGML\x03\0\0\0".to_vec(), "starts with \"GGML\" instead of the magic \"GGUF\""),
        ("version 1", Raw::header(1, 0, 0).0, "GGUF version 1 is not supported"),
        ("version 4", Raw::header(4, 0, 0).0, "unsupported GGUF version 4 (expected 2 or 3)"),
        ("big-endian", Raw::header(3 << 24, 0, 0).0, "big-endian GGUF file"),
        ("huge tensor count", Raw::header(3, 1 << 60, 0).0, "tensor count (1152921504606846976, at least 24 bytes each) cannot fit"),
        ("huge kv count", Raw::header(3, 0, u64::MAX).0, "metadata count (18446744073709551615"),
        (
            "huge string length",
            Raw::header(3, 0, 1).u64(u64::MAX).pad(64).0,
            "key of metadata entry 0 at byte 24 claims 18446744073709551615 bytes but only 32 remain",
        ),
        (
            "huge string value",
            Raw::header(3, 0, 1).str("k").u32(8).u64(1 << 40).pad(80).0,
            "string value of metadata key 'k' at byte 37 claims 1099511627776 bytes",
        ),
        (
            "huge array length",
            Raw::header(3, 0, 1).str("k").u32(9).u32(0).u64(1 << 62).pad(80).0,
            "array length of metadata key 'k' (4611686018427387904, at least 1 bytes each) cannot fit",
        ),
        (
            "huge array of strings",
            Raw::header(3, 0, 1).str("k").u32(9).u32(8).u64(10).pad(100).0,
            "(10, at least 8 bytes each) cannot fit in the 51 bytes left",
        ),
        ("unknown value type", Raw::header(3, 0, 1).str("k").u32(13).pad(64).0, "metadata key 'k' has unknown value type 13"),
        ("unknown array type", Raw::header(3, 0, 1).str("k").u32(9).u32(99).pad(64).0, "array of unknown value type 99"),
        ("bad bool", Raw::header(3, 0, 1).str("k").u32(7).bytes(&[2]).pad(64).0, "bool byte 2"),
        ("bad UTF-8", Raw::header(3, 0, 1).str("k").u32(8).u64(2).bytes(&[0xC3, 0x28]).pad(64).0, "not valid UTF-8"),
        (
            "duplicate key",
            Raw::header(3, 0, 2).str("k").u32(0).bytes(&[1]).str("k").u32(0).bytes(&[2]).pad(64).0,
            "duplicate metadata key 'k'",
        ),
        ("alignment zero", Raw::header(3, 0, 1).str("general.alignment").u32(4).u32(0).pad(64).0, "general.alignment is uint32 0, expected a power of two"),
        ("alignment 48", Raw::header(3, 0, 1).str("general.alignment").u32(4).u32(48).pad(64).0, "general.alignment is uint32 48"),
        ("n_dims 5", Raw::header(3, 1, 0).tensor("t", &[1, 1, 1, 1, 1], 0, 0).pad(128).0, "tensor 't' has 5 dimensions (at most 4 are supported)"),
        ("zero dim", Raw::header(3, 1, 0).tensor("t", &[4, 0], 0, 0).pad(128).0, "tensor 't' has dimension 1 of size 0"),
        (
            "overflowing dims",
            Raw::header(3, 1, 0).tensor("t", &[1 << 32, 1 << 32], 0, 0).pad(128).0,
            "tensor 't' dims [4294967296, 4294967296] overflow a 64-bit element count",
        ),
        (
            "overflowing bytes",
            Raw::header(3, 1, 0).tensor("t", &[1 << 31, 1 << 31, 2], 0, 0).pad(128).0,
            "overflow a 64-bit byte count",
        ),
        ("unknown ggml type", Raw::header(3, 1, 0).tensor("t", &[4], 99, 0).pad(128).0, "tensor 't' has unknown GGML type id 99"),
        ("removed ggml type", Raw::header(3, 1, 0).tensor("t", &[32], 4, 0).pad(128).0, "unknown GGML type id 4"),
        (
            "partial block row",
            Raw::header(3, 1, 0).tensor("t", &[48, 2], 3, 0).pad(256).0,
            "tensor 't' row length 48 is not a multiple of the Q4_1 block size 32",
        ),
        ("misaligned offset", Raw::header(3, 1, 0).tensor("t", &[1], 0, 4).pad(128).0, "tensor 't' data offset 4 is not a multiple of the alignment 32"),
        (
            "data past end",
            Raw::header(3, 1, 0).tensor("blk.0.attn_q.weight", &[576, 576], 3, 0).pad(200).0,
            "tensor 'blk.0.attn_q.weight' data [96..207456) runs past the end of the file (200 bytes)",
        ),
        (
            "offset overflow",
            Raw::header(3, 1, 0).tensor("t", &[8], 0, u64::MAX - 31).pad(128).0,
            "tensor 't' data offset 18446744073709551584 + 32 bytes overflows",
        ),
        (
            "duplicate tensor",
            Raw::header(3, 2, 0).tensor("t", &[1], 0, 0).tensor("t", &[1], 0, 32).pad(256).0,
            "duplicate tensor name 't'",
        ),
        (
            "control chars in a name",
            Raw::header(3, 1, 0).tensor("a\nb", &[1, 1, 1, 1, 1], 0, 0).pad(128).0,
            "tensor 'a\\nb' has 5 dimensions",
        ),
    ];
    for (what, bytes, want) in cases {
        let e = err(bytes);
        assert!(e.starts_with("tiny.gguf: "), "{what}: {e}");
        assert!(
            e.contains(want),
            "{what}: {e}\n  expected it to contain: {want}"
        );
        assert!(!e.contains('\n'), "{what}: {e}");
    }
}

/// Metadata values cost 32 bytes each once parsed, whatever they took in the file; the cap
/// keeps that under 512 MiB.
#[test]
fn parsed_metadata_is_bounded() {
    assert_eq!(std::mem::size_of::<MetaValue>(), 32);
    let slots = MAX_METADATA_VALUES * std::mem::size_of::<MetaValue>() as u64;
    assert!(slots <= 512 << 20, "{slots} bytes");
}

/// One value more than the cap (16 MiB of uint8 in the file, 512 MiB once parsed) is
/// refused before the array is allocated, naming the key.
#[test]
fn huge_uint8_array_is_refused_naming_the_key() {
    let n = MAX_METADATA_VALUES;
    let bytes = Raw::header(3, 0, 1)
        .str("tokenizer.ggml.blob")
        .u32(9) // array
        .u32(0) // of uint8
        .u64(n);
    let len = bytes.0.len() + n as usize;
    let e = err(bytes.pad(len).0);
    assert_eq!(
        e,
        format!(
            "tiny.gguf: corrupt file: metadata key 'tokenizer.ggml.blob': an array of {n} values \
             would exceed the {n} metadata values accepted in a file ({} left)",
            n - 1
        )
    );
}

/// The cap counts every value of the file: keys, array elements and nested arrays'
/// elements, across keys; exactly the cap is accepted.
#[test]
fn metadata_cap_counts_every_value_across_keys() {
    let u8s = |n: u8| MetaValue::Array((0..n).map(MetaValue::U8).collect());
    let nested = MetaValue::Array(vec![u8s(2), u8s(3)]);
    // 'a': 1 + 4, 'n': 1 + 2 + (2 + 3), 'z': 1 = 14 values.
    let file = write_gguf(
        &[
            (s("a"), u8s(4)),
            (s("n"), nested),
            (s("z"), MetaValue::U32(7)),
        ],
        &[],
    );
    let p = parse::parse_with_limit(&file, 14).unwrap();
    assert_eq!(p.metadata.len(), 3);
    let e = parse::parse_with_limit(&file, 13).unwrap_err();
    assert!(
        e.contains("metadata key 'z': one more value would exceed the 13"),
        "{e}"
    );
    let e = parse::parse_with_limit(&file, 10).unwrap_err();
    assert!(e.contains("metadata key 'n': an array of 3 values"), "{e}");
    let e = parse::parse_with_limit(&file, 4).unwrap_err();
    assert!(e.contains("metadata key 'a': an array of 4 values"), "{e}");
}

#[test]
fn deep_array_nesting_is_refused() {
    let mut v = MetaValue::U8(1);
    for _ in 0..20 {
        v = MetaValue::Array(vec![v]);
    }
    let e = err(write_gguf(&[(s("deep"), v)], &[]));
    assert!(
        e.contains("metadata key 'deep' nests arrays more than 8 deep"),
        "{e}"
    );
}

#[test]
fn unsupported_type_names_type_and_tensor() {
    let g = open(write_gguf(
        &[],
        &[(
            s("output.weight"),
            vec![256],
            GgmlType::Other(13),
            vec![0u8; 176],
        )],
    ))
    .unwrap();
    let t = g.tensor("output.weight").unwrap();
    assert_eq!(
        g.tensor_bytes(t).len(),
        176,
        "raw bytes of other types stay readable"
    );
    let e = g.dequantize(t).unwrap_err().to_string();
    assert_eq!(
        e,
        "tiny.gguf: unsupported quantisation type Q5_K in tensor 'output.weight' (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)"
    );
}

#[test]
fn foreign_tensor_info_is_refused_not_read() {
    let g = open(tiny()).unwrap();
    let mut t = g.tensor("norm").unwrap().clone();
    t.offset = u64::MAX - 2;
    assert!(g.tensor_bytes(&t).is_empty());
    let e = g.dequantize(&t).unwrap_err().to_string();
    assert!(
        e.contains("tensor 'norm' does not describe data inside this file"),
        "{e}"
    );
}

#[test]
fn open_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.gguf");
    std::fs::write(&good, tiny()).unwrap();
    let g = GgufFile::open(&good).unwrap();
    assert_eq!(g.file_len(), tiny().len() as u64);
    assert_eq!(
        g.dequantize(g.tensor("norm").unwrap()).unwrap(),
        vec![1.0, -2.0, 3.5]
    );

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = format!("{:#}", GgufFile::open(&empty).unwrap_err());
    assert!(e.contains("empty.gguf"), "{e}");

    let missing = dir.path().join("missing.gguf");
    let e = format!("{:#}", GgufFile::open(&missing).unwrap_err());
    assert!(
        e.contains("cannot open GGUF file") && e.contains("missing.gguf"),
        "{e}"
    );
}

/// The project's default model, when it has been downloaded (`scripts/setup`).
#[test]
#[cfg_attr(
    not(feature = "model-tests"),
    ignore = "needs the default model from scripts/setup (scripts/test turns on model-tests)"
)]
fn real_smollm2_model_reads_and_dequantises() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is absent (run scripts/setup)",
        path.display()
    );
    let g = GgufFile::open(&path).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_u64("llama.embedding_length").unwrap(), 576);
    let vocab = g.get_u64("llama.vocab_size").unwrap();
    assert_eq!(
        g.get_str_array("tokenizer.ggml.tokens").unwrap().len() as u64,
        vocab
    );
    assert_eq!(
        g.get_i64_array("tokenizer.ggml.token_type").unwrap().len() as u64,
        vocab
    );
    assert_eq!(
        g.tensor("token_embd.weight").unwrap().dims,
        vec![576, vocab]
    );
    assert_eq!(g.tensors().len(), 2 + 30 * 9);

    let mut counts = BTreeMap::<&str, usize>::new();
    let mut total = 0u64;
    for t in g.tensors() {
        let y = g.dequantize(t).unwrap();
        assert_eq!(y.len() as u64, t.n_elements(), "{}", t.name);
        assert!(
            y.iter().all(|x| x.is_finite()),
            "{} has non-finite values",
            t.name
        );
        assert!(y.iter().any(|&x| x != 0.0), "{} is all zeros", t.name);
        *counts.entry(t.ggml_type.name()).or_default() += 1;
        total += t.n_elements();
    }
    // RMSNorm weights are F32; llama.cpp keeps the embedding at Q8_0 in Q4_1 files.
    assert_eq!(counts.get("F32"), Some(&61));
    assert_eq!(counts.get("Q8_0"), Some(&1));
    assert_eq!(counts.get("Q4_1"), Some(&210));
    assert!(
        (134_000_000..136_000_000).contains(&total),
        "{total} weights"
    );
    println!("tensor types: {counts:?}, {total} weights");
    for (k, v) in g.metadata() {
        if k.starts_with("llama.") || k.starts_with("tokenizer.") {
            println!("{k}: {}", v.describe());
        }
    }
}
