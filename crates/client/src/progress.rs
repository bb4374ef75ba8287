//! What the user sees on stdout: progress bars and a spinner on a terminal; plain lines
//! (one per tenth of a transfer, no control characters) when stdout is a file or a pipe,
//! so logs of CI jobs stay readable.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Without a known length, a plain line per this many bytes.
const PLAIN_STEP_UNKNOWN: u64 = 16 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    terminal: bool,
}

impl Reporter {
    /// Bars when stdout is a terminal, plain lines otherwise.
    pub fn stdout() -> Reporter {
        Reporter {
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// Plain lines only.
    pub fn plain() -> Reporter {
        Reporter { terminal: false }
    }

    /// A line on stdout. A closed stdout (`| head`) is no reason to fail a push.
    pub fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    /// Progress of a transfer of `total` bytes (when known), labelled `label`.
    pub fn transfer(&self, label: &str, total: Option<u64>) -> Transfer {
        if self.terminal {
            let template = if total.is_some() {
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}"
            } else {
                "{msg} {binary_bytes} {binary_bytes_per_sec}"
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stdout())
                .with_style(style)
                .with_message(label.to_owned());
            Transfer { bar, plain: None }
        } else {
            // The bar still keeps count, rate and ETA; it just never draws.
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
            let step = total.map_or(PLAIN_STEP_UNKNOWN, |t| (t / 10).max(1));
            Transfer {
                bar,
                plain: Some(Arc::new(Plain {
                    label: label.to_owned(),
                    step,
                    next: Mutex::new(step),
                })),
            }
        }
    }

    /// A spinner while waiting for something; plain output says `label` once.
    pub fn spinner(&self, label: &str) -> Spinner {
        if self.terminal {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout())
                .with_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                )
                .with_message(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            Spinner { bar: Some(bar) }
        } else {
            self.line(&format!("{label} ..."));
            Spinner { bar: None }
        }
    }
}

/// Counts the bytes of one transfer; clones count into the same bar.
#[derive(Debug, Clone)]
pub struct Transfer {
    bar: ProgressBar,
    plain: Option<Arc<Plain>>,
}

#[derive(Debug)]
struct Plain {
    label: String,
    step: u64,
    /// The position at which the next line is due.
    next: Mutex<u64>,
}

impl Transfer {
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        let Some(plain) = &self.plain else { return };
        let position = self.bar.position();
        let Ok(mut next) = plain.next.lock() else {
            return;
        };
        if position < *next {
            return;
        }
        while *next <= position {
            *next += plain.step;
        }
        // The last tenth is said by `finish`, with the totals.
        if self.bar.length().is_some_and(|total| position >= total) {
            return;
        }
        let rate = HumanBytes(self.bar.per_sec() as u64);
        let line = match self.bar.length() {
            Some(total) => format!(
                "{}: {}% ({} of {}, {rate}/s, ETA {})",
                plain.label,
                position * 100 / total.max(1),
                HumanBytes(position),
                HumanBytes(total),
                HumanDuration(self.bar.eta()),
            ),
            None => format!("{}: {} ({rate}/s)", plain.label, HumanBytes(position)),
        };
        Reporter::plain().line(&line);
    }

    /// The transfer is complete: the bar stays at its end, or a closing line.
    pub fn finish(&self) {
        self.bar.finish();
        if let Some(plain) = &self.plain {
            let elapsed = self.bar.elapsed();
            let rate = self.bar.position() as f64 / elapsed.as_secs_f64().max(0.001);
            Reporter::plain().line(&format!(
                "{}: 100% ({} in {:.1} s, {}/s)",
                plain.label,
                HumanBytes(self.bar.position()),
                elapsed.as_secs_f64(),
                HumanBytes(rate as u64),
            ));
        }
    }

    /// The transfer failed: the bar stops where it was, silently.
    pub fn abandon(&self) {
        self.bar.abandon();
    }
}

pub struct Spinner {
    bar: Option<ProgressBar>,
}

impl Spinner {
    pub fn set_message(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_owned());
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        // An error path must not leave the spinner ticking over the error line.
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
