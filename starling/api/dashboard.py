"""The dashboard listener (`http:dashboard`, ``dashboard.bind``, EMQ X's 18083).

It serves the web dashboard's page (starling.dashboard) and the same route
table as the management listener — every route, the dashboard users routes
included — but takes the HTTP Basic credentials of a *dashboard user* (a
password or a sign-in token, api/tokens.py) instead of an app, and lets
``POST /api/v3/auth`` and the token routes through without any (facts §1.1,
§9).  The `emqx_dashboard` plugin starts it when loaded and stops it when
unloaded; while the plugin is loaded the users routes answer on both
listeners (`USERS_SERVICE` in the API context's services).
"""

from __future__ import annotations

import logging
from pathlib import Path

from starling.dashboard import DashboardSite

from .app import ManagementApp
from .context import ApiContext
from .routes import NO_PLUGIN_ROUTES, PluginRoutes, build_table
from .server import HttpLimits, HttpListener
from .users import USERS_SERVICE, UserRegistry

log = logging.getLogger(__name__)

LISTENER_NAME = "http:dashboard"
#: Routes the dashboard listener serves without credentials: (method, path).  A
#: token is revoked by whoever holds it.
OPEN_ROUTES = frozenset({("POST", "/api/v3/auth"), ("POST", "/api/v3/auth/token"),
                         ("DELETE", "/api/v3/auth/token")})
WS_PROTOCOLS = {"mqtt:ws": "ws", "mqtt:wss": "wss"}
REALM = "starling-dashboard"


class Dashboard:
    """Starts and stops the dashboard listener; `listeners` is the node's list of
    HTTP listeners, so `/listeners` reports it while it runs."""

    def __init__(self, ctx: ApiContext, users: UserRegistry,
                 listeners: list[HttpListener],
                 plugin_routes: PluginRoutes = NO_PLUGIN_ROUTES) -> None:
        self.ctx = ctx
        #: The routes plugins hold (`build_table`), served here as on the management listener.
        self.plugin_routes = plugin_routes
        self.users = users
        self.listeners = listeners
        self.listener: HttpListener | None = None

    async def start(self, host: str | None, port: int, limits: HttpLimits, login: str,
                    default_password: str, data_dir: Path) -> None:
        """Publish the users to the routes and listen on host:port, making sure the
        default user exists; with `host` None (``dashboard.bind = off``) only the
        routes (no listener, so no default user and no generated password either)."""
        self.ctx.services[USERS_SERVICE] = self.users
        if host is None:
            return
        app = ManagementApp(self.ctx, build_table(self.plugin_routes), realm=REALM,
                            authenticate=self.users.check_sign_in, open_routes=OPEN_ROUTES)
        site = DashboardSite(app, self._ws_ports)
        listener = HttpListener(site, LISTENER_NAME, host, port, limits)
        try:
            await listener.start()
            # Only once it listens: a listener that cannot start leaves no password.
            self.users.bootstrap(login, default_password, data_dir)
        except BaseException:
            self.ctx.services.pop(USERS_SERVICE, None)
            await listener.stop()
            raise
        self.listener = listener
        self.listeners.append(listener)

    def _ws_ports(self) -> list[tuple[str, int]]:
        """The running MQTT WebSocket listeners, for the page's CSP."""
        return [(WS_PROTOCOLS[info.protocol], info.port) for info in self.ctx.mgmt.local.listeners()
                if info.protocol in WS_PROTOCOLS and info.running]

    async def stop(self) -> None:
        self.ctx.services.pop(USERS_SERVICE, None)
        listener, self.listener = self.listener, None
        if listener is None:
            return
        if listener in self.listeners:
            self.listeners.remove(listener)
        await listener.stop()
        log.info("listener %s stopped", LISTENER_NAME)
