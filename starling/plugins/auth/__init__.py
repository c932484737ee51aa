"""Authentication and ACL (EMQ X v3's auth plugins and emqx_mod_acl_internal).

The chain: each plugin adds itself to the broker's ``client.authenticate`` and
``client.check_acl`` hooks (docs/auth.md, docs/auth-backends.md, docs/acl.md).
`passwords` is the one module that hashes; `common` holds what the database
backends share (placeholders, safe queries, the SQL ACL table) and `backend`
their plugin base; `table` the built-in tables of emqx_auth_clientid and
emqx_auth_username.  `register_table_routes` adds the REST routes of the
tables (``/auth_clientid``, ``/auth_username``), `register_acl_routes` those
of the ACL file (``/acl``).
"""

from __future__ import annotations

from .acl_file import AclFile, AclFileError, AclStatus
from .acl_routes import register as register_acl_routes
from .backend import BackendAuthPlugin
from .clientid import CLIENTID_SPEC, ClientIdAuthPlugin
from .http import HttpAuthPlugin
from .jwt import JwtAuthPlugin
from .ldap import LdapAuthPlugin
from .mongo import MongoAuthPlugin
from .mysql import MysqlAuthPlugin
from .pgsql import PgsqlAuthPlugin
from .psk_file import PskFilePlugin
from .redis import RedisAuthPlugin
from .table import TableAuthPlugin, TableSpec
from .table_routes import register as register_table_routes
from .username import USERNAME_SPEC, UsernameAuthPlugin

__all__ = [
    "CLIENTID_SPEC",
    "USERNAME_SPEC",
    "AclFile",
    "AclFileError",
    "AclStatus",
    "BackendAuthPlugin",
    "ClientIdAuthPlugin",
    "HttpAuthPlugin",
    "JwtAuthPlugin",
    "LdapAuthPlugin",
    "MongoAuthPlugin",
    "MysqlAuthPlugin",
    "PgsqlAuthPlugin",
    "PskFilePlugin",
    "RedisAuthPlugin",
    "TableAuthPlugin",
    "TableSpec",
    "UsernameAuthPlugin",
    "register_acl_routes",
    "register_table_routes",
]
