//! Strict reading of JSON, for the lean parse: every value is read (never skipped), a
//! duplicate key at any depth is an error, and strings are borrowed from the body where they
//! have no escapes.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

pub(super) fn duplicate<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key \"{key}\""))
}

/// Any JSON value, read (not skipped): numbers out of range, invalid escapes and the like are
/// errors here exactly as they are for the inner service's JSON parser, so a body is never
/// accepted by the layers and read differently (or rejected) by the service behind them.
pub(super) struct StrictAny;

impl<'de> serde::Deserialize<'de> for StrictAny {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(StrictAny)
    }
}

impl<'de> Visitor<'de> for StrictAny {
    type Value = StrictAny;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self, E> {
        if v.is_finite() {
            Ok(StrictAny)
        } else {
            Err(E::custom("number out of range"))
        }
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self, E> {
        Ok(StrictAny)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<StrictAny>()?.is_some() {}
        Ok(StrictAny)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self, A::Error> {
        // Duplicate keys at any depth: the service behind might read either value.
        each_entry(map, |_, map| map.next_value::<StrictAny>().map(drop))?;
        Ok(StrictAny)
    }
}

/// Reads an object's entries in order, refusing a duplicate key, each value with `value`.
pub(super) fn each_entry<'de, A: MapAccess<'de>>(
    mut map: A,
    mut value: impl FnMut(&str, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut seen = SeenKeys::default();
    while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
        if !seen.insert(key.clone()) {
            return Err(duplicate(&key));
        }
        value(&key, &mut map)?;
    }
    Ok(())
}

/// Keys seen in one object, borrowed from the body where they have no escapes. The first few
/// are kept in place (no allocation for the objects requests are made of) and searched in
/// place; past them a hash set takes over, so an object with many keys costs linear time, never
/// quadratic.
#[derive(Default)]
pub(super) struct SeenKeys<'de> {
    first: [Cow<'de, str>; INLINE_KEYS],
    len: usize,
    /// Keys after the first few, in order.
    more: Vec<Cow<'de, str>>,
    index: Option<std::collections::HashSet<Cow<'de, str>>>,
}

const INLINE_KEYS: usize = 8;

impl<'de> SeenKeys<'de> {
    /// Records `key`; false if the object had it already.
    pub(super) fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if let Some(index) = &mut self.index {
            if !index.insert(key.clone()) {
                return false;
            }
            self.more.push(key);
            return true;
        }
        if self.first[..self.len].contains(&key) {
            return false;
        }
        if self.len < INLINE_KEYS {
            self.first[self.len] = key;
            self.len += 1;
            return true;
        }
        let mut index: std::collections::HashSet<_> = self.first.iter().cloned().collect();
        index.insert(key.clone());
        self.index = Some(index);
        self.more.push(key);
        true
    }

    /// The keys in order, in one allocation for the list (none when there are no keys).
    pub(super) fn into_shared(self) -> Arc<[Box<str>]> {
        if self.len == 0 {
            return Arc::default();
        }
        self.first[..self.len]
            .iter()
            .chain(&self.more)
            .map(|k| k.as_ref().into())
            .collect()
    }
}

/// A string (an object key, or a value that must be a string), borrowed from the body unless
/// it had escapes. (`Cow<str>`'s own `Deserialize` always copies.)
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        de.deserialize_str(V)
    }
}
