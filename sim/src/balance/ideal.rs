//! The yardsticks: a central list scheduler that knows every runner's state at every
//! moment (each action, as it arrives, goes to the runner that frees up first), and a
//! lower bound on the makespan that no scheduler at all can beat.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::workload::Action;
use crate::clock::Micros;

/// The central scheduler's result.
#[derive(Debug, Clone)]
pub struct IdealRun {
    pub makespan: Micros,
    /// Queue wait of every action, in arrival order.
    pub waits: Vec<Micros>,
}

/// Greedy list scheduling in arrival order onto the earliest-free runner, with no
/// gossip delay and no network: the best a load balancer could do without reordering
/// the queue or knowing durations in advance.
pub fn central_list_scheduler(actions: &[Action], capacities: &[u32]) -> IdealRun {
    let mut runners: BinaryHeap<Reverse<(Micros, usize)>> = capacities
        .iter()
        .flat_map(|&c| 0..c as usize)
        .enumerate()
        .map(|(runner, _)| Reverse((0, runner)))
        .collect();
    let mut makespan = 0;
    let mut waits = Vec::with_capacity(actions.len());
    for action in actions {
        let Some(Reverse((free_at, runner))) = runners.pop() else {
            break;
        };
        let start = free_at.max(action.arrival);
        let end = start + action.duration;
        waits.push(start - action.arrival);
        makespan = makespan.max(end);
        runners.push(Reverse((end, runner)));
    }
    IdealRun { makespan, waits }
}

/// No schedule finishes before every action could have run to completion after its
/// arrival, nor before the work arriving from any moment on could be spread over every
/// runner from that moment.
pub fn makespan_lower_bound(actions: &[Action], runners: u32) -> Micros {
    let longest = actions
        .iter()
        .map(|a| a.arrival + a.duration)
        .max()
        .unwrap_or(0);
    let mut remaining = 0u128;
    let mut bound = longest;
    for action in actions.iter().rev() {
        remaining += u128::from(action.duration);
        let spread = (remaining / u128::from(runners.max(1))) as Micros;
        bound = bound.max(action.arrival + spread);
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(arrival: Micros, duration: Micros) -> Action {
        Action {
            arrival,
            entry: 0,
            duration,
            digest: 0,
            repeat: false,
        }
    }

    #[test]
    fn list_scheduling_by_hand() {
        // Two runners (one node of 1, one of 1): 10, 1, 1, 10 arriving at once.
        let actions = [action(0, 10), action(0, 1), action(0, 1), action(0, 10)];
        let run = central_list_scheduler(&actions, &[1, 1]);
        // 10 on r0; 1, 1 on r1 (free at 2); the last 10 on r1 from 2 to 12.
        assert_eq!(run.makespan, 12);
        assert_eq!(run.waits, [0, 0, 1, 2]);
        // Total work 22 over 2 runners: 11 is the bound (and optimal here).
        assert_eq!(makespan_lower_bound(&actions, 2), 11);
    }

    #[test]
    fn a_late_long_action_bounds_the_makespan() {
        let actions = [action(0, 1), action(100, 50)];
        assert_eq!(makespan_lower_bound(&actions, 4), 150);
        assert_eq!(central_list_scheduler(&actions, &[4]).makespan, 150);
    }
}
