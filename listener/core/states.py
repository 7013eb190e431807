"""supervisord's process states, as its getProcessInfo and PROCESS_STATE events name them, and the
sets of them the listener reasons with: one vocabulary for the policy, recovery and the process
table."""

from __future__ import annotations

STOPPED = "STOPPED"
STARTING = "STARTING"
RUNNING = "RUNNING"
BACKOFF = "BACKOFF"
STOPPING = "STOPPING"
EXITED = "EXITED"
FATAL = "FATAL"

# supervisord is starting it, retrying by itself after a start that exited too soon
STARTING_UP = frozenset({STARTING, BACKOFF})
# on the way up or down, whoever moved it: takes a --max-parallel slot of its group
TRANSITIONS = STARTING_UP | {STOPPING}
# down for good until someone starts it (supervisor's own STOPPED_STATES, less UNKNOWN)
DOWN = frozenset({STOPPED, EXITED, FATAL})
# reached when the process exits: supervisord records its stop time then (BACKOFF too: a
# start that exited before startsecs)
EXITS_INTO = DOWN | {BACKOFF}
# the states getProcessInfo shows a pid in
WITH_PID = frozenset({RUNNING, STOPPING})
