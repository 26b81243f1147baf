//! The layering of `src/`, read from the source tree: data flows one way,
//! graph → infer → train → kernels, and the app sits on top.
//!
//! Every `.rs` file under a module's folder is scanned for paths into a
//! forbidden module (`crate::app`, `netloom::app`, `super::super::app`, …)
//! or a forbidden crate (`egui::`, `use eframe`, …), outside comments.

use std::path::{Path, PathBuf};

/// A module folder under `src/` and the path roots its code may not name.
struct Rule {
    module: &'static str,
    forbidden: &'static [&'static str],
}

const MODULES_ABOVE_KERNELS: &[&str] = &[
    "graph", "infer", "train", "data", "app", "interop", "render", "cli",
];
const UI_CRATES: &[&str] = &["egui", "eframe", "egui_plot", "egui_extras", "rfd"];

fn rules() -> Vec<(Rule, Vec<String>)> {
    let crate_paths = |mods: &[&str]| -> Vec<String> {
        mods.iter()
            .flat_map(|m| {
                [
                    format!("crate::{m}"),
                    format!("netloom::{m}"),
                    format!("super::super::{m}"),
                ]
            })
            .collect()
    };
    let extern_paths = |crates: &[&str]| -> Vec<String> {
        crates
            .iter()
            .flat_map(|c| [format!("{c}::"), format!("use {c}")])
            .collect()
    };
    let mut graph_infer = crate_paths(&["app", "kernels", "train", "data"]);
    graph_infer.extend(extern_paths(UI_CRATES));
    vec![
        (
            Rule {
                module: "kernels",
                forbidden: MODULES_ABOVE_KERNELS,
            },
            crate_paths(MODULES_ABOVE_KERNELS),
        ),
        (
            Rule {
                module: "graph",
                forbidden: &["app", "kernels", "train", "data", "egui/eframe"],
            },
            graph_infer.clone(),
        ),
        (
            Rule {
                module: "infer",
                forbidden: &["app", "kernels", "train", "data", "egui/eframe"],
            },
            graph_infer,
        ),
        (
            Rule {
                module: "app",
                forbidden: &["kernels"],
            },
            crate_paths(&["kernels"]),
        ),
    ]
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(line number, line)` of each line of `text` naming one of `paths`,
/// comment lines and trailing comments left out.
fn offending_lines(text: &str, paths: &[String]) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let code = line.split("//").next().unwrap_or("");
            let hit = paths.iter().any(|p| {
                code.match_indices(p.as_str()).any(|(at, _)| {
                    // Whole path segments: `egui::` must not match `my_egui::`,
                    // nor `crate::train` match `crate::trainer_like`.
                    let ident = |c: char| c.is_alphanumeric() || c == '_';
                    let open_end = p.ends_with(ident);
                    let glued_before = code[..at].chars().next_back().is_some_and(ident);
                    let glued_after =
                        open_end && code[at + p.len()..].chars().next().is_some_and(ident);
                    !(glued_before || glued_after)
                })
            });
            hit.then(|| (i + 1, line.trim().to_string()))
        })
        .collect()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn each_layer_imports_only_what_is_below_it() {
    let mut violations = Vec::new();
    for (rule, paths) in rules() {
        let mut files = Vec::new();
        rust_files(&src().join(rule.module), &mut files);
        assert!(!files.is_empty(), "src/{} has no Rust files", rule.module);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            for (n, line) in offending_lines(&text, &paths) {
                violations.push(format!(
                    "{}:{n}: `{}` may not use {:?}: {line}",
                    file.display(),
                    rule.module,
                    rule.forbidden
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Only the command line's designer entry (`netloom` with no subcommand)
/// reaches into the app; no library module does.
#[test]
fn nothing_outside_the_app_imports_it() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let app = src().join("app");
    let entry = src().join("cli").join("mod.rs");
    let paths = vec!["crate::app".to_string(), "netloom::app".to_string()];
    let mut violations = Vec::new();
    for file in files
        .iter()
        .filter(|f| !f.starts_with(&app) && **f != entry)
    {
        let text = std::fs::read_to_string(file).expect("readable source");
        for (n, line) in offending_lines(&text, &paths) {
            violations.push(format!("{}:{n}: {line}", file.display()));
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_scanner_sees_imports_and_ignores_comments() {
    let paths = vec!["crate::train".to_string(), "egui::".to_string()];
    let text = "use crate::train::Plan;\n// crate::train in a comment\nlet x = 1; // egui::Ui\nuse crate::trainer_like;\nfn f(ui: &mut egui::Ui) {}\nuse my_egui::X;\n";
    let hits: Vec<usize> = offending_lines(text, &paths)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(hits, vec![1, 5]);
}
