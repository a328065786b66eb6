"""An operator's afternoon in a real browser: rules, a new key, its traffic on the dashboard."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import anthropic
import pytest
from django.contrib.auth.models import User
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from patterns.models import Pattern
from proxy.keys import key_digest, key_prefix
from proxy.models import ApiKey, AuditRecord
from tests.support.browser import WAIT_SECONDS
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import wait_for_audit

pytestmark = [
    pytest.mark.redis,
    pytest.mark.slow,
]

OPERATOR = "operator"
PASSWORD = "browser-test-password"
KEY_NAME = "browser-e2e"
EC2_ID = "i-1234567890abcdef0"
OTHER_EC2_ID = "i-abcdef1234567890a"
VPC_ID = "vpc-0fe038a2fa7fbaff2"
ACCESS_KEY_ID = "AKIA1234567890ABCDEF"
NEW_DESCRIPTION = "VPC ID (vpc- and 8 or 17 hex digits); reviewed in the browser test."


@dataclass(frozen=True)
class Ui:
    """The browser at the live server, with the waits and screenshots every step needs."""

    driver: webdriver.Chrome
    base_url: str
    artifacts: Path

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def wait_for(self, css: str) -> WebElement:
        condition = ec.visibility_of_element_located((By.CSS_SELECTOR, css))
        return WebDriverWait(self.driver, WAIT_SECONDS).until(condition)

    def click(self, css: str) -> None:
        """Click a link or button and wait until the browser has left the page it was on."""
        page = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.CSS_SELECTOR, css).click()
        WebDriverWait(self.driver, WAIT_SECONDS).until(ec.staleness_of(page))

    def texts(self, css: str) -> list[str]:
        return [element.text for element in self.driver.find_elements(By.CSS_SELECTOR, css)]

    def assert_assets_loaded(self) -> None:
        """Every stylesheet, script and image of the page came back 200: the page looks right."""
        statuses = self.driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".map(entry => [entry.name, entry.responseStatus]);"
        )
        assert statuses, "the page loaded no assets"
        assert [url for url, status in statuses if status != 200] == []

    def screenshot(self, name: str) -> None:
        self.assert_assets_loaded()
        # Tall enough for the whole page, so that the picture shows every number checked (the
        # window's height includes the browser's frame as well as the page).
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1400, max(2000, int(height) + 200))
        assert self.driver.save_screenshot(str(self.artifacts / name))


def count(text: str) -> int:
    return int(text.strip().replace(",", ""))


def log_in(ui: Ui) -> None:
    ui.open("/admin/")
    ui.wait_for("#id_username").send_keys(OPERATOR)
    ui.driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    ui.click("#login-form [type=submit]")
    assert OPERATOR in ui.wait_for("#user-tools").text.casefold()
    assert ui.wait_for("#dashboard-link a").text.casefold() == "dashboard"
    ui.screenshot("01-login.png")


def edit_pattern_description(ui: Ui) -> None:
    ui.click("#content-main a[href$='/admin/patterns/pattern/']")
    search = ui.wait_for("#searchbar")
    search.send_keys("aws_vpc_id")
    ui.click("#changelist-search [type=submit]")
    assert ui.texts("#result_list tbody th a") == ["aws_vpc_id"]
    ui.click("#result_list tbody th a")
    description = ui.wait_for("#id_description")
    description.clear()
    description.send_keys(NEW_DESCRIPTION)
    ui.click("[name=_save]")
    message = ui.wait_for(".messagelist .success").text
    assert "aws_vpc_id" in message and "was changed successfully" in message
    assert Pattern.objects.get(name="aws_vpc_id").description == NEW_DESCRIPTION
    assert NEW_DESCRIPTION not in ui.driver.page_source  # the list does not show descriptions
    ui.screenshot("02-pattern-saved.png")


def try_the_rules(ui: Ui) -> None:
    ui.click(".object-tools a[href$='/admin/patterns/pattern/test/']")
    ui.wait_for("#id_text").send_keys(
        f"Instance {EC2_ID} in {VPC_ID} cannot reach S3.\n"
        f"The deploy user's key {ACCESS_KEY_ID} rotated; {EC2_ID} restarted.\n"
    )
    ui.click("#content-main [type=submit]")
    assert ui.wait_for("#test-masked").text == (
        "Instance AWS_EC2_001 in AWS_VPC_001 cannot reach S3.\n"
        "The deploy user's key AWS_ACCESS_KEY_001 rotated; AWS_EC2_001 restarted."
    )
    rows = ui.driver.find_elements(By.CSS_SELECTOR, "#test-findings tbody tr")
    found = [tuple(cell.text for cell in row.find_elements(By.TAG_NAME, "td")) for row in rows]
    assert [(pattern, value, placeholder) for pattern, _, _, value, placeholder in found] == [
        ("aws_ec2_instance_id", EC2_ID, "AWS_EC2_001"),
        ("aws_vpc_id", VPC_ID, "AWS_VPC_001"),
        ("aws_access_key_id", ACCESS_KEY_ID, "AWS_ACCESS_KEY_001"),
        ("aws_ec2_instance_id", EC2_ID, "AWS_EC2_001"),
    ]
    assert ui.texts("#content-main h2")[0] == "Matches (4)"
    ui.screenshot("03-try-rules.png")


def issue_key(ui: Ui) -> str:
    """Add a key in the admin and read it from the one message that shows it."""
    ui.open("/admin/")
    ui.click("#content-main a[href$='/admin/proxy/apikey/add/']")
    ui.wait_for("#id_name").send_keys(KEY_NAME)
    ui.click("[name=_save]")
    message = ui.wait_for(".messagelist .warning").text
    match = re.search(r"The new key is (\S+) ", message)
    assert match is not None, message
    key = match.group(1)
    record = ApiKey.objects.get(name=KEY_NAME)
    assert key_prefix(key) == record.prefix and key_digest(key) == record.key_hash
    ui.screenshot("04-key-shown-once.png")

    ui.driver.refresh()
    ui.wait_for("#result_list")
    assert key not in ui.driver.page_source
    assert ui.texts("#result_list tbody th a") == [KEY_NAME]
    ui.click("#result_list tbody th a")
    assert ui.wait_for(".field-prefix .readonly").text == record.prefix
    assert key not in ui.driver.page_source
    assert record.key_hash not in ui.driver.page_source
    return key


def send_traffic(proxy_url: str, key: str, upstream: FakeAnthropic) -> list[AuditRecord]:
    """Two replies, one stream and one upstream error through the proxy, with the new key."""
    with anthropic.Anthropic(base_url=proxy_url, api_key=key, max_retries=0) as sdk:
        for text in (f"Restart {EC2_ID} in {VPC_ID}", f"Compare {EC2_ID} with {OTHER_EC2_ID}"):
            reply = sdk.messages.create(
                model="fake-echo", max_tokens=100, messages=[{"role": "user", "content": text}]
            )
            assert [block.type for block in reply.content] == ["text"]
            assert getattr(reply.content[0], "text", None) == f"You said: {text}"
        streamed = f"Who uses {ACCESS_KEY_ID} on {EC2_ID}?"
        with sdk.messages.stream(
            model="fake-echo", max_tokens=100, messages=[{"role": "user", "content": streamed}]
        ) as stream:
            assert "".join(stream.text_stream) == f"You said: {streamed}"
        with pytest.raises(anthropic.RateLimitError):
            sdk.messages.create(
                model="fake-error-429", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
    sent = upstream.raw_bodies()
    for value in (EC2_ID, OTHER_EC2_ID, VPC_ID, ACCESS_KEY_ID):
        assert value.encode() not in sent
    return wait_for_audit(4)


def check_dashboard(ui: Ui, key: str, records: list[AuditRecord]) -> None:
    """The page's numbers are the audit trail's."""
    masked: Counter[str] = Counter()
    for record in records:
        masked.update(record.masked_by_pattern)
    # The traffic above masked all three kinds of value: the comparison below is not vacuous.
    assert set(masked) == {"aws_ec2_instance_id", "aws_vpc_id", "aws_access_key_id"}

    ui.open("/admin/")
    ui.click("#dashboard-link a")
    assert count(ui.wait_for("#total-requests .count").text) == AuditRecord.objects.count() == 4
    assert count(ui.wait_for("#total-errors .count").text) == 1
    assert count(ui.wait_for("#total-masked .count").text) == sum(masked.values())
    shown = {
        row.get_attribute("data-pattern"): count(row.find_element(By.CSS_SELECTOR, "td.count").text)
        for row in ui.driver.find_elements(By.CSS_SELECTOR, "#masked-by-pattern tr[data-pattern]")
    }
    assert shown == dict(masked)

    prefix = ApiKey.objects.get(name=KEY_NAME).prefix
    row = ui.wait_for(f"#usage-by-key tr[data-key-prefix='{prefix}']")
    assert row.find_element(By.TAG_NAME, "code").text == prefix
    assert KEY_NAME in row.text
    assert count(row.find_element(By.CSS_SELECTOR, "td.requests").text) == 4
    assert count(row.find_element(By.CSS_SELECTOR, "td.errors").text) == 1
    assert count(row.find_element(By.CSS_SELECTOR, "td.masked").text) == sum(masked.values())
    assert key not in ui.driver.page_source
    ui.screenshot("05-dashboard.png")


def test_operator_edits_a_rule_issues_a_key_and_sees_its_traffic_on_the_dashboard(
    browser: webdriver.Chrome,
    proxy_url: str,
    upstream: FakeAnthropic,
    artifacts_dir: Path,
    seeded_rules: None,
) -> None:
    User.objects.create_superuser(OPERATOR, "operator@invalid", PASSWORD)
    ui = Ui(browser, proxy_url, artifacts_dir)
    log_in(ui)
    edit_pattern_description(ui)
    try_the_rules(ui)
    key = issue_key(ui)
    records = send_traffic(proxy_url, key, upstream)
    check_dashboard(ui, key, records)
