//! Non-linear least squares by Levenberg–Marquardt (Marquardt 1963, SIAM J. Appl. Math.
//! 11(2)) with a forward-difference Jacobian: small, dependency-free, deterministic.

/// Result of a fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub x: Vec<f64>,
    /// Sum of squared residuals at `x`.
    pub cost: f64,
    pub iterations: usize,
}

fn sum_sq(r: &[f64]) -> f64 {
    r.iter().map(|v| v * v).sum()
}

/// Solves `a · x = b` for a small dense symmetric system by Gaussian elimination with
/// partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for k in 0..n {
        let piv = (k..n).max_by(|&i, &j| a[i][k].abs().total_cmp(&a[j][k].abs()))?;
        if a[piv][k].abs() < 1e-300 {
            return None;
        }
        a.swap(k, piv);
        b.swap(k, piv);
        let (top, rest) = a.split_at_mut(k + 1);
        let pivot_row = &top[k];
        for (off, row) in rest.iter_mut().enumerate() {
            let f = row[k] / pivot_row[k];
            for (x, p) in row[k..].iter_mut().zip(&pivot_row[k..]) {
                *x -= f * p;
            }
            b[k + 1 + off] -= f * b[k];
        }
    }
    let mut x = vec![0.0; n];
    for k in (0..n).rev() {
        let s: f64 = (k + 1..n).map(|j| a[k][j] * x[j]).sum();
        x[k] = (b[k] - s) / a[k][k];
    }
    Some(x)
}

/// Minimises `Σ r(x)²` from `x0`. Non-finite residuals count as a rejected step.
pub fn levenberg_marquardt(r: impl Fn(&[f64]) -> Vec<f64>, x0: &[f64], max_iter: usize) -> Fit {
    levenberg_marquardt_h(r, x0, max_iter, 1e-6)
}

/// [`levenberg_marquardt`] with forward differences of `rel_h` times each coordinate (at
/// least `rel_h · 10⁻³`): a wider step looks past the small jumps of a residual that is
/// only piecewise smooth, such as a simulated median whose request order changes with the
/// parameters.
pub fn levenberg_marquardt_h(
    r: impl Fn(&[f64]) -> Vec<f64>,
    x0: &[f64],
    max_iter: usize,
    rel_h: f64,
) -> Fit {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut res = r(&x);
    let mut cost = sum_sq(&res);
    let mut lambda = 1e-3;
    let mut it = 0;
    while it < max_iter {
        it += 1;
        // Jacobian by forward differences.
        let m = res.len();
        let mut jac = vec![vec![0.0; n]; m];
        for k in 0..n {
            let h = rel_h * x[k].abs().max(1e-3);
            let mut xp = x.clone();
            xp[k] += h;
            let rp = r(&xp);
            for i in 0..m {
                jac[i][k] = (rp[i] - res[i]) / h;
            }
        }
        let mut jtj = vec![vec![0.0; n]; n];
        let mut jtr = vec![0.0; n];
        for i in 0..m {
            for a in 0..n {
                jtr[a] -= jac[i][a] * res[i];
                for b in 0..n {
                    jtj[a][b] += jac[i][a] * jac[i][b];
                }
            }
        }
        let mut improved = false;
        while lambda < 1e12 {
            let mut damped = jtj.clone();
            for (k, row) in damped.iter_mut().enumerate() {
                row[k] += lambda * jtj[k][k].max(1e-12);
            }
            if let Some(step) = solve(damped, jtr.clone()) {
                let xn: Vec<f64> = x.iter().zip(&step).map(|(a, d)| a + d).collect();
                let rn = r(&xn);
                let cn = sum_sq(&rn);
                if cn.is_finite() && cn < cost {
                    let rel = (cost - cn) / cost.max(1e-300);
                    x = xn;
                    res = rn;
                    cost = cn;
                    lambda = (lambda / 3.0).max(1e-12);
                    improved = true;
                    if rel < 1e-12 {
                        return Fit {
                            x,
                            cost,
                            iterations: it,
                        };
                    }
                    break;
                }
            }
            lambda *= 4.0;
        }
        if !improved {
            break;
        }
    }
    Fit {
        x,
        cost,
        iterations: it,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_an_exponential_exactly() {
        // y = 2·exp(0.3·t) sampled without noise.
        let ts: Vec<f64> = (0..10).map(|t| t as f64).collect();
        let ys: Vec<f64> = ts.iter().map(|t| 2.0 * (0.3 * t).exp()).collect();
        let f = levenberg_marquardt(
            |p| {
                ts.iter()
                    .zip(&ys)
                    .map(|(t, y)| p[0] * (p[1] * t).exp() - y)
                    .collect()
            },
            &[1.0, 0.1],
            200,
        );
        assert!(
            (f.x[0] - 2.0).abs() < 1e-6 && (f.x[1] - 0.3).abs() < 1e-7,
            "{f:?}"
        );
    }

    #[test]
    fn solve_small_system() {
        let x = solve(vec![vec![2.0, 1.0], vec![1.0, 3.0]], vec![3.0, 5.0]).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
        assert!(solve(vec![vec![1.0, 2.0], vec![2.0, 4.0]], vec![1.0, 2.0]).is_none());
    }
}
