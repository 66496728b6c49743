//! A TCP proxy between a follower and its leader that fails the way networks do, on command:
//! a black hole, a half-open connection, a slow drip, resets, refused connections, and
//! connections cut in the middle of an answer. Real loopback sockets on both sides; the proxy
//! never parses what it forwards.
//!
//! A fault applies at once to the connections already open and to the ones opened while it
//! lasts; [`Fault::Healthy`] heals it. Bytes held by a black hole are forwarded when it heals,
//! as TCP retransmits what a firewall dropped once the path is back.
//!
//! The proxy counts what it does ([`ProxyCounters`]): connections accepted and bytes forwarded
//! each way, so a test can show that traffic really went through it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwards everything.
    Healthy,
    /// Forwards nothing either way and closes nothing.
    BlackHole,
    /// Forwards the follower's bytes to the leader, holds every byte of the leader's answers.
    HalfOpen,
    /// Forwards one byte per interval each way.
    Drip(Duration),
    /// Resets every connection (RST), open or new.
    Reset,
    /// Nothing listens on the proxy's port (connections are refused); open ones are reset.
    Refused,
    /// Lets this many more bytes of the leader's answers through on each connection, then
    /// resets it: a cut in the middle of a frame or a chunk.
    CutAfter(usize),
}

/// How one direction of a connection passes bytes under a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Passage {
    Pass,
    Hold,
    Drip(Duration),
    Kill,
    CutAfter(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    ToLeader,
    ToFollower,
}

/// The interval of the drip [`Fault::random`] chooses: one byte per second each way.
pub const RANDOM_DRIP_INTERVAL: Duration = Duration::from_secs(1);
/// [`Fault::random`] cuts answers after at most this many bytes (a few frames' headers, or the
/// middle of a chunk).
pub const RANDOM_CUT_MAX_BYTES: usize = 16 * 1024;

impl Fault {
    /// Every kind of fault, by the name [`Fault::kind`] gives (healthy excluded).
    pub const KINDS: [&'static str; 6] = [
        "black_hole",
        "half_open",
        "drip",
        "reset",
        "refused",
        "cut_after",
    ];

    /// A fault of a kind chosen uniformly among [`Fault::KINDS`]: a drip of one byte per
    /// [`RANDOM_DRIP_INTERVAL`], a cut after 1 to [`RANDOM_CUT_MAX_BYTES`] bytes.
    pub fn random(rng: &mut impl Rng) -> Fault {
        match rng.random_range(0..Fault::KINDS.len()) {
            0 => Fault::BlackHole,
            1 => Fault::HalfOpen,
            2 => Fault::Drip(RANDOM_DRIP_INTERVAL),
            3 => Fault::Reset,
            4 => Fault::Refused,
            _ => Fault::CutAfter(rng.random_range(1..=RANDOM_CUT_MAX_BYTES)),
        }
    }

    /// The fault's kind, without its parameters: `healthy` or one of [`Fault::KINDS`].
    pub fn kind(self) -> &'static str {
        match self {
            Fault::Healthy => "healthy",
            Fault::BlackHole => "black_hole",
            Fault::HalfOpen => "half_open",
            Fault::Drip(_) => "drip",
            Fault::Reset => "reset",
            Fault::Refused => "refused",
            Fault::CutAfter(_) => "cut_after",
        }
    }

    fn passage(self, direction: Direction) -> Passage {
        match (self, direction) {
            (Fault::Healthy, _) | (Fault::HalfOpen, Direction::ToLeader) => Passage::Pass,
            (Fault::BlackHole, _) | (Fault::HalfOpen, Direction::ToFollower) => Passage::Hold,
            (Fault::Drip(interval), _) => Passage::Drip(interval),
            (Fault::Reset | Fault::Refused, _) => Passage::Kill,
            (Fault::CutAfter(_), Direction::ToLeader) => Passage::Pass,
            (Fault::CutAfter(bytes), Direction::ToFollower) => Passage::CutAfter(bytes),
        }
    }
}

/// What a proxy has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyCounters {
    /// Connections accepted from the follower (including those reset at once by a fault).
    pub connections: u64,
    /// Bytes forwarded from the follower to the leader.
    pub bytes_to_leader: u64,
    /// Bytes forwarded from the leader to the follower.
    pub bytes_to_follower: u64,
}

/// The live counters behind [`ProxyCounters`], shared by every connection's pumps.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    bytes_to_leader: AtomicU64,
    bytes_to_follower: AtomicU64,
}

impl Counters {
    fn forwarded(&self, direction: Direction, bytes: usize) {
        let counter = match direction {
            Direction::ToLeader => &self.bytes_to_leader,
            Direction::ToFollower => &self.bytes_to_follower,
        };
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// A running proxy: the follower connects to [`FaultProxy::address`].
pub struct FaultProxy {
    /// Where the follower connects.
    pub address: SocketAddr,
    fault: watch::Sender<Fault>,
    counters: Arc<Counters>,
    accepting: JoinHandle<()>,
}

impl FaultProxy {
    /// A healthy proxy on a free loopback port in front of `leader`.
    pub async fn start(leader: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let (fault, watched) = watch::channel(Fault::Healthy);
        let counters = Arc::new(Counters::default());
        let accepting = tokio::spawn(accept_loop(
            listener,
            address,
            leader,
            watched,
            counters.clone(),
        ));
        FaultProxy {
            address,
            fault,
            counters,
            accepting,
        }
    }

    /// The fault applied now.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// What the proxy has done so far.
    pub fn counters(&self) -> ProxyCounters {
        ProxyCounters {
            connections: self.counters.connections.load(Ordering::Relaxed),
            bytes_to_leader: self.counters.bytes_to_leader.load(Ordering::Relaxed),
            bytes_to_follower: self.counters.bytes_to_follower.load(Ordering::Relaxed),
        }
    }

    /// Applies `fault` (to open connections too) until the next call.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Forwards everything again.
    pub fn heal(&self) {
        self.set(Fault::Healthy);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.set(Fault::Refused);
        self.accepting.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    address: SocketAddr,
    leader: SocketAddr,
    mut fault: watch::Receiver<Fault>,
    counters: Arc<Counters>,
) {
    let mut listener = Some(listener);
    loop {
        let current = *fault.borrow_and_update();
        if current == Fault::Refused {
            // Release the port until the fault changes, then listen on it again.
            listener = None;
            if fault.changed().await.is_err() {
                return;
            }
            continue;
        }
        let Some(open) = listener.as_ref() else {
            listener = Some(rebind(address).await);
            continue;
        };
        tokio::select! {
            changed = fault.changed() => if changed.is_err() { return },
            accepted = open.accept() => {
                let Ok((follower, _)) = accepted else { continue };
                counters.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(proxy_connection(follower, leader, fault.clone(), counters.clone()));
            }
        }
    }
}

async fn rebind(address: SocketAddr) -> TcpListener {
    for _ in 0..200 {
        if let Ok(listener) = TcpListener::bind(address).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cannot listen on {address} again");
}

/// Forwards one connection both ways until either side closes or a fault kills it.
async fn proxy_connection(
    follower: TcpStream,
    leader: SocketAddr,
    fault: watch::Receiver<Fault>,
    counters: Arc<Counters>,
) {
    if matches!(*fault.borrow(), Fault::Reset | Fault::Refused) {
        reset(&follower);
        return;
    }
    let Ok(leader) = TcpStream::connect(leader).await else {
        reset(&follower);
        return;
    };
    let _ = follower.set_nodelay(true);
    let _ = leader.set_nodelay(true);
    let (from_follower, to_follower) = follower.into_split();
    let (from_leader, to_leader) = leader.into_split();
    // Either pump that kills the connection tells the other through `killed`.
    let (kill, killed) = watch::channel(false);
    let up = tokio::spawn(pump(
        from_follower,
        to_leader,
        Direction::ToLeader,
        fault.clone(),
        (kill.clone(), killed.clone()),
        counters.clone(),
    ));
    let down = tokio::spawn(pump(
        from_leader,
        to_follower,
        Direction::ToFollower,
        fault,
        (kill, killed),
        counters,
    ));
    let _ = up.await;
    let _ = down.await;
}

/// Closes a socket with an RST rather than a FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Copies `from` to `to` as the fault allows; returns when `from` ends (after passing the
/// end on) or when the connection is killed (then `to` is reset).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    mut fault: watch::Receiver<Fault>,
    (kill, mut killed): (watch::Sender<bool>, watch::Receiver<bool>),
    counters: Arc<Counters>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    // Bytes still allowed through under the current `CutAfter` fault.
    let mut cut_budget: Option<usize> = None;
    loop {
        let passage = fault.borrow_and_update().passage(direction);
        if passage == Passage::Kill || *killed.borrow() {
            break;
        }
        if let Passage::CutAfter(bytes) = passage {
            cut_budget.get_or_insert(bytes);
        } else {
            cut_budget = None;
        }
        let read = tokio::select! {
            _ = fault.changed() => continue,
            _ = killed.changed() => break,
            read = from.read(&mut buffer) => read,
        };
        let length = match read {
            Ok(0) | Err(_) => {
                // A black hole swallows the end too, until it heals.
                while fault.borrow_and_update().passage(direction) == Passage::Hold {
                    if fault.changed().await.is_err() {
                        return;
                    }
                }
                let _ = to.shutdown().await;
                return;
            }
            Ok(length) => length,
        };
        let mut pending = &buffer[..length];
        while !pending.is_empty() {
            let passage = fault.borrow_and_update().passage(direction);
            if *killed.borrow() {
                break;
            }
            match passage {
                Passage::Pass => {
                    if to.write_all(pending).await.is_err() {
                        break;
                    }
                    counters.forwarded(direction, pending.len());
                    pending = &[];
                }
                Passage::Hold => {
                    tokio::select! {
                        changed = fault.changed() => if changed.is_err() { return },
                        _ = killed.changed() => break,
                    }
                }
                Passage::Drip(interval) => {
                    if to.write_all(&pending[..1]).await.is_err() {
                        break;
                    }
                    counters.forwarded(direction, 1);
                    pending = &pending[1..];
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = fault.changed() => {}
                        _ = killed.changed() => break,
                    }
                }
                Passage::CutAfter(bytes) => {
                    let budget = cut_budget.get_or_insert(bytes);
                    let through = pending.len().min(*budget);
                    if to.write_all(&pending[..through]).await.is_err() {
                        break;
                    }
                    counters.forwarded(direction, through);
                    *budget -= through;
                    pending = &pending[through..];
                    if *budget == 0 {
                        break;
                    }
                }
                Passage::Kill => break,
            }
        }
        if !pending.is_empty() || *killed.borrow() {
            break;
        }
        let passage = fault.borrow().passage(direction);
        if passage == Passage::Kill || cut_budget == Some(0) {
            break;
        }
    }
    // Killed: reset this side and tell the other pump.
    let _ = kill.send(true);
    reset(to.as_ref());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn random_faults_are_of_every_kind_and_never_healthy() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..600 {
            let fault = Fault::random(&mut rng);
            assert_ne!(fault, Fault::Healthy);
            if let Fault::CutAfter(bytes) = fault {
                assert!((1..=RANDOM_CUT_MAX_BYTES).contains(&bytes), "{bytes}");
            }
            seen.insert(fault.kind());
        }
        assert_eq!(seen, Fault::KINDS.into_iter().collect());
    }

    /// An echo server on a free loopback port.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut from, mut to) = stream.split();
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn a_healthy_proxy_forwards_both_ways_and_counts_what_it_forwards() {
        let proxy = FaultProxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.address).await.expect("connect");
        stream.write_all(b"twelve bytes").await.expect("write");
        let mut echoed = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
            .await
            .expect("echo within 10 s")
            .expect("read");
        assert_eq!(&echoed, b"twelve bytes");
        let counters = proxy.counters();
        assert_eq!(counters.connections, 1);
        assert_eq!(counters.bytes_to_leader, 12);
        assert_eq!(counters.bytes_to_follower, 12);
    }

    #[tokio::test]
    async fn a_black_hole_holds_bytes_until_it_heals() {
        let proxy = FaultProxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.address).await.expect("connect");
        // The connection is open through the proxy before the fault.
        stream.write_all(b"a").await.expect("write");
        let mut one = [0u8; 1];
        stream
            .read_exact(&mut one)
            .await
            .expect("echo before the fault");
        proxy.set(Fault::BlackHole);
        assert_eq!(proxy.fault().kind(), "black_hole");
        stream.write_all(b"b").await.expect("write");
        let held = tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut one));
        assert!(held.await.is_err(), "a black hole let bytes through");
        proxy.heal();
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut one))
            .await
            .expect("the held byte arrives after the heal")
            .expect("read");
        assert_eq!(&one, b"b");
    }
}
