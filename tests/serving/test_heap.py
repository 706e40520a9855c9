import gc
import weakref

from service.serving.heap import freeze_long_lived


class Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


def test_objects_alive_at_the_freeze_leave_the_collector_s_view_and_garbage_does_not_get_frozen():
    kept = Node()
    garbage = Node()
    garbage_ref = weakref.ref(garbage)
    del garbage
    try:
        frozen = freeze_long_lived()
        assert frozen > 0  # (not compared with gc.get_freeze_count(): frozen objects that other threads free leave it)
        assert not any(o is kept for o in gc.get_objects())  # a full collection no longer scans it
        assert garbage_ref() is None  # collected before the freeze, not kept forever
        newer = Node()
        assert any(o is newer for o in gc.get_objects())  # objects made after the freeze are collected as usual
    finally:
        gc.unfreeze()
