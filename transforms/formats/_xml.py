"""Safe parsing of untrusted XML, shared by the XML formats (Pascal VOC, CVAT)."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Union

import defusedxml
import defusedxml.ElementTree as SafeElementTree

from transforms.model import ITEM_ANNOTATION, Rejection


def parse_xml(source: str, data: bytes) -> Union[ElementTree.Element, Rejection]:
    """The root element of `data`, or the file's rejection: `xml_unsafe` or `xml_malformed`."""
    try:
        # forbid_dtd: no DOCTYPE at all, so no entity can be declared, expanded or fetched.
        return SafeElementTree.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException as error:
        return Rejection(source, "xml_unsafe", f"refused: {type(error).__name__}", ITEM_ANNOTATION)
    except (ElementTree.ParseError, ValueError, LookupError) as error:  # LookupError: unknown encoding
        return Rejection(source, "xml_malformed", str(error).splitlines()[0][:200], ITEM_ANNOTATION)
