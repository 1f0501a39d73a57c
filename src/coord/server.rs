//! The coordinator's gRPC server: [`serve`] starts it on its own tokio runtime and returns a
//! [`Server`] handle; dropping the handle stops it. A monitor task fails the run when a
//! process stops sending heartbeats; blocking calls wait on the shared state (state.rs) and
//! wake whenever it changes.
use super::auth::{self, Token};
use super::data;
use super::error::CoordError;
use super::limits::{counted_incoming, Limits};
use super::proto::{self, coordinator_server::CoordinatorServer};
use super::state::{Refusal, State};
use super::MAX_WAIT;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Request, Response, Status};

/// How the coordinator runs. Clients follow the heartbeat interval it gives them.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub num_processes: u32,
    /// The run's secret: every request must carry it (see auth.rs).
    pub token: Token,
    /// How often each client sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// A process that sends none for this long fails the run (it crashed, was killed or lost
    /// its network); the other processes' blocking calls then fail, naming it. Heartbeats come
    /// from the client's own thread, so a long compile or step does not silence them (and a
    /// hung main thread is not detected).
    pub heartbeat_timeout: Duration,
    /// What the run may store and open.
    pub limits: Limits,
    /// Serve over TLS with this certificate chain and key (PEM); plain TCP when `None`.
    pub tls: Option<ServerTls>,
}

/// The server's certificate chain and private key, PEM.
#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls { .. }")
    }
}

/// Heartbeats every second by default; 30 s of silence fails the run.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

impl ServerConfig {
    /// The default heartbeats and limits, no TLS.
    pub fn new(num_processes: u32, token: Token) -> ServerConfig {
        ServerConfig {
            num_processes,
            token,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            limits: Limits::default(),
            tls: None,
        }
    }
}

/// The address process 0 listens on: `bind` when given (`--coordinator-bind`; `0.0.0.0:PORT`
/// listens on every interface, and only then), else the address of HOST in `--coordinator
/// HOST:PORT` itself (the other processes reach HOST, so it is one of process 0's addresses;
/// a loopback HOST keeps the coordinator on loopback).
pub fn bind_address(coordinator: &str, bind: Option<&str>) -> Result<SocketAddr, CoordError> {
    if let Some(b) = bind {
        return resolve(b, "--coordinator-bind");
    }
    resolve(coordinator, "--coordinator")
}

/// The first address of `HOST:PORT` (`localhost` is 127.0.0.1).
fn resolve(addr: &str, flag: &str) -> Result<SocketAddr, CoordError> {
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| {
            CoordError::Rejected(format!(
                "{flag} `{addr}` is not HOST:PORT (e.g. 10.130.0.5:8476)"
            ))
        })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut a| a.next().ok_or_else(|| "no address".to_string()))
        .map_err(|e| {
            CoordError::Rejected(format!(
                "cannot resolve the host `{host}` of {flag} `{addr}` to an address to listen \
                 on: {e}; give --coordinator-bind with one of this host's addresses"
            ))
        })
}

/// Refusals of requests that failed authentication or acted as another process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Missing or wrong token (UNAUTHENTICATED).
    pub unauthenticated: u64,
    /// Missing or unknown session, or a session of another process (PERMISSION_DENIED).
    pub permission_denied: u64,
}

/// The state and the signal that wakes blocking calls when it changes.
pub(crate) struct Shared {
    state: Mutex<State>,
    wake: watch::Sender<u64>,
    config: ServerConfig,
    unauthenticated: AtomicU64,
    permission_denied: AtomicU64,
}

impl Shared {
    fn new(config: ServerConfig) -> Shared {
        Shared {
            state: Mutex::new(State::new(config.num_processes, config.limits.clone())),
            wake: watch::channel(0).0,
            config,
            unauthenticated: AtomicU64::new(0),
            permission_denied: AtomicU64::new(0),
        }
    }

    /// Counts a refusal and logs it with the peer's address (never what it presented). After
    /// the first 16 only every power of two is logged, so a flood cannot fill the log.
    fn refused(&self, counter: &AtomicU64, peer: Option<SocketAddr>, what: &str) {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 16 || n.is_power_of_two() {
            let peer = peer.map_or_else(|| "an unknown address".to_string(), |p| p.to_string());
            tracing::warn!("coordinator: refused a request from {peer}: {what} (refusal {n})");
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

/// Lets through only requests that carry the run's token; runs before the body is decoded.
#[derive(Clone)]
struct Gate {
    shared: Arc<Shared>,
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get(auth::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        match presented {
            Some(t) if self.shared.config.token.matches(t) => Ok(request),
            _ => {
                let what = if presented.is_some() {
                    "a wrong token"
                } else {
                    "no token"
                };
                self.shared
                    .refused(&self.shared.unauthenticated, request.remote_addr(), what);
                Err(Status::unauthenticated(format!(
                    "the coordinator refused a request with {what}: every process needs the \
                     run's token (metadata `authorization: Bearer <token>`); give each one the \
                     same --coordinator-token-file FILE or {} environment variable",
                    auth::TOKEN_ENV
                )))
            }
        }
    }
}

struct Service {
    shared: Arc<Shared>,
}

impl Service {
    /// The request must carry the session Register gave `process_id` (counted and logged
    /// when not).
    fn authorize<T>(&self, request: &Request<T>, process_id: u32) -> Result<(), Refusal> {
        let session = request.metadata().get(auth::SESSION).map(|v| v.as_bytes());
        let checked = self.shared.with(|st| st.check_session(process_id, session));
        if let Err(r) = &checked {
            if r.grpc_code() == Code::PermissionDenied {
                self.shared.refused(
                    &self.shared.permission_denied,
                    request.remote_addr(),
                    &r.to_string(),
                );
            }
        }
        checked
    }
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
        let session = auth::new_session_id().map_err(|e| Status::internal(e.to_string()))?;
        self.shared
            .with(|st| st.register(member, r.num_processes, session.clone(), Instant::now()))?;
        Ok(Response::new(proto::RegisterResponse {
            heartbeat_interval_ms: self.shared.config.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.shared.config.heartbeat_timeout.as_millis() as u64,
            session_id: session,
        }))
    }

    async fn wait_members(
        &self,
        request: Request<proto::WaitMembersRequest>,
    ) -> Result<Response<proto::WaitMembersResponse>, Status> {
        self.authorize(&request, request.get_ref().process_id)?;
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
        self.authorize(&request, request.get_ref().process_id)?;
        let id = request.into_inner().process_id;
        let failure = self.shared.with(|st| st.heartbeat(id, Instant::now()))?;
        Ok(Response::new(proto::HeartbeatResponse { failure }))
    }

    async fn shutdown(
        &self,
        request: Request<proto::ShutdownRequest>,
    ) -> Result<Response<proto::ShutdownResponse>, Status> {
        self.authorize(&request, request.get_ref().process_id)?;
        let r = request.into_inner();
        self.shared
            .with(|st| st.leave(r.process_id, r.clean, &r.reason))?;
        Ok(Response::new(proto::ShutdownResponse {}))
    }

    async fn put(
        &self,
        request: Request<proto::PutRequest>,
    ) -> Result<Response<proto::PutResponse>, Status> {
        self.authorize(&request, request.get_ref().process_id)?;
        let r = request.into_inner();
        self.shared
            .with(|st| st.put(r.process_id, &r.key, &r.value))?;
        Ok(Response::new(proto::PutResponse {}))
    }

    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<proto::GetResponse>, Status> {
        self.authorize(&request, request.get_ref().process_id)?;
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
        self.authorize(&request, request.get_ref().process_id)?;
        let r = request.into_inner();
        let value = self.shared.with(|st| st.try_get(r.process_id, &r.key))?;
        Ok(Response::new(proto::TryGetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    async fn open_cursor(
        &self,
        request: Request<proto::OpenCursorRequest>,
    ) -> Result<Response<proto::OpenCursorResponse>, Status> {
        self.authorize(&request, request.get_ref().process_id)?;
        let r = request.into_inner();
        let (listing_digest, units) = self.shared.with(|st| {
            st.open_cursor(r.process_id, |processes| {
                data::cursor_from_wire(&r, processes)
            })
        })?;
        Ok(Response::new(proto::OpenCursorResponse {
            units,
            listing_digest,
        }))
    }

    async fn next_units(
        &self,
        request: Request<proto::NextUnitsRequest>,
    ) -> Result<Response<proto::NextUnitsResponse>, Status> {
        self.authorize(&request, request.get_ref().process_id)?;
        let r = request.into_inner();
        let (pieces, listing_digest) = self.shared.with(|st| st.next_units(r.process_id, r.max))?;
        Ok(Response::new(proto::NextUnitsResponse {
            units: pieces.iter().map(data::piece_to_wire).collect(),
            listing_digest,
        }))
    }

    async fn report_position(
        &self,
        request: Request<proto::ReportPositionRequest>,
    ) -> Result<Response<proto::ReportPositionResponse>, Status> {
        self.authorize(&request, request.get_ref().process_id)?;
        let r = request.into_inner();
        self.shared
            .with(|st| st.report_position(r.process_id, r.step, r.consumed, r.records))?;
        Ok(Response::new(proto::ReportPositionResponse {}))
    }

    async fn cursor_snapshot(
        &self,
        request: Request<proto::CursorSnapshotRequest>,
    ) -> Result<Response<proto::CursorSnapshotResponse>, Status> {
        self.authorize(&request, request.get_ref().process_id)?;
        let r = request.into_inner();
        let state = self
            .shared
            .with(|st| st.cursor_snapshot(r.process_id, r.step))?;
        let state = serde_json::to_vec(&state).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(proto::CursorSnapshotResponse { state }))
    }

    async fn barrier(
        &self,
        request: Request<proto::BarrierRequest>,
    ) -> Result<Response<proto::BarrierResponse>, Status> {
        self.authorize(&request, request.get_ref().process_id)?;
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
    /// The serving task, which ends after its graceful shutdown.
    serving: Option<tokio::task::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// How long a stopping coordinator lets calls in flight finish (the last processes' Shutdown
/// answers: without them a process that left cleanly would see its call fail).
const STOP_GRACE: Duration = Duration::from_secs(2);

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
    let limits = &shared.config.limits;
    let service = CoordinatorServer::new(Service {
        shared: shared.clone(),
    })
    .max_decoding_message_size(limits.max_message_bytes)
    .max_encoding_message_size(limits.max_message_bytes);
    let service = InterceptedService::new(
        service,
        Gate {
            shared: shared.clone(),
        },
    );
    let incoming = counted_incoming(listener, limits.max_connections);
    let builder = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(limits.max_streams_per_connection));
    let builder = tls(builder, shared.config.tls.as_ref()).map_err(serve_err)?;
    let serving = runtime.spawn(async move {
        let result = builder
            .serve_with_incoming_shutdown(service, incoming, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("the coordinator stopped: {e}");
        }
    });
    runtime.spawn(monitor(Arc::downgrade(&shared)));
    let how = if shared.config.tls.is_some() {
        "TLS"
    } else {
        "plain TCP"
    };
    tracing::info!("coordinator listening on {local} ({how}, token required)");
    Ok(Server {
        addr: local,
        shared,
        stop: Some(stop),
        serving: Some(serving),
        runtime: Some(runtime),
    })
}

/// The builder with TLS when `tls` is given (rustls; the certificate chain and key are
/// checked here, so a bad one is an error at start, not at the first connection).
fn tls(
    builder: tonic::transport::Server,
    tls: Option<&ServerTls>,
) -> Result<tonic::transport::Server, String> {
    let Some(t) = tls else {
        return Ok(builder);
    };
    let identity = tonic::transport::Identity::from_pem(&t.cert_pem, &t.key_pem);
    builder
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
        .map_err(|e| {
            let mut detail = e.to_string();
            if let Some(s) = std::error::Error::source(&e) {
                detail = format!("{detail}: {s}");
            }
            format!(
                "the TLS certificate (--coordinator-tls-cert) or key (--coordinator-tls-key): \
                 {detail}"
            )
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

    /// The requests refused so far for authentication or identity.
    pub fn refusals(&self) -> Refusals {
        Refusals {
            unauthenticated: self.shared.unauthenticated.load(Ordering::Relaxed),
            permission_denied: self.shared.permission_denied.load(Ordering::Relaxed),
        }
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
        if let (Some(rt), Some(serving)) = (&self.runtime, self.serving.take()) {
            // Graceful: no new connections, calls in flight answered, then idle connections
            // closed; bounded, since a client may keep its connection busy.
            let _ = rt.block_on(async { tokio::time::timeout(STOP_GRACE, serving).await });
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
    fn the_bind_address_is_the_coordinator_host_unless_given() {
        let b = |c: &str, bind: Option<&str>| bind_address(c, bind).map(|a| a.to_string());
        assert_eq!(b("127.0.0.1:8476", None).unwrap(), "127.0.0.1:8476");
        assert_eq!(b("localhost:9", None).unwrap(), "127.0.0.1:9");
        assert_eq!(b("10.130.0.5:8476", None).unwrap(), "10.130.0.5:8476");
        assert_eq!(b("[::1]:7", None).unwrap(), "[::1]:7");
        // Every interface only when asked for.
        assert_eq!(
            b("10.130.0.5:8476", Some("0.0.0.0:8476")).unwrap(),
            "0.0.0.0:8476"
        );
        for bad in ["10.130.0.5", "host:port", "host:70000", ":80"] {
            let e = b(bad, None).unwrap_err();
            assert!(e.to_string().contains("--coordinator"), "{e}");
            assert!(e.to_string().contains("HOST:PORT"), "{e}");
        }
        let e = b("10.0.0.1:1", Some("nope")).unwrap_err();
        assert!(e.to_string().contains("--coordinator-bind `nope`"), "{e}");
    }

    #[test]
    fn bad_configs_are_refused() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let token = Token::generate().unwrap();
        assert!(serve(addr, ServerConfig::new(0, token.clone())).is_err());
        let mut c = ServerConfig::new(2, token);
        c.heartbeat_timeout = c.heartbeat_interval;
        let e = serve(addr, c).unwrap_err();
        assert!(e.to_string().contains("heartbeat timeout"), "{e}");
    }
}
