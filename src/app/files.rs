//! Where the app keeps its own files: the recovery autosave and recent files.

use crate::graph::{Graph, file};
use std::path::{Path, PathBuf};

/// Most recent files kept.
const RECENT_LIMIT: usize = 10;

/// The app's data folder: `$XDG_DATA_HOME/netloom` or `~/.local/share/netloom`.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("netloom"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/netloom"))
}

/// The app's own files under one folder (none in tests).
#[derive(Clone, Debug, Default)]
pub struct AppFiles {
    pub dir: Option<PathBuf>,
}

/// A design found in the recovery file.
pub struct Recovery {
    pub graph: Graph,
    /// The file the design was being edited from, if any.
    pub original: Option<PathBuf>,
    /// The other unsaved tabs of that session (compare tabs), in order.
    pub others: Vec<(Graph, Option<PathBuf>)>,
}

/// The recovery files of the `index`-th unsaved tab.
fn recovery_names(index: usize) -> (String, String) {
    if index == 0 {
        ("recovery.json".into(), "recovery.path".into())
    } else {
        (
            format!("recovery-{index}.json"),
            format!("recovery-{index}.path"),
        )
    }
}

impl AppFiles {
    fn path(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(name))
    }

    /// Writes the working design to the recovery file.
    pub fn autosave(&self, graph: &Graph, original: Option<&Path>) -> std::io::Result<()> {
        self.autosave_all(&[(graph, original)])
    }

    /// Writes every unsaved design (one per tab) to its recovery file and
    /// removes those of tabs that are gone.
    pub fn autosave_all(&self, designs: &[(&Graph, Option<&Path>)]) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        for (i, (graph, original)) in designs.iter().enumerate() {
            let (design, meta) = recovery_names(i);
            file::write_atomically(&dir.join(design), file::to_json(graph).as_bytes())?;
            let original = original
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            file::write_atomically(&dir.join(meta), original.as_bytes())?;
        }
        self.remove_recovery_from(designs.len());
        Ok(())
    }

    /// The `index`-th design left behind, with the file it came from.
    fn recovered(&self, index: usize) -> Option<(Graph, Option<PathBuf>)> {
        let (design, meta) = recovery_names(index);
        let graph = file::load(&self.path(&design)?).ok()?;
        let original = self
            .path(&meta)
            .and_then(|p| std::fs::read_to_string(p).ok())
            .filter(|s| !s.trim().is_empty())
            .map(|s| PathBuf::from(s.trim()));
        Some((graph, original))
    }

    /// The designs left behind by a session that did not end cleanly.
    pub fn recovery(&self) -> Option<Recovery> {
        let (graph, original) = self.recovered(0)?;
        let others = (1..).map_while(|i| self.recovered(i)).collect();
        Some(Recovery {
            graph,
            original,
            others,
        })
    }

    /// Removes the recovery files (after a save or a clean exit).
    pub fn clear_recovery(&self) {
        self.remove_recovery_from(0);
    }

    /// Removes the recovery files of tabs `from` and later.
    fn remove_recovery_from(&self, from: usize) {
        for i in from.. {
            let (design, meta) = recovery_names(i);
            let Some(p) = self.path(&design) else { return };
            let existed = std::fs::remove_file(p).is_ok();
            if let Some(m) = self.path(&meta) {
                let _ = std::fs::remove_file(m);
            }
            if !existed && i > 0 {
                return;
            }
        }
    }

    pub fn recent(&self) -> Vec<PathBuf> {
        self.path("recent.txt")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| {
                s.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Puts `path` first in the recent list; returns the new list.
    pub fn push_recent(&self, path: &Path) -> Vec<PathBuf> {
        let mut list = self.recent();
        list.retain(|p| p != path);
        list.insert(0, path.to_path_buf());
        list.truncate(RECENT_LIMIT);
        if let (Some(file_path), Some(dir)) = (self.path("recent.txt"), &self.dir) {
            let text: String = list
                .iter()
                .map(|p| format!("{}\n", p.to_string_lossy()))
                .collect();
            let _ = std::fs::create_dir_all(dir)
                .and_then(|_| file::write_atomically(&file_path, text.as_bytes()));
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autosave_round_trips_and_clears() {
        let dir = std::env::temp_dir().join(format!("netloom-files-{}", std::process::id()));
        let files = AppFiles {
            dir: Some(dir.clone()),
        };
        let g = crate::graph::blocks::inception_5x5_naive();
        files.autosave(&g, Some(Path::new("/tmp/x.json"))).unwrap();
        let r = files.recovery().unwrap();
        assert_eq!(r.graph.len(), g.len());
        assert_eq!(r.original, Some(PathBuf::from("/tmp/x.json")));
        files.clear_recovery();
        assert!(files.recovery().is_none());
        // Every unsaved tab is kept; fewer tabs later remove the extra files.
        let b = crate::graph::blocks::resnet_mini();
        files.autosave_all(&[(&g, None), (&b, None)]).unwrap();
        let r = files.recovery().unwrap();
        assert_eq!(r.others.len(), 1);
        assert_eq!(r.others[0].0.len(), b.len());
        files.autosave_all(&[(&b, None)]).unwrap();
        let r = files.recovery().unwrap();
        assert_eq!((r.graph.len(), r.others.len()), (b.len(), 0));
        files.clear_recovery();
        assert!(files.recovery().is_none());
        let list = files.push_recent(Path::new("/a.json"));
        let list2 = files.push_recent(Path::new("/b.json"));
        assert_eq!(list, vec![PathBuf::from("/a.json")]);
        assert_eq!(list2[0], PathBuf::from("/b.json"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
