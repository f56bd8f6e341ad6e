"""Actual state: the SQLAlchemy schema, migrations and the store. The only package that imports SQLAlchemy."""

from reconciler.state.database import DatabaseError
from reconciler.state.store import Store, Tx

__all__ = ["DatabaseError", "Store", "Tx"]
