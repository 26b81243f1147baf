//! "Train both" in the Compare view: the pinned design A and its variant B
//! trained one after another with the same data and setup, so the Runs tab
//! and the plots show the two runs side by side.

use super::{SessionError, TrainingSession, design_problem};
use crate::graph::Graph;
use crate::infer::analyze;
use std::collections::VecDeque;

/// A design waiting its turn: the design, its tab and its version.
#[derive(Debug)]
struct Waiting {
    graph: Graph,
    tab: usize,
    generation: u64,
}

/// The designs of a "Train both" still to start.
#[derive(Debug, Default)]
pub struct PairQueue {
    pending: VecDeque<Waiting>,
    /// The run started last (the next one waits for it to end).
    last_run: Option<usize>,
    /// The runs of the pair, A first.
    pub runs: Vec<usize>,
}

impl TrainingSession {
    /// Trains `designs` (A then B: design, tab, version) one after another
    /// with the current setup. Earlier runs are hidden from the plots so
    /// the pair is overlaid alone. Refuses, naming the design, if either
    /// cannot be trained.
    pub fn train_pair(&mut self, designs: [(&Graph, usize, u64); 2]) -> Result<(), SessionError> {
        if self.is_active() {
            return Err(SessionError::Busy("training both designs"));
        }
        if self.setup.start_from == super::StartFrom::LastRun {
            return Err(SessionError::PairFromLastRun);
        }
        for ((graph, _, _), which) in designs.iter().zip(["A", "B"]) {
            if let Some(why) = design_problem(graph, &analyze(graph)) {
                return Err(SessionError::PairDesign {
                    which,
                    design: graph.name.clone(),
                    why,
                });
            }
        }
        for r in &mut self.runs {
            r.visible = false;
        }
        self.pair = Some(PairQueue {
            pending: designs
                .iter()
                .map(|&(graph, tab, generation)| Waiting {
                    graph: graph.clone(),
                    tab,
                    generation,
                })
                .collect(),
            ..PairQueue::default()
        });
        self.advance_pair().unwrap_or(Ok(()))
    }

    /// Starts the pair's next design once the previous run ended; `None`
    /// when there is nothing to do now. A run that did not finish ends the pair.
    pub fn advance_pair(&mut self) -> Option<Result<(), SessionError>> {
        if self.is_active() {
            return None;
        }
        let queue = self.pair.as_ref()?;
        let last_ended_early = self.ended_unfinished(queue.last_run);
        let next = match self.pair.as_mut() {
            Some(q) if !last_ended_early => q.pending.pop_front(),
            _ => None,
        };
        let Some(next) = next else {
            if let Some(q) = self.pair.as_mut() {
                q.pending.clear();
            }
            return None;
        };
        let started = self.start(
            &next.graph,
            &analyze(&next.graph),
            next.tab,
            next.generation,
        );
        match (&started, self.runs.last(), self.pair.as_mut()) {
            (Ok(()), Some(run), Some(q)) => {
                q.last_run = Some(run.id);
                q.runs.push(run.id);
            }
            _ => self.pair = None,
        }
        Some(started)
    }

    /// Whether a "Train both" has a design still to start or a run still going.
    pub fn pair_in_progress(&self) -> bool {
        self.pair
            .as_ref()
            .is_some_and(|q| !q.pending.is_empty() || self.is_active())
    }
}
