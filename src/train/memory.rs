//! The memory a plan needs, estimated from the design before anything is
//! allocated, and the budget it must fit in.
//!
//! [`estimate`] mirrors what [`Plan::compile`](super::Plan::compile) and the
//! trainer allocate: per sample of the batch, every layer's activation, an
//! equally large gradient buffer (an upper bound: gradient buffers are
//! shared by liveness), the scratch buffer and the class scores (max-pool
//! keeps no indices: its backward finds each window's winner again); once, the parameters and, when training, their gradients, the
//! optimizer state and the copy kept to undo a non-finite step; and the
//! convolution workspaces. [`Budget::check`] refuses an estimate above the
//! budget with the batch that would fit; what slips past it is caught by
//! the plan, which allocates every buffer fallibly
//! ([`zeroed`](super::plan::zeroed)) and names the one the system refused.

use crate::graph::{Graph, LayerKind};
use crate::infer::{Analysis, Shape};
use std::fmt;
use thiserror::Error;

/// Fraction of the available memory a run may plan to use by default.
pub const DEFAULT_FRACTION: f64 = 0.8;

/// What the plan is for: training keeps gradients, optimizer state and a
/// prefetch queue of input batches; evaluation keeps none of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `optimizer_slots` tensors per trainable parameter (Adam 2, SGD with momentum 1).
    Train {
        optimizer_slots: u64,
    },
    Evaluate,
}

/// Estimated bytes of one plan at one batch size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub batch: usize,
    /// Bytes that do not grow with the batch.
    pub fixed: u64,
    /// Bytes per sample of the batch.
    pub per_sample: u64,
}

impl MemoryEstimate {
    /// Bytes at this estimate's batch size (saturating).
    pub fn total(&self) -> u64 {
        self.at_batch(self.batch)
    }

    pub fn at_batch(&self, batch: usize) -> u64 {
        self.fixed
            .saturating_add(self.per_sample.saturating_mul(batch as u64))
    }

    /// The largest power-of-two batch whose estimate is at most `bytes`.
    pub fn batch_within(&self, bytes: u64) -> Option<usize> {
        let room = bytes.checked_sub(self.fixed)?;
        let most = room.checked_div(self.per_sample).unwrap_or(u64::MAX);
        (most >= 1).then(|| 1usize << most.min(1 << 30).ilog2())
    }
}

/// `1.2 GB`, `350 MB`, `12 kB` (decimal units, as `df` and `free -h --si`).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e12 {
        format!("{:.1} TB", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else {
        format!("{:.0} kB", (b / 1e3).ceil())
    }
}

/// Sums with saturation: an estimate that saturates is refused anyway.
#[derive(Default)]
struct Tally(u64);

impl Tally {
    fn add(&mut self, v: u64) {
        self.0 = self.0.saturating_add(v);
    }
    fn add_product(&mut self, a: u64, b: u64) {
        self.add(a.saturating_mul(b));
    }
}

/// Estimates the memory of `graph` compiled at `batch` for `purpose`. The
/// analysis must be valid (every node has a shape); nodes without one count
/// nothing.
pub fn estimate(
    graph: &Graph,
    analysis: &Analysis,
    batch: usize,
    purpose: Purpose,
) -> MemoryEstimate {
    let training = matches!(purpose, Purpose::Train { .. });
    let (mut per_sample, mut params, mut trainable) = (Tally::default(), Tally::default(), 0u64);
    let mut largest = 0u64;
    let mut classes = 0u64;
    for &id in &analysis.order {
        let (Some(node), Some(info)) = (graph.node(id), analysis.node(id)) else {
            continue;
        };
        let Some(out) = info.output_shape else {
            continue;
        };
        let elems = out.elements();
        largest = largest.max(elems);
        classes = out.channels();
        // The activation, and (training) a gradient buffer as large.
        per_sample.add_product(elems, if training { 8 } else { 4 });
        params.add(info.cost.weights.saturating_add(info.cost.running_stats));
        if !node.frozen {
            trainable = trainable.saturating_add(info.cost.weights);
        }
    }
    // The scratch buffer (the largest activation) and the class scores with their targets.
    per_sample.add_product(largest, 4);
    per_sample.add_product(classes, 8);
    if let Purpose::Train { .. } = purpose {
        // The prefetch queue: four batches of input images in flight, plus the one in use.
        per_sample.add_product(input_elements(graph, analysis), 5 * 4);
    }
    let mut fixed = Tally::default();
    fixed.add_product(params.0, 4);
    if let Purpose::Train { optimizer_slots } = purpose {
        // Gradients and optimizer state of trainable tensors; a copy of
        // every tensor to restore after a non-finite step.
        fixed.add_product(trainable, 4 * (1 + optimizer_slots));
        fixed.add_product(params.0, 4);
    }
    let estimate = MemoryEstimate {
        batch,
        fixed: fixed.0,
        per_sample: per_sample.0,
    };
    // Workspaces are sized from the geometry only when the rest is sane, so
    // absurd designs never reach kernel arithmetic.
    if estimate.total() < 1 << 46 {
        MemoryEstimate {
            fixed: estimate
                .fixed
                .saturating_add(workspace_bytes(graph, analysis, batch)),
            ..estimate
        }
    } else {
        estimate
    }
}

fn input_elements(graph: &Graph, analysis: &Analysis) -> u64 {
    graph
        .input_nodes()
        .iter()
        .filter_map(|&id| analysis.node(id)?.output_shape)
        .map(|s| s.elements())
        .fold(0, u64::saturating_add)
}

/// The largest convolution workspace (one is shared by all layers).
fn workspace_bytes(graph: &Graph, analysis: &Analysis, batch: usize) -> u64 {
    let mut largest = 0u64;
    for &id in &analysis.order {
        let (Some(node), Some(info)) = (graph.node(id), analysis.node(id)) else {
            continue;
        };
        let LayerKind::Conv2d {
            filters, groups, ..
        } = node.kind
        else {
            continue;
        };
        let (Some(Some(Shape::Volume { h, w, c })), Some(win)) =
            (info.input_shapes.first(), info.window)
        else {
            continue;
        };
        let input = (*h as usize, *w as usize, *c as usize);
        let geo = super::plan::conv_geometry(batch, input, filters, &win, groups);
        if let Ok(geo) = geo {
            largest = largest.max(geo.workspace_len() as u64 * 4);
        }
    }
    largest
}

/// Why a plan was refused for its memory.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MemoryError {
    #[error("{}", over_budget(.needs, *.batch, .budget, .fits))]
    OverBudget {
        needs: u64,
        batch: usize,
        budget: Budget,
        fits: Option<usize>,
    },
    #[error("--memory-limit `{0}`: expected a size such as 512M, 6G or 6.5GB")]
    BadSize(String),
}

fn over_budget(needs: &u64, batch: usize, budget: &Budget, fits: &Option<usize>) -> String {
    let fits = match fits {
        Some(b) if *b < batch => format!("; batch {b} fits"),
        _ => "; the parameters alone do not fit, at any batch size".into(),
    };
    format!(
        "needs ~{} at batch {batch}; {budget}{fits}",
        human_bytes(*needs)
    )
}

/// How much a plan may use, and where that figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    /// The memory available when the budget was set, if derived from it
    /// (`None`: set by the user with `--memory-limit`).
    pub available: Option<u64>,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.available {
            None => write!(f, "--memory-limit is {}", human_bytes(self.bytes)),
            Some(available) => write!(
                f,
                "{} available, of which {:.0}% may be planned (--memory-limit changes that)",
                human_bytes(available),
                100.0 * DEFAULT_FRACTION
            ),
        }
    }
}

impl Budget {
    /// `--memory-limit` when given, else [`DEFAULT_FRACTION`] of the memory
    /// available now (no limit when the system does not say).
    pub fn new(limit: Option<u64>) -> Budget {
        match limit {
            Some(bytes) => Budget {
                bytes,
                available: None,
            },
            None => match available_bytes() {
                Some(a) => Budget {
                    bytes: (a as f64 * DEFAULT_FRACTION) as u64,
                    available: Some(a),
                },
                None => Budget {
                    bytes: u64::MAX,
                    available: None,
                },
            },
        }
    }

    /// Refuses an estimate above the budget.
    pub fn check(&self, estimate: &MemoryEstimate) -> Result<(), MemoryError> {
        let needs = estimate.total();
        if needs > self.bytes {
            return Err(MemoryError::OverBudget {
                needs,
                batch: estimate.batch,
                budget: *self,
                fits: estimate.batch_within(self.bytes),
            });
        }
        Ok(())
    }
}

/// Parses `512M`, `6G`, `6.5GB`, `2GiB` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, MemoryError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| MemoryError::BadSize(text.into()))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(MemoryError::BadSize(text.into())),
    };
    let bytes = value * scale;
    if bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64 {
        Ok(bytes as u64)
    } else {
        Err(MemoryError::BadSize(text.into()))
    }
}

/// Memory the process can still obtain: the system's `MemAvailable`, and
/// at most what is left under an address-space limit (`ulimit -v`).
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let system = meminfo
        .as_deref()
        .and_then(|t| kib_field(t, "MemAvailable:"));
    let limit = address_space_room();
    match (system, limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A `Name:   123 kB` field of a /proc file, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(target_os = "linux")]
fn address_space_room() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let used = kib_field(&status, "VmSize:")?;
    Some(limit.rlim_cur.saturating_sub(used))
}

#[cfg(not(target_os = "linux"))]
fn address_space_room() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::analyze;

    fn mlp(inputs: u32, units: u32) -> Graph {
        let mut g = Graph::new("mlp");
        let i = g
            .add_node(
                "in",
                LayerKind::Input {
                    height: 1,
                    width: 1,
                    channels: inputs,
                },
                [0.0, 0.0],
            )
            .unwrap();
        let f = g.add_node("flat", LayerKind::Flatten, [0.0, 0.0]).unwrap();
        let d = g
            .add_node("fc", LayerKind::Dense { units, bias: true }, [0.0, 0.0])
            .unwrap();
        g.connect(i, f, 0).unwrap();
        g.connect(f, d, 0).unwrap();
        g
    }

    #[test]
    fn estimate_counts_parameters_and_activations() {
        let g = mlp(100, 10);
        let a = analyze(&g);
        let eval = estimate(&g, &a, 8, Purpose::Evaluate);
        // 1010 parameters; per sample: activations 100 + 100 + 10, scratch 100, scores 2·10.
        assert_eq!(eval.fixed, 4 * 1010);
        assert_eq!(eval.per_sample, 4 * (210 + 100) + 8 * 10);
        let train = estimate(&g, &a, 8, Purpose::Train { optimizer_slots: 2 });
        // Gradients, two Adam moments and the restore copy on top of the parameters.
        assert_eq!(train.fixed, 4 * 1010 * 5);
        assert_eq!(train.per_sample, 8 * 210 + 4 * 100 + 8 * 10 + 5 * 4 * 100);
        assert_eq!(train.total(), train.fixed + 8 * train.per_sample);
    }

    #[test]
    fn over_budget_names_the_need_the_budget_and_a_batch_that_fits() {
        let e = MemoryEstimate {
            batch: 64,
            fixed: 1_000_000_000,
            per_sample: 100_000_000,
        };
        let budget = Budget {
            bytes: 5_000_000_000,
            available: None,
        };
        let msg = budget.check(&e).unwrap_err().to_string();
        assert_eq!(
            msg,
            "needs ~7.4 GB at batch 64; --memory-limit is 5.0 GB; batch 32 fits"
        );
        let tight = Budget {
            bytes: 500_000_000,
            available: Some(625_000_000),
        };
        let msg = tight.check(&e).unwrap_err().to_string();
        assert!(msg.contains("do not fit, at any batch size"), "{msg}");
        assert!(msg.contains("; 625 MB available, of which 80%"), "{msg}");
    }

    #[test]
    fn a_dense_layer_of_a_trillion_weights_is_refused() {
        let g = mlp(1_000_000, 1_000_000);
        let a = analyze(&g);
        assert!(a.is_valid());
        let e = estimate(&g, &a, 32, Purpose::Train { optimizer_slots: 2 });
        let budget = Budget {
            bytes: 1 << 40,
            available: None,
        };
        assert!(matches!(
            budget.check(&e),
            Err(MemoryError::OverBudget { .. })
        ));
    }

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_size("512M").unwrap(), 512_000_000);
        assert_eq!(parse_size("6.5GB").unwrap(), 6_500_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn meminfo_fields_read_in_bytes() {
        let text = "MemTotal:       16000000 kB\nMemAvailable:    6100000 kB\n";
        assert_eq!(kib_field(text, "MemAvailable:"), Some(6_246_400_000));
        assert_eq!(kib_field(text, "SwapFree:"), None);
    }
}
