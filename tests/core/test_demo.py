"""The first hour of a new user: `costwarden demo`, then the README's commands as written, in a fresh
directory, with the real console script. One demo run (about 20 s) serves every test here.

The demo simulates the last complete month; COSTWARDEN_DEMO_MONTH pins it to 2026-11, the month the
README's commands name, so the test does not depend on today's date."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MONTH = "2026-11"
SERVERS = ("serve", "worker", "api")  # long-running: started and stopped by their own tests
NEEDS_CREDENTIALS = ("connectors run",)  # a provider's admin key: without one, a one-line error


def env_for() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTWARDEN_")}
    env["COSTWARDEN_DEMO_MONTH"] = MONTH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's `costwarden`
    env.pop("OPENAI_ADMIN_KEY", None)
    return env


def sh(cmd: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env_for(), capture_output=True, text=True,
                          timeout=timeout)


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def bash_lines(text: str) -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.split(r"\s{2,}#", line)[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def readme_commands() -> list[str]:
    """Every command of the README's "Using it" section, in order, but the servers and the lines
    that need one (`sudo -u costwarden ...`, a server's token)."""
    cmds = []
    for line in bash_lines(section(README.read_text(), "Using it")):
        words = shlex.split(line)
        if words[0] in ("sudo",) or "=" in words[0]:
            continue
        if words[0] == "costwarden" and words[1] in SERVERS:
            continue
        cmds.append(line)
    return cmds


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("first-hour")
    quick = bash_lines(section(README.read_text(), "Quick start"))
    assert any(line.endswith("costwarden demo") for line in quick)
    p = sh("costwarden demo", work, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return work, p


@pytest.fixture(scope="module")
def readme_run(demo):
    """Each README command in order, in the directory the README says (`cd`), after the demo."""
    work, _ = demo
    cwd, results = work, []
    for cmd in readme_commands():
        words = shlex.split(cmd)
        if words[0] == "cd":
            cwd = cwd / words[1]
            assert cwd.is_dir(), f"{cmd}: the demo did not make {cwd}"
            results.append((cmd, None))
            continue
        results.append((cmd, sh(cmd, cwd)))
    return cwd, results


def _human(text: str) -> None:
    assert "Traceback" not in text
    assert not re.search(r"\{'\w+': ", text), "a Python dict repr"
    assert not re.search(r"(?<![\d-])\d{2}-\d{2} \d{2}:\d{2}", text), "a date without its year"


def test_the_demo_tells_the_months_story(demo):
    _, p = demo
    out = p.stdout
    _human(out)
    assert out.startswith("costwarden demo: November 2026 (2026-11-01 .. 2026-11-30)")
    # statuses at the month's end, not in the next period
    assert "budgets at the end of 2026-11 (2026-11-30 23:59 UTC)" in out
    assert re.search(r"team-search\s+│ 2026-11\s+│\s+\$168\.93 │\s+\$150\.00 │ 112\.6% │ .* over", out)
    assert "over budget in 2026-11: team-search 112.6%" in out and "gpu-platform 104.1%" in out
    # every alert once, and why there are more notifications than signals
    m = re.search(r"alerts: (\d+) budget signals .*?, (\d+) notifications: a signal notifies every channel", out)
    assert m and int(m[2]) > int(m[1])
    assert "team-search at 80%: oncall-search and finance" in out
    # money for people: no exact (nano-dollar) amounts in the tables
    assert not re.search(r"│\s+\d+\.\d{6,}\s+│", out) and "$5,206.70" in out


def test_the_gateway_honours_the_kill_switch_and_the_saving_is_shown(demo):
    _, p = demo
    out = p.stdout
    story = out[out.index("the runaway agent:"):]
    order = [story.index(s) for s in ("spike: spending over 5x its usual rate", "throttled to 5 calls a minute",
                                      "blocked: the kill switch", "ann@example.com kept the block until released")]
    assert order == sorted(order)
    m = re.search(r"([\d,]+) calls refused \(([\d,]+) over the throttle's rate, ([\d,]+) while blocked\)", story)
    assert m and int(m[2].replace(",", "")) > 0 and int(m[3].replace(",", "")) > 0
    m = re.search(r"agent-loop on 2026-11-29: \$([\d,.]+) spent with costwarden, \$([\d,.]+) without it: "
                  r"\$([\d,.]+) saved", story)
    assert m, story
    spent, without, saved = (Decimal(x.replace(",", "")) for x in m.groups())
    assert Decimal("150") <= spent < Decimal("160")  # the block holds at the daily limit (one commit of lag)
    assert abs(without - spent - saved) <= Decimal("0.01") and saved > Decimal("500")  # each rounded to the cent
    assert "research's month:" in story and "over budget" in story  # what the kill switch kept research out of
    assert "gateway check('agent-loop') now -> block" in story
    assert 'to release it: costwarden controls release agent-loop --reason "fixed the loop"' in story


def test_progress_without_a_tty_is_a_line_every_few_seconds(demo):
    _, p = demo
    lines = [x for x in p.stderr.splitlines() if x.startswith("simulating: ")]
    assert lines, p.stderr[-2000:]
    assert all(re.search(r"simulating: [\d,]+ payloads, [\d,]+/s, \d+%, about \d+s left", x) for x in lines)


def test_the_readme_commands_work_as_written_after_the_demo(readme_run):
    cwd, results = readme_run
    ran = [(cmd, p) for cmd, p in results if p is not None]
    assert len(ran) >= 16
    failed = []
    for cmd, p in ran:
        text = p.stdout + p.stderr
        if any(cmd.startswith(f"costwarden {n}") for n in NEEDS_CREDENTIALS):
            ok = (p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "OPENAI_ADMIN_KEY" in p.stderr)
        else:
            ok = p.returncode == 0 and text.strip()
        if not ok or "Traceback" in text:
            failed.append(f"{cmd} -> {p.returncode}: {text[-600:]}")
        _human(p.stderr)
    assert not failed, "\n".join(failed)


def test_what_the_readme_commands_show(readme_run):
    cwd, results = readme_run
    out = {cmd: p for cmd, p in results if p is not None}

    def of(prefix: str) -> subprocess.CompletedProcess:
        return next(p for c, p in out.items() if c.startswith(prefix))

    assert "budgets.yaml: ok, 5 budgets" in of("costwarden budgets validate").stdout
    ingest = of("costwarden --budgets budgets.yaml --rules rules.yaml ingest").stdout
    assert "10 events stored" in ingest and "unpriced: 1 event" in ingest
    csv_text = of("costwarden report --by team,workflow").stdout
    assert csv_text.splitlines()[0].startswith("team,workflow,requests") and "\nTOTAL,TOTAL," in csv_text
    status = of("costwarden --budgets budgets.yaml budgets status").stdout
    assert "as of 2026-11-30 23:59 UTC" in status and "112.6%" in status and "over" in status
    listed = of("costwarden controls list").stdout
    assert "agent-loop" in listed and "block" in listed and "ann@example.com" in listed
    assert "released agent-loop (was block)" in of("costwarden controls release").stdout
    audit = of("costwarden controls audit").stdout
    assert audit.count("agent-loop") >= 4 and "fixed the loop" in audit
    assert len(of("costwarden price events.jsonl").stdout.splitlines()) == 10
    assert "anthropic-usage" in of("costwarden normalize").stdout
    page = (cwd / "report.html").read_text()
    assert "<svg" in page and "team-search" in page and 'id="no-budgets"' not in page  # budgets from the config
    assert (cwd / "focus.parquet").stat().st_size > 0
    assert "team-search (amount $200.00)" in of("costwarden budgets simulate").stdout
    assert of("costwarden tokens create").stdout.startswith("cw_")


def test_the_demo_month_is_the_last_complete_month():
    from costwarden.demo import month_window

    utc = timezone.utc
    nov = (datetime(2026, 11, 1, tzinfo=utc), datetime(2026, 12, 1, tzinfo=utc))
    assert month_window(datetime(2026, 12, 1, 0, 5, tzinfo=utc)) == nov  # the first day of a month
    assert month_window(datetime(2026, 12, 31, 23, 59, tzinfo=utc)) == nov
    assert month_window(datetime(2027, 1, 1, tzinfo=utc))[0] == datetime(2026, 12, 1, tzinfo=utc)


def test_the_demo_will_not_overwrite_a_directory_that_is_not_its_own(tmp_path):
    (tmp_path / "costwarden-demo").mkdir()
    (tmp_path / "costwarden-demo" / "notes.txt").write_text("mine")
    p = sh("costwarden demo", tmp_path)
    assert p.returncode == 2 and "is not a costwarden demo project" in p.stderr
    assert (tmp_path / "costwarden-demo" / "notes.txt").read_text() == "mine"
