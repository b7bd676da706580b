"""One helper per fact: what robustode prints or derives in several places comes from one function, so the
places cannot disagree."""

from __future__ import annotations

from robustode.probing import probe_table
from robustode.records import ProbeInfo, ProbeRow
from robustode.stats import wilson
from robustode.text import accuracy_rows


def test_intervals_print_rounded_outwards_in_text_and_in_the_probe_table():
    none_of_many = wilson(0, 10_000)  # [0, 0.000384]: to the nearest 0.1% it would read [0.0%, 0.0%]
    rows = accuracy_rows(0.0, {}, None, {"clean": list(none_of_many)})
    assert rows == [["clean", "0.00%", "[0.0%, 0.1%]"]]
    probe = ProbeInfo(n=4, eps=8 / 255, rows=[ProbeRow(setting="rk4 h=0.25 T=1", own=True, clean=0.47, pgd20=0.0,
                                                       clean_interval=[0.46061, 0.48018],
                                                       pgd20_interval=list(none_of_many))])
    assert "| 47.0% [46.0%, 48.1%] | 0.0% [0.0%, 0.1%] |" in probe_table(probe)
