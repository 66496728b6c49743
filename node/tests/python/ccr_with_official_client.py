"""Cross-cluster replication between two tandem nodes, driven by the official Python client.

Usage: python ccr_with_official_client.py LEADER_URL FOLLOWER_URL

The client (`elasticsearch` 8.19 from PyPI) is used as shipped, exactly as a user would: no
monkeypatching, no custom headers, no per-request `meta` options. The script exits 0 only if
every step answers as Elasticsearch would; any failure raises, which exits non-zero with a
traceback naming the step.
"""

import sys
import time
import warnings

import elasticsearch
from elasticsearch import helpers
from elasticsearch import ConflictError, Elasticsearch, ElasticsearchWarning, NotFoundError

# A `Warning` header from the node is a difference from Elasticsearch worth failing on.
warnings.simplefilter("error", ElasticsearchWarning)

# How long replication may take to show a result.
CONVERGE_WITHIN_SECONDS = 90
POLL_INTERVAL_SECONDS = 0.2

LEADER_INDEX = "server-metrics"
FOLLOWER_INDEX = "server-metrics-follower"


def step(name):
    print(f"--- {name}", flush=True)


def wait_until(description, probe):
    """Calls `probe` until it returns a truthy value, bounded by CONVERGE_WITHIN_SECONDS."""
    deadline = time.monotonic() + CONVERGE_WITHIN_SECONDS
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"timed out waiting for {description}; last probe: {last!r}")


def metric(n):
    return {
        "@timestamp": f"2026-11-30T04:{n // 60 % 60:02}:{n % 60:02}Z",
        "accept": n * 3,
        "deny": n % 7,
        "host": f"host-{n % 5}",
        "response": (n % 100) / 10.0,
        "service": "web" if n % 2 == 0 else "api",
        "total": n * 3 + n % 7,
    }


def bulk_metrics(es, index, numbers):
    operations = []
    for n in numbers:
        operations.append({"index": {"_index": index, "_id": str(n)}})
        operations.append(metric(n))
    answer = es.bulk(operations=operations)
    assert answer["errors"] is False, answer
    assert len(answer["items"]) == len(numbers), answer
    for item in answer["items"]:
        assert item["index"]["status"] in (200, 201), item
    return answer


def count(es, index, **query):
    es.indices.refresh(index=index)
    return es.count(index=index, **query)["count"]


def main(leader_url, follower_url):
    leader = Elasticsearch(leader_url)
    follower = Elasticsearch(follower_url)
    leader_address = leader_url.removeprefix("http://").rstrip("/")

    step("info and ping")
    info = leader.info()
    assert info["version"]["number"].startswith("8."), info
    assert info["tagline"] == "You Know, for Search", info
    assert leader.ping() is True
    assert follower.ping() is True
    health = follower.cluster.health()
    assert health["status"] in ("green", "yellow"), health

    step("create the leader index")
    created = leader.indices.create(
        index=LEADER_INDEX,
        settings={"index": {"number_of_shards": 1, "number_of_replicas": 0}},
        mappings={
            "properties": {
                "@timestamp": {"type": "date"},
                "accept": {"type": "long"},
                "deny": {"type": "long"},
                "host": {"type": "keyword"},
                "response": {"type": "float"},
                "service": {"type": "keyword"},
                "total": {"type": "long"},
            }
        },
    )
    assert created["acknowledged"] is True, created
    assert created["index"] == LEADER_INDEX, created
    assert leader.indices.exists(index=LEADER_INDEX)
    assert not leader.indices.exists(index="missing")

    step("index documents on the leader")
    indexed = leader.index(index=LEADER_INDEX, id="first", document=metric(1000), refresh=True)
    assert indexed["result"] == "created", indexed
    assert indexed["_id"] == "first", indexed
    assert indexed["_version"] == 1, indexed
    bulk_metrics(leader, LEADER_INDEX, range(0, 200))
    leader.indices.refresh(index=LEADER_INDEX)
    assert count(leader, LEADER_INDEX) == 201

    step("version conflict")
    try:
        leader.create(index=LEADER_INDEX, id="first", document=metric(1))
        raise AssertionError("creating an existing document must conflict")
    except ConflictError as error:
        assert error.meta.status == 409, error
        assert error.body["error"]["type"] == "version_conflict_engine_exception", error.body
    try:
        leader.index(
            index=LEADER_INDEX, id="first", document=metric(2), if_seq_no=10_000, if_primary_term=1
        )
        raise AssertionError("a stale if_seq_no must conflict")
    except ConflictError as error:
        assert error.meta.status == 409, error

    step("missing index")
    try:
        leader.indices.get(index="missing")
        raise AssertionError("getting a missing index must fail")
    except NotFoundError as error:
        assert error.meta.status == 404, error
        assert error.body["error"]["type"] == "index_not_found_exception", error.body
    try:
        leader.get(index=LEADER_INDEX, id="nope")
        raise AssertionError("getting a missing document must fail")
    except NotFoundError as error:
        assert error.body["found"] is False, error.body

    step("connect the follower to the leader")
    settings = follower.cluster.put_settings(
        persistent={"cluster.remote.leader.seeds": [leader_address]}
    )
    assert settings["acknowledged"] is True, settings
    remote = follower.cluster.remote_info()
    assert remote["leader"]["connected"] is True, remote
    assert remote["leader"]["seeds"] == [leader_address], remote
    got = follower.cluster.get_settings()
    assert got["persistent"]["cluster"]["remote"]["leader"]["seeds"] == [leader_address], got

    step("follow")
    followed = follower.ccr.follow(
        index=FOLLOWER_INDEX,
        remote_cluster="leader",
        leader_index=LEADER_INDEX,
        wait_for_active_shards="1",
    )
    assert followed["follow_index_created"] is True, followed
    assert followed["follow_index_shards_acked"] is True, followed
    assert followed["index_following_started"] is True, followed
    health = follower.cluster.health(index=FOLLOWER_INDEX, wait_for_status="green", timeout="30s")
    assert health["status"] == "green" and health["timed_out"] is False, health
    wait_until("the follower to hold 201 documents", lambda: count(follower, FOLLOWER_INDEX) == 201)

    step("documents written on the leader replicate")
    succeeded, failed = helpers.bulk(
        leader,
        ({"_index": LEADER_INDEX, "_id": str(n), "_source": metric(n)} for n in range(200, 300)),
        chunk_size=40,
    )
    assert (succeeded, failed) == (100, []), (succeeded, failed)
    leader.delete(index=LEADER_INDEX, id="0")
    updated = leader.update(index=LEADER_INDEX, id="1", doc={"service": "changed"})
    assert updated["result"] == "updated", updated
    wait_until(
        "the follower to see the leader's later writes",
        lambda: count(follower, FOLLOWER_INDEX) == 300
        and not follower.exists(index=FOLLOWER_INDEX, id="0")
        and follower.get(index=FOLLOWER_INDEX, id="1")["_source"]["service"] == "changed",
    )
    replicated = follower.get(index=FOLLOWER_INDEX, id="first")
    assert replicated["found"] is True, replicated
    assert replicated["_source"] == metric(1000), replicated
    assert follower.exists(index=FOLLOWER_INDEX, id="250")

    step("search the follower")
    follower.indices.refresh(index=FOLLOWER_INDEX)
    by_q = follower.search(index=FOLLOWER_INDEX, q="host:host-3", size=1000)
    assert by_q["hits"]["total"]["value"] == 60, by_q["hits"]["total"]
    assert all(hit["_source"]["host"] == "host-3" for hit in by_q["hits"]["hits"]), by_q
    by_query = follower.search(
        index=FOLLOWER_INDEX,
        query={"bool": {"filter": [{"term": {"service": "api"}}, {"range": {"accept": {"gte": 600}}}]}},
        size=1000,
    )
    hits = by_query["hits"]["hits"]
    assert by_query["hits"]["total"]["value"] == len(hits), by_query["hits"]["total"]
    # Only the odd numbers from 200 on are "api" with accept >= 600 ("first" is number 1000,
    # even, so "web").
    expected = [str(n) for n in range(201, 300, 2)]
    assert sorted(hit["_id"] for hit in hits) == sorted(expected), hits
    assert count(follower, FOLLOWER_INDEX, query={"term": {"host": "host-3"}}) == 60

    step("follow stats")

    def caught_up():
        stats = follower.ccr.follow_stats(index=FOLLOWER_INDEX)
        shards = stats["indices"][0]["shards"]
        return all(
            shard["follower_global_checkpoint"] == shard["leader_global_checkpoint"]
            and shard["operations_written"] > 0
            for shard in shards
        ) and stats

    stats = wait_until("the follow stats to show the follower caught up", caught_up)
    index_stats = stats["indices"][0]
    assert index_stats["index"] == FOLLOWER_INDEX, stats
    assert index_stats["total_global_checkpoint_lag"] == 0, stats
    shard = index_stats["shards"][0]
    assert shard["remote_cluster"] == "leader", shard
    assert shard["leader_index"] == LEADER_INDEX, shard
    assert shard["follower_index"] == FOLLOWER_INDEX, shard
    assert shard["shard_id"] == 0, shard
    assert shard["leader_max_seq_no"] >= 302, shard
    # The first 201 operations came with the recovery from the leader's files; the 102 after
    # it (100 indexed, 1 deleted, 1 updated) through the shard follow task.
    assert shard["operations_written"] >= 102, shard
    assert shard["follower_max_seq_no"] == shard["leader_max_seq_no"], shard
    assert shard["successful_read_requests"] > 0, shard
    assert shard["read_exceptions"] == [], shard
    assert "fatal_exception" not in shard, shard

    all_stats = follower.ccr.stats()
    assert "auto_follow_stats" in all_stats, all_stats
    assert all_stats["auto_follow_stats"]["number_of_failed_follow_indices"] == 0, all_stats
    followed_names = [entry["index"] for entry in all_stats["follow_stats"]["indices"]]
    assert followed_names == [FOLLOWER_INDEX], all_stats

    info = follower.ccr.follow_info(index=FOLLOWER_INDEX)
    assert len(info["follower_indices"]) == 1, info
    entry = info["follower_indices"][0]
    assert entry["follower_index"] == FOLLOWER_INDEX, entry
    assert entry["remote_cluster"] == "leader", entry
    assert entry["leader_index"] == LEADER_INDEX, entry
    assert entry["status"] == "active", entry
    assert entry["parameters"]["max_read_request_operation_count"] > 0, entry

    step("monitoring endpoints")
    leader.indices.refresh(index=LEADER_INDEX)
    follower.indices.refresh(index=FOLLOWER_INDEX)
    leader_stats = leader.indices.stats(index=LEADER_INDEX, level="shards")
    assert leader_stats["_shards"]["failed"] == 0, leader_stats
    primaries = leader_stats["indices"][LEADER_INDEX]["primaries"]
    assert primaries["docs"]["count"] == 300, primaries["docs"]
    assert primaries["indexing"]["index_total"] >= 302, primaries["indexing"]
    assert primaries["indexing"]["delete_total"] == 1, primaries["indexing"]
    assert primaries["store"]["size_in_bytes"] > 0, primaries["store"]
    for section in ("search", "refresh", "flush", "merges", "translog", "segments"):
        assert section in primaries, (section, primaries)
    leader_shard = leader_stats["indices"][LEADER_INDEX]["shards"]["0"][0]
    assert leader_shard["seq_no"]["max_seq_no"] >= 302, leader_shard["seq_no"]
    assert leader_shard["seq_no"]["global_checkpoint"] == leader_shard["seq_no"]["max_seq_no"]
    lease_sources = [lease["source"] for lease in leader_shard["retention_leases"]["leases"]]
    assert "ccr" in lease_sources, leader_shard["retention_leases"]
    follower_docs = follower.indices.stats(index=FOLLOWER_INDEX, metric="docs")
    assert follower_docs["_all"]["primaries"]["docs"]["count"] == 300, follower_docs
    assert "indexing" not in follower_docs["_all"]["primaries"], follower_docs

    nodes = follower.nodes.stats()
    assert nodes["_nodes"]["total"] == 1, nodes
    (node_stats,) = nodes["nodes"].values()
    for section in ("indices", "os", "process", "fs", "http", "transport"):
        assert section in node_stats, (section, node_stats.keys())
    assert node_stats["process"]["mem"]["resident_in_bytes"] > 0, node_stats["process"]
    assert node_stats["fs"]["total"]["total_in_bytes"] > 0, node_stats["fs"]
    assert node_stats["http"]["current_open"] >= 1, node_stats["http"]
    assert node_stats["indices"]["docs"]["count"] >= 300, node_stats["indices"]["docs"]
    leader_transport = next(iter(leader.nodes.stats(metric="transport")["nodes"].values()))
    assert leader_transport["transport"]["rx_count"] > 0, leader_transport

    cluster = follower.cluster.stats()
    assert cluster["status"] == "green", cluster
    assert cluster["indices"]["count"] >= 1, cluster["indices"]
    assert cluster["indices"]["docs"]["count"] >= 300, cluster["indices"]
    assert cluster["nodes"]["count"]["total"] == 1, cluster["nodes"]

    shards = follower.cat.shards(index=FOLLOWER_INDEX, format="json")
    assert [(row["index"], row["shard"], row["prirep"], row["state"]) for row in shards] == [
        (FOLLOWER_INDEX, "0", "p", "STARTED")
    ], shards
    assert shards[0]["docs"] == "300", shards
    segments = follower.cat.segments(index=FOLLOWER_INDEX, format="json")
    assert sum(int(row["docs.count"]) for row in segments) == 300, segments
    cat_nodes = follower.cat.nodes(format="json")
    assert len(cat_nodes) == 1 and cat_nodes[0]["master"] == "*", cat_nodes
    assert follower.cat.health(format="json")[0]["status"] == "green"
    assert follower.cat.count(index=FOLLOWER_INDEX, format="json")[0]["count"] == "300"

    step("pause and resume")
    paused = follower.ccr.pause_follow(index=FOLLOWER_INDEX)
    assert paused["acknowledged"] is True, paused
    try:
        follower.ccr.follow_stats(index=FOLLOWER_INDEX)
        raise AssertionError("a paused follower index has no shard follow tasks")
    except NotFoundError as error:
        assert error.body["error"]["type"] == "resource_not_found_exception", error.body
    leader.index(index=LEADER_INDEX, id="while-paused", document=metric(3000), refresh=True)
    time.sleep(1)
    assert not follower.exists(index=FOLLOWER_INDEX, id="while-paused")
    resumed = follower.ccr.resume_follow(index=FOLLOWER_INDEX, max_read_request_operation_count=64)
    assert resumed["acknowledged"] is True, resumed
    wait_until(
        "the resumed follower to fetch what the leader wrote while it was paused",
        lambda: follower.exists(index=FOLLOWER_INDEX, id="while-paused"),
    )
    info = follower.ccr.follow_info(index=FOLLOWER_INDEX)
    assert info["follower_indices"][0]["status"] == "active", info
    assert info["follower_indices"][0]["parameters"]["max_read_request_operation_count"] == 64, info

    step("a follower index refuses writes")
    try:
        follower.index(index=FOLLOWER_INDEX, id="local", document={"service": "local"})
        raise AssertionError("a follower index must refuse writes")
    except elasticsearch.ApiError as error:
        assert error.meta.status in (400, 403), error

    step("pause, close, unfollow, open")
    paused = follower.ccr.pause_follow(index=FOLLOWER_INDEX)
    assert paused["acknowledged"] is True, paused
    info = follower.ccr.follow_info(index=FOLLOWER_INDEX)
    assert info["follower_indices"][0]["status"] == "paused", info
    assert "parameters" not in info["follower_indices"][0], info
    closed = follower.indices.close(index=FOLLOWER_INDEX)
    assert closed["acknowledged"] is True, closed
    unfollowed = follower.ccr.unfollow(index=FOLLOWER_INDEX)
    assert unfollowed["acknowledged"] is True, unfollowed
    opened = follower.indices.open(index=FOLLOWER_INDEX)
    assert opened["acknowledged"] is True, opened
    assert follower.ccr.follow_info(index=FOLLOWER_INDEX)["follower_indices"] == []
    assert follower.ccr.stats()["follow_stats"]["indices"] == []

    step("after unfollow the former follower accepts writes")
    written = follower.index(
        index=FOLLOWER_INDEX, id="local", document={"service": "local"}, refresh="wait_for"
    )
    assert written["result"] == "created", written
    assert count(follower, FOLLOWER_INDEX) == 302
    deleted = follower.delete(index=FOLLOWER_INDEX, id="local", refresh=True)
    assert deleted["result"] == "deleted", deleted
    assert not follower.exists(index=FOLLOWER_INDEX, id="local")
    try:
        follower.delete(index=FOLLOWER_INDEX, id="local")
        raise AssertionError("deleting a missing document must fail")
    except NotFoundError as error:
        assert error.body["result"] == "not_found", error.body
    # The leader goes on alone; its new writes no longer reach the former follower.
    leader.index(index=LEADER_INDEX, id="late", document=metric(5000), refresh=True)
    time.sleep(1)
    assert not follower.exists(index=FOLLOWER_INDEX, id="late")

    step("auto-follow patterns")
    put = follower.ccr.put_auto_follow_pattern(
        name="logs",
        remote_cluster="leader",
        leader_index_patterns=["logs-*"],
        follow_index_pattern="{{leader_index}}-copy",
    )
    assert put["acknowledged"] is True, put
    patterns = follower.ccr.get_auto_follow_pattern(name="logs")
    assert len(patterns["patterns"]) == 1, patterns
    pattern = patterns["patterns"][0]
    assert pattern["name"] == "logs", pattern
    assert pattern["pattern"]["remote_cluster"] == "leader", pattern
    assert pattern["pattern"]["leader_index_patterns"] == ["logs-*"], pattern
    assert pattern["pattern"]["follow_index_pattern"] == "{{leader_index}}-copy", pattern
    assert pattern["pattern"]["active"] is True, pattern
    assert [p["name"] for p in follower.ccr.get_auto_follow_pattern()["patterns"]] == ["logs"]
    leader.indices.create(index="logs-1")
    leader.index(index="logs-1", id="a", document={"message": "hello"}, refresh=True)
    # Waits (bounded by its timeout) for the auto-follow coordinator to create the follower.
    health = follower.cluster.health(index="logs-1-copy", wait_for_status="yellow", timeout="60s")
    assert health["status"] == "green", health
    assert follower.indices.exists(index="logs-1-copy")
    wait_until(
        "the auto-followed index to replicate",
        lambda: follower.exists(index="logs-1-copy", id="a"),
    )
    # Counted once the coordinator's follow request returns, which can be a moment after the
    # pull loop has copied the first documents (as in Elasticsearch).
    wait_until(
        "the auto-follow to be counted",
        lambda: follower.ccr.stats()["auto_follow_stats"]["number_of_successful_follow_indices"] >= 1,
    )
    deleted = follower.ccr.delete_auto_follow_pattern(name="logs")
    assert deleted["acknowledged"] is True, deleted
    try:
        follower.ccr.get_auto_follow_pattern(name="logs")
        raise AssertionError("a deleted pattern must be gone")
    except NotFoundError as error:
        assert error.meta.status == 404, error
    try:
        follower.ccr.delete_auto_follow_pattern(name="logs")
        raise AssertionError("deleting a deleted pattern must fail")
    except NotFoundError as error:
        assert error.meta.status == 404, error

    step("missing follower index")
    try:
        follower.ccr.pause_follow(index="missing")
        raise AssertionError("pausing a missing index must fail")
    except NotFoundError as error:
        assert error.body["error"]["type"] == "index_not_found_exception", error.body

    print(f"ok: elasticsearch-py {elasticsearch.__versionstr__}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} LEADER_URL FOLLOWER_URL")
    main(sys.argv[1], sys.argv[2])
