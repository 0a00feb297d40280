"""helm/check.py as a module: the tests render the chart with the same code ``make helm-lint`` runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("helm_check", ROOT / "helm" / "check.py")
assert _spec is not None and _spec.loader is not None
check = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = check  # dataclasses look their module up here
_spec.loader.exec_module(check)
