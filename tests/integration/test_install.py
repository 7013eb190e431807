"""README's "Install for production", run as written, in a temp dir standing for the host's /:
a virtualenv at an absolute path, the package installed into it from a copy of this checkout,
the shipped rules file, Debian's supervisord layout (conf.d/*.conf included) with the README's
`[eventlistener:memwatch]` section, `supervisorctl reread && supervisorctl update`, then the
README's checks (`check --listener`, `/metrics`, the log).

Two differences, for time: the package is installed with `--no-deps`, its dependencies
(supervisor, psutil, prometheus-client) coming from the test's virtualenv through a .pth file
(a full `pip install` of the checkout took 49 s here against 21 s), and supervisord is the test
virtualenv's, not Debian's package. Paths under / are moved into the temp dir and port 9870 to a
free one; every other line is the README's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, free_port, scrape, short_dir, value, wait_for

README = ROOT / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Install for production\n")
    return text[start:text.index("\n## ", start + 1)]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", section(), re.S)


def commands() -> list[str]:
    """The README's shell lines, without their comments."""
    return [line.split("  #")[0].strip() for block in blocks("sh") for line in block.splitlines()]


@pytest.fixture
def host() -> Iterator[Path]:
    root = short_dir("mwi-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run(*args: str | Path, timeout: float = 300, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd="/")
    assert not check or done.returncode == 0, \
        f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def debian_supervisord(host: Path) -> Path:
    """What Debian's supervisor package installs as /etc/supervisor/supervisord.conf."""
    for sub in ("etc/supervisor/conf.d", "var/log/supervisor", "run"):
        (host / sub).mkdir(parents=True, exist_ok=True)
    conf = host / "etc/supervisor/supervisord.conf"
    conf.write_text(textwrap.dedent(f"""\
        [unix_http_server]
        file={host}/run/supervisor.sock
        chmod=0700

        [supervisord]
        logfile={host}/var/log/supervisor/supervisord.log
        pidfile={host}/run/supervisord.pid
        childlogdir={host}/var/log/supervisor

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

        [supervisorctl]
        serverurl=unix://{host}/run/supervisor.sock

        [include]
        files = {host}/etc/supervisor/conf.d/*.conf
        """))
    return conf


def test_install_for_production_as_the_readme_says(host: Path) -> None:
    said = commands()
    port = free_port()
    opt, etc, log = host / "opt/sentry-memwatch", host / "etc", host / "var/log/supervisor"

    def local(text: str) -> str:
        return (text.replace("/opt/sentry-memwatch", str(opt)).replace("/etc/", f"{etc}/")
                .replace("/var/log/supervisor", str(log)).replace(":9870", f":{port}"))

    # python3 -m venv /opt/sentry-memwatch (the interpreter the test's virtualenv was made from)
    assert "python3 -m venv /opt/sentry-memwatch" in said
    run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", opt)
    deps = sysconfig.get_paths()["purelib"]  # supervisor, psutil, prometheus-client: see above
    own = run(opt / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    Path(own.stdout.strip(), "test-deps.pth").write_text(deps + "\n")

    # /opt/sentry-memwatch/bin/pip install /path/to/sentry-memwatch (a copy: what git tracks)
    assert "/opt/sentry-memwatch/bin/pip install /path/to/sentry-memwatch" in said
    checkout = host / "src/sentry-memwatch"
    tracked = run("git", "-C", ROOT, "ls-files", "-z").stdout.split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    run(opt / "bin/pip", "install", "-q", "--no-deps", checkout, timeout=600)
    where = run(opt / "bin/python", "-c", "import listener; print(listener.__file__)").stdout
    assert where.startswith(str(opt)), where  # the installed copy, not this checkout

    # cp .../deploy/memwatch/sentry-memwatch.conf /etc/sentry-memwatch.conf; chmod 600
    assert ("cp /path/to/sentry-memwatch/deploy/memwatch/sentry-memwatch.conf "
            "/etc/sentry-memwatch.conf") in said
    assert "chmod 600 /etc/sentry-memwatch.conf" in said
    conf = debian_supervisord(host)
    rules = etc / "sentry-memwatch.conf"
    text = (checkout / "deploy/memwatch/sentry-memwatch.conf").read_text()
    # the host's /var/lib/sentry-memwatch, here: the rules file's state-dir, as README says
    rules.write_text(text.replace("metrics-port = 9870",
                                  f"metrics-port = {port}\nstate-dir = {host}/var/lib/sentry-memwatch"))
    rules.chmod(0o600)

    # as Debian's unit runs it: supervisord -n -c /etc/supervisor/supervisord.conf
    supervisord = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(conf)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    try:
        ctl = [Path(sys.executable).parent / "supervisorctl", "-c", conf]
        wait_for(lambda: run(*ctl, "pid", check=False).stdout.strip().isdigit(), what="supervisord to answer",
                 proc=supervisord, timeout=60)

        # /etc/supervisor/conf.d/memwatch.conf: the README's section
        [section_text] = blocks("ini")
        assert section_text.startswith("[eventlistener:memwatch]\n")
        (etc / "supervisor/conf.d/memwatch.conf").write_text(local(section_text))

        assert "supervisorctl reread && supervisorctl update" in said
        run(*ctl, "reread")
        assert "memwatch: added process group" in run(*ctl, "update").stdout
        assert "supervisorctl status memwatch" in said
        memwatch_log = log / "memwatch.log"
        wait_for(lambda: "RUNNING" in run(*ctl, "status", "memwatch", check=False).stdout,
                 what="memwatch RUNNING", timeout=60, log=memwatch_log)

        # the README's checks
        check = next(line for line in said if "check --listener" in line)
        wait_for(lambda: "metrics served" in memwatch_log.read_text(), what="metrics served",
                 timeout=60, log=memwatch_log)
        assert any(line.startswith("curl -s http://127.0.0.1:9870/metrics") for line in said)

        def ticked() -> dict | None:
            samples = scrape(port)
            return samples if value(samples, "memwatch_last_tick_timestamp_seconds") else None

        samples = wait_for(ticked, what="a TICK handled", timeout=30, log=memwatch_log)
        assert value(samples, "memwatch_supervisor_up") == 1
        shown = run(*local(check).split())  # exit 0
        assert shown.stdout.startswith("supervisord reachable"), shown.stdout
        logged = memwatch_log.read_text()
        assert "msg=started" in logged and "Traceback" not in logged, logged
    finally:
        supervisord.terminate()  # it stops the listener first
        supervisord.wait(60)
