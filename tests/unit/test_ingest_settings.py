import pytest
from pydantic import ValidationError

from services.ingest.settings import IngestSettings


def test_tombstones_are_kept_a_day_and_looked_for_hourly() -> None:
    settings = IngestSettings()
    assert (settings.tombstone_retention_s, settings.tombstone_purge_interval_s) == (86400, 3600)


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize("field", ["tombstone_retention_s", "tombstone_purge_interval_s"])
def test_tombstone_retention_and_interval_must_be_positive(
    field: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match=field):
        IngestSettings.model_validate({field: float(value)})
    monkeypatch.setenv(f"COPILOT_INGEST_{field.upper()}", value)
    with pytest.raises(ValidationError, match=field):
        IngestSettings()
