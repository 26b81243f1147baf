//! Sweeps from the designer: one run per value of a parameter, queued and
//! trained one after another by the session's trainer, each on its own copy
//! of the design (the same edit `netloom sweep` makes).

use super::{RunRecord, SessionError, TrainingSession};
use crate::graph::Graph;
use crate::infer::analyze;
use crate::train::experiment::{SweepRow, SweepTarget, design_with, pareto_front, sweep_csv};
use std::collections::VecDeque;

/// What the user asked to sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRequest {
    pub target: SweepTarget,
    pub values: Vec<f64>,
    pub epochs: u64,
}

/// The runs of a sweep still to start.
#[derive(Debug)]
pub struct SweepQueue {
    pub label: String,
    target: SweepTarget,
    pending: VecDeque<f64>,
    base: Graph,
    tab: usize,
    generation: u64,
    epochs: u64,
    /// The id of the run the sweep started last.
    last_run: Option<usize>,
}

impl SweepQueue {
    pub fn remaining(&self) -> usize {
        self.pending.len()
    }
}

/// One point of a sweep: a finished run with its swept value.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    pub run: usize,
    pub value: f64,
    pub macs: u64,
    pub params: u64,
    pub ms_per_step: Option<f64>,
    pub val_acc: Option<f32>,
    pub test_acc: Option<f32>,
    pub pareto: bool,
}

impl TrainingSession {
    /// Queues one run per value of `request` on copies of `graph` and starts
    /// the first. Every value is checked first, so an impossible one is
    /// refused before anything trains.
    pub fn start_sweep(
        &mut self,
        graph: &Graph,
        request: &SweepRequest,
        tab: usize,
        generation: u64,
    ) -> Result<(), SessionError> {
        if self.is_active() {
            return Err(SessionError::Busy("starting a sweep"));
        }
        if request.values.is_empty() {
            return Err(SessionError::EmptySweep);
        }
        for &value in &request.values {
            let design = design_for(graph, &request.target, value)?;
            if let Some(why) = super::design_problem(&design, &analyze(&design)) {
                return Err(SessionError::SweepValue {
                    target: request.target.label(),
                    value,
                    why,
                });
            }
        }
        self.sweep = Some(SweepQueue {
            label: request.target.label(),
            target: request.target.clone(),
            pending: request.values.iter().copied().collect(),
            base: graph.clone(),
            tab,
            generation,
            epochs: request.epochs,
            last_run: None,
        });
        self.advance_sweep().unwrap_or(Ok(()))
    }

    /// Starts the sweep's next run once the current one has finished.
    /// `None` when there is nothing to start.
    pub fn advance_sweep(&mut self) -> Option<Result<(), SessionError>> {
        if self.is_active() {
            return None;
        }
        let queue = self.sweep.as_ref()?;
        let last_ended_early = self.ended_unfinished(queue.last_run);
        if last_ended_early {
            // A stopped or failed run ends its sweep.
            self.sweep = None;
            return None;
        }
        let queue = self.sweep.as_mut()?;
        let Some(value) = queue.pending.pop_front() else {
            self.sweep = None;
            return None;
        };
        let (label, target, tab, generation, epochs) = (
            queue.label.clone(),
            queue.target.clone(),
            queue.tab,
            queue.generation,
            queue.epochs,
        );
        let design = match design_for(&queue.base, &target, value) {
            Ok(d) => d,
            Err(e) => {
                self.sweep = None;
                return Some(Err(e));
            }
        };
        // The run setup is the user's: the sweep changes it for this run only.
        let saved = self.setup.clone();
        self.setup.epochs = epochs;
        match target {
            SweepTarget::BatchSize => self.setup.batch_size = value as usize,
            SweepTarget::LearningRate => self.setup.learning_rate = value as f32,
            SweepTarget::Layer { .. } => {}
        }
        let started = self.start(&design, &analyze(&design), tab, generation);
        self.setup = saved;
        if started.is_err() {
            self.sweep = None;
        } else if let Some(run) = self.runs.last_mut() {
            run.sweep = Some((label, value));
            let id = run.id;
            if let Some(q) = self.sweep.as_mut() {
                q.last_run = Some(id);
            }
        }
        Some(started)
    }

    /// The finished runs of the sweep labelled `label`, with the Pareto
    /// front of validation accuracy against MACs marked.
    pub fn sweep_points(&self, label: &str) -> Vec<SweepPoint> {
        let mut points: Vec<SweepPoint> = self
            .runs
            .iter()
            .filter_map(|r| {
                let (l, value) = r.sweep.as_ref()?;
                (l == label && r.status == super::RunStatus::Finished).then(|| point(r, *value))
            })
            .collect();
        let front = pareto_front(
            &points
                .iter()
                .map(|p| (p.macs, p.val_acc))
                .collect::<Vec<_>>(),
        );
        for (p, on_front) in points.iter_mut().zip(front) {
            p.pareto = on_front;
        }
        points
    }

    /// The newest sweep's table as CSV (what its Export writes), or why there is none.
    pub fn sweep_csv(&self) -> Result<String, SessionError> {
        let labels = self.sweep_labels();
        let label = labels.last().ok_or(SessionError::NoSweep)?;
        let points = self.sweep_points(label);
        if points.is_empty() {
            return Err(SessionError::SweepUnfinished(label.clone()));
        }
        Ok(sweep_csv(label, points.iter().map(SweepRow::from)))
    }

    /// Labels of every sweep of the session, newest last.
    pub fn sweep_labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = Vec::new();
        for r in &self.runs {
            if let Some((l, _)) = &r.sweep
                && !labels.contains(l)
            {
                labels.push(l.clone());
            }
        }
        labels
    }
}

impl From<&SweepPoint> for SweepRow {
    fn from(p: &SweepPoint) -> Self {
        SweepRow {
            value: p.value,
            macs: p.macs,
            params: p.params,
            ms_per_step: p.ms_per_step,
            val_acc: p.val_acc,
            test_acc: p.test_acc,
            on_front: p.pareto,
        }
    }
}

fn design_for(graph: &Graph, target: &SweepTarget, value: f64) -> Result<Graph, SessionError> {
    match target {
        SweepTarget::Layer { node, param } => Ok(design_with(graph, node, param, value)?),
        SweepTarget::BatchSize if value < 1.0 || value.fract() != 0.0 => {
            Err(SessionError::SweepBatchSize(value))
        }
        SweepTarget::LearningRate if !(value > 0.0 && value.is_finite()) => {
            Err(SessionError::SweepLearningRate(value))
        }
        SweepTarget::BatchSize | SweepTarget::LearningRate => Ok(graph.clone()),
    }
}

fn point(r: &RunRecord, value: f64) -> SweepPoint {
    SweepPoint {
        run: r.id,
        value,
        macs: r.macs,
        params: r.params,
        ms_per_step: r
            .progress
            .filter(|p| p.images_per_sec > 0.0)
            .map(|p| 1000.0 * r.setup.batch_size as f64 / p.images_per_sec),
        val_acc: r.val_acc(),
        test_acc: r.test.as_ref().map(|t| t.test_acc),
        pareto: false,
    }
}
