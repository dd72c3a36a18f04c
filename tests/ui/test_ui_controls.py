"""Controls in a real browser: an admin releases one block and extends another, each with a reason,
and finds them in the audit trail (the API's decisions follow); a viewer has no release button,
and a release forged with the viewer's cookie is refused; a block made while the page is open
appears without a reload; the control stream takes the console's cookie."""
from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from ui_helpers import event, follow, sign_in, table, wait_for

FORGE = """const [path, body] = arguments;
const r = await fetch(path, {method: 'POST', body: new URLSearchParams(body)});
return [r.status, await r.text()];"""


def _controls(driver) -> dict[str, dict]:
    return {r["data-workflow"]: r for r in table(driver, "controls") or []}


def test_an_admin_releases_and_extends_blocks_with_a_reason_and_sees_them_in_the_audit(console, driver):
    sign_in(driver, console.url, console.tokens["admin"])
    driver.get(f"{console.url}/ui/controls")
    shown = _controls(driver)
    assert shown["agent-loop"]["data-state"] == "block" and shown["agent-loop"]["state"] == "blocked"
    why, since = shown["agent-loop"]["reason"], shown["agent-loop"]["set_at"]
    assert why.startswith("budget agent-loop ") and why.endswith("reached actual:100") and since.endswith(" ago")

    row = driver.find_element(By.CSS_SELECTOR, "tr[data-workflow='agent-loop']")
    form = row.find_element(By.CSS_SELECTOR, "form.release")
    form.find_element(By.CSS_SELECTOR, "button").click()  # no reason: the browser will not send it
    assert driver.current_url == f"{console.url}/ui/controls"
    assert driver.execute_script("return arguments[0].validity.valueMissing", form.find_element(By.NAME, "reason"))
    form.find_element(By.NAME, "reason").send_keys("INC-42: the retry loop is fixed")
    follow(driver, form.find_element(By.CSS_SELECTOR, "button"))
    assert driver.find_element(By.ID, "done").text == "Released agent-loop."
    assert "agent-loop" not in _controls(driver) and "nightly-batch" in _controls(driver)
    newest = table(driver, "audit")[0]
    assert newest["subject"].startswith("control agent-loop") and newest["change"] == "block → allow"
    assert newest["who"] == "admin-bot" and newest["why"] == "INC-42: the retry loop is fixed"

    with console.api("gateway") as gw, console.api("viewer") as viewer:
        assert gw.get("/v1/decisions/agent-loop").json()["action"] == "allow"
        last = viewer.get("/v1/audit", params={"workflow": "agent-loop"}).json()["entries"][-1]
        assert (last["from"], last["to"], last["who"], last["why"]) == (
            "block", "allow", "admin-bot", "INC-42: the retry loop is fixed")

    # keep the other block past its period: until released, with a reason (the same audited call)
    row = driver.find_element(By.CSS_SELECTOR, "tr[data-workflow='nightly-batch']")
    row.find_element(By.TAG_NAME, "summary").click()
    form = row.find_element(By.CSS_SELECTOR, "form.extend")
    form.find_element(By.NAME, "reason").send_keys("keep it off until the batch is rewritten")
    follow(driver, form.find_element(By.CSS_SELECTOR, "button"))
    assert driver.find_element(By.ID, "done").text == "Extended nightly-batch."
    kept = _controls(driver)["nightly-batch"]
    assert kept["state"] == "blocked" and kept["expires_at"].startswith("until released")
    assert kept["expires_at"].endswith("kept by a person")
    assert kept["set_by"] == "admin-bot"
    newest = table(driver, "audit")[0]
    assert (newest["change"], newest["who"], newest["why"]) == (
        "block → block", "admin-bot", "keep it off until the batch is rewritten")

    # a reason of blanks is refused by the server too (422), and nothing changes
    csrf = driver.find_element(By.CSS_SELECTOR, "form.who input[name=csrf]").get_attribute("value")
    status, page = driver.execute_script(FORGE, "/ui/controls/nightly-batch/release", {"reason": "   ", "csrf": csrf})
    assert status == 422 and "a reason is required" in page
    with console.api("gateway") as gw:
        assert gw.get("/v1/decisions/nightly-batch").json()["action"] == "block"


def test_a_viewer_has_no_release_button_and_a_forged_release_is_refused(console, driver):
    sign_in(driver, console.url, console.tokens["viewer"])
    driver.get(f"{console.url}/ui/controls")
    assert "nightly-batch" in _controls(driver)
    assert driver.find_elements(By.CSS_SELECTOR, "form.act, button.danger") == []
    assert "Only an admin token may release or extend them." in driver.find_element(By.CSS_SELECTOR, "p.sub").text

    # the viewer's own valid form token, from its own page, with its own cookie: still its role
    csrf = driver.find_element(By.CSS_SELECTOR, "form.who input[name=csrf]").get_attribute("value")
    for what in ("release", "extend"):
        status, page = driver.execute_script(FORGE, f"/ui/controls/nightly-batch/{what}",
                                             {"reason": "forged", "csrf": csrf})
        assert status == 403 and "role &#39;viewer&#39; may not do this" in page, (what, status, page[:300])
    with console.api("gateway") as gw:
        assert gw.get("/v1/decisions/nightly-batch").json()["action"] == "block"

    # an admin's cookie without the form token, or sent from another site, is refused as well
    admin = console.tokens["admin"]
    with httpx.Client(base_url=console.url, cookies={"cw_console": admin}) as c:
        assert c.post("/ui/controls/nightly-batch/release", data={"reason": "x"}).status_code == 403
        page = c.get("/ui/controls").text
        token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = c.post("/ui/controls/nightly-batch/release", data={"reason": "x", "csrf": token},
                   headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "came from another site" in r.text
        r = c.post("/ui/controls/nightly-batch/release", data={"reason": "x", "csrf": token},
                   headers={"Origin": "null"})
        assert r.status_code == 403
    with console.api("gateway") as gw:
        assert gw.get("/v1/decisions/nightly-batch").json()["action"] == "block"


def test_a_new_block_appears_without_a_reload(console, driver):
    sign_in(driver, console.url, console.tokens["viewer"])
    driver.get(f"{console.url}/ui/controls")
    assert "live-agent" not in _controls(driver)
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "live").get_attribute("data-state") == "live")
    driver.execute_script("window.stillTheSamePage = true")
    with console.api("gateway") as gw:
        assert gw.post("/v1/events", json=event(None, "live-agent", "gpt-4o-mini", 1000, 100)).status_code == 200
        wait_for(lambda: gw.get("/v1/decisions/live-agent").json()["action"] == "block", what="the block")
    WebDriverWait(driver, 10).until(lambda d: "live-agent" in _controls(d))
    assert _controls(driver)["live-agent"]["state"] == "blocked"
    assert driver.execute_script("return window.stillTheSamePage") is True  # no reload happened


def test_the_control_stream_takes_the_console_cookie_and_the_bearer_token_as_before(console):
    def first_event(**kw) -> tuple[int, str]:
        with httpx.Client(base_url=console.url, timeout=10, **kw) as c:
            with c.stream("GET", "/v1/controls/stream") as r:
                if r.status_code != 200:
                    return r.status_code, r.read().decode()
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        return 200, line
        return 0, ""

    assert first_event(cookies={"cw_console": console.tokens["viewer"]}) == (200, "event: snapshot")
    assert first_event(cookies={"cw_console": "cw_unknown"})[0] == 401
    assert first_event(cookies={"cw_console": console.tokens["gateway"]})[0] == 403  # not a console role
    assert first_event()[0] == 401
    bearer = lambda role: {"headers": {"Authorization": f"Bearer {console.tokens[role]}"}}  # noqa: E731
    assert first_event(**bearer("gateway")) == (200, "event: snapshot")
    assert first_event(**bearer("viewer"))[0] == 403  # a bearer token keeps the API's roles
