//! Perch: a persistent chat server, and the reconciler that keeps its configuration in Git.
//!
//! Where to start:
//! - [`domain`]: categories, rooms, add-ins, groups, compliance, principals; no I/O.
//! - [`service`]: the only path to the store; enforces every rule.
//! - [`store`]: SQLite or PostgreSQL behind one SQL text.
//! - [`server`]: the HTTP JSON API (`perch serve`).
//! - [`cli`]: the `perch` command line.
//!
//! `ARCHITECTURE.md` at the top of the repository has the code map and its invariants.

// Everything the program prints goes through `cli::output` (`out!`, `outln!`, `errln!`):
// `println!` and `eprintln!` panic when their reader has gone.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod api;
pub mod atomic_file;
pub mod cli;
pub mod clock;
pub mod domain;
pub mod live;
pub mod manifest;
pub mod parallel;
pub mod plan;
pub mod server;
pub mod service;
pub mod store;
pub mod strict;
pub mod text;

/// What the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod test_support {
    /// Every text of up to `most` pieces, each piece taken from `pieces`, once each: inputs
    /// at the edges of a rule, made exhaustively rather than picked.
    pub(crate) fn texts_of_pieces(pieces: &[&str], most: usize) -> Vec<String> {
        let mut texts = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..most {
            last = last
                .iter()
                .flat_map(|text| pieces.iter().map(move |piece| format!("{text}{piece}")))
                .collect();
            texts.extend(last.iter().cloned());
        }
        texts.sort();
        texts.dedup();
        texts
    }
}

/// The layering ARCHITECTURE.md promises, checked on the source: a module that reaches past
/// its layer fails here, naming the file and the word.
#[cfg(test)]
mod layering_tests {
    use std::path::Path;

    /// Every `.rs` file under `src/<dir>`, tests excluded, with its text.
    fn sources(dir: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir)];
        while let Some(path) = pending.pop() {
            let entries = std::fs::read_dir(&path).expect("source directory readable");
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|ext| ext == "rs")
                    && path.file_name().is_some_and(|name| name != "tests.rs")
                {
                    let text = std::fs::read_to_string(&path).expect("source readable");
                    // Unit tests at the end of a file may use what the code may not.
                    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                    found.push((path.display().to_string(), code.to_owned()));
                }
            }
        }
        assert!(!found.is_empty(), "no sources under src/{dir}");
        found
    }

    fn forbid(dir: &str, words: &[&str], exempt: &[&str]) {
        let mut breaches = Vec::new();
        for (file, code) in sources(dir) {
            if exempt.iter().any(|name| file.ends_with(name)) {
                continue;
            }
            for word in words {
                if code.contains(word) {
                    breaches.push(format!("{file} uses `{word}`"));
                }
            }
        }
        assert!(breaches.is_empty(), "{}", breaches.join("\n"));
    }

    /// Invariant 3: the rules and the plan engine do no I/O and never await.
    #[test]
    fn domain_and_plan_are_pure() {
        let io = ["tokio", "sqlx", "std::fs", "reqwest", ".await", "std::net"];
        forbid("domain", &io, &[]);
        forbid("plan", &io, &[]);
    }

    /// Invariant 4: the command line reaches servers and stores only through `live/`.
    #[test]
    fn cli_knows_neither_http_nor_the_store() {
        // `perch serve` is the server's own entry point: it opens the store and serves it.
        forbid(
            "cli",
            &["reqwest", "crate::store", "crate::server", "Service::new"],
            &["/cli/serve/mod.rs", "/cli/serve/config.rs"],
        );
    }
}
