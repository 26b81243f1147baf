//! Asking the user for a file or folder: the native dialog (rfd) when the
//! desktop has one, else an in-app path field with completion of the
//! current folder. Without a desktop portal or zenity rfd returns at once
//! with nothing; a human cannot cancel a dialog that fast, so such an answer
//! switches the session to the in-app field instead of doing nothing.

use super::command::Command;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A native dialog answering "nothing" sooner than this was never shown.
const NO_DIALOG_WITHIN: Duration = Duration::from_millis(250);

/// Completions listed under the path field.
const COMPLETIONS_SHOWN: usize = 12;

/// What to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// An existing file.
    Open,
    /// A file to write (it may exist).
    Save,
    /// An existing folder, or one to create (`--pytorch-project`).
    Folder,
}

/// One question: its title, filters, starting folder and file name, and
/// the command the answer becomes.
#[derive(Clone, Debug)]
pub struct PathRequest {
    pub title: &'static str,
    pub kind: PathKind,
    /// `(name, extensions)` of the native dialog's filters.
    pub filters: &'static [(&'static str, &'static [&'static str])],
    pub dir: Option<PathBuf>,
    pub file_name: Option<String>,
    /// Makes the command that uses the chosen path.
    pub then: fn(PathBuf) -> Command,
}

impl PathRequest {
    pub fn new(title: &'static str, kind: PathKind, then: fn(PathBuf) -> Command) -> Self {
        PathRequest {
            title,
            kind,
            filters: &[],
            dir: None,
            file_name: None,
            then,
        }
    }

    pub fn filters(mut self, filters: &'static [(&'static str, &'static [&'static str])]) -> Self {
        self.filters = filters;
        self
    }

    pub fn dir(mut self, dir: Option<&Path>) -> Self {
        self.dir = dir.map(Path::to_path_buf);
        self
    }

    pub fn file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = Some(name.into());
        self
    }

    /// What the native dialog answers (`None`: cancelled or not shown).
    fn native(&self) -> Option<PathBuf> {
        let mut d = rfd::FileDialog::new().set_title(self.title);
        for (name, ext) in self.filters {
            d = d.add_filter(*name, ext);
        }
        if let Some(dir) = &self.dir {
            d = d.set_directory(dir);
        }
        if let Some(name) = &self.file_name {
            d = d.set_file_name(name);
        }
        match self.kind {
            PathKind::Open => d.pick_file(),
            PathKind::Save => d.save_file(),
            PathKind::Folder => d.pick_folder(),
        }
    }

    /// The text the in-app field starts with: the folder, then the file name.
    fn initial_text(&self) -> String {
        let dir = self
            .dir
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        let mut text = dir.display().to_string();
        if !text.is_empty() && !text.ends_with(std::path::MAIN_SEPARATOR) {
            text.push(std::path::MAIN_SEPARATOR);
        }
        text.push_str(self.file_name.as_deref().unwrap_or(""));
        text
    }
}

/// The in-app path field of one request.
#[derive(Debug)]
pub struct PathField {
    pub request: PathRequest,
    pub text: String,
    pub error: Option<String>,
}

impl PathField {
    /// Why the typed path cannot answer the request, if it cannot.
    fn problem(&self) -> Option<String> {
        let path = Path::new(self.text.trim());
        if self.text.trim().is_empty() {
            return Some("Type a path.".into());
        }
        match self.request.kind {
            PathKind::Open if !path.is_file() => Some(format!("{} is not a file.", path.display())),
            PathKind::Save if path.is_dir() => {
                Some(format!("{} is a folder: add a file name.", path.display()))
            }
            PathKind::Save | PathKind::Folder => {
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                match parent {
                    Some(p) if !p.is_dir() => {
                        Some(format!("The folder {} does not exist.", p.display()))
                    }
                    _ => None,
                }
            }
            PathKind::Open => None,
        }
    }
}

/// The app's way of asking for paths.
#[derive(Debug)]
pub struct FileDialogs {
    /// Try the native dialog first (until it is found missing).
    pub native: bool,
    /// The in-app field being shown, if any.
    pub field: Option<PathField>,
}

impl Default for FileDialogs {
    fn default() -> Self {
        FileDialogs {
            native: true,
            field: None,
        }
    }
}

impl FileDialogs {
    /// In-app fields only (UI tests, or a desktop known to have no dialog).
    pub fn in_app() -> Self {
        FileDialogs {
            native: false,
            field: None,
        }
    }

    /// Asks for a path: the command of the native dialog's answer, or
    /// `None` (cancelled, or the in-app field is open and answers later).
    pub fn ask(&mut self, request: PathRequest) -> Option<Command> {
        if self.native {
            let asked = Instant::now();
            if let Some(path) = request.native() {
                return Some((request.then)(path));
            }
            if asked.elapsed() >= NO_DIALOG_WITHIN {
                return None; // the user cancelled
            }
            self.native = false;
        }
        let text = request.initial_text();
        self.field = Some(PathField {
            request,
            text,
            error: None,
        });
        None
    }

    /// The in-app path window; the command of its answer once given.
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<Command> {
        let field = self.field.as_mut()?;
        let mut answer = None;
        let mut cancel = false;
        // Modal: the design cannot change while its path is asked for.
        let modal = egui::Modal::new(egui::Id::unique("path_field_modal")).show(ctx, |ui| {
            ui.set_width(520.0);
            ui.heading(field.request.title);
            ui.label("No file dialog is available on this desktop: type the path (Tab completes).");
            let label = ui.label("Path");
            let id = ui.make_persistent_id("path_field_text");
            // Tab completes instead of moving the focus (taken before the field sees it).
            let tab = ui.memory(|m| m.has_focus(id))
                && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Tab));
            let edit = egui::TextEdit::singleline(&mut field.text)
                .id(id)
                .desired_width(500.0)
                .lock_focus(true);
            let resp = ui.add(edit).labelled_by(label.id);
            let matches = completions(&field.text);
            if tab && let Some(done) = complete(&field.text, &matches) {
                field.text = done;
            }
            if !matches.is_empty() {
                ui.horizontal_wrapped(|ui| {
                    for m in matches.iter().take(COMPLETIONS_SHOWN) {
                        if ui.small_button(m.clone()).clicked() {
                            field.text = m.clone();
                        }
                    }
                    if matches.len() > COMPLETIONS_SHOWN {
                        ui.weak(format!("and {} more", matches.len() - COMPLETIONS_SHOWN));
                    }
                });
            }
            if let Some(e) = &field.error {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            let enter = resp.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            ui.horizontal(|ui| {
                let ok = match field.request.kind {
                    PathKind::Open => "Open",
                    PathKind::Save => "Save",
                    PathKind::Folder => "Choose",
                };
                if ui.button(ok).clicked() || enter {
                    match field.problem() {
                        Some(why) => field.error = Some(why),
                        None => {
                            answer = Some((field.request.then)(PathBuf::from(field.text.trim())))
                        }
                    }
                }
                if ui.button("Cancel").clicked() {
                    cancel = true;
                }
            });
        });
        if modal.should_close() && answer.is_none() {
            cancel = true;
        }
        if answer.is_some() || cancel {
            self.field = None;
        }
        answer
    }
}

/// The entries of the typed path's folder whose names start with its last
/// part, as full paths (folders end with a separator), sorted.
pub fn completions(text: &str) -> Vec<String> {
    let sep = std::path::MAIN_SEPARATOR;
    let (dir, prefix) = match text.rfind(sep) {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => ("", text),
    };
    let Ok(entries) = std::fs::read_dir(if dir.is_empty() { "." } else { dir }) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (prefix.is_empty() && name.starts_with('.')) {
                return None;
            }
            let folder = e.path().is_dir();
            Some(format!(
                "{dir}{name}{}",
                if folder {
                    sep.to_string()
                } else {
                    String::new()
                }
            ))
        })
        .collect();
    out.sort();
    out
}

/// The typed text extended by what all `matches` share (`None`: nothing to add).
pub fn complete(text: &str, matches: &[String]) -> Option<String> {
    let first = matches.first()?;
    let mut shared = first.len();
    for m in &matches[1..] {
        shared = shared.min(
            first
                .char_indices()
                .zip(m.chars())
                .take_while(|((_, a), b)| a == b)
                .last()
                .map_or(0, |((i, a), _)| i + a.len_utf8()),
        );
    }
    let done = &first[..shared];
    (done.len() > text.len()).then(|| done.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_lists_the_folders_entries_and_extends_to_their_shared_prefix() {
        let dir = std::env::temp_dir().join(format!("netloom-complete-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("nets")).unwrap();
        for f in ["resnet-a.json", "resnet-b.json", "vgg.json", ".hidden"] {
            std::fs::write(dir.join(f), "{}").unwrap();
        }
        let base = format!("{}{}", dir.display(), std::path::MAIN_SEPARATOR);
        let all = completions(&base);
        assert_eq!(
            all,
            [
                format!("{base}nets{}", std::path::MAIN_SEPARATOR),
                format!("{base}resnet-a.json"),
                format!("{base}resnet-b.json"),
                format!("{base}vgg.json"),
            ]
        );
        let typed = format!("{base}re");
        let m = completions(&typed);
        assert_eq!(m.len(), 2);
        assert_eq!(complete(&typed, &m), Some(format!("{base}resnet-")));
        // One match completes whole; nothing more to add gives None.
        let v = completions(&format!("{base}v"));
        assert_eq!(
            complete(&format!("{base}v"), &v),
            Some(format!("{base}vgg.json"))
        );
        assert_eq!(complete(&format!("{base}vgg.json"), &v), None);
        assert!(completions(&format!("{base}nothing-here/x")).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_path_is_checked_against_what_was_asked() {
        let field = |kind, text: &str| PathField {
            request: PathRequest::new("t", kind, Command::OpenPath),
            text: text.into(),
            error: None,
        };
        let here = std::env::temp_dir();
        let missing = here.join("netloom-no-such-folder/x.json");
        assert!(field(PathKind::Open, "").problem().is_some());
        assert!(
            field(PathKind::Open, &here.display().to_string())
                .problem()
                .is_some()
        );
        assert!(
            field(PathKind::Save, &here.display().to_string())
                .problem()
                .is_some()
        );
        assert!(
            field(PathKind::Save, &missing.display().to_string())
                .problem()
                .is_some()
        );
        let new_file = here.join("netloom-new.json");
        assert_eq!(
            field(PathKind::Save, &new_file.display().to_string()).problem(),
            None
        );
        assert_eq!(
            field(PathKind::Folder, &here.join("proj").display().to_string()).problem(),
            None
        );
    }
}
