//! Frame-time recording for `netloom --frame-stats`: how smooth the designer
//! stays (for example while a run trains on the same cores).

use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Frame times of one session, written as JSON when the app closes.
pub struct FrameStats {
    path: PathBuf,
    started: Instant,
    last_frame: Option<Instant>,
    /// Milliseconds between the starts of consecutive frames.
    intervals_ms: Vec<f64>,
    /// Milliseconds eframe reports spending on each frame (UI code and tessellation).
    cpu_ms: Vec<f64>,
    /// Skip the first frames (start-up, font atlas, shader compilation).
    warmup: usize,
}

/// Median, 95th and 99th percentile and maximum of a sample.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Percentiles {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

#[derive(Serialize)]
struct Report<'a> {
    frames: usize,
    seconds: f64,
    frame_interval_ms: Option<Percentiles>,
    frame_cpu_ms: Option<Percentiles>,
    training: &'a serde_json::Value,
}

impl FrameStats {
    pub fn new(path: PathBuf) -> Self {
        FrameStats {
            path,
            started: Instant::now(),
            last_frame: None,
            intervals_ms: Vec::new(),
            cpu_ms: Vec::new(),
            warmup: 30,
        }
    }

    /// Records one frame; `cpu_seconds` is what eframe measured for the previous one.
    pub fn frame(&mut self, cpu_seconds: Option<f32>) {
        let now = Instant::now();
        if self.warmup > 0 {
            self.warmup -= 1;
        } else {
            if let Some(last) = self.last_frame {
                self.intervals_ms
                    .push(now.duration_since(last).as_secs_f64() * 1e3);
            }
            if let Some(c) = cpu_seconds {
                self.cpu_ms.push(c as f64 * 1e3);
            }
        }
        self.last_frame = Some(now);
    }

    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Writes the report; `training` describes the run going on meanwhile.
    pub fn write(&self, training: &serde_json::Value) -> std::io::Result<()> {
        let report = Report {
            frames: self.intervals_ms.len(),
            seconds: self.elapsed_secs(),
            frame_interval_ms: Percentiles::of(&self.intervals_ms),
            frame_cpu_ms: Percentiles::of(&self.cpu_ms),
            training,
        };
        let text = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
        std::fs::write(&self.path, text + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v).unwrap();
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&[]), None);
        assert_eq!(Percentiles::of(&[3.0]).unwrap().p99, 3.0);
    }
}
