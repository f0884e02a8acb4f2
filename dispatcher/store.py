"""All SQL lives here: engines, schema, and the batched reads and writes of the pipeline.

SQLite (WAL, busy timeout) by default, PostgreSQL via ``DATABASE_URL``. Every hot-path operation
is one statement per batch or wave, never one round trip per recipient. SQLAlchemy errors that
mean "the database is unavailable right now" become ``TransientError`` here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator, Sequence

try:
    import fcntl
except ImportError:   # Windows: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Engine, Integer, and_, bindparam, case, create_engine, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from .errors import NotFoundError, TransientError
from .models import (OPEN_STATUSES, Attempt, Batch, Campaign, CampaignState, Message, RejectedRow, Status,
                     Suppression, WebhookEvent, utcnow)

_json_str = json.encoder.encode_basestring_ascii   # type: ignore[attr-defined]  # C: what json.dumps uses for str

M = Message.__table__
B = Batch.__table__
C = Campaign.__table__
A = Attempt.__table__
R = RejectedRow.__table__
S = Suppression.__table__
W = WebhookEvent.__table__


LOADING_CHECKPOINT_PAGES = 10_000   # the WAL pages after which a connection storing a contact file checkpoints


def normalise_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


@functools.lru_cache(maxsize=8)
def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=8, max_overflow=8)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    return engine


def init_db(engine: Engine) -> None:
    """Bring the schema to the current revision (Alembic migrations)."""
    from .migrate import upgrade

    upgrade(engine)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    campaign_id: int
    phone: str
    region: str
    body: str
    segments: int
    opt_in: bool
    timezones: str | None
    attempts: int
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to write back for one message after a send attempt (or a send-time decision)."""
    message_id: int
    status: str
    reason: str | None = None
    not_before: datetime | None = None
    provider_message_id: str | None = None
    provider_code: str | None = None
    cost: float | None = None
    attempt: dict[str, Any] | None = None   # Attempt row values when an HTTP request was made


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_pg = engine.dialect.name == "postgresql"
        self._driver_unavailable = engine.dialect.loaded_dbapi.OperationalError
        self._writer_turn = _WriterTurn(None if self.is_pg else engine.url.database)
        # The hot path's statements, built once: constructing them costs more than running them.
        release, pick, touch = self._claim_statements()
        self._touch_q = (release, touch)
        self._send_sql = _SendSQL(engine.dialect, pick)

    # ------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def tx(self) -> Iterator[Connection]:
        with self._translated(), self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Database errors that mean "unavailable right now" as TransientError."""
        try:
            yield
        except OperationalError as exc:
            raise TransientError(f"database unavailable: {exc.orig}") from exc
        except self._driver_unavailable as exc:    # from the statements run on the driver's own cursor
            raise TransientError(f"database unavailable: {exc}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise TransientError(f"database connection lost: {exc.orig}") from exc
            raise

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.is_pg else sqlite.insert)(table)

    # ------------------------------------------------------------ campaigns
    def campaign(self, name_or_id: str | int) -> Campaign:
        with self.tx() as conn:
            q = select(C).where(C.c.id == name_or_id if isinstance(name_or_id, int) else C.c.name == name_or_id)
            row = conn.execute(q).mappings().first()
        if row is None:
            raise NotFoundError(f"no campaign named {name_or_id!r} (see `dispatcher campaigns`)")
        return Campaign(**row)

    def find_campaign(self, name: str) -> Campaign | None:
        try:
            return self.campaign(name)
        except NotFoundError:
            return None

    def campaigns(self) -> list[Campaign]:
        with self.tx() as conn:
            return [Campaign(**r) for r in conn.execute(select(C).order_by(C.c.id)).mappings()]

    def create_campaign(self, **values: Any) -> Campaign:
        with self.tx() as conn:
            cid = conn.execute(C.insert().values(**values).returning(C.c.id)).scalar_one()
        return self.campaign(int(cid))

    def set_state(self, campaign_id: int, state: CampaignState, reason: str | None = None,
                  *, only_from: Sequence[CampaignState] | None = None) -> bool:
        """Move a campaign to ``state``; with ``only_from``, only from those states. True if it moved."""
        values: dict[str, Any] = {"state": state.value, "state_reason": reason}
        now = utcnow()
        if state == CampaignState.RUNNING:
            values["started_at"] = func.coalesce(C.c.started_at, now)
        if state in (CampaignState.COMPLETED, CampaignState.CANCELLED, CampaignState.STOPPED):
            values["finished_at"] = now
        q = update(C).where(C.c.id == campaign_id).values(**values)
        if only_from is not None:
            q = q.where(C.c.state.in_([s.value for s in only_from]))
        with self.tx() as conn:
            return conn.execute(q).rowcount > 0

    def campaign_state(self, campaign_id: int) -> str:
        with self.tx() as conn:
            return conn.execute(select(C.c.state).where(C.c.id == campaign_id)).scalar_one()

    def update_campaign(self, campaign_id: int, **values: Any) -> None:
        with self.tx() as conn:
            conn.execute(update(C).where(C.c.id == campaign_id).values(**values))

    # ------------------------------------------------------------ loading
    def encode_message(self, row: dict[str, Any]) -> Any:
        """A message row (column values without campaign and batch ids, see ``insert_chunk``) in the form
        ``insert_chunk`` stores fastest, and that pickles: planning processes encode the rows they plan. On SQLite
        the tuple of its values bound as SQLAlchemy binds them (``line`` and ``phone`` first); on PostgreSQL the row
        itself."""
        if self.is_pg:
            return row
        _, _, encode = self._message_encoding
        return encode(row)

    def insert_chunk(self, campaign_id: int, first_seq: int, batches: list[list[Any]],
                     rejected: list[dict[str, Any]], loaded_lines: int) -> tuple[list[int], list[dict[str, Any]]]:
        """Write one chunk of the contact file in one transaction.

        ``batches`` are lists of message rows: dicts of column values without campaign/batch ids, each row with its
        own ``line``, or what ``encode_message`` makes of them. Numbers already present in the campaign become
        rejected rows ("duplicate of line N"). Returns (new batch ids, duplicate rows).
        """
        now = utcnow()
        if not self.is_pg:
            batches = [[r if not isinstance(r, dict) else self.encode_message(r) for r in batch] for batch in batches]
            with self.tx() as conn:
                return self._sqlite_chunk(conn, campaign_id, first_seq, batches, rejected, loaded_lines, now)
        batch_ids: list[int] = []
        sizes: dict[int, int] = {}
        duplicates: list[dict[str, Any]] = []
        with self.tx() as conn:
            if batches:
                seqs = dict(conn.execute(B.insert().values([
                    {"campaign_id": campaign_id, "seq": first_seq + i, "size": len(batch), "touched_at": now}
                    for i, batch in enumerate(batches)]).returning(B.c.seq, B.c.id)).all())
                batch_ids = [int(seqs[first_seq + i]) for i in range(len(batches))]
                sizes = {bid: len(batch) for bid, batch in zip(batch_ids, batches)}
            # A row is lost when its number is already in the campaign.
            lost = self._pg_insert(conn, campaign_id, batch_ids, batches, now) if any(batches) else []
            if lost:
                first = dict(conn.execute(select(M.c.phone, M.c.line).where(
                    M.c.campaign_id == campaign_id, M.c.phone.in_({phone for _, phone, _ in lost}))).all())
                for line, phone, bid in lost:
                    duplicates.append({"campaign_id": campaign_id, "line": line, "phone": phone,
                                       "reason": f"duplicate of line {first.get(phone, '?')}"})
                    sizes[bid] -= 1
                for bid in {bid for _, _, bid in lost}:
                    conn.execute(update(B).where(B.c.id == bid).values(size=sizes[bid]))
            all_rejected = [dict(r, campaign_id=campaign_id) for r in rejected] + duplicates
            if all_rejected:
                conn.execute(self._insert(R).on_conflict_do_nothing(index_elements=["campaign_id", "line"]), all_rejected)
            conn.execute(update(C).where(C.c.id == campaign_id).values(
                loaded_lines=loaded_lines, batch_count=first_seq + len(batches) - 1))
        return batch_ids, duplicates

    def _sqlite_chunk(self, conn: Connection, campaign_id: int, first_seq: int, batches: list[list[Any]],
                      rejected: list[dict[str, Any]], loaded_lines: int,
                      now: datetime) -> tuple[list[int], list[dict[str, Any]]]:
        """``insert_chunk`` on SQLite: the same rows written by the same statements as on PostgreSQL, in plain SQL on
        the driver's cursor (SQLAlchemy's statement building and result handling cost more than SQLite's work here).
        """
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        # A checkpoint syncs the files: every 1,000 pages (SQLite's default) a load of a million rows waits for
        # about 150 of them. This connection checkpoints less often; the WAL grows to about 40 MB.
        cur.execute(f"PRAGMA wal_autocheckpoint = {LOADING_CHECKPOINT_PAGES}")
        _, bind_time, _ = self._message_encoding
        touched = bind_time(now)
        batch_ids: list[int] = []
        sizes: dict[int, int] = {}
        duplicates: list[dict[str, Any]] = []
        if batches:
            seqs = dict(cur.execute(
                f"INSERT INTO batch (campaign_id, seq, size, touched_at) VALUES {_rows('(?, ?, ?, ?)', len(batches))} "
                "RETURNING seq, id",
                [v for i, batch in enumerate(batches) for v in (campaign_id, first_seq + i, len(batch), touched)]).fetchall())
            batch_ids = [int(seqs[first_seq + i]) for i in range(len(batches))]
            sizes = {bid: len(batch) for bid, batch in zip(batch_ids, batches)}
        # A row is lost when its number is already in the campaign.
        lost = self._sqlite_insert(cur, campaign_id, batch_ids, batches, touched) if any(batches) else []
        if lost:
            first: dict[str, int] = {}
            phones = sorted({phone for _, phone, _ in lost})
            for part in _parts(phones, 500):
                first.update(cur.execute("SELECT phone, line FROM message WHERE campaign_id = ? AND phone IN "
                                         f"({_rows('?', len(part))})", [campaign_id, *part]).fetchall())
            for line, phone, bid in lost:
                duplicates.append({"campaign_id": campaign_id, "line": line, "phone": phone,
                                   "reason": f"duplicate of line {first.get(phone, '?')}"})
                sizes[bid] -= 1
            cur.executemany("UPDATE batch SET size = ? WHERE id = ?",
                            [(sizes[bid], bid) for bid in sorted({bid for _, _, bid in lost})])
        all_rejected = [(campaign_id, r["line"], r["phone"], r["reason"]) for r in rejected] + \
            [(campaign_id, d["line"], d["phone"], d["reason"]) for d in duplicates]
        for part in _parts(all_rejected, 500):   # 2,000 parameters at most: within any SQLite's limit
            cur.execute(f"INSERT INTO rejected_row (campaign_id, line, phone, reason) VALUES {_rows('(?, ?, ?, ?)', len(part))} "
                        "ON CONFLICT (campaign_id, line) DO NOTHING", [v for r in part for v in r])
        cur.execute("UPDATE campaign SET loaded_lines = ?, batch_count = ? WHERE id = ?",
                    (loaded_lines, first_seq + len(batches) - 1, campaign_id))
        return batch_ids, duplicates

    def _pg_insert(self, conn: Connection, campaign_id: int, batch_ids: list[int], batches: list[list[Any]],
                   now: datetime) -> list[tuple[int, str, int]]:
        """Insert message rows (dicts), keeping the first of each number; (line, phone, batch id) of those that were
        not."""
        rows = []
        for bid, batch in zip(batch_ids, batches):
            for r in batch:
                r.update(campaign_id=campaign_id, batch_id=bid, updated_at=now)
            rows += batch
        stmt = self._insert(M).on_conflict_do_nothing(index_elements=["campaign_id", "phone"]).returning(M.c.line)
        landed = {line for (line,) in conn.execute(stmt, rows)}
        return [(r["line"], r["phone"], r["batch_id"]) for r in rows if r["line"] not in landed]

    def _sqlite_insert(self, cur: Any, campaign_id: int, batch_ids: list[int], batches: list[list[Any]],
                       updated_at: Any) -> list[tuple[int, str, int]]:
        """Insert encoded message rows, keeping the first of each number; (line, phone, batch id) of those that were
        not."""
        # Multi-row INSERTs: the driver's executemany costs half as much again as statements of many rows.
        import sqlite3

        head, _, _ = self._message_encoding
        params: list[Any] = []
        count = 0
        for bid, batch in zip(batch_ids, batches):
            ids = (campaign_id, bid, updated_at)
            for r in batch:
                params += ids
                params += r
            count += len(batch)
        width = len(params) // count
        # Rows per statement in powers of two (at most 512, and within SQLite's limit on parameters): the driver
        # keeps each statement it prepares, and ten sizes take less memory than one for every chunk's remainder.
        limit = cur.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        most = 1 << min(9, max(1, limit // width).bit_length() - 1)
        inserted = start = 0
        while start < count:
            n = min(most, 1 << ((count - start).bit_length() - 1))
            values = _rows("(" + ", ".join(["?"] * width) + ")", n)
            inserted += cur.execute(f"{head} VALUES {values} ON CONFLICT (campaign_id, phone) DO NOTHING",
                                    params[start * width:(start + n) * width]).rowcount
            start += n
        # The rowcount says whether any row was dropped; only then are the chunk's rows read back.
        if inserted == count:
            return []
        landed = {line for (line,) in cur.execute(
            f"SELECT line FROM message WHERE batch_id IN ({_rows('?', len(batch_ids))})", batch_ids).fetchall()}
        return [(r[0], r[1], bid) for bid, batch in zip(batch_ids, batches) for r in batch if r[0] not in landed]

    @functools.cached_property
    def _message_encoding(self) -> tuple[str, Any, Any]:
        """For SQLite: the INSERT's head, the bind processor of a time, and the function that encodes a message row.

        Values are bound as SQLAlchemy binds them: through each column's own bind processor (run once per distinct
        value, but for JSON, whose values are dicts); a column the row leaves out gets its default, or NULL.
        """
        import operator

        from sqlalchemy import JSON

        dialect = self.engine.dialect
        columns = [c for c in M.c if c.name not in ("id", "campaign_id", "batch_id", "updated_at")]
        assert [c.name for c in columns[:2]] == ["line", "phone"]
        head = f"INSERT INTO message (campaign_id, batch_id, updated_at, {', '.join(c.name for c in columns)})"
        processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
        defaults = {c.name: None if c.default is None else c.default.arg for c in columns}  # type: ignore[attr-defined]
        pick = operator.itemgetter(*defaults)
        plans: dict[tuple[str, ...], list[tuple[int, bool, Any]]] = {}   # the row's columns -> the values to process
        # JSON's processor is json.dumps itself unless the engine was given a serializer of its own
        sample = {"k": "v", "\u00e9\U0001f600": "\"\\\n\x00"}
        plain_json = all(p(sample) == flat_json(sample) for c, p in zip(columns, processors) if isinstance(c.type, JSON))
        memo: dict[tuple[int, Any], Any] = {}

        def encode(row: dict[str, Any]) -> tuple[Any, ...]:
            keys = tuple(row)
            processed = plans.get(keys)
            if processed is None:   # what SQLAlchemy processes: the values given and the defaults, not the NULLs
                processed = plans[keys] = [(i, isinstance(c.type, JSON), processors[i]) for i, c in enumerate(columns)
                                           if processors[i] is not None and (c.name in row or c.default is not None)]
            values = list(pick({**defaults, **row}))
            for i, per_value, process in processed:
                v = values[i]
                if per_value:
                    values[i] = flat_json(v) if plain_json and type(v) is dict else process(v)
                elif (i, v) in memo:
                    values[i] = memo[i, v]
                else:
                    if len(memo) > 4096:
                        memo.clear()
                    values[i] = memo[i, v] = process(v)
            return tuple(values)

        return head, M.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect), encode

    # ------------------------------------------------------------ sending
    def batch_info(self, batch_id: int) -> tuple[int, int, int]:
        """(campaign_id, seq, campaign batch_count)."""
        with self.tx() as conn:
            row = conn.execute(select(B.c.campaign_id, B.c.seq, C.c.batch_count).join(C, C.c.id == B.c.campaign_id)
                               .where(B.c.id == batch_id)).first()
        if row is None:
            raise NotFoundError(f"no batch {batch_id}")
        return int(row[0]), int(row[1]), int(row[2])

    def claim(self, batch_id: int, limit: int, now: datetime) -> list[Claimed]:
        """Atomically move up to ``limit`` queued messages of a batch to ``sending``.

        A conditional UPDATE: a message already claimed (a redelivered task, a duplicate task) is never
        returned twice. Due deferred messages of the batch are released first.
        """
        return self.exchange(batch_id, (), limit, now)[0]

    def record(self, outcomes: Sequence[Outcome], now: datetime, *, again: bool = False) -> None:
        """Write the result of a wave: message statuses and attempt rows, in one transaction. ``again``: after an
        exchange carrying them failed, which may have committed before its answer was lost; the outcomes of
        messages no longer ``sending`` were written by it and are skipped, so no attempt is recorded twice."""
        if outcomes and again:
            with self.tx() as conn:
                ids = [o.message_id for o in outcomes]
                open_ids = {i for part in _parts(ids, _SendSQL.ROWS_PER_STATEMENT) for (i,) in conn.execute(
                    select(M.c.id).where(M.c.id.in_(part), M.c.status == Status.SENDING.value))}
            outcomes = [o for o in outcomes if o.message_id in open_ids]
        if outcomes:
            self.exchange(0, outcomes, 0, now)

    def exchange(self, batch_id: int, outcomes: Sequence[Outcome], limit: int, now: datetime, *,
                 touch: bool = True) -> tuple[list[Claimed], dict[str, str]]:
        """``record(outcomes)`` then ``claim(batch_id, limit)`` in one transaction (one commit, one turn of
        SQLite's write lock), and the suppression entries of the claimed numbers, read once it is committed. All
        of the writes or none of them happen. With ``touch`` (a sender passes it about once a second) the batch's due deferred messages are
        released first and the batch is marked as worked on, for the reconciler."""
        sql = self._send_sql
        # SQLite has one writer at a time for the whole file, so the write turn holds only the statements and the
        # commit: the parameters are built before it, the claimed rows decoded and the suppression list read after.
        writes = sql.record(outcomes, now)
        rows: list[Any] = []
        with self._translated(), self.engine.connect() as conn:
            cur = sql.cursor(conn)
            with self._writer_turn(), conn.begin():
                for statement, params in writes:
                    cur.execute(statement, params)
                if limit > 0:
                    if touch:
                        release, touch_q = self._touch_q
                        params = {"_b": batch_id, "_now": now}
                        conn.execute(release, params)
                        conn.execute(touch_q, params)
                    rows = sql.claim(cur, batch_id, limit, now)
            if not rows:
                return [], {}
            claimed = sql.claimed(rows)
            return claimed, sql.suppressed(cur, [m.phone for m in claimed])

    def _claim_statements(self) -> tuple[Any, Any, Any]:
        b, now = bindparam("_b"), bindparam("_now", type_=M.c.updated_at.type)
        release = update(M).where(M.c.batch_id == b, M.c.status == Status.DEFERRED.value,
                                  M.c.not_before <= now).values(status=Status.QUEUED.value, updated_at=now)
        sub = (select(M.c.id).where(M.c.batch_id == b, M.c.status == Status.QUEUED.value)
               .order_by(M.c.id).limit(bindparam("_lim", type_=Integer)))
        # The outer batch_id term keeps the planner on the batch's index: on status alone SQLite scans every
        # queued message of every campaign for each claim.
        if self.is_pg:
            # A CTE is evaluated once; a LIMIT ... SKIP LOCKED subquery inside IN may be re-run by the
            # planner and claim more than ``limit`` rows.
            picked = sub.with_for_update(skip_locked=True).cte("picked")
            pick = update(M).where(M.c.batch_id == b, M.c.id.in_(select(picked.c.id)),
                                   M.c.status == Status.QUEUED.value).add_cte(picked)
        else:
            pick = update(M).where(M.c.batch_id == b, M.c.id.in_(sub.scalar_subquery()),
                                   M.c.status == Status.QUEUED.value)
        pick = pick.values(status=Status.SENDING.value, claimed_at=now, updated_at=now).returning(
            M.c.id, M.c.campaign_id, M.c.phone, M.c.region, M.c.body, M.c.segments, M.c.opt_in, M.c.timezones,
            M.c.attempts, M.c.fields)
        touch = update(B).where(B.c.id == b).values(touched_at=now)
        return release, pick, touch

    def suppressed(self, phones: Iterable[str]) -> dict[str, str]:
        """phone → reason for the numbers on the suppression list."""
        phones = list(phones)
        if not phones:
            return {}
        with self.tx() as conn:
            cur = self._send_sql.cursor(conn)
            # An empty list (a new deployment's) is answered at once: the loader asks for every chunk of a file.
            if cur.execute("SELECT 1 FROM suppression LIMIT 1").fetchone() is None:
                return {}
            return self._send_sql.suppressed(cur, phones)

    def suppress(self, entries: Iterable[tuple[str, str, str | None]]) -> int:
        """Add (phone, source, reason) entries; existing numbers keep their first entry. Returns how many were new."""
        rows = [{"phone": p, "source": s, "reason": r, "created_at": utcnow()} for p, s, r in entries]
        if not rows:
            return 0
        with self.tx() as conn:
            before = conn.execute(select(func.count()).select_from(S)).scalar_one()
            conn.execute(self._insert(S).on_conflict_do_nothing(index_elements=["phone"]), rows)
            after = conn.execute(select(func.count()).select_from(S)).scalar_one()
        return int(after - before)

    def unsuppress(self, phone: str) -> bool:
        with self.tx() as conn:
            return conn.execute(S.delete().where(S.c.phone == phone)).rowcount > 0

    def suppression_list(self) -> list[Suppression]:
        with self.tx() as conn:
            return [Suppression(**r) for r in conn.execute(select(S).order_by(S.c.created_at)).mappings()]

    # ------------------------------------------------------------ releasing, reconciling
    def release_due(self, now: datetime, campaign_ids: Sequence[int] | None = None) -> list[int]:
        """Deferred messages whose time has come go back to queued; returns their batch ids."""
        cond = and_(M.c.status == Status.DEFERRED.value, M.c.not_before <= now)
        if campaign_ids is not None:
            cond = and_(cond, M.c.campaign_id.in_(campaign_ids))
        with self.tx() as conn:
            running = select(C.c.id).where(C.c.state == CampaignState.RUNNING.value)
            cond = and_(cond, M.c.campaign_id.in_(running))
            batch_ids = [b for (b,) in conn.execute(select(M.c.batch_id).where(cond).distinct())]
            if batch_ids:
                conn.execute(update(M).where(cond).values(status=Status.QUEUED.value, updated_at=now))
        return batch_ids

    def open_batches(self, campaign_id: int) -> list[int]:
        """Batches of a campaign that still have queued messages."""
        with self.tx() as conn:
            return [b for (b,) in conn.execute(select(M.c.batch_id).where(
                M.c.campaign_id == campaign_id, M.c.status == Status.QUEUED.value).distinct().order_by(M.c.batch_id))]

    def stale_batches(self, older_than: datetime) -> list[int]:
        """Batches of running campaigns with queued messages that no worker has touched since ``older_than``."""
        with self.tx() as conn:
            q = (select(M.c.batch_id).join(B, B.c.id == M.c.batch_id).join(C, C.c.id == M.c.campaign_id)
                 .where(M.c.status == Status.QUEUED.value, C.c.state == CampaignState.RUNNING.value,
                        B.c.touched_at < older_than).distinct())
            return [b for (b,) in conn.execute(q)]

    def batch_labels(self, batch_ids: Sequence[int]) -> list[tuple[int, str]]:
        """(batch id, "campaign batch N of M") for Flower's argsrepr."""
        from .queue import batch_label

        out: list[tuple[int, str]] = []
        with self.tx() as conn:
            for i in range(0, len(batch_ids), 1000):
                q = (select(B.c.id, B.c.seq, C.c.name, C.c.batch_count).join(C, C.c.id == B.c.campaign_id)
                     .where(B.c.id.in_(batch_ids[i:i + 1000])))
                out += [(int(b), batch_label(name, seq, total)) for b, seq, name, total in conn.execute(q)]
        return out

    def touch_batches(self, batch_ids: Sequence[int], now: datetime) -> None:
        if batch_ids:
            with self.tx() as conn:
                conn.execute(update(B).where(B.c.id.in_(batch_ids)).values(touched_at=now))

    def expire_sending(self, older_than: datetime, now: datetime) -> int:
        """Messages claimed before ``older_than`` and never recorded: the worker died mid-send. They become unknown."""
        with self.tx() as conn:
            return conn.execute(update(M).where(M.c.status == Status.SENDING.value, M.c.claimed_at < older_than).values(
                status=Status.UNKNOWN.value, updated_at=now, claimed_at=None,
                reason="the worker stopped between sending and recording: the provider may have it; "
                       "a delivery receipt resolves it, or `dispatcher retry --status unknown` re-sends")).rowcount

    def requeue(self, message_ids: Sequence[int], now: datetime) -> None:
        """Give claimed messages back unsent (rate-limit slot too far away, campaign paused or stopped). Those of a
        campaign cancelled meanwhile are cancelled, as ``cancel_open`` did to its other open messages."""
        if message_ids:
            cancelled = M.c.campaign_id.in_(select(C.c.id).where(C.c.state == CampaignState.CANCELLED.value))
            with self.tx() as conn:
                conn.execute(update(M).where(M.c.id.in_(message_ids), M.c.status == Status.SENDING.value).values(
                    status=case((cancelled, Status.CANCELLED.value), else_=Status.QUEUED.value),
                    reason=case((cancelled, "campaign cancelled"), else_=M.c.reason), claimed_at=None, updated_at=now))

    def unclaim(self, batch_id: int, claimed_at: datetime, now: datetime) -> int:
        """Give back unsent the messages of the batch that an ``exchange`` at ``claimed_at`` claimed, for a caller
        that never saw them: the connection dropped after the commit (its answer lost, or the suppression read after
        it failed). The claim's time stands for the claim; only a second pass of the same batch claiming in the same
        microsecond could share it. Returns how many went back to queued."""
        with self.tx() as conn:
            return conn.execute(update(M).where(M.c.batch_id == batch_id, M.c.status == Status.SENDING.value,
                                                M.c.claimed_at == claimed_at).values(
                status=Status.QUEUED.value, claimed_at=None, updated_at=now)).rowcount

    def counts(self, campaign_id: int) -> dict[str, int]:
        """The campaign's messages by status, and its rejected rows under ``rejected``."""
        with self.tx() as conn:
            out = _status_counts(conn, campaign_id)
            out["rejected"] = int(conn.execute(select(func.count()).select_from(R).where(R.c.campaign_id == campaign_id)).scalar_one())
        return out

    def progress(self, campaign_id: int, horizon: datetime) -> tuple[dict[str, int], int]:
        """The campaign's messages by status (no ``rejected``: those never change after loading), and how many are
        yet to settle: queued, in flight, or deferred until before ``horizon`` (retries due soon). One pass over
        the campaign's status index, plus its deferred messages when it has any: ``run --wait`` polls this."""
        with self.tx() as conn:
            out = _status_counts(conn, campaign_id)
            pending = out[Status.QUEUED.value] + out[Status.SENDING.value]
            if out[Status.DEFERRED.value]:
                pending += int(conn.execute(select(func.count()).select_from(M).where(
                    M.c.campaign_id == campaign_id, M.c.status == Status.DEFERRED.value,
                    M.c.not_before < horizon)).scalar_one())
        return out, pending

    def open_count(self, campaign_id: int) -> int:
        with self.tx() as conn:
            return int(conn.execute(select(func.count()).select_from(M).where(
                M.c.campaign_id == campaign_id, M.c.status.in_(OPEN_STATUSES))).scalar_one())

    def complete_if_done(self, campaign_id: int) -> bool:
        """Mark a running, fully loaded campaign completed when no message is open."""
        with self.tx() as conn:
            # Any one open message answers it: every batch asks when it ends, so counting them all costs ~7 ms a
            # batch on a 100,000-recipient campaign.
            if conn.execute(select(M.c.id).where(M.c.campaign_id == campaign_id, M.c.status.in_(OPEN_STATUSES))
                            .limit(1)).first() is not None:
                return False
            return conn.execute(update(C).where(C.c.id == campaign_id, C.c.state == CampaignState.RUNNING.value,
                                                C.c.load_complete.is_(True))
                                .values(state=CampaignState.COMPLETED.value, finished_at=utcnow())).rowcount > 0

    def cancel_open(self, campaign_id: int, now: datetime) -> int:
        with self.tx() as conn:
            return conn.execute(update(M).where(M.c.campaign_id == campaign_id,
                                                M.c.status.in_([Status.QUEUED.value, Status.DEFERRED.value]))
                                .values(status=Status.CANCELLED.value, reason="campaign cancelled", updated_at=now)).rowcount

    def retry_candidates(self, campaign_id: int, statuses: Sequence[str], *, batch_seq: int | None = None,
                         reason: str | None = None) -> list[int]:
        """Ids of messages that may be sent again: matching status/batch/reason, never on the suppression list."""
        q = select(M.c.id).where(M.c.campaign_id == campaign_id, M.c.status.in_(list(statuses)),
                                 M.c.phone.not_in(select(S.c.phone)))
        if batch_seq is not None:
            q = q.where(M.c.batch_id.in_(select(B.c.id).where(B.c.campaign_id == campaign_id, B.c.seq == batch_seq)))
        if reason:
            q = q.where(M.c.reason.contains(reason))
        with self.tx() as conn:
            return [i for (i,) in conn.execute(q.order_by(M.c.id))]

    def requeue_for_retry(self, message_ids: Sequence[int], statuses: Sequence[str], now: datetime) -> list[int]:
        """Move the messages back to queued with a fresh attempt budget; returns their batch ids."""
        batch_ids: set[int] = set()
        with self.tx() as conn:
            for i in range(0, len(message_ids), 1000):
                ids = message_ids[i:i + 1000]
                batch_ids |= {b for (b,) in conn.execute(select(M.c.batch_id).where(M.c.id.in_(ids)).distinct())}
                conn.execute(update(M).where(M.c.id.in_(ids), M.c.status.in_(list(statuses))).values(
                    status=Status.QUEUED.value, reason="retry requested", not_before=None, attempts=0, updated_at=now))
        return sorted(batch_ids)

    def batch_summary(self, campaign_id: int) -> list[dict[str, Any]]:
        """Per batch: seq and counts of failed/unknown messages (only batches that have any)."""
        with self.tx() as conn:
            q = (select(B.c.seq, M.c.status, func.count()).join(B, B.c.id == M.c.batch_id)
                 .where(M.c.campaign_id == campaign_id, M.c.status.in_([Status.FAILED.value, Status.UNKNOWN.value]))
                 .group_by(B.c.seq, M.c.status).order_by(B.c.seq))
            out: dict[int, dict[str, Any]] = {}
            for seq, status, n in conn.execute(q):
                out.setdefault(seq, {"batch": seq, "failed": 0, "unknown": 0})[status] = int(n)
        return list(out.values())

    def recent_attempts(self, campaign_id: int, since: datetime) -> int:
        with self.tx() as conn:
            return int(conn.execute(select(func.count()).select_from(A).where(
                A.c.campaign_id == campaign_id, A.c.started_at >= since)).scalar_one())

    def next_deferred(self, campaign_id: int) -> datetime | None:
        with self.tx() as conn:
            return conn.execute(select(func.min(M.c.not_before)).where(
                M.c.campaign_id == campaign_id, M.c.status == Status.DEFERRED.value)).scalar_one()

    def messages(self, campaign_id: int) -> Iterator[dict[str, Any]]:
        with self.tx() as conn:
            yield from conn.execute(select(M).where(M.c.campaign_id == campaign_id).order_by(M.c.line)).mappings()

    def rejected(self, campaign_id: int) -> list[dict[str, Any]]:
        with self.tx() as conn:
            return [dict(r) for r in conn.execute(select(R).where(R.c.campaign_id == campaign_id).order_by(R.c.line)).mappings()]

    def attempts_by_message(self, campaign_id: int) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        with self.tx() as conn:
            for r in conn.execute(select(A).where(A.c.campaign_id == campaign_id).order_by(A.c.id)).mappings():
                out.setdefault(r["message_id"], []).append(dict(r))
        return out


class _WriterTurn:
    """The send loop's writers take turns on a SQLite file through an flock of it.

    SQLite lets one writer at a time into a database, and a writer that finds it taken polls: its busy handler
    sleeps 1, 2, 5, 10 ... ms between tries, so with several worker processes recording and claiming all the time
    the lock often sits free while they sleep. Waiting on an flock of the file instead, a writer is woken the moment
    the one before it is done. (On Linux flock locks are apart from the fcntl locks SQLite uses itself; writers
    that do not take a turn are still kept out by SQLite.) Threads of one process share the turn (SQLite sorts them
    out); a forked process opens the file again, since an inherited descriptor would share its parent's turn.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path if path and path != ":memory:" and not path.startswith("file:") else None
        self.fd: int | None = None
        self.pid = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        fd = self._fd()
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _fd(self) -> int | None:
        if self.path is None or fcntl is None:
            return None
        if self.fd is None or self.pid != os.getpid():
            if self.fd is not None:
                os.close(self.fd)      # the parent's: closing this copy leaves the parent's turn as it is
                self.fd = None
            try:
                self.fd, self.pid = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)), os.getpid()
            except OSError:
                return None        # not there yet, or not a file: SQLite's own locking still holds
        return self.fd


class _SendSQL:
    """The send loop's statements as plain SQL on the driver's own cursor. ``Store.exchange`` runs once per
    group of sends, on the batch's thread, in a process whose sending threads contend for the GIL.

    Through SQLAlchemy's compiled path (cache key, parameter and result processing) an exchange took about 190 µs
    of CPU per message, and executemany steps SQLite once per row, handing the GIL away (and waiting behind the
    sending threads to get it back) each time. Here the outcomes are one multi-row UPDATE and the attempts one
    multi-row INSERT (``record`` builds them), then the claim and the suppression lookup: four calls into the driver,
    on the cursor of the SQLAlchemy connection they are given (``Store._translated`` turns the driver's
    OperationalError into TransientError).
    Values go through the columns' own type conversions (aware UTC datetimes, JSON, booleans), so rows read back the
    same anywhere.
    """

    ROWS_PER_STATEMENT = 500   # 4,500 parameters at most: far below SQLite's 32,766 and PostgreSQL's 65,535
    # (name, PostgreSQL type): a VALUES list has no column types of its own there
    _OUTCOME = (("id", "integer"), ("status", "varchar"), ("reason", "text"), ("not_before", "timestamp"),
                ("pid", "varchar"), ("code", "varchar"), ("cost", "float8"), ("inc", "integer"))
    _ATTEMPT = ("message_id", "campaign_id", "started_at", "duration_ms", "http_status", "outcome",
                "provider_message_id", "provider_code", "detail")

    def __init__(self, dialect: Any, claim: Any) -> None:
        def result(column: Any) -> Any:
            return column.type.dialect_impl(dialect).result_processor(dialect, None)

        self.pg = dialect.name == "postgresql"
        mark = "%s" if self.pg else "?"
        self.dt = M.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect)
        compiled = claim.compile(dialect=dialect)
        self.claim_sql, self.claim_order = compiled.string, compiled.positiontup
        # the statuses it compares with, bound as parameters too
        self.claim_params = compiled.construct_params({"_b": 0, "_now": None, "_lim": 0})
        self.claim_procs = [(i, p) for i, p in enumerate(result(d["expr"]) for d in claim.returning_column_descriptions) if p is not None]
        self.created_at = result(S.c.created_at)
        # SQLite names a VALUES list's columns column1, column2 ...; PostgreSQL takes names and needs types.
        if self.pg:
            col = {name: f"v.{name}" for name, _ in self._OUTCOME}
            self.outcome_row = "(" + ", ".join(f"%s::{t}" for _, t in self._OUTCOME) + ")"
            alias = "v(" + ", ".join(name for name, _ in self._OUTCOME) + ")"
        else:
            col = {name: f"v.column{i}" for i, (name, _) in enumerate(self._OUTCOME, 1)}
            self.outcome_row = "(" + ", ".join("?" * len(self._OUTCOME)) + ")"
            alias = "v"
        self.outcome_sql = (
            f"UPDATE message SET status = {col['status']}, reason = {col['reason']}, not_before = {col['not_before']}, "
            f"provider_message_id = coalesce({col['pid']}, message.provider_message_id), provider_code = {col['code']}, "
            f"cost = coalesce({col['cost']}, message.cost), attempts = message.attempts + {col['inc']}, "
            f"updated_at = {mark}, claimed_at = NULL FROM (VALUES {{rows}}) AS {alias} "
            f"WHERE message.id = {col['id']} AND message.status = '{Status.SENDING.value}'")
        self.attempt_row = "(" + ", ".join([mark] * len(self._ATTEMPT)) + ")"
        self.attempt_sql = f"INSERT INTO attempt ({', '.join(self._ATTEMPT)}) VALUES {{rows}}"
        self.mark = mark

    @staticmethod
    def cursor(conn: Connection) -> Any:
        return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def record(self, outcomes: Sequence[Outcome], now: datetime) -> list[tuple[str, list[Any]]]:
        """The statements (SQL, parameters) that write ``outcomes``: message rows, then attempt rows."""
        dt, n = self.dt, self.ROWS_PER_STATEMENT
        out: list[tuple[str, list[Any]]] = []
        for i in range(0, len(outcomes), n):
            part = outcomes[i:i + n]
            params: list[Any] = [dt(now)]
            for o in part:
                params += (o.message_id, o.status, o.reason, dt(o.not_before) if o.not_before else None,
                           o.provider_message_id, o.provider_code, o.cost, 1 if o.attempt else 0)
            out.append((self.outcome_sql.format(rows=_rows(self.outcome_row, len(part))), params))
        attempts = [o.attempt for o in outcomes if o.attempt]
        for i in range(0, len(attempts), n):
            part = attempts[i:i + n]
            params = []
            for a in part:
                params += (a.get("message_id"), a.get("campaign_id"), dt(a["started_at"]) if a.get("started_at") else None,
                           a.get("duration_ms", 0), a.get("http_status"), a.get("outcome"), a.get("provider_message_id"),
                           a.get("provider_code"), a.get("detail"))
            out.append((self.attempt_sql.format(rows=_rows(self.attempt_row, len(part))), params))
        return out

    def claim(self, cur: Any, batch_id: int, limit: int, now: datetime) -> list[Any]:
        """Claim up to ``limit`` queued messages of the batch; their rows as the driver returns them (``claimed``)."""
        values = dict(self.claim_params, _b=batch_id, _now=self.dt(now), _lim=limit)
        cur.execute(self.claim_sql, [values[k] for k in self.claim_order] if self.claim_order else values)
        return cur.fetchall()  # type: ignore[no-any-return]

    def claimed(self, rows: list[Any]) -> list[Claimed]:
        """The rows ``claim`` returned, decoded, in id order."""
        if self.claim_procs:
            rows = [list(r) for r in rows]
            for r in rows:
                for i, process in self.claim_procs:
                    r[i] = process(r[i])
        return [Claimed(*r) for r in sorted(rows, key=lambda r: r[0])]

    def suppressed(self, cur: Any, phones: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(phones), self.ROWS_PER_STATEMENT):
            part = phones[i:i + self.ROWS_PER_STATEMENT]
            cur.execute("SELECT phone, source, reason, created_at FROM suppression WHERE phone IN "
                        f"({_rows(self.mark, len(part))})", part)
            for p, src, r, ts in cur.fetchall():
                ts = self.created_at(ts) if self.created_at else ts
                out[p] = f"suppressed ({src}{': ' + r if r else ''}, since {ts:%Y-%m-%d})"
        return out


def flat_json(value: dict[Any, Any]) -> str:
    """``json.dumps(value)`` with its default options, found faster when every key and value is a str (a contact's
    fields): json.dumps builds an encoder on every call, which costs more than encoding a few short strings."""
    parts = []
    for k, v in value.items():
        if type(k) is not str or type(v) is not str:
            return json.dumps(value)
        parts.append(_json_str(k) + ": " + _json_str(v))
    return "{" + ", ".join(parts) + "}"


def _parts(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _rows(row: str, n: int) -> str:
    """``row`` (a VALUES row or a placeholder) ``n`` times, comma-separated: the body of a multi-row statement."""
    return ", ".join([row] * n)


def _status_counts(conn: Connection, campaign_id: int) -> dict[str, int]:
    out = {s.value: 0 for s in Status}
    out.update({k: int(v) for k, v in conn.execute(
        select(M.c.status, func.count()).where(M.c.campaign_id == campaign_id).group_by(M.c.status))})
    return out


def sweep_cutoff(now: datetime, seconds: float) -> datetime:
    return now - timedelta(seconds=seconds)
