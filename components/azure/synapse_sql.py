"""Who may read and write the warehouse on Azure: database users in the
dedicated SQL pool, created by a dynamic provider.

A Synapse dedicated pool keeps its users in the database, not in ARM, so no
Pulumi resource creates one. ``SynapseSqlGrant`` runs the T-SQL that does
(``grant_statements``), over the pool's private SQL endpoint, as the
deployer's Entra ID identity (``mssql-python``, ``Authentication=
ActiveDirectoryDefault``; the deployer must be in the SQL admin group). A
principal is named as Entra ID names it (a managed identity by its resource
name, a group by its display name): dedicated pools create Entra users
``FROM EXTERNAL PROVIDER`` by name (``WITH OBJECT_ID`` is Azure SQL
Database's, not Synapse's). Reading is ``db_datareader``; writing adds
``db_datawriter`` (rows, never schema); a writer of named tables only (the
training job's ``model_versions``) gets DML on those tables and no role.
Deleting the grant drops the role memberships, the table grants and the
user. ``check``, ``diff`` and the statements (their
quoting, and their shape as sqlglot parses T-SQL) are tested; create and
delete need Azure.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider

ROLES = ("db_datareader", "db_datawriter")


def _name(user: str) -> str:
    """A T-SQL bracketed identifier: ``]`` doubled, so a name cannot end it early."""
    return "[" + user.replace("]", "]]") + "]"


def _literal(value: str) -> str:
    return "N'" + value.replace("'", "''") + "'"


TABLE_DML = "SELECT, INSERT, UPDATE, DELETE"


def grant_statements(user: str, roles: list[str], tables: list[str] | None = None) -> list[str]:
    """Create the Entra user if missing, then add it to each role and grant
    DML on each table (all idempotent)."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"roles must be among {ROLES}, got {unknown}")
    create = (
        f"IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = {_literal(user)}) "
        f"CREATE USER {_name(user)} FROM EXTERNAL PROVIDER"
    )
    return [
        create,
        *(f"EXEC sp_addrolemember {_literal(role)}, {_literal(user)}" for role in roles),
        *(f"GRANT {TABLE_DML} ON dbo.{_name(t)} TO {_name(user)}" for t in tables or []),
    ]


def revoke_statements(user: str, roles: list[str], tables: list[str] | None = None) -> list[str]:
    return [
        *(f"REVOKE {TABLE_DML} ON dbo.{_name(t)} FROM {_name(user)}" for t in tables or []),
        *(f"EXEC sp_droprolemember {_literal(role)}, {_literal(user)}" for role in roles),
        f"IF EXISTS (SELECT 1 FROM sys.database_principals WHERE name = {_literal(user)}) "
        f"DROP USER {_name(user)}",
    ]


def _run(server: str, database: str, statements: list[str]) -> None:
    import mssql_python  # the azure extra: a driver with its own ODBC libraries

    con = mssql_python.connect(
        f"Server=tcp:{server},1433;Database={database};Encrypt=yes;TrustServerCertificate=no;"
        "Authentication=ActiveDirectoryDefault"
    )
    try:
        cur = con.cursor()
        for sql in statements:
            cur.execute(sql)
        con.commit()
    finally:
        con.close()


class SynapseSqlGrantProvider(ResourceProvider):
    """A database user with roles in one dedicated SQL pool."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [
            CheckFailure(k, f"{k} is required (got {news.get(k)!r})")
            for k in ("server", "database", "user")
            if not news.get(k)
        ]
        if not news.get("roles") and not news.get("tables"):
            failures.append(
                CheckFailure("roles", f"roles or tables are required (got {news.get('roles')!r})")
            )
        failures += [
            CheckFailure("roles", f"roles must be among {ROLES}, got {role!r}")
            for role in news.get("roles") or []
            if role not in ROLES
        ]
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [
            k for k in ("server", "database", "user", "roles", "tables") if olds.get(k) != news.get(k)
        ]
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        _run(
            props["server"],
            props["database"],
            grant_statements(props["user"], props["roles"], props.get("tables")),
        )
        return CreateResult(id_=f"{props['database']}/{props['user']}", outs=props)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _run(
            props["server"],
            props["database"],
            revoke_statements(props["user"], props["roles"], props.get("tables")),
        )


class SynapseSqlGrant(pulumi.dynamic.Resource):
    """Roles (and DML on named tables) for an Entra ID principal (by name) in a dedicated SQL pool."""

    def __init__(
        self,
        name: str,
        *,
        server: pulumi.Input[str],
        database: pulumi.Input[str],
        user: pulumi.Input[str],
        roles: list[str],
        tables: list[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"server": server, "database": database, "user": user, "roles": roles, "tables": tables or []}
        super().__init__(SynapseSqlGrantProvider(), name, props, opts)
