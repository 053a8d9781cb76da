//! A real `nats-server` per test: started on a free loopback port with its
//! own temporary directory, killed (and the directory removed) on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn free_port() -> Result<u16, HarnessError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts clients.
    pub fn start() -> Result<Self, HarnessError> {
        let binary = find_binary()?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("sio-nats-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            binary,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.addr.port().to_string()])
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
