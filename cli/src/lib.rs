//! What `remesh-executor` and `remesh-proxy` do the same way: set up logging on stderr
//! (stdout carries only their ready lines) and report the error that ends them.
//!
//! Logs are text for people or one JSON object per line for log pipelines; `RUST_LOG`
//! filters them (default `info`). A fatal error is reported once, in the same format,
//! with each cause on its own line, and a cause whose text the message before it
//! already carries is not repeated (the errors of both binaries include their cause in
//! their own message, so the plain chain would print most of it twice).
#![forbid(unsafe_code)]

use clap::ValueEnum;

/// How log lines (and a fatal error) are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. In JSON each event is one object with its fields
/// and span fields flattened in; panics are logged the same way so that every stderr
/// line parses.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .init();
            std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
        }
    }
}

/// Reports the error a binary exits with: `Error: …` and its causes on stderr, or one
/// JSON log event.
pub fn report_fatal(format: LogFormat, error: &anyhow::Error) {
    let messages = distinct_messages(error);
    match format {
        LogFormat::Text => eprintln!("{}", text_report(&messages)),
        LogFormat::Json => tracing::error!(error = messages.join(": "), "exiting"),
    }
}

/// The error's message and each cause's, leaving out a cause whose text is already
/// part of the message kept before it.
fn distinct_messages(error: &anyhow::Error) -> Vec<String> {
    let mut messages: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if messages.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        messages.push(text);
    }
    messages
}

fn text_report(messages: &[String]) -> String {
    let mut text = format!("Error: {}", messages.first().map_or("", String::as_str));
    if messages.len() > 1 {
        text.push_str("\n\nCaused by:");
        for cause in &messages[1..] {
            text.push_str("\n    ");
            text.push_str(&cause.replace('\n', "\n    "));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Leaf;
    impl std::fmt::Display for Leaf {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("unknown field `cert`")
        }
    }
    impl std::error::Error for Leaf {}

    /// Carries its source in its own message, as thiserror's `"…: {source}"` does.
    #[derive(Debug)]
    struct File(Leaf);
    impl std::fmt::Display for File {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "config file p.toml: {}", self.0)
        }
    }
    impl std::error::Error for File {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_before_it_is_not_repeated() {
        let error = anyhow::Error::new(File(Leaf)).context("invalid configuration");
        let messages = distinct_messages(&error);
        assert_eq!(
            messages,
            [
                "invalid configuration",
                "config file p.toml: unknown field `cert`"
            ]
        );
        assert_eq!(
            text_report(&messages),
            "Error: invalid configuration\n\nCaused by:\n    config file p.toml: unknown field `cert`"
        );
    }

    #[test]
    fn causes_that_add_something_are_kept_in_order() {
        let error = anyhow::anyhow!("disk full")
            .context("writing blob")
            .context("upload failed");
        assert_eq!(
            distinct_messages(&error),
            ["upload failed", "writing blob", "disk full"]
        );
        assert_eq!(text_report(&["alone".into()]), "Error: alone");
    }
}
