"""A KV store collection of the app's through splunkd's REST API, for the stores that rest on its
serialised ``_key`` inserts (the cluster budget's slots, the hunting jobs)."""

import json

from splunklib import binding

from .. import APP_NAME


class KVCollection:
    """JSON in and out; a failure is ``unavailable``, except the statuses in ``passed_on`` (HTTPError),
    which the caller's own methods interpret. Counts its round trips."""

    unavailable = Exception
    passed_on = (409,)

    def __init__(self, service, collection: str):
        self.service = service
        self.path = "storage/collections/data/%s/" % collection
        self.round_trips = 0

    def _call(self, method: str, endpoint: str = "", body=None, **query):
        self.round_trips += 1
        kwargs = dict(owner="nobody", app=APP_NAME, **query)
        if body is not None:
            kwargs.update(headers=[("Content-Type", "application/json")], body=json.dumps(body))
        try:
            response = getattr(self.service, method)(self.path + endpoint, **kwargs)
            text = response.body.read().decode("utf-8")
        except binding.HTTPError as error:
            if error.status in self.passed_on:
                raise
            raise self.unavailable("splunkd answered %s" % error.status)
        except (OSError, ValueError) as error:  # refused, reset, timed out (socket errors are OSErrors)
            raise self.unavailable(type(error).__name__)
        try:
            return json.loads(text) if text.strip() else None
        except ValueError:
            raise self.unavailable("the KV store answered something that is not JSON")

    def insert(self, document: dict) -> bool:
        """True when the document went in, False when its ``_key`` was taken (409): the KV captain
        serialises inserts, so exactly one of several claimants gets a key."""
        try:
            self._call("post", body=document)
            return True
        except binding.HTTPError as error:
            if error.status == 409:
                return False
            raise self.unavailable("splunkd answered %s" % error.status)
