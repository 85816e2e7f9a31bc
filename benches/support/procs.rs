//! What the end-to-end benchmarks share: free loopback ports, waiting for a listener, child
//! processes killed when their handle drops, and the sample request body.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

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

/// A realistic ~1 KiB shipment batch: two customers with the personal data the policy names.
pub fn body() -> Vec<u8> {
    let record = |id: u32| {
        format!(
            r#"{{"customer_id":"c-{id}","name":"Ana Lima","email":"ana{id}@example.com","phone":"+351 912 345 678","card_number":"4111 1111 1111 1111","address":{{"street":"Rua das Flores 12","city":"Porto","postal_code":"4050-262","country":"PT"}},"items":[{{"sku":"OHS-LAPTOP-14","qty":1,"unit_price":1299.00}},{{"sku":"OHS-SLEEVE-14","qty":1,"unit_price":39.90}}],"client":{{"ip_address":"203.0.113.7","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0"}}}}"#
        )
    };
    format!(
        r#"{{"order_id":"o-20260815-0042","shipments":[{},{}]}}"#,
        record(1001),
        record(1002)
    )
    .into_bytes()
}
