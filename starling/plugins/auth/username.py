"""emqx_auth_username: clients authenticated by user name and password.

Entries live in the store table ``auth_username`` and are managed with the
REST routes ``/auth_username`` (docs/auth.md).  Config keys, as EMQ X's
``etc/plugins/emqx_auth_username.conf``:

- ``auth.user.password_hash`` (default ``sha256``): hash of new entries;
- ``auth.user.N.username`` / ``auth.user.N.password``: entries added at load
  when absent.

A client that sends no user name is not this plugin's to judge (ignored).
The shared behaviour is `auth_table.TableAuthPlugin`.
"""

from __future__ import annotations

from starling.broker import ClientInfo

from .table import TableAuthPlugin, TableSpec

USERNAME_SPEC = TableSpec(
    plugin="emqx_auth_username", field="username", conf="auth.user", table="auth_username",
    metrics="auth/username", existed="existed", not_existed="noexisted")


class UsernameAuthPlugin(TableAuthPlugin):
    SPEC = USERNAME_SPEC
    SCHEMA = USERNAME_SPEC.schema()

    @classmethod
    def key_of(cls, client: ClientInfo) -> str | None:
        return client.username
