//! The design canvas: nodes, ports and wires drawn on an [`egui::Scene`].
//!
//! Two coordinate spaces: *scene* (where `Node::position` lives, what the
//! painter inside the scene draws in) and *screen* (egui's global points).
//! `screen_from_scene` maps the first to the second. The canvas holds no
//! business logic: it turns pointer input into [`Command`]s. Wires follow
//! the routes of [`crate::graph::route`], the same the diagram export draws.
//!
//! A frame is drawn in steps: [`Canvas::layout_pass`] (the design as drawn
//! — collapsed groups as one node — with its boxes, routes and labels,
//! cached until the design changes), then inside the scene
//! [`Canvas::wires_ui`], [`Canvas::group_frames_ui`], [`Canvas::nodes_ui`],
//! [`Canvas::gestures_ui`] and [`Canvas::overlay_ui`].

use super::command::{Command, PaletteItem};
use super::compare::diff::Change;
use super::find::FindBar;
use super::minimap::Minimap;
use crate::graph::group::{self, View};
use crate::graph::layout::{self, Orientation};
use crate::graph::route::{self, Box2, Routes};
use crate::graph::{Arity, Edge, Graph, LayerKind, NodeId};
use crate::infer::{Analysis, Conventions, compact};
use crate::render::{GroupFigures, group_figures};
use crate::train::LayerLive;
use egui::emath::TSTransform;
use egui::epaint::CubicBezierShape;
use egui::{
    Align2, Color32, CornerRadius, FontId, Id, Pos2, Rect, Response, Sense, Stroke, StrokeKind, Ui,
    Vec2, pos2, vec2,
};
use std::collections::{BTreeSet, HashMap};

/// Size of a node in scene units (one home: [`layout::NODE_SIZE`]).
pub const NODE_SIZE: Vec2 = vec2(layout::NODE_SIZE[0], layout::NODE_SIZE[1]);
/// Height of a node showing an error.
const ERROR_NODE_HEIGHT: f32 = 100.0;
const PORT_RADIUS: f32 = 6.0;
/// Zoom range: far enough out to fit 500 layers in a window.
pub const MIN_ZOOM: f32 = 0.004;
pub const MAX_ZOOM: f32 = 2.5;
/// Below this zoom a node is a coloured block (name beside it, MAC-share bar).
pub const DETAIL_ZOOM: f32 = 0.45;
/// Space between an expanded group's frame and its nodes.
const FRAME_MARGIN: f32 = 10.0;

struct MoveDrag {
    ids: BTreeSet<NodeId>,
    start: Pos2,
    current: Pos2,
}

struct WireDrag {
    from: NodeId,
    /// Dragging the end of this existing wire off its input (rewiring).
    rewire: Option<Edge>,
    /// The free end, scene coordinates. Kept in state: a drop may arrive in
    /// the same frame as the pointer leaving.
    end: Pos2,
}

struct Refusal {
    message: String,
    at: Pos2,
    until: f64,
}

/// View state of the canvas.
pub struct Canvas {
    pub scene_rect: Rect,
    /// Fit the view to the design on the next frame.
    pub fit_requested: bool,
    /// The canvas rect the view was last fitted to, until the user pans or
    /// zooms: a fitted view is fitted again when the canvas changes size.
    fitted_to: Option<Rect>,
    /// Scene to screen, as of the last frame.
    pub screen_from_scene: TSTransform,
    /// The screen rect of the canvas, as of the last frame.
    pub screen_rect: Rect,
    moving: Option<MoveDrag>,
    wire: Option<WireDrag>,
    last_wire_end: Option<Pos2>,
    boxing: Option<(Pos2, Pos2)>,
    refusal: Option<Refusal>,
    /// Where a palette item carried over the canvas would land (scene coordinates).
    drop_at: Option<Pos2>,
    /// The wire a carried layer would be inserted into.
    drop_wire: Option<Edge>,
    /// The design as drawn, for the generation and conventions it was made for.
    picture: Option<Picture>,
    /// The wire right-clicked last, for its context menu.
    menu_wire: Option<(Edge, Pos2)>,
    pub find: FindBar,
    minimap: Minimap,
    /// Screen rects of the group labels drawn this frame (names at low
    /// zoom keep off them).
    group_labels: Vec<Rect>,
    /// The base of this canvas's widget ids, as of this frame (two canvases
    /// side by side keep apart).
    id: Id,
    /// The layer the canvas is drawn in: screen-space labels and overlays
    /// are its sublayers, so windows stay above them.
    parent_layer: egui::LayerId,
}

impl Default for Canvas {
    fn default() -> Self {
        Canvas {
            scene_rect: Rect::ZERO,
            fit_requested: true,
            fitted_to: None,
            screen_from_scene: TSTransform::IDENTITY,
            screen_rect: Rect::ZERO,
            moving: None,
            wire: None,
            last_wire_end: None,
            boxing: None,
            refusal: None,
            drop_at: None,
            drop_wire: None,
            picture: None,
            menu_wire: None,
            find: FindBar::default(),
            minimap: Minimap,
            group_labels: Vec::new(),
            id: Id::unique("netloom_canvas"),
            parent_layer: egui::LayerId::background(),
        }
    }
}

/// What the canvas needs to draw one frame.
pub struct CanvasInput<'a> {
    pub graph: &'a Graph,
    pub analysis: &'a Analysis,
    pub selection: &'a BTreeSet<NodeId>,
    pub conventions: Conventions,
    /// Measured per-layer time (and statistics) of the run training this design.
    pub live: Option<&'a HashMap<String, LayerLive>>,
    /// Changes with every edit: routes are recomputed when it does.
    pub generation: u64,
    /// The base of the canvas's widget ids (distinct for each canvas shown).
    pub id: Id,
    /// Compare: how each layer differs from the other design (highlighted).
    pub marks: Option<&'a HashMap<NodeId, Change>>,
}

/// What the canvas draws, computed once per design change: the view (a
/// collapsed group is one node, with id `real_capacity + group`), every
/// view node's box, the routed wires and the text of every node.
struct Picture {
    generation: u64,
    conventions: Conventions,
    view: View,
    orientation: Orientation,
    /// Scene rect of every view node at its stored position (by view id).
    rects: Vec<Option<Rect>>,
    routes: Routes,
    /// The producer of each input of every view node (by view id).
    inputs: Vec<Vec<Option<NodeId>>>,
    /// Accessible name of every view node (by view id).
    labels: Vec<String>,
    /// Share of the design's MACs of every view node (by view id).
    shares: Vec<f32>,
    /// Rolled-up figures of every group (by group index).
    figures: Vec<GroupFigures>,
    /// The view nodes drawn inside every framed group (by group index):
    /// its layers and the cards of collapsed groups inside it.
    contents: Vec<Vec<NodeId>>,
    /// The groups drawn as a frame (expanded, inside no collapsed group),
    /// children before their parents.
    framed: Vec<usize>,
    /// The group holding each group (by group index).
    parent: Vec<Option<usize>>,
    total_macs: u64,
}

fn node_height(analysis: &Analysis, id: NodeId) -> f32 {
    if analysis.node(id).is_some_and(|n| n.error.is_some()) {
        ERROR_NODE_HEIGHT
    } else {
        NODE_SIZE.y
    }
}

fn input_port_pos(rect: Rect, i: usize, n: usize, orientation: Orientation) -> Pos2 {
    route::input_port(&to_box(rect), i, n, orientation).into()
}

fn output_port_pos(rect: Rect, orientation: Orientation) -> Pos2 {
    route::output_port(&to_box(rect), orientation).into()
}

fn to_box(r: Rect) -> Box2 {
    Box2 {
        min: [r.min.x, r.min.y],
        max: [r.max.x, r.max.y],
    }
}

/// Header colour by layer family (shared with the diagram export).
fn kind_color(kind: &LayerKind) -> Color32 {
    let [r, g, b] = crate::render::kind_rgb(kind);
    Color32::from_rgb(r, g, b)
}

/// The accessible name of a node: everything the node shows, in words.
pub fn node_label(graph: &Graph, analysis: &Analysis, id: NodeId, conv: &Conventions) -> String {
    let Some(node) = graph.node(id) else {
        return String::new();
    };
    let mut s = format!("{} · {}", node.name, node.kind.display_name());
    let summary = node.kind.summary();
    if !summary.is_empty() {
        s.push_str(&format!(" {summary}"));
    }
    if let Some(info) = analysis.node(id) {
        if let Some(err) = &info.error {
            s.push_str(&format!(" · error: {}", err.message));
        } else if let Some(out) = info.output_shape {
            s.push_str(&format!(" · out {out}"));
            if info.cost.macs > 0 {
                s.push_str(&format!(
                    " · {} {}",
                    compact(conv.ops(info.cost.macs)),
                    conv.ops_unit()
                ));
            }
        }
    }
    s
}

/// The accessible name of a collapsed group: its name, size, shapes and rolled-up cost.
pub fn group_label(name: &str, f: &GroupFigures, conv: &Conventions) -> String {
    let mut s = format!("{name} · Group of {} layers", f.layers);
    if f.errors > 0 {
        s.push_str(&format!(" · {} with errors", f.errors));
    }
    if let Some(out) = f.output_shape {
        s.push_str(&format!(" · out {out}"));
    }
    s.push_str(&format!(
        " · {} params · {} {}",
        compact(f.params),
        compact(conv.ops(f.macs)),
        conv.ops_unit()
    ));
    s
}

impl Canvas {
    /// Screen position of a scene point.
    pub fn to_screen(&self, p: Pos2) -> Pos2 {
        self.screen_from_scene * p
    }

    fn pointer_in_scene(&self, ui: &Ui) -> Option<Pos2> {
        ui.ctx()
            .pointer_latest_pos()
            .map(|p| self.screen_from_scene.inverse() * p)
    }

    /// Where the primary button went down (scene coordinates): a drag
    /// starts there, not where it was recognised as a drag.
    fn press_in_scene(&self, ui: &Ui) -> Option<Pos2> {
        ui.input(|i| i.pointer.press_origin())
            .map(|p| self.screen_from_scene.inverse() * p)
    }

    /// Shows a refusal (e.g. a cycle) next to where the wire was dropped.
    pub fn refuse(&mut self, message: String, now: f64) {
        let at = self
            .last_wire_end
            .or(self.refusal.as_ref().map(|r| r.at))
            .unwrap_or(self.scene_rect.center());
        self.refusal = Some(Refusal {
            // The UI font has no arrow glyph.
            message: message.replace('→', "->"),
            at,
            until: now + 4.0,
        });
        self.wire = None;
    }

    /// Pans the view so scene point `p` is at its centre.
    pub fn center_on(&mut self, p: Pos2) {
        self.fitted_to = None;
        self.scene_rect = Rect::from_center_size(p, self.scene_rect.size());
    }

    /// The scene point at the centre of the view, where click-added items go.
    pub fn view_center(&self) -> Pos2 {
        self.scene_rect.center()
    }

    /// Shows the whole design: zoomed out as far as it takes (never past 1:1).
    fn fit(&mut self, view: Vec2) {
        let bbox = self.picture.as_ref().map_or(Rect::NOTHING, |p| {
            p.rects
                .iter()
                .flatten()
                .fold(Rect::NOTHING, |b, r| b.union(*r))
        });
        let bbox = if bbox.is_positive() {
            bbox
        } else {
            Rect::from_center_size(Pos2::ZERO, view)
        };
        let bbox = bbox.expand(30.0);
        let zoom = (view.x / bbox.width())
            .min(view.y / bbox.height())
            .clamp(MIN_ZOOM, 1.0);
        self.scene_rect = Rect::from_center_size(bbox.center(), view / zoom);
    }

    /// Current zoom: screen points per scene unit.
    pub fn zoom(&self) -> f32 {
        self.screen_from_scene.scaling
    }

    /// Centres the view on `rect` (scene coordinates), zooming in until its
    /// text is readable, or as far as the whole of `rect` fits if less.
    pub fn focus(&mut self, rect: Rect) {
        self.fitted_to = None;
        let view = self.screen_rect.size();
        let readable = if self.zoom() < 0.8 { 1.0 } else { self.zoom() };
        let fits = (view.x / (rect.width() + 60.0)).min(view.y / (rect.height() + 60.0));
        let zoom = readable.min(fits).max(MIN_ZOOM);
        if view.x > 0.0 && view.y > 0.0 {
            self.scene_rect = Rect::from_center_size(rect.center(), view / zoom);
        } else {
            self.center_on(rect.center());
        }
    }

    /// Draws the canvas and returns the commands the user issued.
    pub fn ui(&mut self, ui: &mut Ui, input: &CanvasInput<'_>) -> Vec<Command> {
        let mut commands = Vec::new();
        let outer = ui.available_rect_before_wrap();
        self.screen_rect = outer;
        self.id = input.id;
        self.parent_layer = ui.layer_id();
        self.layout_pass(input);
        if self.fit_requested || self.fitted_to.is_some_and(|r| r != outer) {
            self.fit(outer.size());
            self.fit_requested = false;
            self.fitted_to = Some(outer);
        }
        let rects = self.frame_rects(input.graph);
        self.track_palette_drop(ui, outer, &rects, &mut commands);

        // Plain scroll (and pinch) zooms about the pointer; dragging with
        // the right or middle button pans.
        let scene = egui::Scene::new()
            .zoom_range(MIN_ZOOM..=MAX_ZOOM)
            .scroll_zooms(true)
            .drag_pan_buttons(egui::DragPanButtons::SECONDARY | egui::DragPanButtons::MIDDLE);
        let mut scene_rect = self.scene_rect;
        let response = scene
            .show(ui, &mut scene_rect, |ui| {
                if let Some(t) = ui.ctx().layer_transform_to_global(ui.layer_id()) {
                    self.screen_from_scene = t;
                }
                self.contents_ui(ui, input, &rects, &mut commands);
            })
            .response;
        if scene_rect != self.scene_rect {
            // The user panned or zoomed: the fit no longer applies.
            self.fitted_to = None;
        }
        self.scene_rect = scene_rect;
        response
            .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "Design canvas"));
        self.background_interaction(ui, &response, input, &rects, &mut commands);
        self.wire_menu(&response, input, &mut commands);
        if self.zoom() < DETAIL_ZOOM {
            self.names_beside_blocks(ui, &rects, outer);
        }
        self.minimap_ui(ui, outer, &rects);
        let area = overlay_area(ui, self.id.with("netloom_find"));
        if let Some(c) = self.find.ui(ui, area, outer, input.graph) {
            commands.push(c);
        }
        commands
    }

    /// Rebuilds the picture when the design (or the cost conventions) changed.
    fn layout_pass(&mut self, input: &CanvasInput<'_>) {
        let fresh = self.picture.as_ref().is_some_and(|p| {
            p.generation == input.generation && p.conventions == input.conventions
        });
        if !fresh {
            self.picture = Some(Picture::build(input));
        }
    }

    /// Scene rect of every view node this frame: the picture's, with moved
    /// nodes (and collapsed groups all of whose layers move) where they are
    /// being dragged, and their wires routed anew.
    fn frame_rects(&mut self, graph: &Graph) -> Vec<Option<Rect>> {
        let Some(picture) = self.picture.as_mut() else {
            return Vec::new();
        };
        let Some(m) = &self.moving else {
            return picture.rects.clone();
        };
        let d = m.current - m.start;
        let moves = |id: NodeId| match picture.view.group(id) {
            Some(g) => graph
                .groups()
                .get(g)
                .is_some_and(|g| g.members.iter().all(|x| m.ids.contains(x))),
            None => m.ids.contains(&id),
        };
        let rects: Vec<Option<Rect>> = picture
            .rects
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.map(|r| {
                    if moves(NodeId(i as u32)) {
                        r.translate(d)
                    } else {
                        r
                    }
                })
            })
            .collect();
        if d != Vec2::ZERO {
            let boxes: Vec<Option<Box2>> = rects.iter().map(|r| r.map(to_box)).collect();
            picture.routes = route::route(&picture.view.graph, &boxes, picture.orientation);
            // The routes no longer match the stored positions.
            picture.generation = u64::MAX;
        }
        rects
    }

    /// The wire between two design nodes passing within `tolerance` scene
    /// units of `p`, nearest first.
    fn wire_at(&self, p: Pos2, tolerance: f32) -> Option<Edge> {
        let picture = self.picture.as_ref()?;
        let real = picture.view.real_capacity;
        let mut best: Option<(f32, Edge)> = None;
        for w in &picture.routes.wires {
            if w.edge.from.index() >= real || w.edge.to.index() >= real {
                continue;
            }
            for s in w.points.windows(2) {
                let d = distance_to_segment(p, s[0].into(), s[1].into());
                if d <= tolerance && best.is_none_or(|(bd, _)| d < bd) {
                    best = Some((d, w.edge));
                }
            }
        }
        best.map(|(_, e)| e)
    }

    fn track_palette_drop(
        &mut self,
        ui: &Ui,
        outer: Rect,
        rects: &[Option<Rect>],
        commands: &mut Vec<Command>,
    ) {
        let ctx = ui.ctx().clone();
        let Some(item) = egui::DragAndDrop::payload::<PaletteItem>(&ctx) else {
            self.drop_at = None;
            self.drop_wire = None;
            return;
        };
        if let Some(p) = ctx.pointer_latest_pos() {
            self.drop_at = outer
                .contains(p)
                .then(|| self.screen_from_scene.inverse() * p);
        }
        // A one-input layer dropped on a wire goes into it.
        let insertable = matches!(&*item, PaletteItem::Layer(k) if k.arity() == Arity::One);
        let over_node = self
            .drop_at
            .is_some_and(|p| rects.iter().flatten().any(|r| r.contains(p)));
        self.drop_wire = self
            .drop_at
            .filter(|_| insertable && !over_node)
            .and_then(|p| self.wire_at(p, 10.0 / self.zoom().max(MIN_ZOOM)));
        if ctx.input(|i| i.pointer.any_released())
            && let Some(at) = self.drop_at.take()
            && let Some(item) = egui::DragAndDrop::take_payload::<PaletteItem>(&ctx)
        {
            let position = [at.x - NODE_SIZE.x / 2.0, at.y - NODE_SIZE.y / 2.0];
            match (self.drop_wire.take(), &*item) {
                (Some(edge), PaletteItem::Layer(kind)) => commands.push(Command::InsertOnWire {
                    edge,
                    kind: kind.clone(),
                    position: Some(position),
                }),
                _ => commands.push(Command::AddItem {
                    item: (*item).clone(),
                    position,
                }),
            }
        }
    }

    /// Right-click on a wire: insert a layer into it, or delete it.
    fn wire_menu(
        &mut self,
        response: &Response,
        input: &CanvasInput<'_>,
        commands: &mut Vec<Command>,
    ) {
        if response.secondary_clicked() {
            self.menu_wire = response
                .interact_pointer_pos()
                .map(|p| self.screen_from_scene.inverse() * p)
                .and_then(|p| {
                    self.wire_at(p, 8.0 / self.zoom().max(MIN_ZOOM))
                        .map(|e| (e, p))
                });
        }
        let Some((edge, at)) = self.menu_wire else {
            return;
        };
        let graph = input.graph;
        response.context_menu(|ui| {
            ui.label(format!(
                "Wire from {} to {}",
                graph.name_of(edge.from),
                graph.name_of(edge.to)
            ));
            ui.menu_button("Insert layer", |ui| {
                for kind in LayerKind::catalogue()
                    .into_iter()
                    .filter(|k| k.arity() == Arity::One)
                {
                    if ui.button(kind.display_name()).clicked() {
                        commands.push(Command::InsertOnWire {
                            edge,
                            kind,
                            position: Some([at.x - NODE_SIZE.x / 2.0, at.y - NODE_SIZE.y / 2.0]),
                        });
                        ui.close();
                    }
                }
            });
            if ui.button("Delete wire").clicked() {
                commands.push(Command::Disconnect(edge));
                ui.close();
            }
        });
    }

    /// A painter in screen space over the canvas (clipped to `clip`) and
    /// under every window: a sublayer of the canvas's layer.
    fn label_painter(&self, ui: &Ui, name: &str, clip: Rect) -> egui::Painter {
        let layer = egui::LayerId::new(self.parent_layer.order, self.id.with(name));
        ui.ctx().set_sublayer(self.parent_layer, layer);
        ui.ctx().layer_painter(layer).with_clip_rect(clip)
    }

    /// At low zoom, names in screen space beside their blocks, skipping any
    /// that would overlap one already drawn.
    fn names_beside_blocks(&self, ui: &Ui, rects: &[Option<Rect>], outer: Rect) {
        let Some(picture) = &self.picture else { return };
        // Above the scene layer, below popups.
        let painter = self.label_painter(ui, "netloom_block_names", outer);
        let font = FontId::proportional(10.5);
        let color = ui.visuals().text_color();
        let on_screen: Vec<(NodeId, Rect)> = rects
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((NodeId(i as u32), (*r)?)))
            .map(|(id, r)| {
                (
                    id,
                    Rect::from_min_max(self.to_screen(r.min), self.to_screen(r.max)),
                )
            })
            .filter(|(_, r)| outer.intersects(r.expand(120.0)))
            .collect();
        // A name goes inside its block, else to its right, else to its left,
        // wherever it covers no other block, no group label and no name
        // already drawn.
        let mut taken: Vec<Rect> = self.group_labels.clone();
        for &(id, screen) in &on_screen {
            let name = picture.view.graph.name_of(id);
            let galley = painter.layout_no_wrap(truncate(name, 24), font.clone(), color);
            let size = galley.size();
            let y = screen.center().y - size.y / 2.0;
            let inside = (screen.width() > size.x + 8.0 && screen.height() > size.y + 2.0)
                .then(|| Rect::from_min_size(screen.center() - size / 2.0, size));
            let right = Rect::from_min_size(pos2(screen.right() + 3.0, y), size);
            let left = Rect::from_min_size(pos2(screen.left() - 3.0 - size.x, y), size);
            let clear = |spot: &Rect| {
                !taken.iter().any(|t| t.intersects(*spot))
                    && !on_screen
                        .iter()
                        .any(|(_, b)| *b != screen && b.intersects(*spot))
            };
            // Left, past a group label in the way.
            let past_label = taken
                .iter()
                .find(|t| t.intersects(left))
                .map(|t| Rect::from_min_size(pos2(t.left() - 3.0 - size.x, y), size));
            let Some(spot) = inside
                .into_iter()
                .chain([right, left])
                .chain(past_label)
                .find(|s| clear(s))
            else {
                continue;
            };
            taken.push(spot);
            painter.galley(spot.min, galley, color);
        }
    }

    fn minimap_ui(&mut self, ui: &Ui, outer: Rect, rects: &[Option<Rect>]) {
        let Some(picture) = &self.picture else { return };
        let boxes: Vec<(Rect, Color32)> = picture
            .view
            .graph
            .nodes()
            .filter_map(|(id, n)| {
                let color = match picture.view.group(id) {
                    Some(_) => group_color(),
                    None => kind_color(&n.kind),
                };
                Some((rects.get(id.index()).copied().flatten()?, color))
            })
            .collect();
        let area = overlay_area(ui, self.id.with("netloom_minimap"));
        if let Some(center) = self.minimap.ui(ui, area, outer, &boxes, self.scene_rect) {
            self.center_on(center);
        }
    }

    fn background_interaction(
        &mut self,
        ui: &Ui,
        response: &Response,
        input: &CanvasInput<'_>,
        rects: &[Option<Rect>],
        commands: &mut Vec<Command>,
    ) {
        let shift = ui.input(|i| i.modifiers.shift);
        if response.drag_started_by(egui::PointerButton::Primary)
            && let Some(p) = self.pointer_in_scene(ui)
        {
            self.boxing = Some((p, p));
        }
        if let Some((_, end)) = &mut self.boxing {
            if let Some(p) = ui
                .ctx()
                .pointer_latest_pos()
                .map(|p| self.screen_from_scene.inverse() * p)
            {
                *end = p;
            }
            if !response.dragged_by(egui::PointerButton::Primary) {
                let (a, b) = self.boxing.take().unwrap_or_default();
                let area = Rect::from_two_pos(a, b);
                let mut sel = BTreeSet::new();
                for (i, r) in rects.iter().enumerate() {
                    if r.is_some_and(|r| area.intersects(r))
                        && let Some(p) = &self.picture
                    {
                        sel.extend(members_of(input.graph, &p.view, NodeId(i as u32)));
                    }
                }
                if shift {
                    sel.extend(input.selection.iter().copied());
                }
                commands.push(Command::Select(sel));
            }
        }
        if response.clicked() && !shift {
            commands.push(Command::Select(BTreeSet::new()));
        }
    }

    /// Everything inside the scene, in drawing order.
    fn contents_ui(
        &mut self,
        ui: &mut Ui,
        input: &CanvasInput<'_>,
        rects: &[Option<Rect>],
        commands: &mut Vec<Command>,
    ) {
        for r in rects.iter().flatten() {
            ui.expand_to_include_rect(*r);
        }
        let visible = ui.clip_rect().expand(20.0);
        let detailed = self.zoom() >= DETAIL_ZOOM;
        let painter = ui.painter().clone();
        let frames = self.frames(rects);
        self.wires_ui(&painter, input, visible, detailed);
        self.group_frames_ui(ui, &frames, visible);
        let pointer = self.pointer_in_scene(ui);
        self.nodes_ui(ui, input, rects, visible, detailed, pointer, commands);
        self.group_labels_ui(ui, input, &frames, pointer, commands);
        self.gestures_ui(ui, input, rects, pointer, commands);
        self.overlay_ui(ui, &painter);
    }

    /// Wires along their routes, under the nodes; shape labels at readable zoom.
    fn wires_ui(
        &self,
        painter: &egui::Painter,
        input: &CanvasInput<'_>,
        visible: Rect,
        detailed: bool,
    ) {
        let Some(picture) = &self.picture else {
            return;
        };
        let visuals = painter.ctx().global_style().visuals.clone();
        let normal = visuals.widgets.noninteractive.fg_stroke.color;
        let width = if detailed {
            1.6
        } else {
            1.6 / self.zoom().max(MIN_ZOOM) * 0.6
        };
        for w in &picture.routes.wires {
            let bounds =
                Rect::from_points(&w.points.iter().map(|p| Pos2::from(*p)).collect::<Vec<_>>());
            if !visible.intersects(bounds.expand(2.0)) {
                continue;
            }
            let bad = input
                .analysis
                .node(w.edge.to)
                .is_some_and(|n| n.error.is_some());
            let hot =
                self.drop_wire == Some(w.edge) || self.menu_wire.is_some_and(|(e, _)| e == w.edge);
            let (color, stroke_width) = if hot {
                (visuals.selection.stroke.color, width * 2.0)
            } else if bad {
                (Color32::from_rgb(220, 80, 80), width)
            } else {
                (normal, width)
            };
            let points: Vec<Pos2> = w.points.iter().map(|p| Pos2::from(*p)).collect();
            painter.add(egui::Shape::line(points, Stroke::new(stroke_width, color)));
        }
        if !detailed {
            return;
        }
        for l in &picture.routes.labels {
            let at = Pos2::from(l.at);
            if !visible.contains(at) {
                continue;
            }
            let Some(shape) = picture
                .view
                .source(l.edge.from)
                .and_then(|s| input.analysis.node(s))
                .and_then(|n| n.output_shape)
            else {
                continue;
            };
            let galley = painter.layout_no_wrap(
                shape.to_string(),
                FontId::monospace(10.0),
                visuals.weak_text_color(),
            );
            let r = Rect::from_center_size(at, galley.size() + vec2(6.0, 2.0));
            painter.rect_filled(r, 3.0, visuals.extreme_bg_color);
            painter.galley(r.min + vec2(3.0, 1.0), galley, Color32::WHITE);
        }
    }

    /// The scene rect of every framed group this frame, parents first: its
    /// drawn nodes and its children's frames, with a margin.
    fn frames(&self, rects: &[Option<Rect>]) -> Vec<(usize, Rect)> {
        let Some(picture) = &self.picture else {
            return Vec::new();
        };
        let mut frame: Vec<Option<Rect>> = vec![None; picture.contents.len()];
        for &g in &picture.framed {
            let nodes = picture.contents[g]
                .iter()
                .filter_map(|id| rects.get(id.index()).copied().flatten());
            let children = picture
                .framed
                .iter()
                .filter(|&&c| picture.parent[c] == Some(g))
                .filter_map(|&c| frame[c]);
            let r = nodes.chain(children).fold(Rect::NOTHING, Rect::union);
            frame[g] = r.is_positive().then(|| r.expand(FRAME_MARGIN));
        }
        picture
            .framed
            .iter()
            .rev()
            .filter_map(|&g| Some((g, frame[g]?)))
            .collect()
    }

    /// A frame around every expanded group, parents under their children;
    /// its outline is 1.5 points wide at every zoom.
    fn group_frames_ui(&self, ui: &Ui, frames: &[(usize, Rect)], visible: Rect) {
        let color = group_color();
        let width = 1.5 / self.zoom().max(MIN_ZOOM);
        for &(_, frame) in frames {
            if !visible.intersects(frame) {
                continue;
            }
            ui.painter().rect(
                frame,
                8.0,
                color.gamma_multiply(0.10),
                Stroke::new(width, color.gamma_multiply(0.9)),
                StrokeKind::Inside,
            );
        }
    }

    /// Every framed group's name in screen space, the same size at every
    /// zoom, outside its frame (to the left of its top when the design
    /// flows down, above its left end when it flows right; a nested group's
    /// label steps past its parent's). Click collapses the group, a drag
    /// moves it, right-click opens its menu.
    fn group_labels_ui(
        &mut self,
        ui: &mut Ui,
        input: &CanvasInput<'_>,
        frames: &[(usize, Rect)],
        pointer: Option<Pos2>,
        commands: &mut Vec<Command>,
    ) {
        let outer = self.screen_rect;
        let painter = self.label_painter(ui, "netloom_group_labels", outer);
        let font = FontId::proportional(12.0);
        let text_color = Color32::WHITE;
        let down = input.graph.orientation == Orientation::TopToBottom;
        let t = self.screen_from_scene;
        let mut taken: Vec<Rect> = Vec::new();
        for &(g, frame) in frames {
            let Some(group) = input.graph.groups().get(g) else {
                continue;
            };
            let screen = Rect::from_min_max(t * frame.min, t * frame.max);
            if !outer.intersects(screen.expand(300.0)) {
                continue;
            }
            let galley =
                painter.layout_no_wrap(format!("[-] {}", group.name), font.clone(), text_color);
            let size = galley.size() + vec2(10.0, 4.0);
            let mut spot = if down {
                Rect::from_min_size(pos2(screen.left() - 4.0 - size.x, screen.top()), size)
            } else {
                Rect::from_min_size(pos2(screen.left(), screen.top() - 4.0 - size.y), size)
            };
            // Past the labels of the groups around it, within its own
            // frame's extent along the flow; none if it does not fit there.
            let step = vec2(0.0, if down { size.y + 2.0 } else { -size.y - 2.0 });
            let mut tries = 0;
            while taken.iter().any(|r| r.intersects(spot)) && tries < 4 {
                spot = spot.translate(step);
                tries += 1;
            }
            let fits = !taken.iter().any(|r| r.intersects(spot))
                && (!down || spot.bottom() <= screen.bottom());
            if !fits {
                continue;
            }
            taken.push(spot);
            let scene_spot = Rect::from_min_max(t.inverse() * spot.min, t.inverse() * spot.max);
            let resp = ui
                .interact(
                    scene_spot,
                    self.id.with(("netloom_group_tab", g)),
                    Sense::click_and_drag(),
                )
                .on_hover_text(
                    "Click to collapse the group, drag to move it (right-click for more)",
                );
            let label = format!("Collapse {}", group.name);
            resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
            let fill = if resp.hovered() {
                group_color()
            } else {
                group_color().gamma_multiply(0.85)
            };
            painter.rect_filled(spot, 4.0, fill);
            painter.galley(spot.min + vec2(5.0, 2.0), galley, text_color);
            if resp.clicked() {
                commands.push(Command::SetGroupCollapsed {
                    group: g,
                    collapsed: true,
                });
            }
            if resp.drag_started_by(egui::PointerButton::Primary)
                && let Some(p) = self.press_in_scene(ui).or(pointer)
            {
                let ids: BTreeSet<NodeId> = group.members.iter().copied().collect();
                commands.push(Command::Select(ids.clone()));
                self.moving = Some(MoveDrag {
                    ids,
                    start: p,
                    current: p,
                });
            }
            resp.context_menu(|ui| group_menu_ui(ui, g, false, commands));
        }
        self.group_labels = taken;
    }

    /// Every visible node: its card (or block at low zoom), clicks, drags and ports.
    #[allow(clippy::too_many_arguments)]
    fn nodes_ui(
        &mut self,
        ui: &mut Ui,
        input: &CanvasInput<'_>,
        rects: &[Option<Rect>],
        visible: Rect,
        detailed: bool,
        pointer: Option<Pos2>,
        commands: &mut Vec<Command>,
    ) {
        let Some(picture) = self.picture.take() else {
            return;
        };
        for (id, _) in picture.view.graph.nodes() {
            let Some(rect) = rects.get(id.index()).copied().flatten() else {
                continue;
            };
            if !visible.intersects(rect) {
                continue;
            }
            let members = members_of(input.graph, &picture.view, id);
            let selected =
                !members.is_empty() && members.iter().all(|m| input.selection.contains(m));
            let resp = ui.interact(
                rect,
                self.id.with(("netloom_node", id.0)),
                Sense::click_and_drag(),
            );
            let mark = self.mark_of(input, &picture, id);
            let label = match mark {
                Some(m) => format!("{} ({})", picture.labels[id.index()], m.label()),
                None => picture.labels[id.index()].clone(),
            };
            resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
            let stroke = node_stroke(
                ui.visuals(),
                selected,
                resp.hovered(),
                self.has_error(&picture, input, id),
            );
            match picture.view.group(id) {
                Some(g) => {
                    self.group_node_ui(ui, input, &picture, g, rect, stroke, detailed, commands)
                }
                None if detailed => node_card_ui(ui, input, &picture, id, rect, stroke, commands),
                None => {
                    let kind = input.graph.node(id).map(|n| &n.kind);
                    let color = kind.map_or(Color32::GRAY, kind_color);
                    draw_block(
                        ui.painter(),
                        rect,
                        color,
                        picture.shares[id.index()],
                        stroke,
                        self.has_error(&picture, input, id),
                    );
                }
            }
            if let Some(m) = mark {
                draw_mark(ui.painter(), rect, m, detailed);
            }
            let group = picture.view.group(id);
            self.node_interaction(
                ui, &resp, id, group, &members, selected, pointer, input, commands,
            );
            self.ports_ui(ui, &picture, id, rect, pointer, commands);
        }
        self.picture = Some(picture);
    }

    /// The compare mark of view node `id`: its layer's, or for a collapsed
    /// group the first of its members'.
    fn mark_of(&self, input: &CanvasInput<'_>, picture: &Picture, id: NodeId) -> Option<Change> {
        let marks = input.marks?;
        match picture.view.group(id) {
            Some(_) => members_of(input.graph, &picture.view, id)
                .iter()
                .find_map(|m| marks.get(m).copied()),
            None => marks.get(&id).copied(),
        }
    }

    fn has_error(&self, picture: &Picture, input: &CanvasInput<'_>, id: NodeId) -> bool {
        match picture.view.group(id) {
            Some(g) => picture.figures.get(g).is_some_and(|f| f.errors > 0),
            None => input.analysis.node(id).is_some_and(|i| i.error.is_some()),
        }
    }

    /// A collapsed group: one card with its rolled-up figures and an expand button.
    #[allow(clippy::too_many_arguments)]
    fn group_node_ui(
        &self,
        ui: &mut Ui,
        input: &CanvasInput<'_>,
        picture: &Picture,
        g: usize,
        rect: Rect,
        stroke: Stroke,
        detailed: bool,
        commands: &mut Vec<Command>,
    ) {
        let (Some(group), Some(f)) = (input.graph.groups().get(g), picture.figures.get(g)) else {
            return;
        };
        let share = picture.shares[picture.view.group_node(g).index()];
        if !detailed {
            draw_block(
                ui.painter(),
                rect,
                group_color(),
                share,
                stroke,
                f.errors > 0,
            );
            return;
        }
        let lines = GroupCard {
            name: &group.name,
            figures: f,
            share,
            conventions: input.conventions,
        };
        lines.draw(ui, rect, stroke);
        let button = Rect::from_min_size(rect.right_top() + vec2(-30.0, 2.0), vec2(26.0, 16.0));
        let resp = ui
            .interact(button, self.id.with(("netloom_expand", g)), Sense::click())
            .on_hover_text("Expand the group to show its layers");
        let label = format!("Expand {}", group.name);
        resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
        ui.painter().text(
            button.center(),
            Align2::CENTER_CENTER,
            "[+]",
            FontId::proportional(11.0),
            if resp.hovered() {
                Color32::WHITE
            } else {
                Color32::from_white_alpha(200)
            },
        );
        if resp.clicked() {
            commands.push(Command::SetGroupCollapsed {
                group: g,
                collapsed: false,
            });
        }
    }

    /// Click selects (shift toggles), a drag moves the selection, right-click opens the menu.
    #[allow(clippy::too_many_arguments)]
    fn node_interaction(
        &mut self,
        ui: &Ui,
        resp: &Response,
        id: NodeId,
        group: Option<usize>,
        members: &[NodeId],
        selected: bool,
        pointer: Option<Pos2>,
        input: &CanvasInput<'_>,
        commands: &mut Vec<Command>,
    ) {
        let shift = ui.input(|i| i.modifiers.shift);
        if resp.clicked() {
            let mut sel = if shift {
                input.selection.clone()
            } else {
                BTreeSet::new()
            };
            if shift && selected {
                for m in members {
                    sel.remove(m);
                }
            } else {
                sel.extend(members.iter().copied());
            }
            commands.push(Command::Select(sel));
        }
        // A collapsed group moves with its layers (one MoveNodes).
        if resp.drag_started_by(egui::PointerButton::Primary)
            && let Some(p) = self.press_in_scene(ui).or(pointer)
        {
            let ids = if selected {
                input.selection.clone()
            } else {
                let ids: BTreeSet<NodeId> = members.iter().copied().collect();
                commands.push(Command::Select(ids.clone()));
                ids
            };
            self.moving = Some(MoveDrag {
                ids,
                start: p,
                current: p,
            });
        }
        match group {
            Some(g) => {
                if resp.double_clicked() {
                    commands.push(Command::SetGroupCollapsed {
                        group: g,
                        collapsed: false,
                    });
                }
                resp.context_menu(|ui| group_menu_ui(ui, g, true, commands));
            }
            None => {
                let graph = input.graph;
                resp.context_menu(|ui| {
                    node_menu_ui(ui, graph, id, selected, input.selection, commands)
                });
            }
        }
    }

    /// Input and output ports: drag from an output to connect, click an
    /// input to disconnect it, drag a wired input to rewire it.
    fn ports_ui(
        &mut self,
        ui: &mut Ui,
        picture: &Picture,
        id: NodeId,
        rect: Rect,
        pointer: Option<Pos2>,
        commands: &mut Vec<Command>,
    ) {
        let visuals = ui.visuals().clone();
        let painter = ui.painter().clone();
        let graph = &picture.view.graph;
        let o = picture.orientation;
        let name = graph.name_of(id).to_string();
        // A collapsed group's ports are drawn, not used: its wires belong to its members.
        let live = picture.view.group(id).is_none();
        let n_in = route::port_count(graph, id);
        let inputs = &picture.inputs[id.index()];
        for i in 0..n_in {
            let p = input_port_pos(rect, i, n_in, o);
            let wired = inputs.get(i).copied().flatten();
            let r = Rect::from_center_size(p, Vec2::splat(PORT_RADIUS * 2.5));
            let hot = self.wire.is_some() && pointer.is_some_and(|q| r.expand(6.0).contains(q));
            let pr = live.then(|| {
                let pr = ui.interact(
                    r,
                    self.id.with(("netloom_in", id.0, i)),
                    Sense::click_and_drag(),
                );
                let port_label = format!("{name} input {i}");
                pr.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &port_label));
                pr
            });
            let big = hot || pr.as_ref().is_some_and(|r| r.hovered());
            painter.circle(
                p,
                if big { PORT_RADIUS + 2.0 } else { PORT_RADIUS },
                if wired.is_some() {
                    visuals.widgets.active.bg_fill
                } else {
                    visuals.extreme_bg_color
                },
                Stroke::new(1.5, visuals.widgets.inactive.fg_stroke.color),
            );
            if let (Some(from), Some(pr)) = (wired, pr) {
                let edge = Edge {
                    from,
                    to: id,
                    input: i,
                };
                let pr = pr.on_hover_text("Click to disconnect, drag to rewire");
                if pr.clicked() {
                    commands.push(Command::Disconnect(edge));
                }
                if pr.drag_started() && from.index() < picture.view.real_capacity {
                    self.wire = Some(WireDrag {
                        from,
                        rewire: Some(edge),
                        end: pointer.unwrap_or(p),
                    });
                }
            }
        }
        let p = output_port_pos(rect, o);
        let r = Rect::from_center_size(p, Vec2::splat(PORT_RADIUS * 2.5));
        let or = live.then(|| {
            let or = ui.interact(r, self.id.with(("netloom_out", id.0)), Sense::drag());
            let port_label = format!("{name} output");
            or.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &port_label));
            or
        });
        let big = or.as_ref().is_some_and(|r| r.hovered());
        painter.circle(
            p,
            if big { PORT_RADIUS + 2.0 } else { PORT_RADIUS },
            visuals.widgets.active.bg_fill,
            Stroke::new(1.5, visuals.widgets.inactive.fg_stroke.color),
        );
        if or.is_some_and(|r| r.drag_started()) {
            self.wire = Some(WireDrag {
                from: id,
                rewire: None,
                end: pointer.unwrap_or(p),
            });
        }
    }

    /// Moving nodes and dragging wires: the drag in progress, and the
    /// command it becomes when the button is released.
    fn gestures_ui(
        &mut self,
        ui: &Ui,
        input: &CanvasInput<'_>,
        rects: &[Option<Rect>],
        pointer: Option<Pos2>,
        commands: &mut Vec<Command>,
    ) {
        let released = !ui.input(|i| i.pointer.primary_down());
        if let Some(m) = &mut self.moving {
            if let Some(p) = pointer {
                m.current = p;
            }
            if released && let Some(m) = self.moving.take() {
                let d = m.current - m.start;
                if d != Vec2::ZERO {
                    commands.push(Command::MoveNodes {
                        ids: m.ids,
                        delta: [d.x, d.y],
                    });
                }
            }
        }
        let Some(w) = &mut self.wire else { return };
        if let Some(p) = pointer {
            w.end = p;
        }
        let (from, end, rewire) = (w.from, w.end, w.rewire);
        let o = self
            .picture
            .as_ref()
            .map_or_else(Orientation::default, |p| p.orientation);
        if let Some(fr) = rects.get(from.index()).copied().flatten() {
            draw_wire(
                ui.painter(),
                output_port_pos(fr, o),
                end,
                Stroke::new(2.0, ui.visuals().selection.stroke.color),
            );
        }
        if released {
            match (self.drop_target(input.graph, rects, end), rewire) {
                (Some((to, input)), Some(old)) => {
                    commands.push(Command::Rewire { old, to, input });
                }
                (Some((to, input)), None) => {
                    commands.push(Command::Connect { from, to, input });
                }
                // A wire pulled off its input and dropped on nothing is removed.
                (None, Some(old)) => commands.push(Command::Disconnect(old)),
                (None, None) => {}
            }
            self.last_wire_end = Some(end);
            self.wire = None;
        }
    }

    /// Box selection, the palette item about to land, a refused connection.
    fn overlay_ui(&mut self, ui: &Ui, painter: &egui::Painter) {
        let visuals = ui.visuals();
        if let Some((a, b)) = self.boxing {
            let r = Rect::from_two_pos(a, b);
            painter.rect(
                r,
                0.0,
                visuals.selection.bg_fill.gamma_multiply(0.25),
                Stroke::new(1.0, visuals.selection.stroke.color),
                StrokeKind::Inside,
            );
        }
        if let Some(at) = self.drop_at {
            let r = Rect::from_center_size(at, NODE_SIZE);
            painter.rect_stroke(
                r,
                6.0,
                Stroke::new(1.5, visuals.selection.stroke.color),
                StrokeKind::Inside,
            );
        }
        let now = ui.input(|i| i.time);
        let Some(r) = &self.refusal else { return };
        if now > r.until {
            self.refusal = None;
            return;
        }
        let galley = painter.layout(
            r.message.clone(),
            FontId::proportional(12.0),
            Color32::WHITE,
            320.0,
        );
        let rect = Rect::from_min_size(r.at + vec2(12.0, 12.0), galley.size()).expand(6.0);
        painter.rect_filled(rect, 4.0, Color32::from_rgb(150, 40, 40));
        painter.galley(rect.min + vec2(6.0, 6.0), galley, Color32::WHITE);
        let resp = ui.interact(rect, self.id.with("netloom_refusal"), Sense::hover());
        let msg = r.message.clone();
        resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &msg));
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(250));
    }

    /// The node and input a wire dropped at `p` goes into: an input port
    /// near `p`, or the next free input of the node under `p`. Collapsed
    /// groups take no wires.
    fn drop_target(
        &self,
        graph: &Graph,
        rects: &[Option<Rect>],
        p: Pos2,
    ) -> Option<(NodeId, Option<usize>)> {
        let o = self
            .picture
            .as_ref()
            .map_or_else(Orientation::default, |p| p.orientation);
        let rect_of = |id: NodeId| rects.get(id.index()).copied().flatten();
        let mut best: Option<(f32, NodeId, usize)> = None;
        for id in graph.node_ids() {
            let Some(rect) = rect_of(id) else { continue };
            let n = route::port_count(graph, id);
            for i in 0..n {
                let d = input_port_pos(rect, i, n, o).distance(p);
                if d < PORT_RADIUS * 3.0 && best.is_none_or(|(bd, _, _)| d < bd) {
                    best = Some((d, id, i));
                }
            }
        }
        if let Some((_, id, i)) = best {
            // Add/Concat: any of their ports means "the next free one".
            let many = graph
                .node(id)
                .is_some_and(|n| n.kind.arity() == Arity::Many);
            return Some((id, if many { None } else { Some(i) }));
        }
        graph
            .node_ids()
            .find(|&id| rect_of(id).is_some_and(|r| r.contains(p)))
            .map(|id| (id, None))
    }
}

impl Picture {
    /// The view of the design with every box, route and text it draws.
    fn build(input: &CanvasInput<'_>) -> Picture {
        let graph = input.graph;
        let analysis = input.analysis;
        let conv = input.conventions;
        let view = group::view(graph);
        let drawn = &view.graph;
        let rects: Vec<Option<Rect>> = (0..drawn.id_capacity())
            .map(|i| {
                let id = NodeId(i as u32);
                let node = drawn.node(id)?;
                let height = match view.group(id) {
                    Some(_) => NODE_SIZE.y,
                    None => node_height(analysis, id),
                };
                Some(Rect::from_min_size(
                    node.position.into(),
                    vec2(NODE_SIZE.x, height),
                ))
            })
            .collect();
        let boxes: Vec<Option<Box2>> = rects.iter().map(|r| r.map(to_box)).collect();
        let routes = route::route(drawn, &boxes, graph.orientation);
        let figures: Vec<GroupFigures> = graph
            .groups()
            .iter()
            .map(|g| group_figures(graph, g, analysis, &conv))
            .collect();
        let total_macs: u64 = analysis.nodes.iter().flatten().map(|n| n.cost.macs).sum();
        let share = |macs: u64| {
            if total_macs > 0 {
                macs as f32 / total_macs as f32
            } else {
                0.0
            }
        };
        let mut labels = vec![String::new(); drawn.id_capacity()];
        let mut shares = vec![0.0; drawn.id_capacity()];
        for (id, _) in drawn.nodes() {
            let i = id.index();
            match view.group(id) {
                Some(g) => {
                    labels[i] = group_label(drawn.name_of(id), &figures[g], &conv);
                    shares[i] = share(figures[g].macs);
                }
                None => {
                    labels[i] = node_label(graph, analysis, id, &conv);
                    shares[i] = share(analysis.node(id).map_or(0, |n| n.cost.macs));
                }
            }
        }
        let nesting = graph.nesting();
        let mut framed: Vec<usize> = (0..graph.groups().len())
            .filter(|&g| !graph.groups()[g].collapsed && !nesting.hidden[g])
            .collect();
        framed.sort_by_key(|&g| graph.groups()[g].members.len());
        let mut contents: Vec<Vec<NodeId>> = vec![Vec::new(); graph.groups().len()];
        for (id, _) in drawn.nodes() {
            match view.group(id) {
                Some(h) => {
                    for a in nesting.ancestors(h) {
                        contents[a].push(id);
                    }
                }
                None => {
                    for a in nesting.groups_of(id) {
                        contents[a].push(id);
                    }
                }
            }
        }
        Picture {
            generation: input.generation,
            conventions: conv,
            inputs: drawn.all_inputs(),
            orientation: graph.orientation,
            view,
            rects,
            routes,
            labels,
            shares,
            figures,
            contents,
            framed,
            parent: nesting.parent,
            total_macs,
        }
    }
}

/// What a collapsed group's card shows.
struct GroupCard<'a> {
    name: &'a str,
    figures: &'a GroupFigures,
    share: f32,
    conventions: Conventions,
}

impl GroupCard<'_> {
    fn draw(&self, ui: &Ui, rect: Rect, stroke: Stroke) {
        let painter = ui.painter();
        let visuals = ui.visuals();
        let f = self.figures;
        // A second card edge behind: a stack of layers.
        painter.rect_stroke(
            rect.translate(vec2(4.0, 4.0)),
            6.0,
            Stroke::new(1.0, group_color()),
            StrokeKind::Inside,
        );
        card_ui(
            painter,
            visuals,
            rect,
            f.errors > 0,
            stroke,
            group_color(),
            self.name,
        );
        painter.text(
            rect.min + vec2(6.0, 24.0),
            Align2::LEFT_TOP,
            format!("Group · {} layers · {} params", f.layers, compact(f.params)),
            FontId::proportional(11.0),
            visuals.text_color(),
        );
        let conv = self.conventions;
        let out = match (f.errors, f.output_shape) {
            (0, Some(s)) => s.to_string(),
            (0, None) => "?".into(),
            (n, _) => format!("{n} layers with errors"),
        };
        painter.text(
            rect.min + vec2(6.0, 42.0),
            Align2::LEFT_TOP,
            out,
            FontId::monospace(12.0),
            visuals.strong_text_color(),
        );
        if f.macs > 0 {
            painter.text(
                rect.right_top() + vec2(-6.0, 43.0),
                Align2::RIGHT_TOP,
                format!("{} {}", compact(conv.ops(f.macs)), conv.ops_unit()),
                FontId::proportional(11.0),
                visuals.weak_text_color(),
            );
            mac_share_bar(ui, rect, self.share, false);
        }
    }
}

/// The design nodes a view node stands for: itself, or a collapsed group's members.
fn members_of(graph: &Graph, view: &View, id: NodeId) -> Vec<NodeId> {
    match view.group(id) {
        Some(g) => graph
            .groups()
            .get(g)
            .map(|g| g.members.clone())
            .unwrap_or_default(),
        None => vec![id],
    }
}

/// An area over the canvas drawn by `ui` and under every window (the
/// minimap, the find bar): a sublayer of the canvas's layer.
pub fn overlay_area(ui: &Ui, id: Id) -> egui::Area {
    let parent = ui.layer_id();
    ui.ctx()
        .set_sublayer(parent, egui::LayerId::new(parent.order, id));
    egui::Area::new(id).order(parent.order)
}

/// The colour a compare mark is drawn in.
pub fn change_color(change: Change) -> Color32 {
    match change {
        Change::Added => Color32::from_rgb(90, 200, 120),
        Change::Removed => Color32::from_rgb(235, 95, 95),
        Change::Parameters => Color32::from_rgb(240, 180, 60),
        Change::Cost => Color32::from_rgb(120, 175, 255),
    }
}

/// A compare mark around a node: an outline in the change's colour and its
/// words above the top-right corner.
fn draw_mark(painter: &egui::Painter, rect: Rect, change: Change, detailed: bool) {
    let color = change_color(change);
    let zoom_width = if detailed { 2.5 } else { 1.5 };
    painter.rect_stroke(
        rect.expand(3.0),
        8.0,
        Stroke::new(zoom_width, color),
        StrokeKind::Outside,
    );
    if detailed {
        let galley = painter.layout_no_wrap(
            change.label().to_string(),
            FontId::proportional(10.0),
            Color32::BLACK,
        );
        let badge = Rect::from_min_size(
            rect.right_top() + vec2(-galley.size().x - 10.0, -galley.size().y - 6.0),
            galley.size() + vec2(8.0, 2.0),
        );
        painter.rect_filled(badge, 3.0, color);
        painter.galley(badge.min + vec2(4.0, 1.0), galley, Color32::BLACK);
    }
}

/// Header colour of a group (its frame, its collapsed card).
fn group_color() -> Color32 {
    let [r, g, b] = crate::render::GROUP_RGB;
    Color32::from_rgb(r, g, b)
}

/// A card's body and coloured header with its name; returns the header rect.
fn card_ui(
    painter: &egui::Painter,
    visuals: &egui::Visuals,
    rect: Rect,
    error: bool,
    stroke: Stroke,
    header_color: Color32,
    name: &str,
) -> Rect {
    let fill = if error {
        Color32::from_rgb(110, 30, 30)
    } else {
        visuals.widgets.noninteractive.bg_fill
    };
    painter.rect(rect, 6.0, fill, stroke, StrokeKind::Inside);
    let header = Rect::from_min_size(rect.min, vec2(rect.width(), 20.0));
    painter.rect_filled(
        header.shrink(1.0),
        CornerRadius {
            nw: 5,
            ne: 5,
            sw: 0,
            se: 0,
        },
        header_color,
    );
    painter.text(
        header.left_center() + vec2(6.0, 0.0),
        Align2::LEFT_CENTER,
        truncate(name, 20),
        FontId::proportional(12.5),
        Color32::WHITE,
    );
    header
}

/// The outline of a node: selection, error, hover, or none of them.
fn node_stroke(visuals: &egui::Visuals, selected: bool, hovered: bool, error: bool) -> Stroke {
    if selected {
        Stroke::new(2.5, visuals.selection.stroke.color)
    } else if error {
        Stroke::new(1.5, Color32::from_rgb(240, 90, 90))
    } else if hovered {
        Stroke::new(1.5, visuals.widgets.hovered.fg_stroke.color)
    } else {
        Stroke::new(1.0, visuals.widgets.noninteractive.bg_stroke.color)
    }
}

/// The node's share of the design's MACs as a bar along its bottom.
fn mac_share_bar(ui: &Ui, rect: Rect, share: f32, live: bool) {
    let visuals = ui.visuals();
    let painter = ui.painter();
    let track = Rect::from_min_size(
        rect.left_bottom() + vec2(6.0, if live { -13.0 } else { -14.0 }),
        vec2(rect.width() - 12.0, if live { 4.0 } else { 5.0 }),
    );
    painter.rect_filled(track, 2.0, visuals.extreme_bg_color);
    let mut bar = track;
    bar.set_width((track.width() * share).max(1.5));
    painter.rect_filled(bar, 2.0, Color32::from_rgb(230, 160, 60));
    if !live {
        painter.text(
            track.right_top() - vec2(0.0, 1.0),
            Align2::RIGHT_BOTTOM,
            format!("{:.0}%", share * 100.0),
            FontId::proportional(9.0),
            visuals.weak_text_color(),
        );
    }
}

/// A layer's full card: header with name and kind, the freeze lock, its
/// parameters, output shape or error (with its fix), MACs and measured time.
fn node_card_ui(
    ui: &mut Ui,
    input: &CanvasInput<'_>,
    picture: &Picture,
    id: NodeId,
    rect: Rect,
    stroke: Stroke,
    commands: &mut Vec<Command>,
) {
    let Some(node) = input.graph.node(id) else {
        return;
    };
    let info = input.analysis.node(id);
    let error = info.and_then(|i| i.error.as_ref());
    let blocked = info.is_some_and(|i| i.is_blocked());
    let visuals = ui.visuals().clone();
    let painter = ui.painter().clone();
    let header_color = kind_color(&node.kind).gamma_multiply(if blocked { 0.4 } else { 0.9 });
    let header = card_ui(
        &painter,
        &visuals,
        rect,
        error.is_some(),
        stroke,
        header_color,
        &node.name,
    );
    painter.text(
        header.right_center() - vec2(6.0, 0.0),
        Align2::RIGHT_CENTER,
        node.kind.display_name(),
        FontId::proportional(10.5),
        Color32::from_white_alpha(200),
    );
    if node.kind.has_weights() {
        lock_ui(ui, input.id, id, node, rect, commands);
    }
    let summary = node.kind.summary();
    if !summary.is_empty() {
        painter.text(
            rect.min + vec2(6.0, 24.0),
            Align2::LEFT_TOP,
            summary,
            FontId::proportional(11.5),
            visuals.text_color(),
        );
    }
    if let Some(err) = error {
        error_text_ui(ui, err, rect, commands);
        return;
    }
    let Some(info) = info else { return };
    let shape = info
        .output_shape
        .map(|s| s.to_string())
        .unwrap_or_else(|| "?".into());
    painter.text(
        rect.min + vec2(6.0, 42.0),
        Align2::LEFT_TOP,
        shape,
        FontId::monospace(12.0),
        visuals.strong_text_color(),
    );
    if info.cost.macs > 0 {
        painter.text(
            rect.right_top() + vec2(-6.0, 43.0),
            Align2::RIGHT_TOP,
            format!(
                "{} {}",
                compact(input.conventions.ops(info.cost.macs)),
                input.conventions.ops_unit()
            ),
            FontId::proportional(11.0),
            visuals.weak_text_color(),
        );
    }
    let total_ms: f64 = input
        .live
        .map_or(0.0, |l| l.values().map(|x| x.ms_per_batch).sum());
    let live = input.live.and_then(|l| l.get(&node.name));
    let mac_share = picture.shares[id.index()];
    if let Some(live) = live.filter(|_| total_ms > 0.0) {
        live_time_ui(ui, live, rect, mac_share, total_ms);
    }
    if picture.total_macs > 0 && info.cost.macs > 0 {
        mac_share_bar(ui, rect, mac_share, live.is_some());
    }
}

/// The freeze lock at the card's top right: frozen layers are not trained.
fn lock_ui(
    ui: &mut Ui,
    canvas: Id,
    id: NodeId,
    node: &crate::graph::Node,
    rect: Rect,
    commands: &mut Vec<Command>,
) {
    let r = Rect::from_min_size(rect.right_top() + vec2(-24.0, 22.0), vec2(18.0, 18.0));
    let lock = ui
        .interact(r, canvas.with(("netloom_lock", id.0)), Sense::click())
        .on_hover_text(if node.frozen {
            "frozen: not trained (click to train it)"
        } else {
            "trained (click to freeze it)"
        });
    let what = if node.frozen { "Unfreeze" } else { "Freeze" };
    lock.widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Button, true, format!("{what} {}", node.name))
    });
    let visuals = ui.visuals();
    let color = if node.frozen {
        Color32::from_rgb(120, 190, 255)
    } else if lock.hovered() {
        visuals.widgets.hovered.fg_stroke.color
    } else {
        visuals.weak_text_color().gamma_multiply(0.7)
    };
    draw_padlock(ui.painter(), r, node.frozen, color);
    if lock.clicked() {
        commands.push(Command::SetFrozen {
            id,
            frozen: !node.frozen,
        });
    }
}

/// A layer's error on its card, with the Fix button when there is a fix-it.
fn error_text_ui(
    ui: &mut Ui,
    err: &crate::infer::ShapeError,
    rect: Rect,
    commands: &mut Vec<Command>,
) {
    let painter = ui.painter();
    let mut job = egui::text::LayoutJob::simple(
        err.message.clone(),
        FontId::proportional(10.5),
        Color32::from_rgb(255, 200, 200),
        rect.width() - 12.0,
    );
    job.wrap.max_rows = 3;
    let galley = painter.layout_job(job);
    painter.galley(rect.min + vec2(6.0, 40.0), galley, Color32::WHITE);
    if let Some(fix) = &err.fix {
        let r = Rect::from_min_size(rect.right_top() + vec2(-44.0, 22.0), vec2(38.0, 16.0));
        let fix_resp = ui
            .put(r, egui::Button::new("Fix").small())
            .on_hover_text(fix.describe());
        if fix_resp.clicked() {
            commands.push(Command::ApplyFix(fix.clone()));
        }
    }
}

/// Measured time of a training layer beside its MAC share: where they
/// disagree is where the cost model and the hardware part ways.
fn live_time_ui(ui: &Ui, live: &LayerLive, rect: Rect, mac_share: f32, total_ms: f64) {
    let painter = ui.painter();
    let visuals = ui.visuals();
    let share = (live.ms_per_batch / total_ms) as f32;
    let track = Rect::from_min_size(
        rect.left_bottom() + vec2(6.0, -7.0),
        vec2(rect.width() - 12.0, 4.0),
    );
    painter.rect_filled(track, 2.0, visuals.extreme_bg_color);
    let mut bar = track;
    bar.set_width((track.width() * share).max(1.5));
    painter.rect_filled(bar, 2.0, Color32::from_rgb(90, 160, 255));
    painter.text(
        rect.min + vec2(6.0, 56.0),
        Align2::LEFT_TOP,
        format!("{:.2} ms", live.ms_per_batch),
        FontId::proportional(10.0),
        Color32::from_rgb(130, 185, 255),
    );
    let right = match live.stats {
        Some(st) => {
            let mut t = format!("mean {:.2} sd {:.2}", st.mean, st.std);
            if let Some(g) = st.grad_norm {
                t.push_str(&format!(" |g| {g:.0e}"));
            }
            t
        }
        None => format!(
            "{:.0}% MACs · {:.0}% time",
            mac_share * 100.0,
            share * 100.0
        ),
    };
    painter.text(
        rect.right_top() + vec2(-6.0, 56.0),
        Align2::RIGHT_TOP,
        right,
        FontId::proportional(10.0),
        if live.stats.is_some() {
            Color32::from_rgb(210, 210, 150)
        } else {
            visuals.weak_text_color()
        },
    );
}

/// Right-click on a group (its frame tab, or its collapsed node).
fn group_menu_ui(ui: &mut Ui, g: usize, collapsed: bool, commands: &mut Vec<Command>) {
    let (label, to) = if collapsed {
        ("Expand group", false)
    } else {
        ("Collapse group", true)
    };
    if ui.button(label).clicked() {
        commands.push(Command::SetGroupCollapsed {
            group: g,
            collapsed: to,
        });
        ui.close();
    }
    if ui.button("Ungroup").clicked() {
        commands.push(Command::Ungroup(g));
        ui.close();
    }
}

/// Right-click on a node: insert before/after, replace the kind, delete
/// (bridging its input to its consumers), disconnect, duplicate.
fn node_menu_ui(
    ui: &mut Ui,
    graph: &Graph,
    id: NodeId,
    selected: bool,
    selection: &BTreeSet<NodeId>,
    commands: &mut Vec<Command>,
) {
    let Some(node) = graph.node(id) else { return };
    let arity = node.kind.arity();
    let one_input = || {
        LayerKind::catalogue()
            .into_iter()
            .filter(|k| k.arity() == Arity::One)
    };
    if arity != Arity::None {
        ui.menu_button("Insert before", |ui| {
            for kind in one_input() {
                if ui.button(kind.display_name()).clicked() {
                    commands.push(Command::InsertBefore { id, kind });
                    ui.close();
                }
            }
        });
    }
    ui.menu_button("Insert after", |ui| {
        for kind in one_input() {
            if ui.button(kind.display_name()).clicked() {
                commands.push(Command::InsertAfter { id, kind });
                ui.close();
            }
        }
    });
    ui.menu_button("Replace with", |ui| {
        for kind in LayerKind::catalogue()
            .into_iter()
            .filter(|k| k.arity() == arity && k.tag() != node.kind.tag())
        {
            if ui.button(kind.display_name()).clicked() {
                commands.push(Command::ReplaceKind { id, kind });
                ui.close();
            }
        }
    });
    ui.separator();
    if arity == Arity::One && ui.button("Delete and bridge").clicked() {
        commands.push(Command::DeleteAndBridge(id));
        ui.close();
    }
    if ui.button("Disconnect").clicked() {
        commands.push(Command::DisconnectAll(id));
        ui.close();
    }
    if ui.button("Duplicate").clicked() {
        if !selected {
            commands.push(Command::Select(BTreeSet::from([id])));
        }
        commands.push(Command::Duplicate);
        ui.close();
    }
    if ui.button("Delete").clicked() {
        let ids = if selected {
            selection.clone()
        } else {
            BTreeSet::from([id])
        };
        commands.push(Command::Delete(ids));
        ui.close();
    }
    ui.separator();
    if selected && selection.len() > 1 && ui.button("Group selection").clicked() {
        commands.push(Command::GroupNodes(selection.clone()));
        ui.close();
    }
    if let Some(g) = graph.group_of(id) {
        let name = &graph.groups()[g].name;
        if ui.button(format!("Collapse group {name}")).clicked() {
            commands.push(Command::SetGroupCollapsed {
                group: g,
                collapsed: true,
            });
            ui.close();
        }
        if ui.button(format!("Ungroup {name}")).clicked() {
            commands.push(Command::Ungroup(g));
            ui.close();
        }
    }
}

/// A node at low zoom: a block in its kind's colour with a MAC-share bar along the bottom.
fn draw_block(
    painter: &egui::Painter,
    rect: Rect,
    color: Color32,
    share: f32,
    stroke: Stroke,
    error: bool,
) {
    let fill = if error {
        Color32::from_rgb(150, 40, 40)
    } else {
        color.gamma_multiply(0.85)
    };
    painter.rect_filled(rect, 8.0, fill);
    if share > 0.0 {
        let track = Rect::from_min_max(pos2(rect.left(), rect.bottom() - 18.0), rect.max);
        painter.rect_filled(track, 0.0, Color32::from_black_alpha(120));
        let mut bar = track;
        bar.set_width((track.width() * share).max(6.0));
        painter.rect_filled(bar, 0.0, Color32::from_rgb(240, 170, 60));
    }
    // Selection and errors stay visible when zoomed far out.
    let scale = (stroke.width * 4.0).max(3.0);
    painter.rect_stroke(
        rect,
        8.0,
        Stroke::new(scale, stroke.color),
        StrokeKind::Outside,
    );
}

/// Distance from `p` to the segment `a`–`b`.
fn distance_to_segment(p: Pos2, a: Pos2, b: Pos2) -> f32 {
    let d = b - a;
    let len2 = d.length_sq();
    let t = if len2 == 0.0 {
        0.0
    } else {
        ((p - a).dot(d) / len2).clamp(0.0, 1.0)
    };
    p.distance(a + d * t)
}

/// A padlock icon in `r`: shackle closed when `locked`, swung open otherwise.
fn draw_padlock(painter: &egui::Painter, r: Rect, locked: bool, color: Color32) {
    let body = Rect::from_min_max(
        pos2(r.left() + 3.0, r.center().y - 1.0),
        pos2(r.right() - 3.0, r.bottom() - 2.0),
    );
    painter.rect_filled(body, 1.5, color);
    let radius = body.width() * 0.32;
    let cx = if locked {
        body.center().x
    } else {
        body.center().x + radius * 1.1
    };
    let top = body.top() - radius * 1.6;
    let stroke = Stroke::new(1.6, color);
    let points: Vec<Pos2> = (0..=12)
        .map(|i| {
            let a = std::f32::consts::PI * (1.0 + i as f32 / 12.0);
            pos2(cx + radius * a.cos(), top + radius + radius * a.sin())
        })
        .collect();
    painter.add(egui::Shape::line(points, stroke));
    let leg_bottom = if locked {
        body.top()
    } else {
        body.top() - radius * 0.6
    };
    painter.line_segment(
        [
            pos2(cx - radius, top + radius),
            pos2(cx - radius, body.top()),
        ],
        stroke,
    );
    painter.line_segment(
        [
            pos2(cx + radius, top + radius),
            pos2(cx + radius, leg_bottom),
        ],
        stroke,
    );
}

fn draw_wire(painter: &egui::Painter, a: Pos2, b: Pos2, stroke: Stroke) {
    let dy = ((b.y - a.y).abs() * 0.5).max(30.0);
    let shape = CubicBezierShape::from_points_stroke(
        [a, a + vec2(0.0, dy), b - vec2(0.0, dy), b],
        false,
        Color32::TRANSPARENT,
        stroke,
    );
    painter.add(shape);
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}
