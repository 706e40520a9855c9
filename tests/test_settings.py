import pytest

from service.settings import load_settings


@pytest.fixture
def environ(monkeypatch):
    """Set LRP_* variables for one test (every other LRP_* variable removed)."""
    import os

    for name in [n for n in os.environ if n.startswith("LRP_")]:
        monkeypatch.delenv(name)
    return lambda **values: [monkeypatch.setenv(k, v) for k, v in values.items()]


def test_variables_override_defaults(environ):
    environ(LRP_HOST="0.0.0.0", LRP_PORT="9001", LRP_MODELS_DIR="/srv/models", LRP_DEVICE="cuda:1",
            LRP_MAX_INSTANCES="8")
    settings = load_settings()
    assert (settings.host, settings.port, str(settings.models_dir), settings.device, settings.max_instances) == (
        "0.0.0.0", 9001, "/srv/models", "cuda:1", 8)


def test_an_empty_variable_counts_as_unset(environ):
    unset = load_settings()
    environ(LRP_PORT="", LRP_DEVICE="")
    assert load_settings() == unset


@pytest.mark.parametrize("variables,message", [
    ({"LRP_PORT": "eighty"}, "LRP_PORT should be a valid integer"),
    ({"LRP_PORT": "70000"}, "LRP_PORT should be less than or equal to 65535, got '70000'"),
    ({"LRP_MAX_INSTANCES": "0"}, "LRP_MAX_INSTANCES should be greater than 0"),
    ({"LRP_MAX_DELAY_MS": "-1"}, "LRP_MAX_DELAY_MS should be greater than or equal to 0"),
    ({"LRP_SHUTDOWN_DELAY_S": "-2"}, "LRP_SHUTDOWN_DELAY_S should be greater than or equal to 0"),
    ({"LRP_CPU_THREADS": "-1"}, "LRP_CPU_THREADS should be greater than or equal to 0"),
    ({"LRP_DEVICE": "tpu"}, "LRP_DEVICE must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ({"LRP_LOG_LEVEL": "loud"}, "LRP_LOG_LEVEL should be 'debug', 'info', 'warning' or 'error'"),
    ({"LRP_ADMIN_TOKEN": "short"}, "LRP_ADMIN_TOKEN must be at least 16 characters"),
])
def test_bad_values_name_the_variable(environ, variables, message):
    environ(**variables)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        load_settings()


def test_every_bad_variable_is_named_at_once(environ):
    environ(LRP_PORT="-5", LRP_MAX_QUEUE="none")
    with pytest.raises(ValueError, match=r"LRP_PORT should be .*; LRP_MAX_QUEUE should be a valid integer"):
        load_settings()


def test_zero_is_allowed_for_the_port_delays_and_the_thread_count(environ):
    environ(LRP_PORT="0", LRP_MAX_DELAY_MS="0", LRP_SHUTDOWN_DELAY_S="0", LRP_CPU_THREADS="0")
    settings = load_settings()
    assert (settings.port, settings.max_delay_ms, settings.shutdown_delay_s, settings.cpu_threads) == (0, 0, 0, 0)


def test_the_admin_token_never_shows_in_a_message_or_the_settings_repr(environ):
    environ(LRP_ADMIN_TOKEN="tooshort-secret")
    with pytest.raises(ValueError) as refused:
        load_settings()
    assert "tooshort" not in str(refused.value)
    environ(LRP_ADMIN_TOKEN="a-secret-that-is-long-enough")
    settings = load_settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "a-secret-that-is-long-enough"
    assert "a-secret" not in repr(settings)
