//! Single-precision GEMM used by every conv and dense kernel.
//!
//! `C = alpha · A·B + beta · C` with A (m×k), B (k×n), C (m×n). A and B are
//! addressed through arbitrary row/column strides (so transposes are free), C
//! is row-major with a leading dimension. `beta == 0` never reads C (so C may
//! hold garbage or NaN).
//!
//! On x86-64 with AVX2+FMA a 6×16 register-blocked microkernel is used; A is
//! broadcast straight from its strided storage (no packing), B is read in
//! place when its columns are contiguous and otherwise packed into a 16-wide
//! panel on the stack. Nothing is allocated. Every C element is computed by
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

/// Rows of C per microkernel call.
pub const MR: usize = 6;
/// Columns of C per microkernel call.
pub const NR: usize = 16;

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

/// `C = alpha·A·B + beta·C`, single-threaded.
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
    unsafe { sgemm_unchecked(m, n, k, alpha, a, b, beta, c.as_mut_ptr(), ldc) }
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
const PAR_ROWS: usize = 16 * MR;
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
            unsafe { sgemm_unchecked(m, cols, k, alpha, a, b_t, beta, cp.get().add(j0), ldc) };
        });
        return;
    }
    // At least 4 tasks per thread (so e.g. m = 288 on 2 threads is not split
    // 2:1), at most PAR_ROWS rows each, whole micro-rows. The split does not
    // change any C element's arithmetic, so results stay bit-identical.
    let per = (m.div_ceil(4 * rayon::current_num_threads()).div_ceil(MR) * MR).clamp(MR, PAR_ROWS);
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
        unsafe { sgemm_unchecked(rows, n, k, alpha, a_t, b, beta, cp.get().add(i0 * ldc), ldc) };
    });
}

/// # Safety
/// A (m×k), B (k×n) must be in bounds of their slices; C must be valid for
/// writes of `(m-1)*ldc + n` floats and not aliased. m, n, k > 0.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_unchecked(
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
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA; the rest per this fn's contract.
            unsafe { avx2::sgemm(m, n, k, alpha, a, b, beta, c, ldc) };
            return;
        }
    }
    // SAFETY: per this fn's contract.
    unsafe { sgemm_portable(m, n, k, alpha, a, b, beta, c, ldc) }
}

/// Whether the AVX2+FMA microkernel is used on this CPU.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::atomic::{AtomicU8, Ordering};
        static STATE: AtomicU8 = AtomicU8::new(0);
        match STATE.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let yes = std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::env::var_os("NETLOOM_NO_SIMD").is_none();
                STATE.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
                yes
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Portable blocked fallback.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_portable(
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
    let mut acc = [0f32; NR];
    for i in 0..m {
        // SAFETY: row i of C is in bounds per contract.
        let crow = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), n) };
        for j0 in (0..n).step_by(NR) {
            let nr = NR.min(n - j0);
            acc[..nr].fill(0.0);
            for p in 0..k {
                let av = a.data[i * a.rs + p * a.cs];
                let boff = p * b.rs + j0 * b.cs;
                for (jj, acc) in acc[..nr].iter_mut().enumerate() {
                    *acc += av * b.data[boff + jj * b.cs];
                }
            }
            for jj in 0..nr {
                let v = &mut crow[j0 + jj];
                *v = if beta == 0.0 {
                    alpha * acc[jj]
                } else {
                    alpha * acc[jj] + beta * *v
                };
            }
        }
    }
}

/// Weight-gradient block of direct convolution: for the `mr` ≤ 6 consecutive
/// im2col columns starting at `a_off`,
/// `C[r][j] += Σ_p src[rows[p] + a_off + r] · dy[p·ldd + j]` over pixels `p <
/// rows.len()`, `j < n`. `n` must be a multiple of 16. Returns false (doing
/// nothing) without AVX2+FMA or with other `n`; callers then use im2col.
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
    if !n.is_multiple_of(NR) || !has_avx2_fma() || !(1..=MR).contains(&mr) {
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
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: bounds checked above; CPU features checked.
        unsafe {
            avx2::conv_dw_rows(
                src.as_ptr().add(a_off),
                rows,
                mr,
                dy.as_ptr(),
                ldd,
                n,
                c.as_mut_ptr(),
                ldc,
            )
        };
        return true;
    }
    #[allow(unreachable_code)]
    false
}

/// Floats of a B matrix (k × n) packed by [`pack_b`].
pub fn packed_b_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * NR * k
}

/// Packs B (k × n) into 16-wide, k-major panels (zero-padded), the layout
/// [`conv_rows`] reads.
pub fn pack_b(k: usize, n: usize, b: MatRef<'_>, out: &mut [f32]) {
    b.check(k, n, "B");
    assert!(out.len() >= packed_b_len(k, n), "pack_b: output too small");
    for (jp, panel) in out
        .chunks_exact_mut(NR * k)
        .take(n.div_ceil(NR))
        .enumerate()
    {
        for p in 0..k {
            for jj in 0..NR {
                let j = jp * NR + jj;
                panel[p * NR + jj] = if j < n {
                    b.data[p * b.rs + j * b.cs]
                } else {
                    0.0
                };
            }
        }
    }
}

/// One implicit-im2col GEMM tile, the core of direct convolution:
/// `C[i][j] = bias[j] + Σ_seg Σ_q A_i[seg·seg_stride + q] · B[seg·seg_len + q][j]`
/// for rows `i < rows.len()` where `A_i` starts at `src[rows[i]]`, `q <
/// seg_len`, and B (`n_seg·seg_len` × `n`) was packed by [`pack_b`]. C is
/// row-major with leading dimension `ldc`, overwritten. Returns false (doing
/// nothing) if the CPU lacks AVX2+FMA; callers then use im2col + [`sgemm`].
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
) -> bool {
    let k = n_seg * seg_len;
    assert!(
        bpack.len() >= packed_b_len(k, n),
        "conv_rows: packed B too small"
    );
    if let Some(b) = bias {
        assert!(b.len() >= n, "conv_rows: bias too short");
    }
    if rows.is_empty() || n == 0 {
        return true;
    }
    check_c(rows.len(), n, c, ldc);
    let span = (n_seg - 1) * seg_stride + seg_len;
    for &r in rows {
        assert!(r + span <= src.len(), "conv_rows: row out of bounds");
    }
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: bounds checked above; CPU features checked.
            unsafe {
                avx2::conv_rows(
                    src.as_ptr(),
                    rows,
                    n_seg,
                    seg_len,
                    seg_stride,
                    bpack.as_ptr(),
                    n,
                    bias.map(|b| b.as_ptr()),
                    c.as_mut_ptr(),
                    ldc,
                )
            };
            return true;
        }
    }
    false
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MR, MatRef, NR};
    use std::arch::x86_64::*;

    /// Max depth of one pass over k.
    const KC: usize = 256;
    /// Columns of B packed per block (4 panels of 16).
    const NC: usize = 64;
    /// Rows of A packed per block when A is not row-contiguous.
    const MC: usize = 72;

    /// BLIS-style loop nest: for each NC block of columns and KC slice of k,
    /// B is packed into contiguous 16-wide panels (zero-padded); A is read in
    /// place when its rows are contiguous (cs == 1) and otherwise packed into
    /// MR-row micro-panels. The packed B panel (≤ 16 KB) stays in L1 while
    /// the micro-rows of A stream from L2.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn sgemm(
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
        // Uninitialised scratch (zeroing 136 KB per call would cost more than
        // packing); only elements written by the packing loops are read.
        let mut bpack_mem = std::mem::MaybeUninit::<[f32; KC * NC]>::uninit();
        let mut apack_mem = std::mem::MaybeUninit::<[f32; MC * KC]>::uninit();
        let bpack = bpack_mem.as_mut_ptr() as *mut f32;
        let apack = apack_mem.as_mut_ptr() as *mut f32;
        let ap = a.data.as_ptr();
        let bp = b.data.as_ptr();
        let pack_a = a.cs != 1;
        // With few rows each B panel is used only a few times: packing it
        // would cost more than the L1 misses of reading it in place.
        let direct_b = b.cs == 1 && m <= 8 * MR;
        // Even k slices (e.g. 288 → 144 + 144, not 256 + 32).
        let kslices = k.div_ceil(KC);
        let kc_even = k.div_ceil(kslices);
        let mut jc = 0;
        while jc < n {
            let nc = NC.min(n - jc);
            let panels = nc.div_ceil(NR);
            let mut k0 = 0;
            while k0 < k {
                let kc = kc_even.min(k - k0);
                let beta_eff = if k0 == 0 { beta } else { 1.0 };
                // Pack B[k0..k0+kc, jc..jc+nc] as `panels` blocks of kc×16.
                // SAFETY (whole fn): indices stay within the checked A/B/C ranges.
                for jp in 0..panels {
                    let j0 = jc + jp * NR;
                    let nr = NR.min(n - j0);
                    if direct_b && nr == NR {
                        continue;
                    }
                    let dst = unsafe { bpack.add(jp * kc * NR) };
                    if b.cs == 1 && nr == NR {
                        for p in 0..kc {
                            let src = unsafe { bp.add((k0 + p) * b.rs + j0) };
                            unsafe {
                                let d = dst.add(p * NR);
                                _mm256_storeu_ps(d, _mm256_loadu_ps(src));
                                _mm256_storeu_ps(d.add(8), _mm256_loadu_ps(src.add(8)));
                            }
                        }
                    } else {
                        for p in 0..kc {
                            for jj in 0..NR {
                                let v = if jj < nr {
                                    unsafe { *bp.add((k0 + p) * b.rs + (j0 + jj) * b.cs) }
                                } else {
                                    0.0
                                };
                                unsafe { dst.add(p * NR + jj).write(v) };
                            }
                        }
                    }
                }
                let mut ic = 0;
                while ic < m {
                    let mc = if pack_a { MC.min(m - ic) } else { m - ic };
                    if pack_a {
                        // Micro-panel r holds rows ic+6r.., laid out [p][row].
                        for mp in 0..mc.div_ceil(MR) {
                            let chunk = unsafe { apack.add(mp * MR * kc) };
                            let i0 = ic + mp * MR;
                            let mr = MR.min(m - i0);
                            for p in 0..kc {
                                for r in 0..mr {
                                    unsafe {
                                        chunk
                                            .add(p * MR + r)
                                            .write(*ap.add((i0 + r) * a.rs + (k0 + p) * a.cs))
                                    };
                                }
                            }
                        }
                    }
                    for jp in 0..panels {
                        let j0 = jc + jp * NR;
                        let nr = NR.min(n - j0);
                        let (panel, ldb) = if direct_b && nr == NR {
                            (unsafe { bp.add(k0 * b.rs + j0) }, b.rs)
                        } else {
                            (unsafe { bpack.add(jp * kc * NR) as *const f32 }, NR)
                        };
                        let mut ir = 0;
                        while ir < mc {
                            let mr = MR.min(mc - ir);
                            let (a_blk, rsa, csa) = if pack_a {
                                (
                                    unsafe { apack.add((ir / MR) * MR * kc) as *const f32 },
                                    1,
                                    MR,
                                )
                            } else {
                                (unsafe { ap.add((ic + ir) * a.rs + k0) }, a.rs, 1)
                            };
                            let args = Args {
                                kc,
                                a: a_blk,
                                rsa,
                                csa,
                                b: panel,
                                ldb,
                                c: unsafe { c.add((ic + ir) * ldc + j0) },
                                ldc,
                                nr,
                                alpha,
                                beta: beta_eff,
                            };
                            unsafe {
                                match mr {
                                    6 => kernel::<6>(&args),
                                    5 => kernel::<5>(&args),
                                    4 => kernel::<4>(&args),
                                    3 => kernel::<3>(&args),
                                    2 => kernel::<2>(&args),
                                    _ => kernel::<1>(&args),
                                }
                            }
                            ir += MR;
                        }
                    }
                    ic += mc;
                }
                k0 += kc;
            }
            jc += nc;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn conv_rows(
        src: *const f32,
        rows: &[usize],
        n_seg: usize,
        seg_len: usize,
        seg_stride: usize,
        bpack: *const f32,
        n: usize,
        bias: Option<*const f32>,
        c: *mut f32,
        ldc: usize,
    ) {
        let k = n_seg * seg_len;
        let zeros = [0f32; NR];
        let mut biasbuf = [0f32; NR];
        for jp in 0..n.div_ceil(NR) {
            let j0 = jp * NR;
            let nr = NR.min(n - j0);
            let bias_p = match bias {
                Some(b) => {
                    for (jj, v) in biasbuf.iter_mut().enumerate() {
                        *v = if jj < nr {
                            unsafe { *b.add(j0 + jj) }
                        } else {
                            0.0
                        };
                    }
                    biasbuf.as_ptr()
                }
                None => zeros.as_ptr(),
            };
            let panel = unsafe { bpack.add(jp * k * NR) };
            let mut ir = 0;
            while ir < rows.len() {
                let mr = MR.min(rows.len() - ir);
                let s = Seg {
                    rows: &rows[ir..ir + mr],
                    src,
                    n_seg,
                    seg_len,
                    seg_stride,
                    b: panel,
                    bias: bias_p,
                    c: unsafe { c.add(ir * ldc + j0) },
                    ldc,
                    nr,
                };
                unsafe {
                    match mr {
                        6 => seg_kernel::<6>(&s),
                        5 => seg_kernel::<5>(&s),
                        4 => seg_kernel::<4>(&s),
                        3 => seg_kernel::<3>(&s),
                        2 => seg_kernel::<2>(&s),
                        _ => seg_kernel::<1>(&s),
                    }
                }
                ir += MR;
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn conv_dw_rows(
        src: *const f32,
        rows: &[usize],
        mr: usize,
        dy: *const f32,
        ldd: usize,
        n: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        for j0 in (0..n).step_by(NR) {
            // SAFETY: per the caller's bounds checks.
            unsafe {
                let (d, cc) = (dy.add(j0), c.add(j0));
                match mr {
                    6 => dw_kernel::<6>(src, rows, d, ldd, cc, ldc),
                    5 => dw_kernel::<5>(src, rows, d, ldd, cc, ldc),
                    4 => dw_kernel::<4>(src, rows, d, ldd, cc, ldc),
                    3 => dw_kernel::<3>(src, rows, d, ldd, cc, ldc),
                    2 => dw_kernel::<2>(src, rows, d, ldd, cc, ldc),
                    _ => dw_kernel::<1>(src, rows, d, ldd, cc, ldc),
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn dw_kernel<const R: usize>(
        src: *const f32,
        rows: &[usize],
        dy: *const f32,
        ldd: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: per the caller's bounds checks.
        unsafe {
            let mut acc0 = [_mm256_setzero_ps(); R];
            let mut acc1 = [_mm256_setzero_ps(); R];
            for r in 0..R {
                acc0[r] = _mm256_loadu_ps(c.add(r * ldc));
                acc1[r] = _mm256_loadu_ps(c.add(r * ldc + 8));
            }
            let mut dp = dy;
            // Two pixels per iteration: halves the loop overhead.
            let pairs = rows.chunks_exact(2);
            let rest = pairs.remainder();
            for pair in pairs {
                let (a, a2) = (src.add(pair[0]), src.add(pair[1]));
                let b0 = _mm256_loadu_ps(dp);
                let b1 = _mm256_loadu_ps(dp.add(8));
                for r in 0..R {
                    let av = _mm256_broadcast_ss(&*a.add(r));
                    acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
                }
                let b0 = _mm256_loadu_ps(dp.add(ldd));
                let b1 = _mm256_loadu_ps(dp.add(ldd + 8));
                for r in 0..R {
                    let av = _mm256_broadcast_ss(&*a2.add(r));
                    acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
                }
                dp = dp.add(2 * ldd);
            }
            for &off in rest {
                let b0 = _mm256_loadu_ps(dp);
                let b1 = _mm256_loadu_ps(dp.add(8));
                let a = src.add(off);
                for r in 0..R {
                    let av = _mm256_broadcast_ss(&*a.add(r));
                    acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
                }
            }
            for r in 0..R {
                _mm256_storeu_ps(c.add(r * ldc), acc0[r]);
                _mm256_storeu_ps(c.add(r * ldc + 8), acc1[r]);
            }
        }
    }

    struct Seg<'a> {
        rows: &'a [usize],
        src: *const f32,
        n_seg: usize,
        seg_len: usize,
        seg_stride: usize,
        b: *const f32,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
        nr: usize,
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn seg_kernel<const R: usize>(s: &Seg<'_>) {
        // SAFETY: row spans and the packed panel were bounds-checked by the caller.
        unsafe {
            let bias0 = _mm256_loadu_ps(s.bias);
            let bias1 = _mm256_loadu_ps(s.bias.add(8));
            let mut acc0 = [bias0; R];
            let mut acc1 = [bias1; R];
            let mut arow = [std::ptr::null::<f32>(); R];
            for (r, p) in arow.iter_mut().enumerate() {
                *p = s.src.add(s.rows[r]);
            }
            let mut bptr = s.b;
            for seg in 0..s.n_seg {
                let off = seg * s.seg_stride;
                for q in 0..s.seg_len {
                    let b0 = _mm256_loadu_ps(bptr);
                    let b1 = _mm256_loadu_ps(bptr.add(8));
                    for r in 0..R {
                        let av = _mm256_broadcast_ss(&*arow[r].add(off + q));
                        acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                        acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
                    }
                    bptr = bptr.add(NR);
                }
            }
            if s.nr == NR {
                for r in 0..R {
                    let cr = s.c.add(r * s.ldc);
                    _mm256_storeu_ps(cr, acc0[r]);
                    _mm256_storeu_ps(cr.add(8), acc1[r]);
                }
            } else {
                let mut tmp = [0f32; NR];
                for r in 0..R {
                    let cr = s.c.add(r * s.ldc);
                    _mm256_storeu_ps(tmp.as_mut_ptr(), acc0[r]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), acc1[r]);
                    for (jj, t) in tmp.iter().enumerate().take(s.nr) {
                        *cr.add(jj) = *t;
                    }
                }
            }
        }
    }

    struct Args {
        kc: usize,
        a: *const f32,
        rsa: usize,
        csa: usize,
        /// B panel: kc rows of 16 contiguous floats, `ldb` apart.
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        nr: usize,
        alpha: f32,
        beta: f32,
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn kernel<const R: usize>(s: &Args) {
        let mut acc0 = [_mm256_setzero_ps(); R];
        let mut acc1 = [_mm256_setzero_ps(); R];
        let mut arow = [std::ptr::null::<f32>(); R];
        for (r, p) in arow.iter_mut().enumerate() {
            *p = unsafe { s.a.add(r * s.rsa) };
        }
        let mut bptr = s.b;
        let mut aoff = 0;
        // SAFETY: kc rows of the B panel (16 wide) and kc columns of R rows of A are in bounds.
        unsafe {
            for _ in 0..s.kc {
                let b0 = _mm256_loadu_ps(bptr);
                let b1 = _mm256_loadu_ps(bptr.add(8));
                for r in 0..R {
                    let av = _mm256_broadcast_ss(&*arow[r].add(aoff));
                    acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
                }
                bptr = bptr.add(s.ldb);
                aoff += s.csa;
            }
            let va = _mm256_set1_ps(s.alpha);
            let vb = _mm256_set1_ps(s.beta);
            if s.nr == NR {
                for r in 0..R {
                    let cr = s.c.add(r * s.ldc);
                    let (mut v0, mut v1) = if s.alpha == 1.0 {
                        (acc0[r], acc1[r])
                    } else {
                        (_mm256_mul_ps(acc0[r], va), _mm256_mul_ps(acc1[r], va))
                    };
                    if s.beta == 1.0 {
                        v0 = _mm256_add_ps(_mm256_loadu_ps(cr), v0);
                        v1 = _mm256_add_ps(_mm256_loadu_ps(cr.add(8)), v1);
                    } else if s.beta != 0.0 {
                        v0 = _mm256_fmadd_ps(_mm256_loadu_ps(cr), vb, v0);
                        v1 = _mm256_fmadd_ps(_mm256_loadu_ps(cr.add(8)), vb, v1);
                    }
                    _mm256_storeu_ps(cr, v0);
                    _mm256_storeu_ps(cr.add(8), v1);
                }
            } else {
                let mut tmp = [0f32; NR];
                for r in 0..R {
                    let cr = s.c.add(r * s.ldc);
                    _mm256_storeu_ps(tmp.as_mut_ptr(), _mm256_mul_ps(acc0[r], va));
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), _mm256_mul_ps(acc1[r], va));
                    for (jj, t) in tmp.iter().enumerate().take(s.nr) {
                        let cv = cr.add(jj);
                        *cv = if s.beta != 0.0 {
                            s.beta.mul_add(*cv, *t)
                        } else {
                            *t
                        };
                    }
                }
            }
        }
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
