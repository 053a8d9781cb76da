//! A TCP proxy on a free loopback port: each connection it accepts goes to
//! the next of its backends in turn (round robin, as a balancer without
//! stickiness does), and [`Proxy::cut`] drops every connection it carries
//! at once, as a network change does to a client.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    cut: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port in front of `backends`.
    pub async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(0);
        let cuts = cut.clone();
        let task = tokio::spawn(async move {
            for backend in backends.iter().cycle() {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let (backend, mut cut) = (*backend, cuts.subscribe());
                tokio::spawn(async move {
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
        Self { addr, cut, task }
    }

    /// Drops every connection it carries now.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
