"""A Griffe extension of the documentation site (mkdocs.yml, mkdocstrings' `extensions`): a parameter whose
default is a module constant (`min_agreement: float = MIN_AGREEMENT`) is shown with the constant's value
(`= 0.98`), which is what a reader of the API page needs; the code keeps the constant.

The value is read from the module as imported (the runtime imports without torch, so this is cheap); a name that
is not a plain constant of that module (a number, string, bool or None) is left as written."""

from __future__ import annotations

import importlib
from typing import Any

import griffe

PLAIN = (bool, int, float, str, type(None))


class ConstantDefaults(griffe.Extension):
    def on_function_instance(self, *, func: griffe.Function, **_: Any) -> None:
        for parameter in func.parameters:
            default = parameter.default
            if not isinstance(default, griffe.ExprName) or not default.name.isupper():
                continue
            try:
                module = importlib.import_module(func.module.path)
            except ImportError:
                return
            value = getattr(module, default.name, parameter)
            if isinstance(value, PLAIN):
                parameter.default = repr(value)
