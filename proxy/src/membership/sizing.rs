//! How foca's protocol settings follow the size of the cluster.
//!
//! foca's LAN settings depend on the number of members: how many times each update is
//! re-sent (it must reach every member, so it grows with log N) and how long a
//! suspect has to refute before it is declared down. Settings made for ten members
//! and kept at a hundred leave some members never hearing of a crash and declare live
//! members down under packet loss (`docs/simulation.md`). The membership task asks
//! `size_for` after every change and replaces foca's settings when the answer moves.
//!
//! Sizes are rounded up to a power of two, so a cluster that hovers around one size
//! does not swap settings on every join and leave; below `SMALLEST_SIZE` the settings
//! stay those of a ten-node cluster, the size every node starts with.

use std::num::{NonZeroU32, NonZeroUsize};

/// The size every node starts at and never goes below.
pub const SMALLEST_SIZE: u32 = 10;

/// The cluster size foca's settings are made for, given the members a node knows
/// (itself included).
pub fn size_for(members: usize) -> u32 {
    let members = u32::try_from(members).unwrap_or(u32::MAX);
    if members <= SMALLEST_SIZE {
        SMALLEST_SIZE
    } else {
        members.checked_next_power_of_two().unwrap_or(u32::MAX)
    }
}

/// foca's LAN settings for a cluster of `size` members, with datagrams bounded to
/// `max_packet` bytes (what sealing leaves of a UDP datagram).
pub fn config_for(size: u32, max_packet: NonZeroUsize) -> foca::Config {
    let mut config = foca::Config::new_lan(NonZeroU32::new(size).unwrap_or(NonZeroU32::MIN));
    config.max_packet_size = max_packet;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_clusters_keep_the_starting_size() {
        for members in 0..=10 {
            assert_eq!(size_for(members), SMALLEST_SIZE);
        }
    }

    #[test]
    fn larger_clusters_round_up_to_a_power_of_two() {
        assert_eq!(size_for(11), 16);
        assert_eq!(size_for(16), 16);
        assert_eq!(size_for(17), 32);
        assert_eq!(size_for(1000), 1024);
        assert_eq!(size_for(usize::MAX), u32::MAX);
    }

    #[test]
    fn larger_clusters_spread_updates_further_and_wait_longer() {
        let packet = NonZeroUsize::new(1346).unwrap();
        let small = config_for(size_for(3), packet);
        let large = config_for(size_for(1000), packet);
        assert!(large.max_transmissions > small.max_transmissions);
        assert!(large.suspect_to_down_after > small.suspect_to_down_after);
        assert_eq!(
            large.probe_period, small.probe_period,
            "foca refuses a new period"
        );
        assert_eq!(large.max_packet_size, packet);
    }
}
