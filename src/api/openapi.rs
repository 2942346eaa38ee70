//! The API's contract as OpenAPI 3.1, built from the code: the operation table below (which a
//! test holds to the router), request bodies from the same schemas as manifests, and the error
//! body with every code of [`ErrorCode`]. Served at `/v1/openapi.json`, committed as
//! `schema/openapi.json`.

use serde_json::{Map, Value, json};

use crate::api::ErrorCode;

/// What an operation takes as its body.
#[derive(Clone, Copy)]
enum RequestBody {
    None,
    /// A configuration object of this manifest kind, without `apiVersion` and `kind`.
    Object(&'static str),
    /// A JSON object with these properties (JSON Schema).
    Json(fn() -> Value),
    /// A `perch-data` file.
    Ndjson,
}

/// What an operation answers with on success.
#[derive(Clone, Copy)]
enum Success {
    /// A JSON document of this schema.
    Json(u16, fn() -> Value),
    /// No body.
    Empty(u16),
    /// Server-Sent Events.
    Events,
    /// A `perch-data` file.
    Ndjson,
    /// Prometheus metrics in the OpenMetrics text format.
    Metrics,
}

struct Operation {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    /// Whether a bearer token is needed.
    auth: bool,
    query: &'static [(&'static str, &'static str, &'static str)],
    body: RequestBody,
    success: Success,
}

fn any_object() -> Value {
    json!({"type": "object"})
}

fn change_counter_schema() -> Value {
    json!({
        "type": "object",
        "required": ["generation", "objects", "lastId"],
        "additionalProperties": false,
        "properties": {
            "generation": {"type": "integer", "minimum": 0},
            "objects": {"type": "integer", "minimum": 0},
            "lastId": {"type": "integer", "minimum": 0}
        }
    })
}

fn list_of_objects() -> Value {
    json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Shown"}}}})
}

fn items() -> Value {
    json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"type": "object"}}}})
}

fn shown() -> Value {
    json!({"$ref": "#/components/schemas/Shown"})
}

fn message_body() -> Value {
    json!({"type": "object", "required": ["body"], "additionalProperties": false, "properties": {"body": {"type": "string"}}})
}

fn clear_body() -> Value {
    json!({"type": "object", "required": ["endDate"], "additionalProperties": false, "properties": {"endDate": {"type": "string"}, "dryRun": {"type": "boolean"}}})
}

fn remove_body() -> Value {
    json!({"type": "object", "additionalProperties": false, "properties": {
        "user": {"type": "string"}, "startDate": {"type": "string"}, "endDate": {"type": "string"},
        "filter": {"type": "string"}, "match": {"enum": ["all", "or", "any", "exact"]},
        "caseSensitive": {"type": "boolean"}, "replace": {"type": "string"}, "dryRun": {"type": "boolean"}}})
}

fn lock_body() -> Value {
    json!({"type": "object", "required": ["holder"], "additionalProperties": false, "properties": {
        "holder": {"type": "string"}, "ttlSeconds": {"type": "integer"}}})
}

fn token_body() -> Value {
    json!({"type": "object", "required": ["user", "role"], "additionalProperties": false, "properties": {
        "user": {"type": "string"}, "role": {"enum": ["admin", "user"]}, "expiresIn": {"type": "string"}}})
}

fn applied_body() -> Value {
    json!({"type": "object", "required": ["files"], "additionalProperties": false, "properties": {
        "revision": {"type": ["string", "null"]},
        "stopped": {"type": ["string", "null"]},
        "files": {"type": "array", "items": {"type": "object", "required": ["path", "text"], "additionalProperties": false,
            "properties": {"path": {"type": "string"}, "text": {"type": "string"}}}}}})
}

fn message_counts_body() -> Value {
    json!({"type": "object", "required": ["roomIds"], "additionalProperties": false, "properties": {
        "roomIds": {"type": "array", "maxItems": 10000, "items": {"type": "integer"}}}})
}

fn message_counts_answer() -> Value {
    json!({"type": "object", "required": ["counts"], "properties": {
        "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}}})
}

fn hold_body() -> Value {
    json!({"type": "object", "required": ["reason"], "additionalProperties": false, "properties": {"reason": {"type": "string"}}})
}

const NAME: (&str, &str, &str) = ("name", "path", "string");

const ROOM_LIST_QUERY: &[(&str, &str, &str)] = &[
    ("category", "query", "string"),
    ("addin", "query", "string"),
    ("member", "query", "string"),
    ("manager", "query", "string"),
    ("privacy", "query", "string"),
    ("type", "query", "string"),
    ("disabled", "query", "string"),
    ("q", "query", "string"),
    ("after", "query", "string"),
    ("limit", "query", "integer"),
];

macro_rules! collection_operations {
    ($collection:literal, $kind:literal, $title:literal) => {
        [
            Operation {
                method: "get",
                path: concat!("/v1/", $collection),
                id: concat!("list_", $collection),
                summary: concat!("Every ", $title, " the caller may see"),
                auth: true,
                query: &[],
                body: RequestBody::None,
                success: Success::Json(200, list_of_objects),
            },
            Operation {
                method: "post",
                path: concat!("/v1/", $collection),
                id: concat!("create_", $collection),
                summary: concat!("Create a ", $title),
                auth: true,
                query: &[
                    ("managed", "query", "boolean"),
                    ("protect", "query", "boolean"),
                ],
                body: RequestBody::Object($kind),
                success: Success::Json(201, shown),
            },
            Operation {
                method: "get",
                path: concat!("/v1/", $collection, "/{name}"),
                id: concat!("get_", $collection),
                summary: concat!("One ", $title),
                auth: true,
                query: &[NAME],
                body: RequestBody::None,
                success: Success::Json(200, shown),
            },
            Operation {
                method: "put",
                path: concat!("/v1/", $collection, "/{name}"),
                id: concat!("replace_", $collection),
                summary: concat!("Replace a ", $title, " (a new name renames it)"),
                auth: true,
                query: &[
                    NAME,
                    ("managed", "query", "boolean"),
                    ("protect", "query", "boolean"),
                ],
                body: RequestBody::Object($kind),
                success: Success::Json(200, shown),
            },
            Operation {
                method: "patch",
                path: concat!("/v1/", $collection, "/{name}"),
                id: concat!("patch_", $collection),
                summary: concat!("Change the fields given of a ", $title),
                auth: true,
                query: &[NAME],
                body: RequestBody::Json(any_object),
                success: Success::Json(200, shown),
            },
            Operation {
                method: "delete",
                path: concat!("/v1/", $collection, "/{name}"),
                id: concat!("remove_", $collection),
                summary: concat!("Remove a ", $title),
                auth: true,
                query: &[NAME, ("force", "query", "boolean")],
                body: RequestBody::None,
                success: Success::Empty(204),
            },
        ]
    };
}

fn operations() -> Vec<Operation> {
    let mut all = vec![
        Operation {
            method: "get",
            path: "/healthz",
            id: "health",
            summary: "200 while the process lives (liveness)",
            auth: false,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "get",
            path: "/readyz",
            id: "ready",
            summary: "200 while the database answers, its migrations done; 503 otherwise (readiness)",
            auth: false,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "get",
            path: "/metrics",
            id: "metrics",
            summary: "Prometheus metrics: requests and latency by route and status, messages, streams, archive, lock, pool, build (absent with --metrics-listen, which serves it apart)",
            auth: false,
            query: &[],
            body: RequestBody::None,
            success: Success::Metrics,
        },
        Operation {
            method: "get",
            path: "/v1/openapi.json",
            id: "openapi",
            summary: "This document",
            auth: false,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "get",
            path: "/v1/state/changes",
            id: "state_changes",
            summary: "Where the configuration stands: a change counter that grows with every change of an object (admins); perch plan's cache is keyed by it",
            auth: true,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, change_counter_schema),
        },
        Operation {
            method: "get",
            path: "/v1/state",
            id: "state",
            summary: "Every object in one snapshot (admins); `layout=rows` writes each as `[kind, id, version, managed, protect, createdAt, updatedBy, updatedAt, fields]` rather than as shown",
            auth: true,
            query: &[("layout", "query", "string")],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "get",
            path: "/v1/compliance",
            id: "get_compliance",
            summary: "The compliance configuration",
            auth: true,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, shown),
        },
        Operation {
            method: "put",
            path: "/v1/compliance",
            id: "set_compliance",
            summary: "Replace the compliance configuration",
            auth: true,
            query: &[
                ("managed", "query", "boolean"),
                ("protect", "query", "boolean"),
            ],
            body: RequestBody::Object("ComplianceDoc"),
            success: Success::Json(200, shown),
        },
        Operation {
            method: "post",
            path: "/v1/compliance/run",
            id: "run_archiver",
            summary: "Archive now (admins)",
            auth: true,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "get",
            path: "/v1/audit",
            id: "audit",
            summary: "The audit trail, newest first (admins)",
            auth: true,
            query: &[
                ("kind", "query", "string"),
                ("name", "query", "string"),
                ("actor", "query", "string"),
                ("action", "query", "string"),
                ("since", "query", "string"),
                ("until", "query", "string"),
                ("before", "query", "integer"),
                ("limit", "query", "integer"),
            ],
            body: RequestBody::None,
            success: Success::Json(200, items),
        },
        Operation {
            method: "get",
            path: "/v1/tokens",
            id: "list_tokens",
            summary: "Every token, never the tokens themselves (admins)",
            auth: true,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, items),
        },
        Operation {
            method: "post",
            path: "/v1/tokens",
            id: "create_token",
            summary: "Create a token, shown once (admins)",
            auth: true,
            query: &[],
            body: RequestBody::Json(token_body),
            success: Success::Json(201, any_object),
        },
        Operation {
            method: "delete",
            path: "/v1/tokens/{id}",
            id: "revoke_token",
            summary: "Revoke a token by its id (admins)",
            auth: true,
            query: &[("id", "path", "string")],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "get",
            path: "/v1/applied",
            id: "read_applied",
            summary: "The manifests of the last perch apply, who applied them, when and from which revision (admins)",
            auth: true,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "put",
            path: "/v1/applied",
            id: "record_applied",
            summary: "Record the manifests an apply carried out, for the Git view (admins)",
            auth: true,
            query: &[],
            body: RequestBody::Json(applied_body),
            success: Success::Empty(204),
        },
        Operation {
            method: "get",
            path: "/v1/holds",
            id: "list_holds",
            summary: "Every legal hold (admins)",
            auth: true,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, items),
        },
        Operation {
            method: "put",
            path: "/v1/holds/{collection}/{name}",
            id: "place_hold",
            summary: "Place a legal hold on a room or category (admins)",
            auth: true,
            query: &[("collection", "path", "string"), NAME],
            body: RequestBody::Json(hold_body),
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "delete",
            path: "/v1/holds/{collection}/{name}",
            id: "release_hold",
            summary: "Release a legal hold (admins)",
            auth: true,
            query: &[("collection", "path", "string"), NAME],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "post",
            path: "/v1/messages/counts",
            id: "count_messages",
            summary: "How many messages rooms hold, by room id: what removing them deletes (admins; at most 10,000 rooms)",
            auth: true,
            query: &[],
            body: RequestBody::Json(message_counts_body),
            success: Success::Json(200, message_counts_answer),
        },
        Operation {
            method: "post",
            path: "/v1/retention/run",
            id: "run_retention",
            summary: "Expire messages past their category's retention now (admins)",
            auth: true,
            query: &[],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "get",
            path: "/v1/data/export",
            id: "export_data",
            summary: "A perch-data export (admins)",
            auth: true,
            query: &[
                ("level", "query", "string"),
                ("scope", "query", "string"),
                ("since", "query", "string"),
                ("disableExported", "query", "boolean"),
            ],
            body: RequestBody::None,
            success: Success::Ndjson,
        },
        Operation {
            method: "post",
            path: "/v1/data/import",
            id: "import_data",
            summary: "Import a perch-data file, all or nothing (admins)",
            auth: true,
            query: &[
                ("replaceExisting", "query", "boolean"),
                ("dryRun", "query", "boolean"),
            ],
            body: RequestBody::Ndjson,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "get",
            path: "/v1/locks/{name}",
            id: "get_lock",
            summary: "Who holds a lock (admins)",
            auth: true,
            query: &[NAME],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "post",
            path: "/v1/locks/{name}",
            id: "take_lock",
            summary: "Take or renew a lock (admins)",
            auth: true,
            query: &[NAME],
            body: RequestBody::Json(lock_body),
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "delete",
            path: "/v1/locks/{name}",
            id: "release_lock",
            summary: "Release a lock (?holder=) or break it (?force=true) (admins)",
            auth: true,
            query: &[
                NAME,
                ("holder", "query", "string"),
                ("force", "query", "boolean"),
            ],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "get",
            path: "/v1/events",
            id: "events",
            summary: "Live events of every room the caller may read (SSE)",
            auth: true,
            query: &[
                ("maxEvents", "query", "integer"),
                ("until", "query", "integer"),
                ("lastEventId", "query", "string"),
            ],
            body: RequestBody::None,
            success: Success::Events,
        },
        Operation {
            method: "get",
            path: "/v1/rooms/{name}/events",
            id: "room_events",
            summary: "One room's live events (SSE; JOIN and PART for compliance)",
            auth: true,
            query: &[
                NAME,
                ("maxEvents", "query", "integer"),
                ("until", "query", "integer"),
                ("lastEventId", "query", "string"),
            ],
            body: RequestBody::None,
            success: Success::Events,
        },
        Operation {
            method: "get",
            path: "/v1/rooms/{name}/messages",
            id: "history",
            summary: "A page of a room's history",
            auth: true,
            query: &[
                NAME,
                ("before", "query", "integer"),
                ("after", "query", "integer"),
                ("limit", "query", "integer"),
                ("q", "query", "string"),
            ],
            body: RequestBody::None,
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "post",
            path: "/v1/rooms/{name}/messages",
            id: "post_message",
            summary: "Post a message",
            auth: true,
            query: &[NAME],
            body: RequestBody::Json(message_body),
            success: Success::Json(201, any_object),
        },
        Operation {
            method: "post",
            path: "/v1/rooms/{name}/messages/remove",
            id: "remove_messages",
            summary: "Remove or replace matching messages (admins)",
            auth: true,
            query: &[NAME],
            body: RequestBody::Json(remove_body),
            success: Success::Json(200, any_object),
        },
        Operation {
            method: "post",
            path: "/v1/rooms/{name}/clear",
            id: "clear_room",
            summary: "Clear a room's history up to a date (admins)",
            auth: true,
            query: &[NAME],
            body: RequestBody::Json(clear_body),
            success: Success::Json(200, any_object),
        },
    ];
    all.extend(collection_operations!(
        "categories",
        "CategoryDoc",
        "category"
    ));
    all.extend(collection_operations!("rooms", "RoomDoc", "room"));
    // Rooms filter and page as Get-CsPersistentChatRoom did.
    for operation in &mut all {
        if operation.id == "list_rooms" {
            operation.query = ROOM_LIST_QUERY;
            operation.summary = "Every room the caller may see; with a filter or limit, a page of them (`next` is the cursor)";
        }
    }
    all.extend(collection_operations!("addins", "AddinDoc", "add-in"));
    all.extend(collection_operations!("groups", "GroupDoc", "group"));
    all
}

/// Every method and concrete path the document describes (for the test that holds it to the
/// router).
pub fn documented_operations() -> Vec<(&'static str, &'static str)> {
    operations().iter().map(|op| (op.method, op.path)).collect()
}

/// The request body schemas: the manifest documents' own, without `apiVersion` and `kind`.
fn object_schemas() -> Map<String, Value> {
    let manifest = crate::manifest::docs::json_schema();
    let mut schemas = Map::new();
    if let Some(definitions) = manifest.get("$defs").and_then(Value::as_object) {
        for (name, definition) in definitions {
            let mut definition = definition.clone();
            if let Some(properties) = definition
                .get_mut("properties")
                .and_then(Value::as_object_mut)
            {
                properties.remove("apiVersion");
                properties.remove("kind");
            }
            if let Some(required) = definition.get_mut("required").and_then(Value::as_array_mut) {
                required.retain(|field| field != "apiVersion" && field != "kind");
            }
            schemas.insert(name.clone(), definition);
        }
    }
    // References inside point at `#/$defs/..`; in OpenAPI they live under components.
    let text = Value::Object(schemas)
        .to_string()
        .replace("#/$defs/", "#/components/schemas/");
    serde_json::from_str(&text).unwrap_or_default()
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    let mut schemas = object_schemas();
    schemas.insert(
        "Error".to_owned(),
        json!({"type": "object", "required": ["code", "message"], "properties": {
            "code": {"enum": codes}, "message": {"type": "string"},
            "field": {"type": "string"}, "holder": {"type": "string"}}}),
    );
    schemas.insert(
        "Shown".to_owned(),
        json!({"type": "object", "description": "An object's fields and its envelope.",
               "required": ["kind", "id", "version", "managed", "protect", "createdAt", "updatedBy", "updatedAt"],
               "properties": {"kind": {"type": "string"}, "id": {"type": "integer"}, "version": {"type": "integer"},
               "managed": {"type": "boolean"}, "protect": {"type": "boolean"}, "createdAt": {"type": "string"},
               "updatedBy": {"type": "string"}, "updatedAt": {"type": "string"}}}),
    );
    let mut paths = Map::new();
    for operation in operations() {
        let mut spec = Map::new();
        spec.insert("operationId".to_owned(), json!(operation.id));
        spec.insert("summary".to_owned(), json!(operation.summary));
        if !operation.auth {
            spec.insert("security".to_owned(), json!([]));
        }
        let parameters: Vec<Value> = operation
            .query
            .iter()
            .map(|(name, place, kind)| {
                let mut schema = json!({"type": kind});
                // `layout` (of `GET /v1/state`) takes the names its parser knows, and no other.
                if *name == "layout" {
                    schema["enum"] = crate::api::wire::StateLayout::ALL
                        .map(crate::api::wire::StateLayout::name)
                        .into_iter()
                        .collect();
                }
                json!({"name": name, "in": place, "required": *place == "path", "schema": schema})
            })
            .collect();
        if !parameters.is_empty() {
            spec.insert("parameters".to_owned(), Value::Array(parameters));
        }
        match operation.body {
            RequestBody::None => {}
            RequestBody::Object(kind) => {
                spec.insert("requestBody".to_owned(), json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{kind}")}}}}));
            }
            RequestBody::Json(schema) => {
                spec.insert("requestBody".to_owned(), json!({"required": true, "content": {"application/json": {"schema": schema()}}}));
            }
            RequestBody::Ndjson => {
                spec.insert("requestBody".to_owned(), json!({"required": true, "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}));
            }
        }
        let success = match operation.success {
            Success::Json(status, schema) => (
                status,
                json!({"description": "Done", "content": {"application/json": {"schema": schema()}}}),
            ),
            Success::Empty(status) => (status, json!({"description": "Done"})),
            Success::Events => (
                200,
                json!({"description": "Server-Sent Events", "content": {"text/event-stream": {"schema": {"type": "string"}}}}),
            ),
            Success::Ndjson => (
                200,
                json!({"description": "A perch-data file", "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}),
            ),
            Success::Metrics => (
                200,
                json!({"description": "Metrics in the OpenMetrics text format", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}),
            ),
        };
        // Objects created answer 201 and are read, changed and removed by their name.
        let mut success_response = success.1;
        if operation.method == "post"
            && operation.id.starts_with("create_")
            && operation.path.starts_with("/v1/")
            && operation.id != "create_token"
        {
            let collection = operation.path.trim_start_matches("/v1/");
            let links: Map<String, Value> = ["get", "replace", "patch", "remove"]
                .iter()
                .map(|verb| {
                    (
                        format!("{verb}_it"),
                        json!({"operationId": format!("{verb}_{collection}"), "parameters": {"name": "$response.body#/name"}}),
                    )
                })
                .collect();
            success_response["links"] = Value::Object(links);
        }
        spec.insert(
            "responses".to_owned(),
            json!({
                success.0.to_string(): success_response,
                "default": {"description": "An error: one of the documented codes, with its status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            }),
        );
        let entry = paths
            .entry(operation.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[operation.method] = Value::Object(spec);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Perch",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Persistent chat: categories, rooms, add-ins, groups, compliance, chat and live events. Every error is the Error body with a stable code; see the README's table for each code's status.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": paths,
    })
}
