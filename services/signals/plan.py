"""The account plan, the KAM's living document: its shape (pydantic) and its storage."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.orm import Session

from services.signals.models import AccountPlan
from shared.errors import Conflict

Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
ItemId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
ObjectiveStatus = Literal["planned", "in_progress", "done", "dropped"]
ExpansionComponent = Literal["geographic", "vertical", "horizontal", "volume"]
OpportunityStage = Literal["identified", "qualified", "proposed", "won", "lost"]
Influence = Literal["high", "medium", "low"]
RelationshipQuality = Literal["strong", "neutral", "weak", "none"]
OPEN_STAGES = ("identified", "qualified", "proposed")


class Objective(BaseModel):
    """What the account team wants to reach with the customer, by when, and who carries it."""

    model_config = ConfigDict(extra="forbid")

    id: ItemId
    title: Text200
    owner: Text200 | None = None
    due: date | None = None
    status: ObjectiveStatus = "planned"


class Opportunity(BaseModel):
    """An expansion opportunity, by component (the lever it pulls)."""

    model_config = ConfigDict(extra="forbid")

    id: ItemId
    component: ExpansionComponent = Field(
        description="geographic (sites, subsidiaries), vertical (premium, complementary services), "
        "horizontal (other departments), volume (more usage)"
    )
    description: Text200
    estimated_arr: Decimal = Field(ge=0, max_digits=18, decimal_places=2)
    stage: OpportunityStage = "identified"


class ContactNote(BaseModel):
    """The KAM's qualitative layer of the relationship map for one contact."""

    model_config = ConfigDict(extra="forbid")

    contact_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    name: Text200 | None = None
    influence: Influence = "medium"
    relationship: RelationshipQuality = "neutral"


class AccountPlanIn(BaseModel):
    """The whole plan; PUT replaces it (send If-Match: <version> to refuse a lost update)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "objectives": [
                        {
                            "id": "o1",
                            "title": "Roll out to the Lyon plant",
                            "owner": "Dana Fischer",
                            "due": "2027-02-28",
                            "status": "in_progress",
                        }
                    ],
                    "opportunities": [
                        {
                            "id": "x1",
                            "component": "geographic",
                            "description": "Iberian subsidiary",
                            "estimated_arr": "80000",
                            "stage": "qualified",
                        }
                    ],
                    "contacts": [{"contact_id": "C-7", "name": "Ana Ruiz", "influence": "high"}],
                    "qbr_cadence_days": 90,
                    "next_qbr": "2027-01-15",
                }
            ]
        },
    )

    situation: Annotated[str, StringConstraints(max_length=4000)] | None = None
    objectives: list[Objective] = Field(default_factory=list, max_length=100)
    opportunities: list[Opportunity] = Field(default_factory=list, max_length=100)
    contacts: list[ContactNote] = Field(default_factory=list, max_length=500)
    qbr_cadence_days: int | None = Field(default=None, ge=7, le=366, description="days between QBRs")
    next_qbr: date | None = None

    @model_validator(mode="after")
    def _unique_ids(self) -> AccountPlanIn:
        for name, ids in (
            ("objectives", [o.id for o in self.objectives]),
            ("opportunities", [o.id for o in self.opportunities]),
            ("contacts", [c.contact_id for c in self.contacts]),
        ):
            if len(ids) != len(set(ids)):
                raise ValueError(f"{name}: each id must appear once")
        return self


class AccountPlanOut(AccountPlanIn):
    account_id: str
    version: int = Field(description="0 while nothing was saved; send it back as If-Match")
    updated_at: datetime | None
    updated_by: str | None
    open_pipeline_arr: Decimal = Field(description="estimated ARR of the open opportunities")


def plan_view(account_id: str, row: AccountPlan | None) -> dict[str, Any]:
    plan = AccountPlanIn.model_validate(row.plan) if row is not None else AccountPlanIn()
    pipeline = sum((o.estimated_arr for o in plan.opportunities if o.stage in OPEN_STAGES), Decimal(0))
    return AccountPlanOut(
        **plan.model_dump(),
        account_id=account_id,
        version=row.version if row is not None else 0,
        updated_at=row.updated_at if row is not None else None,
        updated_by=row.updated_by if row is not None else None,
        open_pipeline_arr=pipeline,
    ).model_dump(mode="json")


def save_plan(
    session: Session,
    account_id: str,
    plan: AccountPlanIn,
    expected_version: int | None,
    by: str,
    now: datetime,
) -> AccountPlan:
    """Replace the plan; with `expected_version`, refuse when someone saved in between."""
    row = session.get(AccountPlan, account_id, with_for_update=True)
    current = row.version if row is not None else 0
    if expected_version is not None and expected_version != current:
        raise Conflict(
            f"the plan changed since you loaded it (version {current}, you sent {expected_version}); "
            "reload it and apply your change again"
        )
    data = plan.model_dump(mode="json")
    if row is None:
        row = AccountPlan(account_id=account_id, plan=data, version=1, updated_at=now, updated_by=by)
        session.add(row)
    else:
        row.plan, row.version, row.updated_at, row.updated_by = data, current + 1, now, by
    session.flush()
    return row
