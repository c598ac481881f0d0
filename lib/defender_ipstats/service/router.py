"""The privileged service's front door: one decoded request of splunkd's persistent protocol in, one
reply out. Routing is by the restmap.conf stanza splunkd matched (``restmap.name``, whose
``capability`` splunkd has already checked) and the ``path_info`` below it: never by searching the
path, so no path can reach a handler whose capability the caller lacks.

    [script:defenderipstats_lookup]    defenderipstats_use    GET (describe) / POST (lookups)
    [script:defenderipstats_accounts]  defenderipstats_admin  GET, POST; <name>: POST, DELETE;
                                                              <name>/test: POST
    [script:defenderipstats_settings]  defenderipstats_admin  GET, POST
    [script:defenderipstats_details]   defenderipstats_use    POST (one IP's devices and days)
"""

import json

from ..core.accounts import NotAllowed
from ..core.errors import AuthenticationError, ConfigurationError, CredentialError, DefenderIpStatsError, SplunkdError
from ..splunk.logs import one_line
from . import admin, details, lookups
from .context import RequestContext

LOOKUP, ACCOUNTS, SETTINGS = "script:defenderipstats_lookup", "script:defenderipstats_accounts", \
    "script:defenderipstats_settings"
DETAILS = "script:defenderipstats_details"


def reply(status: int, body: dict) -> dict:
    return {"status": status, "payload": json.dumps(body), "headers": {"Content-Type": "application/json"}}


def error_reply(error: Exception) -> dict:
    if isinstance(error, NotAllowed):  # before ConfigurationError: a caller refused by allowed_roles
        return reply(403, {"error": str(error), "kind": "forbidden"})
    if isinstance(error, AuthenticationError):
        return reply(502, {"error": str(error), "kind": "authentication"})
    if isinstance(error, (ConfigurationError, CredentialError)):
        return reply(400, {"error": str(error), "kind": "configuration"})
    if isinstance(error, SplunkdError):
        return reply(503, {"error": str(error), "kind": "splunkd"})
    return reply(500, {"error": "internal error in the app's service (%s); see defenderipstats.log"
                       % type(error).__name__, "kind": "internal"})


def handle(request: dict, logger) -> dict:
    """Entry point of bin/defenderipstats_rest.py; every failure is an answer, never a dead handler."""
    ctx = RequestContext(request, logger)
    stanza = str((request.get("restmap") or {}).get("name") or "")
    try:
        if stanza == LOOKUP:
            return _lookup(ctx)
        if stanza == ACCOUNTS:
            return _accounts(ctx)
        if stanza == SETTINGS:
            return _settings(ctx)
        if stanza == DETAILS:
            return _details(ctx)
        return reply(404, {"error": "unknown endpoint"})
    except Exception as error:
        if isinstance(error, DefenderIpStatsError):
            logger.warning("%s %s by user=%s refused: %s", ctx.method, stanza, ctx.user, error)
        else:
            logger.exception("%s %s by user=%s failed", ctx.method, stanza, ctx.user)
        return error_reply(error)


def _lookup(ctx: RequestContext) -> dict:
    if ctx.path_info:
        return reply(404, {"error": "unknown endpoint"})
    if ctx.method == "GET":
        return reply(200, lookups.describe(ctx))
    if ctx.method == "POST":
        return reply(200, lookups.lookup(ctx))
    return reply(405, {"error": "method not allowed"})


def _details(ctx: RequestContext) -> dict:
    if ctx.path_info:
        return reply(404, {"error": "unknown endpoint"})
    if ctx.method == "POST":
        return reply(200, details.details(ctx))
    return reply(405, {"error": "method not allowed"})


def _accounts(ctx: RequestContext) -> dict:
    parts = ctx.path_info.split("/") if ctx.path_info else []
    conf, credentials, user, form = ctx.conf, ctx.credentials, ctx.user, ctx.form
    if not parts:
        if ctx.method == "GET":
            return reply(200, admin.list_accounts(conf, credentials))
        if ctx.method == "POST":
            name = form.get("name", "").strip()
            ctx.logger.info("account %s added by user=%s", one_line(name), user)
            return reply(201, admin.save_account(conf, credentials, name, form, create=True))
    elif len(parts) == 1:
        if ctx.method == "POST":
            ctx.logger.info("account %s changed by user=%s", parts[0], user)
            return reply(200, admin.save_account(conf, credentials, parts[0], form, create=False))
        if ctx.method == "DELETE":
            ctx.logger.info("account %s deleted by user=%s", parts[0], user)
            return reply(200, admin.delete_account(conf, credentials, parts[0]))
    elif len(parts) == 2 and parts[1] == "test":
        if ctx.method == "POST":
            result = admin.test_connection(conf, credentials, parts[0], form)
            ctx.logger.info("connection test of account %s by user=%s: %s", parts[0], user,
                            "ok" if result["ok"] else result["stage"] + " failed")
            return reply(200, result)
    else:
        return reply(404, {"error": "unknown endpoint"})
    return reply(405, {"error": "method not allowed"})


def _settings(ctx: RequestContext) -> dict:
    if ctx.path_info:
        return reply(404, {"error": "unknown endpoint"})
    if ctx.method == "GET":
        return reply(200, admin.get_settings(ctx.conf))
    if ctx.method == "POST":
        ctx.logger.info("settings changed by user=%s: %s", ctx.user,
                        sorted(k for k in ctx.form if k != "output_mode"))
        return reply(200, admin.save_settings(ctx.conf, ctx.form))
    return reply(405, {"error": "method not allowed"})
