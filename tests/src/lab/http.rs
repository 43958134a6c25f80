//! A tiny HTTP/1.0 server per real server and a client, both std::net on threads that
//! entered the right namespace. Every wait is bounded.

use super::LabError;
use crate::netns;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Bound on connecting, reading and writing one request or response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle server looks at its stop flag.
const POLL: Duration = Duration::from_millis(10);

/// A server answering every request with `200 OK` and its name as the body. It listens on
/// `[::]:port` dual-stack, so it answers on its own addresses and on any VIP it has on lo.
pub struct HttpServer {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts the server in namespace `ns`; returns once it listens.
    pub fn start(ns: &str, name: &str, port: u16) -> Result<HttpServer, LabError> {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let (ns_, name_, stop_, served_) = (
            ns.to_string(),
            name.to_string(),
            stop.clone(),
            served.clone(),
        );
        let handle = thread::Builder::new()
            .name(format!("http {name}"))
            .spawn(move || {
                let listener = netns::enter(&ns_)
                    .map_err(|e| format!("setns into {ns_}: {e}"))
                    .and_then(|()| {
                        TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))
                            .and_then(|l| l.set_nonblocking(true).map(|()| l))
                            .map_err(|e| format!("bind [::]:{port} in {ns_}: {e}"))
                    });
                let listener = match listener {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                serve(&listener, &name_, &stop_, &served_);
            })
            .map_err(|e| LabError::io("spawn the HTTP server thread", e))?;
        let server = HttpServer {
            stop,
            served,
            handle: Some(handle),
        };
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => Err(LabError::Http(e)),
            Err(_) => Err(LabError::Http(format!(
                "server {name} in {ns} did not start"
            ))),
        }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops the server and waits for its thread (which closes its sockets and so drops
    /// its hold on the namespace).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: &TcpListener, name: &str, stop: &AtomicBool, served: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if answer(stream, name).is_ok() {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
}

fn answer(mut s: TcpStream, name: &str) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    // Read the request head (bounded), then answer whatever it was.
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let body = format!("{name}\n");
    let resp = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes())?;
    s.flush()
}

/// One `GET /` to `to` from the calling thread's namespace; returns the body, trimmed.
pub fn get(to: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let host = match to {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut resp = Vec::new();
    s.take(64 * 1024)
        .read_to_end(&mut resp)
        .map_err(|e| format!("receive: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("no end of headers in the reply")?;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.0 200") && !status.starts_with("HTTP/1.1 200") {
        return Err(format!("status line {status:?}"));
    }
    Ok(body.trim().to_string())
}
