"""The one HTTP session used for both Entra ID (msal) and the Defender API.

TLS is always verified, against the account's ``ca_bundle`` when it names one. requests lets
REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment replace a session's ``verify`` unless
each request passes it explicitly, so this session always does; it also gives every request
a timeout, since msal's own calls carry none when it is handed an http_client.
"""

import requests
from requests.adapters import HTTPAdapter


class AppSession(requests.Session):
    def __init__(self, verify=True, timeout: float = 30, proxies=None, pool_size: int = 4):
        super().__init__()
        if verify is False:  # there is no switch to turn verification off
            raise ValueError("TLS verification cannot be disabled")
        self.verify = verify
        self.default_timeout = timeout
        if proxies:
            self.proxies.update(proxies)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method, url, **kwargs):
        kwargs["verify"] = self.verify
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, **kwargs)
