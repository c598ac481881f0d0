"""The hunting query text, without servers."""

import re

import pytest

from defender_ipstats.hunting import build_query


def test_query_lists_canonical_ips_and_the_mapped_ipv4_form():
    query = build_query(["10.0.0.1", "2001:db8::1"], 24)
    assert "ago(24h)" in query
    assert 'in~ ("10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1")' in query
    assert "count()" in query and "dcount" not in query  # exact distinct devices


@pytest.mark.parametrize("bad", ['10.0.0.1") | take 1 //', "2001:DB8::1", "::ffff:1.2.3.4", "1.2.3.4 ", ""])
def test_query_refuses_anything_but_canonical_ips(bad):
    with pytest.raises(ValueError):
        build_query(["10.0.0.1", bad], 720)


@pytest.mark.parametrize("hours", [0, 721, -5])
def test_query_refuses_lookback_out_of_range(hours):
    with pytest.raises(ValueError):
        build_query(["10.0.0.1"], hours)


def test_query_text_has_only_safe_characters():
    query = build_query(["10.%d.%d.1" % (i, j) for i in range(3) for j in range(3)], 720)
    assert re.fullmatch(r'[A-Za-z0-9 |()"=~:.,>!_-]+', query.replace("\n", ""))
