//! A process's connection to the coordinator, with blocking methods for synchronous code.
//!
//! The client owns a one-thread tokio runtime that carries the gRPC channel and a heartbeat
//! task; every method blocks the calling thread on it (so do not call them from inside another
//! tokio runtime). Methods may be called from several threads at once (PJRT calls the
//! key-value store from its own threads).
use super::auth::{self, Token};
use super::error::CoordError;
use super::proto::{self, coordinator_client::CoordinatorClient, Member};
use super::{MAX_MESSAGE_BYTES, MAX_WAIT};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// Default of [`ClientConfig::connect_timeout`]: worker 0 may start minutes after the others.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default of [`ClientConfig::register_timeout`].
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// How a client connects. The defaults ([`ClientConfig::new`]) suit a pod slice whose workers
/// start within minutes of each other.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The run's secret (the same on every process).
    pub token: Token,
    /// Connect over TLS, verifying the coordinator's certificate against this CA (PEM);
    /// plain TCP when `None`.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// How long to keep trying to reach the coordinator (worker 0 may start after the others).
    pub connect_timeout: Duration,
    /// How long to wait for every process to register.
    pub register_timeout: Duration,
    /// Time limit of the calls that do not wait (put, try-get, heartbeat, leave), and extra
    /// time granted to the ones that do, on top of their own timeout.
    pub call_timeout: Duration,
    /// This host's name in other processes' messages (default: the kernel's host name).
    pub hostname: Option<String>,
    /// Devices this process drives (reported to the others in [`Client::members`]).
    pub local_device_count: u32,
}

impl ClientConfig {
    /// The default timeouts, no TLS.
    pub fn new(token: Token) -> ClientConfig {
        ClientConfig {
            token,
            tls_ca_pem: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            register_timeout: DEFAULT_JOIN_TIMEOUT,
            call_timeout: Duration::from_secs(30),
            hostname: None,
            local_device_count: 0,
        }
    }
}

/// Puts the token, and once registered the session id, into every request's metadata.
#[derive(Clone)]
pub(crate) struct Credentials {
    bearer: MetadataValue<Ascii>,
    session: Arc<OnceLock<MetadataValue<Ascii>>>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let m = request.metadata_mut();
        m.insert(auth::AUTHORIZATION, self.bearer.clone());
        if let Some(s) = self.session.get() {
            m.insert(auth::SESSION, s.clone());
        }
        Ok(request)
    }
}

pub(super) type Grpc = CoordinatorClient<InterceptedService<Channel, Credentials>>;

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// A registered process of a run. Leave with [`Client::shutdown`] when done; dropping a client
/// that has not left tells the coordinator this process stopped early, which fails the run for
/// the others with a message naming it.
pub struct Client {
    addr: String,
    process_id: u32,
    num_processes: u32,
    members: Vec<Member>,
    grpc: Grpc,
    /// The run's failure as heard in heartbeat answers, or the loss of the coordinator.
    failure: Arc<Mutex<Option<String>>>,
    left: AtomicBool,
    /// How often each barrier/key name was used here, so names can be reused (see `next_use`).
    uses: Mutex<HashMap<String, u64>>,
    call_timeout: Duration,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    /// Declared last: dropped after the channel and the heartbeat task it drives.
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("process_id", &self.process_id)
            .field("num_processes", &self.num_processes)
            .finish()
    }
}

impl Client {
    /// Connects to the coordinator at `addr` ("HOST:PORT"), registers as process `process_id` of
    /// `num_processes`, and waits until every process has registered. Retries the connection
    /// until `config.connect_timeout`; a wrong process count or a taken id is an error at once.
    pub fn connect(
        addr: &str,
        process_id: u32,
        num_processes: u32,
        config: ClientConfig,
    ) -> Result<Client, CoordError> {
        let cannot_reach = |detail: String| CoordError::Unreachable {
            addr: addr.to_string(),
            detail,
        };
        if addr
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            return Err(CoordError::Rejected(format!(
                "--coordinator `{addr}` is not HOST:PORT (e.g. 10.130.0.5:8476)"
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tpu-run-coord-client")
            .enable_all()
            .build()
            .map_err(|e| cannot_reach(format!("starting the client runtime: {e}")))?;
        let bearer = format!("Bearer {}", config.token.expose())
            .parse::<MetadataValue<Ascii>>()
            .map_err(|_| CoordError::Rejected("the coordinator token is not ASCII text".into()))?;
        let scheme = if config.tls_ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| CoordError::Rejected(format!("--coordinator `{addr}`: {e}")))?;
        let endpoint = client_tls(endpoint, addr, config.tls_ca_pem.as_deref())?
            .connect_timeout(config.call_timeout.min(Duration::from_secs(10)))
            .tcp_nodelay(true)
            // A coordinator that vanishes without closing the connection is noticed.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = runtime
            .block_on(connect_with_retries(&endpoint, config.connect_timeout))
            .map_err(|last| {
                cannot_reach(format!(
                    "no connection within {:.0} s (last error: {last}); is worker 0 running, \
                     with this address in its --coordinator?",
                    config.connect_timeout.as_secs_f64()
                ))
            })?;
        let credentials = Credentials {
            bearer,
            session: Arc::new(OnceLock::new()),
        };
        let session = credentials.session.clone();
        let mut client = Client {
            addr: addr.to_string(),
            process_id,
            num_processes,
            members: Vec::new(),
            grpc: CoordinatorClient::with_interceptor(channel, credentials)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            failure: Arc::new(Mutex::new(None)),
            // Not yet registered: nothing to leave until Register succeeds.
            left: AtomicBool::new(true),
            uses: Mutex::new(HashMap::new()),
            call_timeout: config.call_timeout,
            heartbeat: None,
            runtime,
        };
        let member = Member {
            process_id,
            hostname: config.hostname.clone().unwrap_or_else(local_hostname),
            local_device_count: config.local_device_count,
        };
        let mut grpc = client.grpc.clone();
        let registered = client.call(config.call_timeout, async move {
            grpc.register(proto::RegisterRequest {
                member: Some(member),
                num_processes,
            })
            .await
        })?;
        let id = registered
            .session_id
            .parse::<MetadataValue<Ascii>>()
            .map_err(|_| {
                CoordError::Rejected("the coordinator answered with an unusable session id".into())
            })?;
        // Set once, before any call that needs it; the interceptor reads it from here on.
        let _ = session.set(id);
        client.left.store(false, Ordering::SeqCst);
        let interval = Duration::from_millis(registered.heartbeat_interval_ms.max(1));
        let silence = Duration::from_millis(registered.heartbeat_timeout_ms.max(1));
        client.heartbeat = Some(client.runtime.spawn(heartbeats(
            client.grpc.clone(),
            process_id,
            interval,
            silence,
            client.addr.clone(),
            client.failure.clone(),
        )));
        let mut grpc = client.grpc.clone();
        let timeout = config.register_timeout;
        let members = client.call(timeout + config.call_timeout, async move {
            grpc.wait_members(proto::WaitMembersRequest {
                process_id,
                timeout_ms: timeout.as_millis() as u64,
            })
            .await
        })?;
        client.members = members.members;
        Ok(client)
    }

    /// Runs one RPC, at most `limit`; maps its status to an error naming the coordinator.
    fn call<T>(
        &self,
        limit: Duration,
        rpc: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CoordError> {
        let addr = &self.addr;
        self.runtime.block_on(async {
            match tokio::time::timeout(limit, rpc).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(status)) => Err(CoordError::from_status(status, addr)),
                Err(_) => Err(CoordError::Unreachable {
                    addr: addr.clone(),
                    detail: format!("no answer within {:.1} s", limit.as_secs_f64()),
                }),
            }
        })
    }

    /// Runs a call that does not wait (at most the call timeout) with a handle of the channel,
    /// for the coordinator's other client-side modules; fails at once if the run has failed.
    pub(super) fn call_now<T, F>(&self, rpc: impl FnOnce(Grpc) -> F) -> Result<T, CoordError>
    where
        F: Future<Output = Result<Response<T>, Status>>,
    {
        self.check()?;
        self.call(self.call_timeout, rpc(self.grpc.clone()))
    }

    /// The run's failure if one is known here (from heartbeats), else Ok. Cheap: no RPC.
    pub fn check(&self) -> Result<(), CoordError> {
        match self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(f) => Err(CoordError::RunFailed(f.clone())),
            None => Ok(()),
        }
    }

    pub fn process_id(&self) -> u32 {
        self.process_id
    }

    pub fn num_processes(&self) -> u32 {
        self.num_processes
    }

    /// Every process of the run, ordered by process id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The coordinator's address as given to [`Client::connect`].
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sets `key` (write-once: the same value again is fine, another value is an error).
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), CoordError> {
        self.check()?;
        let mut grpc = self.grpc.clone();
        let req = proto::PutRequest {
            process_id: self.process_id,
            key: key.to_string(),
            value: value.to_vec(),
        };
        self.call(self.call_timeout, async move { grpc.put(req).await })?;
        Ok(())
    }

    /// The value of `key`, waiting up to `timeout` for some process to put it.
    pub fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, CoordError> {
        self.check()?;
        let timeout = timeout.min(MAX_WAIT);
        let mut grpc = self.grpc.clone();
        let req = proto::GetRequest {
            process_id: self.process_id,
            key: key.to_string(),
            timeout_ms: timeout.as_millis() as u64,
        };
        let r = self.call(
            timeout + self.call_timeout,
            async move { grpc.get(req).await },
        )?;
        Ok(r.value)
    }

    /// The value of `key` if it is set now.
    pub fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, CoordError> {
        self.check()?;
        let mut grpc = self.grpc.clone();
        let req = proto::TryGetRequest {
            process_id: self.process_id,
            key: key.to_string(),
        };
        let r = self.call(self.call_timeout, async move { grpc.try_get(req).await })?;
        Ok(r.found.then_some(r.value))
    }

    /// The name of the `k`-th use of `name` by this process: `name`, then `name#1`, `name#2`...
    /// All processes make the same sequence of coordinated calls, so the k-th use matches.
    pub(crate) fn next_use(&self, name: &str) -> String {
        let mut uses = self.uses.lock().unwrap_or_else(|e| e.into_inner());
        let k = uses.entry(name.to_string()).or_insert(0);
        let out = if *k == 0 {
            name.to_string()
        } else {
            format!("{name}#{k}")
        };
        *k += 1;
        out
    }

    /// Blocks until every process has reached barrier `name`, at most `timeout` (then the
    /// barrier fails for every process, naming the ones that did not arrive). Every process must
    /// pass the same barriers in the same order; a name may be used again (each use is a new
    /// barrier).
    pub fn barrier(&self, name: &str, timeout: Duration) -> Result<(), CoordError> {
        self.check()?;
        let timeout = timeout.min(MAX_WAIT);
        let mut grpc = self.grpc.clone();
        let req = proto::BarrierRequest {
            process_id: self.process_id,
            name: self.next_use(name),
            timeout_ms: timeout.as_millis() as u64,
        };
        self.call(timeout + self.call_timeout, async move {
            grpc.barrier(req).await
        })?;
        Ok(())
    }

    fn leave(&self, clean: bool, reason: &str, limit: Duration) -> Result<(), CoordError> {
        if self.left.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(h) = &self.heartbeat {
            h.abort();
        }
        let mut grpc = self.grpc.clone();
        let req = proto::ShutdownRequest {
            process_id: self.process_id,
            clean,
            reason: reason.to_string(),
        };
        self.call(limit, async move { grpc.shutdown(req).await })?;
        Ok(())
    }

    /// Leaves the run when this process is done; no more heartbeats.
    pub fn shutdown(&self) -> Result<(), CoordError> {
        self.leave(true, "", self.call_timeout)
    }

    /// Leaves the run because this process failed: the run fails for the other processes with
    /// `reason` (name the error), instead of them waiting for the heartbeat timeout.
    pub fn abort(&self, reason: &str) -> Result<(), CoordError> {
        self.leave(false, reason, self.call_timeout)
    }

    /// This client as the key-value store of a multi-process PJRT client
    /// (`tpu::Client::with_kv_store`); its keys live under `pjrt/`.
    pub fn pjrt_store(self: &Arc<Self>) -> Arc<dyn tpu::KeyValueStore> {
        Arc::new(PjrtKvStore {
            client: self.clone(),
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.left.load(Ordering::SeqCst) {
            let reason = if std::thread::panicking() {
                "it panicked"
            } else {
                "it ended without leaving the run (an error or an interrupt)"
            };
            // Short: a process on its way out should not hang on an unreachable coordinator.
            let limit = self.call_timeout.min(Duration::from_secs(5));
            if let Err(e) = self.leave(false, reason, limit) {
                tracing::warn!(
                    "telling the coordinator that process {} stops: {e}",
                    self.process_id
                );
            }
        }
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

/// The endpoint with TLS when a CA is given: the coordinator's certificate must be signed by
/// it and name HOST of `addr` (a DNS name or an IP address).
fn client_tls(endpoint: Endpoint, addr: &str, ca: Option<&[u8]>) -> Result<Endpoint, CoordError> {
    let Some(ca) = ca else {
        return Ok(endpoint);
    };
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name(host);
    endpoint.tls_config(config).map_err(|e| {
        CoordError::Rejected(format!(
            "TLS to the coordinator at {addr} with --coordinator-tls-ca: {e}"
        ))
    })
}

async fn connect_with_retries(endpoint: &Endpoint, limit: Duration) -> Result<Channel, String> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(50);
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) => {
                let detail = match std::error::Error::source(&e) {
                    Some(s) => format!("{e}: {s}"),
                    None => e.to_string(),
                };
                if Instant::now() + pause >= deadline {
                    return Err(detail);
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Sends a heartbeat every `interval`; records the run's failure, or the coordinator's silence
/// once it has lasted `silence`.
async fn heartbeats(
    mut grpc: Grpc,
    process_id: u32,
    interval: Duration,
    silence: Duration,
    addr: String,
    failure: Arc<Mutex<Option<String>>>,
) {
    let record = |message: String| {
        let mut f = failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(message);
        }
    };
    let mut last_answer = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        let sent = grpc.heartbeat(proto::HeartbeatRequest { process_id });
        match tokio::time::timeout(silence, sent).await {
            Ok(Ok(r)) => {
                last_answer = Instant::now();
                let f = r.into_inner().failure;
                if !f.is_empty() {
                    record(f);
                    return;
                }
            }
            // Refusals that a retry cannot change: this process is not (or no longer) a member.
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition
                        | tonic::Code::Unauthenticated
                        | tonic::Code::PermissionDenied
                ) =>
            {
                record(status.message().to_string());
                return;
            }
            Ok(Err(_)) | Err(_) => {
                let quiet = last_answer.elapsed();
                if quiet >= silence {
                    record(format!(
                        "the coordinator at {addr} has not answered heartbeats for {:.1} s: \
                         worker 0 (which runs it) stopped or is unreachable",
                        quiet.as_secs_f64()
                    ));
                    return;
                }
            }
        }
    }
}

/// A [`Client`] as a `tpu::KeyValueStore`, keys under `pjrt/` (so they never collide with
/// tpu-run's own keys).
pub struct PjrtKvStore {
    client: Arc<Client>,
}

impl tpu::KeyValueStore for PjrtKvStore {
    fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, tpu::KvError> {
        Ok(self.client.get(&format!("pjrt/{key}"), timeout)?)
    }

    fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, tpu::KvError> {
        Ok(self.client.try_get(&format!("pjrt/{key}"))?)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), tpu::KvError> {
        Ok(self.client.put(&format!("pjrt/{key}"), value)?)
    }
}
