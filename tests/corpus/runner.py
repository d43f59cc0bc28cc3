"""The hostile-input corpus: load the case tables, build each case's folder, run it in a forked child
under a time and memory limit, and classify what happened.

A case (one entry of ``tests/corpus/cases/*.yaml``; the table's ``defaults`` fill what it leaves out):

    id: dup-keys                     # unique in its table; the test id is <table>/<id>
    about: duplicate keys in task.yaml silently last-won   # why the case exists (the attack or the newcomer's slip)
    base: mc                         # fixture copied to ./task (mc, gen, cls: tests/corpus/fixtures/); none: nothing
    task: {metrics: [acc_norm]}      # fields replaced in ./task/task.yaml (re-dumped with yaml.safe_dump)
    drop: [target]                   # fields removed from it
    files:                           # files written into the case folder, relative to it:
      task/task.yaml: "name: a\nname: b\n"   #   text (UTF-8)
      task/test.jsonl: {latin1: "caf\xe9"}   #   text encoded as Latin-1 (one byte per character: raw bytes)
      task/deep.json: {parts: [{text: "[", times: 10000}, {text: "]", times: 10000}]}   # repeated pieces
      other.db: {sqlite: "CREATE TABLE runs (x TEXT);"}                                  # an SQLite file
      task/fewshot.jsonl: null                #   null: delete the fixture's file
    setup: ["run --task task --model scripted:x --db results.db --quiet"]   # commands that must succeed first
    argv: "validate task"            # the harness command line (shlex-split), run with the case folder as cwd
    python: "harness.Task(name=1)"   # or: Python run with `harness` imported (a HarnessError counts as exit 2)
    expect: error                    # error: exit 2, one clean 'error:' message; accept: exit 0
    mentions: [task.yaml, "'metrics'"]   # error: substrings stderr must hold (case-insensitive): file, line, field
    stdout: [toy]                    # accept: substrings stdout must hold
    absent: [results.db]             # paths that must not exist afterwards (nothing created)
    exists: [out/results.json]       # paths that must exist afterwards
    unchanged: [other.db]            # files the command must leave byte for byte as they were (after the setup steps)
    not_mentions: [sk-corpus-1]      # secrets that must appear nowhere: stdout, stderr, any file the command wrote
    env: {OPENAI_API_KEY: sk-x}      # environment for the command (no HARNESS_* or OPENAI_* variables otherwise)
    timeout: 20                      # seconds before the case counts as a hang
    address_space_gib: 80            # the address space the case may add (default 4): V8 (vl-convert's static plots) reserves ~70 GiB

Every case is also checked for what a failure must not leave behind: no ``*.tmp`` file in the case
folder, and no run left ``running`` in ``results.db`` (``Store.open_read_only(...).runs()``).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shlex
import shutil
import signal
import sqlite3
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import harness
from harness.cli.app import main
from harness.core.errors import HarnessError
from harness.store.store import Store

CORPUS = Path(__file__).resolve().parent
FIXTURES = CORPUS / "fixtures"
TABLES = CORPUS / "cases"
MEMORY_LIMIT = 4 * 2**30  # address space a case may add to what it inherits (the CLI with torch imported peaks under 1 GiB)
DEFAULT_TIMEOUT = 20.0
STDERR_LIMIT = 4000  # an error message longer than this is unbounded (issue 19, defect 8)
CASE_KEYS = {"id", "about", "base", "task", "drop", "files", "setup", "argv", "python", "expect", "mentions", "stdout", "absent", "exists",
             "unchanged", "not_mentions", "env", "timeout", "owner", "address_space_gib"}
CLASSES = ("clean", "accepted", "traceback", "wrongly accepted", "wrongly rejected", "unclear", "unbounded", "half-written", "leaked", "hang",
           "memory", "crash", "setup failed")
GOOD = ("clean", "accepted")


@dataclass(frozen=True)
class Case:
    """One hostile or malformed input with the outcome a fixed harness gives it."""

    name: str  # <table>/<id>
    about: str
    spec: dict[str, Any]

    @property
    def expect(self) -> str:
        return str(self.spec["expect"])

    @property
    def owner(self) -> str:
        return str(self.spec.get("owner", "?"))


@dataclass
class Outcome:
    case: Case
    verdict: str
    rc: int | None
    seconds: float
    stdout: str
    stderr: str
    problems: list[str] = field(default_factory=list)

    @property
    def good(self) -> bool:
        return self.verdict in GOOD

    def first_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        if self.verdict == "traceback" and lines:
            return lines[-1][:200]
        return (lines[0] if lines else "(no stderr)")[:200]

    def describe(self) -> str:
        tail = self.stderr[-3000:] if self.stderr else "(empty)"
        return (f"{self.case.name} [{self.case.owner}]: {self.verdict} (exit {self.rc}, {self.seconds:.1f} s); expected {self.case.expect}\n"
                f"about: {self.case.about}\nproblems: {'; '.join(self.problems) or '-'}\nstderr:\n{tail}\nstdout:\n{self.stdout[-1500:]}")


OUTCOMES: list[Outcome] = []  # every case run in this session, for the totals line (conftest.py)


def load_cases() -> list[Case]:
    """Every case of every table, in table then entry order; a malformed entry fails loudly here."""
    cases: list[Case] = []
    for table in sorted(TABLES.glob("*.yaml")):
        document = yaml.safe_load(table.read_text(encoding="utf-8"))
        defaults = document.get("defaults", {})
        seen: set[str] = set()
        for entry in document["cases"]:
            spec = {**defaults, **entry}
            unknown = set(spec) - CASE_KEYS
            assert not unknown, f"{table.name}: case {entry.get('id')!r} has unknown keys {sorted(unknown)}"
            assert spec.get("id") and spec["id"] not in seen, f"{table.name}: missing or repeated id {entry.get('id')!r}"
            assert spec.get("about"), f"{table.name}: case {spec['id']} needs 'about'"
            assert spec.get("expect") in ("error", "accept"), f"{table.name}: case {spec['id']}: expect is error or accept"
            assert ("argv" in spec) != ("python" in spec), f"{table.name}: case {spec['id']}: give argv or python"
            seen.add(spec["id"])
            cases.append(Case(f"{table.stem}/{spec['id']}", spec["about"], spec))
    return cases


# -- building a case's folder ---------------------------------------------------------
def _content(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if "latin1" in value:
        return str(value["latin1"]).encode("latin-1")
    if "parts" in value:
        return b"".join(str(p["text"]).encode("utf-8") * int(p.get("times", 1)) for p in value["parts"])
    raise AssertionError(f"unknown file content {value!r}")


def build(case: Case, folder: Path) -> None:
    spec = case.spec
    folder.mkdir(parents=True)
    base = spec.get("base", "mc")
    if base != "none":
        shutil.copytree(FIXTURES / base, folder / "task")
    if spec.get("task") or spec.get("drop"):
        path = folder / "task" / "task.yaml"
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        document.update(spec.get("task") or {})
        for key in spec.get("drop") or ():
            document.pop(key, None)
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    for name, value in (spec.get("files") or {}).items():
        path = folder / name
        if value is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, dict) and "sqlite" in value:
            with sqlite3.connect(path) as con:
                con.executescript(value["sqlite"])
            con.close()
        else:
            path.write_bytes(_content(value))


def _digest(path: Path) -> str | None:
    """The file's sha256, with its SQLite write-ahead log's: a write to a WAL database changes only the log until a checkpoint."""
    if not path.is_file():
        return None
    digest = hashlib.sha256(path.read_bytes())
    wal = path.with_name(f"{path.name}-wal")
    if wal.is_file():
        digest.update(wal.read_bytes())
    return digest.hexdigest()


# -- running it ---------------------------------------------------------------------
def _argv(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(a) for a in value]


def inherited_address_space() -> int:
    """This process's virtual memory size in bytes (/proc/self/statm's first field, in pages)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _child(case: Case, folder: Path, out: Path, err: Path) -> int:
    """In the forked child: limits, a clean environment, the case's folder as cwd, stdout/stderr to files."""
    # the limit is on what the case adds: a forked child starts with its parent's address space, which in the
    # whole suite holds torch, a loaded model and thread stacks (several GiB of virtual memory already)
    limit = inherited_address_space() + int(float(case.spec.get("address_space_gib", MEMORY_LIMIT / 2**30)) * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
    for name in list(os.environ):
        if name.startswith(("HARNESS_", "OPENAI_")):
            del os.environ[name]
    os.environ.update({"CI": "1", "COLUMNS": "120", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_COLOR": "1"})
    os.environ.update({k: str(v) for k, v in (case.spec.get("env") or {}).items()})
    os.chdir(folder)

    def command(argv: list[str]) -> int:
        try:
            return main(argv)
        except SystemExit as exc:  # argparse: usage errors exit 2, --help/--version exit 0
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)

    for step in case.spec.get("setup") or ():
        rc = command(_argv(step))
        if rc != 0:
            print(f"corpus: setup step {step!r} exited {rc}", file=sys.stderr)
            return 97
    if case.spec.get("setup") and case.spec.get("unchanged"):  # what the setup left is what must stay unchanged
        digests = {p: _digest(folder / p) for p in case.spec["unchanged"]}
        (folder.parent / f"{folder.name}.digests").write_text(json.dumps(digests), encoding="utf-8")
    if "python" in case.spec:
        try:
            exec(compile(case.spec["python"], f"<{case.name}>", "exec"), {"harness": harness, "Path": Path})  # noqa: S102
        except HarnessError as exc:  # the API's user errors: the same one-paragraph message the CLI prints
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    return command(_argv(case.spec["argv"]))


def execute(case: Case, folder: Path) -> tuple[int | None, str, float, int]:
    """Fork, run the case in the child, wait with a time limit. Returns (exit code or None, how it ended, seconds, max RSS KiB)."""
    out, err = folder.parent / f"{folder.name}.stdout", folder.parent / f"{folder.name}.stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        rc = 1
        try:
            rc = _child(case, folder, out, err)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(rc)
    deadline = started + float(case.spec.get("timeout", DEFAULT_TIMEOUT))
    ended = "exit"
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            ended = "timeout"
            break
        time.sleep(0.005)
    seconds = time.monotonic() - started
    rc: int | None = os.waitstatus_to_exitcode(status)
    if ended == "exit" and rc is not None and rc < 0:
        ended = f"signal {-rc}"
    return (None if ended == "timeout" else rc), ended, seconds, usage.ru_maxrss


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _leftovers(case: Case, folder: Path, before: set[Path]) -> list[str]:
    """What a command must not leave: temp files, runs still marked running, created or changed files the case forbids."""
    problems = [f"temp file left: {p.relative_to(folder)}" for p in sorted(folder.rglob("*.tmp")) if p not in before]
    db = folder / "results.db"
    if db.is_file() and "results.db" not in (case.spec.get("files") or {}):
        try:
            store = Store.open_read_only(db)
            try:
                problems += [f"run {r.id} left '{r.status}' in results.db" for r in store.runs() if r.status == "running"]
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 (a results.db the harness cannot read back is itself a problem)
            problems.append(f"results.db cannot be read back: {type(exc).__name__}: {exc}"[:300])
    problems += [f"{p} was created" for p in case.spec.get("absent") or () if (folder / p).exists()]
    problems += [f"{p} is missing" for p in case.spec.get("exists") or () if not (folder / p).exists()]
    return problems


def run_case(case: Case, root: Path) -> Outcome:
    folder = root / case.name.replace("/", "__")
    build(case, folder)
    before = set(folder.rglob("*.tmp"))
    digests = {p: _digest(folder / p) for p in case.spec.get("unchanged") or ()}
    rc, ended, seconds, _rss = execute(case, folder)
    after_setup = folder.parent / f"{folder.name}.digests"
    if after_setup.exists():
        digests = json.loads(after_setup.read_text(encoding="utf-8"))
    stdout, stderr = _read(folder.parent / f"{folder.name}.stdout"), _read(folder.parent / f"{folder.name}.stderr")
    problems = _leftovers(case, folder, before)
    problems += [f"{p} was changed" for p, digest in digests.items() if _digest(folder / p) != digest]
    problems += _leaks(case, folder, stdout, stderr)
    verdict = classify(case, rc, ended, stdout, stderr, problems)
    return Outcome(case, verdict, rc, seconds, stdout, stderr, problems)


def _leaks(case: Case, folder: Path, stdout: str, stderr: str) -> list[str]:
    """Where a ``not_mentions`` secret shows: stdout, stderr, or a file in the case folder that the case did not write itself."""
    if not case.spec.get("not_mentions"):
        return []
    given = {folder / name for name in case.spec.get("files") or ()}
    written = [p for p in sorted(folder.rglob("*")) if p.is_file() and p not in given]
    found: list[str] = []
    for secret in map(str, case.spec.get("not_mentions") or ()):
        places = [name for name, text in (("stdout", stdout), ("stderr", stderr)) if secret in text]
        places += [str(p.relative_to(folder)) for p in written if secret.encode() in p.read_bytes()]
        found += [f"leaked {secret!r} in {where}" for where in places]
    return found


def classify(case: Case, rc: int | None, ended: str, stdout: str, stderr: str, problems: list[str]) -> str:
    """The verdict; ``problems`` gets the reason for anything short of clean or accepted."""
    if ended == "timeout":
        return "hang"
    if "MemoryError" in stderr or ended == "signal 9":
        return "memory"
    if ended.startswith("signal"):
        problems.append(ended)
        return "crash"
    if rc == 97 and "corpus: setup step" in stderr:
        return "setup failed"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if any(p.startswith("leaked ") for p in problems):
        return "leaked"
    if case.expect == "error":
        if rc == 0:
            return "wrongly accepted"
        if rc != 2:
            problems.append(f"exit {rc}, expected 2")
            return "crash"
        if "error:" not in stderr:
            problems.append("no 'error:' line on stderr")
            return "unclear"
        missing = [m for m in case.spec.get("mentions") or () if str(m).lower() not in stderr.lower()]
        if missing:
            problems.append(f"stderr does not mention {missing}")
            return "unclear"
        if len(stderr) > STDERR_LIMIT:
            problems.append(f"stderr is {len(stderr):,} characters")
            return "unbounded"
        return "half-written" if problems else "clean"
    if rc == 2:
        return "wrongly rejected"
    if rc != 0:
        problems.append(f"exit {rc}")
        return "crash"
    missing = [m for m in case.spec.get("stdout") or () if str(m).lower() not in stdout.lower()]
    missing += [m for m in case.spec.get("mentions") or () if str(m).lower() not in stderr.lower()]
    if missing:
        problems.append(f"output does not mention {missing}")
        return "wrongly rejected"
    return "half-written" if problems else "accepted"


def totals_line(outcomes: list[Outcome]) -> str:
    counts = {name: 0 for name in CLASSES}
    for outcome in outcomes:
        counts[outcome.verdict] += 1
    shown = [f"{name} {counts[name]}" for name in CLASSES if name in GOOD or name in ("traceback", "wrongly accepted", "hang", "memory")
             or counts[name]]
    return f"corpus: {len(outcomes)} cases: " + ", ".join(shown)
