//! UI tests of the canvas: fit, find, the error list, inserting a layer
//! into a wire and rewiring an input, driven by accessible labels.
#![cfg(feature = "gui")]

use egui::{Key, Modifiers, Pos2, vec2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use netloom::app::NetloomApp;
use netloom::graph::layout::Orientation;
use netloom::graph::{Graph, LayerKind, blocks, layout, route};

fn harness(graph: Graph) -> Harness<'static, NetloomApp> {
    let app = NetloomApp::for_tests(graph);
    let mut h = Harness::builder()
        .with_size(vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut NetloomApp| app.ui(ui), app);
    // Let the panels settle (the bottom panel grows to its size over some frames).
    for _ in 0..80 {
        h.step();
    }
    h.run();
    h
}

fn drag(h: &mut Harness<'_, NetloomApp>, from: Pos2, to: Pos2) {
    h.hover_at(from);
    h.run();
    h.drag_at(from);
    h.run();
    for t in [0.1, 0.4, 0.7, 1.0] {
        h.hover_at(from + (to - from) * t);
        h.run();
    }
    h.drop_at(to);
    h.run();
}

/// Screen rect of a node's card.
fn node_on_screen(h: &Harness<'_, NetloomApp>, name: &str) -> egui::Rect {
    let r = h.get_by_label_contains(&format!("{name} · ")).rect();
    let c = &h.state().tab().canvas;
    egui::Rect::from_min_max(c.to_screen(r.min), c.to_screen(r.max))
}

fn canvas_point(h: &Harness<'_, NetloomApp>, label: &str) -> Pos2 {
    let r = h.get_by_label(label).rect();
    h.state().tab().canvas.to_screen(r.center())
}

#[test]
fn fit_shows_every_node_of_resnet_mini() {
    let mut h = harness(blocks::resnet_mini());
    let canvas = h.state().tab().canvas.screen_rect;
    let names: Vec<String> = h
        .state()
        .doc()
        .graph
        .nodes()
        .map(|(_, n)| n.name.clone())
        .collect();
    assert_eq!(names.len(), 31);
    for name in &names {
        let r = node_on_screen(&h, name);
        assert!(
            canvas.contains_rect(r),
            "{name} at {r:?} is outside {canvas:?}"
        );
    }
    // Zoom in, then F fits again.
    h.state_mut().tabs[0]
        .canvas
        .focus(egui::Rect::from_min_size(Pos2::ZERO, vec2(10.0, 10.0)));
    h.run();
    // Zoomed in on the input: the head of the network is out of view (and not drawn).
    let head_hidden = h.query_by_label_contains("softmax · ").is_none()
        || !canvas.contains_rect(node_on_screen(&h, "softmax"));
    assert!(head_hidden);
    h.key_press(Key::F);
    h.run();
    h.run();
    for name in &names {
        assert!(
            canvas.contains_rect(node_on_screen(&h, name)),
            "{name} after F"
        );
    }
}

#[test]
fn ctrl_f_finds_a_layer_selects_it_and_brings_it_into_view() {
    let mut h = harness(blocks::resnet_mini());
    h.key_press_modifiers(Modifiers::COMMAND, Key::F);
    h.run();
    h.get_by_role_and_label(egui::Role::TextInput, "Find layer")
        .type_text("block3_b_bn");
    h.run();
    h.get_by_label("Go to block3_b_bn (BatchNorm)").click();
    h.run();
    h.run();
    let g = &h.state().doc().graph;
    let id = g.find("block3_b_bn").unwrap();
    assert_eq!(
        h.state().selection().iter().copied().collect::<Vec<_>>(),
        vec![id]
    );
    let canvas = h.state().tab().canvas.screen_rect;
    let r = node_on_screen(&h, "block3_b_bn");
    assert!(canvas.contains_rect(r), "{r:?} not in {canvas:?}");
    assert!(r.width() > 150.0, "zoomed in to a readable card: {r:?}");
}

#[test]
fn error_list_entries_jump_to_the_layer() {
    let mut g = blocks::resnet_mini();
    // Bypass block2's projection: the Add's shapes no longer match.
    let (proj, bn) = (
        g.find("block2_proj").unwrap(),
        g.find("block2_proj_bn").unwrap(),
    );
    g.remove_node(proj);
    g.remove_node(bn);
    let (from, add) = (g.find("block1_out").unwrap(), g.find("block2_add").unwrap());
    g.connect(from, add, 1).unwrap();
    let mut h = harness(g);
    h.get_by_label("1 layer with errors").click();
    h.run();
    h.get_by_label_contains("block2_add: ").click();
    h.run();
    h.run();
    let add = h.state().doc().graph.find("block2_add").unwrap();
    assert!(h.state().selection().contains(&add));
    let canvas = h.state().tab().canvas.screen_rect;
    assert!(canvas.contains_rect(node_on_screen(&h, "block2_add")));
}

#[test]
fn dropping_a_layer_on_a_wire_inserts_it() {
    let mut h = harness(blocks::resnet_mini());
    let g = h.state().doc().graph.clone();
    let (pool, conv) = (g.find("stem_pool").unwrap(), g.find("block1_a").unwrap());
    // The wire's route, as the canvas draws it.
    let routes = route::route(&g, &route::node_boxes(&g), Orientation::TopToBottom);
    let wire = routes
        .wires
        .iter()
        .find(|w| w.edge.from == pool && w.edge.to == conv)
        .unwrap();
    let (a, b) = (wire.points[0], wire.points[1]);
    let mid = Pos2::new((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0);
    let target = h.state().tab().canvas.to_screen(mid);
    let src = h
        .get_by_role_and_label(egui::Role::Button, "Conv2D")
        .rect()
        .center();
    drag(&mut h, src, target);
    let g = &h.state().doc().graph;
    let new = g.find("conv2d_1").expect("a conv layer was added");
    assert_eq!(g.inputs_of(new), vec![Some(pool)]);
    assert_eq!(g.inputs_of(conv), vec![Some(new)]);
    assert!(h.state().doc().analysis.is_valid());
}

#[test]
fn dragging_a_connected_input_rewires_it_in_one_undo_step() {
    let mut g = Graph::new("t");
    let input = g
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
    let a = g.add_node("a", LayerKind::Relu, [0.0, 0.0]).unwrap();
    let b = g.add_node("b", LayerKind::Relu, [0.0, 0.0]).unwrap();
    let c = g.add_node("c", LayerKind::Tanh, [0.0, 0.0]).unwrap();
    g.connect(input, a, 0).unwrap();
    g.connect(a, b, 0).unwrap();
    g.connect(input, c, 0).unwrap();
    layout::auto_layout(&mut g);
    let before = g.clone();
    let mut h = harness(g);
    // Pick up the end of a → b at b's input and drop it on c's input.
    let from = canvas_point(&h, "b input 0");
    let to = canvas_point(&h, "c input 0");
    drag(&mut h, from, to);
    let g = &h.state().doc().graph;
    assert_eq!(g.inputs_of(b), vec![None], "{:?}", g.edges());
    assert_eq!(g.inputs_of(c), vec![Some(a)]);
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.run();
    assert_eq!(h.state().doc().graph, before);
}
