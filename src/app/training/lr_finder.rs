//! Run → Find learning rate: the range test of `netloom lr-find` on a copy
//! of the design, on its own named thread, with its curve plotted live and
//! the suggested rate offered for the next run. The session's runs, weights
//! and optimizer state are not touched: the test is a separate trainer run
//! that saves nothing.

use crate::app::command::Command;
use crate::train::TrainConfig;
use crate::train::experiment::{LrCurve, LrFindOptions, LrPoint, lr_find};
use crate::train::trainer::Event;
use egui::Ui;
use egui_plot::{Line, Plot, PlotPoints, VLine};
use std::sync::mpsc::{Receiver, channel};

const THREAD_NAME: &str = "netloom-lr-find";

enum Message {
    Batch { lr: f32, loss: f32 },
    Done(Result<LrCurve, String>),
}

/// Why the finder did not start.
#[derive(Debug, thiserror::Error)]
pub enum LrFinderError {
    #[error("The learning-rate finder is already running.")]
    Running,
    #[error("Could not start the learning-rate finder: {0}")]
    Thread(#[source] std::io::Error),
}

/// The finder's window and the test it runs.
#[derive(Default)]
pub struct LrFinder {
    pub open: bool,
    messages: Option<Receiver<Message>>,
    /// Raw losses as they arrive: `(lr, loss)`.
    live: Vec<[f32; 2]>,
    pub result: Option<Result<LrCurve, String>>,
    batches: usize,
}

impl LrFinder {
    pub fn is_running(&self) -> bool {
        self.messages.is_some()
    }

    /// Starts a range test of `config` (its design, data and optimizer).
    pub fn start(&mut self, config: TrainConfig) -> Result<(), LrFinderError> {
        if self.is_running() {
            return Err(LrFinderError::Running);
        }
        let options = LrFindOptions::default();
        self.batches = options.batches;
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let batches = tx.clone();
                let result = lr_find(config, &options, |event| {
                    if let Event::Batch { lr, loss, .. } = event {
                        let _ = batches.send(Message::Batch {
                            lr: *lr,
                            loss: *loss,
                        });
                    }
                });
                let _ = tx.send(Message::Done(result.map_err(|e| e.to_string())));
            })
            .map_err(LrFinderError::Thread)?;
        self.messages = Some(rx);
        self.live.clear();
        self.result = None;
        self.open = true;
        Ok(())
    }

    /// Takes in what the test reported since the last frame.
    pub fn poll(&mut self) {
        let Some(rx) = &self.messages else {
            return;
        };
        let mut done = false;
        while let Ok(message) = rx.try_recv() {
            match message {
                Message::Batch { lr, loss } => self.live.push([lr, loss]),
                Message::Done(result) => {
                    self.result = Some(result);
                    done = true;
                }
            }
        }
        if done {
            self.messages = None;
        }
    }

    /// The window: progress, loss against learning rate on a log axis, and
    /// the suggestion with a button that uses it for the next run.
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<Command> {
        let mut command = None;
        let mut open = self.open;
        egui::Window::new("Learning-rate finder")
            .open(&mut open)
            .default_size([520.0, 360.0])
            .show(ctx, |ui| command = self.contents_ui(ui));
        self.open = open;
        command
    }

    fn contents_ui(&self, ui: &mut Ui) -> Option<Command> {
        let mut command = None;
        match &self.result {
            None => {
                ui.label(format!(
                    "Training a copy of the design with a rising learning rate: {} of {} batches…",
                    self.live.len(),
                    self.batches
                ));
            }
            Some(Err(why)) => {
                ui.colored_label(ui.visuals().error_fg_color, why);
            }
            Some(Ok(curve)) => match curve.suggested_lr {
                Some(lr) => {
                    ui.horizontal(|ui| {
                        ui.label(format!(
                            "Suggested learning rate: {lr:.1e} (the loss falls fastest there)"
                        ));
                        if ui.button(format!("Use {lr:.1e}")).clicked() {
                            command = Some(Command::UseLearningRate(lr));
                        }
                    });
                }
                None => {
                    ui.label("No suggestion: the loss did not fall over the range tried.");
                }
            },
        }
        let curve: Vec<LrPoint> = match &self.result {
            Some(Ok(c)) => c.points.clone(),
            _ => Vec::new(),
        };
        // While running, every batch so far; once done, the batches the
        // test kept (those after it decided to stop are dropped).
        let raw: Vec<[f64; 2]> = if curve.is_empty() {
            self.live
                .iter()
                .map(|&[lr, loss]| [(lr as f64).log10(), loss as f64])
                .collect()
        } else {
            curve
                .iter()
                .map(|p| [(p.lr as f64).log10(), p.loss as f64])
                .collect()
        };
        let smoothed: Vec<[f64; 2]> = curve
            .iter()
            .map(|p| [(p.lr as f64).log10(), p.smoothed as f64])
            .collect();
        let suggested = match &self.result {
            Some(Ok(c)) => c.suggested_lr,
            _ => None,
        };
        let resp = Plot::new("lr_finder_plot")
            .x_axis_label("learning rate (log)")
            .y_axis_label("loss")
            .x_axis_formatter(|m, _| format!("{:.0e}", 10f64.powf(m.value)))
            .show(ui, |p| {
                p.line(
                    Line::new("loss", PlotPoints::from(raw.clone()))
                        .color(egui::Color32::from_rgb(90, 160, 255).gamma_multiply(0.5)),
                );
                p.line(Line::new("smoothed", PlotPoints::from(smoothed)).width(2.0));
                if let Some(lr) = suggested {
                    p.vline(VLine::new("suggested", (lr as f64).log10()));
                }
            });
        let name = format!(
            "Learning-rate finder plot with {} points{}",
            raw.len(),
            suggested.map_or(String::new(), |lr| format!(", suggested {lr:.1e}"))
        );
        resp.response
            .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &name));
        command
    }
}
