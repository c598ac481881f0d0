"""The splunkd stand-in as the members of a search head cluster (SearchHeadCluster)."""

import json
import urllib.error
import urllib.request

import pytest

from standins.splunkd import SearchHeadCluster, SplunkdStandin


def get(standin, path, key):
    request = urllib.request.Request(standin.base_url + path + "?output_mode=json",
                                     headers={"Authorization": "Splunk " + key})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read().decode("utf-8"))


def status_of(standin, path, key):
    with pytest.raises(urllib.error.HTTPError) as failed:
        get(standin, path, key)
    return failed.value.code


def test_members_answer_as_members_and_list_each_other():
    with SearchHeadCluster(3, apps={}) as cluster:
        captain, other = cluster.members[0], cluster.members[2]
        roles = get(other, "/services/server/info", other.new_session_key())["entry"][0]["content"]["server_roles"]
        assert "shc_member" in roles and "shc_captain" not in roles
        assert "shc_captain" in get(captain, "/services/server/info",
                                    captain.new_session_key())["entry"][0]["content"]["server_roles"]
        listed = get(other, "/services/shcluster/member/members", other.new_session_key())["entry"]
        assert sorted(entry["content"]["label"] for entry in listed) == ["sh1", "sh2", "sh3"]
        info = get(other, "/services/shcluster/member/info", other.new_session_key())["entry"][0]["content"]
        assert info["label"] == "sh3" and info["captain_uri"] == "https://sh1:8089"
        other.add_user("analyst", roles=["user"])
        assert status_of(other, "/services/shcluster/member/members", other.new_session_key("analyst")) == 403


def test_a_single_search_head_is_no_member():
    with SplunkdStandin(apps={}) as single:
        key = single.new_session_key()
        assert "shc_member" not in get(single, "/services/server/info", key)["entry"][0]["content"]["server_roles"]
        assert status_of(single, "/services/shcluster/member/members", key) == 503


def test_the_kv_store_fails_and_recovers_on_every_member():
    with SearchHeadCluster(2, apps={}) as cluster:
        first, second = cluster.members
        cluster.fail_kv_store()
        status = get(second, "/services/kvstore/status", second.new_session_key())["entry"][0]["content"]
        assert status["current"]["status"] == "failed"
        assert get(first, "/services/server/info", first.new_session_key())["entry"][0]["content"][
            "kvStoreStatus"] == "failed"
        cluster.recover_kv_store()
        status = get(second, "/services/kvstore/status", second.new_session_key())["entry"][0]["content"]
        assert status["current"] == dict(status["current"], status="ready",
                                         replicationStatus="Non-captain KV store member")
