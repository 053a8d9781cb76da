//! Child processes for the deployment tests: gateways, workers, Node
//! clients. Killed on drop; their stdout lines can be awaited.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::root;
use crate::raw::http;

/// A child process, killed on drop.
#[derive(Debug)]
pub struct Process {
    /// The process itself.
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `program` in the repository root.
    pub fn start(program: &str, args: &[&str]) -> Self {
        Self::start_with(program, args, &[])
    }

    /// Starts `program` in the repository root with extra environment.
    pub fn start_with(program: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// Waits (20 s at most) for a stdout line containing `text`.
    pub fn expect(&self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {text:?}: {e}"),
            }
        }
    }

    /// Forgets the lines printed so far: the next [`Process::expect`]
    /// sees only what comes after.
    pub fn skip_printed(&self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// Writes one line to the process's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Waits for the exit and says whether it succeeded.
    pub fn success(&mut self) -> bool {
        self.child.wait().unwrap().success()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flags for a `sio-gateway` serving the demo on `addr` over NATS at
/// `nats`, with short timers so that tests see pings, presence and drains.
pub fn gateway_args(nats: &str, addr: SocketAddr) -> Vec<String> {
    [
        "--listen",
        &addr.to_string(),
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
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Waits (20 s at most) until the gateway on `addr` answers `/ready`.
pub async fn ready(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && http(addr, "GET", "/ready", &[], b"").await.status == 200
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway on {addr} never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback port for a server.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A free loopback address for a server.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()))
}

/// How a program is run: directly, or under another one (such as
/// `taskset -c 1`) with extra environment.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// The program and arguments to put before the program run.
    pub under: Vec<OsString>,
    /// Added to the environment.
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// The command that runs `program` this way.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = match self.under.split_first() {
            Some((wrapper, args)) => {
                let mut c = Command::new(wrapper);
                c.args(args).arg(program);
                c
            }
            None => Command::new(program),
        };
        command.envs(self.env.iter().cloned());
        command
    }
}
