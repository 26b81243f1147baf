//! Random designs, valid and broken, never panic the loader or inference.

use netloom::graph::{blocks, file};
use netloom::infer::{Conventions, Report, analyze};
use proptest::prelude::*;
use serde_json::{Value, json};

fn kind_json() -> impl Strategy<Value = Value> {
    let small = 0u32..6;
    prop_oneof![
        (small.clone(), small.clone(), 0u32..5).prop_map(|(h, w, c)| json!({"kind":"input","height":h*8,"width":w*8,"channels":c})),
        (0u32..9, 0u32..6, 0u32..3, 0u32..3, prop_oneof![Just(json!("same")), Just(json!("valid")), (0u32..3).prop_map(|p| json!({"explicit":[p,p,p,p]}))])
            .prop_map(|(f, k, s, g, p)| json!({"kind":"conv2d","filters":f,"kernel":[k,k],"stride":[s,s],"padding":p,"groups":g})),
        (0u32..4, 0u32..3, any::<bool>()).prop_map(|(k, s, c)| json!({"kind":"max_pool2d","kernel":[k,k],"stride":[s,s],"ceil_mode":c})),
        (0u32..4, 0u32..3).prop_map(|(k, s)| json!({"kind":"avg_pool2d","kernel":[k,k],"stride":[s,s],"padding":"same"})),
        (0u32..3).prop_map(|p| json!({"kind":"zero_pad2d","padding":[p,p,p,p]})),
        Just(json!({"kind":"global_avg_pool"})),
        Just(json!({"kind":"batch_norm"})),
        Just(json!({"kind":"relu"})),
        Just(json!({"kind":"softmax"})),
        Just(json!({"kind":"flatten"})),
        (0u32..20).prop_map(|u| json!({"kind":"dense","units":u})),
        Just(json!({"kind":"add"})),
        Just(json!({"kind":"concat"})),
        Just(json!({"kind":"conv3d"})),
        (-1.0f64..2.0).prop_map(|r| json!({"kind":"dropout","rate":r})),
    ]
}

fn design_json() -> impl Strategy<Value = Value> {
    (1usize..12)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(kind_json(), n),
                prop::collection::vec((0..n + 1, 0..n + 1, 0usize..4), 0..2 * n),
                prop::collection::vec(0..n, n),
            )
        })
        .prop_map(|(kinds, edges, names)| {
            let nodes: Vec<Value> = kinds
                .into_iter()
                .zip(names)
                .enumerate()
                .map(|(i, (mut k, dup))| {
                    // Occasionally reuse a name to provoke duplicate-name errors.
                    let name = if dup == 0 && i > 0 { "n0".to_string() } else { format!("n{i}") };
                    k["name"] = json!(name);
                    k
                })
                .collect();
            let edges: Vec<Value> = edges
                .into_iter()
                .map(|(a, b, i)| json!({"from": format!("n{a}"), "to": format!("n{b}"), "input": i}))
                .collect();
            json!({"format":"netloom-design","version":1,"name":"random","nodes":nodes,"edges":edges})
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_designs_load_or_fail_cleanly(design in design_json()) {
        let text = design.to_string();
        match file::from_json(&text) {
            Ok(graph) => {
                let analysis = analyze(&graph);
                let report = Report::new(&graph, &analysis, &Conventions::default());
                prop_assert_eq!(report.layers.len(), graph.len());
                // A loaded design saves and reloads to the same file.
                let saved = file::to_json(&graph);
                let again = file::from_json(&saved).expect("a saved design reloads");
                prop_assert_eq!(file::to_json(&again), saved);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn truncated_or_corrupted_files_never_panic(cut in 0usize..4000, flip in 0usize..4000, byte in any::<u8>()) {
        let text = file::to_json(&blocks::resnet_mini());
        let mut bytes = text.into_bytes();
        let flip = flip % bytes.len();
        bytes[flip] = byte;
        bytes.truncate(cut.min(bytes.len()));
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(graph) = file::from_json(&text) {
            let _ = analyze(&graph);
        }
    }
}
