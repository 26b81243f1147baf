//! Single-precision GEMM used by every conv and dense kernel.
//!
//! `C = alpha · A·B + beta · C` with A (m×k), B (k×n), C (m×n). A and B are
//! addressed through arbitrary row/column strides (so transposes are free), C
//! is row-major with a leading dimension. `beta == 0` never reads C (so C may
//! hold garbage or NaN).
//!
//! A register-blocked microkernel of the process's kernel set
//! ([`super::isa`]; 12×32 with AVX-512, 6×16 with AVX2 or NEON, 2×16
//! portable, see [`super::micro`]) does the work; A is broadcast straight
//! from its strided storage (packed only when its rows are strided), B is
//! read in place when its columns are contiguous and few rows use it, and
//! otherwise packed into 16-wide panels on the stack. Nothing is allocated. Every C element is computed by
//! one thread with a fixed summation order, so results are bit-identical for
//! the same inputs whatever the thread count ([`par_sgemm`] splits rows only).

use rayon::prelude::*;

/// A read-only strided matrix: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major matrix with leading dimension `ld`.
    pub fn row_major(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with leading dimension `ld`.
    pub fn transposed(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: ld,
        }
    }
    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows == 0 || cols == 0 {
            return;
        }
        let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
        assert!(
            last < self.data.len(),
            "sgemm: {what} ({rows}×{cols}, rs {}, cs {}) needs {} elements, has {}",
            self.rs,
            self.cs,
            last + 1,
            self.data.len()
        );
    }
}

use super::isa::{KernelSet, active};
use super::micro;
pub use super::micro::NR;

/// Row granularity of [`par_sgemm`]'s split: a multiple of every kernel
/// set's rows per microkernel call, so tasks hold whole micro-rows.
const MR_SPLIT: usize = 12;

fn check_c(m: usize, n: usize, c: &[f32], ldc: usize) {
    if m > 0 && n > 0 {
        assert!(ldc >= n, "sgemm: ldc {ldc} < n {n}");
        assert!(
            (m - 1) * ldc + n <= c.len(),
            "sgemm: C ({m}×{n}, ldc {ldc}) needs {} elements, has {}",
            (m - 1) * ldc + n,
            c.len()
        );
    }
}

/// Panics unless this CPU can run `set` (running it otherwise is undefined).
fn assert_runs(set: KernelSet) {
    assert!(
        set.supported(),
        "kernel set {set} is not supported by this CPU"
    );
}

/// `C = alpha·A·B + beta·C`, single-threaded, with the process's kernel set.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    sgemm_on(active(), m, n, k, alpha, a, b, beta, c, ldc)
}

/// [`sgemm`] with the kernels of `set` (which this CPU must support).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_on(
    set: KernelSet,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    assert_runs(set);
    if m == 0 || n == 0 {
        return;
    }
    check_c(m, n, c, ldc);
    if k == 0 {
        for i in 0..m {
            scale_row(&mut c[i * ldc..i * ldc + n], beta);
        }
        return;
    }
    a.check(m, k, "A");
    b.check(k, n, "B");
    // SAFETY: bounds of A, B and C were checked above for the full ranges used.
    unsafe { sgemm_unchecked(set, m, n, k, alpha, a, b, beta, c.as_mut_ptr(), ldc) }
}

fn scale_row(row: &mut [f32], beta: f32) {
    if beta == 0.0 {
        row.fill(0.0);
    } else if beta != 1.0 {
        row.iter_mut().for_each(|v| *v *= beta);
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint row ranges of C to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows of C handled by one rayon task in [`par_sgemm`].
const PAR_ROWS: usize = 8 * MR_SPLIT;
/// Columns of C per task when [`par_sgemm`] splits columns (few rows).
const PAR_COLS: usize = 4 * NR;

/// `C = alpha·A·B + beta·C`, rows of C split across the rayon pool. Gives the
/// same bits as [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub fn par_sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let set = active();
    // Small products are not worth a fork.
    if (m as u64) * (n as u64) * (k as u64) < 1 << 18
        || k == 0
        || (m <= PAR_ROWS && n < 2 * PAR_COLS)
    {
        return sgemm(m, n, k, alpha, a, b, beta, c, ldc);
    }
    check_c(m, n, c, ldc);
    a.check(m, k, "A");
    b.check(k, n, "B");
    let cp = SendPtr(c.as_mut_ptr());
    if m < 2 * PAR_ROWS {
        // Few rows (e.g. a dense layer at small batch): split columns instead.
        let tasks = n.div_ceil(PAR_COLS);
        (0..tasks).into_par_iter().for_each(|t| {
            let j0 = t * PAR_COLS;
            let cols = PAR_COLS.min(n - j0);
            let b_t = MatRef {
                data: &b.data[j0 * b.cs..],
                ..b
            };
            // SAFETY: tasks own disjoint column ranges of C; bounds checked above.
            unsafe { sgemm_unchecked(set, m, cols, k, alpha, a, b_t, beta, cp.get().add(j0), ldc) };
        });
        return;
    }
    // At least 4 tasks per thread (so e.g. m = 288 on 2 threads is not split
    // 2:1), at most PAR_ROWS rows each, whole micro-rows. The split does not
    // change any C element's arithmetic, so results stay bit-identical.
    let per = (m
        .div_ceil(4 * rayon::current_num_threads())
        .div_ceil(MR_SPLIT)
        * MR_SPLIT)
        .clamp(MR_SPLIT, PAR_ROWS);
    let tasks = m.div_ceil(per);
    (0..tasks).into_par_iter().for_each(|t| {
        let i0 = t * per;
        let rows = per.min(m - i0);
        let a_t = MatRef {
            data: &a.data[i0 * a.rs..],
            ..a
        };
        // SAFETY: tasks own disjoint row ranges [i0, i0+rows) of C, all in bounds
        // (checked above); A/B bounds checked above.
        unsafe {
            sgemm_unchecked(
                set,
                rows,
                n,
                k,
                alpha,
                a_t,
                b,
                beta,
                cp.get().add(i0 * ldc),
                ldc,
            )
        };
    });
}

/// `$item` (a call or a constant) from the microkernel module of kernel set
/// `$set`: the one place a set is mapped to its instantiation in [`micro`].
macro_rules! on_set {
    ($set:expr, $($item:tt)+) => {
        match $set {
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx512 => {
                use micro::avx512 as set_kernels;
                set_kernels::$($item)+
            }
            #[cfg(target_arch = "x86_64")]
            KernelSet::Avx2 => {
                use micro::avx2 as set_kernels;
                set_kernels::$($item)+
            }
            #[cfg(target_arch = "aarch64")]
            KernelSet::Neon => {
                use micro::neon as set_kernels;
                set_kernels::$($item)+
            }
            _ => {
                use micro::portable as set_kernels;
                set_kernels::$($item)+
            }
        }
    };
}

/// # Safety
/// `set` runs on this CPU; A (m×k), B (k×n) must be in bounds of their
/// slices; C must be valid for writes of `(m-1)*ldc + n` floats and not
/// aliased. m, n, k > 0.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_unchecked(
    set: KernelSet,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    // SAFETY (every arm): the set is supported (checked by the callers) and
    // the bounds are as this fn's contract says.
    unsafe { on_set!(set, sgemm(m, n, k, alpha, a, b, beta, c, ldc)) }
}

/// Im2col columns one [`conv_dw_rows`] call handles at most with `set`.
pub fn dw_block_rows(set: KernelSet) -> usize {
    on_set!(set, MR)
}

/// Weight-gradient block of direct convolution: for the `mr` ≤
/// [`dw_block_rows`] consecutive im2col columns starting at `a_off`,
/// `C[r][j] += Σ_p src[rows[p] + a_off + r] · dy[p·ldd + j]` over pixels `p <
/// rows.len()`, `j < n`. `n` must be a multiple of 16. Returns false (doing
/// nothing) for other `n` or `mr`; callers then use im2col.
#[allow(clippy::too_many_arguments)]
pub fn conv_dw_rows(
    src: &[f32],
    rows: &[usize],
    a_off: usize,
    mr: usize,
    dy: &[f32],
    ldd: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
) -> bool {
    conv_dw_rows_on(active(), src, rows, a_off, mr, dy, ldd, n, c, ldc)
}

/// [`conv_dw_rows`] with the kernels of `set` (which this CPU must support).
#[allow(clippy::too_many_arguments)]
pub fn conv_dw_rows_on(
    set: KernelSet,
    src: &[f32],
    rows: &[usize],
    a_off: usize,
    mr: usize,
    dy: &[f32],
    ldd: usize,
    n: usize,
    c: &mut [f32],
    ldc: usize,
) -> bool {
    assert_runs(set);
    if !n.is_multiple_of(NR) || !(1..=dw_block_rows(set)).contains(&mr) {
        return false;
    }
    if rows.is_empty() || n == 0 {
        return true;
    }
    check_c(mr, n, c, ldc);
    assert!(
        (rows.len() - 1) * ldd + n <= dy.len(),
        "conv_dw_rows: dy too short"
    );
    for &r in rows {
        assert!(
            r + a_off + mr <= src.len(),
            "conv_dw_rows: row out of bounds"
        );
    }
    let (s, d, cp) = (
        unsafe { src.as_ptr().add(a_off) },
        dy.as_ptr(),
        c.as_mut_ptr(),
    );
    // SAFETY (every arm): bounds checked above; the set is supported.
    unsafe { on_set!(set, conv_dw_rows(s, rows, mr, d, ldd, n, cp, ldc)) }
    true
}

/// Floats of a B matrix (k × n) packed by [`pack_b`].
pub fn packed_b_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * NR * k
}

/// Packs B (k × n) into 16-wide, k-major panels (zero-padded), the layout
/// [`conv_rows`] reads. Panels are packed in parallel when B is large
/// (weights are packed once per call of a conv, outside its tiled loop).
pub fn pack_b(k: usize, n: usize, b: MatRef<'_>, out: &mut [f32]) {
    b.check(k, n, "B");
    assert!(out.len() >= packed_b_len(k, n), "pack_b: output too small");
    if k == 0 || n == 0 {
        return;
    }
    let out = &mut out[..packed_b_len(k, n)];
    if k * n < PAR_PACK_MIN {
        for (jp, panel) in out.chunks_exact_mut(NR * k).enumerate() {
            pack_panel(k, n, jp, b, panel);
        }
    } else {
        out.par_chunks_exact_mut(NR * k)
            .enumerate()
            .for_each(|(jp, panel)| pack_panel(k, n, jp, b, panel));
    }
}

/// Elements of B below which [`pack_b`] packs on the calling thread.
const PAR_PACK_MIN: usize = 1 << 16;

/// Rows of B transposed per block in [`pack_panel`], so the 16 columns it
/// writes stay in L1 while each source column is read contiguously.
const PACK_ROW_BLOCK: usize = 64;

/// Panel `jp` of [`pack_b`]: `panel[p·16 + jj] = B[p][jp·16 + jj]`, zero
/// past column `n`.
fn pack_panel(k: usize, n: usize, jp: usize, b: MatRef<'_>, panel: &mut [f32]) {
    let j0 = jp * NR;
    let width = NR.min(n - j0);
    if b.cs == 1 {
        // Rows of B are contiguous: one 16-float copy per row.
        for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
            row[..width].copy_from_slice(&b.data[p * b.rs + j0..][..width]);
            row[width..].fill(0.0);
        }
        return;
    }
    if width < NR {
        panel.fill(0.0);
    }
    // Columns of B are contiguous when B is a transpose (rs = 1): read each
    // column's run of a row block, write it with stride 16.
    for p0 in (0..k).step_by(PACK_ROW_BLOCK) {
        let rows = PACK_ROW_BLOCK.min(k - p0);
        for jj in 0..width {
            let col = (j0 + jj) * b.cs + p0 * b.rs;
            for (i, d) in panel[p0 * NR + jj..]
                .iter_mut()
                .step_by(NR)
                .take(rows)
                .enumerate()
            {
                *d = b.data[col + i * b.rs];
            }
        }
    }
}

/// One implicit-im2col GEMM tile, the core of direct convolution:
/// `C[i][j] = bias[j] + Σ_seg Σ_q A_i[seg·seg_stride + q] · B[seg·seg_len + q][j]`
/// for rows `i < rows.len()` where `A_i` starts at `src[rows[i]]`, `q <
/// seg_len`, and B (`n_seg·seg_len` × `n`) was packed by [`pack_b`]. C is
/// row-major with leading dimension `ldc`, overwritten.
#[allow(clippy::too_many_arguments)]
pub fn conv_rows(
    src: &[f32],
    rows: &[usize],
    n_seg: usize,
    seg_len: usize,
    seg_stride: usize,
    bpack: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
) {
    conv_rows_on(
        active(),
        src,
        rows,
        n_seg,
        seg_len,
        seg_stride,
        bpack,
        n,
        bias,
        c,
        ldc,
    )
}

/// [`conv_rows`] with the kernels of `set` (which this CPU must support).
#[allow(clippy::too_many_arguments)]
pub fn conv_rows_on(
    set: KernelSet,
    src: &[f32],
    rows: &[usize],
    n_seg: usize,
    seg_len: usize,
    seg_stride: usize,
    bpack: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
) {
    assert_runs(set);
    let k = n_seg * seg_len;
    assert!(
        bpack.len() >= packed_b_len(k, n),
        "conv_rows: packed B too small"
    );
    if let Some(b) = bias {
        assert!(b.len() >= n, "conv_rows: bias too short");
    }
    if rows.is_empty() || n == 0 || k == 0 {
        return;
    }
    check_c(rows.len(), n, c, ldc);
    let span = (n_seg - 1) * seg_stride + seg_len;
    for &r in rows {
        assert!(r + span <= src.len(), "conv_rows: row out of bounds");
    }
    let (s, bp, bias, cp) = (
        src.as_ptr(),
        bpack.as_ptr(),
        bias.map(|b| b.as_ptr()),
        c.as_mut_ptr(),
    );
    // SAFETY (every arm): bounds checked above; the set is supported.
    unsafe {
        on_set!(
            set,
            conv_rows(s, rows, n_seg, seg_len, seg_stride, bp, n, bias, cp, ldc)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::Rng;

    fn naive(m: usize, n: usize, k: usize, a: MatRef, b: MatRef) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] +=
                        a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn matches_naive_all_layouts_and_edges() {
        let mut rng = Rng::new(1);
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 5),
            (13, 32, 33),
            (6, 16, 600),
            (100, 70, 9),
            (250, 3, 40),
        ] {
            let av = rng.vec(m * k);
            let bv = rng.vec(k * n);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = if ta {
                    MatRef::transposed(&av, m)
                } else {
                    MatRef::row_major(&av, k)
                };
                let b = if tb {
                    MatRef::transposed(&bv, k)
                } else {
                    MatRef::row_major(&bv, n)
                };
                let want = naive(m, n, k, a, b);
                let ldc = n + 3;
                let c0 = rng.vec(m * ldc);
                for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 1.0), (2.0, -0.5)] {
                    let mut c = c0.clone();
                    let mut cp = c0.clone();
                    sgemm(m, n, k, alpha, a, b, beta, &mut c, ldc);
                    par_sgemm(m, n, k, alpha, a, b, beta, &mut cp, ldc);
                    assert_eq!(c, cp, "par_sgemm must give the same bits");
                    for i in 0..m {
                        for j in 0..n {
                            let w = alpha as f64 * want[i * n + j]
                                + beta as f64 * c0[i * ldc + j] as f64;
                            let got = c[i * ldc + j] as f64;
                            assert!(
                                (got - w).abs() <= 1e-4 * (1.0 + w.abs()) * (k as f64).sqrt(),
                                "m{m} n{n} k{k} ta{ta} tb{tb}: {got} vs {w}"
                            );
                        }
                        // padding columns untouched
                        for j in n..ldc {
                            assert_eq!(c[i * ldc + j], c0[i * ldc + j]);
                        }
                    }
                }
            }
        }
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}: element {i}: {x} vs {y}"
            );
        }
    }

    /// Every kernel set this CPU runs gives portable's results (to
    /// rounding: FMA contraction differs) on shapes that take every
    /// microkernel size: paired and single panels, partial panels, row
    /// remainders, strided and packed A, in-place and packed B.
    #[test]
    fn every_supported_set_matches_portable() {
        let mut rng = Rng::new(7);
        let sets = KernelSet::all_supported();
        assert!(sets.contains(&active()));
        for &(m, n, k) in &[(29, 40, 13), (100, 64, 300), (7, 33, 5), (150, 96, 40)] {
            let av = rng.vec(m * k);
            let bv = rng.vec(k * n);
            let c0 = rng.vec(m * n);
            for (ta, tb) in [(false, false), (true, true)] {
                let a = if ta {
                    MatRef::transposed(&av, m)
                } else {
                    MatRef::row_major(&av, k)
                };
                let b = if tb {
                    MatRef::transposed(&bv, k)
                } else {
                    MatRef::row_major(&bv, n)
                };
                let run = |set| {
                    let mut c = c0.clone();
                    sgemm_on(set, m, n, k, 0.5, a, b, -1.0, &mut c, n);
                    c
                };
                let want = run(KernelSet::Portable);
                for &set in &sets {
                    close(&run(set), &want, &format!("sgemm {set} {m}x{n}x{k}"));
                }
            }
        }
        // conv_rows: 3 segments of 5 taps, 29 rows, 40 columns, with bias.
        let (n_seg, seg_len, seg_stride, n) = (3, 5, 11, 40);
        let rows: Vec<usize> = (0..29).map(|i| i * 3).collect();
        let src = rng.vec(29 * 3 + 2 * seg_stride + seg_len);
        let w = rng.vec(n_seg * seg_len * n);
        let bias = rng.vec(n);
        let mut bp = vec![0.0; packed_b_len(n_seg * seg_len, n)];
        pack_b(n_seg * seg_len, n, MatRef::row_major(&w, n), &mut bp);
        let run = |set| {
            let mut c = vec![f32::NAN; rows.len() * (n + 1)];
            conv_rows_on(
                set,
                &src,
                &rows,
                n_seg,
                seg_len,
                seg_stride,
                &bp,
                n,
                Some(&bias),
                &mut c,
                n + 1,
            );
            // The padding column is not written.
            for r in c.chunks(n + 1) {
                assert!(r.get(n).is_none_or(|v| v.is_nan()));
            }
            c.chunks(n + 1)
                .flat_map(|r| r[..n].to_vec())
                .collect::<Vec<_>>()
        };
        let want = run(KernelSet::Portable);
        for &set in &sets {
            close(&run(set), &want, &format!("conv_rows {set}"));
        }
        // conv_dw_rows: 48 columns (a pair and a single panel), every block height.
        let n = 48;
        let dy = rng.vec(rows.len() * n);
        let c0 = rng.vec(12 * n);
        for &set in &sets {
            for mr in 1..=dw_block_rows(set) {
                let mut c = c0.clone();
                assert!(conv_dw_rows_on(
                    set, &src, &rows, 2, mr, &dy, n, n, &mut c, n
                ));
                let mut want = c0.clone();
                for r in 0..mr {
                    for j in 0..n {
                        let s: f64 = (rows.iter().enumerate())
                            .map(|(p, &o)| src[o + 2 + r] as f64 * dy[p * n + j] as f64)
                            .sum();
                        want[r * n + j] = (c0[r * n + j] as f64 + s) as f32;
                    }
                }
                close(&c, &want, &format!("dw {set} mr {mr}"));
            }
            assert!(!conv_dw_rows_on(
                set,
                &src,
                &rows,
                0,
                1,
                &dy,
                n,
                40,
                &mut [0.0; 480],
                40
            ));
        }
    }

    /// `pack_b` lays out `B[p][j]` at `panel j/16, row p, lane j%16`, zero
    /// past `n`, for row-major, transposed and generally strided B, on the
    /// serial (small) and parallel (large) paths.
    #[test]
    fn pack_b_matches_its_definition() {
        let mut rng = Rng::new(11);
        let shapes = [(5, 7), (13, 40), (300, 33), (257, 512), (70, 1000)];
        assert!(shapes.iter().any(|&(k, n)| k * n < PAR_PACK_MIN));
        assert!(shapes.iter().any(|&(k, n)| k * n >= PAR_PACK_MIN));
        for &(k, n) in &shapes {
            let data = rng.vec(3 * k * n);
            for b in [
                MatRef::row_major(&data, n),
                MatRef::transposed(&data, k),
                MatRef {
                    data: &data,
                    rs: 2,
                    cs: 2 * k + 1,
                },
            ] {
                let mut out = vec![f32::NAN; packed_b_len(k, n)];
                pack_b(k, n, b, &mut out);
                for (i, v) in out.iter().enumerate() {
                    let (jp, p, jj) = (i / (NR * k), i % (NR * k) / NR, i % NR);
                    let j = jp * NR + jj;
                    let want = if j < n {
                        b.data[p * b.rs + j * b.cs]
                    } else {
                        0.0
                    };
                    assert_eq!(v.to_bits(), want.to_bits(), "k {k} n {n} rs {}", b.rs);
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan() {
        let a = [1.0f32; 12];
        let b = [1.0f32; 12];
        let mut c = [f32::NAN; 9];
        sgemm(
            3,
            3,
            4,
            1.0,
            MatRef::row_major(&a, 4),
            MatRef::row_major(&b, 3),
            0.0,
            &mut c,
            3,
        );
        assert!(c.iter().all(|&v| v == 4.0));
    }

    #[test]
    fn par_large_is_deterministic() {
        let mut rng = Rng::new(2);
        let (m, n, k) = (1000, 32, 72);
        // few rows, many columns: the column split
        let (a2, b2) = (rng.vec(20 * 300), rng.vec(300 * 500));
        let (mut w1, mut w2) = (vec![0.0; 20 * 500], vec![0.0; 20 * 500]);
        par_sgemm(
            20,
            500,
            300,
            1.0,
            MatRef::row_major(&a2, 300),
            MatRef::row_major(&b2, 500),
            0.0,
            &mut w1,
            500,
        );
        sgemm(
            20,
            500,
            300,
            1.0,
            MatRef::row_major(&a2, 300),
            MatRef::row_major(&b2, 500),
            0.0,
            &mut w2,
            500,
        );
        assert_eq!(w1, w2);
        let a = rng.vec(m * k);
        let b = rng.vec(k * n);
        let mut c1 = vec![0.0; m * n];
        let mut c2 = vec![0.0; m * n];
        par_sgemm(
            m,
            n,
            k,
            1.0,
            MatRef::row_major(&a, k),
            MatRef::row_major(&b, n),
            0.0,
            &mut c1,
            n,
        );
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            par_sgemm(
                m,
                n,
                k,
                1.0,
                MatRef::row_major(&a, k),
                MatRef::row_major(&b, n),
                0.0,
                &mut c2,
                n,
            )
        });
        assert_eq!(c1, c2);
    }
}
