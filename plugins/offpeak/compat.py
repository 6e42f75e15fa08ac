"""Work-arounds for versions of Airflow, each guarded by the releases it applies to."""

# As the providers' version_compat.py: every work-around for a version of Airflow lives here,
# says which upstream issue it answers, and applies only up to the last airflow-core release
# known to need it, so an upgrade drops it (and a test says when it is still needed).

from __future__ import annotations

import functools
from typing import Any


def affected(version: str | None, last_affected: str) -> bool:
    """Whether Airflow ``version`` is one a work-around applies to: at most ``last_affected``,
    the last airflow-core release known to need it (None, no airflow-core installed: no)."""
    if not version:
        return False
    from packaging.version import Version

    return Version(Version(version).base_version) <= Version(last_affected)


def airflow_version() -> str | None:
    """This process's airflow-core version (None when it is not installed)."""
    import airflow

    return getattr(airflow, "__version__", None)


# --------------------------------------------------------------------------- dag.test() deadlines
# The upstream bug (apache/airflow#73428, open; proposed fix apache/airflow#73430): DAG.test()
# builds its "scheduler DAG" by serializing and deserializing the DAG in memory, so that DAG's
# ``deadline`` holds the encoded alerts (dicts), never the ids of the ``deadline_alert`` rows
# that a DAG read back from the metadata DB holds. When the run succeeds,
# DagRun.update_state (airflow/models/dagrun.py:1269-1271 in 3.3.2) calls
# DeadlineAlert.get_by_id(<dict>) to see whether the run's Deadline rows can be pruned, and the
# driver refuses the dict (psycopg2: "can't adapt type 'dict'", raised from
# airflow/models/deadline_alert.py:118): the command prints a traceback and exits 1 after every
# task succeeded. The scheduler's path is not affected: its DAGs come from the DB, with ids.
#
# The workaround does what the upstream fix does: given such a dict, DeadlineAlert.get_by_id
# returns the alert the dict encodes (an unsaved row, which is all update_state reads); any
# other argument goes to Airflow's own method. Building a DAG with our deadline wraps DAG.test()
# (offpeak.alerts.deadlines; cheap, no import of Airflow's ORM at parse time), and the wrapper
# patches get_by_id when DAG.test() runs on a DAG with a deadline: a scheduler, dag-processor or
# worker never calls it. Only on Airflow <= DAG_TEST_DEADLINES_UP_TO: a later release gets no
# patch; if it still has the bug, tests/dags/test_airflow_cli.py fails and the guard moves up.
# See docs/decisions.md.

# The last Airflow (airflow-core) release known to have the bug.
DAG_TEST_DEADLINES_UP_TO = "3.3.2"
_MARK = "__offpeak_deadline_fix__"


def fix_dag_test_deadlines() -> bool:
    """Make this process's ``DAG.test()`` safe for a DAG with a deadline, once; True when the
    work-around is in place, False when this Airflow does not need it."""
    from airflow.sdk import DAG

    if getattr(DAG.test, _MARK, False):
        return True
    if not affected(airflow_version(), DAG_TEST_DEADLINES_UP_TO):
        return False
    original = DAG.test

    @functools.wraps(original)
    def test(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.deadline:
            _accept_encoded_alerts()
        return original(self, *args, **kwargs)

    setattr(test, _MARK, True)
    DAG.test = test
    return True


def _accept_encoded_alerts() -> None:
    """DeadlineAlert.get_by_id also takes an encoded alert (a dict), as DAG.test() passes it."""
    from airflow.models.deadline_alert import DeadlineAlert

    if getattr(DeadlineAlert.get_by_id, _MARK, False):
        return
    by_id = DeadlineAlert.__dict__["get_by_id"].__func__

    @functools.wraps(by_id)
    def get_by_id(cls: Any, deadline_alert_id: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(deadline_alert_id, dict):
            return _decoded(cls, deadline_alert_id)
        return by_id(cls, deadline_alert_id, *args, **kwargs)

    setattr(get_by_id, _MARK, True)
    DeadlineAlert.get_by_id = classmethod(get_by_id)


def _decoded(model: Any, encoded: dict) -> Any:
    """The unsaved ``deadline_alert`` row of an encoded alert, as the dag-processor writes it
    (SerializedDagModel._create_deadline_alert_records)."""
    from airflow.serialization.definitions.deadline import DeadlineAlertFields as Fields
    from airflow.serialization.enums import Encoding

    data = encoded.get(Encoding.VAR, encoded)
    return model(
        name=data.get(Fields.NAME),
        reference=data[Fields.REFERENCE],
        interval=data[Fields.INTERVAL],
        callback_def=data[Fields.CALLBACK],
    )


# --------------------------------------------------------------------------- Param schema checks
# Param.resolve (airflow/sdk/definitions/param.py in task-sdk 1.3.2) validates through
# ``jsonschema.validate``, which first re-checks the schema itself against the JSON Schema
# meta-schema: ~0.7 ms a call, ~100x the validation of the value. Serialising a DAG resolves
# every Param of every task several times (comparing and printing the tasks' ParamsDicts), 54
# resolves per scrape DAG: 80% of what the dag-processor paid for our DAG files (docs/scaling.md;
# the upstream report is apache/airflow#32434, closed without a fix for this path).
#
# The work-around checks each distinct schema once per process: ``jsonschema.validate`` is
# replaced by a function that does what it does (validator_for, check_schema, best_match) but
# remembers the schemas whose check passed, keyed on their canonical JSON text and validator
# class, and the plain JSON values that passed each (the same six defaults, 54 times a DAG: ~13% of
# a shard's parse after the schema fix). A schema that fails its check is not remembered, so it
# raises SchemaError every time, as before; a value that fails is not remembered either; a
# schema that is not JSON text (it could change under the same key) is not remembered at all.
# jsonschema's own module functions, other callers included, see no other
# difference. Only on Airflow <= PARAM_SCHEMA_CHECKS_UP_TO.

PARAM_SCHEMA_CHECKS_UP_TO = "3.3.2"
# The values remembered as valid: at most _PASSED_LIMIT (schema, value) pairs, each value
# made only of None, bool, int, float, str, list and dict with str keys, compared by type as
# well (a tuple is the same JSON as a list, but not an array to jsonschema; True is not 1).
_SCALARS = frozenset({type(None), bool, int, float, str})
_PASSED_LIMIT = 4096


def _plain(value: Any, depth: int = 0) -> tuple | None:
    """A hashable, type-exact form of a JSON value, or None if ``value`` is anything else."""
    kind = type(value)
    if kind in _SCALARS:
        return (kind, value)
    if depth > 8:
        return None
    if kind is list:
        items = [_plain(item, depth + 1) for item in value]
        return None if None in items else (list, tuple(items))
    if kind is dict and all(type(k) is str for k in value):
        pairs = [(k, _plain(v, depth + 1)) for k, v in sorted(value.items())]
        return None if any(v is None for _, v in pairs) else (dict, tuple(pairs))
    return None


def check_param_schemas_once() -> bool:
    """Make this process's ``jsonschema.validate`` check each distinct schema once; True when
    the work-around is in place, False when this Airflow does not need it."""
    import jsonschema

    if getattr(jsonschema.validate, _MARK, False):
        return True
    if not affected(airflow_version(), PARAM_SCHEMA_CHECKS_UP_TO):
        return False
    import json

    from jsonschema import FormatChecker, exceptions, validators

    original = jsonschema.validate
    checked: set[tuple[type, str]] = set()
    passed: set[tuple] = set()

    @functools.wraps(original)
    def validate(instance: Any, schema: Any, cls: Any = None, *args: Any, **kwargs: Any) -> None:
        if cls is None:
            cls = validators.validator_for(schema)
        try:
            key = (cls, json.dumps(schema, sort_keys=True, allow_nan=False))
        except (TypeError, ValueError):
            return original(instance, schema, cls, *args, **kwargs)
        if key not in checked:
            cls.check_schema(schema)
            checked.add(key)
        # A value that passed this schema passes it again: validation, with jsonschema's own
        # FormatChecker of every format (Param.resolve's) or none, is a function of the two.
        seen = None
        checker = kwargs.get("format_checker")
        if (
            not args
            and set(kwargs) <= {"format_checker"}
            and (
                checker is None
                or (type(checker) is FormatChecker and checker.checkers == FormatChecker.checkers)
            )
        ):
            value = _plain(instance)
            seen = None if value is None else (key, checker is not None, value)
        if seen is not None and seen in passed:
            return None
        error = exceptions.best_match(cls(schema, *args, **kwargs).iter_errors(instance))
        if error is not None:
            raise error
        if seen is not None:
            if len(passed) >= _PASSED_LIMIT:
                passed.clear()
            passed.add(seen)
        return None

    setattr(validate, _MARK, True)
    jsonschema.validate = validate
    return True


# --------------------------------------------------------------------------- warehouse assets
# Asset(uri=...) normalises its URI through the handler of the URI's scheme, and the first such
# call makes Airflow discover every installed provider's asset-URI handlers by importing their
# asset modules (ProvidersManagerTaskRuntime.asset_uri_handlers, task-sdk 1.3.2): the Amazon
# provider's imports boto3, ~100 ms of the ~170 ms a task start paid to rebuild its one DAG
# (docs/benchmarks.md). Our warehouse URIs are written in the postgres provider's normal form
# (tests/unit/test_compat.py holds each equal to what Airflow's sanitiser returns), so they
# need no normaliser: prebuilt_asset builds the Asset with Airflow's own constructor on a URI
# that needs no handler, then puts the (already normal) URI in place. Name, group and the
# other fields go through Airflow's validation as before. Only on Airflow <= ASSETS_UP_TO; on
# a later release the Asset is built the ordinary way.

ASSETS_UP_TO = "3.3.2"
_PLACEHOLDER_URI = "x-offpeak-placeholder:/"  # "x-" schemes skip normalisation


def prebuilt_asset(name: str, uri: str, group: str) -> Any:
    """``Asset(name=name, uri=uri, group=group)`` for a ``uri`` already in normal form,
    without the discovery of every provider's URI handlers on an affected Airflow."""
    from airflow.sdk import Asset

    if not affected(airflow_version(), ASSETS_UP_TO):
        return Asset(name=name, uri=uri, group=group)
    asset = Asset(name=name, uri=_PLACEHOLDER_URI, group=group)
    object.__setattr__(asset, "uri", uri)  # attrs' setattr hook would normalise it again
    return asset


# --------------------------------------------------------------------------- param errors
# A trigger whose conf does not fit a Param's schema gets HTTP 400 with the detail
# "Invalid input for param <key>: <jsonschema error>" (SerializedParamsDict.validate, airflow
# 3.3.2 serialization/definitions/param.py), and str() of a jsonschema error is its message
# followed by "Failed validating ... in schema:" and dumps of the whole schema and of the
# instance: a dozen lines of JSON under the one that says what is wrong. No upstream issue asks
# for a shorter one (the nearest, apache/airflow#39409, made it a 400 rather than a 500). So
# the api-server and scheduler, which load the plugin, keep the first line, the message.
# Only on Airflow <= PARAM_ERRORS_UP_TO.

PARAM_ERRORS_UP_TO = "3.3.2"


def short_param_errors() -> bool:
    """Make a Param's validation error one line where Airflow validates a trigger's conf;
    True when the work-around is in place, False when this Airflow does not need it."""
    if not affected(airflow_version(), PARAM_ERRORS_UP_TO):
        return False
    from airflow.serialization.definitions import param as serialized

    params_dict = serialized.SerializedParamsDict
    original = params_dict.validate
    if getattr(original, _MARK, False):
        return True
    error_class = serialized.ParamValidationError

    @functools.wraps(original)
    def validate(self: Any) -> dict[str, Any]:
        try:
            return original(self)
        except error_class as exc:
            first = str(exc).split("\n", 1)[0]
            raise error_class(first) from None

    setattr(validate, _MARK, True)
    params_dict.validate = validate
    return True
