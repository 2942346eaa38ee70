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
