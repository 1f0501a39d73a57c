//! The coordinator's state and its rules, without the network: who has joined, who is alive,
//! the key-value store, the barriers, and the run's failure. The server (server.rs) holds it
//! behind a mutex and re-runs the `*_ready` checks of a blocking call whenever anything changes.
//!
//! Errors are gRPC statuses with the codes the client maps (error.rs): ABORTED once the run has
//! failed, DEADLINE_EXCEEDED for a wait that ran out, INVALID_ARGUMENT / ALREADY_EXISTS /
//! FAILED_PRECONDITION for requests that can never succeed.
use super::cursor::Cursor;
use super::limits::{Limits, ENTRY_OVERHEAD};
use super::proto::Member;
use crate::data::units::{CursorState, Piece};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tonic::{Code, Status};

/// Why a request failed: the gRPC code the client maps (error.rs) and the message. (Small,
/// unlike `tonic::Status`; converted at the service boundary.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    code: Code,
    message: String,
}

impl Refusal {
    fn new(code: Code, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
    pub fn aborted(m: impl Into<String>) -> Refusal {
        Refusal::new(Code::Aborted, m)
    }
    pub fn deadline_exceeded(m: impl Into<String>) -> Refusal {
        Refusal::new(Code::DeadlineExceeded, m)
    }
    pub fn invalid_argument(m: impl Into<String>) -> Refusal {
        Refusal::new(Code::InvalidArgument, m)
    }
    pub fn already_exists(m: impl Into<String>) -> Refusal {
        Refusal::new(Code::AlreadyExists, m)
    }
    pub fn failed_precondition(m: impl Into<String>) -> Refusal {
        Refusal::new(Code::FailedPrecondition, m)
    }
    pub fn permission_denied(m: impl Into<String>) -> Refusal {
        Refusal::new(Code::PermissionDenied, m)
    }
    pub fn resource_exhausted(m: impl Into<String>) -> Refusal {
        Refusal::new(Code::ResourceExhausted, m)
    }
    /// The gRPC code (the server counts the refusals of some codes).
    pub fn grpc_code(&self) -> Code {
        self.code
    }
    pub fn internal(m: impl Into<String>) -> Refusal {
        Refusal::new(Code::Internal, m)
    }
    #[cfg(test)]
    pub fn code(&self) -> Code {
        self.code
    }
    #[cfg(test)]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        Status::new(r.code, r.message)
    }
}

struct MemberEntry {
    member: Member,
    /// The session id Register gave this process; its later calls must carry it.
    session: String,
    last_seen: Instant,
    left: bool,
}

#[derive(Default)]
struct BarrierEntry {
    arrived: BTreeSet<u32>,
    /// Set once: Ok when everyone arrived, Err when it can no longer complete.
    outcome: Option<Result<(), Refusal>>,
}

/// Longest host name a process may register with (DNS names are at most 253 bytes).
const MAX_HOSTNAME_BYTES: usize = 1024;
/// Longest reason of an unclean leave that is kept (longer ones are cut; it is only a message).
const MAX_REASON_BYTES: usize = 16 << 10;

pub(crate) struct State {
    num_processes: u32,
    limits: Limits,
    members: BTreeMap<u32, MemberEntry>,
    kv: HashMap<String, Vec<u8>>,
    /// The store's size as `Limits::max_store_bytes` counts it.
    store_bytes: usize,
    barriers: HashMap<String, BarrierEntry>,
    failure: Option<String>,
    /// The data cursor, once process 0 opened it.
    cursor: Option<Cursor>,
    /// Something a waiter may be waiting for changed (the server wakes the waiters).
    pub changed: bool,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn list(ids: impl IntoIterator<Item = u32>) -> String {
    ids.into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl State {
    pub fn new(num_processes: u32, limits: Limits) -> State {
        State {
            num_processes,
            limits,
            members: BTreeMap::new(),
            kv: HashMap::new(),
            store_bytes: 0,
            barriers: HashMap::new(),
            failure: None,
            cursor: None,
            changed: false,
        }
    }

    /// "process 2 (host tpu-vm-2)", or "process 2" before it registered.
    fn describe(&self, id: u32) -> String {
        match self.members.get(&id) {
            Some(m) => format!("process {id} (host {})", m.member.hostname),
            None => format!("process {id}"),
        }
    }

    fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.failure = Some(message);
            self.changed = true;
        }
    }

    fn check_not_failed(&self) -> Result<(), Refusal> {
        match &self.failure {
            Some(f) => Err(Refusal::aborted(f.clone())),
            None => Ok(()),
        }
    }

    /// The caller must have registered (and not left).
    fn check_member(&self, id: u32) -> Result<(), Refusal> {
        match self.members.get(&id) {
            None => Err(Refusal::failed_precondition(format!(
                "process {id} has not registered with the coordinator"
            ))),
            Some(m) if m.left => Err(Refusal::failed_precondition(format!(
                "{} has already left the run",
                self.describe(id)
            ))),
            Some(_) => Ok(()),
        }
    }

    /// The caller presented `session` (the metadata, if any) for a request as process `id`:
    /// it must be the session Register gave process `id`. A session of another process is a
    /// spoofed id.
    pub fn check_session(&self, id: u32, session: Option<&[u8]>) -> Result<(), Refusal> {
        let Some(session) = session else {
            return Err(Refusal::permission_denied(format!(
                "a request as process {id} without a session id (metadata `{}`): register \
                 first and send the session id Register returned with every later call",
                super::auth::SESSION
            )));
        };
        // Every member is compared (in constant time each), so the answer's timing does not
        // tell which process a guessed session is close to.
        let mut owner = None;
        for (i, m) in &self.members {
            if bool::from(subtle::ConstantTimeEq::ct_eq(m.session.as_bytes(), session)) {
                owner = Some(*i);
            }
        }
        match owner {
            Some(o) if o == id => Ok(()),
            Some(o) => Err(Refusal::permission_denied(format!(
                "the session of {} made a request as process {id}: a process may act only as \
                 itself",
                self.describe(o)
            ))),
            None => Err(Refusal::permission_denied(format!(
                "a request as process {id} with a session id the coordinator did not give: \
                 register first and send the session id Register returned"
            ))),
        }
    }

    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// The processes registered so far, ordered by id.
    pub fn registered(&self) -> Vec<Member> {
        self.members.values().map(|m| m.member.clone()).collect()
    }

    // ------------------------------------------------------------------ membership

    /// Registers `member` with the session id its later calls must carry.
    pub fn register(
        &mut self,
        member: Member,
        num_processes: u32,
        session: String,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.check_not_failed()?;
        let id = member.process_id;
        if num_processes != self.num_processes {
            return Err(Refusal::invalid_argument(format!(
                "process {id} (host {}) was started with --num-processes {num_processes}, but the \
                 coordinator with {}; give every worker the same --num-processes",
                member.hostname, self.num_processes
            )));
        }
        if id >= self.num_processes {
            return Err(Refusal::invalid_argument(format!(
                "process id {id} (host {}) is out of range: --process-id must be in 0..{}",
                member.hostname, self.num_processes
            )));
        }
        if member.hostname.len() > MAX_HOSTNAME_BYTES {
            return Err(Refusal::invalid_argument(format!(
                "process {id}: its host name is {} bytes long, over the limit of \
                 {MAX_HOSTNAME_BYTES}",
                member.hostname.len()
            )));
        }
        if let Some(existing) = self.members.get(&id) {
            return Err(Refusal::already_exists(format!(
                "process {id} is already registered (host {}); a second worker from host {} \
                 claims the same --process-id: give each worker its own",
                existing.member.hostname, member.hostname
            )));
        }
        self.members.insert(
            id,
            MemberEntry {
                member,
                session,
                last_seen: now,
                left: false,
            },
        );
        self.changed = true;
        Ok(())
    }

    /// All members once everyone has registered; an error after `timeout` has passed.
    pub fn members_ready(
        &self,
        id: u32,
        timed_out: bool,
        timeout: Duration,
    ) -> Result<Option<Vec<Member>>, Refusal> {
        self.check_not_failed()?;
        self.check_member(id)?;
        if self.members.len() as u32 == self.num_processes {
            return Ok(Some(
                self.members.values().map(|m| m.member.clone()).collect(),
            ));
        }
        if timed_out {
            let missing = (0..self.num_processes).filter(|i| !self.members.contains_key(i));
            return Err(Refusal::deadline_exceeded(format!(
                "only {} of {} processes registered within {}; missing process id(s) {}: start \
                 a worker with each --process-id, all with the same --coordinator",
                self.members.len(),
                self.num_processes,
                secs(timeout),
                list(missing)
            )));
        }
        Ok(None)
    }

    /// Records a heartbeat; returns the run's failure, if any.
    pub fn heartbeat(&mut self, id: u32, now: Instant) -> Result<String, Refusal> {
        self.check_member(id)?;
        if let Some(m) = self.members.get_mut(&id) {
            m.last_seen = now;
        }
        Ok(self.failure.clone().unwrap_or_default())
    }

    /// A process leaves. An unclean leave (an error, an interrupt) fails the run.
    pub fn leave(&mut self, id: u32, clean: bool, reason: &str) -> Result<(), Refusal> {
        self.check_member(id)?;
        if let Some(m) = self.members.get_mut(&id) {
            m.left = true;
        }
        self.changed = true;
        if !clean {
            let why = if reason.is_empty() {
                "no reason given".to_string()
            } else if reason.len() > MAX_REASON_BYTES {
                let mut end = MAX_REASON_BYTES;
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}... (cut at {MAX_REASON_BYTES} bytes)", &reason[..end])
            } else {
                reason.to_string()
            };
            let who = self.describe(id);
            self.fail(format!("{who} stopped early: {why}"));
        }
        Ok(())
    }

    /// Fails the run if a member that has not left sent no heartbeat for longer than
    /// `heartbeat_timeout`.
    pub fn check_liveness(&mut self, now: Instant, heartbeat_timeout: Duration) {
        if self.failure.is_some() {
            return;
        }
        let silent: Vec<(u32, Duration)> = self
            .members
            .iter()
            .filter(|(_, m)| !m.left)
            .map(|(id, m)| (*id, now.saturating_duration_since(m.last_seen)))
            .filter(|(_, quiet)| *quiet > heartbeat_timeout)
            .collect();
        if let Some((id, quiet)) = silent.first() {
            let others = if silent.len() > 1 {
                format!(
                    " (also silent: process(es) {})",
                    list(silent[1..].iter().map(|(i, _)| *i))
                )
            } else {
                String::new()
            };
            let who = self.describe(*id);
            self.fail(format!(
                "{who} sent no heartbeat for {} (limit {}): it crashed, was killed or lost its \
                 connection to the coordinator{others}",
                secs(*quiet),
                secs(heartbeat_timeout)
            ));
        }
    }

    /// Whether every member that registered has left (process 0 may then stop the server).
    pub fn all_left(&self) -> bool {
        self.members.len() as u32 == self.num_processes && self.members.values().all(|m| m.left)
    }

    // --------------------------------------------------------------- key-value store

    fn check_key(&self, key: &str) -> Result<(), Refusal> {
        let max = self.limits.max_key_bytes;
        if key.len() > max {
            return Err(Refusal::invalid_argument(format!(
                "a key of {} bytes (starting `{}`) is over the limit of {max} bytes on key \
                 length",
                key.len(),
                key.chars().take(64).collect::<String>()
            )));
        }
        Ok(())
    }

    pub fn put(&mut self, id: u32, key: &str, value: &[u8]) -> Result<(), Refusal> {
        self.check_not_failed()?;
        self.check_member(id)?;
        self.check_key(key)?;
        let l = &self.limits;
        if value.len() > l.max_value_bytes {
            return Err(Refusal::invalid_argument(format!(
                "the value of key `{key}` is {} bytes, over the limit of {} bytes on a value",
                value.len(),
                l.max_value_bytes
            )));
        }
        let cost = key.len() + value.len() + ENTRY_OVERHEAD;
        if !self.kv.contains_key(key) {
            if self.kv.len() >= l.max_keys {
                return Err(Refusal::resource_exhausted(format!(
                    "the store holds {} keys, the limit on keys per run; key `{key}` is refused",
                    self.kv.len()
                )));
            }
            if self.store_bytes + cost > l.max_store_bytes {
                return Err(Refusal::resource_exhausted(format!(
                    "key `{key}` ({} bytes with its value) would take the store to {} bytes, \
                     over the limit of {} bytes on the store",
                    cost,
                    self.store_bytes + cost,
                    l.max_store_bytes
                )));
            }
        }
        match self.kv.get(key) {
            Some(v) if v == value => Ok(()),
            Some(_) => Err(Refusal::already_exists(format!(
                "key `{key}` is already set to another value (keys are written once; {} tried \
                 to change it)",
                self.describe(id)
            ))),
            None => {
                self.kv.insert(key.to_string(), value.to_vec());
                self.store_bytes += cost;
                self.changed = true;
                Ok(())
            }
        }
    }

    pub fn try_get(&self, id: u32, key: &str) -> Result<Option<Vec<u8>>, Refusal> {
        self.check_not_failed()?;
        self.check_member(id)?;
        self.check_key(key)?;
        Ok(self.kv.get(key).cloned())
    }

    pub fn get_ready(
        &self,
        id: u32,
        key: &str,
        timed_out: bool,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        self.check_not_failed()?;
        self.check_member(id)?;
        self.check_key(key)?;
        if let Some(v) = self.kv.get(key) {
            return Ok(Some(v.clone()));
        }
        if timed_out {
            return Err(Refusal::deadline_exceeded(format!(
                "key `{key}` was not set within {} ({} waited for it)",
                secs(timeout),
                self.describe(id)
            )));
        }
        Ok(None)
    }

    // ----------------------------------------------------------------- data cursor

    /// Process 0 opens the data cursor, once; its digest of the listing and its unit count.
    pub fn open_cursor(
        &mut self,
        id: u32,
        open: impl FnOnce(u32) -> Result<Cursor, Refusal>,
    ) -> Result<(u64, u64), Refusal> {
        self.check_not_failed()?;
        self.check_member(id)?;
        if id != 0 {
            return Err(Refusal::permission_denied(format!(
                "{} tried to open the data cursor: only process 0 opens it",
                self.describe(id)
            )));
        }
        if self.cursor.is_some() {
            return Err(Refusal::already_exists(
                "the data cursor is already open (it is opened once per run)",
            ));
        }
        let c = open(self.num_processes)?;
        let answer = (c.digest(), c.units());
        self.cursor = Some(c);
        Ok(answer)
    }

    fn cursor_mut(&mut self, id: u32) -> Result<&mut Cursor, Refusal> {
        self.check_not_failed()?;
        self.check_member(id)?;
        self.cursor.as_mut().ok_or_else(|| {
            Refusal::failed_precondition(
                "the data cursor is not open yet (process 0 opens it before any process reads)",
            )
        })
    }

    /// The next work units of process `id`, with the listing's digest.
    pub fn next_units(&mut self, id: u32, max: u32) -> Result<(Vec<Piece>, u64), Refusal> {
        let c = self.cursor_mut(id)?;
        Ok((c.next_units(id, max)?, c.digest()))
    }

    pub fn report_position(
        &mut self,
        id: u32,
        step: u64,
        consumed: u64,
        records: u64,
    ) -> Result<(), Refusal> {
        self.cursor_mut(id)?.report(id, step, consumed, records)
    }

    /// Process 0's snapshot of the cursor at `step`.
    pub fn cursor_snapshot(&mut self, id: u32, step: u64) -> Result<CursorState, Refusal> {
        if id != 0 {
            return Err(Refusal::permission_denied(format!(
                "{} asked for the data cursor's snapshot: only process 0 writes checkpoints",
                self.describe(id)
            )));
        }
        self.cursor_mut(id)?.snapshot(step)
    }

    // -------------------------------------------------------------------- barriers

    /// Records `id` at barrier `name`. Each process reaches a given barrier once.
    pub fn arrive(&mut self, id: u32, name: &str) -> Result<(), Refusal> {
        self.check_not_failed()?;
        self.check_member(id)?;
        let l = &self.limits;
        if name.len() > l.max_barrier_name_bytes {
            return Err(Refusal::invalid_argument(format!(
                "a barrier name of {} bytes (starting `{}`) is over the limit of {} bytes",
                name.len(),
                name.chars().take(64).collect::<String>(),
                l.max_barrier_name_bytes
            )));
        }
        if !self.barriers.contains_key(name) && self.barriers.len() >= l.max_barriers {
            return Err(Refusal::resource_exhausted(format!(
                "the run has used {} barriers, the limit on barriers per run; barrier `{name}` \
                 is refused",
                self.barriers.len()
            )));
        }
        let who = self.describe(id);
        let b = self.barriers.entry(name.to_string()).or_default();
        if !b.arrived.insert(id) {
            return Err(Refusal::already_exists(format!(
                "{who} reached barrier `{name}` a second time (a barrier name is used once)"
            )));
        }
        self.changed = true;
        Ok(())
    }

    /// Ok(true) once everyone has arrived; an error once the barrier can no longer complete
    /// (a process left before reaching it, the run failed, or a waiter's timeout ran out,
    /// which fails the barrier for every process).
    pub fn barrier_ready(
        &mut self,
        id: u32,
        name: &str,
        timed_out: bool,
        timeout: Duration,
    ) -> Result<bool, Refusal> {
        self.check_not_failed()?;
        let n = self.num_processes;
        let left_before: Vec<u32> = {
            let arrived = self.barriers.get(name).map(|b| &b.arrived);
            self.members
                .iter()
                .filter(|(i, m)| m.left && !arrived.is_some_and(|a| a.contains(i)))
                .map(|(i, _)| *i)
                .collect()
        };
        let missing = |arrived: &BTreeSet<u32>| list((0..n).filter(|i| !arrived.contains(i)));
        let describe_left: Vec<String> = left_before.iter().map(|i| self.describe(*i)).collect();
        let who = self.describe(id);
        let Some(b) = self.barriers.get_mut(name) else {
            return Err(Refusal::failed_precondition(format!(
                "{who} waits at barrier `{name}` without having reached it"
            )));
        };
        if b.outcome.is_none() {
            if b.arrived.len() as u32 == n {
                b.outcome = Some(Ok(()));
            } else if let Some(l) = describe_left.first() {
                b.outcome = Some(Err(Refusal::aborted(format!(
                    "{l} left the run before reaching barrier `{name}`"
                ))));
            } else if timed_out {
                b.outcome = Some(Err(Refusal::deadline_exceeded(format!(
                    "barrier `{name}` timed out after {} (at {who}): process(es) {} did not \
                     reach it",
                    secs(timeout),
                    missing(&b.arrived)
                ))));
            }
            if b.outcome.is_some() {
                self.changed = true;
            }
        }
        match &b.outcome {
            None => Ok(false),
            Some(Ok(())) => Ok(true),
            Some(Err(e)) => Err(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u32, host: &str) -> Member {
        Member {
            process_id: id,
            hostname: host.into(),
            local_device_count: 4,
        }
    }

    fn full(n: u32, now: Instant) -> State {
        let mut s = State::new(n, Limits::default());
        for i in 0..n {
            s.register(member(i, &format!("host-{i}")), n, format!("s{i}"), now)
                .unwrap();
        }
        s
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn registration_rules() {
        let now = Instant::now();
        let mut s = State::new(3, Limits::default());
        s.register(member(1, "b"), 3, "s1".into(), now).unwrap();
        let e = s.register(member(1, "c"), 3, "s1".into(), now).unwrap_err();
        assert_eq!(e.code(), tonic::Code::AlreadyExists);
        assert!(
            e.message().contains("host b") && e.message().contains("host c"),
            "{e}"
        );
        let e = s.register(member(2, "c"), 4, "s2".into(), now).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("--num-processes 4"), "{e}");
        let e = s.register(member(3, "d"), 3, "s3".into(), now).unwrap_err();
        assert!(e.message().contains("0..3"), "{e}");
        assert_eq!(s.members_ready(1, false, T).unwrap(), None);
        let e = s.members_ready(1, true, T).unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
        assert!(e.message().contains("missing process id(s) 0, 2"), "{e}");
        s.register(member(2, "c"), 3, "s2".into(), now).unwrap();
        s.register(member(0, "a"), 3, "s0".into(), now).unwrap();
        let m = s.members_ready(0, false, T).unwrap().unwrap();
        assert_eq!(
            m.iter().map(|m| m.hostname.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let e = s.members_ready(7, false, T).unwrap_err();
        assert!(e.message().contains("not registered"), "{e}");
    }

    #[test]
    fn kv_is_write_once() {
        let now = Instant::now();
        let mut s = full(2, now);
        assert_eq!(s.get_ready(0, "k", false, T).unwrap(), None);
        s.put(1, "k", b"v1").unwrap();
        s.put(1, "k", b"v1").unwrap();
        let e = s.put(0, "k", b"v2").unwrap_err();
        assert_eq!(e.code(), tonic::Code::AlreadyExists);
        assert_eq!(s.get_ready(0, "k", false, T).unwrap().unwrap(), b"v1");
        assert_eq!(s.try_get(0, "k").unwrap().unwrap(), b"v1");
        assert_eq!(s.try_get(0, "nope").unwrap(), None);
        let e = s.get_ready(0, "nope", true, T).unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
        assert!(
            e.message().contains("`nope`") && e.message().contains("5.0 s"),
            "{e}"
        );
    }

    #[test]
    fn barrier_completes_fails_on_timeout_and_on_leave() {
        let now = Instant::now();
        let mut s = full(3, now);
        for i in 0..3 {
            s.arrive(i, "b1").unwrap();
            let done = s.barrier_ready(i, "b1", false, T).unwrap();
            assert_eq!(done, i == 2);
        }
        assert!(s.barrier_ready(0, "b1", false, T).unwrap());
        assert!(s
            .arrive(0, "b1")
            .unwrap_err()
            .message()
            .contains("second time"));

        // A timeout at one process fails the barrier for all, naming who is missing.
        s.arrive(0, "b2").unwrap();
        s.arrive(2, "b2").unwrap();
        let e = s.barrier_ready(2, "b2", true, T).unwrap_err();
        assert!(
            e.message().contains("process(es) 1 did not reach it"),
            "{e}"
        );
        let e = s.barrier_ready(0, "b2", false, T).unwrap_err();
        assert!(e.message().contains("timed out"), "{e}");

        // A process that leaves before arriving fails the barrier.
        s.arrive(0, "b3").unwrap();
        s.leave(1, true, "").unwrap();
        let e = s.barrier_ready(0, "b3", false, T).unwrap_err();
        assert!(e.message().contains("process 1 (host host-1) left"), "{e}");
        assert!(s.failure().is_none());
    }

    #[test]
    fn only_process_0_opens_and_snapshots_the_data_cursor() {
        use crate::data::units::{IndexedFile, UnitTable};
        let mut s = full(2, Instant::now());
        let open = |n: u32| {
            let f = IndexedFile {
                name: "a".into(),
                bytes: 10,
                records: 2,
                unit_offsets: vec![0],
            };
            Cursor::open(UnitTable::new(&[f], 2).unwrap(), 1, true, n, None)
        };
        let e = s.next_units(1, 1).unwrap_err();
        assert!(e.message().contains("not open yet"), "{e}");
        let e = s.open_cursor(1, open).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(s.open_cursor(0, open).unwrap().1, 1);
        let e = s.open_cursor(0, open).unwrap_err();
        assert_eq!(e.code(), tonic::Code::AlreadyExists);
        assert_eq!(s.next_units(1, 1).unwrap().0.len(), 1);
        s.report_position(0, 1, 0, 0).unwrap();
        s.report_position(1, 1, 1, 0).unwrap();
        let e = s.cursor_snapshot(1, 1).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let snap = s.cursor_snapshot(0, 1).unwrap();
        assert!(snap.pending.is_empty() && snap.next == 1, "{snap:?}");
    }

    #[test]
    fn silent_or_unclean_processes_fail_the_run() {
        let t0 = Instant::now();
        let mut s = full(3, t0);
        let hb = Duration::from_secs(2);
        s.heartbeat(0, t0 + Duration::from_secs(3)).unwrap();
        s.heartbeat(1, t0 + Duration::from_secs(3)).unwrap();
        s.check_liveness(t0 + Duration::from_secs(1), hb);
        assert!(s.failure().is_none());
        s.check_liveness(t0 + Duration::from_secs(4), hb);
        let f = s.failure().unwrap().to_string();
        assert!(
            f.starts_with("process 2 (host host-2) sent no heartbeat for 4.0 s"),
            "{f}"
        );
        // Every call now reports it, and heartbeats carry it.
        assert_eq!(s.heartbeat(0, t0).unwrap(), f);
        let e = s.get_ready(0, "k", false, T).unwrap_err();
        assert_eq!((e.code(), e.message()), (tonic::Code::Aborted, f.as_str()));
        assert_eq!(
            s.put(0, "k", b"v").unwrap_err().code(),
            tonic::Code::Aborted
        );

        let mut s = full(2, t0);
        s.leave(1, false, "interrupted").unwrap();
        assert_eq!(
            s.failure().unwrap(),
            "process 1 (host host-1) stopped early: interrupted"
        );
        // Left processes are not expected to send heartbeats.
        let mut s = full(2, t0);
        s.leave(1, true, "").unwrap();
        s.heartbeat(0, t0 + Duration::from_secs(10)).unwrap();
        s.check_liveness(t0 + Duration::from_secs(10), hb);
        assert!(s.failure().is_none());
        assert!(!s.all_left());
        s.leave(0, true, "").unwrap();
        assert!(s.all_left());
    }
}
