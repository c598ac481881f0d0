/*
 * TA-defender-ipstats setup page: list, add, edit and delete Defender accounts, set the command's
 * defaults, and test an account's connection (a token from Entra ID, then one API call).
 *
 * Plain JavaScript (no framework): it talks to the app's REST endpoints through Splunk Web's splunkd
 * proxy, /<locale>/splunkd/__raw/servicesNS/nobody/TA-defender-ipstats/defenderipstats/..., with
 * Splunk Web's CSRF header (X-Splunk-Form-Key, from the splunkweb_csrf_token_<port> cookie).
 * Secrets are write-only: the page sends them and is only ever told whether one is stored.
 */
(function () {
    "use strict";

    var APP = "TA-defender-ipstats";
    var CLOUDS = ["global", "us", "eu", "uk", "au", "swa", "ina", "aea", "gcc", "gcc-high", "dod"];
    var FIELDS = ["tenant_id", "client_id", "cloud", "auth", "certificate_thumbprint", "proxy_url", "ca_bundle",
                  "timeout", "api_url", "authority", "scope", "graph_url", "allowed_roles"];
    var state = {accounts: [], settings: {}, editing: null, loads: 0};

    function base() {
        var path = window.location.pathname;
        var cut = path.indexOf("/app/");
        return (cut >= 0 ? path.substring(0, cut) : "/en-US") + "/splunkd/__raw/servicesNS/nobody/" + APP +
            "/defenderipstats/";
    }

    function formKey() {
        var match = document.cookie.match(/(?:^|;\s*)splunkweb_csrf_token_\d+=([^;]+)/);
        return match ? decodeURIComponent(match[1]) : "";
    }

    function call(method, path, data) {
        var options = {method: method, credentials: "same-origin",
                       headers: {"X-Splunk-Form-Key": formKey(), "X-Requested-With": "XMLHttpRequest"}};
        if (data) {
            var body = new URLSearchParams();
            Object.keys(data).forEach(function (key) { body.append(key, data[key]); });
            options.body = body;
        }
        return fetch(base() + path + (path.indexOf("?") >= 0 ? "&" : "?") + "output_mode=json", options)
            .then(function (response) {
                return response.text().then(function (text) {
                    var json;
                    try { json = JSON.parse(text); } catch (e) { json = {error: text}; }
                    if (!response.ok) {
                        var reason = json.error || (json.messages && json.messages[0] && json.messages[0].text) ||
                            ("HTTP " + response.status);
                        throw new Error(reason);
                    }
                    return json;
                });
            });
    }

    function el(tag, attrs, children) {
        var node = document.createElement(tag);
        Object.keys(attrs || {}).forEach(function (key) {
            if (key === "text") { node.textContent = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
        });
        (children || []).forEach(function (child) { node.appendChild(child); });
        return node;
    }

    function status(kind, text) {
        var box = document.getElementById("dips-status");
        box.className = "status " + kind;
        box.textContent = text;
        box.style.display = text ? "block" : "none";
    }

    function row(label, input, hint) {
        var children = [el("label", {"for": input.id, text: label}), input];
        if (hint) { children.push(el("div", {"class": "hint", text: hint})); }
        return el("div", {"class": "row"}, children);
    }

    function input(id, value, type) {
        return el("input", {id: id, name: id, type: type || "text", value: value || "", autocomplete: "off"});
    }

    function select(id, options, value) {
        var node = el("select", {id: id, name: id});
        options.forEach(function (option) {
            var item = el("option", {value: option, text: option});
            if (option === value) { item.setAttribute("selected", "selected"); }
            node.appendChild(item);
        });
        return node;
    }

    function renderAccounts() {
        var table = el("table", {id: "dips-accounts"});
        table.appendChild(el("tr", {}, ["Account", "Cloud", "Tenant", "Client", "Auth", "Credential", "Proxy", "Roles",
                                         "Spent in the last hour", ""]
            .map(function (h) { return el("th", {text: h}); })));
        state.accounts.forEach(function (account) {
            var edit = el("button", {type: "button", "class": "btn dips-edit", "data-account": account.name,
                                     text: "Edit"});
            edit.onclick = function () { renderForm(account); };
            var remove = el("button", {type: "button", "class": "btn dips-delete", "data-account": account.name,
                                       text: "Delete"});
            remove.onclick = function () { deleteAccount(account.name); };
            var test = el("button", {type: "button", "class": "btn dips-test", "data-account": account.name,
                                     text: "Test connection"});
            test.onclick = function () { testAccount(account.name, {}); };
            table.appendChild(el("tr", {"data-account": account.name}, [
                el("td", {text: account.name}), el("td", {text: account.cloud || "global"}),
                el("td", {text: account.tenant_id}), el("td", {text: account.client_id}),
                el("td", {text: account.auth || "secret"}),
                el("td", {text: account.has_secret ? "stored" : "missing"}),
                el("td", {text: account.proxy_url || "(Splunk's proxyConfig)"}),
                el("td", {"class": "dips-roles", text: account.allowed_roles ?
                    account.allowed_roles + " only: answers kept apart, never in the published lookup" :
                    "every role with defenderipstats_use"}),
                el("td", {"class": "dips-spend", text: spendText(account.spend)}),
                el("td", {}, [edit, test, remove])]));
        });
        var holder = document.getElementById("dips-accounts-holder");
        holder.innerHTML = "";
        holder.appendChild(table);
    }

    function renderForm(account) {
        state.editing = account ? account.name : null;
        var a = account || {cloud: "global", auth: "secret", timeout: "30"};
        var form = el("form", {id: "dips-account-form", autocomplete: "off"});
        var title = account ? "Edit account " + account.name : "Add an account";
        var fieldset = el("fieldset", {}, [el("legend", {text: title})]);
        var name = input("dips-name", a.name);
        if (account) { name.setAttribute("readonly", "readonly"); }
        fieldset.appendChild(row("Account name", name, "Used in searches as account=<name>."));
        fieldset.appendChild(row("Tenant ID", input("dips-tenant_id", a.tenant_id)));
        fieldset.appendChild(row("Client ID", input("dips-client_id", a.client_id)));
        fieldset.appendChild(row("Cloud", select("dips-cloud", CLOUDS, a.cloud || "global")));
        fieldset.appendChild(row("Authentication", select("dips-auth", ["secret", "certificate"], a.auth || "secret")));
        var secret = el("textarea", {id: "dips-secret", name: "dips-secret", autocomplete: "off",
                                     placeholder: account && account.has_secret ?
                                         "stored - leave empty to keep it; enter it again to change where it goes"
                                         : "client secret, or PEM private key"});
        fieldset.appendChild(row("Client secret or certificate key", secret,
                                 "Write-only: kept in Splunk's credential store, never shown again. Changing the " +
                                 "tenant, client, cloud, proxy, CA bundle or an override needs it again."));
        fieldset.appendChild(row("Certificate thumbprint (SHA-1)", input("dips-certificate_thumbprint",
                                                                         a.certificate_thumbprint)));
        fieldset.appendChild(row("Proxy URL", input("dips-proxy_url", a.proxy_url),
                                 "e.g. http://proxy.example:3128; empty: Splunk's server.conf [proxyConfig]."));
        fieldset.appendChild(row("Proxy user", input("dips-proxy_user", a.proxy_user)));
        fieldset.appendChild(row("Proxy password", input("dips-proxy_password", "", "password"),
                                 a.has_proxy_credentials ? "Stored - leave empty to keep it." : ""));
        fieldset.appendChild(row("CA bundle (path)", input("dips-ca_bundle", a.ca_bundle)));
        fieldset.appendChild(row("Timeout (seconds)", input("dips-timeout", a.timeout || "30")));
        fieldset.appendChild(row("API URL override", input("dips-api_url", a.api_url)));
        fieldset.appendChild(row("Authority override", input("dips-authority", a.authority)));
        fieldset.appendChild(row("Scope override", input("dips-scope", a.scope)));
        fieldset.appendChild(row("Allowed roles", input("dips-allowed_roles", a.allowed_roles),
                                 "Roles that may use this account, separated by ';'. Empty: every role with " +
                                 "the capability defenderipstats_use. With roles set, what the account learns " +
                                 "is readable by these roles (and admins) only: its cached answers are kept " +
                                 "apart, and the published lookup defenderipstats carries none of them."));
        var save = el("button", {type: "submit", id: "dips-save", "class": "btn btn-primary", text: "Save"});
        var test = el("button", {type: "button", id: "dips-form-test", "class": "btn", text: "Test connection"});
        test.onclick = function () {
            testAccount(document.getElementById("dips-name").value.trim(), collect());
        };
        var cancel = el("button", {type: "button", id: "dips-cancel", "class": "btn", text: "Cancel"});
        cancel.onclick = function () { document.getElementById("dips-form-holder").innerHTML = ""; };
        fieldset.appendChild(el("div", {"class": "row"}, [save, test, cancel]));
        form.appendChild(fieldset);
        form.onsubmit = function (event) { event.preventDefault(); saveAccount(); };
        var holder = document.getElementById("dips-form-holder");
        holder.innerHTML = "";
        holder.appendChild(form);
    }

    function collect() {
        var data = {};
        FIELDS.forEach(function (field) {
            var node = document.getElementById("dips-" + field);
            if (node) { data[field] = node.value.trim(); }
        });
        var secret = document.getElementById("dips-secret").value;
        if (secret) { data.secret = secret; }
        var user = document.getElementById("dips-proxy_user").value.trim();
        var password = document.getElementById("dips-proxy_password").value;
        if (user && password) { data.proxy_user = user; data.proxy_password = password; }
        return data;
    }

    function saveAccount() {
        var data = collect();
        var name = document.getElementById("dips-name").value.trim();
        var request = state.editing ? call("POST", "accounts/" + encodeURIComponent(name), data)
            : call("POST", "accounts", Object.assign({name: name}, data));
        status("", "");
        return request.then(function () {
            status("ok", "Saved account " + name + ".");
            document.getElementById("dips-form-holder").innerHTML = "";
            return load();
        }).catch(function (error) { status("fail", "Not saved: " + error.message); });
    }

    function deleteAccount(name) {
        if (!window.confirm("Delete the account " + name + " and its stored credentials?")) { return; }
        return call("DELETE", "accounts/" + encodeURIComponent(name)).then(function () {
            status("ok", "Deleted account " + name + ".");
            return load();
        }).catch(function (error) { status("fail", "Not deleted: " + error.message); });
    }

    function testAccount(name, data) {
        status("", "");
        var box = document.getElementById("dips-status");
        box.className = "status";
        box.style.display = "block";
        box.textContent = "Testing " + name + "...";
        return call("POST", "accounts/" + encodeURIComponent(name) + "/test", data).then(function (result) {
            status(result.ok ? "ok" : "fail", (result.ok ? "" : "Connection test failed (" + result.stage + "): ") +
                   result.message);
        }).catch(function (error) { status("fail", "Connection test failed: " + error.message); });
    }

    // Every [settings] key of defenderipstats.conf: [key, label, one-line explanation, kind, low, high].
    // The service checks each range again (and names the key when a value is refused).
    var SETTINGS = [
        ["default_account", "Default account", "The account of a search without account=; empty: the one " +
            "configured account.", "account"],
        ["lookback_hours", "Look-back (hours)", "Default lookbackhours: 720 is 30 days, the API's maximum.",
            "number", 1, 720],
        ["backend", "Backend", "ipstats: per IP; hunting: advanced hunting, many IPs a query; auto: either.",
            ["auto", "ipstats", "hunting"]],
        ["max_wait", "Max wait for budget (s)", "How long a search waits for API budget before the rest is " +
            "rate_limited.", "number", 0, 3600],
        ["cache_ttl", "Cache: found (s)", "How long a found answer stays fresh in the cache (86400: a day).",
            "number", 0, 1000000000],
        ["not_seen_ttl", "Cache: not_seen (s)", "How long a not_seen answer stays fresh (3600: an hour).",
            "number", 0, 1000000000],
        ["refresh_min_age", "Refresh: minimum age (s)", "cache=refresh re-fetches only answers older than this.",
            "number", 0, 1000000000],
        ["rate_per_minute", "Per-IP calls a minute", "Microsoft's limit: 100 a minute per app registration " +
            "and tenant.", "number", 1, 100000],
        ["rate_per_hour", "Per-IP calls an hour", "Microsoft's limit: 1,500 an hour.", "number", 1, 1000000],
        ["hunting_rate_per_minute", "Hunting queries a minute", "Graph documents at least 45 a minute per " +
            "tenant.", "number", 1, 100000],
        ["hunting_rate_per_hour", "Hunting queries an hour", "A cautious hourly cap on advanced hunting.",
            "number", 1, 1000000],
        ["user_share_percent", "One user's share (%)", "No user spends more than this share of an hour's " +
            "budgets; 100: no limit per user.", "number", 1, 100],
        ["alert_indexes", "Alert action indexes", "The indexes the alert action may write to, separated " +
            "by ';'.", "text"],
        ["details_ttl", "IP details cache (s)", "How long an IP investigation answer stays fresh.", "number", 0,
            1000000000],
        ["log_level", "Log level", "Of defenderipstats.log.", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]]
    ];

    function settingInput(spec, value) {
        var key = spec[0], kind = spec[3], id = "dips-" + key;
        if (kind === "account") {
            var names = state.accounts.map(function (a) { return a.name; });
            if (names.indexOf(value) < 0) { names.unshift(value); }
            return select(id, names, value);
        }
        if (Array.isArray(kind)) { return select(id, kind, value); }
        var node = input(id, value, kind);
        if (kind === "number") { node.setAttribute("min", spec[4]); node.setAttribute("max", spec[5]); }
        return node;
    }

    function renderSettings() {
        var s = state.settings;
        var shown = SETTINGS.filter(function (spec) { return spec[0] in s; });
        var form = el("form", {id: "dips-settings-form"});
        var fieldset = el("fieldset", {}, [el("legend", {text: "Settings"})]);
        shown.forEach(function (spec) {
            var hint = spec[2] + (spec[3] === "number" ? " From " + spec[4] + " to " + spec[5] + "." : "");
            fieldset.appendChild(row(spec[1], settingInput(spec, s[spec[0]]), hint));
        });
        fieldset.appendChild(el("button", {type: "submit", id: "dips-settings-save", "class": "btn",
                                           text: "Save settings"}));
        form.appendChild(fieldset);
        form.onsubmit = function (event) {
            event.preventDefault();
            var data = {};
            shown.forEach(function (spec) { data[spec[0]] = document.getElementById("dips-" + spec[0]).value; });
            call("POST", "settings", data).then(function () { status("ok", "Saved the settings."); return load(); })
                .catch(function (error) { status("fail", "Settings not saved: " + error.message); });
        };
        var holder = document.getElementById("dips-settings-holder");
        holder.innerHTML = "";
        holder.appendChild(form);
    }

    function spendText(spend) {
        var parts = [];
        [["ipstats", "per-IP"], ["hunting", "hunting"]].forEach(function (api) {
            var users = (spend || {})[api[0]] || {};
            var names = Object.keys(users).sort(function (a, b) { return users[b] - users[a]; });
            if (names.length) {
                parts.push(api[1] + ": " + names.map(function (n) { return n + " " + users[n]; }).join(", "));
            }
        });
        return parts.length ? parts.join("; ") : "nothing";
    }

    function load() {
        return call("GET", "accounts").then(function (data) {
            state.accounts = data.accounts;
            state.settings = data.settings;
            renderAccounts();
            renderSettings();
            state.loads += 1;  // lets a test (or a curious admin) see that the page has been redrawn
            document.getElementById("defenderipstats-setup").setAttribute("data-loaded", String(state.loads));
        }).catch(function (error) { status("fail", "Could not load the accounts: " + error.message); });
    }

    function start(root) {
        root.innerHTML = "";
        var add = el("button", {type: "button", id: "dips-add", "class": "btn btn-primary", text: "Add account"});
        add.onclick = function () { renderForm(null); };
        [el("h2", {text: "Defender accounts"}), el("div", {id: "dips-status", "class": "status",
                                                              style: "display:none"}),
         el("div", {id: "dips-accounts-holder"}), add, el("div", {id: "dips-form-holder"}),
         el("div", {id: "dips-settings-holder"})].forEach(function (node) { root.appendChild(node); });
        return load();
    }

    // Splunk Web renders the dashboard's HTML panel around the time this script runs: wait for it.
    var tries = 0;
    (function wait() {
        var root = document.getElementById("defenderipstats-setup");
        if (root) { start(root); } else if (tries++ < 200) { window.setTimeout(wait, 50); }
    }());
}());
