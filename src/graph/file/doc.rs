//! The typed reading of a design file: serde derives straight from the text
//! into structs that borrow its strings, so a 100k-node file is read without
//! building a generic JSON tree.
//!
//! It is the fast path only. A file it does not take exactly as the checked
//! reader would (any type or syntax problem, an unknown kind, a parameter
//! out of range, a newer version) yields `None`, and
//! [`from_json`](super::from_json) reads the file again through the checked
//! reader, whose messages name the line and the field at fault.

use super::{FORMAT, VERSION};
use crate::graph::LayerKind;
use crate::graph::layout::Orientation;
use serde::de::value::{CowStrDeserializer, MapAccessDeserializer};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt;

#[derive(Deserialize)]
pub(super) struct DesignDoc<'a> {
    #[serde(borrow)]
    format: Cow<'a, str>,
    version: u64,
    /// Absent or `null` means "untitled"; any other non-string falls back.
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// Present means a string (a `null` falls back: the checked reader refuses it).
    #[serde(borrow, default, deserialize_with = "some_str")]
    pub orientation: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub nodes: Vec<NodeDoc<'a>>,
    #[serde(borrow, default)]
    pub edges: Vec<EdgeDoc<'a>>,
    /// `None` when the file has no `groups` (version 1).
    #[serde(borrow, default, deserialize_with = "some_seq")]
    pub groups: Option<Vec<GroupDoc<'a>>>,
}

pub(super) struct NodeDoc<'a> {
    pub name: Cow<'a, str>,
    pub position: [f32; 2],
    pub frozen: bool,
    pub kind: LayerKind,
}

/// A node's object: `name`, `position` and `frozen` are taken out as it is
/// read, and every other entry goes to [`LayerKind`]'s own derive as a map of
/// its own, so its checks (`kind` first among them, no unknown keys) are the
/// checked reader's.
impl<'de: 'a, 'a> Deserialize<'de> for NodeDoc<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(NodeVisitor(std::marker::PhantomData))
    }
}

struct NodeVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for NodeVisitor<'a> {
    type Value = NodeDoc<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a node object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut own = NodeKeys {
            map,
            name: None,
            position: None,
            frozen: None,
        };
        let kind = LayerKind::deserialize(MapAccessDeserializer::new(&mut own))?;
        Ok(NodeDoc {
            name: own.name.ok_or_else(|| de::Error::missing_field("name"))?,
            position: own.position.unwrap_or_default(),
            frozen: own.frozen.unwrap_or_default(),
            kind,
        })
    }
}

/// The node's entries without the three keys that are not the layer's.
struct NodeKeys<'de, A> {
    map: A,
    name: Option<Cow<'de, str>>,
    position: Option<[f32; 2]>,
    frozen: Option<bool>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for &mut NodeKeys<'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        #[derive(Deserialize)]
        struct Key<'a>(#[serde(borrow)] Cow<'a, str>);
        while let Some(Key(key)) = self.map.next_key::<Key>()? {
            let twice = match key.as_ref() {
                "name" => self.name.replace(self.map.next_value::<Key>()?.0).is_some(),
                "position" => self.position.replace(self.map.next_value()?).is_some(),
                "frozen" => self.frozen.replace(self.map.next_value()?).is_some(),
                _ => return seed.deserialize(CowStrDeserializer::new(key)).map(Some),
            };
            if twice {
                return Err(de::Error::custom("a key is repeated"));
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[derive(Deserialize)]
pub(super) struct EdgeDoc<'a> {
    #[serde(borrow)]
    pub from: Cow<'a, str>,
    #[serde(borrow)]
    pub to: Cow<'a, str>,
    #[serde(default)]
    pub input: usize,
}

#[derive(Deserialize)]
pub(super) struct GroupDoc<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub members: Vec<Cow<'a, str>>,
    #[serde(default)]
    pub collapsed: bool,
    #[serde(default)]
    pub position: [f32; 2],
}

/// A present key must hold a string (`null` is an error, not "absent").
fn some_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Str<'a>(#[serde(borrow)] Cow<'a, str>);
    Str::deserialize(d).map(|s| Some(s.0))
}

/// A present key must hold an array (`null` is an error, not "absent").
fn some_seq<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<GroupDoc<'de>>>, D::Error> {
    Vec::deserialize(d).map(Some)
}

impl<'a> DesignDoc<'a> {
    /// The document, if the typed reading takes it and every per-node check
    /// the checked reader makes passes (format, version, names, parameters).
    pub(super) fn read(text: &'a str) -> Option<DesignDoc<'a>> {
        let doc: DesignDoc = serde_json::from_str(text).ok()?;
        let fits = doc.format == FORMAT
            && (1..=VERSION).contains(&doc.version)
            && doc
                .nodes
                .iter()
                .all(|n| !n.name.trim().is_empty() && n.kind.validate().is_ok())
            && doc
                .orientation
                .as_deref()
                .is_none_or(|tag| Orientation::from_tag(tag).is_some());
        fits.then_some(doc)
    }
}
