"""The shared XML parser: the fast standard-library path and defusedxml agree, and no DTD slips past either."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeElementTree
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.formats import _xml
from transforms.formats._xml import parse_xml
from transforms.model import ITEM_ANNOTATION, Rejection

UNSAFE = Rejection("x.xml", "xml_unsafe", "refused: DTDForbidden", ITEM_ANNOTATION)


def _tree(element: ElementTree.Element):
    return (element.tag, dict(element.attrib), element.text, element.tail, [_tree(child) for child in element])


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_tag = st.builds(lambda first, rest: first + rest, st.sampled_from(_LETTERS),
                 st.text(_LETTERS + "0123456789.-", max_size=8))


@st.composite
def _documents(draw, depth=0):
    tag = draw(_tag)
    attributes = draw(st.dictionaries(_tag, _text, max_size=2))
    opening = tag + "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items())
    inner = escape(draw(_text))
    if depth < 3:
        for child in draw(st.lists(_documents(depth + 1), max_size=3)):
            inner += child + escape(draw(_text))
    if draw(st.booleans()):
        inner += f"<!-- {draw(st.sampled_from(['note', 'a <!DOCTYPE> in a comment', '']))} -->"
    return f"<{opening}>{inner}</{tag}>"


@given(_documents(), st.sampled_from(["", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>\n']),
       st.booleans())
def test_the_fast_path_builds_the_tree_defusedxml_builds(document, declaration, bom):
    data = ("\ufeff" if bom else "").encode("utf-8") + (declaration + document).encode("utf-8")
    fast = parse_xml("x.xml", data)
    assert isinstance(fast, ElementTree.Element)
    assert _tree(fast) == _tree(SafeElementTree.fromstring(data, forbid_dtd=True))


@pytest.mark.parametrize("data, fast", [
    (b"<annotation><filename>a.jpg</filename></annotation>", True),
    (b'<?xml version="1.0" encoding="utf-8"?><a/>', True),
    (b"<a><![CDATA[ x < y ]]><!-- c --></a>", True),
    (b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', False),
    (b"<a><![CDATA[ <!DOCTYPE a> ]]></a>", False),  # merely looks like one: defusedxml parses it
    ('<?xml version="1.0" encoding="utf-16"?><a/>'.encode("utf-16"), False),
    (b'<?xml version="1.0" encoding="cp037"?><a/>', False),  # EBCDIC: a DOCTYPE would not be ASCII bytes
    (b'<?xml version="1.0" encoding=utf-8?><a/>', False),  # an encoding we cannot read for sure
])
def test_only_ascii_documents_without_declarations_take_the_fast_path(data, fast):
    assert _xml._without_declarations(data) is fast


@pytest.mark.parametrize("encoding, reason", [
    ("utf-16", "xml_unsafe"), ("utf-16-le", "xml_malformed"), ("utf-16-be", "xml_malformed"), ("utf-32", "xml_malformed"),
])
def test_a_dtd_in_a_wide_encoding_is_still_refused(encoding, reason):
    text = f'<?xml version="1.0" encoding="{encoding}"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'
    assert parse_xml("x.xml", text.encode(encoding)).reason == reason


def test_undeclared_entities_and_bad_markup_are_malformed_on_the_fast_path():
    assert parse_xml("x.xml", b"<a>&e;</a>").reason == "xml_malformed"
    assert parse_xml("x.xml", b"<a><b></a>").reason == "xml_malformed"
