//! A TCP proxy on one directed peer link: member A dials member B through it. The nemesis
//! cuts a link to partition A from B and heals it afterwards.
//!
//! Cutting closes the connections in flight and closes new ones as soon as they are
//! accepted, so A's stream to B fails at once and its reconnects are refused until the
//! heal. Raft traffic from B to A runs on B's own link, cut separately.

use std::io;
use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Proxy {
    port: u16,
    /// Whether the link carries traffic.
    open: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy on a fresh loopback port forwarding to `target`, open.
    pub async fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (open, _) = watch::channel(true);
        let accept = tokio::spawn(accept(listener, target, open.subscribe()));
        Ok(Proxy { port, open, accept })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn heal(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, open: watch::Receiver<bool>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if *open.borrow() {
            tokio::spawn(forward(inbound, target, open.clone()));
        }
    }
}

/// Copies both ways until either side closes or the link is cut.
async fn forward(mut inbound: TcpStream, target: SocketAddr, mut open: watch::Receiver<bool>) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    // Raft heartbeats are small writes that must not wait for Nagle's algorithm.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = open.wait_for(|open| !*open) => {}
    }
}
