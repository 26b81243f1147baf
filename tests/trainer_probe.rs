//! What the designer asks of a run beyond progress: per-layer reports with
//! statistics on demand, a prediction gallery, and feature maps of any layer
//! for a chosen image — while paused and after the run, until `Close`.

mod common;

use common::*;
use netloom::train::trainer::{Command, Event, GALLERY_SIZE, RunEnd, RunState, Trainer};
use std::time::Duration;

fn wait_for<T>(t: &netloom::train::TrainerHandle, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    loop {
        match t.events().recv_timeout(Duration::from_secs(60)) {
            Ok(Event::Failed(m)) => panic!("failed: {m}"),
            Ok(e) => {
                if let Some(v) = pick(e) {
                    return v;
                }
            }
            Err(e) => panic!("no event: {e}"),
        }
    }
}

/// Asks for layer `node`'s output on image `image` and waits for the answer.
fn probe(
    t: &netloom::train::TrainerHandle,
    node: &str,
    image: usize,
) -> Result<netloom::train::FeatureMaps, String> {
    t.send(Command::Probe {
        node: node.into(),
        image,
    });
    wait_for(t, |e| match e {
        Event::FeatureMaps(m) => Some(m.map_err(|e| e.to_string())),
        _ => None,
    })
}

#[test]
fn layer_reports_carry_times_and_statistics_when_watched() {
    let mut c = config(3, 5000);
    c.autostart = false;
    let t = Trainer::spawn(c).expect("spawn");
    t.send(Command::Watch(true));
    t.send(Command::Start);
    let layers = wait_for(&t, |e| match e {
        Event::Layers(l) => Some(l),
        _ => None,
    });
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    assert!(names.contains(&"c1") && names.contains(&"fc"), "{names:?}");
    let c1 = layers.iter().find(|l| l.name == "c1").expect("c1");
    assert!(c1.ms_per_batch > 0.0);
    let stats = c1.stats.expect("watched");
    assert!(stats.std > 0.0 && stats.mean.is_finite());
    assert!(stats.grad_norm.is_some_and(|g| g > 0.0), "{stats:?}");
    // BatchNorm's own output (the plan fuses its ReLU into it unless
    // watching): normalised, so spread near 1.
    let bn1 = layers.iter().find(|l| l.name == "bn1").expect("bn1");
    let bn1 = bn1.stats.expect("watched");
    assert!(bn1.std > 0.5 && bn1.mean.abs() < 0.5, "{bn1:?}");
    // A ReLU has no parameters, so no gradient norm; its outputs are ≥ 0.
    let r1 = layers.iter().find(|l| l.name == "r1").expect("r1");
    let r1 = r1.stats.expect("watched");
    assert!(r1.grad_norm.is_none() && r1.mean > 0.0);
    // Switching the watch off: later reports carry times only.
    t.send(Command::Watch(false));
    wait_for(&t, |e| match e {
        Event::Layers(l) if l.iter().all(|x| x.stats.is_none()) => Some(()),
        _ => None,
    });
    t.send(Command::Stop);
    let rest: Vec<Event> = t.events().iter().collect();
    assert!(rest.iter().any(|e| matches!(e, Event::Stopped { .. })));
}

#[test]
fn finished_run_has_a_gallery_with_mistakes_first_and_answers_probes_until_closed() {
    let mut c = config(3, 1);
    c.linger = true;
    c.optimizer.learning_rate = 0.002; // one short epoch: some mistakes remain
    let t = Trainer::spawn(c).expect("spawn");
    let test = wait_for(&t, |e| match e {
        Event::Finished(r) => Some(r),
        _ => None,
    });
    assert_eq!(test.samples.len(), 30.min(GALLERY_SIZE));
    assert_eq!(test.image_shape, (H, H, 3));
    let first_right = test
        .samples
        .iter()
        .position(|s| s.label == s.predicted)
        .unwrap_or(test.samples.len());
    assert!(
        test.samples[first_right..]
            .iter()
            .all(|s| s.label == s.predicted),
        "mistakes must come first"
    );
    let wrong = test.confusion.iter().enumerate().fold(0, |acc, (i, row)| {
        acc + row
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, n)| n)
            .sum::<usize>()
    });
    assert_eq!(
        first_right, wrong,
        "gallery mistakes match the confusion matrix"
    );
    assert!(test.samples.iter().all(|s| s.image.len() == H * H * 3));

    // The run is over but the trainer still answers probes.
    let sample = test.samples[0].clone();
    let maps = probe(&t, "c2", sample.index).expect("feature maps");
    assert_eq!(maps.shape, (H, H, 6));
    assert_eq!(maps.values.len(), H * H * 6);
    assert_eq!(maps.input, sample.image);
    assert_eq!(
        (maps.label, maps.predicted),
        (sample.label, sample.predicted)
    );
    // Asking twice gives the same maps (evaluation mode, nothing moves).
    let again = probe(&t, "c2", sample.index).expect("feature maps");
    assert_eq!(again.values, maps.values);
    // Every layer's own output, even one the evaluation pass fuses into the
    // next (c1 → bn1 → r1): two images give two different maps, and the
    // conv's output is not yet rectified.
    let a = probe(&t, "c1", 3).expect("c1 maps");
    let b = probe(&t, "c1", 5).expect("c1 maps");
    assert_ne!(a.values, b.values);
    assert!(a.values.iter().any(|&v| v < 0.0));
    // A vector output comes back as 1×1×n.
    let fc = probe(&t, "fc", 0).expect("fc maps");
    assert_eq!(fc.shape, (1, 1, 3));
    // Bad requests get a reason, not a crash.
    let err = probe(&t, "nope", 0).expect_err("unknown layer");
    assert!(err.contains("`nope`"), "{err}");
    let err = probe(&t, "c1", 999).expect_err("out of range");
    assert!(err.contains("30 images"), "{err}");
    // Stop and state changes no longer matter; Close ends the thread.
    t.send(Command::Resume);
    t.send(Command::Close);
    let rest: Vec<Event> = t.events().iter().collect();
    assert!(
        !rest.iter().any(|e| matches!(e, Event::State(_))),
        "{rest:?}"
    );
    assert_eq!(t.join().expect("join").end, RunEnd::Finished);
}

#[test]
fn probes_are_answered_while_paused_and_leave_the_run_unchanged() {
    let reference = {
        let (events, _) = run(config(3, 1));
        batch_losses(&events)
    };
    let mut c = config(3, 1);
    c.autostart = false;
    let t = Trainer::spawn(c).expect("spawn");
    t.send(Command::Step);
    wait_for(&t, |e| (e == Event::State(RunState::Paused)).then_some(()));
    let maps = probe(&t, "r2", 3).expect("maps while paused");
    assert!(maps.values.iter().all(|&v| v >= 0.0));
    t.send(Command::Resume);
    let events: Vec<Event> = t.events().iter().collect();
    let mut losses = vec![reference[0]];
    losses.extend(batch_losses(&events));
    assert_eq!(losses, reference, "a probe must not change training");
}
