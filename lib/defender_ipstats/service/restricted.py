"""What is learnt through an account with ``allowed_roles`` stays with the roles allowed to use it.

Such an account's answers live in ``defenderipstats_cache_restricted``, which only the admin roles and
this service read (``metadata/default.meta``); the service hands them to allowed callers only, and the
published lookup carries none of them. Answers the account learnt before an admin limited it sit in the
searchers' collections: the setup page removes them when it saves the roles, and the first request for
the account in each handler process makes sure of it (an admin may edit the .conf file by hand).
"""

from typing import Set

from ..splunk import published
from ..splunk.kvcache import COLLECTION, describe_failure, forget_account

# Accounts whose answers this process has removed from the searchers' collections (a shortcut only:
# a new process removes them again, once).
_KEPT_APART: Set[str] = set()


def keep_apart(service, account_name: str, logger=None) -> bool:
    """Removes the account's answers from the cache searchers read and from the published lookup."""
    try:
        for collection in (COLLECTION, published.COLLECTION):
            forget_account(service, account_name, collection)
    except Exception as error:  # the lookup still answers; the next request tries again
        if logger is not None:
            logger.warning("could not remove the answers of restricted account %s from the searchers' "
                           "collections: %s", account_name, describe_failure(error))
        return False
    _KEPT_APART.add(account_name)
    if logger is not None:
        logger.info("account %s has allowed_roles: its answers are kept in the admin-only collection "
                    "defenderipstats_cache_restricted, and the published lookup carries none of them", account_name)
    return True


def ensure_apart(service, account, logger=None) -> None:
    """Once per process and restricted account: ``keep_apart``."""
    if account.restricted and account.name not in _KEPT_APART:
        keep_apart(service, account.name, logger)
