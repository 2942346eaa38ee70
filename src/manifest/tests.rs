use super::load::*;

#[test]
fn problems_render_with_a_caret_under_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: perch/v1\nkind: Room\nname: r\ncategory: c\ncolour: red\n",
    )
    .unwrap();
    let problems = load(std::slice::from_ref(&file)).unwrap_err();
    let text = render_problems(&problems);
    assert!(
        text.contains("bad.yaml:5:1: unknown field `colour` in a Room"),
        "{text}"
    );
    assert!(text.contains("  5 | colour: red\n    | ^\n"), "{text}");
}

/// Principal lists are held as the server stores them: normalised, sorted as their text and
/// without repeats, whether the manifest wrote them sorted (as `perch export` does) or not.
#[test]
fn principal_lists_are_normalised_sorted_and_deduplicated() {
    let text = "apiVersion: perch/v1\nkind: Category\nname: c\nallowedMembers: [domain:contoso.com]\n---\napiVersion: perch/v1\nkind: Room\nname: sorted\ncategory: c\nmembers: [sip:a@contoso.com, sip:b@contoso.com, sip:b@contoso.com]\n---\napiVersion: perch/v1\nkind: Room\nname: unsorted\ncategory: c\nmembers:\n  - SIP:C@contoso.com\n  - sip:a@contoso.com\n  - domain:Contoso.com\n  - sip:c@contoso.com\n";
    let desired = load_texts(&[SourceFile {
        path: "rooms.yaml".into(),
        text: text.to_owned(),
    }])
    .unwrap();
    let members = |name: &str| {
        desired.objects()[&(crate::domain::Kind::Room, name.to_owned())].fields["members"].clone()
    };
    assert_eq!(
        members("sorted"),
        serde_json::json!(["sip:a@contoso.com", "sip:b@contoso.com"])
    );
    assert_eq!(
        members("unsorted"),
        serde_json::json!([
            "domain:contoso.com",
            "sip:a@contoso.com",
            "sip:c@contoso.com"
        ])
    );
}
