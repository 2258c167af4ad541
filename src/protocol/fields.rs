//! Readers for the `params` fields the layers decide on: each keeps only what a decision needs
//! and refuses any other shape.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::era::META_PROTOCOL_VERSION;
use super::request::RequestId;
use super::strict::{Key, SeenKeys, StrictAny, duplicate, each_entry};

/// A string field that must be a string (never a number, null or object).
pub(super) struct OptString(pub(super) Arc<str>);

impl<'de> serde::Deserialize<'de> for OptString {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        Ok(Self(Key::deserialize(de)?.0.into()))
    }
}

/// A field that must be a JSON object (read strictly, nothing kept).
pub(super) struct ObjectSeed(&'static str);

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" as an object", self.0)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        StrictAny.visit_map(map).map(drop)
    }
}

/// `params.inputResponses`: an object whose every answer is an object.
pub(super) struct AnswersSeed;

impl<'de> DeserializeSeed<'de> for AnswersSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnswersSeed {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"inputResponses\" as an object of answers")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        each_entry(map, |_, map| {
            map.next_value_seed(ObjectSeed("an answer in inputResponses"))
        })
    }
}

/// `params._meta`: an object, of which only the stated protocol version and the trace context
/// (`traceparent`) are kept. Both, when present, must be strings.
pub(super) struct MetaSeed;

/// What `params._meta` says: the protocol version it states, and whether it carries any key of
/// the protocol's own (`io.modelcontextprotocol/…`), which only a caller on 2026-07-28 sends.
#[derive(Default)]
pub(super) struct Meta {
    pub(super) version: Option<Box<str>>,
    pub(super) traceparent: Option<Box<str>>,
    pub(super) protocol_keys: bool,
}

impl<'de> DeserializeSeed<'de> for MetaSeed {
    type Value = Meta;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(MetaVisitor)
    }
}

struct MetaVisitor;

impl<'de> Visitor<'de> for MetaVisitor {
    type Value = Meta;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"_meta\" as an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut meta = Meta::default();
        each_entry(map, |key, map| {
            meta.protocol_keys |= key.starts_with("io.modelcontextprotocol/");
            if key == META_PROTOCOL_VERSION {
                meta.version = Some(map.next_value::<Key<'de>>()?.0.into());
                Ok(())
            } else if key == "traceparent" {
                meta.traceparent = Some(map.next_value::<Key<'de>>()?.0.into());
                Ok(())
            } else {
                map.next_value::<StrictAny>().map(drop)
            }
        })?;
        Ok(meta)
    }
}

/// A value that may be a JSON-RPC id (`params.requestId` of a cancellation): the id when it is
/// a string or an integer, else nothing; any value is read as strictly as every other.
pub(super) struct MaybeId(pub(super) Option<RequestId>);

impl<'de> serde::Deserialize<'de> for MaybeId {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(MaybeIdVisitor)
    }
}

struct MaybeIdVisitor;

impl<'de> Visitor<'de> for MaybeIdVisitor {
    type Value = MaybeId;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaybeId, E> {
        Ok(MaybeId(Some(RequestId::Number(v))))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaybeId, E> {
        Ok(MaybeId(i64::try_from(v).ok().map(RequestId::Number)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<MaybeId, E> {
        Ok(MaybeId(Some(RequestId::String(v.into()))))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<MaybeId, E> {
        StrictAny.visit_bool(v).map(|_| MaybeId(None))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<MaybeId, E> {
        StrictAny.visit_f64(v).map(|_| MaybeId(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<MaybeId, E> {
        Ok(MaybeId(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MaybeId, A::Error> {
        StrictAny.visit_seq(seq).map(|_| MaybeId(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeId, A::Error> {
        StrictAny.visit_map(map).map(|_| MaybeId(None))
    }
}

/// `params.notifications`, as a `subscriptions/listen` carries it: an object whose
/// `resourceSubscriptions` is an array of strings. Any other shape is read strictly and kept
/// as [`Filter::Malformed`], refused only when the method is `subscriptions/listen` (another
/// method's `params.notifications` is not ours to judge).
pub(super) enum Filter {
    Uris(Option<Vec<Arc<str>>>),
    Malformed,
}

pub(super) struct FilterSeed;

impl<'de> DeserializeSeed<'de> for FilterSeed {
    type Value = Filter;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FilterSeed {
    type Value = Filter;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"notifications\" as an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut uris = Some(None);
        each_entry(map, |key, map| {
            if key == "resourceSubscriptions" {
                uris = map.next_value::<Strings>()?.0.map(Some);
                Ok(())
            } else {
                map.next_value::<StrictAny>().map(drop)
            }
        })?;
        Ok(uris.map_or(Filter::Malformed, Filter::Uris))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        StrictAny.visit_seq(seq).map(|_| Filter::Malformed)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        StrictAny.visit_f64(v).map(|_| Filter::Malformed)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Filter::Malformed)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Filter::Malformed)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Filter::Malformed)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Filter::Malformed)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Filter::Malformed)
    }
}

/// An array of strings (`Some`), or any other value read strictly (`None`).
struct Strings(Option<Vec<Arc<str>>>);

impl<'de> serde::Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Each;
        impl<'de> Visitor<'de> for Each {
            type Value = Option<Arc<str>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(v.into()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                StrictAny.visit_f64(v).map(|_| None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                StrictAny.visit_seq(seq).map(|_| None)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                StrictAny.visit_map(map).map(|_| None)
            }
        }
        struct One(Option<Arc<str>>);
        impl<'de> serde::Deserialize<'de> for One {
            fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
                de.deserialize_any(Each).map(One)
            }
        }
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Option<Vec<Arc<str>>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Some(Vec::new());
                while let Some(One(item)) = seq.next_element()? {
                    match (item, &mut out) {
                        (Some(uri), Some(list)) => list.push(uri),
                        _ => out = None,
                    }
                }
                Ok(out)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                StrictAny.visit_map(map).map(|_| None)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                StrictAny.visit_f64(v).map(|_| None)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        de.deserialize_any(List).map(Strings)
    }
}

pub(super) struct KeysSeed;

impl<'de> DeserializeSeed<'de> for KeysSeed {
    type Value = Arc<[Box<str>]>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(KeysVisitor)
    }
}

struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = Arc<[Box<str>]>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"arguments\" as an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = SeenKeys::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if !keys.insert(key.clone()) {
                return Err(duplicate(&key));
            }
            map.next_value::<StrictAny>()?;
        }
        Ok(keys.into_shared())
    }
}
