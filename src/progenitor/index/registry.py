"""The DNA registry: one SQLite file holding a collection's DNAs and what is known about them.

Every row holds a model's DNA (the bytes of its ``.dna`` file), its reference, the sha256 of its
files, a short unique name, the parent its uploader declared (or that it claims to be trained from
scratch), and when it was added. The registry is created with one extractor spec
(``progenitor.index.spec``) and refuses DNAs made with another.

* **De-duplication**: a DNA whose genome hash (``progenitor.index._dna.genome_hash``) or whose
  model sha256 is already registered is not added again; ``add`` says which entry it matches.
* **Concurrency**: WAL journal, so any number of readers (other processes included) run while
  one writer writes; every write is one ``BEGIN IMMEDIATE`` transaction, so an interrupted
  ``index add`` keeps every model written before the interruption and nothing half-written.
* **Schema**: ``schema_migrations`` records the numbered migrations applied (``MIGRATIONS``);
  opening an older file upgrades it in one transaction; a newer file is refused.
* **Export/import**: a folder of ``.dna`` files, the probe set, and ``manifest.json``
  (see ``docs/COLLECTIONS.md``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from progenitor.dna import DNA, DNAFormatError, load_dna, save_dna
from progenitor.errors import ProbeError, ProgenitorError
from progenitor.index._dna import dna_from_bytes, dna_to_bytes, genome_hash
from progenitor.index.keys import behaviour_key, retrieval_key
from progenitor.index.spec import ExtractorSpec, SpecMismatchError
from progenitor.probes import ProbeSet, from_array, labels_path, load_probes

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AddOutcome",
    "Entry",
    "Registry",
    "RegistryError",
    "default_db_path",
]

SCHEMA_VERSION = 6
EXPORT_FORMAT = "progenitor-registry-export"
EXPORT_VERSION = 1
_BUSY_TIMEOUT_MS = 60_000


class RegistryError(ProgenitorError):
    """The registry file cannot be opened, is of an unknown schema, or has no such model."""


def default_db_path() -> Path:
    """``$PROGENITOR_DB``, else ``$XDG_DATA_HOME/progenitor/registry.sqlite``.

    ``$XDG_DATA_HOME`` defaults to ``~/.local/share``.
    """
    if os.environ.get("PROGENITOR_DB"):
        return Path(os.environ["PROGENITOR_DB"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "progenitor" / "registry.sqlite"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------ migrations


def _migration_1(conn: sqlite3.Connection) -> None:
    """The first schema: settings, and one row per DNA."""
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        """CREATE TABLE dnas (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dna_hash TEXT NOT NULL UNIQUE,
            ref TEXT NOT NULL,
            sha256 TEXT,
            declared_parent TEXT,
            added_at TEXT NOT NULL,
            dna BLOB NOT NULL
        )"""
    )


def _migration_2(conn: sqlite3.Connection) -> None:
    """Payloads out of the metadata table; names, from-scratch claims, vectors, stored probes.

    The first schema kept each DNA's bytes inside its ``dnas`` row, so listing models or loading
    vectors read every payload (SQLite walks a large blob's overflow pages to reach the columns
    after it). This migration moves the bytes to ``payloads`` and the learned vectors to
    ``vectors`` (both keyed by the model's id), rebuilds ``dnas`` with ``name`` (unique, from the
    reference's stem), ``from_scratch``, ``access`` and ``n_params`` back-filled from each DNA,
    indexes ``sha256``, and adds the ``probes`` table, so that later adds and searches reuse the
    registry's probe set without ``--probes``.
    """
    conn.execute("CREATE TABLE payloads (id INTEGER PRIMARY KEY, dna BLOB NOT NULL)")
    conn.execute("CREATE TABLE vectors (id INTEGER PRIMARY KEY, vector BLOB NOT NULL)")
    conn.execute(
        """CREATE TABLE dnas_v2 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dna_hash TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL UNIQUE,
            ref TEXT NOT NULL,
            sha256 TEXT,
            declared_parent TEXT,
            from_scratch INTEGER NOT NULL DEFAULT 0,
            access TEXT,
            n_params INTEGER,
            added_at TEXT NOT NULL
        )"""
    )
    taken: set[str] = set()
    for row_id, dna_hash, ref, sha, declared, added_at, blob in conn.execute(
        "SELECT id, dna_hash, ref, sha256, declared_parent, added_at, dna FROM dnas ORDER BY id"
    ).fetchall():
        dna = dna_from_bytes(blob, f"registry row {row_id}")
        name = _unique_name(_default_name(ref), taken.__contains__)
        taken.add(name)
        conn.execute(
            "INSERT INTO dnas_v2 (id, dna_hash, name, ref, sha256, declared_parent, access, n_params, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row_id, dna_hash, name, ref, sha, declared, dna.access, _n_params(dna), added_at),
        )
        conn.execute("INSERT INTO payloads VALUES (?, ?)", (row_id, blob))
        if dna.vector is not None:
            conn.execute("INSERT INTO vectors VALUES (?, ?)", (row_id, _vector_blob(dna)))
    conn.execute("DROP TABLE dnas")
    conn.execute("ALTER TABLE dnas_v2 RENAME TO dnas")
    conn.execute("CREATE INDEX dnas_sha256 ON dnas(sha256)")
    conn.execute(
        "CREATE TABLE probes (hash TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, data BLOB NOT NULL)"
    )


def _migration_3(conn: sqlite3.Connection) -> None:
    """Weight keys (``progenitor.index.keys``) for retrieval, back-filled from the stored DNAs."""
    _key_table(conn, "keys", retrieval_key)


def _key_table(conn: sqlite3.Connection, table: str, key_of: Callable[[DNA], np.ndarray | None]) -> None:
    """A table of retrieval keys, one row per stored DNA that has one."""
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, key BLOB NOT NULL)")
    for model_id, blob in conn.execute("SELECT id, dna FROM payloads ORDER BY id").fetchall():
        key = _key_blob(key_of(dna_from_bytes(blob)))
        if key is not None:
            conn.execute(f"INSERT INTO {table} VALUES (?, ?)", (model_id, key))


def _migration_4(conn: sqlite3.Connection) -> None:
    """A CRC-32 of each payload, checked on every read instead of the payload's own sha256.

    The sha256 is verified once, when a DNA enters the registry (and here, for the rows already
    in it); the CRC still catches a payload changed on disk since, at a third of the cost (a
    search reads dozens of DNAs per query, and hashing them was half the decoding time).
    """
    conn.execute("ALTER TABLE payloads ADD COLUMN crc32 INTEGER")
    for model_id, blob in conn.execute("SELECT id, dna FROM payloads ORDER BY id").fetchall():
        dna_from_bytes(blob, f"registry row {model_id}")  # the full check, once
        conn.execute("UPDATE payloads SET crc32 = ? WHERE id = ?", (zlib.crc32(blob), model_id))


def _migration_5(conn: sqlite3.Connection) -> None:
    """The probe set's labels (``ProbeSet.labels``, an ``.npy`` of int64), when it has them."""
    conn.execute("ALTER TABLE probes ADD COLUMN labels BLOB")


def _migration_6(conn: sqlite3.Connection) -> None:
    """Behaviour keys (``progenitor.index.keys``) for retrieval, back-filled from the stored DNAs."""
    _key_table(conn, "behaviour_keys", behaviour_key)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _migration_1,
    2: _migration_2,
    3: _migration_3,
    4: _migration_4,
    5: _migration_5,
    6: _migration_6,
}


def _applied(conn: sqlite3.Connection) -> int:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
    if not exists:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION, where: str = "registry") -> int:
    """Apply the numbered migrations up to ``target`` in one transaction; returns the version.

    Raises:
        RegistryError: the file's schema is newer than this release knows.
    """
    current = _applied(conn)
    if current > SCHEMA_VERSION:
        raise RegistryError(
            f"{where}: registry schema v{current} is newer than this release (v{SCHEMA_VERSION}); upgrade progenitor"
        )
    if current >= target:
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL, description TEXT NOT NULL)"
        )
        current = _applied(conn)  # another process may have migrated while we waited
        for version in range(current + 1, target + 1):
            step = MIGRATIONS[version]
            step(conn)
            doc = (step.__doc__ or "").strip().splitlines()[0] if step.__doc__ else ""
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, _now(), doc))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return max(current, target)


# ----------------------------------------------------------------------------------------- rows


def _default_name(ref: str) -> str:
    text = str(ref).rstrip("/")
    if "://" in text:
        text = text.split("://", 1)[1]
    elif ":" in text and not Path(text).exists():
        text = text.rsplit(":", 1)[1]  # a prefixed reference: torchscript:PATH, py:module:NAME
    stem = Path(text.rstrip("/")).name
    for suffix in (".safetensors", ".onnx", ".pt", ".pth", ".dna", ".bin"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or "model"


def _unique_name(base: str, taken: Callable[[str], bool]) -> str:
    if not taken(base):
        return base
    i = 2
    while taken(f"{base}-{i}"):
        i += 1
    return f"{base}-{i}"


def _n_params(dna: DNA) -> int | None:
    value = dna.model.get("n_params")
    return int(value) if isinstance(value, int | float) else None


def _vector_blob(dna: DNA) -> bytes | None:
    if dna.vector is None:
        return None
    return np.ascontiguousarray(dna.vector, dtype="<f4").tobytes()


def _key_blob(key: np.ndarray | None) -> bytes | None:
    return None if key is None else np.ascontiguousarray(key, dtype="<f4").tobytes()


@dataclass(frozen=True)
class Entry:
    """One registered model (without its DNA payload)."""

    id: int
    name: str
    ref: str
    sha256: str | None
    dna_hash: str
    access: str | None
    n_params: int | None
    declared_parent: str | None
    from_scratch: bool
    added_at: str
    has_vector: bool

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (``progenitor index list --json``)."""
        return {
            "id": self.id,
            "name": self.name,
            "ref": self.ref,
            "sha256": self.sha256,
            "dna_hash": self.dna_hash,
            "access": self.access,
            "n_params": self.n_params,
            "declared_parent": self.declared_parent,
            "from_scratch": self.from_scratch,
            "added_at": self.added_at,
            "has_vector": self.has_vector,
        }


# Every query names the metadata table ``d``; payloads (``p``) and vectors are separate tables.
_ENTRY_COLUMNS = (
    "d.id, d.name, d.ref, d.sha256, d.dna_hash, d.access, d.n_params, d.declared_parent, d.from_scratch, "
    "d.added_at, d.id IN (SELECT id FROM vectors)"
)


def _payload_dna(blob: bytes, crc: int | None, origin: str) -> DNA:
    """A stored payload's DNA, checked against its CRC-32 (its sha256 was checked on entry)."""
    if crc is None:
        return dna_from_bytes(blob, origin)
    if zlib.crc32(blob) != crc:
        raise DNAFormatError(f"{origin}: the stored DNA is corrupt (CRC-32 mismatch)")
    return dna_from_bytes(blob, origin, verify=False)


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(
        int(row[0]),
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        bool(row[8]),
        row[9],
        bool(row[10]),
    )


@dataclass(frozen=True)
class AddOutcome:
    """What ``Registry.add`` did: ``added`` True for a new row, False for a duplicate (no-op)."""

    entry: Entry
    added: bool
    reason: str


# ------------------------------------------------------------------------------------- registry

PAGE_SIZE = 65536  # bytes per database page for new registries (SQLite's largest)


class Registry:
    """A DNA registry in one SQLite file (see the module docstring).

    Open one per thread or process; readers never block each other or the writer.

    Args:
        path: the database file (default: ``default_db_path()``).
        create: create the file when missing; when False a missing file is a RegistryError.
    """

    def __init__(self, path: str | Path | None = None, create: bool = True) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        if not self.path.exists():
            if not create:
                raise RegistryError(
                    f"no registry at {self.path} (create one with: progenitor index add MODEL --db {self.path})"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not create and self.path.is_file() and self.path.stat().st_size == 0:
            raise RegistryError(f"{self.path} is an empty file, not a registry")
        try:
            self._conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # Takes effect only on a new, empty file (before WAL). A DNA is a few hundred KB; with
            # the default 4 KiB pages reading one walks ~80 overflow pages and took 0.2 ms, with
            # 64 KiB pages 0.04 ms (a search reads dozens per query).
            self._conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RegistryError(f"{self.path}: cannot use the WAL journal (got {mode})")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self.schema_version = migrate(self._conn, where=str(self.path))
        except sqlite3.DatabaseError as exc:
            raise RegistryError(f"{self.path}: not a usable registry database ({exc})") from exc

    # -- lifecycle

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- spec and probes

    @property
    def spec(self) -> ExtractorSpec | None:
        """The extractor spec, or None before the first DNA is added."""
        return self._read_spec(self._conn)

    @staticmethod
    def _read_spec(conn: sqlite3.Connection) -> ExtractorSpec | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'extractor_spec'").fetchone()
        return ExtractorSpec.from_json(row[0]) if row else None

    @staticmethod
    def _write_spec(conn: sqlite3.Connection, spec: ExtractorSpec) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO meta VALUES ('extractor_spec', ?)",
            (json.dumps(spec.to_json(), sort_keys=True),),
        )

    def set_spec(self, spec: ExtractorSpec) -> None:
        """Fix the spec of an empty registry (refused once it holds DNAs with another)."""
        with self._write() as conn:
            current = self._read_spec(conn)
            count = conn.execute("SELECT COUNT(*) FROM dnas").fetchone()[0]
            if current is not None and count:
                diff = current.differences(spec)
                if diff:
                    raise SpecMismatchError(f"{self.path} holds DNAs of another spec: {'; '.join(diff)}")
            self._write_spec(conn, spec)

    def store_probes(self, probes: ProbeSet) -> None:
        """Keep the probe set's content, so adds and searches need no ``--probes`` later."""
        data = _npy(probes.data) if isinstance(probes.data, np.ndarray) else json.dumps(list(probes.data)).encode()
        labels = None if probes.labels is None else _npy(probes.labels)
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO probes VALUES (?, ?, ?, ?, ?)",
                (probes.hash, probes.name, probes.kind, data, labels),
            )
            if labels is not None:  # a probe set first stored without its labels gets them
                conn.execute("UPDATE probes SET labels = ? WHERE hash = ? AND labels IS NULL", (labels, probes.hash))

    def probe_set(self) -> ProbeSet | None:
        """The spec's probe set when its content is stored here, else None."""
        spec = self.spec
        if spec is None or not spec.probes:
            return None
        return self._probes_by_hash(spec.probes["hash"])

    def _probes_by_hash(self, digest: str) -> ProbeSet | None:
        row = self._conn.execute("SELECT name, kind, data, labels FROM probes WHERE hash = ?", (digest,)).fetchone()
        if row is None:
            return None
        name, kind, data, labels = row
        if kind == "text":
            probes = ProbeSet(name, "text", tuple(json.loads(data.decode())))
        else:
            array = np.load(io.BytesIO(data), allow_pickle=False)
            stored = None if labels is None else np.load(io.BytesIO(labels), allow_pickle=False)
            probes = from_array(array, name, stored)
        if probes.hash != digest:
            raise RegistryError(f"{self.path}: stored probe set {name!r} is corrupt (hash mismatch)")
        return probes

    # -- rows

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM dnas").fetchone()[0])

    def entries(self) -> list[Entry]:
        """Every registered model, in the order they were added."""
        rows = self._conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM dnas d ORDER BY d.id").fetchall()
        return [_entry(r) for r in rows]

    def find_sha256(self, sha256: str) -> Entry | None:
        """The entry of a model with these file contents, if registered."""
        row = self._conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM dnas d WHERE d.sha256 = ? ORDER BY d.id", (sha256,)
        ).fetchone()
        return _entry(row) if row else None

    def find_dna(self, dna: DNA) -> Entry | None:
        """The entry whose genome hash equals ``dna``'s, if registered."""
        row = self._conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM dnas d WHERE d.dna_hash = ?", (genome_hash(dna),)
        ).fetchone()
        return _entry(row) if row else None

    def get(self, key: str | int) -> Entry:
        """An entry by name, id, reference, or a prefix (6+ hex digits) of its sha256 or DNA hash.

        Raises:
            RegistryError: no such model, or the key matches several.
        """
        found = self.lookup(str(key))
        if not found:
            raise RegistryError(f"no model {key!r} in {self.path} (see: progenitor index list)")
        if len(found) > 1:
            names = ", ".join(e.name for e in found[:8])
            raise RegistryError(f"{key!r} matches several models in {self.path}: {names}; use a name")
        return found[0]

    def lookup(self, key: str) -> list[Entry]:
        """Every entry ``key`` names (see ``get``); empty when none."""

        def rows(where: str, *args: Any) -> list[Entry]:
            sql = f"SELECT {_ENTRY_COLUMNS} FROM dnas d WHERE {where} ORDER BY d.id"
            return [_entry(r) for r in self._conn.execute(sql, args).fetchall()]

        for attempt in (
            lambda: rows("name = ?", key),
            lambda: rows("id = ?", int(key)) if key.isdigit() else [],
            lambda: rows("ref = ?", key),
            lambda: rows("ref = ?", _absolute_ref(key)),
            lambda: (
                rows("sha256 LIKE ? OR dna_hash LIKE ?", f"{key.lower()}%", f"{key.lower()}%")
                if re.fullmatch(r"[0-9a-fA-F]{6,64}", key)
                else []
            ),
        ):
            found = attempt()
            if found:
                return found
        return []

    def dna(self, key: str | int | Entry) -> DNA:
        """The DNA of a registered model."""
        entry = key if isinstance(key, Entry) else self.get(key)
        row = self._conn.execute("SELECT dna, crc32 FROM payloads WHERE id = ?", (entry.id,)).fetchone()
        if row is None:
            raise RegistryError(f"model {entry.name!r} was removed from {self.path}")
        return _payload_dna(row[0], row[1], f"{self.path}#{entry.name}")

    def dnas(self, ids: list[int] | None = None, batch: int = 500) -> Iterator[tuple[Entry, DNA]]:
        """(entry, DNA) for the given ids (default: every row), in id order."""
        select = f"SELECT {_ENTRY_COLUMNS}, p.dna, p.crc32 FROM dnas d JOIN payloads p ON p.id = d.id"
        if ids is None:
            for row in self._conn.execute(f"{select} ORDER BY d.id"):
                yield _entry(row[:-2]), _payload_dna(row[-2], row[-1], f"{self.path}#{row[1]}")
            return
        wanted = sorted({int(i) for i in ids})
        for start in range(0, len(wanted), batch):
            chunk = wanted[start : start + batch]
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(f"{select} WHERE d.id IN ({marks}) ORDER BY d.id", chunk):
                yield _entry(row[:-2]), _payload_dna(row[-2], row[-1], f"{self.path}#{row[1]}")

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids (int64) and learned vectors (float32, one row each) of the entries that have one."""
        return self._matrix("SELECT id, vector FROM vectors ORDER BY id")

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids (int64) and weight keys (``progenitor.index.keys``) of the entries that have one."""
        return self._matrix("SELECT id, key FROM keys ORDER BY id")

    def behaviour_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids (int64) and behaviour keys (``progenitor.index.keys``) of the entries that have one."""
        return self._matrix("SELECT id, key FROM behaviour_keys ORDER BY id")

    def _matrix(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self._conn.execute(query).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        try:
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
        except (ValueError, TypeError) as exc:
            raise RegistryError(f"{self.path}: stored vectors or keys are corrupt ({exc})") from exc
        return ids, matrix.astype(np.float32, copy=False)

    # -- writes

    def add(
        self,
        dna: DNA,
        name: str | None = None,
        parent: str | None = None,
        from_scratch: bool = False,
        added_at: str | None = None,
    ) -> AddOutcome:
        """Register ``dna``; a no-op when its genome hash or model sha256 is already registered.

        Args:
            dna: the DNA (made with the registry's extractor spec).
            name: a short unique name (default: the reference's file stem, suffixed if taken).
            parent: the parent its uploader declares (a name, reference or hash; not checked here).
            from_scratch: the uploader claims it was trained from its own random initialization.
            added_at: ISO time to record (imports keep the original); default now.

        Raises:
            SpecMismatchError: the DNA was made with another extractor spec, naming how.
            RegistryError: ``name`` is taken by another model, or both parent and from_scratch.
        """
        if parent and from_scratch:
            raise RegistryError("a model cannot declare a parent and be trained from scratch")
        if parent and parent in (name, str(dna.model.get("ref", "")), dna.model.get("sha256")):
            raise RegistryError(f"{name or dna.model.get('ref')} cannot declare itself as its parent")
        digest = genome_hash(dna)
        sha = dna.model.get("sha256")
        blob = dna_to_bytes(dna)
        with self._write() as conn:
            row = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM dnas d WHERE d.dna_hash = ?", (digest,)).fetchone()
            if row:
                return AddOutcome(_entry(row), False, f"same DNA as {row[1]!r}")
            if sha:
                row = conn.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM dnas d WHERE d.sha256 = ? ORDER BY d.id", (sha,)
                ).fetchone()
                if row:
                    return AddOutcome(_entry(row), False, f"same model files (sha256) as {row[1]!r}")
            spec = self._read_spec(conn)
            if spec is None:
                self._write_spec(conn, ExtractorSpec.for_dna(dna))
            else:
                spec.check(dna)
                adopted = spec.adopting(dna)
                if adopted != spec:
                    self._write_spec(conn, adopted)

            def taken(candidate: str) -> bool:
                return conn.execute("SELECT 1 FROM dnas WHERE name = ?", (candidate,)).fetchone() is not None

            if name is not None:
                if taken(name):
                    raise RegistryError(f"name {name!r} is already used in {self.path}")
                final = name
            else:
                final = _unique_name(_default_name(str(dna.model.get("ref", "model"))), taken)
            cursor = conn.execute(
                "INSERT INTO dnas (dna_hash, name, ref, sha256, declared_parent, from_scratch, access, n_params, "
                "added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    digest,
                    final,
                    str(dna.model.get("ref", "")),
                    sha,
                    parent,
                    int(from_scratch),
                    dna.access,
                    _n_params(dna),
                    added_at or _now(),
                ),
            )
            conn.execute("INSERT INTO payloads VALUES (?, ?, ?)", (cursor.lastrowid, blob, zlib.crc32(blob)))
            if dna.vector is not None:
                conn.execute("INSERT INTO vectors VALUES (?, ?)", (cursor.lastrowid, _vector_blob(dna)))
            for table, key in (("keys", retrieval_key(dna)), ("behaviour_keys", behaviour_key(dna))):
                if key is not None:
                    conn.execute(f"INSERT INTO {table} VALUES (?, ?)", (cursor.lastrowid, _key_blob(key)))
            row = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM dnas d WHERE d.id = ?", (cursor.lastrowid,)).fetchone()
        return AddOutcome(_entry(row), True, "added")

    def remove(self, key: str | int) -> Entry:
        """Remove a model (by any key ``get`` accepts); returns what was removed."""
        entry = self.get(key)
        with self._write() as conn:
            for table in ("payloads", "vectors", "keys", "behaviour_keys", "dnas"):
                conn.execute(f"DELETE FROM {table} WHERE id = ?", (entry.id,))
        return entry

    def declare(self, key: str | int, parent: str | None = None, from_scratch: bool = False) -> Entry:
        """Record (or clear, with neither argument) a model's declared parent or scratch claim."""
        if parent and from_scratch:
            raise RegistryError("a model cannot declare a parent and be trained from scratch")
        entry = self.get(key)
        if parent and parent in (entry.name, entry.ref, str(entry.id)):
            raise RegistryError(f"{entry.name} cannot declare itself as its parent")
        with self._write() as conn:
            conn.execute(
                "UPDATE dnas SET declared_parent = ?, from_scratch = ? WHERE id = ?",
                (parent, int(from_scratch), entry.id),
            )
        return self.get(entry.id)

    # -- maintenance

    def page_size(self) -> int:
        """Bytes per database page of the file."""
        return int(self._conn.execute("PRAGMA page_size").fetchone()[0])

    def compact(self) -> tuple[int, int]:
        """Rewrite the file without the space removed models left, in ``PAGE_SIZE`` pages (a
        registry created before 64 KiB pages gets them: reading a DNA walks 80 overflow pages of
        4 KiB). Returns the file's size in bytes before and after.

        SQLite changes the page size only outside WAL mode, so the file leaves it for the rewrite
        and returns to it. No other connection may have the file open: otherwise RegistryError,
        and the file is as it was.
        """
        before = self.path.stat().st_size
        conn = self._conn
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
            if str(mode).lower() != "delete":
                raise RegistryError(f"{self.path} is open in another process; close it to compact")
            try:
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                conn.execute("VACUUM")
            finally:
                conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            raise RegistryError(f"{self.path}: cannot compact ({exc}); is it open in another process?") from exc
        return before, self.path.stat().st_size

    # -- export / import

    def export(self, folder: str | Path) -> Path:
        """Write every DNA as ``.dna`` files, the probe set, and ``manifest.json`` into ``folder``.

        Returns the manifest's path. The folder may exist; files of the same names are replaced.
        """
        from progenitor._io import write_atomic

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        spec = self.spec
        probes_file = None
        probes = self.probe_set()
        if probes is not None:
            if isinstance(probes.data, np.ndarray):
                probes_file = "probes.npy"
                write_atomic(out / probes_file, _npy(probes.data))
                if probes.labels is not None:
                    write_atomic(labels_path(out / probes_file), _npy(probes.labels))
            else:
                probes_file = "probes.json"
                write_atomic(out / probes_file, json.dumps(list(probes.data)))
        models = []
        for entry, dna in self.dnas():
            file = f"{_safe(entry.name)}-{entry.dna_hash[:8]}.dna"
            save_dna(dna, out / file)
            models.append(
                {
                    "file": file,
                    **{k: v for k, v in entry.to_json().items() if k not in ("id", "has_vector")},
                }
            )
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "schema_version": self.schema_version,
            "exported_at": _now(),
            "spec": None if spec is None else spec.to_json(),
            "probes": None
            if probes is None
            else {
                "file": probes_file,
                "name": probes.name,
                "kind": probes.kind,
                "hash": probes.hash,
            },
            "models": models,
        }
        return write_atomic(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")

    def import_(self, folder: str | Path) -> tuple[int, int]:
        """Add every model of an export folder; returns (added, already registered).

        Raises:
            RegistryError: not an export folder, or a file does not match its manifest entry.
            SpecMismatchError: the export was made with another extractor spec, naming how.
        """
        src = Path(folder)
        manifest = _read_export(src)
        # Every DNA is read and checked before anything is written: a bad file imports nothing.
        checked = []
        for item in manifest["models"]:
            path = src / item["file"]
            if not path.resolve().is_relative_to(src.resolve()):
                raise RegistryError(f"{src}: entry {item['file']!r} lies outside the export folder")
            dna = load_dna(path)
            if genome_hash(dna) != item["dna_hash"]:
                raise RegistryError(f"{path}: DNA does not match its manifest entry")
            checked.append((item, dna))
        theirs = ExtractorSpec.from_json(manifest["spec"]) if manifest.get("spec") else None
        mine = self.spec
        if theirs is not None:
            if mine is None and len(self) == 0:
                self.set_spec(theirs)
            elif mine is not None:
                diff = mine.differences(theirs)
                if diff:
                    raise SpecMismatchError(
                        f"{src} was exported from an index of another extractor spec: {'; '.join(diff)}"
                    )
        if manifest.get("probes"):
            self._import_probes(src, manifest["probes"])
        added = duplicates = 0
        for item, dna in checked:
            name = item["name"] if not self._lookup_name(item["name"]) else None
            outcome = self.add(
                dna,
                name=name,
                parent=item.get("declared_parent"),
                from_scratch=bool(item.get("from_scratch")),
                added_at=item.get("added_at"),
            )
            added += int(outcome.added)
            duplicates += int(not outcome.added)
        return added, duplicates

    def _lookup_name(self, name: str) -> bool:
        return self._conn.execute("SELECT 1 FROM dnas WHERE name = ?", (name,)).fetchone() is not None

    def _import_probes(self, src: Path, info: dict[str, Any]) -> None:
        path = src / info["file"]
        try:
            if info["kind"] == "text":
                probes = ProbeSet(info["name"], "text", tuple(json.loads(path.read_text("utf-8"))))
            else:
                probes = load_probes(path)  # with the labels beside it, if exported
                probes = ProbeSet(info["name"], "tensor", probes.data, probes.labels)
        except (OSError, ValueError, ProbeError) as exc:
            raise RegistryError(f"{path}: cannot read the exported probe set ({exc})") from exc
        if probes.hash != info["hash"]:
            raise RegistryError(f"{path}: probe set does not match its manifest hash")
        self.store_probes(probes)


def _read_export(src: Path) -> dict[str, Any]:
    """An export folder's manifest, its structure checked (a hand-edited one is refused here,
    before any field is used)."""
    try:
        manifest = json.loads((src / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{src}: not a registry export (no readable manifest.json)") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise RegistryError(f"{src}: manifest.json is not a progenitor registry export")
    if not isinstance(manifest.get("version", 0), int) or manifest.get("version", 0) > EXPORT_VERSION:
        raise RegistryError(f"{src}: export version {manifest.get('version')!r} is newer than this release or unknown")
    models = manifest.get("models")
    fields_ok = isinstance(models, list) and all(
        isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("file", "dna_hash", "name")) for m in models
    )
    if not fields_ok or any(not isinstance(manifest.get(k) or {}, dict) for k in ("spec", "probes")):
        raise RegistryError(
            f"{src}: manifest.json is malformed (models need file, dna_hash and name; spec and probes are objects)"
        )
    return manifest


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "model"


def _absolute_ref(ref: str) -> str:
    """A local path reference made absolute (prefix kept); other references unchanged."""
    if "://" in ref:
        return ref
    prefix, sep, rest = ref.partition(":")
    if sep and len(prefix) > 1 and not Path(ref).exists():
        return f"{prefix}:{_absolute_ref(rest)}" if prefix != "py" else ref
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref
