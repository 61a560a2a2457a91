"""The polite client against the local fixture server: limiter, retries, timeouts, cache."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import core.acquire.http
from core.config import get_settings
from core.errors import ConfigError, FetchError
from core.acquire.http import PoliteClient, RateLimiter, full_url, request_lock_path
from tests.fixture_server import DATA, FixtureServer, assert_polite, ned_server  # noqa: F401 - fixture

ROOT = DATA.parent.parent.parent

INTERVAL = 0.1


def _settings(server: FixtureServer, tmp_path, **overrides):
    # data_dir in tmp_path keeps the request lock file out of the developer's data folder.
    values = dict(
        ned_base_url=server.url, request_interval=INTERVAL, request_timeout=0.5, max_retries=2, data_dir=tmp_path
    )
    values.update(overrides)
    return get_settings(**values)


def test_get_page_sends_user_agent_and_caches_by_full_query(ned_server, tmp_path):
    settings = _settings(ned_server, tmp_path)
    url = ned_server.url + "cgi-bin/imgdata"
    with PoliteClient(settings=settings, cache_dir=tmp_path) as client:
        first = client.get_page(url, params={"objname": "NGC 4486"})
        again = client.get_page(url, params={"objname": "NGC 4486"})
        other = client.get_page(url, params={"objname": "NGC 0005"})
    assert not first.from_cache and again.from_cache and not other.from_cache
    assert again.text == first.text and "NGC_4486:I:IIIaF:dss2.fits.gz" in first.text
    assert "NGC_4486" not in other.text
    assert again.fetched_at == first.fetched_at
    assert first.url == full_url(url, {"objname": "NGC 4486"})
    assert len(ned_server.hits) == 2
    assert {h.user_agent for h in ned_server.hits} == {settings.user_agent}


def test_500_is_retried_then_succeeds(ned_server, tmp_path):
    ned_server.fail("/cgi-bin/imgdata", "500", "500")
    with PoliteClient(settings=_settings(ned_server, tmp_path), cache_dir=tmp_path) as client:
        page = client.get_page(ned_server.url + "cgi-bin/imgdata", params={"objname": "NGC 0001"})
    assert "NGC_0001:I:IIIaF:dss2.fits.gz" in page.text
    assert [h.status for h in ned_server.hits] == [500, 500, 200]
    assert_polite(ned_server.hits, INTERVAL)


def test_persistent_500_gives_up_with_the_url_and_is_not_cached(ned_server, tmp_path):
    ned_server.fail("/cgi-bin/imgdata", "500", "500", "500")
    url = ned_server.url + "cgi-bin/imgdata"
    with PoliteClient(settings=_settings(ned_server, tmp_path, max_retries=2), cache_dir=tmp_path) as client:
        with pytest.raises(FetchError, match=r"imgdata\?objname=NGC\+0001: gave up after 3 attempts; last problem: HTTP 500"):
            client.get_page(url, params={"objname": "NGC 0001"})
        assert not client.is_cached(url, params={"objname": "NGC 0001"})
    assert len(ned_server.hits) == 3


def test_timeout_is_retried_without_blocking_the_server(tmp_path):
    server = FixtureServer(stall_seconds=2.0).start()
    try:
        server.fail("/cgi-bin/imgdata", "stall")
        with PoliteClient(settings=_settings(server, tmp_path, request_timeout=0.5), cache_dir=tmp_path) as client:
            page = client.get_page(server.url + "cgi-bin/imgdata", params={"objname": "NGC 0007"})
        assert "NGC_0007" in page.text
        # The retry was answered while the stalled handler was still asleep: the server is threaded.
        answered = [h for h in server.hits if not h.stalled]
        assert len(answered) == 1 and answered[0].status == 200
    finally:
        server.stop()


def test_404_fails_at_once_naming_the_url(ned_server, tmp_path):
    with PoliteClient(settings=_settings(ned_server, tmp_path), cache_dir=tmp_path) as client:
        with pytest.raises(FetchError, match=r"/img/nothing\.fits\.gz: HTTP 404"):
            client.get_page(ned_server.url + "img/nothing.fits.gz")
    assert len(ned_server.hits) == 1


def test_download_is_atomic_and_rejected_payload_leaves_nothing(ned_server, tmp_path):
    url = ned_server.url + "img/dss2/NGC_4486:I:IIIaF:dss2.fits.gz"
    dest = tmp_path / "out" / "a.fits.gz"
    with PoliteClient(settings=_settings(ned_server, tmp_path)) as client:
        size = client.download(url, dest)
        assert dest.read_bytes() == (DATA / "img" / "NGC_4486_I_IIIaF_dss2.fits.gz").read_bytes()
        assert size == dest.stat().st_size

        def reject(path):
            raise ConfigError("nope")

        other = tmp_path / "out" / "b.fits.gz"
        with pytest.raises(FetchError, match=r"NGC_4486:I:IIIaF:dss2\.fits\.gz: nope"):
            client.download(url, other, validate=reject)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.fits.gz"]


def test_requests_from_threads_never_overlap_and_keep_the_interval(ned_server, tmp_path):
    settings = _settings(ned_server, tmp_path)
    _four_listings_per_thread(ned_server, [PoliteClient(settings=settings) for _ in range(3)])
    assert len(ned_server.hits) == 12
    assert_polite(ned_server.hits, INTERVAL)


def test_bad_timeout_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"request_timeout must be > 0; got 0.0"):
        PoliteClient(settings=get_settings(request_timeout=0))


def test_limiters_sharing_a_lock_file_never_overlap(ned_server, tmp_path):
    # Separate limiters have separate thread locks, as two processes would: only the file orders them.
    settings = _settings(ned_server, tmp_path)
    _four_listings_per_thread(ned_server, [PoliteClient(settings=settings, limiter=RateLimiter()) for _ in range(3)])
    assert len(ned_server.hits) == 12
    assert_polite(ned_server.hits, INTERVAL)
    recorded = float(request_lock_path(settings).read_text())
    assert recorded <= time.time() and recorded > time.time() - 60


def test_a_garbled_lock_file_is_rewritten(tmp_path, caplog):
    lock = tmp_path / "deep" / "requests.lock"
    lock.parent.mkdir()
    lock.write_text("not a time at all, and longer than one record of the lock file" * 3)
    with caplog.at_level(logging.WARNING, logger="core.acquire.http"):
        with RateLimiter().slot(0.01, lock_path=lock):
            pass
    assert "holds" in caplog.text and str(lock) in caplog.text
    assert float(lock.read_text()) <= time.time()
    assert len(lock.read_bytes()) == 32


def test_an_unusable_lock_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"cannot open the request lock file .*file/x\.lock .*writable folder"):
        with RateLimiter().slot(0.01, lock_path=blocker / "x.lock"):
            pass


def test_without_fcntl_the_limiter_warns_and_stays_exclusive_in_process(ned_server, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(core.acquire.http, "fcntl", None)
    settings = _settings(ned_server, tmp_path)
    limiter = RateLimiter()
    with caplog.at_level(logging.WARNING, logger="core.acquire.http"):
        clients = [PoliteClient(settings=settings, limiter=limiter) for _ in range(2)]
        threads = [
            threading.Thread(target=c.get_page, args=(ned_server.url + "cgi-bin/imgdata",), kwargs={"params": {"objname": n}})
            for c, n in zip(clients, ["NGC 0001", "NGC 0002"])
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert caplog.text.count("exclusive within this process only") == 1
    assert not request_lock_path(settings).exists()
    assert len(ned_server.hits) == 2
    assert_polite(ned_server.hits, INTERVAL)


def _flock_waiters(lock: Path) -> set[int]:
    """Pids blocked in flock on ``lock``, from /proc/locks (blocked entries are marked '->')."""
    inode = os.stat(lock).st_ino
    pids = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[1] == "->" and fields[2] == "FLOCK" and fields[6].endswith(f":{inode}"):
            pids.add(int(fields[5]))
    return pids


@pytest.mark.skipif(core.acquire.http.fcntl is None or not Path("/proc/locks").exists(), reason="needs flock and /proc/locks")
def test_a_scrape_and_a_fetch_run_together_take_turns(ned_server, tmp_path):
    interval = 0.2
    names = [f"KRT {n:03d}" for n in range(1, 7)]
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame({"name": names, "classification": "E"}).to_csv(catalog, index=False)
    env = dict(
        os.environ,
        GALAXY_MORPH_NED_BASE_URL=ned_server.url,
        GALAXY_MORPH_REQUEST_INTERVAL=str(interval),
        GALAXY_MORPH_DATA_DIR=str(tmp_path),
    )
    commands = [
        ["scrape", "--classes", "E", "--out", str(tmp_path / "ned")],
        ["fetch", "--catalog", str(catalog), "--out", str(tmp_path / "images")],
    ]
    lock = request_lock_path(get_settings(data_dir=tmp_path))
    # Hold the slot until both commands are blocked on it, so they are certain to compete.
    with RateLimiter().slot(interval, lock_path=lock):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "core", *c], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for c in commands
        ]
        try:
            deadline = time.monotonic() + 120
            while _flock_waiters(lock) != {p.pid for p in procs}:
                assert all(p.poll() is None for p in procs), "a command ended before it asked for the slot"
                assert time.monotonic() < deadline, "the commands did not both wait for the slot within 120 s"
                time.sleep(0.02)
            assert ned_server.hits == []
        except BaseException:
            for p in procs:
                p.kill()
                p.communicate()
            raise
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    paths = [h.path for h in ned_server.hits]
    assert paths.count("/cgi-bin/OBJatt") == 3
    assert paths.count("/cgi-bin/imgdata") == len(names)
    assert sum(p.startswith("/img/") for p in paths) == len(names)
    assert_polite(ned_server.hits, interval)


def _four_listings_per_thread(ned_server, clients):
    """Each client asks for four image listings from its own thread, all at once."""

    def work(client):
        for name in ["NGC 0001", "NGC 0002", "NGC 0003", "NGC 0004"]:
            client.get_page(ned_server.url + "cgi-bin/imgdata", params={"objname": name})

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
