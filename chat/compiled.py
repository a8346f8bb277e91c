"""Queries the pages and the stream run on every request and reply, compiled to SQL once.

Building a QuerySet and compiling it costs Django some 0.3–0.5 ms of CPU per query, several
times what SQLite takes to run it: most of a page's database time. A `CompiledQuery` is
written as an ordinary QuerySet (so the ORM still writes its SQL, for SQLite and PostgreSQL
alike); it is compiled once per database with stand-in values for its parameters, and each
call runs that SQL with the real values and converts the rows as Django would.

It keeps no data, only SQL text and the converters of its columns: nothing in it can be stale
or shown to another user. It is kept per database (alias and backend), for all the threads'
connections to it, and holds none of them: each call prepares its values and converts
its rows with the connection of the thread it runs in. (Kept per connection object, it kept
every thread's connection alive, open, after the thread was gone: each request thread beyond
`chatsite.handlers.KEPT_THREADS` left one behind, and compiled every query anew.)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Expression, Field, Model, QuerySet
from django.db.models.query import get_related_populators
from django.db.models.signals import post_save, pre_save
from django.db.models.sql import InsertQuery, UpdateQuery
from django.utils.dateparse import parse_datetime

M = TypeVar("M", bound=Model)

# Stand-in parameter values: large and odd enough that no constant of a query equals one, and
# within a 32-bit integer column's range (PostgreSQL compiles a lookup out of range as empty).
_INT_MARKER = 1_934_003_117
_DATETIME_MARKER = datetime(1971, 2, 3, 4, 5, 6, 789_000, tzinfo=UTC)
_DATE_MARKER = date(1971, 2, 3)


@dataclass(frozen=True)
class _Slot:
    """Where a parameter goes among the SQL's parameters, and how its value is put there
    (`prep(value, connection)`, with the connection of the call)."""

    name: str
    prep: Callable[[Any, BaseDatabaseWrapper], Any]


def _adapt_datetime(value: Any, connection: BaseDatabaseWrapper) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _adapt_date(value: Any, connection: BaseDatabaseWrapper) -> Any:
    return connection.ops.adapt_datefield_value(value)


def _as_str(value: Any, connection: BaseDatabaseWrapper) -> str:
    return str(value)


def _as_int(value: Any, connection: BaseDatabaseWrapper) -> int:
    return int(value)


@dataclass(frozen=True)
class _IntOf:
    """An int as the typed int the backend put in the parameter's place."""

    kind: type[int]

    def __call__(self, value: Any, connection: BaseDatabaseWrapper) -> int:
        return self.kind(value)


def _as_uuid(value: Any, connection: BaseDatabaseWrapper) -> uuid.UUID:
    return _uuid(value)


def _as_uuid_hex(value: Any, connection: BaseDatabaseWrapper) -> str:
    return _uuid(value).hex


@dataclass(frozen=True)
class _OpsConverter:
    """A converter of the backend's (`connection.ops`), kept by name and bound to the call's
    connection: a bound method would keep the connection it was bound to alive."""

    name: str


def _bound(function: Any, connection: BaseDatabaseWrapper) -> Any:
    return getattr(connection.ops, function.name) if type(function) is _OpsConverter else function


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]  # constants, and _Slot where a parameter goes
    converters: dict[int, tuple[list[Any], Any]]
    # For model instances, as Django's ModelIterable makes them: the model's columns and
    # their attribute names, and what fills in the rows of `select_related`.
    model: type[Model]
    columns: slice
    names: tuple[str, ...]
    related: tuple[Any, ...]


def _related_populators(klass_info: dict[str, Any], select: Any, alias: str) -> list[Any]:
    # (Django 5.2's signature; django-stubs describes a later one.)
    return get_related_populators(klass_info, select, alias)  # type: ignore[call-arg,no-any-return]


class Column:
    """The kind of a `CompiledUpdate` parameter that is a value set to a column (one column):
    a plain value its field takes (None, a duration, JSON, a related instance...), prepared
    at each call as `QuerySet.update` prepares it. Not an expression (`F`, `Now()`): those
    are compiled into the SQL, and go in `build`'s values as they are."""


class _ColumnMarker(Expression):
    """The stand-in for a `Column` parameter while the update compiles: one placeholder,
    whose parameter is this marker's token."""

    def __init__(self) -> None:
        super().__init__()
        self.token = object()

    def resolve_expression(self, *args: Any, **kwargs: Any) -> _ColumnMarker:
        return self

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        return "%s", (self.token,)


@dataclass(frozen=True)
class _FieldPrep:
    """How `QuerySet.update` prepares a value for `field`'s column."""

    field: Field[Any, Any]

    def __call__(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        if hasattr(value, "resolve_expression"):
            raise TypeError(f"A Column parameter takes a value, not an expression: {value!r}")
        if hasattr(value, "prepare_database_save"):  # a model instance
            if not self.field.remote_field:
                raise TypeError(f"Tried to update field {self.field} with a model instance.")
            value = value.prepare_database_save(self.field)
        return self.field.get_db_prep_save(value, connection=connection)


def _marker(kind: type, number: int) -> Any:
    """The stand-in for a query's parameter `number` (each of a query's differs)."""
    if kind is Column:
        return _ColumnMarker()
    if kind is int:
        return _INT_MARKER + number
    if kind is uuid.UUID:
        return uuid.uuid4()
    if kind is str:
        return f"\x1fchat.compiled {uuid.uuid4().hex} {number}\x1f"
    if kind is datetime:
        return _DATETIME_MARKER + timedelta(microseconds=number)
    if kind is date:
        return _DATE_MARKER + timedelta(days=number)
    raise ImproperlyConfigured(
        f"A compiled query takes int, UUID, str, datetime and date parameters, not {kind}."
    )


def _sqlite_datetime(value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
    """SQLite's `convert_datetimefield_value`, with its checks written out: the same value, in
    three calls where Django's takes nine (a sidebar or a message tree reads a hundred). The
    connection's time zone is None exactly when settings.USE_TZ is off (and is read again
    when that setting changes, as Django's converter reads it)."""
    if value is not None:
        if not isinstance(value, datetime):
            value = parse_datetime(value)
        zone = connection.timezone
        if zone is not None and value.utcoffset() is None:  # timezone.is_aware, make_aware
            value = value.replace(tzinfo=zone)
    return value


def _lean_converters(
    converters: dict[int, tuple[list[Any], Any]], connection: BaseDatabaseWrapper
) -> dict[int, Any]:
    """The converters of a compiled query's columns, SQLite's datetime converter replaced by
    `_sqlite_datetime` (other databases' are kept: importing SQLite's backend there, before
    it is loaded, fails on its circular import)."""
    general: Any = None
    if connection.vendor == "sqlite":
        from django.db.backends.sqlite3.operations import DatabaseOperations  # loaded by now

        general = DatabaseOperations.convert_datetimefield_value

    def portable(function: Any) -> Any:
        if general is not None and getattr(function, "__func__", None) is general:
            return _sqlite_datetime
        if getattr(function, "__self__", None) is connection.ops:
            return _OpsConverter(function.__name__)
        if getattr(function, "__self__", None) is connection:
            raise ImproperlyConfigured(f"A converter bound to the connection: {function}")
        return function  # a field's own (`from_db_value`): fields outlive connections

    return {
        position: ([portable(f) for f in functions], expression)
        for position, (functions, expression) in converters.items()
    }


def _database(connection: BaseDatabaseWrapper) -> tuple[str, str]:
    """What a compiled query is kept for: one database, whichever thread's connection to it."""
    return connection.alias, connection.vendor


def _uuid(value: Any) -> uuid.UUID:
    """A UUID given as one or as its text, as UUIDField takes it."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _slot_for(
    name: str, marker: Any, prepped: Any, connection: BaseDatabaseWrapper
) -> _Slot | None:
    """The slot of parameter `name` if `prepped` is its stand-in as the backend takes it."""
    if isinstance(marker, datetime):
        matches = prepped == _adapt_datetime(marker, connection)
        return _Slot(name, _adapt_datetime) if matches else None
    if isinstance(marker, date):
        return _Slot(name, _adapt_date) if prepped == _adapt_date(marker, connection) else None
    if isinstance(marker, str):
        return _Slot(name, _as_str) if prepped == marker else None
    if isinstance(marker, uuid.UUID):
        if prepped == marker:  # a backend with a UUID type (PostgreSQL)
            return _Slot(name, _as_uuid)
        if prepped == marker.hex:  # stored as text (SQLite)
            return _Slot(name, _as_uuid_hex)
        return None
    if type(prepped) is int and prepped == marker:
        return _Slot(name, _as_int)
    if isinstance(prepped, int) and not isinstance(prepped, bool) and prepped == marker:
        return _Slot(name, _IntOf(type(prepped)))  # psycopg's Int4, say, in an expression
    return None


def _slots(
    sql: str,
    params: Any,
    markers: dict[str, Any],
    connection: BaseDatabaseWrapper,
    columns: dict[object, _Slot] | None = None,
) -> tuple[Any, ...]:
    """The SQL's parameters: constants, and a _Slot where a parameter's stand-in went
    (`columns`: the slots of `Column` parameters, by their markers' tokens)."""
    slots: list[Any] = []
    found: list[str] = []
    for value in params:
        if columns and type(value) is object and value in columns:
            slot: _Slot | None = columns[value]
        else:
            slot = next(
                (
                    s
                    for name, marker in markers.items()
                    if not isinstance(marker, _ColumnMarker)
                    and (s := _slot_for(name, marker, value, connection)) is not None
                ),
                None,
            )
        if slot is not None:
            found.append(slot.name)
        slots.append(slot if slot is not None else value)
    if set(found) != set(markers):
        raise ImproperlyConfigured(
            f"Each parameter of a compiled query must reach its SQL: {found} in {sql}"
        )
    return tuple(slots)


class CompiledQuery(Generic[M]):
    """`build(**params)` compiled once per database. `params` names each parameter's type
    (int, UUID, str or an aware datetime); each must reach the SQL as a parameter (once or
    more). `rows` answers the
    selected columns as tuples, converted as `values_list` converts them; `instances` answers
    model instances of a query that selects whole rows (or `only` some fields)."""

    def __init__(self, build: Callable[..., QuerySet[M, Any]], /, **params: type):
        self.build = build
        self.params = params
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _markers(self) -> dict[str, Any]:
        return {
            name: _marker(kind, number) for number, (name, kind) in enumerate(self.params.items())
        }

    def _compile(self, connection: BaseDatabaseWrapper) -> _Compiled:
        markers = self._markers()
        queryset = self.build(**markers)
        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        slots = _slots(sql, params, markers, connection)
        expressions = [column for column, _, _ in compiler.select]
        klass_info = compiler.klass_info or {"model": queryset.model, "select_fields": [0]}
        fields = klass_info["select_fields"]
        columns = slice(fields[0], fields[-1] + 1)
        return _Compiled(
            sql,
            slots,
            _lean_converters(compiler.get_converters(expressions), connection),
            klass_info["model"],
            columns,
            tuple(getattr(getattr(e, "target", None), "attname", "") for e in expressions[columns]),
            tuple(_related_populators(klass_info, compiler.select, connection.alias)),
        )

    def _compiled_for(self, connection: BaseDatabaseWrapper) -> _Compiled:
        key = _database(connection)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(connection)
        return compiled

    def _run(self, params: dict[str, Any]) -> tuple[_Compiled, BaseDatabaseWrapper, list[Any]]:
        connection = connections[DEFAULT_DB_ALIAS]
        compiled = self._compiled_for(connection)
        values = [
            p.prep(params[p.name], connection) if isinstance(p, _Slot) else p
            for p in compiled.params
        ]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, values)
            rows = cursor.fetchall()
        if compiled.converters and rows:
            converters = [
                (position, ([_bound(f, connection) for f in functions], expression))
                for position, (functions, expression) in compiled.converters.items()
            ]
            converted = []
            for row in rows:
                row = list(row)
                for position, (functions, expression) in converters:
                    value = row[position]
                    for function in functions:
                        value = function(value, expression, connection)
                    row[position] = value
                converted.append(row)
            rows = converted
        return compiled, connection, rows

    def rows(self, **params: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._run(params)[2]]

    def instances(self, **params: Any) -> list[M]:
        compiled, connection, rows = self._run(params)
        model: Any = compiled.model
        found = []
        for row in rows:
            instance = model.from_db(connection.alias, compiled.names, row[compiled.columns])
            for related in compiled.related:
                related.populate(row, instance)
            found.append(instance)
        return found

    # From async code, in a thread as Django's own `a*` methods go (`QuerySet.afirst`).

    async def arows(self, **params: Any) -> list[tuple[Any, ...]]:
        return await sync_to_async(self.rows)(**params)

    async def ainstances(self, **params: Any) -> list[M]:
        return await sync_to_async(self.instances)(**params)


class CompiledUpdate(Generic[M]):
    """`queryset.update(**values)`, with `build(**params)` answering (queryset, values),
    compiled once per database; `execute` answers the number of rows updated. For an update
    of the model's own columns (no signals are sent, as `QuerySet.update` sends none). Its
    parameters take the kinds a `CompiledQuery`'s do, and `Column` for a value set to a
    column as it is."""

    def __init__(
        self, build: Callable[..., tuple[QuerySet[M, Any], dict[str, Any]]], /, **params: type
    ):
        self.build = build
        self.params = params
        self._compiled: dict[tuple[str, str], tuple[str, tuple[Any, ...]]] = {}

    def _compile(self, connection: BaseDatabaseWrapper) -> tuple[str, tuple[Any, ...]]:
        markers = {
            name: _marker(kind, number) for number, (name, kind) in enumerate(self.params.items())
        }
        queryset, values = self.build(**markers)
        query: Any = queryset.query.chain(UpdateQuery)
        query.add_update_values(values)
        compiler = query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        if query.related_updates:
            raise ImproperlyConfigured("A compiled update changes its own model's columns only.")
        names = {id(marker): name for name, marker in markers.items()}
        columns: dict[object, _Slot] = {}
        for field, _, value in query.values:
            if not isinstance(value, _ColumnMarker) or id(value) not in names:
                continue
            if value.token in columns or hasattr(field, "get_placeholder"):
                raise ImproperlyConfigured(
                    f"A Column parameter sets one column, with a plain placeholder: {field}"
                )
            columns[value.token] = _Slot(names[id(value)], _FieldPrep(field))
        return sql, _slots(sql, params, markers, connection, columns)

    def execute(self, **params: Any) -> int:
        connection = connections[DEFAULT_DB_ALIAS]
        key = _database(connection)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(connection)
        sql, slots = compiled
        values = [p.prep(params[p.name], connection) if isinstance(p, _Slot) else p for p in slots]
        with transaction.mark_for_rollback_on_error(using=connection.alias):
            with connection.cursor() as cursor:
                cursor.execute(sql, values)
                return int(cursor.rowcount)

    async def aexecute(self, **params: Any) -> int:
        return await sync_to_async(self.execute)(**params)


class CompiledInsert(Generic[M]):
    """`model.objects.create(**values)`, its INSERT compiled once per database. The instance
    is made, its fields' values taken (`pre_save`, as `auto_now_add` sets them) and prepared
    as `Model.save` makes, takes and prepares them, and its primary key set from the row the
    database returns. For a model saved by Django's own `save`, with no parent model and an
    automatic primary key. It saves through the ORM while anything listens to the model's
    `pre_save` or `post_save` signals (the ORM sends them), for a database that cannot return
    the new row's key, and for a value that is an expression."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._compiled: dict[tuple[str, str], tuple[str, tuple[Any, ...], tuple[Any, ...]]] = {}

    def _compile(
        self, connection: BaseDatabaseWrapper
    ) -> tuple[str, tuple[Any, ...], tuple[Any, ...]]:
        meta = self.model._meta
        if meta.parents or meta.auto_field is None:
            raise ImproperlyConfigured(
                "A compiled insert is for a model with no parent and an automatic primary key."
            )
        fields = tuple(
            f for f in meta.local_concrete_fields if not f.generated and f is not meta.auto_field
        )
        returning = tuple(meta.db_returning_fields)
        query = InsertQuery(self.model)
        query.insert_values(fields, [self.model()])
        compiler: Any = query.get_compiler(connection=connection)
        compiler.returning_fields = returning
        [(sql, params)] = compiler.as_sql()
        if len(params) != len(fields) or compiler.returning_params:
            raise ImproperlyConfigured(f"A compiled insert takes one parameter a field: {sql}")
        cols = [field.get_col(meta.db_table) for field in returning]
        if compiler.get_converters(cols):
            raise ImproperlyConfigured("A compiled insert's returned columns need no converting.")
        return sql, fields, returning

    def create(self, **values: Any) -> M:
        model = self.model
        connection = connections[DEFAULT_DB_ALIAS]
        if (
            pre_save.has_listeners(model)
            or post_save.has_listeners(model)
            or not connection.features.can_return_columns_from_insert  # SQLite before 3.35
            or any(hasattr(value, "resolve_expression") for value in values.values())
        ):
            return model._default_manager.create(**values)
        instance = model(**values)
        if instance.pk is not None:  # a key of its own: Django's `save` inserts it too
            return model._default_manager.create(**values)
        unsaved: Any = instance
        unsaved._prepare_related_fields_for_save(operation_name="save")  # as `save` does
        key = _database(connection)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(connection)
        sql, fields, returning = compiled
        with transaction.mark_for_rollback_on_error(using=connection.alias):
            params = [
                f.get_db_prep_save(f.pre_save(instance, True), connection=connection)
                for f in fields
            ]
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
        for value, field in zip(row, returning, strict=True):
            setattr(instance, field.attname, value)
        instance._state.adding = False
        instance._state.db = connection.alias
        return instance
