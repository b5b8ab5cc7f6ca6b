//! The browsers' own network: a Linux network namespace holding nothing but a loopback
//! interface, in which every Chromium runs. The only ways out of it are sockets the daemon opened
//! *inside* it: the egress proxy's listener (so every byte a page sends, by any protocol, either
//! goes through the proxy's checks or goes nowhere — WebRTC's UDP, raw sockets and direct TCP
//! find no route) and, the other way, the daemon's connections to each browser's DevTools port,
//! which are forwarded from a host-side loopback port.
//!
//! A network namespace is per thread: one thread of this module enters the new namespace and
//! stays there for the daemon's life, opening the sockets that must live inside; browsers are
//! moved into it between fork and exec (`setns` on [`Namespace::fd`]). Creating one needs
//! `CAP_SYS_ADMIN` — root has it, and an unprivileged daemon gets it in a user namespace of its
//! own ([`enter_own_user_namespace`], at start, while the process has one thread).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc as std_mpsc;

use tokio::sync::oneshot;

enum Request {
    Listen(oneshot::Sender<io::Result<TcpListener>>),
    Connect(SocketAddr, oneshot::Sender<io::Result<TcpStream>>),
}

/// A network namespace with only `lo`, and the thread that opens sockets inside it.
pub struct Namespace {
    fd: OwnedFd,
    requests: std_mpsc::Sender<Request>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

impl Namespace {
    /// Creates the namespace (loopback up) and its thread.
    pub fn create() -> io::Result<Namespace> {
        let (ready_tx, ready_rx) = std_mpsc::channel::<io::Result<OwnedFd>>();
        let (tx, rx) = std_mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("browser-netns".into())
            .spawn(move || {
                let entered = enter_new_network().and_then(|()| {
                    std::fs::File::open("/proc/thread-self/ns/net").map(OwnedFd::from)
                });
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    serve(rx);
                }
            })?;
        let fd = ready_rx
            .recv()
            .map_err(|_| io::Error::other("the network namespace thread died"))??;
        Ok(Namespace { fd, requests: tx })
    }

    /// The namespace's file descriptor, for `setns` in a child about to exec a browser.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A listener on the namespace's `127.0.0.1`, on a free port.
    pub async fn listen(&self) -> io::Result<tokio::net::TcpListener> {
        let (tx, rx) = oneshot::channel();
        self.ask(Request::Listen(tx))?;
        let listener = rx.await.map_err(|_| gone())??;
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }

    /// A connection from the daemon to `addr` inside the namespace.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let (tx, rx) = oneshot::channel();
        self.ask(Request::Connect(addr, tx))?;
        let stream = rx.await.map_err(|_| gone())??;
        stream.set_nonblocking(true)?;
        let _ = stream.set_nodelay(true);
        tokio::net::TcpStream::from_std(stream)
    }

    /// Makes `target` (an address inside the namespace) reachable from the daemon's own
    /// network at the returned loopback address, for as long as the [`Forward`] lives.
    pub async fn forward(self: &std::sync::Arc<Self>, target: SocketAddr) -> io::Result<Forward> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let namespace = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut outside, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let namespace = namespace.clone();
                tokio::spawn(async move {
                    let _ = outside.set_nodelay(true);
                    match namespace.connect(target).await {
                        Ok(mut inside) => {
                            let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
                        }
                        Err(e) => {
                            tracing::debug!(%target, "forward into the browsers' network: {e}")
                        }
                    }
                });
            }
        });
        Ok(Forward { addr, task })
    }

    fn ask(&self, request: Request) -> io::Result<()> {
        self.requests.send(request).map_err(|_| gone())
    }
}

/// A host-side loopback port forwarded into the namespace; stops when dropped.
pub struct Forward {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn gone() -> io::Error {
    io::Error::other("the network namespace thread is gone")
}

/// Runs on the namespace's thread: opens sockets inside it, one request at a time (all on
/// loopback, so a connect is answered at once).
fn serve(rx: std_mpsc::Receiver<Request>) {
    while let Ok(request) = rx.recv() {
        match request {
            Request::Listen(reply) => {
                let _ = reply.send(TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)));
            }
            Request::Connect(addr, reply) => {
                let _ = reply.send(TcpStream::connect_timeout(
                    &addr,
                    std::time::Duration::from_secs(5),
                ));
            }
        }
    }
}

/// Moves the calling thread into a new network namespace and brings its loopback up.
fn enter_new_network() -> io::Result<()> {
    // SAFETY: plain syscalls on this thread's own state and a socket it owns.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = OwnedFd::from_raw_fd(sock);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// For a daemon that is not root: moves the whole process into a user namespace of its own, in
/// which it keeps its user and group ids but may create network namespaces for its browsers.
/// Must be called while the process has a single thread (the kernel refuses otherwise).
/// Does nothing as root, who needs no user namespace for that.
pub fn enter_own_user_namespace() -> io::Result<()> {
    // SAFETY: getters with no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return Ok(());
    }
    // SAFETY: plain syscall; it only changes this (single-threaded) process's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))?;
    Ok(())
}
