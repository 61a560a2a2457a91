"""The built-in synthetic sample sky: NED-like catalogue rows and FITS images, made offline.

``python -m core sample`` (or :func:`generate_sample`) writes a folder in the same layout as the
NED path, so every later step (preprocessing, dataset builder, training, dashboard) runs on it
without a network::

    out/
      catalog.csv    name, redshift, classification, requested, file, ra, dec  (NED's columns)
      truth.csv      one row per image file: the true type, warts and geometry (below)
      SAMPLE.json    {version, seed, n, generated_with, rates, counts}
      images/        one FITS file per image, mostly .fits.gz, some plain .fits

What ``n`` means
----------------
``n`` is the number of distinct **galaxies**. The catalogue has more rows than that: each
*duplicate* galaxy adds a second name (its own row and its own image, e.g. ``NGC 1234`` and
``2MASX J...`` within 1 arcsec), and each *label conflict* adds a second row for the same name
and file under another ``requested`` term. So ``catalog.csv`` has
``n + counts["duplicate"] + counts["conflict"]`` rows and ``images/`` (and ``truth.csv``) has
``n + counts["duplicate"]`` files.

Determinism
-----------
Everything about galaxy ``i`` (type, geometry, warts, noise) comes from a
``numpy.random.SeedSequence(seed, spawn_key=(i, ...))``, names from their own stream, so the
same ``seed`` and ``n`` give byte-identical files whatever the number of worker processes.

The physics, per image
----------------------
* **Ellipticals** (E0-E7, E, E+, cD, D/cD): a Sérsic bulge, index n ~ 3.5-5 (4-6 for E+ and
  cD), projected axis ratio q = 1 - k/10 for type Ek (+-0.04, the width of NED's rounding
  bin); cD and D/cD add an extended exponential envelope. E-numbers are drawn as observed,
  mostly E0-E3, rarely E6-E7.
* **S0** (S0, S0^-, SA0, SB0, SAB0^+, ...): a nearly round Sérsic bulge (n ~ 2.5-4, B/T
  0.3-0.5) plus a smooth exponential disc three to five times larger, inclined 55-88 deg so
  the flat disc shows. SB0 / SAB0
  get a bar. **S0/a** is the same (B/T 0.3-0.45) with faint (amplitude 0.15-0.3), tight (pitch 8-12 deg)
  arms.
* **Spirals** (SA/SAB/SB or plain S, stages a ... m, rings (r), (s), (rs)): bulge + exponential
  disc modulated by m = 2 (sometimes 3) logarithmic arms. With the stage, from a to d the
  pitch angle opens (8 -> 30 deg) and the bulge fraction falls (B/T 0.35 -> 0.02); Sm has no
  bulge and one-armed, lopsided arms. SB bars are strong (8-15 % of the light), SAB bars weak
  (3-6 %) and shorter. Inner rings (r) add a ring at the bar's end. Nearly edge-on spirals
  (8 %, i > 78 deg) get a dust lane; the others are inclined at most 65 deg so the arms show.
* **Irregular / peculiar** (Im, IBm, I, Irr, Pec, S?): a faint, lopsided disc plus 4-12
  star-forming clumps placed asymmetrically; Pec adds a companion and a tidal arc, S? weak
  arms; all of these are ``unclassified`` in ``hubble3`` (truth). Sc pec is an Sc with a
  companion and a tidal arc: a disturbed spiral, so its truth is ``Spiral``, as NED's string says.
* Discs have an intrinsic thickness q0 = 0.1-0.2, so their projected axis ratio is
  sqrt(cos^2 i + q0^2 sin^2 i) (Hubble 1926); inclination is drawn isotropically (uniform in
  cos i) within the ranges above, position angle uniformly.
* **Size and redshift**: the image is a survey cut-out about the galaxy, so the half-light
  radius is drawn as 5-9 % of the side for ellipticals and 8-14 % for the others; its angular size then fixes the redshift through the
  angular-diameter distance of astropy's Planck18 cosmology and a physical half-light radius
  drawn per family (E 2-10 kpc, discs 3-10 kpc, Irr 1-4 kpc): smaller on the sky means farther.
* **Instrument**: a survey per image (DSS2 red, SDSS r, 2MASS K, GALEX NUV) with its pixel
  scale (0.4-1.7 arcsec/px), seeing (Moffat, beta 2.5-4.5, or Gaussian; FWHM per survey),
  sky level, read noise and units. The model is rendered at the final resolution (2x
  oversampled and binned when r_e < 20 px), convolved with the PSF, then gets foreground stars
  (PSF-shaped points), sky (a mild gradient in 30 % of images), Poisson and read noise. SDSS frames are sky-subtracted, as SDSS serves them.
  DSS images are stored as scaled 16-bit integers (BSCALE/BZERO/BLANK), the rest as float32.

Warts (per galaxy, at the rates of :class:`SampleRates`; ``wart`` in ``truth.csv``)
------------------------------------------------------------------------------------
``none`` (clean: mean surface brightness inside r_e of 15-50 sky sigma per pixel), ``low_snr``
(0.3-1 sky sigma), ``saturated``
(core clipped at the header's ``SATURATE``), ``nan_region`` (a NaN stripe or block, or a
zero-filled chip gap), ``blank`` (all zeros), ``off_centre`` (galaxy 15-30 % of the side away
from the image centre; the WCS still puts the catalogue ra/dec on the galaxy), ``thumbnail``
(16-28 px image), ``duplicate`` (the extra image of a galaxy listed under a second name; its
first image keeps its own wart). ``conflict`` is a catalogue wart: the name appears twice
under two ``requested`` terms, and for about half of those the second row also has a
different ``classification`` string.

``truth.csv`` columns
---------------------
``name, file, true_type, family`` (E, S0, S0/a, S, Irr), ``bar`` (A, AB, B or empty),
``stage``, ``hubble3`` (E, S0, Spiral, unclassified), ``wart``, ``duplicate_of``, ``conflict``,
``ra, dec, redshift, pixel_scale`` (arcsec/px), ``size_px``, ``half_light_px`` (measured on the
noiseless model, circular), ``centre_x, centre_y`` (true galaxy centre, 0-based pixel
coordinates, x = column, as ``astropy.wcs.WCS.pixel_to_world`` takes them), ``survey``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import gzip
import io
import logging
import math
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import __version__
from core.errors import ConfigError
from core.io import (
    SAMPLE,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_output_path,
    check_replaceable,
    read_json_object,
    out_of_space_as_error,
    read_jsonl,
)
from core.progress import Progress

logger = logging.getLogger(__name__)

SAMPLE_VERSION = "5"
"""Bumped whenever the rendering or the population changes, so :func:`ensure_sample` rebuilds."""

CATALOG_COLUMNS = ("name", "redshift", "classification", "requested", "file", "ra", "dec")
TRUTH_COLUMNS = (
    "name", "file", "true_type", "family", "bar", "stage", "hubble3", "wart", "duplicate_of",
    "conflict", "ra", "dec", "redshift", "pixel_scale", "size_px", "half_light_px", "centre_x",
    "centre_y", "survey",
)
IMAGE_WARTS = ("low_snr", "saturated", "nan_region", "blank", "off_centre", "thumbnail")
REQUIRED_TYPES = (
    "E0", "E+", "S0^-", "S0/a", "SA(s)b", "SAB(rs)bc", "SB0", "Sb(f)", "D/cD", "IBm", "Sm", "Pec",
)
"""Raw type strings every sample of at least this many galaxies contains (NED's variety)."""

_PROGRESS_FILE = ".sample-progress.jsonl"
_PARAMS_FILE = ".sample-params.json"
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class SampleRates:
    """Population fractions and wart rates of the sample, all in one place.

    Family fractions must sum to 1; each wart rate is the probability that a galaxy has it
    (image warts exclude each other; ``duplicate`` and ``conflict`` are independent of them).
    """

    elliptical: float = 0.25
    lenticular: float = 0.20
    s0a: float = 0.07
    spiral: float = 0.40
    irregular: float = 0.08
    low_snr: float = 0.06
    saturated: float = 0.04
    nan_region: float = 0.04
    blank: float = 0.01
    off_centre: float = 0.04
    thumbnail: float = 0.03
    duplicate: float = 0.03
    conflict: float = 0.03
    plain_fits: float = 0.10
    missing_redshift: float = 0.02

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"rate {f.name} must be in [0, 1]; got {value}. Use a fraction.")
        families = sum(self.families().values())
        if abs(families - 1.0) > 1e-6:
            raise ConfigError(
                f"family fractions must sum to 1; got {families:.4f}. Adjust elliptical, lenticular, "
                "s0a, spiral and irregular."
            )
        warts = sum(getattr(self, w) for w in IMAGE_WARTS)
        if warts > 1.0:
            raise ConfigError(f"image wart rates must sum to at most 1; got {warts:.3f}. Lower them.")

    def families(self) -> dict[str, float]:
        """Family -> fraction, in the order E, S0, S0/a, S, Irr."""
        return {"E": self.elliptical, "S0": self.lenticular, "S0/a": self.s0a, "S": self.spiral,
                "Irr": self.irregular}


@dataclass(frozen=True)
class _Survey:
    name: str
    telescope: str
    filter: str
    bunit: str
    scale: tuple[float, float]  # arcsec / px
    seeing: tuple[float, float]  # FWHM, arcsec
    sky: tuple[float, float]  # electrons / px
    read_noise: tuple[float, float]
    gain: float  # BUNIT per electron
    years: tuple[int, int]
    weight: float
    integer: bool = False
    sky_subtracted: bool = False
    epoch_only: bool = False


def _surveys() -> tuple[_Survey, ...]:
    return (
        _Survey("DSS2 red", "Palomar 48-inch Schmidt", "RG610", "ADU", (0.9, 1.7), (2.0, 3.5),
                (300, 1500), (5, 12), 1.0, (1985, 1999), 0.40, integer=True, epoch_only=True),
        _Survey("SDSS r", "SDSS 2.5m", "r", "nanomaggy", (0.396, 0.6), (1.0, 1.6), (100, 400),
                (4, 8), 0.005, (2000, 2008), 0.30, sky_subtracted=True),
        _Survey("2MASS K", "2MASS 1.3m", "Ks", "DN", (1.0, 1.0), (2.5, 3.2), (500, 2000),
                (6, 12), 0.1, (1997, 2001), 0.15),
        _Survey("GALEX NUV", "GALEX", "NUV", "counts/s", (1.5, 1.5), (4.5, 5.5), (20, 120),
                (0.5, 2), 0.01, (2003, 2012), 0.15),
    )


# ---------------------------------------------------------------------------------------------
# Public API


def generate_sample(
    out: str | Path,
    *,
    n: int = 2000,
    seed: int = 0,
    n_jobs: int | None = None,
    progress: Progress | None = None,
    rates: SampleRates | None = None,
    force: bool = False,
) -> Path:
    """Write a synthetic sample of ``n`` galaxies to ``out`` and return the folder.

    Parameters
    ----------
    out : str or Path
        Folder to write; created if missing. It must be empty or hold a sample made earlier
        with the same ``n`` and ``seed`` (an interrupted run resumes where it stopped), or
        ``force`` must be set to replace a sample made with others. Any other folder is refused.
    n : int
        Number of distinct galaxies (duplicates and conflicts add catalogue rows; see the
        module docstring).
    seed : int
        Everything is a deterministic function of ``(seed, n)``.
    n_jobs : int or None
        Worker processes; ``None`` uses ``get_settings().n_workers``.
    progress : Progress or None
        Advanced once per image written; its ``total`` is set if it was ``None``.
    rates : SampleRates or None
        Population and wart rates; ``None`` for the defaults.
    force : bool
        Replace a sample made with another ``n`` or ``seed``.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ConfigError
        If ``n``, ``seed`` or ``n_jobs`` is out of range, or ``out`` may not be replaced.

    Examples
    --------
    >>> generate_sample("data/sample", n=200, seed=1)  # doctest: +SKIP
    PosixPath('data/sample')
    """
    from core.acquire.measure import compute_metrics
    from core.parallel import resolve_jobs, run_parallel

    n, seed = _validate(n=n, seed=seed)
    rates = rates or SampleRates()
    n_jobs = resolve_jobs(n_jobs)
    out = Path(out)
    params = _params(n=n, seed=seed, rates=rates)
    check_output_path(out, option="out")
    # On a full disk a folder this call created goes with the error (one started earlier stays, to resume).
    created = not out.exists()
    with out_of_space_as_error(out, cleanup=lambda: shutil.rmtree(out, ignore_errors=True) if created else None):
        _prepare_folder(out, params, force=force)

        rows, specs = _plan(n=n, seed=seed, rates=rates)
        done = {rec["file"]: rec for rec in read_jsonl(out / _PROGRESS_FILE) if (out / rec["file"]).exists()}
        todo = [s for s in specs if s["file"] not in done]
        logger.info("sample: %d galaxies, %d images (%d already written) in %s", n, len(specs), len(done), out)
        if progress is not None:
            if progress.total is None:
                progress.total = len(specs)
            if done:
                progress.update(len(done))

        for rec in run_parallel(_render_task, [(s, out) for s in todo], n_jobs=n_jobs):
            append_jsonl(out / _PROGRESS_FILE, rec)
            done[rec["file"]] = rec
            if progress is not None:
                progress.update(1)

        _write_tables(out, rows, specs, done, params)
        root = out.resolve()
        measured = {str(root / file): rec["metrics"] for file, rec in done.items() if "metrics" in rec}
        compute_metrics(root, measured=measured, n_jobs=n_jobs)
        (out / _PROGRESS_FILE).unlink(missing_ok=True)
        (out / _PARAMS_FILE).unlink(missing_ok=True)
    return out


def ensure_sample(
    out: str | Path,
    *,
    n: int = 2000,
    seed: int = 0,
    n_jobs: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Generate the sample in ``out`` unless one with the same parameters and version is there.

    The dashboard calls this on first run; ``python -m core sample --if-missing`` too. A sample
    this tool made with other parameters is replaced (asking for one is asking for that one);
    a folder that is not a sample is refused, as by :func:`generate_sample`.

    Returns
    -------
    Path
        ``out``.

    Examples
    --------
    >>> ensure_sample("data/sample")  # first call renders, later calls return at once  # doctest: +SKIP
    PosixPath('data/sample')
    """
    n, seed = _validate(n=n, seed=seed)
    out = Path(out)
    if sample_is_current(out, n=n, seed=seed):
        logger.info("sample in %s is up to date (n=%d, seed=%d); nothing to do", out, n, seed)
        return out
    return generate_sample(out, n=n, seed=seed, n_jobs=n_jobs, progress=progress, force=True)


def sample_is_current(out: str | Path, *, n: int = 2000, seed: int = 0) -> bool:
    """Whether ``out`` holds a finished sample made with ``n``, ``seed`` and this version."""
    out = Path(out)
    meta_path = out / "SAMPLE.json"
    if not (out / "catalog.csv").exists() or not meta_path.exists():
        return False
    try:
        meta = read_json_object(meta_path, max_bytes=2**20)  # refuses a named pipe, which would block
    except ValueError:
        return False
    return (
        meta.get("version") == SAMPLE_VERSION
        and meta.get("n") == n
        and meta.get("seed") == seed
        and meta.get("rates") == dataclasses.asdict(SampleRates())
    )


def safe_file_stem(name: str) -> str:
    """``'NGC 2207/IC 2163'`` -> ``'NGC_2207_IC_2163'``: characters outside [A-Za-z0-9._+-] become ``_``."""
    stem = _SAFE_CHARS.sub("_", name).strip(".")
    return stem or "_"


# ---------------------------------------------------------------------------------------------
# Validation and folder handling


def _validate(*, n: Any, seed: Any) -> tuple[int, int]:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"n must be a positive integer; got {n!r}. Use the number of galaxies, e.g. 2000.")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}. Use e.g. 0.")
    return int(n), int(seed)


def _params(*, n: int, seed: int, rates: SampleRates) -> dict[str, Any]:
    return {"version": SAMPLE_VERSION, "n": n, "seed": seed, "rates": dataclasses.asdict(rates)}


def _prepare_folder(out: Path, params: dict[str, Any], *, force: bool) -> None:
    """Make ``out`` ready: keep a resumable run with the same parameters, else clear our files."""
    ours = check_replaceable(
        out, kind=SAMPLE, force=force, option="out",
        same=lambda old: (old.get("n"), old.get("seed")) == (params["n"], params["seed"]),
    )
    if ours is not None:
        previous = None
        if (out / _PARAMS_FILE).exists():
            try:
                previous = read_json_object(out / _PARAMS_FILE, max_bytes=2**20)
            except ValueError:
                previous = None
        if previous != params:
            # A finished sample or a run with other parameters: start from scratch.
            (out / _PROGRESS_FILE).unlink(missing_ok=True)
            if (out / "images").is_dir():
                shutil.rmtree(out / "images")
            for name in ("catalog.csv", "truth.csv", "SAMPLE.json"):
                (out / name).unlink(missing_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / _PARAMS_FILE, params)


# ---------------------------------------------------------------------------------------------
# Planning: every random decision except pixel noise, in the main process, in index order


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


_STREAM_NAMES, _STREAM_SHOWCASE, _STREAM_GALAXY = 1, 2, 3


def _plan(*, n: int, seed: int, rates: SampleRates) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Catalogue rows and image specs (plain dicts, cheap to send to workers)."""
    dist_grid = _distance_grid()
    forced_types, forced_warts = _showcase_positions(n, seed, rates)
    galaxies = []
    for i in range(n):
        rng = _rng(seed, _STREAM_GALAXY, i)
        galaxies.append(_plan_galaxy(i, rng, rates, dist_grid, forced_type=forced_types.get(i),
                                     forced_wart=forced_warts.get(i)))
    names = _assign_names(galaxies, seed)
    rows: list[dict[str, Any]] = []
    specs: list[dict[str, Any]] = []
    used_files: set[str] = set()
    for g, (name, second) in zip(galaxies, names, strict=True):
        g["name"] = name
        spec = _image_spec(g, g["image"], name=name, ra=g["ra"], dec=g["dec"], used=used_files,
                           seed=seed, k=0, plain=g["plain"][0])
        spec["duplicate_of"] = ""
        specs.append(spec)
        rows.append(_catalog_row(name, g, g["type"], g["requested"], spec["file"], g["ra"], g["dec"]))
        if g["conflict"]:
            c = g["conflict"]
            rows.append(_catalog_row(name, g, c["type"], c["requested"], spec["file"], g["ra"], g["dec"]))
        if g["duplicate"]:
            d = g["duplicate"]
            dspec = _image_spec(g, d["image"], name=second, ra=d["ra"], dec=d["dec"], used=used_files,
                                seed=seed, k=1, plain=g["plain"][1])
            dspec["wart"] = "duplicate"
            dspec["duplicate_of"] = name
            spec["duplicate_of"] = second
            specs.append(dspec)
            rows.append(_catalog_row(second, g, g["type"], g["requested"], dspec["file"], d["ra"], d["dec"]))
    return rows, specs


def _catalog_row(name: str, g: dict[str, Any], ctype: str, requested: str, file: str, ra: float,
                 dec: float) -> dict[str, str]:
    z = "" if g["missing_z"] else f"{g['redshift']:.6f}"
    return {"name": name, "redshift": z, "classification": ctype, "requested": requested,
            "file": file, "ra": f"{ra:.6f}", "dec": f"{dec:.6f}"}


def _distance_grid() -> tuple[np.ndarray, np.ndarray]:
    """Redshift grid and Planck18 angular-diameter distances (Mpc), increasing on z < 1."""
    from astropy.cosmology import Planck18

    z = np.geomspace(5e-4, 0.5, 400)
    return z, np.asarray(Planck18.angular_diameter_distance(z).value)


def _showcase_positions(n: int, seed: int, rates: SampleRates) -> tuple[dict[int, str], dict[int, str]]:
    """Galaxy indices that carry each of :data:`REQUIRED_TYPES` and each image wart.

    So every sample of at least ``4 * len(REQUIRED_TYPES)`` galaxies shows NED's variety and
    every wart whose rate is not 0, whatever the draw; it adds at most one of each.
    """
    if n < 4 * len(REQUIRED_TYPES):
        return {}, {}
    rng = _rng(seed, _STREAM_SHOWCASE)
    types = rng.choice(n, size=len(REQUIRED_TYPES), replace=False)
    warts = [w for w in IMAGE_WARTS if getattr(rates, w) > 0]
    wart_positions = rng.choice(n, size=len(warts), replace=False)
    return ({int(p): t for p, t in zip(types, REQUIRED_TYPES, strict=True)},
            {int(p): w for p, w in zip(wart_positions, warts, strict=True)})


def _choice(rng: np.random.Generator, options: dict[str, float]) -> str:
    keys = list(options)
    p = np.array([options[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


# Observed E-numbers peak at E1-E3 and E7 is the flattest there is (Sandage, Freeman & Stokes 1970).
_E_TYPES = {**{f"E{k}": w for k, w in enumerate((0.14, 0.16, 0.16, 0.14, 0.10, 0.06, 0.03, 0.01))},
            "E": 0.07, "E+": 0.07, "cD": 0.03, "D/cD": 0.03}
_BAR_PREFIX = {"": "S", "A": "SA", "AB": "SAB", "B": "SB"}
_STAGES = {"a": 0.12, "ab": 0.10, "b": 0.18, "bc": 0.14, "c": 0.18, "cd": 0.10, "d": 0.10, "m": 0.08}
_STAGE_INDEX = {s: k for k, s in enumerate(_STAGES)}
_IRR_TYPES = {"Im": 0.25, "IBm": 0.15, "I": 0.10, "Irr": 0.10, "IAB(s)m": 0.05, "Pec": 0.15, "S?": 0.10,
              "Sc pec": 0.10}


def _parse_forced(t: str) -> dict[str, Any]:
    """Family, bar, stage and ring of one of the :data:`REQUIRED_TYPES`."""
    if t in _E_TYPES:
        return {"family": "E", "bar": "", "stage": t[1:] if t.startswith("E") else t, "ring": ""}
    if t in _IRR_TYPES:
        return {"family": "Irr", "bar": "B" if t.startswith("IB") else "", "stage": "m" if t.endswith("m") else "",
                "ring": ""}
    m = re.fullmatch(r"S(A|AB|B)?(\((?:r|s|rs)\))?(0/a|0(?:\^[-0+])?|a|ab|b|bc|c|cd|d|m)(\(f\))?", t)
    if not m:
        raise ValueError(f"cannot parse showcase type {t!r}")
    bar, ring, stage = m.group(1) or "", m.group(2) or "", m.group(3)
    family = "S0/a" if stage == "0/a" else "S0" if stage.startswith("0") else "S"
    stage = {"0": "0", "0/a": "0/a"}.get(stage, stage.replace("0^", "") if family == "S0" else stage)
    return {"family": family, "bar": bar, "stage": stage, "ring": ring}


def _draw_type(rng: np.random.Generator, rates: SampleRates) -> dict[str, Any]:
    family = _choice(rng, rates.families())
    if family == "E":
        t = _choice(rng, _E_TYPES)
        return {"family": "E", "bar": "", "stage": t[1:] if t.startswith("E") else t, "ring": "", "type": t}
    if family == "Irr":
        t = _choice(rng, _IRR_TYPES)
        return {**_parse_forced(t), "type": t}
    bar = _choice(rng, {"": 0.45, "A": 0.2, "AB": 0.15, "B": 0.2} if family != "S" else
                  {"": 0.3, "A": 0.25, "AB": 0.2, "B": 0.25})
    ring = _choice(rng, {"": 0.7, "(r)": 0.1, "(s)": 0.1, "(rs)": 0.1} if family != "S" else
                   {"": 0.15, "(r)": 0.15, "(s)": 0.45, "(rs)": 0.25}) if bar else ""
    outer = "(R)" if rng.random() < 0.03 else ""
    if family == "S0":
        sub = _choice(rng, {"": 0.4, "-": 0.2, "0": 0.15, "+": 0.25})
        t = f"{outer}{_BAR_PREFIX[bar]}{ring}0" + (f"^{sub}" if sub else "")
        return {"family": family, "bar": bar, "stage": sub or "0", "ring": ring, "type": t}
    if family == "S0/a":
        t = f"{outer}{_BAR_PREFIX[bar]}{ring}0/a"
        return {"family": family, "bar": bar, "stage": "0/a", "ring": ring, "type": t}
    stage = _choice(rng, _STAGES)
    suffix = "(f)" if not bar and rng.random() < 0.05 else ""
    t = f"{outer}{_BAR_PREFIX[bar]}{ring}{stage}{suffix}"
    return {"family": family, "bar": bar, "stage": stage, "ring": ring, "type": t}


def _requested(t: dict[str, Any]) -> str:
    """The NED classification-search term this type would be found under."""
    family, type_ = t["family"], t["type"]
    if family == "E":
        return "E"
    if family in ("S0", "S0/a"):
        return family
    if family == "S":
        return _BAR_PREFIX[t["bar"]]
    return "S" if type_.startswith("S") else "Irr"


def _hubble3(family: str, type_: str) -> str:
    if type_ == "Sc pec":  # drawn with the irregulars, but it is a spiral with a stage
        return "Spiral"
    return {"E": "E", "S0": "S0", "S0/a": "S0", "S": "Spiral"}.get(family, "unclassified")


def _conflict(rng: np.random.Generator, t: dict[str, Any]) -> dict[str, str]:
    """A second catalogue row for the same object: another search term, maybe another type."""
    family, type_ = t["family"], t["type"]
    if rng.random() < 0.5:  # same string, found under a second term as merged snapshots do
        other = {"E": "S0", "S0": "E", "S0/a": "S0", "Irr": "S"}.get(family, "S" if t["bar"] else "SA")
        return {"type": type_, "requested": other, "kind": "term"}
    if family == "E":
        return {"type": "S0^-", "requested": "S0", "kind": "type"}
    if family == "S0":
        return {"type": "S0/a", "requested": "S0/a", "kind": "type"}
    if family == "S0/a":
        return {"type": "Sa", "requested": "S", "kind": "type"}
    if family == "S":
        k = min(_STAGE_INDEX[t["stage"]] + 1, len(_STAGES) - 1)
        new_bar = "B" if t["bar"] != "B" else "AB"
        stage = list(_STAGES)[k]
        return {"type": f"S{new_bar}(s){stage}", "requested": _BAR_PREFIX[new_bar], "kind": "type"}
    return {"type": "Sm", "requested": "S", "kind": "type"}


def _plan_galaxy(i: int, rng: np.random.Generator, rates: SampleRates,
                 dist_grid: tuple[np.ndarray, np.ndarray], *, forced_type: str | None,
                 forced_wart: str | None) -> dict[str, Any]:
    t = _draw_type(rng, rates)
    if forced_type is not None:
        t = {**_parse_forced(forced_type), "type": forced_type}
    g: dict[str, Any] = {"index": i, **t}
    g["requested"] = _requested(t)
    g["morph"] = _morphology(rng, t)
    wart_p = {w: getattr(rates, w) for w in IMAGE_WARTS}
    wart_p["none"] = 1.0 - sum(wart_p.values())
    g["wart"] = _choice(rng, wart_p)
    if forced_wart is not None:
        g["wart"] = forced_wart
    g["ra"] = float(rng.uniform(0.0, 360.0))
    g["dec"] = float(np.degrees(np.arcsin(rng.uniform(-0.95, 0.95))))
    g["missing_z"] = bool(rng.random() < rates.missing_redshift)
    g["plain"] = (bool(rng.random() < rates.plain_fits), bool(rng.random() < rates.plain_fits))
    g["image"] = _image_geometry(rng, g["wart"], t["family"])
    theta_e = g["image"]["frac"] * g["image"]["size"] * g["image"]["scale"]  # arcsec
    g["theta_e"] = theta_e
    g["redshift"], g["r_e_kpc"] = _redshift_for(rng, theta_e, t["family"], dist_grid)
    g["duplicate"] = None
    if rng.random() < rates.duplicate:
        image = _image_geometry(rng, "none", t["family"], avoid=g["image"]["survey"], theta_e=theta_e)
        offset = rng.uniform(0.1, 0.9) / 3600.0  # deg, within 1 arcsec
        angle = rng.uniform(0, 2 * np.pi)
        g["duplicate"] = {
            "image": image,
            "ra": (g["ra"] + offset * np.cos(angle) / max(np.cos(np.radians(g["dec"])), 1e-3)) % 360.0,
            "dec": g["dec"] + offset * np.sin(angle),
        }
    g["conflict"] = _conflict(rng, t) if rng.random() < rates.conflict else None
    g["noise_key"] = int(rng.integers(0, 2**31))
    return g


def _image_geometry(rng: np.random.Generator, wart: str, family: str, *, avoid: str | None = None,
                    theta_e: float | None = None) -> dict[str, Any]:
    """Survey, pixel scale, size and galaxy position of one image."""
    surveys = [s for s in _surveys() if s.name != avoid]
    weights = np.array([s.weight for s in surveys])
    survey = surveys[int(rng.choice(len(surveys), p=weights / weights.sum()))]
    scale = float(rng.uniform(*survey.scale))
    frac_range = (0.05, 0.09) if family == "E" else (0.08, 0.14)
    if theta_e is None:
        frac = float(rng.uniform(*frac_range))
        size = int(np.round(np.exp(rng.uniform(np.log(96), np.log(256)))))
    else:  # the same galaxy at another scale: pick the cut-out size that frames it
        frac = float(rng.uniform(*frac_range))
        size = int(np.clip(np.round(theta_e / scale / frac), 96, 256))
        scale = float(np.clip(theta_e / (frac * size), 0.396, 1.7))
        frac = theta_e / (scale * size)
    if wart == "thumbnail":
        size = int(rng.integers(16, 29))
    centre = (size - 1) / 2.0
    cx, cy = centre + rng.uniform(-0.3, 0.3, size=2)
    if wart == "off_centre":
        shift = rng.uniform(0.15, 0.30) * size
        angle = rng.uniform(0, 2 * np.pi)
        cx, cy = centre + shift * np.cos(angle), centre + shift * np.sin(angle)
    return {"survey": survey.name, "scale": scale, "size": size, "frac": frac,
            "centre": (float(cx), float(cy))}


def _redshift_for(rng: np.random.Generator, theta_e: float, family: str,
                  dist_grid: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """Redshift at which a galaxy of a drawn physical size has angular half-light radius ``theta_e``."""
    lo, hi = {"E": (2.0, 10.0), "Irr": (1.0, 4.0)}.get(family, (3.0, 10.0))
    r_kpc = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    z_grid, da = dist_grid
    d_a = r_kpc / 1000.0 / math.radians(theta_e / 3600.0)  # Mpc
    z = float(np.interp(d_a, da, z_grid))  # np.interp clips to the grid's ends
    r_kpc = float(np.interp(z, z_grid, da) * math.radians(theta_e / 3600.0) * 1000.0)
    return z, r_kpc


def _morphology(rng: np.random.Generator, t: dict[str, Any]) -> dict[str, Any]:
    """Structural parameters in units of the galaxy's reference radius (its half-light radius)."""
    family, stage, bar, type_ = t["family"], t["stage"], t["bar"], t["type"]
    u = rng.uniform
    m: dict[str, Any] = {"pa": float(u(0, np.pi))}
    if family == "E":
        k = int(stage) if stage.isdigit() else None
        q = 1.0 - k / 10.0 + u(-0.04, 0.04) if k is not None else u(0.6, 1.0)
        n = u(4.0, 6.0) if stage in ("+", "cD", "D/cD") else u(3.5, 5.0)
        m["bulge"] = {"frac": 1.0, "n": n, "r_e": 1.0, "q": float(np.clip(q, 0.25, 1.0))}
        if stage in ("cD", "D/cD"):
            m["bulge"]["frac"] = u(0.65, 0.8)
            m["halo"] = {"frac": 1.0 - m["bulge"]["frac"], "h": u(2.0, 3.0), "q": m["bulge"]["q"]}
        return m
    if type_ == "Sc pec":  # a disturbed spiral: an Sc with a companion and a tidal tail
        m = _morphology(rng, {"family": "S", "stage": "c", "bar": "", "ring": "", "type": "Sc"})
        m.update(_interaction(rng))
        return m
    if family == "Irr":
        cos_i = u(0.3, 1.0)
        m["disc"] = {"frac": u(0.3, 0.6), "h": 1.0 / 1.678, "cos_i": cos_i, "q0": u(0.2, 0.35)}
        k = int(rng.integers(4, 13))
        off = u(-0.4, 0.4, size=2)  # lopsided: clumps centred away from the disc's centre
        m["clumps"] = {
            "xy": (off + rng.normal(0, 0.6, size=(k, 2))).tolist(),
            "sigma": u(0.08, 0.25, size=k).tolist(),
            "flux": rng.dirichlet(np.ones(k)).tolist(),
        }
        if type_ == "Pec":
            m.update(_interaction(rng))
        if type_ == "S?":
            m["arms"] = {"m": 2, "pitch": u(18, 28), "amp": u(0.3, 0.5), "phase": u(0, 2 * np.pi),
                         "r_in": 0.3, "sharp": 2}
        return m
    # Disc galaxies: S0, S0/a, S. Disc half-light radius is the reference radius (1.0).
    h = 1.0 / 1.678
    if family in ("S0", "S0/a"):
        cos_i = u(np.cos(np.radians(88)), np.cos(np.radians(55)))
        bt = u(0.3, 0.5) if family == "S0" else u(0.3, 0.45)
        m["bulge"] = {"frac": bt, "n": u(2.5, 4.0), "r_e": u(0.2, 0.3), "q": u(0.8, 0.95)}
    else:
        s = _STAGE_INDEX[stage]  # 0 (a) ... 7 (m)
        edge_on = rng.random() < 0.08
        cos_i = u(0.0, np.cos(np.radians(78))) if edge_on else u(np.cos(np.radians(65)), 1.0)
        bt_hi = (0.35, 0.30, 0.22, 0.16, 0.11, 0.07, 0.04, 0.0)[s]
        bt = u(0.6 * bt_hi, bt_hi)
        if bt > 0:
            m["bulge"] = {"frac": bt, "n": u(1.5, 3.5) if s < 4 else u(1.0, 2.0), "r_e": u(0.15, 0.3),
                          "q": u(0.7, 0.95)}
        pitch_lo = 8.0 + 3.0 * s
        m["arms"] = {
            "m": 1 if stage == "m" else (3 if rng.random() < 0.15 and s >= 3 else 2),
            "pitch": u(pitch_lo, pitch_lo + 6.0),
            "amp": u(0.5, 0.7) if stage == "m" else u(0.75, 0.95),
            "phase": u(0, 2 * np.pi),
            "r_in": 0.25,
            "sharp": 3 if s < 5 else 2,
        }
        if 1.0 - cos_i**2 > np.sin(np.radians(78)) ** 2:
            m["dust"] = {"tau": u(0.5, 0.8), "width": u(0.04, 0.08)}
    m["disc"] = {"frac": 1.0 - m.get("bulge", {}).get("frac", 0.0), "h": h, "cos_i": float(cos_i),
                 "q0": u(0.1, 0.2)}
    if family == "S0/a":
        m["arms"] = {"m": 2, "pitch": u(8, 12), "amp": u(0.15, 0.3), "phase": u(0, 2 * np.pi),
                     "r_in": 0.4, "sharp": 2}
    if bar in ("AB", "B"):
        strong = bar == "B"
        m["bar"] = {"frac": u(0.08, 0.15) if strong else u(0.03, 0.06),
                    "length": u(0.7, 1.1) if strong else u(0.4, 0.7),
                    "q": u(0.2, 0.3) if strong else u(0.3, 0.45), "angle": u(0, np.pi)}
        if "arms" in m:
            m["arms"]["r_in"] = max(m["arms"]["r_in"], 0.8 * m["bar"]["length"])
    if t["ring"] == "(r)":
        radius = m["bar"]["length"] if "bar" in m else u(0.5, 0.8)
        m["ring"] = {"frac": u(0.05, 0.1), "radius": radius, "width": u(0.05, 0.1)}
    m["disc"]["frac"] = max(0.0, m["disc"]["frac"] - m.get("bar", {}).get("frac", 0.0)
                            - m.get("ring", {}).get("frac", 0.0))
    return m


def _interaction(rng: np.random.Generator) -> dict[str, Any]:
    """A companion galaxy and a tidal arc, for peculiar types."""
    u = rng.uniform
    ang = u(0, 2 * np.pi)
    dist = u(0.8, 1.5)
    return {
        "companion": {"dx": dist * np.cos(ang), "dy": dist * np.sin(ang), "r_e": u(0.3, 0.6),
                      "frac": u(0.15, 0.35), "n": u(1.0, 3.0)},
        "tail": {"radius": u(1.2, 2.0), "start": u(0, 2 * np.pi), "length": u(1.0, 2.5),
                 "width": u(0.1, 0.2), "frac": u(0.05, 0.12)},
    }


def _assign_names(galaxies: list[dict[str, Any]], seed: int) -> list[tuple[str, str]]:
    """(primary name, second name for duplicates) per galaxy, unique, from their own stream."""
    rng = _rng(seed, _STREAM_NAMES)
    n = len(galaxies)
    kinds = [_choice(rng, {"NGC": 0.60, "UGC": 0.12, "IC": 0.10, "PGC": 0.06, "2MASX": 0.06, "ESO": 0.06})
             for _ in range(n)]
    special = rng.permutation(n)
    n_bracket, n_slash = min(n, 1 + n // 1000), min(max(0, n - 1), 1 + n // 2000)
    for p in special[:n_bracket]:
        kinds[int(p)] = "bracket"
    for p in special[n_bracket:n_bracket + n_slash]:
        kinds[int(p)] = "slash"
    used: set[str] = set()
    names = []
    for g, kind in zip(galaxies, kinds, strict=True):
        primary = _unique(used, lambda kind=kind, g=g: _make_name(rng, kind, g["ra"], g["dec"]),
                          fallback=lambda: _make_name(rng, "PGC", 0.0, 0.0))
        second = ""
        if g["duplicate"]:
            other = "2MASX" if kind != "2MASX" else "PGC"
            d = g["duplicate"]
            second = _unique(used, lambda other=other, d=d: _make_name(rng, other, d["ra"], d["dec"]),
                             fallback=lambda: _make_name(rng, "PGC", 0.0, 0.0))
        names.append((primary, second))
    return names


def _unique(used: set[str], make: Callable[[], str], fallback: Callable[[], str] | None = None) -> str:
    """A name from ``make`` not used yet; from ``fallback`` once ``make`` seems exhausted (the NGC has
    only 7,840 numbers, so a sample of 16,000 galaxies, 60 % of them NGC, runs out: the rest are named
    from a catalogue as large as PGC). Samples that never exhaust a catalogue are unchanged."""
    for make_name in (make, fallback) if fallback is not None else (make,):
        for _ in range(1000):
            name = make_name()
            if name not in used:
                used.add(name)
                return name
    raise RuntimeError("could not draw a unique name in 1000 tries")


def _make_name(rng: np.random.Generator, kind: str, ra: float, dec: float) -> str:
    if kind == "NGC":
        return f"NGC {int(rng.integers(1, 7841))}"
    if kind == "UGC":
        return f"UGC {int(rng.integers(1, 12922))}"
    if kind == "IC":
        return f"IC {int(rng.integers(1, 5387))}"
    if kind == "PGC":
        return f"PGC {int(rng.integers(1, 5_000_000)):06d}"
    if kind == "ESO":
        return f"ESO {int(rng.integers(1, 600)):03d}- G {int(rng.integers(1, 100)):03d}"
    if kind == "bracket":
        author = "".join(chr(ord("A") + int(c)) for c in rng.integers(0, 26, size=3))
        return f"[{author}{int(rng.integers(1990, 2021))}] {int(rng.integers(1, 500))}"
    if kind == "slash":
        return f"NGC {int(rng.integers(1, 7841))}/IC {int(rng.integers(1, 5387))}"
    return _twomass_name(ra, dec)


def _twomass_name(ra: float, dec: float) -> str:
    """2MASX designation as NED writes it, ``2MASX J12304942+1223279`` (truncated, not rounded)."""
    hours = ra / 15.0
    h = int(hours)
    m = int((hours - h) * 60)
    s = (hours - h - m / 60) * 3600
    sign = "+" if dec >= 0 else "-"
    a = abs(dec)
    d = int(a)
    dm = int((a - d) * 60)
    ds = (a - d - dm / 60) * 3600
    return f"2MASX J{h:02d}{m:02d}{int(s * 100):04d}{sign}{d:02d}{dm:02d}{int(ds * 10):03d}"


def _image_spec(g: dict[str, Any], image: dict[str, Any], *, name: str, ra: float, dec: float,
                used: set[str], seed: int, k: int, plain: bool) -> dict[str, Any]:
    stem = safe_file_stem(name)
    candidate, j = stem, 1
    while candidate.lower() in used:
        j += 1
        candidate = f"{stem}_{j}"
    used.add(candidate.lower())
    ext = ".fits" if plain else ".fits.gz"
    return {
        "name": name, "file": f"images/{candidate}{ext}", "type": g["type"], "family": g["family"],
        "bar": g["bar"], "stage": g["stage"], "wart": g["wart"] if k == 0 else "duplicate",
        "conflict": bool(g["conflict"]) and k == 0, "ra": ra, "dec": dec, "redshift": g["redshift"],
        "morph": g["morph"], "image": image, "theta_e": g["theta_e"],
        "noise_seed": (seed, _STREAM_GALAXY, g["index"], 1000 + k),
    }


# ---------------------------------------------------------------------------------------------
# Rendering (runs in worker processes)


def _sersic_b(n: float) -> float:
    """b_n such that r_e encloses half the light (Ciotti & Bertin 1999 expansion)."""
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n**2)


def _sersic(r: np.ndarray, r_e: float, n: float) -> np.ndarray:
    return np.exp(-_sersic_b(n) * ((r / r_e) ** (1.0 / n) - 1.0))


def _unit(img: np.ndarray) -> np.ndarray:
    total = img.sum()
    return img / total if total > 0 else img


def _galaxy_model(morph: dict[str, Any], size: int, cx: float, cy: float, r_ref: float,
                  oversample: int) -> np.ndarray:
    """Noiseless surface brightness (unit total flux) on a ``size`` x ``size`` grid."""
    m = oversample
    coords = (np.arange(size * m, dtype=np.float64) + 0.5) / m - 0.5
    dx = coords[None, :] - cx
    dy = coords[:, None] - cy
    pa = morph["pa"]
    u = (dx * np.cos(pa) + dy * np.sin(pa)) / r_ref  # along the major axis, in units of r_ref
    v = (-dx * np.sin(pa) + dy * np.cos(pa)) / r_ref
    floor = 0.5 / (m * r_ref)  # keeps r > 0 at a sample point so the Sérsic cusp stays finite
    img = np.zeros_like(u)

    if "bulge" in morph:
        b = morph["bulge"]
        r = np.sqrt(u**2 + (v / b["q"]) ** 2) + floor
        img += b["frac"] * _unit(_sersic(r, b["r_e"], b["n"]))
    if "halo" in morph:
        hl = morph["halo"]
        r = np.sqrt(u**2 + (v / hl["q"]) ** 2)
        img += hl["frac"] * _unit(np.exp(-r / hl["h"]))
    if "disc" in morph:
        d = morph["disc"]
        cos_i = d["cos_i"]
        q_disc = math.sqrt(cos_i**2 + d["q0"] ** 2 * (1.0 - cos_i**2))
        r_proj = np.sqrt(u**2 + (v / q_disc) ** 2)
        disc = np.exp(-r_proj / d["h"])
        # Disc-plane coordinates for arms, bars and rings; near edge-on they are barely visible anyway.
        xd, yd = u, v / max(cos_i, 0.15)
        rd = np.sqrt(xd**2 + yd**2) + floor
        if "arms" in morph:
            a = morph["arms"]
            theta = np.arctan2(yd, xd)
            psi = a["m"] * (theta - np.log(rd / d["h"]) / math.tan(math.radians(a["pitch"]))) + a["phase"]
            s = a["sharp"]
            w = ((1.0 + np.cos(psi)) / 2.0) ** s
            w_mean = math.comb(2 * s, s) / 4.0**s  # mean of ((1 + cos)/2)^s over a period
            amp = a["amp"] * (1.0 - np.exp(-((rd / a["r_in"]) ** 2)))
            disc = disc * ((1.0 - amp) + amp * w / w_mean)
        if "dust" in morph:
            dust = morph["dust"]
            lane = dust["tau"] * np.exp(-0.5 * (v / dust["width"]) ** 2) * np.exp(-np.abs(u) / (3 * d["h"]))
            disc = disc * (1.0 - lane)
        img += d["frac"] * _unit(disc)
        if "bar" in morph:
            bar = morph["bar"]
            ca, sa = math.cos(bar["angle"]), math.sin(bar["angle"])
            xb = xd * ca + yd * sa
            yb = -xd * sa + yd * ca
            rb = np.sqrt((xb / bar["length"]) ** 2 + (yb / (bar["length"] * bar["q"])) ** 2)
            img += bar["frac"] * _unit(np.clip(1.0 - rb**2, 0.0, None) ** 2)  # Ferrers n = 2
        if "ring" in morph:
            ring = morph["ring"]
            img += ring["frac"] * _unit(np.exp(-0.5 * ((rd - ring["radius"]) / ring["width"]) ** 2))
    if "clumps" in morph:
        c = morph["clumps"]
        clump_img = np.zeros_like(u)
        for (x0, y0), sig, flux in zip(c["xy"], c["sigma"], c["flux"], strict=True):
            clump_img += flux * np.exp(-0.5 * ((u - x0) ** 2 + (v - y0) ** 2) / sig**2) / sig**2
        img += (1.0 - morph["disc"]["frac"]) * _unit(clump_img)
    if "companion" in morph:
        cp = morph["companion"]
        r = np.sqrt((u - cp["dx"]) ** 2 + (v - cp["dy"]) ** 2) + floor
        img += cp["frac"] * _unit(_sersic(r, cp["r_e"], cp["n"]))
        tl = morph["tail"]
        r = np.sqrt(u**2 + v**2)
        ang = np.mod(np.arctan2(v, u) - tl["start"], 2 * np.pi)
        along = np.clip(1.0 - ang / tl["length"], 0.0, None)
        img += tl["frac"] * _unit(along * np.exp(-0.5 * ((r - tl["radius"]) / tl["width"]) ** 2))
    if m > 1:
        img = img.reshape(size, m, size, m).mean(axis=(1, 3))
    return _unit(img)


def _psf_kernel(fwhm: float, beta: float | None) -> np.ndarray:
    """Unit-sum Moffat (``beta``) or Gaussian (``beta`` None) kernel, ``fwhm`` in pixels."""
    half = int(math.ceil(2.5 * fwhm)) + 1
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    r2 = (x**2 + y**2).astype(np.float64)
    if beta is None:
        sigma = fwhm / 2.3548
        k = np.exp(-0.5 * r2 / sigma**2)
    else:
        alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        k = (1.0 + r2 / alpha**2) ** (-beta)
    return k / k.sum()


def _half_light_radius(model: np.ndarray, cx: float, cy: float) -> float:
    """Circular half-light radius (pixels, to 0.1 px) of a unit-sum model about (cx, cy)."""
    y, x = np.indices(model.shape)
    bins = (np.hypot(x - cx, y - cy) * 10.0).astype(np.int64).ravel()
    cum = np.cumsum(np.bincount(bins, weights=model.ravel()))
    return float(np.searchsorted(cum, 0.5 * cum[-1]) + 1) / 10.0


def _render(spec: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Pixel data (BUNIT), FITS header cards and truth values of one image."""
    from scipy.signal import fftconvolve

    rng = _rng(*spec["noise_seed"])
    image = spec["image"]
    survey = {s.name: s for s in _surveys()}[image["survey"]]
    size, scale = image["size"], image["scale"]
    cx, cy = image["centre"]
    wart = spec["wart"]
    r_ref = spec["theta_e"] / scale  # galaxy reference radius in pixels
    model = _galaxy_model(spec["morph"], size, cx, cy, r_ref, oversample=2 if r_ref < 20 else 1)
    half_light = _half_light_radius(model, cx, cy)

    fwhm_arcsec = float(rng.uniform(*survey.seeing))
    fwhm = max(fwhm_arcsec / scale, 1.0)
    beta = float(rng.uniform(2.5, 4.5)) if rng.random() < 0.7 else None
    psf = _psf_kernel(fwhm, beta)

    sky = float(rng.uniform(*survey.sky))
    read_noise = float(rng.uniform(*survey.read_noise))
    sigma_sky = math.sqrt(sky + read_noise**2)
    snr_e = float(np.exp(rng.uniform(np.log(0.3), np.log(1.0)))) if wart == "low_snr" else float(
        np.exp(rng.uniform(np.log(15.0), np.log(50.0))))
    # Mean surface brightness inside r_e is (F/2) / (pi r_e^2); set it to snr_e sky sigmas.
    flux = snr_e * sigma_sky * 2.0 * math.pi * max(half_light, 1.0) ** 2

    scene = model * flux
    n_stars = int(rng.poisson(0.5 + 3.0 * (size / 128.0) ** 2))
    for _ in range(n_stars):
        for _try in range(20):
            sx, sy = rng.uniform(0, size, size=2)
            if math.hypot(sx - cx, sy - cy) > 0.15 * size:
                break
        scene[min(int(sy), size - 1), min(int(sx), size - 1)] += flux * float(
            np.exp(rng.uniform(np.log(0.005), np.log(0.4))))
    scene = fftconvolve(scene, psf, mode="same")
    background = np.full((size, size), sky)
    if rng.random() < 0.3:
        gx, gy = rng.normal(0, 1, size=2)
        amp = rng.uniform(0.02, 0.08) * sky
        yy, xx = (np.indices((size, size)) - (size - 1) / 2.0) / size
        background = background + amp * (gx * xx + gy * yy) / max(math.hypot(gx, gy), 1e-9)
    counts = rng.poisson(np.clip(scene + background, 0.0, None)).astype(np.float64)
    counts += rng.normal(0.0, read_noise, size=counts.shape)
    if survey.sky_subtracted:
        counts -= sky
    data = counts * survey.gain

    saturate = float(np.nanmax(data) * rng.uniform(1.3, 3.0))
    if wart == "saturated":
        peak = float(data.max())
        floor_level = float(np.median(data))
        saturate = floor_level + rng.uniform(0.15, 0.4) * (peak - floor_level)
        data = np.minimum(data, saturate)
    elif wart == "nan_region":
        kind = int(rng.integers(0, 3))
        width = int(rng.integers(max(2, size // 20), max(3, size // 6)))
        start = int(rng.integers(0, size - width))
        if kind == 0:
            data[start:start + width, :] = np.nan
        elif kind == 1:
            y0, x0 = rng.integers(0, size - width, size=2)
            data[y0:y0 + 2 * width, x0:x0 + 2 * width] = np.nan
        else:
            data[:, start:start + width // 2 + 1] = 0.0  # chip gap, zero-filled
    elif wart == "blank":
        data = np.zeros_like(data)
    if not np.isfinite(saturate) or saturate <= 0:
        saturate = 65535.0 * survey.gain

    header = _header_cards(spec, survey, rng, fwhm_arcsec, saturate)
    truth = {"half_light_px": round(half_light, 3), "fwhm_arcsec": round(fwhm_arcsec, 3),
             "snr_e": round(snr_e, 3)}
    return data.astype(np.float32), header, truth


def _header_cards(spec: dict[str, Any], survey: _Survey, rng: np.random.Generator, fwhm: float,
                  saturate: float) -> dict[str, Any]:
    from astropy.wcs import WCS

    image = spec["image"]
    size, scale = image["size"], image["scale"]
    cx, cy = image["centre"]
    # WCS whose tangent point is the galaxy, then re-expressed about the image centre.
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
    w.wcs.crpix = [cx + 1.0, cy + 1.0]
    w.wcs.crval = [spec["ra"], spec["dec"]]
    centre = (size - 1) / 2.0
    ra_c, dec_c = w.wcs_pix2world([[centre, centre]], 0)[0]
    year = int(rng.integers(survey.years[0], survey.years[1] + 1))
    day = int(rng.integers(1, 366))
    cards: dict[str, Any] = {
        "OBJECT": spec["name"],
        "TELESCOP": survey.telescope,
        "SURVEY": survey.name,
        "FILTER": survey.filter,
        "BUNIT": survey.bunit,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRPIX1": centre + 1.0,
        "CRPIX2": centre + 1.0,
        "CRVAL1": round(float(ra_c), 8),
        "CRVAL2": round(float(dec_c), 8),
        "CDELT1": -scale / 3600.0,
        "CDELT2": scale / 3600.0,
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "RADESYS": "ICRS",
        "EQUINOX": 2000.0,
        "SEEING": (round(fwhm, 2), "PSF FWHM [arcsec]"),
        "SATURATE": (float(f"{saturate:.6g}"), "saturation level [BUNIT]"),
        "ORIGIN": f"galaxy-morph {__version__} synthetic sample",
    }
    if survey.epoch_only:
        cards["EPOCH"] = (round(year + day / 365.25, 3), "plate epoch [yr]")
    else:
        date = datetime.date(year, 1, 1) + datetime.timedelta(days=day - 1)
        cards["DATE-OBS"] = date.isoformat()
        cards["MJD-OBS"] = float((date - datetime.date(1858, 11, 17)).days)
    return cards


def _fits_bytes(data: np.ndarray, cards: dict[str, Any], *, integer: bool) -> bytes:
    from astropy.io import fits

    if integer:
        finite = data[np.isfinite(data)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        bscale = (hi - lo) / 65000.0 if hi > lo else 1.0
        bzero = (hi + lo) / 2.0 if hi > lo else 0.0
        ints = np.round((np.nan_to_num(data, nan=0.0) - bzero) / bscale)
        ints = np.where(np.isfinite(data), np.clip(ints, -32767, 32767), -32768).astype(">i2")
        hdu = fits.PrimaryHDU(data=ints)
    else:
        hdu = fits.PrimaryHDU(data=data.astype(">f4"))
    for key, value in cards.items():
        hdu.header[key] = value
    if integer:
        hdu.header["BSCALE"] = bscale
        hdu.header["BZERO"] = bzero
        hdu.header["BLANK"] = -32768
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def _render_task(task: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    return _render_and_write(*task)


def _render_and_write(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Render one image, write it atomically, return its truth record and its quality metrics."""
    from core.acquire.measure import measure_images

    data, cards, truth = _render(spec)
    survey = {s.name: s for s in _surveys()}[spec["image"]["survey"]]
    raw = _fits_bytes(data, cards, integer=survey.integer)
    if spec["file"].endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=3, mtime=0)  # mtime 0: same bytes on every run
    atomic_write_bytes(out / spec["file"], raw)
    # Measured now, while the file is in the page cache and with the catalogue's rounded position, so the
    # builder and the dashboard find every image in the metrics cache instead of reading them all again.
    (metrics,) = measure_images([(str(out / spec["file"]), float(f"{spec['ra']:.6f}"), float(f"{spec['dec']:.6f}"))])
    return {"file": spec["file"], **truth, "metrics": metrics}


# ---------------------------------------------------------------------------------------------
# Tables


def _write_tables(out: Path, rows: list[dict[str, Any]], specs: list[dict[str, Any]],
                  done: dict[str, dict[str, Any]], params: dict[str, Any]) -> None:
    atomic_write_text(out / "catalog.csv", _csv(CATALOG_COLUMNS, rows))
    truth_rows = []
    for s in specs:
        image = s["image"]
        truth_rows.append({
            "name": s["name"], "file": s["file"], "true_type": s["type"], "family": s["family"],
            "bar": s["bar"], "stage": s["stage"], "hubble3": _hubble3(s["family"], s["type"]), "wart": s["wart"],
            "duplicate_of": s["duplicate_of"], "conflict": str(s["conflict"]),
            "ra": f"{s['ra']:.6f}", "dec": f"{s['dec']:.6f}", "redshift": f"{s['redshift']:.6f}",
            "pixel_scale": f"{image['scale']:.4f}", "size_px": str(image["size"]),
            "half_light_px": f"{done[s['file']]['half_light_px']:.3f}",
            "centre_x": f"{image['centre'][0]:.3f}", "centre_y": f"{image['centre'][1]:.3f}",
            "survey": image["survey"],
        })
    atomic_write_text(out / "truth.csv", _csv(TRUTH_COLUMNS, truth_rows))
    counts: Counter[str] = Counter(s["wart"] for s in specs)
    counts["conflict"] = sum(1 for s in specs if s["conflict"])
    counts["conflict_type"] = _conflict_rows(rows)
    families = Counter(s["family"] for s in specs if s["wart"] != "duplicate")
    meta = {
        **params,
        "generated_with": f"galaxy-morph {__version__}",
        "counts": {
            "galaxies": params["n"], "images": len(specs), "catalog_rows": len(rows),
            "families": dict(sorted(families.items())), "warts": dict(sorted(counts.items())),
        },
    }
    atomic_write_json(out / "SAMPLE.json", meta)


def _conflict_rows(rows: list[dict[str, Any]]) -> int:
    """Names listed twice whose two rows carry different classification strings."""
    by_name: dict[str, set[str]] = {}
    for r in rows:
        by_name.setdefault(r["name"], set()).add(r["classification"])
    return sum(1 for v in by_name.values() if len(v) > 1)


def _csv(columns: Iterable[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
