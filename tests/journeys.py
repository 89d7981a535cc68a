"""The machinery of the as-installed journeys (tests/test_journeys.py): venvs made from the release wheel, one per
install flavour, and commands run as a user runs them.

A user's environment is `env -i` plus PATH (the venv's `bin` first), LANG and a HOME of the journey's own, new and
empty: no EDGE_SENT_*, HF_*, COLUMNS, PYTHONPATH, XDG_* or anything else the test session sets. The commands run
from a folder outside the repository. pip itself runs with the session's starting environment (its download cache).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import START_ENV

# the flavours docs/install.md tells users about: name -> the pip requirement suffix on the wheel
FLAVOURS: dict[str, str] = {
    "runtime": "",
    "serve": "[serve]",
    "strings": "[strings]",
    "parquet": "[parquet]",
    "ray": "[ray]",
    "openvino": "[openvino]",
    "train": "[train]",
}
# the train flavour installs the CPU build of torch first, as the docs say (a plain pin would pull a CUDA build)
PRE_INSTALL: dict[str, list[str]] = {"train": ["torch==2.13.0"]}
TIMEOUT = 600


def pip_env() -> dict[str, str]:
    return {k: v for k, v in START_ENV.items() if not k.startswith(("EDGE_SENT_", "PYTHON"))}


def make_venv(venv: Path, wheel: Path, flavour: str) -> Path:
    """A fresh venv holding the wheel with one flavour's extra (and nothing else); returns it."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=TIMEOUT)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for args in [*([PRE_INSTALL[flavour]] if flavour in PRE_INSTALL else []), [f"{wheel}{FLAVOURS[flavour]}"]]:
        proc = subprocess.run([*pip, *args], capture_output=True, text=True, env=pip_env(), timeout=1800)
        assert proc.returncode == 0, f"pip install {' '.join(args)}: {proc.stdout[-1500:]}{proc.stderr[-3000:]}"
    return venv


@dataclass(frozen=True)
class User:
    """One user of one venv: a HOME of their own and a working folder outside the repository."""

    venv: Path
    home: Path
    cwd: Path

    @property
    def env(self) -> dict[str, str]:
        path = os.pathsep.join([str(self.venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
        return {"PATH": path, "LANG": "C.UTF-8", "HOME": str(self.home)}

    def run(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        """Run a command as this user (a bare `edge-sent`/`python` resolves to the venv's)."""
        return subprocess.run(
            list(args), capture_output=True, text=True, env=self.env, cwd=self.cwd, timeout=timeout, check=False
        )

    def ok(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        """Run it; it must exit 0 with no traceback on stderr."""
        proc = self.run(*args, timeout=timeout)
        shown = f"$ {' '.join(args)}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
        assert proc.returncode == 0, shown
        assert "Traceback" not in proc.stderr, shown
        return proc

    def fails(self, *args: str, needle: str) -> subprocess.CompletedProcess:
        """Run it; it must exit non-zero with one `error:` line naming `needle`, and no traceback."""
        proc = self.run(*args)
        shown = f"$ {' '.join(args)}\n--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-2000:]}"
        assert proc.returncode != 0, shown
        assert "Traceback" not in proc.stderr, shown
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0], shown
        return proc


def new_user(root: Path, venv: Path) -> User:
    home, cwd = root / "home", root / "work"
    home.mkdir(parents=True)
    cwd.mkdir(parents=True)
    return User(venv, home, cwd)


def first_use_note(stderr: str) -> bool:
    """Whether `auto`'s first load on this host measured (and said so)."""
    return "first use of" in stderr


def cache_files(home: Path) -> list[Path]:
    return sorted((home / ".cache" / "edge-sent").rglob("*.json"))


def leftovers(folder: Path) -> list[str]:
    """Half-written files: temporaries left behind by an interrupted or refused write."""
    return [str(p) for p in folder.rglob("*") if re.match(r"^\.tmp|\.tmp$|\.partial$", p.name)]


def post_json(url: str, body: object) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


@contextmanager
def serving(user: User, bundle: Path, log: Path) -> Iterator[str]:
    """`edge-sent serve` as this user on a free loopback port; yields its URL once /health answers 200; its process
    group is killed at the end, whatever happened."""
    with log.open("w") as sink:
        proc = subprocess.Popen(
            ["edge-sent", "serve", str(bundle), "--host", "127.0.0.1", "--port", "0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=user.env,
            cwd=user.cwd,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        url = None
        while url is None:
            assert proc.poll() is None, "server exited: " + log.read_text()
            assert time.monotonic() < deadline, "no listening line: " + log.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
            url = found.group(1) if found else None
            time.sleep(0.1)
        while True:
            assert proc.poll() is None, "server exited: " + log.read_text()
            assert time.monotonic() < deadline, "never healthy: " + log.read_text()
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
