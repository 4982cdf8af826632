//! The progress line of `probe read` on a terminal: where in the input it is, how fast it goes
//! and when it will be done.
//!
//! Drawn on stderr only when stderr is a terminal, and only for large input (32 MiB or more) or
//! once reading has taken a second, so small files and scripts see nothing. The line is
//! redrawn in place at most four times a second and erased before the books are printed.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const LARGE: u64 = 32 << 20;
const REDRAW: Duration = Duration::from_millis(250);

pub struct ProgressLine {
    enabled: bool,
    /// Bytes of all inputs (0 when some input is a pipe: no ETA then).
    total: u64,
    /// Bytes of the files already finished.
    done: u64,
    started: Instant,
    last: Instant,
    drawn: bool,
}

impl ProgressLine {
    /// `sizes`: each input's size, `None` for a pipe or device.
    pub fn new(sizes: &[Option<u64>]) -> ProgressLine {
        let total = if sizes.iter().all(|s| s.is_some()) {
            sizes.iter().map(|s| s.unwrap_or(0)).sum()
        } else {
            0
        };
        ProgressLine {
            enabled: std::io::stderr().is_terminal(),
            total,
            done: 0,
            started: Instant::now(),
            // Large input shows the line at once.
            last: Instant::now() - REDRAW,
            drawn: false,
        }
    }

    /// Cheap enough to call every few thousand packets: draws only when due.
    pub fn update(
        &mut self,
        file: &str,
        index: usize,
        files: usize,
        read: u64,
        packets: u64,
        flows: usize,
    ) {
        if !self.enabled || self.last.elapsed() < REDRAW {
            return;
        }
        let elapsed = self.started.elapsed();
        if self.total < LARGE && elapsed < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let bytes = self.done + read;
        let rate = bytes as f64 / secs;
        let mut line = format!("reading {file}");
        if files > 1 {
            line += &format!(" ({}/{files})", index + 1);
        }
        if self.total > 0 {
            let left = self.total.saturating_sub(bytes) as f64 / rate.max(1.0);
            line += &format!(
                ": {} of {} ({:.0}%), {}/s, {:.2} M packets/s, {flows} flows active, ETA {}",
                human(bytes),
                human(self.total),
                100.0 * bytes as f64 / self.total.max(1) as f64,
                human(rate as u64),
                packets as f64 / secs / 1e6,
                clock(left),
            );
        } else {
            line += &format!(
                ": {}, {}/s, {:.2} M packets/s, {flows} flows active",
                human(bytes),
                human(rate as u64),
                packets as f64 / secs / 1e6
            );
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// A file is done: its bytes count towards the total.
    pub fn file_done(&mut self, bytes: u64) {
        self.done += bytes;
    }

    /// Erases the line, so the books that follow start on a clean line.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds as h:mm:ss.
pub(crate) fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_times_read_like_people_write_them() {
        assert_eq!(super::human(512), "512 B");
        assert_eq!(super::human(3 << 30), "3.0 GiB");
        assert_eq!(super::clock(3725.4), "1:02:05");
    }
}
