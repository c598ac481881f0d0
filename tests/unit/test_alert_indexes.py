"""alert_indexes: which indexes the alert action may write to (core.alert_indexes)."""

import pytest

from defender_ipstats.core.alert_indexes import parse_alert_indexes
from defender_ipstats.core.errors import ConfigurationError
from defender_ipstats.core.settings import Settings


def test_unset_or_empty_means_main_only():
    assert parse_alert_indexes(None) == ("main",)
    assert parse_alert_indexes("  ") == ("main",)
    assert parse_alert_indexes(";") == ("main",)
    assert Settings.from_conf({}).alert_indexes == "main"


def test_a_list_is_split_on_semicolons_and_trimmed():
    assert parse_alert_indexes(" main ; security_enrichment;soc-2 ") == ("main", "security_enrichment", "soc-2")
    assert Settings.from_conf({"alert_indexes": " a;b "}).alert_indexes == "a;b"


@pytest.mark.parametrize("text", ["main,summary", "_internal", "*", "Main", "main;notable index"])
def test_anything_but_index_names_is_one_clear_error(text):
    with pytest.raises(ConfigurationError) as refused:
        parse_alert_indexes(text)
    assert "alert_indexes" in str(refused.value) and "';'" in str(refused.value)


def test_a_bad_list_never_stops_a_search():
    """Settings keep the text as written: only the alert action parses (and refuses) it."""
    assert Settings.from_conf({"alert_indexes": "_internal"}).alert_indexes == "_internal"
