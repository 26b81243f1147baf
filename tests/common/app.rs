//! The designer under egui_kittest: a harness on a design, clicks by
//! accessible label, and waiting for the app's background threads (trainer,
//! evaluator) by running frames.

use egui::vec2;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use netloom::app::NetloomApp;
use netloom::graph::Graph;
use std::time::{Duration, Instant};

pub type AppHarness = Harness<'static, NetloomApp>;

/// How long [`wait_until`] waits before it fails the test.
const WAIT: Duration = Duration::from_secs(180);

/// The app on `graph` at 1400×900, after its first frames.
pub fn harness(graph: Graph) -> AppHarness {
    let app = NetloomApp::for_tests(graph);
    let mut h = Harness::builder()
        .with_size(vec2(1400.0, 900.0))
        .with_max_steps(32)
        .build_ui_state(|ui, app: &mut NetloomApp| app.ui(ui), app);
    h.run();
    h
}

/// Whether some accessible label contains `text`.
pub fn has(h: &Harness<'_, NetloomApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// The accessible labels (or values) that contain `text`.
pub fn labels_containing(h: &Harness<'_, NetloomApp>, text: &str) -> Vec<String> {
    h.query_all_by_label_contains(text)
        .filter_map(|n| {
            let node = n.accesskit_node();
            node.label().or_else(|| node.value())
        })
        .collect()
}

/// Clicks the button labelled `label`; the frames after it must settle.
pub fn click(h: &mut AppHarness, label: &str) {
    h.get_by_role_and_label(egui::Role::Button, label)
        .click_accesskit();
    h.run();
}

/// [`click`] while something in the window animates (an evaluation's
/// spinner repaints every frame, so the frames never settle).
pub fn click_busy(h: &mut AppHarness, label: &str) {
    h.get_by_role_and_label(egui::Role::Button, label)
        .click_accesskit();
    h.run_ok();
}

/// Runs frames until `done` holds; fails the test after [`WAIT`], saying
/// what it waited for and where the runs and evaluations were.
pub fn wait_until(h: &mut AppHarness, what: &str, done: impl Fn(&AppHarness) -> bool) {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        h.run_ok();
        if done(h) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = &h.state().training;
    panic!(
        "timed out waiting for {what}; runs {:?}, batches of the current run {}, evaluation error {:?}",
        s.runs.iter().map(|r| &r.status).collect::<Vec<_>>(),
        s.current().map_or(0, |r| r.batch_loss.len()),
        s.eval_error
    );
}
