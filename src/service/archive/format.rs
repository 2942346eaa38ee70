//! The archive's file formats, pure: the original's documented XML (its XSD is kept in
//! `tests/fixtures/compliance/`) and Perch's JSON (its schema is `schema/compliance.schema.json`).
//!
//! XML rules: no namespace of Perch's own; the documented element and attribute names;
//! `ma-chan://DOMAIN/ID` channel URIs; every time in the documented three forms. Text that
//! XML 1.0 cannot carry is replaced by U+FFFD ([`crate::domain::compliance::xml_text`]);
//! tab, line feed and carriage return in attributes are written as character references so
//! that parsers keep them. Room and user details, which the XSD has no place for, go to a side
//! file (`<batch>.details.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::Serialize;
use time::OffsetDateTime;

use crate::clock;
use crate::domain::compliance::xml_text;
use crate::domain::{Category, ComplianceEventType, Room};
use crate::store::ComplianceEventRow;

/// The domain part of channel URIs: `ma-chan://perch/ROOM-ID`.
pub const CHANNEL_DOMAIN: &str = "perch";

/// The channel URI of a room, as the original's `ma-chan://`.
pub fn channel_uri(room_id: i64) -> String {
    format!("ma-chan://{CHANNEL_DOMAIN}/{room_id}")
}

/// The events of one room in a batch, in order.
pub struct Conversation<'a> {
    pub room_id: i64,
    /// The room's name at its last event in the batch.
    pub room_name: &'a str,
    pub events: Vec<&'a ComplianceEventRow>,
}

/// Groups a batch's events by room, rooms in id order.
pub fn conversations(events: &[ComplianceEventRow]) -> Vec<Conversation<'_>> {
    let mut rooms: BTreeMap<i64, Vec<&ComplianceEventRow>> = BTreeMap::new();
    for event in events {
        rooms.entry(event.room_id).or_default().push(event);
    }
    rooms
        .into_iter()
        .map(|(room_id, events)| Conversation {
            room_id,
            room_name: events.last().map_or("", |event| event.room_name.as_str()),
            events,
        })
        .collect()
}

/// What the archive knows of the rooms and users of a batch beyond the events.
#[derive(Default)]
pub struct BatchContext {
    /// The archive's stable numeric id of each sender.
    pub user_ids: BTreeMap<String, i64>,
    /// Each room as it is now, with its category (absent once removed).
    pub rooms: BTreeMap<i64, Option<(Room, Option<Category>)>>,
    pub add_chat_room_details: bool,
    pub add_user_details: bool,
}

/// A time in the original's three forms: milliseconds since 1970, text with seven fraction
/// digits, and .NET ticks (100 ns since 0001-01-01).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Instant {
    pub since1970: i64,
    pub string: String,
    pub long: i64,
}

/// Ticks from 0001-01-01 to 1970-01-01.
const TICKS_AT_UNIX_EPOCH: i64 = 621_355_968_000_000_000;

impl Instant {
    pub fn from_stored(text: &str) -> Instant {
        let at = clock::parse(text, false).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let nanos = at.unix_timestamp_nanos();
        let ticks = i64::try_from(nanos / 100).unwrap_or(i64::MAX);
        Instant {
            since1970: i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX),
            string: format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second(),
                at.nanosecond() / 100
            ),
            long: ticks.saturating_add(TICKS_AT_UNIX_EPOCH),
        }
    }
}

/// The address part of a SIP URI (`sip:ana@contoso.com` -> `ana@contoso.com`).
fn address(uri: &str) -> &str {
    uri.strip_prefix("sip:").unwrap_or(uri)
}

/// Escapes text for an XML attribute value in double quotes.
fn attribute(text: &str) -> String {
    let text = xml_text(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

fn message_id(event: &ComplianceEventRow) -> i64 {
    // The documented ID is used with CHAT only; the others carry 0, as the original's do.
    event.message_id.unwrap_or(0)
}

fn write_time(out: &mut String, element: &str, text: &str, indent: &str) {
    let at = Instant::from_stored(text);
    let _ = writeln!(
        out,
        "{indent}<{element} since1970=\"{}\" string=\"{}\" long=\"{}\" />",
        at.since1970, at.string, at.long
    );
}

fn write_event(
    out: &mut String,
    element: &str,
    event: &ComplianceEventRow,
    details: &BatchContext,
    indent: &str,
) {
    let _ = writeln!(
        out,
        "{indent}<{element} type=\"{}\" content=\"{}\" id=\"{}\">",
        event.event_type.as_str(),
        attribute(&event.content),
        message_id(event)
    );
    let user_id = details.user_ids.get(&event.sender).copied().unwrap_or(0);
    let _ = write!(
        out,
        "{indent}  <Sender UserName=\"{}\" id=\"{user_id}\"",
        attribute(address(&event.sender))
    );
    if details.add_user_details {
        let _ = write!(out, " email=\"{}\"", attribute(address(&event.sender)));
    }
    let _ = writeln!(out, " uri=\"{}\" />", attribute(&event.sender));
    write_time(out, "DateTimeUTC", &event.at, &format!("{indent}  "));
    let _ = writeln!(out, "{indent}</{element}>");
}

/// One XML file of conversations.
pub fn render_xml(conversations: &[Conversation<'_>], details: &BatchContext) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Conversations xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\n",
    );
    for conversation in conversations {
        let (Some(first), Some(last)) = (conversation.events.first(), conversation.events.last())
        else {
            continue;
        };
        out.push_str("  <Conversation>\n");
        let _ = writeln!(
            out,
            "    <Channel uri=\"{}\" name=\"{}\" />",
            channel_uri(conversation.room_id),
            attribute(conversation.room_name)
        );
        write_event(&mut out, "FirstMessage", first, details, "    ");
        out.push_str("    <Messages>\n");
        for event in &conversation.events {
            write_event(&mut out, "Message", event, details, "      ");
        }
        out.push_str("    </Messages>\n");
        write_time(&mut out, "StartTimeUTC", &first.at, "    ");
        write_time(&mut out, "EndTimeUTC", &last.at, "    ");
        out.push_str("  </Conversation>\n");
    }
    out.push_str("</Conversations>\n");
    out
}

/// Who sent an event, in the JSON archive.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonSender {
    /// The SIP URI.
    pub uri: String,
    /// The archive's stable numeric id of the user.
    pub id: i64,
    pub user_name: String,
}

/// One event in the JSON archive.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonEvent {
    #[serde(rename = "type")]
    pub event_type: ComplianceEventType,
    /// The message id for CHAT; 0 otherwise.
    pub id: i64,
    /// The exact text: a message, a history request, or empty.
    pub content: String,
    pub sender: JsonSender,
    pub time: Instant,
}

/// The room of a conversation in the JSON archive.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonChannel {
    /// `ma-chan://perch/ROOM-ID`.
    pub uri: String,
    pub name: String,
    /// The room as it is now (with `addChatRoomDetails`; absent once removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub room: Option<serde_json::Value>,
}

/// One room's events in a batch, in the JSON archive.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonConversation {
    pub channel: JsonChannel,
    pub messages: Vec<JsonEvent>,
    /// The senders of its events (with `addUserDetails`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<JsonSender>>,
    #[serde(rename = "startTimeUTC")]
    pub start_time_utc: Instant,
    #[serde(rename = "endTimeUTC")]
    pub end_time_utc: Instant,
}

/// A JSON archive file.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonArchive {
    /// Always `perch-compliance/1`.
    pub format: String,
    pub conversations: Vec<JsonConversation>,
}

/// The `format` of every JSON archive file.
pub const JSON_FORMAT: &str = "perch-compliance/1";

fn json_sender(uri: &str, details: &BatchContext) -> JsonSender {
    JsonSender {
        uri: uri.to_owned(),
        id: details.user_ids.get(uri).copied().unwrap_or(0),
        user_name: address(uri).to_owned(),
    }
}

/// One JSON file of conversations.
pub fn render_json(conversations: &[Conversation<'_>], details: &BatchContext) -> String {
    let archive = JsonArchive {
        format: JSON_FORMAT.to_owned(),
        conversations: conversations
            .iter()
            .filter_map(|conversation| {
                let first = conversation.events.first()?;
                let last = conversation.events.last()?;
                let room = details
                    .rooms
                    .get(&conversation.room_id)
                    .and_then(Option::as_ref)
                    .filter(|_| details.add_chat_room_details)
                    .and_then(|(room, _)| serde_json::to_value(room).ok());
                let participants = details.add_user_details.then(|| {
                    let mut senders: Vec<&str> = conversation
                        .events
                        .iter()
                        .map(|event| event.sender.as_str())
                        .collect();
                    senders.sort_unstable();
                    senders.dedup();
                    senders
                        .into_iter()
                        .map(|uri| json_sender(uri, details))
                        .collect()
                });
                Some(JsonConversation {
                    channel: JsonChannel {
                        uri: channel_uri(conversation.room_id),
                        name: conversation.room_name.to_owned(),
                        room,
                    },
                    messages: conversation
                        .events
                        .iter()
                        .map(|event| JsonEvent {
                            event_type: event.event_type,
                            id: message_id(event),
                            content: event.content.clone(),
                            sender: json_sender(&event.sender, details),
                            time: Instant::from_stored(&event.at),
                        })
                        .collect(),
                    participants,
                    start_time_utc: Instant::from_stored(&first.at),
                    end_time_utc: Instant::from_stored(&last.at),
                })
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&archive).unwrap_or_default();
    text.push('\n');
    text
}

/// The side file of an XML batch: what the XSD has no place for.
pub fn render_details(conversations: &[Conversation<'_>], details: &BatchContext) -> String {
    let rooms: Vec<serde_json::Value> = conversations
        .iter()
        .filter(|_| details.add_chat_room_details)
        .map(|conversation| {
            let now = details
                .rooms
                .get(&conversation.room_id)
                .and_then(Option::as_ref);
            serde_json::json!({
                "uri": channel_uri(conversation.room_id),
                "name": conversation.room_name,
                "room": now.map(|(room, _)| room),
                "category": now.and_then(|(_, category)| category.as_ref()),
            })
        })
        .collect();
    let mut users: Vec<&str> = conversations
        .iter()
        .flat_map(|conversation| {
            conversation
                .events
                .iter()
                .map(|event| event.sender.as_str())
        })
        .filter(|_| details.add_user_details)
        .collect();
    users.sort_unstable();
    users.dedup();
    let users: Vec<JsonSender> = users
        .into_iter()
        .map(|uri| json_sender(uri, details))
        .collect();
    let mut text = serde_json::to_string_pretty(&serde_json::json!({
        "format": "perch-compliance-details/1",
        "rooms": rooms,
        "users": users,
    }))
    .unwrap_or_default();
    text.push('\n');
    text
}

/// The JSON Schema of the JSON archive's files.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(JsonArchive)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, event_type: ComplianceEventType, content: &str) -> ComplianceEventRow {
        ComplianceEventRow {
            id,
            event_type,
            room_id: 300,
            room_name: "q3 \"plans\"".to_owned(),
            sender: "sip:kazuto@litwareinc.com".to_owned(),
            content: content.to_owned(),
            message_id: (event_type == ComplianceEventType::Chat).then_some(id),
            at: "2008-06-04T20:15:40.953548Z".to_owned(),
        }
    }

    #[test]
    fn times_take_the_three_documented_forms() {
        let at = Instant::from_stored("2008-06-04T20:15:40.953548Z");
        assert_eq!(at.since1970, 1_212_610_540_953);
        assert_eq!(at.string, "2008-06-04T20:15:40.9535480Z");
        // The documented sample: 633482073409535482 for .9535482.
        assert_eq!(at.long, 633_482_073_409_535_480);
    }

    #[test]
    fn xml_follows_the_documented_shape() {
        let events = vec![
            event(1, ComplianceEventType::Join, ""),
            event(
                2,
                ComplianceEventType::Chat,
                "hello <all> & \"you\"\nline\u{1}",
            ),
            event(3, ComplianceEventType::Backchat, "limit=50 returned=1"),
            event(4, ComplianceEventType::Part, ""),
        ];
        let mut details = BatchContext::default();
        details
            .user_ids
            .insert("sip:kazuto@litwareinc.com".to_owned(), 10);
        let xml = render_xml(&conversations(&events), &details);
        expect_test::expect![[r#"
            <?xml version="1.0" encoding="utf-8"?>
            <Conversations xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
              <Conversation>
                <Channel uri="ma-chan://perch/300" name="q3 &quot;plans&quot;" />
                <FirstMessage type="JOIN" content="" id="0">
                  <Sender UserName="kazuto@litwareinc.com" id="10" uri="sip:kazuto@litwareinc.com" />
                  <DateTimeUTC since1970="1212610540953" string="2008-06-04T20:15:40.9535480Z" long="633482073409535480" />
                </FirstMessage>
                <Messages>
                  <Message type="JOIN" content="" id="0">
                    <Sender UserName="kazuto@litwareinc.com" id="10" uri="sip:kazuto@litwareinc.com" />
                    <DateTimeUTC since1970="1212610540953" string="2008-06-04T20:15:40.9535480Z" long="633482073409535480" />
                  </Message>
                  <Message type="CHAT" content="hello &lt;all&gt; &amp; &quot;you&quot;&#xA;line�" id="2">
                    <Sender UserName="kazuto@litwareinc.com" id="10" uri="sip:kazuto@litwareinc.com" />
                    <DateTimeUTC since1970="1212610540953" string="2008-06-04T20:15:40.9535480Z" long="633482073409535480" />
                  </Message>
                  <Message type="BACKCHAT" content="limit=50 returned=1" id="0">
                    <Sender UserName="kazuto@litwareinc.com" id="10" uri="sip:kazuto@litwareinc.com" />
                    <DateTimeUTC since1970="1212610540953" string="2008-06-04T20:15:40.9535480Z" long="633482073409535480" />
                  </Message>
                  <Message type="PART" content="" id="0">
                    <Sender UserName="kazuto@litwareinc.com" id="10" uri="sip:kazuto@litwareinc.com" />
                    <DateTimeUTC since1970="1212610540953" string="2008-06-04T20:15:40.9535480Z" long="633482073409535480" />
                  </Message>
                </Messages>
                <StartTimeUTC since1970="1212610540953" string="2008-06-04T20:15:40.9535480Z" long="633482073409535480" />
                <EndTimeUTC since1970="1212610540953" string="2008-06-04T20:15:40.9535480Z" long="633482073409535480" />
              </Conversation>
            </Conversations>
        "#]]
        .assert_eq(&xml);
    }
}
