//! TCP serving (HTTP/1.1 on a loopback port) of the same handler the in-process service uses.

use std::net::SocketAddr;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::SimError;
use crate::sim::Sim;

/// A running TCP server; dropping it stops the server and its connections.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    pub(crate) async fn start(sim: Sim, addr: SocketAddr) -> Result<Self, SimError> {
        if !addr.ip().is_loopback() {
            return Err(SimError::BadRequest(format!(
                "refusing to listen on non-loopback address {addr}"
            )));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| SimError::io(format!("binding {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SimError::io("local_addr", e))?;
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let svc = hyper_util::service::TowerToHyperService::new(sim.service());
                        conns.spawn(async move {
                            let _ = http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Self {
            addr,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and drop every connection.
    pub fn shutdown(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
