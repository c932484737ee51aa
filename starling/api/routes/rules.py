"""The rule engine's routes (emqx_rule_engine_api): rules, actions, resources,
resource types and rule events (docs/rules.md).

Refusals carry EMQ X's rule-engine codes (facts §8.7): 400 (``Bad Arguments:
…``, ``Action <name> Not Found``, ``Resource <id> Not Found``, ``Event <x> Not
Found``, ``Resource Type <t> Not Found``) and 404 (``Not Found``), with the
same number as HTTP status (409 for a resource id that exists or is in use).
Every route answers 404 while emqx_rule_engine is not loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starling.mgmt import fields
from starling.rules import (
    EVENT_INFO,
    PLUGIN,
    RESOURCE_TYPES,
    RuleEngine,
    RuleEnginePlugin,
    RuleError,
    actions_for,
    actions_of_type,
    event_name,
    find_action,
)

from ..errors import ApiError, bad_type, not_found
from ..request import ApiRequest
from ..routing import Handler, RouteTable
from .plugins import registry


def _engine(req: ApiRequest) -> RuleEngine:
    instance = registry(req).get(PLUGIN).instance
    if not isinstance(instance, RuleEnginePlugin) or instance.engine is None:
        raise not_found(f"Not Found: plugin {PLUGIN} is not loaded")
    return instance.engine


def _testing(req: ApiRequest) -> bool:
    """A dry run: ``test`` true in the body or the query string (``?test=true``, how
    the EMQ X v3.2 dashboard's test buttons call it; the app merges the query in)."""
    value = req.body.get("test") if isinstance(req.body, dict) else None
    if value in (None, False, "false"):
        return False
    if value in (True, "true"):
        return True
    raise bad_type("'test' must be true or false")


def _not_found() -> ApiError:
    return ApiError(404, "Not Found", 404)


RULE_BODY = {
    "name": ("string", False, "rule name (the id is <name>:<nanoseconds>)"),
    "for": ("string", False, "the hook (event) the rule is for, e.g. message.publish"),
    "rawsql": ("string", True, "the SQL, e.g. select * from \"t/#\""),
    "actions": ("array", False, "the actions: [{name, params}]"),
    "description": ("string", False, "description of the rule"),
    "enabled": ("boolean", False, "whether the rule runs (default true)"),
}
RESOURCE_BODY = {
    "name": ("string", False, "resource name (the id is <type>:<name>)"),
    "type": ("string", True, "resource type: built_in or web_hook"),
    "config": ("object", False, "resource configuration (web_hook: url, headers, method)"),
    "description": ("string", False, "description of the resource"),
}


def register(table: RouteTable) -> None:
    def route(name: str, method: str, path: str, descr: str,
              body: dict[str, tuple[str, bool, str]] | None = None,
              ) -> Callable[[Handler], Handler]:
        """`table.route` for this plugin; the engine's refusals become API errors."""
        def register(handler: Handler) -> Handler:
            async def guarded(req: ApiRequest) -> Any:
                try:
                    return await handler(req)
                except RuleError as exc:
                    raise ApiError(exc.code, exc.message, exc.status) from None
            table.route(name, method, path, descr, body=body, plugin=PLUGIN)(guarded)
            return handler
        return register

    # -- rules ---------------------------------------------------------------------------
    @route("create_rule", "POST", "/rules/", "Create a rule",
           {**RULE_BODY, "test": ("boolean", False, "dry run: apply the SQL to `ctx`"),
            "ctx": ("object", False, "dry run: column values")})
    async def create_rule(req: ApiRequest) -> Any:
        engine = _engine(req)
        if _testing(req):
            return engine.test_sql(req.body.get("rawsql"), req.body.get("ctx"))
        return fields.rule(engine.create_rule(req.body), engine.node)

    @route("list_rules", "GET", "/rules/", "A list of all rules")
    async def list_rules(req: ApiRequest) -> Any:
        engine = _engine(req)
        return [fields.rule(rule, engine.node) for rule in engine.rule_list()]

    @route("show_rule", "GET", "/rules/:id", "Show a rule")
    async def show_rule(req: ApiRequest) -> Any:
        engine = _engine(req)
        rule = engine.rules.get(req.params["id"])
        if rule is None:
            raise _not_found()
        return fields.rule(rule, engine.node)

    @route("update_rule", "PUT", "/rules/:id",
           "Update a rule (rawsql, for, actions, description, enabled)",
           {k: (t, False, d) for k, (t, _, d) in RULE_BODY.items()})
    async def update_rule(req: ApiRequest) -> Any:
        engine = _engine(req)
        return fields.rule(engine.update_rule(req.params["id"], req.body or {}), engine.node)

    @route("delete_rule", "DELETE", "/rules/:id", "Delete a rule")
    async def delete_rule(req: ApiRequest) -> Any:
        _engine(req).delete_rule(req.params["id"])
        return None

    # -- actions -------------------------------------------------------------------------
    @route("list_actions", "GET", "/actions/", "A list of all actions",
           {"for": ("string", False, "only the actions for this hook (and $any ones)")})
    async def list_actions(req: ApiRequest) -> Any:
        _engine(req)
        hook = req.str_arg("for")
        if hook is not None and hook not in ("$any", "$events"):
            event = event_name(hook)
            if event is None:
                raise ApiError(400, f"Event {hook} Not Found", 400)
            hook = event
        return [fields.action(action) for action in actions_for(hook)]

    @route("show_action", "GET", "/actions/:name", "Show an action")
    async def show_action(req: ApiRequest) -> Any:
        _engine(req)
        action = find_action(req.params["name"])
        if action is None:
            raise _not_found()
        return fields.action(action)

    # -- resources -----------------------------------------------------------------------
    @route("list_resources", "GET", "/resources/", "A list of all resources")
    async def list_resources(req: ApiRequest) -> Any:
        return [fields.resource(r) for r in _engine(req).resource_list()]

    @route("create_resource", "POST", "/resources/", "Create a resource",
           {**RESOURCE_BODY, "test": ("boolean", False, "dry run: check the type and "
                                      "config and probe the endpoint; nothing is created")})
    async def create_resource(req: ApiRequest) -> Any:
        engine = _engine(req)
        if _testing(req):
            await engine.test_resource(req.body)
            return None
        return fields.resource(await engine.create_resource(req.body))

    @route("show_resource", "GET", "/resources/:id", "Show a resource")
    async def show_resource(req: ApiRequest) -> Any:
        engine = _engine(req)
        resource = engine.resources.get(req.params["id"])
        if resource is None:
            raise _not_found()
        return {**fields.resource(resource),
                "status": [{"node": engine.node, "is_alive": resource.alive}]}

    @route("get_resource_status", "GET", "/resource_status/:id", "Get status of a resource")
    async def resource_status(req: ApiRequest) -> Any:
        rid = req.params["id"]
        resource = _engine(req).resources.get(rid)
        if resource is None:
            raise ApiError(400, f"Resource {rid} Not Found", 404)
        return {"is_alive": resource.alive}

    @route("start_resource", "POST", "/resources/:id", "Start a resource")
    async def start_resource(req: ApiRequest) -> Any:
        await _engine(req).start_resource(req.params["id"])
        return None

    @route("delete_resource", "DELETE", "/resources/:id", "Delete a resource")
    async def delete_resource(req: ApiRequest) -> Any:
        await _engine(req).delete_resource(req.params["id"])
        return None

    # -- resource types ------------------------------------------------------------------
    def resource_type(req: ApiRequest, key: str) -> str:
        _engine(req)
        name = req.params[key]
        if name not in RESOURCE_TYPES:
            raise ApiError(400, f"Resource Type {name} Not Found", 404)
        return name

    @route("list_resource_types", "GET", "/resource_types/", "List all resource types")
    async def list_resource_types(req: ApiRequest) -> Any:
        _engine(req)
        return [fields.resource_type(t) for _, t in sorted(RESOURCE_TYPES.items())]

    @route("show_resource_type", "GET", "/resource_types/:name", "Show a resource type")
    async def show_resource_type(req: ApiRequest) -> Any:
        _engine(req)
        rtype = RESOURCE_TYPES.get(req.params["name"])
        if rtype is None:
            raise _not_found()
        return fields.resource_type(rtype)

    @route("list_resources_by_type", "GET", "/resource_types/:type/resources",
           "List all resources of a resource type")
    async def resources_by_type(req: ApiRequest) -> Any:
        name = resource_type(req, "type")
        return [fields.resource(r) for r in _engine(req).resource_list(name)]

    @route("list_actions_by_type", "GET", "/resource_types/:type/actions",
           "List all actions of a resource type")
    async def actions_by_type(req: ApiRequest) -> Any:
        return [fields.action(a) for a in actions_of_type(resource_type(req, "type"))]

    # -- events --------------------------------------------------------------------------
    @route("list_events", "GET", "/rule_events/", "List all events with detailed info")
    async def list_events(req: ApiRequest) -> Any:
        _engine(req)
        return [fields.rule_event(info) for info in EVENT_INFO.values()]
