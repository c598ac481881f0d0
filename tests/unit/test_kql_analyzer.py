"""The hunting queries the app builds, checked by Microsoft's own KQL analyser (Kusto.Language, the npm
package @kusto/language-service-next, run under node by dev/kql/analyze.js) against the documented
schema of DeviceNetworkEvents: every query must come back with no diagnostic at all.

``make setup`` installs the package (dev/kql_deps.sh). Without node or the package the tests fail
under CI (CI=true) and are skipped elsewhere, saying why.
"""

import json
import os
import shutil
import subprocess

import pytest

from defender_ipstats.microsoft.graph_details import build_details_query
from defender_ipstats.microsoft.graph_hunting import MAX_BATCH_IPS, batches, build_query

KQL_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "dev", "kql")
PACKAGE = os.path.join(KQL_DIR, "node_modules", "@kusto", "language-service-next", "package.json")

# MicrosoftDocs/defender-docs, defender-xdr/advanced-hunting-devicenetworkevents-table.md: every documented column.
DEVICE_NETWORK_EVENTS = {
    "Timestamp": "datetime", "DeviceId": "string", "DeviceName": "string", "ActionType": "string",
    "RemoteIP": "string", "RemotePort": "int", "RemoteUrl": "string", "LocalIP": "string", "LocalPort": "int",
    "Protocol": "string", "LocalIPType": "string", "RemoteIPType": "string", "InitiatingProcessSHA1": "string",
    "InitiatingProcessSHA256": "string", "InitiatingProcessMD5": "string", "InitiatingProcessFileName": "string",
    "InitiatingProcessFileSize": "long", "InitiatingProcessVersionInfoCompanyName": "string",
    "InitiatingProcessVersionInfoProductName": "string", "InitiatingProcessVersionInfoProductVersion": "string",
    "InitiatingProcessVersionInfoInternalFileName": "string",
    "InitiatingProcessVersionInfoOriginalFileName": "string", "InitiatingProcessVersionInfoFileDescription": "string",
    "InitiatingProcessId": "long", "InitiatingProcessCommandLine": "string",
    "InitiatingProcessCreationTime": "datetime", "InitiatingProcessFolderPath": "string",
    "InitiatingProcessParentFileName": "string", "InitiatingProcessParentId": "long",
    "InitiatingProcessParentCreationTime": "datetime", "InitiatingProcessAccountDomain": "string",
    "InitiatingProcessAccountName": "string", "InitiatingProcessAccountSid": "string",
    "InitiatingProcessAccountUpn": "string", "InitiatingProcessAccountObjectId": "string",
    "InitiatingProcessIntegrityLevel": "string", "InitiatingProcessTokenElevation": "string", "ReportId": "long",
    "AppGuardContainerId": "string", "AdditionalFields": "string", "InitiatingProcessSessionId": "long",
    "IsInitiatingProcessRemoteSession": "bool", "InitiatingProcessRemoteSessionDeviceName": "string",
    "InitiatingProcessRemoteSessionIP": "string",
}

WORST_IPV4 = ["%d.%d.%d.%d" % (100 + i % 156, 100 + i // 156 % 156, 100 + i // 24336 % 156, 255)
              for i in range(5000)]
WORST_IPV6 = ["fd12:3456:%x:%x:abcd:ef01:2345:%x" % (0x1000 + i % 0xefff, 0x1000 + i // 0xefff, 0x1000 + i)
              for i in range(5000)]


def analyse(queries):
    """Kusto.Language's diagnostics for each query (a list of dicts per query)."""
    node = shutil.which("node")
    if node is None or not os.path.exists(PACKAGE):
        missing = "node" if node is None else "dev/kql/node_modules (run dev/kql_deps.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the KQL analyser needs %s" % missing)
        pytest.skip("the KQL analyser needs %s" % missing)
    request = json.dumps({"tables": {"DeviceNetworkEvents": DEVICE_NETWORK_EVENTS}, "queries": queries})
    run = subprocess.run([node, os.path.join(KQL_DIR, "analyze.js")], input=request.encode("utf-8"),
                         capture_output=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr.decode("utf-8", "replace")[-2000:]
    answers = json.loads(run.stdout)
    assert len(answers) == len(queries)
    return answers


def test_every_query_the_app_builds_has_no_diagnostic():
    queries = {}
    for hours in range(1, 721):  # every look-back, one IP of each family
        queries["v4, %d h" % hours] = build_query(["10.0.0.1"], hours)
        queries["v6, %d h" % hours] = build_query(["2001:db8::1"], hours)
    for family, ips in (("v4", WORST_IPV4), ("v6", WORST_IPV6),
                        ("mixed", [ip for pair in zip(WORST_IPV4, WORST_IPV6) for ip in pair])):
        largest = batches(ips)[0]  # the batch maximum: as long as the app lets a query be
        for hours in (1, 24, 720):
            queries["%s, %d IPs, %d h" % (family, len(largest), hours)] = build_query(largest, hours)
    short = ["1.1.%d.%d" % (i // 250, i % 250) for i in range(MAX_BATCH_IPS)]
    assert len(batches(short)[0]) == MAX_BATCH_IPS
    queries["v4, %d short IPs" % MAX_BATCH_IPS] = build_query(batches(short)[0], 720)
    answers = analyse(list(queries.values()))
    problems = {name: found for name, found in zip(queries, answers) if found}
    assert problems == {}


MISTAKES = {
    "misspelt column": ("RemoteIP in~", "RemoteIp in~"),
    "misspelt operator": ("| summarize DeviceCount", "| sumarize DeviceCount"),
    "misspelt function": ("substring(", "substr("),
    "column of another table": ("by IP, DeviceId", "by IP, AccountObjectId"),
    "unclosed list": ('"2001:db8::1")', '"2001:db8::1"'),
    "wrong type": ("ago(24h)", 'ago("24h")'),
}


def test_a_broken_query_fails_the_check():
    query = build_query(["10.0.0.1", "2001:db8::1"], 24)
    broken = {}
    for mistake, (right, wrong) in MISTAKES.items():
        assert right in query, mistake
        broken[mistake] = query.replace(right, wrong)
    good, *bad = analyse([query] + list(broken.values()))
    assert good == []  # the same check that passes the app's query catches each mistake
    assert {mistake for mistake, found in zip(broken, bad) if not found} == set()


def test_every_details_query_has_no_diagnostic_and_a_broken_one_fails():
    queries = [build_details_query(ip, hours) for hours in (1, 24, 168, 720)
               for ip in ("10.0.0.1", "203.0.113.7", "2001:db8::1", "fe80::1")]
    right = build_details_query("10.0.0.1", 24)
    broken = [right.replace("arg_max(Timestamp, DeviceName)", "arg_max(Timestamp, DeviceNam)"),
              right.replace("bin(Timestamp, 1d)", "bin(Timestamp, \"1d\")"),
              right.replace("let Hits", "let Hit")]
    answers = analyse(queries + broken)
    assert answers[:len(queries)] == [[]] * len(queries)
    assert all(answers[len(queries):])  # each mistake is caught by the same check
