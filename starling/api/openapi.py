"""An OpenAPI 3 document generated from the route table (never written by hand,
so it cannot drift from what the server routes)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import ApiContext
    from .routing import RouteTable

_PARAM = re.compile(r":(\w+)")

_ENVELOPE = {
    "type": "object",
    "required": ["code"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "data": {},
        "meta": {
            "type": "object",
            "properties": {"page": {"type": "integer"}, "limit": {"type": "integer"},
                           "count": {"type": "integer"}},
        },
    },
}

_JSON_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean",
               "number": "number", "object": "object", "array": "array"}


def _response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}}


def openapi_document(table: RouteTable, ctx: ApiContext) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in table.routes:
        path = "/" + "/".join(route.segments)
        oa_path = "/api/v3" + _PARAM.sub(r"{\1}", path)
        operation: dict[str, Any] = {
            "operationId": f"{route.name}_{route.method.lower()}_{len(paths)}",
            "summary": route.descr,
            "tags": [route.segments[0] if route.segments[0] != "nodes" or len(route.segments) < 3
                     else route.segments[2]],
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _PARAM.findall(path)
            ],
            "responses": {
                "200": _response("success: code 0"),
                "400": _response("bad parameters or body"),
                "401": _response("missing or wrong credentials"),
                "404": _response("unknown node, client or resource"),
            },
        }
        if route.paginated:
            operation["parameters"] += [
                {"name": "_page", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1}},
                {"name": "_limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1}},
            ]
        if route.body and route.method == "GET":
            operation["parameters"] += [
                {"name": n, "in": "query", "required": req, "description": d,
                 "schema": {"type": _JSON_TYPES.get(t, "string")}}
                for n, (t, req, d) in route.body.items()]
        if route.body and route.method in ("POST", "PUT"):
            operation["requestBody"] = {"content": {"application/json": {"schema": {
                "type": "object",
                "properties": {n: {"type": _JSON_TYPES.get(t, "string"), "description": d}
                               for n, (t, _req, d) in route.body.items()},
                "required": [n for n, (_t, req, _d) in route.body.items() if req],
            }}}}
        paths.setdefault(oa_path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "Starling management API (EMQ X v3 compatible)",
                 "version": ctx.version},
        "servers": [{"url": "/"}],
        "security": [{"basic": []}],
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {"Envelope": _ENVELOPE},
        },
        "paths": paths,
    }
