"""Cross-cluster replication between two tandem nodes with TLS and security on, driven by the
official Python client as an Elasticsearch 8 user would drive it.

Usage: python secure_ccr_with_official_client.py LEADER_URL FOLLOWER_URL CA_CERT
           LEADER_PASSWORD FOLLOWER_PASSWORD TANDEM_BINARY FOLLOWER_DATA

The leader makes a cross-cluster API key, `tandem keystore add` stores it on the follower,
`reload_secure_settings` reads it, and the follower follows over TLS. Users, roles and API
keys are managed through the client's `security` namespace; refusals arrive as the client's
AuthenticationException (401) and AuthorizationException (403). Exits 0 only if every step
answers as Elasticsearch would.
"""

import subprocess
import sys
import time
import warnings

from elasticsearch import (
    AuthenticationException,
    AuthorizationException,
    Elasticsearch,
    ElasticsearchWarning,
)

warnings.simplefilter("error", ElasticsearchWarning)

CONVERGE_WITHIN_SECONDS = 90


def step(name):
    print(f"--- {name}", flush=True)


def wait_until(description, probe):
    deadline = time.monotonic() + CONVERGE_WITHIN_SECONDS
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {description}; last probe: {last!r}")


def main():
    leader_url, follower_url, ca, leader_pw, follower_pw, tandem, follower_data = sys.argv[1:8]
    leader = Elasticsearch(leader_url, ca_certs=ca, basic_auth=("elastic", leader_pw))
    follower = Elasticsearch(follower_url, ca_certs=ca, basic_auth=("elastic", follower_pw))

    step("authenticate")
    me = leader.security.authenticate()
    assert me["username"] == "elastic" and me["roles"] == ["superuser"], me
    try:
        Elasticsearch(leader_url, ca_certs=ca, basic_auth=("elastic", "wrong-password")).info()
        raise AssertionError("a wrong password was accepted")
    except AuthenticationException as error:
        assert error.meta.status == 401, error

    step("users, roles and API keys")
    leader.security.put_role(
        name="metrics_reader",
        cluster=["monitor"],
        indices=[{"names": ["server-metrics*"], "privileges": ["read", "view_index_metadata"]}],
    )
    leader.security.put_user(username="analyst", password="analyst-password", roles=["metrics_reader"])
    analyst = Elasticsearch(leader_url, ca_certs=ca, basic_auth=("analyst", "analyst-password"))
    assert analyst.security.authenticate()["roles"] == ["metrics_reader"]
    try:
        analyst.indices.create(index="server-metrics")
        raise AssertionError("a reader created an index")
    except AuthorizationException as error:
        assert error.meta.status == 403, error
        assert "indices:admin/create" in str(error), error
    key = leader.security.create_api_key(name="ingest")
    by_key = Elasticsearch(leader_url, ca_certs=ca, api_key=key["encoded"])
    assert by_key.security.authenticate()["authentication_type"] == "api_key"

    step("leader index")
    leader.indices.create(index="server-metrics", settings={"index": {"number_of_shards": 1}})
    for n in range(50):
        by_key.index(index="server-metrics", id=str(n), document={"n": n})
    leader.indices.refresh(index="server-metrics")
    assert analyst.count(index="server-metrics")["count"] == 50

    step("cross-cluster API key into the follower's keystore")
    cross = leader.security.create_cross_cluster_api_key(
        name="follower-cluster", access={"replication": [{"names": ["server-metrics"]}]}
    )
    subprocess.run(
        [tandem, "keystore", "add", "cluster.remote.leader.credentials", "--stdin", "--data", follower_data],
        input=cross["encoded"] + "\n",
        text=True,
        check=True,
    )
    reloaded = follower.nodes.reload_secure_settings()
    assert reloaded["_nodes"]["failed"] == 0, reloaded

    step("follow over TLS")
    leader_address = leader_url.split("://", 1)[1]
    follower.cluster.put_settings(persistent={"cluster": {"remote": {"leader": {"seeds": [leader_address]}}}})
    follower.ccr.follow(
        index="server-metrics-follower",
        remote_cluster="leader",
        leader_index="server-metrics",
        wait_for_active_shards="1",
    )

    def replicated():
        follower.indices.refresh(index="server-metrics-follower")
        return follower.count(index="server-metrics-follower")["count"] == 50

    wait_until("the follower to hold 50 documents", replicated)
    stats = follower.ccr.follow_stats(index="server-metrics-follower")
    assert stats["indices"][0]["shards"][0].get("fatal_exception") is None, stats

    step("done")


if __name__ == "__main__":
    main()
