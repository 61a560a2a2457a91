"""Hostile and broken image files, made here at run time: bombs of each format, huge or negative
axes, cubes, truncated and corrupt data, wrong magic, weird upload names, a bomb served over HTTP.

Every file is read in its own subprocess, which reports its peak resident memory (``VmHWM``,
which unlike ``ru_maxrss`` does not count the memory pytest had when it started the child): a refusal must cost almost nothing, and no file under the dashboard's upload
limit may take the reader past 1 GB. The subprocess runs under a 3 GB address-space limit, so a
regression fails with a MemoryError instead of taking the machine down.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from PIL import Image

from core.config import get_settings
from core.errors import ImageReadError
from core.acquire.fetch import fetch_images
from core.images import UPLOAD_LIMIT_BYTES, display_name, inflate_limit, read_upload
from tests.fixture_server import DATA, FixtureServer

ROOT = Path(__file__).resolve().parent.parent
GB = 1024.0  # MB
REFUSAL_MB = 250.0  # the interpreter with numpy, astropy and Pillow imported is ~70 MB

_PROBE = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import numpy as np
from core.errors import ImageReadError
from core.images import read_image
try:
    image = read_image(sys.argv[1], rgb=sys.argv[2] == "rgb")
    result = {"shape": list(image.data.shape), "all_nan": bool(np.isnan(image.data).all())}
except ImageReadError as exc:
    result = {"error": str(exc)}
try:  # this process's own peak; ru_maxrss would also count the parent's memory before exec
    status = open("/proc/self/status").read()
    result["peak_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
except (OSError, IndexError):
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def probe(path: Path, *, rgb: bool = False) -> dict:
    """read_image of ``path`` in a fresh interpreter: the shape or the error, and the peak memory."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path), "rgb" if rgb else "grey"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- makers: each writes one file into a folder and returns its path ------------------------------


def _card(key: str, value: object) -> str:
    text = ("T" if value is True else str(value)) if not isinstance(value, str) else f"'{value:<8}'"
    return f"{key:<8}= {text:>20}"


def _header(*cards: str) -> bytes:
    return "".join(card.ljust(80) for card in (*cards, "END")).ljust(2880).encode("ascii")


def _primary(bitpix: int, *axes: int, extra: tuple[str, ...] = ()) -> bytes:
    cards = [_card("SIMPLE", True), _card("BITPIX", bitpix), _card("NAXIS", len(axes))]
    cards += [_card(f"NAXIS{i}", n) for i, n in enumerate(axes, 1)]
    return _header(*cards, *extra)


@functools.cache
def _zeros_member() -> bytes:
    """One gzip member of 64 MiB of zeros (~65 KB): members concatenate into a valid gzip stream."""
    return gzip.compress(bytes(64 << 20), compresslevel=9)


def _gzip_bomb(head: bytes, inflated: int) -> bytes:
    """``head`` followed by ``inflated`` bytes of zeros, as a small multi-member gzip file."""
    members, rest = divmod(inflated, 64 << 20)
    return gzip.compress(head) + _zeros_member() * members + (gzip.compress(bytes(rest)) if rest else b"")


def _fits_bytes(data: np.ndarray, header: fits.Header | None = None) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buffer)
    return buffer.getvalue()


def _pillow(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A 1 x 1 PNG whose IHDR (with a valid CRC) claims ``width`` x ``height``."""
    png = bytearray(_pillow(Image.new("L", (1, 1)), "PNG"))
    ihdr = bytearray(png[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    png[16:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(png)


def _jpeg_claiming(width: int, height: int) -> bytes:
    """An 8 x 8 JPEG whose SOF0 frame header claims ``width`` x ``height``."""
    jpeg = bytearray(_pillow(Image.new("L", (8, 8)), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


def _truncated(payload: bytes) -> bytes:
    return payload[: len(payload) // 2]


def _corrupt_gzip() -> bytes:
    packed = bytearray(gzip.compress(_fits_bytes(np.random.default_rng(0).normal(size=(64, 64)))))
    packed[len(packed) // 2 : len(packed) // 2 + 64] = bytes(range(64))
    return bytes(packed)


def _noise_png(size: int) -> bytes:
    return _pillow(Image.fromarray(np.random.default_rng(1).integers(0, 255, (size, size, 3), np.uint8)), "PNG")


SECRET = b"root:x:0:0:root:/root:/bin/bash\nsecret-token-1234\n"


@dataclass(frozen=True)
class Case:
    id: str
    name: str
    make: Callable[[], bytes]
    expect: str  # regex on the error, or "shape=H,W[,C]" for a file that must be read
    rgb: bool = False
    budget_mb: float = REFUSAL_MB


CASES = [
    # Decompression bombs of each format: refused from the header, nothing decoded.
    Case("png-bomb-13000", "bomb.png", lambda: _pillow(Image.new("L", (13000, 13000)), "PNG", optimize=True),
         r"13000 x 13000 = 169,000,000 pixels is larger than max_image_pixels = 50,000,000"),
    Case("rgb-png-bomb", "colour.png", lambda: _pillow(Image.new("RGB", (8000, 8000)), "PNG"),
         r"8000 x 8000 = 64,000,000 pixels is larger than max_image_pixels", rgb=True),
    Case("png-ihdr-claims-65535", "claims.png", lambda: _png_claiming(65535, 65535),
         r"larger than Pillow's limit of 178,956,970 pixels and than max_image_pixels = 50,000,000"),
    Case("jpeg-sof-claims-65500", "claims.jpg", lambda: _jpeg_claiming(65500, 65500),
         r"larger than Pillow's limit of 178,956,970 pixels and than max_image_pixels = 50,000,000"),
    Case("fits-gz-bomb-16384", "zeros.fits.gz", lambda: _gzip_bomb(_primary(-32, 16384, 16384), 1 << 30),
         r"16384 x 16384 = 268,435,456 pixels is larger than max_image_pixels = 50,000,000"),
    Case("gzip-bomb-not-fits", "zeros.fits.gz", lambda: _gzip_bomb(b"", 4 << 30),
         r"not a FITS file \(its gzip-compressed data does not start with 'SIMPLE  ='\)"),
    Case("fits-header-without-end", "endless.fits.gz",
         lambda: _gzip_bomb(_card("SIMPLE", True).ljust(80).encode(), 1 << 30),
         r"HDU 0 has a header of more than 100 blocks without an END card"),
    Case("fits-table-bomb-before-image", "table.fits.gz",
         lambda: _gzip_bomb(_primary(8) + _header(_card("XTENSION", "BINTABLE"), _card("BITPIX", 8), _card("NAXIS", 2),
                                                  _card("NAXIS1", 1 << 20), _card("NAXIS2", 1 << 20),
                                                  _card("PCOUNT", 0), _card("GCOUNT", 1), _card("TFIELDS", 0)), 1 << 30),
         r"HDU 1 ends 1,048,576 MB into the file, more than an image of max_image_pixels = 50,000,000 can need"),
    # Headers that lie or break the rules, in plain files of a few KB.
    Case("huge-naxis", "huge.fits", lambda: _primary(16, 100000, 100000),
         r"100000 x 100000 = 10,000,000,000 pixels is larger than max_image_pixels"),
    Case("3d-cube-too-large", "cube.fits", lambda: _primary(-32, 4000, 4000, 1000),
         r"3-D cube of 4000 x 4000 x 1000 = 16,000,000,000 pixels is larger than max_image_pixels"),
    Case("negative-naxis", "negative.fits", lambda: _primary(-32, -5, 10),
         r"corrupt FITS header in HDU 0: NAXIS = 2, axes \[-5, 10\].*axes must be >= 0"),
    Case("zero-naxis", "zero.fits", lambda: _primary(-32, 0, 0), r"zero-size data \(an axis of length 0\)"),
    Case("bad-bitpix", "bitpix.fits", lambda: _primary(12, 8, 8), r"BITPIX one of 8, 16, 32, 64, -32, -64"),
    # Real but odd images: read, in bounded memory.
    Case("4d-cube-first-plane", "cube4.fits", lambda: _fits_bytes(np.ones((2, 3, 16, 24), np.float32)), "shape=16,24",
         budget_mb=GB),
    Case("nan-only", "nan.fits", lambda: _fits_bytes(np.full((32, 32), np.nan, np.float32)), "shape=32,32",
         budget_mb=GB),
    Case("rgb-png-at-the-limit", "big.png", lambda: _pillow(Image.new("RGB", (7000, 7000), (9, 200, 30)), "PNG"),
         "shape=7000,7000,3", rgb=True, budget_mb=GB),
    Case("float64-fits-gz-at-the-limit", "big.fits.gz",
         lambda: _gzip_bomb(_primary(-64, 8192, 6100), -(-8192 * 6100 * 8 // 2880) * 2880), "shape=6100,8192",
         budget_mb=GB),
    # Truncated, corrupt, or not an image at all; the content of a non-image is never quoted.
    Case("truncated-fits-gz", "cut.fits.gz", lambda: _truncated(gzip.compress(_fits_bytes(np.ones((64, 64))))),
         r"truncated gzip file"),
    Case("corrupt-gzip", "bad.fits.gz", _corrupt_gzip, r"corrupt gzip data|truncated gzip|corrupt FITS"),
    Case("truncated-png", "cut.png", lambda: _truncated(_noise_png(64)), r"corrupt or truncated PNG"),
    Case("text-as-png", "notes.png", lambda: SECRET, r"not a valid JPEG or PNG file \(it does not start with"),
    Case("text-as-fits", "passwd.fits", lambda: SECRET, r"not a FITS file \(it does not start with 'SIMPLE  ='\)"),
    Case("html-as-fits-gz", "page.fits.gz", lambda: gzip.compress(b"  <html><body>" + SECRET + b"</body></html>"),
         r"looks like an HTML or XML page"),
    Case("text-unknown-suffix", "passwd", lambda: SECRET, r"unsupported format \(not FITS, JPEG or PNG\)"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_file_is_refused_or_read_in_bounded_memory(case: Case, tmp_path: Path) -> None:
    path = tmp_path / case.name
    path.write_bytes(case.make())
    assert path.stat().st_size < UPLOAD_LIMIT_BYTES  # every case could be uploaded on Classify
    result = probe(path, rgb=case.rgb)
    if case.expect.startswith("shape="):
        assert "error" not in result, result
        assert result["shape"] == [int(n) for n in case.expect[6:].split(",")]
        assert result["all_nan"] == (case.id == "nan-only")
    else:
        assert "error" in result, result
        error = result["error"]
        assert error.startswith(f"{path}: "), error
        assert re.search(case.expect, error), error
        assert "root:x" not in error and "secret" not in error and "b'" not in error, error
        assert ".." not in error.replace(str(path), ""), error
    assert result["peak_mb"] < case.budget_mb, f"{case.id}: peak {result['peak_mb']:.0f} MB"


# -- the builder's metrics pass records each refusal as a reason and goes on -----------------------


def test_metrics_pass_records_each_refusal_and_measures_the_rest(tmp_path: Path) -> None:
    from core.prepare.quality import compute_metrics

    images = tmp_path / "source" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(4)
    files = {
        "good.fits": _fits_bytes(rng.normal(100, 5, (48, 48)).astype(np.float32)),
        "bomb.fits.gz": _gzip_bomb(_primary(-32, 16384, 16384), 1 << 30),
        "claims.png": _png_claiming(20000, 20000),
        "passwd.fits": SECRET,
    }
    for name, payload in files.items():
        (images / name).write_bytes(payload)
    pd.DataFrame({"name": [f"G{i}" for i in range(len(files))], "classification": ["E"] * len(files),
                  "file": [f"images/{name}" for name in files]}).to_csv(tmp_path / "source" / "catalog.csv", index=False)
    metrics = compute_metrics(tmp_path / "source", n_jobs=1).set_index("path")
    errors = {Path(path).name: error for path, error in metrics["read_error"].items()}
    assert errors["good.fits"] == ""
    assert "16384 x 16384 = 268,435,456 pixels is larger than max_image_pixels = 50,000,000" in errors["bomb.fits.gz"]
    assert "max_image_pixels = 50,000,000" in errors["claims.png"]
    assert errors["passwd.fits"].startswith("not a FITS file") and "root" not in errors["passwd.fits"]


def test_a_smaller_max_image_pixels_setting_is_read_at_call_time(tmp_path: Path, monkeypatch) -> None:
    from core.images import read_image

    path = tmp_path / "a.fits"
    path.write_bytes(_fits_bytes(np.ones((40, 50), np.float32)))
    assert read_image(path).data.shape == (40, 50)
    monkeypatch.setenv("GALAXY_MORPH_MAX_IMAGE_PIXELS", "1999")
    with pytest.raises(ImageReadError, match=r"50 x 40 = 2,000 pixels is larger than max_image_pixels = 1,999\."):
        read_image(path)


# -- uploads on Classify: any name gives a message, never an OSError / ValueError ------------------


WEIRD_NAMES = [
    "galaxy." + "x" * 300,  # a suffix longer than a file name may be
    "gal\x00axy.png",  # NUL
    "a" * 5000 + ".fits",
    "../../etc/passwd",
    "/etc/hostname",
    "![b](http://127.0.0.1:9/x.png).png",
    "$\\input{/etc/passwd}$.jpg",
    "\u202egnp.exe",  # right-to-left override
    "line\nbreak\r.fits.gz",
    "",
    ".",
    "..",
    "CON.png",
]


@pytest.mark.parametrize("name", WEIRD_NAMES, ids=range(len(WEIRD_NAMES)))
def test_upload_with_any_name_is_read_or_refused_with_a_message(name: str) -> None:
    image = read_upload(name, _pillow(Image.new("L", (12, 10), 7), "PNG"))
    assert image.data.shape == (10, 12) and image.format == "png"
    with pytest.raises(ImageReadError) as info:
        read_upload(name, SECRET)
    message = str(info.value)
    shown = display_name(name)
    assert message.startswith(f"{shown}: ")
    assert message.endswith("Upload a FITS, JPEG or PNG cutout of a galaxy.")
    assert len(shown) <= 80 and shown.isprintable()
    assert "root:x" not in message and "b'" not in message and ".." not in message.removeprefix(shown)


def test_upload_refusals_name_the_limit_without_a_double_full_stop() -> None:
    with pytest.raises(ImageReadError, match=r"^notes\.png: not a valid JPEG or PNG file \(it does not start with a "
                       r"JPEG or PNG signature\)\. Upload a FITS, JPEG or PNG cutout of a galaxy\.$"):
        read_upload("notes.png", b"this is not an image")
    with pytest.raises(ImageReadError, match=r"^bomb\.png: image of 13000 x 13000 = 169,000,000 pixels is larger than "
                       r"max_image_pixels = 50,000,000\. Upload"):
        read_upload("bomb.png", _png_claiming(13000, 13000))
    with pytest.raises(ImageReadError, match=r"file is 2\.0 MB; the limit is 1 MB\. Upload a cutout\.$"):
        read_upload("big.fits", b"0" * (2 << 20), max_bytes=1 << 20)


# -- fetch: a bomb on the server is refused and recorded, the batch goes on ------------------------


def _listing(name: str, link: str) -> str:
    template = (DATA / "imgdata" / "NGC_0001.html").read_text()
    return template.replace("NGC 0001", name).replace("/img/dss2/NGC_0001:I:IIIaF:dss2", link)


def test_fetch_refuses_bombs_and_oversized_downloads_and_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "ned"
    shutil.copytree(DATA, root)
    links = {"BOMB 1": "/img/dss2/BOMB_1:I:IIIaF:dss2", "HUGE 1": "/img/dss2/HUGE_1:I:IIIaF:dss2",
             "HUGE 2": "/img/dss2/HUGE_2:I:IIIaF:dss2"}
    for name, link in links.items():
        (root / "imgdata" / f"{name.replace(' ', '_')}.html").write_text(_listing(name, link))
    (root / "img" / "BOMB_1_I_IIIaF_dss2.fits.gz").write_bytes(_gzip_bomb(_primary(-32, 16384, 16384), 1 << 30))
    server = FixtureServer(root).start()
    try:
        settings = get_settings(ned_base_url=server.url, request_interval=0.01, request_timeout=5, max_retries=0,
                                data_dir=tmp_path, max_image_pixels=10_000)
        cap = inflate_limit(10_000)
        server.serve("/img/dss2/HUGE_1:I:IIIaF:dss2.fits.gz", bytes(cap + 1))
        server.serve("/img/dss2/HUGE_2:I:IIIaF:dss2.fits.gz", bytes(cap + 1), send_length=False)
        out = tmp_path / "images"
        summary = fetch_images(pd.DataFrame({"name": [*links, "NGC 4486"]}), out=out, settings=settings)
    finally:
        server.stop()
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False).set_index("name")
    assert manifest["status"].to_dict() == {"BOMB 1": "failed", "HUGE 1": "failed", "HUGE 2": "failed", "NGC 4486": "ok"}
    assert "16384 x 16384 = 268,435,456 pixels is larger than max_image_pixels = 10,000" in manifest.loc["BOMB 1", "reason"]
    assert f"the server announces {cap + 1:,} bytes; downloads are limited to {cap:,} bytes" in manifest.loc["HUGE 1", "reason"]
    assert f"the body went past the limit; downloads are limited to {cap:,} bytes" in manifest.loc["HUGE 2", "reason"]
    assert summary.counts == {"ok": 1, "failed": 3, "no_image": 0}
    assert sorted(p.name for p in out.glob("*.fits.gz")) == [manifest.loc["NGC 4486", "file"]]  # nothing refused is kept


# -- the same uploads through the Classify page ----------------------------------------------------


@pytest.fixture
def classify(world: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("GALAXY_MORPH_DATA_DIR", str(world["data"]))
    monkeypatch.setenv("GALAXY_MORPH_RUNS_DIR", str(world["runs"]))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/classify.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


PAGE_UPLOADS = [
    ("gal\x00axy.png", SECRET, "not a valid JPEG or PNG file"),
    ("x." + "a" * 300 + ".png", SECRET, "not a valid JPEG or PNG file"),
    ("![b](http://127.0.0.1:9/x.png).png", SECRET, "not a valid JPEG or PNG file"),
    ("notes.txt", SECRET, "unsupported format (not FITS, JPEG or PNG)"),
    ("bomb.png", _png_claiming(13000, 13000), "13000 x 13000 = 169,000,000 pixels is larger than max"),
]


@pytest.mark.parametrize(("name", "payload", "message"), PAGE_UPLOADS, ids=range(len(PAGE_UPLOADS)))
def test_classify_page_shows_an_error_for_any_upload(classify, name: str, payload: bytes, message: str) -> None:
    classify.file_uploader(key="cls_upload").upload(name, payload, "image/png")
    classify.run()
    assert not classify.exception, [e.value for e in classify.exception]
    errors = [e.value for e in classify.error]
    assert len(errors) == 1 and message in errors[0].replace("\\", ""), errors
    assert "![" not in errors[0] and "root:x" not in errors[0], errors  # a name is text, never Markdown


def test_classify_page_reads_an_upload_with_a_long_suffix(classify) -> None:
    name = "galaxy." + "x" * 300 + ".png"
    classify.file_uploader(key="cls_upload").upload(name, _pillow(Image.new("L", (40, 40), 90), "PNG"), "image/png")
    classify.run()
    assert not classify.exception and not classify.error, [e.value for e in [*classify.exception, *classify.error]]
    assert any(display_name(name)[:40] in h.value.replace("\\", "") for h in classify.subheader)


# -- audit 2 (issue 22), the rows that live in core/images.py ---------------------------------------


def _progressive_jpeg(size: int = 64) -> bytes:
    gradient = np.add.outer(np.arange(size), np.arange(size)).astype(np.uint8)
    return _pillow(Image.fromarray(gradient).convert("RGB"), "JPEG", progressive=True, quality=90)


def _repeat_last_scan(jpeg: bytes, times: int) -> bytes:
    """The JPEG with its last scan (SOS marker to EOI) written ``times`` more times: a scan bomb.

    A refinement scan read again only refines the same coefficients, so libjpeg decodes the file,
    one full pass per scan.
    """
    last = jpeg.rindex(b"\xff\xda")
    end = jpeg.rindex(b"\xff\xd9")
    return jpeg[:end] + jpeg[last:end] * times + jpeg[end:]


def test_audit2_row07_progressive_jpeg_scan_bomb_refused(tmp_path: Path) -> None:
    from core.images import MAX_JPEG_SCANS, read_image

    real = _progressive_jpeg()
    scans = real.count(b"\xff\xda")
    assert 2 < scans <= 12  # what an encoder writes (Pillow/libjpeg's progressive script)
    assert read_image(_write(tmp_path / "real.jpg", real)).data.shape == (64, 64)
    bomb = _repeat_last_scan(real, 5 * MAX_JPEG_SCANS)
    with Image.open(io.BytesIO(bomb)) as opened:  # the bomb is a JPEG Pillow would decode
        opened.load()
    with pytest.raises(ImageReadError, match=rf"bomb.jpg: JPEG with more than {MAX_JPEG_SCANS} scans"):
        read_image(_write(tmp_path / "bomb.jpg", bomb))
    # Also gzipped, and as an upload on Classify.
    with pytest.raises(ImageReadError, match="scan bomb"):
        read_image(_write(tmp_path / "bomb.jpg.gz", gzip.compress(bomb)))
    with pytest.raises(ImageReadError, match=r"^upload\.jpg: JPEG with more than"):
        read_upload("upload.jpg", bomb)


def test_audit2_row19_int16_with_bscale_1e300_gives_nan_not_inf(tmp_path: Path) -> None:
    from core.images import read_image

    values = np.arange(-512, 512, dtype=">i2").reshape(32, 32)
    header = _primary(16, 32, 32, extra=(_card("BSCALE", "1.0E+300"),))
    image = read_image(_write(tmp_path / "bscale.fits", header + values.tobytes().ljust(2880, b"\0")))
    assert not np.isinf(image.data).any()
    # Every pixel but the zero overflows float32: missing, as the reader documents for inf.
    assert np.isnan(image.data).sum() == values.size - 1
    assert image.data[values == 0] == 0.0


def _write(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path
