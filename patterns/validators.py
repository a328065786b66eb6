"""Validators: what a rule's regex alone cannot decide about a match.

Pure: the standard library and RE2. A validator looks at the value (public or private
address, Luhn checksum, entropy) and, where the text around it decides, at the bytes right
before and after it: a dotted quad after "version" is a version, a bucket-shaped word
followed by "(" is a function, a password setting whose value is "%s" or a function call is
code. Each check returns True to keep the match.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import re2

# Bytes on each side of a match that a validator's surroundings check sees.
SURROUNDINGS = 64


@dataclass(frozen=True)
class Validator:
    """A check of the value, and optionally of the bytes before and after it."""

    value_ok: Callable[[str], bool]
    # The value, the bytes before it and the bytes after it.
    surroundings_ok: Callable[[str, bytes, bytes], bool] | None = None

    def accepts(self, value: str, before: bytes, after: bytes) -> bool:
        if not self.value_ok(value):
            return False
        return self.surroundings_ok is None or self.surroundings_ok(value, before, after)


# --- addresses -----------------------------------------------------------------------------


def _is_public_ip(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    # is_global already excludes private, loopback, link-local, CGNAT, benchmarking and
    # documentation ranges; multicast groups identify nothing of a customer's.
    return address.is_global and not address.is_multicast


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# A dotted quad right after one of these is a version, a section or an OID, not an address:
# "version 4.10.2.1", "Section 24.1.1.2", "requests>=3.7.4.2", "OBJECT IDENTIFIER ::= {
# 1.3.101.110 }". Words must start a word ("server 52.95.110.1" is an address).
_NOT_AN_ADDRESS_BEFORE = re2.compile(
    (
        r"(?i:\b(?:version|ver|release|rel|build|firmware|section|sect|sec|chapter|clause|"
        r"paragraph|para|figure|appendix|rfc|oid|object identifier)\.?[ \t]*[:=#-]?[ \t]*"
        r"|§[ \t]*|[<>~^!]=?[ \t]*|==[ \t]*|::=[ \t]*\{[ \t]*)$"
    ).encode()
)


def _not_a_version_or_section(value: str, before: bytes, after: bytes) -> bool:
    return not _NOT_AN_ADDRESS_BEFORE.search(before)


# --- bucket names ------------------------------------------------------------------------

# A name ending in one of these is a file ("bucket.yaml", "reports/2024.csv").
_FILE_EXTENSIONS = frozenset(
    {
        "yaml",
        "yml",
        "json",
        "jsonl",
        "tf",
        "tfvars",
        "hcl",
        "py",
        "js",
        "mjs",
        "ts",
        "tsx",
        "jsx",
        "go",
        "rb",
        "java",
        "kt",
        "rs",
        "sh",
        "bash",
        "ps1",
        "txt",
        "csv",
        "tsv",
        "md",
        "rst",
        "cfg",
        "conf",
        "ini",
        "toml",
        "xml",
        "html",
        "htm",
        "log",
        "gz",
        "zip",
        "tar",
        "tgz",
        "bz2",
        "jar",
        "lock",
        "env",
        "pem",
        "crt",
        "key",
        "pdf",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "ipynb",
        "sql",
        "parquet",
        "avro",
        "orc",
    }
)
_CODE_OWNERS = ("self.", "this.", "cls.")


# Type names that follow "bucket_name:" in annotated code.
_TYPE_NAMES = frozenset(
    [
        "str",
        "bytes",
        "int",
        "float",
        "bool",
        "dict",
        "list",
        "tuple",
        "set",
        "object",
        "any",
        "none",
        "optional",
        "mapping",
    ]
)
# Words of prose that a "bucket:" label may precede ("falls in one bucket: the session").
_PROSE_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "is",
        "are",
        "was",
        "were",
        "be",
        "in",
        "on",
        "of",
        "for",
        "to",
        "and",
        "or",
        "not",
        "per",
        "each",
        "this",
        "that",
        "it",
        "its",
    ]
)
# Public service hosts named near the word bucket ("storage.googleapis.com/b/{bucket}").
_SERVICE_DOMAINS = (".googleapis.com", ".amazonaws.com", ".windows.net", ".cloudflarestorage.com")
# Two lower-case words joined by a dot: an attribute ("parsed.data", "module.instance").
_ATTRIBUTE = re.compile(r"[a-z_]+\.[a-z_]+\Z")


def _may_name_a_bucket(value: str) -> bool:
    if value in _TYPE_NAMES or value in _PROSE_WORDS or value.isdigit():
        return False
    if value.startswith(_CODE_OWNERS) or _ATTRIBUTE.match(value):
        return False  # an attribute (self.bucket, parsed.data) or a type (bucket_name: str)
    if value.endswith(_SERVICE_DOMAINS):
        return False
    _, dot, last = value.rpartition(".")
    # A file ("bucket.yaml"), or an attribute holding one ("props.bucket").
    return not (dot and (last.lower() in _FILE_EXTENSIONS or last in ("bucket", "buckets")))


# A key that only ends in "bucket", glued to the name by ":" (npm's "bitbucket:user/repo"),
# or Bitbucket's own name as a key (BITBUCKET = "...").
_GLUED_LONGER_KEY = re2.compile(rb"(?i:[a-z0-9]bucket:|bitbucket[\"']?[ \t]*[:=][ \t]*[\"']?)$")


def _stands_where_a_name_stands(value: str, before: bytes, after: bytes) -> bool:
    """Not code: a name followed by "(" is called, one followed by "=" is assigned to, one
    followed by ":" and no space is a scheme ("bitbucket:user")."""
    if after.startswith((b"(", b"[", b".")) and not after.startswith(b". "):
        return False  # called, indexed or an object: bucket(...), kwargs[key], self.name
    rest = after.lstrip(b" \t")
    if rest.startswith(b"=") and not rest.startswith(b"=="):
        return False
    if after.startswith(b":") and after[1:2] not in (b"", b" ", b"\t", b"\n", b"\r"):
        return False
    if after.startswith((b'":', b"':", b'" :', b"' :")):
        return False  # a key of its own: {"bitbucket": ...}
    return not _GLUED_LONGER_KEY.search(before)


# --- endpoints ---------------------------------------------------------------------------

# Inside the value of a "Service" key (IAM policies and trust policies, JSON or YAML, one
# principal or a list of them): what stands there is a service principal, AWS's own
# ("logging.s3.amazonaws.com"), not a customer's bucket or endpoint.
_SERVICE_PRINCIPAL_BEFORE = re2.compile(
    rb"(?i:\bservice[\"']?[ \t]*:[ \t]*\[?"
    rb"(?:[ \t\r\n]*-?[ \t]*[\"']?[a-z0-9.-]+[\"']?[ \t]*,?)*[ \t\r\n]*-?[ \t]*[\"']?)$"
)


def _not_a_service_principal(value: str, before: bytes, after: bytes) -> bool:
    return not _SERVICE_PRINCIPAL_BEFORE.search(before)


def _any(value: str) -> bool:
    return True


# --- secrets under a key ---------------------------------------------------------------------

# Where the value of "password: x", "DB_PASSWORD=x" or "--password x" starts.
_AFTER_KEY = re.compile(r"[ \t]*[:=\s][ \t]*[\"']?")
# Values that are code, not secrets: format placeholders ("%s", "%(pw)s", "{0}", "{}"),
# lower-case function calls ("get_random_string(30)", "secrets.token_hex(16)") and
# variable references ("$PASSWORD", "${DB_PASSWORD}").
_CODE_VALUE = re.compile(
    r"%[-#0 +]*[0-9.]*[sdifrxX]|%\([A-Za-z_]\w*\)[sdifr]|\{[\w.:!]*\}"
    r"|[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*\(.*"
    r"|\$\{?[A-Za-z_]\w*\}?"
)


# Values under a secret-named key that are not secrets, quoted or not: variables and
# templates ("$PW", "${PW}", "$(cat f)", "{{ pw }}", "<%= pw %>", "%s", "%(pw)s", "{}"),
# YAML tags ("!Ref DbPassword"), flags, empty and redaction marks.
_TEMPLATE_OR_MARK = re.compile(
    r"\$|\{\{|\{%|<%|!|\s"
    r"|%[-#0 +]*[0-9.]*[sdifrxX]\Z|\{[\w.:!]*\}\Z"
    r"|(?i:true|false|yes|no|on|off|null|none|nil|undefined|required|optional)\W*\Z"
    r"|\*+\Z|(?i:x)+\Z|<[^>]*>\Z|(?i:your[-_ ]|<your)"
    r"|.*(?:%\([A-Za-z_]\w*\)[sd]|%s|\$\{|\{\{)"
    r"|[A-Z][A-Z0-9]*_[A-Z0-9_]+\Z|os\.environ"
)
# A value that names a secret rather than holds one ("Redis password", "the user's current
# password", "profile-username-password", "SubscriptionAuthorization"), or prose.
_SECRET_WORD = re.compile(
    r"(?i:pass(?:word|wd|phrase)|secret|token|api[_ -]?key|authorization|credential)"
)
_PROSE = re.compile(
    r"(?i:.*\s(?:the|a|an|from|to|of|for|is|your|this|when|if|with)\s)"
    r"|(?i:(?:the|a|an|optional|str|string)\s)"
)
# Words joined as a name: "profile-username-password", "very_secret_pass", "SecretStr".
_JOINED_WORDS = re.compile(r"[A-Za-z]+(?:[-_ ][A-Za-z]+)+|[A-Z][a-z]+(?:[A-Z][a-z]+)+")


def _describes_a_secret(value: str) -> bool:
    """Prose, or a name made of words one of which names a secret ("Redis password",
    "profile-username-password", "SubscriptionAuthorization")."""
    if _PROSE.match(value + " "):
        return True
    return bool(_SECRET_WORD.search(value)) and bool(_JOINED_WORDS.fullmatch(value))


# Unquoted, also code: calls and indexing ("get_pw()", "Token.objects.create(...)",
# "os.environ['PW']"), attributes ("self.password", "settings.X"), constants ("API_KEY"),
# what code puts after a name (a trailing "," or "("), identifiers ("raw_password",
# "auth_header"), type annotations ("str | None", "Final"), string prefixes (f"{key}"), and
# a flag ("--password-file").
_CODE = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_]\w*)*\s*[(\[]|[A-Z][A-Z0-9]*_[A-Z0-9_]+\Z"
    r"|(?:self|this|cls|os|process|settings|config|args|env|params|props)\.[A-Za-z_]"
    r"|-|.*[,;(\[{)]\Z|.*(?: and | or | not | if | else |==|!=|&&|\|\|)"
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\Z"
    r"|[a-z_.]*(?:pass|secret|token|key)[a-z_.]*\Z"
    r"|(?:str|bytes|int|bool|Optional|Union|Any|Final|ClassVar|SecretStr|SecretBytes)"
    r"(?:\Z|\s*[\[|=])"
    r"|[rbfu]{1,2}[\"']|[a-z]+(?:_[a-z]+)+\Z"
)
_NUMBER = re.compile(r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?")
# Twenty characters or more of base64 in both cases: a token without a digit.
_LONG_RANDOM = re.compile(r"(?=.*[a-z])(?=.*[A-Z])[A-Za-z+/=]{20,}")
# The setting's name, right before its value (and its separator and quote).
_NAME_BEFORE = re.compile(rb"([A-Za-z0-9_.-]+)([\"']?)[ \t]*(?:[:=][ \t]*|[ \t]+)([\"']?)$")
_PASSWORD_NAME = re.compile("(?i:pass(?:word|wd|phrase)|비밀번호)$".encode())


def _is_secret_value(value: str) -> bool:
    return bool(value) and not _TEMPLATE_OR_MARK.match(value)


def _secret_for_its_name(value: str, before: bytes, after: bytes) -> bool:
    """Unquoted, not code. Under a token, key or secret name, random: no white space, and a
    digit or twenty characters (a lexer's token "is not", a URL's "set-password", a type
    "SecretStr" are not secrets). Under a password name, any words."""
    name = _NAME_BEFORE.search(before)
    key_quoted = name is not None and bool(name.group(2))
    quote = name.group(3) if name is not None else b""
    if quote and not after.startswith(quote):
        return False  # no closing quote: the quote was the end of another string
    if not quote and (key_quoted or _CODE.match(value)):
        # {"password": 2376} and {'token': token}: a JSON literal or code, not a string
        return False
    password = name is not None and bool(_PASSWORD_NAME.search(name.group(1)))
    if password and quote:
        return True  # a string literal: "MyPassword" may well be one
    if _describes_a_secret(value):
        return False
    if password:
        return True
    if any(ch.isspace() for ch in value) or _NUMBER.fullmatch(value):
        return False  # "cost_per_token: 0.00000015" is a number, not a token
    return any(ch.isdigit() for ch in value) or bool(_LONG_RANDOM.fullmatch(value))


_QUOTED_KEY = re.compile(r"[^\"':=]*[\"'][ \t]*[:=][ \t]*[^\"'\s]")


def _is_secret_not_code(value: str) -> bool:
    after_key = _AFTER_KEY.search(value)
    secret = value[after_key.end() :] if after_key else value
    if secret.startswith("=") or "%s" in secret or "%(" in secret:
        return False  # a comparison ("password == x") or a format string
    if _QUOTED_KEY.match(value):
        return False  # {"password": 2376}: a quoted key's unquoted value is not a string
    return not _CODE_VALUE.fullmatch(secret)


# --- random-looking values -------------------------------------------------------------------


def _passes_luhn(value: str) -> bool:
    digits = [int(ch) for ch in value if ch.isdigit()]
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution."""
    if not value:
        return 0.0
    length = len(value)
    return -sum(n / length * math.log2(n / length) for n in Counter(value).values())


def _is_random_looking(value: str) -> bool:
    return len(value) >= 16 and shannon_entropy(value) >= 3.0


def _is_aws_secret(value: str) -> bool:
    # Secret access keys are base64 noise with both cases; git SHAs and hex digests
    # (one case, 16 symbols) are not, and must pass unchanged.
    has_upper = any(ch.isupper() for ch in value)
    has_lower = any(ch.islower() for ch in value)
    return has_upper and has_lower and shannon_entropy(value) >= 3.5


VALIDATORS: Mapping[str, Validator] = {
    "public_ip": Validator(_is_public_ip, _not_a_version_or_section),
    "any_ip": Validator(_is_ip),
    "luhn": Validator(_passes_luhn),
    "entropy": Validator(_is_random_looking),
    "aws_secret": Validator(_is_aws_secret),
    "bucket_name": Validator(_may_name_a_bucket, _stands_where_a_name_stands),
    "customer_endpoint": Validator(_any, _not_a_service_principal),
    "secret_not_code": Validator(_is_secret_not_code),
    "secret_value": Validator(_is_secret_value, _secret_for_its_name),
}
