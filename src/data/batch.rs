//! Batching a dataset: shuffled (seeded per epoch), augmented and normalised
//! batches, drawn in the caller's thread ([`Batcher`]) or prefetched on a
//! named thread of their own ([`Prefetcher`]).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use super::DataError;
use super::augment::Augmenter;
use super::dataset::{ChannelStats, Dataset};
use super::rng::Rng;

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
    use crate::data::dataset::tests::toy;

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
