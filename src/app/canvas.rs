//! The design canvas: nodes, ports and wires drawn on an [`egui::Scene`].
//!
//! Two coordinate spaces: *scene* (where `Node::position` lives, what the
//! painter inside the scene draws in) and *screen* (egui's global points).
//! `screen_from_scene` maps the first to the second. The canvas holds no
//! business logic: it turns pointer input into [`Command`]s. Wires follow
//! the routes of [`crate::graph::route`], the same the diagram export draws.

use super::command::{Command, PaletteItem};
use super::find::FindBar;
use super::minimap::Minimap;
use crate::graph::layout::{self, Orientation};
use crate::graph::route::{self, Box2, Routes};
use crate::graph::{Arity, Edge, Graph, LayerKind, NodeId};
use crate::infer::{Analysis, Conventions, compact};
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
/// The canvas lays designs out top to bottom.
const ORIENTATION: Orientation = Orientation::TopToBottom;

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
    /// The canvas rect of the last fit: while panels settle in the first
    /// frames the canvas changes size, and the fit is redone until it holds.
    fitted_for: Option<(Rect, u8)>,
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
    /// Routed wires, and the design generation they were routed for.
    routes: Option<(u64, Routes)>,
    /// The wire right-clicked last, for its context menu.
    menu_wire: Option<(Edge, Pos2)>,
    pub find: FindBar,
    minimap: Minimap,
}

impl Default for Canvas {
    fn default() -> Self {
        Canvas {
            scene_rect: Rect::ZERO,
            fit_requested: true,
            fitted_for: None,
            screen_from_scene: TSTransform::IDENTITY,
            screen_rect: Rect::ZERO,
            moving: None,
            wire: None,
            last_wire_end: None,
            boxing: None,
            refusal: None,
            drop_at: None,
            drop_wire: None,
            routes: None,
            menu_wire: None,
            find: FindBar::default(),
            minimap: Minimap,
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
}

fn node_height(analysis: &Analysis, id: NodeId) -> f32 {
    if analysis.node(id).is_some_and(|n| n.error.is_some()) {
        ERROR_NODE_HEIGHT
    } else {
        NODE_SIZE.y
    }
}

fn port_count(graph: &Graph, id: NodeId) -> usize {
    route::port_count(graph, id)
}

fn input_port_pos(rect: Rect, i: usize, n: usize) -> Pos2 {
    route::input_port(&to_box(rect), i, n, ORIENTATION).into()
}

fn output_port_pos(rect: Rect) -> Pos2 {
    route::output_port(&to_box(rect), ORIENTATION).into()
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
        self.fitted_for = None;
        self.scene_rect = Rect::from_center_size(p, self.scene_rect.size());
    }

    /// The scene point at the centre of the view, where click-added items go.
    pub fn view_center(&self) -> Pos2 {
        self.scene_rect.center()
    }

    /// Shows the whole design: zoomed out as far as it takes (never past 1:1).
    fn fit(&mut self, graph: &Graph, analysis: &Analysis, view: Vec2) {
        let mut bbox = Rect::NOTHING;
        for (id, n) in graph.nodes() {
            bbox = bbox.union(Rect::from_min_size(
                n.position.into(),
                vec2(NODE_SIZE.x, node_height(analysis, id)),
            ));
        }
        if !bbox.is_positive() {
            bbox = Rect::from_center_size(Pos2::ZERO, view);
        }
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

    /// Centres the view on `rect` (scene coordinates), zooming in until its text is readable.
    pub fn focus(&mut self, rect: Rect) {
        self.fitted_for = None;
        let view = self.screen_rect.size();
        let zoom = if self.zoom() < 0.8 { 1.0 } else { self.zoom() };
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
        // A few frames after a fit, redo it if the canvas changed size.
        let settling = match self.fitted_for.take() {
            Some((r, frames)) if frames > 0 => {
                self.fitted_for = Some((outer, frames - 1));
                r != outer
            }
            _ => false,
        };
        if self.fit_requested || settling {
            self.fit(input.graph, input.analysis, outer.size());
            if self.fit_requested {
                // Panels settle over the first frames (the bottom panel grows to its size).
                self.fitted_for = Some((outer, 90));
            }
            self.fit_requested = false;
        }
        let rects = self.node_rects(input);
        self.update_routes(input, &rects);
        self.track_palette_drop(ui, outer, input, &mut commands);

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
            self.fitted_for = None;
        }
        self.scene_rect = scene_rect;
        response
            .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "Design canvas"));
        self.background_interaction(ui, &response, input, &mut commands);
        self.wire_menu(&response, input, &mut commands);
        if self.zoom() < DETAIL_ZOOM {
            self.names_beside_blocks(ui, input.graph, &rects, outer);
        }
        let boxes: Vec<(Rect, Color32)> = input
            .graph
            .nodes()
            .filter_map(|(id, n)| {
                Some((
                    rects.get(id.index()).copied().flatten()?,
                    kind_color(&n.kind),
                ))
            })
            .collect();
        if let Some(center) = self.minimap.ui(ui, outer, &boxes, self.scene_rect) {
            self.center_on(center);
        }
        if let Some(c) = self.find.ui(ui, outer, input.graph) {
            commands.push(c);
        }
        commands
    }

    /// Scene rect of every node (indexed by id), moved nodes where they are being dragged.
    fn node_rects(&self, input: &CanvasInput<'_>) -> Vec<Option<Rect>> {
        (0..input.graph.id_capacity())
            .map(|i| self.node_rect(input.graph, input.analysis, NodeId(i as u32)))
            .collect()
    }

    /// Routes the wires anew after an edit or while nodes are dragged.
    fn update_routes(&mut self, input: &CanvasInput<'_>, rects: &[Option<Rect>]) {
        let fresh = self
            .routes
            .as_ref()
            .is_some_and(|(g, _)| *g == input.generation);
        if fresh && self.moving.is_none() {
            return;
        }
        let boxes: Vec<Option<Box2>> = rects.iter().map(|r| r.map(to_box)).collect();
        let routes = route::route(input.graph, &boxes, ORIENTATION);
        // While dragging the cache would go stale at once: mark it so.
        let generation = if self.moving.is_some() {
            u64::MAX
        } else {
            input.generation
        };
        self.routes = Some((generation, routes));
    }

    /// The wire passing within `tolerance` scene units of `p`, nearest first.
    fn wire_at(&self, p: Pos2, tolerance: f32) -> Option<Edge> {
        let (_, routes) = self.routes.as_ref()?;
        let mut best: Option<(f32, Edge)> = None;
        for w in &routes.wires {
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
        input: &CanvasInput<'_>,
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
        let over_node = self.drop_at.is_some_and(|p| {
            input.graph.nodes().any(|(id, _)| {
                self.node_rect(input.graph, input.analysis, id)
                    .is_some_and(|r| r.contains(p))
            })
        });
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

    /// At low zoom, names in screen space beside their blocks, skipping any
    /// that would overlap one already drawn.
    fn names_beside_blocks(&self, ui: &Ui, graph: &Graph, rects: &[Option<Rect>], outer: Rect) {
        // Above the scene layer, below popups.
        let layer = egui::LayerId::new(egui::Order::Middle, Id::unique("netloom_block_names"));
        let painter = ui.ctx().layer_painter(layer).with_clip_rect(outer);
        let font = FontId::proportional(10.5);
        let color = ui.visuals().text_color();
        let blocks: Vec<Rect> = graph
            .nodes()
            .filter_map(|(id, _)| rects.get(id.index()).copied().flatten())
            .map(|r| Rect::from_min_max(self.to_screen(r.min), self.to_screen(r.max)))
            .filter(|r| outer.intersects(r.expand(120.0)))
            .collect();
        // A name goes inside its block, else to its right, else to its left,
        // wherever it covers no other block and no name already drawn.
        let mut taken: Vec<Rect> = Vec::new();
        for (id, node) in graph.nodes() {
            let Some(r) = rects.get(id.index()).copied().flatten() else {
                continue;
            };
            let screen = Rect::from_min_max(self.to_screen(r.min), self.to_screen(r.max));
            if !outer.intersects(screen.expand(120.0)) {
                continue;
            }
            let galley = painter.layout_no_wrap(truncate(&node.name, 24), font.clone(), color);
            let size = galley.size();
            let y = screen.center().y - size.y / 2.0;
            let inside = (screen.width() > size.x + 8.0 && screen.height() > size.y + 2.0)
                .then(|| Rect::from_min_size(screen.center() - size / 2.0, size));
            let right = Rect::from_min_size(pos2(screen.right() + 3.0, y), size);
            let left = Rect::from_min_size(pos2(screen.left() - 3.0 - size.x, y), size);
            let clear = |spot: &Rect| {
                !taken.iter().any(|t| t.intersects(*spot))
                    && !blocks.iter().any(|b| *b != screen && b.intersects(*spot))
            };
            let Some(spot) = inside.into_iter().chain([right, left]).find(|s| clear(s)) else {
                continue;
            };
            taken.push(spot);
            painter.galley(spot.min, galley, color);
        }
    }

    fn background_interaction(
        &mut self,
        ui: &Ui,
        response: &Response,
        input: &CanvasInput<'_>,
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
                let mut sel: BTreeSet<NodeId> = input
                    .graph
                    .nodes()
                    .filter(|(_, n)| {
                        area.intersects(Rect::from_min_size(n.position.into(), NODE_SIZE))
                    })
                    .map(|(id, _)| id)
                    .collect();
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

    fn node_rect(&self, graph: &Graph, analysis: &Analysis, id: NodeId) -> Option<Rect> {
        let node = graph.node(id)?;
        let mut pos: Pos2 = node.position.into();
        if let Some(m) = &self.moving
            && m.ids.contains(&id)
        {
            pos += m.current - m.start;
        }
        Some(Rect::from_min_size(
            pos,
            vec2(NODE_SIZE.x, node_height(analysis, id)),
        ))
    }

    fn contents_ui(
        &mut self,
        ui: &mut Ui,
        input: &CanvasInput<'_>,
        rects: &[Option<Rect>],
        commands: &mut Vec<Command>,
    ) {
        let graph = input.graph;
        let analysis = input.analysis;
        let painter = ui.painter().clone();
        let pointer = self.pointer_in_scene(ui);
        let total_macs: u64 = analysis.nodes.iter().flatten().map(|n| n.cost.macs).sum();
        let total_ms: f64 = input
            .live
            .map_or(0.0, |l| l.values().map(|x| x.ms_per_batch).sum());
        let rect_of = |id: NodeId| rects.get(id.index()).copied().flatten();
        for r in rects.iter().flatten() {
            ui.expand_to_include_rect(*r);
        }
        let visible = ui.clip_rect().expand(20.0);
        let detailed = self.zoom() >= DETAIL_ZOOM;
        let visuals = ui.visuals().clone();
        self.wires_ui(&painter, input, visible, detailed);

        // Nodes.
        for (id, node) in graph.nodes() {
            let Some(rect) = rect_of(id) else { continue };
            if !visible.intersects(rect) {
                continue;
            }
            let info = analysis.node(id);
            let selected = input.selection.contains(&id);
            let error = info.and_then(|i| i.error.as_ref());
            let blocked = info.is_some_and(|i| i.is_blocked());
            let node_id = Id::unique(("netloom_node", id.0));
            let resp = ui.interact(rect, node_id, Sense::click_and_drag());
            let label = node_label(graph, analysis, id, &input.conventions);
            resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));

            // Body.
            let fill = if error.is_some() {
                Color32::from_rgb(110, 30, 30)
            } else {
                visuals.widgets.noninteractive.bg_fill
            };
            let stroke = if selected {
                Stroke::new(2.5, visuals.selection.stroke.color)
            } else if error.is_some() {
                Stroke::new(1.5, Color32::from_rgb(240, 90, 90))
            } else if resp.hovered() {
                Stroke::new(1.5, visuals.widgets.hovered.fg_stroke.color)
            } else {
                Stroke::new(1.0, visuals.widgets.noninteractive.bg_stroke.color)
            };
            if detailed {
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
                    kind_color(&node.kind).gamma_multiply(if blocked { 0.4 } else { 0.9 }),
                );
                let strong = visuals.strong_text_color();
                let text = visuals.text_color();
                let weak = visuals.weak_text_color();
                let name = truncate(&node.name, 20);
                painter.text(
                    header.left_center() + vec2(6.0, 0.0),
                    Align2::LEFT_CENTER,
                    name,
                    FontId::proportional(12.5),
                    Color32::WHITE,
                );
                painter.text(
                    header.right_center() - vec2(6.0, 0.0),
                    Align2::RIGHT_CENTER,
                    node.kind.display_name(),
                    FontId::proportional(10.5),
                    Color32::from_white_alpha(200),
                );
                if node.kind.has_weights() {
                    // The lock freezes the layer for training (no gradient, no update).
                    let r =
                        Rect::from_min_size(rect.right_top() + vec2(-24.0, 22.0), vec2(18.0, 18.0));
                    let lock = ui
                        .interact(r, Id::unique(("netloom_lock", id.0)), Sense::click())
                        .on_hover_text(if node.frozen {
                            "frozen: not trained (click to train it)"
                        } else {
                            "trained (click to freeze it)"
                        });
                    let what = if node.frozen { "Unfreeze" } else { "Freeze" };
                    lock.widget_info(|| {
                        egui::WidgetInfo::labeled(
                            egui::Role::Button,
                            true,
                            format!("{what} {}", node.name),
                        )
                    });
                    let color = if node.frozen {
                        Color32::from_rgb(120, 190, 255)
                    } else if lock.hovered() {
                        visuals.widgets.hovered.fg_stroke.color
                    } else {
                        visuals.weak_text_color().gamma_multiply(0.7)
                    };
                    draw_padlock(&painter, r, node.frozen, color);
                    if lock.clicked() {
                        commands.push(Command::SetFrozen {
                            id,
                            frozen: !node.frozen,
                        });
                    }
                }
                let summary = node.kind.summary();
                if !summary.is_empty() {
                    painter.text(
                        rect.min + vec2(6.0, 24.0),
                        Align2::LEFT_TOP,
                        summary,
                        FontId::proportional(11.5),
                        text,
                    );
                }
                if let Some(err) = error {
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
                        let r = Rect::from_min_size(
                            rect.right_top() + vec2(-44.0, 22.0),
                            vec2(38.0, 16.0),
                        );
                        let fix_resp = ui
                            .put(r, egui::Button::new("Fix").small())
                            .on_hover_text(fix.describe());
                        if fix_resp.clicked() {
                            commands.push(Command::ApplyFix(fix.clone()));
                        }
                    }
                } else if let Some(info) = info {
                    let shape = info
                        .output_shape
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "?".into());
                    painter.text(
                        rect.min + vec2(6.0, 42.0),
                        Align2::LEFT_TOP,
                        shape,
                        FontId::monospace(12.0),
                        strong,
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
                            weak,
                        );
                    }
                    let live = input.live.and_then(|l| l.get(&node.name));
                    let mac_share = if total_macs > 0 {
                        info.cost.macs as f32 / total_macs as f32
                    } else {
                        0.0
                    };
                    if let Some(live) = live.filter(|_| total_ms > 0.0) {
                        // Measured time beside the MAC share: where they disagree
                        // is where the cost model and the hardware part ways.
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
                                weak
                            },
                        );
                    }
                    if total_macs > 0 && info.cost.macs > 0 {
                        let share = mac_share;
                        let track = Rect::from_min_size(
                            rect.left_bottom()
                                + vec2(6.0, if live.is_some() { -13.0 } else { -14.0 }),
                            vec2(rect.width() - 12.0, if live.is_some() { 4.0 } else { 5.0 }),
                        );
                        painter.rect_filled(track, 2.0, visuals.extreme_bg_color);
                        let mut bar = track;
                        bar.set_width((track.width() * share).max(1.5));
                        painter.rect_filled(bar, 2.0, Color32::from_rgb(230, 160, 60));
                        if live.is_none() {
                            painter.text(
                                track.right_top() - vec2(0.0, 1.0),
                                Align2::RIGHT_BOTTOM,
                                format!("{:.0}%", share * 100.0),
                                FontId::proportional(9.0),
                                weak,
                            );
                        }
                    }
                }
            } else {
                let share = info.map_or(0.0, |i| {
                    if total_macs > 0 {
                        i.cost.macs as f32 / total_macs as f32
                    } else {
                        0.0
                    }
                });
                draw_block(
                    &painter,
                    rect,
                    kind_color(&node.kind),
                    share,
                    stroke,
                    error.is_some(),
                );
            }

            // Node interaction.
            let shift = ui.input(|i| i.modifiers.shift);
            if resp.clicked() {
                let mut sel = if shift {
                    input.selection.clone()
                } else {
                    BTreeSet::new()
                };
                if shift && sel.contains(&id) {
                    sel.remove(&id);
                } else {
                    sel.insert(id);
                }
                commands.push(Command::Select(sel));
            }
            if resp.drag_started_by(egui::PointerButton::Primary)
                && let Some(p) = pointer
            {
                let ids = if selected {
                    input.selection.clone()
                } else {
                    commands.push(Command::Select(BTreeSet::from([id])));
                    BTreeSet::from([id])
                };
                self.moving = Some(MoveDrag {
                    ids,
                    start: p,
                    current: p,
                });
            }
            resp.context_menu(|ui| {
                node_menu_ui(ui, graph, id, selected, input.selection, commands)
            });

            // Ports.
            let n_in = port_count(graph, id);
            let inputs = graph.inputs_of(id);
            for i in 0..n_in {
                let p = input_port_pos(rect, i, n_in);
                let wired = inputs.get(i).copied().flatten();
                let r = Rect::from_center_size(p, Vec2::splat(PORT_RADIUS * 2.5));
                let pr = ui.interact(
                    r,
                    Id::unique(("netloom_in", id.0, i)),
                    Sense::click_and_drag(),
                );
                let port_label = format!("{} input {i}", node.name);
                pr.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &port_label));
                let hot = self.wire.is_some() && pointer.is_some_and(|q| r.expand(6.0).contains(q));
                painter.circle(
                    p,
                    if hot || pr.hovered() {
                        PORT_RADIUS + 2.0
                    } else {
                        PORT_RADIUS
                    },
                    if wired.is_some() {
                        visuals.widgets.active.bg_fill
                    } else {
                        visuals.extreme_bg_color
                    },
                    Stroke::new(1.5, visuals.widgets.inactive.fg_stroke.color),
                );
                if let Some(from) = wired {
                    let edge = Edge {
                        from,
                        to: id,
                        input: i,
                    };
                    let pr = pr.on_hover_text("Click to disconnect, drag to rewire");
                    if pr.clicked() {
                        commands.push(Command::Disconnect(edge));
                    }
                    if pr.drag_started() {
                        self.wire = Some(WireDrag {
                            from,
                            rewire: Some(edge),
                            end: pointer.unwrap_or(p),
                        });
                    }
                }
            }
            let p = output_port_pos(rect);
            let r = Rect::from_center_size(p, Vec2::splat(PORT_RADIUS * 2.5));
            let or = ui.interact(r, Id::unique(("netloom_out", id.0)), Sense::drag());
            let port_label = format!("{} output", node.name);
            or.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &port_label));
            painter.circle(
                p,
                if or.hovered() {
                    PORT_RADIUS + 2.0
                } else {
                    PORT_RADIUS
                },
                visuals.widgets.active.bg_fill,
                Stroke::new(1.5, visuals.widgets.inactive.fg_stroke.color),
            );
            if or.drag_started() {
                self.wire = Some(WireDrag {
                    from: id,
                    rewire: None,
                    end: pointer.unwrap_or(p),
                });
            }
        }

        // Moving nodes.
        if let Some(m) = &mut self.moving {
            if let Some(p) = pointer {
                m.current = p;
            }
            if !ui.input(|i| i.pointer.primary_down())
                && let Some(m) = self.moving.take()
            {
                {
                    let d = m.current - m.start;
                    if d != Vec2::ZERO {
                        commands.push(Command::MoveNodes {
                            ids: m.ids,
                            delta: [d.x, d.y],
                        });
                    }
                }
            }
        }

        // A wire being dragged.
        if let Some(w) = &mut self.wire {
            if let Some(p) = pointer {
                w.end = p;
            }
            let from = w.from;
            let end = w.end;
            let rewire = w.rewire;
            if let Some(fr) = rect_of(from) {
                draw_wire(
                    &painter,
                    output_port_pos(fr),
                    end,
                    Stroke::new(2.0, visuals.selection.stroke.color),
                );
            }
            if !ui.input(|i| i.pointer.primary_down()) {
                match (self.drop_target(graph, &rect_of, end), rewire) {
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

        // Box selection.
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

        // Palette item about to be dropped.
        if let Some(at) = self.drop_at {
            let r = Rect::from_center_size(at, NODE_SIZE);
            painter.rect_stroke(
                r,
                6.0,
                Stroke::new(1.5, visuals.selection.stroke.color),
                StrokeKind::Inside,
            );
        }

        // A refused connection, at the cursor.
        let now = ui.input(|i| i.time);
        if let Some(r) = &self.refusal {
            if now > r.until {
                self.refusal = None;
            } else {
                let galley = painter.layout(
                    r.message.clone(),
                    FontId::proportional(12.0),
                    Color32::WHITE,
                    320.0,
                );
                let rect = Rect::from_min_size(r.at + vec2(12.0, 12.0), galley.size()).expand(6.0);
                painter.rect_filled(rect, 4.0, Color32::from_rgb(150, 40, 40));
                painter.galley(rect.min + vec2(6.0, 6.0), galley, Color32::WHITE);
                let id = Id::unique("netloom_refusal");
                let resp = ui.interact(rect, id, Sense::hover());
                let msg = r.message.clone();
                resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, &msg));
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_millis(250));
            }
        }
    }

    /// Wires along their routes, under the nodes; shape labels at readable zoom.
    fn wires_ui(
        &self,
        painter: &egui::Painter,
        input: &CanvasInput<'_>,
        visible: Rect,
        detailed: bool,
    ) {
        let Some((_, routes)) = &self.routes else {
            return;
        };
        let visuals = painter.ctx().global_style().visuals.clone();
        let normal = visuals.widgets.noninteractive.fg_stroke.color;
        let width = if detailed {
            1.6
        } else {
            1.6 / self.zoom().max(MIN_ZOOM) * 0.6
        };
        for w in &routes.wires {
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
        for l in &routes.labels {
            let at = Pos2::from(l.at);
            if !visible.contains(at) {
                continue;
            }
            let Some(shape) = input
                .analysis
                .node(l.edge.from)
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

    /// The node and input a wire dropped at `p` goes into: an input port
    /// near `p`, or the next free input of the node under `p`.
    fn drop_target(
        &self,
        graph: &Graph,
        rect_of: &impl Fn(NodeId) -> Option<Rect>,
        p: Pos2,
    ) -> Option<(NodeId, Option<usize>)> {
        let mut best: Option<(f32, NodeId, usize)> = None;
        for id in graph.node_ids() {
            let Some(rect) = rect_of(id) else { continue };
            let n = port_count(graph, id);
            for i in 0..n {
                let d = input_port_pos(rect, i, n).distance(p);
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
