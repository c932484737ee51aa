"""LwM2M object definitions read from OMA's XML format (emqx_lwm2m's `lwm2m.xml_dir`).

A definition tells the gateway each resource's data type, which TLV and
plain-text payloads need (they carry no types of their own).  Every
``*.xml`` of a directory is read at plugin load; a file that is not a valid
definition is refused naming the file, so a typo never silently drops an
object.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

#: The data types of LwM2M 1.0 (plus "" for an executable resource, which has none).
RESOURCE_TYPES = frozenset({"String", "Integer", "Float", "Boolean", "Opaque", "Time",
                            "Objlnk", ""})


class ObjectDefinitionError(ValueError):
    """An XML file that is not a usable object definition."""


@dataclass(frozen=True, slots=True)
class ResourceDefinition:
    id: int
    name: str
    operations: str  #: "R", "W", "RW", "E" or "" (as in the XML)
    multiple: bool
    mandatory: bool
    type: str  #: one of RESOURCE_TYPES


@dataclass(frozen=True, slots=True)
class ObjectDefinition:
    id: int
    name: str
    multiple: bool
    mandatory: bool
    resources: Mapping[int, ResourceDefinition]


class ObjectDatabase:
    """Object definitions by id (and name)."""

    def __init__(self, objects: Iterable[ObjectDefinition] = ()) -> None:
        self._by_id: dict[int, ObjectDefinition] = {}
        self._by_name: dict[str, ObjectDefinition] = {}
        for obj in objects:
            self.add(obj)

    def add(self, obj: ObjectDefinition) -> None:
        self._by_id[obj.id] = obj
        self._by_name[obj.name] = obj

    def get(self, object_id: int) -> ObjectDefinition | None:
        return self._by_id.get(object_id)

    def by_name(self, name: str) -> ObjectDefinition | None:
        return self._by_name.get(name)

    def resource(self, object_id: int, resource_id: int) -> ResourceDefinition | None:
        obj = self._by_id.get(object_id)
        return None if obj is None else obj.resources.get(resource_id)

    def ids(self) -> list[int]:
        return sorted(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)


def parse_object(text: str | bytes, source: str = "<xml>") -> ObjectDefinition:
    """One definition from the text of an OMA object XML file."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ObjectDefinitionError(f"{source}: not well-formed XML ({exc})") from None
    node = root.find("Object") if root.tag == "LWM2M" else None
    if node is None:
        raise ObjectDefinitionError(f"{source}: no /LWM2M/Object element")
    object_id = _integer(node, "ObjectID", source)
    resources_node = node.find("Resources")
    items = [] if resources_node is None else resources_node.findall("Item")
    found: dict[int, ResourceDefinition] = {}
    for item in items:
        try:
            resource_id = int(item.get("ID", ""))
        except ValueError:
            raise ObjectDefinitionError(
                f"{source}: object {object_id} has an Item without a numeric ID") from None
        kind = _text(item, "Type")
        if kind not in RESOURCE_TYPES:
            raise ObjectDefinitionError(
                f"{source}: resource {object_id}/{resource_id} has unknown Type {kind!r}")
        found[resource_id] = ResourceDefinition(
            id=resource_id, name=_text(item, "Name"), operations=_text(item, "Operations"),
            multiple=_text(item, "MultipleInstances") == "Multiple",
            mandatory=_text(item, "Mandatory") == "Mandatory", type=kind)
    return ObjectDefinition(id=object_id, name=_text(node, "Name"),
                            multiple=_text(node, "MultipleInstances") == "Multiple",
                            mandatory=_text(node, "Mandatory") == "Mandatory",
                            resources=found)


def load_directory(directory: Path) -> ObjectDatabase:
    """Every ``*.xml`` of `directory` (sorted by name; a later file with the same
    object id wins)."""
    if not directory.is_dir():
        raise ObjectDefinitionError(f"{directory}: not a directory")
    database = ObjectDatabase()
    for path in sorted(directory.glob("*.xml")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ObjectDefinitionError(f"{path}: {exc.strerror}") from None
        database.add(parse_object(data, str(path)))
    return database


def standard_objects() -> ObjectDatabase:
    """The OMA objects 0-7 shipped with Starling."""
    database = ObjectDatabase()
    folder = resources.files(__package__ or __name__).joinpath("objects")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".xml"):
            database.add(parse_object(entry.read_bytes(), entry.name))
    return database


def _text(node: ET.Element, tag: str) -> str:
    child = node.find(tag)
    return "" if child is None or child.text is None else child.text.strip()


def _integer(node: ET.Element, tag: str, source: str) -> int:
    text = _text(node, tag)
    try:
        return int(text)
    except ValueError:
        raise ObjectDefinitionError(f"{source}: {tag} must be an integer, not {text!r}") from None
