//! Check reports (`doctor`, `issuer verify`): one line per check with its status, and a concrete
//! fix under each failure.

use serde::Serialize;

use crate::exit::Outcome;
use crate::output::OutputArgs;

/// The result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Pass,
    /// Broken: the fix says what to do.
    Fail,
    /// Not run: a check it needs failed, or it was not asked for.
    Skip,
    /// Works, but worth knowing.
    Warn,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::Warn => "WARN",
        }
    }
}

/// One check.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Short stable name (`crd`, `binding`, ...).
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Checks in order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Records a passing check.
    pub fn pass(&mut self, name: &'static str, message: impl Into<String>) {
        self.push(name, Status::Pass, message, None::<String>);
    }

    /// Records a warning.
    pub fn warn(&mut self, name: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Status::Warn, message, Some(fix));
    }

    /// Records a failure with its fix.
    pub fn fail(&mut self, name: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Status::Fail, message, Some(fix));
    }

    /// Records a skipped check.
    pub fn skip(&mut self, name: &'static str, message: impl Into<String>) {
        self.push(name, Status::Skip, message, None::<String>);
    }

    fn push(
        &mut self,
        name: &'static str,
        status: Status,
        message: impl Into<String>,
        fix: Option<impl Into<String>>,
    ) {
        self.checks.push(Check {
            name,
            status,
            message: message.into(),
            fix: fix.map(Into::into),
        });
    }

    /// The status of a named check (the last one recorded under that name).
    pub fn status(&self, name: &str) -> Option<Status> {
        self.checks
            .iter()
            .rev()
            .find(|c| c.name == name)
            .map(|c| c.status)
    }

    /// The first of `needs` that failed (or was skipped because of a failure), if any.
    pub fn blocked_by(&self, needs: &[&'static str]) -> Option<&'static str> {
        needs
            .iter()
            .copied()
            .find(|n| matches!(self.status(n), Some(Status::Fail)) || self.skipped_for_failure(n))
    }

    fn skipped_for_failure(&self, name: &str) -> bool {
        self.checks
            .iter()
            .rev()
            .find(|c| c.name == name)
            .is_some_and(|c| c.status == Status::Skip && c.message.starts_with("needs "))
    }

    /// Skips `name` if one of `needs` failed; returns whether it was skipped.
    pub fn skip_unless(&mut self, name: &'static str, needs: &[&'static str]) -> bool {
        match self.blocked_by(needs) {
            Some(failed) => {
                self.skip(name, format!("needs {failed}, which failed"));
                true
            }
            None => false,
        }
    }

    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// Prints the report and returns the outcome (problems if anything failed).
    pub fn finish(&self, output: &OutputArgs) -> anyhow::Result<Outcome> {
        if !output.print_structured(self)? {
            let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in &self.checks {
                println!("[{}] {:<width$}  {}", c.status.label(), c.name, c.message);
                if let Some(fix) = &c.fix {
                    for (i, line) in fix.lines().enumerate() {
                        let label = if i == 0 { "fix:" } else { "" };
                        println!("       {:<width$}  {label:<4} {line}", "");
                    }
                }
            }
            let failed = self.checks.iter().filter(|c| c.status == Status::Fail).count();
            let passed = self.checks.iter().filter(|c| c.status == Status::Pass).count();
            let skipped = self.checks.iter().filter(|c| c.status == Status::Skip).count();
            println!(
                "{} checks: {passed} ok, {failed} failing, {skipped} skipped",
                self.checks.len()
            );
        }
        Ok(if self.failed() {
            Outcome::Problems
        } else {
            Outcome::Ok
        })
    }
}
