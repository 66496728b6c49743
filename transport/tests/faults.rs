//! The HTTP leader client facing a network that fails: refused connections (fail over to the
//! next address, or `Unavailable`), a leader that never answers (`Timeout`), answers cut
//! short (`Unavailable`), and damaged or lying answers (`CorruptedResponse`). All of them are
//! retryable; none panics.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::LeaderServer;
use tandem_engine::shard::ChangesResponse;
use tandem_engine::{Operation, OperationKind, PrimaryTerm, SeqNo};
use tandem_recovery::conformance::immediate_changes_request;
use tandem_recovery::leader_api::{
    CheckedLeaderClient, FileChunk, IndexMetadataRequest, LeaderClient, ReadFileChunkRequest,
    SessionId, ShardChangesRequest, ShardChangesResponse, ShardId,
};
use tandem_recovery::LeaderError;
use tandem_transport::server::{
    INDEX_METADATA_PATH, LIST_INDICES_PATH, READ_CHUNK_PATH, SHARD_CHANGES_PATH,
};
use tandem_transport::wire::{encode_chunk, encode_shard_changes};
use tandem_transport::{HttpLeaderClient, HttpTransportSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An address nothing listens on (bound, then released).
async fn refused_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    address
}

async fn running_leader(dir: &std::path::Path) -> LeaderServer {
    LeaderServer::start(&dir.join("data")).await
}

fn short_timeouts() -> HttpTransportSettings {
    HttpTransportSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(400),
        long_poll_margin: Duration::from_millis(300),
        ..HttpTransportSettings::default()
    }
}

fn changes_request(from: i64) -> ShardChangesRequest {
    immediate_changes_request(ShardId::new("leader", 0), SeqNo(from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_address_fails_over_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let leader = running_leader(dir.path()).await;
    let live = leader.address.to_string();
    let client = HttpLeaderClient::new(vec![refused_address().await, live.clone()]);
    for _ in 0..3 {
        assert_eq!(client.list_indices().await, Ok(Vec::new()));
    }
    let error = client
        .index_metadata(IndexMetadataRequest::new("absent"))
        .await
        .unwrap_err();
    assert_eq!(error, LeaderError::IndexNotFound("absent".to_string()));
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_address_is_skipped_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let leader = running_leader(dir.path()).await;
    let malformed = "leader host:9300".to_string();
    let client = HttpLeaderClient::new(vec![malformed.clone(), leader.address.to_string()]);
    assert_eq!(client.list_indices().await, Ok(Vec::new()));
    let alone = HttpLeaderClient::new(vec![malformed]);
    let error = alone.list_indices().await.unwrap_err();
    assert!(
        matches!(&error, LeaderError::Unavailable(message) if message.contains("[leader host:9300] is not a valid address")),
        "{error}"
    );
    leader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reachable_address_is_unavailable() {
    let client = HttpLeaderClient::new(vec![refused_address().await, refused_address().await]);
    let error = client.list_indices().await.unwrap_err();
    assert!(matches!(error, LeaderError::Unavailable(_)), "{error}");
    assert!(error.is_retryable());
    let nobody = HttpLeaderClient::new(Vec::new());
    assert!(matches!(
        nobody.list_indices().await,
        Err(LeaderError::Unavailable(_))
    ));
}

/// Accepts connections and reads requests, but never answers.
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            held.push(socket);
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_never_answers_times_out() {
    let address = silent_server().await;
    let client = HttpLeaderClient::with_settings(vec![address], short_timeouts());
    let started = Instant::now();
    let error = client.list_indices().await.unwrap_err();
    assert_eq!(error, LeaderError::Timeout(Duration::from_millis(400)));
    assert!(error.is_retryable());
    let mut long_poll = changes_request(0);
    long_poll.changes.poll_timeout = Duration::from_millis(200);
    let error = client.shard_changes(long_poll).await.unwrap_err();
    assert_eq!(error, LeaderError::Timeout(Duration::from_millis(500)));
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Answers every request with headers announcing 1000 bytes, sends 10, and hangs up.
async fn cutting_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                .await;
            drop(socket);
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_short_is_unavailable() {
    let client = HttpLeaderClient::with_settings(vec![cutting_server().await], short_timeouts());
    let error = client.shard_changes(changes_request(0)).await.unwrap_err();
    assert!(matches!(error, LeaderError::Unavailable(_)), "{error}");
    assert!(error.is_retryable());
}

fn operation(seq_no: i64) -> Arc<Operation> {
    Arc::new(Operation {
        seq_no: SeqNo(seq_no),
        primary_term: PrimaryTerm(1),
        version: 1,
        kind: OperationKind::Index {
            id: format!("doc-{seq_no}"),
            source: br#"{"body":"x"}"#.to_vec(),
        },
    })
}

fn changes(seq_nos: &[i64]) -> ShardChangesResponse {
    ShardChangesResponse {
        changes: ChangesResponse {
            operations: seq_nos.iter().map(|&n| operation(n)).collect(),
            global_checkpoint: SeqNo(9),
            max_seq_no: SeqNo(9),
            max_seq_no_of_updates: SeqNo(9),
            took: Duration::ZERO,
        },
        mapping_version: 1,
        settings_version: 1,
        aliases_version: 1,
    }
}

fn chunk_answer(
    data: &[u8],
    tamper: impl Fn(&mut HeaderMap, &mut Vec<u8>),
) -> (HeaderMap, Vec<u8>) {
    let (header, body) = encode_chunk(
        FileChunk {
            data: data.to_vec().into(),
            source_throttle: Duration::ZERO,
        },
        true,
    );
    let mut body = body.to_vec();
    let mut headers = HeaderMap::new();
    for (name, value) in header.to_pairs() {
        headers.insert(name, value.parse().unwrap());
    }
    tamper(&mut headers, &mut body);
    (headers, body)
}

/// A "leader" whose answers are damaged or lie, chosen by the request's `from_seq_no` /
/// `offset`.
async fn lying_server() -> String {
    async fn changes_answer(body: axum::body::Bytes) -> Vec<u8> {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
        match request["changes"]["from_seq_no"].as_i64().unwrap() {
            // A bit flipped in transit.
            0 => {
                let mut frame = encode_shard_changes(&changes(&[0, 1, 2]));
                let middle = frame.len() / 2;
                frame[middle] ^= 0x10;
                frame
            }
            // A well-formed frame with a hole in the operations.
            1 => encode_shard_changes(&changes(&[1, 3])),
            // Operations from elsewhere than asked.
            2 => encode_shard_changes(&changes(&[5, 6])),
            // Not a frame at all.
            _ => b"<html>hello</html>".to_vec(),
        }
    }
    async fn chunk(body: axum::body::Bytes) -> (HeaderMap, Vec<u8>) {
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let data = vec![42u8; 1000];
        match request["offset"].as_u64().unwrap() {
            // More bytes than were asked for.
            0 => chunk_answer(&[1u8; 2000], |_, _| {}),
            // A damaged body.
            1 => chunk_answer(&data, |_, body| body[0] ^= 1),
            // A body shorter than announced.
            2 => chunk_answer(&data, |_, body| {
                body.truncate(body.len() - 1);
            }),
            // No checksum header.
            _ => chunk_answer(&data, |headers, _| {
                headers.remove("x-tandem-chunk-crc32");
            }),
        }
    }
    async fn bad_json() -> &'static str {
        "{not json"
    }
    async fn bad_error() -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
        (
            StatusCode::NOT_FOUND,
            [("x-tandem-error", "leader")],
            "{\"Nope\":1}",
        )
    }
    let app = Router::new()
        .route(SHARD_CHANGES_PATH, post(changes_answer))
        .route(READ_CHUNK_PATH, post(chunk))
        .route(LIST_INDICES_PATH, post(bad_json))
        .route(INDEX_METADATA_PATH, post(bad_error));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    address
}

fn assert_corrupted<T: std::fmt::Debug>(what: &str, answer: Result<T, LeaderError>) {
    match answer {
        Err(error @ LeaderError::CorruptedResponse(_)) => assert!(error.is_retryable()),
        other => panic!("{what}: expected a corrupted response, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_lying_answers_are_corrupted_responses() {
    // Wrapped as every remote cluster's client is: the wrapper checks a batch's shape, the
    // transport its frames, chunks and JSON.
    let client =
        CheckedLeaderClient::new(Arc::new(HttpLeaderClient::new(vec![lying_server().await])));
    for (from, what) in [
        (0, "a flipped bit"),
        (1, "a hole in the operations"),
        (2, "operations from elsewhere"),
        (3, "not a frame"),
    ] {
        assert_corrupted(what, client.shard_changes(changes_request(from)).await);
    }
    let shard = ShardId::new("leader", 0);
    let session = SessionId("s".to_string());
    for (offset, what) in [
        (0, "a chunk longer than asked"),
        (1, "a damaged chunk"),
        (2, "a chunk shorter than announced"),
        (3, "a chunk without checksum"),
    ] {
        let answer = client
            .read_file_chunk(ReadFileChunkRequest::new(
                shard.clone(),
                session.clone(),
                "f",
                offset,
                1000,
            ))
            .await;
        assert_corrupted(what, answer);
    }
    assert_corrupted("malformed JSON", client.list_indices().await);
    assert_corrupted(
        "a malformed error",
        client.index_metadata(IndexMetadataRequest::new("x")).await,
    );
}
