//! HTTP/2 (what gRPC runs on) over the mesh acceptor and connector: ALPN
//! negotiates `h2` and a request/response round trip works end to end.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use super::{Ca, DEADLINE, init};
use crate::tls::{ALPN_H2, DEFAULT_RELOAD_INTERVAL, MeshTlsConfig, ReloadingMeshConfig};

fn node(dir: &std::path::Path, name: &str, ca: &Ca, serial: u64) -> ReloadingMeshConfig {
    let node_dir = dir.join(name);
    std::fs::create_dir_all(&node_dir).unwrap();
    let (cert_file, key_file) = ca.leaf(&[name], serial).write_to(&node_dir);
    let ca_file = node_dir.join("ca.crt");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    ReloadingMeshConfig::new(MeshTlsConfig {
        ca_file,
        cert_file,
        key_file,
        reload_interval: DEFAULT_RELOAD_INTERVAL,
    })
    .unwrap()
}

#[tokio::test]
async fn http2_request_round_trips_over_mesh_tls() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mesh");
    let (a, b) = (node(dir.path(), "a", &ca, 1), node(dir.path(), "b", &ca, 2));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = a.acceptor();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_H2));
        let echo_path = service_fn(|req: Request<hyper::body::Incoming>| async move {
            let body = Bytes::from(req.uri().path().to_owned());
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        });
        // Errors here surface to the client as a failed request.
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tls), echo_path)
            .await;
    });

    let round_trip = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = b.connector().connect("127.0.0.1", tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_H2));
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = Request::post("/build.bazel.remote.execution.v2.Execution/Execute")
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), Version::HTTP_2);
        response.into_body().collect().await.unwrap().to_bytes()
    };
    let body = tokio::time::timeout(DEADLINE, round_trip).await.unwrap();
    assert_eq!(
        &body[..],
        b"/build.bazel.remote.execution.v2.Execution/Execute"
    );
}
