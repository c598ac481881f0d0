"""splunkd's REST API as the app uses it: a connection, JSON reads and failures in words.

Always through REST with the caller's own session key (never files on disk), so splunkd's layering
(default/local), permissions and the credential store apply.
"""

import json
from urllib.parse import urlsplit

from splunklib import binding, client

from .. import APP_NAME
from ..core.errors import SplunkdError

SPLUNKD_TIMEOUT = 30
# The KV store cache is worth waiting for only so long: past this, the search goes on without it.
KVSTORE_TIMEOUT = 10


def connect(splunkd_uri: str, session_key: str, timeout: float = SPLUNKD_TIMEOUT):
    """A splunklib Service in the app's namespace, authenticated with the search's session key."""
    parts = urlsplit(splunkd_uri)
    return client.Service(
        handler=binding.handler(timeout=timeout),
        scheme=parts.scheme,
        host=parts.hostname,
        port=parts.port,
        token=session_key,
        owner="nobody",
        app=APP_NAME,
    )


def get_json(service, path: str, **query) -> dict:
    """GET ``path`` (already encoded) as JSON; splunklib's HTTPError passes through for the caller to judge."""
    try:
        response = service.get(binding.UrlEncoded(path, skip_encode=True), output_mode="json", **query)
        return json.loads(response.body.read().decode("utf-8"))
    except binding.HTTPError:
        raise
    except (OSError, ValueError) as error:
        raise SplunkdError("splunkd did not answer %s: %s" % (path.split("/")[0], _short(error)))


def http_status(error) -> int:
    return getattr(error, "status", 0) or 0


def rest_failure(what: str, error) -> str:
    status = http_status(error)
    if status == 401:
        return "Could not %s: splunkd rejected the search's session (401)." % what
    if status == 403:
        return "Could not %s: this user lacks permission (splunkd answered 403)." % what
    return "Could not %s: splunkd answered %s." % (what, status or _short(error))


def _short(error) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
