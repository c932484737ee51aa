"""emqx_auth_clientid: clients authenticated by client id and password.

Entries live in the store table ``auth_clientid`` and are managed with the
REST routes ``/auth_clientid`` (docs/auth.md).  Config keys, as EMQ X's
``etc/plugins/emqx_auth_clientid.conf``:

- ``auth.client.password_hash`` (default ``sha256``): hash of new entries;
- ``auth.client.N.clientid`` / ``auth.client.N.password``: entries added at
  load when absent.

The shared behaviour is `auth_table.TableAuthPlugin`.
"""

from __future__ import annotations

from starling.broker import ClientInfo

from .table import TableAuthPlugin, TableSpec

CLIENTID_SPEC = TableSpec(
    plugin="emqx_auth_clientid", field="clientid", conf="auth.client", table="auth_clientid",
    metrics="auth/clientid", existed="exitsted", not_existed="noexitsted")


class ClientIdAuthPlugin(TableAuthPlugin):
    SPEC = CLIENTID_SPEC
    SCHEMA = CLIENTID_SPEC.schema()

    @classmethod
    def key_of(cls, client: ClientInfo) -> str | None:
        return client.client_id
