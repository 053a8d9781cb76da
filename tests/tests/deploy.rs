//! The deploy files, made real: the nginx and HAProxy configs validate,
//! and the stock client's suite runs through nginx in front of three
//! gateways on NATS; when the gateway holding a client dies, the client
//! reconnects through nginx to another one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sio_tests::harness::{connect, demo_config, node_suite, npm_ci, root};
use sio_tests::raw::http;
use sio_tests::{BusKind, TestGateway};

fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found: install it with `apt-get install -y {name}`"))
}

/// The committed nginx config with its addresses replaced, in a fresh
/// prefix directory.
fn nginx_prefix(listen: SocketAddr, gateways: &[SocketAddr]) -> PathBuf {
    let mut conf = std::fs::read_to_string(root().join("deploy/nginx/nginx.conf")).unwrap();
    conf = conf.replace("127.0.0.1:3000", &listen.to_string());
    for (i, gw) in gateways.iter().enumerate() {
        conf = conf.replace(&format!("127.0.0.1:300{}", i + 1), &gw.to_string());
    }
    let dir = std::env::temp_dir().join(format!(
        "sio-nginx-{}-{}",
        std::process::id(),
        listen.port()
    ));
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    dir
}

struct Nginx(Child, PathBuf);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn configs_validate() {
    let prefix = nginx_prefix(free_addr(), &[free_addr(), free_addr(), free_addr()]);
    let out = Command::new(tool("nginx"))
        .arg("-t")
        .arg("-p")
        .arg(&prefix)
        .args(["-c", "nginx.conf"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(prefix);
    let out = Command::new(tool("haproxy"))
        .args(["-c", "-f"])
        .arg(root().join("deploy/haproxy/haproxy.cfg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_behind_nginx() {
    npm_ci();
    let bus = BusKind::Nats.start().await;
    let server = bus.server.as_ref().unwrap();
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(Some(
            TestGateway::start(demo_config(), connect(server).await).await,
        ));
    }
    let mut workers = Vec::new();
    for _ in 0..2 {
        workers.push(
            sio_demo::worker()
                .start(connect(server).await)
                .await
                .unwrap(),
        );
    }
    let listen = free_addr();
    let addrs: Vec<SocketAddr> = gateways.iter().flatten().map(|g| g.addr).collect();
    let prefix = nginx_prefix(listen, &addrs);
    let child = Command::new(tool("nginx"))
        .arg("-p")
        .arg(&prefix)
        .args(["-c", "nginx.conf", "-g", "daemon off;"])
        .spawn()
        .unwrap();
    let _nginx = Nginx(child, prefix);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(listen).await.is_err()
        || http(listen, "GET", "/health", &[], b"").await.status != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://{listen}");
    node_suite("tests/js/", &url, &[]).await;

    // The gateway holding a client goes away; the client comes back
    // through nginx on another gateway.
    let mut client = Command::new("node")
        .arg("tests/js/reconnect-client.js")
        .env("SIO_URL", &url)
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = client.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = |lines: &std::sync::mpsc::Receiver<String>| {
        lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line from the client")
    };
    assert_eq!(line(&lines), "connected 1");
    let mut holder = None;
    for (i, gw) in gateways.iter().enumerate() {
        let addr = gw.as_ref().unwrap().addr;
        let metrics = http(addr, "GET", "/metrics", &[], b"").await.text();
        if metrics.lines().any(|l| l == "sio_gateway_sessions 1") {
            holder = Some(i);
        }
    }
    let holder = gateways[holder.expect("a gateway holds the client")]
        .take()
        .unwrap();
    holder.gateway.drain().await;
    drop(holder);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("ack")) {
        seen.push(line(&lines));
    }
    assert!(seen.contains(&"ack after restart".to_owned()), "{seen:?}");
    assert!(client.wait().unwrap().success());
    for w in workers {
        w.shutdown().await;
    }
}
