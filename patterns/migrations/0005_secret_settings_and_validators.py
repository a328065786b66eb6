"""Shipped rules that took code, service principals and versions for values, and rules for
the whole value under a secret-named key.

Changed rows get a validator that looks at the text around a match (bucket names that are
called, assigned to, attributes, files or a scheme; password values that are format
placeholders, function calls or variables; S3 host names in a "Service" principal), RDS
endpoints need a region label, password_assignment no longer takes quoted values (the new
secret_named_quoted_value takes them whole), and account IDs are also masked near ECR's
registryId; the bucket rule for prose keeps the 'buckets:' and 'S3:' labels and 버킷, and a
new rule takes a name right after the word "bucket"; ARNs, S3 URIs, SQS queue URLs, service
endpoints, ECR registries and URLs with credentials keep their structure (named groups: the
account, the bucket, the names in an ARN typed by their resource type, the endpoint's own
labels, the user, password and host of a URL). A change applies only to a row that
still holds what the library shipped (regex and validator); its description, context and
examples follow where they are still as shipped. New rules (secret settings, resource IDs
from AWS's own examples, STS tokens by their start, Bedrock API keys, PuTTY keys, bucket
names in `aws s3 ls` output) are added where no rule has their name. The reverse undoes
exactly that. Context window 0 (a value right after its key) is new, hence the help text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import migrations, models


@dataclass(frozen=True)
class Change:
    """One shipped rule, before and after (examples are lines, as the rows hold them)."""

    name: str
    old_regex: str
    new_regex: str
    old_validator: str
    new_validator: str
    old_description: str
    new_description: str
    old_keywords: str
    new_keywords: str
    old_context_regex: str
    new_context_regex: str
    old_context_window: int
    new_context_window: int
    positive_removed: tuple[str, ...]
    positive_added: tuple[str, ...]
    negative_removed: tuple[str, ...]
    negative_added: tuple[str, ...]


CHANGES: tuple[Change, ...] = (
    Change(
        name="aws_arn",
        old_regex="arn:aws(?:-cn|-us-gov|-iso(?:-[a-z])?|-eusc)?:[a-z0-9-]+:[a-z0-9-]*:(?:[0-9]{12})?:[A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]",
        new_regex="arn:aws(?:-cn|-us-gov|-iso(?:-[a-z])?|-eusc)?:(?:iam:[a-z0-9-]*:(?P<AWS_ACCOUNT>[0-9]{12})?:role/(?:(?:service-role|aws-service-role|aws-reserved)/)?(?:(?P<AWS_IAM_PATH>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__2>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__3>[A-Za-z0-9_+=,.@/-]*[A-Za-z0-9_+=@-])/)?)?)?(?P<AWS_IAM_ROLE>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__2>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|iam:[a-z0-9-]*:(?P<AWS_ACCOUNT__2>[0-9]{12})?:user/(?:(?:service-role|aws-service-role|aws-reserved)/)?(?:(?P<AWS_IAM_PATH__4>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__5>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__6>[A-Za-z0-9_+=,.@/-]*[A-Za-z0-9_+=@-])/)?)?)?(?P<AWS_IAM_USER>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__3>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__4>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|iam:[a-z0-9-]*:(?P<AWS_ACCOUNT__3>[0-9]{12})?:group/(?:(?:service-role|aws-service-role|aws-reserved)/)?(?:(?P<AWS_IAM_PATH__7>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__8>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__9>[A-Za-z0-9_+=,.@/-]*[A-Za-z0-9_+=@-])/)?)?)?(?P<AWS_IAM_GROUP>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__5>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__6>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|iam:[a-z0-9-]*:(?P<AWS_ACCOUNT__4>[0-9]{12})?:policy/(?:(?:service-role|aws-service-role|aws-reserved)/)?(?:(?P<AWS_IAM_PATH__10>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__11>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__12>[A-Za-z0-9_+=,.@/-]*[A-Za-z0-9_+=@-])/)?)?)?(?P<AWS_IAM_POLICY>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__7>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__8>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|iam:[a-z0-9-]*:(?P<AWS_ACCOUNT__5>[0-9]{12})?:instance-profile/(?:(?:service-role|aws-service-role|aws-reserved)/)?(?:(?P<AWS_IAM_PATH__13>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__14>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])/(?:(?P<AWS_IAM_PATH__15>[A-Za-z0-9_+=,.@/-]*[A-Za-z0-9_+=@-])/)?)?)?(?P<AWS_IAM_INSTANCE_PROFILE>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__9>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__10>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|sts:[a-z0-9-]*:(?P<AWS_ACCOUNT__6>[0-9]{12})?:assumed-role/(?P<AWS_IAM_ROLE__2>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])(?:/(?P<AWS_STS_SESSION>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-]))?(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__11>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__12>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|lambda:[a-z0-9-]*:(?P<AWS_ACCOUNT__7>[0-9]{12})?:function:(?P<AWS_LAMBDA_FUNCTION>[A-Za-z0-9_-]+)(?::(?:[0-9]+|\\$LATEST))?(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__13>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__14>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|lambda:[a-z0-9-]*:(?P<AWS_ACCOUNT__8>[0-9]{12})?:layer:(?P<AWS_LAMBDA_LAYER>[A-Za-z0-9_-]+)(?::[0-9]+)?(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__15>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__16>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|dynamodb:[a-z0-9-]*:(?P<AWS_ACCOUNT__9>[0-9]{12})?:table/(?P<AWS_DYNAMODB_TABLE>[A-Za-z0-9_.-]*[A-Za-z0-9_-])(?:/stream/[0-9T:.-]*[0-9])?(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__17>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__18>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|sqs:[a-z0-9-]*:(?P<AWS_ACCOUNT__10>[0-9]{12})?:(?P<AWS_SQS_QUEUE>[A-Za-z0-9_-]{1,80}(?:\\.fifo)?)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__19>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__20>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|sns:[a-z0-9-]*:(?P<AWS_ACCOUNT__11>[0-9]{12})?:(?P<AWS_SNS_TOPIC>[A-Za-z0-9_-]{1,256}(?:\\.fifo)?)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__21>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__22>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|eks:[a-z0-9-]*:(?P<AWS_ACCOUNT__12>[0-9]{12})?:cluster/(?P<AWS_EKS_CLUSTER>[A-Za-z0-9_-]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__23>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__24>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|ecs:[a-z0-9-]*:(?P<AWS_ACCOUNT__13>[0-9]{12})?:cluster/(?P<AWS_ECS_CLUSTER>[A-Za-z0-9_-]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__25>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__26>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|rds:[a-z0-9-]*:(?P<AWS_ACCOUNT__14>[0-9]{12})?:db:(?P<AWS_RDS_INSTANCE>[A-Za-z0-9-]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__27>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__28>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|rds:[a-z0-9-]*:(?P<AWS_ACCOUNT__15>[0-9]{12})?:cluster:(?P<AWS_RDS_CLUSTER>[A-Za-z0-9-]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__29>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__30>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|ec2:[a-z0-9-]*:(?P<AWS_ACCOUNT__16>[0-9]{12})?:instance/(?P<AWS_EC2>i-[0-9A-Fa-f]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__31>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__32>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|ec2:[a-z0-9-]*:(?P<AWS_ACCOUNT__17>[0-9]{12})?:vpc/(?P<AWS_VPC>vpc-[0-9A-Fa-f]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__33>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__34>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|ec2:[a-z0-9-]*:(?P<AWS_ACCOUNT__18>[0-9]{12})?:subnet/(?P<AWS_SUBNET>subnet-[0-9A-Fa-f]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__35>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__36>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|ec2:[a-z0-9-]*:(?P<AWS_ACCOUNT__19>[0-9]{12})?:security-group/(?P<AWS_SG>sg-[0-9A-Fa-f]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__37>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__38>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|kms:[a-z0-9-]*:(?P<AWS_ACCOUNT__20>[0-9]{12})?:key/(?P<AWS_KMS_KEY>[A-Za-z0-9-]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__39>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__40>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|kms:[a-z0-9-]*:(?P<AWS_ACCOUNT__21>[0-9]{12})?:alias/(?P<AWS_KMS_ALIAS>[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-])(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__41>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__42>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|secretsmanager:[a-z0-9-]*:(?P<AWS_ACCOUNT__22>[0-9]{12})?:secret:(?P<AWS_SECRET_NAME>[A-Za-z0-9/_+=.@-]*[A-Za-z0-9_+=@-])(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__43>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__44>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|logs:[a-z0-9-]*:(?P<AWS_ACCOUNT__23>[0-9]{12})?:log-group:(?P<AWS_LOG_GROUP>[A-Za-z0-9_./#-]*[A-Za-z0-9_/#-])(?::\\*|:log-stream:(?P<AWS_LOG_STREAM>[A-Za-z0-9_./$\\[\\]#=+@-]*[A-Za-z0-9_/$\\]#=+@-]))?(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__45>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__46>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|states:[a-z0-9-]*:(?P<AWS_ACCOUNT__24>[0-9]{12})?:stateMachine:(?P<AWS_STATE_MACHINE>[A-Za-z0-9_-]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__47>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__48>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|cloudformation:[a-z0-9-]*:(?P<AWS_ACCOUNT__25>[0-9]{12})?:stack/(?P<AWS_CLOUDFORMATION_STACK>[A-Za-z0-9-]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__49>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__50>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|elasticloadbalancing:[a-z0-9-]*:(?P<AWS_ACCOUNT__26>[0-9]{12})?:loadbalancer/(?:app/|net/|gwy/)?(?P<AWS_ELB>[A-Za-z0-9-]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__51>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__52>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|elasticloadbalancing:[a-z0-9-]*:(?P<AWS_ACCOUNT__27>[0-9]{12})?:targetgroup/(?P<AWS_ELB_TARGET_GROUP>[A-Za-z0-9-]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__53>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__54>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|ecr:[a-z0-9-]*:(?P<AWS_ACCOUNT__28>[0-9]{12})?:repository/(?P<AWS_ECR_REPOSITORY>[a-z0-9._/-]*[a-z0-9])(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__55>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__56>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?|s3:::(?:(?P<AWS_S3>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])|[A-Z][A-Z0-9_]*_[0-9]{3,})(?:/[A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-])?|[a-z0-9-]+:[a-z0-9-]*:(?P<AWS_ACCOUNT__29>[0-9]{12})?:(?:[A-Za-z0-9-]+[/:])?(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__57>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__58>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__59>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__60>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__61>[0-9]*(?:[A-Za-z_+=@.*$%~,-][A-Za-z0-9_+=@.*$%~,-]*[A-Za-z0-9_+=@*$%~-]|[A-Za-z_+=@*$%~-]))|[0-9]+)(?:[/:]+(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?(?:(?P<AWS_NAME__62>[0-9]*(?:[A-Za-z_+=@./:*$%~,-][A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]|[A-Za-z_+=@/*$%~-]))|[0-9]+))?)?)?)?)?)",
        old_validator="",
        new_validator="",
        old_description="Amazon Resource Name in any partition (aws, aws-cn, aws-us-gov, aws-iso*, aws-eusc); AWS-managed ARNs with the account 'aws' are left visible.",
        new_description="Amazon Resource Name in any partition (aws, aws-cn, aws-us-gov, aws-iso*, aws-eusc), structure kept: the account, an S3 bucket and the names a customer chose are masked each on its own, typed where the resource type says what they name (role, user, function, table, queue, topic, cluster, key, secret, log group, ...); AWS-managed ARNs with the account 'aws' are left visible.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_account_id",
        old_regex="[0-9]{12}|[0-9]{4}-[0-9]{4}-[0-9]{4}",
        new_regex="[0-9]{12}|[0-9]{4}-[0-9]{4}-[0-9]{4}",
        old_validator="",
        new_validator="",
        old_description="12-digit AWS account ID (or 1234-5678-9012 as the console shows it), masked only near words such as account, owner, AWS, 계정.",
        new_description="12-digit AWS account ID (or 1234-5678-9012 as the console shows it), masked only near words such as account, owner, AWS, 계정.",
        old_keywords="account\naccount id\naccount_id\nowner\n계정\n어카운트",
        new_keywords="account\naccount id\naccount_id\nowner\nregistryid\nregistry_id\nregistry id\n계정\n어카운트",
        old_context_regex="(?i:\\baws\\b)",
        new_context_regex="(?i:\\baws\\b)",
        old_context_window=32,
        new_context_window=32,
        positive_removed=(),
        positive_added=('"registryId": "012345678901"',),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_s3_uri",
        old_regex="s3[an]?://[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]",
        new_regex="s3[an]?://(?P<AWS_S3>[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9])",
        old_validator="",
        new_validator="",
        old_description="S3 URI (s3://bucket, also s3a:// and s3n://); the bucket is masked, the object key stays visible.",
        new_description="S3 URI (s3://bucket, also s3a:// and s3n://); the bucket is masked, the object key stays visible.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_s3_url",
        old_regex="[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\\.s3[a-z0-9.-]*\\.amazonaws\\.com(?:\\.cn)?|s3[a-z0-9.-]*\\.amazonaws\\.com(?:\\.cn)?/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        new_regex="[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\\.s3[a-z0-9.-]*\\.amazonaws\\.com(?:\\.cn)?|s3[a-z0-9.-]*\\.amazonaws\\.com(?:\\.cn)?/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        old_validator="",
        new_validator="customer_endpoint",
        old_description="S3 bucket in an HTTPS host or path (bucket.s3.region.amazonaws.com, s3.region.amazonaws.com/bucket, website and dual-stack endpoints).",
        new_description="S3 bucket in an HTTPS host or path (bucket.s3.region.amazonaws.com, s3.region.amazonaws.com/bucket, website and dual-stack endpoints).",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(
            '"Principal": {"Service": "logging.s3.amazonaws.com"}',
            '"Service": ["delivery.logs.amazonaws.com", "logging.s3.amazonaws.com"]',
            "Service:\\n  - logging.s3.amazonaws.com",
        ),
    ),
    Change(
        name="aws_s3_bucket_assignment",
        old_regex="(?:[ac-z0-9][a-z0-9.-]|b[a-tv-z0-9.-]|bu[abd-z0-9.-]|buc[a-jl-z0-9.-])[a-z0-9.-]{0,59}[a-z0-9]",
        new_regex="(?:[ac-z0-9][a-z0-9.-]|b[a-tv-z0-9.-]|bu[abd-z0-9.-]|buc[a-jl-z0-9.-])[a-z0-9.-]{0,59}[a-z0-9]",
        old_validator="",
        new_validator="bucket_name",
        old_description='Bucket name given to a bucket, Bucket, BucketName, bucket_name or *_BUCKET setting (bucket = "...", "Bucket": "...", BucketName: ..., S3_BUCKET=...).',
        new_description='Bucket name given to a bucket, Bucket, BucketName, bucket_name or *_BUCKET setting (bucket = "...", "Bucket": "...", BucketName: ..., S3_BUCKET=...).',
        old_keywords="",
        new_keywords="",
        old_context_regex="(?i:\\Bucket(?:[_-]?name)?[\\\"']?[ \\t]*[:=][ \\t]*[\\\"']?)",
        new_context_regex="(?i:\\Bucket(?:[_-]?name)?[\\\"']?[ \\t]*[:=][ \\t]*[\\\"']?)",
        old_context_window=1,
        new_context_window=1,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(
            "self.bucket = self.client.bucket(self.name)",
            '"repository": "bitbucket:user/repo"',
            "bucket = storage.bucket(name)",
        ),
    ),
    Change(
        name="aws_s3_bucket_in_context",
        old_regex="(?:[a-z](?:[a-z0-9]{2,}|[0-9])|[0-9][a-z0-9]*[a-z][a-z0-9]*|[bdfghjklnopqrtvwxyz][a-z]|a[a-eg-oq-z]|c[b-mo-z]|e[a-tv-z]|i[a-km-z]|m[a-df-wyz]|s[b-z]|u[a-rt-z])(?:[.-]+[a-z0-9]+)+|[a-z]-+[a-z0-9]+(?:[.-]+[a-z0-9]+)*|[0-9]+(?:[.-]+[a-z0-9]+)*[.-]+[a-z0-9]*[a-z][a-z0-9]*(?:[.-]+[a-z0-9]+)*",
        new_regex="(?:[a-z](?:[a-z0-9]{2,}|[0-9])|[0-9][a-z0-9]*[a-z][a-z0-9]*|[bdfghjklnopqrtvwxyz][a-z]|a[a-eg-oq-z]|c[b-mo-z]|e[a-tv-z]|i[a-km-z]|m[a-df-wyz]|s[b-z]|u[a-rt-z])(?:[.-]+[a-z0-9]+)+|[a-z]-+[a-z0-9]+(?:[.-]+[a-z0-9]+)*|[0-9]+(?:[.-]+[a-z0-9]+)*[.-]+[a-z0-9]*[a-z][a-z0-9]*(?:[.-]+[a-z0-9]+)*",
        old_validator="",
        new_validator="bucket_name",
        old_description="Bucket name written next to the word bucket, 버킷 or an 'S3:' label; the name must contain a letter and a '-' or '.', so ordinary words are left alone.",
        new_description="Bucket names after a 'buckets:' or 'S3:' label, or next to 버킷; the name must contain a letter and a '-' or '.', so ordinary words are left alone.",
        old_keywords="버킷",
        new_keywords="버킷",
        old_context_regex="(?i:(?:^|[^a-z0-9.-])(?:bucket(?:[ _-]?name)?(?:$|[^a-z0-9-])|buckets[ \\t]*:)|\\bs3:\\s)",
        new_context_regex="(?i:(?:^|[^a-z0-9.-])buckets[ \\t]*:(?:$|[^/])|\\bs3:\\s)",
        old_context_window=24,
        new_context_window=24,
        positive_removed=(
            "the bucket acme-prod-assets is public",
            "static site bucket: logs.example.com",
        ),
        positive_added=("buckets: logs.example.com, acme-prod-logs",),
        negative_removed=(),
        negative_added=(
            'blob = bucket.blob("reports/2024.csv")',
            "kubectl apply -f bucket.yaml",
            "each bucket's hit rate is over telemetry-bearing turns",
            "bucket: dict[str, object],  # mutable-ok: written in place",
        ),
    ),
    Change(
        name="aws_rds_endpoint",
        old_regex="[A-Za-z0-9][A-Za-z0-9.-]*\\.(?:rds|docdb|neptune)\\.amazonaws\\.com(?:\\.cn)?",
        new_regex="(?P<AWS_RDS_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*)\\.[a-z]{2}(?:-[a-z]+)+-[0-9]\\.(?:rds|docdb|neptune)\\.amazonaws\\.com(?:\\.cn)?",
        old_validator="",
        new_validator="",
        old_description="RDS, Aurora (cluster, reader, custom, proxy), DocumentDB or Neptune endpoint host name.",
        new_description="RDS, Aurora (cluster, reader, custom, proxy), DocumentDB or Neptune endpoint host name.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=('"Principal": {"Service": "monitoring.rds.amazonaws.com"}',),
    ),
    Change(
        name="aws_sqs_queue_url",
        old_regex="(?:https?://)?(?:sqs\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?|(?:[a-z0-9-]+\\.)?queue\\.amazonaws\\.com)/[0-9]{12}/[A-Za-z0-9_-]{1,80}(?:\\.fifo)?",
        new_regex="(?:https?://)?(?:sqs\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?|(?:[a-z0-9-]+\\.)?queue\\.amazonaws\\.com)/(?P<AWS_ACCOUNT>[0-9]{12})/(?P<AWS_SQS_QUEUE>[A-Za-z0-9_-]{1,80}(?:\\.fifo)?)",
        old_validator="",
        new_validator="",
        old_description="SQS queue URL, which contains the account ID and the queue name.",
        new_description="SQS queue URL, which contains the account ID and the queue name.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="public_ipv4",
        old_regex="[0-9]{1,3}(?:\\.[0-9]{1,3}){3}(?:\\.[0-9]+)*",
        new_regex="[0-9]{1,3}(?:\\.[0-9]{1,3}){3}(?:\\.[0-9]+)*",
        old_validator="public_ip",
        new_validator="public_ip",
        old_description="Public IPv4 address; private, loopback, link-local, CGNAT and documentation addresses stay visible.",
        new_description="Public IPv4 address; private, loopback, link-local, CGNAT and documentation addresses stay visible.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(
            "see Section 24.1.1.2 of the standard",
            "id-X25519 OBJECT IDENTIFIER ::= { 1.3.101.110 }",
            "requests>=3.7.4.2",
            "version 4.10.2.1 was released",
        ),
    ),
    Change(
        name="password_assignment",
        old_regex="(?:[A-Za-z0-9_.-]*(?i:password|passwd|passphrase)|비밀번호)[\\\"']?[ \\t]*[:=][ \\t]*[\\\"']?[^\\s\\\"'<>,;&]*[0-9@#%^&*+=?~][^\\s\\\"'<>,;&]*|--[a-z-]*password[ \\t]+[\\\"']?[^\\s\\\"'<>,;&]*[0-9@#%^&*+=?~][^\\s\\\"'<>,;&]*",
        new_regex="(?:[A-Za-z0-9_.-]*(?i:password|passwd|passphrase)|비밀번호)[\\\"']?[ \\t]*[:=][ \\t]*[^\\s\\\"'<>,;&]*[0-9@#%^&*+=?~][^\\s\\\"'<>,;&]*|--[a-z-]*password[ \\t]+[^\\s\\\"'<>,;&]*[0-9@#%^&*+=?~][^\\s\\\"'<>,;&]*",
        old_validator="",
        new_validator="secret_not_code",
        old_description="Value given to a setting whose name ends in password, passwd or passphrase (DB_PASSWORD=..., \"password\": \"...\", --master-user-password ...); the value must contain a digit or a symbol, so 'password: true' and '${DB_PASSWORD}' stay visible.",
        new_description="Unquoted value given to a setting whose name ends in password, passwd or passphrase, anywhere in a line (DB_PASSWORD=..., password=... in a connection string, --master-user-password ...), with the name; the value must contain a digit or a symbol, so 'password: true' and '${DB_PASSWORD}' stay visible.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=('"MasterUserPassword": "Sup3r#Secret"',),
        positive_added=("psql 'host=db user=app password=Sup3r#Secret'",),
        negative_removed=(),
        negative_added=(
            '_("Change password: %s") % user',
            "password = get_random_string(30)",
            "password = secrets.token_urlsafe(32)",
            'print("password: {}".format(masked))',
        ),
    ),
    Change(
        name="aws_redshift_endpoint",
        old_regex="[A-Za-z0-9][A-Za-z0-9.-]*\\.redshift(?:-serverless)?\\.amazonaws\\.com(?:\\.cn)?",
        new_regex="(?P<AWS_REDSHIFT_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*?)(?:\\.(?P<AWS_ACCOUNT>[0-9]{12}))?\\.[a-z]{2}(?:-[a-z]+)+-[0-9]\\.redshift(?:-serverless)?\\.amazonaws\\.com(?:\\.cn)?",
        old_validator="",
        new_validator="",
        old_description="Redshift or Redshift Serverless endpoint host name.",
        new_description="Redshift or Redshift Serverless endpoint host name.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_elb_dns_name",
        old_regex="[A-Za-z0-9][A-Za-z0-9.-]*\\.elb(?:\\.[a-z0-9-]+)?\\.amazonaws\\.com(?:\\.cn)?",
        new_regex="(?P<AWS_ELB>[A-Za-z0-9][A-Za-z0-9.-]*?)(?:\\.[a-z]{2}(?:-[a-z]+)+-[0-9])?\\.elb(?:\\.[a-z]{2}(?:-[a-z]+)+-[0-9])?\\.amazonaws\\.com(?:\\.cn)?",
        old_validator="",
        new_validator="",
        old_description="Classic, Application or Network Load Balancer DNS name (*.elb.amazonaws.com).",
        new_description="Classic, Application or Network Load Balancer DNS name (*.elb.amazonaws.com).",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_eks_endpoint",
        old_regex="[A-Za-z0-9][A-Za-z0-9.-]*\\.eks\\.amazonaws\\.com(?:\\.cn)?|oidc\\.eks\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?/id/[A-Za-z0-9]+",
        new_regex="(?P<AWS_EKS_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*?)(?:\\.[a-z]{2}[0-9]+)?(?:\\.[a-z]{2}(?:-[a-z]+)+-[0-9])?\\.eks\\.amazonaws\\.com(?:\\.cn)?|oidc\\.eks\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?/id/(?P<AWS_EKS_ENDPOINT__2>[A-Za-z0-9]+)",
        old_validator="",
        new_validator="",
        old_description="EKS cluster API server endpoint or OIDC issuer URL.",
        new_description="EKS cluster API server endpoint or OIDC issuer URL.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_elasticache_endpoint",
        old_regex="[A-Za-z0-9][A-Za-z0-9.-]*\\.cache\\.amazonaws\\.com(?:\\.cn)?|[A-Za-z0-9][A-Za-z0-9.-]*\\.memorydb\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?",
        new_regex="(?P<AWS_ELASTICACHE_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*?)(?:\\.[a-z]{3,4}[0-9])?\\.cache\\.amazonaws\\.com(?:\\.cn)?|(?P<AWS_ELASTICACHE_ENDPOINT__2>[A-Za-z0-9][A-Za-z0-9.-]*)\\.memorydb\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?",
        old_validator="",
        new_validator="",
        old_description="ElastiCache or MemoryDB endpoint host name.",
        new_description="ElastiCache or MemoryDB endpoint host name.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_api_gateway_endpoint",
        old_regex="[A-Za-z0-9][A-Za-z0-9.-]*\\.execute-api\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?",
        new_regex="(?P<AWS_APIGW_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*)\\.execute-api\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?",
        old_validator="",
        new_validator="",
        old_description="API Gateway invoke host name (*.execute-api.<region>.amazonaws.com).",
        new_description="API Gateway invoke host name (*.execute-api.<region>.amazonaws.com).",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_cloudfront_domain",
        old_regex="[A-Za-z0-9][A-Za-z0-9.-]*\\.cloudfront\\.net",
        new_regex="(?P<AWS_CLOUDFRONT_DOMAIN>[A-Za-z0-9][A-Za-z0-9.-]*)\\.cloudfront\\.net",
        old_validator="",
        new_validator="",
        old_description="CloudFront distribution domain name (*.cloudfront.net).",
        new_description="CloudFront distribution domain name (*.cloudfront.net).",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_lambda_function_url",
        old_regex="[a-z0-9]+\\.lambda-url\\.[a-z0-9-]+\\.on\\.aws",
        new_regex="(?P<AWS_LAMBDA_URL>[a-z0-9]+)\\.lambda-url\\.[a-z0-9-]+\\.on\\.aws",
        old_validator="",
        new_validator="",
        old_description="Lambda function URL host name (*.lambda-url.<region>.on.aws).",
        new_description="Lambda function URL host name (*.lambda-url.<region>.on.aws).",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_opensearch_endpoint",
        old_regex="[A-Za-z0-9][A-Za-z0-9.-]*\\.(?:es|aoss)\\.amazonaws\\.com(?:\\.cn)?",
        new_regex="(?P<AWS_OPENSEARCH_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*?)(?:\\.[a-z]{2}(?:-[a-z]+)+-[0-9])?\\.(?:es|aoss)\\.amazonaws\\.com(?:\\.cn)?",
        old_validator="",
        new_validator="",
        old_description="OpenSearch Service domain or OpenSearch Serverless collection endpoint.",
        new_description="OpenSearch Service domain or OpenSearch Serverless collection endpoint.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_msk_mq_broker_endpoint",
        old_regex="[A-Za-z0-9][A-Za-z0-9.-]*\\.kafka(?:-serverless)?\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?|[A-Za-z0-9][A-Za-z0-9.-]*\\.mq\\.[a-z0-9-]+\\.(?:amazonaws\\.com(?:\\.cn)?|on\\.aws)",
        new_regex="(?P<AWS_BROKER_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*)\\.kafka(?:-serverless)?\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?|(?P<AWS_BROKER_ENDPOINT__2>[A-Za-z0-9][A-Za-z0-9.-]*)\\.mq\\.[a-z0-9-]+\\.(?:amazonaws\\.com(?:\\.cn)?|on\\.aws)",
        old_validator="",
        new_validator="",
        old_description="Amazon MSK (Kafka) or Amazon MQ broker host name.",
        new_description="Amazon MSK (Kafka) or Amazon MQ broker host name.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="aws_ecr_registry",
        old_regex="[0-9]{12}\\.dkr\\.ecr(?:-fips)?\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?",
        new_regex="(?P<AWS_ACCOUNT>[0-9]{12})\\.dkr\\.ecr(?:-fips)?\\.[a-z0-9-]+\\.amazonaws\\.com(?:\\.cn)?(?:/(?P<AWS_ECR_REPOSITORY>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*))?",
        old_validator="",
        new_validator="",
        old_description="Private ECR registry host (<account>.dkr.ecr.<region>.amazonaws.com); the repository name stays visible.",
        new_description="Private ECR registry host (<account>.dkr.ecr.<region>.amazonaws.com) and repository: the account and the repository's name are masked, the region and a tag stay visible.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=(),
        negative_removed=(),
        negative_added=(),
    ),
    Change(
        name="url_credentials",
        old_regex="[A-Za-z][A-Za-z0-9+.-]*://[^\\s:/@\\\"'<>]*:[^\\s@\\\"'<>]+@[A-Za-z0-9.-]*[A-Za-z0-9]",
        new_regex="[A-Za-z][A-Za-z0-9+.-]*://(?P<URL_USER>[^\\s:/@\\\"'<>]*):(?P<URL_PASSWORD>[^\\s@\\\"'<>]+)@(?P<URL_HOST>[A-Za-z0-9.-]*[A-Za-z0-9])?",
        old_validator="",
        new_validator="",
        old_description="URL with a user name and password (postgres://user:pass@host); scheme, user, password and host are masked together, port and path stay visible.",
        new_description="URL with a user name and password (postgres://user:pass@host): the user, the password and the host are masked each on its own; scheme, port and path stay readable.",
        old_keywords="",
        new_keywords="",
        old_context_regex="",
        new_context_regex="",
        old_context_window=48,
        new_context_window=48,
        positive_removed=(),
        positive_added=("postgres://app:Wq8#zL2v@[fd00::12]:5432/app",),
        negative_removed=(),
        negative_added=(),
    ),
)

# The rules added, as migration 0002 would seed them.
ADDED: tuple[dict[str, Any], ...] = (
    {
        "name": "aws_network_acl_association_id",
        "category": "aws_resource",
        "description": "Network ACL association ID (aclassoc- followed by 17 hex digits, or 8 for older resources; any case).",
        "regex": "(?i:aclassoc-(?:[0-9a-f]{17}|[0-9a-f]{8}))",
        "placeholder_prefix": "AWS_ACL_ASSOCIATION",
        "priority": 20,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": 'aclassoc-e5b95c8c\n"NewAssociationId": "aclassoc-3999875b"\nACLASSOC-0123456789ABCDEF0',
        "negative_examples": "aclassoc-1234567 is one hex digit short\nACLASSOC-0123456789ABCDEFG\nmyaclassoc-0123456789abcdef0",
        "enabled": True,
    },
    {
        "name": "aws_route_table_association_id",
        "category": "aws_resource",
        "description": "Route table association ID (rtbassoc- followed by 17 hex digits, or 8 for older resources; any case).",
        "regex": "(?i:rtbassoc-(?:[0-9a-f]{17}|[0-9a-f]{8}))",
        "placeholder_prefix": "AWS_RTB_ASSOCIATION",
        "priority": 20,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": 'rtbassoc-781d0d1a\n"AssociationId": "rtbassoc-0b1d2e3f4a5b6c7d8"\nRTBASSOC-0123456789ABCDEF0',
        "negative_examples": "rtbassoc-1234567 is one hex digit short\nRTBASSOC-0123456789ABCDEFG\nmyrtbassoc-0123456789abcdef0",
        "enabled": True,
    },
    {
        "name": "aws_iam_instance_profile_association_id",
        "category": "aws_resource",
        "description": "IAM instance profile association ID (iip-assoc- followed by 17 hex digits; any case).",
        "regex": "(?i:iip-assoc-[0-9a-f]{17})",
        "placeholder_prefix": "AWS_IIP_ASSOCIATION",
        "priority": 20,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": 'iip-assoc-0e7736511a163c209\n"AssociationId": "iip-assoc-05020b59952902f5f"\nIIP-ASSOC-0123456789ABCDEF0',
        "negative_examples": "iip-assoc-1234567 is one hex digit short\nIIP-ASSOC-0123456789ABCDEFG\nmyiip-assoc-0123456789abcdef0\niip-assoc-1a2b3c4d",
        "enabled": True,
    },
    {
        "name": "aws_spot_instance_request_id",
        "category": "aws_resource",
        "description": "Spot Instance request ID (sir- followed by 17 hex digits, or 8 for older resources; any case).",
        "regex": "(?i:sir-(?:[0-9a-f]{17}|[0-9a-f]{8}))",
        "placeholder_prefix": "AWS_SPOT_REQUEST",
        "priority": 20,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": "sir-08b93456\ncancel sir-0123456789abcdef0 now\nSIR-0123456789ABCDEF0",
        "negative_examples": "sir-1234567 is one hex digit short\nSIR-0123456789ABCDEFG\nmysir-0123456789abcdef0",
        "enabled": True,
    },
    {
        "name": "aws_kernel_image_id",
        "category": "aws_resource",
        "description": "Kernel image ID (AKI) (aki- followed by 17 hex digits, or 8 for older resources; any case).",
        "regex": "(?i:aki-(?:[0-9a-f]{17}|[0-9a-f]{8}))",
        "placeholder_prefix": "AWS_KERNEL_IMAGE",
        "priority": 20,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": 'aki-88aa75e1\n"KernelId": "aki-0123456789abcdef0"\nAKI-0123456789ABCDEF0',
        "negative_examples": "aki-1234567 is one hex digit short\nAKI-0123456789ABCDEFG\nmyaki-0123456789abcdef0",
        "enabled": True,
    },
    {
        "name": "aws_ramdisk_image_id",
        "category": "aws_resource",
        "description": "RAM disk image ID (ARI) (ari- followed by 17 hex digits, or 8 for older resources; any case).",
        "regex": "(?i:ari-(?:[0-9a-f]{17}|[0-9a-f]{8}))",
        "placeholder_prefix": "AWS_RAMDISK_IMAGE",
        "priority": 20,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": 'ari-1a2b3c4d\n"RamdiskId": "ari-0123456789abcdef0"\nARI-0123456789ABCDEF0',
        "negative_examples": "ari-1234567 is one hex digit short\nARI-0123456789ABCDEFG\nmyari-0123456789abcdef0",
        "enabled": True,
    },
    {
        "name": "aws_efs_mount_target_id",
        "category": "aws_resource",
        "description": "EFS mount target ID (fsmt- followed by 17 hex digits, or 8 for older resources; any case).",
        "regex": "(?i:fsmt-(?:[0-9a-f]{17}|[0-9a-f]{8}))",
        "placeholder_prefix": "AWS_EFS_MOUNT_TARGET",
        "priority": 20,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": 'fsmt-12340abc\n"MountTargetId": "fsmt-0123456789abcdef0"\nFSMT-0123456789ABCDEF0',
        "negative_examples": "fsmt-1234567 is one hex digit short\nFSMT-0123456789ABCDEFG\nmyfsmt-0123456789abcdef0",
        "enabled": True,
    },
    {
        "name": "aws_spot_fleet_request_id",
        "category": "aws_resource",
        "description": "Spot Fleet request ID (sfr- followed by a UUID; any case).",
        "regex": "(?i:sfr-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
        "placeholder_prefix": "AWS_SPOT_FLEET",
        "priority": 20,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": 'sfr-d1b9a2c4-5e6f-4a7b-8c9d-0e1f2a3b4c5d\n"SpotFleetRequestId": "sfr-73fbd2ce-aa30-494c-8788-1cee40a1b2c3"',
        "negative_examples": "sfr-73fbd2ce\nmysfr-73fbd2ce-aa30-494c-8788-1cee40a1b2c3",
        "enabled": True,
    },
    {
        "name": "aws_resource_id",
        "category": "aws_resource",
        "description": "Any other AWS resource ID of the long form: a lower-case prefix of one to three words, a dash and 17 hex digits (cks-, backup-, fpga-, ...; any case).",
        "regex": "(?i:[a-z][a-z0-9]{0,19}(?:-[a-z][a-z0-9]{0,19}){0,2}-[0-9a-f]{17})",
        "placeholder_prefix": "AWS_RESOURCE",
        "priority": 85,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": 'cks-1234567890abcdef0\n"BackupId": "backup-03e3c82e0183b7b6b"\nfpga-0123456789abcdef0\nrestore from snap-0123456789abcdef0 and backup-0a3364eded1014b28',
        "negative_examples": "commit-0123456789abcdef0123456789abcdef01234567\nbuild-0123456789abcdef\nid-0123456789abcdef0g",
        "enabled": True,
    },
    {
        "name": "aws_session_token_by_prefix",
        "category": "aws_credential",
        "description": "AWS STS session token recognised by its own start (IQoJb3JpZ2luX2Vj..., or the older FwoGZXIvYXdz...), with no keyword around it.",
        "regex": "(?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdz)[A-Za-z0-9/+%]{60,}={0,2}",
        "placeholder_prefix": "AWS_SESSION_TOKEN",
        "priority": 3,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6m3V8ryhKT1NmX2b9l7yqJk4Fh2r0Xw8vT6ZpL3sHqAIgR5cN0dE7fU1gS9tJ2kB4hY6mW8oQ3pV1zX0aC5eD7fEq\nsession: FwoGZXIvYXdzEBYaDHhBTEXAMPLEtokenZ8k2pQ9sL4mN7vR1tW3yZ6bC0dF5gH8jK2lM4nP7qR9",
        "negative_examples": "IQoJb3JpZ2luX2Vj\nFwoGZXIvYXdzEBYaDH",
        "enabled": True,
    },
    {
        "name": "aws_bedrock_api_key",
        "category": "aws_credential",
        "description": "Amazon Bedrock API key: long-term (ABSK followed by base64) or short-term (bedrock-api-key- followed by a base64 presigned URL).",
        "regex": "ABSK[A-Za-z0-9+/]{32,}={0,2}|bedrock-api-key-[A-Za-z0-9+/%_-]{32,}={0,2}",
        "placeholder_prefix": "AWS_BEDROCK_KEY",
        "priority": 3,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": "ABSKQmVkcm9ja0FQSUtleS1hYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk=\nexport AWS_BEARER_TOKEN_BEDROCK=bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29tLz9BY3Rpb249Q2FsbFdpdGhCZWFyZXJUb2tlbiZYLUFtei1BbGdvcml0aG09",
        "negative_examples": "ABSK\nbedrock-api-key-\nbedrock-api-key-rotation is on",
        "enabled": True,
    },
    {
        "name": "aws_s3_ls_bucket",
        "category": "aws_storage",
        "description": "Bucket name in the output of 'aws s3 ls': a line of a date, a time and the name.",
        "regex": "(?m:[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$)",
        "placeholder_prefix": "AWS_S3",
        "priority": 70,
        "validator": "",
        "context_keywords": "",
        "context_regex": "(?m:^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} )",
        "context_window": 0,
        "positive_examples": "$ aws s3 ls\\n2025-01-14 09:12:03 acme-prod-logs\\n2025-03-02 17:40:55 acme-billing\n2024-11-30 23:01:09 logs.example.com",
        "negative_examples": "2025-08-22 12:44:30     482113 app-2025-08-22.log\n2025-08-22 12:44:30 started the deploy",
        "enabled": True,
    },
    {
        "name": "aws_s3_bucket_after_word",
        "category": "aws_storage",
        "description": "Bucket name right after the word bucket (the bucket acme-prod-assets, a bucket named x); the name must contain a letter and a '-' or '.'.",
        "regex": "(?:[a-z](?:[a-z0-9]{2,}|[0-9])|[0-9][a-z0-9]*[a-z][a-z0-9]*|[bdfghjklnopqrtvwxyz][a-z]|a[a-eg-oq-z]|c[b-mo-z]|e[a-tv-z]|i[a-km-z]|m[a-df-wyz]|s[b-z]|u[a-rt-z])(?:[.-]+[a-z0-9]+)+|[a-z]-+[a-z0-9]+(?:[.-]+[a-z0-9]+)*|[0-9]+(?:[.-]+[a-z0-9]+)*[.-]+[a-z0-9]*[a-z][a-z0-9]*(?:[.-]+[a-z0-9]+)*",
        "placeholder_prefix": "AWS_S3",
        "priority": 80,
        "validator": "bucket_name",
        "context_keywords": "",
        "context_regex": "(?i:(?:^|[^a-z0-9.-])bucket(?:[ _-]?name)?(?:[ \\t]+(?:named|called))?[ \\t]+)",
        "context_window": 0,
        "positive_examples": "the bucket acme-prod-assets is public\na bucket named acme-prod-logs\ncopy it to bucket logs.example.com tonight",
        "negative_examples": "the bucket policy denies s3:GetObject\ncreate an S3 bucket named after the team\neach bucket's hit rate is over telemetry-bearing turns\nhashed = rebind(x)  # rebind-ok: a token bucket\na user-configured bucket prefix\nexpected gs://bucket-name/litellm-vertex-files/x",
        "enabled": True,
    },
    {
        "name": "putty_private_key",
        "category": "secret",
        "description": "PuTTY private key file (PuTTY-User-Key-File-2 or -3), from its first line to its last.",
        "regex": "PuTTY-User-Key-File-[0-9]+: [^\\r\\n]+(?:\\r?\\n(?:[A-Za-z-]+: [^\\r\\n]*|[A-Za-z0-9+/=]+))*",
        "placeholder_prefix": "PRIVATE_KEY",
        "priority": 1,
        "validator": "",
        "context_keywords": "",
        "context_regex": "",
        "context_window": 48,
        "positive_examples": "PuTTY-User-Key-File-3: ssh-ed25519\\nEncryption: none\\nComment: eddsa-key-20250101\\nPublic-Lines: 2\\nAAAAC3NzaC1lZDI1NTE5AAAAIO1xEXAMPLEpublicKEY0123456789abcdef\\nPrivate-Lines: 1\\nAAAAIGxEXAMPLEprivateKEY0123456789abcdefghijklmn\\nPrivate-MAC: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nkey.ppk:\\nPuTTY-User-Key-File-2: ssh-rsa\\nEncryption: none\\nComment: imported\\nPublic-Lines: 1\\nAAAAB3NzaC1yc2EAAAADAQABAAABAQDEXAMPLE0123456789\\nPrivate-Lines: 1\\nAAABAQCEXAMPLEprivate0123456789abcdef\\nPrivate-MAC: 0a1b2c3d4e5f",
        "negative_examples": "PuTTY-User-Key-File-3:\nsave it as a PuTTY-User-Key-File",
        "enabled": True,
    },
    {
        "name": "secret_named_quoted_value",
        "category": "secret",
        "description": 'Whole double-quoted value of a setting whose name ends in password, secret, token, api key, access key or private key ("SecretAccessKey": "...", DB_PASSWORD="...", password: "..."), whatever its shape; templates and format placeholders stay visible.',
        "regex": '(?:[^"\\\\\\r\\n]|\\\\.)+',
        "placeholder_prefix": "SECRET",
        "priority": 65,
        "validator": "secret_value",
        "context_keywords": "",
        "context_regex": '(?i:[A-Za-z0-9_.-]*(?:pass(?:word|wd|phrase)|secret(?:[_-]?access)?[_-]?key|client[_-]?secret|secret|(?:access|session|auth|bearer|refresh|id|api|security)[_-]?token|token|api[_-]?key|access[_-]?key|private[_-]?key|authorization|cookie|비밀번호)["\']?[ \\t]*[:=][ \\t]*")',
        "context_window": 0,
        "positive_examples": '"MasterUserPassword": "mypassword"\n"OldPassword": "3s0K_;xh4~8XXI"\n"client_secret": "6da8e2b1c4f0a9d7e3b5c1f8a2d4e6b0"\nDB_PASSWORD="correct horse battery staple"\n"SessionToken": "FwoGZXIvYXdzEBYaDHhBTEXAMPLE"',
        "negative_examples": '"max_tokens": "1024"\n"token_type": "Bearer"\n"password": "{{ vault_db_password }}"\n"password": "${DB_PASSWORD}"\n"password": "%s"\n"password": ""',
        "enabled": True,
    },
    {
        "name": "secret_named_single_quoted_value",
        "category": "secret",
        "description": "Whole single-quoted value of a setting whose name ends in password, secret, token, api key, access key or private key (password: '...', export API_KEY='...'); templates and format placeholders stay visible.",
        "regex": "[^'\\r\\n]+",
        "placeholder_prefix": "SECRET",
        "priority": 65,
        "validator": "secret_value",
        "context_keywords": "",
        "context_regex": "(?i:[A-Za-z0-9_.-]*(?:pass(?:word|wd|phrase)|secret(?:[_-]?access)?[_-]?key|client[_-]?secret|secret|(?:access|session|auth|bearer|refresh|id|api|security)[_-]?token|token|api[_-]?key|access[_-]?key|private[_-]?key|authorization|cookie|비밀번호)[\\\"']?[ \\t]*[:=][ \\t]*')",
        "context_window": 0,
        "positive_examples": "password: 'mypassword'\nexport API_KEY='Abc1-def2-ghi3'\n{'aws_secret_access_key': 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY'}",
        "negative_examples": "password: '{{ db_password }}'\nx = {'token_type': 'Bearer'}",
        "enabled": True,
    },
    {
        "name": "secret_named_line_value",
        "category": "secret",
        "description": "Rest of the line after a setting whose name ends in password, secret, token, api key, access key or private key, at the start of a line (env files, YAML, INI, HTTP headers such as X-Api-Key); code, variables, templates, booleans and YAML tags stay visible.",
        "regex": "[^\\s\\\"'][^\\r\\n]*[^\\s]|[^\\s\\\"']",
        "placeholder_prefix": "SECRET",
        "priority": 66,
        "validator": "secret_value",
        "context_keywords": "",
        "context_regex": "(?im:^[ \\t]*(?:export[ \\t]+|-[ \\t]+)?[\\\"']?[A-Za-z0-9_.-]*(?:pass(?:word|wd|phrase)|secret(?:[_-]?access)?[_-]?key|client[_-]?secret|secret|(?:access|session|auth|bearer|refresh|id|api|security)[_-]?token|token|api[_-]?key|access[_-]?key|private[_-]?key|authorization|cookie|비밀번호)[\\\"']?[ \\t]*[:=][ \\t]*)",
        "context_window": 0,
        "positive_examples": "DB_PASSWORD=correcthorsebatterystaple\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY\n  password: correct horse battery staple\nX-Api-Key: 3f9a1c7e5b2d4f6a8c0e\nsession_token = FwoGZXIvYXdzEBYaDHhBTEXAMPLE",
        "negative_examples": "password: ${DB_PASSWORD}\npassword: !Ref DbPassword\npassword: true\npassword = get_password(user)\npassword = os.environ['DB_PASSWORD']\ntoken: null\nthe password: it must be long\nmax_tokens: 4096",
        "enabled": True,
    },
    {
        "name": "secret_named_argument",
        "category": "secret",
        "description": "Value of a command-line flag or a query or connection-string field whose name ends in password, secret, token, api key or access key (--password x, --secret-access-key=x, ?token=x&..., ;Password=x;); variables stay visible.",
        "regex": "[^\\s\\\"'&;|<>]+",
        "placeholder_prefix": "SECRET",
        "priority": 66,
        "validator": "secret_value",
        "context_keywords": "",
        "context_regex": "(?i:(?:^|[\\s\\\"'])--?[a-z0-9-]*(?:pass(?:word|wd|phrase)|secret(?:[_-]?access)?[_-]?key|client[_-]?secret|secret|(?:access|session|auth|bearer|refresh|id|api|security)[_-]?token|token|api[_-]?key|access[_-]?key|private[_-]?key|authorization|cookie|비밀번호)(?:[ \\t]+|=)|[?&;][ \\t]*(?:pwd|[A-Za-z0-9_.-]*(?:pass(?:word|wd|phrase)|secret(?:[_-]?access)?[_-]?key|client[_-]?secret|secret|(?:access|session|auth|bearer|refresh|id|api|security)[_-]?token|token|api[_-]?key|access[_-]?key|private[_-]?key|authorization|cookie|비밀번호))[ \\t]*=)",
        "context_window": 0,
        "positive_examples": "aws configure set --secret-access-key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY\nmysql -u admin --password Sup3rSecret -h db\nhttps://api.example.com/v1/items?token=abc123def&page=2\nServer=db.internal;Database=app;User Id=sa;Password=Sup3rSecret;",
        "negative_examples": "--password-file /run/secrets/db\n--password $DB_PASSWORD\n--must-change-password=false\n?token=&page=2\nthe breached-password check is skipped\n.toggle-password label {",
        "enabled": True,
    },
)


def _lines(text: str) -> list[str]:
    return text.split("\n") if text else []


def _edited(text: str, removed: tuple[str, ...], added: tuple[str, ...]) -> str:
    lines = [line for line in _lines(text) if line not in removed]
    return "\n".join([*lines, *(line for line in added if line not in lines)])


def _apply(row: Any, change: Change, *, forward: bool) -> None:
    if forward:
        row.regex, row.validator = change.new_regex, change.new_validator
        old_description, new_description = change.old_description, change.new_description
        positive = (change.positive_removed, change.positive_added)
        negative = (change.negative_removed, change.negative_added)
    else:
        row.regex, row.validator = change.old_regex, change.old_validator
        old_description, new_description = change.new_description, change.old_description
        positive = (change.positive_added, change.positive_removed)
        negative = (change.negative_added, change.negative_removed)
    if row.description == old_description:
        row.description = new_description
    old_keywords, new_keywords = (
        (change.old_keywords, change.new_keywords)
        if forward
        else (change.new_keywords, change.old_keywords)
    )
    if row.context_keywords == old_keywords:
        row.context_keywords = new_keywords
    old_context, new_context = (
        (
            (change.old_context_regex, change.old_context_window),
            (change.new_context_regex, change.new_context_window),
        )
        if forward
        else (
            (change.new_context_regex, change.new_context_window),
            (change.old_context_regex, change.old_context_window),
        )
    )
    if (row.context_regex, row.context_window) == old_context:
        row.context_regex, row.context_window = new_context
    row.positive_examples = _edited(row.positive_examples, *positive)
    row.negative_examples = _edited(row.negative_examples, *negative)


def forward(apps: Any, schema_editor: Any) -> None:
    pattern_model = apps.get_model("patterns", "Pattern")
    for change in CHANGES:
        rows = pattern_model.objects.filter(
            name=change.name, regex=change.old_regex, validator=change.old_validator
        )
        for row in rows:
            _apply(row, change, forward=True)
            row.save()
    for fields in ADDED:
        if not pattern_model.objects.filter(name=fields["name"]).exists():
            pattern_model.objects.create(**fields)


def backward(apps: Any, schema_editor: Any) -> None:
    pattern_model = apps.get_model("patterns", "Pattern")
    for change in CHANGES:
        rows = pattern_model.objects.filter(
            name=change.name, regex=change.new_regex, validator=change.new_validator
        )
        for row in rows:
            _apply(row, change, forward=False)
            row.save()
    for fields in ADDED:
        pattern_model.objects.filter(name=fields["name"], regex=fields["regex"]).delete()


class Migration(migrations.Migration):
    dependencies = [("patterns", "0004_match_resource_ids_in_any_case")]

    operations = [
        migrations.AlterField(
            model_name="pattern",
            name="context_window",
            field=models.PositiveIntegerField(
                default=48,
                help_text="How many characters away a keyword may be; 0: the value starts right where a keyword ends (a setting's value after its name).",
            ),
        ),
        migrations.AlterField(
            model_name="pattern",
            name="validator",
            field=models.CharField(
                blank=True,
                choices=[
                    (
                        "public_ip",
                        "Public IP address (not private, loopback, link-local, CGNAT, documentation)",
                    ),
                    ("any_ip", "Any valid IP address"),
                    ("luhn", "Passes the Luhn checksum (payment cards)"),
                    (
                        "entropy",
                        "Random-looking (at least 16 characters, 3 bits of entropy per character)",
                    ),
                    (
                        "aws_secret",
                        "AWS secret key shape (mixed case, high entropy; not a hex digest)",
                    ),
                    (
                        "bucket_name",
                        "Bucket name, not code (not called, assigned to, an attribute, a file or a scheme)",
                    ),
                    (
                        "customer_endpoint",
                        'A customer\'s endpoint, not an AWS service principal ("Service": ...)',
                    ),
                    (
                        "secret_not_code",
                        "Secret value, not code (not a format placeholder, a function call or a variable)",
                    ),
                    (
                        "secret_value",
                        "Whole value under a secret-named key, not code, a variable, a template or a flag",
                    ),
                ],
                max_length=32,
            ),
        ),
        migrations.RunPython(forward, backward),
        migrations.RunPython(forward, backward),
        migrations.RunPython(forward, backward),
        migrations.RunPython(forward, backward),
        migrations.RunPython(forward, backward),
        migrations.RunPython(forward, backward),
        migrations.RunPython(forward, backward),
    ]
