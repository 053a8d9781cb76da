//! A real `nats-server` per test: started on a free loopback port with its
//! own temporary directory, killed (and the directory removed) on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{Launch, free_port};

/// Where to look for the binary, after `$NATS_SERVER`.
const CANDIDATES: [&str; 3] = [
    "nats-server",
    "/usr/sbin/nats-server",
    "/usr/bin/nats-server",
];

/// A running nats-server owned by one test.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    addr: SocketAddr,
    dir: PathBuf,
    binary: PathBuf,
    /// For a cluster node: the `deploy/nats/cluster.conf` environment.
    cluster_env: Vec<(String, String)>,
    /// What the binary runs under, if anything.
    launch: Launch,
    /// With JetStream (a single server).
    jetstream: bool,
}

/// The harness could not provide a server.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "nats-server not found (looked at $NATS_SERVER and {CANDIDATES:?}); install it with `apt-get install -y nats-server`"
    )]
    NotInstalled,
    #[error("nats-server did not accept connections on {0} within 10 s")]
    NotReady(SocketAddr),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn find_binary() -> Result<PathBuf, HarnessError> {
    let from_env = std::env::var_os("NATS_SERVER").map(PathBuf::from);
    from_env
        .into_iter()
        .chain(CANDIDATES.iter().map(PathBuf::from))
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .ok_or(HarnessError::NotInstalled)
}

impl NatsServer {
    /// Starts a server (with JetStream, its store in the server's own
    /// temporary directory) on a free port and waits until it accepts
    /// clients.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(Launch::default())
    }

    /// Starts a server on a free port under `launch` (e.g. pinned to
    /// some CPUs) and waits until it accepts clients.
    pub fn start_with(launch: Launch) -> Result<Self, HarnessError> {
        Self::start_node(free_port()?, Vec::new(), launch, true)
    }

    /// A server without JetStream (as Debian's default configuration).
    pub fn start_without_jetstream() -> Result<Self, HarnessError> {
        Self::start_node(free_port()?, Vec::new(), Launch::default(), false)
    }

    /// Starts the nodes of an `n`-server cluster configured by the
    /// committed `deploy/nats/cluster.conf`, and waits until each accepts
    /// clients. (The routes form shortly after; a test checks that they
    /// carry messages before relying on them.)
    pub fn cluster(n: usize) -> Result<Vec<Self>, HarnessError> {
        let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
        let routes = (0..n).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
        (0..n)
            .map(|i| {
                let env = Self::cluster_env(i, &ports, &routes);
                Self::start_node(ports[i], env, Launch::default(), false)
            })
            .collect()
    }

    /// The environment `deploy/nats/cluster.conf` reads, for node `i` of
    /// a cluster whose nodes listen on `ports` and route on `routes`.
    pub fn cluster_env(i: usize, ports: &[u16], routes: &[u16]) -> Vec<(String, String)> {
        let mut env = vec![
            ("NATS_NAME".to_owned(), format!("nats-{}", i + 1)),
            (
                "NATS_STORE_DIR".to_owned(),
                std::env::temp_dir()
                    .join(format!(
                        "sio-nats-test-{}-{}/jetstream",
                        std::process::id(),
                        ports[i]
                    ))
                    .display()
                    .to_string(),
            ),
            ("NATS_LISTEN".to_owned(), format!("127.0.0.1:{}", ports[i])),
            (
                "NATS_CLUSTER_LISTEN".to_owned(),
                format!("127.0.0.1:{}", routes[i]),
            ),
        ];
        for (n, port) in routes.iter().enumerate() {
            env.push((
                format!("NATS_ROUTE_{}", n + 1),
                format!("nats://127.0.0.1:{port}"),
            ));
        }
        env
    }

    /// The nats-server binary found on this machine.
    pub fn binary() -> Result<PathBuf, HarnessError> {
        find_binary()
    }

    fn start_node(
        port: u16,
        cluster_env: Vec<(String, String)>,
        launch: Launch,
        jetstream: bool,
    ) -> Result<Self, HarnessError> {
        let dir = std::env::temp_dir().join(format!("sio-nats-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            binary: find_binary()?,
            cluster_env,
            launch,
            jetstream,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let mut command = self.launch.command(&self.binary);
        if self.cluster_env.is_empty() {
            command.args(["-a", "127.0.0.1", "-p", &self.addr.port().to_string()]);
            if self.jetstream {
                // Its store in the server's own directory, gone with it.
                command
                    .arg("-js")
                    .arg("-sd")
                    .arg(self.dir.join("jetstream"));
            }
        } else {
            let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/cluster.conf");
            command
                .arg("-c")
                .arg(conf)
                .envs(self.cluster_env.iter().cloned());
        }
        let child = command
            .arg("--pid")
            .arg(self.dir.join("nats.pid"))
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("nats.log"))?)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(HarnessError::NotReady(self.addr))
    }

    /// Bytes in its JetStream store directory now (what its streams and
    /// buckets take on disk).
    pub fn store_bytes(&self) -> u64 {
        fn size(path: &Path) -> u64 {
            match std::fs::read_dir(path) {
                Ok(entries) => entries.flatten().map(|e| size(&e.path())).sum(),
                Err(_) => std::fs::metadata(path).map_or(0, |m| m.len()),
            }
        }
        size(&self.dir.join("jetstream"))
    }

    /// The process id while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Kills the server (clients see the connection drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server where it is (SIGSTOP): clients still write to it,
    /// it takes nothing in until [`NatsServer::stop`] kills it.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-STOP", &child.id().to_string()])
                .status();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
