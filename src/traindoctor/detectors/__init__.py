"""Curve detectors: plain functions registered with @detector, grouped by family.

Importing this package imports every module listed here, which registers them.
"""

from importlib import import_module

MODULES = ()

for _name in MODULES:
    import_module(f".{_name}", __name__)
