"""The strict test behind an adapter's REJECTION_DIVERGENCES: for a named defect, some input with that defect is
still computed by the implementation, or rejected with another exception class than torch's. It fails once the
implementation rejects every input of the defect as torch does, so the divergence's name can be retired."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from hypothesis import Phase, find, settings

from verification import registry
from verification.cases import Case, to_torch
from verification.rejections import DTYPE


def assert_still_diverges(adapter: ModuleType, defect_name: str) -> Case:
    """The first drawn input of the defect ``defect_name`` that ``adapter`` handles otherwise than torch; raises
    hypothesis's NoSuchExample if it handles all it tried (100) as torch does."""
    (defect,) = [d for d in registry.all_rejections() if str(d) == defect_name]
    function: Callable[..., object] = getattr(adapter, defect.loss)

    def handled_otherwise(case: Case) -> bool:
        input, target, kwargs = to_torch(case, DTYPE, "cpu")
        try:
            function(input, target, **kwargs)
        except Exception as error:
            return type(error) is not defect.expected
        return True

    # The first such input settles it: no shrinking (find's default), which would only cost time.
    found: Case = find(
        defect.cases(),
        handled_otherwise,
        settings=settings(max_examples=100, database=None, deadline=None, phases=[Phase.generate]),
    )
    return found
