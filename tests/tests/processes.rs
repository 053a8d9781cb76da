//! The real deployment: nats-server, a `sio-gateway` process and two
//! `chat-worker` processes. The stock client's suite runs against it, an
//! emit comes from a process of its own, a client reconnects across a
//! gateway restart, and both workers of the queue group take work.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sio_tests::NatsServer;
use sio_tests::harness::{node_suite, npm_ci, root};
use sio_tests::raw::{Ws, http};

/// A child process, killed on drop, whose stdout lines can be awaited.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    fn start(program: &str, args: &[&str]) -> Self {
        Self::start_with(program, args, &[])
    }

    fn start_with(program: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a stdout line containing `text`.
    fn expect(&self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {text:?}: {e}"),
            }
        }
    }

    /// SIGTERM, then wait for the exit.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway(nats: &str, addr: SocketAddr) -> Process {
    let listen = addr.to_string();
    Process::start(
        env!("CARGO_BIN_EXE_gateway-process"),
        &[
            "--listen",
            &listen,
            "--nats",
            nats,
            "--namespaces",
            "/,/echo",
            "--authorize",
            "/",
            "--ping-interval",
            "2000",
            "--ping-timeout",
            "2000",
            "--heartbeat-interval",
            "500",
            "--drain-timeout",
            "2000",
        ],
    )
}

async fn ready(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && http(addr, "GET", "/ready", &[], b"").await.status == 200
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_gateway_and_two_worker_processes() {
    npm_ci();
    let nats = NatsServer::start().expect("nats-server");
    let url = nats.url();
    let addr: SocketAddr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut gw = gateway(&url, addr);
    ready(addr).await;
    let mut workers: Vec<Process> = (0..2)
        .map(|_| Process::start(env!("CARGO_BIN_EXE_worker-process"), &[&url]))
        .collect();
    for w in &workers {
        w.expect("serving");
    }
    let base = format!("http://{addr}");

    // The stock client's suite.
    node_suite("tests/js/", &base, &[]).await;

    // An emit from a process of its own.
    let (mut ws, _) = Ws::joined(addr, "/echo").await;
    let emitted = Command::new(env!("CARGO_BIN_EXE_emit-process"))
        .args([url.as_str(), "/echo", "-", "news", r#"["from a process"]"#])
        .status()
        .unwrap();
    assert!(emitted.success());
    assert_eq!(ws.text().await, r#"42/echo,["news","from a process"]"#);
    drop(ws);

    // A client reconnects across a gateway restart (graceful: SIGTERM).
    let mut client = Process::start_with(
        "node",
        &["tests/js/reconnect-client.js"],
        &[("SIO_URL", &base)],
    );
    client.expect("connected 1");
    gw.terminate();
    gw = gateway(&url, addr);
    ready(addr).await;
    client.expect("ack after restart");
    assert!(client.child.wait().unwrap().success());

    // Both workers of the queue group took work.
    for w in &mut workers {
        w.terminate();
        let handled: u64 = w
            .expect("handled")
            .split_whitespace()
            .find_map(|t| t.parse().ok())
            .expect("a count");
        assert!(handled > 0, "a worker of the group took nothing");
    }
    drop(gw);
}
