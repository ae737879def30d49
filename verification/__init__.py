"""The verification core: how the suite checks an implementation against the reference.

``registry`` declares each loss once; ``strategies`` and ``rejections`` draw its calls; ``compare`` is the one
comparison (through ``tolerance``'s bounds); ``ledger`` accounts for every example; ``reproducer`` writes the
snippet a failure carries; ``oracle`` is the exact arithmetic the reference itself is checked against.

tests/, examples/ and benchmarks/ import this package; it imports none of them (tests/meta/test_registry.py
checks the import graph).
"""
