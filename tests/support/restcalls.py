"""REST calls as a user would make them (HTTP Basic, as ``curl -u`` does), against the splunkd stand-in."""

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Tuple


def call(app, user: str, password: str, method: str, path: str, **form) -> Tuple[int, str]:
    """(status, body text). Form fields go in the body (POST) or the query string; JSON output."""
    params = dict(form, output_mode="json")
    data = urllib.parse.urlencode(params).encode() if method == "POST" else None
    query = "" if method == "POST" else "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(app.splunkd.base_url + path + query, data=data, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def call_json(app, user: str, password: str, method: str, path: str, **form):
    """(status, the answer's JSON)."""
    status, body = call(app, user, password, method, path, **form)
    return status, json.loads(body) if body.strip() else None
