"""What every config model shares: strict frozen models, and the rule for names in DAG ids."""

from __future__ import annotations

from pydantic import AfterValidator, BaseModel, ConfigDict

from offpeak import naming

IDENTIFIER = r"^[a-z][a-z0-9_]{0,47}$"


def _id_part(what: str) -> AfterValidator:
    """A validator for a name that becomes part of DAG ids (see offpeak.naming)."""
    # Looked up at each call, not bound here: a test may stand in for the rule.
    return AfterValidator(lambda value: naming.check_name(value, what))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
