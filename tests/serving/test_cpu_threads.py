import threading

import pytest
import torch

from service.serving.cpu_threads import TORCH_DEFAULT_THREADS, on_cpu_threads, resolve_cpu_threads


def in_fresh_thread(work):
    """Run `work` in a new thread (torch's thread count is per thread) and restore torch's default there."""
    outcome: list[object] = []

    def body() -> None:
        try:
            outcome.append(work())
        finally:
            torch.set_num_threads(TORCH_DEFAULT_THREADS)  # new threads start from the last value set anywhere

    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    return outcome[0]


@pytest.mark.parametrize("model,service,expected", [(3, 2, 3), (None, 2, 2), (None, 0, TORCH_DEFAULT_THREADS)])
def test_the_model_s_setting_wins_then_the_service_s_then_torch_s_default(model, service, expected):
    assert resolve_cpu_threads(model, service) == expected


def test_each_call_runs_on_its_own_thread_count_and_passes_arguments_and_result_through():
    def seen(tag: str, *, scale: int) -> tuple[str, int]:
        return tag, torch.get_num_threads() * scale

    one, two = on_cpu_threads(1, seen), on_cpu_threads(2, seen)
    assert in_fresh_thread(lambda: [one("a", scale=10), two("b", scale=1), one("c", scale=1)]) == [
        ("a", 10), ("b", 2), ("c", 1)]
