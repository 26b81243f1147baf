//! In-memory datasets (NHWC `f32`), splits, normalisation, seeded shuffling
//! and batching — including a prefetching batcher on its own thread.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::DataError;
use super::augment::Augmenter;
use super::image_folder::Skipped;
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

// ---------------------------------------------------------------------------
// Batching

/// How batches are drawn from a dataset.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    pub batch_size: usize,
    /// Reshuffle every epoch (seeded by `seed` and the epoch number).
    pub shuffle: bool,
    /// Skip the last batch of an epoch when it is not full.
    pub drop_last: bool,
    pub seed: u64,
    /// Training-time augmentation, applied to raw pixels before normalisation.
    pub augment: Option<Augmenter>,
    /// Normalisation applied to every batch after augmentation.
    pub normalize: Option<ChannelStats>,
}

impl BatchConfig {
    /// In-order, unaugmented batches (for validation and test).
    pub fn eval(batch_size: usize, normalize: Option<ChannelStats>) -> Self {
        BatchConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            seed: 0,
            augment: None,
            normalize,
        }
    }

    /// Shuffled batches, optionally augmented, for training.
    pub fn train(
        batch_size: usize,
        seed: u64,
        augment: Option<Augmenter>,
        normalize: Option<ChannelStats>,
    ) -> Self {
        BatchConfig {
            batch_size,
            shuffle: true,
            drop_last: false,
            seed,
            augment,
            normalize,
        }
    }

    /// Number of batches one epoch of `n` images gives.
    pub fn batches_per_epoch(&self, n: usize) -> usize {
        if self.batch_size == 0 {
            0
        } else if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The order in which epoch `epoch` visits the `n` images.
    pub fn epoch_order(&self, n: usize, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        if self.shuffle {
            Rng::derive(self.seed, &[0x0005_4FF1_E000, epoch]).shuffle(&mut order);
        }
        order
    }

    fn check(&self) -> Result<(), DataError> {
        if self.batch_size == 0 {
            return Err(DataError::Invalid("batch size must be at least 1".into()));
        }
        Ok(())
    }
}

/// Copies the images at `indices` into `images` (NHWC) and their labels into
/// `labels`, augmenting (seeded by `seed`, `epoch` and each image's position
/// `first_position + j` in the epoch, so the result never depends on threads)
/// and normalising as `cfg` says. Buffers must hold at least `indices.len()` images.
pub fn fill_batch(
    ds: &Dataset,
    indices: &[usize],
    cfg: &BatchConfig,
    epoch: u64,
    first_position: usize,
    images: &mut [f32],
    labels: &mut [u32],
) {
    let n = ds.image_len();
    let shape = ds.shape();
    let mut scratch = Vec::new();
    for (j, &i) in indices.iter().enumerate() {
        let dst = &mut images[j * n..(j + 1) * n];
        dst.copy_from_slice(ds.image(i));
        if let Some(aug) = &cfg.augment {
            let mut rng = Rng::derive(cfg.seed, &[0xA06, epoch, (first_position + j) as u64]);
            aug.apply(dst, shape, &mut rng, &mut scratch);
        }
        if let Some(stats) = &cfg.normalize {
            stats.apply(dst);
        }
        labels[j] = ds.labels[i];
    }
}

/// Fills caller-provided batch buffers, one epoch at a time, on the calling thread.
pub struct Batcher<'a> {
    ds: &'a Dataset,
    cfg: BatchConfig,
    epoch: u64,
    order: Vec<usize>,
    next: usize,
}

impl<'a> Batcher<'a> {
    /// Starts at epoch 0.
    pub fn new(ds: &'a Dataset, cfg: BatchConfig) -> Result<Self, DataError> {
        cfg.check()?;
        let order = cfg.epoch_order(ds.len(), 0);
        Ok(Batcher {
            ds,
            cfg,
            epoch: 0,
            order,
            next: 0,
        })
    }

    /// Restarts at the beginning of `epoch` (reshuffled for that epoch).
    pub fn start_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.order = self.cfg.epoch_order(self.ds.len(), epoch);
        self.next = 0;
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.cfg.batches_per_epoch(self.ds.len())
    }

    /// Values a full image buffer needs (`batch_size · h · w · c`).
    pub fn images_buffer_len(&self) -> usize {
        self.cfg.batch_size * self.ds.image_len()
    }

    /// Fills the next batch of this epoch and returns how many images it has,
    /// or `None` when the epoch is done. `images` must hold `batch_size · h · w · c`
    /// values and `labels` `batch_size`; a short last batch fills a prefix.
    pub fn next_into(&mut self, images: &mut [f32], labels: &mut [u32]) -> Option<usize> {
        let b = self.cfg.batch_size;
        let start = self.next * b;
        if self.next >= self.batches_per_epoch() || start >= self.order.len() {
            return None;
        }
        let end = (start + b).min(self.order.len());
        assert!(
            images.len() >= (end - start) * self.ds.image_len() && labels.len() >= end - start,
            "batch buffers too small: {} values and {} labels for {} images of {}",
            images.len(),
            labels.len(),
            end - start,
            self.ds.shape()
        );
        fill_batch(
            self.ds,
            &self.order[start..end],
            &self.cfg,
            self.epoch,
            start,
            images,
            labels,
        );
        self.next += 1;
        Some(end - start)
    }
}

/// One batch delivered by the [`Prefetcher`]. Buffers are sized for a full
/// batch; the first `len` images and labels are valid.
#[derive(Debug)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub len: usize,
    pub epoch: u64,
    /// Position of this batch within its epoch.
    pub index: usize,
    pub batches_in_epoch: usize,
}

impl Batch {
    /// The valid part of `images`.
    pub fn images(&self) -> &[f32] {
        let per = self.images.len() / self.labels.len().max(1);
        &self.images[..self.len * per]
    }

    /// The valid part of `labels`.
    pub fn labels(&self) -> &[u32] {
        &self.labels[..self.len]
    }

    /// `true` for the last batch of its epoch.
    pub fn is_last_in_epoch(&self) -> bool {
        self.index + 1 == self.batches_in_epoch
    }
}

/// Prepares batches (copy, augment, normalise) on a named background thread,
/// at most `depth` ahead of the consumer through a bounded channel, so
/// training never waits on augmentation. Gives the batches of the epochs in
/// `epochs`, in order; dropping it stops the thread.
pub struct Prefetcher {
    rx: Option<Receiver<Batch>>,
    recycle: Sender<Batch>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetcher {
    /// Name of the background thread.
    pub const THREAD_NAME: &'static str = "netloom-batches";

    pub fn spawn(
        ds: Arc<Dataset>,
        cfg: BatchConfig,
        epochs: Range<u64>,
        depth: usize,
    ) -> Result<Self, DataError> {
        cfg.check()?;
        let (tx, rx): (SyncSender<Batch>, Receiver<Batch>) = mpsc::sync_channel(depth.max(1));
        let (recycle, returned) = mpsc::channel::<Batch>();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_worker = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name(Self::THREAD_NAME.into())
            .spawn(move || {
                let n_img = ds.image_len();
                let b = cfg.batch_size;
                let per_epoch = cfg.batches_per_epoch(ds.len());
                for epoch in epochs {
                    let order = cfg.epoch_order(ds.len(), epoch);
                    for index in 0..per_epoch {
                        if stop_worker.load(Ordering::Relaxed) {
                            return;
                        }
                        let mut batch = returned.try_recv().unwrap_or_else(|_| Batch {
                            images: vec![0.0; b * n_img],
                            labels: vec![0; b],
                            len: 0,
                            epoch,
                            index,
                            batches_in_epoch: per_epoch,
                        });
                        let start = index * b;
                        let end = (start + b).min(order.len());
                        fill_batch(
                            &ds,
                            &order[start..end],
                            &cfg,
                            epoch,
                            start,
                            &mut batch.images,
                            &mut batch.labels,
                        );
                        batch.len = end - start;
                        batch.epoch = epoch;
                        batch.index = index;
                        batch.batches_in_epoch = per_epoch;
                        if tx.send(batch).is_err() {
                            return; // consumer gone
                        }
                    }
                }
            })
            .map_err(DataError::Thread)?;
        Ok(Prefetcher {
            rx: Some(rx),
            recycle,
            stop,
            handle: Some(handle),
        })
    }

    /// Hands a consumed batch's buffers back for reuse (optional).
    pub fn recycle(&self, batch: Batch) {
        let _ = self.recycle.send(batch);
    }
}

impl Iterator for Prefetcher {
    type Item = Batch;

    /// The next batch, waiting for it if needed; `None` after the last epoch.
    fn next(&mut self) -> Option<Batch> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx = None; // unblocks a worker waiting to send
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn batcher_covers_each_image_once_per_epoch_and_reshuffles() {
        let ds = toy(10, 1, 3);
        let cfg = BatchConfig::train(4, 1, None, None);
        let mut b = Batcher::new(&ds, cfg).unwrap();
        assert_eq!(b.batches_per_epoch(), 3);
        let mut imgs = vec![0.0; b.images_buffer_len()];
        let mut labels = vec![0u32; 4];
        let mut epoch_orders = Vec::new();
        for epoch in 0..2 {
            b.start_epoch(epoch);
            let mut seen = Vec::new();
            while let Some(k) = b.next_into(&mut imgs, &mut labels) {
                for j in 0..k {
                    let i = imgs[j * 4] as usize;
                    assert_eq!(labels[j], (i % 3) as u32, "label travels with its image");
                    seen.push(i);
                }
            }
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
            epoch_orders.push(seen);
        }
        assert_ne!(epoch_orders[0], epoch_orders[1]);
        let mut dl = BatchConfig::eval(4, None);
        dl.drop_last = true;
        assert_eq!(dl.batches_per_epoch(10), 2);
        assert!(Batcher::new(&ds, BatchConfig::eval(0, None)).is_err());
    }

    #[test]
    fn batcher_normalises() {
        let ds = toy(2, 1, 1);
        let stats = ChannelStats {
            mean: vec![1.0],
            std: vec![2.0],
        };
        let mut b = Batcher::new(&ds, BatchConfig::eval(2, Some(stats))).unwrap();
        let mut imgs = vec![0.0; 8];
        let mut labels = vec![0; 2];
        assert_eq!(b.next_into(&mut imgs, &mut labels), Some(2));
        assert_eq!(imgs, vec![-0.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(b.next_into(&mut imgs, &mut labels), None);
    }

    #[test]
    fn prefetcher_matches_batcher_on_a_named_thread() {
        let ds = Arc::new(toy(11, 1, 2));
        let aug = crate::data::augment::AugmentConfig::parse("mirror,crop,colour").unwrap();
        let aug = Augmenter::new(aug, &ds).unwrap();
        let cfg = BatchConfig::train(3, 5, Some(aug), None);
        let mut expected = Vec::new();
        let mut b = Batcher::new(&ds, cfg.clone()).unwrap();
        for epoch in 0..3 {
            b.start_epoch(epoch);
            let mut imgs = vec![0.0; 12];
            let mut labels = vec![0; 3];
            while let Some(k) = b.next_into(&mut imgs, &mut labels) {
                expected.push((imgs[..k * 4].to_vec(), labels[..k].to_vec()));
            }
        }
        let mut pf = Prefetcher::spawn(Arc::clone(&ds), cfg, 0..3, 2).unwrap();
        let mut got = Vec::new();
        while let Some(batch) = pf.next() {
            if batch.index == 0 {
                assert_eq!(batch.batches_in_epoch, 4);
            }
            got.push((batch.images().to_vec(), batch.labels().to_vec()));
            pf.recycle(batch);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn dropping_a_prefetcher_midway_stops_its_thread() {
        let ds = Arc::new(toy(50, 1, 2));
        let mut pf =
            Prefetcher::spawn(ds, BatchConfig::train(2, 0, None, None), 0..1_000_000, 1).unwrap();
        let first = pf.next().unwrap();
        assert_eq!(first.len, 2);
        assert_eq!(
            pf.handle
                .as_ref()
                .and_then(|h| h.thread().name().map(str::to_owned))
                .as_deref(),
            Some(Prefetcher::THREAD_NAME)
        );
        drop(pf); // must return: the worker sees the closed channel
    }
}
