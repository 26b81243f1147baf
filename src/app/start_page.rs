//! The start page (shown on first launch, reachable from Help) with the
//! course's guided tasks, and the keyboard-shortcut list of Help, generated
//! from the commands' own shortcuts. Drawing only: each choice is a Command.

use super::command::{Command, SHORTCUT_COMMANDS};
use egui::{RichText, Ui};

/// A guided task of the start page: which presets and panels it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuidedTask {
    /// The course's bottleneck example in compare: A a 5×5 convolution
    /// straight over 28×28×192, B the same after a 1×1 reduction to 16
    /// channels (9.68× fewer multiplies).
    CompareInception,
    /// resnet-mini with the Training tab open on the built-in data.
    TrainResnet,
}

impl GuidedTask {
    pub fn title(self) -> &'static str {
        match self {
            GuidedTask::CompareInception => "Compare a naive and a bottleneck Inception module",
            GuidedTask::TrainResnet => "Train a ResNet and watch it learn",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            GuidedTask::CompareInception => {
                "Opens the course's example side by side: a 5×5 convolution over 192 channels (A), and the same after a 1×1 bottleneck to 16 channels (B), what B changes highlighted. The inspector's Compare section shows how many multiplies the bottleneck saves."
            }
            GuidedTask::TrainResnet => {
                "Opens resnet-mini with the Training tab on the built-in hand-digits set: press Train and watch the loss, accuracy and per-layer times."
            }
        }
    }

    /// The presets the task opens: A, then B when it compares.
    pub fn presets(self) -> &'static [&'static str] {
        match self {
            GuidedTask::CompareInception => &["inception-naive", "inception-bottleneck"],
            GuidedTask::TrainResnet => &["resnet-mini"],
        }
    }
}

/// The classic networks the third task offers: (button label, preset stem).
pub const CLASSICS: [(&str, &str); 5] = [
    ("LeNet-5", "lenet5"),
    ("AlexNet", "alexnet"),
    ("VGG-16", "vgg16"),
    ("GoogLeNet", "googlenet"),
    ("ResNet-50", "resnet50"),
];

/// The start page window; `open` is cleared when the user closes it.
pub fn start_page_ui(ctx: &egui::Context, open: &mut bool) -> Vec<Command> {
    let mut out = Vec::new();
    let mut still_open = *open;
    egui::Window::new("Start page")
        .open(&mut still_open)
        .collapsible(false)
        .resizable(false)
        .default_width(560.0)
        .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
        .show(ctx, |ui| {
            ui.heading("Welcome to Netloom");
            ui.label("Design convolutional networks, see what every layer costs, and train them on this machine. Three places to start:");
            ui.add_space(6.0);
            for task in [GuidedTask::CompareInception, GuidedTask::TrainResnet] {
                task_ui(ui, task, &mut out);
            }
            ui.group(|ui| {
                ui.set_width(ui.available_width());
                ui.label(RichText::new("Open a classic network").strong());
                ui.weak("The networks of the course, with their exact parameter and multiply counts.");
                ui.horizontal_wrapped(|ui| {
                    for (label, stem) in CLASSICS {
                        if ui.button(label).clicked() {
                            out.push(Command::OpenPreset(stem));
                        }
                    }
                });
            });
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                ui.weak("Help › Start page shows this again.");
                if ui.button("Close").clicked() {
                    out.push(Command::CloseStartPage);
                }
            });
        });
    if !still_open {
        out.push(Command::CloseStartPage);
    }
    if out.iter().any(|c| !matches!(c, Command::CloseStartPage)) {
        out.push(Command::CloseStartPage);
    }
    out
}

fn task_ui(ui: &mut Ui, task: GuidedTask, out: &mut Vec<Command>) {
    ui.group(|ui| {
        ui.set_width(ui.available_width());
        if ui.button(RichText::new(task.title()).strong()).clicked() {
            out.push(Command::Guided(task));
        }
        ui.weak(task.description());
    });
}

/// Every keyboard shortcut with the command it issues, from the commands
/// themselves: `(menu label, shortcut texts)`.
pub fn shortcut_rows(ctx: &egui::Context) -> Vec<(&'static str, Vec<String>)> {
    SHORTCUT_COMMANDS
        .iter()
        .filter_map(|c| {
            let label = c.text()?;
            let keys = c
                .kb_shortcuts()
                .iter()
                .map(|s| ctx.format_shortcut(s))
                .collect();
            Some((label, keys))
        })
        .collect()
}

/// Help › Keyboard shortcuts.
pub fn shortcuts_ui(ctx: &egui::Context, open: &mut bool) {
    let rows = shortcut_rows(ctx);
    egui::Window::new("Keyboard shortcuts")
        .open(open)
        .collapsible(false)
        .resizable(false)
        .show(ctx, |ui| {
            egui::Grid::new("shortcut_grid")
                .striped(true)
                .num_columns(2)
                .show(ui, |ui| {
                    for (label, keys) in rows {
                        ui.label(label.trim_end_matches('…'));
                        ui.label(RichText::new(keys.join("  or  ")).monospace());
                        ui.end_row();
                    }
                });
        });
}
