//! `rewardkit serve` on a real socket: start the binary, score, reload on SIGHUP, and shut down
//! gracefully on SIGTERM while a request is in flight; slow-header clients are cut off.
#![cfg(unix)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SPEC: &str = "[[term]]\nname = \"correct\"\nkind = \"gsm8k\"\n";

/// Kills the server if a test fails half-way.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// Sends raw HTTP/1.1 and returns the status code and the body.
fn http(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    read_response(stream)
}

fn read_response(mut stream: TcpStream) -> (u16, String) {
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// Starts `rewardkit serve` on a free port; returns it and its address.
fn start(spec: &std::path::Path, extra: &[&str]) -> (Server, SocketAddr) {
    let child = Command::new(env!("CARGO_BIN_EXE_rewardkit"))
        .args(["serve", "--port", "0", "--workers", "2", "--spec"])
        .arg(spec)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address: SocketAddr = line
        .trim()
        .strip_prefix("rewardkit serve: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (server, address)
}

#[test]
fn slow_headers_are_cut_off_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let (_server, address) = start(&spec, &["--header-timeout-ms", "300"]);
    // Half a request line, then nothing (slowloris).
    let mut slow = TcpStream::connect(address).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-")
        .unwrap();
    let start = Instant::now();
    // Meanwhile, a well-behaved client is served.
    assert_eq!(http(address, "GET", "/ready", ""), (200, "ready\n".into()));
    let mut rest = Vec::new();
    let closed = match slow.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    let elapsed = start.elapsed();
    assert!(closed, "the slow connection was not closed");
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}, expected about 300 ms"
    );
    assert_eq!(http(address, "GET", "/ready", ""), (200, "ready\n".into()));
}

#[test]
fn serves_reloads_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let (mut server, address) = start(&spec, &[]);
    assert!(address.ip().is_loopback(), "binds 127.0.0.1 by default");

    assert_eq!(http(address, "GET", "/ready", ""), (200, "ready\n".into()));
    let body = r#####"{"samples":[{"completion":"so #### 72","reference":"72"},{"completion":"#### 7","reference":"72"}]}"#####;
    let (status, text) = http(address, "POST", "/v1/score", body);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(r#""value":1.0"#) && text.contains(r#""value":0.0"#),
        "{text}"
    );
    let openrlhf = r#####"{"query":["Q? A: #### 72"],"prompts":["Q?"],"labels":["72"]}"#####;
    let (status, text) = http(address, "POST", "/get_reward", openrlhf);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.starts_with(r#"{"rewards":[1.0],"scores":[1.0],"#),
        "{text}"
    );

    // SIGHUP reloads the spec file.
    std::fs::write(&spec, format!("{SPEC}weight = 3.0\n")).unwrap();
    signal(&server.0, "HUP");
    let start = Instant::now();
    loop {
        let (_, text) = http(address, "GET", "/v1/spec", "");
        if text.contains(r#""generation":2"#) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no reload: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, text) = http(address, "POST", "/get_reward", openrlhf);
    assert!(text.starts_with(r#"{"rewards":[3.0],"#), "{text}");

    // A request in flight (headers sent, body not yet) when SIGTERM arrives is still answered.
    let mut in_flight = TcpStream::connect(address).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (head, tail) = openrlhf.split_at(10);
    write!(
        in_flight,
        "POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        openrlhf.len()
    )
    .unwrap();
    in_flight.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(&server.0, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once shutdown has begun.
    assert!(
        TcpStream::connect(address).is_err(),
        "the listener should be closed after SIGTERM"
    );
    in_flight.write_all(tail.as_bytes()).unwrap();
    let (status, text) = read_response(in_flight);
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with(r#"{"rewards":[3.0],"#), "{text}");

    let start = Instant::now();
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}
