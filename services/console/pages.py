"""The console's pages (GET): portfolio, account brief, account plan, QBR pack, alerts inbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse

from services.console import views
from services.console.client import ApiError
from services.console.sessions import UserSession
from services.console.web import Console, ConsoleDep, UserDep, redirect, render, require

router = APIRouter(include_in_schema=False)
View = Literal["mine", "all"]
RENEWAL_WINDOWS = (30, 90, 180, 365)


def optional(call: Callable[[], Any]) -> Callable[[], Any]:
    """A read whose 404 means 'nothing yet' (no score, no plan), not an error page."""

    def run() -> Any:
        try:
            return call()
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    return run


def _view(user: UserSession, view: View | None) -> View:
    return view or ("mine" if user.email else "all")


@router.get("/")
def home(user: UserDep) -> RedirectResponse:
    return redirect("/portfolio")


@router.get("/portfolio", response_class=HTMLResponse)
def portfolio(
    console: ConsoleDep,
    user: UserDep,
    view: View | None = None,
    band: Annotated[Literal["red", "amber", "green", ""], Query()] = "",
    tier: Annotated[str, Query(max_length=50)] = "",
    segment: Annotated[str, Query(max_length=50)] = "",
    renewal: Annotated[str, Query(max_length=4, description="days; empty = any time")] = "",
) -> HTMLResponse:
    require(user, "risk:read", "see the portfolio")
    view = _view(user, view)
    owner = user.email if view == "mine" else None
    within = int(renewal) if renewal.isdigit() else None
    wanted = {"owner": owner, "band": band, "tier": tier, "segment": segment, "renewal_within_days": within}
    params: dict[str, Any] = {k: v for k, v in wanted.items() if v not in (None, "")} | {"limit": 200}
    board, alerts = console.apis.together(
        lambda: console.apis.board(user.key, params),
        lambda: console.apis.alerts_list(user.key, state="open", owner=owner, limit=1000),
    )
    return render(
        console,
        "portfolio.html",
        user,
        view=view,
        filters={"band": band, "tier": tier, "segment": segment, "renewal": within},
        windows=RENEWAL_WINDOWS,
        items=board["items"],
        total=board["total"],
        totals=views.band_totals(board["totals"]),
        open_alerts=views.open_alert_counts(alerts),
    )


def _brief(console: Console, user: UserSession, account_id: str, timeline_limit: int) -> dict[str, Any]:
    apis, key = console.apis, user.key
    today = console.clock.now().date()
    year = {"from": (today - timedelta(days=365)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    account, risk, history, features, timeline, contacts, plan, alerts, revenue = apis.together(
        lambda: apis.signals_get(key, account_id),
        optional(lambda: apis.signals_get(key, account_id, "risk")),
        optional(lambda: apis.signals_get(key, account_id, "risk/history", limit=200)),
        optional(lambda: apis.signals_get(key, account_id, "features")),
        lambda: apis.signals_get(key, account_id, "timeline", limit=timeline_limit, notable=True),
        lambda: apis.signals_get(key, account_id, "contacts"),
        lambda: apis.signals_get(key, account_id, "plan"),
        lambda: apis.alerts_list(key, account=account_id, limit=50),
        optional(lambda: apis.revenue(key, {**year, "account": account_id})),
    )
    now = console.clock.now()
    active = [a for a in alerts if a["state"] != "resolved"]
    steps = apis.together(*[lambda a=a: apis.alert_tasks(key, a["id"]) for a in active])
    for alert, tasks in zip(active, steps, strict=True):
        alert["tasks"] = tasks
    return {
        "account": account,
        "risk": risk,
        "trend": views.history_points(history["items"] if history else []),
        "features": (features or {}).get("features", {}),
        "timeline": timeline["items"],
        "relmap": views.relationship_map(contacts["items"], plan["contacts"], now),
        "plan": plan,
        "alerts": active,
        "days_to_renewal": views.days_until(account.get("renewal_date"), now.date()),
        # NRR, GRR and NPS over the last 12 months (one currency: the account's own)
        "revenue": next(iter((revenue or {}).get("totals") or []), None),
    }


@router.get("/accounts/{account_id}", response_class=HTMLResponse)
def account_brief(account_id: str, console: ConsoleDep, user: UserDep) -> HTMLResponse:
    require(user, "risk:read", "read account briefs")
    return render(console, "account.html", user, **_brief(console, user, account_id, 40))


@router.get("/accounts/{account_id}/qbr", response_class=HTMLResponse)
def qbr_pack(account_id: str, console: ConsoleDep, user: UserDep) -> HTMLResponse:
    require(user, "risk:read", "prepare a QBR pack")
    return render(console, "qbr.html", user, **_brief(console, user, account_id, 12))


@router.get("/accounts/{account_id}/plan", response_class=HTMLResponse)
def account_plan(account_id: str, console: ConsoleDep, user: UserDep) -> HTMLResponse:
    require(user, "risk:read", "read account plans")
    return plan_page(console, user, account_id)


def plan_page(
    console: Console, user: UserSession, account_id: str, error: str | None = None, status: int = 200
) -> HTMLResponse:
    apis, key = console.apis, user.key
    account, plan, contacts = apis.together(
        lambda: apis.signals_get(key, account_id),
        lambda: apis.signals_get(key, account_id, "plan"),
        lambda: apis.signals_get(key, account_id, "contacts"),
    )
    relmap = views.relationship_map(contacts["items"], plan["contacts"], console.clock.now())
    return render(console, "plan.html", user, status, account=account, plan=plan, relmap=relmap, error=error)


@router.get("/alerts", response_class=HTMLResponse)
def alerts_inbox(console: ConsoleDep, user: UserDep, view: View | None = None) -> HTMLResponse:
    require(user, "risk:read", "see alerts")
    view = _view(user, view)
    owner = user.email if view == "mine" else None
    alerts, board = console.apis.together(
        lambda: console.apis.alerts_list(user.key, state="open", owner=owner, limit=1000),
        lambda: console.apis.board(user.key, {"limit": 500} | ({"owner": owner} if owner else {})),
    )
    names = {item["account_id"]: item["name"] for item in board["items"]}
    return render(console, "alerts.html", user, view=view, groups=views.group_alerts(alerts), names=names)
