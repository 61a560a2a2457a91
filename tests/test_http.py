"""The polite client against the local fixture server: limiter, retries, timeouts, cache."""

from __future__ import annotations

import threading

import pytest

from core.config import get_settings
from core.errors import ConfigError, FetchError
from core.http import PoliteClient, full_url
from tests.fixture_server import DATA, FixtureServer, assert_polite, ned_server  # noqa: F401 - fixture

INTERVAL = 0.1


def _settings(server: FixtureServer, **overrides):
    values = dict(ned_base_url=server.url, request_interval=INTERVAL, request_timeout=0.5, max_retries=2)
    values.update(overrides)
    return get_settings(**values)


def test_get_page_sends_user_agent_and_caches_by_full_query(ned_server, tmp_path):
    settings = _settings(ned_server)
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
    with PoliteClient(settings=_settings(ned_server), cache_dir=tmp_path) as client:
        page = client.get_page(ned_server.url + "cgi-bin/imgdata", params={"objname": "NGC 0001"})
    assert "NGC_0001:I:IIIaF:dss2.fits.gz" in page.text
    assert [h.status for h in ned_server.hits] == [500, 500, 200]
    assert_polite(ned_server.hits, INTERVAL)


def test_persistent_500_gives_up_with_the_url_and_is_not_cached(ned_server, tmp_path):
    ned_server.fail("/cgi-bin/imgdata", "500", "500", "500")
    url = ned_server.url + "cgi-bin/imgdata"
    with PoliteClient(settings=_settings(ned_server, max_retries=2), cache_dir=tmp_path) as client:
        with pytest.raises(FetchError, match=r"imgdata\?objname=NGC\+0001: gave up after 3 attempts; last problem: HTTP 500"):
            client.get_page(url, params={"objname": "NGC 0001"})
        assert not client.is_cached(url, params={"objname": "NGC 0001"})
    assert len(ned_server.hits) == 3


def test_timeout_is_retried_without_blocking_the_server(tmp_path):
    server = FixtureServer(stall_seconds=2.0).start()
    try:
        server.fail("/cgi-bin/imgdata", "stall")
        with PoliteClient(settings=_settings(server, request_timeout=0.5), cache_dir=tmp_path) as client:
            page = client.get_page(server.url + "cgi-bin/imgdata", params={"objname": "NGC 0007"})
        assert "NGC_0007" in page.text
        # The retry was answered while the stalled handler was still asleep: the server is threaded.
        answered = [h for h in server.hits if not h.stalled]
        assert len(answered) == 1 and answered[0].status == 200
    finally:
        server.stop()


def test_404_fails_at_once_naming_the_url(ned_server, tmp_path):
    with PoliteClient(settings=_settings(ned_server), cache_dir=tmp_path) as client:
        with pytest.raises(FetchError, match=r"/img/nothing\.fits\.gz: HTTP 404"):
            client.get_page(ned_server.url + "img/nothing.fits.gz")
    assert len(ned_server.hits) == 1


def test_download_is_atomic_and_rejected_payload_leaves_nothing(ned_server, tmp_path):
    url = ned_server.url + "img/dss2/NGC_4486:I:IIIaF:dss2.fits.gz"
    dest = tmp_path / "out" / "a.fits.gz"
    with PoliteClient(settings=_settings(ned_server)) as client:
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
    settings = _settings(ned_server)
    clients = [PoliteClient(settings=settings) for _ in range(3)]
    names = ["NGC 0001", "NGC 0002", "NGC 0003", "NGC 0004"]

    def work(client):
        for name in names:
            client.get_page(ned_server.url + "cgi-bin/imgdata", params={"objname": name})

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ned_server.hits) == 12
    assert_polite(ned_server.hits, INTERVAL)


def test_bad_timeout_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"request_timeout must be > 0; got 0.0"):
        PoliteClient(settings=get_settings(request_timeout=0))
