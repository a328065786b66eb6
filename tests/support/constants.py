"""Constants the suites share: the loopback address, throw-away secrets, and the example texts
that several suites mask and restore."""

HOST = "127.0.0.1"

# The live proxy's settings (tests/support/live.py). Throw-away values: nothing here protects
# anything.
MASTER_KEY = "sk-litellm-master-key"  # PROXY_MASTER_KEY, accepted as a Bearer token
UPSTREAM_KEY = "sk-ant-upstream-test-key"  # the provider key the proxy forwards

# The settings of proxy processes (tests/support/sites.py): throw-away secrets for throw-away
# processes.
PROCESS_SECRET_KEY = "test-only-process-secret-key-never-deployed"
PROCESS_MASKING_KEY = "test-only-process-masking-key-never-deployed"
PROCESS_UPSTREAM_KEY = "sk-ant-upstream-process-test-key"

# An infrastructure report in Korean, as a user would paste it: two EC2 instance ids, a VPC
# id, two access key ids and two S3 bucket names. Each must be replaced by a placeholder of
# its own (AWS_EC2_001, AWS_VPC_001, AWS_ACCESS_KEY_001, AWS_S3_001, ...), none may reach the
# provider, and the answer must come back with every value restored byte for byte.
KOREAN_REPORT = (
    "인프라 분석:\n"
    "- EC2: i-1234567890abcdef0, i-abcdef1234567890a\n"
    "- VPC: vpc-12345678\n"
    "- IAM: AKIA1234567890ABCDEF, AKIA9876543210FEDCBA\n"
    "- S3: company-data-bucket, backup-logs-bucket\n"
)
KOREAN_REPORT_VALUES = (
    "i-1234567890abcdef0",
    "i-abcdef1234567890a",
    "vpc-12345678",
    "AKIA1234567890ABCDEF",
    "AKIA9876543210FEDCBA",
    "company-data-bucket",
    "backup-logs-bucket",
)

# A prompt holding one value of each common kind; every one of them is masked.
SENSITIVE_TEXT = (
    "Instance i-0abc1234def567890 in vpc-1a2b3c4d cannot reach 52.95.110.17. "
    "It runs as AKIAZ7Q3KX5MPL2RWT4N with "
    "aws_secret_access_key=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 in account 123456789012."
)
SENSITIVE_VALUES = (
    "i-0abc1234def567890",
    "vpc-1a2b3c4d",
    "52.95.110.17",
    "AKIAZ7Q3KX5MPL2RWT4N",
    "Zq8vR2mT5xK9pL3nW7yB4cH6jD1fG0sA2eU8iO5r",
    "123456789012",
)
