"""The embedded database: one SQLite file in WAL mode, shared by the store and scheduler.

``synchronous=FULL``: a step reported committed survives a power loss, not only a crash of
the process. Writers serialise on ``BEGIN IMMEDIATE`` with a busy timeout.

Connections come from a bounded pool and are checked out for one operation at a time
(:meth:`SqliteDatabase.reading`, :meth:`SqliteDatabase.write`). Not one per thread: a
threaded HTTP server starts a thread per request, and a connection per thread (two file
descriptors and a page cache each, never closed) ran the process out of descriptors after
a few hundred requests. A pool bounds both, whatever the number of threads, and
:meth:`SqliteDatabase.close` closes every connection it opened.

Failures that may pass (busy or locked database, I/O error, full disk, a file that cannot
be opened) leave these context managers as :class:`~refluxo.errors.TransientError`, so the
store, its history readers and the scheduler all report them the way every port must: the
delivery is retried, the HTTP API answers 503. Constraint violations and programming errors
(an unknown table, bad SQL) stay what they are: retrying would not help.

The schema only grows, and a database written by an earlier version keeps working: opening
it adds what it lacks (:func:`migrate`), once, under the write lock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

from refluxo.backends.sqlite.errors import DatabaseUnreadable
from refluxo.errors import TransientError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    definition_version TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    head TEXT NOT NULL,
    input TEXT,
    pending TEXT,
    result_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    due_at INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_creation ON runs (created_at DESC, run_id DESC);

CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    node_index INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS results_by_node ON results (run_id, node_id, node_index);

CREATE TABLE IF NOT EXISTS definitions (
    version TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS deliveries (
    name TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    hop INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, available_at);

CREATE TABLE IF NOT EXISTS child_ends (
    parent_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    descendants INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (parent_id, version, idx)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS child_inputs (
    parent_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    idx INTEGER NOT NULL,
    input TEXT NOT NULL,
    PRIMARY KEY (parent_id, version, digest, idx)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS deliverer (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER NOT NULL,
    started TEXT NOT NULL,
    lock_file TEXT NOT NULL,
    holder TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS join_counts (
    parent_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    ended INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    PRIMARY KEY (parent_id, version)
) WITHOUT ROWID;
"""

SCHEMA_VERSION = 1
"""The schema this version writes (SQLite's ``user_version``; 0: before it was recorded,
brought up to date on open). A database of a later schema is refused, not misread."""

OVERDUE_INDEX = (
    "CREATE INDEX IF NOT EXISTS runs_by_due_time ON runs (due_at, run_id) WHERE due_at IS NOT NULL"
)
"""The reconciler's index: runs whose next step is expected, by expected time. Created
after :func:`migrate` (a database from before ``due_at`` gets the column first)."""

DEFAULT_PATH = Path(".refluxo") / "refluxo.db"

DEFAULT_POOL_SIZE = 16
"""Connections open at most: readers run in parallel (WAL), writers queue in SQLite."""

BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for the write lock, and a caller for a free connection."""

_TRANSIENT_CODES = frozenset(
    {
        5,  # SQLITE_BUSY: another connection holds the lock past the busy timeout
        6,  # SQLITE_LOCKED: a conflicting lock within this process
        10,  # SQLITE_IOERR (and its extended codes): a read or write failed
        13,  # SQLITE_FULL: the disk (or the file size limit) is full
        14,  # SQLITE_CANTOPEN: the file or its journal could not be opened (no descriptor)
        15,  # SQLITE_PROTOCOL: a WAL lock race that SQLite gave up retrying
        8,  # SQLITE_READONLY: the file (or its directory) is not writable right now;
        #     an operator fixing the permission lets the delivery go on
    }
)


def _has_column(connection: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in connection.execute(f"PRAGMA table_info({table})"))


def migrate(connection: sqlite3.Connection) -> None:
    """Bring a database written by an earlier version up to the current schema.

    ``child_ends.descendants`` (what each ended child's waits started, see
    :class:`~refluxo.runtime.ports.ChildEnd`): added if missing, 0 for ends recorded before.
    ``runs.due_at`` (when each run's next step is expected, see
    :func:`refluxo.runtime.due.expected_at`): added if missing, and filled in from each
    unfinished run's head and ``updated_at``, in the caller's write transaction.
    """
    if not _has_column(connection, "child_ends", "descendants"):
        connection.execute(
            "ALTER TABLE child_ends ADD COLUMN descendants INTEGER NOT NULL DEFAULT 0"
        )
    if _has_column(connection, "runs", "due_at"):
        return
    # Here, not at the top: they load the models, which reading a run as stored does not.
    from refluxo.runtime.due import expected_at
    from refluxo.runtime.records import decode_head

    connection.execute("ALTER TABLE runs ADD COLUMN due_at INTEGER")
    rows = connection.execute(
        "SELECT run_id, head, updated_at FROM runs WHERE status IN ('active', 'error', 'paused')"
    ).fetchall()
    connection.executemany(
        "UPDATE runs SET due_at = ? WHERE run_id = ?",
        [(expected_at(decode_head(head), updated), run_id) for run_id, head, updated in rows],
    )


def is_transient(error: sqlite3.Error) -> bool:
    """Whether ``error`` may pass if the same operation is tried again later."""
    if not isinstance(error, sqlite3.OperationalError):
        return False  # IntegrityError, ProgrammingError, corruption: retrying cannot help
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _TRANSIENT_CODES
    message = str(error).lower()
    return any(
        part in message
        for part in ("locked", "busy", "disk i/o", "disk is full", "unable to open", "readonly")
    )


def transient(error: sqlite3.Error) -> TransientError:
    """``error`` as the port's retryable failure (chain it: ``raise ... from error``)."""
    name = getattr(error, "sqlite_errorname", None) or type(error).__name__
    return TransientError(f"SQLite {name}: {error}")


class SqliteDatabase:
    """A SQLite file with the refluxo schema, and a bounded pool of connections to it.

    Args:
        path: the database file (created, with its directory, if missing).
        synchronous: SQLite's durability mode; ``FULL`` survives power loss.
        pool_size: connections open at most; a caller waits for a free one.
        timeout: seconds a writer waits for the lock, and a caller for a connection,
            before a :class:`~refluxo.errors.TransientError`.
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_PATH,
        *,
        synchronous: str = "FULL",
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        if pool_size < 1:
            raise ValueError("a connection pool needs at least one connection")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self.pool_size = pool_size
        self.timeout = timeout
        self._available = threading.Condition()
        self._idle: list[sqlite3.Connection] = []
        self._busy: set[sqlite3.Connection] = set()
        self._retired: set[sqlite3.Connection] = set()
        self._opening = 0
        self._inspection: sqlite3.Connection | None = None
        try:
            self._prepare()
        except DatabaseUnreadable:
            self.close()
            raise
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and is_transient(err):
                raise
            self.close()
            raise DatabaseUnreadable(
                f"{self.path} cannot be read as a refluxo database ({err}): move it away to "
                "start afresh, or restore it from a backup"
            ) from None

    def _prepare(self) -> None:
        """Create the schema, or bring an earlier version's up to date; refuse a later
        version's (its tables may mean something this version does not know) and another
        application's, before anything is written to either (not even WAL mode)."""
        version = self._check_owner()
        with self.reading() as connection:
            connection.executescript(SCHEMA)
            current = (
                version == SCHEMA_VERSION
                and _has_column(connection, "runs", "due_at")
                and _has_column(connection, "child_ends", "descendants")
            )
        if not current:
            with self.write() as connection:  # re-checked under the write lock
                migrate(connection)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        with self.reading() as connection:
            connection.execute(OVERDUE_INDEX)

    def _check_owner(self) -> int:
        """The file's schema version, read without changing it; raises
        :class:`DatabaseUnreadable` for a later version's or another application's."""
        plain = sqlite3.connect(self.path, timeout=self.timeout)
        try:
            version = int(plain.execute("PRAGMA user_version").fetchone()[0])
            tables = {
                row[0]
                for row in plain.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        finally:
            plain.close()
        if version > SCHEMA_VERSION:
            raise DatabaseUnreadable(
                f"{self.path} was written by a later version of refluxo (schema {version}; "
                f"this one knows schemas up to {SCHEMA_VERSION}): upgrade refluxo to use it"
            )
        if tables and "runs" not in tables:
            raise DatabaseUnreadable(
                f"{self.path} is another application's database (it has tables, none of "
                "refluxo's): choose another file"
            )
        return version

    # -- checking out -------------------------------------------------------------------

    def reading(self) -> AbstractContextManager[sqlite3.Connection]:
        """A pooled connection for reads (autocommit: each statement sees the latest commit).

        Fetch every row inside the block: the connection goes back to the pool after it.
        """
        return _Lent(self, False)

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        return _Lent(self, True)

    def connection(self) -> sqlite3.Connection:
        """One shared connection for ad-hoc reads from outside the runtime (tests, tools).

        The runtime never uses it (it checks connections out of the pool); it is opened on
        first use and closed by :meth:`close`, so it costs one connection whatever the
        number of threads that call this.
        """
        with self._available:
            if self._inspection is None:
                self._inspection = self._connect()
            return self._inspection

    def close(self) -> None:
        """Close every connection: idle ones now, checked-out ones when they come back.

        The pool stays usable: a later operation opens a new connection.
        """
        with self._available:
            idle, self._idle = self._idle, []
            self._retired |= self._busy
            self._busy = set()
            inspection, self._inspection = self._inspection, None
            self._available.notify_all()
        for connection in idle:
            connection.close()
        if inspection is not None:
            inspection.close()

    @property
    def open_connections(self) -> int:
        """Connections currently open by the pool (idle, checked out, or closing)."""
        with self._available:
            return len(self._idle) + len(self._busy) + len(self._retired) + self._opening

    # -- internals ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.timeout
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        except BaseException:
            connection.close()
            raise
        return connection

    def _checkout(self) -> sqlite3.Connection:
        """An idle connection, a new one while under the bound, or wait for one."""
        with self._available:
            if self._idle:
                connection = self._idle.pop()
                self._busy.add(connection)
                return connection
            deadline = time.monotonic() + self.timeout
            while True:
                if self._idle:
                    connection = self._idle.pop()
                    self._busy.add(connection)
                    return connection
                if len(self._busy) + len(self._retired) + self._opening < self.pool_size:
                    self._opening += 1  # hold the slot while connecting, outside the lock
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransientError(
                        f"all {self.pool_size} SQLite connections stayed busy for "
                        f"{self.timeout:g} s"
                    )
                self._available.wait(remaining)
        opened: sqlite3.Connection | None = None
        try:
            opened = self._connect()
        except sqlite3.Error as err:
            if is_transient(err):
                raise transient(err) from err
            raise
        finally:
            with self._available:
                self._opening -= 1
                if opened is None:
                    self._available.notify()
                else:
                    self._busy.add(opened)
        return opened

    @staticmethod
    def _settle(connection: sqlite3.Connection) -> bool:
        """Roll back what an interrupted operation left open; False if that failed too."""
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except sqlite3.Error:
            return False
        return not connection.in_transaction

    def _checkin(self, connection: sqlite3.Connection, healthy: bool) -> None:
        """Back to the pool; closed instead if broken, or if the pool closed meanwhile."""
        with self._available:
            keep = healthy and connection in self._busy and not connection.in_transaction
            self._busy.discard(connection)
            self._retired.discard(connection)
            if keep:
                self._idle.append(connection)
            self._available.notify()
        if not keep:
            connection.close()


class _Lent:
    """One checkout of a pooled connection, as a context manager (:meth:`SqliteDatabase.reading`,
    and with ``transaction`` a write transaction, :meth:`SqliteDatabase.write`).

    On the way out the connection goes back to the pool: as it is after success (the
    transaction committed), rolled back after any exception (closed instead if that fails
    too). SQLite failures that may pass leave as :class:`~refluxo.errors.TransientError`. A
    class rather than a generator-based context manager: every step passes here twice.
    """

    __slots__ = ("_connection", "_db", "_transaction")

    def __init__(self, db: SqliteDatabase, transaction: bool) -> None:
        self._db = db
        self._transaction = transaction
        self._connection: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        connection = self._db._checkout()
        self._connection = connection
        if self._transaction:
            try:
                connection.execute("BEGIN IMMEDIATE")
            except BaseException as err:
                self._give_back(connection, err)
        return connection

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        connection = self._connection
        assert connection is not None
        self._connection = None
        if error is None:
            if self._transaction:
                try:
                    connection.execute("COMMIT")
                except BaseException as err:
                    self._give_back(connection, err)
            self._db._checkin(connection, True)
            return
        healthy = self._db._settle(connection)
        self._db._checkin(connection, healthy)
        if isinstance(error, sqlite3.Error) and is_transient(error):
            raise transient(error) from error

    def _give_back(self, connection: sqlite3.Connection, error: BaseException) -> None:
        """After ``error`` on the way in or out: settle, return the connection, re-raise."""
        self._connection = None
        healthy = self._db._settle(connection)
        self._db._checkin(connection, healthy)
        if isinstance(error, sqlite3.Error) and is_transient(error):
            raise transient(error) from error
        raise error
