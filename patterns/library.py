"""Default masking patterns: AWS IDs, ARNs, credentials, endpoints, secrets and personal data."""

from __future__ import annotations

import re
from dataclasses import dataclass

from patterns.engine import PatternSpec

CATEGORIES: dict[str, str] = {
    "aws_resource": "AWS resource ID",
    "aws_arn": "AWS ARN",
    "aws_account": "AWS account ID",
    "aws_credential": "AWS credential",
    "aws_storage": "AWS storage",
    "aws_endpoint": "AWS endpoint",
    "network": "Network address",
    "secret": "Secret or token",
    "personal": "Personal data",
    "custom": "Custom",
}


@dataclass(frozen=True)
class LibraryEntry:
    """One default pattern, with the examples admins see and the tests check."""

    name: str
    category: str
    description: str
    regex: str
    prefix: str
    priority: int
    validator: str = ""
    context_keywords: tuple[str, ...] = ()
    context_regex: str = ""
    context_window: int = 48
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()

    def to_spec(self) -> PatternSpec:
        return PatternSpec(
            name=self.name,
            regex=self.regex,
            prefix=self.prefix,
            priority=self.priority,
            category=self.category,
            validator=self.validator,
            context_keywords=self.context_keywords,
            context_regex=self.context_regex,
            context_window=self.context_window,
        )


# --- EC2-style resource IDs -----------------------------------------------------------------
# "<type>-" and 17 hex digits; resources older than 2018 may still carry the short 8-hex
# form, so types that existed then accept both (the long form is tried first). AWS writes
# them in lower case, but a model reads "I-0A1B..." as the same ID: any case matches.


def _resource_id(
    name: str,
    id_prefix: str,
    placeholder: str,
    what: str,
    positive: tuple[str, ...],
    *,
    short_form: bool = True,
    category: str = "aws_resource",
) -> LibraryEntry:
    hex_part = "(?:[0-9a-f]{17}|[0-9a-f]{8})" if short_form else "[0-9a-f]{17}"
    negative = [
        f"{id_prefix}-1234567 is one hex digit short",
        f"{id_prefix.upper()}-0123456789ABCDEFG",  # G is not a hex digit
        f"my{id_prefix}-0123456789abcdef0",  # part of a longer word
    ]
    if not short_form:
        negative.append(f"{id_prefix}-1a2b3c4d")  # this type never had the short form
    forms = "17 hex digits, or 8 for older resources" if short_form else "17 hex digits"
    return LibraryEntry(
        name=name,
        category=category,
        description=f"{what} ({id_prefix}- followed by {forms}; any case).",
        regex=rf"(?i:{id_prefix}-{hex_part})",
        prefix=placeholder,
        priority=20,
        positive=(*positive, f"{id_prefix.upper()}-0123456789ABCDEF0"),
        negative=tuple(negative),
    )


_RESOURCE_IDS: tuple[LibraryEntry, ...] = (
    _resource_id(
        "aws_ec2_instance_id",
        "i",
        "AWS_EC2",
        "EC2 instance ID",
        (
            "i-1234567890abcdef0",
            "i-0a1b2c3d",
            "인스턴스 i-0f3c9a7e5b2d41e86에서 OOM이 발생했습니다",
        ),
    ),
    _resource_id(
        "aws_ec2_reservation_id",
        "r",
        "AWS_EC2_RESERVATION",
        "EC2 reservation ID",
        ("r-0b3f35a012013995f", "r-5875ca20", '"ReservationId": "r-04c1d5e1c4ee36b28"'),
    ),
    _resource_id(
        "aws_ami_id",
        "ami",
        "AWS_AMI",
        "Amazon Machine Image (AMI) ID",
        ("ami-0abcdef1234567890", "ami-5fb8c835", "launched from ami-0c55b159cbfafe1f0 yesterday"),
    ),
    _resource_id(
        "aws_ebs_volume_id",
        "vol",
        "AWS_EBS_VOLUME",
        "EBS volume ID",
        (
            "vol-049df61146c4d7901",
            "vol-1a2b3c4d",
            "볼륨 vol-0d59c7134c61a473e 용량이 가득 찼습니다",
        ),
        category="aws_storage",
    ),
    _resource_id(
        "aws_ebs_snapshot_id",
        "snap",
        "AWS_EBS_SNAPSHOT",
        "EBS snapshot ID",
        ("snap-0b5d8e3c7a2f41936", "snap-1234abcd", "restore from snap-0ed0c1045102e0049 failed"),
        category="aws_storage",
    ),
    _resource_id(
        "aws_security_group_id",
        "sg",
        "AWS_SG",
        "Security group ID",
        (
            "sg-0123456789abcdef0",
            "sg-903004f8",
            "보안 그룹 sg-0a97a8ad7992efe96에 443 포트를 열었습니다",
        ),
    ),
    _resource_id(
        "aws_security_group_rule_id",
        "sgr",
        "AWS_SG_RULE",
        "Security group rule ID",
        ("sgr-0b8956c61cbe820cd", "sgr-05f6bbc9c65ba37f7", "rule sgr-071fda3167b130444 allows 22"),
        short_form=False,
    ),
    _resource_id(
        "aws_vpc_id",
        "vpc",
        "AWS_VPC",
        "VPC ID",
        ("vpc-12345678", "vpc-0fe038a2fa7fbaff2", "VPC vpc-0abcf24f937215ee7을 삭제할 수 없습니다"),
    ),
    _resource_id(
        "aws_subnet_id",
        "subnet",
        "AWS_SUBNET",
        "Subnet ID",
        (
            "subnet-0b304efadaf384b21",
            "subnet-6e7f829e",
            "subnets: subnet-0bb5e1a91ced9c5d0, subnet-9d4a7b6c",
        ),
    ),
    _resource_id(
        "aws_internet_gateway_id",
        "igw",
        "AWS_IGW",
        "Internet gateway ID",
        (
            "igw-0c0a1b2c3d4e5f601",
            "igw-c0a643a9",
            "route 0.0.0.0/0 to igw-07d8da2b26c5fc0a0 is missing",
        ),
    ),
    _resource_id(
        "aws_egress_only_internet_gateway_id",
        "eigw",
        "AWS_EIGW",
        "Egress-only internet gateway ID",
        ("eigw-015e0e244e24dfe8a", "eigw-07bf69d3f5ca4669b", "::/0 via eigw-0934a9a0fef1502ec"),
        short_form=False,
    ),
    _resource_id(
        "aws_nat_gateway_id",
        "nat",
        "AWS_NAT",
        "NAT gateway ID",
        (
            "nat-08d48af2a8e83edfd",
            "nat-1a2b3c4d",
            "NAT 게이트웨이 nat-0730fb82ce1a8df11의 요금이 높습니다",
        ),
    ),
    _resource_id(
        "aws_route_table_id",
        "rtb",
        "AWS_RTB",
        "Route table ID",
        (
            "rtb-0072ec12977530932",
            "rtb-22574640",
            "associate subnet with rtb-0a2ea77e5797b3cb4 first",
        ),
    ),
    _resource_id(
        "aws_network_acl_id",
        "acl",
        "AWS_ACL",
        "Network ACL ID",
        ("acl-0375a0b3005b2afd7", "acl-5fb85d36", "acl-08aedbe241f498209 denies inbound 22"),
    ),
    _resource_id(
        "aws_network_interface_id",
        "eni",
        "AWS_ENI",
        "Elastic network interface (ENI) ID",
        ("eni-0f447584b8b44267a", "eni-e5aa89a3", "ENI eni-0652c0ab53b2bd3cf는 아직 사용 중입니다"),
    ),
    _resource_id(
        "aws_network_interface_attachment_id",
        "eni-attach",
        "AWS_ENI_ATTACH",
        "Network interface attachment ID",
        (
            "eni-attach-0a30d6cacfcc4a08d",
            "eni-attach-66c4350a",
            "detach eni-attach-02072bc63b35b33a4 now",
        ),
    ),
    _resource_id(
        "aws_efs_file_system_id",
        "fs",
        "AWS_EFS",
        "EFS or FSx file system ID",
        (
            "fs-0867257b906a6d243",
            "fs-12345678",
            "mount fs-0a248117be9b53549.efs.us-east-1.amazonaws.com:/",
        ),
        category="aws_storage",
    ),
    _resource_id(
        "aws_efs_access_point_id",
        "fsap",
        "AWS_EFS_ACCESS_POINT",
        "EFS access point ID",
        (
            "fsap-011e126880bfbfeed",
            "fsap-006754daffe2beaf4",
            "access point fsap-0c0d7500061833134 denied",
        ),
        short_form=False,
        category="aws_storage",
    ),
    _resource_id(
        "aws_transit_gateway_id",
        "tgw",
        "AWS_TGW",
        "Transit gateway ID",
        (
            "tgw-0ada2010ba253f7ac",
            "tgw-0c20fef4e3ab7e202",
            "TGW tgw-059e7fa3ac821f030로 라우팅합니다",
        ),
        short_form=False,
    ),
    _resource_id(
        "aws_transit_gateway_attachment_id",
        "tgw-attach",
        "AWS_TGW_ATTACH",
        "Transit gateway attachment ID",
        (
            "tgw-attach-0b0f4fe56281f4493",
            "tgw-attach-035ba798d80d7b2b3",
            "attachment tgw-attach-0faf754d392443d23 is pending",
        ),
        short_form=False,
    ),
    _resource_id(
        "aws_transit_gateway_route_table_id",
        "tgw-rtb",
        "AWS_TGW_RTB",
        "Transit gateway route table ID",
        (
            "tgw-rtb-0e292a11d715dcd28",
            "tgw-rtb-009a21a94babbfa3a",
            "propagate to tgw-rtb-02ce5f6095fb21bc7 as well",
        ),
        short_form=False,
    ),
    _resource_id(
        "aws_vpc_endpoint_id",
        "vpce",
        "AWS_VPCE",
        "VPC endpoint ID",
        (
            "vpce-0fedd41fb9e577e5c",
            "vpce-1a2b3c4d",
            "the S3 gateway endpoint vpce-0a97a8ad7992efe96 has no policy",
        ),
    ),
    _resource_id(
        "aws_vpc_endpoint_service_id",
        "vpce-svc",
        "AWS_VPCE_SERVICE",
        "VPC endpoint service ID",
        (
            "vpce-svc-0ce5d5643d77868fb",
            "vpce-svc-0b8956c61cbe820cd",
            "service name com.amazonaws.vpce.us-east-1.vpce-svc-05f6bbc9c65ba37f7",
        ),
        short_form=False,
    ),
    _resource_id(
        "aws_eip_allocation_id",
        "eipalloc",
        "AWS_EIP",
        "Elastic IP allocation ID",
        (
            "eipalloc-071fda3167b130444",
            "eipalloc-64d5890a",
            "release eipalloc-04c1d5e1c4ee36b28 after the test",
        ),
    ),
    _resource_id(
        "aws_eip_association_id",
        "eipassoc",
        "AWS_EIP_ASSOC",
        "Elastic IP association ID",
        (
            "eipassoc-0fe038a2fa7fbaff2",
            "eipassoc-2bebb745",
            "disassociate eipassoc-0abcf24f937215ee7",
        ),
    ),
    _resource_id(
        "aws_launch_template_id",
        "lt",
        "AWS_LAUNCH_TEMPLATE",
        "EC2 launch template ID",
        ("lt-0abcd290751193123", "lt-00b3f35a012013995", "ASG uses lt-04b304efadaf384b2 version 7"),
        short_form=False,
    ),
    _resource_id(
        "aws_vpc_peering_connection_id",
        "pcx",
        "AWS_PCX",
        "VPC peering connection ID",
        (
            "pcx-0bb5e1a91ced9c5d0",
            "pcx-111aaa22",
            "accept pcx-0d59c7134c61a473e in the peer account",
        ),
    ),
    _resource_id(
        "aws_customer_gateway_id",
        "cgw",
        "AWS_CGW",
        "Customer gateway ID",
        ("cgw-0ed0c1045102e0049", "cgw-fb76ace3", "the tunnel to cgw-07d8da2b26c5fc0a0 is down"),
    ),
    _resource_id(
        "aws_virtual_private_gateway_id",
        "vgw",
        "AWS_VGW",
        "Virtual private gateway ID",
        ("vgw-07bf69d3f5ca4669b", "vgw-8db04f81", "propagate routes from vgw-034a9a0fef1502ec4"),
    ),
    _resource_id(
        "aws_vpn_connection_id",
        "vpn",
        "AWS_VPN",
        "Site-to-Site VPN connection ID",
        ("vpn-0730fb82ce1a8df11", "vpn-40f41529", "VPN vpn-0072ec12977530932 tunnel 1 is DOWN"),
    ),
    _resource_id(
        "aws_dhcp_options_id",
        "dopt",
        "AWS_DHCP_OPTIONS",
        "DHCP options set ID",
        ("dopt-0a2ea77e5797b3cb4", "dopt-7a8b9c2d", "VPC uses dopt-0375a0b3005b2afd7 with our DNS"),
    ),
    _resource_id(
        "aws_key_pair_id",
        "key",
        "AWS_KEY_PAIR",
        "EC2 key pair ID",
        ("key-0d89b4e1ea1e7b7c9", "key-08aedbe241f498209", '"KeyPairId": "key-0f447584b8b44267a"'),
        short_form=False,
    ),
    _resource_id(
        "aws_prefix_list_id",
        "pl",
        "AWS_PREFIX_LIST",
        "Managed prefix list ID",
        ("pl-0652c0ab53b2bd3cf", "pl-63a5400a", "allow 443 from pl-0a30d6cacfcc4a08d"),
    ),
    # Prefixes found in AWS's own API examples (botocore's EC2 examples) beyond the above.
    _resource_id(
        "aws_network_acl_association_id",
        "aclassoc",
        "AWS_ACL_ASSOCIATION",
        "Network ACL association ID",
        ("aclassoc-e5b95c8c", '"NewAssociationId": "aclassoc-3999875b"'),
    ),
    _resource_id(
        "aws_route_table_association_id",
        "rtbassoc",
        "AWS_RTB_ASSOCIATION",
        "Route table association ID",
        ("rtbassoc-781d0d1a", '"AssociationId": "rtbassoc-0b1d2e3f4a5b6c7d8"'),
    ),
    _resource_id(
        "aws_iam_instance_profile_association_id",
        "iip-assoc",
        "AWS_IIP_ASSOCIATION",
        "IAM instance profile association ID",
        ("iip-assoc-0e7736511a163c209", '"AssociationId": "iip-assoc-05020b59952902f5f"'),
        short_form=False,
    ),
    _resource_id(
        "aws_spot_instance_request_id",
        "sir",
        "AWS_SPOT_REQUEST",
        "Spot Instance request ID",
        ("sir-08b93456", "cancel sir-0123456789abcdef0 now"),
    ),
    _resource_id(
        "aws_kernel_image_id",
        "aki",
        "AWS_KERNEL_IMAGE",
        "Kernel image ID (AKI)",
        ("aki-88aa75e1", '"KernelId": "aki-0123456789abcdef0"'),
    ),
    _resource_id(
        "aws_ramdisk_image_id",
        "ari",
        "AWS_RAMDISK_IMAGE",
        "RAM disk image ID (ARI)",
        ("ari-1a2b3c4d", '"RamdiskId": "ari-0123456789abcdef0"'),
    ),
    _resource_id(
        "aws_efs_mount_target_id",
        "fsmt",
        "AWS_EFS_MOUNT_TARGET",
        "EFS mount target ID",
        ("fsmt-12340abc", '"MountTargetId": "fsmt-0123456789abcdef0"'),
    ),
    LibraryEntry(
        name="aws_spot_fleet_request_id",
        category="aws_resource",
        description="Spot Fleet request ID (sfr- followed by a UUID; any case).",
        regex=r"(?i:sfr-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
        prefix="AWS_SPOT_FLEET",
        priority=20,
        positive=(
            "sfr-d1b9a2c4-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
            '"SpotFleetRequestId": "sfr-73fbd2ce-aa30-494c-8788-1cee40a1b2c3"',
        ),
        negative=("sfr-73fbd2ce", "mysfr-73fbd2ce-aa30-494c-8788-1cee40a1b2c3"),
    ),
    LibraryEntry(
        name="aws_resource_id",
        category="aws_resource",
        description=(
            "Any other AWS resource ID of the long form: a lower-case prefix of one to three "
            "words, a dash and 17 hex digits (cks-, backup-, fpga-, ...; any case)."
        ),
        # The long form is distinctive enough to need no list: 17 hex digits after a word.
        # Types with entries of their own win (lower priority number, same length).
        regex=r"(?i:[a-z][a-z0-9]{0,19}(?:-[a-z][a-z0-9]{0,19}){0,2}-[0-9a-f]{17})",
        prefix="AWS_RESOURCE",
        priority=85,
        positive=(
            "cks-1234567890abcdef0",
            '"BackupId": "backup-03e3c82e0183b7b6b"',
            "fpga-0123456789abcdef0",
            "restore from snap-0123456789abcdef0 and backup-0a3364eded1014b28",
        ),
        negative=(
            "commit-0123456789abcdef0123456789abcdef01234567",
            "build-0123456789abcdef",
            "id-0123456789abcdef0g",
        ),
    ),
)


# --- the rest of the library ------------------------------------------------------------------

# An ARN keeps its structure: partition, service, region and resource type stay readable; the
# account, an S3 bucket and the names a customer chose are masked each as a placeholder of its
# own (named groups), typed by what they name where the resource type says it, so a policy
# still reads as "this role may write to that bucket". The same account or bucket gets the
# same placeholder inside an ARN and where it stands alone.
# A region name (us-east-1, ap-northeast-2, us-gov-west-1): endpoints keep it readable.
_REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]"
_ARN_PARTITION = r"arn:aws(?:-cn|-us-gov|-iso(?:-[a-z])?|-eusc)?:"
# Any resource: stops at whitespace, quotes, brackets and non-ASCII text; a trailing '.', ':'
# or ',' is punctuation, not ARN. Inner commas are kept because IAM names may contain them.
_ARN_ANY = r"[A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-]"
# A name (IAM's characters), and the IAM path before it: AWS's own first words stay readable
# (service-role/, aws-service-role/, aws-reserved/), a customer's path ("/division_abc/") is
# masked, since it can name teams and projects.
_ARN_NAME = r"[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-]"


def _not_digits_only(chars: str, last: str) -> str:
    """A run of [chars] ending in [last], with something other than a digit in it."""
    return f"[0-9]*(?:[{chars.replace('0-9', '')}][{chars}]*[{last}]|[{last.replace('0-9', '')}])"


# One segment of a resource, between '/' and ':' (not ending in '.' or ',': punctuation).
_ARN_SEGMENT = _not_digits_only("A-Za-z0-9_+=@.*$%~,-", "A-Za-z0-9_+=@*$%~-")
_ARN_REST = _not_digits_only("A-Za-z0-9_+=@./:*$%~,-", "A-Za-z0-9_+=@/*$%~-")
# Each segment of a path or a name is a part of its own, so that a name met again alone (the
# "Path" or "PolicyName" beside the ARN) is the same value, with the same placeholder. A regex
# names a fixed number of groups: past `most` segments, the rest is one part. A segment of
# digits only (a version, a revision) names nothing and stays readable.


def _segments(
    group: str, segment: str, rest: str, *, most: int, trailing_slash: bool = False
) -> str:
    """Up to `most` segments joined by '/' or ':' (each followed by '/' for a path), the last
    one taking the rest; each a named group `group`."""
    if trailing_slash:
        regex = f"(?:(?P<{group}>{rest})/)?"
        for _ in range(most - 1):
            regex = f"(?:(?P<{group}>{segment})/{regex})?"
        return regex
    # AWS's key/value resources ("autoScalingGroupName/my-asg:policyName/scale-out"): the keys
    # stay readable.
    key = r"(?:[a-z]+(?:[A-Z][a-z]+)*Name/)?"
    regex = f"{key}(?:(?P<{group}>{rest})|[0-9]+)"
    for _ in range(most - 1):
        regex = f"{key}(?:(?P<{group}>{segment})|[0-9]+)(?:[/:]+{regex})?"
    return regex


_ARN_PATH = r"(?:(?:service-role|aws-service-role|aws-reserved)/)?" + _segments(
    "AWS_IAM_PATH",
    r"[A-Za-z0-9_+=,.@-]*[A-Za-z0-9_+=@-]",
    r"[A-Za-z0-9_+=,.@/-]*[A-Za-z0-9_+=@-]",
    most=3,
    trailing_slash=True,
)
# (service, resource with its named parts). What follows a typed name after '/' or ':' and is
# not described here is masked as AWS_NAME (an ID after a name: a stack's UUID, a load
# balancer's hex ID, a subscription), so an unexpected suffix never stays readable.
_ARN_TYPED_RESOURCES: tuple[tuple[str, str], ...] = (
    ("iam", f"role/{_ARN_PATH}(?P<AWS_IAM_ROLE>{_ARN_NAME})"),
    ("iam", f"user/{_ARN_PATH}(?P<AWS_IAM_USER>{_ARN_NAME})"),
    ("iam", f"group/{_ARN_PATH}(?P<AWS_IAM_GROUP>{_ARN_NAME})"),
    ("iam", f"policy/{_ARN_PATH}(?P<AWS_IAM_POLICY>{_ARN_NAME})"),
    ("iam", f"instance-profile/{_ARN_PATH}(?P<AWS_IAM_INSTANCE_PROFILE>{_ARN_NAME})"),
    ("sts", f"assumed-role/(?P<AWS_IAM_ROLE>{_ARN_NAME})(?:/(?P<AWS_STS_SESSION>{_ARN_NAME}))?"),
    # A version number or $LATEST stays readable; an alias is a name (masked as AWS_NAME).
    ("lambda", r"function:(?P<AWS_LAMBDA_FUNCTION>[A-Za-z0-9_-]+)(?::(?:[0-9]+|\$LATEST))?"),
    ("lambda", r"layer:(?P<AWS_LAMBDA_LAYER>[A-Za-z0-9_-]+)(?::[0-9]+)?"),
    (
        "dynamodb",
        r"table/(?P<AWS_DYNAMODB_TABLE>[A-Za-z0-9_.-]*[A-Za-z0-9_-])"
        r"(?:/stream/[0-9T:.-]*[0-9])?",  # a stream's label is its creation time
    ),
    ("sqs", r"(?P<AWS_SQS_QUEUE>[A-Za-z0-9_-]{1,80}(?:\.fifo)?)"),
    ("sns", r"(?P<AWS_SNS_TOPIC>[A-Za-z0-9_-]{1,256}(?:\.fifo)?)"),
    ("eks", r"cluster/(?P<AWS_EKS_CLUSTER>[A-Za-z0-9_-]+)"),
    ("ecs", r"cluster/(?P<AWS_ECS_CLUSTER>[A-Za-z0-9_-]+)"),
    ("rds", r"db:(?P<AWS_RDS_INSTANCE>[A-Za-z0-9-]+)"),
    ("rds", r"cluster:(?P<AWS_RDS_CLUSTER>[A-Za-z0-9-]+)"),
    ("ec2", r"instance/(?P<AWS_EC2>i-[0-9A-Fa-f]+)"),
    ("ec2", r"vpc/(?P<AWS_VPC>vpc-[0-9A-Fa-f]+)"),
    ("ec2", r"subnet/(?P<AWS_SUBNET>subnet-[0-9A-Fa-f]+)"),
    ("ec2", r"security-group/(?P<AWS_SG>sg-[0-9A-Fa-f]+)"),
    ("kms", r"key/(?P<AWS_KMS_KEY>[A-Za-z0-9-]+)"),
    ("kms", f"alias/(?P<AWS_KMS_ALIAS>{_ARN_NAME})"),
    ("secretsmanager", r"secret:(?P<AWS_SECRET_NAME>[A-Za-z0-9/_+=.@-]*[A-Za-z0-9_+=@-])"),
    (
        "logs",
        r"log-group:(?P<AWS_LOG_GROUP>[A-Za-z0-9_./#-]*[A-Za-z0-9_/#-])"
        r"(?::\*|:log-stream:(?P<AWS_LOG_STREAM>[A-Za-z0-9_./$\[\]#=+@-]*[A-Za-z0-9_/$\]#=+@-]))?",
    ),
    ("states", r"stateMachine:(?P<AWS_STATE_MACHINE>[A-Za-z0-9_-]+)"),
    ("cloudformation", r"stack/(?P<AWS_CLOUDFORMATION_STACK>[A-Za-z0-9-]+)"),
    (
        "elasticloadbalancing",
        r"loadbalancer/(?:app/|net/|gwy/)?(?P<AWS_ELB>[A-Za-z0-9-]+)",
    ),
    ("elasticloadbalancing", r"targetgroup/(?P<AWS_ELB_TARGET_GROUP>[A-Za-z0-9-]+)"),
    ("ecr", r"repository/(?P<AWS_ECR_REPOSITORY>[a-z0-9._/-]*[a-z0-9])"),
)


def _unique_groups(regex: str) -> str:
    """Numbers repeated group names (AWS_ACCOUNT, AWS_ACCOUNT__2, ...): a regex names each group
    once, and the engine reads the prefix before "__"."""
    seen: dict[str, int] = {}

    def rename(match: re.Match[str]) -> str:
        name = match.group(1)
        seen[name] = seen.get(name, 0) + 1
        return f"(?P<{name}>" if seen[name] == 1 else f"(?P<{name}__{seen[name]}>"

    return re.sub(r"\(\?P<([A-Z0-9_]+)>", rename, regex)


def _arn_regex() -> str:
    account = r"(?P<AWS_ACCOUNT>[0-9]{12})?"
    unexpected = f"(?:[/:]+{_segments('AWS_NAME', _ARN_SEGMENT, _ARN_REST, most=2)})?"
    typed = [
        f"{service}:[a-z0-9-]*:{account}:{resource}{unexpected}"
        for service, resource in _ARN_TYPED_RESOURCES
    ]
    # A bucket already masked (a placeholder, when the masked text is scanned again) keeps the
    # ARN in this branch, whose key stays readable.
    bucket = r"s3:::(?:(?P<AWS_S3>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])|[A-Z][A-Z0-9_]*_[0-9]{3,})"
    bucket += r"(?:/[A-Za-z0-9_+=@./:*$%~,-]*[A-Za-z0-9_+=@/*$%~-])?"
    # Any other resource: its type (when it has one) stays readable, the rest is a name.
    name = _segments("AWS_NAME", _ARN_SEGMENT, _ARN_REST, most=6)
    other = f"[a-z0-9-]+:[a-z0-9-]*:{account}:(?:[A-Za-z0-9-]+[/:])?{name}"
    # RE2 prefers the first alternative that matches: the typed ones, then the others.
    return _unique_groups(_ARN_PARTITION + "(?:" + "|".join([*typed, bucket, other]) + ")")


_ARN_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="aws_arn",
        category="aws_arn",
        description=(
            "Amazon Resource Name in any partition (aws, aws-cn, aws-us-gov, aws-iso*, aws-eusc), "
            "structure kept: the account, an S3 bucket and the names a customer chose are masked "
            "each on its own, typed where the resource type says what they name (role, user, "
            "function, table, queue, topic, cluster, key, secret, log group, ...); AWS-managed "
            "ARNs with the account 'aws' are left visible."
        ),
        # Region and account may be empty (IAM, S3). See _arn_regex for the parts.
        regex=_arn_regex(),
        prefix="AWS_ARN",
        priority=5,
        positive=(
            "arn:aws:iam::123456789012:role/Admin",
            "arn:aws:sts::123456789012:assumed-role/DevOps/jane.doe@example.com",
            "arn:aws:lambda:us-east-1:123456789012:function:order-processor:live",
            "arn:aws:ecs:ap-northeast-2:123456789012:task-definition/web-api:42",
            "arn:aws:ecs:us-east-1:123456789012:task/prod-cluster/0a1b2c3d4e5f67890a1b2c3d4e5f6789",
            "arn:aws:apprunner:us-east-1:123456789012:service/web/8fe1e10304f84fd2b0df550fe98a71fa",
            "arn:aws:eks:us-west-2:123456789012:cluster/prod-eks",
            "arn:aws:rds:eu-west-1:123456789012:db:orders-db",
            "arn:aws:sns:us-east-1:123456789012:alerts-topic",
            "arn:aws:sqs:us-east-1:123456789012:order-events.fifo",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:123456789012:alias/prod-db-key",
            "arn:aws:s3:::company-data-bucket/reports/2025/*",
            "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2025-08-22T12:44:30.000",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf",
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/order-processor:*",
            "arn:aws-cn:s3:::cn-backup-bucket",
            "arn:aws-us-gov:iam::123456789012:user/ops",
            "arn:aws-iso-b:ec2:us-isob-east-1:123456789012:instance/i-0123456789abcdef0",
            "arn:aws-eusc:lambda:eusc-de-east-1:123456789012:function:ingest",
            '"Resource": "arn:aws:s3:::company-data-bucket/*",',
            "The function arn:aws:lambda:us-east-1:123456789012:function:api. failed",
        ),
        negative=(
            "arn:aws:iam::aws:policy/AdministratorAccess",
            "the ARN format is arn:partition:service:region:account-id:resource",
            "warn:aws:config was logged",
        ),
    ),
)

_ACCOUNT_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="aws_account_id",
        category="aws_account",
        description=(
            "12-digit AWS account ID (or 1234-5678-9012 as the console shows it), masked only "
            "near words such as account, owner, AWS, 계정."
        ),
        regex=r"[0-9]{12}|[0-9]{4}-[0-9]{4}-[0-9]{4}",
        prefix="AWS_ACCOUNT",
        priority=50,
        context_keywords=(
            "account",
            "account id",
            "account_id",
            "owner",
            "registryid",
            "registry_id",
            "registry id",
            "계정",
            "어카운트",
        ),
        # "aws" as a whole word only: as a substring it is in "laws" and "draws".
        context_regex=r"(?i:\baws\b)",
        context_window=32,
        positive=(
            "AWS account 123456789012",
            '"Account": "123456789012",',
            "계정 ID: 1234-5678-9012",
            '"OwnerId": "210987654321"',
            '"registryId": "012345678901"',
        ),
        negative=(
            "Order number 123456789012 has shipped.",
            "AWS event at 1732012345678 ms since the epoch",
            "Call +82 10-1234-5678 about the account",
            "123456789012",
        ),
    ),
)

_CREDENTIAL_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="aws_access_key_id",
        category="aws_credential",
        description=(
            "AWS access key ID (AKIA... long-term, ASIA... temporary, and other key prefixes)."
        ),
        # Real keys use A-Z and 2-7 only, but example keys with 0, 1, 8, 9 must be masked too.
        regex=r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}",
        prefix="AWS_ACCESS_KEY",
        priority=2,
        positive=(
            "AKIAIOSFODNN7EXAMPLE",
            "AKIA1234567890ABCDEF",
            "ASIAY34FZKBOKMUTVV7A",
            "aws_access_key_id = AKIAJ5Q7R2X4PZ6LKWMA",
        ),
        negative=(
            "AKIA1234",
            "XAKIAIOSFODNN7EXAMPLE",
            "akiaiosfodnn7example",
        ),
    ),
    LibraryEntry(
        name="aws_iam_unique_id",
        category="aws_resource",
        description=(
            "IAM unique ID of a user, role, group, policy, instance profile or certificate "
            "(AIDA..., AROA..., AGPA..., ANPA..., ANVA..., AIPA..., ASCA..., APKA...)."
        ),
        regex=r"(?:AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16,17}",
        prefix="AWS_IAM_ID",
        priority=3,
        positive=(
            "AIDACKCEVSQ6C2EXAMPLE",
            "AROADBQP57FF2AEXAMPLE",
            '"UserId": "AROA3XFRBF535PLBIFPI4:jane.doe"',
        ),
        negative=(
            "AIDA",
            "AROADBQP57FF2AEXAMPLE123",
            "aroadbqp57ff2aexample",
        ),
    ),
    LibraryEntry(
        name="aws_secret_access_key",
        category="aws_credential",
        description=(
            "AWS secret access key (40 characters of base64), masked near 'secret', 시크릿 or "
            "an access key ID."
        ),
        regex=r"[A-Za-z0-9/+]{40}",
        prefix="AWS_SECRET_KEY",
        priority=3,
        validator="aws_secret",
        context_keywords=(
            "aws_secret_access_key",
            "secret access key",
            "SecretAccessKey",
            "secret_key",
            "secret",
            "시크릿",
            "비밀 키",
            "비밀키",
        ),
        # An access key ID right before it, as in credential CSVs and `aws configure` output.
        context_regex=r"(?:AKIA|ASIA)[A-Z0-9]{16}",
        context_window=48,
        positive=(
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            '"SecretAccessKey": "9drTJvcXLB89EXAMPLELB8923FB892xMFI+gK8Xt",',
            "credentials.csv: AKIAIOSFODNN7EXAMPLE,je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
            "시크릿 키: Yx8pQ2mK4vR7tW1zN5bC3dF6gH9jL0aS2eU4iO7k",
        ),
        negative=(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "secret scanning found commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
            "secret = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'",
        ),
    ),
    LibraryEntry(
        name="aws_session_token",
        category="aws_credential",
        description=(
            "AWS session token (long base64, possibly URL-encoded), masked near "
            "aws_session_token, SessionToken or X-Amz-Security-Token."
        ),
        regex=r"[A-Za-z0-9/+%]{100,}={0,2}",
        prefix="AWS_SESSION_TOKEN",
        priority=3,
        validator="entropy",
        context_keywords=(
            "aws_session_token",
            "SessionToken",
            "session token",
            "security_token",
            "x-amz-security-token",
            "세션 토큰",
        ),
        context_window=48,
        positive=(
            "aws_session_token = IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6m3V8ryhK"
            "T1NmX2b9l7yqJk4Fh2r0Xw8vT6ZpL3sHqAIgR5cN0dE7fU1gS9tJ2kB4hY6mW8oQ3pV1zX0aC5eD7fEq"
            "nAII+P//////////ARAAGgwxMjM0NTY3ODkwMTIiDFm1Qk3k==",
            '"SessionToken": "FwoGZXIvYXdzEBYaDHhBTEXAMPLEtokenZ8k2pQ9sL4mN7vR1tW3yZ6bC0dF5gH8jK2'
            'lM4nP7qR9sT1uV3wX5yZ7aB9cD1eF3gH5iJ7kL9mN1oP3qR5sT7uV9wX1yZ3aB5cD7eF9gH1iJ3kL5mN"',
        ),
        negative=(
            "aws_session_token = ${AWS_SESSION_TOKEN}",
            "SessionToken: " + "A" * 120,
            "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6m3V8ryhKT1NmX2b9l7yqJk4Fh2r0"
            "Xw8vT6ZpL3sHqAIgR5cN0dE7fU1gS9tJ2kB4hY6mW8oQ3pV1zX0aC5eD7fEq",
        ),
    ),
    LibraryEntry(
        name="aws_session_token_by_prefix",
        category="aws_credential",
        description=(
            "AWS STS session token recognised by its own start (IQoJb3JpZ2luX2Vj..., or the "
            "older FwoGZXIvYXdz...), with no keyword around it."
        ),
        regex=r"(?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdz)[A-Za-z0-9/+%]{60,}={0,2}",
        prefix="AWS_SESSION_TOKEN",
        priority=3,
        positive=(
            "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6m3V8ryhKT1NmX2b9l7yqJk4Fh2r0"
            "Xw8vT6ZpL3sHqAIgR5cN0dE7fU1gS9tJ2kB4hY6mW8oQ3pV1zX0aC5eD7fEq",
            "session: FwoGZXIvYXdzEBYaDHhBTEXAMPLEtokenZ8k2pQ9sL4mN7vR1tW3yZ6bC0dF5gH8jK2lM4nP7qR9",
        ),
        negative=("IQoJb3JpZ2luX2Vj", "FwoGZXIvYXdzEBYaDH"),
    ),
    LibraryEntry(
        name="aws_bedrock_api_key",
        category="aws_credential",
        description=(
            "Amazon Bedrock API key: long-term (ABSK followed by base64) or short-term "
            "(bedrock-api-key- followed by a base64 presigned URL)."
        ),
        regex=r"ABSK[A-Za-z0-9+/]{32,}={0,2}|bedrock-api-key-[A-Za-z0-9+/%_-]{32,}={0,2}",
        prefix="AWS_BEDROCK_KEY",
        priority=3,
        positive=(
            "ABSKQmVkcm9ja0FQSUtleS1hYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk=",
            "export AWS_BEARER_TOKEN_BEDROCK=bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29tLz9BY3R"
            "pb249Q2FsbFdpdGhCZWFyZXJUb2tlbiZYLUFtei1BbGdvcml0aG09",
        ),
        negative=("ABSK", "bedrock-api-key-", "bedrock-api-key-rotation is on"),
    ),
)

# Bucket names: 3-63 of a-z 0-9 . - starting and ending with a letter or digit.
_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
# The same, except names starting with "buck": a key or flag ("bucket =", "--bucket") lies
# inside its own keyword, and the engine would mask it as the value next to that keyword.
_BUCKET_VALUE = (
    r"(?:[ac-z0-9][a-z0-9.-]|b[a-tv-z0-9.-]|bu[abd-z0-9.-]|buc[a-jl-z0-9.-])"
    r"[a-z0-9.-]{0,59}[a-z0-9]"
)
# A bucket name that cannot be an ordinary word, a number or an IP: a letter and a '-' or '.'
# between letters/digits ("boto3" or "ec2" alone does not qualify). Its first part must not
# be an AWS region prefix (us, eu, ap, sa, ca, me, af, il, mx, cn), so that "ap-northeast-2"
# next to "bucket" stays visible: the scan then restarts inside the word, where the engine's
# word-boundary check drops the match ("s-east-1" follows a letter). Names like "eu-backups"
# are the price. A one-letter first part needs a '-', so "e.g." and "i.e." stay visible.
_NOT_REGION_PREFIX = (
    r"[bdfghjklnopqrtvwxyz][a-z]|a[a-eg-oq-z]|c[b-mo-z]|e[a-tv-z]|i[a-km-z]|m[a-df-wyz]"
    r"|s[b-z]|u[a-rt-z]"
)
_BUCKET_IN_PROSE = (
    r"(?:[a-z](?:[a-z0-9]{2,}|[0-9])|[0-9][a-z0-9]*[a-z][a-z0-9]*|" + _NOT_REGION_PREFIX + r")"
    r"(?:[.-]+[a-z0-9]+)+"
    r"|[a-z]-+[a-z0-9]+(?:[.-]+[a-z0-9]+)*"
    r"|[0-9]+(?:[.-]+[a-z0-9]+)*[.-]+[a-z0-9]*[a-z][a-z0-9]*(?:[.-]+[a-z0-9]+)*"
)

_STORAGE_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="aws_s3_uri",
        category="aws_storage",
        description=(
            "S3 URI (s3://bucket, also s3a:// and s3n://); the bucket is masked, the object key "
            "stays visible."
        ),
        # The bucket alone is masked (a named group): "s3://" and the key stay visible, because
        # the question is usually about its layout (logs/2025/08/...).
        regex=r"s3[an]?://(?P<AWS_S3>[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9])",
        prefix="AWS_S3",
        priority=20,
        positive=(
            "s3://company-data-bucket",
            "s3a://analytics.raw.events",
            "aws s3 cp app.log s3://backup-logs-bucket/2025/08/22/app.log",
            "Upload it to s3://my-bucket.",
        ),
        negative=(
            "s3://",
            "the s3:// scheme",
            "s3:GetObject",
        ),
    ),
    LibraryEntry(
        name="aws_s3_url",
        category="aws_storage",
        description=(
            "S3 bucket in an HTTPS host or path (bucket.s3.region.amazonaws.com, "
            "s3.region.amazonaws.com/bucket, website and dual-stack endpoints)."
        ),
        # One regex for both styles: separate patterns would overlap on
        # "bucket.s3.amazonaws.com/key", and the longer one would leave "bucket." visible.
        regex=(
            _BUCKET + r"\.s3[a-z0-9.-]*\.amazonaws\.com(?:\.cn)?"
            r"|s3[a-z0-9.-]*\.amazonaws\.com(?:\.cn)?/" + _BUCKET
        ),
        prefix="AWS_S3",
        priority=20,
        validator="customer_endpoint",
        positive=(
            "company-data-bucket.s3.amazonaws.com",
            "company-data-bucket.s3.us-east-1.amazonaws.com",
            "static.example.com.s3-website-us-west-2.amazonaws.com",
            "my-site.s3-website.eu-central-1.amazonaws.com",
            "s3.amazonaws.com/backup-logs-bucket",
            "GET https://s3.ap-northeast-2.amazonaws.com/backup-logs-bucket/2025/app.log",
            "GET https://my-bucket.s3.us-east-1.amazonaws.com/very/long/object/key/that-is-long.txt",
        ),
        negative=(
            "https://s3.amazonaws.com/",
            "s3.us-east-1.amazonaws.com",
            "s3-website-us-east-1.amazonaws.com",
            '"Principal": {"Service": "logging.s3.amazonaws.com"}',
            '"Service": ["delivery.logs.amazonaws.com", "logging.s3.amazonaws.com"]',
            "Service:\n  - logging.s3.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_s3_bucket_assignment",
        category="aws_storage",
        description=(
            "Bucket name given to a bucket, Bucket, BucketName, bucket_name or *_BUCKET setting "
            '(bucket = "...", "Bucket": "...", BucketName: ..., S3_BUCKET=...).'
        ),
        regex=_BUCKET_VALUE,
        prefix="AWS_S3",
        priority=70,
        # The separator and an opening quote belong to the keyword, so the value touches it
        # (column-aligned Terraform plans included). "\Bucket" starts the keyword after the "b":
        # the last word of the line before ("region: us-east-1" above "bucket:") is then two
        # characters away, out of window 1's reach.
        context_regex=r"(?i:\Bucket(?:[_-]?name)?[\"']?[ \t]*[:=][ \t]*[\"']?)",
        context_window=1,
        validator="bucket_name",
        positive=(
            'bucket = "acmeprodlogs"',
            's3.put_object(Bucket="backups2025", Key="a.txt")',
            '"Bucket": "company-data-bucket"',
            "BucketName: logs.example.com",
            "export S3_BUCKET=my-app-assets",
            '      + bucket                      = "acme-prod-logs"',
            "region: us-east-1\nbucket: acme-prod-logs",
        ),
        negative=(
            'Bucket: "Not A Bucket"',
            "bucket_key_enabled = true",
            "the bucket policy denies s3:PutObject",
            "bucket = var.bucket_name",
            "self.bucket = self.client.bucket(self.name)",
            '"repository": "bitbucket:user/repo"',
            "bucket = storage.bucket(name)",
        ),
    ),
    LibraryEntry(
        name="aws_s3_bucket_cli_argument",
        category="aws_storage",
        description="Bucket name given to the AWS CLI as --bucket NAME.",
        regex=_BUCKET_VALUE,
        prefix="AWS_S3",
        priority=70,
        # "\B-" starts the keyword at the second dash of "--bucket", so with window 1 the
        # subcommand before it ("create-bucket --bucket") is two characters away, out of reach.
        context_regex=r"\B-bucket(?:-name)?[ =]",
        context_window=1,
        positive=(
            "aws s3api create-bucket --bucket acmeprodlogs --region ap-northeast-2",
            "aws s3api put-bucket-policy --bucket company-data-bucket --policy file://p.json",
            'aws s3api head-bucket --bucket="backup-logs-bucket"',
        ),
        negative=(
            "aws s3api create-bucket --bucket",
            "aws s3api put-bucket-versioning --versioning-configuration Status=Enabled",
            "aws s3api list-buckets --query Buckets[].Name",
        ),
    ),
    LibraryEntry(
        name="aws_s3_bucket_in_context",
        category="aws_storage",
        description=(
            "Bucket names after a 'buckets:' or 'S3:' label, or next to 버킷; the name must "
            "contain a letter and a '-' or '.', so ordinary words are left alone."
        ),
        regex=_BUCKET_IN_PROSE,
        prefix="AWS_S3",
        priority=80,
        context_keywords=("버킷",),
        # Labels only: "buckets:", not "create-buckets:"; "S3:" as a label, not "s3://" or
        # "s3:GetObject". The word alone is aws_s3_bucket_after_word's.
        # "bucket: name" is aws_s3_bucket_assignment's (the value right after it).
        context_regex=r"(?i:(?:^|[^a-z0-9.-])buckets[ \t]*:(?:$|[^/])|\bs3:\s)",
        # Small: anything bucket-shaped nearby is masked, so only the next name or two qualify.
        context_window=24,
        validator="bucket_name",
        positive=(
            "S3: company-data-bucket, backup-logs-bucket",
            "company-data-bucket 버킷에 업로드가 실패합니다",
            "버킷 kt-prod-logs를 ap-northeast-2에 만들었습니다",
            "buckets: logs.example.com, acme-prod-logs",
        ),
        negative=(
            "the bucket policy denies s3:GetObject",
            "create an S3 bucket named after the team",
            "bucket versions 10.0.0.1 and 2025-08-22",
            "aws s3api put-bucket-acl --acl bucket-owner-full-control",
            "bucket in us-east-1 (us-east-1a), replicated to ap-northeast-2",
            "a bucket, i.e. a container; e.g. for logs",
            'blob = bucket.blob("reports/2024.csv")',
            "kubectl apply -f bucket.yaml",
            "each bucket's hit rate is over telemetry-bearing turns",
            "bucket: dict[str, object],  # mutable-ok: written in place",
        ),
    ),
    LibraryEntry(
        name="aws_s3_ls_bucket",
        category="aws_storage",
        description=(
            "Bucket name in the output of 'aws s3 ls': a line of a date, a time and the name."
        ),
        regex=r"(?m:[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$)",
        prefix="AWS_S3",
        priority=70,
        # The value right after the date and time (window 0); an object listing has a size
        # column there ("2025-08-22 12:44:30     482113 app.log").
        context_regex=r"(?m:^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} )",
        context_window=0,
        positive=(
            "$ aws s3 ls\n2025-01-14 09:12:03 acme-prod-logs\n2025-03-02 17:40:55 acme-billing",
            "2024-11-30 23:01:09 logs.example.com",
        ),
        negative=(
            "2025-08-22 12:44:30     482113 app-2025-08-22.log",
            "2025-08-22 12:44:30 started the deploy",
        ),
    ),
    LibraryEntry(
        name="aws_s3_bucket_after_word",
        category="aws_storage",
        description=(
            "Bucket name right after the word bucket (the bucket acme-prod-assets, a bucket "
            "named x); the name must contain a letter and a '-' or '.'."
        ),
        regex=_BUCKET_IN_PROSE,
        prefix="AWS_S3",
        priority=80,
        # "bucket" as a word of its own: not "create-bucket", "bucket-owner-full-control" or
        # "self.bucket"; not a label (aws_s3_bucket_in_context's).
        context_regex=(
            r"(?i:(?:^|[^a-z0-9.-])bucket(?:[ _-]?name)?(?:[ \t]+(?:named|called))?[ \t]+)"
        ),
        # Right after it (window 0): what stands before the word is mostly an adjective
        # ("user-configured bucket", "per-model bucket"), and code and prose a few words away
        # (a rate limiter's token bucket, "cache-read", "cast-ok") are not names.
        context_window=0,
        validator="bucket_name",
        positive=(
            "the bucket acme-prod-assets is public",
            "a bucket named acme-prod-logs",
            "copy it to bucket logs.example.com tonight",
        ),
        negative=(
            "the bucket policy denies s3:GetObject",
            "create an S3 bucket named after the team",
            "each bucket's hit rate is over telemetry-bearing turns",
            "hashed = rebind(x)  # rebind-ok: a token bucket",
            "a user-configured bucket prefix",
            "expected gs://bucket-name/litellm-vertex-files/x",
        ),
    ),
)

_ENDPOINT_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="aws_rds_endpoint",
        category="aws_endpoint",
        description=(
            "RDS, Aurora (cluster, reader, custom, proxy), DocumentDB or Neptune endpoint host "
            "name."
        ),
        # A region label before the service: "monitoring.rds.amazonaws.com" is a service
        # principal (AWS's own), not a customer's endpoint.
        regex=(
            r"(?P<AWS_RDS_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*)\.[a-z]{2}(?:-[a-z]+)+-[0-9]\."
            r"(?:rds|docdb|neptune)\.amazonaws\.com(?:\.cn)?"
        ),
        prefix="AWS_RDS_ENDPOINT",
        priority=20,
        positive=(
            "orders-db.c9akciq32xyz.us-east-1.rds.amazonaws.com",
            "orders.cluster-ro-c9akciq32xyz.ap-northeast-2.rds.amazonaws.com",
            "app-proxy.proxy-c9akciq32xyz.us-east-1.rds.amazonaws.com",
            "docs.cluster-c1a2b3c4d5e6.us-east-1.docdb.amazonaws.com",
            "url: jdbc:postgresql://orders-db.c9akciq32xyz.us-east-1.rds.amazonaws.com:5432/orders",
        ),
        negative=(
            "rds.us-east-1.amazonaws.com",
            "rds.amazonaws.com",
            "https://docs.aws.amazon.com/rds/",
            '"Principal": {"Service": "monitoring.rds.amazonaws.com"}',
        ),
    ),
    LibraryEntry(
        name="aws_redshift_endpoint",
        category="aws_endpoint",
        description="Redshift or Redshift Serverless endpoint host name.",
        # The cluster's (or workgroup's) labels are masked; a Serverless workgroup's account,
        # the region and the service stay readable.
        regex=(
            r"(?P<AWS_REDSHIFT_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*?)(?:\.(?P<AWS_ACCOUNT>[0-9]{12}))?"
            rf"\.{_REGION}\.redshift(?:-serverless)?\.amazonaws\.com(?:\.cn)?"
        ),
        prefix="AWS_REDSHIFT_ENDPOINT",
        priority=20,
        positive=(
            "analytics.c1a2b3c4d5e6.us-east-1.redshift.amazonaws.com",
            "default-wg.123456789012.us-east-1.redshift-serverless.amazonaws.com",
        ),
        negative=(
            "redshift.us-east-1.amazonaws.com",
            "redshift-serverless.us-east-1.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_elb_dns_name",
        category="aws_endpoint",
        description="Classic, Application or Network Load Balancer DNS name (*.elb.amazonaws.com).",
        # The load balancer's labels are masked; the region and the service stay readable.
        regex=(
            rf"(?P<AWS_ELB>[A-Za-z0-9][A-Za-z0-9.-]*?)(?:\.{_REGION})?"
            rf"\.elb(?:\.{_REGION})?\.amazonaws\.com(?:\.cn)?"
        ),
        prefix="AWS_ELB",
        priority=20,
        positive=(
            "my-alb-1234567890.us-east-1.elb.amazonaws.com",
            "internal-api-alb-987654321.ap-northeast-2.elb.amazonaws.com",
            "prod-nlb-0a1b2c3d4e5f6789.elb.us-west-2.amazonaws.com",
            "dualstack.my-alb-1234567890.us-east-1.elb.amazonaws.com",
        ),
        negative=(
            "elasticloadbalancing.us-east-1.amazonaws.com",
            "elb.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_eks_endpoint",
        category="aws_endpoint",
        description="EKS cluster API server endpoint or OIDC issuer URL.",
        regex=(
            # The cluster's ID is masked (the same in both forms); the cell label ("gr7"),
            # the region and the service stay readable.
            r"(?P<AWS_EKS_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*?)(?:\.[a-z]{2}[0-9]+)?"
            rf"(?:\.{_REGION})?\.eks\.amazonaws\.com(?:\.cn)?"
            r"|oidc\.eks\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/id/(?P<AWS_EKS_ENDPOINT__2>[A-Za-z0-9]+)"
        ),
        prefix="AWS_EKS_ENDPOINT",
        priority=20,
        positive=(
            "0A1B2C3D4E5F60718293A4B5C6D7E8F9.gr7.us-east-1.eks.amazonaws.com",
            "server: https://ABCDEF0123456789ABCDEF0123456789.yl4.ap-northeast-2.eks.amazonaws.com",
            "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
        ),
        negative=(
            "eks.us-east-1.amazonaws.com",
            "oidc.eks.us-east-1.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_elasticache_endpoint",
        category="aws_endpoint",
        description="ElastiCache or MemoryDB endpoint host name.",
        regex=(
            # The cluster's labels are masked; the region (short, "use1", or long) and the
            # service stay readable.
            r"(?P<AWS_ELASTICACHE_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*?)(?:\.[a-z]{3,4}[0-9])?"
            r"\.cache\.amazonaws\.com(?:\.cn)?"
            r"|(?P<AWS_ELASTICACHE_ENDPOINT__2>[A-Za-z0-9][A-Za-z0-9.-]*)"
            r"\.memorydb\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?"
        ),
        prefix="AWS_ELASTICACHE_ENDPOINT",
        priority=20,
        positive=(
            "sessions.abc123.ng.0001.use1.cache.amazonaws.com",
            "master.prod-redis.abc123.apn2.cache.amazonaws.com",
            "clustercfg.prod-mem.abc123.memorydb.us-east-1.amazonaws.com",
        ),
        negative=(
            "elasticache.us-east-1.amazonaws.com",
            "memorydb.us-east-1.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_api_gateway_endpoint",
        category="aws_endpoint",
        description="API Gateway invoke host name (*.execute-api.<region>.amazonaws.com).",
        regex=(
            r"(?P<AWS_APIGW_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*)"
            r"\.execute-api\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?"
        ),
        prefix="AWS_APIGW_ENDPOINT",
        priority=20,
        positive=(
            "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "curl https://x7y8z9w0v1.execute-api.ap-northeast-2.amazonaws.com/prod/orders",
        ),
        negative=(
            "execute-api.us-east-1.amazonaws.com",
            "apigateway.us-east-1.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_cloudfront_domain",
        category="aws_endpoint",
        description="CloudFront distribution domain name (*.cloudfront.net).",
        regex=r"(?P<AWS_CLOUDFRONT_DOMAIN>[A-Za-z0-9][A-Za-z0-9.-]*)\.cloudfront\.net",
        prefix="AWS_CLOUDFRONT_DOMAIN",
        priority=20,
        positive=(
            "d111111abcdef8.cloudfront.net",
            "open https://d2x3y4z5a6b7c8.cloudfront.net/assets/app.js",
        ),
        negative=(
            "cloudfront.net",
            "cloudfront.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_lambda_function_url",
        category="aws_endpoint",
        description="Lambda function URL host name (*.lambda-url.<region>.on.aws).",
        regex=r"(?P<AWS_LAMBDA_URL>[a-z0-9]+)\.lambda-url\.[a-z0-9-]+\.on\.aws",
        prefix="AWS_LAMBDA_URL",
        priority=20,
        positive=(
            "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
            "curl https://k3j4h5g6f7d8s9a0q1w2e3r4t5y6u7i8.lambda-url.ap-northeast-2.on.aws/",
        ),
        negative=(
            "lambda.us-east-1.amazonaws.com",
            "lambda-url.us-east-1.on.aws",
        ),
    ),
    LibraryEntry(
        name="aws_opensearch_endpoint",
        category="aws_endpoint",
        description="OpenSearch Service domain or OpenSearch Serverless collection endpoint.",
        regex=(
            r"(?P<AWS_OPENSEARCH_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*?)"
            rf"(?:\.{_REGION})?\.(?:es|aoss)\.amazonaws\.com(?:\.cn)?"
        ),
        prefix="AWS_OPENSEARCH_ENDPOINT",
        priority=20,
        positive=(
            "search-logs-abc123def456ghi789.us-east-1.es.amazonaws.com",
            "vpc-app-search-x1y2z3.ap-northeast-2.es.amazonaws.com",
            "0a1b2c3d4e5f6g7h8i9j.us-east-1.aoss.amazonaws.com",
        ),
        negative=(
            "es.us-east-1.amazonaws.com",
            "aoss.us-east-1.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_msk_mq_broker_endpoint",
        category="aws_endpoint",
        description="Amazon MSK (Kafka) or Amazon MQ broker host name.",
        regex=(
            r"(?P<AWS_BROKER_ENDPOINT>[A-Za-z0-9][A-Za-z0-9.-]*)"
            r"\.kafka(?:-serverless)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?"
            r"|(?P<AWS_BROKER_ENDPOINT__2>[A-Za-z0-9][A-Za-z0-9.-]*)"
            r"\.mq\.[a-z0-9-]+\.(?:amazonaws\.com(?:\.cn)?|on\.aws)"
        ),
        prefix="AWS_BROKER_ENDPOINT",
        priority=20,
        positive=(
            "b-1.orders-msk.x1y2z3.c2.kafka.us-east-1.amazonaws.com",
            "b-0a1b2c3d-4e5f-6789-abcd-ef0123456789-1.mq.us-east-1.amazonaws.com",
        ),
        negative=(
            "kafka.us-east-1.amazonaws.com",
            "mq.us-east-1.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_ecr_registry",
        category="aws_endpoint",
        description=(
            "Private ECR registry host (<account>.dkr.ecr.<region>.amazonaws.com) and repository: "
            "the account and the repository's name are masked, the region and a tag stay visible."
        ),
        regex=(
            r"(?P<AWS_ACCOUNT>[0-9]{12})\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?"
            r"(?:/(?P<AWS_ECR_REPOSITORY>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*))?"
        ),
        prefix="AWS_ECR_REGISTRY",
        priority=20,
        positive=(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "image: 123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/web-api:1.4.2",
        ),
        negative=(
            "api.ecr.us-east-1.amazonaws.com",
            "public.ecr.aws/nginx/nginx:1.27",
        ),
    ),
    LibraryEntry(
        name="aws_sqs_queue_url",
        category="aws_endpoint",
        description="SQS queue URL, which contains the account ID and the queue name.",
        regex=(
            r"(?:https?://)?(?:sqs\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?|(?:[a-z0-9-]+\.)?queue\.amazonaws\.com)"
            r"/(?P<AWS_ACCOUNT>[0-9]{12})/(?P<AWS_SQS_QUEUE>[A-Za-z0-9_-]{1,80}(?:\.fifo)?)"
        ),
        prefix="AWS_SQS_QUEUE_URL",
        priority=20,
        positive=(
            "https://sqs.us-east-1.amazonaws.com/123456789012/order-events",
            "https://sqs.ap-northeast-2.amazonaws.com/123456789012/payments.fifo",
            "https://queue.amazonaws.com/123456789012/legacy-jobs",
        ),
        negative=(
            "https://sqs.us-east-1.amazonaws.com/",
            "sqs.us-east-1.amazonaws.com",
        ),
    ),
    LibraryEntry(
        name="aws_ec2_public_dns",
        category="aws_endpoint",
        description=(
            "EC2 public DNS name, which spells out the instance's public IP "
            "(ec2-54-1-2-3.compute-1.amazonaws.com)."
        ),
        regex=r"ec2-[0-9]{1,3}(?:-[0-9]{1,3}){3}\.(?:[a-z0-9-]+\.)?compute(?:-1)?\.amazonaws\.com(?:\.cn)?",
        prefix="AWS_EC2_DNS",
        priority=20,
        positive=(
            "ec2-54-123-45-67.compute-1.amazonaws.com",
            "ssh ec2-user@ec2-3-34-12-7.ap-northeast-2.compute.amazonaws.com",
        ),
        negative=(
            "ip-10-0-1-23.ec2.internal",
            "ip-10-0-1-23.ap-northeast-2.compute.internal",
        ),
    ),
)

_AWS_RESOURCE_CONTEXT_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="aws_kms_key_id",
        category="aws_resource",
        description=(
            "KMS key ID (a UUID, any case), masked only near kms, key id, KeyId or 키; other "
            "UUIDs stay visible."
        ),
        regex=r"(?i:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
        prefix="AWS_KMS_KEY",
        priority=50,
        context_keywords=("kms", "key id", "keyid", "key_id", "key-id", "키"),
        context_window=32,
        positive=(
            "KMS key 1234abcd-12ab-34cd-56ef-1234567890ab is disabled",
            '"KeyId": "0987dcba-09fe-87dc-65ba-ab0987654321"',
            "aws kms describe-key --key-id 6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f",
            "암호화 키 5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9가 삭제 예정입니다",
            "KMS KEY 1234ABCD-12AB-34CD-56EF-1234567890AB",
        ),
        negative=(
            "RequestId: 4d5f3b6a-8c2e-4f1a-9b7d-3e6c8a0f2d1b",
            "trace 1234abcd-12ab-34cd-56ef-1234567890ab",
        ),
    ),
    LibraryEntry(
        name="aws_kms_multi_region_key_id",
        category="aws_resource",
        description="KMS multi-Region key ID (mrk- followed by 32 hex digits; any case).",
        regex=r"(?i:mrk-[0-9a-f]{32})",
        prefix="AWS_KMS_KEY",
        priority=20,
        positive=(
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "replica of mrk-0a1b2c3d4e5f60718293a4b5c6d7e8f9 in eu-west-1",
            "MRK-1234ABCD12AB34CD56EF1234567890AB",
        ),
        negative=(
            "mrk-1234",
            "mrk-1234abcd12ab34cd56ef1234567890ag",
        ),
    ),
    LibraryEntry(
        name="aws_cloudfront_distribution_id",
        category="aws_resource",
        description=(
            "CloudFront distribution ID (E followed by 12-14 letters/digits), masked only near "
            "cloudfront or distribution."
        ),
        regex=r"E[A-Z0-9]{12,14}",
        prefix="AWS_CLOUDFRONT_DIST",
        priority=50,
        context_keywords=("cloudfront", "distribution", "배포"),
        context_window=32,
        positive=(
            "CloudFront distribution E2QWRUHAPOMQZL returns 403",
            "aws cloudfront create-invalidation --distribution-id EDFDVBD6EXAMPLE --paths '/*'",
        ),
        negative=(
            "E2QWRUHAPOMQZL",
            "CloudFront distribution is ENABLED",
        ),
    ),
    LibraryEntry(
        name="aws_route53_hosted_zone_id",
        category="aws_resource",
        description=(
            "Route 53 hosted zone ID (Z followed by letters/digits), masked only near hosted zone "
            "or zone id."
        ),
        regex=r"Z[A-Z0-9]{9,31}",
        prefix="AWS_ROUTE53_ZONE",
        priority=50,
        context_keywords=(
            "hosted zone",
            "hosted-zone",
            "hostedzone",
            "zone id",
            "zone-id",
            "zoneid",
            "zone_id",
            "호스팅 영역",
        ),
        context_window=32,
        positive=(
            '"HostedZoneId": "Z08123451ABCDEFGHIJK"',
            "aws route53 list-resource-record-sets --hosted-zone-id Z1D633PJN98FT9",
        ),
        negative=(
            "Z1D633PJN98FT9",
            "hosted zone ZONEAPEX",
        ),
    ),
)

_NETWORK_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="public_ipv4",
        category="network",
        description=(
            "Public IPv4 address; private, loopback, link-local, CGNAT and documentation addresses"
            " stay visible."
        ),
        # Extra ".N" parts are consumed so that "1.2.3.4.5" fails validation as a whole; a port
        # after ':' is not part of the address.
        regex=r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:\.[0-9]+)*",
        prefix="PUBLIC_IP",
        priority=50,
        validator="public_ip",
        positive=(
            "8.8.8.8",
            "52.95.110.1",
            "curl http://3.34.12.7:8080/health",
            "공인 IP 13.125.20.41에서 접속",
        ),
        negative=(
            "10.0.0.1",
            "172.31.5.20 and 192.168.1.10",
            "127.0.0.1, 169.254.169.254, 100.64.0.1",
            "192.0.2.1 and 203.0.113.5 are documentation addresses",
            "version 1.2.3 and 1.2.3.4.5",
            "999.1.2.3",
            "see Section 24.1.1.2 of the standard",
            "id-X25519 OBJECT IDENTIFIER ::= { 1.3.101.110 }",
            "requests>=3.7.4.2",
            "version 4.10.2.1 was released",
        ),
    ),
    LibraryEntry(
        name="public_ipv6",
        category="network",
        description=(
            "Public IPv6 address (global unicast 2000::/3, full or compressed); ::1, fe80:: and "
            "fd00:: stay visible."
        ),
        # Global unicast addresses start with a four-digit group 2xxx or 3xxx, which keeps
        # Python slices ("a[::2]"), times and MAC addresses out. Groups before it are taken
        # along so that "fd12:3456::1" is judged whole (private) rather than from "3456".
        regex=(
            r"[23][0-9A-Fa-f]{3}(?::[0-9A-Fa-f]{1,4}){7}"
            r"|(?:[0-9A-Fa-f]{1,4}:)*[23][0-9A-Fa-f]{3}(?::[0-9A-Fa-f]{1,4})*"
            r"::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?"
        ),
        prefix="PUBLIC_IP",
        priority=50,
        validator="public_ip",
        positive=(
            "2600:1f18:abcd::1",
            "2406:da12:0b4c:8e00:1a2b:3c4d:5e6f:7081",
            "ping6 2a05:d018:1234:5600::10 failed",
            "connect to [2600:1f14:9c0:4d00::25]:443",
        ),
        negative=(
            "::1 and fe80::1 and fd12:3456::1",
            "2001:db8::1",
            "12:30:45 and 00:1a:2b:3c:4d:5e",
            "items[::2]",
        ),
    ),
)

_SECRET_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="pem_private_key",
        category="secret",
        description=(
            "PEM private key block (RSA, EC, OpenSSH, PKCS#8, PGP), from BEGIN to END, or the "
            "visible part of a truncated one."
        ),
        # Lazy, so two keys in one text stay two findings; without an END line the base64
        # lines that follow the header are masked.
        regex=(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"|(?:(?:\s|\\[rn])*[A-Za-z0-9+/=]{16,})*)"
        ),
        prefix="PRIVATE_KEY",
        priority=1,
        positive=(
            "-----BEGIN RSA PRIVATE KEY-----\n"
            "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
            "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
            "-----END RSA PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\\n"
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB\\n"
            "-----END OPENSSH PRIVATE KEY-----",
            "key.pem:\n-----BEGIN PRIVATE KEY-----\n"
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n(truncated)",
        ),
        negative=(
            "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n"
            "-----END CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
            "-----END PUBLIC KEY-----",
            "store the private key in Secrets Manager",
        ),
    ),
    LibraryEntry(
        name="putty_private_key",
        category="secret",
        description=(
            "PuTTY private key file (PuTTY-User-Key-File-2 or -3), from its first line to its last."
        ),
        regex=(
            r"PuTTY-User-Key-File-[0-9]+: [^\r\n]+"
            r"(?:\r?\n(?:[A-Za-z-]+: [^\r\n]*|[A-Za-z0-9+/=]+))*"
        ),
        prefix="PRIVATE_KEY",
        priority=1,
        positive=(
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: eddsa-key-20250101"
            "\nPublic-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAIO1xEXAMPLEpublicKEY0123456789abcdef"
            "\nPrivate-Lines: 1\nAAAAIGxEXAMPLEprivateKEY0123456789abcdefghijklmn"
            "\nPrivate-MAC: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "key.ppk:\nPuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nComment: imported"
            "\nPublic-Lines: 1\nAAAAB3NzaC1yc2EAAAADAQABAAABAQDEXAMPLE0123456789"
            "\nPrivate-Lines: 1\nAAABAQCEXAMPLEprivate0123456789abcdef\nPrivate-MAC: 0a1b2c3d4e5f",
        ),
        negative=("PuTTY-User-Key-File-3:", "save it as a PuTTY-User-Key-File"),
    ),
    LibraryEntry(
        name="github_token",
        category="secret",
        description="GitHub token (ghp_, gho_, ghu_, ghs_, ghr_ or github_pat_).",
        regex=r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}",
        prefix="GITHUB_TOKEN",
        priority=4,
        positive=(
            "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
            "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
        ),
        negative=(
            "ghp_short",
            "the ghp_ prefix marks a personal access token",
            "github_pat_",
        ),
    ),
    LibraryEntry(
        name="gitlab_token",
        category="secret",
        description="GitLab personal, project or group access token (glpat-).",
        regex=r"glpat-[A-Za-z0-9_-]{20,}",
        prefix="GITLAB_TOKEN",
        priority=4,
        positive=(
            "glpat-xY7zA1bC2dE3fG4hI5jK",
            "PRIVATE-TOKEN: glpat-Ab3dEf6hIj9kLm2nOp5q",
        ),
        negative=(
            "glpat-",
            "glpat-short",
        ),
    ),
    LibraryEntry(
        name="npm_token",
        category="secret",
        description="npm access token (npm_ followed by 36 letters and digits).",
        regex=r"npm_[A-Za-z0-9]{36}",
        prefix="NPM_TOKEN",
        priority=4,
        positive=(
            "npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
            ".npmrc: //registry.npmjs.org/:_authToken=npm_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2",
        ),
        negative=(
            "npm_config_cache",
            "npm_a1B2c3D4",
        ),
    ),
    LibraryEntry(
        name="slack_token",
        category="secret",
        description=(
            "Slack bot, user, app or configuration token (xoxb-, xoxp-, xoxa-, xoxr-, xoxs-, "
            "xoxe-, xapp-)."
        ),
        regex=r"(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]{10,}[A-Za-z0-9]",
        prefix="SLACK_TOKEN",
        priority=4,
        positive=(
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "xoxp-1234567890-1234567890-1234567890123-0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "xapp-1-A0123456789-1234567890123-0a1b2c3d4e5f60718293",
        ),
        negative=(
            "xoxb-",
            "the xoxb- prefix is for bot tokens",
        ),
    ),
    LibraryEntry(
        name="slack_webhook_url",
        category="secret",
        description="Slack incoming webhook or workflow trigger URL.",
        regex=r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]*[A-Za-z0-9]",
        prefix="SLACK_WEBHOOK",
        priority=4,
        positive=(
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "webhook_url: hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/abcdEFGHijklMNOPqrstUVWX",
        ),
        negative=(
            "https://hooks.slack.com/",
            "https://api.slack.com/messaging/webhooks",
        ),
    ),
    LibraryEntry(
        name="stripe_secret_key",
        category="secret",
        description=(
            "Stripe secret, restricted or webhook signing key (sk_/rk_ live or test, whsec_); "
            "publishable pk_ keys are public and stay visible."
        ),
        regex=r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,}",
        prefix="STRIPE_KEY",
        priority=4,
        positive=(
            "sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx",
            "rk_live_51H8xYzAbCdEfGhIjKlMnOpQr",
            "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
            "whsec_5f1a2b3c4d5e6f708192a3b4c5d6e7f8",
        ),
        negative=(
            "pk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx",
            "sk_live_",
        ),
    ),
    LibraryEntry(
        name="jwt",
        category="secret",
        description="JSON Web Token (three base64url parts, the first two starting with eyJ).",
        regex=r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
        prefix="JWT",
        priority=5,
        positive=(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
            ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "Authorization: Bearer eyJraWQiOiJrMSIsImFsZyI6IlJTMjU2In0"
            ".eyJpc3MiOiJodHRwczovL2V4YW1wbGUifQ.c2ln",
        ),
        negative=(
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.notapayload.sig",
        ),
    ),
    LibraryEntry(
        name="google_api_key",
        category="secret",
        description="Google API key (AIza followed by 35 characters).",
        regex=r"AIza[0-9A-Za-z_-]{35}",
        prefix="GOOGLE_API_KEY",
        priority=4,
        positive=(
            "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
            "GET /maps/api/geocode/json?key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        ),
        negative=(
            "AIzaShort",
            "AIza",
        ),
    ),
    LibraryEntry(
        name="anthropic_api_key",
        category="secret",
        description="Anthropic API or admin key (sk-ant-).",
        regex=r"sk-ant-[A-Za-z0-9_-]{20,}",
        prefix="ANTHROPIC_API_KEY",
        priority=4,
        positive=(
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKlMnOpQrStUvWxYz01234567890-AbCdEfAA",
            "export ANTHROPIC_API_KEY=sk-ant-admin01-Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2",
        ),
        negative=(
            "sk-ant-",
            "task-ant-api03-AbCdEfGhIjKlMnOpQrStUv",
        ),
    ),
    LibraryEntry(
        name="openai_api_key",
        category="secret",
        description=(
            "OpenAI API key (sk-proj-, sk-svcacct-, sk-admin-, or a legacy sk- key of 48 "
            "characters)."
        ),
        regex=r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|sk-[A-Za-z0-9]{48}",
        prefix="OPENAI_API_KEY",
        priority=4,
        positive=(
            "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCd",
            "sk-1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R9s0T1u2V3w4X",
        ),
        negative=(
            "sk-proj-",
            "sk-1a2B3c4D5e6F7g8H9i0J",
        ),
    ),
    LibraryEntry(
        name="url_credentials",
        category="secret",
        description=(
            "URL with a user name and password (postgres://user:pass@host): the user, the "
            "password and the host are masked each on its own; scheme, port and path stay "
            "readable."
        ),
        # The host is a part too: a shorter match (to the '@') would lose to an e-mail address
        # read across "password@host". A host that is not a name (an IPv6 address in brackets)
        # leaves the match at the '@', user and password still masked.
        regex=(
            r"[A-Za-z][A-Za-z0-9+.-]*://(?P<URL_USER>[^\s:/@\"'<>]*)"
            r":(?P<URL_PASSWORD>[^\s@\"'<>]+)@(?P<URL_HOST>[A-Za-z0-9.-]*[A-Za-z0-9])?"
        ),
        prefix="URL_CREDENTIALS",
        priority=4,
        positive=(
            "postgres://admin:S3cr3t!@orders-db.c9akciq32xyz.us-east-1.rds.amazonaws.com",
            "export DATABASE_URL=postgresql://app:p/ss:w0rd@10.0.1.5:5432/app",
            "REDIS_URL = redis://:authtoken123@cache.internal:6379/0",
            "broker amqps://mq-user:Xk9#mQ2z@b-1234.mq.us-east-1.amazonaws.com:5671",
            "postgres://app:Wq8#zL2v@[fd00::12]:5432/app",
        ),
        negative=(
            "https://example.com:8443/path",
            "ssh://git@github.com/org/repo.git",
            "postgres://localhost:5432/app",
        ),
    ),
    LibraryEntry(
        name="password_assignment",
        category="secret",
        description=(
            "Unquoted value given to a setting whose name ends in password, passwd or "
            "passphrase, anywhere in a line (DB_PASSWORD=..., password=... in a connection "
            "string, --master-user-password ...), with the name; the value must contain a digit "
            "or a symbol, so 'password: true' and '${DB_PASSWORD}' stay visible."
        ),
        # The setting name is masked too: without lookbehind the value alone cannot be cut out,
        # and the closing quote is left out so JSON reads "PASSWORD_001".
        # Unquoted values only: a quoted value is taken whole by secret_named_quoted_value,
        # where this regex would stop at the first ';' or ',' inside it.
        regex=(
            r"(?:[A-Za-z0-9_.-]*(?i:password|passwd|passphrase)|비밀번호)"
            r"[\"']?[ \t]*[:=][ \t]*"
            r"[^\s\"'<>,;&]*[0-9@#%^&*+=?~][^\s\"'<>,;&]*"
            r"|--[a-z-]*password[ \t]+[^\s\"'<>,;&]*[0-9@#%^&*+=?~][^\s\"'<>,;&]*"
        ),
        prefix="PASSWORD",
        priority=60,
        validator="secret_not_code",
        positive=(
            "DB_PASSWORD=hunter2",
            "aws rds create-db-instance --master-user-password Xk9mQ2zA7",
            "비밀번호: qwer1234!",
            "psql 'host=db user=app password=Sup3r#Secret'",
        ),
        negative=(
            "require_password: true",
            "password: ${DB_PASSWORD}",
            "MinimumPasswordLength: 14",
            "reset the password in the console",
            '_("Change password: %s") % user',
            "password = get_random_string(30)",
            "password = secrets.token_urlsafe(32)",
            'print("password: {}".format(masked))',
        ),
    ),
)

# A setting whose name ends in one of these holds a secret, whatever the value looks like:
# "SecretAccessKey", "DB_PASSWORD", "client_secret", "SessionToken", "x-api-key". Names that
# only contain one ("max_tokens", "token_type", "tokenizer", "secret_name") do not.
_HIDDEN_SETTING_WORDS = (
    r"(?:pass(?:word|wd|phrase)|secret(?:[_-]?access)?[_-]?key|client[_-]?secret|secret"
    r"|(?:access|session|auth|bearer|refresh|id|api|security)[_-]?token|token"
    r"|api[_-]?key|access[_-]?key|private[_-]?key|authorization|cookie|비밀번호)"
)
_HIDDEN_SETTING_NAME = r"[A-Za-z0-9_.-]*" + _HIDDEN_SETTING_WORDS

_SECRET_KEY_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="secret_named_quoted_value",
        category="secret",
        description=(
            "Whole double-quoted value of a setting whose name ends in password, secret, "
            'token, api key, access key or private key ("SecretAccessKey": "...", '
            'DB_PASSWORD="...", password: "..."), whatever its shape; templates and format '
            "placeholders stay visible."
        ),
        regex=r'(?:[^"\\\r\n]|\\.)+',
        prefix="SECRET",
        priority=65,
        context_regex=r"(?i:" + _HIDDEN_SETTING_NAME + r'["' + "'" + r']?[ \t]*[:=][ \t]*")',
        context_window=0,
        validator="secret_value",
        positive=(
            '"MasterUserPassword": "mypassword"',
            '"OldPassword": "3s0K_;xh4~8XXI"',
            '"client_secret": "6da8e2b1c4f0a9d7e3b5c1f8a2d4e6b0"',
            'DB_PASSWORD="correct horse battery staple"',
            '"SessionToken": "FwoGZXIvYXdzEBYaDHhBTEXAMPLE"',
        ),
        negative=(
            '"max_tokens": "1024"',
            '"token_type": "Bearer"',
            '"password": "{{ vault_db_password }}"',
            '"password": "${DB_PASSWORD}"',
            '"password": "%s"',
            '"password": ""',
        ),
    ),
    LibraryEntry(
        name="secret_named_single_quoted_value",
        category="secret",
        description=(
            "Whole single-quoted value of a setting whose name ends in password, secret, "
            "token, api key, access key or private key (password: '...', "
            "export API_KEY='...'); templates and format placeholders stay visible."
        ),
        regex=r"[^'\r\n]+",
        prefix="SECRET",
        priority=65,
        context_regex=r"(?i:" + _HIDDEN_SETTING_NAME + r"[\"']?[ \t]*[:=][ \t]*')",
        context_window=0,
        validator="secret_value",
        positive=(
            "password: 'mypassword'",
            "export API_KEY='Abc1-def2-ghi3'",
            "{'aws_secret_access_key': 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY'}",
        ),
        negative=(
            "password: '{{ db_password }}'",
            "x = {'token_type': 'Bearer'}",
        ),
    ),
    LibraryEntry(
        name="secret_named_line_value",
        category="secret",
        description=(
            "Rest of the line after a setting whose name ends in password, secret, token, api "
            "key, access key or private key, at the start of a line (env files, YAML, INI, "
            "HTTP headers such as X-Api-Key); code, variables, templates, booleans and YAML "
            "tags stay visible."
        ),
        regex=r"[^\s\"'][^\r\n]*[^\s]|[^\s\"']",
        prefix="SECRET",
        priority=66,
        context_regex=(
            r"(?im:^[ \t]*(?:export[ \t]+|-[ \t]+)?[\"']?"
            + _HIDDEN_SETTING_NAME
            + r"[\"']?[ \t]*[:=][ \t]*)"
        ),
        context_window=0,
        validator="secret_value",
        positive=(
            "DB_PASSWORD=correcthorsebatterystaple",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
            "  password: correct horse battery staple",
            "X-Api-Key: 3f9a1c7e5b2d4f6a8c0e",
            "session_token = FwoGZXIvYXdzEBYaDHhBTEXAMPLE",
        ),
        negative=(
            "password: ${DB_PASSWORD}",
            "password: !Ref DbPassword",
            "password: true",
            "password = get_password(user)",
            "password = os.environ['DB_PASSWORD']",
            "token: null",
            "the password: it must be long",
            "max_tokens: 4096",
        ),
    ),
    LibraryEntry(
        name="secret_named_argument",
        category="secret",
        description=(
            "Value of a command-line flag or a query or connection-string field whose name "
            "ends in password, secret, token, api key or access key (--password x, "
            "--secret-access-key=x, ?token=x&..., ;Password=x;); variables stay visible."
        ),
        regex=r"[^\s\"'&;|<>]+",
        prefix="SECRET",
        priority=66,
        context_regex=(
            r"(?i:(?:^|[\s\"'])--?[a-z0-9-]*" + _HIDDEN_SETTING_WORDS + r"(?:[ \t]+|=)"
            r"|[?&;][ \t]*(?:pwd|" + _HIDDEN_SETTING_NAME + r")[ \t]*=)"
        ),
        context_window=0,
        validator="secret_value",
        positive=(
            "aws configure set --secret-access-key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
            "mysql -u admin --password Sup3rSecret -h db",
            "https://api.example.com/v1/items?token=abc123def&page=2",
            "Server=db.internal;Database=app;User Id=sa;Password=Sup3rSecret;",
        ),
        negative=(
            "--password-file /run/secrets/db",
            "--password $DB_PASSWORD",
            "--must-change-password=false",
            "?token=&page=2",
            "the breached-password check is skipped",
            ".toggle-password label {",
        ),
    ),
)

_PERSONAL_ENTRIES: tuple[LibraryEntry, ...] = (
    LibraryEntry(
        name="email_address",
        category="personal",
        description="E-mail address.",
        regex=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        prefix="EMAIL",
        priority=50,
        positive=(
            "jane.doe@example.com",
            "ops+alerts@acme-corp.co.kr",
            "담당자 kim.minsu@example.co.kr에게 연락하세요",
        ),
        negative=(
            "@dataclass",
            "docker pull nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66c",
            "pip install requests==2.32.3 and npm i lodash@4.17.21",
        ),
    ),
    LibraryEntry(
        name="payment_card_number",
        category="personal",
        description=(
            "Payment card number (13-19 digits, optionally grouped) that passes the Luhn check."
        ),
        regex=r"[2-6][0-9]{3}(?:[ -]?[0-9]{4}){3}|3[47][0-9]{2}[ -]?[0-9]{6}[ -]?[0-9]{5}",
        prefix="CARD_NUMBER",
        priority=50,
        validator="luhn",
        positive=(
            "4111 1111 1111 1111",
            "5555-5555-5555-4444",
            "378282246310005",
            "card 4012888888881881 was declined",
        ),
        negative=(
            "4111 1111 1111 1112",
            "1234567890123456",
            "5555555555554445",
        ),
    ),
)

DEFAULT_PATTERNS: tuple[LibraryEntry, ...] = (
    *_RESOURCE_IDS,
    *_ARN_ENTRIES,
    *_ACCOUNT_ENTRIES,
    *_CREDENTIAL_ENTRIES,
    *_STORAGE_ENTRIES,
    *_ENDPOINT_ENTRIES,
    *_AWS_RESOURCE_CONTEXT_ENTRIES,
    *_NETWORK_ENTRIES,
    *_SECRET_ENTRIES,
    *_SECRET_KEY_ENTRIES,
    *_PERSONAL_ENTRIES,
)
