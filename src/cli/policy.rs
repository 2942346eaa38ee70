//! `perch plan --policy FILE`: reads the files, checks, and places each violation at its
//! file:line:column.

use std::fmt::Write;
use std::path::PathBuf;

use crate::manifest::{self, Desired};
use crate::plan::Plan;
use crate::plan::policy::{Level, Place, Policy, Violation};

/// What the policies found.
#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
}

impl Report {
    /// The number of `deny` rules broken.
    pub fn denied(&self) -> usize {
        self.violations
            .iter()
            .filter(|violation| violation.level == Level::Deny)
            .count()
    }

    pub fn denies(&self) -> bool {
        self.denied() > 0
    }

    /// One line per violation: `FILE:LINE:COLUMN: deny (rule): message`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for violation in &self.violations {
            let (file, at) = match &violation.place {
                Place::Manifest { origin, pointer } => {
                    (origin.file.clone(), manifest::locate(origin, pointer))
                }
                Place::Policy { file, at } => (file.clone(), *at),
            };
            let _ = writeln!(
                out,
                "{}:{}:{}: {} ({}): {}",
                file.display(),
                at.line,
                at.column,
                violation.level,
                violation.rule,
                violation.message
            );
        }
        out
    }
}

/// Checks the desired state and the plan against every rule of `files`.
///
/// # Errors
/// A file that cannot be read or is not a policy, with where.
pub fn check_files(files: &[PathBuf], desired: &Desired, plan: &Plan) -> Result<Report, String> {
    let mut policy = Policy::default();
    for file in files {
        let text =
            manifest::source::read(file).map_err(|why| format!("{}: {why}", file.display()))?;
        policy.extend(Policy::parse(&text, file)?);
    }
    Ok(Report {
        violations: policy.check(desired, plan),
    })
}
