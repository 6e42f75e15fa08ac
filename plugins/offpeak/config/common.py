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


class FieldProblems(ValueError):
    """Several mistakes a model's cross-field check found at once, each on the field it is
    about: ``[("natural_key", "names unknown field(s) ['sym']"), ...]``. The loader reports
    each on its own line, under its own field, not as one error on the model."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{loc}: {msg}" for loc, msg in problems))
