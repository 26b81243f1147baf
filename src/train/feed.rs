//! Feeding a plan one split: images normalised on the fly, or cached
//! activations of a frozen prefix ([`ActivationCache`]); and precise
//! BatchNorm statistics recomputed over such a feed.

use super::Mode;
use super::plan::{Op, Plan};
use crate::data::{self, BatchConfig, ChannelStats, Dataset};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// Activations of one value for every image of a split, in memory or in a
/// temporary file (deleted on drop).
#[derive(Debug)]
pub enum ActivationCache {
    Memory {
        data: Vec<f32>,
        per: usize,
    },
    Disk {
        file: std::fs::File,
        path: PathBuf,
        per: usize,
    },
}

impl ActivationCache {
    /// Values per image.
    pub fn per_image(&self) -> usize {
        match self {
            ActivationCache::Memory { per, .. } | ActivationCache::Disk { per, .. } => *per,
        }
    }

    pub fn is_on_disk(&self) -> bool {
        matches!(self, ActivationCache::Disk { .. })
    }

    /// Runs `plan` up to step `cut` over every image of `ds` (eval mode,
    /// normalised by `stats`) and keeps that step's output.
    pub fn build(
        plan: &mut Plan,
        cut: usize,
        ds: &Dataset,
        stats: &ChannelStats,
        memory_limit: usize,
        progress: &mut dyn FnMut(usize, usize),
    ) -> std::io::Result<Self> {
        let per = plan.value_elems[cut];
        let bytes = ds.len() * per * 4;
        let mut sink = if bytes <= memory_limit {
            ActivationCache::Memory {
                data: Vec::with_capacity(ds.len() * per),
                per,
            }
        } else {
            static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let k = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "netloom-activations-{}-{k}.f32",
                std::process::id()
            ));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            ActivationCache::Disk { file, path, per }
        };
        let cfg = BatchConfig::eval(plan.max_batch, Some(stats.clone()));
        let mut batcher = data::Batcher::new(ds, cfg)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut images = vec![0.0; batcher.images_buffer_len()];
        let mut labels = vec![0; plan.max_batch];
        let mut done = 0;
        let mut writer_buf = Vec::new();
        while let Some(n) = batcher.next_into(&mut images, &mut labels) {
            plan.forward_through(&images[..n * ds.image_len()], cut, Mode::Eval);
            let act = plan.activation(cut);
            match &mut sink {
                ActivationCache::Memory { data, .. } => data.extend_from_slice(act),
                ActivationCache::Disk { file, .. } => {
                    writer_buf.clear();
                    writer_buf.extend(act.iter().flat_map(|v| v.to_le_bytes()));
                    file.write_all(&writer_buf)?;
                }
            }
            done += n;
            progress(done, ds.len());
        }
        if let ActivationCache::Disk { file, .. } = &mut sink {
            file.flush()?;
        }
        Ok(sink)
    }

    /// Copies the rows `indices` into `out` (resized to fit).
    pub fn fetch(&mut self, indices: &[usize], out: &mut Vec<f32>) -> std::io::Result<()> {
        let per = self.per_image();
        out.resize(indices.len() * per, 0.0);
        match self {
            ActivationCache::Memory { data, .. } => {
                for (j, &i) in indices.iter().enumerate() {
                    out[j * per..(j + 1) * per].copy_from_slice(&data[i * per..(i + 1) * per]);
                }
            }
            ActivationCache::Disk { file, .. } => {
                let mut buf = vec![0u8; per * 4];
                for (j, &i) in indices.iter().enumerate() {
                    file.seek(SeekFrom::Start((i * per * 4) as u64))?;
                    file.read_exact(&mut buf)?;
                    for (o, b) in out[j * per..(j + 1) * per]
                        .iter_mut()
                        .zip(buf.chunks_exact(4))
                    {
                        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for ActivationCache {
    fn drop(&mut self) {
        if let ActivationCache::Disk { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One split as the plan consumes it.
pub(crate) struct Feed {
    pub ds: Arc<Dataset>,
    /// Cached activations at plan value `.1`, when the frozen prefix is cached.
    pub cache: Option<(ActivationCache, usize)>,
    stats: ChannelStats,
    images: Vec<f32>,
    labels: Vec<u32>,
}

impl Feed {
    pub(crate) fn new(ds: Arc<Dataset>, stats: ChannelStats) -> Self {
        Feed {
            ds,
            cache: None,
            stats,
            images: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// The last batch [`Feed::forward`] ran, as the plan saw it.
    pub(crate) fn images(&self) -> &[f32] {
        &self.images
    }

    pub(crate) fn len(&self) -> usize {
        self.ds.len()
    }

    /// Runs the plan forward on the images `indices` (unaugmented); returns their labels.
    pub(crate) fn forward(
        &mut self,
        plan: &mut Plan,
        indices: &[usize],
        mode: Mode,
    ) -> std::io::Result<&[u32]> {
        self.labels.clear();
        self.labels
            .extend(indices.iter().map(|&i| self.ds.labels[i]));
        match &mut self.cache {
            Some((cache, value)) => {
                cache.fetch(indices, &mut self.images)?;
                plan.forward_from(*value, &self.images, mode);
            }
            None => {
                let per = self.ds.image_len();
                self.images.resize(indices.len() * per, 0.0);
                let cfg = BatchConfig::eval(indices.len(), Some(self.stats.clone()));
                let mut labels = vec![0; indices.len()];
                data::batch::fill_batch(
                    &self.ds,
                    indices,
                    &cfg,
                    0,
                    0,
                    &mut self.images,
                    &mut labels,
                );
                plan.forward(&self.images, mode);
            }
        }
        Ok(&self.labels)
    }

    /// Mean loss and accuracy over the whole split (eval mode, in order).
    pub(crate) fn evaluate(&mut self, plan: &mut Plan) -> std::io::Result<(f32, f32, Vec<u32>)> {
        let n = self.len();
        let mut loss = 0.0f64;
        let mut correct = 0;
        let mut predictions = Vec::with_capacity(n);
        let order: Vec<usize> = (0..n).collect();
        for chunk in order.chunks(plan.max_batch) {
            let labels = self.forward(plan, chunk, Mode::Eval)?.to_vec();
            correct += plan.correct(&labels);
            let k = plan.classes;
            for row in plan.probabilities().chunks_exact(k) {
                predictions.push(if k == 1 {
                    (row[0] > 0.5) as u32
                } else {
                    super::argmax(row) as u32
                });
            }
            loss += plan.loss_backward(&labels) as f64 * chunk.len() as f64;
        }
        Ok((
            (loss / n.max(1) as f64) as f32,
            correct as f32 / n.max(1) as f32,
            predictions,
        ))
    }
}

/// The running-statistics tensors of every trainable BatchNorm step.
pub(crate) fn bn_stat_params(plan: &Plan) -> Vec<usize> {
    plan.steps
        .iter()
        .filter(|s| !s.frozen)
        .flat_map(|s| match s.op {
            Op::BatchNorm {
                running_mean,
                running_var,
                ..
            } => vec![running_mean, running_var],
            _ => Vec::new(),
        })
        .collect()
}

/// Precise BN: replaces the running statistics of every trainable BatchNorm
/// layer with their average over up to `images` shuffled training images
/// (batches of the plan's size, train-mode forward, no gradients). Returns
/// the number of batches used (0 when the plan has no such layer).
pub(crate) fn recompute_bn_stats(
    plan: &mut Plan,
    feed: &mut Feed,
    images: usize,
    seed: u64,
) -> std::io::Result<usize> {
    let bn: Vec<usize> = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.frozen && matches!(s.op, Op::BatchNorm { .. }))
        .map(|(i, _)| i)
        .collect();
    if bn.is_empty() {
        return Ok(0);
    }
    let mut order: Vec<usize> = (0..feed.len()).collect();
    data::Rng::derive(seed, &[0xB4_7C4E]).shuffle(&mut order);
    order.truncate(images.max(plan.max_batch).min(order.len()));
    let saved_momentum: Vec<f32> = bn
        .iter()
        .map(|&i| match plan.steps[i].op {
            Op::BatchNorm { momentum, .. } => momentum,
            _ => 0.0,
        })
        .collect();
    let iteration = plan.iteration;
    let mut k = 0usize;
    let mut result = Ok(());
    for chunk in order.chunks(plan.max_batch) {
        if chunk.len() < 2 {
            break; // a single image has no batch variance
        }
        k += 1;
        // Cumulative average: the k-th batch gets weight 1/k.
        let m = (k - 1) as f32 / k as f32;
        for &i in &bn {
            if let Op::BatchNorm { momentum, .. } = &mut plan.steps[i].op {
                *momentum = m;
            }
        }
        if let Err(e) = feed.forward(plan, chunk, Mode::Train) {
            result = Err(e);
            break;
        }
    }
    for (&i, &saved) in bn.iter().zip(&saved_momentum) {
        if let Op::BatchNorm { momentum, .. } = &mut plan.steps[i].op {
            *momentum = saved;
        }
    }
    plan.iteration = iteration;
    result.map(|_| k)
}
