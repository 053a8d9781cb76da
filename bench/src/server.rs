//! The servers under test, started as processes and stopped by PID: the
//! CPU every server-side process used is read from `/proc/<pid>/stat`.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sio_tests::NatsServer;
use sio_tests::process::Launch;
use sio_tests::raw::http::{fetch, metric_value};

/// A server set: sio-nats (gateways, nats-server, a worker) or a peer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) enum Target {
    /// sio-nats with this many gateways.
    SioNats { gateways: usize },
    /// Node socket.io, one process, or several sharing rooms through the
    /// Redis adapter.
    Node { processes: usize },
    /// socketioxide, with its default send buffer or a given one.
    Socketioxide { buffer: Option<usize> },
    /// nats-server alone (a floor).
    Nats,
    /// A bare tokio-tungstenite echo server (a floor).
    WsEcho,
    /// sio-nats or Node socket.io with connection state recovery on.
    Recovering(Box<Target>),
}

impl Target {
    pub(crate) fn name(&self) -> String {
        match self {
            Target::SioNats { gateways: 1 } => "sio-nats".into(),
            Target::SioNats { gateways } => format!("sio-nats ×{gateways}"),
            Target::Node { processes: 1 } => "node socket.io".into(),
            Target::Node { processes } => format!("node socket.io ×{processes} (redis)"),
            Target::Socketioxide { buffer: None } => "socketioxide".into(),
            Target::Socketioxide { buffer: Some(b) } => format!("socketioxide (buffer {b})"),
            Target::Nats => "nats-server".into(),
            Target::WsEcho => "tokio-tungstenite echo".into(),
            Target::Recovering(inner) => format!("{} (recovery)", inner.name()),
        }
    }
}

/// A started server set; every process is killed on drop.
#[derive(Debug)]
pub(crate) struct Running {
    /// Where clients connect (one per gateway or process).
    pub(crate) addrs: Vec<SocketAddr>,
    /// Every server-side process but nats-server, by role.
    pub(crate) processes: Vec<(String, Child)>,
    /// The nats-server, if the set has one (killed after the others).
    pub(crate) nats: Option<NatsServer>,
    /// Process ids of the processes clients connect to.
    pub(crate) front: Vec<u32>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, child) in self.processes.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for (_, child) in &mut self.processes {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Running {
    /// Summed user + system CPU seconds of every server-side process.
    pub(crate) fn cpu(&self) -> f64 {
        self.processes
            .iter()
            .filter(|(role, _)| role != "nginx")
            .map(|(_, c)| c.id())
            .chain(self.nats.as_ref().and_then(NatsServer::pid))
            .map(cpu_seconds)
            .sum()
    }

    /// CPU seconds of the processes clients connect to (the gateways).
    pub(crate) fn front_cpu(&self) -> f64 {
        self.front.iter().map(|&pid| cpu_seconds(pid)).sum()
    }

    /// Resident memory (KiB) of the processes clients connect to.
    pub(crate) fn front_rss(&self) -> u64 {
        self.front.iter().filter_map(|&pid| rss_kib(pid)).sum()
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of a process (all its threads).
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces: fields count from after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks()
}

/// Resident memory of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPUs in a `taskset -c` list such as `1`, `0-3` or `1,3`.
fn cpu_count(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

fn free_port() -> Result<u16, String> {
    sio_tests::process::free_port().map_err(|e| e.to_string())
}

/// How processes are started: binaries, the repository, CPU pinning.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    /// `sio-bench` itself: it runs the gateways and the worker too.
    pub(crate) exe: PathBuf,
    /// The repository root (for the peers).
    pub(crate) root: PathBuf,
    /// `taskset -c` list for the servers, if pinning.
    pub(crate) cpus: Option<String>,
}

impl Launcher {
    /// Under `taskset` when pinning.
    fn launch(&self) -> Launch {
        match &self.cpus {
            Some(cpus) => {
                // As many runtime threads as the CPUs they may use: more
                // only adds context switches (tokio and Go read these).
                let n = cpu_count(cpus).to_string();
                Launch {
                    under: vec!["taskset".into(), "-c".into(), cpus.into()],
                    env: vec![
                        ("TOKIO_WORKER_THREADS".into(), n.clone()),
                        ("GOMAXPROCS".into(), n),
                    ],
                }
            }
            None => Launch::default(),
        }
    }

    fn command(&self, program: impl AsRef<Path>) -> Command {
        self.launch().command(program.as_ref())
    }

    /// Spawns and waits for a stdout line containing `ready`.
    fn spawn(&self, mut command: Command, ready: &str) -> Result<Child, String> {
        let mut child = command
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{command:?}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(ready) => return Ok(child),
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    return Err(format!("{command:?} never printed {ready:?}"));
                }
            }
        }
    }

    fn wait_port(addr: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err(format!("nothing listens on {addr}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Puts nginx in front of a started set of three servers, with the
    /// committed config `deploy/nginx/nginx.conf` (sticky: hashed by
    /// client address) or `nginx-round-robin.conf`; clients connect to it
    /// from then on. Its CPU is not counted with the servers'.
    pub(crate) fn balance(&self, running: &mut Running, sticky: bool) -> Result<(), String> {
        let file = if sticky {
            "nginx.conf"
        } else {
            "nginx-round-robin.conf"
        };
        let mut config = std::fs::read_to_string(self.root.join("deploy/nginx").join(file))
            .map_err(|e| format!("{file}: {e}"))?;
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        config = config.replace("127.0.0.1:3000", &listen.to_string());
        for (i, server) in running.addrs.iter().enumerate() {
            config = config.replace(&format!("127.0.0.1:300{}", i + 1), &server.to_string());
        }
        let prefix = std::env::temp_dir().join(format!("sio-bench-nginx-{}", listen.port()));
        std::fs::create_dir_all(prefix.join("tmp")).map_err(|e| e.to_string())?;
        std::fs::write(prefix.join("nginx.conf"), config).map_err(|e| e.to_string())?;
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("nginx is not installed")?;
        let child = self
            .command(nginx)
            .arg("-p")
            .arg(&prefix)
            .args(["-c", "nginx.conf", "-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nginx: {e}"))?;
        running.processes.push(("nginx".into(), child));
        Self::wait_port(listen)?;
        running.addrs = vec![listen];
        Ok(())
    }

    /// Starts a nats-server on a free port.
    fn nats(&self) -> Result<NatsServer, String> {
        NatsServer::start_with(self.launch()).map_err(|e| e.to_string())
    }

    /// Starts `target`.
    pub(crate) fn start(&self, target: &Target) -> Result<Running, String> {
        match target {
            Target::Recovering(inner) => self.start_with(inner, true),
            other => self.start_with(other, false),
        }
    }

    /// Starts `target`, with connection state recovery if `recovery`.
    fn start_with(&self, target: &Target, recovery: bool) -> Result<Running, String> {
        let mut running = Running {
            addrs: Vec::new(),
            processes: Vec::new(),
            nats: None,
            front: Vec::new(),
        };
        match target {
            Target::Nats => {
                let nats = self.nats()?;
                running.front.extend(nats.pid());
                running.addrs.push(nats.addr());
                running.nats = Some(nats);
            }
            Target::WsEcho => {
                let port = free_port()?;
                let mut echo = self.command(&self.exe);
                echo.args(["ws-echo", &format!("127.0.0.1:{port}")]);
                let echo = self.spawn(echo, "listening")?;
                running.front.push(echo.id());
                running.processes.push(("ws-echo".into(), echo));
                running.addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
            }
            Target::SioNats { gateways } => {
                let nats = self.nats()?;
                let url = nats.url();
                running.nats = Some(nats);
                for _ in 0..*gateways {
                    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                    let mut gw = self.command(&self.exe);
                    gw.arg("gateway")
                        .args(["--listen", &addr.to_string(), "--nats", &url])
                        .args(["--namespaces", "/", "--authorize", "/"])
                        .args(["--log-level", "warn", "--max-connections", "30000"])
                        .args(["--backlog", "4096"]);
                    if recovery {
                        gw.arg("--connection-state-recovery");
                    }
                    let gw = gw
                        .current_dir(&self.root)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .map_err(|e| format!("sio-gateway: {e}"))?;
                    running.front.push(gw.id());
                    running.processes.push(("sio-gateway".into(), gw));
                    Self::wait_port(addr)?;
                    running.addrs.push(addr);
                }
                let mut worker = self.command(&self.exe);
                worker.args(["worker", &url]);
                let worker = self.spawn(worker, "listening")?;
                running.processes.push(("sio-bench worker".into(), worker));
            }
            Target::Node { processes } => {
                let mut redis_url = None;
                if *processes > 1 {
                    let port = free_port()?;
                    let mut redis = self.command("redis-server");
                    redis.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
                    redis.args(["--save", "", "--appendonly", "no"]);
                    let redis = self.spawn(redis, "Ready to accept connections")?;
                    running.processes.push(("redis-server".into(), redis));
                    redis_url = Some(format!("redis://127.0.0.1:{port}"));
                }
                for _ in 0..*processes {
                    let port = free_port()?;
                    let mut node = self.command("node");
                    node.arg("bench/peers/node/server.js")
                        .env("PORT", port.to_string());
                    if let Some(url) = &redis_url {
                        node.env("REDIS_URL", url);
                    }
                    if recovery {
                        node.env("RECOVERY", "1");
                    }
                    let node = self.spawn(node, "listening")?;
                    running.front.push(node.id());
                    running.processes.push(("node".into(), node));
                    running.addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
                }
            }
            Target::Socketioxide { buffer } => {
                let port = free_port()?;
                let binary = self.root.join("target/peers/release/socketioxide-peer");
                let mut peer = self.command(&binary);
                peer.env("PORT", port.to_string());
                if let Some(b) = buffer {
                    peer.env("SIOX_BUFFER", b.to_string());
                }
                let peer = self.spawn(peer, "listening")?;
                running.front.push(peer.id());
                running.processes.push(("socketioxide".into(), peer));
                running.addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
            }
            Target::Recovering(inner) => return self.start_with(inner, true),
        }
        Ok(running)
    }
}

/// The gateway counter `sio_gateway_emits_received_total`, summed over
/// the gateways at `addrs`.
pub(crate) async fn emits_received(addrs: &[SocketAddr]) -> Result<u64, String> {
    const NAME: &str = "sio_gateway_emits_received_total";
    let mut sum = 0;
    for addr in addrs {
        let response = fetch(*addr, "GET", "/metrics", &[], b"")
            .await
            .map_err(|e| e.to_string())?;
        sum += metric_value(&response.text(), NAME).ok_or_else(|| format!("no {NAME}"))?;
    }
    Ok(sum)
}
