"""The bots' settings refuse a Teams set-up that would trust any Azure AD tenant's word for who a user is."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.bots.settings import TeamsSettings


def test_teams_needs_the_tenants_whose_users_may_ask() -> None:
    with pytest.raises(ValidationError, match="teams.allowed_tenant_ids must name the Azure AD tenants"):
        TeamsSettings(enabled=True, app_id="app")
    assert TeamsSettings(enabled=True, app_id="app", app_tenant_id="t1").trusted_tenants() == {"t1"}
    both = TeamsSettings(enabled=True, app_id="app", app_tenant_id="t1", allowed_tenant_ids=["t2"])
    assert both.trusted_tenants() == {"t1", "t2"}
    assert TeamsSettings().trusted_tenants() == frozenset(), "off, nothing is needed"
