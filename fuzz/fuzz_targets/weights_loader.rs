//! Any bytes given to the safetensors weights reader either load (and are
//! then applied to lenet5's plan and converted to framework layouts) or
//! produce an error; never a panic or an overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloom::graph::{Graph, file};
use netloom::infer::analyze;
use netloom::interop::{Tensors, to_framework};
use netloom::train::{Plan, weights};
use std::path::Path;
use std::sync::OnceLock;

const LENET5: &str = include_str!("../../presets/lenet5.json");

fn lenet5() -> &'static (Graph, Plan) {
    static PLAN: OnceLock<(Graph, Plan)> = OnceLock::new();
    PLAN.get_or_init(|| {
        let graph = file::from_json(LENET5).expect("lenet5 loads");
        let plan = Plan::compile(&graph, &analyze(&graph), 1, 0).expect("lenet5 compiles");
        (graph, plan)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = weights::from_safetensors(data, Path::new("fuzz")) {
        let (graph, plan) = lenet5();
        let mut params = plan.params.clone();
        let _ = weights::apply(&file, &mut params).to_string();
        let tensors: Tensors = file
            .tensors
            .into_iter()
            .map(|(name, shape, values)| (name, (shape, values)))
            .collect();
        let _ = to_framework(graph, &analyze(graph), &tensors);
    }
});
