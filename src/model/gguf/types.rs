//! GGUF value and tensor types: metadata values, GGML tensor types and their block layouts.

/// One metadata value, typed as in the file (GGUF value types 0..=12).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    /// Elements all share one type in the file (arrays of arrays are allowed).
    Array(Vec<MetaValue>),
}

/// GGUF value type ids (gguf spec, `gguf_type` in llama.cpp's gguf.h).
pub(crate) mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;

    /// Name of a value type id as the GGUF spec spells it, for error messages.
    pub fn name(id: u32) -> &'static str {
        match id {
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            U32 => "uint32",
            I32 => "int32",
            F32 => "float32",
            BOOL => "bool",
            STRING => "string",
            ARRAY => "array",
            U64 => "uint64",
            I64 => "int64",
            F64 => "float64",
            _ => "unknown",
        }
    }

    /// Fewest bytes one value of this type takes in a file: a string is at least its
    /// 8-byte length, an array at least its 4-byte element type and 8-byte count.
    /// Used to refuse counts that the rest of the file cannot hold before allocating.
    pub fn min_size(id: u32) -> Option<u64> {
        Some(match id {
            U8 | I8 | BOOL => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | STRING => 8,
            ARRAY => 12,
            _ => return None,
        })
    }
}

impl MetaValue {
    /// The GGUF value type id of this value.
    pub fn type_id(&self) -> u32 {
        use value_type as t;
        match self {
            MetaValue::U8(_) => t::U8,
            MetaValue::I8(_) => t::I8,
            MetaValue::U16(_) => t::U16,
            MetaValue::I16(_) => t::I16,
            MetaValue::U32(_) => t::U32,
            MetaValue::I32(_) => t::I32,
            MetaValue::U64(_) => t::U64,
            MetaValue::I64(_) => t::I64,
            MetaValue::F32(_) => t::F32,
            MetaValue::F64(_) => t::F64,
            MetaValue::Bool(_) => t::BOOL,
            MetaValue::Str(_) => t::STRING,
            MetaValue::Array(_) => t::ARRAY,
        }
    }

    /// The GGUF spec name of this value's type (`uint32`, `string`, `array`, ...).
    pub fn type_name(&self) -> &'static str {
        value_type::name(self.type_id())
    }

    /// The value as an i128 if it is an integer of any width (wide enough for u64 and i64).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as a u64 if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_integer().and_then(|v| u64::try_from(v).ok())
    }

    /// The value as an i64 if it is an integer of any width that fits.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_integer().and_then(|v| i64::try_from(v).ok())
    }

    /// The value as an f64 if it is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_integer().map(|v| v as f64),
        }
    }

    /// The value as a string slice if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short description for error messages: the type, and the value unless it is long.
    pub fn describe(&self) -> String {
        match self {
            MetaValue::Str(s) if s.len() > 40 => format!("a string of {} bytes", s.len()),
            MetaValue::Str(s) => format!("string {s:?}"),
            MetaValue::Array(a) => match a.first() {
                Some(x) => format!("an array of {} {}", a.len(), x.type_name()),
                None => "an empty array".to_string(),
            },
            MetaValue::Bool(b) => format!("bool {b}"),
            MetaValue::F32(v) => format!("float32 {v}"),
            MetaValue::F64(v) => format!("float64 {v}"),
            other => match other.as_integer() {
                Some(v) => format!("{} {v}", other.type_name()),
                None => other.type_name().to_string(),
            },
        }
    }
}

/// Size of one block of a GGML tensor type: `block_size` elements stored in `block_bytes`
/// bytes. A row's length (`dims[0]`) is always a whole number of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    /// Elements per block (1 for plain float types, 32 for Q4_0/Q4_1/Q8_0, 256 for K-quants).
    pub block_size: u64,
    /// Bytes per block.
    pub block_bytes: u64,
}

/// A GGML tensor type. The types this reader dequantises have their own variants; every
/// other GGML type with a known block layout is `Other(id)` (its data can be range-checked
/// but not dequantised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4_K,
    Q6_K,
    /// Another GGML type id (see [`GgmlType::from_id`]).
    Other(u32),
}

/// Every GGML type id with its name, elements per block and bytes per block, from
/// ggml.h `enum ggml_type` and gguf-py `GGML_QUANT_SIZES` (QK_K = 256).
const GGML_TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

/// The types [`GgmlType`] can dequantise, in the order error messages list them.
pub const SUPPORTED_TYPES: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

impl GgmlType {
    /// The type with GGML id `id`, or `None` if the id is not a GGML type with a known
    /// block layout (such a file cannot be read safely).
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GGML_TYPES.iter().find(|e| e.0 == id)?;
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            30 => GgmlType::BF16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4_K,
            14 => GgmlType::Q6_K,
            other => GgmlType::Other(other),
        })
    }

    /// The GGML type id written in files.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::BF16 => 30,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q6_K => 14,
            GgmlType::Other(id) => id,
        }
    }

    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        let id = self.id();
        GGML_TYPES.iter().find(|e| e.0 == id)
    }

    /// The GGML name (`Q4_1`, `Q5_K`, ...), or `unknown` for an id GGML does not define.
    pub fn name(self) -> &'static str {
        self.entry().map_or("unknown", |e| e.1)
    }

    /// Block size and bytes per block, or `None` for an id GGML does not define.
    pub fn layout(self) -> Option<BlockLayout> {
        self.entry().map(|e| BlockLayout {
            block_size: e.2,
            block_bytes: e.3,
        })
    }

    /// Whether [`super::GgufFile::dequantize`] handles this type.
    pub fn is_supported(self) -> bool {
        !matches!(self, GgmlType::Other(_))
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.entry() {
            Some(e) => f.write_str(e.1),
            None => write!(f, "unknown type {}", self.id()),
        }
    }
}

/// One tensor's description from the file's tensor-info table, validated against the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` varies fastest (the row length); the row-major shape is
    /// `dims` reversed.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Bytes of data: `n_elements / layout.block_size * layout.block_bytes`.
    pub n_bytes: u64,
    /// Block layout of `ggml_type`, for code that reads raw blocks.
    pub layout: BlockLayout,
}

impl TensorInfo {
    /// Number of elements (product of `dims`; 1 for a 0-dimensional tensor).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Number of blocks of `layout.block_size` elements.
    pub fn n_blocks(&self) -> u64 {
        self.n_bytes / self.layout.block_bytes.max(1)
    }

    /// The row-major shape (`dims` reversed), as tensor libraries expect.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_ids_round_trip_and_supported_variants_are_named() {
        for &(id, name, _, _) in GGML_TYPES {
            let t = GgmlType::from_id(id).unwrap();
            assert_eq!(t.id(), id);
            assert_eq!(t.name(), name);
            assert_eq!(t.is_supported(), SUPPORTED_TYPES.contains(&t));
        }
        assert_eq!(GgmlType::from_id(14), Some(GgmlType::Q6_K));
        assert_eq!(GgmlType::from_id(30), Some(GgmlType::BF16));
        assert_eq!(GgmlType::from_id(13), Some(GgmlType::Other(13)));
        assert_eq!(GgmlType::from_id(4), None, "Q4_2 was removed from GGML");
        assert_eq!(GgmlType::from_id(999), None);
        assert_eq!(GgmlType::Other(999).to_string(), "unknown type 999");
    }

    #[test]
    fn layouts_match_ggml_block_structs() {
        let l = |t: GgmlType| t.layout().map(|l| (l.block_size, l.block_bytes));
        assert_eq!(l(GgmlType::Q4_0), Some((32, 2 + 16)));
        assert_eq!(l(GgmlType::Q4_1), Some((32, 2 + 2 + 16)));
        assert_eq!(l(GgmlType::Q8_0), Some((32, 2 + 32)));
        assert_eq!(l(GgmlType::Q4_K), Some((256, 2 + 2 + 12 + 128)));
        assert_eq!(l(GgmlType::Q6_K), Some((256, 128 + 64 + 16 + 2)));
        assert_eq!(l(GgmlType::BF16), Some((1, 2)));
        assert_eq!(l(GgmlType::Other(7)), Some((32, 24)));
        assert_eq!(l(GgmlType::Other(5)), None);
    }

    #[test]
    fn integer_conversions_refuse_out_of_range_values() {
        assert_eq!(MetaValue::I32(-1).as_u64(), None);
        assert_eq!(MetaValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(MetaValue::U64(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(MetaValue::I8(-5).as_i64(), Some(-5));
        assert_eq!(MetaValue::U16(7).as_f64(), Some(7.0));
        assert_eq!(MetaValue::Str("7".into()).as_u64(), None);
        assert_eq!(MetaValue::F32(1.5).as_u64(), None);
        assert_eq!(
            MetaValue::Array(vec![MetaValue::U8(1)]).describe(),
            "an array of 1 uint8"
        );
    }
}
