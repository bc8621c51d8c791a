//! Crashing a node the way a machine dies: SIGKILL to whole process trees.
//! pg_autoctl runs its services as children of a supervisor; killing only
//! the supervisor leaves a keeper service that still talks to the monitor,
//! which is not a crash but a half-alive node.

#![allow(dead_code)]

use std::collections::BTreeSet;

/// `pid`'s parent, from `/proc/<pid>/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `roots` and every process below them.
pub fn tree_of(roots: &[i32]) -> BTreeSet<i32> {
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|pid| Some((pid, parent_of(pid)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut tree: BTreeSet<i32> = roots.iter().copied().collect();
    loop {
        let before = tree.len();
        for (pid, parent) in &all {
            if tree.contains(parent) {
                tree.insert(*pid);
            }
        }
        if tree.len() == before {
            return tree;
        }
    }
}

/// SIGKILL `roots` and all their descendants, found before any is killed.
pub fn kill_trees(roots: &[i32]) {
    signal_all(&tree_of(roots), nix::sys::signal::Signal::SIGKILL);
}

/// Send `signal` to every process of `pids`.
pub fn signal_all(pids: &BTreeSet<i32>, signal: nix::sys::signal::Signal) {
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal);
    }
}
