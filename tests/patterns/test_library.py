"""The default pattern library: each entry's own examples, and the whole library on real text."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from patterns.engine import (
    PREFILTER_MAX_BYTES,
    Finding,
    LocalAllocator,
    Snapshot,
    build_snapshot,
    check_examples,
    check_prefix,
    unmask,
)
from patterns.library import CATEGORIES, DEFAULT_PATTERNS, LibraryEntry
from tests.support.constants import KOREAN_REPORT, KOREAN_REPORT_VALUES

ENTRY_IDS = [entry.name for entry in DEFAULT_PATTERNS]
# Placeholder prefixes shared on purpose: one kind of value found in several shapes.
SHARED_PREFIXES = {
    "SECRET": {
        "secret_named_quoted_value",
        "secret_named_single_quoted_value",
        "secret_named_line_value",
        "secret_named_argument",
    },
    "AWS_S3": {
        "aws_s3_uri",
        "aws_s3_url",
        "aws_s3_bucket_assignment",
        "aws_s3_bucket_cli_argument",
        "aws_s3_bucket_in_context",
        "aws_s3_bucket_after_word",
        "aws_s3_ls_bucket",
    },
    "AWS_KMS_KEY": {"aws_kms_key_id", "aws_kms_multi_region_key_id"},
    "PUBLIC_IP": {"public_ipv4", "public_ipv6"},
    "AWS_SESSION_TOKEN": {"aws_session_token", "aws_session_token_by_prefix"},
    "PRIVATE_KEY": {"pem_private_key", "putty_private_key"},
}


@pytest.fixture(scope="module")
def library() -> Snapshot:
    return build_snapshot([entry.to_spec() for entry in DEFAULT_PATTERNS])


def mask(snapshot: Snapshot, text: str) -> tuple[str, LocalAllocator]:
    allocator = LocalAllocator()
    return snapshot.mask(text, allocator).text, allocator


def values(snapshot: Snapshot, text: str) -> list[str]:
    return [finding.value for finding in snapshot.find(text)]


def assert_masked_and_restored(snapshot: Snapshot, text: str, sensitive: tuple[str, ...]) -> str:
    masked, allocator = mask(snapshot, text)
    for value in sensitive:
        assert value in text, f"test data: {value!r} is not in the text"
        assert value not in masked, f"{value!r} leaked:\n{masked}"
    assert unmask(masked, allocator.restore_map) == text
    return masked


# --- each entry ----------------------------------------------------------------------------


@pytest.mark.parametrize("entry", DEFAULT_PATTERNS, ids=ENTRY_IDS)
def test_entry_compiles_alone(entry: LibraryEntry) -> None:
    build_snapshot([entry.to_spec()])


@pytest.mark.parametrize("entry", DEFAULT_PATTERNS, ids=ENTRY_IDS)
def test_entry_examples_hold(entry: LibraryEntry) -> None:
    assert check_examples(entry.to_spec(), entry.positive, entry.negative) == []


@pytest.mark.parametrize("entry", DEFAULT_PATTERNS, ids=ENTRY_IDS)
def test_entry_has_at_least_two_examples_of_each_kind(entry: LibraryEntry) -> None:
    assert len(entry.positive) >= 2
    assert len(entry.negative) >= 2


@pytest.mark.parametrize("entry", DEFAULT_PATTERNS, ids=ENTRY_IDS)
def test_entry_is_well_formed_for_admins(entry: LibraryEntry) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*", entry.name)
    assert entry.category in CATEGORIES
    check_prefix(entry.prefix)
    assert entry.description.endswith(".")
    assert "\n" not in entry.description
    assert 1 <= entry.priority <= 90


@pytest.mark.parametrize("entry", DEFAULT_PATTERNS, ids=ENTRY_IDS)
def test_entry_spec_carries_every_field(entry: LibraryEntry) -> None:
    spec = entry.to_spec()
    assert (spec.name, spec.regex, spec.prefix, spec.priority, spec.category) == (
        entry.name,
        entry.regex,
        entry.prefix,
        entry.priority,
        entry.category,
    )
    assert (spec.validator, spec.context_keywords, spec.context_regex, spec.context_window) == (
        entry.validator,
        entry.context_keywords,
        entry.context_regex,
        entry.context_window,
    )


def test_entry_names_are_unique() -> None:
    assert len(set(ENTRY_IDS)) == len(ENTRY_IDS)


def test_prefixes_are_shared_only_on_purpose() -> None:
    owners: dict[str, set[str]] = {}
    for entry in DEFAULT_PATTERNS:
        owners.setdefault(entry.prefix, set()).add(entry.name)
    shared = {prefix: names for prefix, names in owners.items() if len(names) > 1}
    assert shared == SHARED_PREFIXES


def _covered(findings: tuple[Finding, ...], start: int, end: int) -> bool:
    return all(any(f.start <= i < f.end for f in findings) for i in range(start, end))


@pytest.mark.parametrize("entry", DEFAULT_PATTERNS, ids=ENTRY_IDS)
def test_every_positive_example_stays_fully_masked_in_the_whole_library(
    library: Snapshot, entry: LibraryEntry
) -> None:
    # Another entry's longer, overlapping match must not leave part of this value visible.
    alone = build_snapshot([entry.to_spec()])
    for example in entry.positive:
        everything = library.find(example)
        for finding in alone.find(example):
            assert _covered(everything, finding.start, finding.end), (example, finding.value)


# --- a Korean infrastructure report: every value masked, restored byte for byte -------------


def test_the_korean_report_leaves_none_of_its_values(library: Snapshot) -> None:
    assert_masked_and_restored(library, KOREAN_REPORT, KOREAN_REPORT_VALUES)


def test_the_korean_report_gives_each_value_its_own_placeholder(library: Snapshot) -> None:
    masked, allocator = mask(library, KOREAN_REPORT)
    placeholders = [allocator.placeholders[value] for value in KOREAN_REPORT_VALUES]
    assert len(set(placeholders)) == len(KOREAN_REPORT_VALUES)
    assert masked == (
        "인프라 분석:\n"
        "- EC2: AWS_EC2_001, AWS_EC2_002\n"
        "- VPC: AWS_VPC_001\n"
        "- IAM: AWS_ACCESS_KEY_001, AWS_ACCESS_KEY_002\n"
        "- S3: AWS_S3_001, AWS_S3_002\n"
    )


def test_the_korean_report_round_trips_byte_for_byte(library: Snapshot) -> None:
    masked, allocator = mask(library, KOREAN_REPORT)
    assert unmask(masked, allocator.restore_map).encode() == KOREAN_REPORT.encode()


def test_masking_the_spec_example_twice_gives_the_same_placeholders(library: Snapshot) -> None:
    allocator = LocalAllocator()
    first = library.mask(KOREAN_REPORT, allocator).text
    second = library.mask(KOREAN_REPORT, allocator).text
    assert first == second
    assert len(allocator.placeholders) == len(KOREAN_REPORT_VALUES)


# --- precision: text that must pass unchanged -----------------------------------------------

PRECISION_CORPUS = {
    "git_sha_40": "commit 9fceb02d0ae598e95dc970b74767f19372d61af8\nAuthor: Jane <jane>",
    "git_sha_7": "fixed in abc1234 (HEAD -> main), reverted by 0f3c9a7",
    "lambda_request_id": "RequestId: 4d5f3b6a-8c2e-4f1a-9b7d-3e6c8a0f2d1b Duration: 12.34 ms",
    "s3_request_ids": (
        "x-amz-request-id: EXAMPLE123456789\n"
        "x-amz-id-2: EXAMPLE9SvQvGUnMAqP1ZM2Q8KmZ1ZCa7xa5NsZNV9fAshL1Ul8aV6G/lY8VjCh5nBfNvpg="
    ),
    "uuid_without_kms_context": "correlation id 9b2f4c1e-3d5a-4b6c-8e7f-0a1b2c3d4e5f, retry 2",
    "iso_timestamps": "2025-08-22T12:44:30Z and 2025-08-22T12:44:30.123+09:00",
    "log_line_time": "2025-08-22 12:44:30,695 INFO [worker-3] job finished in 1.2s",
    "epoch_millis_near_aws": "AWS event time 1732012345678",
    "versions": "v1.2.3, Django 5.2.19, Python 3.11.7, boto3 1.40.12, TLS 1.2",
    "private_ipv4": "10.0.0.1, 172.16.5.4, 172.31.255.1, 192.168.0.10",
    "special_ipv4": "127.0.0.1, 169.254.169.254, 100.64.0.1, 0.0.0.0/0",
    "private_ipv6": "::1, fe80::1, fd12:3456:789a::1, ::",
    "ports": "localhost:8080, 0.0.0.0:443, :5432, port 22",
    "docker_digest": (
        "nginx@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    ),
    "english_paragraph": (
        "We restarted the EC2 instance, but the security group allows port 443 from the load "
        "balancer only. The S3 bucket policy denies s3:PutObject for cross-account principals, "
        "so the upload from the build server fails with AccessDenied in us-east-1."
    ),
    "korean_paragraph": (
        "EC2 인스턴스를 재시작했습니다. 보안 그룹에서 443 포트를 허용했는데도 타임아웃이 "
        "발생합니다. ap-northeast-2 리전의 S3 버킷 정책과 IAM 역할을 확인해 주세요."
    ),
    "file_paths": "/var/log/nginx/access.log, C:\\Users\\ops\\.aws\\config, ~/.aws/credentials",
    "python_snippet": (
        "import boto3\n\n"
        "def handler(event: dict, context: object) -> dict:\n"
        '    s3 = boto3.client("s3")\n'
        '    for record in event["Records"]:\n'
        '        key = record["s3"]["object"]["key"]\n'
        '        print(f"{key=} {len(key)=}", items[::2], items[1::2])\n'
        '    return {"statusCode": 200, "body": json.dumps({"ok": True})}\n'
    ),
    "public_aws_endpoints": (
        "https://sts.ap-northeast-2.amazonaws.com, ec2.us-east-1.amazonaws.com, "
        "s3.amazonaws.com, https://s3.amazonaws.com/"
    ),
    "aws_managed_policy_arn": "attach arn:aws:iam::aws:policy/ReadOnlyAccess to the role",
    "regions_and_instance_types": "t3.micro in ap-northeast-2a; m7g.large in eu-central-1",
    "regions_near_bucket": "버킷은 us-east-1에 있고 복제본은 ap-northeast-2에 있습니다",
    "cli_subcommands": (
        "aws s3api put-bucket-versioning --versioning-configuration Status=Enabled\n"
        "aws s3api get-bucket-policy-status, aws s3api list-buckets --query 'Buckets[].Name'"
    ),
    "iam_actions": '{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"]}',
    "times_and_macs": "12:30:45, 0a:1b:2c:3d:4e:5f, std::vector<int>",
    "claude_request_settings": '{"model": "claude-sonnet-4-5", "max_tokens": 1024}',
    "password_settings": (
        "require_password: true\nMinimumPasswordLength: 14\npassword: ${DB_PASSWORD}"
    ),
    "publishable_stripe_key": (
        "Stripe.js uses pk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx in the browser"
    ),
    "kubectl": "kubectl -n kube-system rollout restart deployment/aws-load-balancer-controller",
}


@pytest.mark.parametrize("text", PRECISION_CORPUS.values(), ids=PRECISION_CORPUS.keys())
def test_harmless_text_passes_unchanged(library: Snapshot, text: str) -> None:
    assert values(library, text) == []


# --- recall: realistic snippets in which every listed value must be masked ----------------

DESCRIBE_INSTANCES = """{
    "Reservations": [
        {
            "Instances": [
                {
                    "ImageId": "ami-0abcdef1234567890",
                    "InstanceId": "i-1234567890abcdef0",
                    "InstanceType": "t3.micro",
                    "LaunchTime": "2025-08-22T12:44:30+00:00",
                    "Placement": {"AvailabilityZone": "ap-northeast-2a"},
                    "PrivateDnsName": "ip-10-0-1-23.ap-northeast-2.compute.internal",
                    "PrivateIpAddress": "10.0.1.23",
                    "PublicDnsName": "ec2-3-34-12-7.ap-northeast-2.compute.amazonaws.com",
                    "PublicIpAddress": "3.34.12.7",
                    "SubnetId": "subnet-0b304efadaf384b21",
                    "VpcId": "vpc-0fe038a2fa7fbaff2",
                    "IamInstanceProfile": {
                        "Arn": "arn:aws:iam::123456789012:instance-profile/web-role",
                        "Id": "AIPAJQABLZS4A3QDU576Q"
                    },
                    "NetworkInterfaces": [
                        {
                            "Attachment": {"AttachmentId": "eni-attach-0a30d6cacfcc4a08d"},
                            "NetworkInterfaceId": "eni-0f447584b8b44267a",
                            "OwnerId": "210987654321"
                        }
                    ],
                    "SecurityGroups": [{"GroupName": "web", "GroupId": "sg-0123456789abcdef0"}],
                    "BlockDeviceMappings": [
                        {"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": "vol-049df61146c4d7901"}}
                    ]
                }
            ],
            "OwnerId": "123456789012",
            "ReservationId": "r-0b3f35a012013995f"
        }
    ]
}"""

TERRAFORM_PLAN = """Terraform will perform the following actions:

  # aws_s3_bucket.logs will be created
  + resource "aws_s3_bucket" "logs" {
      + arn                         = (known after apply)
      + bucket                      = "acme-prod-logs-ap-northeast-2"
      + id                          = (known after apply)
    }

  # aws_db_instance.orders will be updated in-place
  ~ resource "aws_db_instance" "orders" {
      ~ endpoint   = "orders-db.c9akciq32xyz.ap-northeast-2.rds.amazonaws.com:5432"
      ~ kms_key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        vpc_security_group_ids = ["sg-0a97a8ad7992efe96"]
      - password   = (sensitive value)
    }

-/+ resource "aws_instance" "web" {
      ~ ami       = "ami-0c55b159cbfafe1f0" -> "ami-0abcdef1234567890"
      ~ public_ip = "13.125.20.41" -> (known after apply)
        subnet_id = "subnet-0bb5e1a91ced9c5d0"
    }

Plan: 1 to add, 1 to change, 1 to destroy.
"""

CLOUDFORMATION_ERROR = (
    'Resource handler returned message: "User: arn:aws:sts::123456789012:assumed-role/'
    "cfn-deploy/AWSCloudFormation is not authorized to perform: s3:PutBucketPolicy on "
    'resource: "arn:aws:s3:::company-data-bucket" because no identity-based policy allows the '
    's3:PutBucketPolicy action (Service: S3, Status Code: 403, Request ID: 8X7KQ2ZP4M5N6B7V)" '
    "(RequestToken: 5f1e3c2a-7b6d-4e8f-9a0b-1c2d3e4f5a6b, HandlerErrorCode: AccessDenied)\n"
    "Stack arn:aws:cloudformation:ap-northeast-2:123456789012:stack/prod-web/"
    "0a1b2c3d-4e5f-11ef-8a9b-0a1b2c3d4e5f is in UPDATE_ROLLBACK_FAILED state."
)

KUBECONFIG = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUMvakNDQWVhZ0F3SUJBZ0lCQURB
    server: https://0A1B2C3D4E5F60718293A4B5C6D7E8F9.gr7.ap-northeast-2.eks.amazonaws.com
  name: arn:aws:eks:ap-northeast-2:123456789012:cluster/prod-eks
contexts:
- context:
    cluster: arn:aws:eks:ap-northeast-2:123456789012:cluster/prod-eks
    user: arn:aws:eks:ap-northeast-2:123456789012:cluster/prod-eks
  name: prod
current-context: prod
kind: Config
users:
- name: arn:aws:eks:ap-northeast-2:123456789012:cluster/prod-eks
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      args: [--region, ap-northeast-2, eks, get-token, --cluster-name, prod-eks]
      command: aws
"""

DOTENV = """AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
AWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6m3V8ryhKT1NmX2b9l7yqJk4Fh2r0Xw8vT6ZpL3sHqAIgR5cN0dE7fU1gS9tJ2kB4hY6mW8oQ3pV1zX0aC5eD7fEq==
AWS_DEFAULT_REGION=ap-northeast-2
DATABASE_URL=postgresql://app:Sup3rS3cret@orders-db.c9akciq32xyz.ap-northeast-2.rds.amazonaws.com:5432/orders
REDIS_PASSWORD=r3d1s-P@ss
GITHUB_TOKEN=ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R
SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX
STRIPE_SECRET_KEY=sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx
ANTHROPIC_API_KEY=sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKl
S3_BUCKET=acme-prod-assets
ADMIN_EMAIL=ops@acme-corp.co.kr
DEBUG=false
"""

KOREAN_INCIDENT_REPORT = """[장애 보고] 2025-08-22 12:44 KST
- 영향 인스턴스: i-0f3c9a7e5b2d41e86, i-1234567890abcdef0 (계정 123456789012)
- 보안 그룹 sg-0123456789abcdef0에 0.0.0.0/0 인바운드 규칙이 추가되어 있었습니다.
- vpc-12345678을 통해 NAT 게이트웨이 nat-08d48af2a8e83edfd로 나가는 트래픽이 급증했습니다.
- 공격 IP 45.33.32.156에서 요청이 몰린 ALB:
  prod-alb-1234567890.ap-northeast-2.elb.amazonaws.com
- 로그 위치는 s3://acme-security-logs/alb/2025/08/22/ 입니다.
- 버킷 acme-security-logs는 ap-northeast-2에 있습니다.
- KMS 키 1234abcd-12ab-34cd-56ef-1234567890ab로 암호화되어 있습니다.
- 담당자: kim.minsu@example.co.kr
조치: 보안 그룹 규칙을 삭제하고 EC2 인스턴스를 재시작했습니다.
"""

RECALL_CORPUS: dict[str, tuple[str, tuple[str, ...]]] = {
    "describe_instances_json": (
        DESCRIBE_INSTANCES,
        (
            "ami-0abcdef1234567890",
            "i-1234567890abcdef0",
            "ec2-3-34-12-7.ap-northeast-2.compute.amazonaws.com",
            "3.34.12.7",
            "subnet-0b304efadaf384b21",
            "vpc-0fe038a2fa7fbaff2",
            "arn:aws:iam::123456789012:instance-profile/web-role",
            "AIPAJQABLZS4A3QDU576Q",
            "eni-attach-0a30d6cacfcc4a08d",
            "eni-0f447584b8b44267a",
            "210987654321",
            "sg-0123456789abcdef0",
            "vol-049df61146c4d7901",
            "123456789012",
            "r-0b3f35a012013995f",
        ),
    ),
    "terraform_plan": (
        TERRAFORM_PLAN,
        (
            "acme-prod-logs-ap-northeast-2",
            "orders-db.c9akciq32xyz.ap-northeast-2.rds.amazonaws.com",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "sg-0a97a8ad7992efe96",
            "ami-0c55b159cbfafe1f0",
            "ami-0abcdef1234567890",
            "13.125.20.41",
            "subnet-0bb5e1a91ced9c5d0",
        ),
    ),
    "cloudformation_error": (
        CLOUDFORMATION_ERROR,
        (
            "arn:aws:sts::123456789012:assumed-role/cfn-deploy/AWSCloudFormation",
            "arn:aws:s3:::company-data-bucket",
            "arn:aws:cloudformation:ap-northeast-2:123456789012:stack/prod-web/"
            "0a1b2c3d-4e5f-11ef-8a9b-0a1b2c3d4e5f",
        ),
    ),
    "kubeconfig": (
        KUBECONFIG,
        (
            "0A1B2C3D4E5F60718293A4B5C6D7E8F9.gr7.ap-northeast-2.eks.amazonaws.com",
            "arn:aws:eks:ap-northeast-2:123456789012:cluster/prod-eks",
        ),
    ),
    "dotenv_file": (
        DOTENV,
        (
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6m3V8ryhKT1NmX2b9l7yqJk4Fh2r0",
            "Sup3rS3cret",
            "orders-db.c9akciq32xyz.ap-northeast-2.rds.amazonaws.com",
            "r3d1s-P@ss",
            "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
            "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx",
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKl",
            "acme-prod-assets",
            "ops@acme-corp.co.kr",
        ),
    ),
    "korean_incident_report": (
        KOREAN_INCIDENT_REPORT,
        (
            "i-0f3c9a7e5b2d41e86",
            "i-1234567890abcdef0",
            "123456789012",
            "sg-0123456789abcdef0",
            "vpc-12345678",
            "nat-08d48af2a8e83edfd",
            "45.33.32.156",
            "prod-alb-1234567890.ap-northeast-2.elb.amazonaws.com",
            "acme-security-logs",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "kim.minsu@example.co.kr",
        ),
    ),
}


@pytest.mark.parametrize(("text", "sensitive"), RECALL_CORPUS.values(), ids=RECALL_CORPUS.keys())
def test_realistic_snippet_is_masked_and_round_trips(
    library: Snapshot, text: str, sensitive: tuple[str, ...]
) -> None:
    assert_masked_and_restored(library, text, sensitive)


def test_korean_particles_stay_next_to_their_placeholders(library: Snapshot) -> None:
    masked, _ = mask(library, KOREAN_INCIDENT_REPORT)
    assert "보안 그룹 AWS_SG_001에 0.0.0.0/0" in masked
    assert "- AWS_VPC_001을 통해 NAT 게이트웨이 AWS_NAT_001로" in masked
    # The s3:// URI above keeps its structure: its bucket is the same value, one placeholder.
    assert "s3://AWS_S3_001/alb/2025/08/22/" in masked
    assert "버킷 AWS_S3_001는 ap-northeast-2에" in masked


def test_harmless_parts_of_the_snippets_stay_visible(library: Snapshot) -> None:
    masked, _ = mask(library, DESCRIBE_INSTANCES + TERRAFORM_PLAN + DOTENV + KUBECONFIG)
    for kept in (
        '"InstanceType": "t3.micro"',
        '"AvailabilityZone": "ap-northeast-2a"',
        '"PrivateIpAddress": "10.0.1.23"',
        "ip-10-0-1-23.ap-northeast-2.compute.internal",
        "AWS_DEFAULT_REGION=ap-northeast-2",
        "DEBUG=false",
        "args: [--region, ap-northeast-2, eks, get-token, --cluster-name, prod-eks]",
        '# aws_s3_bucket.logs will be created\n  + resource "aws_s3_bucket" "logs" {',
        "Plan: 1 to add, 1 to change, 1 to destroy.",
    ):
        assert kept in masked


# --- behaviours worth a name -------------------------------------------------------------


def test_an_access_key_id_with_digits_is_masked(library: Snapshot) -> None:
    assert values(library, "key AKIA1234567890ABCDEF") == ["AKIA1234567890ABCDEF"]


def test_documentation_access_key_is_masked(library: Snapshot) -> None:
    assert values(library, "AKIAIOSFODNN7EXAMPLE") == ["AKIAIOSFODNN7EXAMPLE"]


def test_secret_key_is_masked_only_in_context(library: Snapshot) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert values(library, f"aws_secret_access_key = {secret}") == [secret]
    assert values(library, f"checksum {secret}") == []


@pytest.mark.parametrize(
    ("arn", "masked"),
    [
        (
            "arn:aws:iam::123456789012:role/Admin",
            "arn:aws:iam::AWS_ACCOUNT_001:role/AWS_IAM_ROLE_001",
        ),
        ("arn:aws-cn:s3:::cn-backup-bucket/exports/*", "arn:aws-cn:s3:::AWS_S3_001/exports/*"),
        (
            "arn:aws-us-gov:iam::123456789012:user/ops",
            "arn:aws-us-gov:iam::AWS_ACCOUNT_001:user/AWS_IAM_USER_001",
        ),
        (
            "arn:aws-iso:ec2:us-iso-east-1:123456789012:instance/i-0123456789abcdef0",
            "arn:aws-iso:ec2:us-iso-east-1:AWS_ACCOUNT_001:instance/AWS_EC2_001",
        ),
        (
            "arn:aws-iso-b:sqs:us-isob-east-1:123456789012:jobs",
            "arn:aws-iso-b:sqs:us-isob-east-1:AWS_ACCOUNT_001:AWS_SQS_QUEUE_001",
        ),
        (
            "arn:aws-iso-e:kms:eu-isoe-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws-iso-e:kms:eu-isoe-west-1:AWS_ACCOUNT_001:key/AWS_KMS_KEY_001",
        ),
        (
            "arn:aws-iso-f:lambda:us-isof-south-1:123456789012:function:ingest",
            "arn:aws-iso-f:lambda:us-isof-south-1:AWS_ACCOUNT_001:function:AWS_LAMBDA_FUNCTION_001",
        ),
        ("arn:aws-eusc:s3:::eusc-data", "arn:aws-eusc:s3:::AWS_S3_001"),
        # Typed names; AWS's words in the resource stay readable, a customer's path does not.
        (
            "arn:aws:sts::123456789012:assumed-role/DevOps/jane.doe@example.com",
            "arn:aws:sts::AWS_ACCOUNT_001:assumed-role/AWS_IAM_ROLE_001/AWS_STS_SESSION_001",
        ),
        (
            "arn:aws:iam::123456789012:role/service-role/etl-runner",
            "arn:aws:iam::AWS_ACCOUNT_001:role/service-role/AWS_IAM_ROLE_001",
        ),
        (
            "arn:aws:iam::123456789012:user/division_abc/subdivision_xyz/Bob",
            "arn:aws:iam::AWS_ACCOUNT_001:user/AWS_IAM_PATH_001/AWS_IAM_PATH_002/AWS_IAM_USER_001",
        ),
        (
            "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2025-08-22T12:44:30.000",
            "arn:aws:dynamodb:us-east-1:AWS_ACCOUNT_001:table/AWS_DYNAMODB_TABLE_001/stream/"
            "2025-08-22T12:44:30.000",
        ),
        (
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188",
            "arn:aws:elasticloadbalancing:us-east-1:AWS_ACCOUNT_001:loadbalancer/app/AWS_ELB_001/"
            "AWS_NAME_001",
        ),
        (
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web-api:42",
            "arn:aws:ecs:us-east-1:AWS_ACCOUNT_001:task-definition/AWS_NAME_001:42",
        ),
        (
            "arn:aws:iam::123456789012:role/dev-*",
            "arn:aws:iam::AWS_ACCOUNT_001:role/AWS_IAM_ROLE_001*",
        ),
    ],
)
def test_an_arn_keeps_its_structure_and_masks_account_bucket_and_name(
    library: Snapshot, arn: str, masked: str
) -> None:
    assert assert_masked_and_restored(library, f"see {arn} now", ()) == f"see {masked} now"


def test_the_same_account_and_bucket_get_the_same_placeholder_in_an_arn_and_alone(
    library: Snapshot,
) -> None:
    text = (
        '"Account": "123456789012", "Bucket": "company-data-bucket", '
        '"Role": "arn:aws:iam::123456789012:role/Admin", '
        '"Resource": "arn:aws:s3:::company-data-bucket/*"'
    )
    masked, _ = mask(library, text)
    assert masked == (
        '"Account": "AWS_ACCOUNT_001", "Bucket": "AWS_S3_001", '
        '"Role": "arn:aws:iam::AWS_ACCOUNT_001:role/AWS_IAM_ROLE_001", '
        '"Resource": "arn:aws:s3:::AWS_S3_001/*"'
    )


def test_arn_inside_json_is_masked_without_the_quote(library: Snapshot) -> None:
    text = '{"Resource": "arn:aws:s3:::company-data-bucket/*", "Effect": "Deny"}'
    masked, _ = mask(library, text)
    assert masked == '{"Resource": "arn:aws:s3:::AWS_S3_001/*", "Effect": "Deny"}'


def test_arn_in_prose_is_masked_without_the_trailing_period(library: Snapshot) -> None:
    text = "The role is arn:aws:iam::123456789012:role/Admin."
    masked = mask(library, text)[0]
    assert masked == "The role is arn:aws:iam::AWS_ACCOUNT_001:role/AWS_IAM_ROLE_001."


def test_arn_stops_at_brackets_commas_and_korean(library: Snapshot) -> None:
    arn = "arn:aws:sns:us-east-1:123456789012:alerts"
    for text in (f"({arn})", f"[{arn}]", f"{arn}, then", f"{arn}에 게시", f"'{arn}'"):
        assert values(library, text) == ["123456789012", "alerts"], text


def test_arn_keeps_commas_inside_iam_names(library: Snapshot) -> None:
    arn = "arn:aws:iam::123456789012:user/ops,team"
    assert values(library, f"user {arn} exists") == ["123456789012", "ops,team"]


def test_lambda_versions_and_log_group_wildcards_stay_readable_aliases_are_names(
    library: Snapshot,
) -> None:
    for arn, names in (
        (
            "arn:aws:lambda:us-east-1:123456789012:function:order-processor:live",
            ["order-processor", "live"],
        ),
        ("arn:aws:lambda:us-east-1:123456789012:function:order-processor:7", ["order-processor"]),
        (
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/order-processor:*",
            ["/aws/lambda/order-processor"],
        ),
        ("arn:aws:lambda:us-east-1:123456789012:function:api:$LATEST", ["api"]),
    ):
        assert values(library, f"grant {arn}") == ["123456789012", *names]


def test_an_arn_that_names_nothing_is_left_as_written(library: Snapshot) -> None:
    assert values(library, '"Resource": "arn:aws:s3:::*"') == []


def test_last_word_of_the_line_before_a_bucket_setting_stays_visible(library: Snapshot) -> None:
    masked, _ = mask(library, "region: us-east-1\nbucket: acme-prod-logs\n")
    assert masked == "region: us-east-1\nbucket: AWS_S3_001\n"


def test_terraform_bucket_without_a_hyphen_is_masked(library: Snapshot) -> None:
    masked, _ = mask(library, '  acl    = "private"\n  bucket = "acmeprodlogs"\n')
    assert masked == '  acl    = "private"\n  bucket = "AWS_S3_001"\n'


def test_account_id_needs_context(library: Snapshot) -> None:
    assert values(library, "AWS account 123456789012") == ["123456789012"]
    assert values(library, "Order 123456789012 shipped to Busan") == []


def test_public_ip_is_masked_without_its_port(library: Snapshot) -> None:
    masked, _ = mask(library, "curl 8.8.8.8:443 and [2600:1f18:abcd::1]:8443")
    assert masked == "curl PUBLIC_IP_001:443 and [PUBLIC_IP_002]:8443"


def test_compressed_public_ipv6_is_masked_whole(library: Snapshot) -> None:
    assert values(library, "from 2600:1f18:abcd::1 to us") == ["2600:1f18:abcd::1"]


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3.4",
        "Version: 4.10.2.1",
        "see Section 24.1.1.2",
        "§ 24.1.1.2",
        "RFC 5.6.7.8",
        "requests>=3.7.4.2",
        "pip install foo==3.7.4.2",
        "::= { 1.3.101.110 }",
    ],
)
def test_a_dotted_quad_after_a_version_section_or_oid_cue_is_not_an_address(
    library: Snapshot, text: str
) -> None:
    assert values(library, text) == []


@pytest.mark.parametrize(
    "text", ["server 52.95.110.1", "ip=52.95.110.1", "reverse 52.95.110.1", "v 52.95.110.1"]
)
def test_a_dotted_quad_without_such_a_cue_is_still_an_address(library: Snapshot, text: str) -> None:
    assert values(library, text) == ["52.95.110.1"]


def test_uuid_is_a_kms_key_only_near_kms_words(library: Snapshot) -> None:
    key = "1234abcd-12ab-34cd-56ef-1234567890ab"
    assert values(library, f"KMS key {key} is pending deletion") == [key]
    assert values(library, f"job {key} finished") == []


def test_two_pem_keys_stay_two_findings(library: Snapshot) -> None:
    key = (
        "-----BEGIN {0}PRIVATE KEY-----\n"
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeL\n"
        "-----END {0}PRIVATE KEY-----"
    )
    first, second = key.format("RSA "), key.format("EC ")
    text = f"old:\n{first}\nnew:\n{second}\n"
    assert values(library, text) == [first, second]
    masked, _ = mask(library, text)
    assert masked == "old:\nPRIVATE_KEY_001\nnew:\nPRIVATE_KEY_002\n"


def test_url_user_password_and_host_are_masked_each_port_and_path_stay(library: Snapshot) -> None:
    text = "DATABASE_URL=postgres://admin:S3cr3t!@db.internal:5432/orders?sslmode=require"
    masked, allocator = mask(library, text)
    assert masked == (
        "DATABASE_URL=postgres://URL_USER_001:URL_PASSWORD_001@URL_HOST_001:5432/orders"
        "?sslmode=require"
    )
    assert unmask(masked, allocator.restore_map) == text


def test_s3_uri_masks_the_bucket_and_keeps_the_object_key(library: Snapshot) -> None:
    masked, _ = mask(library, "aws s3 cp s3://backup-logs-bucket/2025/08/22/app.log .")
    assert masked == "aws s3 cp s3://AWS_S3_001/2025/08/22/app.log ."


def test_virtual_hosted_s3_url_with_a_long_key_hides_the_whole_bucket(library: Snapshot) -> None:
    text = "GET https://my-bucket.s3.amazonaws.com/reports/a-very-long-object-key-name.csv"
    masked, _ = mask(library, text)
    assert masked == "GET https://AWS_S3_001/reports/a-very-long-object-key-name.csv"


def test_bucket_cli_argument_is_masked_but_the_subcommand_is_not(library: Snapshot) -> None:
    text = "aws s3api create-bucket --bucket acmeprodlogs --region ap-northeast-2"
    masked, _ = mask(library, text)
    assert masked == "aws s3api create-bucket --bucket AWS_S3_001 --region ap-northeast-2"


def test_ordinary_words_near_bucket_stay_visible(library: Snapshot) -> None:
    for text in (
        "the bucket policy denies s3:GetObject",
        "create an S3 bucket named after the team",
        "S3 bucket versioning is enabled",
        "the bucket-owner-full-control ACL and put-bucket-acl",
    ):
        assert values(library, text) == [], text


def test_region_next_to_a_bucket_name_stays_visible(library: Snapshot) -> None:
    masked, _ = mask(library, "버킷 kt-prod-logs를 ap-northeast-2에 만들었습니다")
    assert masked == "버킷 AWS_S3_001를 ap-northeast-2에 만들었습니다"


def test_a_secret_setting_in_json_keeps_its_key_and_quotes(library: Snapshot) -> None:
    masked, _ = mask(library, '{"MasterUserPassword": "Sup3r#Secret", "Port": 5432}')
    assert masked == '{"MasterUserPassword": "SECRET_001", "Port": 5432}'


def test_publishable_stripe_key_stays_but_secret_key_is_masked(library: Snapshot) -> None:
    text = "pk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx / sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx"
    assert values(library, text) == ["sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx"]


def test_luhn_decides_whether_sixteen_digits_are_a_card(library: Snapshot) -> None:
    assert values(library, "card 4111 1111 1111 1111") == ["4111 1111 1111 1111"]
    assert values(library, "card 4111 1111 1111 1112") == []


# --- the prefilter -------------------------------------------------------------------------


class _GaveUpSet:
    """An RE2 Set that ran out of memory: RE2 then reports no match at all."""

    def Match(self, data: bytes) -> None:  # RE2's name
        return None


def test_the_prefilter_names_the_patterns_that_match_and_its_sentinel(library: Snapshot) -> None:
    assert library.prefilter is not None
    hits = library.prefilter.Match(b"see i-0abc1234def567890")
    names = {library.patterns[i].spec.name for i in hits if i < len(library.patterns)}
    assert "aws_ec2_instance_id" in names
    assert len(library.patterns) in hits  # the member that matches every text


def test_a_prefilter_that_gives_up_leaves_every_pattern_to_run(library: Snapshot) -> None:
    text = "i-0abc1234def567890 in vpc-1a2b3c4d, key AKIAIOSFODNN7EXAMPLE, host 54.239.28.85"
    gave_up = replace(library, prefilter=_GaveUpSet())
    assert values(gave_up, text) == values(library, text)
    assert len(values(library, text)) == 4


def test_texts_beyond_the_prefilter_limit_are_scanned_pattern_by_pattern(
    library: Snapshot,
) -> None:
    text = "x " * PREFILTER_MAX_BYTES + "i-0abc1234def567890"
    assert values(replace(library, prefilter=_GaveUpSet()), text) == ["i-0abc1234def567890"]
    assert values(library, text) == ["i-0abc1234def567890"]
