//! The desktop designer (egui/eframe): canvas, palette, inspector, cost
//! table and compare view over one or two open designs.
//!
//! Data flows one way: panels read the [`Document`]s and emit [`Command`]s;
//! [`NetloomApp::execute`] applies every command in one place, edits go
//! through [`Document::apply`] (undo snapshots) and the analysis is
//! recomputed right away, in the same frame.

pub mod canvas;
pub mod command;
pub mod compare;
pub mod cost_table;
pub mod dialogs;
pub mod document;
pub mod export;
pub mod files;
pub mod find;
pub mod frame_stats;
pub mod inspector;
pub mod loading;
pub mod minimap;
pub mod palette;
pub mod start_page;
pub mod training;

use crate::graph::{Graph, NodeId, blocks, file};
use crate::infer::Conventions;
use canvas::{Canvas, CanvasInput};
use command::{Command, Fragment, preset_graph};
use dialogs::{PathKind, PathRequest};
use document::Document;
use egui::{Key, KeyboardShortcut, Modifiers, Ui};
use files::{AppFiles, Recovery};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Seconds between autosaves of a changed design.
const AUTOSAVE_EVERY: f64 = 15.0;

/// The eframe storage key remembering that the start page was seen.
const START_PAGE_SEEN: &str = "netloom.start_page_seen";

const DESIGN_FILES: &[(&str, &[&str])] = &[("Netloom design", &["json"])];
const ONNX_FILES: &[(&str, &[&str])] = &[("ONNX model", &["onnx"])];
const WEIGHT_FILES: &[(&str, &[&str])] = &[("safetensors weights", &["safetensors"])];
const CSV_FILES: &[(&str, &[&str])] = &[("CSV", &["csv"])];

/// Whether `path` is one of the preset files shipped with Netloom (saving
/// over one would change every user's starting point).
pub fn is_shipped_preset(path: &Path) -> bool {
    let presets = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
    let (Ok(file), Ok(presets)) = (path.canonicalize(), presets.canonicalize()) else {
        return false;
    };
    file.parent() == Some(presets.as_path())
}

/// One open design with its own view.
pub struct Tab {
    pub doc: Document,
    pub canvas: Canvas,
    pub selection: BTreeSet<NodeId>,
}

impl Tab {
    pub fn new(doc: Document) -> Self {
        Tab {
            doc,
            canvas: Canvas::default(),
            selection: BTreeSet::new(),
        }
    }
}

/// The tabs of the bottom panel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BottomTab {
    Costs,
    Training,
    Runs,
    Predictions,
    Confusion,
    FeatureMaps,
    Sweep,
}

impl BottomTab {
    pub const ALL: [BottomTab; 7] = [
        BottomTab::Costs,
        BottomTab::Training,
        BottomTab::Runs,
        BottomTab::Predictions,
        BottomTab::Confusion,
        BottomTab::FeatureMaps,
        BottomTab::Sweep,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BottomTab::Costs => "Cost table",
            BottomTab::Training => "Training",
            BottomTab::Runs => "Runs",
            BottomTab::Predictions => "Predictions",
            BottomTab::Confusion => "Confusion matrix",
            BottomTab::FeatureMaps => "Feature maps",
            BottomTab::Sweep => "Sweep",
        }
    }
}

struct Notice {
    text: String,
    level: NoticeLevel,
    until: f64,
}

/// How a notice is shown: a warning (something was changed for the user)
/// and an error stay long enough to be read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NoticeLevel {
    Info,
    Warning,
    Error,
}

/// The whole app state.
pub struct NetloomApp {
    /// Open designs: one, or two while comparing (A then B).
    pub tabs: Vec<Tab>,
    pub active: usize,
    pub conventions: Conventions,
    /// The bottom panel is open (it shows `bottom_tab`).
    pub show_cost_table: bool,
    pub bottom_tab: BottomTab,
    /// Runs of this session and their trainer.
    pub training: training::TrainingSession,
    training_views: training::views::TrainingViews,
    pub sweep_dialog: training::sweep_view::SweepDialog,
    pub lr_finder: training::lr_finder::LrFinder,
    /// A canvas PNG export waiting for the screenshot of the next frame.
    pending_png: Option<(
        PathBuf,
        std::sync::mpsc::Receiver<std::sync::Arc<egui::ColorImage>>,
    )>,
    palette: palette::Palette,
    inspector: inspector::Inspector,
    cost_table: cost_table::CostTable,
    clipboard: Fragment,
    paste_count: u32,
    files: AppFiles,
    recent: Vec<PathBuf>,
    notice: Option<Notice>,
    /// A message that needs acknowledging (e.g. a file that failed to load).
    pub error_modal: Option<String>,
    /// A command waiting for the answer to "save changes?".
    confirm: Option<Command>,
    /// Replacing or closing a changed design was confirmed.
    discard_ok: bool,
    recovery: Option<Recovery>,
    allow_close: bool,
    last_autosave: f64,
    /// Generations of the tabs at the last autosave.
    autosaved_generation: Option<Vec<u64>>,
    title: String,
    /// Commands issued by modals and menus during this frame.
    queue: Vec<Command>,
    /// Frame times being recorded (`--frame-stats`), and when to quit.
    frame_stats: Option<(frame_stats::FrameStats, Option<f64>)>,
    /// Native file dialogs, or the in-app path field when there are none.
    pub dialogs: dialogs::FileDialogs,
    /// The path being asked for replaces the active design, which the user
    /// already agreed to (its answer then does not ask again).
    path_replaces_design: bool,
    /// The start page is shown.
    pub start_page: bool,
    /// Help › Keyboard shortcuts is shown.
    pub shortcuts_open: bool,
    /// A design, ONNX model or weights file being read off the UI thread.
    pub loading: Option<loading::Loading>,
    /// The last diff of compare designs A and B.
    compare_cache: compare::DiffCache,
}

/// How the designer starts (command-line options).
#[derive(Clone, Debug, Default)]
pub struct LaunchOptions {
    pub design: Option<PathBuf>,
    /// Start training the design at once.
    pub train: bool,
    /// Epochs of that run (the run setup's default otherwise).
    pub epochs: Option<u64>,
    /// Record frame times and write them here as JSON on exit.
    pub frame_stats: Option<PathBuf>,
    /// Close the window after this many seconds.
    pub quit_after: Option<f64>,
}

impl NetloomApp {
    /// An app showing `graph`; `files` says where recovery and recent files live.
    pub fn new(graph: Graph, path: Option<PathBuf>, files: AppFiles) -> Self {
        let recovery = files.recovery();
        let recent = files.recent();
        NetloomApp {
            tabs: vec![Tab::new(Document::new(graph, path))],
            active: 0,
            conventions: Conventions::default(),
            show_cost_table: true,
            bottom_tab: BottomTab::Costs,
            training: Default::default(),
            training_views: Default::default(),
            sweep_dialog: Default::default(),
            lr_finder: Default::default(),
            pending_png: None,
            palette: Default::default(),
            inspector: Default::default(),
            cost_table: Default::default(),
            clipboard: Fragment::default(),
            paste_count: 0,
            files,
            recent,
            notice: None,
            error_modal: None,
            confirm: None,
            discard_ok: false,
            recovery,
            allow_close: false,
            last_autosave: 0.0,
            autosaved_generation: None,
            title: String::new(),
            queue: Vec::new(),
            frame_stats: None,
            dialogs: Default::default(),
            path_replaces_design: false,
            start_page: false,
            shortcuts_open: false,
            loading: None,
            compare_cache: Default::default(),
        }
    }

    /// An app for tests: no recovery or recent files on disk, and the
    /// in-app path field instead of native dialogs.
    pub fn for_tests(graph: Graph) -> Self {
        let mut app = Self::new(graph, None, AppFiles::default());
        app.dialogs = dialogs::FileDialogs::in_app();
        app
    }

    /// Asks for a path (native dialog or the in-app field) and runs the
    /// command of the answer when it comes. `replaces_design`: the command
    /// replaces the active design and the user already agreed to that.
    fn ask_path(&mut self, ctx: &egui::Context, request: PathRequest, replaces_design: bool) {
        self.path_replaces_design = replaces_design;
        if let Some(c) = self.dialogs.ask(request) {
            self.run_path_answer(ctx, c);
        }
    }

    fn run_path_answer(&mut self, ctx: &egui::Context, cmd: Command) {
        self.execute_discarding(ctx, cmd, self.path_replaces_design);
        self.path_replaces_design = false;
    }

    /// The folder of the active design's file, where its dialogs start.
    fn doc_dir(&self) -> Option<PathBuf> {
        self.doc()
            .path
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
    }

    /// The weights file of the newest run of the active design as it is now.
    fn weights_of_active_design(&self) -> Option<PathBuf> {
        let doc = self.doc();
        self.training
            .runs
            .iter()
            .rev()
            .find(|r| r.tab == self.active && r.generation == doc.generation)
            .and_then(|r| r.weights.clone())
            .filter(|w| w.is_file())
    }

    fn export_to(&mut self, ctx: &egui::Context, kind: export::ExportKind, path: &Path) {
        let weights = match kind {
            export::ExportKind::PytorchCode => None,
            _ => self.weights_of_active_design(),
        };
        match export::export(kind, &self.doc().graph, weights.as_deref(), path) {
            Ok(done) => self.notify(ctx, done, false),
            Err(e) => {
                self.error_modal = Some(format!("Could not export to {}:\n\n{e}", path.display()));
            }
        }
    }

    /// Starts reading `path` off the UI thread; applied at once when it is
    /// quick, else when [`Self::poll_loading`] finds the answer.
    fn start_loading(&mut self, ctx: &egui::Context, job: loading::Job, path: PathBuf) {
        if let Some(l) = &self.loading {
            let busy = format!("Still reading {}: wait or cancel first.", l.path.display());
            return self.notify(ctx, busy, true);
        }
        match loading::start(job, path) {
            Ok(progress) => self.loading_progress(ctx, progress),
            Err(e) => self.error_modal = Some(e.to_string()),
        }
    }

    /// Takes the reading thread's answer if it came; draws the spinner.
    fn poll_loading(&mut self, ctx: &egui::Context) {
        let Some(l) = self.loading.take() else {
            return;
        };
        if l.ui(ctx) {
            self.notify(
                ctx,
                format!("Stopped waiting for {}", l.path.display()),
                false,
            );
            return;
        }
        match l.poll() {
            Ok(progress) => self.loading_progress(ctx, progress),
            Err(e) => self.error_modal = Some(e.to_string()),
        }
        if self.loading.is_some() {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
    }

    fn loading_progress(&mut self, ctx: &egui::Context, progress: loading::Progress) {
        match progress {
            loading::Progress::Pending(l) => {
                self.loading = Some(l);
                ctx.request_repaint_after(std::time::Duration::from_millis(50));
            }
            loading::Progress::Done(path, outcome) => self.apply_loaded(ctx, path, outcome),
        }
    }

    /// Applies what was read: the new design, the import, the weights to start from.
    fn apply_loaded(&mut self, ctx: &egui::Context, path: PathBuf, outcome: loading::Outcome) {
        match outcome {
            loading::Outcome::Design(Ok(loaded)) => {
                self.replace_active(loaded.graph, Some(path.clone()));
                self.recent = self.files.push_recent(&path);
                self.opened_with_repairs(ctx, &path, &loaded.ungrouped);
            }
            loading::Outcome::Design(Err(e)) => {
                self.error_modal = Some(format!(
                    "Could not open {}:\n\n{e}\n\nThe current design is unchanged.",
                    path.display()
                ));
            }
            loading::Outcome::Onnx(Ok(imported)) => self.apply_import(ctx, &path, imported),
            loading::Outcome::Onnx(Err(e)) => {
                self.error_modal = Some(format!(
                    "Could not import {}:\n\n{e}\n\nThe current design is unchanged.",
                    path.display()
                ));
            }
            loading::Outcome::Weights(Ok(tensors)) => {
                let msg = self.training.start_from_file(path, tensors);
                self.notify(ctx, msg, false);
            }
            loading::Outcome::Weights(Err(e)) => self.notify(ctx, e.to_string(), true),
        }
    }

    /// Says what the reader repaired to open `path` (the active design):
    /// the design shown differs from the file, so it counts as unsaved and
    /// Save writes the repaired design.
    fn opened_with_repairs(
        &mut self,
        ctx: &egui::Context,
        path: &Path,
        ungrouped: &[crate::graph::group::Ungrouped],
    ) {
        if ungrouped.is_empty() {
            return;
        }
        self.tab_mut().doc.dirty = true;
        let what: Vec<String> = ungrouped.iter().map(|u| u.to_string()).collect();
        self.warn(
            ctx,
            format!(
                "Repaired {} on opening: {}. Save to keep the repair.",
                path.display(),
                what.join("; ")
            ),
        );
    }

    fn apply_import(
        &mut self,
        ctx: &egui::Context,
        path: &Path,
        mut imported: crate::interop::onnx::Imported,
    ) {
        let faithful = imported.is_faithful();
        let list = imported.deviation_list(12);
        if !faithful {
            imported.mark_partial();
        }
        // The model's weights become the next run's starting point.
        let start = match self.training.start_from_import(&imported) {
            Ok(note) => note.map(|n| format!(". {n}")).unwrap_or_default(),
            Err(e) => format!(". {e}"),
        };
        self.replace_active(imported.graph, None);
        self.tab_mut().doc.dirty = true;
        if faithful {
            self.notify(ctx, format!("Imported {}{start}", path.display()), false);
        } else {
            self.error_modal = Some(format!(
                "Imported {} only in part: the design does not compute what the model does.\n\n{list}\n\nThe design is open, named as a partial import; fix or replace these layers before training.",
                path.display()
            ));
        }
    }

    /// Opens what a start-page task needs, asking first about unsaved edits.
    fn guided(&mut self, ctx: &egui::Context, task: start_page::GuidedTask) {
        if self.tabs.iter().any(|t| t.doc.dirty) && !self.discard_ok {
            self.confirm = Some(Command::Guided(task));
            return;
        }
        let mut graphs = Vec::new();
        for stem in task.presets() {
            match preset_graph(stem) {
                Some(g) => graphs.push(g),
                None => return self.notify(ctx, format!("no preset named {stem}"), true),
            }
        }
        self.tabs.truncate(1);
        self.active = 0;
        let mut graphs = graphs.into_iter();
        if let Some(a) = graphs.next() {
            self.replace_active(a, None);
        }
        for b in graphs {
            let mut tab = Tab::new(Document::new(b, None));
            tab.canvas.fit_requested = true;
            self.tabs.push(tab);
            self.active = self.tabs.len() - 1;
        }
        match task {
            start_page::GuidedTask::CompareInception => {
                self.show_cost_table = true;
                self.bottom_tab = BottomTab::Costs;
                self.notify(
                    ctx,
                    "A: the 5×5 convolution alone, B: after a 1×1 bottleneck, side by side. The inspector compares them.",
                    false,
                );
            }
            start_page::GuidedTask::TrainResnet => {
                self.training.setup.dataset = None;
                self.show_cost_table = true;
                self.bottom_tab = BottomTab::Training;
                self.notify(
                    ctx,
                    "Press Train to start: the plots fill in as it learns.",
                    false,
                );
            }
        }
    }

    pub fn tab(&self) -> &Tab {
        &self.tabs[self.active]
    }

    fn tab_mut(&mut self) -> &mut Tab {
        &mut self.tabs[self.active]
    }

    pub fn doc(&self) -> &Document {
        &self.tab().doc
    }

    pub fn selection(&self) -> &BTreeSet<NodeId> {
        &self.tab().selection
    }

    pub fn comparing(&self) -> bool {
        self.tabs.len() > 1
    }

    /// Crops the screenshot that answers an export request to the canvas and writes it.
    fn save_pending_png(&mut self, ctx: &egui::Context) {
        let Some((_, rx)) = &self.pending_png else {
            return;
        };
        let Ok(image) = rx.try_recv() else {
            return;
        };
        let Some((path, _)) = self.pending_png.take() else {
            return;
        };
        let rect = self.tab().canvas.screen_rect;
        let ppp = ctx.pixels_per_point();
        let [w, h] = image.size;
        let x0 = ((rect.min.x * ppp).max(0.0) as usize).min(w);
        let y0 = ((rect.min.y * ppp).max(0.0) as usize).min(h);
        let x1 = ((rect.max.x * ppp) as usize).clamp(x0, w);
        let y1 = ((rect.max.y * ppp) as usize).clamp(y0, h);
        let mut rgba = Vec::with_capacity((x1 - x0) * (y1 - y0) * 4);
        for y in y0..y1 {
            for p in &image.pixels[y * w + x0..y * w + x1] {
                rgba.extend_from_slice(&p.to_array());
            }
        }
        let result = image::RgbaImage::from_raw((x1 - x0) as u32, (y1 - y0) as u32, rgba)
            .ok_or_else(|| "empty canvas".to_string())
            .and_then(|img| img.save(&path).map_err(|e| e.to_string()));
        match result {
            Ok(()) => self.notify(ctx, format!("Canvas saved to {}", path.display()), false),
            Err(e) => self.notify(ctx, format!("Could not save {}: {e}", path.display()), true),
        }
    }

    /// Draws the whole active design as on the canvas (SVG or PNG by extension).
    fn export_diagram(&self, path: &Path) -> Result<(), String> {
        use crate::render::{Diagram, RenderOptions};
        let doc = self.doc();
        let options = RenderOptions {
            conventions: self.conventions,
            ..Default::default()
        };
        let diagram = Diagram::build(&doc.graph, &doc.analysis, &options);
        let bytes = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("png") => {
                let (image, _) = crate::render::png(&diagram, 1.0).map_err(|e| e.to_string())?;
                let mut bytes = Vec::new();
                image
                    .write_to(
                        &mut std::io::Cursor::new(&mut bytes),
                        image::ImageFormat::Png,
                    )
                    .map_err(|e| e.to_string())?;
                bytes
            }
            _ => crate::render::svg(&diagram).into_bytes(),
        };
        file::write_atomically(path, &bytes).map_err(|e| e.to_string())
    }

    fn notify(&mut self, ctx: &egui::Context, text: impl Into<String>, error: bool) {
        let level = if error {
            NoticeLevel::Error
        } else {
            NoticeLevel::Info
        };
        self.notice_with(ctx, text.into(), level);
    }

    /// A notice of something the app changed on its own (a repair).
    fn warn(&mut self, ctx: &egui::Context, text: impl Into<String>) {
        self.notice_with(ctx, text.into(), NoticeLevel::Warning);
    }

    fn notice_with(&mut self, ctx: &egui::Context, text: String, level: NoticeLevel) {
        let now = ctx.input(|i| i.time);
        let seconds = match level {
            NoticeLevel::Info => 3.0,
            NoticeLevel::Warning | NoticeLevel::Error => 8.0,
        };
        self.notice = Some(Notice {
            text,
            level,
            until: now + seconds,
        });
    }

    /// A tab other than the active one with unsaved edits (what Close
    /// compare would drop).
    fn unsaved_other_tab(&self) -> Option<usize> {
        (0..self.tabs.len()).find(|&i| i != self.active && self.tabs[i].doc.dirty)
    }

    /// The tab whose unsaved edits `cmd` would lose: for Close compare an
    /// unsaved other tab, else the active one.
    fn tab_at_stake(&self, cmd: &Command) -> usize {
        match cmd {
            Command::CloseCompare => self.unsaved_other_tab().unwrap_or(self.active),
            _ => self.active,
        }
    }

    /// Whether `cmd` may replace the active design now; if not, asks first.
    fn guard_replace(&mut self, cmd: &Command) -> bool {
        if self.doc().dirty && !self.discard_ok {
            self.confirm = Some(cmd.clone());
            return false;
        }
        true
    }

    fn replace_active(&mut self, mut graph: Graph, path: Option<PathBuf>) {
        // Designs without positions (all at one point) get laid out.
        let positions: Vec<[f32; 2]> = graph.nodes().map(|(_, n)| n.position).collect();
        if positions.len() > 1 && positions.iter().all(|p| *p == positions[0]) {
            crate::graph::layout::auto_layout(&mut graph);
        }
        *self.tab_mut() = Tab::new(Document::new(graph, path));
    }

    fn prune_selection(&mut self) {
        let tab = self.tab_mut();
        let graph = &tab.doc.graph;
        tab.selection.retain(|id| graph.node(*id).is_some());
    }

    /// Applies one command. The only place where app state changes: each
    /// family of commands has its handler below.
    pub fn execute(&mut self, ctx: &egui::Context, cmd: Command) {
        if cmd.is_training() {
            return self.execute_training(ctx, cmd);
        }
        if cmd.is_edit() {
            return self.apply_design_edit(ctx, &cmd);
        }
        match cmd {
            Command::Undo | Command::Redo => self.step_history(ctx, &cmd),
            Command::Select(_)
            | Command::SelectAll
            | Command::Copy
            | Command::PasteClipboard
            | Command::Duplicate
            | Command::DeleteSelection => self.execute_selection(ctx, cmd),
            Command::FitView
            | Command::FocusNode(_)
            | Command::FocusGroup(_)
            | Command::OpenFind
            | Command::SetConventions(_)
            | Command::ToggleCostTable => self.execute_view(ctx, cmd),
            Command::New
            | Command::Open
            | Command::OpenPath(_)
            | Command::ImportOnnx
            | Command::ImportOnnxPath(_)
            | Command::OpenPreset(_)
            | Command::Recover
            | Command::DiscardRecovery => self.execute_open(ctx, cmd),
            Command::Save | Command::SaveAs | Command::SaveAsPath(_) => self.execute_save(ctx, cmd),
            Command::ExportPng
            | Command::ExportPngTo(_)
            | Command::ExportDiagram
            | Command::ExportDiagramTo(_)
            | Command::ExportOnnx
            | Command::ExportOnnxTo(_)
            | Command::ExportPytorch
            | Command::ExportPytorchTo(_)
            | Command::ExportPytorchProject
            | Command::ExportPytorchProjectTo(_) => self.execute_export(ctx, cmd),
            Command::ShowStartPage => self.start_page = true,
            Command::CloseStartPage => self.start_page = false,
            Command::ShowShortcuts => self.shortcuts_open = true,
            Command::Guided(task) => self.guided(ctx, task),
            Command::Quit => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            Command::PinAsA
            | Command::SwitchTab(_)
            | Command::CloseCompare
            | Command::SwapCompare
            | Command::SelectInCompare(_) => self.execute_compare(ctx, cmd),
            // Edits and training commands are handled above.
            _ => {}
        }
    }

    /// Runs `cmd` with the unsaved edits at stake already given up or not
    /// (`discard`): the user answered "Don't save", or chose the file that
    /// replaces the design. The previous answer holds again afterwards.
    fn execute_discarding(&mut self, ctx: &egui::Context, cmd: Command, discard: bool) {
        let before = std::mem::replace(&mut self.discard_ok, discard);
        self.execute(ctx, cmd);
        self.discard_ok = before;
    }

    /// An edit of the active design, as one undo step; a refused wire is
    /// said where it was drawn, any other refusal in a notice.
    fn apply_design_edit(&mut self, ctx: &egui::Context, cmd: &Command) {
        let tab = self.tab_mut();
        match tab.doc.apply(cmd) {
            Ok(outcome) => {
                if let Some(sel) = outcome.select {
                    tab.selection = sel;
                }
                self.prune_selection();
                for broken in outcome.ungrouped {
                    self.warn(ctx, format!("{broken}. Undo restores it."));
                }
            }
            Err(e) if matches!(cmd, Command::Connect { .. }) => {
                let now = ctx.input(|i| i.time);
                self.tab_mut().canvas.refuse(e.to_string(), now);
            }
            Err(e) => self.notify(ctx, e.to_string(), true),
        }
    }

    /// Undo or Redo on the active design.
    fn step_history(&mut self, ctx: &egui::Context, cmd: &Command) {
        let (stepped, nothing) = match cmd {
            Command::Undo => (self.tab_mut().doc.undo(), "Nothing to undo"),
            _ => (self.tab_mut().doc.redo(), "Nothing to redo"),
        };
        if !stepped {
            self.notify(ctx, nothing, false);
        }
        self.prune_selection();
    }

    /// Selection and the clipboard.
    fn execute_selection(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::Select(sel) => {
                let tab = self.tab_mut();
                tab.doc.break_coalescing();
                tab.selection = sel;
            }
            Command::SelectAll => {
                let tab = self.tab_mut();
                tab.selection = tab.doc.graph.node_ids().collect();
            }
            Command::Copy => {
                let tab = self.tab();
                if tab.selection.is_empty() {
                    return;
                }
                self.clipboard = Fragment::copy(&tab.doc.graph, &tab.selection);
                self.paste_count = 0;
                ctx.copy_text(file::to_json(&self.clipboard.graph));
            }
            Command::PasteClipboard => {
                if self.clipboard.is_empty() {
                    return;
                }
                // Each paste lands a step further from the original.
                self.paste_count += 1;
                let d = 40.0 * self.paste_count as f32;
                let fragment = self.clipboard.clone();
                self.execute(
                    ctx,
                    Command::Paste {
                        fragment,
                        offset: [d, d],
                    },
                );
            }
            Command::Duplicate => {
                let tab = self.tab();
                if tab.selection.is_empty() {
                    return;
                }
                let fragment = Fragment::copy(&tab.doc.graph, &tab.selection);
                self.execute(
                    ctx,
                    Command::Paste {
                        fragment,
                        offset: [30.0, 30.0],
                    },
                );
            }
            Command::DeleteSelection => {
                let sel = self.selection().clone();
                if !sel.is_empty() {
                    self.execute(ctx, Command::Delete(sel));
                }
            }
            _ => {}
        }
    }

    /// The view: fit, focus a layer or group, find, cost conventions, the
    /// bottom panel.
    fn execute_view(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::FitView => self.tab_mut().canvas.fit_requested = true,
            Command::FocusNode(id) => self.focus_node(id),
            Command::FocusGroup(g) => self.focus_group(ctx, g),
            Command::OpenFind => self.tab_mut().canvas.find.open(),
            Command::SetConventions(c) => self.conventions = c,
            Command::ToggleCostTable => self.show_cost_table = !self.show_cost_table,
            _ => {}
        }
    }

    /// Selects layer `id` and brings it into view (inside a collapsed group:
    /// the group's card).
    fn focus_node(&mut self, id: NodeId) {
        let tab = self.tab_mut();
        let graph = &tab.doc.graph;
        if let Some(n) = graph.node(id) {
            let at = graph
                .nesting()
                .drawn_in(id)
                .map_or(n.position, |g| graph.groups()[g].position);
            let rect = egui::Rect::from_min_size(at.into(), canvas::NODE_SIZE);
            tab.canvas.focus(rect);
            tab.selection = BTreeSet::from([id]);
        }
    }

    /// Commands that replace the active design (new, open, import, a
    /// preset, recovered work), each asking first about unsaved edits.
    fn execute_open(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::New if self.guard_replace(&Command::New) => {
                self.replace_active(Graph::new("untitled"), None);
            }
            Command::Open if self.guard_replace(&Command::Open) => {
                let request = PathRequest::new("Open design", PathKind::Open, Command::OpenPath)
                    .filters(DESIGN_FILES)
                    .dir(self.doc_dir().as_deref());
                self.ask_path(ctx, request, true);
            }
            Command::OpenPath(path) if self.guard_replace(&Command::OpenPath(path.clone())) => {
                self.start_loading(ctx, loading::Job::Design, path);
            }
            Command::ImportOnnx if self.guard_replace(&Command::ImportOnnx) => {
                let request =
                    PathRequest::new("Import ONNX", PathKind::Open, Command::ImportOnnxPath)
                        .filters(ONNX_FILES)
                        .dir(self.doc_dir().as_deref());
                self.ask_path(ctx, request, true);
            }
            Command::ImportOnnxPath(path)
                if self.guard_replace(&Command::ImportOnnxPath(path.clone())) =>
            {
                self.start_loading(ctx, loading::Job::Onnx, path);
            }
            Command::OpenPreset(stem) if self.guard_replace(&Command::OpenPreset(stem)) => {
                match preset_graph(stem) {
                    Some(g) => self.replace_active(g, None),
                    None => self.notify(ctx, format!("no preset named {stem}"), true),
                }
            }
            Command::Recover => {
                if let Some(r) = self.recovery.take() {
                    self.replace_active(r.graph, r.original);
                    self.tab_mut().doc.dirty = true;
                    for (graph, path) in r.others {
                        let mut tab = Tab::new(Document::new(graph, path));
                        tab.doc.dirty = true;
                        self.tabs.push(tab);
                    }
                }
            }
            Command::DiscardRecovery => {
                self.recovery = None;
                self.files.clear_recovery();
            }
            _ => {}
        }
    }

    /// Save and Save As; a shipped preset is never overwritten.
    fn execute_save(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::Save => match self.doc().path.clone() {
                Some(path) if is_shipped_preset(&path) => {
                    self.notify(
                        ctx,
                        format!(
                            "{} is a preset shipped with Netloom: save your design under a new name.",
                            path.display()
                        ),
                        false,
                    );
                    self.execute(ctx, Command::SaveAs);
                }
                Some(path) => self.save_to(ctx, path),
                None => self.execute(ctx, Command::SaveAs),
            },
            Command::SaveAs => {
                // A shipped preset's copy goes to the user's folder, under a new name.
                let preset = self.doc().path.as_deref().is_some_and(is_shipped_preset);
                let dir = if preset { None } else { self.doc_dir() };
                let stem = &self.doc().graph.name;
                let name = if preset {
                    format!("{stem}-copy.json")
                } else {
                    format!("{stem}.json")
                };
                let request =
                    PathRequest::new("Save design as", PathKind::Save, Command::SaveAsPath)
                        .filters(DESIGN_FILES)
                        .dir(dir.as_deref())
                        .file_name(name);
                self.ask_path(ctx, request, false);
            }
            Command::SaveAsPath(path) if is_shipped_preset(&path) => {
                self.error_modal = Some(format!(
                    "{} is a preset shipped with Netloom and is not overwritten: choose another name.",
                    path.display()
                ));
            }
            Command::SaveAsPath(path) => self.save_to(ctx, path),
            _ => {}
        }
    }

    /// A save-file request for an export of the active design, named after it.
    fn export_request(
        &self,
        title: &'static str,
        answer: fn(PathBuf) -> Command,
        filters: &'static [(&'static str, &'static [&'static str])],
        extension: &str,
    ) -> PathRequest {
        PathRequest::new(title, PathKind::Save, answer)
            .filters(filters)
            .dir(self.doc_dir().as_deref())
            .file_name(format!("{}.{extension}", self.doc().graph.name))
    }

    /// File › Export: each asks for a path, then writes there.
    fn execute_export(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::ExportPng => {
                let request = self.export_request(
                    "Export canvas as PNG",
                    Command::ExportPngTo,
                    &[("PNG image", &["png"])],
                    "png",
                );
                self.ask_path(ctx, request, false);
            }
            Command::ExportPngTo(path) => self.request_canvas_png(ctx, path),
            Command::ExportDiagram => {
                let request = self.export_request(
                    "Export diagram",
                    Command::ExportDiagramTo,
                    &[("SVG drawing", &["svg"]), ("PNG image", &["png"])],
                    "svg",
                );
                self.ask_path(ctx, request, false);
            }
            Command::ExportDiagramTo(path) => match self.export_diagram(&path) {
                Ok(()) => self.notify(ctx, format!("Diagram saved to {}", path.display()), false),
                Err(e) => self.notify(ctx, format!("Could not save {}: {e}", path.display()), true),
            },
            Command::ExportOnnx => {
                let request =
                    self.export_request("Export ONNX", Command::ExportOnnxTo, ONNX_FILES, "onnx");
                self.ask_path(ctx, request, false);
            }
            Command::ExportOnnxTo(path) => self.export_to(ctx, export::ExportKind::Onnx, &path),
            Command::ExportPytorch => {
                let request = self.export_request(
                    "Export PyTorch code",
                    Command::ExportPytorchTo,
                    &[("Python", &["py"])],
                    "py",
                );
                self.ask_path(ctx, request, false);
            }
            Command::ExportPytorchTo(path) => {
                self.export_to(ctx, export::ExportKind::PytorchCode, &path)
            }
            Command::ExportPytorchProject => {
                let request = PathRequest::new(
                    "Export PyTorch project (a folder)",
                    PathKind::Folder,
                    Command::ExportPytorchProjectTo,
                )
                .dir(self.doc_dir().as_deref());
                self.ask_path(ctx, request, false);
            }
            Command::ExportPytorchProjectTo(path) => {
                self.export_to(ctx, export::ExportKind::PytorchProject, &path)
            }
            _ => {}
        }
    }

    /// Asks for a screenshot of the next frame; [`Self::save_pending_png`]
    /// crops it to the canvas and writes `path`.
    fn request_canvas_png(&mut self, ctx: &egui::Context, path: PathBuf) {
        let (tx, rx) = std::sync::mpsc::channel();
        let repaint = ctx.clone();
        let callback = egui::ScreenshotCallback::new(move |image| {
            let _ = tx.send(image);
            repaint.request_repaint();
        });
        self.pending_png = Some((path, rx));
        ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(callback));
    }

    /// Compare: pin the design as A, switch between A and B, swap them,
    /// select a row's layers on both, close.
    fn execute_compare(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::PinAsA if !self.comparing() => {
                let a = self.doc();
                let mut b = Graph::clone(&a.graph);
                b.name = format!("{} (B)", a.graph.name);
                self.tabs.push(Tab::new(Document::new(b, None)));
                self.active = 1;
                self.notify(
                    ctx,
                    "Pinned as A. Edit B, or open another design into B.",
                    false,
                );
            }
            Command::SwitchTab(i) if i < self.tabs.len() => self.active = i,
            Command::CloseCompare if self.tabs.len() > 1 => {
                // The tabs closed here may hold unsaved edits: ask first.
                if self.unsaved_other_tab().is_some() && !self.discard_ok {
                    self.confirm = Some(Command::CloseCompare);
                    return;
                }
                let keep = self.tabs.swap_remove(self.active);
                self.tabs = vec![keep];
                self.active = 0;
            }
            Command::SwapCompare if self.tabs.len() == 2 => {
                // The design being edited stays the one being edited.
                self.tabs.swap(0, 1);
                self.active = 1 - self.active;
                for tab in &mut self.tabs {
                    tab.canvas.fit_requested = true;
                }
            }
            Command::SelectInCompare(names) => {
                for tab in &mut self.tabs {
                    let graph = &tab.doc.graph;
                    let ids: BTreeSet<NodeId> =
                        names.iter().filter_map(|n| graph.find(n)).collect();
                    let rects: Vec<egui::Rect> = ids
                        .iter()
                        .filter_map(|&id| {
                            let n = graph.node(id)?;
                            let at = graph
                                .nesting()
                                .drawn_in(id)
                                .map_or(n.position, |g| graph.groups()[g].position);
                            Some(egui::Rect::from_min_size(at.into(), canvas::NODE_SIZE))
                        })
                        .collect();
                    if let Some(r) = rects.into_iter().reduce(egui::Rect::union) {
                        tab.canvas.focus(r);
                    }
                    tab.doc.break_coalescing();
                    tab.selection = ids;
                }
            }
            _ => {}
        }
    }

    /// Applies the commands of the training panels; a refusal is said in a notice.
    fn execute_training(&mut self, ctx: &egui::Context, cmd: Command) {
        let result = match cmd {
            Command::SetBottomTab(_)
            | Command::SetRunSetup(_)
            | Command::ChooseDataset { .. }
            | Command::UseDataset(_)
            | Command::UseLearningRate(_) => {
                self.set_up_training(ctx, cmd);
                Ok(())
            }
            Command::TrainStart
            | Command::TrainBoth
            | Command::TrainPause
            | Command::TrainResume
            | Command::TrainStep
            | Command::TrainStop
            | Command::ResetWeights => self.control_training(ctx, cmd),
            Command::OpenSweepDialog
            | Command::OpenSweepOn { .. }
            | Command::StartSweep(_)
            | Command::FindLearningRate => self.run_experiment(cmd),
            Command::SaveWeights
            | Command::SaveWeightsTo(_)
            | Command::LoadWeights
            | Command::LoadWeightsFrom(_)
            | Command::ExportMetrics
            | Command::ExportMetricsTo(_)
            | Command::ExportSweepCsv
            | Command::ExportSweepCsvTo(_) => self.training_files(ctx, cmd),
            Command::Evaluate(request) => self.training.evaluate(request, ctx),
            _ => self.training_views_command(cmd),
        };
        if let Err(e) = result {
            self.notify(ctx, e.to_string(), true);
        }
    }

    /// The run setup and the bottom panel's tab.
    fn set_up_training(&mut self, ctx: &egui::Context, cmd: Command) {
        match cmd {
            Command::SetBottomTab(t) => self.show_bottom_tab(t),
            Command::SetRunSetup(setup) => self.training.setup = *setup,
            Command::ChooseDataset { folder } => {
                let request = if folder {
                    PathRequest::new("Dataset folder", PathKind::Folder, Command::UseDataset)
                } else {
                    PathRequest::new("Dataset file", PathKind::Open, Command::UseDataset)
                        .filters(&[("IDX or CIFAR-10", &["gz", "idx", "ubyte", "bin"])])
                };
                self.ask_path(ctx, request, false);
            }
            Command::UseDataset(path) => self.training.setup.dataset = Some(path),
            Command::UseLearningRate(lr) => {
                self.training.setup.learning_rate = lr;
                self.notify(
                    ctx,
                    format!("The next run trains with learning rate {lr:.1e}."),
                    false,
                );
            }
            _ => {}
        }
    }

    /// Opens the bottom panel on tab `t`.
    fn show_bottom_tab(&mut self, t: BottomTab) {
        self.bottom_tab = t;
        self.show_cost_table = true;
    }

    /// Starting, pausing, stepping and stopping runs.
    fn control_training(
        &mut self,
        ctx: &egui::Context,
        cmd: Command,
    ) -> Result<(), training::SessionError> {
        use crate::train::Command as Trainer;
        match cmd {
            Command::TrainStart => {
                let active = self.active;
                let doc = &self.tabs[active].doc;
                self.training
                    .start(&doc.graph, &doc.analysis, active, doc.generation)?;
                self.show_bottom_tab(BottomTab::Training);
                Ok(())
            }
            Command::TrainBoth => {
                if self.tabs.len() < 2 {
                    return Err(training::SessionError::PairNeedsTwo);
                }
                let [a, b] = [&self.tabs[0], &self.tabs[self.tabs.len() - 1]];
                self.training.train_pair([
                    (&a.doc.graph, 0, a.doc.generation),
                    (&b.doc.graph, 1, b.doc.generation),
                ])?;
                self.show_bottom_tab(BottomTab::Runs);
                Ok(())
            }
            Command::TrainPause => self.training.control(Trainer::Pause),
            Command::TrainResume => self.training.control(Trainer::Resume),
            Command::TrainStep => self.training.control(Trainer::Step),
            Command::TrainStop => self.training.control(Trainer::Stop),
            Command::ResetWeights => {
                self.training.reset_weights();
                let seed = self.training.setup.seed;
                self.notify(
                    ctx,
                    format!("The next run starts from fresh weights (seed {seed})."),
                    false,
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Sweeps and the learning-rate finder.
    fn run_experiment(&mut self, cmd: Command) -> Result<(), training::SessionError> {
        match cmd {
            Command::OpenSweepDialog => {
                let tab = &self.tabs[self.active];
                let node = (tab.selection.len() == 1)
                    .then(|| tab.selection.first().copied())
                    .flatten();
                self.sweep_dialog.open_for(&tab.doc.graph, node);
                Ok(())
            }
            Command::OpenSweepOn { node, param } => {
                let graph = &self.tabs[self.active].doc.graph;
                self.sweep_dialog.open_on(graph, node, &param);
                Ok(())
            }
            Command::StartSweep(request) => {
                let active = self.active;
                let doc = &self.tabs[active].doc;
                let started =
                    self.training
                        .start_sweep(&doc.graph, &request, active, doc.generation);
                match &started {
                    Ok(()) => self.show_bottom_tab(BottomTab::Sweep),
                    // Said in the dialog, where the user is looking, with the values kept.
                    Err(why) => self.sweep_dialog.refuse(why.to_string()),
                }
                started
            }
            Command::FindLearningRate => {
                let doc = &self.tabs[self.active].doc;
                match training::design_problem(&doc.graph, &doc.analysis) {
                    Some(why) => Err(training::SessionError::Design(why)),
                    None => {
                        let config = self.training.setup.train_config(&doc.graph);
                        self.lr_finder.start(config).map_err(Into::into)
                    }
                }
            }
            _ => Ok(()),
        }
    }

    /// Weights and metrics files: each asks for a path, then reads or writes there.
    fn training_files(
        &mut self,
        ctx: &egui::Context,
        cmd: Command,
    ) -> Result<(), training::SessionError> {
        match cmd {
            Command::SaveWeights => {
                let request = self.export_request(
                    "Save weights",
                    Command::SaveWeightsTo,
                    WEIGHT_FILES,
                    "safetensors",
                );
                self.ask_path(ctx, request, false);
            }
            Command::SaveWeightsTo(path) => {
                self.training.save_weights(&path)?;
                self.notify(ctx, format!("Weights saved to {}", path.display()), false);
            }
            Command::LoadWeights => {
                let request =
                    PathRequest::new("Load weights", PathKind::Open, Command::LoadWeightsFrom)
                        .filters(WEIGHT_FILES)
                        .dir(self.doc_dir().as_deref());
                self.ask_path(ctx, request, false);
            }
            Command::LoadWeightsFrom(path) => {
                self.start_loading(ctx, loading::Job::Weights, path);
            }
            Command::ExportMetrics => {
                let request =
                    PathRequest::new("Export metrics", PathKind::Save, Command::ExportMetricsTo)
                        .filters(CSV_FILES)
                        .file_name("netloom-runs.csv");
                self.ask_path(ctx, request, false);
            }
            Command::ExportMetricsTo(path) => {
                if self.training.runs.is_empty() {
                    return Err(training::SessionError::NoRuns);
                }
                std::fs::write(&path, self.training.metrics_csv()).map_err(|source| {
                    training::SessionError::Write {
                        path: path.clone(),
                        source,
                    }
                })?;
                self.notify(ctx, format!("Metrics saved to {}", path.display()), false);
            }
            Command::ExportSweepCsv => {
                let request = PathRequest::new(
                    "Export sweep table",
                    PathKind::Save,
                    Command::ExportSweepCsvTo,
                )
                .filters(CSV_FILES)
                .file_name("netloom-sweep.csv");
                self.ask_path(ctx, request, false);
            }
            Command::ExportSweepCsvTo(path) => {
                let csv = self.training.sweep_csv()?;
                file::write_atomically(&path, csv.as_bytes()).map_err(|source| {
                    training::SessionError::Write {
                        path: path.clone(),
                        source,
                    }
                })?;
                self.notify(
                    ctx,
                    format!("Sweep table saved to {}", path.display()),
                    false,
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// What the plots, the gallery and the feature-map view show.
    fn training_views_command(&mut self, cmd: Command) -> Result<(), training::SessionError> {
        match cmd {
            Command::HighlightRun(run) => self.training.highlighted = run,
            Command::SetWatch(on) => self.training.set_watch(on),
            Command::ShowRun { run, visible } => {
                if let Some(r) = self.training.runs.iter_mut().find(|r| r.id == run) {
                    r.visible = visible;
                }
            }
            Command::ProbeNode { node, image } => return self.training.probe(node, image),
            Command::ShowGradCam { on, class } => return self.training.show_grad_cam(on, class),
            Command::ShowFeatureMapsOf { image } => {
                self.training.probe.image = image;
                self.bottom_tab = BottomTab::FeatureMaps;
                // The probe goes out from the view with the selected layer.
                self.training.probe.result = None;
            }
            _ => {}
        }
        Ok(())
    }

    /// Expands the collapsed groups around group `g` (outermost first, each
    /// an undoable edit), selects its layers and brings it into view.
    fn focus_group(&mut self, ctx: &egui::Context, g: usize) {
        let graph = &self.doc().graph;
        let Some(group) = graph.groups().get(g) else {
            return;
        };
        let members: BTreeSet<NodeId> = group.members.iter().copied().collect();
        let nesting = graph.nesting();
        let mut closed: Vec<usize> = nesting
            .ancestors(g)
            .filter(|&a| graph.groups()[a].collapsed)
            .collect();
        closed.reverse();
        for a in closed {
            self.execute(
                ctx,
                Command::SetGroupCollapsed {
                    group: a,
                    collapsed: false,
                },
            );
        }
        let tab = self.tab_mut();
        if let Some([min, max]) = crate::graph::layout::drawn_rect(&tab.doc.graph, g) {
            tab.canvas
                .focus(egui::Rect::from_min_max(min.into(), max.into()));
        }
        tab.selection = members;
    }

    fn save_to(&mut self, ctx: &egui::Context, path: PathBuf) {
        match file::save(&self.doc().graph, &path) {
            Ok(()) => {
                self.tab_mut().doc.saved(path.clone());
                self.recent = self.files.push_recent(&path);
                if self.tabs.iter().all(|t| !t.doc.dirty) {
                    self.files.clear_recovery();
                }
                self.notify(ctx, format!("Saved {}", path.display()), false);
            }
            Err(e) => {
                self.error_modal = Some(format!("Could not save {}:\n\n{e}", path.display()));
            }
        }
    }

    /// Keyboard shortcuts, as commands.
    fn shortcuts(&mut self, ctx: &egui::Context) -> Vec<Command> {
        let mut out = Vec::new();
        if self.confirm.is_some() || self.error_modal.is_some() || self.recovery.is_some() {
            return out;
        }
        let typing = ctx.egui_wants_keyboard_input();
        ctx.input_mut(|i| {
            // Copy and Paste also arrive as events (winit turns Ctrl+C/V
            // into them; tests send keys): either way, one command each.
            let (mut copy, mut paste) = (false, false);
            for (shortcut, command) in command::shortcut_table() {
                if (typing && !command.works_while_typing()) || !i.consume_shortcut(&shortcut) {
                    continue;
                }
                match command {
                    Command::Copy => copy = true,
                    Command::PasteClipboard => paste = true,
                    other => out.push(other.clone()),
                }
            }
            if typing {
                return;
            }
            // Cut is Copy, then Delete: two commands, so not in the table.
            let cut = i.consume_shortcut(&KeyboardShortcut::new(Modifiers::COMMAND, Key::X));
            let mut cut_event = false;
            for e in &i.events {
                match e {
                    egui::Event::Copy => copy = true,
                    egui::Event::Cut => cut_event = true,
                    egui::Event::Paste(_) => paste = true,
                    _ => {}
                }
            }
            if copy || cut || cut_event {
                out.push(Command::Copy);
            }
            if cut || cut_event {
                out.push(Command::DeleteSelection);
            }
            if paste {
                out.push(Command::PasteClipboard);
            }
        });
        out
    }

    fn autosave(&mut self, ctx: &egui::Context) {
        let now = ctx.input(|i| i.time);
        if now - self.last_autosave < AUTOSAVE_EVERY || self.recovery.is_some() {
            return;
        }
        self.last_autosave = now;
        // Every tab with unsaved edits, the active one first.
        let order =
            std::iter::once(self.active).chain((0..self.tabs.len()).filter(|&i| i != self.active));
        let unsaved: Vec<&Document> = order
            .map(|i| &self.tabs[i].doc)
            .filter(|d| d.dirty)
            .collect();
        let generations: Vec<u64> = self.tabs.iter().map(|t| t.doc.generation).collect();
        if !unsaved.is_empty() && self.autosaved_generation.as_ref() != Some(&generations) {
            let designs: Vec<(&Graph, Option<&std::path::Path>)> = unsaved
                .iter()
                .map(|d| (&d.graph, d.path.as_deref()))
                .collect();
            match self.files.autosave_all(&designs) {
                Ok(()) => self.autosaved_generation = Some(generations),
                Err(e) => self.notify(ctx, format!("Autosave failed: {e}"), true),
            }
        }
        ctx.request_repaint_after(std::time::Duration::from_secs_f64(AUTOSAVE_EVERY));
    }

    fn update_title(&mut self, ctx: &egui::Context) {
        let doc = self.doc();
        let title = format!(
            "Netloom · {}{}",
            doc.title(),
            if doc.dirty { " *" } else { "" }
        );
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    fn handle_close_request(&mut self, ctx: &egui::Context) {
        if ctx.input(|i| i.viewport().close_requested()) {
            if self.tabs.iter().any(|t| t.doc.dirty) && !self.allow_close {
                ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
                self.confirm = Some(Command::Quit);
            } else {
                self.files.clear_recovery();
            }
        }
    }

    fn menu_ui(&mut self, ui: &mut Ui) {
        let q = &mut self.queue;
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                for c in [Command::New, Command::Open, Command::ImportOnnx] {
                    command_button_ui(ui, q, c, true);
                }
                ui.menu_button("Export", |ui| {
                    for c in [
                        Command::ExportOnnx,
                        Command::ExportPytorch,
                        Command::ExportPytorchProject,
                        Command::SaveWeights,
                        Command::ExportDiagram,
                        Command::ExportPng,
                    ] {
                        command_button_ui(ui, q, c, true);
                    }
                });
                ui.menu_button("Open recent", |ui| {
                    if self.recent.is_empty() {
                        ui.weak("No recent files");
                    }
                    for p in &self.recent {
                        if ui.button(p.display().to_string()).clicked() {
                            q.push(Command::OpenPath(p.clone()));
                        }
                    }
                });
                ui.menu_button("Presets", |ui| {
                    for p in blocks::presets() {
                        if ui.button(p.stem).on_hover_text(p.description).clicked() {
                            q.push(Command::OpenPreset(p.stem));
                        }
                    }
                });
                ui.separator();
                command_button_ui(ui, q, Command::Save, true);
                command_button_ui(ui, q, Command::SaveAs, true);
                ui.separator();
                command_button_ui(ui, q, Command::Quit, true);
            });
            ui.menu_button("Edit", |ui| {
                let doc = &self.tabs[self.active].doc;
                command_button_ui(ui, q, Command::Undo, doc.can_undo());
                command_button_ui(ui, q, Command::Redo, doc.can_redo());
                ui.separator();
                for c in [
                    Command::Copy,
                    Command::PasteClipboard,
                    Command::Duplicate,
                    Command::DeleteSelection,
                    Command::SelectAll,
                    Command::AutoLayout,
                    Command::GroupNodes(self.tabs[self.active].selection.clone()),
                ] {
                    command_button_ui(ui, q, c, true);
                }
            });
            ui.menu_button("View", |ui| {
                for c in [
                    Command::FitView,
                    Command::OpenFind,
                    Command::ToggleCostTable,
                ] {
                    command_button_ui(ui, q, c, true);
                }
                ui.separator();
                let doc = &self.tabs[self.active].doc;
                let lr = doc.graph.orientation == crate::graph::layout::Orientation::LeftToRight;
                let grouped = !doc.graph.groups().is_empty();
                let to = if lr {
                    crate::graph::layout::Orientation::TopToBottom
                } else {
                    crate::graph::layout::Orientation::LeftToRight
                };
                // Each lays the design out again: fit the view to the new layout.
                for (c, enabled) in [
                    (Command::SetOrientation(to), true),
                    (Command::SetAllGroupsCollapsed(true), grouped),
                    (Command::SetAllGroupsCollapsed(false), grouped),
                ] {
                    let text = c.text().unwrap_or_default();
                    if ui.add_enabled(enabled, egui::Button::new(text)).clicked() {
                        q.push(c);
                        q.push(Command::FitView);
                    }
                }
            });
            ui.menu_button("Run", |ui| {
                for c in [
                    Command::TrainStart,
                    Command::TrainPause,
                    Command::TrainResume,
                    Command::TrainStep,
                    Command::TrainStop,
                    Command::ResetWeights,
                    Command::SaveWeights,
                    Command::LoadWeights,
                    Command::ExportMetrics,
                    Command::OpenSweepDialog,
                    Command::ExportSweepCsv,
                    Command::FindLearningRate,
                ] {
                    command_button_ui(ui, q, c, true);
                }
                ui.separator();
                let text = Command::TrainBoth.text().unwrap_or_default();
                if ui
                    .add_enabled(self.tabs.len() > 1, egui::Button::new(text))
                    .on_hover_text("Train compare designs A and B with the same setup, one after the other")
                    .on_disabled_hover_text(
                        "Train both trains the two designs of a compare: pin a design as A first (Compare › Pin as A)",
                    )
                    .clicked()
                {
                    q.push(Command::TrainBoth);
                }
            });
            ui.menu_button("Help", |ui| {
                for c in [Command::ShowStartPage, Command::ShowShortcuts] {
                    command_button_ui(ui, q, c, true);
                }
            });
            ui.menu_button("Compare", |ui| {
                if ui
                    .add_enabled(
                        self.tabs.len() == 1,
                        egui::Button::new(Command::PinAsA.text().unwrap_or_default()),
                    )
                    .on_hover_text("Keep this design as A and edit a copy, B")
                    .clicked()
                {
                    q.push(Command::PinAsA);
                }
                if ui
                    .add_enabled(
                        self.tabs.len() > 1,
                        egui::Button::new(Command::CloseCompare.text().unwrap_or_default()),
                    )
                    .clicked()
                {
                    q.push(Command::CloseCompare);
                }
                command_button_ui(ui, q, Command::SwapCompare, self.tabs.len() == 2);
            });
        });
    }

    fn toolbar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            if self.tabs.len() > 1 {
                // The titles of A and B head their canvases.
                ui.weak(format!(
                    "Editing {}",
                    if self.active == 0 { "A" } else { "B" }
                ));
                ui.separator();
            } else if ui
                .button("Pin as A")
                .on_hover_text("Compare: keep this design as A and edit a copy, B")
                .clicked()
            {
                self.queue.push(Command::PinAsA);
            }
            let doc = &self.tabs[self.active].doc;
            if ui
                .add_enabled(doc.can_undo(), egui::Button::new("Undo"))
                .clicked()
            {
                self.queue.push(Command::Undo);
            }
            if ui
                .add_enabled(doc.can_redo(), egui::Button::new("Redo"))
                .clicked()
            {
                self.queue.push(Command::Redo);
            }
            if ui.button("Fit view").clicked() {
                self.queue.push(Command::FitView);
            }
            if ui.button("Auto-layout").clicked() {
                self.queue.push(Command::AutoLayout);
            }
            let errors = doc.analysis.errors();
            if !errors.is_empty() {
                let text = egui::RichText::new(format!(
                    "{} layer{} with errors",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ))
                .color(ui.visuals().error_fg_color);
                ui.menu_button(text, |ui| {
                    for (id, err) in &errors {
                        let line = format!("{}: {}", doc.graph.name_of(*id), err.message);
                        if ui.button(line).clicked() {
                            self.queue.push(Command::FocusNode(*id));
                            ui.close();
                        }
                    }
                });
            } else if doc.analysis.design_error.is_none() && !doc.graph.is_empty() {
                ui.weak("Design is valid");
            }
            if self
                .training
                .design_changed_since_run(self.active, doc.generation)
            {
                ui.separator();
                ui.colored_label(
                    egui::Color32::from_rgb(240, 200, 90),
                    "Changed since the run started: the run trains the earlier version; the next run uses this one",
                );
            } else if let Some(run) = self
                .training
                .current()
                .filter(|r| r.tab == self.active && !r.status.is_over())
            {
                ui.separator();
                ui.colored_label(
                    egui::Color32::from_rgb(130, 185, 255),
                    format!("Training {} · {}", run.label(), run.status.label()),
                );
            }
        });
    }

    fn modals_ui(&mut self, ctx: &egui::Context) {
        if let Some(msg) = self.error_modal.clone() {
            let r = egui::Modal::new(egui::Id::unique("error_modal")).show(ctx, |ui| {
                ui.set_max_width(480.0);
                ui.heading("Problem");
                ui.label(msg);
                ui.add_space(8.0);
                ui.button("OK").clicked()
            });
            if r.inner || r.should_close() {
                self.error_modal = None;
            }
            return;
        }
        if let Some(pending) = self.confirm.clone() {
            let stake = self.tab_at_stake(&pending);
            let title = self.tabs[stake].doc.title();
            let r = egui::Modal::new(egui::Id::unique("confirm_modal")).show(ctx, |ui| {
                ui.heading("Unsaved changes");
                ui.label(format!("Save the changes to {title}?"));
                ui.add_space(8.0);
                ui.horizontal(|ui| {
                    if ui.button("Save").clicked() {
                        return Some(1);
                    }
                    if ui.button("Don't save").clicked() {
                        return Some(2);
                    }
                    if ui.button("Cancel").clicked() {
                        return Some(0);
                    }
                    None
                })
                .inner
            });
            let answer = if r.should_close() { Some(0) } else { r.inner };
            match answer {
                Some(1) => {
                    self.confirm = None;
                    // Save the tab at stake (switching to it for the save only).
                    let active = self.active;
                    self.active = stake;
                    self.execute(ctx, Command::Save);
                    let saved = !self.doc().dirty;
                    self.active = active;
                    if saved {
                        if pending == Command::Quit {
                            self.allow_close = self.tabs.iter().all(|t| !t.doc.dirty);
                        }
                        self.execute(ctx, pending);
                    }
                }
                Some(2) => {
                    self.confirm = None;
                    if pending == Command::Quit {
                        self.allow_close = true;
                    }
                    self.execute_discarding(ctx, pending, true);
                }
                Some(_) => self.confirm = None,
                None => {}
            }
            return;
        }
        if let Some(r) = &self.recovery {
            let what = r
                .original
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| r.graph.name.clone());
            let layers = r.graph.len();
            let resp = egui::Modal::new(egui::Id::unique("recovery_modal")).show(ctx, |ui| {
                ui.heading("Recover unsaved work?");
                let more = match r.others.len() {
                    0 => String::new(),
                    1 => ", with 1 more unsaved tab".into(),
                    n => format!(", with {n} more unsaved tabs"),
                };
                ui.label(format!(
                    "Netloom did not close cleanly. An autosaved copy of {what} ({layers} layers{more}) was found."
                ));
                ui.add_space(8.0);
                ui.horizontal(|ui| {
                    if ui.button("Recover").clicked() {
                        return Some(true);
                    }
                    if ui.button("Discard").clicked() {
                        return Some(false);
                    }
                    None
                })
                .inner
            });
            match resp.inner {
                Some(true) => self.queue.push(Command::Recover),
                Some(false) => self.queue.push(Command::DiscardRecovery),
                None => {}
            }
        }
    }

    fn notice_ui(&mut self, ctx: &egui::Context) {
        let now = ctx.input(|i| i.time);
        let Some(n) = &self.notice else { return };
        if now > n.until {
            self.notice = None;
            return;
        }
        ctx.request_repaint_after(std::time::Duration::from_millis(500));
        egui::Area::new(egui::Id::unique("notice"))
            .anchor(egui::Align2::CENTER_BOTTOM, egui::vec2(0.0, -40.0))
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    // A long notice wraps instead of running off the window.
                    ui.set_max_width((ctx.content_rect().width() - 80.0).clamp(200.0, 720.0));
                    let color = match n.level {
                        NoticeLevel::Info => ui.visuals().text_color(),
                        NoticeLevel::Warning => ui.visuals().warn_fg_color,
                        NoticeLevel::Error => ui.visuals().error_fg_color,
                    };
                    ui.add(egui::Label::new(egui::RichText::new(&n.text).color(color)).wrap());
                });
            });
    }

    /// The bottom panel: a tab strip, then the cost table or a training view.
    fn bottom_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            for t in BottomTab::ALL {
                let on = self.show_cost_table && self.bottom_tab == t;
                if ui.selectable_label(on, t.label()).clicked() {
                    self.queue.push(if on {
                        Command::ToggleCostTable
                    } else {
                        Command::SetBottomTab(t)
                    });
                }
            }
            if let Some(run) = self.training.current() {
                ui.separator();
                ui.weak(format!("{} · {}", run.label(), run.status.label()));
            }
        });
        if !self.show_cost_table {
            return;
        }
        // The tab's content gets exactly the space left and the panel
        // reports exactly that space as used: content a little taller than
        // the space it measured (margins, a footer) grew a resizable panel
        // every frame, and content sized from a shrinking space shrank it.
        let body = ui.available_rect_before_wrap();
        let mut content = ui.new_child(
            egui::UiBuilder::new()
                .max_rect(body)
                .layout(egui::Layout::top_down(egui::Align::Min)),
        );
        content.set_clip_rect(body.intersect(ui.clip_rect()));
        self.bottom_tab_ui(&mut content);
        ui.allocate_rect(body, egui::Sense::hover());
    }

    /// The open tab of the bottom panel.
    fn bottom_tab_ui(&mut self, ui: &mut Ui) {
        let tab = &self.tabs[self.active];
        match self.bottom_tab {
            BottomTab::Costs => {
                if let Some(c) = self
                    .cost_table
                    .ui(ui, &tab.doc, &tab.selection, &self.conventions)
                {
                    self.queue.push(c);
                }
            }
            BottomTab::Training => {
                let cmds = training::panel::training_tab_ui(
                    ui,
                    &mut self.training,
                    &tab.doc.graph,
                    &tab.doc.analysis,
                    (self.active, tab.doc.generation),
                );
                self.queue.extend(cmds);
            }
            BottomTab::Runs => {
                let cmds = self.training_views.runs_ui(ui, &self.training);
                self.queue.extend(cmds);
            }
            BottomTab::Predictions => {
                let cmds = self.training_views.gallery_ui(ui, &self.training);
                self.queue.extend(cmds);
            }
            BottomTab::Confusion => self.training_views.confusion_ui(ui, &self.training),
            BottomTab::FeatureMaps => {
                let selected = (tab.selection.len() == 1)
                    .then(|| tab.selection.first())
                    .flatten()
                    .and_then(|&id| tab.doc.graph.node(id))
                    .map(|n| n.name.clone());
                let cmds =
                    self.training_views
                        .feature_maps_ui(ui, &self.training, selected.as_deref());
                self.queue.extend(cmds);
            }
            BottomTab::Sweep => {
                let cmds = training::sweep_view::sweep_ui(ui, &self.training);
                self.queue.extend(cmds);
            }
        }
    }

    /// Takes in the trainer's reports; keeps frames coming while it works.
    fn poll_training(&mut self, ctx: &egui::Context) {
        for (text, error) in self.training.poll() {
            self.notify(ctx, text, error);
        }
        // Four frames a second keep the plots live; input repaints at once
        // anyway. Faster periodic repaints cost a software-rendered desktop
        // most of the CPU training needs (10 Hz: 42 images/s, 4 Hz: 220).
        if self.training.is_active()
            || self.training.probe.pending
            || self.training.cam.pending
            || self.training.step_timer.is_measuring()
        {
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    /// What differs between A and B while comparing (computed again only
    /// after either design changed).
    pub fn compare_diff(&mut self) -> Option<Arc<compare::diff::Diff>> {
        let [a, b] = self.tabs.as_slice() else {
            self.compare_cache = compare::DiffCache::default();
            return None;
        };
        Some(self.compare_cache.get(&a.doc, &b.doc, &self.conventions))
    }

    /// The canvas of tab `i`, its layers marked by `marks`; what the user
    /// does on a canvas other than the active one makes it active first.
    fn canvas_ui(
        &mut self,
        ui: &mut Ui,
        i: usize,
        marks: Option<&std::collections::HashMap<NodeId, compare::diff::Change>>,
    ) {
        let tab = &mut self.tabs[i];
        let input = CanvasInput {
            graph: &tab.doc.graph,
            analysis: &tab.doc.analysis,
            selection: &tab.selection,
            conventions: self.conventions,
            live: self
                .training
                .current()
                .filter(|r| r.tab == i)
                .map(|_| &self.training.live),
            generation: tab.doc.generation,
            id: egui::Id::unique(("netloom_canvas", i)),
            marks,
        };
        let cmds = tab.canvas.ui(ui, &input);
        if !cmds.is_empty() && i != self.active {
            self.queue.push(Command::SwitchTab(i));
        }
        self.queue.extend(cmds);
    }

    /// Compare: A and B side by side, each under its title and totals, the
    /// layers that differ highlighted on both.
    fn compare_canvases_ui(&mut self, ui: &mut Ui, diff: &compare::diff::Diff) {
        let full = ui.available_rect_before_wrap();
        let gap = 6.0;
        let half = ((full.width() - gap) / 2.0).max(0.0);
        for i in 0..2 {
            let rect = egui::Rect::from_min_size(
                full.min + egui::vec2(i as f32 * (half + gap), 0.0),
                egui::vec2(half, full.height()),
            );
            // Each column its own id: egui::Scene names its paint layer after
            // the parent's scope, so two canvases must not share one.
            let mut column = ui.new_child(
                egui::UiBuilder::new()
                    .id_salt(("netloom_compare_column", i))
                    .max_rect(rect)
                    .layout(egui::Layout::top_down(egui::Align::Min)),
            );
            column.set_clip_rect(rect.intersect(ui.clip_rect()));
            let doc = &self.tabs[i].doc;
            let title = format!(
                "{}: {}{}",
                if i == 0 { "A" } else { "B" },
                doc.title(),
                if doc.dirty { " *" } else { "" }
            );
            let macs = self
                .conventions
                .ops(doc.analysis.totals(&self.conventions).macs);
            let figures = format!(
                "{} {} · {} layers",
                crate::infer::compact(macs),
                self.conventions.ops_unit(),
                doc.graph.len()
            );
            let active = self.active == i;
            column.horizontal(|ui| {
                if ui.selectable_label(active, title).clicked() {
                    self.queue.push(Command::SwitchTab(i));
                }
                ui.weak(figures);
            });
            let marks = if i == 0 { &diff.marks_a } else { &diff.marks_b };
            self.canvas_ui(&mut column, i, Some(marks));
        }
        if full.is_positive() {
            let x = full.min.x + half + gap / 2.0;
            ui.painter().vline(
                x,
                full.y_range(),
                ui.visuals().widgets.noninteractive.bg_stroke,
            );
        }
        ui.allocate_rect(full, egui::Sense::hover());
    }

    /// The whole UI for one frame (eframe and the UI tests both call this).
    pub fn ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        self.poll_training(&ctx);
        self.handle_close_request(&ctx);
        self.save_pending_png(&ctx);
        for c in self.shortcuts(&ctx) {
            self.execute(&ctx, c);
        }

        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        self.lr_finder.poll();
        if self.lr_finder.is_running() {
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
        if self.lr_finder.open
            && let Some(c) = self.lr_finder.ui(&ctx)
        {
            self.queue.push(c);
        }
        if self.sweep_dialog.open {
            let tab = &self.tabs[self.active];
            let node = (tab.selection.len() == 1)
                .then(|| tab.selection.first().copied())
                .flatten();
            if let Some(c) = self.sweep_dialog.ui(&ctx, &tab.doc.graph, node) {
                self.queue.push(c);
            }
        }

        egui::Panel::left("palette")
            .resizable(true)
            .default_size(190.0)
            .show(ui, |ui| {
                ui.heading("Palette");
                let center = self.tab().canvas.view_center();
                if let Some(c) = self.palette.ui(ui, [center.x, center.y]) {
                    self.queue.push(c);
                }
            });

        let diff = self.compare_diff();
        // The inspector never takes more than a third of the window: its
        // content scrolls instead of pushing the canvas and the cost table
        // out of view.
        let max_inspector = (ui.available_width() / 3.0).max(260.0);
        egui::Panel::right("inspector")
            .resizable(true)
            .default_size(330.0)
            .max_size(max_inspector)
            .show(ui, |ui| {
                egui::ScrollArea::both().show(ui, |ui| {
                    ui.heading("Inspector");
                    let tab = &self.tabs[self.active];
                    let memory = training::panel::memory_estimate_text(
                        &tab.doc.graph,
                        &tab.doc.analysis,
                        &self.training.setup,
                    );
                    let cmds =
                        self.inspector
                            .ui(ui, &tab.doc, &tab.selection, &self.conventions, &memory);
                    self.queue.extend(cmds);
                    if let Some(diff) = &diff {
                        ui.separator();
                        ui.heading("Compare");
                        if let Some(c) = compare::compare_ui(
                            ui,
                            &self.tabs[0].doc,
                            &self.tabs[1].doc,
                            diff,
                            &self.conventions,
                        ) {
                            self.queue.push(c);
                        }
                        command_button_ui(ui, &mut self.queue, Command::SwapCompare, true);
                        if let Some(c) = compare::train_both_ui(ui, &self.training) {
                            self.queue.push(c);
                        }
                        if ui.button("Close compare").clicked() {
                            self.queue.push(Command::CloseCompare);
                        }
                    }
                });
            });

        let bottom_height = if self.bottom_tab == BottomTab::Costs {
            220.0
        } else {
            330.0
        };
        let max_bottom = (ui.available_height() * 0.6).max(160.0);
        // The cost table and the training views keep their own heights.
        let bottom_id = if self.bottom_tab == BottomTab::Costs {
            "cost_table"
        } else {
            "training_views"
        };
        egui::Panel::bottom(bottom_id)
            .resizable(self.show_cost_table)
            .default_size(bottom_height)
            .max_size(max_bottom)
            .show(ui, |ui| self.bottom_ui(ui));

        egui::CentralPanel::default().show(ui, |ui| {
            self.toolbar_ui(ui);
            match &diff {
                Some(diff) => self.compare_canvases_ui(ui, diff),
                None => self.canvas_ui(ui, self.active, None),
            }
        });

        let cmds = self.training_views.unsaved_weights_ui(&ctx, &self.training);
        self.queue.extend(cmds);
        if self.start_page {
            let cmds = start_page::start_page_ui(&ctx, &mut self.start_page);
            self.queue.extend(cmds);
        }
        if self.shortcuts_open {
            start_page::shortcuts_ui(&ctx, &mut self.shortcuts_open);
        }
        if let Some(c) = self.dialogs.ui(&ctx) {
            self.run_path_answer(&ctx, c);
        }
        self.poll_loading(&ctx);
        self.modals_ui(&ctx);
        self.notice_ui(&ctx);

        let queued = std::mem::take(&mut self.queue);
        let any = !queued.is_empty();
        for c in queued {
            self.execute(&ctx, c);
        }
        if any {
            ctx.request_repaint();
        }
        self.autosave(&ctx);
        self.update_title(&ctx);
    }
}

impl eframe::App for NetloomApp {
    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        // Seen once is enough: the page stays reachable from Help.
        eframe::set_value(storage, START_PAGE_SEEN, &true);
    }

    fn ui(&mut self, ui: &mut Ui, frame: &mut eframe::Frame) {
        if let Some((stats, quit_after)) = &mut self.frame_stats {
            stats.frame(frame.info().cpu_usage);
            // Measure steady repainting, not the idle redraw rate.
            ui.ctx().request_repaint();
            if quit_after.is_some_and(|q| stats.elapsed_secs() >= q) {
                let training = self.training.summary_json();
                if let Err(e) = stats.write(&training) {
                    eprintln!("could not write frame statistics: {e}");
                }
                *quit_after = None;
                self.allow_close = true;
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            }
        }
        NetloomApp::ui(self, ui);
    }
}

/// The design opened when no file is given.
fn default_design() -> (Graph, Option<PathBuf>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/resnet-mini.json");
    match file::load(&path) {
        Ok(g) => (g, None),
        Err(_) => (blocks::resnet_mini(), None),
    }
}

/// A menu entry for `command`: its label and first shortcut come from the
/// command itself; a click queues it.
fn command_button_ui(ui: &mut Ui, queue: &mut Vec<Command>, command: Command, enabled: bool) {
    let Some(text) = command.text() else {
        return;
    };
    let mut button = egui::Button::new(text);
    if let Some(shortcut) = command.kb_shortcuts().first() {
        button = button.shortcut_text(ui.ctx().format_shortcut(shortcut));
    }
    if ui.add_enabled(enabled, button).clicked() {
        queue.push(command);
    }
}

/// Opens the designer window as `options` say (design, training at once, frame statistics).
pub fn run(options: LaunchOptions) -> Result<(), String> {
    let mut load_error = None;
    let mut repairs = Vec::new();
    let (graph, path) = match options.design.clone() {
        Some(p) => match file::load_with_repairs(&p) {
            Ok(loaded) => {
                repairs = loaded.ungrouped;
                (loaded.graph, Some(p))
            }
            Err(e) => {
                load_error = Some(format!(
                    "Could not open {}:\n\n{e}\n\nShowing the resnet-mini preset instead.",
                    p.display()
                ));
                default_design()
            }
        },
        None => default_design(),
    };
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Netloom")
            .with_app_id("netloom")
            .with_inner_size([1440.0, 880.0])
            .with_min_inner_size([800.0, 500.0]),
        ..Default::default()
    };
    eframe::run_native(
        "Netloom",
        native,
        Box::new(move |cc| {
            let files = AppFiles {
                dir: files::default_data_dir(),
            };
            let opened = path.clone();
            let mut app = NetloomApp::new(graph, path, files);
            if let Some(p) = &opened {
                app.opened_with_repairs(&cc.egui_ctx, p, &repairs);
            }
            let seen = cc
                .storage
                .and_then(|s| eframe::get_value::<bool>(s, START_PAGE_SEEN))
                .unwrap_or(false);
            // First launch without a design to open: the start page.
            app.start_page = !seen && options.design.is_none() && !options.train;
            app.error_modal = load_error;
            if let Some(p) = options.frame_stats {
                app.frame_stats = Some((frame_stats::FrameStats::new(p), options.quit_after));
            }
            if let Some(e) = options.epochs {
                app.training.setup.epochs = e.max(1);
            }
            if options.train {
                app.execute(&cc.egui_ctx, Command::TrainStart);
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| e.to_string())
}
