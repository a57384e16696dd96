//! Collecting every disagreement a test finds, so one run reports all of them.

/// Collects every disagreement, then fails once with all of them.
#[derive(Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    pub fn same<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, found: T, expected: T) {
        self.check(found == expected, || {
            format!("{what}: found {found:?}, expected {expected:?}")
        });
    }

    pub fn push(&mut self, problem: String) {
        self.0.push(problem);
    }

    pub fn finish(self) {
        assert!(self.0.is_empty(), "\n{}\n", self.0.join("\n"));
    }
}
