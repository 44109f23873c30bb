"""One passing and one failing resource per rule: (type, good props, bad props).

``protect`` fixtures are given as ``(props, protect)`` pairs."""

from __future__ import annotations

import base64
import json

KEY = "arn:aws:kms:eu-west-1:210987654321:key/k"
ROLE = "/providers/Microsoft.Authorization/roleDefinitions/"


def iam(statements: list[dict]) -> dict:
    return {"policy": json.dumps({"Version": "2012-10-17", "Statement": statements})}


def _training(encrypted: bool) -> dict:
    body = {"OutputDataConfig": {"S3OutputPath": "s3://r/jobs/"}, "ResourceConfig": {"InstanceCount": 1}}
    if encrypted:
        body["OutputDataConfig"]["KmsKeyId"] = body["ResourceConfig"]["VolumeKmsKeyId"] = KEY
        body["EnableInterContainerTrafficEncryption"] = True
    return {
        "target": {
            "arn": "arn:aws:scheduler:::aws-sdk:sagemaker:createTrainingJob",
            "input": json.dumps(body),
        }
    }


def _custom_job(account: str) -> dict:
    body = json.dumps({"jobSpec": {"serviceAccount": account, "workerPoolSpecs": []}}).encode()
    return {"httpTarget": {"uri": "https://r-aiplatform.googleapis.com/v1/projects/p/locations/r/customJobs",
                           "body": base64.b64encode(body).decode()}}  # fmt: skip


FIXTURES: dict[str, tuple[str, object, object]] = {
    "aws-training-encrypted": ("aws:scheduler/schedule:Schedule", _training(True), _training(False)),
    "gcp-training-own-identity": (
        "gcp:cloudscheduler/job:Job",
        _custom_job("dataflow-train-job@p.iam.gserviceaccount.com"),
        _custom_job("123-compute@developer.gserviceaccount.com"),
    ),
    "azure-training-managed-identity": (
        "azure-native:machinelearningservices:Schedule",
        {"properties": {"action": {"jobDefinition": {"identity": {"identityType": "Managed"}}}}},
        {"properties": {"action": {"jobDefinition": {"identity": {"identityType": "UserIdentity"}}}}},
    ),
    "aws-kinesis-kms": (
        "aws:kinesis/stream:Stream",
        {"encryptionType": "KMS", "kmsKeyId": KEY},
        {"encryptionType": "NONE"},
    ),
    "aws-s3-kms": (
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        {
            "rules": [
                {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}}
            ]
        },
        {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
    ),
    "aws-sagemaker-endpoint-kms": (
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        {"kmsKeyArn": KEY},
        {},
    ),
    "aws-redshift-kms-and-logs": (
        "aws:redshiftserverless/namespace:Namespace",
        {"kmsKeyId": KEY, "logExports": ["userlog"]},
        {"kmsKeyId": KEY, "logExports": []},
    ),
    "aws-sns-kms": ("aws:sns/topic:Topic", {"kmsMasterKeyId": KEY}, {}),
    "aws-user-state-kms-ttl": (
        "aws:dynamodb/table:Table",
        {
            "serverSideEncryption": {"enabled": True, "kmsKeyArn": KEY},
            "ttl": {"enabled": True, "attributeName": "expires_at"},
        },
        {"serverSideEncryption": {"enabled": True, "kmsKeyArn": KEY}},
    ),
    "azure-user-state-private": (
        "azure-native:storage:StorageAccount",
        {"encryption": {"services": {"table": {"enabled": True}}}, "publicNetworkAccess": "Disabled"},
        {"encryption": {"services": {"table": {"enabled": True}}}},
    ),
    "gcp-firestore-protected": (
        "gcp:firestore/database:Database",
        ({"deleteProtectionState": "DELETE_PROTECTION_ENABLED"}, False),
        ({"deleteProtectionState": "DELETE_PROTECTION_DISABLED"}, False),
    ),
    "aws-archive-encrypted": (
        "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream",
        {"extendedS3Configuration": {"kmsKeyArn": KEY, "compressionFormat": "GZIP"}},
        {"extendedS3Configuration": {"compressionFormat": "UNCOMPRESSED"}},
    ),
    "gcp-archive-replayable": (
        "gcp:pubsub/subscription:Subscription",
        {"cloudStorageConfig": {"bucket": "raw", "avroConfig": {"writeMetadata": True}}},
        {"cloudStorageConfig": {"bucket": "raw", "textConfig": {}}},
    ),
    "aws-log-groups": (
        "aws:cloudwatch/logGroup:LogGroup",
        {"retentionInDays": 30, "kmsKeyId": KEY},
        {"retentionInDays": 1, "kmsKeyId": KEY},
    ),
    "aws-s3-public-access-block": (
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        dict.fromkeys(
            ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True
        ),
        {
            "blockPublicAcls": True,
            "blockPublicPolicy": False,
            "ignorePublicAcls": True,
            "restrictPublicBuckets": True,
        },
    ),
    "aws-redshift-private": (
        "aws:redshiftserverless/workgroup:Workgroup",
        {"publiclyAccessible": False, "enhancedVpcRouting": True},
        {"publiclyAccessible": True, "enhancedVpcRouting": True},
    ),
    "aws-lambda-url-auth": (
        "aws:lambda/functionUrl:FunctionUrl",
        {"authorizationType": "AWS_IAM"},
        {"authorizationType": "NONE"},
    ),
    "gcp-bucket-private": (
        "gcp:storage/bucket:Bucket",
        {"publicAccessPrevention": "enforced", "uniformBucketLevelAccess": True},
        {"publicAccessPrevention": "inherited", "uniformBucketLevelAccess": True},
    ),
    "azure-storage-private": (
        "azure-native:storage:StorageAccount",
        {"allowBlobPublicAccess": False, "allowSharedKeyAccess": False, "minimumTlsVersion": "TLS1_2"},
        {"allowBlobPublicAccess": False, "allowSharedKeyAccess": True, "minimumTlsVersion": "TLS1_2"},
    ),
    "azure-synapse-private": (
        "azure-native:synapse:Workspace",
        {
            "managedVirtualNetworkSettings": {"preventDataExfiltration": True},
            "publicNetworkAccess": "Disabled",
            "azureADOnlyAuthentication": True,
        },
        {
            "managedVirtualNetworkSettings": {"preventDataExfiltration": True},
            "publicNetworkAccess": "Enabled",
            "azureADOnlyAuthentication": True,
        },
    ),
    "azure-ml-private": (
        "azure-native:machinelearningservices:OnlineEndpoint",
        {"properties": {"authMode": "AADToken", "publicNetworkAccess": "Disabled"}},
        {"properties": {"authMode": "Key", "publicNetworkAccess": "Enabled"}},
    ),
    "azure-eventhub-tls-entra": (
        "azure-native:eventhub:Namespace",
        {"minimumTlsVersion": "1.2", "disableLocalAuth": True},
        {"minimumTlsVersion": "1.0", "disableLocalAuth": True},
    ),
    "azure-function-https": (
        "azure-native:web:WebApp",
        {"httpsOnly": True, "siteConfig": {"minTlsVersion": "1.2", "ftpsState": "Disabled"}},
        {"httpsOnly": False, "siteConfig": {"minTlsVersion": "1.2", "ftpsState": "Disabled"}},
    ),
    "aws-redshift-tls": (
        "aws:redshiftserverless/workgroup:Workgroup",
        {
            "publiclyAccessible": False,
            "enhancedVpcRouting": True,
            "configParameters": [{"parameterKey": "require_ssl", "parameterValue": "true"}],
        },
        {"publiclyAccessible": False, "enhancedVpcRouting": True, "configParameters": []},
    ),
    "aws-iam-least-privilege": (
        "aws:iam/rolePolicy:RolePolicy",
        iam(
            [
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]},
                {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
            ]
        ),
        iam([{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]}]),
    ),
    "gcp-iam-least-privilege": (
        "gcp:pubsub/topicIAMMember:TopicIAMMember",
        {"role": "roles/pubsub.publisher", "member": "serviceAccount:a@p.iam.gserviceaccount.com"},
        {"role": "roles/pubsub.publisher", "member": "allUsers"},
    ),
    "azure-no-broad-roles": (
        "azure-native:authorization:RoleAssignment",
        {"roleDefinitionId": ROLE + "2b629674-e913-4c01-ae53-ef4638d8f975"},
        {"roleDefinitionId": ROLE + "b24988ac-6180-42a0-ab88-20f7382dd24c"},
    ),
    "gcp-dataflow-private-workers": (
        "gcp:dataflow/flexTemplateJob:FlexTemplateJob",
        {"ipConfiguration": "WORKER_IP_PRIVATE"},
        {"ipConfiguration": "WORKER_IP_PUBLIC"},
    ),
    "aws-glue-in-vpc-encrypted": (
        "aws:glue/job:Job",
        {"connections": ["c"], "securityConfiguration": "s"},
        {"securityConfiguration": "s"},
    ),
    "stream-retention": (
        "azure-native:eventhub:EventHub",
        {"retentionDescription": {"retentionTimeInHours": 168}},
        {"retentionDescription": {"retentionTimeInHours": 1}},
    ),
    "store-deletion-protection": (
        "gcp:bigquery/table:Table",
        ({"deletionProtection": True}, False),
        ({}, False),
    ),
}

TOPIC = "projects/p/topics/events-dead-letters"
FRESH_APP = {
    "siteConfig": {
        "appSettings": [
            {"name": "DATAFLOW_APP", "value": "fresh"},
            {"name": "USER_STATE_TTL_DAYS", "value": "30"},
            {"name": "USER_STATE", "value": "tables:https://state1.table.core.windows.net/userstate"},
        ]
    }
}
STACK_FIXTURES = {
    "archive-retention": (
        [
            (
                "gcp:storage/bucket:Bucket",
                "raw",
                {
                    "name": "raw",
                    "lifecycleRules": [{"action": {"type": "Delete"}, "condition": {"age": 400}}],
                },
            ),
            ("gcp:pubsub/subscription:Subscription", "archive", {"cloudStorageConfig": {"bucket": "raw"}}),
            (
                "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream",
                "d",
                {"extendedS3Configuration": {"bucketArn": "arn:aws:s3:::arc"}},
            ),
            (
                "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                "l",
                {"bucket": "arc", "rules": [{"expiration": {"days": 400}}]},
            ),
            (
                "azure-native:storage:ManagementPolicy",
                "p",
                {
                    "policy": {
                        "rules": [
                            {
                                "definition": {
                                    "filters": {"prefixMatch": ["capture/"]},
                                    "actions": {
                                        "baseBlob": {"delete": {"daysAfterModificationGreaterThan": 400}}
                                    },
                                }
                            }
                        ]
                    }
                },
            ),
        ],
        [
            (
                "gcp:storage/bucket:Bucket",
                "raw",
                {"name": "raw", "lifecycleRules": [{"action": {"type": "Delete"}, "condition": {"age": 7}}]},
            ),
            ("gcp:pubsub/subscription:Subscription", "archive", {"cloudStorageConfig": {"bucket": "raw"}}),
            (
                "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream",
                "d",
                {"extendedS3Configuration": {"bucketArn": "arn:aws:s3:::arc"}},
            ),
            (
                "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                "l",
                {"bucket": "arc", "rules": [{"expiration": {"days": 1}}]},
            ),
        ],
    ),
    "user-state-expires": (
        [
            ("gcp:firestore/database:Database", "db", {"name": "state"}),
            ("gcp:firestore/field:Field", "ttl", {"database": "state", "ttlConfig": {}}),
            ("azure-native:storage:Table", "t", {"accountName": "state1"}),
            ("azure-native:web:WebApp", "fresh", FRESH_APP),
        ],
        [
            ("gcp:firestore/database:Database", "db", {"name": "state"}),
            ("gcp:firestore/field:Field", "index", {"database": "state", "indexConfig": {}}),
            ("azure-native:storage:Table", "t", {"accountName": "state2"}),
            ("azure-native:web:WebApp", "fresh", FRESH_APP),
        ],
    ),
    "gcp-subscription-dead-letter": (
        [
            (
                "gcp:pubsub/subscription:Subscription",
                "pipeline",
                {
                    "topic": "projects/p/topics/events",
                    "retryPolicy": {"minimumBackoff": "10s"},
                    "deadLetterPolicy": {"deadLetterTopic": TOPIC},
                },
            ),
            ("gcp:pubsub/subscription:Subscription", "dead-letters", {"topic": TOPIC}),
        ],
        [("gcp:pubsub/subscription:Subscription", "pipeline", {"topic": "projects/p/topics/events"})],
    ),
    "aws-every-bucket-locked": (
        [
            ("aws:s3/bucket:Bucket", "b", {}),
            ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "b-block", {"bucket": "b"}),
            (
                "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                "b-sse",
                {"bucket": "b"},
            ),
        ],
        [("aws:s3/bucket:Bucket", "b", {})],
    ),
}
