"""The console's forms (POST): sign-in/out, alert actions, account plan edits. Every form carries
the session's CSRF token; the API checks the key's scopes again."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from services.console.client import ApiError
from services.console.pages import plan_page
from services.console.sessions import COOKIE, SIGNIN_COOKIE, UserSession, mac, same
from services.console.web import ConsoleDep, UserDep, check_csrf, redirect, render, require, safe_path

router = APIRouter(include_in_schema=False)
Token = Annotated[str, Form(max_length=100)]
SNOOZE_CHOICES = ("4h", "1d", "3d", "7d")


# --- sign-in ---------------------------------------------------------------------------------
def _signin_form(console: ConsoleDep, next_path: str, error: str | None, status: int = 200) -> Response:
    """The form, with a fresh sign-in token tied to a short-lived cookie (login CSRF)."""
    nonce = secrets.token_urlsafe(16)
    token = mac(console.settings.session_secret, "signin", nonce)
    response = render(
        console, "signin.html", None, status, next=safe_path(next_path), signin_token=token, error=error
    )
    _cookie(response, console.settings.cookie_secure, SIGNIN_COOKIE, nonce, 1800, "strict")
    return response


@router.get("/signin", response_class=HTMLResponse)
def signin_page(console: ConsoleDep, next: str = "/portfolio", expired: bool = False) -> Response:
    message = "Your session ended or your key was revoked; sign in again." if expired else None
    return _signin_form(console, next, message)


@router.post("/signin", response_class=HTMLResponse)
def signin(
    request: Request,
    console: ConsoleDep,
    api_key: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    csrf: Token = "",
    next: Annotated[str, Form(max_length=2000)] = "/portfolio",
) -> Response:
    nonce = request.cookies.get(SIGNIN_COOKIE, "")
    if not nonce or not csrf or not same(csrf, mac(console.settings.session_secret, "signin", nonce)):
        return _signin_form(console, next, "The sign-in form expired; please try again.", 403)
    key = api_key.strip()
    if not key:
        return _signin_form(console, next, "Paste your API key (make run prints one).", 422)
    try:
        identity = console.apis.whoami(key)
    except ApiError as exc:
        if exc.status != 401:
            raise
        return _signin_form(console, next, "This API key is unknown or revoked.", 401)
    session = console.store.create(key, identity, email.strip().lower() or None, console.clock.now())
    response = redirect(safe_path(next))
    max_age = int(console.settings.session_hours * 3600)
    _cookie(
        response, console.settings.cookie_secure, COOKIE, console.store.cookie_value(session), max_age, "lax"
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/")
    return response


def _cookie(response: Response, secure: bool, name: str, value: str, max_age: int, same_site: Any) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, secure=secure, samesite=same_site, path="/"
    )


@router.post("/signout")
def signout(console: ConsoleDep, user: UserDep, csrf: Token = "") -> Response:
    check_csrf(user, csrf)
    console.store.drop(user)
    response = redirect("/signin")
    response.delete_cookie(COOKIE, path="/")
    return response


# --- alerts ----------------------------------------------------------------------------------
def _act(console: ConsoleDep, user: UserSession, ids: list[int], action: str, body: dict[str, Any]) -> None:
    require(user, "alerts:write", "act on alerts")
    for alert_id in ids:
        console.apis.alert_action(user.key, alert_id, action, {"by": user.user[:200], **body})


@router.post("/alerts/{alert_id}/ack")
def acknowledge(
    alert_id: int, console: ConsoleDep, user: UserDep, csrf: Token = "", back: Token = "/alerts"
) -> Response:
    check_csrf(user, csrf)
    _act(console, user, [alert_id], "ack", {"reason": "acknowledged in the console"})
    return redirect(safe_path(back, "/alerts"))


@router.post("/alerts/{alert_id}/snooze")
def snooze(
    alert_id: int,
    console: ConsoleDep,
    user: UserDep,
    csrf: Token = "",
    back: Token = "/alerts",
    duration: Annotated[Literal["4h", "1d", "3d", "7d"], Form()] = "1d",
) -> Response:
    check_csrf(user, csrf)
    _act(console, user, [alert_id], "snooze", {"duration": duration, "reason": "snoozed in the console"})
    return redirect(safe_path(back, "/alerts"))


@router.post("/alerts/{alert_id}/tasks/{task_id}/{verb}")
def finish_task(
    alert_id: int,
    task_id: int,
    verb: Literal["done", "skip"],
    console: ConsoleDep,
    user: UserDep,
    csrf: Token = "",
    back: Token = "/alerts",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Mark a playbook step done or skipped, with an optional note."""
    check_csrf(user, csrf)
    require(user, "alerts:write", "work on rescue plans")
    body = {"by": user.user[:200], "note": note.strip() or None}
    console.apis.task_action(user.key, alert_id, task_id, verb, body)
    return redirect(safe_path(back, "/alerts"))


@router.post("/alerts/ack")
def acknowledge_many(
    console: ConsoleDep,
    user: UserDep,
    csrf: Token = "",
    alert_ids: Annotated[list[int] | None, Form(alias="alert_id")] = None,
    back: Token = "/alerts",
) -> Response:
    check_csrf(user, csrf)
    _act(console, user, sorted(set(alert_ids or []))[:500], "ack", {"reason": "acknowledged in the console"})
    return redirect(safe_path(back, "/alerts"))


# --- account plan ----------------------------------------------------------------------------
PlanEdit = Callable[[dict[str, Any]], None]


def _edit_plan(
    console: ConsoleDep, user: UserSession, account_id: str, csrf: str, version: int, edit: PlanEdit
) -> Response:
    check_csrf(user, csrf)
    require(user, "accounts:write", "edit account plans")
    plan = console.apis.signals_get(user.key, account_id, "plan")
    body = {
        k: plan[k]
        for k in ("situation", "objectives", "opportunities", "contacts", "qbr_cadence_days", "next_qbr")
    }
    try:
        edit(body)
        console.apis.put_plan(user.key, account_id, body, version, user.user)
    except ApiError as exc:
        if exc.status not in (409, 422):
            raise
        return plan_page(console, user, account_id, error=exc.message, status=exc.status)
    except ValueError as exc:
        return plan_page(console, user, account_id, error=str(exc), status=422)
    return redirect(f"/accounts/{account_id}/plan")


def _day(value: str) -> str | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"'{value}' is not a date; write it as YYYY-MM-DD") from None


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


Field200 = Annotated[str, Form(max_length=200)]
Version = Annotated[int, Form(ge=0)]


@router.post("/accounts/{account_id}/plan/objectives")
def add_objective(
    account_id: str,
    console: ConsoleDep,
    user: UserDep,
    title: Field200,
    version: Version,
    csrf: Token = "",
    owner: Field200 = "",
    due: Annotated[str, Form(max_length=10)] = "",
    status: Annotated[str, Form(max_length=20)] = "planned",
) -> Response:
    def edit(plan: dict[str, Any]) -> None:
        objective = {
            "id": _new_id("o"),
            "title": title,
            "owner": owner or None,
            "due": _day(due),
            "status": status,
        }
        plan["objectives"].append(objective)

    return _edit_plan(console, user, account_id, csrf, version, edit)


@router.post("/accounts/{account_id}/plan/opportunities")
def add_opportunity(
    account_id: str,
    console: ConsoleDep,
    user: UserDep,
    description: Field200,
    version: Version,
    csrf: Token = "",
    component: Annotated[str, Form(max_length=20)] = "volume",
    estimated_arr: Annotated[str, Form(max_length=30)] = "0",
    stage: Annotated[str, Form(max_length=20)] = "identified",
) -> Response:
    def edit(plan: dict[str, Any]) -> None:
        try:
            arr = str(Decimal(estimated_arr.replace(",", "").strip() or "0"))
        except InvalidOperation:
            raise ValueError(f"estimated ARR '{estimated_arr}' is not a number; write e.g. 80000") from None
        item = {"id": _new_id("x"), "component": component, "description": description, "estimated_arr": arr}
        plan["opportunities"].append({**item, "stage": stage})

    return _edit_plan(console, user, account_id, csrf, version, edit)


@router.post("/accounts/{account_id}/plan/items/{kind}/{item_id}")
def update_item(
    account_id: str,
    kind: Literal["objectives", "opportunities"],
    item_id: str,
    console: ConsoleDep,
    user: UserDep,
    version: Version,
    csrf: Token = "",
    status: Annotated[str, Form(max_length=20)] = "",
    remove: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    field = "status" if kind == "objectives" else "stage"

    def edit(plan: dict[str, Any]) -> None:
        if remove:
            plan[kind] = [i for i in plan[kind] if i["id"] != item_id]
            return
        for item in plan[kind]:
            if item["id"] == item_id and status:
                item[field] = status

    return _edit_plan(console, user, account_id, csrf, version, edit)


@router.post("/accounts/{account_id}/plan/cadence")
def set_cadence(
    account_id: str,
    console: ConsoleDep,
    user: UserDep,
    version: Version,
    csrf: Token = "",
    qbr_cadence_days: Annotated[str, Form(max_length=4)] = "",
    next_qbr: Annotated[str, Form(max_length=10)] = "",
    situation: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    def edit(plan: dict[str, Any]) -> None:
        if qbr_cadence_days and not qbr_cadence_days.isdigit():
            raise ValueError("the QBR cadence is a number of days, e.g. 90")
        plan["qbr_cadence_days"] = int(qbr_cadence_days) if qbr_cadence_days else None
        plan["next_qbr"] = _day(next_qbr)
        plan["situation"] = situation.strip() or None

    return _edit_plan(console, user, account_id, csrf, version, edit)


@router.post("/accounts/{account_id}/plan/contacts/{contact_id}")
def note_contact(
    account_id: str,
    contact_id: str,
    console: ConsoleDep,
    user: UserDep,
    version: Version,
    csrf: Token = "",
    name: Field200 = "",
    influence: Annotated[str, Form(max_length=10)] = "medium",
    relationship: Annotated[str, Form(max_length=10)] = "neutral",
) -> Response:
    def edit(plan: dict[str, Any]) -> None:
        notes = [c for c in plan["contacts"] if c["contact_id"] != contact_id]
        note = {"contact_id": contact_id, "name": name.strip() or None, "influence": influence}
        plan["contacts"] = [*notes, {**note, "relationship": relationship}]

    return _edit_plan(console, user, account_id, csrf, version, edit)
