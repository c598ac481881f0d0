"""Search head clustering: ``shcluster/member/*`` endpoints, server roles, and the KV store a cluster's
members share (``SearchHeadCluster``)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .model import _Request
from .replica import ReplicatedData

# How far a member's KV store reads lag behind the captain's data, unless a cluster says otherwise.
DEFAULT_READ_LAG = 1.0


class ClusterEndpoints:
    def _server_roles(self) -> List[str]:
        roles = ["indexer", "license_master", "kv_store"]
        if self.cluster is not None:
            roles = ["kv_store", "search_head", "shc_member"]
            if self.cluster.captain is self:
                roles.append("shc_captain")
        return roles

    def _refuse_if_kv_down(self, req: _Request) -> None:
        if self.cluster is not None and self.cluster.kv_status != "ready":
            self._kv_fail(req, 503, self.cluster.KV_DOWN_TEXT)

    def _kv_read_view(self, store: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
        """What a read of a collection sees on this server: the data itself on a single server or the KV
        captain, the data as it was ``read_lag`` seconds ago on another member (``replica``)."""
        if self.cluster is None or self is self.cluster.captain or self.cluster.read_lag <= 0:
            return store
        as_of = getattr(store, "as_of", None)
        return as_of(self.cluster.clock() - self.cluster.read_lag) if as_of is not None else store

    def _ep_shcluster(self, req: _Request, rest: List[str]) -> None:
        """``shcluster/member/info`` (this member) and ``shcluster/member/members`` (every member).

        Not a member: 503 with the text below (solnlib's ``ServerInfo`` reads 404 or 503 as "not a
        member"; the wording is not confirmed). Listing needs ``list_search_head_clustering``.
        """
        if req.method not in ("GET", "HEAD"):
            self._fail(req, 405, "Method Not Allowed")
        if rest[1:2] != ["member"] or rest[2:3] not in (["info"], ["members"]):
            self._fail(req, 404, "Not Found")
        if self.cluster is None:
            self._fail(req, 503, "Search head clustering is not enabled on this node.")
        if not self._has_cap(req.username or "", "list_search_head_clustering", "admin_all_objects"):
            self._fail(req, 403, "You (user=%s) do not have permission to perform this operation "
                                 "(requires capability: list_search_head_clustering)." % req.username)
        if rest[2] == "info":
            entry = self._system_entry("member", "/services/shcluster/member/info/member",
                                       self.cluster.member_info(self))
            self._feed(req, "shclustermemberinfo", "/services/shcluster/member/info", [entry], links={})
        entries = [self._system_entry(member.guid, "/services/shcluster/member/members/" + member.guid,
                                      self.cluster.member_entry(member))
                   for member in self.cluster.members]
        self._feed(req, "shclustermembers", "/services/shcluster/member/members", entries)



class SearchHeadCluster:
    """Several stand-ins as the members of one search head cluster, sharing ONE KV store.

    The KV store of a cluster is a replica set: writes from every member go to the KV captain one at
    a time, reads are served by each member's own replica (``replica``). Here the members share the
    captain's data and one lock, so inserting an existing ``_key`` answers 409 at once whichever member
    is asked; a read on a member other than the captain (``members[0]``) sees the data as it was
    ``read_lag`` seconds ago (default ``DEFAULT_READ_LAG``; 0: every read sees every write at once),
    by ``clock`` (a test on a fake clock passes its own). Each member has its own SPLUNK_HOME and server name,
    answers ``server/info`` with ``server_roles`` ``shc_member`` (and ``shc_captain`` for the first),
    ``shcluster/member/info`` and ``shcluster/member/members`` (content fields ``label``,
    ``peer_scheme_host_port``, ``status``, ``last_heartbeat``, as Splunk's REST reference and
    solnlib read them; the other fields are left out), and ``kvstore/status``.

    ``fail_kv_store()``: the KV store stops answering on every member (``storage/collections/data``
    answers 503 with ``KV_DOWN_TEXT``, ``kvstore/status`` and ``server/info`` say ``failed``);
    ``recover_kv_store()`` brings it back with its data. The 503 and its text are a plausible model
    of a KV store that is down, not confirmed from splunkd.
    """

    KV_DOWN_TEXT = "KV Store is not available: the KV store process is down."

    def __init__(self, size: int, splunk_homes: Iterable[Optional[str]] = (), read_lag: float = DEFAULT_READ_LAG,
                 clock: Callable[[], float] = time.time, **member_options: Any):
        self.read_lag = float(read_lag)
        self.clock = clock
        self.kv_data: Dict[Tuple[str, str], Dict[str, Dict[str, Any]]] = ReplicatedData(clock, lambda: self.read_lag)
        self.kv_lock = threading.RLock()
        self.kv_status = "ready"
        homes = list(splunk_homes) + [None] * size
        from .standin import SplunkdStandin  # the members are stand-ins; standin.py imports this module

        self.members: List[Any] = [
            SplunkdStandin(server_name="sh%d" % (index + 1), splunk_home=homes[index], cluster=self,
                           **member_options)
            for index in range(size)]
        self.captain = self.members[0]

    def start(self) -> SearchHeadCluster:
        for member in self.members:
            member.start()
        return self

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def __enter__(self) -> SearchHeadCluster:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def fail_kv_store(self) -> None:
        with self.kv_lock:
            self.kv_status = "failed"

    def recover_kv_store(self) -> None:
        with self.kv_lock:
            self.kv_status = "ready"

    def kv_status_of(self, member: Any) -> Dict[str, str]:
        if self.kv_status != "ready":
            return {"status": "failed", "replicationStatus": "Unknown status", "standalone": "0"}
        return {"status": "ready", "standalone": "0",
                "replicationStatus": "KV store captain" if member is self.captain else "Non-captain KV store member"}

    def member_entry(self, member: Any) -> Dict[str, Any]:
        return {"label": member.server_name, "peer_scheme_host_port": "https://%s:8089" % member.server_name,
                "status": "Up", "last_heartbeat": int(time.time()), "site": "default", "replication_port": 9887}

    def member_info(self, member: Any) -> Dict[str, Any]:
        return {"label": member.server_name, "status": "Up", "is_registered": True,
                "peer_scheme_host_port": "https://%s:8089" % member.server_name,
                "captain_uri": "https://%s:8089" % self.captain.server_name}
