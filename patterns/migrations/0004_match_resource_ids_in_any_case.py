"""Match AWS resource IDs and KMS key IDs in any case: a model reads "I-0A1B..." as "i-0a1b...".

Only rows that still hold the regex the library shipped are changed, with their description
and examples; a pattern an admin edited is left as it is. The reverse puts back the shipped
values in rows that still hold the new regex.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import migrations

# The EC2-style entries as migration 0002 seeded them: name, ID prefix, whether the short
# 8-hex form is accepted. Frozen here: the library may change again in later migrations.
RESOURCE_IDS: tuple[tuple[str, str, bool], ...] = (
    ("aws_ec2_instance_id", "i", True),
    ("aws_ec2_reservation_id", "r", True),
    ("aws_ami_id", "ami", True),
    ("aws_ebs_volume_id", "vol", True),
    ("aws_ebs_snapshot_id", "snap", True),
    ("aws_security_group_id", "sg", True),
    ("aws_security_group_rule_id", "sgr", False),
    ("aws_vpc_id", "vpc", True),
    ("aws_subnet_id", "subnet", True),
    ("aws_internet_gateway_id", "igw", True),
    ("aws_egress_only_internet_gateway_id", "eigw", False),
    ("aws_nat_gateway_id", "nat", True),
    ("aws_route_table_id", "rtb", True),
    ("aws_network_acl_id", "acl", True),
    ("aws_network_interface_id", "eni", True),
    ("aws_network_interface_attachment_id", "eni-attach", True),
    ("aws_efs_file_system_id", "fs", True),
    ("aws_efs_access_point_id", "fsap", False),
    ("aws_transit_gateway_id", "tgw", False),
    ("aws_transit_gateway_attachment_id", "tgw-attach", False),
    ("aws_transit_gateway_route_table_id", "tgw-rtb", False),
    ("aws_vpc_endpoint_id", "vpce", True),
    ("aws_vpc_endpoint_service_id", "vpce-svc", False),
    ("aws_eip_allocation_id", "eipalloc", True),
    ("aws_eip_association_id", "eipassoc", True),
    ("aws_launch_template_id", "lt", False),
    ("aws_vpc_peering_connection_id", "pcx", True),
    ("aws_customer_gateway_id", "cgw", True),
    ("aws_virtual_private_gateway_id", "vgw", True),
    ("aws_vpn_connection_id", "vpn", True),
    ("aws_dhcp_options_id", "dopt", True),
    ("aws_key_pair_id", "key", False),
    ("aws_prefix_list_id", "pl", True),
)
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass(frozen=True)
class Change:
    """One shipped pattern, before and after; examples are lines of the example fields."""

    name: str
    old_regex: str
    new_regex: str
    old_description_end: str
    new_description_end: str
    old_negative: str
    new_negative: str
    new_positive: str


def _resource_id_change(name: str, id_prefix: str, short_form: bool) -> Change:
    hex_part = "(?:[0-9a-f]{17}|[0-9a-f]{8})" if short_form else "[0-9a-f]{17}"
    forms = "17 hex digits, or 8 for older resources" if short_form else "17 hex digits"
    return Change(
        name=name,
        old_regex=f"{id_prefix}-{hex_part}",
        new_regex=f"(?i:{id_prefix}-{hex_part})",
        old_description_end=f"followed by {forms}).",
        new_description_end=f"followed by {forms}; any case).",
        old_negative=f"{id_prefix.upper()}-0123456789ABCDEF0",
        new_negative=f"{id_prefix.upper()}-0123456789ABCDEFG",
        new_positive=f"{id_prefix.upper()}-0123456789ABCDEF0",
    )


CHANGES: tuple[Change, ...] = (
    *(_resource_id_change(*entry) for entry in RESOURCE_IDS),
    Change(
        name="aws_kms_key_id",
        old_regex=_UUID,
        new_regex=f"(?i:{_UUID})",
        old_description_end="KMS key ID (a UUID), masked only near kms, key id, KeyId or 키; "
        "other UUIDs stay visible.",
        new_description_end="KMS key ID (a UUID, any case), masked only near kms, key id, KeyId "
        "or 키; other UUIDs stay visible.",
        old_negative="",
        new_negative="",
        new_positive="KMS KEY 1234ABCD-12AB-34CD-56EF-1234567890AB",
    ),
    Change(
        name="aws_kms_multi_region_key_id",
        old_regex="mrk-[0-9a-f]{32}",
        new_regex="(?i:mrk-[0-9a-f]{32})",
        old_description_end="followed by 32 hex digits).",
        new_description_end="followed by 32 hex digits; any case).",
        old_negative="mrk-1234ABCD12AB34CD56EF1234567890AB",
        new_negative="mrk-1234abcd12ab34cd56ef1234567890ag",
        new_positive="MRK-1234ABCD12AB34CD56EF1234567890AB",
    ),
)


def _lines(text: str) -> list[str]:
    return text.split("\n") if text else []


def _replace_line(text: str, old: str, new: str) -> str:
    return "\n".join(new if line == old else line for line in _lines(text)) if old else text


def _swap_end(text: str, old_end: str, new_end: str) -> str:
    return text[: len(text) - len(old_end)] + new_end if text.endswith(old_end) else text


def _forward(row: Any, change: Change) -> None:
    row.regex = change.new_regex
    row.description = _swap_end(
        row.description, change.old_description_end, change.new_description_end
    )
    # The upper-case ID was a negative example; it is now a positive one.
    row.negative_examples = _replace_line(
        row.negative_examples, change.old_negative, change.new_negative
    )
    if change.new_positive not in _lines(row.positive_examples):
        row.positive_examples = "\n".join([*_lines(row.positive_examples), change.new_positive])


def _backward(row: Any, change: Change) -> None:
    row.regex = change.old_regex
    row.description = _swap_end(
        row.description, change.new_description_end, change.old_description_end
    )
    row.negative_examples = _replace_line(
        row.negative_examples, change.new_negative, change.old_negative
    )
    row.positive_examples = "\n".join(
        line for line in _lines(row.positive_examples) if line != change.new_positive
    )


def match_any_case(apps: Any, schema_editor: Any) -> None:
    pattern_model = apps.get_model("patterns", "Pattern")
    for change in CHANGES:
        for row in pattern_model.objects.filter(name=change.name, regex=change.old_regex):
            _forward(row, change)
            row.save()


def match_lower_case_only(apps: Any, schema_editor: Any) -> None:
    pattern_model = apps.get_model("patterns", "Pattern")
    for change in CHANGES:
        for row in pattern_model.objects.filter(name=change.name, regex=change.new_regex):
            _backward(row, change)
            row.save()


class Migration(migrations.Migration):
    dependencies = [("patterns", "0003_add_try_rules_permission")]

    operations = [migrations.RunPython(match_any_case, match_lower_case_only)]
