"""The setup page in a real browser (Debian's headless Chromium driven by Selenium), served at Splunk
Web's URL shapes by the Splunk Web stand-in, talking to the app's REST handler in the splunkd stand-in,
which signs in to the Entra ID stand-in and calls the Defender stand-in.

An admin opens the app (and is sent to the setup view), adds an account, tests its connection, sees
each failure reason (bad secret, missing Ip.Read.All, proxy refused, TLS failure), edits and deletes
it, and sets the defaults. A screenshot is kept in build/screenshots/.
"""

import json
import os
import time

import pytest
from browser import SCREENSHOTS, headless_chromium

from harness import APP, APP_ROOT, events
from standins.defender import DEFAULT_CLIENT_ID, DEFAULT_SECRET, DEFAULT_TENANT, IP_READ_ALL, THREAT_HUNTING_READ_ALL
from standins.proxy import ConnectProxy
from standins.splunkweb import SplunkWebStandin


@pytest.fixture
def browser():
    driver = headless_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def web(bare_app):
    standin = SplunkWebStandin(bare_app.splunkd, APP, APP_ROOT).start()
    try:
        yield standin
    finally:
        standin.stop()


def _wait(driver, condition, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = condition()
        except Exception:  # the page is still being rebuilt
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s; page text: %s" % (what, driver.find_element("tag name",
                                                                                               "body").text[-2000:]))


def _status(driver):
    return driver.find_element("id", "dips-status")


def _wait_status(driver, previous=None):
    """The result box once it shows a final result (not "Testing ...")."""
    def ready():
        # class and text read together: the page changes them between two WebDriver calls
        kind, text = driver.execute_script(
            "var b = document.getElementById('dips-status'); return [b.className, b.textContent];")
        if kind in ("status ok", "status fail") and text and text != previous:
            return kind.split()[-1], text
        return None
    return _wait(driver, ready, what="a result")


def _fill(driver, field, value):
    node = driver.find_element("id", "dips-" + field)
    node.clear()
    if value:
        node.send_keys(value)


def _select(driver, field, value):
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "dips-" + field)).select_by_value(value)


def _loads(driver):
    return int(driver.find_element("id", "defenderipstats-setup").get_attribute("data-loaded") or 0)


def _redrawn(driver, before):
    """Wait until the page has reloaded its accounts since ``before`` (a _loads value)."""
    _wait(driver, lambda: _loads(driver) > before, what="the page to redraw")


def _submit(driver, button, previous):
    """Press ``button`` and wait for a new status (not ``previous``) and the page redrawn after it."""
    before = _loads(driver)
    driver.find_element("id", button).click()
    result = _wait_status(driver, previous)
    if result[0] == "ok":
        _redrawn(driver, before)
    return result


def _form_test(driver):
    previous = _status(driver).text
    driver.find_element("id", "dips-form-test").click()
    return _wait_status(driver, previous)


def test_admin_adds_tests_edits_and_deletes_an_account(browser, web, bare_app, tmp_path):
    app, driver, defender = bare_app, browser, bare_app.defender
    driver.get(web.base_url + "/%s/static/app/%s/defenderipstats_setup.css" % ("en-US", APP))
    for name, value in web.login("admin", "changeme").items():
        driver.add_cookie({"name": name, "value": value, "path": "/"})

    # The app is not configured yet: Splunk Web sends the admin to its setup view.
    driver.get(web.base_url + "/en-US/app/%s/" % APP)
    assert driver.current_url.endswith("/en-US/app/%s/defenderipstats_setup" % APP)
    _redrawn(driver, 0)
    assert driver.find_elements("css selector", "#dips-accounts tr[data-account]") == []

    # Add an account (the stand-ins' URLs as overrides, their CA as ca_bundle).
    driver.find_element("id", "dips-add").click()
    _fill(driver, "name", "contoso")
    _fill(driver, "tenant_id", DEFAULT_TENANT)
    _fill(driver, "client_id", DEFAULT_CLIENT_ID)
    _select(driver, "cloud", "eu")
    _fill(driver, "secret", DEFAULT_SECRET)
    _fill(driver, "api_url", defender.base_url)
    _fill(driver, "authority", defender.authority())
    _fill(driver, "ca_bundle", defender.ca_bundle)
    before = _loads(driver)
    driver.find_element("id", "dips-save").click()
    assert _wait_status(driver) == ("ok", "Saved account contoso.")
    _redrawn(driver, before)
    row = _wait(driver, lambda: driver.find_element("css selector", '#dips-accounts tr[data-account="contoso"]'),
                what="the new row")
    assert "eu" in row.text and "stored" in row.text
    assert DEFAULT_SECRET not in driver.page_source  # write-only: never shown back
    assert app.splunkd.password(APP, "contoso") == DEFAULT_SECRET
    assert app.splunkd.conf("defenderipstats_accounts", "contoso")["cloud"] == "eu"

    # Test connection: a token, then one API call.
    row.find_element("css selector", "button.dips-test").click()
    kind, text = _wait_status(driver)
    assert kind == "ok" and text.startswith("Connected"), text
    assert defender.api_calls() == 1 and defender.token_calls(status=200) == 1

    # Each failure, with its exact reason, from the edit form (unsaved values are tested as typed).
    row.find_element("css selector", "button.dips-edit").click()
    _fill(driver, "secret", "not-the-secret")
    kind, text = _form_test(driver)
    assert kind == "fail" and "sign-in" in text and "the client secret is wrong" in text and "7000215" in text, text

    _fill(driver, "secret", "")
    defender.set_roles(DEFAULT_CLIENT_ID, [THREAT_HUNTING_READ_ALL])
    kind, text = _form_test(driver)
    assert kind == "fail" and "Defender refused access (403)" in text and "Ip.Read.All" in text, text
    defender.set_roles(DEFAULT_CLIENT_ID, [IP_READ_ALL, THREAT_HUNTING_READ_ALL])

    # A changed destination is tested only with the credential typed in the form: the stored secret is
    # never sent to a host the form names.
    with ConnectProxy(refuse=403) as refusing:
        _fill(driver, "proxy_url", refusing.url)
        kind, text = _form_test(driver)
        assert kind == "fail" and "Enter the client secret" in text and "proxy_url" in text, text
        assert refusing.count() == 0
        _fill(driver, "secret", DEFAULT_SECRET)
        kind, text = _form_test(driver)
        assert refusing.count(status=403) >= 1
    assert kind == "fail" and "the proxy refused the connection (403" in text, text
    _fill(driver, "proxy_url", "")

    _fill(driver, "ca_bundle", "")
    kind, text = _form_test(driver)
    assert kind == "fail" and "TLS certificate verification failed" in text, text
    _fill(driver, "ca_bundle", defender.ca_bundle)
    kind, text = _form_test(driver)
    assert kind == "ok", text
    _fill(driver, "secret", "")

    os.makedirs(SCREENSHOTS, exist_ok=True)
    shot = os.path.join(SCREENSHOTS, "setup_page.png")
    assert driver.save_screenshot(shot)
    with open(shot, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"

    # Save an edit: changing where the credential goes needs it again; the stored secret is kept when
    # only other fields change and the secret field stays empty.
    _select(driver, "cloud", "global")
    driver.find_element("id", "dips-save").click()
    kind, text = _wait_status(driver)
    assert kind == "fail" and "Changing cloud" in text and "enter the client secret" in text, text
    assert app.splunkd.conf("defenderipstats_accounts", "contoso")["cloud"] == "eu"
    _select(driver, "cloud", "eu")
    _fill(driver, "timeout", "45")
    assert _submit(driver, "dips-save", text) == ("ok", "Saved account contoso.")
    assert app.splunkd.conf("defenderipstats_accounts", "contoso")["timeout"] == "45"
    assert app.splunkd.password(APP, "contoso") == DEFAULT_SECRET

    # The defaults.
    _select(driver, "default_account", "contoso")
    _fill(driver, "lookback_hours", "168")
    assert _submit(driver, "dips-settings-save", "Saved account contoso.") == ("ok", "Saved the settings.")
    settings = app.splunkd.conf("defenderipstats", "settings")
    assert (settings["default_account"], settings["lookback_hours"]) == ("contoso", "168")
    # Every [settings] key is on the page, with its explanation; each is range-checked by the service.
    from defender_ipstats.core.settings import Settings

    for key in Settings.__dataclass_fields__:
        node = driver.find_element("id", "dips-" + key)
        hint = node.find_element("xpath", "following-sibling::div[@class='hint']").text
        assert hint.strip(), key
    _fill(driver, "user_share_percent", "101")
    assert driver.execute_script("return document.getElementById('dips-user_share_percent').checkValidity()") \
        is False  # the browser says so first; past it (novalidate), the service refuses it too
    driver.execute_script("document.getElementById('dips-settings-form').setAttribute('novalidate', '')")
    driver.find_element("id", "dips-settings-save").click()
    kind, text = _wait_status(driver, "Saved the settings.")
    assert kind == "fail" and "user_share_percent must be a percentage from 1 to 100" in text, text
    _fill(driver, "user_share_percent", "30")
    _fill(driver, "hunting_rate_per_hour", "600")
    assert _submit(driver, "dips-settings-save", text) == ("ok", "Saved the settings.")
    settings = app.splunkd.conf("defenderipstats", "settings")
    assert (settings["user_share_percent"], settings["hunting_rate_per_hour"]) == ("30", "600")
    # What each user spent this hour, per account.
    assert driver.find_element("css selector", '#dips-accounts tr[data-account="contoso"] td.dips-spend').text \
        == "nothing"
    run = app.search(["field=src_ip", "backend=ipstats", "account=contoso"], [events(["192.0.2.44"])])
    assert run.errors == [], run.errors
    driver.refresh()
    _wait(driver, lambda: driver.find_elements("css selector", '#dips-accounts tr[data-account="contoso"]'),
          what="the accounts after a reload")
    assert driver.find_element("css selector", '#dips-accounts tr[data-account="contoso"] td.dips-spend').text \
        == "per-IP: admin 1"

    # Delete: the stanza and its credential go.
    driver.execute_script("window.confirm = function () { return true; };")
    driver.find_element("css selector", '#dips-accounts tr[data-account="contoso"] button.dips-delete').click()
    assert _wait_status(driver, "Saved the settings.") == ("ok", "Deleted account contoso.")
    _wait(driver, lambda: not driver.find_elements("css selector", '#dips-accounts tr[data-account="contoso"]'),
          what="the row to go")
    assert app.splunkd.password(APP, "contoso") is None
    # Every REST call of the page went through Splunk Web's proxy, to the exposed endpoints only.
    assert web.proxied and all("/defenderipstats/" in path for _, path, _ in web.proxied)


def test_the_setup_endpoints_are_for_admins_and_never_return_secrets(web, bare_app):
    import urllib.error
    import urllib.request

    app = bare_app
    app.splunkd.add_user("analyst", "analyst-pw", roles=["defenderipstats_user"])
    cookies = web.login("analyst", "analyst-pw")
    header = "; ".join("%s=%s" % item for item in cookies.items())
    request = urllib.request.Request(web.base_url + "/en-US/splunkd/__raw/servicesNS/nobody/%s/defenderipstats/"
                                     "accounts?output_mode=json" % APP, headers={"Cookie": header})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403 and b"defenderipstats_admin" in refused.value.read()

    # An admin's POST without Splunk Web's CSRF header is refused before it reaches splunkd.
    admin = web.login("admin", "changeme")
    post = urllib.request.Request(web.base_url + "/en-US/splunkd/__raw/servicesNS/nobody/%s/defenderipstats/"
                                  "accounts" % APP, data=b"name=x&tenant_id=t&client_id=c&secret=s", method="POST",
                                  headers={"Cookie": "; ".join("%s=%s" % item for item in admin.items())})
    with pytest.raises(urllib.error.HTTPError) as csrf:
        urllib.request.urlopen(post, timeout=30)
    assert csrf.value.code == 401

    app.configure_account("contoso")
    listing = urllib.request.Request(web.base_url + "/en-US/splunkd/__raw/servicesNS/nobody/%s/defenderipstats/"
                                     "accounts?output_mode=json" % APP,
                                     headers={"Cookie": "; ".join("%s=%s" % item for item in admin.items())})
    with urllib.request.urlopen(listing, timeout=30) as response:
        body = response.read().decode()
    account = json.loads(body)["accounts"][0]
    assert account["name"] == "contoso" and account["has_secret"] is True
    assert DEFAULT_SECRET not in body
