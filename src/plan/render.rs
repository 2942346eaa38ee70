//! How plans read: for people on a terminal (and the panel's plan pages, which show exactly
//! what `perch plan` prints), and for a pull-request comment. Pure text.

use std::fmt::Write;

use serde_json::Value;

use crate::plan::{Action, FieldChange, Plan, Verb};

/// Markdown comments are cut before this many characters (GitHub's limit is 65,536).
pub const MARKDOWN_LIMIT: usize = 65_000;

fn marker(action: &Action) -> char {
    if action.forget {
        return '.';
    }
    match (action.action, action.adopt_only) {
        (_, true) => '=',
        (Verb::Create, _) => '+',
        (Verb::Set, _) => '~',
        (Verb::Remove, _) => '-',
    }
}

/// The closing line every plan output ends with. What only some plans hold (forgetting,
/// messages deleted with removed rooms) is said only when there is some.
pub fn summary_line(plan: &Plan) -> String {
    let summary = plan.summary;
    let mut line = format!(
        "Plan: {} to create, {} to change, {} to remove.",
        summary.create, summary.change, summary.remove
    );
    if summary.forget > 0 {
        let _ = write!(
            line,
            " {} to forget (kept, no longer managed).",
            summary.forget
        );
    }
    if summary.removed_messages > 0 {
        let _ = write!(
            line,
            " The removals delete {} message(s).",
            summary.removed_messages
        );
    }
    line
}

/// How many actions a human plan shows in full before it counts the rest (`--full` shows all).
pub const SHOWN_IN_FULL: usize = 200;

/// How much of a plan people see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Every action with its changes.
    Full,
    /// The first `n` actions with their changes, the rest counted.
    First(usize),
    /// Counts per kind and verb only (`--summary`).
    Counts,
}

/// The line of one action: `- remove Room "old"  (reason; deletes 12 message(s) ...)`.
fn action_line(action: &Action) -> String {
    format!(
        "  {} {}  ({})",
        marker(action),
        action,
        action_notes(action)
    )
}

/// Why an action is there, and what it costs beyond its fields.
fn action_notes(action: &Action) -> String {
    let mut notes = action.reason.to_string();
    if let Some(old) = &action.renamed_from {
        notes = format!("from \"{old}\"; {notes}");
    }
    if let Some(messages) = action.messages.filter(|messages| *messages > 0) {
        let _ = write!(notes, "; deletes {messages} message(s) of its history");
    }
    notes
}

/// Counts per kind and verb: `Room: 3 create, 1 rename, 2 remove`.
fn counts(actions: &[&Action]) -> String {
    let mut by_kind: std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>> =
        std::collections::BTreeMap::new();
    for action in actions {
        *by_kind
            .entry(action.kind.to_string())
            .or_default()
            .entry(action.verb_text())
            .or_default() += 1;
    }
    let mut out = String::new();
    for (kind, verbs) in by_kind {
        let verbs: Vec<String> = verbs
            .into_iter()
            .map(|(verb, count)| format!("{count} {verb}"))
            .collect();
        let _ = writeln!(out, "  {kind}: {}", verbs.join(", "));
    }
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

fn write_change(out: &mut String, change: &FieldChange, indent: &str) {
    let _ = writeln!(out, "{indent}{}:", change.field);
    for added in &change.added {
        let _ = writeln!(out, "{indent}  + {added}");
    }
    for removed in &change.removed {
        let _ = writeln!(out, "{indent}  - {removed}");
    }
    if !change.added.is_empty() || !change.removed.is_empty() {
        return;
    }
    let from = change.from.as_ref();
    let to = change.to.as_ref();
    match (from, to) {
        (Some(Value::String(old)), Some(Value::String(new)))
            if old.contains('\n') || new.contains('\n') =>
        {
            let diff = similar::TextDiff::from_lines(old.as_str(), new.as_str());
            for line in diff.iter_all_changes() {
                let sign = match line.tag() {
                    similar::ChangeTag::Delete => '-',
                    similar::ChangeTag::Insert => '+',
                    similar::ChangeTag::Equal => ' ',
                };
                let _ = writeln!(
                    out,
                    "{indent}  {sign} {}",
                    line.value().trim_end_matches('\n')
                );
            }
        }
        _ => {
            if let Some(old) = from {
                let _ = writeln!(out, "{indent}  - {}", scalar(old));
            }
            if let Some(new) = to {
                let _ = writeln!(out, "{indent}  + {}", scalar(new));
            }
        }
    }
}

/// The human plan: one block per action, then the counts.
pub fn human(plan: &Plan, target: &str) -> String {
    human_with(plan, target, Detail::Full)
}

/// [`human`], showing as much as `detail` says: a 20,000-room plan need not print 200,000
/// lines before its prompt.
pub fn human_with(plan: &Plan, target: &str, detail: Detail) -> String {
    let mut out = String::new();
    let changing: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|action| !action.adopt_only)
        .collect();
    if changing.is_empty() {
        let _ = writeln!(out, "No changes: {target} matches the manifests.");
    } else {
        let _ = writeln!(out, "Perch will make these changes on {target}:\n");
        let shown = match detail {
            Detail::Full => changing.len(),
            Detail::First(n) => n.min(changing.len()),
            Detail::Counts => 0,
        };
        for action in &changing[..shown] {
            let _ = writeln!(out, "{}", action_line(action));
            for change in &action.changes {
                write_change(&mut out, change, "      ");
            }
        }
        if shown < changing.len() {
            if shown > 0 {
                let _ = writeln!(
                    out,
                    "\n  ... and {} more action(s), counted below; `perch plan --full` shows them all.\n",
                    changing.len() - shown
                );
            }
            out.push_str(&counts(&changing[shown..]));
        }
        out.push('\n');
    }
    if plan.summary.adopt > 0 {
        let _ = writeln!(
            out,
            "{} unmanaged object(s) named by the manifests will be marked as managed on apply.",
            plan.summary.adopt
        );
    }
    if plan.summary.unmanaged > 0 {
        let _ = writeln!(
            out,
            "{} unmanaged object(s) on the server are not in the manifests and are left alone.",
            plan.summary.unmanaged
        );
    }
    let _ = writeln!(out, "{}", summary_line(plan));
    // Names, descriptions and URLs come from manifests and from users of the server: nothing
    // in them may clear the screen or forge a line.
    crate::text::lines_safe(&out)
}

/// The compact summary for a pull-request comment: a collapsible section per object, cut with
/// a note before [`MARKDOWN_LIMIT`] characters.
pub fn markdown(plan: &Plan, target: &str) -> String {
    let mut out = format!(
        "### Perch plan for {target}\n\n**{}**\n\n",
        summary_line(plan)
    );
    let changing: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|action| !action.adopt_only)
        .collect();
    if changing.is_empty() {
        out.push_str("No changes.\n");
    }
    let closing_reserve = 200;
    for (index, action) in changing.iter().enumerate() {
        let mut section = format!(
            "<details><summary><code>{} {}</code> ({})</summary>\n\n```diff\n",
            marker(action),
            escape_html(&action.to_string()),
            escape_html(&action_notes(action))
        );
        let mut body = String::new();
        for change in &action.changes {
            write_change(&mut body, change, "");
        }
        section.push_str(&body.replace("```", "'''"));
        section.push_str("```\n\n</details>\n");
        if out.len() + section.len() + closing_reserve > MARKDOWN_LIMIT {
            let _ = writeln!(
                out,
                "\n> The plan is cut here: {} more action(s) are not shown. Run `perch plan` for the whole plan.",
                changing.len() - index
            );
            break;
        }
        out.push_str(&section);
    }
    if plan.summary.adopt > 0 {
        let _ = writeln!(
            out,
            "\n{} unmanaged object(s) will be adopted.",
            plan.summary.adopt
        );
    }
    if plan.summary.unmanaged > 0 {
        let _ = writeln!(
            out,
            "\n{} unmanaged object(s) are left alone.",
            plan.summary.unmanaged
        );
    }
    // A bidi override in a pull-request comment deceives as well as on a terminal.
    crate::text::lines_safe(&out)
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
