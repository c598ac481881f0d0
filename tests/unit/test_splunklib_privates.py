"""The lean loop (search/lean.py) relies on splunklib members outside its public API: each must still
exist in the vendored splunk-sdk, and no other module of the app may use them."""

import pathlib
import re

import pytest
from splunklib.searchcommands import StreamingCommand
from splunklib.searchcommands.internals import RecordWriterV2
from splunklib.searchcommands.search_command import SearchCommand

from defender_ipstats.search import lean

PACKAGE = pathlib.Path(lean.__file__).resolve().parent.parent


class _Command(StreamingCommand):
    def stream(self, records):
        return records


@pytest.mark.parametrize("name", lean.SPLUNKLIB_METHODS)
def test_each_private_method_exists_on_splunklibs_search_command(name):
    assert callable(getattr(SearchCommand, name, None)), name


@pytest.mark.parametrize("name", lean.SPLUNKLIB_ATTRIBUTES)
def test_each_private_attribute_is_set_by_splunklibs_search_command(name):
    assert hasattr(_Command(), name), name


@pytest.mark.parametrize("name", lean.RECORD_WRITER_MEMBERS)
def test_each_record_writer_member_exists(name):
    assert hasattr(RecordWriterV2, name), name


def test_the_lean_loop_uses_no_private_member_it_does_not_declare():
    source = pathlib.Path(lean.__file__).read_text(encoding="utf-8")
    used = set(re.findall(r"\b(?:self|super\(\))\.(_[a-z]\w*)", source))
    own = set(re.findall(r"def (_\w+)", source)) - set(lean.SPLUNKLIB_METHODS)
    assert used - own == set(lean.SPLUNKLIB_PRIVATES), used - own


def test_no_other_module_touches_splunklibs_private_members():
    pattern = re.compile(r"\.(%s)\b" % "|".join(re.escape(name) for name in lean.SPLUNKLIB_PRIVATES))
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name != "lean.py" and pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []
