//! One task per open listener: accept, hand each connection to its own task (on this worker,
//! or on a less loaded one: see [`balance`](super::balance)).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::DataPlane;
use super::balance::{Balance, Handoff, Seat};
use super::conn::{self, ConnSettings};
use crate::http::{self, HttpRoute};
use crate::route::RouteFeed;

pub async fn run(incoming: Incoming, feed: RouteFeed, stop: CancellationToken, plane: DataPlane) {
    let settings = ConnSettings {
        connect_timeout: plane.connect_timeout,
        epoch: plane.epoch,
        mark: plane.mark,
    };
    let (route, protocol) = {
        let snap = feed.current.load();
        (snap.name.clone(), snap.protocol)
    };
    // HTTP routes share pooled upstream clients among the listener's connections.
    let http_route = protocol
        .is_http()
        .then(|| HttpRoute::new(protocol, plane.connect_timeout, plane.epoch, plane.mark));
    each(
        incoming,
        &stop,
        &route,
        |sock, peer, seat| match &http_route {
            None => {
                plane.tracker.spawn(seat.hold(conn::handle(
                    sock,
                    peer,
                    feed.rx.clone(),
                    settings,
                    None,
                )));
            }
            Some(h) => {
                plane.tracker.spawn(seat.hold(http::server::serve(
                    sock,
                    peer,
                    feed.clone(),
                    h.clone(),
                    plane.drain.clone(),
                    None,
                )));
            }
        },
    )
    .await;
}

/// One worker's share of a listener group: its listening socket, its inbox of connections
/// other workers handed over, and the group's balance.
#[derive(Debug)]
pub struct Incoming {
    pub listener: TcpListener,
    pub inbox: mpsc::UnboundedReceiver<Handoff>,
    pub balance: Arc<Balance>,
    /// This worker's index in `balance`.
    pub worker: usize,
}

/// Accepts on `incoming` until `stop`, handing each connection to `handle` with the seat that
/// counts it (the connection's task holds it), or to a less loaded worker, and takes the
/// connections other workers hand over. Accept errors (EMFILE/ENFILE/ENOBUFS and friends) are
/// logged once a second, naming `what`, and back off briefly instead of spinning on a listener
/// that cannot accept.
pub async fn each(
    mut incoming: Incoming,
    stop: &CancellationToken,
    what: &(dyn std::fmt::Display + Sync),
    mut handle: impl FnMut(TcpStream, SocketAddr, Seat),
) {
    let Incoming {
        ref listener,
        ref mut inbox,
        ref balance,
        worker: me,
    } = incoming;
    let mut last_error_log: Option<std::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(h) = inbox.recv() => {
                adopt(h, &mut handle);
                continue;
            }
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, peer)) => {
                let to = balance.place(me);
                if to == me {
                    handle(sock, peer, balance.seat(me));
                    continue;
                }
                // Off this worker's reactor, onto the other's (in `adopt`, over there).
                match sock.into_std() {
                    Ok(sock) => {
                        if let Err(back) = balance.hand_over(me, to, sock, peer) {
                            adopt(back, &mut handle);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(listener = %what, error = %e, "cannot hand over a connection");
                    }
                }
            }
            Err(e) => {
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(listener = %what, error = %e, "accept failed");
                    last_error_log = Some(std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    // Connections already handed to this worker are served, not dropped; later senders get
    // theirs back and serve them themselves.
    inbox.close();
    while let Ok(h) = inbox.try_recv() {
        adopt(h, &mut handle);
    }
    tracing::debug!(listener = %what, "listener closed");
}

/// Registers a handed-over connection with this worker's reactor and serves it.
fn adopt(h: Handoff, handle: &mut impl FnMut(TcpStream, SocketAddr, Seat)) {
    match TcpStream::from_std(h.sock) {
        Ok(sock) => handle(sock, h.peer, h.seat),
        Err(e) => tracing::debug!(error = %e, "cannot adopt a handed-over connection"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::tcp::workers::Workers;

    /// Every client connects to worker 0's socket; the balance hands about half of the
    /// connections to worker 1, which serves them whole.
    #[tokio::test]
    async fn a_loaded_worker_hands_long_lived_connections_to_the_other() {
        let workers = Workers::start(2, crate::tcp::workers::Pinning::Off).unwrap();
        let (balance, inboxes) = Balance::new(2);
        let stop = CancellationToken::new();
        let listeners: Vec<std::net::TcpListener> = (0..2)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect();
        let addr = listeners[0].local_addr().unwrap();
        let groups = listeners.into_iter().zip(inboxes).zip(workers.handles());
        for (worker, ((l, inbox), h)) in groups.enumerate() {
            let (balance, stop) = (balance.clone(), stop.clone());
            h.spawn(async move {
                let incoming = Incoming {
                    listener: TcpListener::from_std(l).unwrap(),
                    inbox,
                    balance,
                    worker,
                };
                each(incoming, &stop, &"test", move |mut sock, _, seat| {
                    tokio::spawn(seat.hold(async move {
                        // Says which worker serves it, then echoes.
                        let _ = sock.write_all(&[worker as u8]).await;
                        let mut buf = [0u8; 64];
                        while let Ok(n @ 1..) = sock.read(&mut buf).await {
                            if sock.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }));
                })
                .await;
            });
        }

        let mut by_worker = [0usize; 2];
        let mut conns = Vec::new();
        for i in 0..20u8 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut w = [0u8];
            s.read_exact(&mut w).await.unwrap();
            by_worker[w[0] as usize] += 1;
            s.write_all(&[i; 4]).await.unwrap();
            let mut back = [0u8; 4];
            s.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [i; 4]);
            conns.push(s);
        }
        assert!(
            by_worker[1] >= 8 && by_worker[0] - by_worker[1] <= 2,
            "{by_worker:?}"
        );
        assert_eq!(balance.loads(), by_worker.to_vec());
        assert_eq!(balance.moved(), by_worker[1] as u64);

        // Handed-over connections keep working, and closing them uncounts them.
        for (i, s) in conns.iter_mut().enumerate() {
            s.write_all(b"again").await.unwrap();
            let mut back = [0u8; 5];
            s.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"again", "connection {i}");
        }
        drop(conns);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while balance.loads() != [0, 0] {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                balance.loads()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
    }
}
