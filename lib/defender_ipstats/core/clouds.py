"""Where each Microsoft cloud keeps the Defender API, the sign-in service and Graph.

From Microsoft's Defender for Endpoint docs (exposed APIs list, US Government page); see
shared/reference/defender-api.md. Government scopes are not documented by Microsoft: the
``{api host}/.default`` form is what public tools use, and accounts may override it.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class CloudEndpoints:
    api_url: str
    login_host: str
    scope: str
    graph_url: str

    def authority(self, tenant_id: str) -> str:
        return "https://%s/%s" % (self.login_host, tenant_id)


_COMMERCIAL_SCOPE = "https://api.securitycenter.microsoft.com/.default"
_LOGIN = "login.microsoftonline.com"
_LOGIN_US_GOV = "login.microsoftonline.us"
_GRAPH = "https://graph.microsoft.com"


def _regional(region: str) -> CloudEndpoints:
    return CloudEndpoints("https://%s.api.security.microsoft.com" % region, _LOGIN, _COMMERCIAL_SCOPE, _GRAPH)


CLOUDS = {
    "global": CloudEndpoints("https://api.security.microsoft.com", _LOGIN, _COMMERCIAL_SCOPE, _GRAPH),
    **{region: _regional(region) for region in ("us", "eu", "uk", "au", "swa", "ina", "aea")},
    "gcc": CloudEndpoints(
        "https://api-gcc.securitycenter.microsoft.us", _LOGIN,
        "https://api-gcc.securitycenter.microsoft.us/.default", _GRAPH,
    ),
    "gcc-high": CloudEndpoints(
        "https://api-gov.securitycenter.microsoft.us", _LOGIN_US_GOV,
        "https://api-gov.securitycenter.microsoft.us/.default", "https://graph.microsoft.us",
    ),
    "dod": CloudEndpoints(
        "https://api-gov.securitycenter.microsoft.us", _LOGIN_US_GOV,
        "https://api-gov.securitycenter.microsoft.us/.default", "https://dod-graph.microsoft.us",
    ),
}

CLOUD_NAMES = tuple(CLOUDS)

# The Microsoft Defender portal of each cloud (Microsoft's "Defender for Endpoint for US Government"
# page): GCC uses the commercial portal; GCC High and DoD have their own. The regional API hosts are
# the commercial cloud's. A device's page: {portal}/machines/v2/<DeviceId>/overview.
PORTALS = {"gcc-high": "https://security.microsoft.us", "dod": "https://security.apps.mil"}
COMMERCIAL_PORTAL = "https://security.microsoft.com"


def portal_of(cloud: str) -> str:
    return PORTALS.get(cloud, COMMERCIAL_PORTAL)
