"""Stand-in executables for mise, npm and cargo that reproduce the real tools' behaviours the
reconciler must survive (see reference/shell-and-deploy.md). State lives in JSON files under
$STANDIN_STATE; every call is appended to $STANDIN_STATE/calls.log."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

SCRIPT = r'''
import json, os, sys, time
from pathlib import Path

tool = Path(sys.argv[0]).name
args = sys.argv[1:]
state_dir = Path(os.environ["STANDIN_STATE"])
with open(state_dir / "calls.log", "a") as calls:
    calls.write(" ".join([tool, *args]) + "\n")


def load(name, default):
    path = state_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else default


def save(name, value):
    (state_dir / f"{name}.json").write_text(json.dumps(value))


def full(version):
    parts = version.split(".")
    if all(p.isdigit() for p in parts):
        return ".".join(parts + ["0"] * (3 - len(parts)))
    return {"stable": "1.80.0", "lts": "20.11.0", "latest": "22.1.0"}.get(version, version)


def split(spec):
    name, _, version = spec.rpartition("@") if "@" in spec.lstrip("@") else (spec, "", "")
    if not name:
        name, version = spec, ""
    return name, version


if tool == "mise":
    db = load("mise", {"installed": {}, "config": {}})
    if args[:2] == ["ls", "--json"]:
        answer = {}
        for name, versions in db["installed"].items():
            requested = db["config"].get(name)
            answer[name] = [{"version": v, "requested_version": requested,
                             "install_path": f"/mise/installs/{name}/{v}", "installed": True,
                             "active": requested is not None and v == full(requested)}
                            for v in versions]
        print(json.dumps(answer))
        sys.exit(0)
    command = args[0]
    rest = [a for a in args[1:] if not a.startswith("-")]
    name, version = split(rest[0])
    if command in ("install", "use"):
        if name == "broken":
            print(f"mise ERROR no such tool: {name}", file=sys.stderr)
            sys.exit(1)
        if full(version) not in db["installed"].setdefault(name, []):
            db["installed"][name].append(full(version))  # install does NOT activate
        if command == "use":
            db["config"][name] = version
            shims = Path(os.environ["MISE_DATA_DIR"]) / "shims"
            shims.mkdir(parents=True, exist_ok=True)
            if name == "node":  # from now on, npm resolves through mise's shim
                shim = shims / "npm"
                shim.write_text(f"#!/bin/sh\necho 'shim npm' $@ >> {state_dir}/calls.log\n"
                                f"exec {os.environ['STANDIN_BIN']}/npm \"$@\"\n")
                shim.chmod(0o755)
        save("mise", db)
        sys.exit(0)
    if command == "unuse":
        if name not in db["config"]:
            print(f"mise WARN {name} not found in config", file=sys.stderr)
            sys.exit(1)
        del db["config"][name]
        db["installed"].pop(name, None)
        save("mise", db)
        sys.exit(0)
    if command == "uninstall":
        if name not in db["installed"]:
            print(f"mise ERROR {name} is not installed", file=sys.stderr)
            sys.exit(1)
        db["installed"].pop(name)
        save("mise", db)
        sys.exit(0)
    sys.exit(2)

if tool == "npm":
    db = load("npm", {})
    if args[0] == "ls":
        specs = [a for a in args[1:] if not a.startswith("-")]
        if specs:  # `npm ls -g NAME@tag` exits 1 even when NAME is installed
            name, version = split(specs[0])
            ok = name in db and (not version or db[name] == version)
            print(json.dumps({"dependencies": {name: {"version": db[name]}}} if name in db else {}))
            sys.exit(0 if ok else 1)
        if not db:
            print(json.dumps({}))  # no `dependencies` at all, and exit 1
            sys.exit(1)
        print(json.dumps({"version": "10.0.0", "name": "lib",
                          "dependencies": {n: {"version": v} for n, v in db.items()}}))
        sys.exit(0)
    spec = [a for a in args[1:] if not a.startswith("-")][0]
    name, version = split(spec)
    if args[0] == "install":
        if name.startswith("broken"):
            print("npm error code E404\nnpm error 404 Not Found - GET " + name, file=sys.stderr)
            sys.exit(1)
        db[name] = version if version[:1].isdigit() else "1.0.0-alpha.3"
        save("npm", db)
        print(f"added 1 package")
        sys.exit(0)
    if args[0] == "uninstall":
        db.pop(name, None)  # an absent package exits 0
        save("npm", db)
        print("up to date")
        sys.exit(0)
    sys.exit(2)

if tool == "cargo":
    db = load("cargo", {})
    if args[:2] == ["install", "--list"]:
        for name, version in sorted(db.items()):
            print(f"{name} v{version}:\n    {name}")
        sys.exit(0)
    if args[0] == "install":
        name = args[1]
        version = args[args.index("--version") + 1] if "--version" in args else "1.0.0"
        if name.startswith("broken"):
            print(f"error: could not find `{name}` in registry `crates-io`", file=sys.stderr)
            sys.exit(101)
        if name == "slow":
            time.sleep(60)
        if name != "liar":  # exits 0 without installing anything
            db[name] = version
        save("cargo", db)
        print(f"  Installed package `{name} v{version}`")
        sys.exit(0)
    if args[0] == "uninstall":
        name = args[1]
        if name not in db:
            print(f"error: package ID specification `{name}` did not match any packages",
                  file=sys.stderr)
            sys.exit(101)
        del db[name]
        save("cargo", db)
        print(f"    Removing {name}")
        sys.exit(0)
    sys.exit(2)
sys.exit(3)
'''


def install_standins(root: Path) -> dict[str, str]:
    """Write mise, npm and cargo stand-ins under `root`; answer the environment to run with."""
    bin_dir = root / "bin"
    state = root / "state"
    bin_dir.mkdir(parents=True)
    state.mkdir()
    (state / "calls.log").touch()
    body = f"#!{sys.executable}\n{SCRIPT}"
    for tool in ("mise", "npm", "cargo"):
        path = bin_dir / tool
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return {
        "PATH": os.pathsep.join((str(bin_dir), "/usr/bin", "/bin")),
        "HOME": str(root / "home"),
        "STANDIN_STATE": str(state),
        "STANDIN_BIN": str(bin_dir),
        "MISE_DATA_DIR": str(root / "mise"),
        "CARGO_HOME": str(root / "cargo"),
    }


def calls(env: dict[str, str]) -> list[str]:
    return (Path(env["STANDIN_STATE"]) / "calls.log").read_text().splitlines()
