"""Worked examples: implementations checked by the suite through --impl."""
