"""``python -m authsome``: the README's main command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import authsome
from authsome.cli import main

SRC = str(Path(authsome.__file__).parent.parent)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "authsome", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_demo_shows_gating_per_plan_and_a_usage_report_per_tenant() -> None:
    result = _run("demo")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    header, blank = out.splitlines()[:2]
    assert header.startswith("authsome demo: ")
    assert "two tenants" in header
    assert "nothing is kept" in header
    assert blank == ""
    starter = out.split("globex (plan business)")[0]
    business = out.split("globex (plan business)")[1].split("usage report")[0]
    for gated in ("add a custom domain", "configure SSO"):
        assert f"REFUSED  {gated}" in starter
        assert f"allowed  {gated}" in business
    assert "authsome.feature.sso (disabled)" in starter
    assert "authsome.feature.custom_domains (disabled)" in starter
    for allowed in ("create an organization", "enrol MFA", "register a passkey"):
        assert f"allowed  {allowed}" in starter
        assert f"allowed  {allowed}" in business
    # Starter's limits are enforced: a 4th active user and a 4th seat are refused,
    # a user already counted this month keeps signing in.
    assert "REFUSED  a 4th user signs in      authsome.users.active (limit_reached)" in starter
    assert "REFUSED  a 4th member joins       authsome.orgs.members (limit_reached)" in starter
    assert "allowed  an active user signs in" in starter
    for limited in ("a 4th user signs in", "a 4th member joins", "an active user signs in"):
        assert f"allowed  {limited}" in business
    assert "REFUSED" not in business
    assert "registration options issued" in out.split("register a passkey", 1)[1].split("\n")[0]
    journeys = starter.split("e-mail journeys")[1]
    assert '"Reset your password" to alan@acme.example' in journeys
    assert "signed in with it" in journeys
    assert '"Your sign-in link" to grace@acme.example' in journeys
    assert "followed: signed in; followed again: refused" in journeys
    assert "e-mail journeys" not in business
    # The whole token is never printed, only its first characters.
    assert all(len(part.split("...")[0]) == 4 for part in journeys.split("token=")[1:])
    # acme: 4 users, 3 of them active (the limit); 3 seats of 3. globex: 4 and 4.
    for tenant, active, sessions in (("acme", "3", "9"), ("globex", "4", "8")):
        report = out.split(f"usage report: {tenant}")[1].split("usage report")[0]
        rows = {line.split()[0]: line.split()[1:] for line in report.strip().splitlines()[1:]}
        # two sign-ins per user and one more (acme adds a sign-in after a password
        # reset and one by a magic link): sessions, but distinct monthly active users
        assert rows["authsome.users.active"][0] == active
        assert rows["authsome.sessions.created"][0] == sessions
        assert rows["authsome.users.created"][0] == "4"
        assert rows["authsome.mfa.enrollments"][0] == "1"
        assert rows["authsome.apikeys.validated"][0] == "5"
        assert rows["authsome.orgs.members"][0] == active
    acme = out.split("usage report: acme")[1].split("usage report")[0]
    assert acme.count("limit_reached") == 2
    assert "Traceback" not in out


def test_unknown_command_exits_non_zero_without_a_traceback() -> None:
    result = _run("frobnicate")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "invalid choice" in result.stderr


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` after its lines: every write now fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "authsome", "plans", "example"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": SRC},
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 1


def test_main_returns_zero_for_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert "usage report: acme" in capsys.readouterr().out


def test_demo_says_when_passkeys_could_not_run_without_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "webauthn", None)  # what import sees when it is absent
    assert main(["demo"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "register a passkey" in line]
    assert len(rows) == 2  # one per tenant
    for row in rows:
        assert row.split()[:2] == ["NOT", "RUN"]
        assert 'pip install "authsome-engine[passkeys]"' in row
