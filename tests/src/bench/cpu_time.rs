//! CPU time a relay process spent, read from `/proc`: how much a proxy costs per call,
//! which throughput alone hides when client, relay and backend share the cores.
//!
//! Counts user and system time of a process and of its direct children (nginx's
//! workers are children of its master), at the kernel's fixed 100 ticks per second
//! (`USER_HZ`, what `/proc/<pid>/stat` reports in on Linux).

use std::time::Duration;

/// `/proc/<pid>/stat` counts in units of 1/100 s on every Linux architecture.
const USER_HZ: u64 = 100;

/// User plus system time of `pid` and its direct children; `None` when `/proc` cannot
/// tell (not Linux, or the process is gone).
pub fn of_process_tree(pid: u32) -> Option<Duration> {
    let mut ticks = ticks_of(pid)?;
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        // A worker that exited between the listing and the read has nothing to add.
        ticks += ticks_of(child).unwrap_or(0);
    }
    Some(from_ticks(ticks))
}

/// User plus system time of `pid` alone, all its threads included; `None` when
/// `/proc` cannot tell.
pub fn of_process(pid: u32) -> Option<Duration> {
    Some(from_ticks(ticks_of(pid)?))
}

fn from_ticks(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 1000 / USER_HZ)
}

/// `utime + stime` of one process, all its threads included.
fn ticks_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

/// Fields 14 and 15 of a `stat` line. The command name (field 2) is in parentheses
/// and may hold spaces, so fields are counted from the last `)`.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) is the 12th from here.
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_ticks_past_a_name_with_spaces() {
        let stat = "4242 (nginx: worker) S 4241 4241 4241 0 -1 4194624 900 0 0 0 \
                    37 12 0 0 20 0 1 0 555 1000 200 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(49));
    }

    #[test]
    fn counts_the_time_a_process_spends_computing() {
        let before = of_process_tree(std::process::id()).expect("/proc is readable");
        // Spin for 300 ms of wall time: nearly all of it is CPU time.
        let start = std::time::Instant::now();
        let mut spin = 0_u64;
        while start.elapsed() < Duration::from_millis(300) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let spent = of_process_tree(std::process::id()).unwrap() - before;
        assert!(spent >= Duration::from_millis(100), "{spent:?}");
    }
}
