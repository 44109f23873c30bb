"""The warehouse link on Azure: its grants are database users in the SQL pool."""

from __future__ import annotations

import pytest
import sqlglot

from components.azure import AzureChain
from components.azure.synapse_sql import (
    SynapseSqlGrantProvider,
    grant_statements,
    revoke_statements,
)
from components.spec import load_spec
from tests.components.configs import azure_config
from tests.components.conftest import run_program


def with_grants():
    def program():
        chain = AzureChain("dataflow", load_spec(azure_config(collector={"enabled": False})))
        chain.warehouse.grant_read("bi", "analysts-group")
        chain.warehouse.grant_write("loader", "dataflow-loader-identity")
        return chain

    return run_program(program)


def test_grant_read_and_write_are_users_with_data_roles_in_the_pool():
    rec, _ = with_grants()
    read = rec.one("dynamic:Resource", "dataflow-warehouse-read-bi").inputs
    write = rec.one("dynamic:Resource", "dataflow-warehouse-write-loader").inputs
    assert read["server"] == "dataflow-warehouse-workspace.sql.azuresynapse.net"
    assert read["database"] == write["database"] == "dataflow"
    assert (read["user"], read["roles"]) == ("analysts-group", ["db_datareader"])
    assert (write["user"], write["roles"]) == ("dataflow-loader-identity", ["db_datareader", "db_datawriter"])
    parent, _ = rec.options[("pulumi-python:dynamic:Resource", "dataflow-warehouse-read-bi")]
    assert parent == "data-flow:azure:Warehouse dataflow-warehouse"


def test_the_statements_are_t_sql_and_a_name_cannot_break_out_of_its_brackets():
    statements = [
        *grant_statements("bob]; DROP TABLE events; --", ROLES_BOTH),
        *revoke_statements("x", ["db_datareader"]),
        *grant_statements("trainer", [], ["model_versions"]),
        *revoke_statements("trainer", [], ["model_versions"]),
    ]
    for sql in statements:
        assert sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    create = grant_statements("bob]; DROP TABLE events; --", ["db_datareader"])[0]
    assert "CREATE USER [bob]]; DROP TABLE events; --] FROM EXTERNAL PROVIDER" in create
    assert "name = N'bob]; DROP TABLE events; --'" in create
    assert (
        grant_statements("o'brien", ["db_datareader"])[1]
        == "EXEC sp_addrolemember N'db_datareader', N'o''brien'"
    )
    with pytest.raises(ValueError, match="roles must be among"):
        grant_statements("x", ["db_owner"])
    # A table writer gets DML on its table and no role.
    assert grant_statements("trainer", [], ["model_versions"])[1:] == [
        "GRANT SELECT, INSERT, UPDATE, DELETE ON dbo.[model_versions] TO [trainer]"
    ]


ROLES_BOTH = ["db_datareader", "db_datawriter"]


def test_the_provider_checks_its_inputs_and_replaces_on_any_change():
    provider = SynapseSqlGrantProvider()
    good = {"server": "s", "database": "d", "user": "u", "roles": ["db_datareader"]}
    assert provider.check({}, good).failures == []
    bad = provider.check({}, {**good, "user": "", "roles": ["db_owner"]}).failures
    assert {f.property for f in bad} == {"user", "roles"}
    neither = provider.check({}, {**good, "roles": []}).failures
    assert [f.reason for f in neither] == ["roles or tables are required (got [])"]
    assert provider.check({}, {**good, "roles": [], "tables": ["model_versions"]}).failures == []
    assert provider.diff("id", good, good).changes is False
    changed = provider.diff("id", good, {**good, "roles": ROLES_BOTH})
    assert changed.changes and changed.replaces == ["roles"] and changed.delete_before_replace
