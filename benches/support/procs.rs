//! What the end-to-end benchmarks share: free loopback ports, waiting for a listener, child
//! processes killed when their handle drops, a process's CPU time, and the sample request body.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

#[path = "sample.rs"]
mod sample;
#[allow(unused_imports)] // not every benchmark sends the sample body
pub use sample::body;

pub const BIN: &str = env!("CARGO_BIN_EXE_partner-gateway");

/// A child process, killed (and reaped) on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits (at most 30 s) until something accepts connections on `addr`.
pub fn wait_for(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nanoseconds of CPU the threads of process `pid` have run, in all and on threads named
/// `name` (the kernel's `schedstat`; threads that ended are not counted: the gateway's live
/// as long as it does).
pub fn cpu_ns(pid: u32, name: &str) -> (u64, u64) {
    let (mut all, mut named) = (0, 0);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let read = |file: &str| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
        let ns: u64 = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        all += ns;
        if read("comm").trim() == name {
            named += ns;
        }
    }
    (all, named)
}
