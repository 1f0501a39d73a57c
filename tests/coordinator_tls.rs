//! The coordinator over TLS on loopback, with a CA and a server certificate made at test time
//! (rcgen): clients that trust the CA work as over plain TCP; a plain-TCP client, a client that
//! trusts another CA, and a certificate for another name are refused. The token is still
//! required inside TLS.
use std::time::Duration;
use tpu_run::coord::{self, Client, ClientConfig, CoordError, ServerConfig, ServerTls, Token};

struct Pki {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// A CA, and a server certificate it signs for `names` (IP addresses or DNS names).
fn make_pki(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem().into_bytes(),
        cert_pem: cert.pem().into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
    }
}

fn tls_server(pki: &Pki, token: &Token) -> coord::Server {
    let config = ServerConfig {
        tls: Some(ServerTls {
            cert_pem: pki.cert_pem.clone(),
            key_pem: pki.key_pem.clone(),
        }),
        ..ServerConfig::new(1, token.clone())
    };
    coord::serve("127.0.0.1:0".parse().unwrap(), config).expect("TLS coordinator")
}

fn client_config(token: &Token, ca: Option<&[u8]>) -> ClientConfig {
    ClientConfig {
        tls_ca_pem: ca.map(<[u8]>::to_vec),
        connect_timeout: Duration::from_millis(800),
        call_timeout: Duration::from_secs(5),
        register_timeout: Duration::from_secs(10),
        ..ClientConfig::new(token.clone())
    }
}

#[test]
fn clients_that_trust_the_ca_work_and_others_are_refused() {
    let token = Token::generate().unwrap();
    let pki = make_pki(&["127.0.0.1", "localhost"]);
    let server = tls_server(&pki, &token);
    let addr = server.local_addr().to_string();

    // Plain TCP to a TLS server, and TLS trusting another CA: no connection.
    let e = Client::connect(&addr, 0, 1, client_config(&token, None)).unwrap_err();
    assert!(matches!(e, CoordError::Unreachable { .. }), "{e:?}");
    let other = make_pki(&["127.0.0.1"]);
    let e = Client::connect(&addr, 0, 1, client_config(&token, Some(&other.ca_pem))).unwrap_err();
    assert!(matches!(e, CoordError::Unreachable { .. }), "{e:?}");
    // The right CA but a wrong token: TLS is no substitute for the token.
    let wrong = Token::generate().unwrap();
    let e = Client::connect(&addr, 0, 1, client_config(&wrong, Some(&pki.ca_pem))).unwrap_err();
    assert!(matches!(e, CoordError::Denied { .. }), "{e:?}");
    assert_eq!(server.refusals().unauthenticated, 1);

    let c = Client::connect(&addr, 0, 1, client_config(&token, Some(&pki.ca_pem))).unwrap();
    c.put("k", b"over tls").unwrap();
    assert_eq!(c.get("k", Duration::from_secs(5)).unwrap(), b"over tls");
    c.barrier("b", Duration::from_secs(5)).unwrap();
    c.shutdown().unwrap();
    server.wait_until_all_left(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let token = Token::generate().unwrap();
    let pki = make_pki(&["coordinator.example"]);
    let server = tls_server(&pki, &token);
    let addr = server.local_addr().to_string();
    let e = Client::connect(&addr, 0, 1, client_config(&token, Some(&pki.ca_pem))).unwrap_err();
    assert!(matches!(e, CoordError::Unreachable { .. }), "{e:?}");
}

#[test]
fn a_bad_certificate_is_an_error_at_start() {
    let token = Token::generate().unwrap();
    let config = ServerConfig {
        tls: Some(ServerTls {
            cert_pem: b"not a certificate".to_vec(),
            key_pem: b"not a key".to_vec(),
        }),
        ..ServerConfig::new(1, token)
    };
    let e = coord::serve("127.0.0.1:0".parse().unwrap(), config).unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
}
