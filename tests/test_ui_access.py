"""Hostile requests against the dashboard: a web page posting to loopback, DNS rebinding, a missing or wrong
token, and recipes that would run code. No training: the refusals come before any run is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ui_fixtures import LOCAL, local_client

from tunesmith.ui.access import Access, split_host
from tunesmith.ui.app import create_app, start_access
from tunesmith.ui.code_guard import code_references
from tunesmith.ui.launch import LAUNCH_DIR, RECIPE_FILE

TOKEN = "t0ken-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
EVIL = {"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def guarded(tmp_path: Path) -> TestClient:
    """The dashboard as `tunesmith ui` starts it on 127.0.0.1:7860, with its token."""
    return local_client(create_app(tmp_path / "runs", access=Access.build("127.0.0.1", 7860, TOKEN)))


def test_loopback_gets_a_fresh_token_in_the_printed_url() -> None:
    access, url = start_access("127.0.0.1", 7860, None, [])
    assert access.token and len(access.token) >= 24 and url == f"http://127.0.0.1:7860/?token={access.token}"
    assert start_access("127.0.0.1", 7860, None, [])[0].token != access.token  # per start
    chosen, url = start_access("::1", 9000, "my token", [])
    assert chosen.token == "my token" and url == "http://[::1]:9000/?token=my%20token"


def test_no_token_no_data(guarded: TestClient) -> None:
    assert guarded.get("/api/runs").status_code == 401
    assert "open the URL `tunesmith ui` printed" in guarded.get("/api/runs").json()["error"]
    page = guarded.get("/")
    assert page.status_code == 401 and "<p>this dashboard needs its token: open the URL" in page.text
    assert guarded.get("/api/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert guarded.get(f"/api/runs?token={TOKEN}").status_code == 401  # the URL token is taken on the page only
    assert guarded.get("/api/runs", headers=BEARER).status_code == 200
    assert guarded.get("/static/app.js").status_code == 200 and guarded.get("/favicon.ico").status_code == 200


def test_the_url_token_becomes_an_http_only_strict_cookie(guarded: TestClient) -> None:
    first = guarded.get(f"/?token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/"  # the token leaves the address bar
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"tunesmith-token-7860={TOKEN};") and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert guarded.get("/").status_code == 200  # the client kept the cookie
    assert guarded.get("/api/runs").status_code == 200
    assert local_client(guarded.app).get("/?token=wrong").status_code == 401
    for answer in (guarded.get("/"), guarded.get("/api/nope"), local_client(guarded.app).get("/")):
        assert answer.headers["x-frame-options"] == "DENY"  # no other page may frame it, signed in or not
        assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"


@pytest.mark.parametrize("host", ["evil.example:7860", "evil.example", "127.0.0.1.nip.io:7860", "127.0.0.1:7861",
                                  "192.168.1.4:7860"])
def test_dns_rebinding_hosts_are_refused(guarded: TestClient, host: str) -> None:
    answer = guarded.get("/api/runs", headers={**BEARER, "Host": host})
    assert answer.status_code == 403 and f"Host '{host}'" in answer.json()["error"]
    assert guarded.post("/api/launch", json={}, headers={**BEARER, "Host": host}).status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost:7860", "[::1]:7860", "127.0.0.2:7860"])
def test_this_machines_names_are_answered(guarded: TestClient, host: str) -> None:
    assert guarded.get("/api/runs", headers={**BEARER, "Host": host}).status_code == 200


def test_extra_hosts_and_binding_beyond_loopback(tmp_path: Path) -> None:
    access = Access.build("127.0.0.1", 7860, TOKEN, ["box.lan"])
    assert access.host_problem("box.lan:7860") is None and access.host_problem("other.lan:7860")
    assert "--allow-host other.lan" in access.host_problem("other.lan:7860")
    wide = Access.build("0.0.0.0", 7860, TOKEN)  # reached by its LAN address; a name still needs --allow-host
    assert wide.host_problem("192.168.1.4:7860") is None and wide.host_problem("evil.example:7860")
    assert split_host("[::1]:80") == ("::1", 80) and split_host("localhost") == ("localhost", 80)


def test_a_cross_site_form_post_cannot_stop_a_run(guarded: TestClient) -> None:
    """The issue's attack: `curl -X POST -H 'Origin: http://evil.example' -H 'Content-Type: form' .../stop`."""
    assert guarded.post("/api/runs/x/stop", headers=EVIL).status_code == 401  # no token: nothing else matters
    forged = guarded.post("/api/runs/x/stop", headers={**BEARER, **EVIL}, content=b"a=1")
    assert forged.status_code == 403 and "Origin 'http://evil.example'" in forged.json()["error"]
    cross = guarded.post("/api/runs/x/resume", headers={**BEARER, "Sec-Fetch-Site": "cross-site"}, json={})
    assert cross.status_code == 403
    form = guarded.post("/api/runs/x/stop", headers={**BEARER, "Content-Type": "text/plain"}, content=b"{}")
    assert form.status_code == 415 and "Content-Type: application/json" in form.json()["error"]
    same = guarded.post("/api/runs/x/stop", headers={**BEARER, "Origin": LOCAL}, json={})
    assert same.status_code == 400 and same.json()["error"].startswith("run x is not training")  # reached the route


def test_launching_code_needs_allow_code(tmp_path: Path) -> None:
    recipe = {"name": "x", "model": "m", "data": {"train": "d"}, "model_options": {"trust_remote_code": True}}
    closed = local_client(create_app(tmp_path / "runs"))
    for route in ("/api/validate", "/api/launch"):
        answer = closed.post(route, json={"recipe": recipe})
        assert answer.status_code == 400 and "tunesmith ui --allow-code" in answer.json()["error"]
        assert "model_options.trust_remote_code: true" in answer.json()["error"]
    yes = closed.post("/api/validate", json={"text": "name: x\nmodel: m\ndata: {train: d}\nmodel_options: "
                                              "{trust_remote_code: 'yes'}"})
    assert "model_options.trust_remote_code" in yes.json()["error"]  # however the YAML spells true
    opened = local_client(create_app(tmp_path / "runs", allow_code=True))
    assert opened.post("/api/validate", json={"recipe": recipe}).json()["ok"]


def test_reward_code_references_are_refused_by_key(tmp_path: Path) -> None:
    raw = {"name": "g", "model": "m", "method": "grpo", "data": {"train": "d"},
           "grpo": {"rewards": ["exact_match", "os:getcwd", {"name": "evil.py:f", "weight": 2}]}}
    found = code_references(raw)
    assert [f.split(":")[0] for f in found] == ["grpo.rewards[1]", "grpo.rewards[2]"]
    answer = local_client(create_app(tmp_path / "runs")).post("/api/launch", json={"recipe": raw})
    assert answer.status_code == 400 and "grpo.rewards[1]: 'os:getcwd'" in answer.json()["error"]
    assert code_references({"ppo": {"rewards": [{"name": "length_penalty"}]}}) == []


def test_resume_refuses_a_handed_over_launch_that_runs_code(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    stored = runs / LAUNCH_DIR / "planted" / RECIPE_FILE
    stored.parent.mkdir(parents=True)
    stored.write_text("name: planted\nmodel: m\ndata: {train: d}\nmodel_options: {trust_remote_code: true}\n")
    answer = local_client(create_app(runs)).post("/api/runs/planted/resume", json={})
    assert answer.status_code == 400 and "model_options.trust_remote_code" in answer.json()["error"]
