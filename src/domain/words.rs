//! Matching messages by words, as `Remove-CsPersistentChatMessage -Filter` and history search
//! do: a word matches whole words only (`q3` finds "Q3 plan" but not "Q30"), and an exact
//! phrase is its words in order, on word boundaries, whatever lies between them.

/// The words of a text: runs of letters and digits; folded to lower case unless
/// `case_sensitive`.
pub fn words(text: &str, case_sensitive: bool) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            if case_sensitive {
                word.to_owned()
            } else {
                word.to_lowercase()
            }
        })
        .collect()
}

/// Whether `phrase` (already split into words) appears in `text_words` in order, side by side.
fn contains_phrase(text_words: &[String], phrase: &[String]) -> bool {
    !phrase.is_empty()
        && text_words
            .windows(phrase.len())
            .any(|window| window == phrase)
}

/// How a query's words combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Every word appears (a word written with punctuation, `q3-plan`, as its own phrase).
    All,
    /// Any word appears.
    Any,
    /// The whole query as one phrase.
    Exact,
}

/// Whether `text` matches `query` (words separated by spaces) under `combine`. An empty query
/// matches everything.
pub fn matches(text: &str, query: &str, combine: Combine, case_sensitive: bool) -> bool {
    let text_words = words(text, case_sensitive);
    let terms: Vec<Vec<String>> = query
        .split_whitespace()
        .map(|term| words(term, case_sensitive))
        .filter(|term| !term.is_empty())
        .collect();
    if terms.is_empty() {
        return true;
    }
    match combine {
        Combine::All => terms.iter().all(|term| contains_phrase(&text_words, term)),
        Combine::Any => terms.iter().any(|term| contains_phrase(&text_words, term)),
        Combine::Exact => contains_phrase(&text_words, &terms.concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_match_whole_words_only() {
        let cases = [
            ("Q3 plan is ready", "q3", Combine::All, false, true),
            ("Q30 numbers", "q3", Combine::All, false, false),
            ("the q3-plan", "q3 plan", Combine::Exact, false, true),
            ("plan for q3", "q3 plan", Combine::Exact, false, false),
            ("q3 and then the plan", "q3 plan", Combine::All, false, true),
            ("Q3 plan", "q3", Combine::All, true, false),
            ("lunch at noon", "q3 lunch", Combine::Any, false, true),
            ("lunchtime", "lunch", Combine::Any, false, false),
            ("Straße gesperrt", "STRASSE", Combine::All, false, false),
            ("Ärger im Büro", "ärger", Combine::All, false, true),
            ("anything", "  ", Combine::Exact, false, true),
            ("release q3-plan now", "q3-plan", Combine::All, false, true),
        ];
        for (text, query, combine, case_sensitive, expected) in cases {
            assert_eq!(
                matches(text, query, combine, case_sensitive),
                expected,
                "{text:?} {query:?} {combine:?} case-sensitive {case_sensitive}"
            );
        }
    }
}
