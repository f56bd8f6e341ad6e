"""Running operator-registered scripts: the transport behind ``run_script`` steps.

A script is code the operator registered (an entry point or ``reconciler.toml``),
never code from a spec. It runs in a small thread pool with a timeout, and its
outcome is told in our delivery error types like any other transport's: a script
that raises or overruns is a permanent failure of that outbox row; one that never
started (the pool was busy) may be tried again.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from reconciler.actions.delivery import PermanentDeliveryError, Receipt, TemporaryDeliveryError
from reconciler.config import ScriptRegistration


class ScriptRunner:
    """Runs operator-registered scripts with a timeout. Fire-and-forget for the flow:
    the participant moved on already; the outcome is recorded on the outbox row."""

    def __init__(self, registrations: Mapping[str, ScriptRegistration], timeout: float) -> None:
        self.registrations, self.timeout = registrations, timeout
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="script")

    def run(self, name: str, contact: dict[str, Any]) -> Receipt:
        registration = self.registrations.get(name)
        if registration is None:
            raise PermanentDeliveryError(f"script {name!r} is not registered here")
        module_name, _, attribute = registration.target.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise PermanentDeliveryError(f"script {name!r}: cannot load {registration.target}: {exc}") from None
        future = self._pool.submit(target, contact)
        try:
            result = future.result(timeout=self.timeout)
        except FutureTimeout:
            if future.cancel():  # it waited behind other scripts and never started: not run at all
                raise TemporaryDeliveryError(f"script {name!r} did not start within {self.timeout:g} s") from None
            raise PermanentDeliveryError(f"script {name!r} did not finish within {self.timeout:g} s") from None
        except Exception as exc:
            raise PermanentDeliveryError(f"script {name!r} raised {type(exc).__name__}: {exc}") from None
        return Receipt(detail=repr(result)[:500])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
