//! Pre-allocated key/value cache, written in place (no concatenation per step).

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// Keys and values of every layer for `batch` sequences of up to `max_len` positions.
///
/// Layout per layer: `[batch, kv_heads, max_len, head_dim]`; columns `0..len` are filled.
/// `valid` marks which columns hold real tokens (left padding of batched prompts).
pub struct KvCache {
    pub(crate) k: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    /// Columns filled so far (shared by all rows).
    pub(crate) len: usize,
    pub(crate) max_len: usize,
    pub(crate) batch: usize,
    /// `[batch, max_len]` bool: column holds a real token; `None` when no row is padded.
    pub(crate) valid: Option<Tensor>,
}

const GIB: f64 = 1073741824.0;

impl KvCache {
    /// Allocates the whole cache up front; fails with the byte count when memory is short.
    pub fn new(
        layers: usize,
        batch: usize,
        kv_heads: usize,
        max_len: usize,
        head_dim: usize,
        kind: Kind,
        device: Device,
    ) -> Result<Self> {
        let shape = [
            batch as i64,
            kv_heads as i64,
            max_len as i64,
            head_dim as i64,
        ];
        // One layer's K (or V) tensor, and the whole cache: K and V of every layer.
        let layer_bytes = [batch, kv_heads, max_len, head_dim, kind.elt_size_in_bytes()]
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n as u64));
        let total = layer_bytes.and_then(|b| b.checked_mul(2 * layers as u64));
        let Some((layer_bytes, total)) = layer_bytes.zip(total) else {
            bail!("a KV cache for batch {batch} and {max_len} positions is too large to size");
        };
        if device == Device::Cpu {
            crate::sysinfo::ensure_memory_for(
                &format!("batch {batch} × {max_len} positions"),
                "the K and V tensors of its KV cache",
                total,
                " (lower --batch or the prompt and output lengths)",
            )?;
        } else if let Some(free) = crate::measure::cuda_memory::free_bytes(device) {
            // Sized against what the device can still hand out, before asking for it.
            if total > free {
                bail!(
                    "batch {batch} × {max_len} positions: the KV cache needs {:.2} GiB on {device:?}, {:.2} GiB is free (lower --batch or the prompt and output lengths)",
                    total as f64 / GIB,
                    free as f64 / GIB
                );
            }
        }
        let alloc = || {
            Tensor::f_zeros(shape, (kind, device)).map_err(|e| {
                anyhow::anyhow!(
                    "batch {batch} × {max_len} positions: cannot allocate the KV cache on {device:?} ({layer_bytes} bytes per layer, {total} in all): {}",
                    crate::model::guard::first_line(&e.to_string())
                )
            })
        };
        let mut k = Vec::with_capacity(layers);
        let mut v = Vec::with_capacity(layers);
        for _ in 0..layers {
            k.push(alloc()?);
            v.push(alloc()?);
        }
        Ok(KvCache {
            k,
            v,
            len: 0,
            max_len,
            batch,
            valid: None,
        })
    }

    /// Columns filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity in positions.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Rows (sequences) the cache holds.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Forgets the contents (keeps the allocation) so the cache serves a new request.
    pub fn reset(&mut self) {
        self.len = 0;
        self.valid = None;
    }

    /// A cache over rows `start..start + n` of this one, sharing its memory (writes go
    /// through), empty and unpadded: continuous batching prefills one slot through it and
    /// decodes the first `n` slots through it.
    pub fn rows(&self, start: usize, n: usize) -> Result<KvCache> {
        if n == 0 || start + n > self.batch {
            bail!(
                "rows {start}..{} of a cache of {} rows",
                start + n,
                self.batch
            );
        }
        let narrow = |t: &Vec<Tensor>| -> Vec<Tensor> {
            t.iter()
                .map(|x| x.narrow(0, start as i64, n as i64))
                .collect()
        };
        Ok(KvCache {
            k: narrow(&self.k),
            v: narrow(&self.v),
            len: 0,
            max_len: self.max_len,
            batch: n,
            valid: None,
        })
    }

    /// Copies the first `cols` columns of row `from` into row `to` in every layer, so a
    /// sequence can move to another slot (continuous batching keeps its busy slots first).
    pub fn copy_row(&mut self, from: usize, to: usize, cols: usize) -> Result<()> {
        if from >= self.batch || to >= self.batch || cols > self.max_len {
            bail!(
                "row {from} to row {to}, {cols} columns, in a cache of {} rows and {} columns",
                self.batch,
                self.max_len
            );
        }
        if from == to || cols == 0 {
            return Ok(());
        }
        for t in self.k.iter().chain(&self.v) {
            let src = t.narrow(0, from as i64, 1).narrow(2, 0, cols as i64);
            let mut dst = t.narrow(0, to as i64, 1).narrow(2, 0, cols as i64);
            dst.f_copy_(&src).map_err(|e| {
                anyhow::anyhow!(
                    "moving a sequence of {cols} positions from slot {from} to slot {to} failed: {}",
                    crate::model::guard::first_line(&e.to_string())
                )
            })?;
        }
        Ok(())
    }

    /// Records which columns of the next prompt are padding (`[batch, t]` bool, true = real).
    pub(crate) fn set_prompt_mask(&mut self, mask: &Tensor) {
        let t = mask.size()[1];
        let device = mask.device();
        let valid = Tensor::ones(
            [self.batch as i64, self.max_len as i64],
            (Kind::Bool, device),
        );
        let mut cols = valid.narrow(1, self.len as i64, t);
        cols.copy_(mask);
        self.valid = Some(valid);
    }
}
