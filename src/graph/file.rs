//! Versioned JSON design files: one node and one edge per line, so designs diff well.
//!
//! ```json
//! {
//!   "format": "netloom-design",
//!   "version": 1,
//!   "name": "inception-naive",
//!   "nodes": [
//!     {"name":"input","kind":"input","height":28,"width":28,"channels":192,"position":[0,0]},
//!     {"name":"conv5x5","kind":"conv2d","filters":32,"kernel":[5,5],"stride":[1,1],"padding":"same","position":[0,120]}
//!   ],
//!   "edges": [
//!     {"from":"input","to":"conv5x5","input":0}
//!   ],
//!   "groups": [
//!     {"name":"stem","members":["input","conv5x5"],"collapsed":false,"position":[0,0]}
//!   ]
//! }
//! ```
//! `groups` came with version 2 and is optional: version 1 files have none.
//! Weights never live here: they go to a separate safetensors file keyed by node name.

use super::group::{Group, GroupError, Ungrouped};
use super::{Arity, Edge, Graph, GraphError, LayerKind, MAX_INPUTS, Node, NodeId};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use thiserror::Error;

mod doc;

/// The format tag every design file carries.
pub const FORMAT: &str = "netloom-design";
/// The newest file version this build reads and the one it writes.
pub const VERSION: u64 = 2;

/// Why a design file could not be loaded. Every variant names what is wrong
/// and where, so the message can be shown as is.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("JSON syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("not a Netloom design: {0}")]
    NotADesign(String),
    #[error("design file version {found} is newer than this Netloom reads (version {VERSION})")]
    UnsupportedVersion { found: u64 },
    #[error("{}unknown layer kind `{kind}` for node `{node}` (known kinds: {known})", at_line(*.line))]
    UnknownKind {
        node: String,
        kind: String,
        line: Option<usize>,
        known: String,
    },
    #[error("{}node `{node}`: {message}", at_line(*.line))]
    BadParameter {
        node: String,
        line: Option<usize>,
        message: String,
    },
    #[error("{}two nodes are named `{name}`; names must be unique", at_line(*.line))]
    DuplicateName { name: String, line: Option<usize> },
    #[error(
        "edge {index} ({from} → {to}) refers to `{missing}`, which is not a node of this design"
    )]
    DanglingEdge {
        index: usize,
        from: String,
        to: String,
        missing: String,
    },
    #[error("input {input} of `{node}` is fed twice, by `{first}` and by `{second}`")]
    InputFedTwice {
        node: String,
        input: usize,
        first: String,
        second: String,
    },
    #[error("edge {index}: {reason}")]
    BadEdge { index: usize, reason: String },
    #[error("the design has a cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
    #[error("groups[{index}]: {reason}")]
    BadGroup { index: usize, reason: String },
    #[error("{0}")]
    Group(#[from] GroupError),
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

/// Reads and checks a design file.
pub fn load(path: &Path) -> Result<Graph, LoadError> {
    load_with_repairs(path).map(|loaded| loaded.graph)
}

/// A design as read, with what the reader had to repair to open it.
#[derive(Debug)]
pub struct Loaded {
    pub graph: Graph,
    /// Groups taken apart because a path leaves them and comes back (a
    /// file saved after a wire broke a group): the layers are all there.
    pub ungrouped: Vec<Ungrouped>,
}

/// Reads and checks a design file, saying what it repaired.
pub fn load_with_repairs(path: &Path) -> Result<Loaded, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_json_with_repairs(&text)
}

/// Parses and checks design JSON: syntax, kinds, parameters, names, edges,
/// cycles, groups. A well-formed file is read typed in one pass
/// ([`doc::DesignDoc`]); any other goes through the checked reader, whose
/// error names the line and the field at fault.
pub fn from_json(text: &str) -> Result<Graph, LoadError> {
    from_json_with_repairs(text).map(|loaded| loaded.graph)
}

/// [`from_json`], saying what it repaired (see [`Loaded`]).
pub fn from_json_with_repairs(text: &str) -> Result<Loaded, LoadError> {
    let mut graph = match doc::DesignDoc::read(text) {
        Some(doc) => from_doc(text, doc)?,
        None => from_checked_value(text)?,
    };
    let ungrouped = graph.ungroup_discontiguous();
    graph.check_groups()?;
    Ok(Loaded { graph, ungrouped })
}

/// Builds the graph of a typed document (its per-node checks passed).
fn from_doc(text: &str, doc: doc::DesignDoc) -> Result<Graph, LoadError> {
    let orientation = doc
        .orientation
        .as_deref()
        .and_then(super::layout::Orientation::from_tag)
        .unwrap_or_default();
    let name = doc.name.as_deref().unwrap_or("untitled");
    let mut builder = Builder::new(text, name, orientation, doc.nodes.len(), doc.edges.len());
    for node in doc.nodes {
        builder.node(Node {
            name: node.name.into_owned(),
            kind: node.kind,
            position: node.position,
            frozen: node.frozen,
        })?;
    }
    for (index, edge) in doc.edges.iter().enumerate() {
        let edge = builder.edge_between(index, &edge.from, &edge.to, edge.input)?;
        builder.edge(index, edge)?;
    }
    builder.check_cycles()?;
    let Some(groups) = doc.groups else {
        return Ok(builder.graph);
    };
    for group in groups {
        let mut members = Vec::with_capacity(group.members.len());
        for member in &group.members {
            members.push(builder.ids.get(member.as_ref()).copied().ok_or_else(|| {
                GroupError::NoSuchNode {
                    group: group.name.to_string(),
                    member: member.to_string(),
                }
            })?);
        }
        members.sort();
        members.dedup();
        builder.graph.push_group_unchecked(Group {
            name: group.name.into_owned(),
            members,
            collapsed: group.collapsed,
            position: group.position,
        });
    }
    Ok(builder.graph)
}

/// The checks both readers share, in file order: unique names, edges into
/// inputs that exist and are fed once, no cycle.
struct Builder<'t> {
    text: &'t str,
    graph: Graph,
    ids: HashMap<String, NodeId>,
    fed: HashSet<(NodeId, usize)>,
    edge_count: usize,
}

impl<'t> Builder<'t> {
    fn new(
        text: &'t str,
        name: &str,
        orientation: super::layout::Orientation,
        node_count: usize,
        edge_count: usize,
    ) -> Self {
        let mut graph = Graph::new(name);
        graph.orientation = orientation;
        Builder {
            text,
            graph,
            ids: HashMap::with_capacity(node_count),
            fed: HashSet::with_capacity(edge_count),
            edge_count,
        }
    }

    /// Adds a node whose name no earlier node has.
    fn node(&mut self, node: Node) -> Result<(), LoadError> {
        if self.ids.contains_key(&node.name) {
            return Err(LoadError::DuplicateName {
                line: line_of_nth_name(self.text, &node.name, 1),
                name: node.name,
            });
        }
        let name = node.name.clone();
        let id = self.graph.push_node_unchecked(node);
        self.ids.insert(name, id);
        Ok(())
    }

    /// The edge between two named nodes, both of which must exist.
    fn edge_between(
        &self,
        index: usize,
        from: &str,
        to: &str,
        input: usize,
    ) -> Result<Edge, LoadError> {
        let lookup = |name: &str| -> Result<NodeId, LoadError> {
            self.ids
                .get(name)
                .copied()
                .ok_or_else(|| LoadError::DanglingEdge {
                    index,
                    from: from.to_string(),
                    to: to.to_string(),
                    missing: name.to_string(),
                })
        };
        Ok(Edge {
            from: lookup(from)?,
            to: lookup(to)?,
            input,
        })
    }

    /// Adds an edge into an input its target has and nothing feeds yet.
    fn edge(&mut self, index: usize, edge: Edge) -> Result<(), LoadError> {
        check_edge(&self.graph, &self.fed, index, self.edge_count, &edge)?;
        self.fed.insert((edge.to, edge.input));
        self.graph.push_edge_unchecked(edge);
        Ok(())
    }

    fn check_cycles(&self) -> Result<(), LoadError> {
        match self.graph.topological_order() {
            Ok(_) => Ok(()),
            Err(GraphError::Cycle(names)) => Err(LoadError::Cycle(names)),
            Err(other) => Err(LoadError::NotADesign(other.to_string())),
        }
    }
}

/// The checked reader: the whole file as a JSON value, taken apart field
/// by field so every problem is named where it is.
fn from_checked_value(text: &str) -> Result<Graph, LoadError> {
    let root: Value = serde_json::from_str(text).map_err(|e| LoadError::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    // Owned, so each node's object is taken apart rather than copied.
    let Value::Object(mut root) = root else {
        return Err(LoadError::NotADesign(
            "the top level must be a JSON object".into(),
        ));
    };
    match root.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(LoadError::NotADesign(format!(
                "`format` is `{other}`, expected `{FORMAT}`"
            )));
        }
        None => {
            return Err(LoadError::NotADesign(format!(
                "missing `\"format\": \"{FORMAT}\"`"
            )));
        }
    }
    let version = root
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| LoadError::NotADesign("missing or non-integer `version`".into()))?;
    if version > VERSION || version == 0 {
        return Err(LoadError::UnsupportedVersion { found: version });
    }
    let name = root
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("untitled")
        .to_string();
    let nodes = match root.remove("nodes") {
        Some(Value::Array(nodes)) => nodes,
        _ => return Err(LoadError::NotADesign("missing `nodes` array".into())),
    };
    let edges = match root.remove("edges") {
        None => Vec::new(),
        Some(Value::Array(edges)) => edges,
        Some(_) => return Err(LoadError::NotADesign("`edges` must be an array".into())),
    };
    let orientation = match root.get("orientation") {
        None => Default::default(),
        Some(o) => o
            .as_str()
            .and_then(super::layout::Orientation::from_tag)
            .ok_or_else(|| {
                LoadError::NotADesign("`orientation` must be \"tb\" or \"lr\"".into())
            })?,
    };
    let mut builder = Builder::new(text, &name, orientation, nodes.len(), edges.len());
    let known: Vec<&str> = LayerKind::catalogue().iter().map(|k| k.tag()).collect();
    for (index, value) in nodes.into_iter().enumerate() {
        builder.node(parse_node(text, &known, index, value)?)?;
    }
    for (index, value) in edges.iter().enumerate() {
        let edge = parse_edge(&builder, index, value)?;
        builder.edge(index, edge)?;
    }
    builder.check_cycles()?;
    if let Some(groups) = root.get("groups") {
        let groups = groups
            .as_array()
            .ok_or_else(|| LoadError::NotADesign("`groups` must be an array".into()))?;
        for (index, value) in groups.iter().enumerate() {
            let group = parse_group(&builder.ids, index, value)?;
            builder.graph.push_group_unchecked(group);
        }
    }
    Ok(builder.graph)
}

/// One entry of `groups`: its name, member names, collapsed flag and position.
fn parse_group(
    ids: &HashMap<String, NodeId>,
    index: usize,
    value: &Value,
) -> Result<Group, LoadError> {
    let bad = |reason: &str| LoadError::BadGroup {
        index,
        reason: reason.to_string(),
    };
    let object = value.as_object().ok_or_else(|| {
        bad("must be an object like {\"name\": \"block1\", \"members\": [\"a\", \"b\"]}")
    })?;
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing `name` (a string)"))?
        .to_string();
    let names = object
        .get("members")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing `members` (an array of node names)"))?;
    let mut members = Vec::with_capacity(names.len());
    for member in names {
        let member = member
            .as_str()
            .ok_or_else(|| bad("`members` must hold node names (strings)"))?;
        let id = ids
            .get(member)
            .copied()
            .ok_or_else(|| GroupError::NoSuchNode {
                group: name.clone(),
                member: member.to_string(),
            })?;
        members.push(id);
    }
    members.sort();
    members.dedup();
    let collapsed = match object.get("collapsed") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("`collapsed` must be true or false")),
    };
    let position = match object.get("position") {
        None => [0.0, 0.0],
        Some(v) => serde_json::from_value::<[f32; 2]>(v.clone())
            .map_err(|_| bad("`position` must be [x, y]"))?,
    };
    Ok(Group {
        name,
        members,
        collapsed,
        position,
    })
}

/// Refuses an edge into an input the target does not have or that is
/// already fed, before anything is sized by the input number.
fn check_edge(
    graph: &Graph,
    fed: &HashSet<(NodeId, usize)>,
    index: usize,
    edge_count: usize,
    edge: &Edge,
) -> Result<(), LoadError> {
    let to_name = graph.name_of(edge.to);
    match graph.node(edge.to).map(|n| n.kind.arity()) {
        Some(Arity::None) => {
            return Err(LoadError::BadEdge {
                index,
                reason: format!("`{to_name}` is an input layer and takes no inputs"),
            });
        }
        Some(Arity::One) if edge.input > 0 => {
            return Err(LoadError::BadEdge {
                index,
                reason: format!(
                    "`{to_name}` has a single input (input 0); input {} does not exist",
                    edge.input
                ),
            });
        }
        Some(Arity::Many) if edge.input >= edge_count.min(MAX_INPUTS) => {
            return Err(LoadError::BadEdge {
                index,
                reason: format!(
                    "input {} of `{to_name}` cannot be fed: the design has {edge_count} edges, so inputs 0 to {} at most (and a layer takes at most {MAX_INPUTS})",
                    edge.input,
                    edge_count.min(MAX_INPUTS) - 1
                ),
            });
        }
        _ => {}
    }
    if edge.from == edge.to {
        return Err(LoadError::Cycle(vec![
            to_name.to_string(),
            to_name.to_string(),
        ]));
    }
    if fed.contains(&(edge.to, edge.input)) {
        let first = graph
            .edges()
            .iter()
            .find(|e| e.to == edge.to && e.input == edge.input)
            .map_or("?", |e| graph.name_of(e.from));
        return Err(LoadError::InputFedTwice {
            node: to_name.to_string(),
            input: edge.input,
            first: first.to_string(),
            second: graph.name_of(edge.from).to_string(),
        });
    }
    Ok(())
}

/// serde_json appends " at line L column C"; the variant carries those separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// One node from its JSON object; `known` are the layer kinds' tags.
fn parse_node(text: &str, known: &[&str], index: usize, value: Value) -> Result<Node, LoadError> {
    let label = || format!("nodes[{index}]");
    let Value::Object(mut object) = value else {
        return Err(LoadError::NotADesign(format!(
            "{} must be an object",
            label()
        )));
    };
    let name = match object.remove("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) => {
            return Err(LoadError::BadParameter {
                node: label(),
                line: None,
                message: "name is empty".into(),
            });
        }
        Some(_) => {
            return Err(LoadError::BadParameter {
                node: label(),
                line: None,
                message: "name must be a string".into(),
            });
        }
        None => {
            return Err(LoadError::BadParameter {
                node: label(),
                line: None,
                message: "missing `name`".into(),
            });
        }
    };
    // Line numbers are looked up only for an error: finding them is a scan of the text.
    let bad = |message: String| LoadError::BadParameter {
        node: name.clone(),
        line: line_of_name(text, &name),
        message,
    };
    let position = match object.remove("position") {
        None => [0.0, 0.0],
        Some(v) => serde_json::from_value::<[f32; 2]>(v)
            .map_err(|_| bad("`position` must be [x, y]".into()))?,
    };
    let frozen = match object.remove("frozen") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(bad("`frozen` must be true or false".into())),
    };
    let kind_tag = match object.get("kind") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("`kind` must be a string".into())),
        None => return Err(bad("missing `kind`".into())),
    };
    if !known.contains(&kind_tag.as_str()) {
        return Err(LoadError::UnknownKind {
            line: line_of_name(text, &name),
            node: name,
            kind: kind_tag,
            known: known.join(", "),
        });
    }
    let kind: LayerKind =
        serde_json::from_value(Value::Object(object)).map_err(|e| bad(e.to_string()))?;
    kind.validate().map_err(bad)?;
    Ok(Node {
        name,
        kind,
        position,
        frozen,
    })
}

fn parse_edge(builder: &Builder, index: usize, value: &Value) -> Result<Edge, LoadError> {
    let object = value.as_object().ok_or_else(|| LoadError::BadEdge {
        index,
        reason: "must be an object like {\"from\": \"a\", \"to\": \"b\", \"input\": 0}".into(),
    })?;
    let endpoint = |key: &str| -> Result<&str, LoadError> {
        object
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| LoadError::BadEdge {
                index,
                reason: format!("missing `{key}` (a node name)"),
            })
    };
    let from_name = endpoint("from")?;
    let to_name = endpoint("to")?;
    let input = match object.get("input") {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| LoadError::BadEdge {
                index,
                reason: "`input` must be a non-negative integer".into(),
            })?,
    };
    builder.edge_between(index, from_name, to_name, input)
}

/// 1-based line of the `n`-th (0-based) `"name": "<name>"` in the text.
fn line_of_nth_name(text: &str, name: &str, n: usize) -> Option<usize> {
    let quoted = serde_json::to_string(name).ok()?;
    let mut found = 0;
    let mut from = 0;
    while let Some(pos) = text[from..].find(&quoted) {
        let at = from + pos;
        let before = text[..at].trim_end();
        if let Some(before) = before.strip_suffix(':')
            && before.trim_end().ends_with("\"name\"")
        {
            if found == n {
                return Some(text[..at].matches('\n').count() + 1);
            }
            found += 1;
        }
        from = at + quoted.len();
    }
    None
}

fn line_of_name(text: &str, name: &str) -> Option<usize> {
    line_of_nth_name(text, name, 0)
}

/// Serialises a design: stable key order, one node and one edge per line.
pub fn to_json(graph: &Graph) -> String {
    let graph = graph.compacted();
    let mut out = String::new();
    out.push_str("{\n");
    out.push_str(&format!("  \"format\": \"{FORMAT}\",\n"));
    out.push_str(&format!("  \"version\": {VERSION},\n"));
    out.push_str(&format!(
        "  \"name\": {},\n",
        serde_json::to_string(&graph.name).unwrap_or_else(|_| "\"untitled\"".into())
    ));
    if graph.orientation != super::layout::Orientation::TopToBottom {
        out.push_str(&format!(
            "  \"orientation\": \"{}\",\n",
            graph.orientation.tag()
        ));
    }
    out.push_str("  \"nodes\": [\n");
    let nodes: Vec<String> = graph.nodes().map(|(_, n)| node_line(n)).collect();
    out.push_str(&join_lines(&nodes));
    out.push_str("  ],\n  \"edges\": [\n");
    let edges: Vec<String> = graph
        .edges()
        .iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("from".into(), Value::from(graph.name_of(e.from)));
            m.insert("to".into(), Value::from(graph.name_of(e.to)));
            m.insert("input".into(), Value::from(e.input));
            Value::Object(m).to_string()
        })
        .collect();
    out.push_str(&join_lines(&edges));
    if graph.groups().is_empty() {
        out.push_str("  ]\n}\n");
        return out;
    }
    out.push_str("  ],\n  \"groups\": [\n");
    let groups: Vec<String> = graph
        .groups()
        .iter()
        .map(|g| group_line(&graph, g))
        .collect();
    out.push_str(&join_lines(&groups));
    out.push_str("  ]\n}\n");
    out
}

fn group_line(graph: &Graph, group: &Group) -> String {
    let mut m = Map::new();
    m.insert("name".into(), Value::from(group.name.as_str()));
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|&id| Value::from(graph.name_of(id)))
        .collect();
    m.insert("members".into(), Value::Array(members));
    m.insert("collapsed".into(), Value::from(group.collapsed));
    m.insert(
        "position".into(),
        Value::from(vec![
            group.position[0].round() as i64,
            group.position[1].round() as i64,
        ]),
    );
    Value::Object(m).to_string()
}

fn join_lines(lines: &[String]) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        out.push_str("    ");
        out.push_str(line);
        if i + 1 < lines.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out
}

fn node_line(node: &Node) -> String {
    let mut m = Map::new();
    m.insert("name".into(), Value::from(node.name.as_str()));
    if let Ok(Value::Object(kind)) = serde_json::to_value(&node.kind) {
        for (k, v) in kind {
            m.insert(k, v);
        }
    }
    // Positions are rounded: sub-pixel noise would make every save a diff.
    m.insert(
        "position".into(),
        Value::from(vec![
            node.position[0].round() as i64,
            node.position[1].round() as i64,
        ]),
    );
    if node.frozen {
        m.insert("frozen".into(), Value::from(true));
    }
    Value::Object(m).to_string()
}

/// Writes atomically: a temporary file beside the target, then a rename, so
/// a crash mid-save never leaves a half-written design.
pub fn save(graph: &Graph, path: &Path) -> std::io::Result<()> {
    write_atomically(path, to_json(graph).as_bytes())
}

/// The file a save to `path` replaces: a symlink's target (followed to the
/// end, relative links resolved against the link's folder), else `path`.
fn save_target(path: &Path) -> PathBuf {
    let mut target = path.to_path_buf();
    // A bounded walk: a symlink loop leaves the last link as the target
    // and the rename then fails with the system's message.
    for _ in 0..40 {
        match std::fs::read_link(&target) {
            Ok(link) => {
                target = match target.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                }
            }
            Err(_) => break,
        }
    }
    target
}

/// The sibling temporary file a save to `target` writes first.
fn temp_path(target: &Path) -> PathBuf {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "design".into());
    dir.join(format!(".{file_name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to a sibling temporary file and renames it over `path`:
/// a crash mid-save never leaves a half-written file. Saving through a
/// symlink replaces the link's target (the link stays), an existing file
/// keeps its permission bits, and the temporary file is removed on every
/// failure.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = save_target(path);
    remove_stale_temps(&target);
    let tmp = temp_path(&target);
    let result = write_then_rename(&tmp, &target, bytes);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes temporary files of earlier saves to `target` whose process is
/// gone (a save that was killed mid-write), so they do not pile up.
fn remove_stale_temps(target: &Path) {
    // Whether a process is alive is read from /proc; without it, keep everything.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let (Some(dir), Some(name)) = (
        temp_path(target).parent().map(Path::to_path_buf),
        target.file_name(),
    ) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let pid = file_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn write_then_rename(tmp: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(tmp)?;
    if let Ok(existing) = std::fs::metadata(target) {
        f.set_permissions(existing.permissions())?;
    }
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, target)
}

/// Why an output path was refused before any work started.
#[derive(Debug, Error)]
pub enum OutputError {
    #[error("{flag} {}: is a folder, not a file", path.display())]
    IsFolder { flag: String, path: PathBuf },
    #[error("{flag} {} is also an input ({what}); refusing to overwrite it", path.display())]
    IsInput {
        flag: String,
        path: PathBuf,
        what: String,
    },
    #[error("{flag} {}: cannot write in {}: {source}", path.display(), dir.display())]
    NotWritable {
        flag: String,
        path: PathBuf,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{first} and {second} are the same file {}", path.display())]
    Twice {
        first: String,
        second: String,
        path: PathBuf,
    },
}

/// The canonical form of a path that may not exist yet (its folder canonicalised).
fn canonical(path: &Path) -> PathBuf {
    let target = save_target(path);
    if let Ok(c) = std::fs::canonicalize(&target) {
        return c;
    }
    match (target.parent(), target.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or(target.clone())
        }
        _ => target,
    }
}

/// Checks, before any work starts, that every output `(flag, path)` can be
/// written (its folder exists and takes a new file), is no folder, is none
/// of the `inputs` (`(what, path)`, compared canonically, through symlinks)
/// and differs from the other outputs.
pub fn check_outputs(
    outputs: &[(&str, &Path)],
    inputs: &[(&str, &Path)],
) -> Result<(), OutputError> {
    let inputs: Vec<(&str, PathBuf)> = inputs.iter().map(|(w, p)| (*w, canonical(p))).collect();
    let mut seen: Vec<(&str, PathBuf)> = Vec::new();
    for &(flag, path) in outputs {
        let flag_owned = flag.to_string();
        if path.is_dir() {
            return Err(OutputError::IsFolder {
                flag: flag_owned,
                path: path.to_path_buf(),
            });
        }
        let c = canonical(path);
        if let Some((what, _)) = inputs.iter().find(|(_, i)| *i == c) {
            return Err(OutputError::IsInput {
                flag: flag_owned,
                path: path.to_path_buf(),
                what: what.to_string(),
            });
        }
        if let Some((first, _)) = seen.iter().find(|(_, p)| *p == c) {
            return Err(OutputError::Twice {
                first: first.to_string(),
                second: flag_owned,
                path: path.to_path_buf(),
            });
        }
        probe_writable(flag, path)?;
        seen.push((flag, c));
    }
    Ok(())
}

/// Creates and removes the temporary file a save would write.
fn probe_writable(flag: &str, path: &Path) -> Result<(), OutputError> {
    let tmp = temp_path(&save_target(path));
    match std::fs::File::create(&tmp) {
        Ok(_) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
        Err(source) => Err(OutputError::NotWritable {
            flag: flag.to_string(),
            path: path.to_path_buf(),
            dir: tmp.parent().map(Path::to_path_buf).unwrap_or_default(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(nodes: &str, edges: &str) -> String {
        format!(
            "{{\n  \"format\": \"netloom-design\",\n  \"version\": 1,\n  \"name\": \"t\",\n  \"nodes\": [\n{nodes}\n  ],\n  \"edges\": [\n{edges}\n  ]\n}}\n"
        )
    }

    const INPUT: &str = r#"    {"name":"in","kind":"input","height":8,"width":8,"channels":3}"#;

    /// A file saved after a wire broke a group (a path leaves it and comes
    /// back) opens with the group taken apart and says so, instead of
    /// refusing the whole design.
    #[test]
    fn a_broken_group_is_taken_apart_on_load_and_reported() {
        let text = design(
            &format!(
                "{INPUT},\n    {{\"name\":\"a\",\"kind\":\"relu\"}},\n    {{\"name\":\"b\",\"kind\":\"relu\"}},\n    {{\"name\":\"sum\",\"kind\":\"add\"}}"
            ),
            r#"    {"from":"in","to":"a"},
    {"from":"a","to":"b"},
    {"from":"a","to":"sum","input":0},
    {"from":"b","to":"sum","input":1}"#,
        );
        let text = text.replacen(
            "\n}\n",
            ",\n  \"groups\": [{\"name\":\"pair\",\"members\":[\"a\",\"sum\"]},{\"name\":\"whole\",\"members\":[\"a\",\"b\",\"sum\"]}]\n}\n",
            1,
        );
        let loaded = from_json_with_repairs(&text).unwrap();
        assert_eq!(loaded.graph.len(), 4);
        assert_eq!(loaded.ungrouped.len(), 1, "{:?}", loaded.ungrouped);
        let message = loaded.ungrouped[0].to_string();
        assert!(
            message.contains("group `pair` was ungrouped") && message.contains("through `b`"),
            "{message}"
        );
        let names: Vec<&str> = loaded
            .graph
            .groups()
            .iter()
            .map(|g| g.name.as_str())
            .collect();
        assert_eq!(names, ["whole"]);
        // A file that needed no repair reports none.
        let saved = to_json(&loaded.graph);
        assert!(from_json_with_repairs(&saved).unwrap().ungrouped.is_empty());
    }

    #[test]
    fn round_trip_is_stable() {
        let text = design(
            &format!(
                "{INPUT},\n    {{\"name\":\"c\",\"kind\":\"conv2d\",\"filters\":4,\"kernel\":[3,3],\"padding\":\"same\"}}"
            ),
            r#"    {"from":"in","to":"c"}"#,
        );
        let g = from_json(&text).unwrap();
        let saved = to_json(&g);
        let again = from_json(&saved).unwrap();
        assert_eq!(to_json(&again), saved);
        assert!(saved.contains(r#"{"name":"c","kind":"conv2d","filters":4,"kernel":[3,3],"stride":[1,1],"padding":"same","position":[0,0]}"#), "{saved}");
    }

    /// The typed reader takes every preset and builds exactly what the
    /// checked reader builds (compared through the saved text).
    #[test]
    fn typed_and_checked_readers_agree_on_every_preset() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
        let mut read = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let doc = doc::DesignDoc::read(&text)
                .unwrap_or_else(|| panic!("{}: the typed reader refused it", path.display()));
            let typed = to_json(&from_doc(&text, doc).unwrap());
            let checked = to_json(&from_checked_value(&text).unwrap());
            assert_eq!(typed, checked, "{}", path.display());
            read += 1;
        }
        assert!(read >= 10, "only {read} presets");
    }

    /// What the typed reader must not take on its own (the checked reader
    /// decides): a null where a value must be, a non-string name, a
    /// repeated key, an out-of-range parameter.
    #[test]
    fn the_typed_reader_leaves_doubtful_files_to_the_checked_one() {
        let base = grouped(r#"    {"name":"block","members":["a"]}"#);
        assert!(doc::DesignDoc::read(&base).is_some());
        let cases = [
            base.replace("\"name\": \"t\",", "\"orientation\": null,"),
            base.replace("\"name\": \"t\",", "\"name\": 5,"),
            base.replace("\"groups\": [", "\"groups\": null, \"g\": ["),
            base.replace(r#""kind":"relu"}"#, r#""kind":"relu","frozen":null}"#),
            base.replace(r#""kind":"relu"}"#, r#""kind":"relu","kind":"relu"}"#),
            base.replace(r#""channels":3"#, r#""channels":0"#),
            base.replace(r#""channels":3"#, r#""channels":3,"units":3"#),
        ];
        for text in &cases {
            assert!(doc::DesignDoc::read(text).is_none(), "{text}");
        }
        // Each is then what the checked reader says: refused, or (a
        // non-string name) read as untitled, or (a repeated key) the last
        // value taken.
        assert!(matches!(
            from_json(&cases[0]),
            Err(LoadError::NotADesign(m)) if m.contains("orientation")
        ));
        assert_eq!(from_json(&cases[1]).unwrap().name, "untitled");
        assert!(
            matches!(from_json(&cases[2]), Err(LoadError::NotADesign(m)) if m.contains("groups"))
        );
        assert_eq!(from_json(&cases[4]).unwrap().len(), 3);
        for text in [&cases[3], &cases[5], &cases[6]] {
            assert!(
                matches!(
                    from_json(text),
                    Err(LoadError::BadParameter { line: Some(_), .. })
                ),
                "{text}: {:?}",
                from_json(text)
            );
        }
    }

    fn grouped(groups: &str) -> String {
        let nodes = format!(
            "{INPUT},\n    {{\"name\":\"a\",\"kind\":\"relu\"}},\n    {{\"name\":\"b\",\"kind\":\"relu\"}}"
        );
        let edges = "    {\"from\":\"in\",\"to\":\"a\"},\n    {\"from\":\"a\",\"to\":\"b\"}";
        design(&nodes, edges)
            .replace("\"version\": 1", "\"version\": 2")
            .replace(
                "  ]\n}\n",
                &format!("  ],\n  \"groups\": [\n{groups}\n  ]\n}}\n"),
            )
    }

    #[test]
    fn groups_round_trip_and_version_one_files_have_none() {
        let text = grouped(
            r#"    {"name":"block","members":["a","b"],"collapsed":true,"position":[10,-20]}"#,
        );
        let g = from_json(&text).unwrap();
        assert_eq!(g.groups().len(), 1);
        let group = &g.groups()[0];
        assert_eq!(group.name, "block");
        assert!(group.collapsed);
        assert_eq!(group.position, [10.0, -20.0]);
        let names: Vec<&str> = group.members.iter().map(|&m| g.name_of(m)).collect();
        assert_eq!(names, ["a", "b"]);
        let saved = to_json(&g);
        assert!(saved.contains("\"version\": 2"), "{saved}");
        assert_eq!(to_json(&from_json(&saved).unwrap()), saved);
        assert!(saved.contains(
            r#"{"name":"block","members":["a","b"],"collapsed":true,"position":[10,-20]}"#
        ));
        // A version-1 file (no `groups`) still loads, with no groups.
        let old = design(INPUT, "");
        assert!(from_json(&old).unwrap().groups().is_empty());
    }

    #[test]
    fn a_group_naming_a_missing_node_is_a_clear_load_error() {
        let text = grouped(r#"    {"name":"block","members":["a","ghost"]}"#);
        assert_eq!(
            from_json(&text).unwrap_err().to_string(),
            "group `block` names `ghost`, which is not a node of this design"
        );
        // Nested groups load and save as they are; a partial overlap is refused.
        let text = grouped(
            r#"    {"name":"x","members":["a"]},
    {"name":"y","members":["a","b"]}"#,
        );
        let nested = from_json(&text).unwrap();
        assert_eq!(from_json(&to_json(&nested)).unwrap(), nested);
        let text = grouped(
            r#"    {"name":"x","members":["in","a"]},
    {"name":"y","members":["a","b"]}"#,
        );
        assert_eq!(
            from_json(&text).unwrap_err().to_string(),
            "groups `x` and `y` overlap at `b` but neither holds the other; a group must lie wholly inside another or apart from it"
        );
        let text = grouped(r#"    {"name":"x","members":"a"}"#);
        assert_eq!(
            from_json(&text).unwrap_err().to_string(),
            "groups[0]: missing `members` (an array of node names)"
        );
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let text = "{\n  \"format\": \"netloom-design\",\n  \"version\": 1,\n  \"nodes\": [ , ]\n}";
        match from_json(text).unwrap_err() {
            LoadError::Syntax { line, column, .. } => {
                assert_eq!(line, 4);
                assert_eq!(column, 14);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn unknown_kind_names_node_and_line() {
        let text = design(
            &format!("{INPUT},\n    {{\"name\":\"x\",\"kind\":\"conv3d\",\"filters\":4}}"),
            "",
        );
        let err = from_json(&text).unwrap_err();
        assert!(matches!(err, LoadError::UnknownKind { line: Some(7), .. }));
        assert!(
            err.to_string()
                .starts_with("line 7: unknown layer kind `conv3d` for node `x`"),
            "{err}"
        );
    }

    #[test]
    fn bad_parameters_are_specific() {
        let text = design(
            &format!(
                "{INPUT},\n    {{\"name\":\"c\",\"kind\":\"conv2d\",\"filters\":4,\"kernel\":[0,3]}}"
            ),
            "",
        );
        assert_eq!(
            from_json(&text).unwrap_err().to_string(),
            "line 7: node `c`: kernel height must be at least 1, got 0"
        );
        let text = design(
            &format!(
                "{INPUT},\n    {{\"name\":\"p\",\"kind\":\"max_pool2d\",\"kernel\":[2,2],\"stride\":[0,2]}}"
            ),
            "",
        );
        assert!(
            from_json(&text)
                .unwrap_err()
                .to_string()
                .contains("stride height must be at least 1")
        );
        let text = design(
            &format!(
                "{INPUT},\n    {{\"name\":\"c\",\"kind\":\"conv2d\",\"filters\":4,\"kernel\":[3,3],\"strides\":[2,2]}}"
            ),
            "",
        );
        let msg = from_json(&text).unwrap_err().to_string();
        assert!(msg.contains("unknown field `strides`"), "{msg}");
    }

    #[test]
    fn duplicate_names_point_at_the_second() {
        let text = design(&format!("{INPUT},\n{INPUT}"), "");
        let err = from_json(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 7: two nodes are named `in`; names must be unique"
        );
    }

    #[test]
    fn dangling_edges_and_double_feeds() {
        let relu = r#"    {"name":"r","kind":"relu"}"#;
        let text = design(
            &format!("{INPUT},\n{relu}"),
            r#"    {"from":"in","to":"r2","input":0}"#,
        );
        assert_eq!(
            from_json(&text).unwrap_err().to_string(),
            "edge 0 (in → r2) refers to `r2`, which is not a node of this design"
        );
        let text = design(
            &format!("{INPUT},\n{relu},\n    {{\"name\":\"s\",\"kind\":\"sigmoid\"}}"),
            "    {\"from\":\"in\",\"to\":\"r\"},\n    {\"from\":\"s\",\"to\":\"r\"}",
        );
        assert_eq!(
            from_json(&text).unwrap_err().to_string(),
            "input 0 of `r` is fed twice, by `in` and by `s`"
        );
    }

    #[test]
    fn cycles_name_their_nodes() {
        let text = design(
            &format!(
                "{INPUT},\n    {{\"name\":\"a\",\"kind\":\"relu\"}},\n    {{\"name\":\"b\",\"kind\":\"add\"}}"
            ),
            "    {\"from\":\"in\",\"to\":\"b\",\"input\":0},\n    {\"from\":\"b\",\"to\":\"a\"},\n    {\"from\":\"a\",\"to\":\"b\",\"input\":1}",
        );
        let err = from_json(&text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("the design has a cycle: "), "{msg}");
        assert!(msg.contains('a') && msg.contains('b'), "{msg}");
    }

    #[test]
    fn newer_versions_and_foreign_files_are_refused() {
        let text = r#"{"format":"netloom-design","version":9,"nodes":[]}"#;
        assert!(matches!(
            from_json(text),
            Err(LoadError::UnsupportedVersion { found: 9 })
        ));
        assert!(matches!(
            from_json(r#"{"nodes":[]}"#),
            Err(LoadError::NotADesign(_))
        ));
        assert!(matches!(from_json("[1,2]"), Err(LoadError::NotADesign(_))));
    }

    #[cfg(unix)]
    #[test]
    fn atomic_save_through_a_symlink_keeps_link_and_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("netloom-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("real.json");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        write_atomically(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A temporary file of a killed save (a process that is gone) is cleaned up.
        let stale = dir.join(".real.json.4294967295.tmp");
        std::fs::write(&stale, "partial").unwrap();
        write_atomically(&link, b"newer").unwrap();
        assert!(!stale.exists());
        // A failed save (the target is a folder) leaves no temporary file behind.
        let sub = dir.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        assert!(write_atomically(&sub, b"x").is_err());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn outputs_equal_to_inputs_or_unwritable_are_refused() {
        let dir = std::env::temp_dir().join(format!("netloom-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let design = dir.join("d.json");
        std::fs::write(&design, "{}").unwrap();
        let same = dir.join(".").join("d.json");
        let err = check_outputs(&[("--save", &same)], &[("the design", &design)]).unwrap_err();
        assert!(matches!(err, OutputError::IsInput { .. }), "{err}");
        let missing = dir.join("no-such-dir").join("w.safetensors");
        let err = check_outputs(&[("--save", &missing)], &[]).unwrap_err();
        assert!(err.to_string().starts_with("--save "), "{err}");
        let w = dir.join("w.safetensors");
        let err = check_outputs(&[("--save", &w), ("--checkpoint", &w)], &[]).unwrap_err();
        assert!(matches!(err, OutputError::Twice { .. }), "{err}");
        check_outputs(&[("--save", &w)], &[("the design", &design)]).unwrap();
        assert!(!w.exists(), "the probe leaves nothing behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_save_writes_whole_file() {
        let dir = std::env::temp_dir().join(format!("netloom-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.json");
        let text = design(INPUT, "");
        let g = from_json(&text).unwrap();
        save(&g, &path).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
