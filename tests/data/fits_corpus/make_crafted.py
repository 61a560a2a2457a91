"""Write the ``crafted_*`` files of this corpus from the real ones beside it (run from this folder).

Each is a real file changed in one way a download or a server gets wrong; the test reads them as
shipped, this script only says how they were made.
"""

import bz2
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _header(cards: dict[str, object]) -> bytes:
    text = "".join(f"{k:<8}= {v!s:>20}".ljust(80) for k, v in cards.items()) + "END".ljust(80)
    return text.ljust(-(-len(text) // 2880) * 2880).encode("ascii")


def main() -> None:
    dss = (HERE / "ned_dss1_query_images.fits").read_bytes()
    (HERE / "crafted_truncated.fits").write_bytes(dss[:40000])  # cut mid-data, as a broken download
    (HERE / "cadc_query_images.fits.bz2").write_bytes(bz2.compress((HERE / "cadc_query_images.fits").read_bytes()))
    (HERE / "crafted_html_error_page.fits").write_bytes(
        b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
        b"<body><h1>Bad Gateway</h1><p>The proxy server received an invalid response.</p></body></html>\n"
    )
    scale = bytearray((HERE / "astropy_scale.fits").read_bytes())
    at = scale.index(b"BITPIX  =")
    scale[at : at + 80] = f"{'BITPIX':<8}= {12:>20}".ljust(80).encode("ascii")
    (HERE / "crafted_bitpix_12.fits").write_bytes(bytes(scale))
    (HERE / "crafted_zero_size.fits").write_bytes(
        _header({"SIMPLE": "T", "BITPIX": 16, "NAXIS": 2, "NAXIS1": 0, "NAXIS2": 10})
    )
    spectrum = bytes(range(200)) * 2  # 200 big-endian int16 values
    (HERE / "crafted_1d_spectrum.fits").write_bytes(
        _header({"SIMPLE": "T", "BITPIX": 16, "NAXIS": 1, "NAXIS1": 200}) + spectrum.ljust(2880, b"\0")
    )


if __name__ == "__main__":
    main()
