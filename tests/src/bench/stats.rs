//! Medians, percentiles and the Markdown table the benchmark prints.

use std::time::Duration;

/// What one bounded load loop measured.
#[derive(Debug, Clone)]
pub struct Round {
    /// Completed operations.
    pub completed: usize,
    pub elapsed: Duration,
    /// One entry per completed operation, in no particular order.
    pub latencies: Vec<Duration>,
}

impl Round {
    /// Completed operations per second.
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p`-th percentile latency (nearest rank), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        percentile(&sorted, p).as_secs_f64() * 1e3
    }
}

/// Nearest-rank percentile of sorted samples; zero for none.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (the upper one of an even count); NaN for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Values of one measured quantity over the rounds, for one contender.
#[derive(Debug, Clone, Default)]
pub struct Series(pub Vec<f64>);

impl Series {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    pub fn median(&self) -> f64 {
        median(&self.0)
    }

    /// `median (min – max)` with the given decimals; a dash when nothing was measured.
    pub fn summary(&self, decimals: usize) -> String {
        if self.0.is_empty() {
            return "—".into();
        }
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(
            "{:.d$} ({min:.d$} – {max:.d$})",
            self.median(),
            d = decimals
        )
    }
}

/// A Markdown table, printed once everything is measured.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|cell| cell.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut text = line(&self.header);
        let rule: Vec<String> = self.header.iter().map(|_| "---".to_owned()).collect();
        text.push_str(&line(&rule));
        for row in &self.rows {
            text.push_str(&line(row));
        }
        text
    }
}

/// `a / b` as a ratio like `0.93×`; a dash when either side was not measured.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() {
        return "—".into();
    }
    format!("{:.2}×", a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 3.0);
    }
}
