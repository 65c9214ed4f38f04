"""`ruflo demo`: the README's first command ends here. One small comparison of the built-in
workloads (swarm, company, solo) on the ScriptedGateway or the configured gateway, then the web UI
serving its report and hives until Ctrl-C/SIGTERM. An edge: depends on compare, server, gateway,
agents (the sandbox), store and config.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ruflo.errors import ConfigError, RufloError
from ruflo.model import HiveStatus, Mode

if TYPE_CHECKING:
    from rich.console import Console

    from ruflo.agents.sandbox import Sandbox
    from ruflo.compare.runs import LiveSetup, Plan, RunRecord
    from ruflo.config import Settings
    from ruflo.gateway.client import GatewayClient
    from ruflo.gateway.scripted import ScriptedGateway
    from ruflo.store.base import Store

WORKLOADS = ("ticket", "bug", "feature", "registry")
MODES = (Mode.SWARM, Mode.COMPANY, Mode.SOLO)
SEEDS = (0,)

SCRIPTED_NOTICE = ("Demo on the ScriptedGateway: every answer comes from a script, not a real "
                   "model. Set OPENAI_BASE_URL and OPENAI_API_KEY to run it on your gateway.")
"""Said on the console and on every page when the demo answers from its script."""

CHAT_REPLY = ("This is ruflo's demo. Answers here come from the ScriptedGateway, a script, not a "
              "real model, so this is all it says. Set OPENAI_BASE_URL and OPENAI_API_KEY and "
              "restart `ruflo demo` (or run `ruflo serve`) to talk to a real model.")
"""The scripted answer to anything the workloads' scripts don't cover (chat, new hives)."""

# The live engine's pace as `ruflo compare` sets it: wall seconds per policy time unit.
SCRIPTED_TIME_UNIT = 0.05
REAL_TIME_UNIT = 10.0
RUN_TIMEOUT = 900.0
"""Seconds before one run of the comparison is stopped and reported as timed out."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 3000
    data_dir: Path | None = None
    """None: a `demo` folder under the normal data directory."""
    serve: bool = True
    json_output: bool = False
    scripted: bool = False
    """Use the ScriptedGateway even when a gateway is configured."""


@dataclass(slots=True)
class DemoGateway:
    """The gateway the demo talks to, and the scripted server behind it when there is one."""

    client: GatewayClient
    scripted: ScriptedGateway | None
    description: str

    async def close(self) -> None:
        try:
            await self.client.aclose()
        finally:
            if self.scripted is not None:
                self.scripted.stop()


class Stopper:
    """SIGINT/SIGTERM for the whole demo. A signal is noted (the demo stops at the next step)
    and cancels the comparison while it runs; while the server runs, uvicorn owns the signals
    and re-raises them here once it has shut down, where noting them is all there is to do."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._cancel: Callable[[], None] | None = None

    def __call__(self, number: int, frame: FrameType | None) -> None:
        self.signal = number
        if self._cancel is not None:
            self._cancel()

    @contextmanager
    def installed(self) -> Iterator[None]:
        before = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)

    @contextmanager
    def cancelling(self, task: asyncio.Task[Any]) -> Iterator[None]:
        loop = task.get_loop()

        def cancel() -> None:
            loop.call_soon_threadsafe(task.cancel)

        self._cancel = cancel
        try:
            yield
        finally:
            self._cancel = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else "a signal"


class Steps:
    """What the demo is doing, one line per step on stderr; a failing step names itself."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def say(self, text: str) -> None:
        """Print one line of Rich markup (escape what comes from outside)."""
        self.console.print(text, highlight=False, soft_wrap=True)

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.say(f"[bold]•[/bold] {what}")
        try:
            yield
        except RufloError:
            self.say(f"[red]✗ failed: {what}[/red]")
            raise
        except OSError as error:
            self.say(f"[red]✗ failed: {what}[/red]")
            where = f" ({error.filename})" if error.filename else ""
            raise ConfigError(f"{what} failed: {error.strerror or error}{where}") from None


def demo_settings(settings: Settings, data_dir: Path | None) -> Settings:
    """The demo's own settings: its own data directory (and so its own SQLite store, reports
    and workspaces) so a demo never mixes with real hives."""
    folder = (data_dir or settings.data_dir / "demo").expanduser().absolute()
    source = ("--data-dir" if data_dir is not None
              else f"ruflo demo: `demo` under the data dir from {settings.sources.get('data_dir', 'default')}")
    demo = settings.model_copy(update={"data_dir": folder, "database_url": None,
                                       "workspace": None})
    demo._sources = {**settings.sources, "data_dir": source, "database_url": "ruflo demo",
                     "workspace": "ruflo demo"}
    return demo


def bind(host: str, port: int) -> socket.socket:
    """The server's socket, taken before the comparison so a busy port fails in a second."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY in asyncio
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror or error}); pass "
                          "--port N for another port (0: any free one); nothing was run") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def open_gateway(settings: Settings, store: Store, *, force_scripted: bool) -> DemoGateway:
    """The ScriptedGateway with the workloads' scripts when no gateway is configured (or when
    asked), else the configured gateway, checked by listing its models."""
    from ruflo.gateway.client import GatewayClient

    if settings.gateway_url and not force_scripted:
        if settings.openai_api_key is None:
            raise ConfigError(f"{settings.gateway_url_var} is set but OPENAI_API_KEY is not: set "
                              f"the gateway's key, or unset {settings.gateway_url_var} to run "
                              "the demo on the ScriptedGateway; nothing was run")
        client = GatewayClient.from_settings(settings, store)
        try:
            await client.models(refresh=True)
        except BaseException:
            await client.aclose()
            raise
        return DemoGateway(client, None, f"{settings.gateway_url} (from "
                                         f"{settings.gateway_url_var}), model {settings.model}")

    from ruflo.compare.workloads import builtin_path, gateway_rules
    from ruflo.gateway.scripted import ScriptedGateway

    rules = gateway_rules([builtin_path(name) for name in WORKLOADS])
    scripted = ScriptedGateway({"rules": rules, "cost": 0.0002})
    url = scripted.start()
    client = GatewayClient(url, "sk-scripted", store=store, prices=settings.prices,
                           base_url_source="ruflo demo (ScriptedGateway)")
    why = "--scripted" if settings.gateway_url else "no gateway configured"
    return DemoGateway(client, scripted, f"ScriptedGateway at {url} ({why})")


def demo_sandbox(settings: Settings, *, scripted: bool) -> Sandbox:
    """Where the demo's commands run: the sandbox the settings ask for. One exception keeps
    `scripts/run` working on a fresh machine: on the ScriptedGateway every command is the demo's
    own (its workloads' scripts and verify commands, no model's), so when bubblewrap is missing
    and RUFLO_SANDBOX was left at its default, they run unconfined, said on the console. With a
    real gateway, or RUFLO_SANDBOX set, a missing sandbox stays a refusal."""
    from ruflo.agents.sandbox import Sandbox, SandboxMode, sandbox_for

    sandbox = sandbox_for(settings)
    if (sandbox.refusal is not None and scripted
            and settings.sources.get("sandbox", "default") == "default"):
        why = sandbox.refusal.split(";")[0]
        return Sandbox(SandboxMode.OFF, f"ruflo demo on the ScriptedGateway: {why}; every "
                                        "command is the demo's own script; install bubblewrap "
                                        "to confine them")
    return sandbox


@dataclass(slots=True)
class Comparison:
    report_id: str
    json_path: Path
    html_path: Path
    report: dict[str, Any]
    records: list[RunRecord] = field(default_factory=list)

    def facts(self, settings: Settings, gateway: DemoGateway) -> dict[str, Any]:
        """What `--json` prints: where the report is, which gateway, what ran."""
        return {"report": str(self.json_path), "html": str(self.html_path),
                "report_id": self.report_id, "data_dir": str(settings.data_dir),
                "scripted": gateway.scripted is not None,
                "notice": SCRIPTED_NOTICE if gateway.scripted is not None else None,
                "unavailable": self.report["unavailable"],
                "runs": [{k: r[k] for k in ("id", "status", "hive_id")}
                         for r in self.report["runs"]]}


async def compare(settings: Settings, store: Store, gateway: DemoGateway, console: Console,
                  stopper: Stopper) -> Comparison:
    """The small comparison: each built-in workload once in each mode, with a progress bar;
    writes report.json and report.html under <data_dir>/reports/<stamp>/."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ruflo import __version__
    from ruflo.compare import report as reporting
    from ruflo.compare.runs import LiveSetup, Plan, check, command_env, resolve, run_live
    from ruflo.engine.board_engine import LiveParams

    scripted = gateway.scripted is not None
    plan = Plan(workloads=tuple(resolve(WORKLOADS)), modes=MODES, seeds=SEEDS)
    check(plan)
    folder, report_id = reporting.report_dir(settings.data_dir / "reports")
    params = LiveParams(lease_seconds=settings.lease_seconds,
                        time_unit=SCRIPTED_TIME_UNIT if scripted else REAL_TIME_UNIT,
                        poll_seconds=0.5 if scripted else 1.0)
    setup = LiveSetup(store=store, gateway=gateway.client, params=params,
                      root=folder / "workspaces", model=settings.model, env=command_env(),
                      run_timeout=RUN_TIMEOUT)
    recorded = _recorded(plan, setup, store, gateway)
    records: list[RunRecord] = []
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        bar = progress.add_task("comparing", total=plan.total)
        for ref in plan.workloads:
            for mode in plan.modes:
                for seed in plan.seeds:
                    progress.update(bar, description=f"{ref.name} · {mode.value}")
                    if stopper.signal is not None:
                        raise Stopped
                    record = await run_live(setup, plan, ref, mode, seed, "baseline")
                    records.append(record)
                    progress.advance(bar)
                    if record.status != "ok" and not record.status.startswith("unavailable"):
                        progress.console.print(f"[yellow]{escape(record.id)}: "
                                               f"{escape(record.status)}[/yellow]")
    recorded["ruflo_version"] = __version__
    report = reporting.build(recorded, [r.to_json() for r in records], report_id=report_id)
    json_path, html_path = reporting.write(report, folder)
    return Comparison(report_id, json_path, html_path, report, records)


def _recorded(plan: Plan, setup: LiveSetup, store: Store, gateway: DemoGateway) -> dict[str, Any]:
    """The report's settings block, in the same shape `ruflo compare` writes."""
    from ruflo.compare.runs import COMPANY_ORG, LIVE_ENGINE

    if gateway.scripted is not None:
        used = {"kind": "scripted", "url": gateway.client.base_url,
                "note": "answers come from a script, not a real model"}
    else:
        used = {"kind": "configured", "url": gateway.client.base_url,
                "source": gateway.client.base_url_source}
    return {
        "demo": True,
        "workloads": [{"name": r.name, "path": str(r.path) if r.path else None,
                       "shape": r.shape} for r in plan.workloads],
        "modes": [m.value for m in plan.modes], "seeds": list(plan.seeds),
        "agents": plan.agents, "simulate": False, "kill_fraction": None,
        "tasks_per_shape": None, "auto_approval": plan.auto_approval, "gateway": used,
        "engine": LIVE_ENGINE, "company_org": COMPANY_ORG,
        "live": {"lease_seconds": setup.params.lease_seconds,
                 "time_unit": setup.params.time_unit,
                 "poll_seconds": setup.params.poll_seconds, "model": setup.model,
                 "store": store.url, "run_timeout": setup.run_timeout},
    }


def cancel_unfinished(store: Store, reason: str) -> list[str]:
    """Hives of the comparison left running by a stop: cancelled, so none looks alive."""
    stopped = []
    for hive in store.list_hives(limit=1000):
        if "compare" in hive.config and not hive.status.terminal:
            store.set_hive_status(hive.id, HiveStatus.CANCELLED, reason=reason)
            stopped.append(hive.id)
    return stopped


def results_table(comparison: Comparison) -> Any:
    """Per run: verified, makespan, tokens (work + coordination), LLM calls, cost."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"ruflo demo · report {comparison.report_id}")
    # Short headers: the table must fit 80 columns when stdout is not a terminal.
    for column in ("workload", "mode", "verified", "time s", "tokens", "coord.", "calls",
                   "USD"):
        table.add_column(column, justify="left" if column in ("workload", "mode") else "right")
    for run in comparison.report["runs"]:
        metrics = run["metrics"]
        if run["status"] != "ok" or metrics is None:
            table.add_row(run["workload"], run["mode"],
                          "[yellow]n/a[/yellow]" if run["status"].startswith(
                              "unavailable") else f"[red]{escape(run['status'][:40])}[/red]",
                          "", "", "", "", "")
            continue
        table.add_row(run["workload"], run["mode"], "yes" if metrics["success"] else "no",
                      _number(metrics["makespan"]), _number(metrics["tokens"]),
                      _number(metrics["coordination_tokens"]), _number(metrics["llm_calls"]),
                      _number(metrics["cost"]))
    return table


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def unavailable_lines(report: dict[str, Any]) -> list[str]:
    """Each mode the engine could not run, said plainly, with what ran instead."""
    ok = {r["mode"] for r in report["runs"] if r["status"] == "ok"}
    ran = " and ".join(m.value for m in MODES if m.value in ok) or "no mode"
    return [f"{item['mode']} mode is unavailable here ({item['status'].removeprefix('unavailable: ')}); "
            f"the demo ran {ran} without it" for item in report["unavailable"]]


async def serve(settings: Settings, store: Store, gateway: DemoGateway, sock: socket.socket,
                stopper: Stopper, on_ready: Callable[[str], None]) -> None:
    """The same server as `ruflo serve`, on the socket taken at the start, until a signal."""
    from ruflo.server import create_app
    from ruflo.server.listening import build_server, engine_runner

    if gateway.scripted is not None:
        # After the comparison, so the workloads' runs saw exactly `ruflo compare`'s script.
        gateway.scripted.add_rules({"name": "demo chat", "reply": {"content": CHAT_REPLY}})
    app = create_app(settings, store, gateway.client,
                     engine_runner(store, gateway.client, settings))
    app.state.notice = SCRIPTED_NOTICE if gateway.scripted is not None else None
    host, port = sock.getsockname()[:2]
    server = build_server(app, host, port)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
            raise ConfigError("the web server stopped before it started; see its log above")
        await asyncio.sleep(0.05)
    if stopper.signal is not None:
        # The signal came before uvicorn took the signals over: stop as it would have.
        server.should_exit = True
    else:
        on_ready(url_of(sock))
    await serving


class Stopped(Exception):
    """A signal asked the demo to stop before it was serving."""


def run(options: DemoOptions) -> int:
    """The demo from start to stop; returns the exit code (0 once it has served and been
    stopped; 128 + the signal when stopped earlier)."""
    from rich.console import Console

    stopper = Stopper()
    with stopper.installed():
        demo = Demo(options, stopper, Steps(Console(stderr=True)), Console())
        try:
            return asyncio.run(demo.run())
        except Stopped:
            demo.steps.say(f"[yellow]stopped by {stopper.name} before the UI was served; "
                           "nothing was served[/yellow]")
            return 128 + (stopper.signal or signal.SIGINT)


@dataclass(slots=True)
class Demo:
    """The demo's steps, each said before it runs; a signal between steps stops it there."""

    options: DemoOptions
    stopper: Stopper
    steps: Steps
    out: Console

    def _check(self) -> None:
        if self.stopper.signal is not None:
            raise Stopped

    async def run(self) -> int:
        """Settings (the demo's own data dir) → the UI's socket → store → gateway → comparison
        with a progress bar → report → server until Ctrl-C/SIGTERM → everything closed."""
        from rich.markup import escape

        from ruflo.config import boot_trace, load_settings
        from ruflo.server.listening import check_bind
        from ruflo.store import open_store

        options, steps = self.options, self.steps
        with steps.step("reading settings"):
            normal = load_settings()
            settings = demo_settings(normal, options.data_dir)
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            if options.serve:
                check_bind(options.host, settings.auth, insecure=False)
        for line in boot_trace(settings):
            if not line.startswith(" "):  # the headline; `ruflo doctor` shows every field
                steps.say(f"  {escape(line)}")
        if normal.database_url:
            steps.say("  DATABASE_URL is not used by the demo: its hives stay in the demo's "
                      "own SQLite store, apart from real ones")
        sock = None
        if options.serve:
            with steps.step(f"taking {options.host}:{options.port} for the web UI"):
                sock = bind(options.host, options.port)
        try:
            self._check()
            with steps.step(f"opening the demo store in {escape(str(settings.data_dir))}"):
                store = open_store(settings)
            try:
                self._check()
                with steps.step("starting the gateway"):
                    gateway = await open_gateway(settings, store,
                                                 force_scripted=options.scripted)
                try:
                    return await self._compare_and_serve(settings, store, gateway, sock)
                finally:
                    await gateway.close()
            finally:
                store.close()
        finally:
            if sock is not None:
                sock.close()

    async def _compare_and_serve(self, settings: Settings, store: Store, gateway: DemoGateway,
                                 sock: socket.socket | None) -> int:
        from rich.markup import escape

        from ruflo.agents.sandbox import use_sandbox

        steps, stopper = self.steps, self.stopper
        steps.say(f"  gateway: {escape(gateway.description)}")
        if gateway.scripted is not None:
            steps.say(f"  [bold yellow]{SCRIPTED_NOTICE}[/bold yellow]")
        sandbox = demo_sandbox(settings, scripted=gateway.scripted is not None)
        sandbox.require()  # a real model's commands without a sandbox: stop before any run
        use_sandbox(sandbox)
        colour = "green" if sandbox.confines else "bold yellow"
        steps.say(f"  [{colour}]{escape(sandbox.describe())}[/{colour}]")
        self._check()
        modes = ", ".join(m.value for m in MODES)
        with steps.step(f"comparing {', '.join(WORKLOADS)} in {modes} modes "
                        f"({len(WORKLOADS) * len(MODES) * len(SEEDS)} live runs)"):
            task = asyncio.create_task(compare(settings, store, gateway, steps.console,
                                               stopper))
            try:
                with stopper.cancelling(task):
                    comparison = await task
            except (asyncio.CancelledError, Stopped):
                if stopper.signal is None:
                    raise
                stopped = cancel_unfinished(store, f"ruflo demo was stopped by {stopper.name}")
                steps.say(f"[yellow]the comparison was stopped by {stopper.name}"
                          + (f"; {len(stopped)} unfinished hive(s) marked cancelled"
                             if stopped else "") + "; no report was written[/yellow]")
                raise Stopped from None
        for line in unavailable_lines(comparison.report):
            steps.say(f"  [yellow]{escape(line)}[/yellow]")
        if not self.options.json_output:
            self.out.print(results_table(comparison))
        steps.say(f"  report: {escape(str(comparison.json_path))}\n"
                  f"          {escape(str(comparison.html_path))}")
        if not any(r.status == "ok" for r in comparison.records):
            raise ConfigError("no run of the demo's comparison finished (see the lines above); "
                              f"the report in {comparison.json_path.parent} says why each "
                              "stopped")
        facts = comparison.facts(settings, gateway)
        if sock is None:
            if self.options.json_output:
                _print_json(facts)
            return 0
        self._check()
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        with steps.step("serving the web UI"):
            await serve(settings, store, gateway, sock, stopper,
                        lambda url: self._say_ready(url, facts, gateway))
        steps.say(f"stopped by {stopper.name}; the demo's data stays in "
                  f"{escape(str(settings.data_dir))}")
        return 0

    def _say_ready(self, url: str, facts: dict[str, Any], gateway: DemoGateway) -> None:
        report_url = f"{url}/reports/{facts['report_id']}"
        if self.options.json_output:
            _print_json({**facts, "url": url, "report_url": report_url,
                         "hives_url": f"{url}/hives"})
            return
        say = self.out.print
        say(f"\nruflo demo is serving at [bold]{url}/[/bold]", highlight=False)
        say(f"  report: {report_url}\n  hives:  {url}/hives\n  chat:   {url}/", highlight=False)
        if gateway.scripted is not None:
            say(f"  {SCRIPTED_NOTICE}", highlight=False)
        say("Press Ctrl-C to stop.", highlight=False)
        sys.stdout.flush()


def _print_json(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()
