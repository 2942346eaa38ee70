//! One enum over the named configuration objects, and the bookkeeping the store adds to each.

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::ServiceError;
use crate::api::Envelope;
use crate::domain::{Addin, Category, FieldProblem, Group, Kind, Principal, Room};
use crate::store::{ObjectRow, StoreError};

/// A category, room, add-in or group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Group(Group),
    Addin(Addin),
    Category(Category),
    Room(Room),
}

/// An object as stored: its fields and its [`Envelope`], serialised side by side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stored<T> {
    #[serde(flatten)]
    pub spec: T,
    /// Shown beside the fields, as `/v1/state` and exports show it.
    pub kind: Kind,
    #[serde(flatten)]
    pub meta: Envelope,
}

impl<T: DeserializeFromRow> Stored<T> {
    pub(crate) fn from_row(row: &ObjectRow) -> Result<Stored<T>, ServiceError> {
        let corrupt = |message: String| {
            ServiceError::Store(StoreError::Corrupt {
                kind: row.kind,
                name: row.name.clone(),
                message,
            })
        };
        let value: Value = serde_json::from_str(&row.body).map_err(|e| corrupt(e.to_string()))?;
        Ok(Stored {
            spec: T::from_body(row.kind, value).map_err(corrupt)?,
            kind: row.kind,
            meta: Envelope {
                id: row.id,
                version: row.version,
                managed: row.marks.managed,
                protect: row.marks.protect,
                created_at: row.created_at.clone(),
                updated_by: row.updated_by.clone(),
                updated_at: row.updated_at.clone(),
            },
        })
    }
}

/// What the compliance configuration reads as when asked for as an [`Object`]: nothing.
enum NotAnObject {}

impl<'de> serde::Deserialize<'de> for NotAnObject {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "the compliance configuration is a singleton, not a named object; see /v1/compliance",
        ))
    }
}

/// Decodes a stored body of a known kind.
pub trait DeserializeFromRow: Sized {
    fn from_body(kind: Kind, body: Value) -> Result<Self, String>;
}

impl DeserializeFromRow for Object {
    fn from_body(kind: Kind, body: Value) -> Result<Self, String> {
        Object::from_json(kind, body).map_err(|error| error.to_string())
    }
}

impl DeserializeFromRow for crate::domain::ComplianceConfiguration {
    fn from_body(_kind: Kind, body: Value) -> Result<Self, String> {
        serde_json::from_value(body).map_err(|error| error.to_string())
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Object::Group(group) => group.serialize(serializer),
            Object::Addin(addin) => addin.serialize(serializer),
            Object::Category(category) => category.serialize(serializer),
            Object::Room(room) => room.serialize(serializer),
        }
    }
}

impl Object {
    /// Reads an object of a known kind from JSON, refusing unknown fields.
    ///
    /// # Errors
    /// The first field that does not fit, with its path.
    pub fn from_json(
        kind: Kind,
        value: Value,
    ) -> Result<Object, serde_path_to_error::Error<serde_json::Error>> {
        fn typed<T: DeserializeOwned>(
            value: Value,
        ) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
            serde_path_to_error::deserialize(value)
        }
        Ok(match kind {
            Kind::Group => Object::Group(typed(value)?),
            Kind::Addin => Object::Addin(typed(value)?),
            Kind::Category => Object::Category(typed(value)?),
            Kind::Room => Object::Room(typed(value)?),
            // The singleton has no name and no place among the objects: reading one as an
            // object is an error, not a room.
            Kind::ComplianceConfiguration => match typed::<NotAnObject>(value)? {},
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::Group(_) => Kind::Group,
            Object::Addin(_) => Kind::Addin,
            Object::Category(_) => Kind::Category,
            Object::Room(_) => Kind::Room,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Object::Group(group) => &group.name,
            Object::Addin(addin) => &addin.name,
            Object::Category(category) => &category.name,
            Object::Room(room) => &room.name,
        }
    }

    pub fn normalise(&mut self) {
        match self {
            Object::Group(group) => group.normalise(),
            Object::Addin(addin) => crate::domain::normalise_name(&mut addin.name),
            Object::Category(category) => category.normalise(),
            Object::Room(room) => room.normalise(),
        }
    }

    pub fn problems(&self) -> Vec<FieldProblem> {
        match self {
            Object::Group(group) => group.problems(),
            Object::Addin(addin) => addin.problems(),
            Object::Category(category) => category.problems(),
            Object::Room(room) => room.problems(),
        }
    }

    /// Every principal list the object holds.
    pub fn principal_lists(&self) -> impl Iterator<Item = &Vec<Principal>> {
        let lists: Vec<&Vec<Principal>> = match self {
            Object::Group(group) => vec![&group.members],
            Object::Addin(_) => vec![],
            Object::Category(category) => vec![
                &category.allowed_members,
                &category.denied_members,
                &category.creators,
            ],
            Object::Room(room) => vec![&room.members, &room.managers, &room.presenters],
        };
        lists.into_iter()
    }

    /// Replaces `old` by `new` in every principal list.
    pub fn replace_principal(&mut self, old: &Principal, new: &Principal) {
        let lists: Vec<&mut Vec<Principal>> = match self {
            Object::Group(group) => vec![&mut group.members],
            Object::Addin(_) => vec![],
            Object::Category(category) => vec![
                &mut category.allowed_members,
                &mut category.denied_members,
                &mut category.creators,
            ],
            Object::Room(room) => vec![&mut room.members, &mut room.managers, &mut room.presenters],
        };
        for list in lists {
            for entry in list.iter_mut().filter(|entry| *entry == old) {
                entry.clone_from(new);
            }
        }
    }

    pub fn body_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// Merges a PATCH body into an object: each field given replaces the current value, and a
/// list field given as `{"add": [...], "remove": [...]}` gains and loses those entries.
///
/// # Errors
/// A malformed list change, or a merged object that no longer fits its kind.
pub(crate) fn merge_patch(
    current: &Object,
    patch: Map<String, Value>,
) -> Result<Object, ServiceError> {
    let Ok(Value::Object(mut merged)) = serde_json::to_value(current) else {
        return Err(ServiceError::internal(
            "an object did not serialise to a JSON object",
        ));
    };
    for (field, change) in patch {
        let value = match change {
            Value::Object(list_change) if merged.get(&field).is_some_and(Value::is_array) => {
                apply_list_change(&field, merged.get(&field), list_change)?
            }
            Value::Null if merged.get(&field).is_some_and(Value::is_array) => Value::Array(vec![]),
            other => other,
        };
        merged.insert(field, value);
    }
    Object::from_json(current.kind(), Value::Object(merged)).map_err(ServiceError::from_json_path)
}

fn apply_list_change(
    field: &str,
    current: Option<&Value>,
    change: Map<String, Value>,
) -> Result<Value, ServiceError> {
    let mut entries: Vec<Principal> = current
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(ServiceError::internal)?
        .unwrap_or_default();
    for (operation, values) in change {
        let parsed: Vec<Principal> = serde_path_to_error::deserialize(values).map_err(|error| {
            ServiceError::from_json_path(error).within(&format!("{field}.{operation}"))
        })?;
        match operation.as_str() {
            "add" => entries.extend(parsed),
            "remove" => entries.retain(|entry| !parsed.contains(entry)),
            other => {
                return Err(ServiceError::invalid(
                    format!("{field}.{other}"),
                    crate::api::ErrorCode::UnknownField,
                    format!("a list change takes `add` and `remove`, not `{other}`"),
                ));
            }
        }
    }
    serde_json::to_value(entries).map_err(ServiceError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compliance configuration never reads as a named object (it once read as a room).
    #[test]
    fn the_compliance_singleton_is_not_an_object() {
        let error = Object::from_json(
            Kind::ComplianceConfiguration,
            serde_json::json!({"name": "global", "category": "c"}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("singleton"), "{error}");
    }
}
