//! Decode steps timed on the real model at each row count (the host self-check), which the
//! host profile prices its decode steps from.

/// Decode steps timed on the model at every row count up to the server's slots, at one
/// context: a CPU's matrix kernels need not grow linearly with the rows (on some, a product of
/// 2 or 3 rows re-reads the weight per row while 4 rows read it once), so the serving
/// simulator of this machine prices a decode step from these times rather than from a
/// per-row cost.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredDecode {
    /// Cached tokens each timed row attended over.
    pub context: f64,
    /// `(rows, seconds)`, rows increasing from 1.
    pub steps: Vec<(f64, f64)>,
}

impl MeasuredDecode {
    /// The table of `(rows, ms)` timed at `context`; `None` unless it starts at 1 row, its
    /// rows increase and every time is positive.
    pub fn new(context: u32, steps_ms: &[(u32, f64)]) -> Option<Self> {
        let ok = steps_ms.first().is_some_and(|s| s.0 == 1)
            && steps_ms.windows(2).all(|w| w[1].0 > w[0].0)
            && steps_ms.iter().all(|s| s.1.is_finite() && s.1 > 0.0);
        ok.then(|| MeasuredDecode {
            context: context.max(1) as f64,
            steps: steps_ms
                .iter()
                .map(|&(r, ms)| (r as f64, ms * 1e-3))
                .collect(),
        })
    }

    /// The step of `rows` rows at the timed context, seconds: the timed value at a timed row
    /// count, linear between two, and beyond the last along the last two where they rise
    /// (flat where they fall, or with one timed count: more rows never cost less).
    pub fn step_s(&self, rows: f64) -> f64 {
        let s = &self.steps;
        if let Some(i) = s.iter().position(|&(r, _)| r >= rows) {
            if i == 0 || s[i].0 == rows {
                return s[i].1;
            }
            let ((r0, t0), (r1, t1)) = (s[i - 1], s[i]);
            return t0 + (t1 - t0) * (rows - r0) / (r1 - r0);
        }
        match s.as_slice() {
            [.., (r0, t0), (r1, t1)] => t1 + ((t1 - t0) / (r1 - r0)).max(0.0) * (rows - r1),
            [(_, t)] => *t,
            [] => 0.0,
        }
    }
}
