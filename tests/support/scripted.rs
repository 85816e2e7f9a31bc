//! A scripted partner on a raw socket: it records every request it reads (raw bytes) and
//! answers each with whatever the test's script says, including answers no well-behaved
//! server would send (informational answers, broken status lines, answers that stop halfway).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the partner does with one request.
pub enum Act {
    /// Write these bytes and keep the connection for the next request.
    Answer(Vec<u8>),
    /// Write these bytes, then close.
    AnswerClose(Vec<u8>),
    /// Write the first bytes, wait, write the rest, then close.
    AnswerSlowly(Vec<u8>, Duration, Vec<u8>),
    /// Close without answering (the request was read whole).
    Close,
    /// Write the bytes one at a time, waiting between them, then close.
    Trickle(Vec<u8>, Duration),
    /// Answer nothing: hold the connection open this long (the request was read whole), then
    /// close.
    Silent(Duration),
    /// Wait, write, for each step; then keep the connection (`true`) or close.
    Timed(Vec<(Duration, Vec<u8>)>, bool),
}

/// `(connection number, request number on that connection, raw request) -> what to do`.
pub type Script = dyn Fn(usize, usize, &[u8]) -> Act + Send + Sync;

pub struct Scripted {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<Mutex<usize>>,
}

impl Scripted {
    pub fn start(script: impl Fn(usize, usize, &[u8]) -> Act + Send + Sync + 'static) -> Scripted {
        Scripted::start_at("127.0.0.1:0", script)
    }

    /// Like [`Scripted::start`], listening on `bind` (e.g. `[::1]:0`).
    pub fn start_at(
        bind: &str,
        script: impl Fn(usize, usize, &[u8]) -> Act + Send + Sync + 'static,
    ) -> Scripted {
        let listener = TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (reqs, conns) = (requests.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = {
                    let mut c = conns.lock().unwrap();
                    *c += 1;
                    *c
                };
                let (script, reqs) = (script.clone(), reqs.clone());
                std::thread::spawn(move || serve(stream, n, &*script, &reqs));
            }
        });
        Scripted {
            addr,
            requests,
            connections,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request read, raw, in order.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

fn serve(mut stream: TcpStream, conn: usize, script: &Script, log: &Mutex<Vec<Vec<u8>>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = Vec::new();
    for index in 1.. {
        let Some(request) = read_request(&mut stream, &mut buffer) else {
            return;
        };
        log.lock().unwrap().push(request.clone());
        match script(conn, index, &request) {
            Act::Answer(bytes) => {
                if stream.write_all(&bytes).is_err() {
                    return;
                }
            }
            Act::AnswerClose(bytes) => {
                let _ = stream.write_all(&bytes);
                return;
            }
            Act::AnswerSlowly(first, wait, rest) => {
                let _ = stream.write_all(&first);
                let _ = stream.flush();
                std::thread::sleep(wait);
                let _ = stream.write_all(&rest);
                return;
            }
            Act::Close => return,
            Act::Timed(steps, keep) => {
                for (wait, bytes) in steps {
                    std::thread::sleep(wait);
                    if stream.write_all(&bytes).is_err() {
                        return;
                    }
                    let _ = stream.flush();
                }
                if !keep {
                    return;
                }
            }
            Act::Silent(wait) => {
                std::thread::sleep(wait);
                return;
            }
            Act::Trickle(bytes, wait) => {
                for byte in bytes {
                    if stream.write_all(&[byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(wait);
                }
                return;
            }
        }
    }
}

/// Reads one request (head and `content-length` body; chunked bodies are read to their end).
fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let head_end = loop {
        if let Some(i) = find(buffer, b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let have = buffer.len() - head_end;
        let done = if chunked {
            find(&buffer[head_end..], b"0\r\n\r\n").is_some()
        } else {
            have >= length
        };
        if done {
            break;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let end = if chunked {
        head_end + find(&buffer[head_end..], b"0\r\n\r\n").unwrap() + 5
    } else {
        head_end + length
    };
    let request = buffer[..end].to_vec();
    buffer.drain(..end);
    Some(request)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete JSON answer with `content-length`.
pub fn json_answer(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
