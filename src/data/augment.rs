//! Training-time augmentation: pure, seeded functions on HWC images.
//!
//! The explicit transforms ([`mirror`], [`pad_crop`], [`add_channel_offsets`],
//! [`affine_bilinear`]) take their parameters as arguments; [`Augmenter`]
//! draws those parameters from a seeded [`Rng`] according to an
//! [`AugmentConfig`]. Augmentation works on raw pixels (before
//! normalisation) and never sees labels.

use serde::{Deserialize, Serialize};

use super::DataError;
use super::dataset::{Dataset, Shape};
use super::rng::Rng;

/// One switch per augmentation, with its strength.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Horizontal flip with probability ½.
    pub mirror: bool,
    /// Pad by `crop_pad` zeros on every side, then crop back to size at a random offset.
    pub crop: bool,
    pub crop_pad: usize,
    /// Add a per-channel offset drawn uniformly from `±colour_shift_max`.
    pub colour_shift: bool,
    pub colour_shift_max: f32,
    /// AlexNet PCA colour: add `Σ αᵢ √λᵢ vᵢ`, `αᵢ ~ N(0, pca_sigma)`, over the
    /// training set's RGB covariance eigenpairs `(λᵢ, vᵢ)`.
    pub pca: bool,
    pub pca_sigma: f32,
    /// Rotate by an angle uniform in `±rotate_max_deg` degrees (bilinear).
    pub rotate: bool,
    pub rotate_max_deg: f32,
    /// Horizontal shear `x' = x + s·y`, `s` uniform in `±shear_max` (bilinear).
    pub shear: bool,
    pub shear_max: f32,
    /// Local warping (Simard et al. 2003): every pixel moves by a random
    /// displacement field, uniform in ±1 per pixel, smoothed by a Gaussian of
    /// `elastic_sigma` pixels and scaled by `elastic_alpha` pixels (bilinear).
    pub elastic: bool,
    pub elastic_alpha: f32,
    pub elastic_sigma: f32,
}

impl Default for AugmentConfig {
    /// Everything off, with the usual strengths for pixels in `[0, 1]`.
    fn default() -> Self {
        AugmentConfig {
            mirror: false,
            crop: false,
            crop_pad: 4,
            colour_shift: false,
            colour_shift_max: 0.1,
            pca: false,
            pca_sigma: 0.1,
            rotate: false,
            rotate_max_deg: 10.0,
            shear: false,
            shear_max: 0.1,
            elastic: false,
            elastic_alpha: 2.0,
            elastic_sigma: 3.0,
        }
    }
}

impl AugmentConfig {
    /// Names accepted by [`AugmentConfig::parse`].
    pub const NAMES: &'static [&'static str] = &[
        "mirror", "crop", "colour", "pca", "rotate", "shear", "affine", "elastic", "all", "none",
    ];

    /// Parses a comma-separated list such as `mirror,crop,colour,pca`
    /// (also `flip`, `color`, `colour-shift`, `rotation`, `affine` = rotate+shear,
    /// `all`, `none`). Unknown names are an error that lists the known ones.
    pub fn parse(list: &str) -> Result<Self, DataError> {
        let mut cfg = AugmentConfig::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "mirror" | "flip" | "hflip" => cfg.mirror = true,
                "crop" => cfg.crop = true,
                "colour" | "color" | "colour-shift" | "color-shift" | "shift" => {
                    cfg.colour_shift = true
                }
                "pca" | "pca-colour" | "pca-color" | "lighting" => cfg.pca = true,
                "rotate" | "rotation" => cfg.rotate = true,
                "shear" => cfg.shear = true,
                "elastic" | "warp" | "elastic-warp" => cfg.elastic = true,
                "affine" => {
                    cfg.rotate = true;
                    cfg.shear = true;
                }
                "all" => {
                    cfg.mirror = true;
                    cfg.crop = true;
                    cfg.colour_shift = true;
                    cfg.pca = true;
                    cfg.rotate = true;
                    cfg.shear = true;
                    cfg.elastic = true;
                }
                "none" => {}
                other => {
                    return Err(DataError::Invalid(format!(
                        "unknown augmentation '{other}' (known: {})",
                        Self::NAMES.join(", ")
                    )));
                }
            }
        }
        Ok(cfg)
    }

    /// `true` when at least one augmentation is on.
    pub fn any(&self) -> bool {
        self.mirror
            || self.crop
            || self.colour_shift
            || self.pca
            || self.rotate
            || self.shear
            || self.elastic
    }
}

/// Mirrors an HWC image left–right in place.
pub fn mirror(img: &mut [f32], s: Shape) {
    let c = s.c;
    for row in img.chunks_exact_mut(s.w * c) {
        for x in 0..s.w / 2 {
            let xr = s.w - 1 - x;
            for k in 0..c {
                row.swap(x * c + k, xr * c + k);
            }
        }
    }
}

/// The crop at offset `(oy, ox)` (each in `0..=2·pad`) of `src` padded by
/// `pad` zeros on every side: `dst[y][x] = src[y + oy − pad][x + ox − pad]`,
/// zero where that falls outside `src`.
pub fn pad_crop(src: &[f32], dst: &mut [f32], s: Shape, pad: usize, oy: usize, ox: usize) {
    let c = s.c;
    let dy = oy as isize - pad as isize;
    let dx = ox as isize - pad as isize;
    for y in 0..s.h {
        let sy = y as isize + dy;
        let row = &mut dst[y * s.w * c..(y + 1) * s.w * c];
        if sy < 0 || sy >= s.h as isize {
            row.fill(0.0);
            continue;
        }
        for x in 0..s.w {
            let sx = x as isize + dx;
            let px = &mut row[x * c..(x + 1) * c];
            if sx < 0 || sx >= s.w as isize {
                px.fill(0.0);
            } else {
                let at = (sy as usize * s.w + sx as usize) * c;
                px.copy_from_slice(&src[at..at + c]);
            }
        }
    }
}

/// Adds `offsets[k]` to channel `k` of every pixel (no clamping).
pub fn add_channel_offsets(img: &mut [f32], offsets: &[f32]) {
    let c = offsets.len();
    for px in img.chunks_exact_mut(c) {
        for (v, o) in px.iter_mut().zip(offsets) {
            *v += o;
        }
    }
}

/// Resamples `src` through a 2×2 map about the image centre: destination
/// pixel `p` (as `(x, y)`) reads `src` at `inv · (p − centre) + centre` by
/// bilinear interpolation, with zeros outside the image.
pub fn affine_bilinear(src: &[f32], dst: &mut [f32], s: Shape, inv: [[f32; 2]; 2]) {
    let c = s.c;
    let cx = (s.w as f32 - 1.0) / 2.0;
    let cy = (s.h as f32 - 1.0) / 2.0;
    let (w, h) = (s.w as isize, s.h as isize);
    for y in 0..s.h {
        for x in 0..s.w {
            let px = x as f32 - cx;
            let py = y as f32 - cy;
            let fx = inv[0][0] * px + inv[0][1] * py + cx;
            let fy = inv[1][0] * px + inv[1][1] * py + cy;
            let x0 = fx.floor();
            let y0 = fy.floor();
            let tx = fx - x0;
            let ty = fy - y0;
            let (x0, y0) = (x0 as isize, y0 as isize);
            let out = &mut dst[(y * s.w + x) * c..(y * s.w + x + 1) * c];
            out.fill(0.0);
            for (yy, wy) in [(y0, 1.0 - ty), (y0 + 1, ty)] {
                for (xx, wx) in [(x0, 1.0 - tx), (x0 + 1, tx)] {
                    let wgt = wy * wx;
                    if wgt == 0.0 || xx < 0 || yy < 0 || xx >= w || yy >= h {
                        continue;
                    }
                    let at = (yy as usize * s.w + xx as usize) * c;
                    for k in 0..c {
                        out[k] += wgt * src[at + k];
                    }
                }
            }
        }
    }
}

/// Resamples `src` through a per-pixel displacement field: destination pixel
/// `(x, y)` reads `src` at `(x + dx[i], y + dy[i])`, `i = y·w + x`, by bilinear
/// interpolation, with zeros outside the image.
pub fn displace_bilinear(src: &[f32], dst: &mut [f32], s: Shape, dx: &[f32], dy: &[f32]) {
    let c = s.c;
    let (w, h) = (s.w as isize, s.h as isize);
    for y in 0..s.h {
        for x in 0..s.w {
            let i = y * s.w + x;
            let fx = x as f32 + dx[i];
            let fy = y as f32 + dy[i];
            let x0 = fx.floor();
            let y0 = fy.floor();
            let tx = fx - x0;
            let ty = fy - y0;
            let (x0, y0) = (x0 as isize, y0 as isize);
            let out = &mut dst[i * c..(i + 1) * c];
            out.fill(0.0);
            for (yy, wy) in [(y0, 1.0 - ty), (y0 + 1, ty)] {
                for (xx, wx) in [(x0, 1.0 - tx), (x0 + 1, tx)] {
                    let wgt = wy * wx;
                    if wgt == 0.0 || xx < 0 || yy < 0 || xx >= w || yy >= h {
                        continue;
                    }
                    let at = (yy as usize * s.w + xx as usize) * c;
                    for k in 0..c {
                        out[k] += wgt * src[at + k];
                    }
                }
            }
        }
    }
}

/// Normalised Gaussian taps `exp(−t²/2σ²)` for `t` in `−r..=r`, `r = ⌈3σ⌉`
/// (capped so the kernel never exceeds `2·limit + 1` taps).
fn gaussian_taps(sigma: f32, limit: usize) -> Vec<f32> {
    let r = ((3.0 * sigma).ceil().max(0.0) as usize).min(limit);
    let two_s2 = 2.0 * sigma * sigma;
    let mut taps: Vec<f32> = (0..=2 * r)
        .map(|i| {
            let t = i as f32 - r as f32;
            if two_s2 > 0.0 {
                (-t * t / two_s2).exp()
            } else {
                f32::from(t == 0.0)
            }
        })
        .collect();
    let sum: f32 = taps.iter().sum();
    taps.iter_mut().for_each(|t| *t /= sum);
    taps
}

/// Smooths an `h × w` field in place with a separable Gaussian whose taps
/// are renormalised at the borders, so a field in `±1` stays in `±1`.
/// `tmp` is scratch of the same length.
fn gaussian_smooth(field: &mut [f32], tmp: &mut [f32], h: usize, w: usize, taps: &[f32]) {
    let r = (taps.len() / 2) as isize;
    let pass = |src: &[f32], dst: &mut [f32], along_x: bool| {
        for y in 0..h {
            for x in 0..w {
                let (mut acc, mut norm) = (0.0f32, 0.0f32);
                for (j, &t) in taps.iter().enumerate() {
                    let o = j as isize - r;
                    let (yy, xx) = if along_x {
                        (y as isize, x as isize + o)
                    } else {
                        (y as isize + o, x as isize)
                    };
                    if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                        continue;
                    }
                    acc += t * src[yy as usize * w + xx as usize];
                    norm += t;
                }
                dst[y * w + x] = if norm > 0.0 { acc / norm } else { 0.0 };
            }
        }
    };
    pass(field, tmp, true);
    pass(tmp, field, false);
}

/// Draws a smoothed displacement field for [`displace_bilinear`] into
/// `fields = [dx | dy | scratch]` (each `h·w`; at most `alpha` pixels in
/// each direction).
pub fn elastic_field(
    h: usize,
    w: usize,
    alpha: f32,
    sigma: f32,
    rng: &mut Rng,
    fields: &mut [f32],
) {
    let n = h * w;
    let (dx, rest) = fields.split_at_mut(n);
    let (dy, tmp) = rest.split_at_mut(n);
    let tmp = &mut tmp[..n];
    let taps = gaussian_taps(sigma, h.max(w));
    for field in [&mut *dx, &mut *dy] {
        field.iter_mut().for_each(|v| *v = rng.uniform(-1.0, 1.0));
        gaussian_smooth(field, tmp, h, w, &taps);
        field.iter_mut().for_each(|v| *v *= alpha);
    }
}

/// The destination→source map of "shear by `shear` (`x' = x + shear·y`),
/// then rotate by `degrees`" — the `inv` argument of [`affine_bilinear`].
pub fn rotation_shear_inverse(degrees: f32, shear: f32) -> [[f32; 2]; 2] {
    let (sin, cos) = (degrees as f64).to_radians().sin_cos();
    let s = shear as f64;
    // forward A = R(θ)·S(s); inverse = S(−s)·R(−θ)
    let r_inv = [[cos, sin], [-sin, cos]];
    let m = [
        [r_inv[0][0] - s * r_inv[1][0], r_inv[0][1] - s * r_inv[1][1]],
        [r_inv[1][0], r_inv[1][1]],
    ];
    [
        [m[0][0] as f32, m[0][1] as f32],
        [m[1][0] as f32, m[1][1] as f32],
    ]
}

/// The `ch × cw` window of `src` whose top-left pixel is `(y0, x0)`
/// (it must lie inside the image).
pub fn crop_region(src: &[f32], s: Shape, y0: usize, x0: usize, ch: usize, cw: usize) -> Vec<f32> {
    let c = s.c;
    let mut out = Vec::with_capacity(ch * cw * c);
    for y in y0..y0 + ch {
        let row = (y * s.w + x0) * c;
        out.extend_from_slice(&src[row..row + cw * c]);
    }
    out
}

/// The ten views of multi-crop evaluation: the top-left, top-right,
/// bottom-left, bottom-right and centre `crop = (h, w)` windows, then the
/// mirror of each, every view resized (bilinear) to `out = (h, w)`.
/// A crop larger than the image is clamped to the image.
pub fn ten_crops(
    src: &[f32],
    s: Shape,
    crop: (usize, usize),
    out: (usize, usize),
) -> Vec<Vec<f32>> {
    let (ch, cw) = (crop.0.clamp(1, s.h), crop.1.clamp(1, s.w));
    let corners = [
        (0, 0),
        (0, s.w - cw),
        (s.h - ch, 0),
        (s.h - ch, s.w - cw),
        ((s.h - ch) / 2, (s.w - cw) / 2),
    ];
    let cs = Shape::new(ch, cw, s.c);
    let os = Shape::new(out.0, out.1, s.c);
    let mut views: Vec<Vec<f32>> = corners
        .iter()
        .map(|&(y0, x0)| {
            let v = crop_region(src, s, y0, x0, ch, cw);
            if (ch, cw) == out {
                v
            } else {
                let mut r = vec![0.0; os.len()];
                super::dataset::resize_bilinear(&v, cs, &mut r, os);
                r
            }
        })
        .collect();
    for i in 0..5 {
        let mut m = views[i].clone();
        mirror(&mut m, os);
        views.push(m);
    }
    views
}

/// Eigen-decomposition of a symmetric 3×3 matrix by cyclic Jacobi rotations.
/// Returns eigenvalues in descending order and the matching unit eigenvectors
/// (`vectors[i]` belongs to `values[i]`).
pub fn symmetric_eigen3(a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut a = a;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let scale: f64 = a
        .iter()
        .flatten()
        .map(|x| x * x)
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..64 {
        let off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        if off <= 1e-30 * scale {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let cs = 1.0 / (t * t + 1.0).sqrt();
            let sn = t * cs;
            for row in a.iter_mut() {
                let (kp, kq) = (row[p], row[q]);
                row[p] = cs * kp - sn * kq;
                row[q] = sn * kp + cs * kq;
            }
            let (row_p, row_q) = (a[p], a[q]);
            for k in 0..3 {
                a[p][k] = cs * row_p[k] - sn * row_q[k];
                a[q][k] = sn * row_p[k] + cs * row_q[k];
            }
            for row in v.iter_mut() {
                let (kp, kq) = (row[p], row[q]);
                row[p] = cs * kp - sn * kq;
                row[q] = sn * kp + cs * kq;
            }
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let values = order.map(|i| a[i][i]);
    let vectors = order.map(|i| [v[0][i], v[1][i], v[2][i]]);
    (values, vectors)
}

/// 3×3 covariance of the RGB values of HWC pixels (`values.len()` a multiple of 3).
pub fn rgb_covariance(values: &[f32]) -> [[f64; 3]; 3] {
    let mut sum = [0f64; 3];
    let mut sq = [[0f64; 3]; 3];
    let mut n = 0f64;
    for px in values.chunks_exact(3) {
        let p = [px[0] as f64, px[1] as f64, px[2] as f64];
        for i in 0..3 {
            sum[i] += p[i];
            for j in i..3 {
                sq[i][j] += p[i] * p[j];
            }
        }
        n += 1.0;
    }
    let n = n.max(1.0);
    let mut cov = [[0f64; 3]; 3];
    for i in 0..3 {
        for j in i..3 {
            cov[i][j] = sq[i][j] / n - (sum[i] / n) * (sum[j] / n);
            cov[j][i] = cov[i][j];
        }
    }
    cov
}

/// Principal components of a training set's RGB distribution, for PCA
/// colour augmentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColorPca {
    /// Variances along the principal directions, descending.
    pub eigenvalues: [f32; 3],
    /// Unit principal directions; `eigenvectors[i]` goes with `eigenvalues[i]`.
    pub eigenvectors: [[f32; 3]; 3],
}

impl ColorPca {
    pub fn from_covariance(cov: [[f64; 3]; 3]) -> Self {
        let (vals, vecs) = symmetric_eigen3(cov);
        ColorPca {
            eigenvalues: vals.map(|l| l.max(0.0) as f32),
            eigenvectors: vecs.map(|v| v.map(|x| x as f32)),
        }
    }

    /// From every pixel of a 3-channel dataset (use the training split).
    pub fn from_dataset(ds: &Dataset) -> Result<Self, DataError> {
        if ds.c != 3 {
            return Err(DataError::Invalid(format!(
                "PCA colour augmentation needs RGB images, these have {} channel(s)",
                ds.c
            )));
        }
        Ok(Self::from_covariance(rgb_covariance(&ds.images)))
    }

    /// The RGB offset `Σ αᵢ √λᵢ vᵢ` for the given `alphas`.
    pub fn offset(&self, alphas: [f32; 3]) -> [f32; 3] {
        let mut d = [0f32; 3];
        for ((alpha, lambda), v) in alphas.iter().zip(&self.eigenvalues).zip(&self.eigenvectors) {
            let a = alpha * lambda.sqrt();
            for (dk, vk) in d.iter_mut().zip(v) {
                *dk += a * vk;
            }
        }
        d
    }
}

/// Draws augmentation parameters and applies them; see [`AugmentConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct Augmenter {
    pub config: AugmentConfig,
    /// Needed when `config.pca` is on.
    pub pca: Option<ColorPca>,
}

impl Augmenter {
    /// Computes what the config needs (the PCA basis) from the training split.
    pub fn new(config: AugmentConfig, train: &Dataset) -> Result<Self, DataError> {
        let pca = if config.pca {
            Some(ColorPca::from_dataset(train)?)
        } else {
            None
        };
        Ok(Augmenter { config, pca })
    }

    /// Augments one HWC image in place. Order: rotation/shear, local warp,
    /// crop, mirror, colour shift, PCA colour. `scratch` is reused between calls.
    pub fn apply(&self, img: &mut [f32], s: Shape, rng: &mut Rng, scratch: &mut Vec<f32>) {
        let cfg = &self.config;
        if cfg.rotate || cfg.shear {
            let deg = if cfg.rotate {
                rng.uniform(-cfg.rotate_max_deg, cfg.rotate_max_deg)
            } else {
                0.0
            };
            let sh = if cfg.shear {
                rng.uniform(-cfg.shear_max, cfg.shear_max)
            } else {
                0.0
            };
            scratch.clear();
            scratch.extend_from_slice(img);
            affine_bilinear(scratch, img, s, rotation_shear_inverse(deg, sh));
        }
        if cfg.elastic && cfg.elastic_alpha > 0.0 {
            let n = s.h * s.w;
            scratch.clear();
            scratch.extend_from_slice(img);
            scratch.resize(img.len() + 3 * n, 0.0);
            let (copy, fields) = scratch.split_at_mut(img.len());
            elastic_field(s.h, s.w, cfg.elastic_alpha, cfg.elastic_sigma, rng, fields);
            let (dx, rest) = fields.split_at_mut(n);
            displace_bilinear(copy, img, s, dx, &rest[..n]);
        }
        if cfg.crop && cfg.crop_pad > 0 {
            let span = 2 * cfg.crop_pad as u64 + 1;
            let oy = rng.below(span) as usize;
            let ox = rng.below(span) as usize;
            scratch.clear();
            scratch.extend_from_slice(img);
            pad_crop(scratch, img, s, cfg.crop_pad, oy, ox);
        }
        if cfg.mirror && rng.coin() {
            mirror(img, s);
        }
        if cfg.colour_shift {
            let m = cfg.colour_shift_max;
            let offsets: Vec<f32> = (0..s.c).map(|_| rng.uniform(-m, m)).collect();
            add_channel_offsets(img, &offsets);
        }
        if cfg.pca
            && s.c == 3
            && let Some(pca) = &self.pca
        {
            let alphas = [0; 3].map(|_| rng.normal() * cfg.pca_sigma);
            add_channel_offsets(img, &pca.offset(alphas));
        }
    }

    /// Augments `images` (NHWC, whole images) in place; image `i` draws from
    /// `Rng::derive(seed, [i])`.
    pub fn apply_batch(&self, images: &mut [f32], s: Shape, seed: u64) {
        let mut scratch = Vec::new();
        for (i, img) in images.chunks_exact_mut(s.len()).enumerate() {
            let mut rng = Rng::derive(seed, &[i as u64]);
            self.apply(img, s, &mut rng, &mut scratch);
        }
    }
}

/// One augmentation of [`AugmentConfig`], for previews.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Augmentation {
    Mirror,
    Crop,
    ColourShift,
    Pca,
    Rotate,
    Shear,
    Elastic,
}

impl Augmentation {
    pub const ALL: [Augmentation; 7] = [
        Augmentation::Mirror,
        Augmentation::Crop,
        Augmentation::ColourShift,
        Augmentation::Pca,
        Augmentation::Rotate,
        Augmentation::Shear,
        Augmentation::Elastic,
    ];

    /// `config` with only this augmentation switched on (strengths kept).
    pub fn alone(self, config: &AugmentConfig) -> AugmentConfig {
        let mut c = AugmentConfig {
            mirror: false,
            crop: false,
            colour_shift: false,
            pca: false,
            rotate: false,
            shear: false,
            elastic: false,
            ..*config
        };
        match self {
            Augmentation::Mirror => c.mirror = true,
            Augmentation::Crop => c.crop = true,
            Augmentation::ColourShift => c.colour_shift = true,
            Augmentation::Pca => c.pca = true,
            Augmentation::Rotate => c.rotate = true,
            Augmentation::Shear => c.shear = true,
            Augmentation::Elastic => c.elastic = true,
        }
        c
    }
}

/// `image` (HWC, raw pixels) under augmentation `which` alone, with the
/// strengths of `config`, drawn from `seed`: one image as training would
/// see it. The mirror is always applied (a preview of a coin that landed
/// on "keep" would show nothing), and PCA colour uses the image's own RGB
/// components (training uses the training split's).
pub fn preview(
    config: &AugmentConfig,
    which: Augmentation,
    image: &[f32],
    s: Shape,
    seed: u64,
) -> Vec<f32> {
    let mut out = image.to_vec();
    if which == Augmentation::Mirror {
        mirror(&mut out, s);
        return out;
    }
    let pca = (which == Augmentation::Pca && s.c == 3)
        .then(|| ColorPca::from_covariance(rgb_covariance(image)));
    let augmenter = Augmenter {
        config: which.alone(config),
        pca,
    };
    let mut rng = Rng::derive(seed, &[which as u64]);
    augmenter.apply(&mut out, s, &mut rng, &mut Vec::new());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct values everywhere: v = 1 + y·100 + x·10 + k.
    fn ramp(s: Shape) -> Vec<f32> {
        let mut v = Vec::with_capacity(s.len());
        for y in 0..s.h {
            for x in 0..s.w {
                for k in 0..s.c {
                    v.push(1.0 + (y * 100 + x * 10 + k) as f32);
                }
            }
        }
        v
    }

    fn at(img: &[f32], s: Shape, y: usize, x: usize, k: usize) -> f32 {
        img[(y * s.w + x) * s.c + k]
    }

    #[test]
    fn previews_apply_one_augmentation_seeded() {
        let s = Shape::new(6, 6, 3);
        let src: Vec<f32> = ramp(s).iter().map(|v| v / 600.0).collect();
        let cfg = AugmentConfig::default();
        let mut flipped = src.clone();
        mirror(&mut flipped, s);
        assert_eq!(preview(&cfg, Augmentation::Mirror, &src, s, 1), flipped);
        for which in Augmentation::ALL {
            let a = preview(&cfg, which, &src, s, 7);
            assert_eq!(a, preview(&cfg, which, &src, s, 7), "{which:?} is seeded");
            assert_ne!(a, src, "{which:?} changes the image");
            // The same draw as training with only this augmentation on.
            if which != Augmentation::Mirror && which != Augmentation::Pca {
                let mut b = src.clone();
                let aug = Augmenter {
                    config: which.alone(&cfg),
                    pca: None,
                };
                aug.apply(
                    &mut b,
                    s,
                    &mut Rng::derive(7, &[which as u64]),
                    &mut Vec::new(),
                );
                assert_eq!(a, b, "{which:?}");
            }
        }
        // A stronger setting gives a different preview.
        let stronger = AugmentConfig {
            rotate_max_deg: 40.0,
            ..cfg
        };
        assert_ne!(
            preview(&cfg, Augmentation::Rotate, &src, s, 7),
            preview(&stronger, Augmentation::Rotate, &src, s, 7)
        );
    }

    #[test]
    fn mirror_is_exactly_a_flip() {
        let s = Shape::new(3, 5, 3);
        let src = ramp(s);
        let mut img = src.clone();
        mirror(&mut img, s);
        for y in 0..s.h {
            for x in 0..s.w {
                for k in 0..s.c {
                    assert_eq!(at(&img, s, y, x, k), at(&src, s, y, s.w - 1 - x, k));
                }
            }
        }
        mirror(&mut img, s);
        assert_eq!(img, src);
    }

    #[test]
    fn crop_is_an_exact_shifted_copy_with_zero_border() {
        let s = Shape::new(4, 5, 2);
        let src = ramp(s);
        let mut dst = vec![f32::NAN; s.len()];
        // pad 2, offset (0, 3): shift down by 2, left by 1.
        pad_crop(&src, &mut dst, s, 2, 0, 3);
        for y in 0..s.h {
            for x in 0..s.w {
                for k in 0..s.c {
                    let (sy, sx) = (y as isize - 2, x as isize + 1);
                    let want = if sy < 0 || sx >= s.w as isize {
                        0.0
                    } else {
                        at(&src, s, sy as usize, sx as usize, k)
                    };
                    assert_eq!(at(&dst, s, y, x, k), want, "({y},{x},{k})");
                }
            }
        }
        pad_crop(&src, &mut dst, s, 2, 2, 2);
        assert_eq!(dst, src, "the centre crop is the image itself");
    }

    #[test]
    fn colour_shift_adds_a_per_channel_constant() {
        let s = Shape::new(3, 3, 3);
        let src = ramp(s);
        let aug = Augmenter {
            config: AugmentConfig {
                colour_shift: true,
                ..Default::default()
            },
            pca: None,
        };
        let mut img = src.clone();
        aug.apply(&mut img, s, &mut Rng::new(4), &mut Vec::new());
        let d: Vec<f32> = (0..3).map(|k| img[k] - src[k]).collect();
        assert!(d.iter().all(|x| x.abs() <= 0.1 + 1e-6));
        assert!(d.iter().any(|x| x.abs() > 1e-4), "something changed");
        assert!(
            (d[0] - d[1]).abs() > 1e-6 || (d[1] - d[2]).abs() > 1e-6,
            "offsets differ per channel"
        );
        for (i, (a, b)) in img.iter().zip(&src).enumerate() {
            assert!((a - b - d[i % 3]).abs() < 1e-4);
        }
    }

    #[test]
    fn jacobi_diagonalises_symmetric_matrices() {
        let a = [[4.0, 1.0, 0.5], [1.0, 3.0, -0.7], [0.5, -0.7, 2.0]];
        let (vals, vecs) = symmetric_eigen3(a);
        assert!(vals[0] >= vals[1] && vals[1] >= vals[2]);
        for i in 0..3 {
            for r in 0..3 {
                let av: f64 = (0..3).map(|c| a[r][c] * vecs[i][c]).sum();
                assert!((av - vals[i] * vecs[i][r]).abs() < 1e-10, "A v = λ v");
            }
            for j in 0..3 {
                let dot: f64 = (0..3).map(|k| vecs[i][k] * vecs[j][k]).sum();
                assert!(
                    (dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10,
                    "orthonormal"
                );
            }
        }
        let trace: f64 = vals.iter().sum();
        assert!((trace - 9.0).abs() < 1e-10);
        // Already diagonal, and degenerate.
        let (v2, _) = symmetric_eigen3([[1.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eq!(v2, [5.0, 1.0, 1.0]);
    }

    #[test]
    fn pca_adds_a_constant_vector_in_the_eigen_span() {
        // Pixels spread along the grey axis (1,1,1) plus a little red.
        let mut rng = Rng::new(1);
        let mut pixels = Vec::new();
        for _ in 0..500 {
            let g = rng.next_f32();
            let r = 0.05 * rng.normal();
            pixels.extend_from_slice(&[g + r, g, g]);
        }
        let ds = Dataset::new(pixels, vec![0; 125], Shape::new(2, 2, 3), vec!["a".into()]).unwrap();
        let pca = ColorPca::from_dataset(&ds).unwrap();
        let v0 = pca.eigenvectors[0];
        let grey = 1.0 / 3f32.sqrt();
        assert!(
            v0.iter().all(|x| (x.abs() - grey).abs() < 0.05),
            "first component ≈ grey axis: {v0:?}"
        );
        assert!(pca.eigenvalues[0] > 10.0 * pca.eigenvalues[1]);

        let s = Shape::new(3, 4, 3);
        let src = ramp(s);
        let aug = Augmenter {
            config: AugmentConfig {
                pca: true,
                pca_sigma: 1.0,
                ..Default::default()
            },
            pca: Some(pca.clone()),
        };
        let mut img = src.clone();
        aug.apply(&mut img, s, &mut Rng::new(8), &mut Vec::new());
        let d = [img[0] - src[0], img[1] - src[1], img[2] - src[2]];
        assert!(d.iter().any(|x| x.abs() > 1e-4));
        for (i, (a, b)) in img.iter().zip(&src).enumerate() {
            assert!(
                (a - b - d[i % 3]).abs() < 1e-4,
                "same offset at every pixel"
            );
        }
        // d = Σ cᵢ vᵢ with cᵢ = d·vᵢ, and |cᵢ| ≤ a few √λᵢ (σ = 1).
        let mut recon = [0f32; 3];
        for i in 0..3 {
            let ci: f32 = (0..3).map(|k| d[k] * pca.eigenvectors[i][k]).sum();
            assert!(ci.abs() <= 5.0 * pca.eigenvalues[i].sqrt() + 1e-5);
            for (r, v) in recon.iter_mut().zip(&pca.eigenvectors[i]) {
                *r += ci * v;
            }
        }
        for k in 0..3 {
            assert!((recon[k] - d[k]).abs() < 1e-5);
        }
        let grey_ds = ds.with_channels(1).unwrap();
        assert!(ColorPca::from_dataset(&grey_ds).is_err());
    }

    #[test]
    fn affine_identity_rotation_and_shear() {
        let s = Shape::new(5, 5, 2);
        let src = ramp(s);
        let mut dst = vec![0.0; s.len()];
        affine_bilinear(&src, &mut dst, s, rotation_shear_inverse(0.0, 0.0));
        assert_eq!(dst, src);
        // 90° turns pixel centres onto pixel centres.
        affine_bilinear(&src, &mut dst, s, rotation_shear_inverse(90.0, 0.0));
        for y in 0..5 {
            for x in 0..5 {
                // forward (x,y)→(cx−(y−cy), cy+(x−cx)); so dst(x,y) = src(y, 4−x) as (x,y)
                let want = at(&src, s, 4 - x, y, 1);
                assert!((at(&dst, s, y, x, 1) - want).abs() < 1e-3, "({y},{x})");
            }
        }
        // Shear 1 on an odd-height image: row y moves right by (y − 2) whole pixels.
        let s2 = Shape::new(5, 7, 1);
        let src2 = ramp(s2);
        let mut dst2 = vec![0.0; s2.len()];
        affine_bilinear(&src2, &mut dst2, s2, rotation_shear_inverse(0.0, 1.0));
        for y in 0..5 {
            for x in 0..7 {
                let sx = x as isize - (y as isize - 2);
                let want = if (0..7).contains(&sx) {
                    at(&src2, s2, y, sx as usize, 0)
                } else {
                    0.0
                };
                assert_eq!(at(&dst2, s2, y, x, 0), want, "({y},{x})");
            }
        }
    }

    #[test]
    fn small_rotation_changes_pixels_smoothly() {
        let s = Shape::new(9, 9, 1);
        let src: Vec<f32> = (0..81).map(|i| (i % 9) as f32).collect(); // horizontal ramp
        let aug = Augmenter {
            config: AugmentConfig {
                rotate: true,
                ..Default::default()
            },
            pca: None,
        };
        let mut img = src.clone();
        aug.apply(&mut img, s, &mut Rng::new(2), &mut Vec::new());
        assert_ne!(img, src);
        // The centre pixel is the centre of rotation.
        assert!((img[40] - src[40]).abs() < 1e-4);
        // A ≤10° rotation moves a pixel at radius r by at most r·sin 10°; the ramp has slope 1.
        for y in 2..7 {
            for x in 2..7 {
                let i = y * 9 + x;
                assert!((img[i] - src[i]).abs() <= 2.9 * 0.18 + 1e-3, "({y},{x})");
            }
        }
    }

    #[test]
    fn augmenter_is_seeded_and_off_means_identity() {
        let s = Shape::new(6, 6, 3);
        let src = ramp(s);
        let all = Augmenter::new(AugmentConfig::parse("all").unwrap(), &{
            Dataset::new(src.clone(), vec![0], s, vec!["a".into()]).unwrap()
        })
        .unwrap();
        let mut a = src.repeat(4);
        let mut b = a.clone();
        all.apply_batch(&mut a, s, 11);
        all.apply_batch(&mut b, s, 11);
        assert_eq!(a, b, "same seed, same pixels");
        assert_ne!(
            &a[..s.len()],
            &a[s.len()..2 * s.len()],
            "each image draws its own parameters"
        );
        let none = Augmenter {
            config: AugmentConfig::default(),
            pca: None,
        };
        let mut c = src.clone();
        none.apply_batch(&mut c, s, 11);
        assert_eq!(c, src);
    }

    #[test]
    fn ten_crops_are_corners_centre_and_mirrors() {
        let s = Shape::new(5, 6, 2);
        let src = ramp(s);
        let views = ten_crops(&src, s, (3, 4), (3, 4));
        assert_eq!(views.len(), 10);
        let cs = Shape::new(3, 4, 2);
        let origins = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)];
        for (v, &(y0, x0)) in views.iter().zip(&origins) {
            for y in 0..3 {
                for x in 0..4 {
                    assert_eq!(at(v, cs, y, x, 1), at(&src, s, y0 + y, x0 + x, 1));
                }
            }
        }
        for i in 0..5 {
            let mut m = views[i].clone();
            mirror(&mut m, cs);
            assert_eq!(m, views[i + 5]);
        }
        // Resized to the network's input.
        let big = ten_crops(&src, s, (3, 4), (6, 8));
        assert!(big.iter().all(|v| v.len() == 6 * 8 * 2));
    }

    #[test]
    fn elastic_field_is_smooth_seeded_and_bounded_by_alpha() {
        let (h, w) = (24, 20);
        let field = |seed: u64, alpha: f32, sigma: f32| {
            let mut fields = vec![0.0; 3 * h * w];
            let mut rng = Rng::new(seed);
            elastic_field(h, w, alpha, sigma, &mut rng, &mut fields);
            (fields[..h * w].to_vec(), fields[h * w..2 * h * w].to_vec())
        };
        let (dx, dy) = field(5, 2.0, 3.0);
        assert_eq!(
            (dx.clone(), dy.clone()),
            field(5, 2.0, 3.0),
            "same seed, same field"
        );
        assert_ne!(dx, field(6, 2.0, 3.0).0);
        assert!(dx.iter().chain(&dy).all(|v| v.abs() <= 2.0 + 1e-5));
        assert!(dx.iter().any(|v| v.abs() > 0.05), "the field moves pixels");
        // Smoothing: neighbours move together, far more than raw noise would.
        let step: f32 = (0..h * w - 1)
            .filter(|i| (i + 1) % w != 0)
            .map(|i| (dx[i + 1] - dx[i]).abs())
            .sum::<f32>()
            / ((w - 1) * h) as f32;
        let (raw, _) = field(5, 2.0, 0.0);
        let raw_step: f32 = (0..h * w - 1)
            .filter(|i| (i + 1) % w != 0)
            .map(|i| (raw[i + 1] - raw[i]).abs())
            .sum::<f32>()
            / ((w - 1) * h) as f32;
        assert!(
            step * 5.0 < raw_step,
            "smoothed step {step}, raw step {raw_step}"
        );
    }

    #[test]
    fn displace_bilinear_shifts_by_the_field() {
        let s = Shape::new(5, 6, 2);
        let src = ramp(s);
        let n = s.h * s.w;
        let mut out = vec![f32::NAN; s.len()];
        displace_bilinear(&src, &mut out, s, &vec![0.0; n], &vec![0.0; n]);
        assert_eq!(out, src, "a zero field is the identity");
        // Every pixel reads one column to its right (the last column reads zeros).
        displace_bilinear(&src, &mut out, s, &vec![1.0; n], &vec![0.0; n]);
        for y in 0..s.h {
            for x in 0..s.w {
                let want = if x + 1 < s.w {
                    at(&src, s, y, x + 1, 1)
                } else {
                    0.0
                };
                assert_eq!(at(&out, s, y, x, 1), want, "({y},{x})");
            }
        }
        // Half a row down: the mean of two rows.
        displace_bilinear(&src, &mut out, s, &vec![0.0; n], &vec![0.5; n]);
        assert_eq!(
            at(&out, s, 1, 2, 0),
            0.5 * (at(&src, s, 1, 2, 0) + at(&src, s, 2, 2, 0))
        );
    }

    #[test]
    fn elastic_warp_moves_a_dot_by_at_most_alpha() {
        let s = Shape::new(32, 32, 1);
        let mut cfg = AugmentConfig::parse("elastic").unwrap();
        cfg.elastic_alpha = 3.0;
        let aug = Augmenter {
            config: cfg,
            pca: None,
        };
        for seed in 0..8 {
            let mut img = vec![0.0; s.len()];
            for y in 14..18 {
                for x in 14..18 {
                    img[y * 32 + x] = 1.0;
                }
            }
            let mut rng = Rng::new(seed);
            aug.apply(&mut img, s, &mut rng, &mut Vec::new());
            let mass: f32 = img.iter().sum();
            assert!(mass > 4.0, "the dot survives (mass {mass})");
            let (mut cy, mut cx) = (0.0, 0.0);
            for (i, v) in img.iter().enumerate() {
                cy += (i / 32) as f32 * v;
                cx += (i % 32) as f32 * v;
            }
            let (cy, cx) = (cy / mass, cx / mass);
            assert!(
                (cy - 15.5).abs() <= 3.0 + 1e-3 && (cx - 15.5).abs() <= 3.0 + 1e-3,
                "seed {seed}: ({cy}, {cx})"
            );
            assert!(img.iter().all(|v| (0.0..=1.0 + 1e-6).contains(v)));
        }
    }

    #[test]
    fn parse_names() {
        let c = AugmentConfig::parse("mirror, crop,colour,pca").unwrap();
        assert!(c.mirror && c.crop && c.colour_shift && c.pca && !c.rotate && !c.shear);
        assert!(AugmentConfig::parse("affine").unwrap().shear);
        assert!(AugmentConfig::parse("elastic").unwrap().elastic);
        assert!(AugmentConfig::parse("all").unwrap().elastic);
        assert!(!AugmentConfig::parse("").unwrap().any());
        let err = AugmentConfig::parse("mirror,blur").unwrap_err().to_string();
        assert!(err.contains("blur") && err.contains("mirror"), "{err}");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pad_crop_matches_padding_then_cropping(h in 1usize..7, w in 1usize..7, c in 1usize..4,
                                                  pad in 0usize..4, oy in 0usize..9, ox in 0usize..9) {
            let (oy, ox) = (oy % (2 * pad + 1), ox % (2 * pad + 1));
            let s = Shape::new(h, w, c);
            let src: Vec<f32> = (0..s.len()).map(|i| i as f32 + 1.0).collect();
            // Reference: build the padded image, cut the window.
            let (ph, pw) = (h + 2 * pad, w + 2 * pad);
            let mut padded = vec![0.0; ph * pw * c];
            for y in 0..h {
                for x in 0..w {
                    for k in 0..c {
                        padded[((y + pad) * pw + x + pad) * c + k] = src[(y * w + x) * c + k];
                    }
                }
            }
            let want = crop_region(&padded, Shape::new(ph, pw, c), oy, ox, h, w);
            let mut got = vec![f32::NAN; s.len()];
            pad_crop(&src, &mut got, s, pad, oy, ox);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn mirror_twice_is_identity(h in 1usize..6, w in 1usize..8, c in 1usize..4) {
            let s = Shape::new(h, w, c);
            let src: Vec<f32> = (0..s.len()).map(|i| i as f32).collect();
            let mut img = src.clone();
            mirror(&mut img, s);
            if w > 1 { prop_assert_ne!(&img, &src); }
            mirror(&mut img, s);
            prop_assert_eq!(img, src);
        }
    }
}
