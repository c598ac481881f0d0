"""The search head cluster's side of the shared budget in splunkd: the KV store collection of call
slots (``SlotStore``), and how many members the cluster has (``cluster_members``)."""

import json
import logging
from typing import List, Optional

from splunklib import binding

from .kvcollection import KVCollection

COLLECTION = "defenderipstats_budget"
# A search head cluster has at least three members: the share when their number cannot be read.
MIN_MEMBERS = 3


class BudgetStoreUnavailable(Exception):
    """The KV store did not answer as expected (down, failing, or the collection missing)."""


class SlotStore(KVCollection):
    """The budget collection through splunkd's REST API; counts its round trips."""

    unavailable = BudgetStoreUnavailable

    def __init__(self, service, collection: str = COLLECTION):
        super().__init__(service, collection)

    def find(self, queries: List[dict]) -> List[List[dict]]:
        pages = self._call("post", "batch_find", body=queries)
        if not isinstance(pages, list) or len(pages) != len(queries):
            raise BudgetStoreUnavailable("batch_find answered %d pages for %d queries"
                                         % (len(pages or []), len(queries)))
        return [page if isinstance(page, list) else [] for page in pages]

    def save(self, documents: List[dict]) -> None:
        """Insert or replace by ``_key`` (batch_save)."""
        self._call("post", "batch_save", body=documents)

    def delete(self, query: dict) -> None:
        self._call("delete", query=json.dumps(query))


def cluster_members(service, logger: Optional[logging.Logger] = None) -> int:
    """0 on a server that is not a search head cluster member, else the number of members.

    ``server/info``'s ``server_roles`` names ``shc_member`` (and ``shc_captain`` on the captain);
    ``shcluster/member/members`` lists the members. When the list cannot be read, at least three
    (Splunk's minimum for a cluster).
    """
    logger = logger or logging.getLogger("defender_ipstats")
    try:
        roles = _entry_content(service.get("server/info", output_mode="json")).get("server_roles") or []
    except (binding.HTTPError, OSError, ValueError) as error:
        logger.warning("cannot read server/info (%s); budget kept per host", _describe(error))
        return 0
    if isinstance(roles, str):
        roles = [roles]
    if not {"shc_member", "shc_captain"} & set(roles):
        return 0
    try:
        response = service.get("shcluster/member/members", output_mode="json", count=0)
        members = len(json.loads(response.body.read().decode("utf-8")).get("entry") or [])
    except (binding.HTTPError, OSError, ValueError, AttributeError) as error:
        logger.warning("cannot list the search head cluster members (%s); counting %d", _describe(error),
                       MIN_MEMBERS)
        members = 0
    return max(members, MIN_MEMBERS)


def _entry_content(response) -> dict:
    document = json.loads(response.body.read().decode("utf-8"))
    entries = document.get("entry") or [{}]
    return entries[0].get("content") or {}


def _describe(error) -> str:
    status = getattr(error, "status", None)
    return "splunkd answered %s" % status if status else type(error).__name__


def number_or_none(value, kind=int):
    """A KV store field as a number, or None where it is missing or not one."""
    try:
        return kind(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def span_text(seconds: float) -> str:
    """A window's length in words: "5 s", "1 min", "1 h"."""
    return "%g s" % seconds if seconds < 60 else ("%g min" % (seconds / 60) if seconds < 3600 else
                                                  "%g h" % (seconds / 3600))
