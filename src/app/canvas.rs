//! The design canvas: nodes, ports and wires drawn on an [`egui::Scene`].
//!
//! Two coordinate spaces: *scene* (where `Node::position` lives, what the
//! painter inside the scene draws in) and *screen* (egui's global points).
//! `screen_from_scene` maps the first to the second. The canvas holds no
//! business logic: it turns pointer input into [`Command`]s.

use super::command::{Command, PaletteItem};
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

/// Size of a node in scene units (the auto-layout grid is 220 × 110).
pub const NODE_SIZE: Vec2 = vec2(188.0, 80.0);
/// Height of a node showing an error.
const ERROR_NODE_HEIGHT: f32 = 100.0;
const PORT_RADIUS: f32 = 6.0;

struct MoveDrag {
    ids: BTreeSet<NodeId>,
    start: Pos2,
    current: Pos2,
}

struct WireDrag {
    from: NodeId,
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
}

impl Default for Canvas {
    fn default() -> Self {
        Canvas {
            scene_rect: Rect::ZERO,
            fit_requested: true,
            screen_from_scene: TSTransform::IDENTITY,
            screen_rect: Rect::ZERO,
            moving: None,
            wire: None,
            last_wire_end: None,
            boxing: None,
            refusal: None,
            drop_at: None,
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
}

fn node_height(analysis: &Analysis, id: NodeId) -> f32 {
    if analysis.node(id).is_some_and(|n| n.error.is_some()) {
        ERROR_NODE_HEIGHT
    } else {
        NODE_SIZE.y
    }
}

/// Number of input ports drawn on a node: Add/Concat show one spare.
fn port_count(graph: &Graph, id: NodeId) -> usize {
    match graph.node(id).map(|n| n.kind.arity()) {
        Some(Arity::None) | None => 0,
        Some(Arity::One) => 1,
        Some(Arity::Many) => graph.inputs_of(id).len() + 1,
    }
}

fn input_port_pos(rect: Rect, i: usize, n: usize) -> Pos2 {
    pos2(
        rect.left() + rect.width() * (i as f32 + 1.0) / (n as f32 + 1.0),
        rect.top(),
    )
}

fn output_port_pos(rect: Rect) -> Pos2 {
    pos2(rect.center().x, rect.bottom())
}

/// Header colour by layer family.
fn kind_color(kind: &LayerKind) -> Color32 {
    use LayerKind::*;
    match kind {
        Input { .. } => Color32::from_rgb(70, 140, 90),
        Conv2d { .. } => Color32::from_rgb(60, 110, 180),
        ZeroPad2d { .. } => Color32::from_rgb(100, 100, 120),
        MaxPool2d { .. } | AvgPool2d { .. } | GlobalAvgPool => Color32::from_rgb(130, 90, 170),
        BatchNorm { .. } => Color32::from_rgb(40, 140, 140),
        Relu | LeakyRelu { .. } | Sigmoid | Tanh | Softmax => Color32::from_rgb(190, 120, 50),
        Dropout { .. } | Flatten => Color32::from_rgb(110, 110, 110),
        Dense { .. } => Color32::from_rgb(160, 70, 110),
        Add | Concat => Color32::from_rgb(170, 150, 40),
    }
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
            message,
            at,
            until: now + 4.0,
        });
        self.wire = None;
    }

    /// Pans the view so scene point `p` is at its centre.
    pub fn center_on(&mut self, p: Pos2) {
        self.scene_rect = Rect::from_center_size(p, self.scene_rect.size());
    }

    /// The scene point at the centre of the view, where click-added items go.
    pub fn view_center(&self) -> Pos2 {
        self.scene_rect.center()
    }

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
        let bbox = bbox.expand(40.0);
        // Never past 1:1 for small designs, and never so far out that
        // nodes are unreadable: tall designs then show their top part.
        let zoom = (view.x / bbox.width())
            .min(view.y / bbox.height())
            .clamp(0.9, 1.0);
        let size = view / zoom;
        let mut center = bbox.center();
        if bbox.height() > size.y {
            center.y = bbox.top() + size.y / 2.0;
        }
        self.scene_rect = Rect::from_center_size(center, size);
    }

    /// Draws the canvas and returns the commands the user issued.
    pub fn ui(&mut self, ui: &mut Ui, input: &CanvasInput<'_>) -> Vec<Command> {
        let mut commands = Vec::new();
        let outer = ui.available_rect_before_wrap();
        self.screen_rect = outer;
        if self.fit_requested {
            self.fit(input.graph, input.analysis, outer.size());
            self.fit_requested = false;
        }
        self.track_palette_drop(ui, outer, &mut commands);

        let scene = egui::Scene::new()
            .zoom_range(0.05..=2.5)
            .drag_pan_buttons(egui::DragPanButtons::SECONDARY | egui::DragPanButtons::MIDDLE);
        let mut scene_rect = self.scene_rect;
        let response = scene
            .show(ui, &mut scene_rect, |ui| {
                if let Some(t) = ui.ctx().layer_transform_to_global(ui.layer_id()) {
                    self.screen_from_scene = t;
                }
                self.contents_ui(ui, input, &mut commands);
            })
            .response;
        self.scene_rect = scene_rect;
        response
            .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "Design canvas"));
        self.background_interaction(ui, &response, input, &mut commands);
        commands
    }

    fn track_palette_drop(&mut self, ui: &Ui, outer: Rect, commands: &mut Vec<Command>) {
        let ctx = ui.ctx().clone();
        if !egui::DragAndDrop::has_payload_of_type::<PaletteItem>(&ctx) {
            self.drop_at = None;
            return;
        }
        if let Some(p) = ctx.pointer_latest_pos() {
            self.drop_at = outer
                .contains(p)
                .then(|| self.screen_from_scene.inverse() * p);
        }
        if ctx.input(|i| i.pointer.any_released())
            && let Some(at) = self.drop_at.take()
            && let Some(item) = egui::DragAndDrop::take_payload::<PaletteItem>(&ctx)
        {
            commands.push(Command::AddItem {
                item: (*item).clone(),
                position: [at.x - NODE_SIZE.x / 2.0, at.y - NODE_SIZE.y / 2.0],
            });
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

    fn contents_ui(&mut self, ui: &mut Ui, input: &CanvasInput<'_>, commands: &mut Vec<Command>) {
        let graph = input.graph;
        let analysis = input.analysis;
        let painter = ui.painter().clone();
        let pointer = self.pointer_in_scene(ui);
        let total_macs: u64 = analysis.nodes.iter().flatten().map(|n| n.cost.macs).sum();
        let total_ms: f64 = input
            .live
            .map_or(0.0, |l| l.values().map(|x| x.ms_per_batch).sum());
        let rects: Vec<Option<Rect>> = (0..graph.id_capacity())
            .map(|i| self.node_rect(graph, analysis, NodeId(i as u32)))
            .collect();
        let rect_of = |id: NodeId| rects.get(id.index()).copied().flatten();
        for r in rects.iter().flatten() {
            ui.expand_to_include_rect(*r);
        }

        // Wires first, under the nodes.
        let visuals = ui.visuals().clone();
        for e in graph.edges() {
            let (Some(fr), Some(tr)) = (rect_of(e.from), rect_of(e.to)) else {
                continue;
            };
            let a = output_port_pos(fr);
            let b = input_port_pos(tr, e.input, port_count(graph, e.to));
            let bad = analysis.node(e.to).is_some_and(|n| n.error.is_some());
            let color = if bad {
                Color32::from_rgb(220, 80, 80)
            } else {
                visuals.widgets.noninteractive.fg_stroke.color
            };
            draw_wire(&painter, a, b, Stroke::new(1.6, color));
            if let Some(shape) = analysis.node(e.from).and_then(|n| n.output_shape) {
                let mid = pos2((a.x + b.x) / 2.0, (a.y + b.y) / 2.0);
                let galley = painter.layout_no_wrap(
                    shape.to_string(),
                    FontId::monospace(10.0),
                    visuals.weak_text_color(),
                );
                let r = Rect::from_center_size(mid, galley.size() + vec2(6.0, 2.0));
                painter.rect_filled(r, 3.0, visuals.extreme_bg_color);
                painter.galley(r.min + vec2(3.0, 1.0), galley, Color32::WHITE);
            }
        }

        // Nodes.
        for (id, node) in graph.nodes() {
            let Some(rect) = rect_of(id) else { continue };
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
                let r = Rect::from_min_size(rect.right_top() + vec2(-24.0, 22.0), vec2(18.0, 18.0));
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
                    let r =
                        Rect::from_min_size(rect.right_top() + vec2(-44.0, 22.0), vec2(38.0, 16.0));
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
                        rect.left_bottom() + vec2(6.0, if live.is_some() { -13.0 } else { -14.0 }),
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
                if ui.button("Duplicate").clicked() {
                    if !selected {
                        commands.push(Command::Select(BTreeSet::from([id])));
                    }
                    commands.push(Command::Duplicate);
                }
                if ui.button("Delete").clicked() {
                    let ids = if selected {
                        input.selection.clone()
                    } else {
                        BTreeSet::from([id])
                    };
                    commands.push(Command::Delete(ids));
                }
            });

            // Ports.
            let n_in = port_count(graph, id);
            let inputs = graph.inputs_of(id);
            for i in 0..n_in {
                let p = input_port_pos(rect, i, n_in);
                let wired = inputs.get(i).copied().flatten();
                let r = Rect::from_center_size(p, Vec2::splat(PORT_RADIUS * 2.5));
                let pr = ui.interact(r, Id::unique(("netloom_in", id.0, i)), Sense::click());
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
                    let pr = pr.on_hover_text("Click to disconnect");
                    if pr.clicked() {
                        commands.push(Command::Disconnect(Edge {
                            from,
                            to: id,
                            input: i,
                        }));
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
            if let Some(fr) = rect_of(from) {
                draw_wire(
                    &painter,
                    output_port_pos(fr),
                    end,
                    Stroke::new(2.0, visuals.selection.stroke.color),
                );
            }
            if !ui.input(|i| i.pointer.primary_down()) {
                if let Some((to, input)) = self.drop_target(graph, &rect_of, end) {
                    commands.push(Command::Connect { from, to, input });
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
