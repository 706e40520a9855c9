from pathlib import Path

import pytest

from service.config import Settings


def test_defaults_serve_the_shipped_models_on_localhost():
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.models_dir, settings.device) == (
        "127.0.0.1", 8000, Path("models"), "auto")


def test_variables_override_defaults():
    settings = Settings.from_env({"LRP_HOST": "0.0.0.0", "LRP_PORT": "9001", "LRP_MODELS_DIR": "/srv/models",
                                  "LRP_DEVICE": "cuda:1", "LRP_MAX_INSTANCES": "8"})
    assert (settings.host, settings.port, settings.models_dir, settings.device, settings.max_instances) == (
        "0.0.0.0", 9001, Path("/srv/models"), "cuda:1", 8)


@pytest.mark.parametrize("environ,message", [
    ({"LRP_PORT": "eighty"}, "LRP_PORT must be an integer"),
    ({"LRP_PORT": "70000"}, "port number"),
    ({"LRP_MAX_INSTANCES": "0"}, "LRP_MAX_INSTANCES must be positive"),
    ({"LRP_MAX_DELAY_MS": "-1"}, "LRP_MAX_DELAY_MS must be 0 or more"),
    ({"LRP_SHUTDOWN_DELAY_S": "-2"}, "LRP_SHUTDOWN_DELAY_S must be 0 or more"),
    ({"LRP_CPU_THREADS": "-1"}, "LRP_CPU_THREADS must be 0 or more"),
    ({"LRP_DEVICE": "tpu"}, "LRP_DEVICE must be auto, cpu, cuda or cuda:N"),
])
def test_bad_values_name_the_variable(environ, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ)


def test_zero_is_allowed_for_the_delays_and_the_thread_count():
    settings = Settings.from_env({"LRP_MAX_DELAY_MS": "0", "LRP_SHUTDOWN_DELAY_S": "0", "LRP_CPU_THREADS": "0"})
    assert (settings.max_delay_ms, settings.shutdown_delay_s, settings.cpu_threads) == (0, 0, 0)
