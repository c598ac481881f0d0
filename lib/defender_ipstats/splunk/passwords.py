"""The app's credentials in splunkd's storage/passwords (client secrets, proxy credentials, tokens)."""

from splunklib import binding

from .. import APP_NAME
from ..core.errors import CredentialError, SplunkdError
from .rest import get_json, http_status, rest_failure

CREDENTIAL_REALM = APP_NAME
PROXY_REALM = APP_NAME + "-proxy"


def credential_name(realm: str, username: str) -> str:
    """storage/passwords entry name: ``realm:username:`` with ':' escaped as splunkd does."""
    return "%s:%s:" % (realm.replace(":", "\\:"), username.replace(":", "\\:"))


class CredentialStore:
    """storage/passwords entries, as splunkd serves them to ``service``'s session."""

    def __init__(self, service):
        self.service = service

    def password(self, realm: str, username: str, what: str = "credential"):
        """The clear password of ``realm:username:`` in storage/passwords, or None when there is none."""
        name = credential_name(realm, username)
        path = "storage/passwords/%s" % binding.UrlEncoded(name, encode_slash=True)
        try:
            data = get_json(self.service, path)
        except binding.HTTPError as error:
            status = http_status(error)
            if status == 404:
                return None
            if status == 403:
                raise CredentialError(
                    "This user may not read the %s of account '%s' (splunkd answered 403); "
                    "ask an admin to grant access to the app's credential." % (what, username)
                )
            raise SplunkdError(rest_failure("read the %s" % what, error))
        entries = data.get("entry") or []
        return (entries[0].get("content") or {}).get("clear_password") if entries else None

    def secret(self, account: str, what: str = "client secret") -> str:
        secret = self.password(CREDENTIAL_REALM, account, what)
        if secret is None:
            raise CredentialError(
                "No %s is stored for account '%s': add it to storage/passwords with "
                "realm %s and username %s." % (what, account, CREDENTIAL_REALM, account)
            )
        if not secret:
            raise CredentialError("The %s stored for account '%s' is empty." % (what, account))
        return secret

    def store_password(self, realm: str, username: str, password: str) -> None:
        """Create or replace ``realm:username:`` in storage/passwords (the app's namespace)."""
        try:
            self.service.post("storage/passwords", name=username, realm=realm, password=password)
        except binding.HTTPError as error:
            if http_status(error) != 409:
                raise SplunkdError(rest_failure("store a credential", error))
            name = binding.UrlEncoded(credential_name(realm, username), encode_slash=True)
            try:
                self.service.post(binding.UrlEncoded("storage/passwords/%s" % name, skip_encode=True),
                                  password=password)
            except binding.HTTPError as again:
                raise SplunkdError(rest_failure("store a credential", again))

    def delete_password(self, realm: str, username: str) -> bool:
        name = binding.UrlEncoded(credential_name(realm, username), encode_slash=True)
        try:
            self.service.delete(binding.UrlEncoded("storage/passwords/%s" % name, skip_encode=True))
            return True
        except binding.HTTPError as error:
            if http_status(error) == 404:
                return False
            raise SplunkdError(rest_failure("delete a credential", error))

    def proxy_credentials(self, account: str):
        """``<proxy user>:<proxy password>`` for the account's proxy, or None."""
        return self.password(PROXY_REALM, account, "proxy credentials") or None

