//! The register-blocked microkernels behind [`super::gemm`], written once
//! (the [`microkernels!`] macro) and instantiated per kernel set with that
//! set's vector type and intrinsics:
//!
//! | module | vector | rows × 16-wide panels per call | accumulators |
//! |---|---|---|---|
//! | `avx512` | `__m512` (16 lanes) | 12 × 2 | 24 zmm of 32 |
//! | `avx2` | `__m256` (8 lanes) | 6 × 1 | 12 ymm of 16 |
//! | `neon` | `float32x4_t` (4 lanes) | 6 × 1 | 24 q of 32 |
//! | `portable` | `[f32; 4]` (the compiler's choice of vector) | 2 × 1 | 8 of 16 xmm on baseline x86-64 |
//!
//! Each module provides `ld`/`st` (unaligned load/store of one vector),
//! `bc` (broadcast one float from memory), `splat`, `fma(a, b, c) = a·b + c`,
//! `mul`, `add`, and the constants `L` (lanes), `MR` (rows per call) and the
//! panel counts a call may take; the macro builds three entry points from
//! them — the strided GEMM loop nest, the implicit-im2col tile of direct
//! convolution and the weight-gradient block — that [`super::gemm`]
//! dispatches to. All four compute every output element with the same
//! summation order as each other up to FMA contraction, so they agree to
//! rounding (the tests compare every supported set with `portable`).

/// Floats per packed B panel row.
pub const NR: usize = 16;

/// Arguments of one GEMM microkernel call.
pub(crate) struct Args {
    pub kc: usize,
    pub a: *const f32,
    pub rsa: usize,
    pub csa: usize,
    /// B: `kc` rows of `P`·16 floats; row p of panel q at `b + p·ldb + q·pstride`.
    pub b: *const f32,
    pub ldb: usize,
    pub pstride: usize,
    pub c: *mut f32,
    pub ldc: usize,
    /// Valid columns of C (≤ P·16).
    pub nr: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// One implicit-im2col tile (see [`super::gemm::conv_rows`]).
pub(crate) struct Seg<'a> {
    pub rows: &'a [usize],
    pub src: *const f32,
    pub n_seg: usize,
    pub seg_len: usize,
    pub seg_stride: usize,
    /// First packed panel; the next at `+ k·16`.
    pub b: *const f32,
    pub pstride: usize,
    /// `P`·16 bias values (zero-padded).
    pub bias: *const f32,
    pub c: *mut f32,
    pub ldc: usize,
    pub nr: usize,
}

/// Expands `match $rows { R => $f::<R, P>(..) }` for the row counts listed.
macro_rules! by_rows {
    ($mr:expr, [$($r:literal)*], $f:ident, $p:literal, $args:tt) => {
        match $mr {
            $($r => $f::<$r, $p> $args,)*
            _ => unreachable!("microkernel rows"),
        }
    };
}

macro_rules! microkernels {
    (attrs: [$(#[$m:meta])*], rows: $rows:tt, panels: [$($p:literal)*]) => {
        use super::{Args, NR, Seg};
        use crate::kernels::gemm::MatRef;

        /// Vectors per 16-wide panel.
        const VPP: usize = NR / L;
        /// Vectors per accumulator row (the widest call).
        const NV: usize = VPP * PANELS;
        /// Most panels one call takes.
        const PANELS: usize = { let mut m = 0; $(if $p > m { m = $p; })* m };
        /// Max depth of one pass over k.
        const KC: usize = 256;
        /// Columns of B packed per block (4 panels of 16).
        const NC: usize = 64;
        /// Rows of A packed per block when A is not row-contiguous.
        const MC: usize = 72;
        const _: () = assert!(MC % MR == 0 && NC % (PANELS * NR) == 0);

        /// Panels the next call takes at panel `jp` of `panels` (`full`:
        /// whether panel `jp + 1` is whole, so it can be paired).
        #[inline(always)]
        fn take(jp: usize, panels: usize, full: bool) -> usize {
            if PANELS > 1 && jp + 1 < panels && full { 2 } else { 1 }
        }

        /// BLIS-style loop nest: for each NC block of columns and KC slice
        /// of k, B is packed into contiguous 16-wide panels (zero-padded); A
        /// is read in place when its rows are contiguous (cs == 1) and
        /// otherwise packed into MR-row micro-panels. The packed B block
        /// (≤ 64 KB) stays in L1/L2 while the micro-rows of A stream.
        ///
        /// # Safety
        /// The CPU supports this set; A, B, C as in `gemm::sgemm_unchecked`.
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn sgemm(
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
            // Uninitialised scratch (zeroing 136 KB per call would cost more
            // than packing); only elements written by the packing loops are read.
            let mut bpack_mem = std::mem::MaybeUninit::<[f32; KC * NC]>::uninit();
            let mut apack_mem = std::mem::MaybeUninit::<[f32; MC * KC]>::uninit();
            let bpack = bpack_mem.as_mut_ptr() as *mut f32;
            let apack = apack_mem.as_mut_ptr() as *mut f32;
            let ap = a.data.as_ptr();
            let bp = b.data.as_ptr();
            let pack_a = a.cs != 1;
            // With few rows each B panel is used only a few times: packing
            // it would cost more than the cache misses of reading it in place.
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
                    // SAFETY (whole fn): indices stay within the checked A/B/C ranges.
                    unsafe {
                        pack_b_block(b, bp, k0, kc, jc, n, panels, direct_b, bpack);
                    }
                    let mut ic = 0;
                    while ic < m {
                        let mc = if pack_a { MC.min(m - ic) } else { m - ic };
                        if pack_a {
                            unsafe { pack_a_block(a, ap, ic, mc, m, k0, kc, apack) };
                        }
                        let mut jp = 0;
                        while jp < panels {
                            let j0 = jc + jp * NR;
                            let full_next = jp + 1 < panels && n - j0 >= 2 * NR;
                            let np = take(jp, panels, full_next);
                            let nr = (np * NR).min(n - j0);
                            let in_place = direct_b && nr == np * NR;
                            let (panel, ldb, pstride) = if in_place {
                                (unsafe { bp.add(k0 * b.rs + j0) }, b.rs, NR)
                            } else {
                                (unsafe { bpack.add(jp * kc * NR) as *const f32 }, NR, kc * NR)
                            };
                            let mut ir = 0;
                            while ir < mc {
                                let mr = MR.min(mc - ir);
                                let (a_blk, rsa, csa) = if pack_a {
                                    (unsafe { apack.add((ir / MR) * MR * kc) as *const f32 }, 1, MR)
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
                                    pstride,
                                    c: unsafe { c.add((ic + ir) * ldc + j0) },
                                    ldc,
                                    nr,
                                    alpha,
                                    beta: beta_eff,
                                };
                                unsafe {
                                    match np {
                                        $($p => by_rows!(mr, $rows, kernel, $p, (&args)),)*
                                        _ => unreachable!(),
                                    }
                                }
                                ir += MR;
                            }
                            jp += np;
                        }
                        ic += mc;
                    }
                    k0 += kc;
                }
                jc += nc;
            }
        }

        /// Packs `B[k0..k0+kc, jc..]` as `panels` blocks of kc×16 (panels
        /// that are read in place are skipped).
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        unsafe fn pack_b_block(
            b: MatRef<'_>,
            bp: *const f32,
            k0: usize,
            kc: usize,
            jc: usize,
            n: usize,
            panels: usize,
            direct_b: bool,
            bpack: *mut f32,
        ) {
            for jp in 0..panels {
                let j0 = jc + jp * NR;
                let nr = NR.min(n - j0);
                if direct_b && nr == NR {
                    continue;
                }
                // SAFETY: per the caller's bounds checks.
                unsafe {
                    let dst = bpack.add(jp * kc * NR);
                    if b.cs == 1 && nr == NR {
                        for p in 0..kc {
                            let src = bp.add((k0 + p) * b.rs + j0);
                            for v in 0..VPP {
                                st(dst.add(p * NR + v * L), ld(src.add(v * L)));
                            }
                        }
                    } else {
                        for p in 0..kc {
                            for jj in 0..NR {
                                let v = if jj < nr {
                                    *bp.add((k0 + p) * b.rs + (j0 + jj) * b.cs)
                                } else {
                                    0.0
                                };
                                dst.add(p * NR + jj).write(v);
                            }
                        }
                    }
                }
            }
        }

        /// Packs rows `ic..ic+mc` of `A[.., k0..k0+kc]` into MR-row
        /// micro-panels laid out `[p][row]`.
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        unsafe fn pack_a_block(
            a: MatRef<'_>,
            ap: *const f32,
            ic: usize,
            mc: usize,
            m: usize,
            k0: usize,
            kc: usize,
            apack: *mut f32,
        ) {
            for mp in 0..mc.div_ceil(MR) {
                let i0 = ic + mp * MR;
                let mr = MR.min(m - i0);
                // SAFETY: per the caller's bounds checks.
                unsafe {
                    let chunk = apack.add(mp * MR * kc);
                    for p in 0..kc {
                        for r in 0..mr {
                            chunk
                                .add(p * MR + r)
                                .write(*ap.add((i0 + r) * a.rs + (k0 + p) * a.cs));
                        }
                    }
                }
            }
        }

        $(#[$m])*
        #[inline]
        unsafe fn kernel<const R: usize, const P: usize>(s: &Args) {
            // SAFETY: kc rows of P panels of B and kc columns of R rows of A
            // are in bounds (caller).
            unsafe {
                let mut acc = [[splat(0.0); NV]; R];
                let mut arow = [std::ptr::null::<f32>(); R];
                for (r, p) in arow.iter_mut().enumerate() {
                    *p = s.a.add(r * s.rsa);
                }
                let mut bptr = s.b;
                let mut aoff = 0;
                for _ in 0..s.kc {
                    let mut bv = [splat(0.0); NV];
                    for q in 0..P {
                        for v in 0..VPP {
                            bv[q * VPP + v] = ld(bptr.add(q * s.pstride + v * L));
                        }
                    }
                    for r in 0..R {
                        let av = bc(arow[r].add(aoff));
                        for v in 0..P * VPP {
                            acc[r][v] = fma(av, bv[v], acc[r][v]);
                        }
                    }
                    bptr = bptr.add(s.ldb);
                    aoff += s.csa;
                }
                let va = splat(s.alpha);
                let vb = splat(s.beta);
                if s.nr == P * NR {
                    for r in 0..R {
                        let cr = s.c.add(r * s.ldc);
                        for v in 0..P * VPP {
                            let mut x = if s.alpha == 1.0 { acc[r][v] } else { mul(acc[r][v], va) };
                            if s.beta == 1.0 {
                                x = add(ld(cr.add(v * L)), x);
                            } else if s.beta != 0.0 {
                                x = fma(ld(cr.add(v * L)), vb, x);
                            }
                            st(cr.add(v * L), x);
                        }
                    }
                } else {
                    let mut tmp = [0f32; 2 * NR];
                    for r in 0..R {
                        let cr = s.c.add(r * s.ldc);
                        for v in 0..P * VPP {
                            st(tmp.as_mut_ptr().add(v * L), mul(acc[r][v], va));
                        }
                        for (jj, t) in tmp.iter().enumerate().take(s.nr) {
                            let cv = cr.add(jj);
                            *cv = if s.beta != 0.0 { s.beta.mul_add(*cv, *t) } else { *t };
                        }
                    }
                }
            }
        }

        /// # Safety
        /// The CPU supports this set; bounds as checked by `gemm::conv_rows`.
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn conv_rows(
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
            let panels = n.div_ceil(NR);
            let mut biasbuf = [0f32; 2 * NR];
            let mut jp = 0;
            while jp < panels {
                let j0 = jp * NR;
                // Packed panels are zero-padded: any two can pair.
                let np = take(jp, panels, true);
                let nr = (np * NR).min(n - j0);
                for (jj, v) in biasbuf.iter_mut().enumerate() {
                    *v = match bias {
                        // SAFETY: bias has n values (caller).
                        Some(b) if jj < nr => unsafe { *b.add(j0 + jj) },
                        _ => 0.0,
                    };
                }
                let mut ir = 0;
                while ir < rows.len() {
                    let mr = MR.min(rows.len() - ir);
                    let s = Seg {
                        rows: &rows[ir..ir + mr],
                        src,
                        n_seg,
                        seg_len,
                        seg_stride,
                        b: unsafe { bpack.add(jp * k * NR) },
                        pstride: k * NR,
                        bias: biasbuf.as_ptr(),
                        c: unsafe { c.add(ir * ldc + j0) },
                        ldc,
                        nr,
                    };
                    unsafe {
                        match np {
                            $($p => by_rows!(mr, $rows, seg_kernel, $p, (&s)),)*
                            _ => unreachable!(),
                        }
                    }
                    ir += MR;
                }
                jp += np;
            }
        }

        $(#[$m])*
        #[inline]
        unsafe fn seg_kernel<const R: usize, const P: usize>(s: &Seg<'_>) {
            // SAFETY: row spans and the packed panels were bounds-checked by the caller.
            unsafe {
                let mut bias = [splat(0.0); NV];
                for (v, b) in bias.iter_mut().enumerate().take(P * VPP) {
                    *b = ld(s.bias.add(v * L));
                }
                let mut acc = [bias; R];
                let mut arow = [std::ptr::null::<f32>(); R];
                for (r, p) in arow.iter_mut().enumerate() {
                    *p = s.src.add(s.rows[r]);
                }
                let mut bptr = s.b;
                for seg in 0..s.n_seg {
                    let off = seg * s.seg_stride;
                    for q in 0..s.seg_len {
                        let mut bv = [splat(0.0); NV];
                        for pp in 0..P {
                            for v in 0..VPP {
                                bv[pp * VPP + v] = ld(bptr.add(pp * s.pstride + v * L));
                            }
                        }
                        for r in 0..R {
                            let av = bc(arow[r].add(off + q));
                            for v in 0..P * VPP {
                                acc[r][v] = fma(av, bv[v], acc[r][v]);
                            }
                        }
                        bptr = bptr.add(NR);
                    }
                }
                if s.nr == P * NR {
                    for r in 0..R {
                        let cr = s.c.add(r * s.ldc);
                        for v in 0..P * VPP {
                            st(cr.add(v * L), acc[r][v]);
                        }
                    }
                } else {
                    let mut tmp = [0f32; 2 * NR];
                    for r in 0..R {
                        let cr = s.c.add(r * s.ldc);
                        for v in 0..P * VPP {
                            st(tmp.as_mut_ptr().add(v * L), acc[r][v]);
                        }
                        for (jj, t) in tmp.iter().enumerate().take(s.nr) {
                            *cr.add(jj) = *t;
                        }
                    }
                }
            }
        }

        /// # Safety
        /// The CPU supports this set; bounds as checked by `gemm::conv_dw_rows`
        /// (`n` a multiple of 16, `mr ≤ MR`).
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn conv_dw_rows(
            src: *const f32,
            rows: &[usize],
            mr: usize,
            dy: *const f32,
            ldd: usize,
            n: usize,
            c: *mut f32,
            ldc: usize,
        ) {
            let mut j0 = 0;
            while j0 < n {
                let np = if PANELS > 1 && n - j0 >= 2 * NR { 2 } else { 1 };
                // SAFETY: per the caller's bounds checks.
                unsafe {
                    let (d, cc) = (dy.add(j0), c.add(j0));
                    match np {
                        $($p => by_rows!(mr, $rows, dw_kernel, $p, (src, rows, d, ldd, cc, ldc)),)*
                        _ => unreachable!(),
                    }
                }
                j0 += np * NR;
            }
        }

        $(#[$m])*
        #[inline]
        unsafe fn dw_kernel<const R: usize, const P: usize>(
            src: *const f32,
            rows: &[usize],
            dy: *const f32,
            ldd: usize,
            c: *mut f32,
            ldc: usize,
        ) {
            // SAFETY: per the caller's bounds checks.
            unsafe {
                let mut acc = [[splat(0.0); NV]; R];
                for (r, a) in acc.iter_mut().enumerate() {
                    for (v, x) in a.iter_mut().enumerate().take(P * VPP) {
                        *x = ld(c.add(r * ldc + v * L));
                    }
                }
                let mut dp = dy;
                for &off in rows {
                    let mut bv = [splat(0.0); NV];
                    for (v, b) in bv.iter_mut().enumerate().take(P * VPP) {
                        *b = ld(dp.add(v * L));
                    }
                    let a = src.add(off);
                    for r in 0..R {
                        let av = bc(a.add(r));
                        for v in 0..P * VPP {
                            acc[r][v] = fma(av, bv[v], acc[r][v]);
                        }
                    }
                    dp = dp.add(ldd);
                }
                for (r, a) in acc.iter().enumerate() {
                    for (v, x) in a.iter().enumerate().take(P * VPP) {
                        st(c.add(r * ldc + v * L), *x);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;
    type V = __m512;
    pub(crate) const L: usize = 16;
    pub(crate) const MR: usize = 12;

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn ld(p: *const f32) -> V {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn st(p: *mut f32, v: V) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn bc(p: *const f32) -> V {
        unsafe { _mm512_set1_ps(*p) }
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn splat(x: f32) -> V {
        _mm512_set1_ps(x)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn mul(a: V, b: V) -> V {
        _mm512_mul_ps(a, b)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn add(a: V, b: V) -> V {
        _mm512_add_ps(a, b)
    }

    microkernels!(
        attrs: [#[target_feature(enable = "avx512f")]],
        rows: [1 2 3 4 5 6 7 8 9 10 11 12],
        panels: [1 2]
    );
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;
    type V = __m256;
    pub(crate) const L: usize = 8;
    pub(crate) const MR: usize = 6;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ld(p: *const f32) -> V {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn st(p: *mut f32, v: V) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn bc(p: *const f32) -> V {
        unsafe { _mm256_broadcast_ss(&*p) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn splat(x: f32) -> V {
        _mm256_set1_ps(x)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn mul(a: V, b: V) -> V {
        _mm256_mul_ps(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn add(a: V, b: V) -> V {
        _mm256_add_ps(a, b)
    }

    microkernels!(
        attrs: [#[target_feature(enable = "avx2,fma")]],
        rows: [1 2 3 4 5 6],
        panels: [1]
    );
}

#[cfg(target_arch = "aarch64")]
#[allow(clippy::needless_range_loop)]
pub(crate) mod neon {
    use std::arch::aarch64::*;
    type V = float32x4_t;
    pub(crate) const L: usize = 4;
    pub(crate) const MR: usize = 6;

    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn ld(p: *const f32) -> V {
        unsafe { vld1q_f32(p) }
    }
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn st(p: *mut f32, v: V) {
        unsafe { vst1q_f32(p, v) }
    }
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn bc(p: *const f32) -> V {
        unsafe { vld1q_dup_f32(p) }
    }
    #[target_feature(enable = "neon")]
    #[inline]
    fn splat(x: f32) -> V {
        vdupq_n_f32(x)
    }
    #[target_feature(enable = "neon")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        vfmaq_f32(c, a, b)
    }
    #[target_feature(enable = "neon")]
    #[inline]
    fn mul(a: V, b: V) -> V {
        vmulq_f32(a, b)
    }
    #[target_feature(enable = "neon")]
    #[inline]
    fn add(a: V, b: V) -> V {
        vaddq_f32(a, b)
    }

    microkernels!(
        attrs: [#[target_feature(enable = "neon")]],
        rows: [1 2 3 4 5 6],
        panels: [1]
    );
}

/// Plain arrays of 4 floats: baseline x86-64 compiles them to SSE2, aarch64
/// to NEON (without fused multiply-add: `a·b + c` rounds twice).
#[allow(clippy::needless_range_loop)]
pub(crate) mod portable {
    type V = [f32; 4];
    pub(crate) const L: usize = 4;
    /// Two rows: 8 accumulators, 4 B vectors and a broadcast fit the 16
    /// xmm registers of baseline x86-64 (three rows spilled one per step).
    pub(crate) const MR: usize = 2;

    #[inline(always)]
    unsafe fn ld(p: *const f32) -> V {
        unsafe { (p as *const V).read_unaligned() }
    }
    #[inline(always)]
    unsafe fn st(p: *mut f32, v: V) {
        unsafe { (p as *mut V).write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn bc(p: *const f32) -> V {
        unsafe { [*p; 4] }
    }
    #[inline(always)]
    fn splat(x: f32) -> V {
        [x; 4]
    }
    #[inline(always)]
    fn fma(a: V, b: V, c: V) -> V {
        [
            a[0] * b[0] + c[0],
            a[1] * b[1] + c[1],
            a[2] * b[2] + c[2],
            a[3] * b[3] + c[3],
        ]
    }
    #[inline(always)]
    fn mul(a: V, b: V) -> V {
        [a[0] * b[0], a[1] * b[1], a[2] * b[2], a[3] * b[3]]
    }
    #[inline(always)]
    fn add(a: V, b: V) -> V {
        [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
    }

    microkernels!(attrs: [], rows: [1 2], panels: [1]);
}
