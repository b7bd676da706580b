"""One helper per fact: what robustode prints or derives in several places comes from one function, so the
places cannot disagree."""

from __future__ import annotations

import pytest

from robustode.probing import probe_table
from robustode.records import ProbeInfo, ProbeRow
from robustode.specs import normalized_spec
from robustode.stats import wilson
from robustode.text import accuracy_rows
from robustode.threat import eps_text


def test_intervals_print_rounded_outwards_in_text_and_in_the_probe_table():
    none_of_many = wilson(0, 10_000)  # [0, 0.000384]: to the nearest 0.1% it would read [0.0%, 0.0%]
    rows = accuracy_rows(0.0, {}, None, {"clean": list(none_of_many)})
    assert rows == [["clean", "0.00%", "[0.0%, 0.1%]"]]
    probe = ProbeInfo(n=4, eps=8 / 255, rows=[ProbeRow(setting="rk4 h=0.25 T=1", own=True, clean=0.47, pgd20=0.0,
                                                       clean_interval=[0.46061, 0.48018],
                                                       pgd20_interval=list(none_of_many))])
    assert "| 47.0% [46.0%, 48.1%] | 0.0% [0.0%, 0.1%] |" in probe_table(probe)


@pytest.mark.parametrize(("eps", "text"), [(3 / 255, "3/255"), (8 / 255, "8/255"), (0.5, "0.5")])
def test_a_budget_reads_the_same_in_a_threat_model_and_in_a_spec(eps, text):
    # 3/255 is 1/85: a fraction limited to denominator 255 printed it as 0.0117647.
    assert eps_text(eps) == text
    assert normalized_spec(f"pgd-20(eps={eps!r})") == f"pgd-20(eps={text})"
