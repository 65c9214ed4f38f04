"""The reports page over plain HTTP, on reports made by `ruflo compare` itself: compare's folders
are listed newest first and each is shown from its report.json — who won what, the settings, every
run with its figures and hive, the modes that could not run — beside its sandboxed charts; hostile
names and hostile report text stay inert. One browser check runs the axe scan on a report."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from ui_harness import Served, Servers, shoot

from ruflo.cli import run
from ruflo.server.reports import dollars, metric_value, number

MADE = re.compile(r"\d{8}-\d{6}(-\d+)?")


def compare(data_dir: Path, *args: str) -> Path:
    """Run `ruflo compare` in this process with this data dir; the report's folder."""
    before = set((data_dir / "reports").glob("*")) if (data_dir / "reports").is_dir() else set()
    with pytest.MonkeyPatch.context() as env:
        for var in ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY", "DATABASE_URL",
                    "RUFLO_WORKSPACE"):
            env.delenv(var, raising=False)
        env.setenv("RUFLO_DATA_DIR", str(data_dir))
        env.setenv("RUFLO_CONFIG", "")
        env.setenv("COLUMNS", "120")
        # In a thread of its own: a live compare runs its own event loop, and Playwright's
        # sync API may hold one in this thread already.
        with ThreadPoolExecutor(1) as worker:
            assert worker.submit(run, ["compare", *args]).result() == 0
    (made,) = set((data_dir / "reports").glob("*")) - before
    assert MADE.fullmatch(made.name), made.name
    return made


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two simulated comparisons, made once for the module: one with a kill variant over three
    workloads and three modes; one whose killed variant can't run (one agent)."""
    home = tmp_path_factory.mktemp("compare")
    full = compare(home, "ticket", "bug", "feature", "--modes", "swarm,company,solo",
                   "--seeds", "2", "--simulate", "--agents", "6", "--kill-fraction", "0.3")
    lone = compare(home, "ticket", "--modes", "swarm,solo", "--seeds", "1", "--simulate",
                   "--agents", "1", "--kill-fraction", "0.5")
    return {"full": full, "lone": lone}


def install(served: Served, folder: Path, name: str | None = None) -> str:
    """A report folder copied into the served data dir's reports folder (as compare leaves it)."""
    target = Path(served.settings.data_dir) / "reports" / (name or folder.name)
    shutil.copytree(folder, target)
    return target.name


def loaded(folder: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((folder / "report.json").read_text())
    return report


def row_of(page: str, run_id: str) -> str:
    found = re.search(rf'<tr data-run="{re.escape(run_id)}".*?</tr>', page, re.S)
    assert found is not None, run_id
    return found.group(0)


def cells(row: str) -> dict[str, str]:
    """A run or summary row's cells by their column label, as text."""
    return {label: html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
            for label, text in re.findall(r'<td data-label="([^"]+)"[^>]*>(.*?)</td>', row,
                                          re.S)}


def summary_rows(page: str) -> list[str]:
    table = re.search(r'<table class="stack summary".*?</table>', page, re.S)
    assert table is not None
    return re.findall(r"<tr>\s*<th scope=\"row\">.*?</tr>", table.group(0), re.S)


@pytest.fixture
def served(servers: Servers) -> Served:
    return servers.start(gateway_url=None)


def test_compare_folders_are_listed_newest_first_by_their_stamp(
        served: Served, made: dict[str, Path]) -> None:
    reports = Path(served.settings.data_dir) / "reports"
    install(served, made["full"], "20250101-090000")
    install(served, made["full"], "20250101-090000-2")
    install(served, made["lone"], "20240606-120000")
    (reports / "20260101-000000").mkdir()  # a comparison still running: no report.json yet
    (reports / "older.json").write_text('{"note": "a bare report file"}')
    os.utime(reports / "older.json", (1_600_000_000, 1_600_000_000))  # 2020: by its mtime
    (reports / ".hidden").mkdir()
    (reports / ".hidden" / "report.json").write_text("{}")
    (reports / "notes").mkdir()  # a folder that is no report at all

    listing = served.http.get("/reports")
    assert listing.status_code == 200
    names = re.findall(r'<li><a href="/reports/([^"]+)"', listing.text)
    assert names == ["20260101-000000", "20250101-090000-2", "20250101-090000",
                     "20240606-120000", "older"]
    assert "no report.json yet" in listing.text

    running = served.http.get("/reports/20260101-000000")
    assert running.status_code == 200
    assert "no report.json yet: it is still running, or it stopped" in running.text
    assert served.http.get("/reports/20260101-000000/charts").status_code == 404
    assert served.http.get("/reports/older").status_code == 200
    assert served.http.get("/reports/notes").status_code == 404


def test_a_compare_report_shows_its_summary_settings_and_every_run(
        served: Served, made: dict[str, Path]) -> None:
    name = install(served, made["full"])
    report = loaded(made["full"])
    answer = served.http.get(f"/reports/{name}")
    assert answer.status_code == 200, answer.text[:500]
    page = answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]

    # Who won what: every generated row, its margin and its seeds, in the report's own words.
    summary = summary_rows(page)
    won = [row for row in report["summary"] if row["winner"] != "tie"]
    assert len(summary) == len(won) > 0
    for shown, row in zip(summary, won, strict=True):
        values = cells(shown)
        assert values["Metric"] == row["label"]
        assert values["Won by"] == row["winner"]
        assert values["By"] == row["margin"]
        assert values["Runner-up"] == row["runner_up"]
        assert values["Seeds"] == str(row["seeds"]) == "2"
        assert values["Winner (mean)"] == metric_value(row["metric"], row["winner_value"],
                                                       "effort units")
    # Ties are named per workload, not hidden.
    ties = re.search(r'<div id="summary-ties">.*?</div>', page, re.S)
    assert ties is not None
    for workload in ("ticket", "bug", "feature"):
        tied = [r["label"] for r in report["summary"]
                if r["winner"] == "tie" and r["workload"] == workload]
        if tied:
            assert f"<strong>{workload}</strong>: {', '.join(tied)}</li>" in ties.group(0)
        else:
            assert f"<strong>{workload}</strong>" not in ties.group(0)
    assert "<strong>ticket</strong>" in ties.group(0)
    assert "Who won what" in page
    assert 'aria-labelledby="summary-title"' in page
    assert "<caption>" in page

    # The settings, plainly: workloads, modes, seeds, agents, no gateway (simulated).
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert facts["Workloads"] == "ticket, bug, feature"
    assert facts["Modes"] == "swarm, company, solo"
    assert facts["Seeds"] == "2 (0, 1)"
    assert facts["Agents per run"] == "6"
    assert facts["Gateway"] == "none: simulated runs make no gateway call"
    assert facts["Agents killed mid-run"] == "30% (every case also run so)"
    assert 'id="simulated-note"' in page
    assert 'id="scripted-note"' not in page

    # Every run, each figure as its metrics say.
    assert page.count("<tr data-run=") == len(report["runs"]) == 3 * 3 * 2 * 2
    for entry in report["runs"]:
        metrics = entry["metrics"]
        values = cells(row_of(page, entry["id"]))
        unit = entry["time_unit"]
        assert values["Status"] == "ok"
        assert values["Verified success"].startswith(number(metrics["success"]))
        assert values["Makespan"] == number(metrics["makespan"], unit)
        assert values["Tokens: work"] == number(metrics["work_tokens"])
        assert values["Tokens: coordination"] == number(metrics["coordination_tokens"])
        assert values["Cost"] == (dollars(metrics["cost"]) if metrics["cost"] is not None
                                  else "unknown")
        assert values["LLM calls"] == number(metrics["llm_calls"])
        assert values["Duplicate work"] == (f"{number(metrics['duplicate_attempts'])} attempts "
                                            f"· {number(metrics['duplicate_tokens'])} tokens")
        assert values["Thrash"] == (f"{number(metrics['task_switches'])} switches · "
                                    f"{number(metrics['released_claims'])} released")
        assert values["Unclaimed-task age"].startswith(
            number(metrics["unclaimed_age_mean"], unit))
        assert values["Hive"] == "simulated: no hive"
    # The kill variant's effect, one row per workload and mode.
    assert page.count('<td data-label="Change in success">') == len(report["kill_effects"]) == 9

    # The charts and the data, from the same folder.
    assert f'href="/reports/{name}/charts"' in page
    charts = served.http.get(f"/reports/{name}/charts")
    assert charts.status_code == 200
    assert charts.headers["content-security-policy"] == "sandbox allow-scripts"
    assert charts.content == (made["full"] / "report.html").read_bytes()
    data = served.http.get(f"/reports/{name}/report.json")
    assert data.status_code == 200
    assert data.json() == report


def test_modes_that_could_not_run_say_why(served: Served, made: dict[str, Path]) -> None:
    name = install(served, made["lone"])
    report = loaded(made["lone"])
    assert report["unavailable"], "one agent can't be killed mid-run: compare says so"
    page = served.http.get(f"/reports/{name}").text
    assert "Modes that could not run" in page
    for item in report["unavailable"]:
        why = item["status"].removeprefix("unavailable: ")
        assert f"<strong>{item['mode']}</strong>: {why}" in page
    for entry in report["runs"]:
        values = cells(row_of(page, entry["id"]))
        if entry["status"] == "ok":
            assert values["Status"] == "ok"
        else:
            assert values["Status"] == "unavailable"
            assert values["Makespan"] == values["Cost"] == "–"
    # One seed of two modes: the summary still compares them, over one seed.
    rows = summary_rows(page)
    assert rows
    assert all(cells(row)["Seeds"] == "1" for row in rows)


def test_a_simulated_comparison_of_the_shapes_at_100_agents_renders(servers: Servers) -> None:
    served = servers.start(gateway_url=None)
    folder = compare(Path(served.settings.data_dir), "wide", "deep", "mixed", "--modes",
                     "swarm,company,solo", "--seeds", "2", "--simulate", "--agents", "100",
                     "--tasks", "300")
    report = loaded(folder)
    answer = served.http.get(f"/reports/{folder.name}")
    assert answer.status_code == 200
    assert answer.text.count("<tr data-run=") == len(report["runs"]) == 18
    assert "wide (simulated shape), deep (simulated shape), mixed (simulated shape)" in \
        answer.text
    assert {r["status"] for r in report["runs"]} == {"ok"}


@pytest.mark.slow
def test_a_live_scripted_report_links_its_hives_and_says_answers_were_scripted(
        servers: Servers) -> None:
    served = servers.start(gateway_url=None)
    folder = compare(Path(served.settings.data_dir), "ticket", "--modes", "swarm,company",
                     "--seeds", "1", "--scripted")
    report = loaded(folder)
    page = served.http.get(f"/reports/{folder.name}").text
    assert "a script, not a real model" in page
    assert 'id="scripted-note"' in page
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page))
    assert facts["Gateway"].startswith("ScriptedGateway at http://127.0.0.1:")
    ran = [r for r in report["runs"] if r["status"] == "ok"]
    assert ran
    for entry in ran:
        assert f'href="/hives/{entry["hive_id"]}"' in row_of(page, entry["id"])
        # The link leads to the hive the run left in the same store.
        assert served.http.get(f"/hives/{entry['hive_id']}").status_code == 200
        assert served.http.get(f"/api/v2/hives/{entry['hive_id']}").status_code == 200
    for item in report["unavailable"]:
        assert f"<strong>{item['mode']}</strong>" in page


def test_hostile_text_in_a_report_stays_text(served: Served, made: dict[str, Path]) -> None:
    name = install(served, made["full"])
    path = Path(served.settings.data_dir) / "reports" / name / "report.json"
    report = loaded(made["full"])
    report["runs"][0]["status"] = "error: <script>alert(1)</script>"
    report["runs"][0]["hive_id"] = '"><img src=x onerror=alert(2)>'
    report["settings"]["workloads"][0]["name"] = "<b>ticket</b>"
    report["summary"][0]["margin"] = "</table><script>alert(3)</script>"
    path.write_text(json.dumps(report))
    answer = served.http.get(f"/reports/{name}")
    assert answer.status_code == 200
    page = answer.text
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "<b>ticket</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;ticket&lt;/b&gt;" in page


def test_a_file_claiming_compares_format_but_shaped_otherwise_is_shown_as_it_is(
        served: Served) -> None:
    folder = Path(served.settings.data_dir) / "reports" / "20250505-101010"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps({"format": "ruflo.compare/1", "runs": 3}))
    answer = served.http.get("/reports/20250505-101010")
    assert answer.status_code == 200
    assert "is not shaped like it" in answer.text
    assert "<dt>runs</dt><dd>3</dd>" in answer.text


@pytest.mark.parametrize("path", [
    "/reports/%2e%2e", "/reports/..%2f..%2fruflo.db",
    "/reports/20250101-090000%2f..%2f..%2fruflo.db", "/reports/.hidden",
    "/reports/.hidden/report.json", "/reports/..%2fsecret/charts",
    "/reports/20250101-090000%2fworkspaces/charts", "/reports/nothing/report.json",
    "/reports/" + "9" * 200,
])
def test_names_outside_the_reports_folder_are_404s(served: Served, made: dict[str, Path],
                                                   path: str) -> None:
    data = Path(served.settings.data_dir)
    install(served, made["full"], "20250101-090000")
    (data / "secret").mkdir()
    (data / "secret" / "report.json").write_text('{"secret": "do not show"}')
    (data / "secret" / "report.html").write_text("secret charts")
    (data / "reports" / ".hidden").mkdir()
    (data / "reports" / ".hidden" / "report.json").write_text('{"secret": "do not show"}')
    answer = served.http.get(path)
    assert answer.status_code == 404, (path, answer.status_code)
    assert "do not show" not in answer.text
    assert "secret charts" not in answer.text


@pytest.mark.browser
def test_a_report_page_passes_axe_and_reads_on_a_narrow_screen(
        served: Served, made: dict[str, Path], browser: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    name = install(served, made["full"])
    for width, shot in ((1280, "report"), (390, "report-narrow")):
        context = browser.new_context(viewport={"width": width, "height": 900})
        try:
            page = context.new_page()
            page.goto(f"{served.url}/reports/{name}")
            expect(page.get_by_role("heading", name="Who won what")).to_be_visible()
            runs = page.get_by_role("table", name="Every run")
            expect(runs.get_by_role("row")).to_have_count(1 + 36)
            expect(page.get_by_role("link", name="Charts")).to_be_visible()
            scrolled = page.evaluate("document.documentElement.scrollWidth")
            assert scrolled <= width, f"the page scrolls sideways at {width} px ({scrolled})"
            shoot(page, shot)
            found = Axe().run(page).response["violations"]
            bad = [v for v in found if v.get("impact") in ("serious", "critical")]
            assert not bad, "\n".join(f"{v['id']} ({v['impact']}): {v['help']} at "
                                      f"{[n['target'] for n in v['nodes']][:3]}" for v in bad)
        finally:
            context.close()
