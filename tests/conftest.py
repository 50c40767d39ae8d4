"""Shared fixtures: one real embedding model per test run (loading it costs ~1 s), and one
PostgreSQL server per run (a private `pgserver`, or MEMORY_RUNTIME_TEST_PG_URL) with a fresh
database per test that asks for one.

Hypothesis runs the "ci" profile unless told otherwise: the same examples on every machine and
every run (drawn from a hash of each test, no example database), no deadline and no too-slow
health check (a loaded machine is not a failure), and a failing example printed as a blob that
`@reproduce_failure` replays. Examples that passed here are the ones CI draws (with the Hypothesis
pinned in pyproject.toml), so a new draw never fails someone else's merge; to look for new failing
cases, run `pytest --hypothesis-profile=explore` (random draws and the local example database)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from memory.recall.embeddings import load_embedder
from testkit.pg import PgServer, start_pg

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")  # `--hypothesis-profile` (read after this file) overrides it


@pytest.fixture(scope="session")
def real_embedder():
    """The real all-MiniLM-L6-v2 (never a fake: retrieval-quality tests depend on it)."""
    return load_embedder(None)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    # Not under pytest's tmp_path: pytest prunes old numbered folders of *other* runs there, and a
    # server whose data folder disappears mid-run panics.
    folder = Path(tempfile.mkdtemp(prefix="memory-runtime-pg-"))
    try:
        server = start_pg(folder, os.environ.get("MEMORY_RUNTIME_TEST_PG_URL"))
        yield server
        server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a new, empty database (dropped after the test)."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
