"""Safe parsing of untrusted XML, shared by the XML formats (Pascal VOC, CVAT)."""
from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ElementTree
from typing import Union

import defusedxml
import defusedxml.ElementTree as SafeElementTree

from transforms.model import ITEM_ANNOTATION, Rejection

# Encodings in which every markup declaration is spelled in ASCII bytes, so a byte search finds it.
_ASCII_SUPERSETS = frozenset(["utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1"])
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
# "<!" starting anything but a comment or CDATA: a DOCTYPE, or a declaration that only belongs in one.
_DECLARATION = re.compile(rb"<!(?!--|\[CDATA\[)")


def parse_xml(source: str, data: bytes) -> Union[ElementTree.Element, Rejection]:
    """The root element of `data`, or the file's rejection: `xml_unsafe` or `xml_malformed`."""
    try:
        if _without_declarations(data):
            # Nothing declared, so nothing to expand or fetch: the standard library's C parser, several
            # times faster than defusedxml's Python-level one, parses it to the same tree.
            return ElementTree.fromstring(data)
        # forbid_dtd: no DOCTYPE at all, so no entity can be declared, expanded or fetched.
        return SafeElementTree.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as error:
        return Rejection(source, "xml_unsafe", f"refused: {type(error).__name__}", ITEM_ANNOTATION)
    except (ElementTree.ParseError, ValueError, LookupError) as error:  # LookupError: unknown encoding
        return Rejection(source, "xml_malformed", str(error).splitlines()[0][:200], ITEM_ANNOTATION)


def _without_declarations(data: bytes) -> bool:
    """Is `data` in an ASCII-compatible encoding and free of "<!" declarations (DOCTYPE, ENTITY)?

    False for anything else (UTF-16, an exotic declared encoding), which then goes through defusedxml.
    """
    head = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
    if b"\x00" in head[:4] or head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return False
    if head.startswith(b"<?xml"):
        declaration = head[: head.find(b"?>") + 1]
        if b"encoding" in declaration:
            named = _ENCODING.search(declaration)
            if named is None or named.group(1).decode("ascii").lower().replace("_", "-") not in _ASCII_SUPERSETS:
                return False
    return _DECLARATION.search(data) is None
