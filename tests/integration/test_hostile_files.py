"""Files others can write or swap: a forged journal in a state dir that is not the listener's
own, and a rules file path that is a FIFO, a device or far too big, on a real supervisord."""

from __future__ import annotations

import json
import os
import pwd
import time

import pytest

from listener.actions.journal import journal_name
from tests.harness import value


@pytest.mark.parametrize("owner, mode", [("nobody", 0o700), ("root", 0o777)])
def test_a_forged_journal_in_a_state_dir_others_can_write_is_not_acted_on(
        supervisord, listener, short_tmp, owner, mode):
    sv = supervisord("""
[program:victim]
command=sleep 600
startsecs=0
""")
    sv.wait_running("victim:victim")
    sv.rpc().supervisor.stopProcess("victim:victim")  # a human stopped it
    state = short_tmp / "state"
    state.mkdir()
    journal = state / journal_name({}, sv.url)
    forged = json.dumps({"version": 1, "restarts": [
        {"namespec": "victim:victim", "pid": 4242, "began": time.time() - 60, "stopped": None}]})
    journal.write_text(forged)
    uid = pwd.getpwnam(owner).pw_uid
    os.chown(journal, uid, -1)
    os.chown(state, uid, -1)
    state.chmod(mode)

    lst = listener("-a", "1GB", server_url=sv.url)
    lst.tick()
    lst.tick()
    # a start of ours clears the entry only once asked for: nothing owed and STOPPED means
    # never started
    assert value(lst.metrics(), "memwatch_stopped_not_running") == 0
    assert sv.infos()["victim:victim"]["statename"] == "STOPPED"
    said = [line for line in lst.stderr().splitlines() if "not trusted" in line]
    assert len(said) == 1 and str(state) in said[0], lst.stderr()
    assert "finishing restarts" not in lst.stderr()
    assert journal.read_text() == forged and os.listdir(state) == [journal.name]  # not written
    assert value(lst.metrics(), "memwatch_supervisor_up") == 1
