"""Safe parsing of untrusted XML, shared by the XML formats (Pascal VOC, CVAT)."""
from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ElementTree
from typing import Optional, Union

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


# --- telling the XML formats apart from a file's first bytes ------------------------------------------

VOC, CVAT, LABELME_XML = "voc", "cvat", "labelme_xml"
XML_KIND_NAMES = {VOC: "Pascal VOC", CVAT: "CVAT for images", LABELME_XML: "MIT LabelMe XML"}
# Formats this converter reads; MIT LabelMe XML (the LabelMe web tool's own) is recognised only to say so.
SUPPORTED_XML_KINDS = (VOC, CVAT)

_OUTLINE_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)|<\?.*?(?:\?>|\Z)|<!\[CDATA\[.*?(?:\]\]>|\Z)|<!.*?(?:>|\Z)"  # skipped
    r"|<(/?)([A-Za-z_][\w.:-]*)[^<>]*?(/?)>",  # a start, end or empty element tag
    re.S,
)
_OUTLINE_DEPTH = 4  # element paths kept down to this depth (annotation/object/polygon/pt)


class XmlOutline(tuple):
    """(root element name, frozenset of element paths seen, as tuples of names from the root)."""

    @property
    def root(self) -> str:
        return self[0]

    def has(self, *path: str) -> bool:
        return (self.root, *path) in self[1]


def xml_outline(head: bytes) -> Optional[XmlOutline]:
    """The elements of an XML file's first bytes, without parsing it (the head may end anywhere; nothing is
    declared, expanded or fetched): its root's name and the paths below it, or None when no element starts."""
    if head.startswith(codecs.BOM_UTF8):
        text = head[len(codecs.BOM_UTF8):].decode("utf-8", "replace")
    elif head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        text = head[: len(head) // 2 * 2].decode("utf-16", "replace")
    elif head[:2] == b"<\x00":
        text = head[: len(head) // 2 * 2].decode("utf-16-le", "replace")
    elif head[:2] == b"\x00<":
        text = head[: len(head) // 2 * 2].decode("utf-16-be", "replace")
    else:
        text = head.decode("utf-8", "replace")
    root, stack, seen = None, [], set()
    for match in _OUTLINE_TOKEN.finditer(text):
        closing, name, empty = match.groups()
        if name is None:
            continue
        if closing:
            for depth in range(len(stack) - 1, -1, -1):  # an end tag closes its innermost open element
                if stack[depth] == name:
                    del stack[depth:]
                    break
            if not stack and root is not None:
                break  # the root ended: what follows is not this document's
            continue
        if root is None:
            root = name
        elif not stack:
            break  # a second root: not well-formed, and nothing of ours
        path = tuple(stack[:_OUTLINE_DEPTH - 1]) + (name,)
        if len(stack) < _OUTLINE_DEPTH:
            seen.add(path)
        if not empty:
            stack.append(name)
    if root is None:
        return None
    return XmlOutline((root, frozenset(seen)))


def xml_kinds(head: bytes) -> frozenset:
    """Which XML annotation formats a file's first bytes fit, by their root element and required children:

    - Pascal VOC: <annotation> with <filename>, and <object><bndbox> or <size> (a file with a <filename> and
      neither is a VOC negative from a tool that writes no size, and counts as VOC unless it has LabelMe's marks);
    - MIT LabelMe XML: <annotation> with <object><polygon><pt>, <imagesize> or <source><sourceImage>;
    - CVAT for images: <annotations> with <meta> or <image>.

    Two kinds is a near match that detection refuses to guess: an <annotation> with VOC's <size> or
    <object><bndbox> and LabelMe's marks too.
    """
    outline = xml_outline(head)
    if outline is None:
        return frozenset()
    if outline.root == "annotations":
        return frozenset([CVAT]) if outline.has("meta") or outline.has("image") else frozenset()
    if outline.root != "annotation":
        return frozenset()
    voc = outline.has("filename") and (outline.has("object", "bndbox") or outline.has("size"))
    labelme = outline.has("object", "polygon", "pt") or outline.has("imagesize") or outline.has("source", "sourceImage")
    if voc and labelme:
        return frozenset([VOC, LABELME_XML])
    if labelme:
        return frozenset([LABELME_XML])
    if outline.has("filename"):
        return frozenset([VOC])
    return frozenset()


_TELLING_CHILDREN = (("filename",), ("size",), ("object", "bndbox"), ("imagesize",), ("object", "polygon", "pt"),
                     ("source", "sourceImage"))


def xml_evidence(head: bytes) -> str:
    """What told the XML formats apart in a file's first bytes, for a person: `<annotation> with <filename>, <size>`."""
    outline = xml_outline(head)
    if outline is None:
        return "no XML element"
    found = ["".join(f"<{name}>" for name in path) for path in _TELLING_CHILDREN if outline.has(*path)]
    return f"<{outline.root}> with {', '.join(found)}" if found else f"<{outline.root}> with none of VOC's or LabelMe's children"
