"""/trace: Starling's own (EMQ X v3 had only ``emqx_ctl trace``): start, list and
stop traces of a client's packets or of the messages on a topic filter
(docs/api.md, "Trace"; the tracer is `starling.transport.trace`)."""

from __future__ import annotations

from typing import Any

from starling.transport import TraceError, Tracer

from ..errors import ApiError, Code, missing
from ..request import ApiRequest
from ..routing import RouteTable

BODY = {
    "type": ("string", True, "client or topic"),
    "name": ("string", True, "the client id, or the topic filter"),
    "file": ("string", True, "file name, written under <data_dir>/trace"),
}


def _tracer(req: ApiRequest) -> Tracer:
    tracer = req.ctx.services.get("trace")
    if not isinstance(tracer, Tracer):
        raise ApiError(Code.UNKNOWN_ERROR, "tracing is not available", 404)
    return tracer


def _answer(exc: TraceError) -> ApiError:
    code = Code.UNKNOWN_ERROR if exc.status != 400 else Code.PARAMETER_TYPE_ERROR
    return ApiError(code, exc.message, exc.status)


def register(table: RouteTable) -> None:
    @table.route("list_traces", "GET", "/trace", "List the running traces")
    async def list_traces(req: ApiRequest) -> Any:
        return [trace.view() for trace in _tracer(req).list()]

    @table.route("start_trace", "POST", "/trace", "Start a trace", body=BODY)
    async def start_trace(req: ApiRequest) -> Any:
        kind, name, file_name = (req.str_arg(n) for n in ("type", "name", "file"))
        absent = [n for n, v in (("type", kind), ("name", name), ("file", file_name)) if not v]
        if absent:
            raise missing(*absent)
        assert kind and name and file_name
        try:
            return _tracer(req).start(kind, name, file_name).view()
        except TraceError as exc:
            raise _answer(exc) from None

    @table.route("stop_trace", "DELETE", "/trace/:type/:name", "Stop a trace")
    async def stop_trace(req: ApiRequest) -> Any:
        try:
            return _tracer(req).stop(req.params["type"], req.params["name"]).view()
        except TraceError as exc:
            raise _answer(exc) from None
