"""The warehouse link on AWS."""

from __future__ import annotations

from pipeline_code.tables import TABLES
from pipeline_code.warehouses import redshift
from tests.components.configs import AWS


def test_the_tables_are_the_ddl_from_the_one_description(default):
    rec, _ = default
    sqls = {r.inputs["sql"] for r in rec.of_type("redshiftdata/statement:Statement")}
    assert {redshift.ddl(t) for t in TABLES.values()} | {redshift.BATCHES_DDL} <= sqls
    for r in rec.of_type("redshiftdata/statement:Statement"):
        assert r.inputs["workgroupName"] == "dataflow-warehouse-wg" and r.inputs["database"] == "dataflow"
        assert r.inputs["secretArn"].startswith("arn:aws:secretsmanager:")


def test_the_warehouse_is_private_and_protected(default):
    rec, _ = default
    wg = rec.one("redshiftserverless/workgroup:Workgroup").inputs
    assert wg["publiclyAccessible"] is False and wg["enhancedVpcRouting"] is True
    assert {"parameterKey": "require_ssl", "parameterValue": "true"} in wg["configParameters"]
    assert wg["subnetIds"] == AWS["subnet_ids"]
    ns = rec.one("redshiftserverless/namespace:Namespace").inputs
    assert ns["manageAdminPassword"] is True and "adminUserPassword" not in ns
    ingress = rec.of_type("vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert not [r for r in ingress if "cidrIpv4" in r.inputs]  # only group-to-group, never a CIDR
    to_redshift = rec.one(
        "vpc/securityGroupIngressRule:SecurityGroupIngressRule", "dataflow-warehouse-redshift-from-clients"
    )
    assert (to_redshift.inputs["fromPort"], to_redshift.inputs["toPort"]) == (5439, 5439)
