"""Splunk's built-in roles and their capabilities (a small but real subset)."""

from __future__ import annotations

from typing import Dict, List

_USER_CAPS = [
    "change_own_password", "get_metadata", "get_typeahead", "input_file", "list_inputs",
    "output_file", "request_remote_tok", "rest_apps_view", "rest_properties_get",
    "rest_properties_set", "schedule_search", "search", "list_all_objects",
]
_POWER_CAPS = _USER_CAPS + [
    "embed_report", "rtsearch", "schedule_rtsearch", "edit_sourcetypes", "accelerate_search",
]
_ADMIN_CAPS = _POWER_CAPS + [
    "admin_all_objects", "edit_storage_passwords", "list_storage_passwords", "edit_server",
    "edit_user", "edit_roles", "list_settings", "edit_kvstore", "list_users", "list_roles",
    "license_edit", "restart_splunkd", "delete_messages", "edit_token_http", "list_tokens_all",
    "edit_tokens_all", "dispatch_rest_to_indexers", "edit_local_apps", "install_apps", "edit_tcp",
]
DEFAULT_ROLES: Dict[str, List[str]] = {
    "admin": sorted(set(_ADMIN_CAPS)),
    "power": sorted(set(_POWER_CAPS)),
    "user": sorted(set(_USER_CAPS)),
    "splunk-system-role": sorted(set(_ADMIN_CAPS)),
}
