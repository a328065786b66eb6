"""The original specification's masking scenario, shared by the tests that replay it."""

SPEC_TEXT = (
    "인프라 분석:\n"
    "- EC2: i-1234567890abcdef0, i-abcdef1234567890a\n"
    "- VPC: vpc-12345678\n"
    "- IAM: AKIA1234567890ABCDEF, AKIA9876543210FEDCBA\n"
    "- S3: company-data-bucket, backup-logs-bucket\n"
)
SPEC_VALUES = (
    "i-1234567890abcdef0",
    "i-abcdef1234567890a",
    "vpc-12345678",
    "AKIA1234567890ABCDEF",
    "AKIA9876543210FEDCBA",
    "company-data-bucket",
    "backup-logs-bucket",
)
