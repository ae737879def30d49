"""The evidence plugin: what a verification run reports.

Given ``--evidence DIR``, a pytest run writes ``DIR/report.json`` (schema: ``report.schema.json``
beside this file) and ``DIR/report.md``: what was checked, on which torch, device and dtypes, how
many examples, the largest error seen against the bound it had to meet, and the outcome. Test
processes attach what they measured to each test report (``user_properties``), so the plugin
works the same in one process and under pytest-xdist, where the controller merges the workers.
"""
