"""What each user spent of an account's budgets in the last hour: the users' own shares, read back.

A user's share (``core.fairshare``) is a budget of its own, named by ``user_budget`` (the user's name
never stands in a file name or a key); it carries the user's name as its label: in its SQLite
file on a single search head, on each of its slots in the KV store on a search head cluster. The setup
page shows these figures per account.
"""

import glob
import json
import os
import sqlite3
import time
from typing import Dict, Iterable

from .. import APP_NAME
from .budget import registration_key, state_file_name, state_folder
from .slotstore import COLLECTION, cluster_members

APIS = ("ipstats", "hunting")
HOUR = 3600.0


def hourly_spend(service, accounts: Iterable, splunk_home: str = None, now: float = None) -> Dict[str, dict]:
    """{account name: {api: {user: calls in the last hour}}} for ``accounts`` (``core.accounts.Account``).

    ``service``: a splunklib Service with the system session (the KV store on a cluster member)."""
    now = time.time() if now is None else now
    members = cluster_members(service) if service is not None else 0
    out = {}
    for account in accounts:
        registration = registration_key(account.tenant_id, account.client_id)
        out[account.name] = {api: (_cluster_spend(service, api, registration, now) if members
                                   else _host_spend(api, registration, splunk_home, now)) for api in APIS}
    return out


def _host_spend(api: str, registration: str, splunk_home: str, now: float) -> Dict[str, int]:
    splunk_home = splunk_home if splunk_home is not None else os.environ.get("SPLUNK_HOME")
    if not splunk_home:
        return {}
    spend: Dict[str, int] = {}
    pattern = os.path.join(state_folder(splunk_home), state_file_name(api + "-user-*", registration))
    for path in glob.glob(pattern):
        try:
            db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=1.0)
            try:
                label = db.execute("SELECT text FROM label WHERE id = 1").fetchone()
                calls = db.execute("SELECT COUNT(*) FROM calls WHERE at > ?", (now - HOUR,)).fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:  # a file being created or damaged: its figures are left out
            continue
        if label and calls:
            spend[label[0]] = spend.get(label[0], 0) + int(calls)
    return spend


def _cluster_spend(service, api: str, registration: str, now: float) -> Dict[str, int]:
    response = service.get("storage/collections/data/%s" % COLLECTION, owner="nobody", app=APP_NAME,
                           output_mode="json", fields="budget,user,at",
                           query=json.dumps({"user": {"$exists": True}, "at": {"$gt": now - HOUR}}))
    spend: Dict[str, int] = {}
    for doc in json.loads(response.body.read().decode("utf-8") or "[]"):
        budget = str(doc.get("budget") or "")
        if budget.startswith(api + "-user-") and budget.endswith("|" + registration):
            user = str(doc.get("user"))
            spend[user] = spend.get(user, 0) + 1
    return spend
