"""Security: loopback by default, HTTPS with optional client certificates, and the supervisord
password never in anything the listener emits."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.harness import PY, ROOT, hog, scrape, value, wait_for

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki(root: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    p = {n: root / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem",
                                "client.key", "client.csr", "client.pem", "ext.cnf")}
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", str(p["ca.key"]), "-out", str(p["ca.pem"]))
    p["ext.cnf"].write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
                "-keyout", str(p[f"{who}.key"]), "-out", str(p[f"{who}.csr"]))
        openssl("x509", "-req", "-in", str(p[f"{who}.csr"]), "-CA", str(p["ca.pem"]),
                "-CAkey", str(p["ca.key"]), "-CAcreateserial", "-days", "2",
                "-extfile", str(p["ext.cnf"]), "-out", str(p[f"{who}.pem"]))
    return p


def https_get(port: int, ca: Path, cert: tuple[Path, Path] | None = None) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=ctx, timeout=10) as r:
        return r.read().decode()


def test_metrics_listen_on_loopback_only_by_default(listener, short_tmp):
    lst = listener("-a", "1GB", server_url=f"unix://{short_tmp}/none.sock")
    lst.tick()
    addrs = {c.laddr for c in psutil.Process(lst.proc.pid).net_connections("tcp")
             if c.status == psutil.CONN_LISTEN}
    assert addrs == {("127.0.0.1", lst.metrics_port)}


@needs_openssl
def test_metrics_over_https_and_client_certificates(listener, short_tmp):
    pki = make_pki(short_tmp)
    url = f"unix://{short_tmp}/none.sock"
    tls = listener("-a", "1GB", "--metrics-tls-cert", pki["server.pem"], "--metrics-tls-key",
                   pki["server.key"], server_url=url)
    tls.tick()
    assert "memwatch_build_info" in https_get(tls.metrics_port, pki["ca.pem"])
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        scrape(tls.metrics_port)  # plain HTTP is not served

    mtls = listener("-a", "1GB", "--metrics-tls-cert", pki["server.pem"], "--metrics-tls-key",
                    pki["server.key"], "--metrics-tls-client-ca", pki["ca.pem"], server_url=url)
    mtls.tick()
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        https_get(mtls.metrics_port, pki["ca.pem"])  # no client certificate: refused
    text = https_get(mtls.metrics_port, pki["ca.pem"], (pki["client.pem"], pki["client.key"]))
    assert "memwatch_supervisor_up" in text


PASSWORD = "pw-Tr0ub4dor-and-3"


def test_the_password_never_appears_in_logs_errors_check_output_or_metrics(supervisord, listener,
                                                                          short_tmp):
    sv = supervisord(f"""
[program:big]
command={hog('--mb', 50)}
startsecs=0
""")
    sv.stop()
    sv.conf.write_text(sv.conf.read_text().replace(
        f"file={sv.socket}\n", f"file={sv.socket}\nusername=memwatch\npassword={PASSWORD}\n", 1))
    sv.proc = subprocess.Popen([PY, "-m", "supervisor.supervisord", "-c", str(sv.conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    auth = {"SUPERVISOR_USERNAME": "memwatch", "SUPERVISOR_PASSWORD": PASSWORD}
    rpc_ok = wait_for(lambda: sv.socket.exists(), what="socket")
    assert rpc_ok
    ini = short_tmp / "memwatch.ini"
    ini.write_text(f"[sentry-memwatch]\nusername = memwatch\npassword = {PASSWORD}\nany = 30MB\n")
    ini.chmod(0o644)  # readable by others: must be warned about
    emitted: list[str] = []

    lst = listener("--config", ini, "--log-level", "debug", server_url=sv.url)
    wait_for(lambda: lst.tick() or (value(lst.metrics(), "memwatch_restarts_total", group="big",
                                          process="big") or 0) >= 1, what="a restart")
    emitted += [lst.stderr(), "\n".join(f"{k} {v}" for k, v in lst.metrics().items())]
    assert "readable by others" in lst.stderr()

    wrong = listener("-a", "30MB", server_url=sv.url,
                     env={"SUPERVISOR_USERNAME": "memwatch", "SUPERVISOR_PASSWORD": PASSWORD + "x"})
    wrong.tick()
    emitted.append(wrong.stderr())

    env = {**os.environ, "PYTHONPATH": str(ROOT), **auth}
    for args in (["check", "-a", "30MB", "--server-url", sv.url],
                 ["check", "-a", "30MB", "--server-url", f"http://memwatch:{PASSWORD}@127.0.0.1:1"],
                 ["check", "--config", str(ini), "--server-url", sv.url],
                 ["--server-url", f"ftp://memwatch:{PASSWORD}@host/"]):
        done = subprocess.run([PY, "-m", "listener", *args], capture_output=True, text=True,
                              timeout=60, env=env, stdin=subprocess.DEVNULL)
        emitted += [done.stdout, done.stderr]
    assert "OVER" in "".join(emitted)  # check did run and print its table
    for text in emitted:
        assert PASSWORD not in text


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "kill"])
def test_a_child_signal_is_never_sent_to_a_pid_outside_the_supervised_tree(pidfd: bool):
    import signal
    import sys

    from listener.core.model import SignalChild, Target
    from listener.core.rows import ProcessRow
    from listener.host.child_signals import PIDFD_OPEN, ChildSignaller, Sent
    from listener.host.procfs import ProcReader
    from listener.web.stats import Stats

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stats = Stats()
        stats.observe([ProcessRow("web", "web", 1, "rss", 0, 1, 1)], now=0.0)
        started = ProcReader().stat(stranger.pid).started  # type: ignore[union-attr]
        signaller = ChildSignaller(stats, pidfd_open=PIDFD_OPEN if pidfd else None)

        def signal_as_child_of(parent: int, start: float) -> bool:
            target = Target("web", "web", parent, memory=1, limit=0, measure="rss", rule="any")
            sent = signaller.send(SignalChild(target, stranger.pid, start, int(signal.SIGTERM)))
            return sent is Sent.YES

        def signals_sent() -> int:
            return stats.snapshot().processes[0].child_signals

        # claimed as a child of a process it does not descend from, or with another start
        # time (a reused pid): refused
        assert not signal_as_child_of(other.pid, started)
        assert not signal_as_child_of(os.getpid(), started - 100)
        assert stranger.poll() is None and signals_sent() == 0
        # and the real thing is signalled: right parent, right start time
        assert signal_as_child_of(os.getpid(), started)
        assert stranger.wait(10) == -signal.SIGTERM
        assert signals_sent() == 1
    finally:
        for p in (stranger, other):
            p.kill()
            p.wait()
