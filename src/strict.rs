//! One reader of untrusted trees (YAML manifests, JSON request bodies) into JSON values: every
//! node counted against a budget as it is built (aliases as often as they are used), nesting
//! and scalar sizes bounded, and a mapping that names one key twice refused rather than
//! resolved silently (last one winning).

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// What one tree may cost.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub nodes: usize,
    pub depth: usize,
    pub scalar_bytes: usize,
    /// What the format calls a mapping, for messages: `mapping` (YAML), `object` (JSON).
    pub mapping: &'static str,
}

/// The nodes spent so far against [`Limits`]; shared by the documents of one file.
#[derive(Debug)]
pub struct Budget {
    nodes: Cell<usize>,
    limits: Limits,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            nodes: Cell::new(0),
            limits,
        }
    }

    /// A seed that reads one tree within this budget.
    pub fn seed(&self) -> Strict<'_> {
        Strict {
            budget: self,
            depth: 0,
        }
    }

    fn charge<E: de::Error>(&self) -> Result<(), E> {
        let nodes = self.nodes.get() + 1;
        self.nodes.set(nodes);
        if nodes > self.limits.nodes {
            return Err(E::custom(format!(
                "more than {} nodes in this file, the limit for its size (aliases count each time they are used)",
                self.limits.nodes
            )));
        }
        Ok(())
    }

    fn scalar<E: de::Error>(&self, text: &str) -> Result<(), E> {
        self.charge()?;
        if text.len() > self.limits.scalar_bytes {
            return Err(E::custom(format!(
                "a value of {} bytes, above the limit of {} bytes for one value",
                text.len(),
                self.limits.scalar_bytes
            )));
        }
        Ok(())
    }
}

/// Reads one value within its [`Budget`].
#[derive(Clone, Copy)]
pub struct Strict<'a> {
    budget: &'a Budget,
    depth: usize,
}

impl Strict<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= self.budget.limits.depth {
            return Err(E::custom(format!(
                "nested more than {} levels deep, the limit",
                self.budget.limits.depth
            )));
        }
        Ok(Strict {
            budget: self.budget,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        self.budget.charge()?;
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.budget.scalar(value)?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.budget.scalar(&value)?;
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.charge()?;
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.charge()?;
        let inner = self.nested()?;
        let mut entries = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.budget.scalar::<A::Error>(&key)?;
            let value = map.next_value_seed(inner)?;
            if entries.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the key `{}` appears twice in one {}",
                    crate::text::excerpt(&key, 80),
                    self.budget.limits.mapping
                )));
            }
            entries.insert(key, value);
        }
        Ok(Value::Object(entries))
    }
}
