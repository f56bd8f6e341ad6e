"""The runtime `run` and `watch` share: transports from the environment, rounds, closing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from reconciler.actions.sink import MaildirSink
from reconciler.actions.smtp import SmtpTransport
from reconciler.clock import ManualClock
from reconciler.errors import ConfigError
from reconciler.runtime import RuntimeSettings, open_runtime, run_rounds, transports
from reconciler.state import Store


def test_unconfigured_transports_are_the_local_sink(tmp_path: Path) -> None:
    made = transports({}, 5.0, tmp_path / "outbox")
    try:
        assert isinstance(made.email, MaildirSink) and made.sms is made.email
        assert made.scripts.timeout == 5.0
    finally:
        made.close()


def test_smtp_comes_from_the_environment(tmp_path: Path) -> None:
    made = transports({"RECONCILER_SMTP_URL": "smtp://127.0.0.1:2525"}, 1.0, tmp_path / "outbox")
    try:
        assert isinstance(made.email, SmtpTransport) and isinstance(made.sms, MaildirSink)
    finally:
        made.close()


def test_the_settings_reach_the_executor_and_the_dispatcher(store: Store) -> None:
    env = {"RECONCILER_UNSUBSCRIBE_URL": "https://acme.example/u?e={email}"}
    settings = RuntimeSettings(batch_size=7, rate_per_minute=3, connections=2, script_timeout=4.0)
    with open_runtime(store, ManualClock(), settings, env) as runtime:
        assert runtime.executor.batch_size == 7
        assert runtime.dispatcher is not None
        policy = runtime.dispatcher.policy
        assert (policy.rate_per_minute, policy.connections, policy.script_timeout) == (3, 2, 4.0)
        assert policy.unsubscribe_url == env["RECONCILER_UNSUBSCRIBE_URL"]


def test_without_dispatch_a_round_runs_steps_only(store: Store) -> None:
    with open_runtime(store, ManualClock(), RuntimeSettings(dispatch=False), {}) as runtime:
        assert runtime.dispatcher is None
        totals = run_rounds(runtime, once=True, interval=1.0, stop=threading.Event())
    assert (totals.steps.steps, totals.sent) == (0, 0)


def test_a_wrong_transport_setting_is_refused_before_any_work(store: Store) -> None:
    with (
        pytest.raises(ConfigError, match="RECONCILER_SMTP_URL"),
        open_runtime(store, ManualClock(), RuntimeSettings(), {"RECONCILER_SMTP_URL": "http://x"}),
    ):
        pass  # pragma: no cover
