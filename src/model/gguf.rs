//! GGUF model files (llama.cpp's format), versions 2 and 3, little-endian: metadata,
//! tensor infos, memory-mapped tensor data and dequantisation to f32.
//!
//! Every count, length and offset is checked against the file before anything is
//! allocated or read, so a truncated or corrupt file is a one-line error naming the file
//! and what is wrong, never a panic, an out-of-bounds read or an allocation out of
//! proportion to the file's size. Parsed metadata values are also capped in number
//! ([`MAX_METADATA_VALUES`]), since each one takes more memory than the bytes it took.

mod dequant;
mod parse;
mod types;
mod writer;

pub use dequant::{dequantize_into, Q4Codes};
pub use parse::{DEFAULT_ALIGNMENT, MAX_DIMS, MAX_METADATA_VALUES};
pub use types::{BlockLayout, GgmlType, MetaValue, TensorInfo, SUPPORTED_TYPES};
#[doc(hidden)]
pub use writer::{write_gguf, write_gguf_version, TensorSpec};

use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;

/// The file's bytes: memory-mapped, or owned (tests, fuzzing).
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file whose tensor data stays in the file (mapped) until dequantised.
pub struct GgufFile {
    name: String,
    bytes: Bytes,
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Replaces control characters (a corrupt name could hold newlines) so errors stay on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl GgufFile {
    /// Opens `path` read-only, memory-maps it and parses everything before the data.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let file = File::open(path).with_context(|| format!("cannot open GGUF file {name}"))?;
        // SAFETY: the mapping is read-only and private to this process. Like every reader
        // of mapped files, it assumes no other process truncates the file while it is open.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| anyhow!("{name}: cannot memory-map the file: {e}"))?;
        Self::from_source(name, Bytes::Mapped(map))
    }

    /// Parses a GGUF file held in memory; `name` is used in error messages.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        Self::from_source(name.to_string(), Bytes::Owned(bytes))
    }

    fn from_source(name: String, bytes: Bytes) -> Result<Self> {
        let p = parse::parse(bytes.as_slice()).map_err(|e| anyhow!("{name}: {}", one_line(&e)))?;
        let by_name = p
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            name,
            bytes,
            version: p.version,
            alignment: p.alignment,
            data_start: p.data_start,
            metadata: p.metadata,
            tensors: p.tensors,
            by_name,
        })
    }

    /// The path or name given when opening, as used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// GGUF version of the header (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.as_slice().len() as u64
    }

    /// All metadata entries by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.metadata
    }

    /// The metadata value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn need(&self, key: &str, expected: &str) -> Result<&MetaValue> {
        self.get(key)
            .ok_or_else(|| anyhow!("metadata key '{key}' is missing (expected {expected})"))
    }

    /// A non-negative integer of any width under `key`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let expected = "a non-negative integer";
        let v = self.need(key, expected)?;
        v.as_u64().ok_or_else(|| {
            anyhow!(
                "metadata key '{key}' is {}, expected {expected}",
                one_line(&v.describe())
            )
        })
    }

    /// A float (or integer) under `key`.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let expected = "a number";
        let v = self.need(key, expected)?;
        v.as_f64().ok_or_else(|| {
            anyhow!(
                "metadata key '{key}' is {}, expected {expected}",
                one_line(&v.describe())
            )
        })
    }

    /// A string under `key`.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let expected = "a string";
        let v = self.need(key, expected)?;
        v.as_str().ok_or_else(|| {
            anyhow!(
                "metadata key '{key}' is {}, expected {expected}",
                one_line(&v.describe())
            )
        })
    }

    fn array(&self, key: &str, expected: &str) -> Result<&[MetaValue]> {
        match self.need(key, expected)? {
            MetaValue::Array(items) => Ok(items),
            v => bail!(
                "metadata key '{key}' is {}, expected {expected}",
                one_line(&v.describe())
            ),
        }
    }

    /// An array of strings under `key` (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<String>> {
        let expected = "an array of strings";
        let items = self.array(key, expected)?;
        items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    anyhow!(
                        "metadata key '{key}' element {i} is {}, expected {expected}",
                        one_line(&x.describe())
                    )
                })
            })
            .collect()
    }

    /// An array of integers of any width that fit in i64 under `key`
    /// (e.g. `tokenizer.ggml.token_type`, an int32 array).
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let expected = "an array of integers";
        let items = self.array(key, expected)?;
        items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_i64().ok_or_else(|| {
                    anyhow!(
                        "metadata key '{key}' element {i} is {}, expected {expected}",
                        one_line(&x.describe())
                    )
                })
            })
            .collect()
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The raw bytes of `t`'s data (whole blocks of `t.layout`), straight from the file.
    /// Empty if `t` does not describe a range of this file (a `TensorInfo` made elsewhere).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        self.range(t).unwrap_or(&[])
    }

    fn range(&self, t: &TensorInfo) -> Option<&[u8]> {
        let start = usize::try_from(t.offset).ok()?;
        let end = start.checked_add(usize::try_from(t.n_bytes).ok()?)?;
        self.bytes.as_slice().get(start..end)
    }

    /// `t`'s 4-bit codes with their block scales and mins when it is Q4_0 or Q4_1 (see
    /// [`dequant::q4_codes`]), in file order; `None` for other types.
    pub fn q4_codes(&self, t: &TensorInfo) -> Result<Option<Q4Codes>> {
        let Some(bytes) = self.range(t) else {
            bail!(
                "{}: tensor '{}' does not describe data inside this file",
                self.name,
                one_line(&t.name)
            );
        };
        Ok(dequant::q4_codes(t.ggml_type, bytes))
    }

    /// Refuses a file with any tensor of a type [`GgufFile::dequantize`] cannot read, naming
    /// the first such tensor: checked before anything is read, since tensors are read one at
    /// a time later.
    pub fn check_supported(&self) -> Result<()> {
        match self.tensors.iter().find(|t| !t.ggml_type.is_supported()) {
            Some(t) => bail!(
                "{}: unsupported quantisation type {} in tensor '{}' (supported: {})",
                self.name,
                t.ggml_type,
                one_line(&t.name),
                dequant::supported_list()
            ),
            None => Ok(()),
        }
    }

    /// Lets the kernel drop the mapped pages of `t`'s data from this process once it has
    /// been read: they stay in the page cache, but no longer count in the resident set, so
    /// loading a file tensor by tensor does not hold the whole file resident besides the
    /// converted weights. Reading the tensor again maps them back in from the file.
    pub fn release(&self, t: &TensorInfo) {
        let (Bytes::Mapped(m), Some(start), Some(len)) = (
            &self.bytes,
            usize::try_from(t.offset).ok(),
            usize::try_from(t.n_bytes).ok(),
        ) else {
            return;
        };
        if start.checked_add(len).is_some_and(|end| end <= m.len()) {
            // SAFETY: the mapping is private and read-only, so MADV_DONTNEED discards no
            // data: the pages are read again from the file if touched. A refusal only
            // leaves the pages resident, hence ignored.
            let _ =
                unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
        }
    }

    /// `t`'s elements as f32, in file order (row-major with shape `dims` reversed).
    /// Types other than [`SUPPORTED_TYPES`] are an error naming the type and the tensor.
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        let tname = one_line(&t.name);
        let file = &self.name;
        if !t.ggml_type.is_supported() {
            bail!(
                "{file}: unsupported quantisation type {} in tensor '{tname}' (supported: {})",
                t.ggml_type,
                dequant::supported_list()
            );
        }
        let n = t
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|n| usize::try_from(n).ok());
        let (Some(n), Some(bytes)) = (n, self.range(t)) else {
            bail!("{file}: tensor '{tname}' does not describe data inside this file");
        };
        let mut out = vec![0f32; n];
        dequantize_into(t.ggml_type, bytes, &mut out)
            .map_err(|e| anyhow!("{file}: tensor '{tname}': {e}"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
