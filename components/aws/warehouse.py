"""The warehouse on AWS: Redshift Serverless with the chain's logical tables.

Secure by default: the workgroup is private (no public endpoint, enhanced
VPC routing so COPY traffic stays in the VPC, TLS required), the namespace
is encrypted with the chain's key, the admin password is generated and kept
in Secrets Manager by Redshift (never in config or state), audit logs go to
CloudWatch, and deletion is refused (``protect``) unless the spec allows it.

The tables are created from ``pipeline_code.warehouses.redshift`` (DDL generated from
the one table description) through the Redshift Data API, as the admin.
Writers are granted with ``grant_write``: an IAM policy on the workgroup and
a database user for the role with DML rights only. The Glue connection puts
the job's network interfaces in the VPC, in a security group the
workgroup's admits on 5439.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.aws.security import grant, service_role, statement
from components.spec import WarehouseSpec
from pipeline_code.tables import TABLES, written_by
from pipeline_code.warehouses import redshift

TYPE = "data-flow:aws:Warehouse"
PORT = 5439
DATA_API_STATEMENTS = [
    "redshift-data:CancelStatement",
    "redshift-data:DescribeStatement",
    "redshift-data:GetStatementResult",
]


class Warehouse(pulumi.ComponentResource):
    """Redshift Serverless namespace + workgroup, the tables, and the job's connection.

    Args:
        name: Logical name; every child is named ``{name}-<role>`` and parented to this component.
        warehouse: ``data-flow:warehouse``: dataset/database name, partition retention, deletion
            protection.
        vpc_id: VPC of the workgroup and of the jobs' security group.
        subnet_ids: Private subnets of the workgroup (at least three AZs).
        kms_key_arn: KMS key that encrypts every store, log group and environment of the link (the
            chain's own key, or ``aws.kms_key_arn``).
        tags: Tags on every child that takes them (the chain passes ``ChainSpec.house_labels()``).
        base_rpus: Redshift Serverless base capacity. Default: 8 RPUs, the minimum.
        opts: Pulumi resource options (parent, provider, aliases). Default: none.
    """

    namespace: aws.redshiftserverless.Namespace
    workgroup: aws.redshiftserverless.Workgroup
    copy_role: aws.iam.Role
    connection: aws.glue.Connection
    client_security_group: aws.ec2.SecurityGroup
    tables: dict[str, aws.redshiftdata.Statement]

    def __init__(
        self,
        name: str,
        *,
        warehouse: WarehouseSpec,
        vpc_id: str,
        subnet_ids: list[str],
        kms_key_arn: pulumi.Input[str],
        tags: dict[str, str],
        base_rpus: int = 8,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        self.name = name
        self.database = warehouse.dataset
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=warehouse.deletion_protection)

        # Glue's network interfaces need a group that admits itself (Glue's rule).
        self.client_security_group = aws.ec2.SecurityGroup(
            f"{name}-clients",
            vpc_id=vpc_id,
            description="Processing jobs that write the warehouse",
            tags=tags,
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-clients-self",
            security_group_id=self.client_security_group.id,
            referenced_security_group_id=self.client_security_group.id,
            ip_protocol="tcp",
            from_port=0,
            to_port=65535,
            description="Glue workers talk to each other",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-clients-https",
            security_group_id=self.client_security_group.id,
            cidr_ipv4="0.0.0.0/0",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            description="AWS APIs (through VPC endpoints or NAT)",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-clients-self-out",
            security_group_id=self.client_security_group.id,
            referenced_security_group_id=self.client_security_group.id,
            ip_protocol="tcp",
            from_port=0,
            to_port=65535,
            opts=child,
        )
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-redshift",
            vpc_id=vpc_id,
            description="Redshift Serverless workgroup",
            tags=tags,
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-redshift-from-clients",
            security_group_id=self.security_group.id,
            referenced_security_group_id=self.client_security_group.id,
            ip_protocol="tcp",
            from_port=PORT,
            to_port=PORT,
            description="Only the processing jobs' group",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-clients-to-redshift",
            security_group_id=self.client_security_group.id,
            referenced_security_group_id=self.security_group.id,
            ip_protocol="tcp",
            from_port=PORT,
            to_port=PORT,
            opts=child,
        )

        # What COPY runs as: reads the staged files it is granted, nothing else.
        self.copy_role = service_role(
            f"{name}-copy", ["redshift.amazonaws.com", "redshift-serverless.amazonaws.com"], tags, self
        )
        self.namespace = aws.redshiftserverless.Namespace(
            f"{name}-namespace",
            namespace_name=f"{name}-ns",
            db_name=warehouse.dataset,
            admin_username="dataflow_admin",
            manage_admin_password=True,
            admin_password_secret_kms_key_id=kms_key_arn,
            kms_key_id=kms_key_arn,
            iam_roles=[self.copy_role.arn],
            default_iam_role_arn=self.copy_role.arn,
            log_exports=["connectionlog", "useractivitylog", "userlog"],
            tags=tags,
            opts=keep,
        )
        self.workgroup = aws.redshiftserverless.Workgroup(
            f"{name}-workgroup",
            workgroup_name=f"{name}-wg",
            namespace_name=self.namespace.namespace_name,
            base_capacity=base_rpus,
            enhanced_vpc_routing=True,
            publicly_accessible=False,
            subnet_ids=subnet_ids,
            security_group_ids=[self.security_group.id],
            port=PORT,
            config_parameters=[
                {"parameter_key": "require_ssl", "parameter_value": "true"},
                {"parameter_key": "enable_user_activity_logging", "parameter_value": "true"},
            ],
            tags=tags,
            opts=keep,
        )
        subnet = aws.ec2.get_subnet_output(id=subnet_ids[0])
        self.connection = aws.glue.Connection(
            f"{name}-connection",
            name=f"{name}-network",
            connection_type="NETWORK",
            physical_connection_requirements={
                "availability_zone": subnet.availability_zone,
                "subnet_id": subnet_ids[0],
                "security_group_id_lists": [self.client_security_group.id],
            },
            tags=tags,
            opts=child,
        )
        # The tables, as the admin (the secret Redshift manages), after the workgroup exists.
        ddl_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.workgroup])
        self.tables = {
            name_: self._sql(f"{name}-table-{name_.replace('_', '-')}", redshift.ddl(table), ddl_opts)
            for name_, table in TABLES.items()
        }
        self.tables[redshift.BATCHES] = self._sql(f"{name}-table-batches", redshift.BATCHES_DDL, ddl_opts)
        self.register_outputs(
            {"workgroup": self.workgroup.workgroup_name, "endpoint": self.workgroup.endpoints}
        )

    def _sql(
        self, resource_name: str, sql: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> aws.redshiftdata.Statement:
        return aws.redshiftdata.Statement(
            resource_name,
            workgroup_name=self.workgroup.workgroup_name,
            database=self.database,
            secret_arn=self.namespace.admin_password_secret_arn,
            sql=sql,
            opts=opts,
        )

    def grant_write(self, grantee: str, role: aws.iam.Role) -> list[pulumi.Resource]:
        """Let ``role`` query and merge into the pipeline's tables through the
        Data API (as the database user ``IAMR:<role name>``, which gets DML on
        those tables, not DDL)."""
        return self._grant_dml(grantee, role, "processing")

    def grant_record_models(self, grantee: str, role: aws.iam.Role) -> list[pulumi.Resource]:
        """Let ``role`` write ``model_versions`` (the training job's decisions), nothing else."""
        return self._grant_dml(grantee, role, "training")

    def _grant_dml(self, grantee: str, role: aws.iam.Role, writer: str) -> list[pulumi.Resource]:
        policy = self._data_api(
            f"write-{grantee}",
            role,
            ["redshift-data:BatchExecuteStatement", "redshift-data:ExecuteStatement"],
        )
        user = role.name.apply(lambda n: f'"IAMR:{n}"')
        return [
            policy,
            *self._db_user(
                grantee,
                user,
                f"SELECT, INSERT, UPDATE, DELETE ON {_tables(writer == 'processing', writer)}",
                True,
            ),
        ]

    def _data_api(self, key: str, role: aws.iam.Role, run: list[str]) -> aws.iam.RolePolicy:
        """Running statements on this workgroup as ``role`` (IAM credentials, no password)."""
        return grant(
            f"{self.name}-{key}",
            role,
            [
                statement(run, [self.workgroup.arn]),
                statement(["redshift-serverless:GetCredentials"], [self.workgroup.arn]),
                # Statement ids cannot be scoped by ARN; the condition keeps a role to its own.
                statement(
                    DATA_API_STATEMENTS,
                    ["*"],
                    {"StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}},
                ),
            ],
            self,
        )

    def _db_user(
        self, grantee: str, user: pulumi.Output[str], rights: str, temp: bool
    ) -> list[pulumi.Resource]:
        """The database user of an IAM role, and its rights (one Data API statement each)."""
        after_tables = pulumi.ResourceOptions(parent=self, depends_on=list(self.tables.values()))
        create = self._sql(
            f"{self.name}-db-user-{grantee}",
            user.apply(lambda u: f"CREATE USER {u} PASSWORD DISABLE"),
            after_tables,
        )
        then = pulumi.ResourceOptions(parent=self, depends_on=[create])
        grants = [
            self._sql(f"{self.name}-db-grant-{grantee}", user.apply(lambda u: f"GRANT {rights} TO {u}"), then)
        ]
        if temp:
            # COPY into the batch's temporary staging tables.
            grants.append(
                self._sql(
                    f"{self.name}-db-temp-{grantee}",
                    user.apply(lambda u: f"GRANT TEMP ON DATABASE {self.database} TO {u}"),
                    then,
                )
            )
        return [create, *grants]

    def grant_read(self, grantee: str, role: aws.iam.Role) -> list[pulumi.Resource]:
        """Let ``role`` query the tables (SELECT only) through the Data API."""
        policy = self._data_api(f"read-{grantee}", role, ["redshift-data:ExecuteStatement"])
        user = role.name.apply(lambda n: f'"IAMR:{n}"')
        return [policy, *self._db_user(grantee, user, f"SELECT ON {_tables(False)}", False)]


def _tables(with_batches: bool, writer: str | None = None) -> str:
    names = list(TABLES) if writer is None else written_by(writer)
    return ", ".join([*names, *([redshift.BATCHES] if with_batches else [])])
