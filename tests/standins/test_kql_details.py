"""The KQL the IP investigation needs, in the stand-in's interpreter, with Kusto's documented semantics:
an equivalent query (dcount instead of counting a summarize, order by instead of top) gets the same
answer, summarize without by gives one row even over no rows, top sorts descending by default,
union (kind outer) keeps every leg's columns, bin(Timestamp, 1d) is the UTC day."""

import pytest

from standins import dataset, device_events, kql

IPS = [ip for ip in dataset.ips(200, seed=61, family="mixed") if device_events.rows_for(ip)][:20]
SILENT = next(ip for ip in dataset.ips(200, seed=62) if not device_events.rows_for(ip))


def run(query, ip):
    def rows_for(literals):
        seen, rows = set(), []
        for literal in literals:
            canonical = dataset.canonical(literal)
            if canonical not in seen:
                seen.add(canonical)
                rows += [dict(r, Timestamp=kql.DateTime(r["Timestamp"])) for r in device_events.rows_for(canonical)]
        return rows

    return kql.run(query, rows_for, device_events.SCHEMA, "DeviceNetworkEvents", device_events.NOW_TICKS)[1]


def listed(ip):
    return '"%s"' % ip if ":" in ip else '"%s", "::ffff:%s"' % (ip, ip)


def days_of(ip):
    return {day: n for day, n in device_events.expected_details(ip, 720)["days"].items()}


@pytest.mark.parametrize("ip", IPS[:8])
def test_devices_per_day_two_ways(ip):
    exact = run("let H = materialize(DeviceNetworkEvents | where RemoteIP in~ (%s) | summarize by DeviceId, "
                "Day = bin(Timestamp, 1d)); H | summarize Devices = count() by Day" % listed(ip), ip)
    estimate = run("DeviceNetworkEvents | where RemoteIP in~ (%s) | summarize Devices = dcount(DeviceId) "
                   "by Day = bin(Timestamp, 1d)" % listed(ip), ip)
    want = {kql.format_value(kql.DateTime(day)): n for day, n in days_of(ip).items()}
    assert {r["Day"]: r["Devices"] for r in exact} == {r["Day"]: r["Devices"] for r in estimate} == want
    assert all(r["Day"].endswith("T00:00:00Z") for r in exact)


def test_top_arg_max_countif_and_union():
    ip = IPS[0]
    want = device_events.expected_details(ip, 720)
    rows = run("let H = DeviceNetworkEvents | where RemoteIP in~ (%s); union (H | summarize n = count(), "
               "i = countif(ActionType == \"InboundConnectionAccepted\"), arg_max(Timestamp, DeviceName) by DeviceId "
               "| top 2 by Timestamp | extend Kind = \"device\"), (H | summarize Total = count() | project Kind = "
               "\"all\", Total)" % listed(ip), ip)
    devices = [r for r in rows if r["Kind"] == "device"]
    assert [r["DeviceId"] for r in devices] == [w["device_id"] for w in want["devices"][:2]]  # desc by default
    assert [(r["n"], r["i"], r["DeviceName"]) for r in devices] == \
        [(w["connections"], w["inbound"], w["device_name"]) for w in want["devices"][:2]]
    [total] = [r for r in rows if r["Kind"] == "all"]
    assert total["Total"] == sum(w["connections"] for w in want["devices"]) and total["DeviceId"] is None
    assert set(devices[0]) == set(total)  # every leg's columns on every row


def test_summarize_without_by_over_no_rows_is_one_row():
    rows = run('DeviceNetworkEvents | where RemoteIP == "%s" | summarize n = count(), f = min(Timestamp)' % SILENT,
               SILENT)
    assert rows == [{"n": 0, "f": None}]


@pytest.mark.parametrize("query", [
    'DeviceNetworkEvents | where RemoteIP == "{ip}" | summarize x = arg_max(Timestamp, DeviceName)',
    'DeviceNetworkEvents | where RemoteIP == "{ip}" | summarize by Day = bin(Timestamp, "1d")',
    'let H = DeviceNetworkEvents | where RemoteIP == "{ip}"; union (H), (Nope)',
])
def test_what_it_cannot_run_is_an_error(query):
    ip = next(ip for ip in IPS if ":" in ip)
    with pytest.raises(kql.KqlError):
        run(query.format(ip=ip), ip)
