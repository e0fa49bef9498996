"""The test harness itself: emulators and functions-framework start, answer and stop."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from google import pubsub_v1
from google.cloud import firestore

from tests.support import emulators
from tests.support.emulators import FunctionServer


def test_firestore_client_is_bound_without_leaking_the_variable(
    firestore_client: firestore.Client, firestore_prefix: str
) -> None:
    assert "FIRESTORE_EMULATOR_HOST" not in os.environ
    ref = firestore_client.collection(f"{firestore_prefix}_probe").document("d")
    ref.set({"ok": True})
    assert ref.get().to_dict() == {"ok": True}


def test_reset_empties_the_emulator(
    firestore_client: firestore.Client, firestore_reset: Callable[[], None]
) -> None:
    ref = firestore_client.collection("reset_probe").document("d")
    ref.set({"ok": True})
    firestore_reset()
    assert not ref.get().exists


def test_pubsub_emulator_publishes_and_delivers(
    pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(emulators.EMULATOR_PROJECT, "probe")
    subscription = subscriber.subscription_path(emulators.EMULATOR_PROJECT, "probe-sub")
    with publisher, subscriber:
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic)
        message = pubsub_v1.PubsubMessage(data=b"hello", attributes={"runId": "r1"})
        publisher.publish(topic=topic, messages=[message], timeout=10)
        response = subscriber.pull(subscription=subscription, max_messages=1, timeout=10)
        (received,) = response.received_messages
        assert received.message.data == b"hello"
        assert received.message.attributes["runId"] == "r1"
        subscriber.acknowledge(subscription=subscription, ack_ids=[received.ack_id])


def test_functions_framework_serves_a_source_with_its_environment_and_stops(
    tmp_path: Path, functions_framework_factory: Callable[..., FunctionServer]
) -> None:
    source = tmp_path / "main.py"
    source.write_text(
        textwrap.dedent(
            """
            import os

            def hello(request):
                return f"hello {os.environ['GREETING']} {request.args.get('n', '')}"
            """
        )
    )
    server = functions_framework_factory(source, "hello", env={"GREETING": "there"})
    with emulators.local_urlopen(f"{server.url}/?n=1") as response:
        assert response.read() == b"hello there 1"
    server.stop()
    assert server.process.exited()
    assert not emulators.tcp_answers("127.0.0.1", server.port)()


def test_a_source_that_does_not_start_fails_with_its_log(tmp_path: Path) -> None:
    source = tmp_path / "main.py"
    source.write_text("raise RuntimeError('broken on import')\n")
    with pytest.raises(emulators.EmulatorError, match="broken on import"):
        emulators.start_functions_framework(source, "hello", timeout=20)


@pytest.mark.parametrize(
    ("attribute", "start"),
    [
        ("FIRESTORE_JAR", emulators.start_firestore),
        ("PUBSUB_EMULATOR", emulators.start_pubsub),
        ("TASKS_EMULATOR", lambda: emulators.start_tasks("projects/p/locations/l/queues/q")),
    ],
)
def test_a_missing_emulator_fails_loudly_with_install_instructions(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    attribute: str,
    start: Callable[[], object],
) -> None:
    monkeypatch.setattr(emulators, attribute, tmp_path / "missing")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)is missing.*Install it"):
        start()
