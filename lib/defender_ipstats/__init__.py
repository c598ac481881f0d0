"""TA-defender-ipstats: Microsoft Defender for Endpoint IP statistics for Splunk searches.

The package is split by concern: ``settings``/``clouds`` (configuration), ``splunkd``
(reading it and the credential through splunkd REST), ``auth`` (msal tokens), ``client``
(the Defender API), ``ratelimit`` and ``fetcher`` (spending the API budget), ``cache``
(KV store), ``lookup`` (the pure normalise/dedupe/split/merge core) and ``command``
(the splunklib adapter).
"""

APP_NAME = "TA-defender-ipstats"
__version__ = "0.1.0"
