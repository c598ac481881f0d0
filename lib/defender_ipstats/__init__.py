"""TA-defender-ipstats: Microsoft Defender for Endpoint IP statistics for Splunk searches.

Layers, each importing only from those listed before it:

- ``core``: the pure part (stdlib only): model, settings, IP lookup, the fetching policy;
- ``microsoft``: HTTP to Entra ID, Defender and Graph;
- ``splunk``: splunkd's REST API and the host's state (conf, credentials, KV cache, budget files, logs);
- ``service``: the privileged side, a REST handler inside splunkd: credentials, tokens, API calls;
- ``search``: the search process (the command and the alert action), with the user's session only.
  It never imports ``service`` or ``microsoft``: it asks the service over splunkd's REST API.

Sub-package ``__init__`` files import nothing, so that getinfo stays fast.
"""

APP_NAME = "TA-defender-ipstats"
__version__ = "0.1.0"
