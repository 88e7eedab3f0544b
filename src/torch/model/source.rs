//! Weights handed to [`super::llama::Llama::build_from`] one tensor at a time, in f32, so
//! that each is converted to the dtype the model keeps it in (or quantised) before the next
//! one is read: a model needs host memory for its weights at their run dtype plus a tensor
//! being converted, not for all of them in f32.

use super::card;
use super::gguf::{GgufFile, TensorInfo};
use super::quant::Int4Codes;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Where a model's weights are read from, by Hugging Face name.
pub trait WeightSource {
    /// Removes weight `name` and returns it in f32 on the CPU; `None` when there is none.
    fn take(&mut self, name: &str) -> Result<Option<Tensor>>;
    /// Removes and returns the 4-bit codes the file holds for `name` (GGUF Q4_0/Q4_1, when
    /// they were asked for), rows in Hugging Face order.
    fn take_codes(&mut self, _name: &str) -> Result<Option<Int4Codes>> {
        Ok(None)
    }
    /// Names of the weights not taken yet.
    fn remaining(&self) -> Vec<String>;
}

/// Weights already in memory (tests, small models built by hand).
pub struct InMemory {
    pub tensors: HashMap<String, Tensor>,
    pub codes: HashMap<String, Int4Codes>,
}

impl WeightSource for InMemory {
    fn take(&mut self, name: &str) -> Result<Option<Tensor>> {
        Ok(self.tensors.remove(name))
    }
    fn take_codes(&mut self, name: &str) -> Result<Option<Int4Codes>> {
        Ok(self.codes.remove(name))
    }
    fn remaining(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
}

/// Refuses a weight read from a file that holds NaN or infinity: it would make every logit
/// NaN, the argmax token 0, and accuracy comparisons meaningless, without any other sign.
/// Checked in f32, before any conversion (an f16 run would otherwise hide nothing new).
fn check_finite(t: &Tensor, name: &str, what: &str) -> Result<()> {
    let finite = t
        .f_isfinite()
        .and_then(|f| f.f_all())
        .and_then(|a| bool::try_from(&a))
        .with_context(|| format!("cannot check the values of weight {name}"))?;
    if !finite {
        bail!("{what}: weight {name} holds NaN or infinite values");
    }
    Ok(())
}

/// A GGUF file's tensors, dequantised to f32 one at a time as they are taken; each one's
/// mapped pages are released once read.
pub struct GgufSource {
    file: GgufFile,
    /// Hugging Face name -> (index into the file's tensors, head count to un-permute with).
    names: HashMap<String, (usize, Option<usize>)>,
    /// Names not taken yet.
    left: std::collections::HashSet<String>,
    q4_codes: bool,
}

impl GgufSource {
    /// `names` maps each Hugging Face name to the GGUF tensor's index and its Q/K head count.
    pub fn new(
        file: GgufFile,
        names: HashMap<String, (usize, Option<usize>)>,
        q4_codes: bool,
    ) -> Self {
        GgufSource {
            file,
            left: names.keys().cloned().collect(),
            names,
            q4_codes,
        }
    }

    fn info(&self, i: usize) -> &TensorInfo {
        &self.file.tensors()[i]
    }
}

impl WeightSource for GgufSource {
    fn take(&mut self, name: &str) -> Result<Option<Tensor>> {
        if !self.left.remove(name) {
            return Ok(None);
        }
        let (i, heads) = self.names[name];
        let t = self.info(i);
        let file = self.file.name().to_string();
        let shape: Vec<i64> = t.dims.iter().rev().map(|d| *d as i64).collect();
        let data = self.file.dequantize(t)?;
        let mut x = Tensor::f_from_slice(&data)?.reshape(shape.as_slice());
        drop(data);
        if let Some(h) = heads {
            if shape.len() != 2 || shape[0] % (2 * h as i64) != 0 {
                bail!(
                    "{file}: tensor {:?} has shape {shape:?}, which {h} heads cannot split",
                    t.name
                );
            }
            x = unpermute_rows(&x, h);
        }
        check_finite(&x, name, &file)?;
        // The codes, when asked for, are read again from the file (its page cache).
        self.file.release(t);
        Ok(Some(x))
    }

    fn take_codes(&mut self, name: &str) -> Result<Option<Int4Codes>> {
        if !self.q4_codes {
            return Ok(None);
        }
        let Some(&(i, heads)) = self.names.get(name) else {
            return Ok(None);
        };
        let t = self.info(i);
        let shape: Vec<i64> = t.dims.iter().rev().map(|d| *d as i64).collect();
        let codes = if shape.len() == 2 && shape[1] % 32 == 0 {
            self.file.q4_codes(t)?
        } else {
            None
        };
        self.file.release(t);
        let Some(c) = codes else {
            return Ok(None);
        };
        let (rows, cols) = (shape[0], shape[1]);
        let c = Int4Codes {
            q: Tensor::f_from_slice(&c.q)?.view([rows, cols]),
            scale: Tensor::f_from_slice(&c.scale)?.view([rows, cols / 32]),
            min: Tensor::f_from_slice(&c.min)?.view([rows, cols / 32]),
        };
        Ok(Some(match heads {
            Some(h) => c.map_rows(|t| unpermute_rows(t, h)),
            None => c,
        }))
    }

    fn remaining(&self) -> Vec<String> {
        self.left.iter().cloned().collect()
    }
}

/// One tensor of a safetensors file: where its bytes are and how to read them.
struct Entry {
    file: usize,
    kind: Kind,
    shape: Vec<i64>,
    /// Absolute byte range in the file.
    start: u64,
    len: u64,
}

/// The tensors of one or more safetensors files (a sharded checkpoint), read one at a time
/// with positioned reads (not mapped, so the file's pages never count as this process's
/// memory) and converted to f32.
pub struct SafetensorsSource {
    files: Vec<(PathBuf, File)>,
    entries: HashMap<String, Entry>,
}

impl SafetensorsSource {
    /// Reads the headers of `paths`; every tensor's dtype, shape and byte range is checked
    /// here, before any data is read.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (fi, p) in paths.iter().enumerate() {
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            for (name, e) in read_header(p, &f, fi)? {
                if entries.insert(name.clone(), e).is_some() {
                    bail!("{}: tensor {name:?} is also in another shard", p.display());
                }
            }
            files.push((p.clone(), f));
        }
        Ok(SafetensorsSource { files, entries })
    }
}

/// The header of a safetensors file: an 8-byte little-endian length, then that many bytes
/// of JSON mapping each tensor to its `dtype`, `shape` and `data_offsets` (relative to the
/// end of the header), as the format's specification (huggingface/safetensors README) says.
fn read_header(p: &Path, f: &File, fi: usize) -> Result<Vec<(String, Entry)>> {
    let d = p.display();
    let bad = |why: String| anyhow::anyhow!("{d}: not a valid safetensors file: {why}");
    let file_len = f
        .metadata()
        .with_context(|| format!("cannot read {d}"))?
        .len();
    let mut n = [0u8; 8];
    f.read_exact_at(&mut n, 0)
        .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
    let n = u64::from_le_bytes(n);
    // The format caps the header at 100 MB.
    if n > 100_000_000 || 8 + n > file_len {
        bail!(bad(format!(
            "header length {n} does not fit the {file_len}-byte file"
        )));
    }
    let mut json = vec![0u8; n as usize];
    f.read_exact_at(&mut json, 8)
        .map_err(|e| bad(e.to_string()))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&json).map_err(|e| bad(card::one_line(&e.to_string())))?;
    let data_start = 8 + n;
    let mut out = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = v.get("dtype").and_then(|x| x.as_str()).unwrap_or("");
        let (kind, size) = match dtype {
            "F32" => (Kind::Float, 4),
            "F16" => (Kind::Half, 2),
            "BF16" => (Kind::BFloat16, 2),
            "F64" => (Kind::Double, 8),
            other => bail!(bad(format!(
                "tensor {name:?} has dtype {other:?} (expected F32, F16, BF16 or F64)"
            ))),
        };
        let shape: Option<Vec<i64>> = v.get("shape").and_then(|s| s.as_array()).and_then(|a| {
            a.iter()
                .map(|x| x.as_u64().and_then(|u| i64::try_from(u).ok()))
                .collect()
        });
        let offsets: Option<Vec<u64>> = v
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64()).collect());
        let (Some(shape), Some([a, b])) = (
            shape,
            offsets
                .as_deref()
                .and_then(|o| <[u64; 2]>::try_from(o).ok()),
        ) else {
            bail!(bad(format!(
                "tensor {name:?} needs a shape and two data_offsets"
            )));
        };
        let numel = shape
            .iter()
            .try_fold(1u64, |acc, &s| acc.checked_mul(s as u64));
        let fits = numel.and_then(|e| e.checked_mul(size)) == b.checked_sub(a)
            && data_start.checked_add(b).is_some_and(|end| end <= file_len);
        if !fits {
            bail!(bad(format!(
                "tensor {name:?} of shape {shape:?} ({dtype}) does not match its data_offsets [{a}, {b}] in a {file_len}-byte file"
            )));
        }
        out.push((
            name,
            Entry {
                file: fi,
                kind,
                shape,
                start: data_start + a,
                len: b - a,
            },
        ));
    }
    Ok(out)
}

impl WeightSource for SafetensorsSource {
    fn take(&mut self, name: &str) -> Result<Option<Tensor>> {
        let Some(e) = self.entries.remove(name) else {
            return Ok(None);
        };
        let (path, f) = &self.files[e.file];
        let mut raw = vec![0u8; e.len as usize];
        f.read_exact_at(&mut raw, e.start)
            .with_context(|| format!("{}: cannot read tensor {name:?}", path.display()))?;
        let t = Tensor::f_from_data_size(&raw, &e.shape, e.kind)?;
        drop(raw);
        let t = t.f_to_kind(Kind::Float)?;
        check_finite(&t, name, &path.display().to_string())?;
        Ok(Some(t))
    }

    fn remaining(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
}

/// Undoes the row permutation llama.cpp's converter applies to Q and K so that its
/// interleaved RoPE can be used (`permute()` in llama.cpp `convert_hf_to_gguf.py`): rows of
/// each head are stored as (pairs, 2) instead of (2, half).
pub fn unpermute_rows(w: &Tensor, heads: usize) -> Tensor {
    let size = w.size();
    let (rows, cols) = (size[0], size[1]);
    let h = heads as i64;
    w.reshape([h, rows / h / 2, 2, cols])
        .transpose(1, 2)
        .reshape([rows, cols])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Shards of f32, bf16 and f16 tensors read back one at a time: each equals the stored
    /// tensor in f32, and a tensor is handed over once.
    #[test]
    fn sharded_safetensors_read_back_tensor_by_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let opts = (Kind::Float, Device::Cpu);
        let a = Tensor::randn([3, 5], opts);
        let b = Tensor::randn([7], opts).to_kind(Kind::BFloat16);
        let c = Tensor::randn([2, 2, 2], opts).to_kind(Kind::Half);
        let one = dir.path().join("model-00001-of-00002.safetensors");
        let two = dir.path().join("model-00002-of-00002.safetensors");
        Tensor::write_safetensors(&[("a", &a), ("b", &b)], &one).unwrap();
        Tensor::write_safetensors(&[("c", &c)], &two).unwrap();
        let mut src = SafetensorsSource::open(&[one.clone(), two]).unwrap();
        let mut left = src.remaining();
        left.sort();
        assert_eq!(left, ["a", "b", "c"]);
        for (name, want) in [("c", &c), ("a", &a), ("b", &b)] {
            let got = src.take(name).unwrap().unwrap();
            assert_eq!(got.kind(), Kind::Float);
            assert!(got.equal(&want.to_kind(Kind::Float)), "{name}");
            assert!(src.take(name).unwrap().is_none(), "{name} taken twice");
        }
        assert!(src.remaining().is_empty());

        // Data offsets beyond the file: refused at opening, naming the tensor.
        let bytes = std::fs::read(&one).unwrap();
        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 4]).unwrap();
        let e = SafetensorsSource::open(&[cut]).err().unwrap().to_string();
        assert!(
            e.contains("cut.safetensors: not a valid safetensors file: tensor"),
            "{e}"
        );
        assert!(e.contains("does not match its data_offsets"), "{e}");
    }
}
