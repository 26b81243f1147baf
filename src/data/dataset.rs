//! In-memory datasets (NHWC `f32`), splits and normalisation; batching is in
//! [`super::batch`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::DataError;
use super::rng::Rng;

/// Height, width and channels of one image (stored HWC, row-major).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub fn new(h: usize, w: usize, c: usize) -> Self {
        Shape { h, w, c }
    }

    /// Number of `f32` values in one image.
    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// `true` when any dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.h, self.w, self.c)
    }
}

/// Images and labels held in memory.
///
/// `images` holds `len() · h · w · c` values, NHWC: image `i` is the
/// contiguous slice `image(i)`, pixel `(y, x)` channel `k` of it at
/// `(y · w + x) · c + k`. Loaders store raw intensities scaled to `[0, 1]`;
/// normalisation is applied later (see [`ChannelStats`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    /// Label `k` is `class_names[k]`.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Checks that the buffers agree with the shape and the labels with the classes.
    pub fn new(
        images: Vec<f32>,
        labels: Vec<u32>,
        shape: Shape,
        class_names: Vec<String>,
    ) -> Result<Self, DataError> {
        if shape.is_empty() {
            return Err(DataError::Invalid(format!(
                "image shape {shape} has a zero dimension"
            )));
        }
        if images.len() != labels.len() * shape.len() {
            return Err(DataError::Invalid(format!(
                "{} labels need {} image values of shape {shape}, got {}",
                labels.len(),
                labels.len() * shape.len(),
                images.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
            return Err(DataError::Invalid(format!(
                "label {bad} is out of range for {} classes",
                class_names.len()
            )));
        }
        Ok(Dataset {
            images,
            labels,
            h: shape.h,
            w: shape.w,
            c: shape.c,
            class_names,
        })
    }

    /// A dataset with no images.
    pub fn empty(shape: Shape, class_names: Vec<String>) -> Self {
        Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            h: shape.h,
            w: shape.w,
            c: shape.c,
            class_names,
        }
    }

    pub fn shape(&self) -> Shape {
        Shape::new(self.h, self.w, self.c)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Values per image (`h · w · c`).
    pub fn image_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Image `i` as an HWC slice. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Image `i` as a mutable HWC slice. Panics if `i >= len()`.
    pub fn image_mut(&mut self, i: usize) -> &mut [f32] {
        let n = self.image_len();
        &mut self.images[i * n..(i + 1) * n]
    }

    /// Images per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order, with the same classes.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            images,
            labels,
            h: self.h,
            w: self.w,
            c: self.c,
            class_names: self.class_names.clone(),
        }
    }

    /// Appends `other`, which must have the same shape and classes.
    pub fn append(&mut self, other: &Dataset) -> Result<(), DataError> {
        if other.shape() != self.shape() || other.class_names != self.class_names {
            return Err(DataError::Invalid(format!(
                "cannot join a {} dataset of {} classes to a {} dataset of {} classes",
                other.shape(),
                other.num_classes(),
                self.shape(),
                self.num_classes()
            )));
        }
        self.images.extend_from_slice(&other.images);
        self.labels.extend_from_slice(&other.labels);
        Ok(())
    }

    /// Indices of a stratified hold-out: from every class, `round(fraction · count)`
    /// images chosen by `seed` go to the second list, the rest to the first.
    /// Both lists are in ascending order.
    pub fn stratified_indices(
        &self,
        fraction: f32,
        seed: u64,
    ) -> Result<(Vec<usize>, Vec<usize>), DataError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(DataError::Invalid(format!(
                "split fraction {fraction} is not between 0 and 1"
            )));
        }
        let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); self.num_classes()];
        for (i, &l) in self.labels.iter().enumerate() {
            per_class[l as usize].push(i);
        }
        let mut kept = Vec::new();
        let mut held = Vec::new();
        for (k, members) in per_class.iter_mut().enumerate() {
            let mut rng = Rng::derive(seed, &[0x5EED_5917, k as u64]);
            rng.shuffle(members);
            let take = (fraction as f64 * members.len() as f64).round() as usize;
            held.extend_from_slice(&members[..take]);
            kept.extend_from_slice(&members[take..]);
        }
        kept.sort_unstable();
        held.sort_unstable();
        Ok((kept, held))
    }

    /// Splits into `(rest, held_out)` by [`Dataset::stratified_indices`].
    pub fn stratified_split(
        &self,
        fraction: f32,
        seed: u64,
    ) -> Result<(Dataset, Dataset), DataError> {
        let (kept, held) = self.stratified_indices(fraction, seed)?;
        Ok((self.subset(&kept), self.subset(&held)))
    }

    /// Per-channel mean and standard deviation over every pixel of every image.
    pub fn channel_stats(&self) -> ChannelStats {
        let c = self.c;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for px in self.images.chunks_exact(c) {
            for k in 0..c {
                let v = px[k] as f64;
                sum[k] += v;
                sq[k] += v * v;
            }
        }
        let count = (self.images.len() / c.max(1)).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
        let std = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| {
                let m = s / count;
                let var = (q / count - m * m).max(0.0);
                let sd = var.sqrt() as f32;
                if sd > 1e-6 { sd } else { 1.0 }
            })
            .collect();
        ChannelStats { mean, std }
    }

    /// Applies `(x − mean) / std` per channel to every image in place.
    pub fn normalize(&mut self, stats: &ChannelStats) {
        stats.apply(&mut self.images);
    }

    /// Every image resized to `h × w` by bilinear interpolation (pixel centres
    /// aligned, as the `image` crate's triangle filter does when enlarging).
    pub fn resized(&self, h: usize, w: usize) -> Dataset {
        if (h, w) == (self.h, self.w) {
            return self.clone();
        }
        let src_shape = self.shape();
        let dst_shape = Shape::new(h, w, self.c);
        let mut images = vec![0f32; self.len() * dst_shape.len()];
        for (i, dst) in images.chunks_exact_mut(dst_shape.len()).enumerate() {
            resize_bilinear(self.image(i), src_shape, dst, dst_shape);
        }
        Dataset {
            images,
            labels: self.labels.clone(),
            h,
            w,
            c: self.c,
            class_names: self.class_names.clone(),
        }
    }

    /// Converted to `c` channels: grey → RGB repeats the value; RGB → grey
    /// takes Rec. 709 luma (as the `image` crate does).
    pub fn with_channels(&self, c: usize) -> Result<Dataset, DataError> {
        if c == self.c {
            return Ok(self.clone());
        }
        let px = self.h * self.w * self.len();
        let images = match (self.c, c) {
            (1, 3) => self.images.iter().flat_map(|&v| [v, v, v]).collect(),
            (3, 1) => self.images.chunks_exact(3).map(luma).collect(),
            (from, to) => {
                return Err(DataError::Invalid(format!(
                    "cannot convert {from}-channel images to {to} channels (only 1 and 3 are supported)"
                )));
            }
        };
        debug_assert_eq!(px * c, Vec::<f32>::len(&images));
        Ok(Dataset {
            images,
            labels: self.labels.clone(),
            h: self.h,
            w: self.w,
            c,
            class_names: self.class_names.clone(),
        })
    }

    /// Resized and converted to `shape` (no copy when it already matches).
    pub fn conform(self, shape: Shape) -> Result<Dataset, DataError> {
        let ds = if self.c != shape.c {
            self.with_channels(shape.c)?
        } else {
            self
        };
        Ok(if (ds.h, ds.w) != (shape.h, shape.w) {
            ds.resized(shape.h, shape.w)
        } else {
            ds
        })
    }
}

/// Rec. 709 luma of an RGB pixel.
pub(crate) fn luma(px: &[f32]) -> f32 {
    0.2126 * px[0] + 0.7152 * px[1] + 0.0722 * px[2]
}

/// Bilinear resize of one HWC image (channels must match).
pub fn resize_bilinear(src: &[f32], s: Shape, dst: &mut [f32], d: Shape) {
    debug_assert_eq!(s.c, d.c);
    let c = s.c;
    let sy = s.h as f32 / d.h as f32;
    let sx = s.w as f32 / d.w as f32;
    for y in 0..d.h {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (s.h - 1) as f32);
        let y0 = fy.floor() as usize;
        let y1 = (y0 + 1).min(s.h - 1);
        let ty = fy - y0 as f32;
        for x in 0..d.w {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (s.w - 1) as f32);
            let x0 = fx.floor() as usize;
            let x1 = (x0 + 1).min(s.w - 1);
            let tx = fx - x0 as f32;
            for k in 0..c {
                let p = |yy: usize, xx: usize| src[(yy * s.w + xx) * c + k];
                let top = p(y0, x0) * (1.0 - tx) + p(y0, x1) * tx;
                let bot = p(y1, x0) * (1.0 - tx) + p(y1, x1) * tx;
                dst[(y * d.w + x) * c + k] = top * (1.0 - ty) + bot * ty;
            }
        }
    }
}

/// Per-channel mean and standard deviation (from the training split).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ChannelStats {
    /// Statistics that leave values unchanged.
    pub fn identity(c: usize) -> Self {
        ChannelStats {
            mean: vec![0.0; c],
            std: vec![1.0; c],
        }
    }

    /// `(x − mean) / std` per channel, in place, on any number of HWC pixels.
    pub fn apply(&self, values: &mut [f32]) {
        let c = self.mean.len();
        let inv: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        for px in values.chunks_exact_mut(c) {
            for k in 0..c {
                px[k] = (px[k] - self.mean[k]) * inv[k];
            }
        }
    }

    /// The inverse of [`ChannelStats::apply`].
    pub fn unapply(&self, values: &mut [f32]) {
        let c = self.mean.len();
        for px in values.chunks_exact_mut(c) {
            for ((v, s), m) in px.iter_mut().zip(&self.std).zip(&self.mean) {
                *v = *v * s + m;
            }
        }
    }
}

/// A file that was skipped while loading, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The file's path, relative to the folder that was loaded when possible.
    pub path: PathBuf,
    pub reason: String,
}

/// A dataset's splits as loaded; `val` and `test` are absent when the source
/// has none and none was held out.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: Dataset,
    pub val: Option<Dataset>,
    pub test: Option<Dataset>,
    /// Files that could not be decoded (image folders only); never fatal.
    pub skipped: Vec<Skipped>,
    /// What the loader changed or noticed and the user should hear about:
    /// images resized or converted to the design's input, empty class folders.
    pub notices: Vec<String>,
}

impl Splits {
    pub fn class_names(&self) -> &[String] {
        &self.train.class_names
    }

    /// Holds out the splits the source lacks, stratified and seeded by
    /// `opts.seed`: first a test split of `opts.test_fraction` of train (when
    /// there is no test split), then a validation split of `opts.val_fraction`
    /// of what remains (when there is no validation split). Zero fractions hold
    /// nothing out.
    pub fn hold_out(&mut self, opts: &super::LoadOptions) -> Result<(), DataError> {
        super::check_fractions(opts.val_fraction, opts.test_fraction)?;
        if self.test.is_none() && opts.test_fraction > 0.0 {
            let (train, test) = self
                .train
                .stratified_split(opts.test_fraction, mix_purpose(opts.seed, 1))?;
            self.train = train;
            self.test = Some(test);
        }
        if self.val.is_none() && opts.val_fraction > 0.0 {
            let (train, val) = self
                .train
                .stratified_split(opts.val_fraction, mix_purpose(opts.seed, 2))?;
            self.train = train;
            self.val = Some(val);
        }
        Ok(())
    }

    /// Converts every split to `shape` (resize and channel conversion).
    pub fn conform(self, shape: Shape) -> Result<Splits, DataError> {
        self.conform_within(shape, None)
    }

    /// [`Splits::conform`], refusing when the converted images would take
    /// more than `budget` bytes; a conversion is announced in `notices`.
    pub fn conform_within(
        mut self,
        shape: Shape,
        budget: Option<u64>,
    ) -> Result<Splits, DataError> {
        let from = self.train.shape();
        let images = self.train.len()
            + self.val.as_ref().map_or(0, Dataset::len)
            + self.test.as_ref().map_or(0, Dataset::len);
        check_image_budget(images, shape, budget)?;
        if let Some(notice) = conversion_notice(from, shape) {
            self.notices.push(notice);
        }
        Ok(Splits {
            train: self.train.conform(shape)?,
            val: self.val.map(|d| d.conform(shape)).transpose()?,
            test: self.test.map(|d| d.conform(shape)).transpose()?,
            skipped: self.skipped,
            notices: self.notices,
        })
    }
}

/// Refuses `images` images of `shape` (f32) when they exceed `budget` bytes.
pub fn check_image_budget(
    images: usize,
    shape: Shape,
    budget: Option<u64>,
) -> Result<(), DataError> {
    let bytes = (images as u64)
        .saturating_mul(shape.h as u64)
        .saturating_mul(shape.w as u64)
        .saturating_mul(shape.c as u64)
        .saturating_mul(4);
    match budget {
        Some(b) if bytes > b => Err(DataError::TooLarge {
            images,
            shape,
            bytes,
            budget: b,
        }),
        _ => Ok(()),
    }
}

/// "the images are 28×28×1; they are resized to 32×32 and grey is repeated
/// to 3 channels for the design's 32×32×3 input", or `None` when they match.
pub fn conversion_notice(from: Shape, to: Shape) -> Option<String> {
    let mut changes = Vec::new();
    if (from.h, from.w) != (to.h, to.w) {
        changes.push(format!("resized to {}×{}", to.h, to.w));
    }
    match (from.c, to.c) {
        (1, 3) => changes.push("grey is repeated to 3 channels".to_string()),
        (3, 1) => changes.push("colour is turned to grey".to_string()),
        (a, b) if a != b => changes.push(format!("converted from {a} to {b} channels")),
        _ => {}
    }
    (!changes.is_empty()).then(|| {
        format!(
            "the images are {from}; they are {} for the design's {to} input",
            changes.join(" and ")
        )
    })
}

pub(crate) fn mix_purpose(seed: u64, purpose: u64) -> u64 {
    super::rng::mix_seed(seed, &[purpose])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` images of shape 2×2×c whose every value is the image index; label i % classes.
    pub(crate) fn toy(n: usize, c: usize, classes: usize) -> Dataset {
        let shape = Shape::new(2, 2, c);
        let images = (0..n)
            .flat_map(|i| std::iter::repeat_n(i as f32, shape.len()))
            .collect();
        let labels = (0..n).map(|i| (i % classes) as u32).collect();
        let names = (0..classes).map(|k| format!("c{k}")).collect();
        Dataset::new(images, labels, shape, names).expect("valid toy dataset")
    }

    #[test]
    fn new_validates() {
        let s = Shape::new(2, 2, 1);
        assert!(Dataset::new(vec![0.0; 7], vec![0, 0], s, vec!["a".into()]).is_err());
        assert!(Dataset::new(vec![0.0; 8], vec![0, 1], s, vec!["a".into()]).is_err());
        assert!(Dataset::new(vec![0.0; 8], vec![0, 0], s, vec!["a".into()]).is_ok());
        assert!(Dataset::new(vec![], vec![], Shape::new(0, 2, 1), vec![]).is_err());
    }

    #[test]
    fn stratified_split_keeps_class_proportions_and_is_seeded() {
        let ds = toy(100, 1, 4); // 25 per class
        let (a, b) = ds.stratified_indices(0.2, 9).unwrap();
        assert_eq!(a.len() + b.len(), 100);
        let held = ds.subset(&b);
        assert_eq!(held.class_counts(), vec![5, 5, 5, 5]);
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(
            ds.stratified_indices(0.2, 9).unwrap(),
            (a.clone(), b.clone())
        );
        assert_ne!(ds.stratified_indices(0.2, 10).unwrap().1, b);
        assert!(ds.stratified_indices(1.5, 0).is_err());
    }

    #[test]
    fn stats_and_normalisation() {
        let shape = Shape::new(1, 2, 2);
        // pixels: (0, 10), (2, 10), (4, 10), (6, 10)
        let ds = Dataset::new(
            vec![0., 10., 2., 10., 4., 10., 6., 10.],
            vec![0, 0],
            shape,
            vec!["a".into()],
        )
        .unwrap();
        let st = ds.channel_stats();
        assert!((st.mean[0] - 3.0).abs() < 1e-6 && (st.mean[1] - 10.0).abs() < 1e-6);
        assert!((st.std[0] - 5f32.sqrt()).abs() < 1e-5);
        assert_eq!(
            st.std[1], 1.0,
            "constant channel gets std 1, not a division by zero"
        );
        let mut n = ds.clone();
        n.normalize(&st);
        let st2 = n.channel_stats();
        assert!(st2.mean[0].abs() < 1e-6 && (st2.std[0] - 1.0).abs() < 1e-5);
        st.unapply(&mut n.images);
        for (x, y) in n.images.iter().zip(&ds.images) {
            assert!((x - y).abs() < 1e-5);
        }
    }

    #[test]
    fn resize_and_channels() {
        let ds = toy(3, 1, 3);
        let big = ds.resized(4, 6);
        assert_eq!((big.h, big.w, big.len()), (4, 6, 3));
        assert!(
            big.image(2).iter().all(|&v| v == 2.0),
            "constant images stay constant"
        );
        let rgb = ds.with_channels(3).unwrap();
        assert_eq!(rgb.image(1), &[1.0; 12]);
        let grey = rgb.with_channels(1).unwrap();
        for (a, b) in grey.images.iter().zip(&ds.images) {
            assert!((a - b).abs() < 1e-5);
        }
        assert!(ds.with_channels(2).is_err());
        let c = ds.clone().conform(Shape::new(3, 3, 3)).unwrap();
        assert_eq!(c.shape(), Shape::new(3, 3, 3));
        // A gradient resized to the same size is untouched; 2× upsampling keeps the mean.
        let g = Dataset::new(
            vec![0., 1., 2., 3.],
            vec![0],
            Shape::new(2, 2, 1),
            vec!["a".into()],
        )
        .unwrap();
        let up = g.resized(4, 4);
        let mean: f32 = up.images.iter().sum::<f32>() / 16.0;
        assert!((mean - 1.5).abs() < 1e-5);
    }
}
