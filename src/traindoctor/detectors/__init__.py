"""Curve detectors: plain functions registered with @detector, grouped by family.

Importing this package imports every public module in it (not those starting with "_"),
which runs their @detector decorators. Adding a detector is adding a file.
"""

import pkgutil
from importlib import import_module

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        import_module(f".{_info.name}", __name__)
