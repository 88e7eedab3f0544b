//! Parses a GGUF v2/v3 header, metadata and tensor-info table from bytes, checking every
//! count, length and range against the bytes that are there before allocating.
//!
//! Layout (GGUF spec, llama.cpp `docs/gguf.md`): magic `GGUF`, u32 version, u64 tensor
//! count, u64 metadata count, then the metadata entries (string key, u32 value type,
//! value), then the tensor infos (string name, u32 n_dims, u64 dims, u32 GGML type, u64
//! offset relative to the data section), then padding to `general.alignment` (default 32)
//! and the data section. Strings are a u64 byte length and UTF-8 bytes. All little-endian.

use super::types::{value_type as vt, GgmlType, MetaValue, TensorInfo};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;

/// The magic bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent (GGUF spec).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays inside arrays accepted, so that a corrupt file cannot recurse
/// without bound.
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// Most metadata values (array elements included, at any depth) read from one file. A
/// parsed value takes `size_of::<MetaValue>()` = 32 bytes however few bytes it took in the
/// file (1 for a uint8), so without a cap a 100 MB array of uint8 would take 3.2 GB. This
/// bounds those slots to 512 MiB (string bytes are copied one for one, so bounded by the
/// file). Real models hold far fewer: SmolLM2's 49 152 tokens and 48 900 merges, Llama 3's
/// 128 256 tokens and 280 147 merges, Gemma's 256 000 tokens with scores and types.
pub const MAX_METADATA_VALUES: u64 = 1 << 24;
/// Fewest bytes a metadata entry takes: empty key (8), type (4), one-byte value (1).
const MIN_KV_BYTES: u64 = 13;
/// Fewest bytes a tensor info takes: empty name (8), n_dims (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 24;

/// Everything before the data section, validated against the file length.
#[derive(Debug)]
pub struct Parsed {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section (aligned).
    pub data_start: u64,
}

/// A read that ran past the end: where it started, how much it needed, how much was left.
#[derive(Clone, Copy)]
struct Short {
    at: usize,
    need: u64,
    left: usize,
}

impl Short {
    fn reading(self, what: impl Display) -> String {
        format!(
            "truncated file: {what} at byte {} needs {} bytes but only {} remain",
            self.at, self.need, self.left
        )
    }
}

/// A bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Short> {
        let short = Short {
            at: self.pos,
            need: n,
            left: self.left(),
        };
        let n = usize::try_from(n).map_err(|_| short)?;
        let end = self.pos.checked_add(n).ok_or(short)?;
        let bytes = self.buf.get(self.pos..end).ok_or(short)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let b = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Short> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, Short> {
        self.array().map(u64::from_le_bytes)
    }

    /// A GGUF string; `what` names it in errors (a closure so that it is only formatted
    /// on failure).
    fn string<W: Display>(&mut self, what: impl Fn() -> W) -> Result<String, String> {
        let at = self.pos;
        let len = self
            .u64()
            .map_err(|s| s.reading(format!("length of {}", what())))?;
        if len > self.left() as u64 {
            return Err(format!(
                "truncated or corrupt file: {} at byte {at} claims {len} bytes but only {} remain",
                what(),
                self.left()
            ));
        }
        let bytes = self.take(len).map_err(|s| s.reading(what()))?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("corrupt file: {} at byte {at} is not valid UTF-8", what()))
    }

    /// Refuses `count` items of at least `min_size` bytes each when the rest of the file
    /// cannot hold them; returns the count as a usize that is safe to preallocate.
    fn fits(&self, count: u64, min_size: u64, what: impl Fn() -> String) -> Result<usize, String> {
        let left = self.left() as u64;
        match count.checked_mul(min_size) {
            Some(n) if n <= left => usize::try_from(count).map_err(|_| what()),
            _ => Err(format!(
                "truncated or corrupt file: {} ({count}, at least {min_size} bytes each) cannot fit in the {left} bytes left after byte {}",
                what(),
                self.pos
            )),
        }
    }
}

/// Parses and validates everything but the tensor data itself.
pub fn parse(buf: &[u8]) -> Result<Parsed, String> {
    parse_with_limit(buf, MAX_METADATA_VALUES)
}

/// [`parse`] accepting at most `max_values` metadata values (tests use small limits).
pub(super) fn parse_with_limit(buf: &[u8], max_values: u64) -> Result<Parsed, String> {
    let mut c = Cursor { buf, pos: 0 };
    let mut budget = Budget {
        left: max_values,
        max: max_values,
    };
    let version = header(&mut c)?;
    let n_tensors = c.u64().map_err(|s| s.reading("tensor count"))?;
    let n_kv = c.u64().map_err(|s| s.reading("metadata count"))?;
    c.fits(n_kv, MIN_KV_BYTES, || "metadata count".to_string())?;
    c.fits(n_tensors, MIN_TENSOR_INFO_BYTES, || {
        "tensor count".to_string()
    })?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c.string(|| format!("key of metadata entry {i}"))?;
        let ty = c
            .u32()
            .map_err(|s| s.reading(format!("value type of metadata key '{key}'")))?;
        let value = read_value(&mut c, ty, &key, 0, &mut budget)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(format!("corrupt file: duplicate metadata key '{key}'"));
        }
    }
    let alignment = alignment(&metadata)?;

    let count = c.fits(n_tensors, MIN_TENSOR_INFO_BYTES, || {
        "tensor count".to_string()
    })?;
    let mut tensors = Vec::with_capacity(count);
    let mut names = HashSet::with_capacity(count);
    for i in 0..n_tensors {
        let t = tensor_info(&mut c, i)?;
        if !names.insert(t.name.clone()) {
            return Err(format!("corrupt file: duplicate tensor name '{}'", t.name));
        }
        tensors.push(t);
    }

    let len = buf.len() as u64;
    let data_start = (c.pos as u64)
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| {
            format!("corrupt file: data section offset overflows with alignment {alignment}")
        })?;
    for t in &mut tensors {
        place(t, data_start, alignment, len)?;
    }
    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
    })
}

/// Magic and version; returns the version (2 or 3).
fn header(c: &mut Cursor) -> Result<u32, String> {
    let len = c.buf.len();
    let magic: [u8; 4] = c
        .array()
        .map_err(|_| format!("not a GGUF file: {len} bytes is too short for the magic \"GGUF\""))?;
    if &magic != MAGIC {
        return Err(format!(
            "not a GGUF file: starts with \"{}\" instead of the magic \"GGUF\"",
            magic.escape_ascii()
        ));
    }
    let version = c.u32().map_err(|s| s.reading("GGUF version"))?;
    match version {
        2 | 3 => Ok(version),
        1 => Err("GGUF version 1 is not supported (expected version 2 or 3)".to_string()),
        v if matches!(v.swap_bytes(), 1..=3) => Err(format!(
            "big-endian GGUF file (version field {v:#010x}) is not supported (expected little-endian version 2 or 3)"
        )),
        v => Err(format!("unsupported GGUF version {v} (expected 2 or 3)")),
    }
}

/// How many more metadata values may be parsed, of `max` in all.
struct Budget {
    left: u64,
    max: u64,
}

impl Budget {
    /// Takes `n` values for `key`, or refuses them naming the key (before any allocation);
    /// `what` describes them in the error.
    fn take(&mut self, n: u64, key: &str, what: impl Fn() -> String) -> Result<(), String> {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(format!(
                "corrupt file: metadata key '{key}': {} would exceed the {} metadata values accepted in a file ({} left)",
                what(),
                self.max,
                self.left
            )),
        }
    }
}

/// One metadata value of type `ty`; `depth` counts enclosing arrays. Arrays take their
/// elements from `budget` before allocating them.
fn read_value(
    c: &mut Cursor,
    ty: u32,
    key: &str,
    depth: u32,
    budget: &mut Budget,
) -> Result<MetaValue, String> {
    let short = |s: Short| s.reading(format!("value of metadata key '{key}'"));
    if depth == 0 {
        budget.take(1, key, || "one more value".to_string())?;
    }
    Ok(match ty {
        vt::U8 => MetaValue::U8(u8::from_le_bytes(c.array().map_err(short)?)),
        vt::I8 => MetaValue::I8(i8::from_le_bytes(c.array().map_err(short)?)),
        vt::U16 => MetaValue::U16(u16::from_le_bytes(c.array().map_err(short)?)),
        vt::I16 => MetaValue::I16(i16::from_le_bytes(c.array().map_err(short)?)),
        vt::U32 => MetaValue::U32(u32::from_le_bytes(c.array().map_err(short)?)),
        vt::I32 => MetaValue::I32(i32::from_le_bytes(c.array().map_err(short)?)),
        vt::U64 => MetaValue::U64(u64::from_le_bytes(c.array().map_err(short)?)),
        vt::I64 => MetaValue::I64(i64::from_le_bytes(c.array().map_err(short)?)),
        vt::F32 => MetaValue::F32(f32::from_le_bytes(c.array().map_err(short)?)),
        vt::F64 => MetaValue::F64(f64::from_le_bytes(c.array().map_err(short)?)),
        vt::BOOL => match c.array::<1>().map_err(short)? {
            [0] => MetaValue::Bool(false),
            [1] => MetaValue::Bool(true),
            [b] => {
                return Err(format!(
                    "corrupt file: metadata key '{key}' holds bool byte {b} (expected 0 or 1)"
                ))
            }
        },
        vt::STRING => MetaValue::Str(c.string(|| format!("string value of metadata key '{key}'"))?),
        vt::ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(format!(
                    "corrupt file: metadata key '{key}' nests arrays more than {MAX_ARRAY_DEPTH} deep"
                ));
            }
            let elem = c
                .u32()
                .map_err(|s| s.reading(format!("array element type of metadata key '{key}'")))?;
            let Some(min) = vt::min_size(elem) else {
                return Err(format!(
                    "corrupt file: metadata key '{key}' is an array of unknown value type {elem}"
                ));
            };
            let count = c
                .u64()
                .map_err(|s| s.reading(format!("array length of metadata key '{key}'")))?;
            let n = c.fits(count, min, || {
                format!("array length of metadata key '{key}'")
            })?;
            budget.take(count, key, || format!("an array of {count} values"))?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..count {
                items.push(read_value(c, elem, key, depth + 1, budget)?);
            }
            MetaValue::Array(items)
        }
        other => {
            return Err(format!(
                "corrupt file: metadata key '{key}' has unknown value type {other}"
            ))
        }
    })
}

/// `general.alignment`: a power of two, or 32 when absent.
fn alignment(metadata: &BTreeMap<String, MetaValue>) -> Result<u64, String> {
    match metadata.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => Ok(a),
            _ => Err(format!(
                "general.alignment is {}, expected a power of two (uint32)",
                v.describe()
            )),
        },
    }
}

/// One tensor info; `offset` is still relative to the data section.
fn tensor_info(c: &mut Cursor, i: u64) -> Result<TensorInfo, String> {
    let name = c.string(|| format!("name of tensor {i}"))?;
    let n_dims = c
        .u32()
        .map_err(|s| s.reading(format!("dimension count of tensor '{name}'")))?;
    if n_dims > MAX_DIMS {
        return Err(format!(
            "corrupt file: tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS} are supported)"
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        let v = c
            .u64()
            .map_err(|s| s.reading(format!("dimension {d} of tensor '{name}'")))?;
        if v == 0 {
            return Err(format!(
                "corrupt file: tensor '{name}' has dimension {d} of size 0 (expected > 0)"
            ));
        }
        dims.push(v);
    }
    let id = c
        .u32()
        .map_err(|s| s.reading(format!("type of tensor '{name}'")))?;
    let offset = c
        .u64()
        .map_err(|s| s.reading(format!("data offset of tensor '{name}'")))?;
    let ggml_type = GgmlType::from_id(id);
    let Some((ggml_type, layout)) = ggml_type.and_then(|t| Some((t, t.layout()?))) else {
        return Err(format!(
            "corrupt file: tensor '{name}' has unknown GGML type id {id}"
        ));
    };
    let n_elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let Some(n_elements) = n_elements else {
        return Err(format!(
            "corrupt file: tensor '{name}' dims {dims:?} overflow a 64-bit element count"
        ));
    };
    let row = dims.first().copied().unwrap_or(1);
    if !row.is_multiple_of(layout.block_size) {
        return Err(format!(
            "corrupt file: tensor '{name}' row length {row} is not a multiple of the {} block size {}",
            ggml_type.name(),
            layout.block_size
        ));
    }
    let Some(n_bytes) = (n_elements / layout.block_size).checked_mul(layout.block_bytes) else {
        return Err(format!(
            "corrupt file: tensor '{name}' dims {dims:?} overflow a 64-bit byte count"
        ));
    };
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_bytes,
        layout,
    })
}

/// Makes `t.offset` absolute and checks that its data lies inside the file.
fn place(t: &mut TensorInfo, data_start: u64, alignment: u64, len: u64) -> Result<(), String> {
    let name = &t.name;
    if !t.offset.is_multiple_of(alignment) {
        return Err(format!(
            "corrupt file: tensor '{name}' data offset {} is not a multiple of the alignment {alignment}",
            t.offset
        ));
    }
    let start = data_start.checked_add(t.offset);
    match start.and_then(|s| Some((s, s.checked_add(t.n_bytes)?))) {
        Some((start, end)) if end <= len => {
            t.offset = start;
            Ok(())
        }
        Some((start, end)) => Err(format!(
            "tensor '{name}' data [{start}..{end}) runs past the end of the file ({len} bytes): truncated or corrupt file"
        )),
        None => Err(format!(
            "corrupt file: tensor '{name}' data offset {} + {} bytes overflows",
            t.offset, t.n_bytes
        )),
    }
}
