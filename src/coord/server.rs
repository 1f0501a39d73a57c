//! The coordinator's gRPC server: [`serve`] starts it on its own tokio runtime and returns a
//! [`Server`] handle; dropping the handle stops it. A monitor task fails the run when a
//! process stops sending heartbeats; blocking calls wait on the shared state (state.rs) and
//! wake whenever it changes.
use super::error::CoordError;
use super::proto::{self, coordinator_server::CoordinatorServer};
use super::state::{Refusal, State};
use super::{MAX_MESSAGE_BYTES, MAX_WAIT};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status};

/// How the coordinator runs. Clients follow the heartbeat interval it gives them.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub num_processes: u32,
    /// How often each client sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// A process that sends none for this long fails the run (it crashed, was killed or lost
    /// its network); the other processes' blocking calls then fail, naming it. Heartbeats come
    /// from the client's own thread, so a long compile or step does not silence them (and a
    /// hung main thread is not detected).
    pub heartbeat_timeout: Duration,
}

impl ServerConfig {
    /// Heartbeats every second; 30 s of silence fails the run.
    pub fn new(num_processes: u32) -> ServerConfig {
        ServerConfig {
            num_processes,
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(30),
        }
    }
}

/// The address worker 0 listens on for `--coordinator HOST:PORT`: every interface, that port
/// (the other workers reach HOST, which is one of worker 0's addresses).
pub fn listen_address(coordinator: &str) -> Result<SocketAddr, CoordError> {
    let port = coordinator
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| {
            CoordError::Rejected(format!(
                "--coordinator `{coordinator}` is not HOST:PORT (e.g. 10.130.0.5:8476)"
            ))
        })?;
    Ok(SocketAddr::from(([0, 0, 0, 0], port)))
}

/// The state and the signal that wakes blocking calls when it changes.
pub(crate) struct Shared {
    state: Mutex<State>,
    wake: watch::Sender<u64>,
    config: ServerConfig,
}

impl Shared {
    fn new(config: ServerConfig) -> Shared {
        Shared {
            state: Mutex::new(State::new(config.num_processes)),
            wake: watch::channel(0).0,
            config,
        }
    }

    /// Runs `f` on the state and wakes the waiters if it changed anything.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock leaves the state as consistent as any single step.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut st);
        if st.changed {
            st.changed = false;
            self.wake.send_modify(|v| *v = v.wrapping_add(1));
        }
        out
    }

    /// Re-runs `check(state, timed_out)` whenever the state changes, until it gives a value or
    /// an error. With `timed_out` true, `check` must give one of them.
    async fn wait<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&mut State, bool) -> Result<Option<T>, Refusal>,
    ) -> Result<T, Refusal> {
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        loop {
            // Subscribed before looking, so a change made after the look is not missed.
            let mut changed = self.wake.subscribe();
            let timed_out = tokio::time::Instant::now() >= deadline;
            if let Some(v) = self.with(|st| check(st, timed_out))? {
                return Ok(v);
            }
            if timed_out {
                return Err(Refusal::internal(
                    "coordinator: a wait ended without an outcome",
                ));
            }
            // The sender lives in `self`, so `changed()` only returns on a change.
            let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
        }
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

struct Service {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl proto::coordinator_server::Coordinator for Service {
    async fn register(
        &self,
        request: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        let r = request.into_inner();
        let member = r
            .member
            .ok_or_else(|| Status::invalid_argument("register: no member given"))?;
        self.shared
            .with(|st| st.register(member, r.num_processes, Instant::now()))?;
        Ok(Response::new(proto::RegisterResponse {
            heartbeat_interval_ms: self.shared.config.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.shared.config.heartbeat_timeout.as_millis() as u64,
        }))
    }

    async fn wait_members(
        &self,
        request: Request<proto::WaitMembersRequest>,
    ) -> Result<Response<proto::WaitMembersResponse>, Status> {
        let r = request.into_inner();
        let timeout = ms(r.timeout_ms);
        let members = self
            .shared
            .wait(timeout, |st, t| st.members_ready(r.process_id, t, timeout))
            .await?;
        Ok(Response::new(proto::WaitMembersResponse { members }))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        let id = request.into_inner().process_id;
        let failure = self.shared.with(|st| st.heartbeat(id, Instant::now()))?;
        Ok(Response::new(proto::HeartbeatResponse { failure }))
    }

    async fn shutdown(
        &self,
        request: Request<proto::ShutdownRequest>,
    ) -> Result<Response<proto::ShutdownResponse>, Status> {
        let r = request.into_inner();
        self.shared
            .with(|st| st.leave(r.process_id, r.clean, &r.reason))?;
        Ok(Response::new(proto::ShutdownResponse {}))
    }

    async fn put(
        &self,
        request: Request<proto::PutRequest>,
    ) -> Result<Response<proto::PutResponse>, Status> {
        let r = request.into_inner();
        self.shared
            .with(|st| st.put(r.process_id, &r.key, &r.value))?;
        Ok(Response::new(proto::PutResponse {}))
    }

    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<proto::GetResponse>, Status> {
        let r = request.into_inner();
        let timeout = ms(r.timeout_ms);
        let value = self
            .shared
            .wait(timeout, |st, t| {
                st.get_ready(r.process_id, &r.key, t, timeout)
            })
            .await?;
        Ok(Response::new(proto::GetResponse { value }))
    }

    async fn try_get(
        &self,
        request: Request<proto::TryGetRequest>,
    ) -> Result<Response<proto::TryGetResponse>, Status> {
        let r = request.into_inner();
        let value = self.shared.with(|st| st.try_get(r.process_id, &r.key))?;
        Ok(Response::new(proto::TryGetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    async fn barrier(
        &self,
        request: Request<proto::BarrierRequest>,
    ) -> Result<Response<proto::BarrierResponse>, Status> {
        let r = request.into_inner();
        let timeout = ms(r.timeout_ms);
        self.shared.with(|st| st.arrive(r.process_id, &r.name))?;
        self.shared
            .wait(timeout, |st, t| {
                st.barrier_ready(r.process_id, &r.name, t, timeout)
                    .map(|done| done.then_some(()))
            })
            .await?;
        Ok(Response::new(proto::BarrierResponse {}))
    }
}

/// A running coordinator. Dropping it stops the server (call [`Server::wait_until_all_left`]
/// first, so the other processes can leave cleanly).
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

/// Starts the coordinator on `addr` (port 0 picks a free port; see [`Server::local_addr`]).
pub fn serve(addr: SocketAddr, config: ServerConfig) -> Result<Server, CoordError> {
    let serve_err = |detail: String| CoordError::Serve {
        addr: addr.to_string(),
        detail,
    };
    if config.num_processes == 0 {
        return Err(serve_err(
            "the number of processes must be at least 1".into(),
        ));
    }
    if config.heartbeat_interval.is_zero() || config.heartbeat_timeout <= config.heartbeat_interval
    {
        return Err(serve_err(format!(
            "the heartbeat timeout ({:?}) must be longer than the heartbeat interval ({:?}), \
             which must not be zero",
            config.heartbeat_timeout, config.heartbeat_interval
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tpu-run-coordinator")
        .enable_all()
        .build()
        .map_err(|e| serve_err(format!("starting its runtime: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| serve_err(e.to_string()))?;
    let local = listener
        .local_addr()
        .map_err(|e| serve_err(e.to_string()))?;
    let shared = Arc::new(Shared::new(config));
    let (stop, stopped) = oneshot::channel::<()>();
    let service = CoordinatorServer::new(Service {
        shared: shared.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    runtime.spawn(async move {
        let result = tonic::transport::Server::builder()
            .serve_with_incoming_shutdown(service, incoming, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("the coordinator stopped: {e}");
        }
    });
    runtime.spawn(monitor(Arc::downgrade(&shared)));
    tracing::info!("coordinator listening on {local}");
    Ok(Server {
        addr: local,
        shared,
        stop: Some(stop),
        runtime: Some(runtime),
    })
}

/// Fails the run when a process misses its heartbeats; ends with the server.
async fn monitor(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        let timeout = s.config.heartbeat_timeout;
        s.with(|st| st.check_liveness(Instant::now(), timeout));
        let period = (timeout / 8).max(Duration::from_millis(10));
        drop(s);
        tokio::time::sleep(period).await;
    }
}

impl Server {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The processes registered so far, ordered by id (for progress messages while waiting).
    pub fn registered(&self) -> Vec<proto::Member> {
        self.shared.with(|st| st.registered())
    }

    /// The run's failure, if a process failed.
    pub fn failure(&self) -> Option<String> {
        self.shared.with(|st| st.failure().map(str::to_string))
    }

    /// Waits until every process has registered and left, or the run failed (then the error
    /// names the failure), at most `timeout`. Process 0 calls this before it stops the server.
    pub fn wait_until_all_left(&self, timeout: Duration) -> Result<(), CoordError> {
        let Some(rt) = &self.runtime else {
            return Ok(());
        };
        let outcome = rt.block_on(self.shared.wait(timeout, |st, timed_out| {
            if let Some(f) = st.failure() {
                return Err(Refusal::aborted(f));
            }
            if st.all_left() {
                return Ok(Some(()));
            }
            if timed_out {
                return Err(Refusal::deadline_exceeded(format!(
                    "not every process left the run within {:.1} s",
                    timeout.as_secs_f64()
                )));
            }
            Ok(None)
        }));
        outcome.map_err(|r| CoordError::from_status(r.into(), &self.addr.to_string()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            // Open blocking calls are dropped with the runtime; their clients see the
            // connection close.
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_address_takes_the_port() {
        assert_eq!(
            listen_address("10.130.0.5:8476").unwrap(),
            "0.0.0.0:8476".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(listen_address("tpu-vm-0:9000").unwrap().port(), 9000);
        for bad in ["10.130.0.5", "host:port", "host:70000"] {
            let e = listen_address(bad).unwrap_err();
            assert!(e.to_string().contains("HOST:PORT"), "{e}");
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(serve(addr, ServerConfig::new(0)).is_err());
        let mut c = ServerConfig::new(2);
        c.heartbeat_timeout = c.heartbeat_interval;
        let e = serve(addr, c).unwrap_err();
        assert!(e.to_string().contains("heartbeat timeout"), "{e}");
    }
}
