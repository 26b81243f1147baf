//! Shapes of a convolution: output size, workspace sizes, which path runs,
//! and how the direct paths tile the output and copy input bands.

/// Invalid convolution / pooling geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("a dimension is zero")]
    ZeroDim,
    #[error("window {window} larger than padded input {padded}")]
    WindowTooLarge { window: usize, padded: usize },
    #[error("channels {in_c} → {out_c} not divisible by groups {groups}")]
    Groups {
        in_c: usize,
        out_c: usize,
        groups: usize,
    },
    #[error("padding {pad} not smaller than window {window}")]
    PadTooLarge { pad: usize, window: usize },
}

/// Output pixels per im2col tile.
pub const TILE_ROWS: usize = 120;
/// Output pixels `m0 .. m0 + count` of im2col tile `t` over `rows` pixels.
pub(super) fn tile_span(t: usize, rows: usize) -> (usize, usize) {
    let m0 = t * TILE_ROWS;
    (m0, TILE_ROWS.min(rows - m0))
}

/// The tiles of work slot `s` when `tiles` are split evenly and in order
/// between `slots` slots (each a contiguous run).
pub(super) fn slot_tiles(s: usize, slots: usize, tiles: usize) -> std::ops::Range<usize> {
    (s * tiles / slots)..((s + 1) * tiles / slots)
}

/// `rows[i] = (m0 + i)·stride`: the offsets of pixels `m0 ..` in a tensor
/// with `stride` floats per pixel, as the row microkernels address them.
pub(super) fn pixel_rows(rows: &mut [usize], m0: usize, stride: usize) {
    for (i, r) in rows.iter_mut().enumerate() {
        *r = (m0 + i) * stride;
    }
}

/// Widest output row the direct path handles (its row table lives on the stack).
pub(super) const DIRECT_MAX_PIXELS: usize = 1024;
/// Most floats of input bands one direct tile of several small images
/// copies (256 KB: the bands stay in L2 beside a weight panel).
pub(super) const MULTI_IMAGE_BAND: usize = 1 << 16;

/// Shape of one conv layer at one batch size. Construct with [`Conv2dGeometry::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
    pub groups: usize,
    /// Independent work slots (each with its own scratch in the workspace);
    /// fixed at construction from the rayon pool size, and part of what makes
    /// results deterministic.
    pub slots: usize,
}

/// Zero padding around a window's input, in pixels on each side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pads {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Pads {
    /// No padding.
    pub const NONE: Pads = Pads::uniform(0);

    /// `top, bottom, left, right` (the design file's order).
    pub const fn new(top: usize, bottom: usize, left: usize, right: usize) -> Self {
        Pads {
            top,
            bottom,
            left,
            right,
        }
    }

    /// `p` on every side.
    pub const fn uniform(p: usize) -> Self {
        Pads::new(p, p, p, p)
    }
}

/// The output size of a window of `f` taps (its span), stride `s`, over `n`
/// inputs padded by `before` and `after`: `floor((n + pad_total − f)/s) + 1`,
/// or with `ceil_mode` PyTorch's ceil rule — `ceil((n + pad_total − f)/s) + 1`,
/// minus one if the last window would start past the input and its
/// leading padding. Conv and pool geometry both size their outputs here.
pub(crate) fn out_dim(
    n: usize,
    before: usize,
    after: usize,
    f: usize,
    s: usize,
    ceil_mode: bool,
) -> Result<usize, GeometryError> {
    let pad = before + after;
    if n == 0 || f == 0 || s == 0 {
        return Err(GeometryError::ZeroDim);
    }
    if f > n + pad {
        return Err(GeometryError::WindowTooLarge {
            window: f,
            padded: n + pad,
        });
    }
    let floor = (n + pad - f) / s + 1;
    if !ceil_mode {
        return Ok(floor);
    }
    let mut out = (n + pad - f).div_ceil(s) + 1;
    if (out - 1) * s >= n + before {
        out -= 1;
    }
    Ok(out.max(floor))
}

impl Conv2dGeometry {
    /// `input` = (h, w, c), `kernel` = (k_h, k_w), `stride` = (s_h, s_w).
    pub fn new(
        batch: usize,
        input: (usize, usize, usize),
        out_c: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        pad: Pads,
        groups: usize,
    ) -> Result<Self, GeometryError> {
        let (in_h, in_w, in_c) = input;
        if batch == 0 || in_c == 0 || out_c == 0 || groups == 0 {
            return Err(GeometryError::ZeroDim);
        }
        if !in_c.is_multiple_of(groups) || !out_c.is_multiple_of(groups) {
            return Err(GeometryError::Groups {
                in_c,
                out_c,
                groups,
            });
        }
        let out_h = out_dim(in_h, pad.top, pad.bottom, kernel.0, stride.0, false)?;
        let out_w = out_dim(in_w, pad.left, pad.right, kernel.1, stride.1, false)?;
        Ok(Self {
            batch,
            in_h,
            in_w,
            in_c,
            out_h,
            out_w,
            out_c,
            k_h: kernel.0,
            k_w: kernel.1,
            stride_h: stride.0,
            stride_w: stride.1,
            pad_top: pad.top,
            pad_left: pad.left,
            pad_bottom: pad.bottom,
            pad_right: pad.right,
            groups,
            slots: rayon::current_num_threads().max(8),
        })
    }

    /// Same geometry, another batch size.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
    /// The input's zero padding.
    pub fn pads(&self) -> Pads {
        Pads::new(self.pad_top, self.pad_bottom, self.pad_left, self.pad_right)
    }
    pub fn in_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    pub fn out_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }
    pub fn weight_len(&self) -> usize {
        self.k_h * self.k_w * self.cin_g() * self.out_c
    }
    /// Input channels per group.
    pub fn cin_g(&self) -> usize {
        self.in_c / self.groups
    }
    /// Output channels per group.
    pub fn cout_g(&self) -> usize {
        self.out_c / self.groups
    }
    /// Columns of the im2col matrix (per group): `k_h·k_w·in_c/groups`.
    pub fn k_cols(&self) -> usize {
        self.k_h * self.k_w * self.cin_g()
    }
    /// Output pixels, the GEMM's M: `batch·out_h·out_w`.
    pub fn rows(&self) -> usize {
        self.batch * self.out_h * self.out_w
    }
    /// Multiply-accumulates of the forward pass.
    pub fn macs(&self) -> u64 {
        self.rows() as u64 * self.k_cols() as u64 * self.out_c as u64
    }
    /// 1×1, stride 1, no padding: the input already is the im2col matrix.
    /// (Strided 1×1 convs go through im2col, which for them is a cheap row
    /// gather, so the GEMM runs on full tiles.)
    pub fn is_pointwise(&self) -> bool {
        self.k_h == 1
            && self.k_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.pad_bottom == 0
            && self.pad_right == 0
    }
    pub(super) fn tile_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            TILE_ROWS * self.k_cols()
        }
    }
    /// Scratch floats needed by [`conv2d_forward`].
    pub fn forward_workspace_len(&self) -> usize {
        let packed = crate::kernels::gemm::packed_b_len(self.k_cols(), self.out_c);
        let direct = match self.direct_tiling() {
            Some((_, band)) => packed + self.slots * band,
            None => 0,
        };
        let pooled = match self.direct_tiling_pool2() {
            Some((tr, band)) => packed + self.slots * (band + self.pool2_tile_len(tr)),
            None => 0,
        };
        let pointwise = if self.is_direct_pointwise() {
            packed
        } else {
            0
        };
        (self.slots * self.tile_len())
            .max(direct)
            .max(pooled)
            .max(pointwise)
    }
    /// Whether [`conv2d_forward_bn`] can apply a 2×2 stride-2 max pool to
    /// its output tiles (direct path, even output size).
    pub fn can_fuse_max_pool2(&self) -> bool {
        self.direct_tiling_pool2().is_some()
    }
    /// Direct tiling with an even number of output rows per tile, so each
    /// tile holds whole 2×2 pooling windows.
    pub(super) fn direct_tiling_pool2(&self) -> Option<(usize, usize)> {
        let (tr, _) = self.direct_tiling()?;
        if !self.out_h.is_multiple_of(2) || !self.out_w.is_multiple_of(2) {
            return None;
        }
        let tr = (tr.max(2) & !1).min(self.out_h);
        Some((tr, self.images_per_tile(tr) * self.band_len(tr)))
    }
    /// Floats of one unpooled output tile of the pooling direct path.
    pub(super) fn pool2_tile_len(&self, tr: usize) -> usize {
        self.images_per_tile(tr) * tr * self.out_w * self.out_c
    }
    /// Whole images per direct tile: one image's rows `tr` at a time, or —
    /// when a tile holds whole images with fewer pixels than [`TILE_ROWS`]
    /// (ResNet-50's res4/res5 on 64×64 inputs: 4×4 and 2×2) — several
    /// images, so that each pass over the weights (megabytes there) feeds
    /// a full tile of rows instead of 4 or 16.
    pub(super) fn images_per_tile(&self, tr: usize) -> usize {
        if tr < self.out_h {
            return 1;
        }
        let pixels = self.out_h * self.out_w;
        (TILE_ROWS / pixels)
            .min(MULTI_IMAGE_BAND / self.band_len(tr).max(1))
            .min(DIRECT_MAX_PIXELS / pixels)
            .clamp(1, self.batch)
    }
    /// Floats of the zero-padded input band read by `tr` output rows.
    pub(super) fn band_len(&self, tr: usize) -> usize {
        let band_h = (tr - 1) * self.stride_h + self.k_h;
        let band_w = self.in_w + self.pad_left + self.pad_right;
        band_h * band_w * self.in_c
    }
    /// A pointwise conv with groups = 1: the microkernel reads its input
    /// rows in place (no band, no im2col).
    pub(super) fn is_direct_pointwise(&self) -> bool {
        self.is_pointwise() && self.groups == 1 && self.out_w <= DIRECT_MAX_PIXELS
    }
    /// Tiling of the direct weight gradient: as [`Self::direct_tiling`], or
    /// for a direct pointwise conv the same row tiles with no band.
    pub(super) fn direct_dw_tiling(&self) -> Option<(usize, usize)> {
        if self.is_direct_pointwise() {
            return Some(((TILE_ROWS / self.out_w).clamp(1, self.out_h), 0));
        }
        self.direct_tiling()
    }
    /// Whether the direct weight gradient (tiling `tr`, `band`) splits dW's
    /// rows between the slots, each sweeping every pixel, instead of the
    /// pixels (a partial of the whole dW per slot, zeroed, accumulated per
    /// tile and reduced): when the weight is at least as large as the input
    /// (ResNet-50's res4/res5 on 64×64 images) the partials' traffic
    /// outweighs the arithmetic, and for a pointwise conv (which reads its
    /// input in place, no band to copy) whenever its pixels are few. Needs
    /// every pixel in one row table and the whole batch's bands in a slot's
    /// share of the workspace.
    pub(super) fn dw_by_rows(&self, tr: usize, band: usize) -> bool {
        let tiles = DirectTiles::new(self, tr).count;
        let slot = band.max(self.tile_len()) + self.weight_len() + self.out_c;
        self.rows() <= DIRECT_MAX_PIXELS
            && (band == 0 || self.weight_len() >= self.in_len())
            && tiles * band <= slot
    }
    /// Direct (implicit im2col) forward: output rows per tile and the floats
    /// of one zero-padded input band. None when the im2col path is used.
    pub(super) fn direct_tiling(&self) -> Option<(usize, usize)> {
        if self.groups != 1 || self.is_pointwise() || self.out_w > DIRECT_MAX_PIXELS {
            return None;
        }
        let tr = (TILE_ROWS / self.out_w).clamp(1, self.out_h);
        Some((tr, self.images_per_tile(tr) * self.band_len(tr)))
    }
    /// Scratch floats needed by [`conv2d_backward`].
    pub fn backward_workspace_len(&self) -> usize {
        let scratch = match self.direct_tiling() {
            Some((_, band)) => band.max(self.tile_len()),
            None => self.tile_len(),
        };
        let params = self.slots * (scratch + self.weight_len() + self.out_c);
        let input = match self.transposed() {
            Some(t) => self.weight_len() + t.forward_workspace_len(),
            None => {
                crate::kernels::gemm::packed_b_len(self.out_c, self.k_cols())
                    + self.slots * self.tile_len()
            }
        };
        params.max(input)
    }
    /// For stride 1 (not pointwise): the geometry of the convolution that maps
    /// dY to dX — same kernel flipped, channels swapped, padding `k − 1 − p`.
    pub(super) fn transposed(&self) -> Option<Conv2dGeometry> {
        // Its GEMM has N = in_c/groups: narrow N wastes the 16-wide microkernel.
        let ok = self.stride_h == 1
            && self.stride_w == 1
            && self.cin_g() >= 16
            && !self.is_pointwise()
            && self.pad_top < self.k_h
            && self.pad_bottom < self.k_h
            && self.pad_left < self.k_w
            && self.pad_right < self.k_w;
        ok.then(|| Conv2dGeometry {
            batch: self.batch,
            in_h: self.out_h,
            in_w: self.out_w,
            in_c: self.out_c,
            out_h: self.in_h,
            out_w: self.in_w,
            out_c: self.in_c,
            k_h: self.k_h,
            k_w: self.k_w,
            stride_h: 1,
            stride_w: 1,
            pad_top: self.k_h - 1 - self.pad_top,
            pad_left: self.k_w - 1 - self.pad_left,
            pad_bottom: self.k_h - 1 - self.pad_bottom,
            pad_right: self.k_w - 1 - self.pad_right,
            groups: self.groups,
            slots: self.slots,
        })
    }
    /// Scratch floats that suffice for every conv call of this geometry.
    pub fn workspace_len(&self) -> usize {
        self.forward_workspace_len()
            .max(self.backward_workspace_len())
    }
}

/// Copies the input rows read by output rows `oy0 .. oy0+trr` of image `b`
/// into `buf` with zero padding (width `in_w + pad_left + pad_right`), and
/// writes each output pixel's offset in the band to `rows`. Returns the pixel count.
pub(super) fn fill_band(
    geo: &Conv2dGeometry,
    x: &[f32],
    b: usize,
    oy0: usize,
    trr: usize,
    buf: &mut [f32],
    rows: &mut [usize],
) -> usize {
    let ic = geo.in_c;
    let band_w = geo.in_w + geo.pad_left + geo.pad_right;
    let band_h = (trr - 1) * geo.stride_h + geo.k_h;
    for (br, row) in buf.chunks_exact_mut(band_w * ic).take(band_h).enumerate() {
        let iy = (oy0 * geo.stride_h + br) as isize - geo.pad_top as isize;
        if iy < 0 || iy as usize >= geo.in_h {
            row.fill(0.0);
            continue;
        }
        let src = &x[((b * geo.in_h + iy as usize) * geo.in_w) * ic..][..geo.in_w * ic];
        row[..geo.pad_left * ic].fill(0.0);
        row[geo.pad_left * ic..(geo.pad_left + geo.in_w) * ic].copy_from_slice(src);
        row[(geo.pad_left + geo.in_w) * ic..].fill(0.0);
    }
    let count = trr * geo.out_w;
    for (i, r) in rows[..count].iter_mut().enumerate() {
        let (ty, ox) = (i / geo.out_w, i % geo.out_w);
        *r = (ty * geo.stride_h * band_w + ox * geo.stride_w) * ic;
    }
    count
}

/// How the direct paths split the output: tiles of `tr` output rows of one
/// image, or of `imgs` whole images ([`Conv2dGeometry::images_per_tile`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct DirectTiles {
    pub(super) tr: usize,
    pub(super) imgs: usize,
    pub(super) per_img: usize,
    pub(super) count: usize,
}

/// One direct tile: images `b .. b + imgs`, output rows `oy0 .. oy0 + rows` of each.
#[derive(Clone, Copy, Debug)]
pub(super) struct DirectTile {
    pub(super) b: usize,
    pub(super) oy0: usize,
    pub(super) rows: usize,
    pub(super) imgs: usize,
}

impl DirectTiles {
    pub(super) fn new(geo: &Conv2dGeometry, tr: usize) -> Self {
        let imgs = geo.images_per_tile(tr);
        let per_img = geo.out_h.div_ceil(tr);
        let count = if imgs > 1 {
            geo.batch.div_ceil(imgs)
        } else {
            geo.batch * per_img
        };
        Self {
            tr,
            imgs,
            per_img,
            count,
        }
    }

    pub(super) fn tile(&self, geo: &Conv2dGeometry, t: usize) -> DirectTile {
        if self.imgs > 1 {
            let b = t * self.imgs;
            DirectTile {
                b,
                oy0: 0,
                rows: geo.out_h,
                imgs: self.imgs.min(geo.batch - b),
            }
        } else {
            let oy0 = (t % self.per_img) * self.tr;
            DirectTile {
                b: t / self.per_img,
                oy0,
                rows: self.tr.min(geo.out_h - oy0),
                imgs: 1,
            }
        }
    }
}

impl DirectTile {
    /// First output pixel (global row of the GEMM) and the tile's pixel count;
    /// the tile's output rows are contiguous.
    pub(super) fn pixels(&self, geo: &Conv2dGeometry) -> (usize, usize) {
        let m0 = self.b * geo.out_h * geo.out_w + self.oy0 * geo.out_w;
        (m0, self.imgs * self.rows * geo.out_w)
    }

    /// [`fill_band`] for each image of the tile, the bands one after
    /// another in `buf`; `rows` gets every pixel's offset in `buf`.
    pub(super) fn fill_bands(
        &self,
        geo: &Conv2dGeometry,
        x: &[f32],
        buf: &mut [f32],
        rows: &mut [usize],
    ) {
        let band = geo.band_len(self.rows);
        let mut done = 0;
        for g in 0..self.imgs {
            let n = fill_band(
                geo,
                x,
                self.b + g,
                self.oy0,
                self.rows,
                &mut buf[g * band..],
                &mut rows[done..],
            );
            for r in &mut rows[done..done + n] {
                *r += g * band;
            }
            done += n;
        }
    }
}
