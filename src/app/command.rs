//! Every user action is a [`Command`]. Menus, keyboard shortcuts, the canvas,
//! the palette and the inspector only *emit* commands; `NetloomApp::execute`
//! applies them in one place. Edits of the design go through
//! [`Document::apply`](super::document::Document::apply), which snapshots the
//! graph for undo.

use crate::graph::blocks::{self, Builder, InceptionFilters};
use crate::graph::group::GroupError;
use crate::graph::{Edge, Graph, GraphError, LayerKind, NodeId, Padding};
use crate::infer::FixIt;
use egui::{Key, KeyboardShortcut, Modifiers};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// A block template of the palette: several wired layers inserted at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockTemplate {
    VggStage,
    ResnetIdentity,
    ResnetConv,
    InceptionNaive,
    InceptionBottleneck,
}

impl BlockTemplate {
    pub const ALL: [BlockTemplate; 5] = [
        BlockTemplate::VggStage,
        BlockTemplate::ResnetIdentity,
        BlockTemplate::ResnetConv,
        BlockTemplate::InceptionNaive,
        BlockTemplate::InceptionBottleneck,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BlockTemplate::VggStage => "VGG stage",
            BlockTemplate::ResnetIdentity => "ResNet identity block",
            BlockTemplate::ResnetConv => "ResNet conv block",
            BlockTemplate::InceptionNaive => "Inception naive",
            BlockTemplate::InceptionBottleneck => "Inception bottleneck",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            BlockTemplate::VggStage => "two 3×3 convs of 64 with ReLU, then a 2×2/2 max pool",
            BlockTemplate::ResnetIdentity => {
                "1×1 · 3×3 · 1×1 bottleneck (64, 64, 256), input added back"
            }
            BlockTemplate::ResnetConv => {
                "bottleneck (128, 128, 512) /2 with a 1×1 projection shortcut"
            }
            BlockTemplate::InceptionNaive => "1×1, 3×3, 5×5 convs and a 3×3 pool, concatenated",
            BlockTemplate::InceptionBottleneck => "GoogLeNet 3a: 1×1 bottlenecks before 3×3/5×5",
        }
    }

    /// The input volume created when the block is dropped on empty canvas.
    fn default_input(self) -> (u32, u32, u32) {
        match self {
            BlockTemplate::VggStage => (224, 224, 3),
            BlockTemplate::ResnetIdentity => (56, 56, 256),
            BlockTemplate::ResnetConv => (56, 56, 256),
            BlockTemplate::InceptionNaive | BlockTemplate::InceptionBottleneck => (28, 28, 192),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            BlockTemplate::VggStage => "vgg_",
            BlockTemplate::ResnetIdentity => "res_id_",
            BlockTemplate::ResnetConv => "res_conv_",
            BlockTemplate::InceptionNaive => "inc_naive_",
            BlockTemplate::InceptionBottleneck => "inc_",
        }
    }
}

/// What the palette can put on the canvas.
#[derive(Clone, Debug, PartialEq)]
pub enum PaletteItem {
    Layer(LayerKind),
    Block(BlockTemplate),
}

/// Nodes, the wires among them and the groups wholly inside them, as
/// copied to the clipboard.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fragment {
    pub graph: Graph,
}

impl Fragment {
    /// The selected nodes of `graph` with the wires between them and every
    /// group all of whose members are selected.
    pub fn copy(graph: &Graph, ids: &BTreeSet<NodeId>) -> Fragment {
        let mut g = Graph::new("clipboard");
        let mut map = std::collections::HashMap::new();
        for &id in ids {
            if let Some(node) = graph.node(id)
                && let Ok(new) = g.add_node(node.name.clone(), node.kind.clone(), node.position)
            {
                if let Some(n) = g.node_mut(new) {
                    n.frozen = node.frozen;
                }
                map.insert(id, new);
            }
        }
        for e in graph.edges() {
            if let (Some(&f), Some(&t)) = (map.get(&e.from), map.get(&e.to)) {
                let _ = g.connect(f, t, e.input);
            }
        }
        copy_groups(graph, &mut g, &map, [0.0, 0.0], |name, _| name.to_string());
        Fragment { graph: g }
    }

    pub fn is_empty(&self) -> bool {
        self.graph.is_empty()
    }
}

/// Every user action.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    // ---- edits of the design (undoable) ----
    /// Add a palette item with its top-left corner at `position` (scene coordinates).
    AddItem {
        item: PaletteItem,
        position: [f32; 2],
    },
    Delete(BTreeSet<NodeId>),
    /// Paste `fragment` shifted by `offset`.
    Paste {
        fragment: Fragment,
        offset: [f32; 2],
    },
    Connect {
        from: NodeId,
        to: NodeId,
        /// `None`: the lowest free input.
        input: Option<usize>,
    },
    Disconnect(Edge),
    MoveNodes {
        ids: BTreeSet<NodeId>,
        delta: [f32; 2],
    },
    SetKind {
        id: NodeId,
        kind: LayerKind,
    },
    Rename {
        id: NodeId,
        name: String,
    },
    SetFrozen {
        id: NodeId,
        frozen: bool,
    },
    ApplyFix(FixIt),
    AutoLayout,
    /// Put a new `kind` layer into a wire (drop on a wire, or its context menu).
    InsertOnWire {
        edge: Edge,
        kind: LayerKind,
        /// Top-left of the new node; `None`: midway along the wire.
        position: Option<[f32; 2]>,
    },
    /// Move the consumer end of `old` to input `input` of `to` (one step).
    Rewire {
        old: Edge,
        to: NodeId,
        input: Option<usize>,
    },
    /// A new `kind` layer between `id` and the producer of its first input.
    InsertBefore {
        id: NodeId,
        kind: LayerKind,
    },
    /// A new `kind` layer between `id` and all its consumers.
    InsertAfter {
        id: NodeId,
        kind: LayerKind,
    },
    /// Change the layer's kind, keeping the parameters that still apply.
    ReplaceKind {
        id: NodeId,
        kind: LayerKind,
    },
    /// Delete a one-input layer and wire its producer to its consumers.
    DeleteAndBridge(NodeId),
    /// Remove every wire into and out of the layer.
    DisconnectAll(NodeId),
    /// Make the layers a named group (a name is made up).
    GroupNodes(BTreeSet<NodeId>),
    /// Dissolve group `0` (an index into `Graph::groups`); its layers stay.
    Ungroup(usize),
    /// Collapse or expand one group where it stands
    /// ([`crate::graph::layout::set_collapsed_in_place`]).
    SetGroupCollapsed {
        group: usize,
        collapsed: bool,
    },
    /// Collapse or expand every group, laying the design out again.
    SetAllGroupsCollapsed(bool),
    /// Lay the design out top to bottom or left to right.
    SetOrientation(crate::graph::layout::Orientation),
    // ---- history ----
    Undo,
    Redo,
    // ---- selection and view ----
    Select(BTreeSet<NodeId>),
    SelectAll,
    Copy,
    /// Paste the app clipboard near the current view.
    PasteClipboard,
    Duplicate,
    DeleteSelection,
    FitView,
    /// Select the layer and bring it into view (find, error list).
    FocusNode(NodeId),
    /// Select the group's layers and bring it into view (find), expanding
    /// any collapsed group it lies in.
    FocusGroup(usize),
    /// Open the find-a-layer bar (Ctrl+F).
    OpenFind,
    SetConventions(crate::infer::Conventions),
    ToggleCostTable,
    // ---- files ----
    New,
    Open,
    OpenPath(PathBuf),
    /// Pick a file and save the canvas there as a PNG.
    ExportPng,
    /// Save the canvas as seen in the next frame to this PNG file.
    ExportPngTo(PathBuf),
    /// Pick a file and draw the whole design there (SVG or PNG).
    ExportDiagram,
    ExportDiagramTo(PathBuf),
    /// Pick an ONNX model and open it as a new, unsaved design.
    ImportOnnx,
    ImportOnnxPath(PathBuf),
    /// Pick a file and export the design as ONNX (with its newest run's weights).
    ExportOnnx,
    ExportOnnxTo(PathBuf),
    /// Pick a file and write the design as a PyTorch module.
    ExportPytorch,
    ExportPytorchTo(PathBuf),
    /// Pick a folder and write a PyTorch training project of the design there.
    ExportPytorchProject,
    ExportPytorchProjectTo(PathBuf),
    OpenPreset(&'static str),
    Save,
    SaveAs,
    /// Save the active design to this file (refused for a shipped preset).
    SaveAsPath(PathBuf),
    // ---- help ----
    ShowStartPage,
    CloseStartPage,
    ShowShortcuts,
    /// Open the presets and panels of a start-page task.
    Guided(super::start_page::GuidedTask),
    Recover,
    DiscardRecovery,
    Quit,
    // ---- compare ----
    /// Pin the active design as A and continue in a copy, B.
    PinAsA,
    SwitchTab(usize),
    CloseCompare,
    /// Exchange A and B (the headline and every delta flip).
    SwapCompare,
    /// Select the layers of these names on both compare canvases and bring
    /// them into view (a row of the compare tables).
    SelectInCompare(Vec<String>),
    // ---- training ----
    /// Show this tab of the bottom panel (opening the panel).
    SetBottomTab(super::BottomTab),
    SetRunSetup(Box<super::training::RunSetup>),
    /// Pick a dataset folder (or file) for the next run.
    ChooseDataset {
        folder: bool,
    },
    /// Train the next run on this dataset folder or file.
    UseDataset(PathBuf),
    /// Start a new run of the active design with the run setup.
    TrainStart,
    TrainPause,
    TrainResume,
    /// Train one batch, then pause.
    TrainStep,
    TrainStop,
    /// The next run starts from the seeded initial weights.
    ResetWeights,
    /// Pick a file and save the newest run's weights there.
    SaveWeights,
    SaveWeightsTo(PathBuf),
    /// Pick a weights file for the next run to start from.
    LoadWeights,
    LoadWeightsFrom(PathBuf),
    /// Pick a file and write every run's per-epoch metrics there as CSV.
    ExportMetrics,
    ExportMetricsTo(PathBuf),
    /// Pick a file and write the newest sweep's table there as CSV.
    ExportSweepCsv,
    ExportSweepCsvTo(PathBuf),
    /// Draw run `0` (its id) highlighted in every plot (`None`: none).
    HighlightRun(Option<usize>),
    /// The Runs tab's evaluations: multi-crop, ensembles, picking, cancel.
    Evaluate(crate::app::training::evaluate::EvalRequest),
    /// Report activation statistics and gradient norms per layer.
    SetWatch(bool),
    /// Overlay run `run` (its id) in the plots.
    ShowRun {
        run: usize,
        visible: bool,
    },
    /// Ask the trainer for `node`'s feature maps on test image `image`.
    ProbeNode {
        node: String,
        image: usize,
    },
    /// Open the feature-map view on test image `image`.
    ShowFeatureMapsOf {
        image: usize,
    },
    /// Overlay Grad-CAM maps on the Predictions gallery (for `class`,
    /// `None`: each image's predicted class), or stop.
    ShowGradCam {
        on: bool,
        class: Option<u32>,
    },
    /// Train compare designs A and B one after another with the same setup.
    TrainBoth,
    /// Open the Sweep dialog on the selected layer's parameters.
    OpenSweepDialog,
    /// Open the Sweep dialog preset to parameter `param` (its design-file name) of `node`.
    OpenSweepOn {
        node: NodeId,
        param: String,
    },
    /// Queue one run per value and train them one after another.
    StartSweep(Box<super::training::sweep::SweepRequest>),
    /// Run the learning-rate range test on a copy of the active design.
    FindLearningRate,
    /// Set the run setup's learning rate (the finder's suggestion).
    UseLearningRate(f32),
}

impl Command {
    /// Whether the command edits the design (and so goes into undo history).
    pub fn is_edit(&self) -> bool {
        matches!(
            self,
            Command::AddItem { .. }
                | Command::Delete(_)
                | Command::Paste { .. }
                | Command::Connect { .. }
                | Command::Disconnect(_)
                | Command::MoveNodes { .. }
                | Command::SetKind { .. }
                | Command::Rename { .. }
                | Command::SetFrozen { .. }
                | Command::ApplyFix(_)
                | Command::AutoLayout
                | Command::InsertOnWire { .. }
                | Command::Rewire { .. }
                | Command::InsertBefore { .. }
                | Command::InsertAfter { .. }
                | Command::ReplaceKind { .. }
                | Command::DeleteAndBridge(_)
                | Command::DisconnectAll(_)
                | Command::GroupNodes(_)
                | Command::Ungroup(_)
                | Command::SetGroupCollapsed { .. }
                | Command::SetAllGroupsCollapsed(_)
                | Command::SetOrientation(_)
        )
    }

    /// Whether the command belongs to the training panels.
    pub fn is_training(&self) -> bool {
        matches!(
            self,
            Command::SetBottomTab(_)
                | Command::SetRunSetup(_)
                | Command::ChooseDataset { .. }
                | Command::UseDataset(_)
                | Command::TrainStart
                | Command::TrainPause
                | Command::TrainResume
                | Command::TrainStep
                | Command::TrainStop
                | Command::ResetWeights
                | Command::SaveWeights
                | Command::SaveWeightsTo(_)
                | Command::LoadWeights
                | Command::LoadWeightsFrom(_)
                | Command::ExportMetrics
                | Command::ExportMetricsTo(_)
                | Command::ExportSweepCsv
                | Command::ExportSweepCsvTo(_)
                | Command::HighlightRun(_)
                | Command::Evaluate(_)
                | Command::SetWatch(_)
                | Command::ShowRun { .. }
                | Command::ProbeNode { .. }
                | Command::ShowFeatureMapsOf { .. }
                | Command::ShowGradCam { .. }
                | Command::TrainBoth
                | Command::OpenSweepDialog
                | Command::OpenSweepOn { .. }
                | Command::StartSweep(_)
                | Command::FindLearningRate
                | Command::UseLearningRate(_)
        )
    }

    /// Consecutive edits with the same key merge into one undo step (typing
    /// a parameter value makes one step, not one per keystroke).
    pub fn coalesce_key(&self) -> Option<(u8, NodeId)> {
        match self {
            Command::SetKind { id, .. } => Some((0, *id)),
            Command::Rename { id, .. } => Some((1, *id)),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Labels and keyboard shortcuts: menus and the shortcut table read them here

const fn ctrl(key: Key) -> KeyboardShortcut {
    KeyboardShortcut::new(Modifiers::COMMAND, key)
}

const fn ctrl_shift(key: Key) -> KeyboardShortcut {
    KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), key)
}

const fn bare(key: Key) -> KeyboardShortcut {
    KeyboardShortcut::new(Modifiers::NONE, key)
}

/// Every command with a keyboard shortcut. The shortcut table is built from
/// this list and each command's [`Command::kb_shortcuts`]. (Ctrl+X is Copy
/// then DeleteSelection, two commands, so the app handles it beside the table.)
pub const SHORTCUT_COMMANDS: &[Command] = &[
    Command::New,
    Command::Open,
    Command::Save,
    Command::SaveAs,
    Command::Undo,
    Command::Redo,
    Command::Copy,
    Command::PasteClipboard,
    Command::Duplicate,
    Command::DeleteSelection,
    Command::SelectAll,
    Command::FitView,
    Command::OpenFind,
    Command::SwapCompare,
];

impl Command {
    /// The label menus show for a command a menu offers (`None` for the
    /// commands only the canvas and panels send, with their data).
    pub fn text(&self) -> Option<&'static str> {
        Some(match self {
            Command::New => "New",
            Command::Open => "Open…",
            Command::ImportOnnx => "Import ONNX…",
            Command::ExportDiagram => "Export diagram (SVG or PNG)…",
            Command::ExportPng => "Export canvas as PNG…",
            Command::ExportOnnx => "ONNX…",
            Command::ExportPytorch => "PyTorch code…",
            Command::ExportPytorchProject => "PyTorch project…",
            Command::ShowStartPage => "Start page",
            Command::ShowShortcuts => "Keyboard shortcuts",
            Command::Save => "Save",
            Command::SaveAs => "Save As…",
            Command::Quit => "Quit",
            Command::Undo => "Undo",
            Command::Redo => "Redo",
            Command::Copy => "Copy",
            Command::PasteClipboard => "Paste",
            Command::Duplicate => "Duplicate",
            Command::DeleteSelection => "Delete",
            Command::SelectAll => "Select all",
            Command::AutoLayout => "Auto-layout",
            Command::FitView => "Fit view",
            Command::OpenFind => "Find layer…",
            Command::ToggleCostTable => "Toggle cost table",
            Command::TrainStart => "Train",
            Command::TrainPause => "Pause",
            Command::TrainResume => "Resume",
            Command::TrainStep => "Step one batch",
            Command::TrainStop => "Stop",
            Command::ResetWeights => "Reset weights",
            Command::SaveWeights => "Save weights…",
            Command::LoadWeights => "Load weights…",
            Command::ExportMetrics => "Export metrics as CSV…",
            Command::ExportSweepCsv => "Export sweep table as CSV…",
            Command::OpenSweepDialog => "Sweep…",
            Command::FindLearningRate => "Find learning rate",
            Command::TrainBoth => "Train both",
            Command::PinAsA => "Pin as A",
            Command::CloseCompare => "Close compare",
            Command::SwapCompare => "Swap A/B",
            Command::GroupNodes(_) => "Group selection",
            Command::Ungroup(_) => "Ungroup",
            Command::SetGroupCollapsed {
                collapsed: true, ..
            } => "Collapse group",
            Command::SetGroupCollapsed { .. } => "Expand group",
            Command::SetAllGroupsCollapsed(true) => "Collapse all groups",
            Command::SetAllGroupsCollapsed(false) => "Expand all groups",
            Command::SetOrientation(crate::graph::layout::Orientation::LeftToRight) => {
                "Lay out left to right"
            }
            Command::SetOrientation(_) => "Lay out top to bottom",
            _ => return None,
        })
    }

    /// The keyboard shortcuts that issue the command; menus show the first.
    pub fn kb_shortcuts(&self) -> &'static [KeyboardShortcut] {
        match self {
            Command::New => const { &[ctrl(Key::N)] },
            Command::Open => const { &[ctrl(Key::O)] },
            Command::Save => const { &[ctrl(Key::S)] },
            Command::SaveAs => const { &[ctrl_shift(Key::S)] },
            Command::Undo => const { &[ctrl(Key::Z)] },
            Command::Redo => const { &[ctrl_shift(Key::Z), ctrl(Key::Y)] },
            Command::Copy => const { &[ctrl(Key::C)] },
            Command::PasteClipboard => const { &[ctrl(Key::V)] },
            Command::Duplicate => const { &[ctrl(Key::D)] },
            Command::DeleteSelection => const { &[bare(Key::Delete), bare(Key::Backspace)] },
            Command::SelectAll => const { &[ctrl(Key::A)] },
            Command::FitView => const { &[bare(Key::F)] },
            Command::OpenFind => const { &[ctrl(Key::F)] },
            Command::SwapCompare => const { &[ctrl_shift(Key::B)] },
            _ => &[],
        }
    }

    /// Whether the shortcut also works while a text field has the keyboard
    /// (the file commands; the others would take the field's keys).
    pub fn works_while_typing(&self) -> bool {
        matches!(
            self,
            Command::New | Command::Open | Command::Save | Command::SaveAs
        )
    }
}

/// The shortcut table: `(shortcut, command)` for every shortcut of
/// [`SHORTCUT_COMMANDS`], the ones with more modifiers first (egui matches
/// Ctrl+S on a Ctrl+Shift+S press, so Save As must be tried before Save).
pub fn shortcut_table() -> Vec<(KeyboardShortcut, &'static Command)> {
    let mut table: Vec<(KeyboardShortcut, &'static Command)> = SHORTCUT_COMMANDS
        .iter()
        .flat_map(|c| c.kb_shortcuts().iter().map(move |s| (*s, c)))
        .collect();
    let modifier_count = |m: Modifiers| {
        [m.alt, m.shift, m.command || m.ctrl]
            .iter()
            .filter(|b| **b)
            .count()
    };
    table.sort_by_key(|(s, _)| std::cmp::Reverse(modifier_count(s.modifiers)));
    table
}

/// What an applied edit did, for the UI to follow up.
#[derive(Debug, Default, PartialEq)]
pub struct EditOutcome {
    /// Select these nodes afterwards.
    pub select: Option<BTreeSet<NodeId>>,
    /// Groups the edit broke (a new path leaves them and comes back), taken
    /// apart so the design stays drawable; one undo step restores them.
    pub ungrouped: Vec<crate::graph::group::Ungrouped>,
}

/// Why an edit was refused (the graph is then unchanged). The message is
/// what the user reads, beside the canvas or in a notice.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EditError {
    /// The design refused the change (names, wires, cycles, groups).
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A parameter out of range ([`LayerKind::validate`]).
    #[error("{0}")]
    Parameter(String),
    #[error("no such wire")]
    NoSuchWire,
    #[error("no such group")]
    NoSuchGroup,
    #[error("cannot change the number of inputs of a layer")]
    ArityChange,
    #[error("only a one-input layer can go into a wire, not {kind}")]
    NotOneInput { kind: String },
    #[error("the fix refers to a layer that no longer exists")]
    FixSourceGone,
    #[error("the wire this fix repairs is gone")]
    FixWireGone,
    /// A command that is not an edit reached [`apply_edit`].
    #[error("{0} is not an edit")]
    NotAnEdit(String),
}

/// Applies an edit to `graph`. On error the graph is unchanged.
pub fn apply_edit(graph: &mut Graph, cmd: &Command) -> Result<EditOutcome, EditError> {
    let mut out = EditOutcome::default();
    match cmd {
        Command::AddItem { item, position } => {
            let ids = add_item(graph, item, *position);
            out.select = Some(ids);
        }
        Command::Delete(ids) => {
            for &id in ids {
                graph.remove_node(id);
            }
            out.select = Some(BTreeSet::new());
        }
        Command::Paste { fragment, offset } => {
            out.select = Some(paste(graph, fragment, *offset));
        }
        Command::Connect { from, to, input } => connect_replacing(graph, *from, *to, *input)?,
        Command::Disconnect(edge) => {
            if !graph.disconnect(*edge) {
                return Err(EditError::NoSuchWire);
            }
        }
        Command::MoveNodes { ids, delta } => graph.move_nodes(ids, *delta),
        Command::SetKind { id, kind } => {
            kind.validate().map_err(EditError::Parameter)?;
            let node = graph.node_mut(*id).ok_or(GraphError::NoSuchNode)?;
            if node.kind.arity() != kind.arity() {
                return Err(EditError::ArityChange);
            }
            node.kind = kind.clone();
        }
        Command::Rename { id, name } => graph.rename(*id, name)?,
        Command::SetFrozen { id, frozen } => {
            let node = graph.node_mut(*id).ok_or(GraphError::NoSuchNode)?;
            node.frozen = *frozen;
        }
        Command::ApplyFix(fix) => {
            out.select = Some(apply_fix(graph, fix)?);
        }
        Command::AutoLayout => crate::graph::layout::auto_layout(graph),
        Command::GroupNodes(ids) => {
            let name = graph.unique_group_name("group");
            graph.add_group(name, ids.iter().copied())?;
        }
        Command::Ungroup(g) => {
            graph.remove_group(*g).ok_or(EditError::NoSuchGroup)?;
        }
        Command::SetGroupCollapsed { group, collapsed } => {
            if !crate::graph::layout::set_collapsed_in_place(graph, *group, *collapsed) {
                return Err(EditError::NoSuchGroup);
            }
        }
        Command::SetAllGroupsCollapsed(collapsed) => {
            for g in 0..graph.groups().len() {
                graph.set_collapsed(g, *collapsed);
            }
            crate::graph::layout::auto_layout(graph);
        }
        Command::SetOrientation(o) => crate::graph::layout::auto_layout_with(graph, *o),
        Command::InsertOnWire {
            edge,
            kind,
            position,
        } => out.select = Some(insert_on_wire(graph, *edge, kind, *position)?),
        Command::Rewire { old, to, input } => {
            if !graph.disconnect(*old) {
                return Err(EditError::NoSuchWire);
            }
            connect_replacing(graph, old.from, *to, *input)?;
        }
        Command::InsertBefore { id, kind } => out.select = Some(insert_before(graph, *id, kind)?),
        Command::InsertAfter { id, kind } => out.select = Some(insert_after(graph, *id, kind)?),
        Command::ReplaceKind { id, kind } => {
            let node = graph.node_mut(*id).ok_or(GraphError::NoSuchNode)?;
            if node.kind.arity() != kind.arity() {
                return Err(EditError::ArityChange);
            }
            node.kind = carry_parameters(&node.kind, kind.clone());
        }
        Command::DeleteAndBridge(id) => {
            delete_and_bridge(graph, *id)?;
            out.select = Some(BTreeSet::new());
        }
        Command::DisconnectAll(id) => {
            let touching: Vec<Edge> = graph
                .edges()
                .iter()
                .filter(|e| e.from == *id || e.to == *id)
                .copied()
                .collect();
            for e in touching {
                graph.disconnect(e);
            }
        }
        other => return Err(EditError::NotAnEdit(format!("{other:?}"))),
    }
    out.ungrouped = graph.ungroup_discontiguous();
    Ok(out)
}

/// Wires `from` into `to`: into `input`, or the lowest free one (a one-input
/// layer's only input). A wire already feeding that input is replaced.
fn connect_replacing(
    graph: &mut Graph,
    from: NodeId,
    to: NodeId,
    input: Option<usize>,
) -> Result<(), EditError> {
    let node = graph.node(to).ok_or(GraphError::NoSuchNode)?;
    let input = match (input, node.kind.arity()) {
        (_, crate::graph::Arity::None) => {
            return Err(GraphError::TakesNoInputs {
                node: node.name.clone(),
            }
            .into());
        }
        (Some(i), _) => i,
        (None, crate::graph::Arity::One) => 0,
        (None, crate::graph::Arity::Many) => graph.next_free_input(to).unwrap_or(0),
    };
    let existing = graph
        .edges()
        .iter()
        .find(|e| e.to == to && e.input == input)
        .copied();
    if let Some(old) = existing {
        if old.from == from {
            return Ok(());
        }
        graph.disconnect(old);
    }
    Ok(graph.connect(from, to, input)?)
}

/// A fresh node of `kind` near `desired`, where it overlaps no other node.
fn add_placed(graph: &mut Graph, kind: &LayerKind, desired: [f32; 2]) -> Result<NodeId, EditError> {
    let name = graph.unique_name(&stem(kind));
    let at = crate::graph::layout::free_position(graph, desired);
    Ok(graph.add_node(name, kind.clone(), at)?)
}

fn one_input(kind: &LayerKind) -> Result<(), EditError> {
    if kind.arity() == crate::graph::Arity::One {
        Ok(())
    } else {
        Err(EditError::NotOneInput {
            kind: kind.display_name().to_string(),
        })
    }
}

fn insert_on_wire(
    graph: &mut Graph,
    edge: Edge,
    kind: &LayerKind,
    position: Option<[f32; 2]>,
) -> Result<BTreeSet<NodeId>, EditError> {
    one_input(kind)?;
    let (Some(a), Some(b)) = (graph.node(edge.from), graph.node(edge.to)) else {
        return Err(GraphError::NoSuchNode.into());
    };
    let desired = position.unwrap_or([
        (a.position[0] + b.position[0]) / 2.0,
        (a.position[1] + b.position[1]) / 2.0,
    ]);
    if !graph.disconnect(edge) {
        return Err(EditError::NoSuchWire);
    }
    let id = add_placed(graph, kind, desired)?;
    graph.connect(edge.from, id, 0)?;
    graph.connect(id, edge.to, edge.input)?;
    Ok(BTreeSet::from([id]))
}

/// One layer step along the canvas's top-to-bottom flow.
fn row_step() -> f32 {
    crate::graph::layout::NODE_SIZE[1] + crate::graph::layout::Orientation::TopToBottom.layer_gap()
}

fn insert_before(
    graph: &mut Graph,
    id: NodeId,
    kind: &LayerKind,
) -> Result<BTreeSet<NodeId>, EditError> {
    one_input(kind)?;
    let node = graph.node(id).ok_or(GraphError::NoSuchNode)?;
    if node.kind.arity() == crate::graph::Arity::None {
        return Err(GraphError::TakesNoInputs {
            node: node.name.clone(),
        }
        .into());
    }
    let desired = [node.position[0], node.position[1] - row_step()];
    let feed = graph
        .edges()
        .iter()
        .find(|e| e.to == id && e.input == 0)
        .copied();
    let new = add_placed(graph, kind, desired)?;
    if let Some(e) = feed {
        graph.disconnect(e);
        graph.connect(e.from, new, 0)?;
    }
    graph.connect(new, id, 0)?;
    Ok(BTreeSet::from([new]))
}

fn insert_after(
    graph: &mut Graph,
    id: NodeId,
    kind: &LayerKind,
) -> Result<BTreeSet<NodeId>, EditError> {
    one_input(kind)?;
    let node = graph.node(id).ok_or(GraphError::NoSuchNode)?;
    let desired = [node.position[0], node.position[1] + row_step()];
    let outs: Vec<Edge> = graph
        .edges()
        .iter()
        .filter(|e| e.from == id)
        .copied()
        .collect();
    let new = add_placed(graph, kind, desired)?;
    for e in outs {
        graph.disconnect(e);
        graph.connect(new, e.to, e.input)?;
    }
    graph.connect(id, new, 0)?;
    Ok(BTreeSet::from([new]))
}

fn delete_and_bridge(graph: &mut Graph, id: NodeId) -> Result<(), EditError> {
    let producer = graph.inputs_of(id).first().copied().flatten();
    let (_, edges) = graph.remove_node(id).ok_or(GraphError::NoSuchNode)?;
    if let Some(p) = producer {
        for e in edges.iter().filter(|e| e.from == id) {
            graph.connect(p, e.to, e.input)?;
        }
    }
    Ok(())
}

/// `new` with the parameters of `old` that mean the same in it (a pool's
/// window, a conv's filters as a dense layer's units and back).
fn carry_parameters(old: &LayerKind, new: LayerKind) -> LayerKind {
    use LayerKind::*;
    match (old, new) {
        (
            MaxPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
            },
            AvgPool2d { .. },
        ) => AvgPool2d {
            kernel: *kernel,
            stride: *stride,
            padding: *padding,
            ceil_mode: *ceil_mode,
            include_padding: false,
        },
        (
            AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                ..
            },
            MaxPool2d { .. },
        ) => MaxPool2d {
            kernel: *kernel,
            stride: *stride,
            padding: *padding,
            ceil_mode: *ceil_mode,
        },
        (Conv2d { filters, bias, .. }, Dense { .. }) => Dense {
            units: *filters,
            bias: *bias,
        },
        (
            Dense { units, bias },
            Conv2d {
                kernel,
                stride,
                padding,
                groups,
                ..
            },
        ) => Conv2d {
            filters: *units,
            kernel,
            stride,
            padding,
            groups,
            bias: *bias,
            dilation: [1, 1],
        },
        (_, new) => new,
    }
}

/// Stem for new node names: the kind's tag (`conv2d`, `add`, ...).
fn stem(kind: &LayerKind) -> String {
    format!("{}_", kind.tag())
}

fn add_item(graph: &mut Graph, item: &PaletteItem, position: [f32; 2]) -> BTreeSet<NodeId> {
    match item {
        PaletteItem::Layer(kind) => match add_placed(graph, kind, position) {
            Ok(id) => BTreeSet::from([id]),
            Err(_) => BTreeSet::new(),
        },
        PaletteItem::Block(block) => add_block(graph, *block, position),
    }
}

/// Inserts a block template fed by a fresh Input node of a fitting shape,
/// laid out top to bottom from `position`.
fn add_block(graph: &mut Graph, block: BlockTemplate, position: [f32; 2]) -> BTreeSet<NodeId> {
    let first_new = graph.id_capacity();
    let (h, w, c) = block.default_input();
    {
        let mut b = Builder::new(graph);
        let input = b.input("input", h, w, c);
        b.prefix = block.prefix().into();
        let mark = b.mark();
        match block {
            BlockTemplate::VggStage => {
                blocks::vgg_stage(&mut b, input, 64, 2);
            }
            BlockTemplate::ResnetIdentity => {
                blocks::resnet_identity_block(&mut b, input, 3, [64, 64, 256]);
            }
            BlockTemplate::ResnetConv => {
                blocks::resnet_conv_block(&mut b, input, 3, [128, 128, 512], 2);
            }
            BlockTemplate::InceptionNaive => {
                blocks::inception_naive(&mut b, input, 64, 128, 32);
            }
            BlockTemplate::InceptionBottleneck => {
                blocks::inception_bottleneck(
                    &mut b,
                    input,
                    InceptionFilters {
                        f1: 64,
                        f3_reduce: 96,
                        f3: 128,
                        f5_reduce: 16,
                        f5: 32,
                        pool_proj: 32,
                    },
                );
            }
        }
        b.group_since(block.prefix().trim_end_matches('_'), mark);
    }
    let new: BTreeSet<NodeId> = graph
        .node_ids()
        .filter(|id| id.index() >= first_new)
        .collect();
    layout_subset(graph, &new, position);
    new
}

/// Lays out `ids` (a freshly inserted sub-graph) by depth, with its top-left at `origin`.
fn layout_subset(graph: &mut Graph, ids: &BTreeSet<NodeId>, origin: [f32; 2]) {
    let sub = Fragment::copy(graph, ids);
    let mut laid = sub.graph.clone();
    crate::graph::layout::auto_layout(&mut laid);
    let min_x = laid
        .nodes()
        .map(|(_, n)| n.position[0])
        .fold(f32::INFINITY, f32::min);
    let min_y = laid
        .nodes()
        .map(|(_, n)| n.position[1])
        .fold(f32::INFINITY, f32::min);
    for (&id, (_, laid_node)) in ids.iter().zip(laid.nodes()) {
        if let Some(n) = graph.node_mut(id) {
            n.position = [
                origin[0] + laid_node.position[0] - min_x,
                origin[1] + laid_node.position[1] - min_y,
            ];
        }
    }
}

fn paste(graph: &mut Graph, fragment: &Fragment, offset: [f32; 2]) -> BTreeSet<NodeId> {
    let mut map = std::collections::HashMap::new();
    let mut new = BTreeSet::new();
    for (old, node) in fragment.graph.nodes() {
        let name = graph.unique_name(&node.name);
        let pos = [node.position[0] + offset[0], node.position[1] + offset[1]];
        if let Ok(id) = graph.add_node(name, node.kind.clone(), pos) {
            if let Some(n) = graph.node_mut(id) {
                n.frozen = node.frozen;
            }
            map.insert(old, id);
            new.insert(id);
        }
    }
    for e in fragment.graph.edges() {
        if let (Some(&f), Some(&t)) = (map.get(&e.from), map.get(&e.to)) {
            let _ = graph.connect(f, t, e.input);
        }
    }
    copy_groups(&fragment.graph, graph, &map, offset, |name, to| {
        to.unique_group_name(name)
    });
    new
}

/// Adds to `to` every group of `from` whose members all map through
/// `map`, named by `name` (given the old name and `to`), keeping its
/// collapsed flag, its box moved by `offset`. A group `to` refuses is left
/// out; its layers stay.
fn copy_groups(
    from: &Graph,
    to: &mut Graph,
    map: &std::collections::HashMap<NodeId, NodeId>,
    offset: [f32; 2],
    name: impl Fn(&str, &Graph) -> String,
) {
    for group in from.groups() {
        let Some(members) = group
            .members
            .iter()
            .map(|m| map.get(m).copied())
            .collect::<Option<Vec<NodeId>>>()
        else {
            continue;
        };
        let new_name = name(&group.name, to);
        if let Ok(g) = to.add_group(new_name, members) {
            to.set_collapsed(g, group.collapsed);
            let [x, y] = group.position;
            to.set_group_position(g, [x + offset[0], y + offset[1]]);
        }
    }
}

/// Applies a fix-it from shape inference; returns the inserted node.
fn apply_fix(graph: &mut Graph, fix: &FixIt) -> Result<BTreeSet<NodeId>, EditError> {
    let (from, kind, stem_name) = match fix {
        FixIt::InsertProjection {
            from,
            stride,
            filters,
            ..
        } => (
            *from,
            LayerKind::Conv2d {
                filters: *filters,
                kernel: [1, 1],
                stride: [*stride, *stride],
                padding: Padding::Valid,
                groups: 1,
                bias: true,
                dilation: [1, 1],
            },
            "proj",
        ),
        FixIt::InsertFlatten { from } => (*from, LayerKind::Flatten, "flatten"),
    };
    let from_node = graph.node(from).ok_or(EditError::FixSourceGone)?;
    let from_pos = from_node.position;
    // The wire the fix goes into: for a projection, the Add's input `input`
    // fed by `from`; for a flatten, every consumer of `from` that is Dense.
    let targets: Vec<Edge> = match fix {
        FixIt::InsertProjection { from, input, .. } => graph
            .edges()
            .iter()
            .filter(|e| e.from == *from && e.input == *input)
            .filter(|e| {
                graph
                    .node(e.to)
                    .is_some_and(|n| matches!(n.kind, LayerKind::Add))
            })
            .copied()
            .collect(),
        FixIt::InsertFlatten { from } => graph
            .edges()
            .iter()
            .filter(|e| e.from == *from)
            .filter(|e| {
                graph
                    .node(e.to)
                    .is_some_and(|n| matches!(n.kind, LayerKind::Dense { .. }))
            })
            .copied()
            .collect(),
    };
    if targets.is_empty() {
        return Err(EditError::FixWireGone);
    }
    let name = graph.unique_name(&format!("{}_{stem_name}", graph.name_of(from)));
    // Beside the main column, in the shortcut's lane, a row below the source.
    let column = crate::graph::layout::NODE_SIZE[0] + crate::graph::layout::NODE_GAP;
    let pos = crate::graph::layout::free_position(
        graph,
        [from_pos[0] + column, from_pos[1] + row_step()],
    );
    let id = graph.add_node(name, kind, pos)?;
    graph.connect(from, id, 0)?;
    for e in targets {
        graph.disconnect(e);
        graph.connect(id, e.to, e.input)?;
    }
    Ok(BTreeSet::from([id]))
}

/// Loads a preset by file stem: the shipped JSON when present, else built in code.
pub fn preset_graph(stem: &str) -> Option<Graph> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(format!("{stem}.json"));
    if let Ok(g) = crate::graph::file::load(&path) {
        return Some(g);
    }
    blocks::presets()
        .into_iter()
        .find(|p| p.stem == stem)
        .map(|p| (p.build)())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::analyze;

    #[test]
    fn no_two_commands_share_a_shortcut() {
        let table = shortcut_table();
        for (i, (a, ca)) in table.iter().enumerate() {
            for (b, cb) in &table[i + 1..] {
                assert!(a != b, "{ca:?} and {cb:?} are both on {a:?}");
            }
        }
        // Every command with a shortcut is in the table, with a menu label.
        for c in SHORTCUT_COMMANDS {
            assert!(!c.kb_shortcuts().is_empty(), "{c:?} has no shortcut");
            assert!(c.text().is_some(), "{c:?} has no label");
        }
    }

    #[test]
    fn the_shortcut_table_tries_save_as_before_save() {
        let table = shortcut_table();
        let at = |c: &Command| {
            table
                .iter()
                .position(|(_, t)| std::mem::discriminant(*t) == std::mem::discriminant(c))
                .expect("in the table")
        };
        assert!(at(&Command::SaveAs) < at(&Command::Save));
        assert!(at(&Command::Redo) < at(&Command::Undo));
    }

    fn conv(filters: u32) -> LayerKind {
        LayerKind::Conv2d {
            filters,
            kernel: [3, 3],
            stride: [1, 1],
            padding: Padding::Same,
            groups: 1,
            bias: true,
            dilation: [1, 1],
        }
    }

    #[test]
    fn blocks_get_an_input_and_are_valid() {
        for block in BlockTemplate::ALL {
            let mut g = Graph::new("t");
            let ids = add_block(&mut g, block, [100.0, 50.0]);
            assert!(ids.len() > 3, "{block:?}");
            let a = analyze(&g);
            assert!(a.is_valid(), "{block:?}: {:?}", a.errors());
            let min_y = g
                .nodes()
                .map(|(_, n)| n.position[1])
                .fold(f32::INFINITY, f32::min);
            assert_eq!(min_y, 50.0);
        }
    }

    #[test]
    fn connect_picks_the_next_free_input_of_add() {
        let mut g = Graph::new("t");
        let a = g.add_node("a", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let b = g.add_node("b", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let add = g.add_node("add", LayerKind::Add, [0.0, 0.0]).unwrap();
        for from in [a, b] {
            apply_edit(
                &mut g,
                &Command::Connect {
                    from,
                    to: add,
                    input: None,
                },
            )
            .unwrap();
        }
        assert_eq!(g.inputs_of(add), vec![Some(a), Some(b)]);
        let err = apply_edit(
            &mut g,
            &Command::Connect {
                from: add,
                to: a,
                input: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }

    #[test]
    fn fix_it_inserts_a_projection_and_clears_the_error() {
        let mut g = blocks::resnet_mini();
        let proj = g.find("block2_proj").unwrap();
        let bn = g.find("block2_proj_bn").unwrap();
        // Remove the projection conv and wire the shortcut around it.
        g.remove_node(proj);
        g.remove_node(bn);
        let from = g.find("block1_out").unwrap();
        let add = g.find("block2_add").unwrap();
        g.connect(from, add, 1).unwrap();
        let a = analyze(&g);
        let err = a.node(add).and_then(|n| n.error.clone()).unwrap();
        let fix = err.fix.expect("a fix-it");
        apply_edit(&mut g, &Command::ApplyFix(fix)).unwrap();
        let a = analyze(&g);
        assert!(a.is_valid(), "{:?}", a.errors());
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let mut g = Graph::new("t");
        let id = g.add_node("c", conv(8), [0.0, 0.0]).unwrap();
        let err = apply_edit(&mut g, &Command::SetKind { id, kind: conv(0) }).unwrap_err();
        assert!(err.to_string().contains("filters"), "{err}");
        assert_eq!(g.node(id).unwrap().kind, conv(8));
    }

    #[test]
    fn paste_renames_and_rewires() {
        let mut g = Graph::new("t");
        let a = g.add_node("a", LayerKind::Relu, [0.0, 0.0]).unwrap();
        let b = g.add_node("b", LayerKind::Relu, [0.0, 0.0]).unwrap();
        g.connect(a, b, 0).unwrap();
        let frag = Fragment::copy(&g, &BTreeSet::from([a, b]));
        let out = apply_edit(
            &mut g,
            &Command::Paste {
                fragment: frag,
                offset: [10.0, 10.0],
            },
        )
        .unwrap();
        assert_eq!(out.select.unwrap().len(), 2);
        assert_eq!(g.len(), 4);
        assert_eq!(g.edges().len(), 2);
        assert!(g.find("a_1").is_some());
    }

    #[test]
    fn paste_carries_nested_groups_wholly_inside_the_selection_renamed() {
        let mut g = crate::graph::blocks::resnet50("r", 64, 10, true);
        let res2 = g.find_group("res2").unwrap();
        let res3a = g.find_group("res3a").unwrap();
        // The whole of res2 and one layer of res3a: only res2's groups go along.
        let mut ids: BTreeSet<NodeId> = g.groups()[res2].members.iter().copied().collect();
        ids.insert(g.groups()[res3a].members[0]);
        g.set_collapsed(g.find_group("res2b").unwrap(), true);
        let frag = Fragment::copy(&g, &ids);
        let names: Vec<&str> = frag
            .graph
            .groups()
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(names, vec!["res2a", "res2b", "res2c", "res2"]);
        let before = g.groups().len();
        let out = apply_edit(
            &mut g,
            &Command::Paste {
                fragment: frag,
                offset: [40.0, 0.0],
            },
        )
        .unwrap();
        assert_eq!(g.groups().len(), before + 4);
        g.check_groups().unwrap();
        let copy = g.find_group("res2_2").unwrap();
        let inner = g.find_group("res2b_2").unwrap();
        assert_eq!(g.nesting().parent[inner], Some(copy));
        assert!(g.groups()[inner].collapsed);
        let pasted = out.select.unwrap();
        assert!(g.groups()[copy].members.iter().all(|m| pasted.contains(m)));
        assert_eq!(g.groups()[copy].members.len() + 1, pasted.len());
    }

    fn chain() -> (Graph, NodeId, NodeId, NodeId) {
        let mut g = Graph::new("t");
        let i = g
            .add_node(
                "input",
                LayerKind::Input {
                    height: 8,
                    width: 8,
                    channels: 3,
                },
                [0.0, 0.0],
            )
            .unwrap();
        let a = g.add_node("a", conv(4), [0.0, 124.0]).unwrap();
        let b = g.add_node("b", LayerKind::Relu, [0.0, 248.0]).unwrap();
        g.connect(i, a, 0).unwrap();
        g.connect(a, b, 0).unwrap();
        (g, i, a, b)
    }

    #[test]
    fn insert_before_and_after_splice_the_chain() {
        let (mut g, i, a, b) = chain();
        let before = apply_edit(
            &mut g,
            &Command::InsertBefore {
                id: a,
                kind: LayerKind::BatchNorm {
                    epsilon: 1e-3,
                    momentum: 0.9,
                },
            },
        )
        .unwrap();
        let bn = *before.select.unwrap().first().unwrap();
        assert_eq!(g.inputs_of(bn), vec![Some(i)]);
        assert_eq!(g.inputs_of(a), vec![Some(bn)]);
        let after = apply_edit(
            &mut g,
            &Command::InsertAfter {
                id: a,
                kind: LayerKind::Dropout { rate: 0.5 },
            },
        )
        .unwrap();
        let d = *after.select.unwrap().first().unwrap();
        assert_eq!(g.inputs_of(d), vec![Some(a)]);
        assert_eq!(g.inputs_of(b), vec![Some(d)]);
        // New nodes never land on top of existing ones.
        let boxes: Vec<[f32; 2]> = g.nodes().map(|(_, n)| n.position).collect();
        for (k, p) in boxes.iter().enumerate() {
            for q in &boxes[k + 1..] {
                let apart = (p[0] - q[0]).abs() >= 188.0 || (p[1] - q[1]).abs() >= 80.0;
                assert!(apart, "{p:?} overlaps {q:?}");
            }
        }
        assert!(analyze(&g).is_valid());
    }

    #[test]
    fn delete_and_bridge_rewires_the_producer() {
        let (mut g, i, a, b) = chain();
        apply_edit(&mut g, &Command::DeleteAndBridge(a)).unwrap();
        assert!(g.node(a).is_none());
        assert_eq!(g.inputs_of(b), vec![Some(i)]);
    }

    #[test]
    fn wire_insertion_rewire_and_replace_kind() {
        let (mut g, i, a, b) = chain();
        let edge = Edge {
            from: a,
            to: b,
            input: 0,
        };
        let out = apply_edit(
            &mut g,
            &Command::InsertOnWire {
                edge,
                kind: LayerKind::Tanh,
                position: None,
            },
        )
        .unwrap();
        let t = *out.select.unwrap().first().unwrap();
        assert_eq!(g.inputs_of(t), vec![Some(a)]);
        assert_eq!(g.inputs_of(b), vec![Some(t)]);
        // Connecting into a wired input replaces its wire.
        apply_edit(
            &mut g,
            &Command::Connect {
                from: i,
                to: b,
                input: None,
            },
        )
        .unwrap();
        assert_eq!(g.inputs_of(b), vec![Some(i)]);
        apply_edit(
            &mut g,
            &Command::Rewire {
                old: Edge {
                    from: i,
                    to: b,
                    input: 0,
                },
                to: t,
                input: Some(0),
            },
        )
        .unwrap();
        // The moved wire left b unfed and replaced t's feed.
        assert_eq!(g.inputs_of(t), vec![Some(i)]);
        assert_eq!(g.inputs_of(b), vec![None]);
        g.connect(t, b, 0).unwrap();
        let pool = LayerKind::MaxPool2d {
            kernel: [3, 3],
            stride: [2, 2],
            padding: Padding::Same,
            ceil_mode: false,
        };
        g.node_mut(b).unwrap().kind = pool;
        apply_edit(
            &mut g,
            &Command::ReplaceKind {
                id: b,
                kind: LayerKind::AvgPool2d {
                    kernel: [2, 2],
                    stride: [2, 2],
                    padding: Padding::Valid,
                    ceil_mode: false,
                    include_padding: false,
                },
            },
        )
        .unwrap();
        assert_eq!(
            g.node(b).unwrap().kind,
            LayerKind::AvgPool2d {
                kernel: [3, 3],
                stride: [2, 2],
                padding: Padding::Same,
                ceil_mode: false,
                include_padding: false,
            }
        );
        // A multi-input layer cannot go into a wire.
        let err = apply_edit(
            &mut g,
            &Command::InsertOnWire {
                edge: Edge {
                    from: t,
                    to: b,
                    input: 0,
                },
                kind: LayerKind::Add,
                position: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("one-input"), "{err}");
    }
}
