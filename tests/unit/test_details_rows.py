"""The rows of ``| defenderipdetails`` from the service's answer, and the portal each cloud links to."""

from defender_ipstats.core.clouds import CLOUD_NAMES, portal_of
from defender_ipstats.search.details_command import FIELDS, rows_of

DEVICE = "0f" * 20
ANSWER = {"ip": "2001:db8::7", "account": "contoso", "lookback_hours": 720, "source": "hunting",
          "portal": "https://security.microsoft.us", "ip_devices": 3, "ip_first_seen": "2026-11-01T00:00:00Z",
          "ip_last_seen": "2026-11-08T00:00:00Z",
          "devices": [{"device_id": DEVICE, "device_name": "ws-1", "first_seen": "a", "last_seen": "b",
                       "connections": 4, "direction": "both"},
                      {"device_id": "x/../../evil?", "device_name": "ws-2", "first_seen": "a", "last_seen": "b",
                       "connections": 1, "direction": ""}],
          "days": [{"day": "2026-11-01", "devices": 2}]}


def test_each_cloud_links_to_its_own_portal():
    assert {cloud: portal_of(cloud) for cloud in CLOUD_NAMES if portal_of(cloud) != "https://security.microsoft.com"} \
        == {"gcc-high": "https://security.microsoft.us", "dod": "https://security.apps.mil"}
    assert portal_of("gcc") == portal_of("eu") == portal_of("global") == "https://security.microsoft.com"


def test_rows_carry_every_field_and_the_overall_figures():
    rows = list(rows_of(ANSWER))
    assert [r["row_type"] for r in rows] == ["device", "device", "day"]
    assert all(set(r) == set(FIELDS) for r in rows)
    assert {(r["ip_devices"], r["ip_url"]) for r in rows} == {(3, "https://security.microsoft.us/ip/2001:db8::7/overview")}
    assert rows[0]["device_url"] == "https://security.microsoft.us/machines/v2/%s/overview" % DEVICE
    assert rows[1]["device_url"] == ""  # a device id that is not one never goes into a URL
    assert (rows[2]["day"], rows[2]["devices"], rows[2]["device_id"]) == ("2026-11-01", 2, "")
