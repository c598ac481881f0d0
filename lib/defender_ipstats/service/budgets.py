"""The budgets a service request spends: an account registration's shared budget per API, and in front
of it the calling user's share (``user_share_percent``), for the lookups and the IP investigation alike."""

from typing import Dict

from ..core.fairshare import FairShareLimiter, user_budget, user_share

# The budgets this handler process has opened, kept for its life: a search head cluster's budget holds
# slots it claimed ahead in the KV store, which a new object per request would leave unused. Only a
# shortcut: a new process opens them again, and the state that matters is in the KV store or on disk.
_LIMITERS: Dict[tuple, object] = {}
# Graph's quota answers in a row, per app registration: the length of hunting's next back-off. The
# service's own (never a caller's to send or reset); the pause itself is in the shared hunting budget.
QUOTA_STREAKS: Dict[tuple, int] = {}


def per_ip_limits(settings):
    return [(settings.rate_per_minute, 60.0), (settings.rate_per_hour, 3600.0)]


def hunting_limits(settings):
    return [(settings.hunting_rate_per_minute, 60.0), (settings.hunting_rate_per_hour, 3600.0)]


def registration(account) -> tuple:
    return account.tenant_id.lower(), account.client_id.lower()


def caller_budget(ctx, settings, account, api: str, limits):
    """The budget of ``api`` for the account's registration, and in front of it the caller's own share
    of its hourly limit (``user_share_percent``; none at 100 %)."""
    shared = opened(ctx, account, api, limits)
    share = user_share(limits, settings.user_share_percent)
    if share is None:
        return shared
    user = ctx.caller.user
    personal = opened(ctx, account, user_budget(api, user), share, max_batch=1, label=user)
    return FairShareLimiter(shared, personal, user, settings.user_share_percent)


def opened(ctx, account, api: str, limits, max_batch: int = None, label: str = ""):
    """The host's budget, or on a search head cluster the one every member shares in the KV store
    (claimed with the system session), kept open for the process's life."""
    # at the first cold IP: answering from the cache, or describing an account, needs no sqlite3
    from ..splunk.clusterbudget import ClusterWindowLimiter, budget_for

    key = (api,) + registration(account) + (tuple(limits),)
    limiter = _LIMITERS.get(key)
    service = ctx.system_service()
    if limiter is None:
        limiter = budget_for(api, account.tenant_id, account.client_id, limits, service,
                             logger=ctx.logger, max_batch=max_batch, label=label)
        _LIMITERS[key] = limiter
    if isinstance(limiter, ClusterWindowLimiter):
        limiter.store.service = service  # this request's system session (an older one may have expired)
    return limiter
