//! Evaluation of trained weights: accuracy, per-class accuracy and the
//! confusion matrix; multi-crop test-time evaluation (4 corners + centre and
//! their mirrors, softmax averaged); ensembles (softmax averaged over several
//! weight files of the same design).

use super::feed::{Feed, recompute_bn_stats};
use super::memory::{self, Budget, Purpose};
use super::plan::Plan;
use super::prepare::fit_output;
use super::weights::{self, LoadReport, WeightsMeta};
use super::{Mode, argmax};
use crate::data::{ChannelStats, Dataset, augment};
use crate::graph::Graph;
use crate::infer::analyze;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// How to evaluate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalOptions {
    /// Average ten views per image (corners, centre, mirrors).
    pub multi_crop: bool,
    /// Side of each crop as a fraction of the image (resized back to the input size).
    pub crop_fraction: f32,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            multi_crop: false,
            crop_fraction: 0.875,
        }
    }
}

/// The results of evaluating one split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub images: usize,
    pub accuracy: f32,
    /// Mean cross-entropy of the (averaged) probabilities.
    pub loss: f32,
    pub class_names: Vec<String>,
    /// Accuracy per true class (`NaN` for a class with no images).
    pub per_class: Vec<f32>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Views averaged per image (1, or 10 with multi-crop).
    pub views: usize,
    /// Weight files averaged.
    pub models: usize,
}

/// `matrix[true][predicted]` counts.
pub fn confusion_matrix(labels: &[u32], predictions: &[u32], classes: usize) -> Vec<Vec<usize>> {
    let k = classes.max(2);
    let mut m = vec![vec![0; k]; k];
    for (&t, &p) in labels.iter().zip(predictions) {
        if (t as usize) < k && (p as usize) < k {
            m[t as usize][p as usize] += 1;
        }
    }
    m.truncate(classes.max(1));
    m
}

/// Class probabilities (`n × K`, K ≥ 2) of `ds` under `plan`, normalised by
/// `stats`, averaged over the views `opts` asks for.
pub fn predict(
    plan: &mut Plan,
    ds: &Dataset,
    stats: &ChannelStats,
    opts: &EvalOptions,
) -> Vec<f32> {
    let shape = ds.shape();
    let per = ds.image_len();
    let views = if opts.multi_crop { 10 } else { 1 };
    let k = plan.classes.max(2);
    let mut out = vec![0.0f32; ds.len() * k];
    let crop = (
        ((shape.h as f32 * opts.crop_fraction).round() as usize).clamp(1, shape.h),
        ((shape.w as f32 * opts.crop_fraction).round() as usize).clamp(1, shape.w),
    );
    let images_per_pass = (plan.max_batch / views).max(1);
    let mut buf: Vec<f32> = Vec::new();
    let mut owners: Vec<usize> = Vec::new();
    let mut flush = |plan: &mut Plan, buf: &mut Vec<f32>, owners: &mut Vec<usize>| {
        for (chunk, who) in buf
            .chunks(plan.max_batch * per)
            .zip(owners.chunks(plan.max_batch))
        {
            plan.forward(chunk, Mode::Eval);
            let probs = plan.probabilities();
            for (j, &img) in who.iter().enumerate() {
                let row = &mut out[img * k..(img + 1) * k];
                if plan.classes == 1 {
                    row[0] += (1.0 - probs[j]) / views as f32;
                    row[1] += probs[j] / views as f32;
                } else {
                    for (o, &p) in row.iter_mut().zip(&probs[j * k..(j + 1) * k]) {
                        *o += p / views as f32;
                    }
                }
            }
        }
        buf.clear();
        owners.clear();
    };
    for i in 0..ds.len() {
        if opts.multi_crop {
            for mut v in augment::ten_crops(ds.image(i), shape, crop, (shape.h, shape.w)) {
                stats.apply(&mut v);
                buf.extend_from_slice(&v);
                owners.push(i);
            }
        } else {
            let start = buf.len();
            buf.extend_from_slice(ds.image(i));
            stats.apply(&mut buf[start..]);
            owners.push(i);
        }
        if (i + 1) % images_per_pass == 0 {
            flush(plan, &mut buf, &mut owners);
        }
    }
    if !owners.is_empty() {
        flush(plan, &mut buf, &mut owners);
    }
    out
}

/// Accuracy, loss, per-class accuracy and confusion matrix from probabilities.
pub fn summarise(probs: &[f32], labels: &[u32], class_names: &[String]) -> Evaluation {
    let n = labels.len();
    let k = probs.len().checked_div(n).unwrap_or(2);
    let predictions: Vec<u32> = probs.chunks_exact(k).map(|r| argmax(r) as u32).collect();
    let confusion = confusion_matrix(labels, &predictions, class_names.len());
    let correct = labels
        .iter()
        .zip(&predictions)
        .filter(|(t, p)| t == p)
        .count();
    let loss = labels
        .iter()
        .zip(probs.chunks_exact(k))
        .map(|(&t, row)| -(row.get(t as usize).copied().unwrap_or(0.0).max(1e-12) as f64).ln())
        .sum::<f64>()
        / n.max(1) as f64;
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: usize = row.iter().sum();
            if total == 0 {
                f32::NAN
            } else {
                row.get(c).copied().unwrap_or(0) as f32 / total as f32
            }
        })
        .collect();
    Evaluation {
        images: n,
        accuracy: correct as f32 / n.max(1) as f32,
        loss: loss as f32,
        class_names: class_names.to_vec(),
        per_class,
        confusion,
        views: 1,
        models: 1,
    }
}

/// Evaluates one model or an ensemble (softmax averaged over `plans`).
pub fn evaluate(
    plans: &mut [Plan],
    ds: &Dataset,
    stats: &ChannelStats,
    opts: &EvalOptions,
) -> Evaluation {
    let mut sum: Vec<f32> = Vec::new();
    for plan in plans.iter_mut() {
        let p = predict(plan, ds, stats, opts);
        if sum.is_empty() {
            sum = p;
        } else {
            for (s, v) in sum.iter_mut().zip(p) {
                *s += v;
            }
        }
    }
    let m = plans.len().max(1) as f32;
    sum.iter_mut().for_each(|v| *v /= m);
    let mut e = summarise(&sum, &ds.labels, &ds.class_names);
    e.views = if opts.multi_crop { 10 } else { 1 };
    e.models = plans.len();
    e
}

/// A trained model ready to evaluate.
pub struct Model {
    pub plan: Plan,
    pub meta: WeightsMeta,
    pub report: LoadReport,
    /// What [`fit_output`] changed, if anything.
    pub notice: Option<String>,
    /// Moving-average BatchNorm statistics saved beside precise-BN ones (`ema.*`).
    pub ema_stats: Vec<(String, Vec<f32>)>,
}

impl Model {
    /// Puts back the training-time moving-average BatchNorm statistics, when
    /// the file has them (weights saved after precise BN). Returns whether it did.
    pub fn use_ema_stats(&mut self) -> bool {
        let mut any = false;
        for (name, data) in &self.ema_stats {
            if let Some(p) = self.plan.param_mut(name)
                && p.data.len() == data.len()
            {
                p.data.copy_from_slice(data);
                any = true;
            }
        }
        any
    }
}

/// Why a trained model could not be loaded for evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    #[error(transparent)]
    Prepare(#[from] super::prepare::PrepareError),
    /// The plan would not fit the memory budget.
    #[error("`{design}` {source}")]
    Memory {
        design: String,
        source: memory::MemoryError,
    },
    #[error(transparent)]
    Compile(#[from] super::CompileError),
    /// The file's tensors do not fit the design.
    #[error("{} does not fit `{design}`: {report}", path.display())]
    Mismatch {
        path: std::path::PathBuf,
        design: String,
        report: String,
    },
}

/// Compiles `graph` for the classes `weights` was trained on and loads it.
/// Every tensor of the design must be in the file with its shape.
pub fn load_model(
    graph: &Graph,
    weights_path: &Path,
    max_batch: usize,
) -> Result<Model, EvalError> {
    load_model_within(graph, weights_path, max_batch, &Budget::new(None))
}

/// [`load_model`], refusing a plan whose memory estimate exceeds `budget`.
pub fn load_model_within(
    graph: &Graph,
    weights_path: &Path,
    max_batch: usize,
    budget: &Budget,
) -> Result<Model, EvalError> {
    let file = weights::read(weights_path)?;
    let meta = file.meta.clone().unwrap_or_default();
    let mut graph = graph.clone();
    let notice = if meta.classes.is_empty() {
        None
    } else {
        fit_output(&mut graph, meta.classes.len())?
    };
    let analysis = analyze(&graph);
    if analysis.is_valid() {
        budget
            .check(&memory::estimate(
                &graph,
                &analysis,
                max_batch,
                Purpose::Evaluate,
            ))
            .map_err(|source| EvalError::Memory {
                design: graph.name.clone(),
                source,
            })?;
    }
    let mut plan = Plan::compile(&graph, &analysis, max_batch, 0)?;
    let report = weights::apply(&file, &mut plan.params);
    if !report.is_complete() {
        return Err(EvalError::Mismatch {
            path: weights_path.to_path_buf(),
            design: graph.name.clone(),
            report: report.to_string(),
        });
    }
    let ema_stats = file
        .tensors
        .iter()
        .filter_map(|(n, _, d)| {
            n.strip_prefix(weights::EMA_PREFIX)
                .map(|n| (n.to_string(), d.clone()))
        })
        .collect();
    Ok(Model {
        plan,
        meta,
        report,
        notice,
        ema_stats,
    })
}

/// Precise BN for a loaded model: recomputes the running statistics of its
/// BatchNorm layers from up to `images` training images. Returns the batches used.
pub fn precise_bn(
    plan: &mut Plan,
    train: Arc<Dataset>,
    stats: &ChannelStats,
    images: usize,
    seed: u64,
) -> usize {
    let mut feed = Feed::new(train, stats.clone());
    recompute_bn_stats(plan, &mut feed, images, seed).unwrap_or(0)
}

impl Evaluation {
    /// The confusion matrix as a text table (rows: true class, columns: predicted).
    pub fn confusion_table(&self) -> String {
        let names: Vec<String> = self
            .class_names
            .iter()
            .map(|n| n.chars().take(8).collect())
            .collect();
        let cw = names.iter().map(String::len).max().unwrap_or(1).max(5);
        let w = cw.max(9);
        let mut s = format!("{:>w$} │", "true\\pred");
        for n in &names {
            s.push_str(&format!(" {n:>cw$}"));
        }
        s.push_str("     acc\n");
        for (i, row) in self.confusion.iter().enumerate() {
            let name = names.get(i).cloned().unwrap_or_default();
            s.push_str(&format!("{name:>w$} │"));
            for v in row {
                s.push_str(&format!(" {v:>cw$}"));
            }
            let acc = self.per_class.get(i).copied().unwrap_or(f32::NAN);
            s.push_str(&format!(" {:>6.1}%\n", 100.0 * acc));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_per_class() {
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        // Rows: predicted 0, 1, 1, 2.
        let probs = [
            0.8, 0.1, 0.1, //
            0.2, 0.7, 0.1, //
            0.1, 0.6, 0.3, //
            0.1, 0.1, 0.8,
        ];
        let e = summarise(&probs, &[0, 1, 2, 2], &names);
        assert_eq!(e.accuracy, 0.75);
        assert_eq!(
            e.confusion,
            vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]
        );
        assert_eq!(e.per_class, vec![1.0, 1.0, 0.5]);
        let table = e.confusion_table();
        assert!(table.contains("50.0%"), "{table}");
    }
}
