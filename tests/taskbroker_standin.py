"""A stand-in for taskbroker, speaking its gRPC protocol through sentry-protos' generated stubs,
for a real taskbroker-client TaskWorker in push mode (tests.taskworker_app).

- `push()` delivers a TaskActivation (msgpack parameters) through the worker's
  `WorkerService.PushTask`, retrying while the worker is down or busy, as the broker's push
  loop does.
- `ConsumerService.SetTaskStatus` / `SetBatchActivationStatus` record the worker's results.
- A task whose status has not come `processing_deadline_duration + grace` seconds after it was
  delivered is delivered again with one more attempt: what taskbroker does
  (`handle_processing_deadline`: back to pending, processing_attempts + 1;
  `processing_deadline_grace_sec` is 3 by default). `at_most_once` tasks, which taskbroker
  fails instead, are not modelled.

Every delivery and status is kept in `events`, with the time it happened."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import msgpack
from google.protobuf.timestamp_pb2 import Timestamp
from sentry_protos.taskbroker.v1 import taskbroker_pb2 as pb
from sentry_protos.taskbroker.v1 import taskbroker_pb2_grpc as pbg

STATUS = {pb.TASK_ACTIVATION_STATUS_COMPLETE: "complete",
          pb.TASK_ACTIVATION_STATUS_FAILURE: "failure",
          pb.TASK_ACTIVATION_STATUS_RETRY: "retry"}


@dataclass
class Event:
    at: float  # time.monotonic()
    kind: str  # "delivered", "status", "deadline"
    task_id: str
    attempt: int = 0
    status: str = ""


@dataclass
class _Inflight:
    taskname: str
    kwargs: dict[str, Any]
    deadline: int
    attempt: int
    delivered: float = field(default_factory=time.monotonic)


class Broker(pbg.ConsumerServiceServicer):  # type: ignore[misc]
    """Serves ConsumerService on 127.0.0.1:`port` and pushes to the worker at `worker`."""

    def __init__(self, port: int, worker: str, namespace: str, application: str,
                 grace: float = 3.0) -> None:
        self.port, self.namespace, self.application, self.grace = port, namespace, application, grace
        self.events: list[Event] = []
        self._inflight: dict[str, _Inflight] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._serial = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(8))
        pbg.add_ConsumerServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"127.0.0.1:{port}")
        self._server.start()
        self._channel = grpc.insecure_channel(worker)
        self._worker = pbg.WorkerServiceStub(self._channel)
        self._upkeep = threading.Thread(target=self._expire, daemon=True)
        self._upkeep.start()

    def close(self) -> None:
        self._stopped.set()
        self._server.stop(grace=None)
        self._channel.close()
        self._upkeep.join(5)

    # --- ConsumerService: what the worker calls ---

    def SetTaskStatus(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
        self._record_status(request.id, STATUS.get(request.status, str(request.status)))
        return pb.SetTaskStatusResponse()

    def SetBatchActivationStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        for update in request.updates:
            self._record_status(update.id, STATUS.get(update.status, str(update.status)))
        return pb.SetBatchActivationStatusResponse()

    def GetTask(self, request: Any, context: Any) -> Any:  # noqa: N802
        context.abort(grpc.StatusCode.NOT_FOUND, "push mode: no task to fetch")

    # --- the broker's side ---

    def push(self, taskname: str, deadline: int = 60, **kwargs: Any) -> str:
        """Deliver a new task; its id. Blocks until the worker accepted it."""
        with self._lock:
            self._serial += 1
            task_id = f"{taskname}-{self._serial}"
        self._deliver(task_id, _Inflight(taskname, kwargs, deadline, 0))
        return task_id

    def _deliver(self, task_id: str, task: _Inflight) -> None:
        received = Timestamp()
        received.GetCurrentTime()
        activation = pb.TaskActivation(
            id=task_id, namespace=self.namespace, taskname=task.taskname,
            application=self.application,
            parameters_bytes=msgpack.packb({"args": [], "kwargs": task.kwargs}),
            received_at=received, processing_deadline_duration=task.deadline,
            retry_state=pb.RetryState(attempts=0, max_attempts=1))
        request = pb.PushTaskRequest(task=activation, callback_url=f"127.0.0.1:{self.port}")
        while not self._stopped.is_set():
            try:
                self._worker.PushTask(request, timeout=10)
                break
            except grpc.RpcError:  # down (restarting) or busy: the broker tries again
                self._stopped.wait(0.2)
        with self._lock:
            task.delivered = time.monotonic()
            self._inflight[task_id] = task
            self.events.append(Event(task.delivered, "delivered", task_id, task.attempt))

    def _record_status(self, task_id: str, status: str) -> None:
        with self._lock:
            task = self._inflight.pop(task_id, None)
            self.events.append(Event(time.monotonic(), "status", task_id,
                                     task.attempt if task else -1, status))

    def _expire(self) -> None:
        while not self._stopped.wait(0.1):
            now = time.monotonic()
            with self._lock:
                due = [(i, t) for i, t in self._inflight.items()
                       if now > t.delivered + t.deadline + self.grace]
                for task_id, task in due:
                    del self._inflight[task_id]
                    self.events.append(Event(now, "deadline", task_id, task.attempt))
            for task_id, task in due:
                again = _Inflight(task.taskname, task.kwargs, task.deadline, task.attempt + 1)
                threading.Thread(target=self._deliver, args=(task_id, again), daemon=True).start()

    # --- what the test reads ---

    def of(self, task_id: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.task_id == task_id]

    def status(self, task_id: str) -> str | None:
        """The last status the worker reported for the task, if any."""
        found = [e.status for e in self.of(task_id) if e.kind == "status"]
        return found[-1] if found else None
