//! The coordinator as an outsider meets it, on loopback: every RPC refused without the run's
//! token and with a wrong one (UNAUTHENTICATED, counted); a holder of the token refused when it
//! acts as another process (PERMISSION_DENIED, counted), shutting another process down
//! included; a second Register of a taken id; oversize keys, values, messages and too many keys
//! or barriers refused naming the limit; connections past the limit closed; the listener bound
//! to the address given and to no other.
//!
//! The outsider is a raw gRPC client of the generated stubs (any gRPC client can be one); the
//! members are ordinary `coord::Client`s on threads. Every wait is bounded.
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tpu_run::coord::proto::{self, coordinator_client::CoordinatorClient};
use tpu_run::coord::{self, Client, ClientConfig, CoordError, Limits, ServerConfig, Token};

const LONG: Duration = Duration::from_secs(30);

fn server(n: u32, token: &Token, limits: Limits) -> coord::Server {
    let config = ServerConfig {
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_secs(5),
        limits,
        ..ServerConfig::new(n, token.clone())
    };
    coord::serve("127.0.0.1:0".parse().unwrap(), config).expect("coordinator")
}

fn config(id: u32, token: &Token) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(10),
        register_timeout: LONG,
        call_timeout: Duration::from_secs(10),
        hostname: Some(format!("host-{id}")),
        ..ClientConfig::new(token.clone())
    }
}

/// A raw client and the runtime it runs on.
struct Raw {
    rt: tokio::runtime::Runtime,
    grpc: CoordinatorClient<Channel>,
}

/// The metadata a call carries: a token (None: no `authorization` at all), a session.
#[derive(Clone, Default)]
struct Meta {
    token: Option<String>,
    session: Option<String>,
}

fn request<T>(msg: T, meta: &Meta) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = &meta.token {
        let v: MetadataValue<_> = format!("Bearer {t}").parse().unwrap();
        r.metadata_mut().insert("authorization", v);
    }
    if let Some(s) = &meta.session {
        r.metadata_mut()
            .insert("x-tpu-run-session", s.parse().unwrap());
    }
    r
}

// The helpers return tonic's Status as the generated stubs do, to check its code and message.
#[allow(clippy::result_large_err)]
impl Raw {
    fn connect(addr: std::net::SocketAddr) -> Raw {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
        let grpc = CoordinatorClient::new(rt.block_on(endpoint.connect()).unwrap());
        Raw { rt, grpc }
    }

    /// Calls every RPC of the service once as `process_id` (Register too, unless `skip_register`);
    /// their status codes (OK or the refusal), in the service's order.
    fn every_rpc(
        &self,
        meta: &Meta,
        process_id: u32,
        skip_register: bool,
    ) -> Vec<(&'static str, Code)> {
        let mut g = self.grpc.clone();
        let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
        self.rt.block_on(async {
            let member = proto::Member {
                process_id,
                hostname: "outsider-host".into(),
                local_device_count: 1,
            };
            let registered = if skip_register {
                Code::Ok
            } else {
                code(
                    g.register(request(
                        proto::RegisterRequest {
                            member: Some(member),
                            num_processes: 2,
                        },
                        meta,
                    ))
                    .await
                    .map(drop),
                )
            };
            vec![
                ("Register", registered),
                (
                    "WaitMembers",
                    code(
                        g.wait_members(request(
                            proto::WaitMembersRequest {
                                process_id,
                                timeout_ms: 10,
                            },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
                (
                    "Heartbeat",
                    code(
                        g.heartbeat(request(proto::HeartbeatRequest { process_id }, meta))
                            .await
                            .map(drop),
                    ),
                ),
                (
                    "Put",
                    code(
                        g.put(request(
                            proto::PutRequest {
                                process_id,
                                key: "outsider".into(),
                                value: b"v".to_vec(),
                            },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
                (
                    "Get",
                    code(
                        g.get(request(
                            proto::GetRequest {
                                process_id,
                                key: "tpu-run/pretrain/resume-from".into(),
                                timeout_ms: 10,
                            },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
                (
                    "TryGet",
                    code(
                        g.try_get(request(
                            proto::TryGetRequest {
                                process_id,
                                key: "tpu-run/pretrain/resume-from".into(),
                            },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
                (
                    "Barrier",
                    code(
                        g.barrier(request(
                            proto::BarrierRequest {
                                process_id,
                                name: "tpu-run/pretrain/pjrt-client".into(),
                                timeout_ms: 10,
                            },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
                (
                    "OpenCursor",
                    code(
                        g.open_cursor(request(
                            proto::OpenCursorRequest {
                                process_id,
                                files: vec![proto::IndexedFile {
                                    name: "part-0.tfrecord".into(),
                                    bytes: 100,
                                    records: 1,
                                    unit_offsets: vec![0],
                                }],
                                unit_records: 1,
                                seed: 1,
                                shuffle: true,
                                resume_state: Vec::new(),
                            },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
                (
                    "NextUnits",
                    code(
                        g.next_units(request(
                            proto::NextUnitsRequest { process_id, max: 1 },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
                (
                    "ReportPosition",
                    code(
                        g.report_position(request(
                            proto::ReportPositionRequest {
                                process_id,
                                step: 1,
                                consumed: 0,
                                records: 0,
                            },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
                (
                    "CursorSnapshot",
                    code(
                        g.cursor_snapshot(request(
                            proto::CursorSnapshotRequest {
                                process_id,
                                step: 1,
                            },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
                (
                    "Shutdown",
                    code(
                        g.shutdown(request(
                            proto::ShutdownRequest {
                                process_id,
                                clean: false,
                                reason: "outsider says stop".into(),
                            },
                            meta,
                        ))
                        .await
                        .map(drop),
                    ),
                ),
            ]
        })
    }

    /// Registers as `process_id` of 2; the session id.
    fn register(&self, meta: &Meta, process_id: u32, host: &str) -> Result<String, tonic::Status> {
        let mut g = self.grpc.clone();
        let r = self.rt.block_on(g.register(request(
            proto::RegisterRequest {
                member: Some(proto::Member {
                    process_id,
                    hostname: host.into(),
                    local_device_count: 1,
                }),
                num_processes: 2,
            },
            meta,
        )))?;
        Ok(r.into_inner().session_id)
    }

    fn put(&self, meta: &Meta, process_id: u32, key: &str) -> Result<(), tonic::Status> {
        let mut g = self.grpc.clone();
        let req = proto::PutRequest {
            process_id,
            key: key.into(),
            value: b"v".to_vec(),
        };
        self.rt.block_on(g.put(request(req, meta))).map(drop)
    }

    fn shutdown(&self, meta: &Meta, process_id: u32) -> Result<(), tonic::Status> {
        let mut g = self.grpc.clone();
        let req = proto::ShutdownRequest {
            process_id,
            clean: false,
            reason: "stop".into(),
        };
        self.rt.block_on(g.shutdown(request(req, meta))).map(drop)
    }
}

#[test]
fn every_rpc_is_refused_without_the_token_and_with_a_wrong_one() {
    let token = Token::generate().unwrap();
    let server = server(2, &token, Limits::default());
    let raw = Raw::connect(server.local_addr());
    let wrong = Token::generate().unwrap();
    let cases = [
        Meta::default(),
        Meta {
            token: Some(wrong.expose().into()),
            ..Meta::default()
        },
        // The right token with its last byte changed (to a different character: appending a
        // fixed '0' left it unchanged 1 time in 16), and a prefix of it.
        Meta {
            token: Some(with_last_byte_changed(token.expose())),
            ..Meta::default()
        },
        Meta {
            token: Some(token.expose()[..32].into()),
            ..Meta::default()
        },
    ];
    let mut refused = 0;
    for meta in &cases {
        for (rpc, code) in raw.every_rpc(meta, 0, false) {
            assert_eq!(code, Code::Unauthenticated, "{rpc}");
            refused += 1;
        }
    }
    assert_eq!(server.refusals().unauthenticated, refused);
    assert_eq!(refused, 48);
    // Nothing got in: no member, no failure.
    assert!(server.registered().is_empty());
    assert!(server.failure().is_none());

    // The message says what to do, and the client maps it.
    let mut client_config = config(0, &wrong);
    client_config.connect_timeout = Duration::from_secs(5);
    let e = Client::connect(&server.local_addr().to_string(), 0, 2, client_config).unwrap_err();
    assert!(matches!(e, CoordError::Denied { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("wrong token")
            && text.contains("--coordinator-token-file")
            && text.contains("TPU_RUN_COORDINATOR_TOKEN"),
        "{text}"
    );
    assert!(!text.contains(wrong.expose()) && !text.contains(token.expose()));
    assert_eq!(server.refusals().unauthenticated, refused + 1);
}

#[test]
fn a_holder_of_the_token_acts_only_as_the_process_it_registered() {
    let token = Token::generate().unwrap();
    let server = server(2, &token, Limits::default());
    let addr = server.local_addr();
    let raw = Raw::connect(addr);
    let with_token = Meta {
        token: Some(token.expose().into()),
        session: None,
    };
    // Registered calls without a session are refused (Register itself needs none).
    for (rpc, code) in raw.every_rpc(&with_token, 1, true).into_iter().skip(1) {
        assert_eq!(code, Code::PermissionDenied, "{rpc}");
    }
    assert_eq!(server.refusals().permission_denied, 11);
    // Process 0 is a real member; the raw client registers as process 1.
    let p0 = std::thread::spawn({
        let token = token.clone();
        move || Client::connect(&addr.to_string(), 0, 2, config(0, &token))
    });
    let session = raw.register(&with_token, 1, "host-1").unwrap();
    let p0 = p0.join().unwrap().unwrap();
    let as_1 = Meta {
        session: Some(session.clone()),
        ..with_token.clone()
    };
    raw.put(&as_1, 1, "mine").unwrap();

    // Process 1's session acting as process 0: refused, counted, and nothing happens to 0.
    let before = server.refusals().permission_denied;
    let e = raw.put(&as_1, 0, "spoofed").unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("session of process 1 (host host-1)")
            && e.message().contains("as process 0"),
        "{}",
        e.message()
    );
    let e = raw.shutdown(&as_1, 0).unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{}", e.message());
    let unknown = Meta {
        session: Some("0".repeat(32)),
        ..with_token.clone()
    };
    let e = raw.put(&unknown, 1, "x").unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("did not give"), "{}", e.message());
    assert_eq!(server.refusals().permission_denied, before + 3);
    assert!(server.failure().is_none());
    assert_eq!(p0.try_get("spoofed").unwrap(), None);
    assert_eq!(p0.try_get("mine").unwrap(), Some(b"v".to_vec()));

    // A second Register of a taken id names the host that holds it.
    let e = raw.register(&with_token, 0, "outsider-host").unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(
        e.message().contains("already registered (host host-0)"),
        "{}",
        e.message()
    );

    // A process may shut itself down: then the run ends as it says (unclean: failed).
    raw.shutdown(&as_1, 1).unwrap();
    assert!(server
        .failure()
        .unwrap()
        .contains("process 1 (host host-1)"));
    p0.shutdown().unwrap();
}

#[test]
fn oversize_keys_values_messages_and_too_many_keys_or_barriers_are_refused() {
    let token = Token::generate().unwrap();
    let limits = Limits {
        max_key_bytes: 32,
        max_value_bytes: 1000,
        // Three values of 1000 bytes under 2-byte keys, two 1-byte ones, 64 bytes a key besides.
        max_store_bytes: 3 * (1000 + 2 + 64) + 2 * (1 + 1 + 64) + 10,
        max_keys: 5,
        max_barrier_name_bytes: 16,
        max_barriers: 2,
        max_message_bytes: 4096,
        ..Limits::default()
    };
    let server = server(1, &token, limits);
    let c = Client::connect(&server.local_addr().to_string(), 0, 1, config(0, &token)).unwrap();
    let rejected = |e: CoordError, needle: &str| {
        assert!(matches!(e, CoordError::Rejected(_)), "{e:?}");
        assert!(e.to_string().contains(needle), "{e}");
    };
    rejected(
        c.put(&"k".repeat(33), b"v").unwrap_err(),
        "33 bytes (starting `kkk",
    );
    rejected(
        c.try_get(&"k".repeat(33)).unwrap_err(),
        "over the limit of 32 bytes on key length",
    );
    rejected(
        c.put("big", &[7u8; 1001]).unwrap_err(),
        "1001 bytes, over the limit of 1000 bytes on a value",
    );
    // Past the message limit the server refuses before decoding, naming both sizes.
    rejected(c.put("huge", &[7u8; 8000]).unwrap_err(), "4096");
    // The store's bytes: three ~1 KB values fit, a fourth does not.
    for i in 0..3 {
        c.put(&format!("v{i}"), &[i as u8; 1000]).unwrap();
    }
    rejected(
        c.put("v3", &[3u8; 1000]).unwrap_err(),
        "over the limit of 3340 bytes on the store",
    );
    // Keys per run: two small keys reach 5, the next is refused (rewriting one is fine).
    c.put("a", b"1").unwrap();
    c.put("b", b"1").unwrap();
    c.put("a", b"1").unwrap();
    rejected(
        c.put("c", b"1").unwrap_err(),
        "holds 5 keys, the limit on keys",
    );
    // Barriers: name length and count.
    rejected(
        c.barrier(&"b".repeat(17), LONG).unwrap_err(),
        "barrier name of 17 bytes",
    );
    c.barrier("one", LONG).unwrap();
    c.barrier("two", LONG).unwrap();
    rejected(
        c.barrier("three", LONG).unwrap_err(),
        "used 2 barriers, the limit on barriers",
    );
    // What was stored is intact.
    assert_eq!(c.get("v1", LONG).unwrap(), vec![1u8; 1000]);
    c.shutdown().unwrap();
}

#[test]
fn connections_past_the_limit_are_closed() {
    let token = Token::generate().unwrap();
    let limits = Limits {
        max_connections: 1,
        ..Limits::default()
    };
    let server = server(2, &token, limits);
    let addr = server.local_addr().to_string();
    let first = std::thread::spawn({
        let (addr, token) = (addr.clone(), token.clone());
        move || {
            let c = ClientConfig {
                register_timeout: Duration::from_secs(3),
                ..config(0, &token)
            };
            Client::connect(&addr, 0, 2, c)
        }
    });
    // The first holds the only slot (it waits for process 1 until its join timeout).
    let deadline = std::time::Instant::now() + LONG;
    while server.registered().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let quick = ClientConfig {
        connect_timeout: Duration::from_millis(500),
        call_timeout: Duration::from_secs(2),
        ..config(1, &token)
    };
    let e = Client::connect(&addr, 1, 2, quick).unwrap_err();
    assert!(matches!(e, CoordError::Unreachable { .. }), "{e:?}");
    let e = first.join().unwrap().unwrap_err();
    assert!(e.to_string().contains("missing process id(s) 1"), "{e}");
}

#[test]
fn the_server_listens_on_the_address_given_and_no_other() {
    let token = Token::generate().unwrap();
    // 127.0.0.2 is this host too (all of 127/8 is loopback), but not the address bound.
    let reachable = |port: u16, ip: &str| {
        std::net::TcpStream::connect_timeout(
            &format!("{ip}:{port}").parse().unwrap(),
            Duration::from_secs(2),
        )
        .is_ok()
    };
    let bind = coord::bind_address("127.0.0.1:0", None).unwrap();
    let s = server_at(bind, &token);
    let port = s.local_addr().port();
    assert_eq!(s.local_addr().ip().to_string(), "127.0.0.1");
    assert!(reachable(port, "127.0.0.1"));
    assert!(!reachable(port, "127.0.0.2"));
    drop(s);
    // Asked for every interface, it is reachable there too (so the check above can tell).
    let bind = coord::bind_address("127.0.0.1:0", Some("0.0.0.0:0")).unwrap();
    let s = server_at(bind, &token);
    let port = s.local_addr().port();
    assert!(reachable(port, "127.0.0.1"));
    assert!(reachable(port, "127.0.0.2"));
}

fn server_at(addr: std::net::SocketAddr, token: &Token) -> coord::Server {
    coord::serve(addr, ServerConfig::new(1, token.clone())).unwrap()
}

/// `token` with its last character replaced by another hex digit.
fn with_last_byte_changed(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    let other = if last == "0" { "1" } else { "0" };
    format!("{head}{other}")
}
