//! The progress line `spool migrate` draws on stderr: a bar redrawn in place on a terminal,
//! otherwise (logs, CI) one plain line every few seconds, and always a last line at the end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Where a run is, after each page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Jobs read so far.
    pub done: u64,
    /// Jobs in the source when the run began (at least `done`).
    pub total: u64,
    pub copied: u64,
    pub skipped: u64,
    pub elapsed: Duration,
}

impl Progress {
    pub fn jobs_per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    /// `[#########-----------]  45%  45000/100000 jobs  12345 jobs/s  copied 45000  skipped 0  eta 4s`
    pub fn line(&self, bar: bool) -> String {
        let ratio = if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        };
        let rate = self.jobs_per_second();
        let eta = if rate > 0.0 && self.total > self.done {
            format!("  eta {:.0}s", (self.total - self.done) as f64 / rate)
        } else {
            String::new()
        };
        let head = if bar {
            const WIDTH: usize = 24;
            let filled = ((ratio * WIDTH as f64).round() as usize).min(WIDTH);
            format!("[{}{}] ", "#".repeat(filled), "-".repeat(WIDTH - filled))
        } else {
            "migrate: ".to_string()
        };
        format!(
            "{head}{:>3.0}%  {}/{} jobs  {rate:.0} jobs/s  copied {}  skipped {}{eta}",
            ratio * 100.0,
            self.done,
            self.total,
            self.copied,
            self.skipped
        )
    }
}

/// Draws `Progress` on stderr.
pub struct StderrProgress {
    tty: bool,
    last: Option<Instant>,
    latest: Option<Progress>,
    drawn: bool,
}

/// Plain (non-terminal) output prints at most this often.
const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// A terminal is redrawn at most this often.
const TTY_EVERY: Duration = Duration::from_millis(100);

impl Default for StderrProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl StderrProgress {
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last: None,
            latest: None,
            drawn: false,
        }
    }

    pub fn update(&mut self, p: &Progress) {
        self.latest = Some(*p);
        let every = if self.tty { TTY_EVERY } else { PLAIN_EVERY };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        self.draw(p);
    }

    /// Draws the final state and ends the line.
    pub fn finish(&mut self) {
        if let Some(p) = self.latest {
            self.draw(&p);
        }
        if self.tty && self.drawn {
            eprintln!();
        }
    }

    fn draw(&mut self, p: &Progress) {
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the copy.
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{}", p.line(true)).and_then(|()| err.flush())
        } else {
            writeln!(err, "{}", p.line(false))
        };
        self.drawn = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_counts_rate_and_eta() {
        let p = Progress {
            done: 500,
            total: 1000,
            copied: 400,
            skipped: 100,
            elapsed: Duration::from_secs(1),
        };
        let plain = p.line(false);
        assert!(
            plain.starts_with("migrate:  50%  500/1000 jobs  500 jobs/s"),
            "{plain}"
        );
        assert!(plain.contains("copied 400  skipped 100  eta 1s"), "{plain}");
        let bar = p.line(true);
        assert!(bar.starts_with("[############------------]  50%"), "{bar}");
    }

    #[test]
    fn an_empty_source_is_complete() {
        let p = Progress {
            done: 0,
            total: 0,
            copied: 0,
            skipped: 0,
            elapsed: Duration::ZERO,
        };
        assert!(
            p.line(false).contains("100%  0/0 jobs"),
            "{}",
            p.line(false)
        );
    }
}
