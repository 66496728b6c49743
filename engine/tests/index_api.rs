//! An index of N shards: settings, mappings, routing, search across shards, document count,
//! and typed errors for bad input.

use serde_json::json;
use tandem_engine::index::{AliasAction, Index};
use tandem_engine::shard::{DeleteRequest, IndexRequest, WriteRequest};
use tandem_engine::EngineError;

fn metrics_index(dir: &std::path::Path, shards: u32) -> Index {
    Index::create(
        &dir.join("server-metrics"),
        "server-metrics",
        &json!({"number_of_shards": shards, "refresh_interval": "-1"}),
        &json!({"properties": {
            "status": {"type": "keyword"},
            "message": {"type": "text"},
            "cpu": {"properties": {"usage": {"type": "double"}}},
        }}),
    )
    .unwrap()
}

fn metric(n: u64, status: &str) -> Vec<u8> {
    format!(
        r#"{{"status":"{status}","message":"sample {n}","cpu":{{"usage":{}}}}}"#,
        n % 100
    )
    .into_bytes()
}

#[test]
fn documents_route_to_shards_and_search_fans_out() {
    let dir = tempfile::tempdir().unwrap();
    let index = metrics_index(dir.path(), 3);
    let bulk = (0..300)
        .map(|n| WriteRequest::Index(IndexRequest::new(format!("m-{n}"), metric(n, "ok"))))
        .collect();
    assert!(index.bulk(bulk).iter().all(Result::is_ok));
    for n in (0..300).step_by(3) {
        index
            .index(IndexRequest::new(format!("m-{n}"), metric(n, "error")))
            .unwrap();
    }
    index.delete(DeleteRequest::new("m-1")).unwrap();
    index.refresh().unwrap();
    let per_shard: Vec<u64> = index
        .shards()
        .iter()
        .map(|shard| shard.doc_count())
        .collect();
    assert!(per_shard.iter().all(|count| *count > 50), "{per_shard:?}");
    assert_eq!(index.doc_count(), 299);
    assert_eq!(index.search("status:error", 0, 10).unwrap().total_hits, 100);
    assert_eq!(
        index.search("*", 0, 10).unwrap().total_hits,
        299,
        "anchors never match"
    );
    assert_eq!(
        index.search("-status:error", 0, 10).unwrap().total_hits,
        199
    );
    let page = index.search("cpu.usage:[10 TO 19]", 0, 5).unwrap();
    assert_eq!((page.total_hits, page.hits.len()), (30, 5));
    assert!(page.hits.iter().all(|hit| hit.id.starts_with("m-")));
    let hit = &index.search("sample", 0, 1).unwrap().hits[0];
    assert!(String::from_utf8_lossy(&hit.source).contains("sample"));
    // A dynamic field.
    index
        .index(IndexRequest::new("u", br#"{"user":"kimchy"}"#.to_vec()))
        .unwrap();
    index.refresh().unwrap();
    assert_eq!(index.search("user:kimchy", 0, 10).unwrap().total_hits, 1);
    assert_eq!(index.search("kimchy", 0, 10).unwrap().total_hits, 1);
    assert!(
        index.metadata().mapping_version > 1,
        "the dynamic field bumped the mapping version"
    );
    assert_eq!(index.get("u").unwrap().unwrap().version, 1);
}

#[test]
fn bad_input_gets_typed_errors_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let index = metrics_index(dir.path(), 2);
    index
        .index(IndexRequest::new("a", metric(1, "ok")))
        .unwrap();
    let error = index
        .index(IndexRequest::new(
            "b",
            br#"{"cpu":{"usage":"high"}}"#.to_vec(),
        ))
        .unwrap_err();
    assert!(matches!(error, EngineError::Document(_)), "{error}");
    assert!(error.to_string().contains("cpu.usage"), "{error}");
    assert!(matches!(
        index.search("status:(", 0, 10),
        Err(EngineError::Query(_))
    ));
    let bad_mapping = Index::create(
        &dir.path().join("x"),
        "x",
        &json!({}),
        &json!({"properties": {"f": {"type": "geo_shape"}}}),
    );
    assert!(matches!(bad_mapping, Err(EngineError::Mapping(_))));
    assert!(matches!(
        Index::create(&dir.path().join("y"), "Y", &json!({}), &json!({})),
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(index.get("nope").unwrap().is_none());
    assert!(matches!(
        Index::create(
            &dir.path().join("server-metrics"),
            "server-metrics",
            &json!({}),
            &json!({})
        ),
        Err(EngineError::IndexAlreadyExists { .. })
    ));
    let dir_path = index.dir().to_path_buf();
    index.close().unwrap();
    let reopened = Index::open(&dir_path).unwrap();
    assert_eq!(reopened.doc_count(), 1);
    assert!(reopened.get("a").unwrap().is_some());
}

#[test]
fn settings_and_mappings_persist_with_versions() {
    let dir = tempfile::tempdir().unwrap();
    let index = metrics_index(dir.path(), 1);
    let before = index.metadata();
    assert!(index
        .update_settings(&json!({"index": {"number_of_replicas": 0}}))
        .unwrap());
    assert!(
        index
            .update_settings(&json!({"number_of_shards": 4}))
            .is_err(),
        "final setting"
    );
    assert!(index
        .put_mapping(&json!({"properties": {"extra": {"type": "long"}}}))
        .unwrap());
    assert!(index
        .put_mapping(&json!({"properties": {"extra": {"type": "keyword"}}}))
        .is_err());
    let after = index.metadata();
    assert_eq!(after.settings_version, before.settings_version + 1);
    assert_eq!(after.mapping_version, before.mapping_version + 1);
    let path = index.dir().to_path_buf();
    index.close().unwrap();
    let reopened = Index::open(&path).unwrap();
    assert_eq!(reopened.metadata(), after);
}

#[test]
fn dynamic_settings_take_effect_on_open_shards() {
    use std::time::{Duration, Instant};
    use tandem_engine::shard::Durability;

    let dir = tempfile::tempdir().unwrap();
    let index = metrics_index(dir.path(), 2);
    let refreshes =
        |index: &Index| -> u64 { index.shards().iter().map(|s| s.stats().refresh_count).sum() };
    // `-1`: no background refresh at all.
    let created = refreshes(&index);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(refreshes(&index), created);

    assert!(index
        .update_settings(&json!({"index": {
            "refresh_interval": "20ms",
            "translog": {"durability": "async", "sync_interval": "7s"},
            "soft_deletes.retention.operations": 12,
        }}))
        .unwrap());
    for shard in index.shards() {
        let config = shard.dynamic_config();
        assert_eq!(config.refresh_interval, Some(Duration::from_millis(20)));
        assert_eq!(
            config.durability,
            Durability::Async {
                interval: Duration::from_secs(7)
            }
        );
        assert_eq!(config.retention_operations, 12);
    }
    // The background threads refresh without a reopen: a write becomes searchable by itself.
    index
        .bulk(vec![WriteRequest::Index(IndexRequest::new(
            "m-1",
            metric(1, "ok"),
        ))])
        .into_iter()
        .for_each(|result| {
            result.unwrap();
        });
    let started = Instant::now();
    while index.shards().iter().map(|s| s.doc_count()).sum::<u64>() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never refreshed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // Back to `-1` and `request`: background refreshes stop, the translog is synced.
    assert!(index
        .update_settings(&json!({"refresh_interval": "-1", "translog.durability": "request"}))
        .unwrap());
    for shard in index.shards() {
        assert_eq!(shard.dynamic_config().durability, Durability::Request);
        assert_eq!(shard.dynamic_config().refresh_interval, None);
    }
    // A refresh already under way when the setting changed may still finish.
    std::thread::sleep(Duration::from_millis(100));
    let settled = refreshes(&index);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(refreshes(&index), settled);

    // Reopened shards start with what was persisted.
    let path = index.dir().to_path_buf();
    index.close().unwrap();
    let reopened = Index::open(&path).unwrap();
    for shard in reopened.shards() {
        assert_eq!(shard.dynamic_config().refresh_interval, None);
        assert_eq!(shard.dynamic_config().retention_operations, 12);
    }
}

#[test]
fn a_follower_index_takes_mappings_only_from_its_leader() {
    let dir = tempfile::tempdir().unwrap();
    let leader = metrics_index(&dir.path().join("leader"), 1);
    let follower = metrics_index(&dir.path().join("follower"), 1);
    follower.set_follower(true).unwrap();
    assert!(follower.is_follower());
    let error = follower
        .put_mapping(&json!({"properties": {"extra": {"type": "long"}}}))
        .unwrap_err();
    assert_eq!(error.status(), 403);
    assert!(error.to_string().contains("follower index"), "{error}");
    assert!(leader
        .put_mapping(&json!({"properties": {"extra": {"type": "long"}}}))
        .unwrap());
    let leader_metadata = leader.metadata();
    follower
        .apply_leader_mappings(
            leader_metadata.mappings.clone(),
            leader_metadata.mapping_version,
        )
        .unwrap();
    assert_eq!(
        follower.mapper().mappings().field_type("extra"),
        Some(tandem_engine::mapping::FieldType::Long)
    );
    follower.set_follower(false).unwrap();
    assert!(!follower.is_follower());
    assert!(follower
        .put_mapping(&json!({"properties": {"other": {"type": "keyword"}}}))
        .unwrap());
}

#[test]
fn aliases_are_versioned_persisted_and_validated() {
    let dir = tempfile::tempdir().unwrap();
    let index = metrics_index(dir.path(), 1);
    assert_eq!(index.metadata().aliases_version, 1);
    let add = |alias: &str| AliasAction::Add {
        alias: alias.to_string(),
        body: json!({}),
    };
    assert!(index.update_aliases(&[add("metrics"), add("all")]).unwrap());
    assert!(
        !index.update_aliases(&[add("metrics")]).unwrap(),
        "no change"
    );
    assert_eq!(index.metadata().aliases_version, 2);
    let missing = index
        .update_aliases(&[AliasAction::Remove {
            alias: "nope".to_string(),
        }])
        .unwrap_err();
    assert_eq!(missing.status(), 400);
    assert!(index.update_aliases(&[add("Bad")]).is_err());
    // A failed update changes nothing, even when an earlier action of it was valid.
    assert!(index
        .update_aliases(&[
            AliasAction::Remove {
                alias: "all".to_string()
            },
            add("Bad")
        ])
        .is_err());
    assert!(index.metadata().aliases.contains_key("all"));
    index.close().unwrap();
    let reopened = Index::open(&dir.path().join("server-metrics")).unwrap();
    let metadata = reopened.metadata();
    assert_eq!(metadata.aliases_version, 2);
    assert_eq!(
        metadata.aliases.keys().collect::<Vec<_>>(),
        vec!["all", "metrics"]
    );
}

#[test]
fn a_keyword_value_over_the_term_limit_is_refused_before_it_gets_a_seq_no() {
    use tandem_engine::mapping::{DocumentError, MAX_TERM_BYTES};
    let dir = tempfile::tempdir().unwrap();
    let index = metrics_index(dir.path(), 1);
    let immense = "x".repeat(MAX_TERM_BYTES + 1);
    let refused = index
        .index(IndexRequest::new(
            "big",
            format!(r#"{{"status":"{immense}"}}"#).into_bytes(),
        ))
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            EngineError::Document(DocumentError::ImmenseTerm { field, max, .. })
                if field == "status" && *max == MAX_TERM_BYTES
        ),
        "{refused:?}"
    );
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.type_name(), "illegal_argument_exception");
    // At the limit it is one searchable term, and it takes the first seq_no.
    let largest = "y".repeat(MAX_TERM_BYTES);
    let written = index
        .index(IndexRequest::new(
            "largest",
            format!(r#"{{"status":"{largest}"}}"#).into_bytes(),
        ))
        .unwrap();
    assert_eq!(written.seq_no.0, 0);
    index.refresh().unwrap();
    let found = index
        .search_dsl(&json!({"term": {"status": largest}}), 0, 10)
        .unwrap();
    assert_eq!(found.total_hits, 1);
}

/// Dynamic mapping updates, settings updates and alias updates race on one index; each is a
/// read-modify-persist of the same metadata file, so a writer that persisted a stale copy
/// would revert the others. Every change must be in memory and survive a reopen.
#[test]
fn racing_metadata_writers_lose_no_change_across_a_restart() {
    const ROUNDS: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server-metrics");
    let index = std::sync::Arc::new(metrics_index(dir.path(), 2));
    let start = std::sync::Arc::new(std::sync::Barrier::new(3));
    let mappings = {
        let (index, start) = (index.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            for n in 0..ROUNDS {
                let source = format!(r#"{{"dynamic_field_{n}": {n}}}"#);
                index
                    .index(IndexRequest::new(format!("d-{n}"), source.into_bytes()))
                    .unwrap();
            }
        })
    };
    let settings = {
        let (index, start) = (index.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            for n in 1..=ROUNDS {
                let changed = index
                    .update_settings(&json!({"soft_deletes.retention.operations": n}))
                    .unwrap();
                assert!(changed);
            }
        })
    };
    start.wait();
    for n in 0..ROUNDS {
        let changed = index
            .update_aliases(&[AliasAction::Add {
                alias: format!("alias-{n}"),
                body: json!({}),
            }])
            .unwrap();
        assert!(changed);
    }
    mappings.join().unwrap();
    settings.join().unwrap();

    let check = |metadata: &tandem_engine::index::IndexMetadata| {
        for n in 0..ROUNDS {
            let field = format!("dynamic_field_{n}");
            assert!(
                metadata.mappings.to_es_json()["properties"][&field].is_object(),
                "{field} lost"
            );
            assert!(
                metadata.aliases.contains_key(&format!("alias-{n}")),
                "alias-{n} lost"
            );
        }
        assert_eq!(metadata.settings.retention_operations, ROUNDS);
        assert_eq!(metadata.settings_version, 1 + ROUNDS);
        assert_eq!(metadata.aliases_version, 1 + ROUNDS);
        assert_eq!(metadata.mapping_version, 1 + ROUNDS);
    };
    check(&index.metadata());
    let index = std::sync::Arc::into_inner(index).expect("every writer has finished");
    index.close().unwrap();
    let reopened = Index::open(&path).unwrap();
    check(&reopened.metadata());
    assert_eq!(reopened.mapper().version(), 1 + ROUNDS);
}

#[test]
fn read_only_allow_delete_refuses_writes_and_setting_changes_keeps_reads_and_survives_a_reopen() {
    use tandem_engine::{Operation, OperationKind, PrimaryTerm, SeqNo, SharedOperation};

    let dir = tempfile::tempdir().unwrap();
    let index = metrics_index(dir.path(), 2);
    index
        .index(IndexRequest::new("kept", metric(1, "ok")))
        .unwrap();
    index.refresh().unwrap();
    let before = index.metadata();
    assert!(index.set_read_only_allow_delete(true).unwrap());
    assert!(
        !index.set_read_only_allow_delete(true).unwrap(),
        "no change"
    );
    assert!(index.read_only_allow_delete());
    assert_eq!(
        index.metadata().settings.to_es_json()["index"]["blocks"],
        json!({"read_only_allow_delete": "true"})
    );
    let checkpoints: Vec<_> = index.shards().iter().map(|s| s.max_seq_no()).collect();

    // Every kind of write is refused with Elasticsearch's 429 block, before a seq_no is taken.
    let refused = |error: EngineError| {
        assert_eq!(error.status(), 429, "{error}");
        assert_eq!(error.type_name(), "cluster_block_exception");
        assert_eq!(
            error.to_string(),
            "index [server-metrics] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded \
             flood-stage watermark, index has read-only-allow-delete block];"
        );
    };
    refused(
        index
            .index(IndexRequest::new("new", metric(2, "ok")))
            .unwrap_err(),
    );
    refused(index.delete(DeleteRequest::new("kept")).unwrap_err());
    for result in index.bulk(vec![
        WriteRequest::Index(IndexRequest::new("a", metric(3, "ok"))),
        WriteRequest::Delete(DeleteRequest::new("kept")),
    ]) {
        refused(result.unwrap_err());
    }
    refused(index.shards()[0].no_op("gap").unwrap_err());
    refused(
        index
            .put_mapping(&json!({"properties": {"extra": {"type": "long"}}}))
            .unwrap_err(),
    );
    refused(
        index
            .update_settings(&json!({"index": {"number_of_replicas": 0}}))
            .unwrap_err(),
    );
    // A follower's operations are refused alike (the follow task retries them).
    let follower_dir = dir.path().join("follower");
    let follower = Index::create(
        &follower_dir,
        "follower",
        &json!({"number_of_shards": 1, "index.blocks.read_only_allow_delete": true}),
        &json!({}),
    )
    .unwrap();
    follower.shards()[0].set_follower(true);
    let operation: SharedOperation = std::sync::Arc::new(Operation {
        seq_no: SeqNo(0),
        primary_term: PrimaryTerm(1),
        version: 1,
        kind: OperationKind::Index {
            id: "f".to_string(),
            source: br#"{"x":1}"#.to_vec(),
        },
    });
    let error = follower.shards()[0]
        .apply_shared_operations(vec![operation], SeqNo(-1))
        .unwrap_err();
    assert_eq!(error.status(), 429, "{error}");
    assert!(
        error.to_string().contains("index [follower] blocked by"),
        "{error}"
    );

    // Reads go on; nothing was written.
    assert_eq!(
        index
            .shards()
            .iter()
            .map(|s| s.max_seq_no())
            .collect::<Vec<_>>(),
        checkpoints
    );
    assert!(index.get("kept").unwrap().is_some());
    assert_eq!(index.search("*", 0, 10).unwrap().total_hits, 1);
    index.refresh().unwrap();

    // The block is a setting: persisted, it survives a reopen.
    let path = index.dir().to_path_buf();
    index.close().unwrap();
    let reopened = Index::open(&path).unwrap();
    assert!(reopened.read_only_allow_delete());
    refused(
        reopened
            .index(IndexRequest::new("new", metric(2, "ok")))
            .unwrap_err(),
    );
    // Clearing it (Elasticsearch's `null`) lets writes and other changes through again, in
    // the same request.
    assert!(reopened
        .update_settings(
            &json!({"index.blocks.read_only_allow_delete": null, "number_of_replicas": 0})
        )
        .unwrap());
    assert!(!reopened.read_only_allow_delete());
    assert!(reopened.metadata().settings.to_es_json()["index"]
        .get("blocks")
        .is_none());
    reopened
        .index(IndexRequest::new("new", metric(2, "ok")))
        .unwrap();
    assert_eq!(
        reopened.metadata().settings_version,
        before.settings_version + 2
    );
    assert!(reopened
        .update_settings(&json!({"index.blocks.read_only_allow_delete": "maybe"}))
        .is_err());
}
