//! Any bytes given to the design loader either load (and then infer and
//! re-save cleanly) or produce an error; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloom::graph::file;
use netloom::infer::analyze;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(graph) = file::from_json(&text) {
        let analysis = analyze(&graph);
        let _ = analysis.totals(&Default::default());
        let saved = file::to_json(&graph);
        assert!(file::from_json(&saved).is_ok(), "a saved design must reload");
    }
});
