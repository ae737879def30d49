"""What torch ran during an adapter's call: the ATen ops dispatched, for the tests that show an adapter computes
without torch's loss kernels."""

from torch.utils._python_dispatch import TorchDispatchMode


class OpsSeen(TorchDispatchMode):
    """Within: records the name of every ATen op torch dispatches, and runs it unchanged."""

    def __init__(self):
        super().__init__()
        self.ran = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ran.add(str(func))
        return func(*args, **(kwargs or {}))
