//! Any bytes given to the ONNX importer either import (and the design then
//! infers, totals and re-saves cleanly) or produce an error; never a panic,
//! an overflow (with `--debug-assertions`) or an absurd allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloom::graph::file;
use netloom::infer::analyze;
use netloom::interop::onnx;

fuzz_target!(|data: &[u8]| {
    if let Ok(imported) = onnx::import_bytes(data, "fuzz") {
        let analysis = analyze(&imported.graph);
        let _ = analysis.totals(&Default::default());
        let _ = analysis.error_summary(&imported.graph, 3);
        if analysis.is_valid() {
            let saved = file::to_json(&imported.graph);
            assert!(file::from_json(&saved).is_ok(), "an imported design must reload");
        }
    }
});
