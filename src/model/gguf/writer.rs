//! A minimal GGUF writer, for tests that need small (or deliberately corrupt) GGUF files.
//!
//! It writes exactly what it is given: tensor data is not checked against dims or type, so
//! tests can build files the reader must refuse.

use super::parse::{DEFAULT_ALIGNMENT, MAGIC};
use super::types::{value_type, GgmlType, MetaValue};

/// One tensor to write: name, dims (GGML order, `dims[0]` fastest), type, raw data bytes.
pub type TensorSpec = (String, Vec<u64>, GgmlType, Vec<u8>);

/// A GGUF v3 file holding `metadata` (in the given order) and `tensors`, whose data is
/// laid out in order, each aligned to `general.alignment` (when it is a power of two in
/// `metadata`) or 32.
#[doc(hidden)]
pub fn write_gguf(metadata: &[(String, MetaValue)], tensors: &[TensorSpec]) -> Vec<u8> {
    write_gguf_version(3, metadata, tensors)
}

/// As [`write_gguf`], with the given header version (2 and 3 have the same layout).
#[doc(hidden)]
pub fn write_gguf_version(
    version: u32,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorSpec],
) -> Vec<u8> {
    let alignment = metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_u64())
        .filter(|a| a.is_power_of_two())
        .unwrap_or(DEFAULT_ALIGNMENT) as usize;
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        out.extend_from_slice(&value.type_id().to_le_bytes());
        put_value(&mut out, value);
    }
    let mut offset = 0usize;
    let mut offsets = Vec::with_capacity(tensors.len());
    for (name, dims, ty, data) in tensors {
        offset = offset.next_multiple_of(alignment);
        offsets.push(offset);
        put_str(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.id().to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset += data.len();
    }
    let data_start = out.len().next_multiple_of(alignment);
    for ((_, _, _, data), off) in tensors.iter().zip(offsets) {
        out.resize(data_start + off, 0);
        out.extend_from_slice(data);
    }
    if tensors.is_empty() {
        out.resize(data_start, 0);
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A value's payload (without its type id). Arrays take their element type from their
/// first element (uint8 when empty) and must be homogeneous.
fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::Str(s) => put_str(out, s),
        MetaValue::Array(items) => {
            let elem = items.first().map_or(value_type::U8, MetaValue::type_id);
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                put_value(out, x);
            }
        }
    }
}
