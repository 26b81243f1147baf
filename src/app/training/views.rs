//! What the network learned: the runs with the accuracy-against-MACs
//! scatter, the prediction gallery, the confusion matrix and feature maps.
//! Drawing only; requests go out as commands.

use super::evaluate::{self, EvalRequest};
use super::panel::{name_plot, run_color, run_style};
use super::{RunRecord, TrainingSession};
use crate::app::command::Command;
use crate::infer::compact;
use crate::train::FeatureMaps;
use egui::{Color32, ColorImage, RichText, Sense, TextureHandle, TextureOptions, Ui, vec2};
use egui_plot::{Legend, Plot, PlotPoints, Points, Text};
use std::collections::HashMap;

/// Textures built from trainer data, kept until the data changes.
#[derive(Default)]
pub struct TrainingViews {
    /// Gallery thumbnails of run `.0`.
    gallery: Option<(usize, Vec<TextureHandle>)>,
    /// Input and per-channel feature-map textures of probe version `.0`.
    maps: Option<(u64, Option<TextureHandle>, Vec<TextureHandle>)>,
    /// The Runs table's sort column and direction (`true` ascending).
    runs_sort: Option<(RunColumn, bool)>,
    /// Gallery thumbnails with the Grad-CAM overlay of map version `.0`, by image index.
    cams: Option<(u64, HashMap<usize, TextureHandle>)>,
    /// The unsaved-weights window: its path field (for run `.0`) and the
    /// run the user put off saving.
    save_as: Option<(usize, String)>,
    save_later: Option<usize>,
    /// The ensemble button evaluates ten views per image.
    ensemble_multi_crop: bool,
}

/// The columns of the Runs table, each with its header and its cell text,
/// so a header always names what its cells hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunColumn {
    Run,
    Design,
    Macs,
    Params,
    Epochs,
    ValAcc,
    TestAcc,
    TestAccWithoutPreciseBn,
    /// Test accuracy with ten views per image (beside the one-view figure).
    MultiCrop,
    Seconds,
    Setup,
}

impl RunColumn {
    pub const ALL: [RunColumn; 11] = [
        RunColumn::Run,
        RunColumn::Design,
        RunColumn::Macs,
        RunColumn::Params,
        RunColumn::Epochs,
        RunColumn::ValAcc,
        RunColumn::TestAcc,
        RunColumn::TestAccWithoutPreciseBn,
        RunColumn::MultiCrop,
        RunColumn::Seconds,
        RunColumn::Setup,
    ];

    pub fn header(self) -> &'static str {
        match self {
            RunColumn::Run => "Run",
            RunColumn::Design => "Design",
            RunColumn::Macs => "MACs",
            RunColumn::Params => "Params",
            RunColumn::Epochs => "Epochs",
            RunColumn::ValAcc => "Val acc",
            RunColumn::TestAcc => "Test acc",
            RunColumn::TestAccWithoutPreciseBn => "Test acc (no precise BN)",
            RunColumn::MultiCrop => "Multi-crop acc",
            RunColumn::Seconds => "Seconds",
            RunColumn::Setup => "Setup",
        }
    }

    /// The header's tooltip: what the column holds.
    pub fn explain(self) -> &'static str {
        match self {
            RunColumn::MultiCrop => {
                "test accuracy with ten views per image (corners, centre and their mirrors, softmax averaged), beside the same weights with one view; click to sort"
            }
            _ => "click to sort",
        }
    }

    /// The value a sort compares (text columns sort by their text).
    fn key(self, r: &RunRecord) -> SortKey {
        let pct = |v: Option<f32>| SortKey::Number(v.map_or(f64::NEG_INFINITY, f64::from));
        match self {
            RunColumn::Run => SortKey::Number(r.id as f64),
            RunColumn::Macs => SortKey::Number(r.macs as f64),
            RunColumn::Params => SortKey::Number(r.params as f64),
            RunColumn::Epochs => SortKey::Number(r.epochs.len() as f64),
            RunColumn::ValAcc => pct(r.val_acc()),
            RunColumn::TestAcc => pct(r.test.as_ref().map(|t| t.test_acc)),
            RunColumn::TestAccWithoutPreciseBn => {
                pct(r.test.as_ref().and_then(|t| t.test_acc_without_precise_bn))
            }
            RunColumn::MultiCrop => pct(r.multi_crop.map(|m| m.accuracy)),
            RunColumn::Seconds => SortKey::Number(r.seconds()),
            RunColumn::Design | RunColumn::Setup => SortKey::Text(self.cell(r)),
        }
    }

    /// What the cell of run `r` shows.
    pub fn cell(self, r: &RunRecord) -> String {
        let pct = |v: Option<f32>| v.map_or("–".into(), |a| format!("{:.2}%", 100.0 * a));
        match self {
            RunColumn::Run => format!("#{} · {}", r.id, r.status.label()),
            RunColumn::Design => r.design.clone(),
            RunColumn::Macs => compact(r.macs),
            RunColumn::Params => compact(r.params),
            RunColumn::Epochs => format!("{} of {}", r.epochs.len(), r.setup.epochs),
            RunColumn::ValAcc => pct(r.val_acc()),
            RunColumn::TestAcc => pct(r.test.as_ref().map(|t| t.test_acc)),
            RunColumn::TestAccWithoutPreciseBn => {
                pct(r.test.as_ref().and_then(|t| t.test_acc_without_precise_bn))
            }
            RunColumn::MultiCrop => r.multi_crop.map_or("–".into(), |m| {
                format!(
                    "{:.2}% (1 view {:.2}%)",
                    100.0 * m.accuracy,
                    100.0 * m.single
                )
            }),
            RunColumn::Seconds => format!("{:.1}", r.seconds()),
            RunColumn::Setup => r.setup.describe(),
        }
    }
}

#[derive(PartialEq, PartialOrd)]
enum SortKey {
    Number(f64),
    Text(String),
}

/// The runs in table order: start order, or by `sort`'s column.
fn sorted_runs(runs: &[RunRecord], sort: Option<(RunColumn, bool)>) -> Vec<&RunRecord> {
    let mut rows: Vec<&RunRecord> = runs.iter().collect();
    if let Some((column, ascending)) = sort {
        rows.sort_by(|a, b| {
            let order = column
                .key(a)
                .partial_cmp(&column.key(b))
                .unwrap_or(std::cmp::Ordering::Equal);
            if ascending { order } else { order.reverse() }
        });
    }
    rows
}

/// Converts `h × w × c` intensities to an image: RGB as is, one channel as
/// grey, other counts show their first channel. `normalise` stretches the
/// values to the full range (feature maps); otherwise `[0, 1]` is assumed.
fn to_image(
    values: &[f32],
    (h, w, c): (usize, usize, usize),
    channel: Option<usize>,
    normalise: bool,
) -> ColorImage {
    let pick = |i: usize, k: usize| values.get(i * c + k).copied().unwrap_or(0.0);
    let (lo, hi) = if normalise {
        let k = channel.unwrap_or(0);
        (0..h * w)
            .map(|i| pick(i, k))
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    } else {
        (0.0, 1.0)
    };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let byte = |v: f32| (((v - lo) / span).clamp(0.0, 1.0) * 255.0) as u8;
    let mut pixels = Vec::with_capacity(h * w);
    for i in 0..h * w {
        pixels.push(match (channel, c) {
            (None, 3) => Color32::from_rgb(byte(pick(i, 0)), byte(pick(i, 1)), byte(pick(i, 2))),
            (Some(k), _) => {
                let g = byte(pick(i, k));
                Color32::from_gray(g)
            }
            _ => Color32::from_gray(byte(pick(i, 0))),
        });
    }
    ColorImage {
        size: [w, h],
        source_size: vec2(w as f32, h as f32),
        pixels,
    }
}

/// A heat colour for `t` in `[0, 1]`: blue, cyan, yellow, red.
fn heat_color(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let ramp = |a: f32, b: f32| ((t - a) / (b - a)).clamp(0.0, 1.0);
    [
        ramp(0.33, 0.66),
        ramp(0.0, 0.33) - ramp(0.66, 1.0),
        1.0 - ramp(0.33, 0.66),
    ]
}

/// `image` with `heat` (`h × w`, in `[0, 1]`) laid over it, half and half.
fn with_heat(image: &ColorImage, heat: &[f32]) -> ColorImage {
    let pixels = image
        .pixels
        .iter()
        .zip(heat.iter().chain(std::iter::repeat(&0.0)))
        .map(|(p, &t)| {
            let [r, g, b] = heat_color(t);
            let mix = |c: u8, h: f32| (0.5 * c as f32 + 127.5 * h) as u8;
            Color32::from_rgb(mix(p.r(), r), mix(p.g(), g), mix(p.b(), b))
        })
        .collect();
    ColorImage {
        pixels,
        ..image.clone()
    }
}

/// The Grad-CAM overlay row of the gallery: the toggle, the class and how the answer stands.
fn grad_cam_bar_ui(ui: &mut Ui, session: &TrainingSession, classes: &[String]) -> Vec<Command> {
    let mut out = Vec::new();
    let cam = &session.cam;
    ui.horizontal(|ui| {
        let mut on = cam.on;
        if ui
            .checkbox(&mut on, "Grad-CAM")
            .on_hover_text("overlay where the network looks: the last spatial layer's feature maps weighted by the gradient of the class score")
            .changed()
        {
            out.push(Command::ShowGradCam {
                on,
                class: cam.class,
            });
        }
        let name = |c: Option<u32>| match c {
            None => "predicted class".to_string(),
            Some(k) => classes
                .get(k as usize)
                .cloned()
                .unwrap_or_else(|| k.to_string()),
        };
        let l = ui.label("for");
        let mut class = cam.class;
        egui::ComboBox::from_id_salt("grad_cam_class")
            .selected_text(name(class))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut class, None, name(None));
                for k in 0..classes.len() as u32 {
                    ui.selectable_value(&mut class, Some(k), name(Some(k)));
                }
            })
            .response
            .labelled_by(l.id);
        if class != cam.class {
            out.push(Command::ShowGradCam { on: true, class });
        }
        if cam.on {
            match &cam.result {
                _ if cam.pending => {
                    ui.spinner();
                    ui.weak("computing…");
                }
                Some((_, Ok(maps))) => {
                    ui.weak(format!("at `{}` · red: most evidence for the class", maps.layer));
                }
                Some((_, Err(why))) => {
                    ui.colored_label(ui.visuals().error_fg_color, why);
                }
                None => {}
            }
        }
    });
    out
}

/// An image that can be clicked, with an accessible name.
fn thumbnail(ui: &mut Ui, tex: &TextureHandle, size: f32, label: &str) -> egui::Response {
    let resp = ui.add(
        egui::Image::new(egui::load::SizedTexture::new(tex.id(), vec2(size, size)))
            .sense(Sense::click()),
    );
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, label));
    resp
}

/// Validation accuracy against MACs per image, one labelled point per
/// shown run, filling the space it is given.
fn tradeoff_ui(ui: &mut Ui, session: &TrainingSession) {
    // The shown runs only, as in the other plots.
    let with_acc: Vec<&RunRecord> = session
        .runs
        .iter()
        .filter(|r| r.visible && r.val_acc().is_some())
        .collect();
    ui.add(
        egui::Label::new(format!(
            "Validation accuracy against MACs per image · {} runs",
            with_acc.len()
        ))
        .truncate(),
    );
    let widest = with_acc.iter().map(|r| r.macs).max().unwrap_or(0) as f64 / 1e6;
    let resp = Plot::new("tradeoff_plot")
        .width(ui.available_width())
        .height(ui.available_height().max(80.0))
        .include_x(widest * 1.25)
        .legend(Legend::default())
        .x_axis_label("MACs per image (millions)")
        .y_axis_label("validation accuracy")
        .y_axis_formatter(|mark, _| format!("{:.0}%", 100.0 * mark.value))
        .include_x(0.0)
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |p| {
            for r in &with_acc {
                let x = r.macs as f64 / 1e6;
                let y = r.val_acc().unwrap_or(0.0) as f64;
                let (c, wide) = run_style(session, r.id);
                p.points(
                    Points::new(r.label(), PlotPoints::from(vec![[x, y]]))
                        .color(c)
                        .radius(5.0 * wide),
                );
                p.text(
                    Text::new(r.label(), [x, y].into(), format!("  {}", r.label()))
                        .anchor(egui::Align2::LEFT_CENTER)
                        .color(c),
                );
            }
        });
    let shown: Vec<String> = with_acc.iter().map(|r| format!("#{}", r.id)).collect();
    name_plot(
        &resp.response,
        session,
        format!(
            "Accuracy against MACs plot with {} runs ({})",
            with_acc.len(),
            shown.join(", ")
        ),
    );
}

impl TrainingViews {
    /// A window while the newest unsaved run's weights are only in memory:
    /// why, and a path to save them to (typed, or chosen in a file dialog).
    pub fn unsaved_weights_ui(
        &mut self,
        ctx: &egui::Context,
        session: &TrainingSession,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        let Some((run, why)) = session.unsaved_weights() else {
            return out;
        };
        if self.save_later == Some(run.id) {
            return out;
        }
        if self.save_as.as_ref().is_none_or(|(id, _)| *id != run.id) {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            let name = format!("{}-run{}.safetensors", run.design, run.id);
            let path = home.map_or_else(|| name.clone().into(), |h| h.join(&name));
            self.save_as = Some((run.id, path.display().to_string()));
        }
        let Some((_, path)) = &mut self.save_as else {
            return out;
        };
        egui::Window::new("Weights not saved")
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, vec2(0.0, 0.0))
            .show(ctx, |ui| {
                ui.set_max_width(460.0);
                ui.label(format!(
                    "The trained weights of {} could not be saved: {why}.",
                    run.label()
                ));
                ui.label("They are kept in memory until you save them.");
                ui.horizontal(|ui| {
                    let l = ui.label("Save as");
                    ui.add(egui::TextEdit::singleline(path).desired_width(300.0))
                        .labelled_by(l.id);
                });
                ui.horizontal(|ui| {
                    if ui.button("Save").clicked() {
                        out.push(Command::SaveWeightsTo(path.trim().into()));
                    }
                    if ui.button("Choose…").clicked() {
                        out.push(Command::SaveWeights);
                    }
                    if ui
                        .button("Later")
                        .on_hover_text("keep them in memory; Run > Save weights… saves them")
                        .clicked()
                    {
                        self.save_later = Some(run.id);
                    }
                });
            });
        out
    }

    /// The Runs tab: the evaluation controls, the runs table (visibility,
    /// ensemble picks, sortable columns) and validation accuracy against
    /// MACs, each in its own part of the tab so every part stays on screen.
    pub fn runs_ui(&mut self, ui: &mut Ui, session: &TrainingSession) -> Vec<Command> {
        let mut out = Vec::new();
        if session.runs.is_empty() {
            ui.weak("No runs yet. Runs stay here for the session, so designs and settings can be compared.");
            return out;
        }
        let avail = ui.available_size();
        // The table gets most of the width and scrolls both ways inside it;
        // the scatter keeps the rest.
        let scatter_w = (avail.x * 0.36).clamp(220.0, 520.0).min(avail.x * 0.5);
        let table_w = (avail.x - scatter_w - 16.0).max(200.0);
        ui.horizontal_top(|ui| {
            ui.allocate_ui_with_layout(
                vec2(table_w, avail.y),
                egui::Layout::top_down(egui::Align::Min),
                |ui| {
                    ui.set_width(table_w);
                    out.extend(self.evaluation_ui(ui, session));
                    egui::ScrollArea::both()
                        .id_salt("runs_list")
                        .auto_shrink([false, true])
                        .max_height(ui.available_height())
                        .show(ui, |ui| out.extend(self.runs_table_ui(ui, session)));
                },
            );
            ui.separator();
            ui.allocate_ui_with_layout(
                vec2(ui.available_width(), avail.y),
                egui::Layout::top_down(egui::Align::Min),
                |ui| tradeoff_ui(ui, session),
            );
        });
        out
    }

    /// Multi-crop and ensemble evaluation: the ensemble button, the
    /// progress of the evaluation in progress with Cancel, its error, and
    /// the ensembles evaluated so far.
    fn evaluation_ui(&mut self, ui: &mut Ui, session: &TrainingSession) -> Vec<Command> {
        let mut out = Vec::new();
        let picked: Vec<usize> = session.picked.iter().copied().collect();
        ui.horizontal_wrapped(|ui| {
            let busy = session.evaluation.is_some();
            let enough = picked.len() >= 2;
            let text = if enough {
                format!("Ensemble {}", evaluate::run_list(&picked))
            } else {
                "Ensemble picked runs".into()
            };
            if ui
                .add_enabled(enough && !busy, egui::Button::new(text))
                .on_hover_text("average the softmax of the picked runs (one design) on the test split, beside each run alone")
                .on_disabled_hover_text("pick two or more finished runs of one design in the Ensemble column")
                .clicked()
            {
                out.push(Command::Evaluate(EvalRequest::Ensemble {
                    multi_crop: self.ensemble_multi_crop,
                }));
            }
            ui.checkbox(&mut self.ensemble_multi_crop, "with 10 views")
                .on_hover_text("each member sees the four corners, the centre and their mirrors of every test image");
            if let Some(job) = &session.evaluation {
                ui.spinner();
                ui.add(
                    egui::ProgressBar::new(job.fraction())
                        .desired_width(160.0)
                        .text(format!("{} · {}", job.target.describe(), job.stage())),
                );
                if ui.button("Cancel evaluation").clicked() {
                    out.push(Command::Evaluate(EvalRequest::Cancel));
                }
            }
        });
        if let Some(why) = &session.eval_error {
            ui.colored_label(ui.visuals().error_fg_color, why);
        }
        for e in &session.ensembles {
            ui.label(e.line());
        }
        out
    }

    /// The runs table: a row per run, a column per [`RunColumn`].
    fn runs_table_ui(&mut self, ui: &mut Ui, session: &TrainingSession) -> Vec<Command> {
        let mut out = Vec::new();
        let columns = RunColumn::ALL;
        egui::Grid::new("runs_grid")
            .striped(true)
            .num_columns(columns.len() + 2)
            .show(ui, |ui| {
                ui.label(RichText::new("Show").strong())
                    .on_hover_text("overlay the run in the plots");
                ui.label(RichText::new("Ensemble").strong())
                    .on_hover_text("pick finished runs of one design to average");
                for column in columns {
                    let arrow = match self.runs_sort {
                        Some((c, true)) if c == column => " ^",
                        Some((c, false)) if c == column => " v",
                        _ => "",
                    };
                    let header = ui
                        .add(
                            egui::Label::new(
                                RichText::new(format!("{}{arrow}", column.header())).strong(),
                            )
                            .sense(Sense::click()),
                        )
                        .on_hover_text(column.explain());
                    if header.clicked() {
                        self.runs_sort = match self.runs_sort {
                            Some((c, asc)) if c == column => Some((c, !asc)),
                            _ => Some((column, true)),
                        };
                    }
                }
                ui.end_row();
                for r in sorted_runs(&session.runs, self.runs_sort) {
                    let mut visible = r.visible;
                    if ui
                        .checkbox(&mut visible, "")
                        .on_hover_text("overlay in the plots")
                        .changed()
                    {
                        out.push(Command::ShowRun { run: r.id, visible });
                    }
                    let evaluable = r.weights.as_ref().is_some_and(|w| w.is_file());
                    if evaluable {
                        let mut on = session.picked.contains(&r.id);
                        let name = format!("Pick #{} for the ensemble", r.id);
                        let resp = ui.checkbox(&mut on, "").on_hover_text(&name);
                        resp.widget_info(|| {
                            egui::WidgetInfo::selected(egui::Role::CheckBox, true, on, &name)
                        });
                        if resp.changed() {
                            out.push(Command::Evaluate(EvalRequest::Pick { run: r.id, on }));
                        }
                    } else {
                        ui.label("");
                    }
                    for column in columns {
                        let text = column.cell(r);
                        match column {
                            RunColumn::Run => {
                                let on = session.highlighted == Some(r.id);
                                let cell = ui
                                    .add(egui::Button::selectable(
                                        on,
                                        RichText::new(text).color(run_color(r.id)),
                                    ))
                                    .on_hover_text("click to highlight the run in every plot");
                                if cell.clicked() {
                                    out.push(Command::HighlightRun((!on).then_some(r.id)));
                                }
                            }
                            RunColumn::MultiCrop if r.multi_crop.is_none() && evaluable => {
                                let busy = session.evaluation.is_some();
                                let resp = ui
                                    .add_enabled(!busy, egui::Button::new("10 views").small())
                                    .on_hover_text(format!(
                                        "evaluate #{} on the test split with ten views per image (corners, centre, mirrors), softmax averaged",
                                        r.id
                                    ));
                                resp.widget_info(|| {
                                    egui::WidgetInfo::labeled(
                                        egui::Role::Button,
                                        !busy,
                                        format!("Multi-crop #{}", r.id),
                                    )
                                });
                                if resp.clicked() {
                                    out.push(Command::Evaluate(EvalRequest::MultiCrop(r.id)));
                                }
                            }
                            RunColumn::MultiCrop => {
                                let resp = ui.label(text);
                                if let Some(m) = &r.multi_crop {
                                    resp.on_hover_text(format!(
                                        "{} views per image on {} test images: {:.2}%; one view, same weights and images: {:.2}%",
                                        m.views,
                                        m.images,
                                        100.0 * m.accuracy,
                                        100.0 * m.single
                                    ));
                                }
                            }
                            RunColumn::Setup => {
                                ui.weak(text);
                            }
                            _ => {
                                ui.label(text);
                            }
                        }
                    }
                    ui.end_row();
                }
            });
        out
    }

    /// Test images with true and predicted labels, mistakes first; a click
    /// opens the image's feature maps.
    pub fn gallery_ui(&mut self, ui: &mut Ui, session: &TrainingSession) -> Vec<Command> {
        let mut out = Vec::new();
        let Some((run, test)) = session.runs.iter().rev().find_map(|r| {
            r.test
                .as_ref()
                .filter(|t| !t.samples.is_empty())
                .map(|t| (r, t))
        }) else {
            ui.weak("Predictions on test images appear here when a run finishes.");
            return out;
        };
        let classes = run
            .info
            .as_ref()
            .map(|i| i.classes.clone())
            .unwrap_or_default();
        let name = |k: u32| {
            classes
                .get(k as usize)
                .cloned()
                .unwrap_or_else(|| k.to_string())
        };
        if self.gallery.as_ref().is_none_or(|(id, _)| *id != run.id) {
            let textures = test
                .samples
                .iter()
                .map(|s| {
                    ui.ctx().load_texture(
                        format!("sample_{}_{}", run.id, s.index),
                        to_image(&s.image, test.image_shape, None, false),
                        TextureOptions::LINEAR,
                    )
                })
                .collect();
            self.gallery = Some((run.id, textures));
        }
        out.extend(grad_cam_bar_ui(ui, session, &classes));
        // The maps of this run, as overlay textures.
        let maps = match &session.cam.result {
            Some((id, Ok(maps))) if session.cam.on && *id == run.id => Some(maps),
            _ => None,
        };
        match maps {
            Some(maps)
                if self
                    .cams
                    .as_ref()
                    .is_none_or(|(v, _)| *v != session.cam.version) =>
            {
                let (h, w, _) = test.image_shape;
                let textures = maps
                    .maps
                    .iter()
                    .filter_map(|(index, map)| {
                        let s = test.samples.iter().find(|s| s.index == *index)?;
                        let image = to_image(&s.image, test.image_shape, None, false);
                        let tex = ui.ctx().load_texture(
                            format!("grad_cam_{}_{}", session.cam.version, index),
                            with_heat(&image, &map.heat((h, w))),
                            TextureOptions::LINEAR,
                        );
                        Some((*index, tex))
                    })
                    .collect();
                self.cams = Some((session.cam.version, textures));
            }
            Some(_) => {}
            None => self.cams = None,
        }
        let cam_of = |index: usize| {
            let map = maps?.maps.iter().find(|(i, _)| *i == index)?;
            let tex = self.cams.as_ref()?.1.get(&index)?;
            Some((&map.1, tex))
        };
        let wrong = test
            .samples
            .iter()
            .filter(|s| s.label != s.predicted)
            .count();
        ui.label(format!(
            "{} · test accuracy {:.2}% · {} of the {} shown are mistakes (red, first). Click an image to see its feature maps.",
            run.label(),
            100.0 * test.test_acc,
            wrong,
            test.samples.len()
        ));
        let Some((_, textures)) = &self.gallery else {
            return out;
        };
        let per_row = ((ui.available_width() / 84.0) as usize).max(1);
        egui::ScrollArea::vertical()
            .id_salt("gallery")
            .show(ui, |ui| {
                egui::Grid::new("gallery_grid")
                    .spacing([8.0, 6.0])
                    .show(ui, |ui| {
                        for (i, (s, tex)) in test.samples.iter().zip(textures).enumerate() {
                            let ok = s.label == s.predicted;
                            ui.vertical(|ui| {
                                let mut label = format!(
                                    "test image {}: true {}, predicted {}",
                                    s.index,
                                    name(s.label),
                                    name(s.predicted)
                                );
                                let shown = match cam_of(s.index) {
                                    Some((map, overlay)) => {
                                        label.push_str(&format!(
                                            ", Grad-CAM for {} at `{}`",
                                            name(map.class),
                                            maps.map_or("", |m| m.layer.as_str())
                                        ));
                                        overlay
                                    }
                                    None => tex,
                                };
                                let resp = thumbnail(ui, shown, 72.0, &label);
                                let color = if ok {
                                    Color32::from_rgb(120, 200, 120)
                                } else {
                                    Color32::from_rgb(240, 100, 100)
                                };
                                ui.painter().rect_stroke(
                                    resp.rect,
                                    2.0,
                                    egui::Stroke::new(2.0, color),
                                    egui::StrokeKind::Outside,
                                );
                                ui.colored_label(
                                    color,
                                    if ok {
                                        name(s.label)
                                    } else {
                                        format!("{} as {}", name(s.label), name(s.predicted))
                                    },
                                );
                                if resp.on_hover_text(&label).clicked() {
                                    out.push(Command::ShowFeatureMapsOf { image: s.index });
                                }
                            });
                            if (i + 1) % per_row == 0 {
                                ui.end_row();
                            }
                        }
                    });
            });
        out
    }

    /// The test confusion matrix of the newest finished run as a heatmap
    /// (rows true, columns predicted; colour by row share).
    pub fn confusion_ui(&mut self, ui: &mut Ui, session: &TrainingSession) {
        let Some((run, test)) = session.runs.iter().rev().find_map(|r| {
            r.test
                .as_ref()
                .filter(|t| !t.confusion.is_empty())
                .map(|t| (r, t))
        }) else {
            ui.weak("The confusion matrix of the test split appears here when a run finishes.");
            return;
        };
        let classes = run
            .info
            .as_ref()
            .map(|i| i.classes.clone())
            .unwrap_or_default();
        let k = test.confusion.len();
        ui.label(format!(
            "Confusion matrix · {} · test accuracy {:.2}% · rows: true class, columns: predicted",
            run.label(),
            100.0 * test.test_acc
        ));
        let avail = ui.available_size();
        let cell = ((avail.y - 40.0) / (k as f32 + 1.0))
            .min((avail.x - 80.0) / (k as f32 + 1.0))
            .clamp(14.0, 48.0);
        let label_w = 70.0;
        let (rect, resp) = ui.allocate_exact_size(
            vec2(
                label_w + cell * k as f32 + 8.0,
                cell * (k as f32 + 1.0) + 4.0,
            ),
            Sense::hover(),
        );
        let total: usize = test.confusion.iter().flatten().sum();
        let correct: usize = (0..k)
            .map(|i| test.confusion[i].get(i).copied().unwrap_or(0))
            .sum();
        resp.widget_info(|| {
            egui::WidgetInfo::labeled(
                egui::Role::Image,
                true,
                format!("Confusion matrix {k}×{k}: {correct} of {total} on the diagonal"),
            )
        });
        let painter = ui.painter_at(rect);
        let font = egui::FontId::proportional((cell * 0.38).clamp(9.0, 13.0));
        let text_color = ui.visuals().text_color();
        let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| i.to_string());
        let origin = rect.min + vec2(label_w, cell);
        for j in 0..k {
            painter.text(
                origin + vec2((j as f32 + 0.5) * cell, -cell * 0.5),
                egui::Align2::CENTER_CENTER,
                name(j),
                font.clone(),
                text_color,
            );
        }
        for (i, row) in test.confusion.iter().enumerate() {
            let row_total: usize = row.iter().sum();
            painter.text(
                origin + vec2(-6.0, (i as f32 + 0.5) * cell),
                egui::Align2::RIGHT_CENTER,
                name(i),
                font.clone(),
                text_color,
            );
            for (j, &n) in row.iter().enumerate() {
                let share = if row_total > 0 {
                    n as f32 / row_total as f32
                } else {
                    0.0
                };
                let r = egui::Rect::from_min_size(
                    origin + vec2(j as f32 * cell, i as f32 * cell),
                    vec2(cell, cell),
                )
                .shrink(1.0);
                let base = if i == j {
                    Color32::from_rgb(60, 170, 90)
                } else {
                    Color32::from_rgb(220, 80, 80)
                };
                let fill = if n == 0 {
                    ui.visuals().extreme_bg_color
                } else {
                    base.gamma_multiply(0.25 + 0.75 * share)
                };
                painter.rect_filled(r, 2.0, fill);
                if n > 0 {
                    painter.text(
                        r.center(),
                        egui::Align2::CENTER_CENTER,
                        n.to_string(),
                        font.clone(),
                        Color32::WHITE,
                    );
                }
            }
        }
    }

    /// Feature maps of the selected node for the chosen test image.
    pub fn feature_maps_ui(
        &mut self,
        ui: &mut Ui,
        session: &TrainingSession,
        selected_node: Option<&str>,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        let probe = &session.probe;
        ui.horizontal(|ui| {
            ui.label("Layer");
            ui.label(
                RichText::new(selected_node.unwrap_or("(select a node on the canvas)")).strong(),
            );
            let image_label = ui.label("Test image");
            let mut image = probe.image;
            let max = session
                .current()
                .and_then(|r| r.info.as_ref())
                .map_or(0, |i| i.test_images.max(i.val_images).saturating_sub(1));
            ui.add(egui::DragValue::new(&mut image).range(0..=max))
                .labelled_by(image_label.id);
            let wanted = selected_node.map(str::to_string);
            let stale = wanted.is_some() && (wanted != probe.node || image != probe.image);
            if let Some(node) = wanted
                && (stale || probe.result.is_none())
                && !probe.pending
                && session.can_probe()
            {
                out.push(Command::ProbeNode { node, image });
            }
            if probe.pending {
                ui.spinner();
            }
        });
        if !session.can_probe() {
            ui.weak("Train a run first: feature maps come from the network being trained (they update while it trains, and stay after it ends).");
            return out;
        }
        match &probe.result {
            None => {
                ui.weak("Select a node on the canvas to see what it computes for this image.");
            }
            Some(Err(why)) => {
                ui.colored_label(Color32::from_rgb(240, 110, 110), why);
            }
            Some(Ok(maps)) => self.maps_ui(ui, maps, probe.version),
        }
        out
    }

    fn maps_ui(&mut self, ui: &mut Ui, maps: &FeatureMaps, version: u64) {
        const MAX_CHANNELS: usize = 64;
        let (h, w, c) = maps.shape;
        let spatial = h * w > 1;
        if self.maps.as_ref().is_none_or(|(v, _, _)| *v != version) {
            let ctx = ui.ctx();
            let input = ctx.load_texture(
                "probe_input",
                to_image(&maps.input, maps.input_shape, None, false),
                TextureOptions::LINEAR,
            );
            let channels = if spatial {
                (0..c.min(MAX_CHANNELS))
                    .map(|k| {
                        ctx.load_texture(
                            format!("probe_map_{k}"),
                            to_image(&maps.values, maps.shape, Some(k), true),
                            TextureOptions::NEAREST,
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
            self.maps = Some((version, Some(input), channels));
        }
        let Some((_, input, channels)) = &self.maps else {
            return;
        };
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                if let Some(t) = input {
                    thumbnail(ui, t, 112.0, &format!("test image {}", maps.image));
                }
                ui.label(format!(
                    "image {} · true {} · predicted {}",
                    maps.image, maps.label, maps.predicted
                ));
                ui.label(format!("`{}` output {h}×{w}×{c}", maps.node));
            });
            ui.separator();
            if spatial {
                let shown = channels.len();
                egui::ScrollArea::vertical().id_salt("maps").show(ui, |ui| {
                    // The scroll area inherits the row layout: stack inside it.
                    ui.vertical(|ui| {
                        ui.label(format!(
                            "{shown} of {c} channels, each stretched to its own range{}",
                            if shown < c { " (first 64)" } else { "" }
                        ));
                        ui.horizontal_wrapped(|ui| {
                            for (k, tex) in channels.iter().enumerate() {
                                let size = 72.0;
                                ui.add(egui::Image::new(egui::load::SizedTexture::new(
                                    tex.id(),
                                    vec2(size, size),
                                )))
                                .on_hover_text(format!("channel {k}"));
                            }
                        });
                    });
                });
            } else {
                // A vector: one bar per unit.
                let bars: Vec<egui_plot::Bar> = maps
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| egui_plot::Bar::new(i as f64, v as f64))
                    .collect();
                let resp = Plot::new("vector_plot").x_axis_label("unit").show(ui, |p| {
                    p.bar_chart(egui_plot::BarChart::new(maps.node.clone(), bars))
                });
                resp.response.widget_info(|| {
                    egui::WidgetInfo::labeled(
                        egui::Role::Image,
                        true,
                        format!("Output of {} ({c} units)", maps.node),
                    )
                });
            }
        });
    }
}
