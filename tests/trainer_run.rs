//! The trainer thread end to end on a tiny design: learning, events, the
//! final Dense resize, refusal of designs that cannot fit, NaN stop, and
//! pause/resume/step/stop.

mod common;

use common::*;
use netloom::train::trainer::{Command, Event, RunEnd, RunState, Trainer};
use std::time::Duration;

#[test]
fn learns_and_reports_every_epoch_and_the_test_split() {
    let (events, outcome) = run(config(3, 6));
    assert_eq!(outcome.end, RunEnd::Finished);
    assert!(
        matches!(events.first(), Some(Event::Started(_))),
        "{:?}",
        events.first()
    );
    let epochs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(epochs.len(), 6);
    assert_eq!(epochs[5].epoch, 6);
    assert!(
        epochs
            .iter()
            .all(|e| e.val_acc.is_some() && e.seconds > 0.0)
    );
    assert!(!epochs[0].layer_times.is_empty());
    let losses = batch_losses(&events);
    assert_eq!(losses.len(), 6 * 6); // 96 images / batch 16
    assert!(losses[losses.len() - 1] < losses[0], "{losses:?}");
    let test = outcome.test.expect("test result");
    assert!(test.test_acc >= 0.9, "test acc {}", test.test_acc);
    assert!(test.test_acc_without_precise_bn.is_some());
    let total: usize = test.confusion.iter().flatten().sum();
    assert_eq!(total, 30);
    assert!(matches!(events.last(), Some(Event::Finished(_))));
}

#[test]
fn final_dense_is_resized_to_the_class_count_and_says_so() {
    let (events, outcome) = run(config(6, 1));
    assert_eq!(outcome.end, RunEnd::Finished);
    let notes = notices(&events);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("final Dense `fc` had 6 units; changed to 3")),
        "{notes:?}"
    );
    let fc = outcome
        .params
        .iter()
        .find(|p| p.name == "fc.weight")
        .expect("fc.weight");
    assert_eq!(fc.shape, vec![6, 3]);
}

#[test]
fn a_design_without_a_final_dense_that_does_not_fit_is_refused() {
    let mut c = config(3, 1);
    // Remove fc so the design ends GAP(6) → Softmax: 6 outputs, 3 classes.
    let g = &mut c.graph;
    let fc = g.find("fc").expect("fc");
    let gap = g.find("gap").expect("gap");
    let sm = g.find("softmax").expect("softmax");
    g.remove_node(fc);
    g.connect(gap, sm, 0).expect("connect");
    let (events, outcome) = run(c);
    let RunEnd::Failed(msg) = &outcome.end else {
        panic!("expected a refusal, got {:?}", outcome.end)
    };
    assert!(
        msg.contains("6 values but the dataset has 3 classes"),
        "{msg}"
    );
    assert!(msg.contains("`gap`"), "{msg}");
    assert!(events.iter().any(|e| matches!(e, Event::Failed(_))));
}

#[test]
fn non_finite_loss_stops_and_keeps_finite_weights() {
    let mut c = config(3, 3);
    c.optimizer.learning_rate = 1e30;
    let (events, outcome) = run(c);
    let RunEnd::Failed(msg) = &outcome.end else {
        panic!("expected a NaN stop, got {:?}", outcome.end)
    };
    assert!(
        msg.contains("NaN") || msg.contains("infinite") || msg.contains("non-finite"),
        "{msg}"
    );
    assert!(
        msg.contains("kept the weights from before that batch"),
        "{msg}"
    );
    assert!(!outcome.params.is_empty());
    assert!(
        outcome
            .params
            .iter()
            .all(|p| p.data.iter().all(|v| v.is_finite()))
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Finished(_))));
}

fn next_state(t: &netloom::train::TrainerHandle) -> (RunState, usize) {
    // Returns the next State event and how many Batch events preceded it.
    let mut batches = 0;
    loop {
        match t.events().recv_timeout(Duration::from_secs(20)) {
            Ok(Event::State(s)) => return (s, batches),
            Ok(Event::Batch { .. }) => batches += 1,
            Ok(Event::Failed(m)) => panic!("failed: {m}"),
            Ok(_) => {}
            Err(e) => panic!("no state event: {e}"),
        }
    }
}

#[test]
fn waits_for_start_then_pauses_steps_resumes_and_stops() {
    let mut c = config(3, 5000);
    c.autostart = false;
    let t = Trainer::spawn(c).expect("spawn");
    assert_eq!(next_state(&t), (RunState::Waiting, 0));
    // Step from waiting: exactly one batch, then paused.
    t.send(Command::Step);
    assert_eq!(next_state(&t), (RunState::Paused, 1));
    t.send(Command::Step);
    assert_eq!(next_state(&t), (RunState::Paused, 1));
    t.send(Command::Resume);
    assert_eq!(next_state(&t).0, RunState::Running);
    t.send(Command::Pause);
    let (s, _) = next_state(&t);
    assert_eq!(s, RunState::Paused);
    // Nothing happens while paused.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !t.drain().iter().any(|e| matches!(e, Event::Batch { .. })),
        "batches while paused"
    );
    t.send(Command::Stop);
    let rest: Vec<Event> = t.events().iter().collect();
    assert!(
        rest.iter().any(|e| matches!(e, Event::Stopped { .. })),
        "{rest:?}"
    );
    let outcome = t.join().expect("join");
    assert_eq!(outcome.end, RunEnd::Stopped);
    assert!(!outcome.params.is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn the_trainer_thread_is_named() {
    let mut c = config(3, 1);
    c.autostart = false;
    let t = Trainer::spawn(c).expect("spawn");
    assert_eq!(next_state(&t).0, RunState::Waiting);
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "netloom-trainer"), "{names:?}");
    t.send(Command::Stop);
    assert_eq!(t.join().expect("join").end, RunEnd::Stopped);
}

#[cfg(target_os = "linux")]
#[test]
fn a_background_run_trains_at_low_priority_on_its_own_workers() {
    let mut c = config(3, 1);
    c.autostart = false;
    c.background = true;
    let t = Trainer::spawn(c).expect("spawn");
    assert_eq!(next_state(&t).0, RunState::Waiting);
    // (thread name, niceness) of every thread of this process.
    let threads: Vec<(String, i64)> = std::fs::read_dir("/proc/self/task")
        .expect("procfs")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // Fields after the parenthesised name; niceness is field 19.
            let rest = &stat[stat.rfind(')')? + 2..];
            let nice = rest.split(' ').nth(16)?.parse().ok()?;
            Some((name.trim().to_string(), nice))
        })
        .collect();
    // Tests run in parallel in this process, so other runs' trainers (at
    // normal priority) may be listed too: this run's must be among them.
    // The trainer asks for niceness 10; under `nice cargo test` the tests
    // already run at 10 or more.
    let base = threads
        .iter()
        .map(|(_, nice)| *nice)
        .min()
        .expect("some thread");
    let lowered = base.max(10);
    let niced = |n: &str| {
        threads
            .iter()
            .any(|(name, nice)| name == n && *nice == lowered)
    };
    assert!(niced("netloom-trainer"), "{threads:?}");
    assert!(niced("netloom-train-0"), "{threads:?}");
    // This (test) thread keeps its priority.
    assert!(threads.iter().any(|(_, nice)| *nice == base), "{threads:?}");
    t.send(Command::Stop);
    assert_eq!(t.join().expect("join").end, RunEnd::Stopped);
}
