"""Exceptions that end up as one readable search message (never a traceback)."""


class DefenderIpStatsError(Exception):
    """Base class: str(error) is a message fit to show a Splunk user as is."""


class ConfigurationError(DefenderIpStatsError):
    """A bad option, setting or account: the search cannot start."""


class CredentialError(DefenderIpStatsError):
    """The account's secret is missing or cannot be read."""


class SplunkdError(DefenderIpStatsError):
    """splunkd's REST API failed us (settings, credential or KV store)."""


class AuthenticationError(DefenderIpStatsError):
    """Entra ID refused to issue a token (bad secret, unknown tenant or client...)."""


class AuthorizationError(DefenderIpStatsError):
    """The API refused the token's permissions (403)."""
