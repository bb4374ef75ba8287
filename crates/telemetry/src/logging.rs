//! Log output: human-readable lines by default, one JSON object per line for log
//! shippers.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::TelemetryError;

/// Installs the process-wide log subscriber.
///
/// * Logs go to **stdout**, the stream process supervisors and container runtimes collect;
///   stderr stays free for the one-line start-up errors operators read.
/// * `json = false`: the usual `tracing` text format, coloured only on a terminal, with
///   the fields of the enclosing spans before each message.
/// * `json = true`: one object per line, the event's fields at the top level and the
///   current span's fields (such as `request_id` or `package_guid`) under `span`.
///   Only the innermost span is shown, so record ids that must appear on every line on
///   the span that is entered last.
/// * The filter comes from `RUST_LOG` when it is set and not empty, else from `level`
///   (`info`, `debug`, or any `EnvFilter` directive list such as `info,packages=debug`).
///
/// A second call does not panic: it returns [`TelemetryError::AlreadyInitialised`] and
/// leaves the first subscriber in place.
pub fn init_tracing(json: bool, level: &str) -> Result<(), TelemetryError> {
    let directives = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.trim().is_empty() => from_env,
        _ => level.to_owned(),
    };
    let filter = EnvFilter::try_new(&directives).map_err(|e| TelemetryError::Filter {
        filter: directives.clone(),
        reason: e.to_string(),
    })?;
    let ansi = !json && std::io::stdout().is_terminal();
    subscriber(json, ansi, filter, std::io::stdout)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}

/// The subscriber [`init_tracing`] installs, writing to `writer`; separate so tests can
/// read the output.
pub(crate) fn subscriber<W>(
    json: bool,
    ansi: bool,
    filter: EnvFilter,
    writer: W,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let output: Box<dyn Layer<Registry> + Send + Sync> = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed()
    };
    tracing_subscriber::registry().with(output).with(filter)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn capture(json: bool, level: &str, emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = subscriber(json, false, EnvFilter::new(level), move || writer.clone());
        tracing::subscriber::with_default(subscriber, emit);
        out.text()
    }

    #[test]
    fn json_lines_carry_event_and_span_fields() {
        let text = capture(true, "info", || {
            let span = tracing::info_span!("job", request_id = "req-1", package_guid = "pkg-1");
            let _entered = span.enter();
            tracing::info!(bytes = 42_u64, "hashed");
            tracing::debug!("filtered out");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["message"], "hashed");
        assert_eq!(line["bytes"], 42);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["span"]["request_id"], "req-1");
        assert_eq!(line["span"]["package_guid"], "pkg-1");
        assert!(line.get("spans").is_none());
        assert!(line.get("fields").is_none());
    }

    #[test]
    fn text_lines_carry_span_fields() {
        let text = capture(false, "debug", || {
            let span = tracing::info_span!("request", request_id = "req-2");
            let _entered = span.enter();
            tracing::debug!(route = "/v3/packages", "answered");
        });
        assert!(text.contains("request_id=\"req-2\"") || text.contains("request_id=req-2"));
        assert!(text.contains("answered"));
        assert!(text.contains("route=\"/v3/packages\"") || text.contains("route=/v3/packages"));
        assert!(!text.contains('\u{1b}'), "no colours when not a terminal");
    }
}
