"""The answers of ``| defenderipdetails`` (collection ``defenderipstats_details``), one document per
account, look-back and IP, the answer as JSON text.

The collection is readable by the admin roles and the privileged service only (metadata/default.meta),
whatever the account's ``allowed_roles``: the service reads it with its system session and hands an
answer only to a caller it has checked (``service/details.py``). Freshness (``details_ttl``) is
checked on read. Only complete answers are written, never an error.
"""

import json
import time
from typing import Optional

from .. import APP_NAME

COLLECTION = "defenderipstats_details"


def details_key(account: str, lookback_hours: int, ip: str) -> str:
    return "%s|%d|%s" % (account, int(lookback_hours), ip)


class DetailsStore:
    def __init__(self, service, clock=time.time):
        self.service = service  # the service's system session
        self.clock = clock
        self.path = "storage/collections/data/%s" % COLLECTION

    def get(self, account: str, lookback_hours: int, ip: str, ttl: int) -> Optional[dict]:
        """The answer kept for (account, look-back, ip) if younger than ``ttl`` seconds, else None."""
        key = details_key(account, lookback_hours, ip)
        response = self.service.get(self.path, owner="nobody", app=APP_NAME, output_mode="json",
                                    query=json.dumps({"_key": key}), limit=1)
        documents = json.loads(response.body.read().decode("utf-8") or "[]")
        for document in documents if isinstance(documents, list) else []:
            if not isinstance(document, dict) or document.get("_key") != key:
                continue
            try:
                fetched_at = float(document.get("fetched_at"))
                answer = json.loads(document.get("answer") or "")
            except (TypeError, ValueError):
                return None
            if not isinstance(answer, dict) or not 0 <= self.clock() - fetched_at < ttl:
                return None
            return answer
        return None

    def put(self, account: str, lookback_hours: int, ip: str, answer: dict) -> None:
        document = {"_key": details_key(account, lookback_hours, ip), "account": account,
                    "lookback_hours": int(lookback_hours), "ip": ip, "fetched_at": answer["fetched_at"],
                    "answer": json.dumps(answer, sort_keys=True)}
        self.service.post(self.path + "/batch_save", owner="nobody", app=APP_NAME,
                          headers=[("Content-Type", "application/json")], body=json.dumps([document]))
