"""Settings from the environment: the embedded default, the cloud, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from refluxo.host.settings import (
    CloudSettings,
    ConfigurationError,
    EmbeddedSettings,
    load_settings,
    require_callers_guard,
    require_private_listener,
)

CLOUD = {
    "REFLUXO_BACKEND": "gcp",
    "GOOGLE_CLOUD_PROJECT": "acme",
    "REFLUXO_REGION": "europe-west1",
    "REFLUXO_TASKS_QUEUE": "refluxo-steps",
    "REFLUXO_STEP_URL": "https://dispatcher-xyz.a.run.app/tasks/step",
    "REFLUXO_TASKS_SERVICE_ACCOUNT": "invoker@acme.iam.gserviceaccount.com",
    "REFLUXO_OIDC_AUDIENCE": "https://dispatcher-xyz.a.run.app",
}


def test_no_cloud_settings_means_the_embedded_default() -> None:
    settings = load_settings({})
    assert settings == EmbeddedSettings(
        app="refluxo.examples.app:app",
        database=Path(".refluxo/refluxo.db"),
        workers=16,
        api_key=None,
    )


def test_a_complete_cloud_environment() -> None:
    settings = load_settings({**CLOUD, "REFLUXO_FUNCTION_TIMEOUT_S": "300"})
    assert isinstance(settings, CloudSettings)
    assert settings.queue_path == "projects/acme/locations/europe-west1/queues/refluxo-steps"
    assert settings.verify_oidc is True
    assert settings.function_timeout_s == 300
    assert settings.collection_prefix == "refluxo"


def test_missing_cloud_settings_are_all_named() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({"REFLUXO_BACKEND": "gcp", "GOOGLE_CLOUD_PROJECT": "acme"})
    message = str(raised.value)
    for name in ("REFLUXO_REGION", "REFLUXO_TASKS_QUEUE", "REFLUXO_STEP_URL"):
        assert name in message
    assert "GOOGLE_CLOUD_PROJECT" not in message


def test_a_cloud_variable_alone_selects_the_cloud_and_is_validated() -> None:
    with pytest.raises(ConfigurationError, match="GOOGLE_CLOUD_PROJECT"):
        load_settings({"REFLUXO_TASKS_QUEUE": "q"})


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"REFLUXO_TASKS_SERVICE_ACCOUNT": ""}, "REFLUXO_TASKS_SERVICE_ACCOUNT"),
        ({"REFLUXO_VERIFY_OIDC": "maybe"}, "true or false"),
        ({"REFLUXO_FUNCTION_TIMEOUT_S": "forever"}, "must be a number"),
        ({"REFLUXO_FUNCTION_TIMEOUT_S": "0"}, "between"),
        ({"REFLUXO_STEP_URL": "dispatcher"}, "http(s) URL"),
        ({"REFLUXO_BACKEND": "AWS!"}, "must be a backend name"),
        ({"REFLUXO_APP": "no_colon"}, "module:attribute"),
    ],
)
def test_bad_values_are_explained(change: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({**CLOUD, **change})
    assert fragment in str(raised.value)


def test_oidc_off_needs_no_identity() -> None:
    settings = load_settings(
        {
            **CLOUD,
            "REFLUXO_VERIFY_OIDC": "false",
            "REFLUXO_INVOKER_IAM": "true",
            "REFLUXO_TASKS_SERVICE_ACCOUNT": "",
            "REFLUXO_OIDC_AUDIENCE": "",
        }
    )
    assert isinstance(settings, CloudSettings)
    assert settings.verify_oidc is False


def test_oidc_off_must_say_what_guards_the_step_route() -> None:
    """With nothing said, the step and reconcile routes had no check at all in code."""
    with pytest.raises(ConfigurationError, match="REFLUXO_INVOKER_IAM=true"):
        load_settings({**CLOUD, "REFLUXO_VERIFY_OIDC": "false"})
    emulated = load_settings(
        {**CLOUD, "REFLUXO_VERIFY_OIDC": "false", "REFLUXO_TASKS_EMULATOR_HOST": "127.0.0.1:1"}
    )
    assert isinstance(emulated, CloudSettings)


def test_a_batch_budget_stays_under_half_the_function_timeout() -> None:
    settings = load_settings({**CLOUD, "REFLUXO_BATCH_STEPS": "20"})
    assert isinstance(settings, CloudSettings)
    assert settings.batch_ms == 30_000  # half of the default 60 s timeout
    with pytest.raises(ConfigurationError, match="half the function timeout"):
        load_settings({**CLOUD, "REFLUXO_BATCH_STEPS": "5", "REFLUXO_BATCH_MS": "45000"})
    with pytest.raises(ConfigurationError, match="REFLUXO_BATCH_STEPS"):
        load_settings({**CLOUD, "REFLUXO_BATCH_STEPS": "0"})


# -- who may call: decided in the settings, once for every entry point ---------------------


def test_the_cloud_backend_without_a_key_must_declare_that_iam_guards_it() -> None:
    """An unset REFLUXO_API_KEY used to mean, silently, no application-level check."""
    settings = load_settings(CLOUD)
    with pytest.raises(ConfigurationError) as refused:
        require_callers_guard(settings)
    assert "REFLUXO_API_KEY" in str(refused.value)
    assert "REFLUXO_AUTH=iam" in str(refused.value)
    require_callers_guard(load_settings({**CLOUD, "REFLUXO_API_KEY": "k" * 32}))
    declared = load_settings({**CLOUD, "REFLUXO_AUTH": "iam"})
    assert isinstance(declared, CloudSettings)
    assert declared.auth == "iam"
    require_callers_guard(declared)
    require_callers_guard(load_settings({}))  # the embedded default is always guarded


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({**CLOUD, "REFLUXO_AUTH": "none"}, "REFLUXO_AUTH must be 'api-key' or 'iam'"),
        ({"REFLUXO_AUTH": "IAM-ish"}, "REFLUXO_AUTH must be"),
        ({"REFLUXO_API_KEY": "short"}, "at least 16 characters"),
        ({"REFLUXO_ALLOWED_HOSTS": "good.example, bad host"}, "REFLUXO_ALLOWED_HOSTS"),
        ({**CLOUD, "REFLUXO_ALLOWED_HOSTS": "x:99999"}, "REFLUXO_ALLOWED_HOSTS"),
    ],
)
def test_guard_settings_are_validated(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        load_settings(env)


def test_allowed_hosts_are_read_as_a_comma_list() -> None:
    settings = load_settings({"REFLUXO_ALLOWED_HOSTS": " a.example ,b.example:8080,, [::1]:9"})
    assert settings.allowed_hosts == ("a.example", "b.example:8080", "[::1]:9")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", "[::]"])
def test_a_local_server_without_a_key_may_not_listen_beyond_this_machine(host: str) -> None:
    settings = load_settings({"REFLUXO_HOST": host})
    with pytest.raises(ConfigurationError, match="REFLUXO_API_KEY") as refused:
        require_private_listener(settings)
    assert host in str(refused.value)
    require_private_listener(load_settings({"REFLUXO_HOST": host, "REFLUXO_API_KEY": "k" * 16}))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_a_local_server_without_a_key_may_listen_on_loopback(host: str) -> None:
    require_private_listener(load_settings({"REFLUXO_HOST": host}))


@pytest.mark.parametrize("value", ["2.5", "1e2", "\u0665", " ", "-1", "0x10"])
@pytest.mark.parametrize("name", ["REFLUXO_BATCH_STEPS", "REFLUXO_WORKERS", "REFLUXO_PORT"])
def test_whole_numbers_are_ascii_digits_as_on_the_command_line(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings({name: value})


def test_a_short_api_key_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="REFLUXO_API_KEY"):
        load_settings({"REFLUXO_API_KEY": "k1"})


def test_the_dispatch_deadline_outlasts_the_function_timeout() -> None:
    settings = load_settings({**CLOUD, "REFLUXO_FUNCTION_TIMEOUT_S": "300"})
    assert isinstance(settings, CloudSettings)
    assert settings.dispatch_deadline_s == 360
    capped = load_settings({**CLOUD, "REFLUXO_FUNCTION_TIMEOUT_S": "1790"})
    assert isinstance(capped, CloudSettings)
    assert capped.dispatch_deadline_s == 1800
    with pytest.raises(ConfigurationError, match="REFLUXO_FUNCTION_TIMEOUT_S"):
        load_settings({**CLOUD, "REFLUXO_FUNCTION_TIMEOUT_S": "3600"})
    with pytest.raises(ConfigurationError, match="must not be shorter"):
        load_settings(
            {**CLOUD, "REFLUXO_FUNCTION_TIMEOUT_S": "300", "REFLUXO_DISPATCH_DEADLINE_S": "100"}
        )


def test_a_backend_unknown_to_the_registry_is_refused_by_name() -> None:
    from refluxo.host.compose import check_backend

    settings = load_settings({"REFLUXO_BACKEND": "aws"})
    with pytest.raises(ConfigurationError, match="'aws' is not a backend"):
        check_backend(settings)
