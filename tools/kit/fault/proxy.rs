//! A TCP proxy per directed peer link, so the fault bench and the tests can
//! cut real traffic between daemons without any special flag inside them:
//! node X reaches node Y through proxy X→Y; blocking it drops every
//! connection through it and refuses new ones (a one-way partition: Y still
//! reaches X). Test infrastructure: the daemon never uses it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct LinkProxy {
    pub port: u16,
    blocked: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    /// Connections accepted so far (blocked ones included).
    accepted: Arc<AtomicU64>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl LinkProxy {
    pub fn start(target_port: u16) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let blocked = Arc::new(AtomicBool::new(false));
        let stopping = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let link = Link {
                target_port,
                blocked: blocked.clone(),
                stopping: stopping.clone(),
                accepted: accepted.clone(),
                streams: streams.clone(),
            };
            std::thread::spawn(move || accept_loop(listener, &link))
        };
        Ok(LinkProxy {
            port,
            blocked,
            stopping,
            accepted,
            streams,
            acceptor: Some(acceptor),
        })
    }

    /// How many connections were made through the proxy: how often the
    /// node behind it was dialled.
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst)
    }

    /// Cuts (true) or restores (false) the link.
    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::SeqCst);
        if blocked {
            self.drop_connections();
        }
    }

    fn drop_connections(&self) {
        let streams = match self.streams.lock() {
            Ok(mut streams) => std::mem::take(&mut *streams),
            Err(_) => return,
        };
        for stream in streams {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.drop_connections();
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the acceptor
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// What the acceptor thread shares with its `LinkProxy`.
struct Link {
    target_port: u16,
    blocked: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

fn accept_loop(listener: TcpListener, link: &Link) {
    for incoming in listener.incoming() {
        if link.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = incoming else { continue };
        link.accepted.fetch_add(1, Ordering::SeqCst);
        if link.blocked.load(Ordering::SeqCst) {
            continue; // dropped: the connection is refused by closing it
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", link.target_port)) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        if let Ok(mut list) = link.streams.lock() {
            list.retain(|stream| stream.peer_addr().is_ok());
            list.push(client_copy);
            list.push(server_copy);
        }
        pipe(client.try_clone(), server.try_clone());
        pipe(server.try_clone(), client.try_clone());
    }
}

/// Copies bytes one way until either side closes.
fn pipe(from: std::io::Result<TcpStream>, to: std::io::Result<TcpStream>) {
    let (Ok(mut from), Ok(mut to)) = (from, to) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    if to.write_all(&buffer[..count]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
