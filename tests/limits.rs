//! The HTTP server's limits against slow and greedy clients: a client that
//! dribbles its headers is cut off, one that dribbles its body gets 408
//! JSON, and requests beyond the in-flight cap get 503 with Retry-After.

use crate::util::{Harness, Opts};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads what the server sends until it closes the connection (at most 10 s).
async fn read_to_close(sock: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out))
        .await
        .expect("the server kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_excess_requests_refused() {
    let mut h = Harness::new(Opts {
        api_extra: "header_read_timeout_secs = 1\nrequest_timeout_secs = 2\nmax_concurrent_requests = 1".into(),
        ..Opts::default()
    })
    .await;
    let orch = h.orchestrator().await;
    let addr = orch.api.trim_start_matches("http://").to_string();

    // Headers dribbled one line a second, for ever: closed after ~1 s.
    let mut sock = TcpStream::connect(&addr).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let dribble = async {
        for i in 0.. {
            if sock.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            if started.elapsed() > Duration::from_secs(10) {
                panic!("the server still reads headers after 10 s");
            }
        }
    };
    dribble.await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // A body that never completes: 408 JSON once the request timeout passes,
    // and meanwhile it holds the only slot, so another request gets 503.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, body) = h.get("/v1/jobs", None).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    let started = Instant::now();
    let reply = async {
        let mut buf = vec![0u8; 4096];
        let n = slow.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let reply = tokio::time::timeout(Duration::from_secs(10), reply)
        .await
        .expect("no answer to the slow body");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"request_timeout\""), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(slow);

    // The slot is free again; a plain request is served, and nothing was
    // written by the cut-off submit.
    let (code, body) = h.get("/v1/jobs", None).await;
    assert_eq!(code, 200, "{body}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    let mut sock = TcpStream::connect(&addr).await.unwrap();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_to_close(&mut sock).await.starts_with("HTTP/1.1 200"));
    h.finish().await;
}
