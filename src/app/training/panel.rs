//! The Training tab: run setup, controls with progress, and the live plots
//! (loss raw and smoothed, accuracy, learning rate) overlaid across runs.

use super::augment_preview::AugmentPreviews;
use super::{
    OptimizerChoice, RunRecord, RunSetup, RunStatus, ScheduleChoice, StartFrom, TrainingSession,
};
use crate::app::command::Command;
use crate::data::AugmentConfig;
use crate::data::augment::Augmentation;
use crate::graph::Graph;
use crate::infer::Analysis;
use crate::train::memory;
use egui::{Color32, DragValue, RichText, Ui};
use egui_plot::{Line, LineStyle, Plot, PlotPoints, Points};

/// A stable colour per run (by id), shared by every plot and the scatter.
pub fn run_color(id: usize) -> Color32 {
    const COLORS: [Color32; 8] = [
        Color32::from_rgb(90, 160, 255),
        Color32::from_rgb(255, 150, 60),
        Color32::from_rgb(110, 210, 110),
        Color32::from_rgb(235, 90, 110),
        Color32::from_rgb(190, 130, 255),
        Color32::from_rgb(240, 210, 80),
        Color32::from_rgb(80, 210, 210),
        Color32::from_rgb(220, 220, 220),
    ];
    COLORS[(id.saturating_sub(1)) % COLORS.len()]
}

/// How a run is drawn: its colour and a width factor. With a run
/// highlighted (clicked in the Runs table) it is drawn twice as wide and
/// the others faded, in every plot.
pub fn run_style(session: &TrainingSession, id: usize) -> (Color32, f32) {
    match session.highlighted {
        Some(h) if h == id => (run_color(id), 2.0),
        Some(_) => (run_color(id).gamma_multiply(0.3), 1.0),
        None => (run_color(id), 1.0),
    }
}

/// Gives a plot an accessible name (egui_plot leaves it without one),
/// saying which run is highlighted.
pub fn name_plot(response: &egui::Response, session: &TrainingSession, name: String) {
    let name = match session.highlighted {
        Some(h) => format!("{name}; highlighted run #{h}"),
        None => name,
    };
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &name));
}

/// A grid row: a label and the widget it names (for screen readers and UI tests).
fn labelled(ui: &mut Ui, label: &str, widget: impl egui::Widget) {
    let l = ui.label(label);
    ui.add(widget).labelled_by(l.id);
}

/// A grid row choosing one of `all` in a drop-down.
fn choice<T: Copy + PartialEq>(
    ui: &mut Ui,
    label: &str,
    value: &mut T,
    all: &[T],
    name: fn(T) -> &'static str,
) {
    let l = ui.label(label);
    egui::ComboBox::from_id_salt(label)
        .selected_text(name(*value))
        .show_ui(ui, |ui| {
            for &o in all {
                ui.selectable_value(value, o, name(o));
            }
        })
        .response
        .labelled_by(l.id);
}

/// The memory a run of `graph` with `setup` is estimated to need (the
/// trainer refuses a run over its budget with the same figure), with the
/// largest batch the memory available now would take.
pub fn memory_estimate_text(graph: &Graph, analysis: &Analysis, setup: &RunSetup) -> String {
    memory_estimate_within(graph, analysis, setup, &memory::Budget::new(None))
}

/// [`memory_estimate_text`] against `budget`.
pub fn memory_estimate_within(
    graph: &Graph,
    analysis: &Analysis,
    setup: &RunSetup,
    budget: &memory::Budget,
) -> String {
    if !analysis.is_valid() {
        return "- (the design has errors)".into();
    }
    let optimizer_slots = match setup.optimizer {
        OptimizerChoice::Adam => 2,
        OptimizerChoice::SgdMomentum | OptimizerChoice::Nesterov => 1,
    };
    let e = memory::estimate(
        graph,
        analysis,
        setup.batch_size,
        memory::Purpose::Train { optimizer_slots },
    );
    let needs = format!(
        "~{} at batch {}",
        memory::human_bytes(e.total()),
        setup.batch_size
    );
    if budget.bytes == u64::MAX {
        return needs;
    }
    let room = memory::human_bytes(budget.bytes);
    // The run setup offers batches up to 1024.
    match e.batch_within(budget.bytes) {
        Some(b) if e.total() <= budget.bytes => {
            format!("{needs}; up to batch {} fits in {room}", b.min(1024))
        }
        Some(b) => format!("{needs}: over the {room} budget; batch {b} fits"),
        None => format!("{needs}: the parameters alone exceed the {room} budget"),
    }
}

/// The setup column: returns the edited setup when something changed.
/// `memory` is the run's estimated memory ([`memory_estimate_text`]),
/// `time` its seconds per epoch ([`super::estimate::estimate_text`]).
pub fn setup_ui(
    ui: &mut Ui,
    setup: &RunSetup,
    editable: bool,
    memory: &str,
    time: &str,
    previews: &mut AugmentPreviews,
) -> Vec<Command> {
    let mut out = Vec::new();
    let mut s = setup.clone();
    ui.add_enabled_ui(editable, |ui| {
        egui::Grid::new("run_setup")
            .num_columns(2)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                ui.label("Dataset");
                ui.horizontal(|ui| {
                    ui.label(RichText::new(s.dataset_label()).strong())
                        .on_hover_text(s.dataset.as_ref().map_or(
                            "the embedded hand-signs digits 0–9, 64×64 RGB".into(),
                            |p| p.display().to_string(),
                        ));
                });
                ui.end_row();
                ui.label("");
                ui.horizontal(|ui| {
                    if ui
                        .small_button("Folder…")
                        .on_hover_text("an image folder, IDX or CIFAR-10 folder")
                        .clicked()
                    {
                        out.push(Command::ChooseDataset { folder: true });
                    }
                    if ui
                        .small_button("File…")
                        .on_hover_text("an IDX or CIFAR-10 .bin file")
                        .clicked()
                    {
                        out.push(Command::ChooseDataset { folder: false });
                    }
                    if s.dataset.is_some() && ui.small_button("Built-in").clicked() {
                        s.dataset = None;
                    }
                });
                ui.end_row();
                labelled(ui, "Epochs", DragValue::new(&mut s.epochs).range(1..=1000));
                ui.end_row();
                labelled(
                    ui,
                    "Batch size",
                    DragValue::new(&mut s.batch_size).range(1..=1024),
                );
                ui.end_row();
                choice(
                    ui,
                    "Optimizer",
                    &mut s.optimizer,
                    &OptimizerChoice::ALL,
                    OptimizerChoice::label,
                );
                ui.end_row();
                labelled(
                    ui,
                    "Learning rate",
                    DragValue::new(&mut s.learning_rate)
                        .range(1e-6..=10.0)
                        .speed(1e-4)
                        .max_decimals(6),
                );
                ui.end_row();
                choice(
                    ui,
                    "Schedule",
                    &mut s.schedule,
                    &ScheduleChoice::ALL,
                    ScheduleChoice::label,
                );
                ui.end_row();
                labelled(
                    ui,
                    "Weight decay",
                    DragValue::new(&mut s.weight_decay)
                        .range(0.0..=1.0)
                        .speed(1e-5)
                        .max_decimals(6),
                );
                ui.end_row();
                ui.label("Augment");
                ui.vertical(|ui| augment_ui(ui, &mut s.augment, s.seed, previews));
                ui.end_row();
                labelled(ui, "Seed", DragValue::new(&mut s.seed));
                ui.end_row();
                ui.label("Memory");
                // Wrapped: the setup column is narrow and these run long.
                ui.add(egui::Label::new(memory).wrap())
                    .on_hover_text("estimated before training: activations and gradients × batch, parameters, optimizer state, workspaces");
                ui.end_row();
                ui.label("Time");
                ui.add(egui::Label::new(time).wrap()).on_hover_text(
                    "a few training steps of this design at this batch, timed on this machine, × the batches of an epoch",
                );
                ui.end_row();
                ui.label("Start from");
                ui.vertical(|ui| {
                    let fresh = format!("fresh weights (seed {})", s.seed);
                    ui.radio_value(&mut s.start_from, StartFrom::Fresh, fresh);
                    ui.radio_value(&mut s.start_from, StartFrom::LastRun, "last run's weights");
                    if let StartFrom::File(p) = &s.start_from {
                        let name = p.file_name().map_or_else(
                            || p.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        );
                        ui.label(format!("file {name}"))
                            .on_hover_text(p.display().to_string());
                    }
                });
                ui.end_row();
            });
    });
    if s != *setup {
        out.push(Command::SetRunSetup(Box::new(s)));
    }
    out
}

/// The Training tab: the run setup on the left (scrolling when it is
/// taller or wider than its column), the controls with progress and the
/// live plots on the right. `at` is the design's tab and generation.
pub fn training_tab_ui(
    ui: &mut Ui,
    session: &mut TrainingSession,
    graph: &Graph,
    analysis: &Analysis,
    at: (usize, u64),
) -> Vec<Command> {
    let mut out = Vec::new();
    let changed = session.design_changed_since_run(at.0, at.1);
    let editable = !session.is_active();
    if let Ok(hwc) = crate::train::prepare::input_hwc(graph) {
        let dataset = session.setup.dataset.clone();
        session.previews.want(ui.ctx(), dataset.as_deref(), hwc);
    }
    let height = ui.available_height();
    ui.horizontal_top(|ui| {
        ui.allocate_ui_with_layout(
            egui::vec2(SETUP_WIDTH, height),
            egui::Layout::top_down(egui::Align::Min),
            |ui| {
                ui.set_width(SETUP_WIDTH);
                egui::ScrollArea::both()
                    .id_salt("setup_scroll")
                    .auto_shrink([false, false])
                    .max_height(height)
                    .show(ui, |ui| {
                        let memory = memory_estimate_text(graph, analysis, &session.setup);
                        let time = session.time_estimate(graph, analysis, at.0, at.1);
                        let setup = session.setup.clone();
                        out.extend(setup_ui(
                            ui,
                            &setup,
                            editable,
                            &memory,
                            &time,
                            &mut session.previews,
                        ));
                    });
            },
        );
        ui.separator();
        ui.vertical(|ui| {
            out.extend(controls_ui(ui, session, changed));
            ui.separator();
            plots_ui(ui, session);
        });
    });
    out
}

/// The width of the Run setup column.
const SETUP_WIDTH: f32 = 330.0;

/// Every augmentation the trainer has, one row each: its switch, its
/// strength and a preview of the dataset's first image under it alone
/// (seeded by the run's seed, drawn again when the strength or seed changes).
fn augment_ui(ui: &mut Ui, a: &mut AugmentConfig, seed: u64, previews: &mut AugmentPreviews) {
    const SIDE: f32 = 32.0;
    if let Some(why) = previews.problem() {
        ui.weak(why);
    }
    egui::Grid::new("augment_grid")
        .num_columns(3)
        .spacing([6.0, 2.0])
        .show(ui, |ui| {
            for which in Augmentation::ALL {
                let (name, hover) = match which {
                    Augmentation::Mirror => ("mirror", "flip left-right with probability ½".to_string()),
                    Augmentation::Crop => ("crop", "pad by this many pixels, crop back at a random offset".into()),
                    Augmentation::ColourShift => ("colour shift", "shift each channel by a random offset up to this".into()),
                    Augmentation::Pca => ("PCA colour", "AlexNet's colour augmentation along the RGB principal components, this standard deviation per component (the preview uses the image's own components)".into()),
                    Augmentation::Rotate => ("rotate", "rotate by a random angle up to this".into()),
                    Augmentation::Shear => ("shear", "shear horizontally by a random factor up to this".into()),
                    Augmentation::Elastic => ("local warp", "elastic distortion: pixels move by up to this many pixels along a smooth random field".into()),
                };
                let on = match which {
                    Augmentation::Mirror => &mut a.mirror,
                    Augmentation::Crop => &mut a.crop,
                    Augmentation::ColourShift => &mut a.colour_shift,
                    Augmentation::Pca => &mut a.pca,
                    Augmentation::Rotate => &mut a.rotate,
                    Augmentation::Shear => &mut a.shear,
                    Augmentation::Elastic => &mut a.elastic,
                };
                let check = ui.checkbox(on, name).on_hover_text(&hover);
                let strength = match which {
                    Augmentation::Mirror => ui.weak("p = ½"),
                    Augmentation::Crop => ui.add(
                        DragValue::new(&mut a.crop_pad)
                            .range(1..=32)
                            .suffix(" px"),
                    ),
                    Augmentation::ColourShift => ui.add(
                        DragValue::new(&mut a.colour_shift_max)
                            .range(0.0..=1.0)
                            .speed(0.005)
                            .prefix("±"),
                    ),
                    Augmentation::Pca => ui.add(
                        DragValue::new(&mut a.pca_sigma)
                            .range(0.0..=2.0)
                            .speed(0.005)
                            .prefix("σ "),
                    ),
                    Augmentation::Rotate => ui.add(
                        DragValue::new(&mut a.rotate_max_deg)
                            .range(0.0..=180.0)
                            .speed(0.5)
                            .prefix("±")
                            .suffix("°"),
                    ),
                    Augmentation::Shear => ui.add(
                        DragValue::new(&mut a.shear_max)
                            .range(0.0..=1.0)
                            .speed(0.005)
                            .prefix("±"),
                    ),
                    Augmentation::Elastic => ui.add(
                        DragValue::new(&mut a.elastic_alpha)
                            .range(0.0..=16.0)
                            .speed(0.05)
                            .suffix(" px"),
                    ),
                };
                strength.labelled_by(check.id).on_hover_text(&hover);
                match previews.texture(ui.ctx(), a, seed, which) {
                    Some(tex) => {
                        let image = egui::Image::new(egui::load::SizedTexture::new(
                            tex.id(),
                            egui::vec2(SIDE, SIDE),
                        ))
                        .sense(egui::Sense::hover());
                        let resp = ui.add(image);
                        let label = format!("{name} preview");
                        resp.widget_info(|| {
                            egui::WidgetInfo::labeled(egui::Role::Image, true, &label)
                        });
                        resp.on_hover_ui(|ui| {
                            ui.label(format!("the dataset's first image under {name} alone, seed {seed}"));
                            ui.add(egui::Image::new(egui::load::SizedTexture::new(
                                tex.id(),
                                egui::vec2(160.0, 160.0),
                            )));
                        });
                    }
                    None => {
                        ui.allocate_exact_size(egui::vec2(SIDE, SIDE), egui::Sense::hover());
                    }
                }
                ui.end_row();
            }
        });
}

/// Train / Pause / Resume / Step / Stop / Reset, the progress bar and the status.
pub fn controls_ui(ui: &mut Ui, session: &TrainingSession, design_changed: bool) -> Vec<Command> {
    let mut out = Vec::new();
    let run = session.current();
    let status = run.map(|r| r.status.clone());
    let active = session.is_active();
    ui.horizontal_wrapped(|ui| {
        let can_start = !active;
        if ui
            .add_enabled(
                can_start,
                egui::Button::new(RichText::new("Train").strong()),
            )
            .on_hover_text("start a new run of the design on the canvas")
            .clicked()
        {
            out.push(Command::TrainStart);
        }
        let running = status == Some(RunStatus::Running);
        let paused = matches!(status, Some(RunStatus::Paused | RunStatus::Waiting));
        if ui
            .add_enabled(running, egui::Button::new("Pause"))
            .clicked()
        {
            out.push(Command::TrainPause);
        }
        if ui
            .add_enabled(paused, egui::Button::new("Resume"))
            .clicked()
        {
            out.push(Command::TrainResume);
        }
        if ui
            .add_enabled(active && !running, egui::Button::new("Step"))
            .on_hover_text("train one batch, then pause")
            .clicked()
        {
            out.push(Command::TrainStep);
        }
        if ui.add_enabled(active, egui::Button::new("Stop")).clicked() {
            out.push(Command::TrainStop);
        }
        if ui
            .button("Reset weights")
            .on_hover_text("the next run starts from the seeded initial weights")
            .clicked()
        {
            out.push(Command::ResetWeights);
        }
        ui.separator();
        if ui.button("Save weights…").clicked() {
            out.push(Command::SaveWeights);
        }
        if ui.button("Load weights…").clicked() {
            out.push(Command::LoadWeights);
        }
        if ui
            .button("Export CSV…")
            .on_hover_text("per-epoch metrics of every run")
            .clicked()
        {
            out.push(Command::ExportMetrics);
        }
        let mut watch = session.watch;
        if ui
            .checkbox(&mut watch, "Layer statistics")
            .on_hover_text("show each layer's activation mean/std and gradient norm on the canvas")
            .changed()
        {
            out.push(Command::SetWatch(watch));
        }
    });
    if let Some(why) = &session.refusal {
        ui.colored_label(Color32::from_rgb(240, 110, 110), why);
    }
    if let Some(run) = run {
        progress_ui(ui, run);
        if design_changed {
            ui.colored_label(
                Color32::from_rgb(240, 200, 90),
                "The design changed since this run started: the run keeps training the design it started with; the next run uses the new one.",
            );
        }
    } else if session.refusal.is_none() {
        ui.weak("Press Train to train the design on the canvas; loss and accuracy plot here as it learns.");
    }
    out
}

fn progress_ui(ui: &mut Ui, run: &RunRecord) {
    let status = run.status.label();
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(format!("Run {}", run.label())).strong());
        ui.label(format!("· {status}"));
        if let Some(info) = &run.info {
            ui.weak(format!(
                "· {} train / {} val / {} test images · {} of {} params trainable",
                info.train_images,
                info.val_images,
                info.test_images,
                info.trainable_params,
                info.total_params
            ));
        }
    });
    let (fraction, text) = match (&run.status, &run.progress) {
        (RunStatus::Preparing(what, done, total), _) => (
            if *total > 0 {
                *done as f32 / *total as f32
            } else {
                0.0
            },
            format!("{what} {done}/{total}"),
        ),
        (_, Some(p)) => (
            p.fraction(),
            format!(
                "epoch {}/{} · batch {}/{} · {:.0} images/s · ETA {}",
                p.epoch,
                p.epochs,
                p.batch,
                p.batches,
                p.images_per_sec,
                run.eta().map_or("–".into(), |d| eta_text(d.as_secs()))
            ),
        ),
        (RunStatus::Waiting | RunStatus::Running, None) => match run.eta() {
            Some(d) => (
                0.0,
                format!("{status} · ETA {} (estimated)", eta_text(d.as_secs())),
            ),
            None => (0.0, status.clone()),
        },
        _ => (0.0, status.clone()),
    };
    ui.add(egui::ProgressBar::new(fraction).text(text));
    match &run.status {
        RunStatus::Failed(why) => {
            ui.colored_label(Color32::from_rgb(240, 110, 110), why);
        }
        RunStatus::Finished => {
            if let Some(t) = &run.test {
                let mut line = format!("test accuracy {:.2}%", 100.0 * t.test_acc);
                if let Some(w) = t.test_acc_without_precise_bn {
                    line.push_str(&format!(" ({:.2}% without precise BN)", 100.0 * w));
                }
                ui.label(RichText::new(line).strong());
            }
        }
        _ => {}
    }
    if let Some(n) = run.notices.last() {
        ui.weak(n);
    }
}

fn eta_text(secs: u64) -> String {
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// A plot's title and the line under it that says how to read it; both fit
/// or wrap within two fixed lines, so the plot below keeps its height.
fn plot_title_ui(ui: &mut Ui, title: &str, how_to_read: &str) {
    ui.add(egui::Label::new(RichText::new(title).strong()).truncate())
        .on_hover_text(how_to_read);
    ui.add(egui::Label::new(RichText::new(how_to_read).small().weak()).truncate())
        .on_hover_text(how_to_read);
}

/// The runs shown in the plots, one coloured entry each, drawn above the
/// plots instead of as legends inside them so no curve is ever covered.
fn run_key_ui(ui: &mut Ui, runs: &[&RunRecord]) {
    ui.horizontal_wrapped(|ui| {
        ui.weak("Runs:");
        for r in runs {
            let (swatch, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
            ui.painter().rect_filled(swatch, 2.0, run_color(r.id));
            ui.colored_label(run_color(r.id), r.label());
        }
        ui.weak("· drag pans, scroll zooms, double-click resets");
    });
}

/// Percent tick labels for an accuracy axis holding fractions.
fn percent_axis(mark: egui_plot::GridMark, _range: &std::ops::RangeInclusive<f64>) -> String {
    format!("{:.0}%", 100.0 * mark.value)
}

/// Tick labels for an axis holding `log10` of a value: `1e-3`, `3e-4`, ….
fn log_axis(mark: egui_plot::GridMark, _range: &std::ops::RangeInclusive<f64>) -> String {
    format!("{:.0e}", 10f64.powf(mark.value))
}

/// A hover read-out: the nearest curve's name and its point, with the
/// value shown as `value` formats it (the axes hold transformed values).
fn read_out(
    value: impl Fn(f64) -> String,
) -> impl Fn(&egui_plot::HoverPosition<'_>) -> Option<String> {
    move |hover| match hover {
        egui_plot::HoverPosition::NearDataPoint {
            plot_name,
            position,
            ..
        } => Some(format!(
            "{plot_name}\nepoch {:.2}\n{}",
            position.x,
            value(position.y)
        )),
        egui_plot::HoverPosition::Elsewhere { .. } => None,
    }
}

/// Loss (raw and smoothed), accuracy and learning-rate plots, side by side.
pub fn plots_ui(ui: &mut Ui, session: &TrainingSession) {
    let runs: Vec<&RunRecord> = session.runs.iter().filter(|r| r.visible).collect();
    run_key_ui(ui, &runs);
    // Leave room for the two title lines: a plot as tall as the space left
    // would grow the resizable panel a little every frame.
    let height = (ui.available_height() - 44.0).max(100.0);
    ui.columns(3, |cols| {
        let ui = &mut cols[0];
        let points: usize = runs.iter().map(|r| r.batch_loss.len()).sum();
        plot_title_ui(
            ui,
            "Loss per batch",
            "cross-entropy · faint: raw · bold: smoothed",
        );
        let resp = Plot::new("loss_plot")
            .height(height)
            .x_axis_label("epoch")
            .y_axis_label("loss")
            .label_formatter(read_out(|y| format!("loss {y:.4}")))
            .show(ui, |p| {
                for r in &runs {
                    let (c, wide) = run_style(session, r.id);
                    p.line(
                        Line::new(
                            format!("{} raw", r.label()),
                            PlotPoints::from(r.batch_loss.clone()),
                        )
                        .color(c.gamma_multiply(0.35))
                        .width(wide),
                    );
                    p.line(
                        Line::new(
                            format!("{} smoothed", r.label()),
                            PlotPoints::from(r.smoothed_loss()),
                        )
                        .color(c)
                        .width(2.0 * wide),
                    );
                }
            });
        name_plot(
            &resp.response,
            session,
            format!("Loss plot with {points} points"),
        );

        let ui = &mut cols[1];
        plot_title_ui(
            ui,
            "Accuracy per epoch",
            "solid: training · dashed: validation",
        );
        let resp = Plot::new("accuracy_plot")
            .height(height)
            .x_axis_label("epoch")
            .y_axis_label("accuracy")
            .y_axis_formatter(percent_axis)
            .label_formatter(read_out(|y| format!("accuracy {:.2}%", 100.0 * y)))
            .include_y(0.0)
            .include_y(1.0)
            .show(ui, |p| {
                for r in &runs {
                    let (c, wide) = run_style(session, r.id);
                    let train: Vec<[f64; 2]> = r
                        .epochs
                        .iter()
                        .map(|e| [e.epoch as f64, e.train_acc as f64])
                        .collect();
                    let val: Vec<[f64; 2]> = r
                        .epochs
                        .iter()
                        .filter_map(|e| e.val_acc.map(|a| [e.epoch as f64, a as f64]))
                        .collect();
                    let name = r.label();
                    p.line(
                        Line::new(format!("{name} train"), PlotPoints::from(train.clone()))
                            .color(c)
                            .width(2.0 * wide),
                    );
                    p.points(
                        Points::new(format!("{name} train"), PlotPoints::from(train))
                            .color(c)
                            .radius(2.5 * wide),
                    );
                    p.line(
                        Line::new(format!("{name} val"), PlotPoints::from(val.clone()))
                            .color(c)
                            .style(LineStyle::dashed_loose())
                            .width(2.0 * wide),
                    );
                    p.points(
                        Points::new(format!("{name} val"), PlotPoints::from(val))
                            .color(c)
                            .radius(2.5 * wide),
                    );
                }
            });
        let epochs: usize = runs.iter().map(|r| r.epochs.len()).sum();
        name_plot(
            &resp.response,
            session,
            format!("Accuracy plot with {epochs} epochs"),
        );

        let ui = &mut cols[2];
        plot_title_ui(ui, "Learning rate", "per batch, on a log scale");
        let resp = Plot::new("lr_plot")
            .height(height)
            .x_axis_label("epoch")
            .y_axis_label("learning rate")
            .y_axis_formatter(log_axis)
            .label_formatter(read_out(|y| format!("learning rate {:.3e}", 10f64.powf(y))))
            .show(ui, |p| {
                for r in &runs {
                    let log_lr: Vec<[f64; 2]> = r
                        .learning_rate
                        .iter()
                        .filter(|[_, lr]| *lr > 0.0)
                        .map(|&[x, lr]| [x, lr.log10()])
                        .collect();
                    let (c, wide) = run_style(session, r.id);
                    p.line(
                        Line::new(r.label(), PlotPoints::from(log_lr))
                            .color(c)
                            .width(1.5 * wide),
                    );
                }
            });
        name_plot(&resp.response, session, "Learning-rate plot".into());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::blocks;
    use crate::infer::analyze;

    fn budget(bytes: u64) -> memory::Budget {
        memory::Budget {
            bytes,
            available: None,
        }
    }

    #[test]
    fn memory_line_names_the_estimate_and_the_batch_that_fits() {
        let g = blocks::resnet_mini();
        let a = analyze(&g);
        let setup = RunSetup {
            batch_size: 64,
            ..RunSetup::default()
        };
        let e = memory::estimate(&g, &a, 64, memory::Purpose::Train { optimizer_slots: 2 });
        let needs = format!("~{} at batch 64", memory::human_bytes(e.total()));
        // Room for exactly batch 64 plus a little: 64 fits, 128 does not.
        let roomy = budget(e.at_batch(64) + e.per_sample / 2);
        assert_eq!(
            memory_estimate_within(&g, &a, &setup, &roomy),
            format!(
                "{needs}; up to batch 64 fits in {}",
                memory::human_bytes(roomy.bytes)
            )
        );
        // Room for batch 20: over budget, the largest power of two that fits is 16.
        let tight = budget(e.at_batch(20));
        assert_eq!(
            memory_estimate_within(&g, &a, &setup, &tight),
            format!(
                "{needs}: over the {} budget; batch 16 fits",
                memory::human_bytes(tight.bytes)
            )
        );
        let tiny = budget(e.fixed / 2);
        assert_eq!(
            memory_estimate_within(&g, &a, &setup, &tiny),
            format!(
                "{needs}: the parameters alone exceed the {} budget",
                memory::human_bytes(tiny.bytes)
            )
        );
        assert_eq!(
            memory_estimate_within(&g, &a, &setup, &budget(u64::MAX)),
            needs
        );
    }
}
