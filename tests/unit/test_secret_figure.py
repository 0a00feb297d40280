"""The tests' leak check: the finance memo's figure in any spelling, and never inside an id or a timestamp."""

from __future__ import annotations

import pytest

from tests.conftest import shows_secret_figure


@pytest.mark.parametrize(
    "text", ["The budget is 412,000 USD.", "*412,000*", "412 000", "$412K", "412k", "about 412.", "(412)"]
)
def test_the_figure_counts_in_any_spelling(text: str) -> None:
    assert shows_secret_figure(text)


@pytest.mark.parametrize(
    "text",
    [
        '"value": "fef7ab4d3e4b4f0896c3630cc412c0d9"',
        "fef7ab4d-412c-4f08-96c3-630cc4120d9a",
        '"thread_ts": "1796040237.254743"',
        "1796041237.412000",
        "4120 and 94127",
    ],
)
def test_ids_and_timestamps_do_not(text: str) -> None:
    assert not shows_secret_figure(text)
