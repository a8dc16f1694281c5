//! The commands of network-namespace fixtures (they need root): `ip`, and killing what runs
//! inside a namespace the test created.

use std::process::{Command, Output, Stdio};

/// Run `cmd ARGS` to completion, stdin closed; panics only if it cannot be started.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = run("ip", args);
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}\nthese tests need root and network namespaces (ip netns, veth)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip ARGS`, failure ignored (cleanup).
pub fn ip_quiet(args: &[&str]) {
    let _ = run("ip", args);
}

/// Kill every process inside namespace `ns` (only ever one the test created).
pub fn kill_inside(ns: &str) {
    let out = run("ip", &["netns", "pids", ns]);
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = run("kill", &["-KILL", pid]);
    }
}
