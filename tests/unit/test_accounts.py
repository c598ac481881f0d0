"""The account directory: which account a caller means, and what a caller who may not use it is told."""

import pytest

from defender_ipstats.core.accounts import AccountDirectory, NotAllowed
from defender_ipstats.core.errors import ConfigurationError

OPEN = {"tenant_id": "t1", "client_id": "c1"}
LIMITED = {"tenant_id": "t2", "client_id": "c2", "allowed_roles": "soc_tier2; soc_admin"}


def directory():
    return AccountDirectory({"open": OPEN, "limited": LIMITED})


def test_an_allowed_role_gets_the_limited_account():
    account = directory().resolve("limited", roles=["user", "soc_admin"])
    assert account.name == "limited" and account.restricted and account.allowed_roles == ("soc_tier2", "soc_admin")
    assert not directory().resolve("open", roles=["user"]).restricted


def test_to_a_non_admin_an_account_not_theirs_reads_as_one_that_does_not_exist():
    errors = []
    for name in ("limited", "nosuch"):
        with pytest.raises(ConfigurationError) as caught:
            directory().resolve(name, roles=["defenderipstats_user"])
        errors.append(str(caught.value).replace(name, "X"))
        assert not isinstance(caught.value, NotAllowed)
    assert errors[0] == errors[1] and errors[0].startswith("Unknown account 'X'")


def test_an_admin_is_told_which_it_is():
    with pytest.raises(NotAllowed, match="allowed_roles"):
        directory().resolve("limited", roles=["admin"], list_names=True)
    with pytest.raises(ConfigurationError, match=r"Unknown account 'nosuch'. Configured accounts: limited, open\."):
        directory().resolve("nosuch", roles=["admin"], list_names=True)


def test_the_default_accounts_name_is_not_given_to_a_caller_who_may_not_use_it():
    with pytest.raises(ConfigurationError) as caught:
        directory().resolve("", default_account="limited", roles=["defenderipstats_user"])
    assert "limited" not in str(caught.value) and "account=<name>" in str(caught.value)
    assert directory().resolve("", default_account="open", roles=["user"]).name == "open"


def test_without_roles_no_role_check_is_made():
    assert directory().resolve("limited").name == "limited"  # the service's own, e.g. the setup page's test
