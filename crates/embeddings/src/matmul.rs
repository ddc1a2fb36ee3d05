//! The matrix products the encoder spends its time in: `out = a · b (+ bias)` with `a` row-major `m × k`.
//!
//! `b` is first *packed*: cut into panels of [`PANEL`] columns, each panel stored row after row (`k × PANEL`,
//! zero-padded past the last column), so the kernel reads it in one sequential sweep. A linear layer's
//! weights are packed once when the model loads; attention packs its keys and values per head.
//!
//! The kernel computes a block of `ROWS × PANEL` outputs held in registers: at each step along `k` it loads
//! one row of the panel (two AVX-512 or four AVX2 registers), broadcasts one value of each row of `a`, and
//! does one fused multiply-add per register: 24 per step with AVX-512 (12 rows × 2), 12 with AVX2 (3 × 4).
//! It runs through `pulp`, which finds the CPU's vector instructions once and calls code compiled for
//! them, safely; other CPUs get a plain loop. A panel stays in cache while every block of rows passes it;
//! large products split the rows of `a` across threads.

/// Columns of `b` per panel.
pub const PANEL: usize = 32;
/// Products with fewer multiply-adds than this run on the calling thread.
const THREADED_FROM: usize = 1 << 21;

static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);

/// A `k × n` matrix cut into panels for [`matmul`].
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    k: usize,
    n: usize,
    panels: Vec<f32>,
}

impl Packed {
    /// Packs `b` given as `n` rows of `k` (a linear layer's `out × in` weights, or attention's keys): the
    /// product is then `a · bᵀ`.
    pub fn from_transposed(b: &[f32], k: usize) -> Packed {
        assert!(k > 0 && b.len().is_multiple_of(k), "shapes do not match");
        let n = b.len() / k;
        let mut panels = vec![0.0; n.div_ceil(PANEL) * k * PANEL];
        for (column, row) in b.chunks_exact(k).enumerate() {
            let (panel, within) = (column / PANEL, column % PANEL);
            let base = panel * k * PANEL + within;
            for (t, value) in row.iter().enumerate() {
                panels[base + t * PANEL] = *value;
            }
        }
        Packed { k, n, panels }
    }

    /// Packs `b` given as `k` rows of `n` (attention's values): the product is `a · b`.
    pub fn from_rows(b: &[f32], n: usize) -> Packed {
        assert!(n > 0 && b.len().is_multiple_of(n), "shapes do not match");
        let k = b.len() / n;
        let mut panels = vec![0.0; n.div_ceil(PANEL) * k * PANEL];
        for (t, row) in b.chunks_exact(n).enumerate() {
            for (panel, part) in row.chunks(PANEL).enumerate() {
                let at = panel * k * PANEL + t * PANEL;
                panels[at..at + part.len()].copy_from_slice(part);
            }
        }
        Packed { k, n, panels }
    }

    /// Rows of the unpacked `k × n` matrix.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of the unpacked `k × n` matrix.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `out[i * n + j] = Σ_t a[i * k + t] · b[t, j] + bias[j]`, `a` of `m × k`, on up to `threads` threads.
///
/// # Panics
/// When a slice's length does not match its shape (a programming error inside the crate).
pub fn matmul(a: &[f32], b: &Packed, bias: Option<&[f32]>, out: &mut [f32], threads: usize) {
    let (k, n) = (b.k, b.n);
    assert!(a.len().is_multiple_of(k), "shapes do not match");
    let m = a.len() / k;
    assert_eq!(out.len(), m * n, "the output does not match the shapes");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), n, "the bias does not match the shapes");
    }
    if m == 0 || n == 0 {
        return;
    }
    let threads = threads.clamp(1, m);
    if threads == 1 || m * n * k < THREADED_FROM {
        product(a, b, bias, out);
        return;
    }
    let rows_per_thread = m.div_ceil(threads).next_multiple_of(12);
    std::thread::scope(|scope| {
        for (a_part, out_part) in a.chunks(rows_per_thread * k).zip(out.chunks_mut(rows_per_thread * n)) {
            scope.spawn(move || product(a_part, b, bias, out_part));
        }
    });
}

/// `a · bᵀ` for `b` of `n × k` given plainly (packed on the way).
pub fn matmul_transposed(a: &[f32], b: &[f32], bias: Option<&[f32]>, k: usize, out: &mut [f32], threads: usize) {
    matmul(a, &Packed::from_transposed(b, k), bias, out, threads);
}

fn product(a: &[f32], b: &Packed, bias: Option<&[f32]>, out: &mut [f32]) {
    ARCH.dispatch(Product { a, b, bias, out });
}

struct Product<'a> {
    a: &'a [f32],
    b: &'a Packed,
    bias: Option<&'a [f32]>,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Product<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Product { a, b, bias, out } = self;
        match S::F32_LANES {
            16 => blocks::<S, 12, 2>(simd, a, b, bias, out),
            8 => blocks::<S, 3, 4>(simd, a, b, bias, out),
            _ => plain(a, b, bias, out),
        }
    }
}

/// Every block of `ROWS` rows of `a` against every panel; `VECTORS` registers make a panel's width.
#[inline(always)]
fn blocks<S: pulp::Simd, const ROWS: usize, const VECTORS: usize>(
    simd: S,
    a: &[f32],
    b: &Packed,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let (k, n) = (b.k, b.n);
    let m = a.len() / k;
    let mut padded = vec![0.0; ROWS * k];
    let mut block = [[0.0f32; PANEL]; ROWS];
    for (panel_index, panel) in b.panels.chunks_exact(k * PANEL).enumerate() {
        let (panel, _) = S::as_simd_f32s(panel);
        let first_column = panel_index * PANEL;
        let columns = PANEL.min(n - first_column);
        let mut row = 0;
        while row < m {
            let rows = ROWS.min(m - row);
            let source = if rows == ROWS {
                &a[row * k..(row + ROWS) * k]
            } else {
                padded[..rows * k].copy_from_slice(&a[row * k..(row + rows) * k]);
                padded[rows * k..].fill(0.0);
                &padded[..]
            };
            let sums = kernel::<S, ROWS, VECTORS>(simd, source, panel, k);
            for (r, sums_of_row) in sums.iter().enumerate().take(rows) {
                let (whole, _) = S::as_mut_simd_f32s(&mut block[r]);
                whole.copy_from_slice(sums_of_row);
                let at = (row + r) * n + first_column;
                let target = &mut out[at..at + columns];
                target.copy_from_slice(&block[r][..columns]);
                if let Some(bias) = bias {
                    target
                        .iter_mut()
                        .zip(&bias[first_column..first_column + columns])
                        .for_each(|(value, add)| *value += add);
                }
            }
            row += rows;
        }
    }
}

#[inline(always)]
fn kernel<S: pulp::Simd, const ROWS: usize, const VECTORS: usize>(
    simd: S,
    a: &[f32],
    panel: &[S::f32s],
    k: usize,
) -> [[S::f32s; VECTORS]; ROWS] {
    let mut sums = [[simd.splat_f32s(0.0); VECTORS]; ROWS];
    let panel = &panel[..k * VECTORS];
    let rows: [&[f32]; ROWS] = std::array::from_fn(|r| &a[r * k..(r + 1) * k]);
    for t in 0..k {
        let b_row: [S::f32s; VECTORS] = std::array::from_fn(|v| panel[t * VECTORS + v]);
        for r in 0..ROWS {
            let x = simd.splat_f32s(rows[r][t]);
            for v in 0..VECTORS {
                sums[r][v] = simd.mul_add_f32s(x, b_row[v], sums[r][v]);
            }
        }
    }
    sums
}

/// The same product without vector registers (CPUs `pulp` finds none on).
fn plain(a: &[f32], b: &Packed, bias: Option<&[f32]>, out: &mut [f32]) {
    let (k, n) = (b.k, b.n);
    for (row, out_row) in a.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        for (j, value) in out_row.iter_mut().enumerate() {
            let base = (j / PANEL) * k * PANEL + j % PANEL;
            let sum: f32 = row
                .iter()
                .enumerate()
                .map(|(t, x)| x * b.panels[base + t * PANEL])
                .sum();
            *value = sum + bias.map_or(0.0, |bias| bias[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(a: &[f32], b: &[f32], bias: Option<&[f32]>, k: usize) -> Vec<f64> {
        let (m, n) = (a.len() / k, b.len() / k);
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let sum: f64 = (0..k).map(|t| f64::from(a[i * k + t]) * f64::from(b[j * k + t])).sum();
                out[i * n + j] = sum + bias.map_or(0.0, |bias| f64::from(bias[j]));
            }
        }
        out
    }

    fn values(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    proptest! {
        #[test]
        fn products_agree_with_the_definition(
            m in 0usize..30, n in 1usize..70, k in 1usize..40, threads in 1usize..4, with_bias: bool, seed: u64,
        ) {
            let a = values(m * k, seed);
            let b = values(n * k, seed.wrapping_add(1));
            let bias = values(n, seed.wrapping_add(2));
            let bias = with_bias.then_some(bias.as_slice());
            let mut out = vec![f32::NAN; m * n];
            matmul_transposed(&a, &b, bias, k, &mut out, threads);
            for (got, expected) in out.iter().zip(naive(&a, &b, bias, k)) {
                prop_assert!((f64::from(*got) - expected).abs() < 1e-4, "{got} vs {expected}");
            }
            // The same matrix given as k rows of n.
            let mut rows = vec![0.0; k * n];
            for j in 0..n {
                for t in 0..k {
                    rows[t * n + j] = b[j * k + t];
                }
            }
            let mut again = vec![f32::NAN; m * n];
            matmul(&a, &Packed::from_rows(&rows, n), bias, &mut again, threads);
            prop_assert_eq!(&out, &again);
            let mut plainly = vec![f32::NAN; m * n];
            plain(&a, &Packed::from_transposed(&b, k), bias, &mut plainly);
            for (got, expected) in plainly.iter().zip(&out) {
                prop_assert!((got - expected).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn large_products_split_across_threads_agree() {
        let (m, n, k) = (61, 130, 384);
        let a = values(m * k, 7);
        let b = values(n * k, 11);
        let mut one = vec![0.0; m * n];
        let mut many = vec![0.0; m * n];
        matmul_transposed(&a, &b, None, k, &mut one, 1);
        matmul_transposed(&a, &b, None, k, &mut many, 3);
        assert_eq!(one, many);
        for (got, expected) in one.iter().zip(naive(&a, &b, None, k)) {
            assert!((f64::from(*got) - expected).abs() < 1e-3);
        }
    }
}
