//! nginx in front of local gateways, from the committed configs under
//! `deploy/nginx/`: each run in its own prefix directory on free ports,
//! stopped on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::harness::root;
use crate::process::{free_addr, ready};

/// A system tool (nginx, HAProxy) where Debian puts it.
pub fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found: install it with `apt-get install -y {name}`"))
}

/// A file under `deploy/`.
pub fn deploy(file: &str) -> PathBuf {
    root().join("deploy").join(file)
}

/// `conf` with `replace` applied, in a fresh nginx prefix directory.
pub fn prefix(conf: &Path, replace: &[(String, String)]) -> PathBuf {
    let mut text = std::fs::read_to_string(conf).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from.as_str()), "{from} in {}", conf.display());
        text = text.replace(from.as_str(), to);
    }
    let dir = std::env::temp_dir().join(format!(
        "sio-nginx-{}-{}",
        std::process::id(),
        free_addr().port()
    ));
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("nginx.conf"), text).unwrap();
    dir
}

/// A committed nginx config for three local gateways (`file` under
/// `deploy/`) listening on `listen` in front of `gateways`.
pub fn config(file: &str, listen: SocketAddr, gateways: &[SocketAddr]) -> PathBuf {
    let mut replace = vec![("127.0.0.1:3000".to_owned(), listen.to_string())];
    for (i, gw) in gateways.iter().enumerate() {
        replace.push((format!("127.0.0.1:300{}", i + 1), gw.to_string()));
    }
    prefix(&deploy(file), &replace)
}

/// A running nginx; stopped (and its prefix removed) on drop.
#[derive(Debug)]
pub struct Nginx(Child, PathBuf);

impl Nginx {
    /// nginx serving the config in `prefix` on `listen`, up once it
    /// reaches a ready gateway.
    pub async fn start(prefix: PathBuf, listen: SocketAddr) -> Self {
        let child = Command::new(tool("nginx"))
            .arg("-p")
            .arg(&prefix)
            .args(["-c", "nginx.conf", "-g", "daemon off;"])
            .spawn()
            .unwrap();
        let nginx = Self(child, prefix);
        ready(listen).await;
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}
