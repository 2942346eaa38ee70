//! The panel's object forms, from one table of fields per kind: the same table renders a form
//! from an object's JSON and reads a submitted form back into JSON, which the service then
//! checks exactly as it checks an API body.

use maud::{Markup, html};
use serde_json::{Map, Value};

use crate::domain::Kind;

pub enum Input {
    Text,
    LongText,
    /// One principal per line (`sip:`, `group:`, `domain:`), checked as you type.
    Principals,
    Switch,
    Choice(&'static [&'static str]),
    /// Text that is left out when empty.
    Optional,
}

pub struct Field {
    /// The field's JSON name (the API's and the manifests').
    pub name: &'static str,
    pub label: &'static str,
    pub input: Input,
    pub help: &'static str,
}

const fn field(name: &'static str, label: &'static str, input: Input, help: &'static str) -> Field {
    Field {
        name,
        label,
        input,
        help,
    }
}

const CATEGORY: &[Field] = &[
    field("name", "Name", Input::Text, ""),
    field("description", "Description", Input::LongText, ""),
    field(
        "invitations",
        "Invitations",
        Input::Switch,
        "Rooms in it may send invitations.",
    ),
    field(
        "fileUpload",
        "File upload",
        Input::Switch,
        "Members may upload files.",
    ),
    field(
        "chatHistory",
        "Chat history",
        Input::Switch,
        "Members read what was said before they joined.",
    ),
    field(
        "retention",
        "Retention",
        Input::Optional,
        "How long rooms keep messages, e.g. P365D; empty keeps them.",
    ),
    field(
        "allowedMembers",
        "Allowed members",
        Input::Principals,
        "Who may be in its rooms: sip:user@domain, group:NAME or domain:NAME, one per line.",
    ),
    field(
        "deniedMembers",
        "Denied members",
        Input::Principals,
        "Excluded even when allowed, one per line.",
    ),
    field(
        "creators",
        "Creators",
        Input::Principals,
        "Who may create rooms in it, one per line.",
    ),
];

const ROOM: &[Field] = &[
    field("name", "Name", Input::Text, ""),
    field("category", "Category", Input::Text, "The category's name."),
    field("description", "Description", Input::LongText, ""),
    field(
        "privacy",
        "Privacy",
        Input::Choice(&["open", "closed", "secret"]),
        "Open: anyone in scope joins. Closed: anyone in scope finds it, members join. Secret: only members find it.",
    ),
    field(
        "type",
        "Type",
        Input::Choice(&["normal", "auditorium"]),
        "In an auditorium only presenters post.",
    ),
    field(
        "addin",
        "Add-in",
        Input::Optional,
        "An add-in's name, or empty.",
    ),
    field(
        "invitations",
        "Invitations",
        Input::Choice(&["inherit", "false"]),
        "As the category says, or never.",
    ),
    field(
        "disabled",
        "Disabled",
        Input::Switch,
        "Nobody posts or joins.",
    ),
    field("members", "Members", Input::Principals, "One per line."),
    field("managers", "Managers", Input::Principals, "One per line."),
    field(
        "presenters",
        "Presenters",
        Input::Principals,
        "One per line; they post in an auditorium.",
    ),
];

const ADDIN: &[Field] = &[
    field("name", "Name", Input::Text, ""),
    field(
        "url",
        "URL",
        Input::Text,
        "The https:// page shown beside the room.",
    ),
];

const GROUP: &[Field] = &[
    field("name", "Name", Input::Text, ""),
    field("description", "Description", Input::LongText, ""),
    field("members", "Members", Input::Principals, "One per line."),
];

pub const COMPLIANCE: &[Field] = &[
    field(
        "enabled",
        "Enabled",
        Input::Switch,
        "Capture every message, join, leave and history read for the archive.",
    ),
    field("adapterName", "Adapter name", Input::Text, ""),
    field(
        "adapterType",
        "Adapter type",
        Input::Choice(&["xml", "json"]),
        "XML is the original's documented format.",
    ),
    field(
        "adapterOutputDirectory",
        "Output directory",
        Input::Text,
        "Where the archiver writes, on the server.",
    ),
    field(
        "runInterval",
        "Run interval",
        Input::Text,
        "[d.]hh:mm:ss, from 00:01:00 to 30.00:00:00.",
    ),
    field(
        "oneChatRoomPerOutputFile",
        "One room per file",
        Input::Switch,
        "",
    ),
    field("addChatRoomDetails", "Add room details", Input::Switch, ""),
    field("addUserDetails", "Add user details", Input::Switch, ""),
    field(
        "createFileAttachmentsManifest",
        "File attachments manifest",
        Input::Switch,
        "",
    ),
];

pub fn fields(kind: Kind) -> &'static [Field] {
    match kind {
        Kind::Category => CATEGORY,
        Kind::Room => ROOM,
        Kind::Addin => ADDIN,
        Kind::Group => GROUP,
        Kind::ComplianceConfiguration => COMPLIANCE,
    }
}

fn text_of(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Bool(flag)) => flag.to_string(),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| text_of(Some(item)))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The inputs of a form, filled from `values`; `problem` is the field the service refused and
/// why, shown beside it.
pub fn render(
    fields: &[Field],
    values: &Map<String, Value>,
    problem: Option<(&str, &str)>,
) -> Markup {
    html! {
        @for field in fields {
            @let id = format!("f-{}", field.name);
            @let help_id = format!("{id}-help");
            @let error_id = format!("{id}-error");
            @let failed = problem.filter(|(at, _)| at.split(['.', '[']).next() == Some(field.name));
            @let described = [
                (!field.help.is_empty()).then(|| help_id.clone()),
                failed.is_some().then(|| error_id.clone()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            @let described_opt = (!described.is_empty()).then(|| described.clone());
            @let value = text_of(values.get(field.name));
            div class={"field" @if failed.is_some() { " invalid" }} {
                @match field.input {
                    Input::Switch => {
                        input type="checkbox" id=(id) name=(field.name) value="true"
                            checked[values.get(field.name) == Some(&Value::Bool(true))]
                            aria-describedby=[described_opt.clone()];
                        label for=(id) { (field.label) }
                    }
                    Input::Choice(options) => {
                        label for=(id) { (field.label) }
                        select id=(id) name=(field.name) aria-describedby=[described_opt.clone()] {
                            @for option in options {
                                option value=(option) selected[*option == value] { (option) }
                            }
                        }
                    }
                    Input::LongText => {
                        label for=(id) { (field.label) }
                        textarea id=(id) name=(field.name) rows="3" aria-describedby=[described_opt.clone()] { (value) }
                    }
                    Input::Principals => {
                        label for=(id) { (field.label) }
                        textarea id=(id) name=(field.name) rows="4" data-validate="principals"
                            spellcheck="false" aria-describedby={(described) " " (id) "-live"} { (value) }
                        p.live id={(id) "-live"} aria-live="polite" {}
                    }
                    Input::Text | Input::Optional => {
                        label for=(id) { (field.label) }
                        input type="text" id=(id) name=(field.name) value=(value)
                            required[matches!(field.input, Input::Text) && field.name == "name"]
                            aria-describedby=[described_opt.clone()];
                    }
                }
                @if !field.help.is_empty() {
                    p.help id=(help_id) { (field.help) }
                }
                @if let Some((_, message)) = failed {
                    p.error id=(error_id) role="alert" { (message) }
                }
            }
        }
    }
}

/// A submitted form as the JSON object the API takes. Fields the form does not name are left
/// out; switches absent from the form are off.
pub fn parse(fields: &[Field], form: &[(String, String)]) -> Map<String, Value> {
    let get = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let mut object = Map::new();
    for field in fields {
        let value = match field.input {
            Input::Switch => Value::Bool(get(field.name) == Some("true")),
            Input::Principals => Value::Array(
                get(field.name)
                    .unwrap_or_default()
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(|line| Value::String(line.to_owned()))
                    .collect(),
            ),
            Input::Optional => match get(field.name).map(str::trim) {
                Some(text) if !text.is_empty() => Value::String(text.to_owned()),
                _ => continue,
            },
            Input::Text | Input::LongText | Input::Choice(_) => {
                Value::String(get(field.name).unwrap_or_default().to_owned())
            }
        };
        object.insert(field.name.to_owned(), value);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_form_reads_back_as_the_api_body() {
        let form: Vec<(String, String)> = [
            ("name", "Sales"),
            ("category", "Eng"),
            ("description", "a <b>"),
            ("privacy", "secret"),
            ("type", "normal"),
            ("addin", " "),
            ("invitations", "false"),
            ("members", "sip:a@x.com\r\n\r\n  group:ops \n"),
            ("managers", ""),
            ("presenters", ""),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let object = parse(fields(Kind::Room), &form);
        expect_test::expect![[r#"{"category":"Eng","description":"a <b>","disabled":false,"invitations":"false","managers":[],"members":["sip:a@x.com","group:ops"],"name":"Sales","presenters":[],"privacy":"secret","type":"normal"}"#]]
            .assert_eq(&Value::Object(object).to_string());
    }

    #[test]
    fn values_render_escaped() {
        let mut values = Map::new();
        values.insert(
            "description".into(),
            Value::String("</textarea><script>x</script>".into()),
        );
        let html = render(fields(Kind::Group), &values, None).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;/textarea&gt;&lt;script&gt;"), "{html}");
    }
}
