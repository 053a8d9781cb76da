//! A TCP proxy on a free loopback port: each connection it accepts goes to
//! the next of its backends in turn (round robin, as a balancer without
//! stickiness does), and [`Proxy::cut`] drops every connection it carries
//! at once, as a network change does to a client; [`Proxy::hold`] also
//! keeps the connections made meanwhile waiting until [`Proxy::release`],
//! so a client behind it comes back exactly then.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<u64>,
    held: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port in front of `backends`.
    pub async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(0);
        let (held, _) = watch::channel(false);
        let (cuts, holds) = (cut.clone(), held.clone());
        let task = tokio::spawn(async move {
            for backend in backends.iter().cycle() {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let (backend, mut cut, mut held) = (*backend, cuts.subscribe(), holds.subscribe());
                tokio::spawn(async move {
                    if held.wait_for(|h| !h).await.is_err() {
                        return;
                    }
                    let Ok(mut outbound) = TcpStream::connect(backend).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            cut,
            held,
            task,
        }
    }

    /// Drops every connection it carries now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Drops every connection it carries now, and keeps new ones waiting
    /// (accepted, not yet passed on) until [`Proxy::release`].
    pub fn hold(&self) {
        self.held.send_replace(true);
        self.cut();
    }

    /// Passes on the connections kept waiting, and new ones again.
    pub fn release(&self) {
        self.held.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
