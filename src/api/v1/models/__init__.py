"""SQLModel tables, one module per table; the base class says which database holds it.

Every module in this package is imported by ``load_models()``, so a new model
file is picked up by migrations without editing ``migrations/env.py``.
"""

import importlib
import pkgutil

from sqlmodel import SQLModel

from src.core.databases import DATABASES


class UnassignedModelError(Exception):
    """A table class is defined on plain SQLModel, so no database would migrate it."""


def load_models() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    unassigned = sorted(mapper.class_.__name__ for mapper in SQLModel._sa_registry.mappers)
    if unassigned:
        bases = " or ".join(db.base.__name__ for db in DATABASES.values())
        raise UnassignedModelError(
            f"table class {', '.join(unassigned)} is defined on plain SQLModel and belongs to no "
            f"database; subclass {bases} from src.core.databases instead"
        )
