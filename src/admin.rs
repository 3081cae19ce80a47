//! What the administrative commands (`proxyfn keys`, `proxyfn limits`) share: how they fail.

/// Why an administrative command did not run.
#[derive(Debug)]
pub enum AdminError {
    /// The configuration does not allow it (exit status 2).
    Config(String),
    /// It was tried and failed, e.g. Redis did not answer (exit status 1).
    Failed(String),
}
